//! When each webhook is attempted: the next attempt to start (concurrency, breaker,
//! throttling, the probe), retries coming due, rulings whose window passed, and the next
//! moment anything can change.

use std::cmp::Reverse;
use std::time::Instant;

use super::job::State;
use super::jobs::{Effect, Jobs, Start, TOMBSTONE};
use super::target::Gate;
use crate::stream::StreamId;

impl Jobs {
    /// The next attempt to start at `now`, if concurrency and its target's breaker and
    /// throttling allow. Targets take turns: one target's closed gate never holds another's
    /// webhooks back.
    pub fn next(&mut self, now: Instant) -> Option<Start> {
        self.promote_due(now);
        if self.counts.in_flight >= self.policy.concurrency {
            return None;
        }
        let n = self.targets.len();
        let mut pick = None;
        for i in 0..n {
            let route = (self.turn + i) % n;
            self.drop_stale(route);
            if self.ready[route].is_empty() {
                continue;
            }
            match self.targets[route].gate(now) {
                Gate::Normal => pick = Some((route, false)),
                Gate::Probe => pick = Some((route, true)),
                Gate::Closed => self.park(route),
            }
            if pick.is_some() {
                break;
            }
        }
        let (route, probe) = pick?;
        self.turn = (route + 1) % n;
        let id = match probe {
            true => self.take_probe(route),
            false => self.ready[route].pop_front().expect("front checked above"),
        };
        self.enter(
            id,
            State::InFlight {
                probe,
                started: now,
            },
        );
        let job = &self.jobs[&id];
        Some(Start {
            id,
            entry: job.entry.clone().expect("a ready job holds its body"),
            attempt: job.tries + 1,
            probe,
            route,
        })
    }

    /// Drops ids at the front of `route`'s queue that finished or moved meanwhile.
    fn drop_stale(&mut self, route: usize) {
        while let Some(id) = self.ready[route].front() {
            if self.jobs.get(id).is_some_and(|j| j.state == State::Ready) {
                break;
            }
            self.ready[route].pop_front();
        }
    }

    /// With several targets, the ready webhooks of one whose gate is closed wait for it to
    /// reopen instead of holding capacity (and bodies) that the others' fresh webhooks need.
    fn park(&mut self, route: usize) {
        let Some(reopens) = self.targets[route]
            .reopens_at()
            .filter(|_| self.targets.len() > 1)
        else {
            return; // one target: nothing else could use the room; or a probe is in flight
        };
        for id in std::mem::take(&mut self.ready[route]) {
            if self.jobs.get(&id).is_some_and(|j| j.state == State::Ready) {
                self.schedule(id, reopens, false);
            }
        }
    }

    /// Queues a ready webhook for its target.
    pub(super) fn push_ready(&mut self, id: StreamId) {
        let route = self.jobs.get(&id).map_or(0, |j| j.route);
        self.ready[route].push_back(id);
    }

    /// The probe tests the target, not a webhook: the ready one that failed least.
    fn take_probe(&mut self, route: usize) -> StreamId {
        let at = self.ready[route]
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some((i, self.jobs.get(id)?)))
            .filter(|(_, j)| j.state == State::Ready)
            .min_by_key(|(_, j)| j.failures)
            .map(|(i, _)| i)
            .expect("a ready job exists");
        self.ready[route].remove(at).expect("index from the queue")
    }

    /// Moves webhooks whose backoff is over to the ready queue (or to be loaded).
    pub(super) fn promote_due(&mut self, now: Instant) {
        while let Some(Reverse((due, generation, id))) = self.waiting.peek().copied() {
            if due > now {
                break;
            }
            self.waiting.pop();
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            if job.generation != generation || job.state != (State::Waiting { gated: false }) {
                continue; // rescheduled, gated (released by its ruling), or moved on
            }
            if job.entry.is_some() {
                self.enter(id, State::Ready);
                self.push_ready(id);
            } else {
                self.enter(id, State::NeedsBody);
                self.needs_body.push_back(id);
            }
        }
    }

    /// Time passes: due retries, and rulings of failures whose window has passed.
    pub fn tick(&mut self, now: Instant, unix_ms: u64) -> Vec<Effect> {
        self.promote_due(now);
        while let Some((at, id)) = self.finished_order.front().copied() {
            if at + TOMBSTONE > now {
                break;
            }
            self.finished_order.pop_front();
            if self.finished.get(&id) == Some(&at) {
                self.finished.remove(&id);
            }
        }
        let mut fx = Vec::new();
        let rulings: Vec<_> = self
            .targets
            .iter_mut()
            .flat_map(|t| t.evidence.expire(now))
            .collect();
        self.apply(rulings, false, now, unix_ms, &mut fx);
        fx
    }

    /// When `next` or `tick` may have something new: a retry, a ruling, the gate reopening.
    pub fn next_wakeup(&mut self) -> Option<Instant> {
        let retry = loop {
            match self.waiting.peek() {
                None => break None,
                Some(Reverse((due, generation, id))) => {
                    let live = self.jobs.get(id).is_some_and(|j| {
                        j.generation == *generation && j.state == State::Waiting { gated: false }
                    });
                    if live {
                        break Some(*due);
                    }
                    self.waiting.pop();
                }
            }
        };
        let gates = self
            .targets
            .iter()
            .zip(&self.ready)
            .filter(|(_, ready)| !ready.is_empty())
            .filter_map(|(t, _)| t.reopens_at());
        let expiries = self.targets.iter().filter_map(|t| t.evidence.next_expiry());
        [retry]
            .into_iter()
            .flatten()
            .chain(gates)
            .chain(expiries)
            .min()
    }
}
