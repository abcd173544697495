//! The client's delivery policy, pure: the clock and the random source come in from outside,
//! effects go out as values. Unit-tested without sockets or sleeps.

pub mod backoff;
pub mod breaker;
pub mod jobs;
pub mod outcome;
