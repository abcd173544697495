//! The client's delivery policy, pure: the clock and the random source come in from outside,
//! effects go out as values. Unit-tested without sockets or sleeps.
//!
//! - [`outcome`]: what one attempt's result means.
//! - [`evidence`]: when a failure counts toward `RELAY_MAX_ATTEMPTS`.
//! - [`target`]: one target's breaker, throttling and evidence.
//! - [`jobs`]: every held webhook (one value each, `job.rs`): intake and bodies
//!   (`intake.rs`), when to attempt (`schedule.rs`), what results do (`rules.rs`).
//! - [`backoff`], [`breaker`]: the small pieces.

pub mod backoff;
pub mod breaker;
pub mod evidence;
mod intake;
mod job;
pub mod jobs;
pub mod outcome;
mod rules;
mod schedule;
pub mod target;
