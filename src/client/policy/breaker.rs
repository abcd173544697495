//! The circuit breaker: after `threshold` consecutive retryable failures it opens; after
//! `cooldown` it lets one probe through; a success closes it, a failed probe reopens it.
//! Pure: the clock is passed in.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// Cooldown over; one probe is (or may be) in flight.
    HalfOpen {
        probing: bool,
    },
}

/// What a call changed, for the one log line per state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

/// Whether an attempt may start, and in which role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Normal operation.
    Normal,
    /// The single probe after a cooldown.
    Probe,
    /// Open: attempt nothing before this instant.
    WaitUntil(Instant),
    /// A probe is already in flight.
    Busy,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: State,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: State::Closed { failures: 0 },
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// While open: when the next probe will be allowed.
    pub fn permit_at(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Asks to start an attempt at `now`. A `Probe` permit must be answered with
    /// `success` or `failure`.
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.state {
            State::Closed { .. } => Permit::Normal,
            State::Open { until } if now < until => Permit::WaitUntil(until),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Permit::Probe
            }
            State::HalfOpen { probing: true } => Permit::Busy,
        }
    }

    /// The target answered (2xx, or a final 4xx: it is up).
    pub fn success(&mut self) -> Option<Transition> {
        let was_open = self.is_open();
        self.state = State::Closed { failures: 0 };
        was_open.then_some(Transition::Closed)
    }

    /// A retryable failure at `now`.
    pub fn failure(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            State::Closed { failures } if failures + 1 < self.threshold => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            State::Closed { .. } => {
                self.state = State::Open {
                    until: now + self.cooldown,
                };
                Some(Transition::Opened)
            }
            // A failed probe: wait another cooldown (already counted as open).
            State::HalfOpen { .. } | State::Open { .. } => {
                self.state = State::Open {
                    until: now + self.cooldown,
                };
                None
            }
        }
    }

    /// A probe ended without a verdict (shutdown, lost entry): allow another probe.
    pub fn probe_abandoned(&mut self) {
        if let State::HalfOpen { .. } = self.state {
            self.state = State::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(30));
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.success(), None, "a success resets the count");
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), Some(Transition::Opened));
        assert!(b.is_open());
        assert_eq!(
            b.permit(t0 + Duration::from_secs(29)),
            Permit::WaitUntil(t0 + Duration::from_secs(30))
        );
    }

    #[test]
    fn one_probe_after_cooldown_then_close_or_reopen() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(10));
        assert_eq!(b.failure(t0), Some(Transition::Opened));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.permit(t1), Permit::Probe);
        assert_eq!(b.permit(t1), Permit::Busy, "only one probe");
        assert_eq!(
            b.failure(t1),
            None,
            "failed probe: open again, no new transition"
        );
        assert_eq!(
            b.permit(t1 + Duration::from_secs(9)),
            Permit::WaitUntil(t1 + Duration::from_secs(10))
        );
        assert_eq!(b.permit(t1 + Duration::from_secs(10)), Permit::Probe);
        assert_eq!(b.success(), Some(Transition::Closed));
        assert_eq!(b.permit(t1 + Duration::from_secs(10)), Permit::Normal);
    }

    #[test]
    fn abandoned_probe_allows_another() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::ZERO);
        b.failure(t0);
        assert_eq!(b.permit(t0), Permit::Probe);
        b.probe_abandoned();
        assert_eq!(b.permit(t0), Permit::Probe);
    }
}
