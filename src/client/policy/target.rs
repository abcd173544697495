//! What the client knows about one target: its circuit breaker, whether it asked to slow
//! down, and the evidence that it is up. Pure: the clock is passed in.
//!
//! The breaker counts webhooks failing *for the first time*, in a row: `threshold` of them
//! with no success in between open it (an outage). Webhooks that already failed (poison
//! ones, or any waiting for a retry) failing again say nothing new about the target: they
//! back off on their own and never open it, so a handful of poison webhooks cannot pause
//! everybody else's deliveries or be taken for an outage. A failed probe reopens the breaker
//! only if the probe had not failed before; otherwise another probe may go at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::breaker::{Breaker, Permit, Transition};
use super::evidence::{Evidence, Ruling};
use crate::stream::StreamId;

/// Whether an attempt may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Normal,
    /// The one probe after a breaker cooldown.
    Probe,
    /// Breaker open (or a probe in flight), or the target asked to slow down.
    Closed,
}

/// The state of one target.
#[derive(Debug)]
pub struct Target {
    breaker: Breaker,
    /// Webhooks that failed since the last success.
    streak: HashSet<StreamId>,
    /// When the breaker last opened: an attempt that started before and ended after it
    /// overlapped the outage.
    opened_at: Option<Instant>,
    /// `429` or `503` + `Retry-After`: nothing starts before this.
    throttled_until: Option<Instant>,
    /// Throttles in a row, for the pause when the target gave no `Retry-After`.
    throttles: u32,
    pub evidence: Evidence,
}

