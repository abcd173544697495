//! The client's delivery policy, pure: the clock and the random source come in from outside,
//! effects go out as values. Unit-tested without sockets or sleeps.
//!
//! - [`outcome`]: what one attempt's result means.
//! - [`evidence`]: when a failure counts toward `RELAY_MAX_ATTEMPTS`.
//! - [`target`]: one target's breaker, throttling and evidence.
//! - [`jobs`]: every held webhook: intake, memory, scheduling; `rules.rs` applies results.
//! - [`backoff`], [`breaker`]: the small pieces.

pub mod backoff;
pub mod breaker;
pub mod evidence;
pub mod jobs;
pub mod outcome;
mod rules;
pub mod target;
