//! When a failed attempt counts toward `RELAY_MAX_ATTEMPTS`: only with evidence that the
//! target was up, so that it was the webhook's own failure and not an outage.
//!
//! A countable failure (an HTTP 5xx or 408, or a request lost after it was sent) becomes a
//! *suspect* at the time it happened. Its ruling:
//! - **counted** when the target answers another webhook with 2xx (or a final 4xx, or the
//!   health URL with 2xx) within `window` after it; or when `window` passes without the
//!   breaker opening and the target had answered 2xx within `window` before it;
//! - **not counted, outage** when the breaker opens while it is a suspect (the failures
//!   that add up to an open breaker are the target's, not the webhooks');
//! - **not counted, no evidence** when `window` passes with no 2xx before or after it.
//!
//! Opening the breaker also forgets the last 2xx, so a success before an outage is never
//! evidence for a failure during it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::stream::StreamId;

/// How a suspect failure was ruled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ruling {
    Counted,
    /// The breaker opened: the target's failure, not the webhook's.
    Outage,
    /// Nothing showed that the target was up around the failure.
    NoEvidence,
}

#[derive(Debug, Clone, Copy)]
struct Suspect {
    id: StreamId,
    at: Instant,
    /// The target had answered 2xx within the window before the failure.
    before: bool,
}

/// Suspect failures in time order, and the last time the target was seen up.
#[derive(Debug)]
pub struct Evidence {
    window: Duration,
    last_up: Option<Instant>,
    suspects: VecDeque<Suspect>,
}

impl Evidence {
    pub fn new(window: Duration) -> Self {
        Evidence {
            window,
            last_up: None,
            suspects: VecDeque::new(),
        }
    }

    /// A countable failure of `id` at `at`, awaiting its ruling.
    pub fn suspect(&mut self, id: StreamId, at: Instant) {
        let before = self
            .last_up
            .is_some_and(|up| at.saturating_duration_since(up) <= self.window);
        self.suspects.push_back(Suspect { id, at, before });
    }

    /// The target answered at `at`: every suspect still within its window is counted.
    pub fn up(&mut self, at: Instant) -> Vec<(StreamId, Ruling)> {
        let mut rulings = self.expire(at);
        rulings.extend(self.suspects.drain(..).map(|s| (s.id, Ruling::Counted)));
        self.last_up = Some(at);
        rulings
    }

    /// The breaker opened: every suspect is an outage failure, and the last success is no
    /// evidence for what follows.
    pub fn outage(&mut self) -> Vec<(StreamId, Ruling)> {
        self.last_up = None;
        self.suspects
            .drain(..)
            .map(|s| (s.id, Ruling::Outage))
            .collect()
    }

    /// Rules the suspects whose window has passed at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(StreamId, Ruling)> {
        let mut rulings = Vec::new();
        while let Some(s) = self.suspects.front() {
            if s.at + self.window > now {
                break;
            }
            let ruling = match s.before {
                true => Ruling::Counted,
                false => Ruling::NoEvidence,
            };
            rulings.push((s.id, ruling));
            self.suspects.pop_front();
        }
        rulings
    }

    /// When the oldest suspect's window ends.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.suspects.front().map(|s| s.at + self.window)
    }

    /// Drops `id`'s suspects (it was delivered or dead-lettered meanwhile).
    pub fn forget(&mut self, id: StreamId) -> usize {
        let before = self.suspects.len();
        self.suspects.retain(|s| s.id != id);
        before - self.suspects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(30);

    fn id(n: u64) -> StreamId {
        StreamId { ms: n, seq: 0 }
    }

    #[test]
    fn a_success_after_counts_every_suspect_in_its_window() {
        let t0 = Instant::now();
        let mut e = Evidence::new(W);
        e.suspect(id(1), t0);
        e.suspect(id(2), t0 + Duration::from_secs(10));
        let r = e.up(t0 + Duration::from_secs(20));
        assert_eq!(r, [(id(1), Ruling::Counted), (id(2), Ruling::Counted)]);
        assert_eq!(e.next_expiry(), None);
    }

    #[test]
    fn a_success_before_counts_once_the_window_passes_without_an_outage() {
        let t0 = Instant::now();
        let mut e = Evidence::new(W);
        e.up(t0);
        e.suspect(id(1), t0 + Duration::from_secs(5));
        e.suspect(id(2), t0 + Duration::from_secs(40)); // too long after the success
        assert!(e.expire(t0 + Duration::from_secs(34)).is_empty());
        assert_eq!(e.next_expiry(), Some(t0 + Duration::from_secs(35)));
        assert_eq!(
            e.expire(t0 + Duration::from_secs(35)),
            [(id(1), Ruling::Counted)]
        );
        assert_eq!(
            e.expire(t0 + Duration::from_secs(70)),
            [(id(2), Ruling::NoEvidence)]
        );
    }

    #[test]
    fn an_outage_discards_suspects_and_the_success_before_it() {
        let t0 = Instant::now();
        let mut e = Evidence::new(W);
        e.up(t0);
        e.suspect(id(1), t0 + Duration::from_secs(1));
        assert_eq!(e.outage(), [(id(1), Ruling::Outage)]);
        e.suspect(id(2), t0 + Duration::from_secs(2));
        assert_eq!(
            e.expire(t0 + Duration::from_secs(60)),
            [(id(2), Ruling::NoEvidence)],
            "the success before the outage is no evidence for failures after it"
        );
    }

    #[test]
    fn forgotten_ids_are_not_ruled() {
        let t0 = Instant::now();
        let mut e = Evidence::new(W);
        e.suspect(id(1), t0);
        e.suspect(id(1), t0);
        e.suspect(id(2), t0);
        assert_eq!(e.forget(id(1)), 2);
        assert_eq!(e.up(t0), [(id(2), Ruling::Counted)]);
    }
}