impl Target {
    pub fn new(threshold: u32, cooldown: Duration, window: Duration) -> Self {
        Target {
            breaker: Breaker::new(threshold, cooldown),
            streak: HashSet::new(),
            opened_at: None,
            throttled_until: None,
            throttles: 0,
            evidence: Evidence::new(window),
        }
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Whether an attempt may start at `now`. A `Probe` must be answered with `up` or
    /// `failed` (or `probe_abandoned`).
    pub fn gate(&mut self, now: Instant) -> Gate {
        if self.throttled_until.is_some_and(|t| now < t) {
            return Gate::Closed;
        }
        match self.breaker.permit(now) {
            Permit::Normal => Gate::Normal,
            Permit::Probe => Gate::Probe,
            Permit::WaitUntil(_) | Permit::Busy => Gate::Closed,
        }
    }

    /// When the gate may open again (throttle end, or the breaker's next probe).
    pub fn reopens_at(&self) -> Option<Instant> {
        [self.throttled_until, self.breaker.permit_at()]
            .into_iter()
            .flatten()
            .max()
    }

    /// Whether an attempt that started at `started` overlapped an open breaker (judged over
    /// its whole span, not only where it ended).
    pub fn overlapped_outage(&self, started: Instant) -> bool {
        self.breaker.is_open() || self.opened_at.is_some_and(|at| at >= started)
    }

    /// The target answered (2xx, or a final 4xx) at `now`.
    pub fn up(&mut self, now: Instant) -> (Option<Transition>, Vec<(StreamId, Ruling)>) {
        self.streak.clear();
        self.throttles = 0;
        (self.breaker.success(), self.evidence.up(now))
    }

    /// The health URL answered 2xx at `now`: evidence only, the breaker still wants a probe.
    pub fn healthy(&mut self, now: Instant) -> Vec<(StreamId, Ruling)> {
        self.evidence.up(now)
    }

    /// `id` failed (retryably) at `now`; `first`: it had not failed before. Returns the
    /// breaker's transition and, when it opened, the outage rulings of every suspect.
    pub fn failed(
        &mut self,
        id: StreamId,
        now: Instant,
        probe: bool,
        first: bool,
    ) -> (Option<Transition>, Vec<(StreamId, Ruling)>) {
        if self.breaker.is_open() {
            match (probe, first) {
                (true, true) => {
                    self.breaker.failure(now); // open for another cooldown
                }
                (true, false) => self.breaker.probe_abandoned(),
                // Started before the opening: nothing new about the target.
                (false, _) => {}
            }
            return (None, Vec::new());
        }
        if !first || !self.streak.insert(id) {
            return (None, Vec::new()); // a failing webhook again: no news about the target
        }
        match self.breaker.failure(now) {
            Some(Transition::Opened) => {
                self.streak.clear();
                self.opened_at = Some(now);
                (Some(Transition::Opened), self.evidence.outage())
            }
            other => (other, Vec::new()),
        }
    }

    /// A probe ended without a verdict.
    pub fn probe_abandoned(&mut self) {
        self.breaker.probe_abandoned();
    }

    /// The target asked to slow down at `now`: nothing starts until the returned instant
    /// (its `Retry-After`, else a doubling pause), at most `backoff.max` away.
    pub fn throttle(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        backoff: &Backoff,
    ) -> Instant {
        self.throttles = self.throttles.saturating_add(1);
        let pause = retry_after
            .unwrap_or_else(|| backoff.ceiling(self.throttles))
            .min(backoff.max);
        let until = now + pause;
        self.throttled_until = Some(self.throttled_until.map_or(until, |t| t.max(until)));
        until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn id(n: u64) -> StreamId {
        StreamId { ms: n, seq: 0 }
    }

    fn target() -> Target {
        Target::new(3, 10 * S, 30 * S)
    }

    #[test]
    fn only_first_failures_of_different_webhooks_open_the_breaker() {
        let t0 = Instant::now();
        let mut t = target();
        assert_eq!(t.failed(id(1), t0, false, true).0, None);
        for i in 1..10 {
            assert_eq!(t.failed(id(1), t0 + i * S, false, false).0, None);
        }
        for n in 10..20 {
            assert_eq!(
                t.failed(id(n), t0, false, false).0,
                None,
                "known-failing webhooks again"
            );
        }
        assert_eq!(t.gate(t0 + 10 * S), Gate::Normal);
        t.failed(id(2), t0, false, true);
        assert_eq!(t.failed(id(3), t0, false, true).0, Some(Transition::Opened));
        assert_eq!(t.gate(t0 + S), Gate::Closed);
        assert_eq!(t.gate(t0 + 10 * S), Gate::Probe);
    }

    #[test]
    fn an_opening_rules_suspects_as_outage() {
        let t0 = Instant::now();
        let mut t = target();
        t.up(t0);
        for n in 1..=3 {
            t.evidence.suspect(id(n), t0 + S);
        }
        t.failed(id(1), t0 + S, false, true);
        t.failed(id(2), t0 + S, false, true);
        let (tr, rulings) = t.failed(id(3), t0 + S, false, true);
        assert_eq!(tr, Some(Transition::Opened));
        assert!(rulings.iter().all(|(_, r)| *r == Ruling::Outage));
        assert_eq!(rulings.len(), 3);
    }

    #[test]
    fn an_attempt_overlapping_an_opening_is_judged_over_its_span() {
        let t0 = Instant::now();
        let mut t = Target::new(1, S, 30 * S);
        t.failed(id(9), t0 + 2 * S, false, true); // opens at t0 + 2 s
        assert_eq!(t.gate(t0 + 3 * S), Gate::Probe);
        t.up(t0 + 3 * S); // closed again by a probe
        assert!(
            t.overlapped_outage(t0),
            "started before the opening, ended after"
        );
        assert!(!t.overlapped_outage(t0 + 3 * S));
    }

    #[test]
    fn a_failed_probe_reopens_only_if_it_had_not_failed_before() {
        let t0 = Instant::now();
        let mut t = Target::new(1, S, 30 * S);
        t.failed(id(1), t0, false, true);
        assert_eq!(t.gate(t0 + S), Gate::Probe);
        t.failed(id(2), t0 + S, true, false); // a known-failing webhook as probe
        assert_eq!(t.gate(t0 + S), Gate::Probe, "another probe at once");
        t.failed(id(3), t0 + S, true, true); // a fresh one: the target is still down
        assert_eq!(t.gate(t0 + S), Gate::Closed);
        assert_eq!(t.gate(t0 + 2 * S), Gate::Probe);
    }

    #[test]
    fn throttling_pauses_the_whole_target() {
        let t0 = Instant::now();
        let backoff = Backoff {
            base: S,
            max: 60 * S,
        };
        let mut t = target();
        assert_eq!(t.throttle(t0, Some(5 * S), &backoff), t0 + 5 * S);
        assert_eq!(t.gate(t0 + 4 * S), Gate::Closed);
        assert_eq!(t.gate(t0 + 5 * S), Gate::Normal);
        assert_eq!(
            t.throttle(t0, None, &backoff),
            t0 + 2 * S,
            "second in a row"
        );
        assert_eq!(t.throttle(t0, Some(3600 * S), &backoff), t0 + 60 * S);
        t.up(t0);
        assert_eq!(t.throttle(t0, None, &backoff), t0 + S, "reset by a success");
    }
}
