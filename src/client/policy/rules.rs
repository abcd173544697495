//! What a finished attempt does to its webhook and to the target, and what each ruling on a
//! failure does (see `evidence.rs` for when a failure counts):
//!
//! | the app answered / the attempt | the webhook | the target |
//! |---|---|---|
//! | 2xx | acknowledged | up: closes the breaker, counts suspects around it |
//! | other 4xx, 3xx | dead-lettered now | up |
//! | 429, 503 + `Retry-After` | retried after the pause, never counted | nothing starts until the pause ends |
//! | 408, 5xx, lost after sending | retried with backoff; counted with evidence | its first failure: one toward the breaker |
//! | refused, no route, TLS | retried with backoff, never counted | its first failure: one toward the breaker |
//!
//! Probes and attempts that overlapped an open breaker never count. A webhook is
//! dead-lettered when `max_attempts` of its attempts have counted; while its uncounted
//! failures could bring it there, it waits for their ruling before another attempt.

use std::time::Instant;

use super::breaker::Transition;
use super::evidence::Ruling;
use super::job::State;
use super::jobs::{Effect, Jobs, Write, write_effect};
use super::outcome::{Attempt, Verdict, classify};
use crate::stream::{DeadLetter, StreamId};

impl Jobs {
    /// Applies the result of an attempt of `id` that ended at `now`.
    pub fn finish(
        &mut self,
        id: StreamId,
        attempt: Attempt,
        now: Instant,
        unix_ms: u64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(job) = self.jobs.get_mut(&id) else {
            return fx;
        };
        let State::InFlight { probe, started } = job.state else {
            return fx;
        };
        job.tries += 1;
        let route = job.route;
        let verdict = classify(&attempt);
        job.last = Some(attempt);
        match verdict {
            Verdict::Delivered => {
                self.settle(id, Write::Ack, &mut fx);
                self.target_up(route, now, unix_ms, &mut fx);
            }
            Verdict::Rejected => {
                job.counted += 1;
                let dl = self.dead_letter_info(id, unix_ms);
                self.settle(id, Write::DeadLetter(dl), &mut fx);
                self.target_up(route, now, unix_ms, &mut fx);
            }
            Verdict::Throttled { retry_after } => {
                if probe {
                    self.targets[route].probe_abandoned();
                }
                let until = self.targets[route].throttle(now, retry_after, &self.policy.backoff);
                self.wait(id, until, now, unix_ms, &mut fx);
            }
            Verdict::Unreachable => self.failed(id, probe, None, false, now, unix_ms, &mut fx),
            Verdict::Failed { retry_after } => {
                let countable = !probe && !self.targets[route].overlapped_outage(started);
                self.failed(id, probe, retry_after, countable, now, unix_ms, &mut fx);
            }
        }
        fx
    }

    #[allow(clippy::too_many_arguments)]
    fn failed(
        &mut self,
        id: StreamId,
        probe: bool,
        retry_after: Option<std::time::Duration>,
        countable: bool,
        now: Instant,
        unix_ms: u64,
        fx: &mut Vec<Effect>,
    ) {
        let job = self.jobs.get_mut(&id).expect("finishing a held job");
        let first = job.failures == 0;
        let route = job.route;
        job.failures = job.failures.saturating_add(1);
        let failures = job.failures;
        if countable {
            job.suspects += 1;
            self.targets[route].evidence.suspect(id, now);
        }
        let (transition, rulings) = self.targets[route].failed(id, now, probe, first);
        if transition == Some(Transition::Opened) {
            fx.push(Effect::BreakerOpened(route));
        }
        let delay = self
            .policy
            .backoff
            .delay(failures, retry_after, &mut self.rng);
        self.wait(id, now + delay, now, unix_ms, fx);
        self.apply(rulings, false, now, unix_ms, fx);
    }

    /// Puts `id` to wait until `due`, gated while its suspects could make it the last
    /// attempt, and stores its counts.
    fn wait(
        &mut self,
        id: StreamId,
        due: Instant,
        now: Instant,
        unix_ms: u64,
        fx: &mut Vec<Effect>,
    ) {
        let job = &self.jobs[&id];
        let gated = job.counted + job.suspects >= self.policy.max_attempts;
        self.schedule(id, due, gated);
        fx.push(Effect::Persist(id, self.stored(id, now, unix_ms)));
    }

    fn target_up(&mut self, route: usize, now: Instant, unix_ms: u64, fx: &mut Vec<Effect>) {
        let (transition, rulings) = self.targets[route].up(now);
        if transition == Some(Transition::Closed) {
            fx.push(Effect::BreakerClosed(route));
        }
        self.apply(rulings, false, now, unix_ms, fx);
    }

    /// The health URL answered: 2xx is evidence the default target is up for the failures
    /// that had none (and for every suspect in its window); anything else leaves them
    /// uncounted.
    pub fn health(&mut self, up: bool, now: Instant, unix_ms: u64) -> Vec<Effect> {
        self.health_asked = false;
        let mut fx = Vec::new();
        let asked = std::mem::take(&mut self.awaiting_health);
        let ruling = match up {
            true => Ruling::Counted,
            false => Ruling::NoEvidence,
        };
        let mut rulings: Vec<(StreamId, Ruling)> =
            asked.into_iter().map(|id| (id, ruling)).collect();
        if up {
            rulings.extend(self.targets[0].healthy(now));
        }
        self.apply(rulings, true, now, unix_ms, &mut fx);
        fx
    }

    /// Applies rulings; `health_answered` when they already include the health URL's word.
    pub(super) fn apply(
        &mut self,
        rulings: Vec<(StreamId, Ruling)>,
        health_answered: bool,
        now: Instant,
        unix_ms: u64,
        fx: &mut Vec<Effect>,
    ) {
        for (id, ruling) in rulings {
            self.rule(id, ruling, health_answered, now, unix_ms, fx);
        }
    }

    fn rule(
        &mut self,
        id: StreamId,
        ruling: Ruling,
        health_answered: bool,
        now: Instant,
        unix_ms: u64,
        fx: &mut Vec<Effect>,
    ) {
        let Some(job) = self.jobs.get_mut(&id).filter(|j| j.suspects > 0) else {
            return; // finished meanwhile
        };
        // The health URL speaks for the default target only.
        let asks = self.policy.health_check && job.route == 0;
        if ruling == Ruling::NoEvidence && asks && !health_answered {
            self.awaiting_health.push(id);
            if !std::mem::replace(&mut self.health_asked, true) {
                fx.push(Effect::CheckHealth);
            }
            return;
        }
        job.suspects -= 1;
        match ruling {
            Ruling::Counted => job.counted += 1,
            Ruling::NoEvidence => {
                fx.push(Effect::Uncounted {
                    id,
                    first: !job.warned,
                });
                job.warned = true;
            }
            Ruling::Outage => {}
        }
        let (counted, suspects, due) = (job.counted, job.suspects, job.due);
        let waiting_or_ready = matches!(
            job.state,
            State::Waiting { .. } | State::Ready | State::NeedsBody | State::Fetching
        );
        if counted >= self.policy.max_attempts && waiting_or_ready {
            let dl = self.dead_letter_info(id, unix_ms);
            self.settle(id, Write::DeadLetter(dl), fx);
            return;
        }
        fx.push(Effect::Persist(id, self.stored(id, now, unix_ms)));
        let gated = self.jobs[&id].state == State::Waiting { gated: true };
        if gated && counted + suspects < self.policy.max_attempts {
            self.schedule(id, due, false); // released: its backoff may already be over
        }
    }

    /// Gives `id` its final write.
    pub(super) fn settle(&mut self, id: StreamId, write: Write, fx: &mut Vec<Effect>) {
        let route = self.jobs.get(&id).map_or(0, |j| j.route);
        self.targets[route].evidence.forget(id);
        if let Some(job) = self.jobs.get_mut(&id) {
            job.suspects = 0;
        }
        fx.push(write_effect(id, &write));
        self.enter(
            id,
            State::Finishing {
                write,
                failed: false,
            },
        );
    }

    /// The dead-letter fields of `id` now.
    pub(super) fn dead_letter_info(&self, id: StreamId, unix_ms: u64) -> DeadLetter {
        let job = &self.jobs[&id];
        DeadLetter {
            attempts: job.counted,
            last_status: job.last.as_ref().and_then(Attempt::status),
            last_error: job.last.as_ref().map_or_else(
                || "counted out before a restart".to_owned(),
                Attempt::describe,
            ),
            failed_at: unix_ms,
        }
    }
}
