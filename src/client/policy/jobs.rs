//! Every webhook the client holds, as one value per webhook with its state, counts and body:
//! which attempt to start next, which bodies to (re)load, how much may be read, and the
//! effects to carry out (acknowledgements, dead letters, stored counts, log lines). Pure: the
//! clock and the random source come in from outside. The rules for a finished attempt are in
//! `rules.rs`.
//!
//! Memory is bounded however many webhooks wait: a webhook waiting for its retry keeps only
//! its id and counts (its body too while the waiting bodies fit `Policy::waiting_bytes`); its
//! body is read again from Redis when it is due. Bodies held for attempts (ready, being
//! loaded, in flight) are bounded by `Policy::capacity` and `Policy::active_bytes`, and a
//! quarter of the capacity is kept for fresh entries, so no number of waiting or due retries
//! stops new webhooks from being read and delivered.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backoff::{Backoff, Rng};
use super::job::{Counts, Job, State};
use super::target::Target;
use crate::stream::{DeadLetter, Entry, Stored, StreamId};

/// How long a finished webhook is remembered, so that a pending-list read that started
/// before its acknowledgement landed cannot bring it back. Longer than any read may take.
pub(super) const TOMBSTONE: Duration = Duration::from_secs(600);

/// The policy's knobs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// A failure counts with a 2xx of another webhook within this window around it.
    pub window: Duration,
    /// Most bodies held for attempts (ready, being loaded, in flight).
    pub capacity: usize,
    /// Most bytes of bodies held for attempts (one larger body is still allowed).
    pub active_bytes: usize,
    /// Most bytes of bodies kept while their webhooks wait; beyond, bodies are re-read.
    pub waiting_bytes: usize,
    /// A health URL can be asked when a failure has no other evidence.
    pub health_check: bool,
}

/// A webhook's final write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Ack,
    DeadLetter(DeadLetter),
    /// Its payload was deleted while pending: acknowledge, nothing to deliver.
    Forget,
}

/// An attempt to start.
#[derive(Debug, Clone)]
pub struct Start {
    pub id: StreamId,
    pub entry: Arc<Entry>,
    /// `X-Relay-Attempt`: 1 for the first attempt.
    pub attempt: u32,
    pub probe: bool,
    /// Its target.
    pub route: usize,
}

/// Something to carry out (Redis writes, log lines, a health check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Ack(StreamId),
    DeadLetter(StreamId, DeadLetter),
    Forget(StreamId),
    /// Store the counts so that they survive a restart.
    Persist(StreamId, Stored),
    /// The breaker of target `.0` opened / closed.
    BreakerOpened(usize),
    BreakerClosed(usize),
    /// A failure of `id` was not counted: nothing showed the target was up around it.
    Uncounted {
        id: StreamId,
        first: bool,
    },
    /// Ask the health URL whether the target is up (answer with `Jobs::health`).
    CheckHealth,
}

/// What to read next: bodies of due webhooks, and how many fresh entries there is room for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ids whose bodies to load, with their sizes (0 when unknown).
    pub fetch: Vec<(StreamId, usize)>,
    pub fresh: usize,
}

/// Which target an entry goes to.
pub type Router = Box<dyn Fn(&Entry) -> usize + Send>;

/// Every webhook the client holds, and the targets' state.
pub struct Jobs {
    pub(super) policy: Policy,
    pub(super) jobs: HashMap<StreamId, Job>,
    /// Webhooks ready to go, per target.
    pub(super) ready: Vec<VecDeque<StreamId>>,
    pub(super) needs_body: VecDeque<StreamId>,
    pub(super) waiting: BinaryHeap<Reverse<(Instant, u64, StreamId)>>,
    /// Finished webhooks and when, so stale reads cannot bring them back.
    pub(super) finished: HashMap<StreamId, Instant>,
    pub(super) finished_order: VecDeque<(Instant, StreamId)>,
    /// Each target's state: the default one first, then one per route.
    pub(super) targets: Vec<Target>,
    /// The target of an entry (from its source).
    pub(super) router: Router,
    /// Where `next` starts looking, so that targets take turns.
    pub(super) turn: usize,
    pub(super) rng: Rng,
    pub(super) counts: Counts,
    pub(super) generation: u64,
    /// Failures with no evidence, waiting for the health URL's answer.
    pub(super) awaiting_health: Vec<StreamId>,
    pub(super) health_asked: bool,
}

impl Jobs {
    pub fn new(policy: Policy, rng: Rng) -> Self {
        let target = Target::new(
            policy.breaker_threshold,
            policy.breaker_cooldown,
            policy.window,
        );
        Jobs {
            ready: vec![VecDeque::new()],
            targets: vec![target],
            router: Box::new(|_| 0),
            turn: 0,
            policy,
            jobs: HashMap::new(),
            needs_body: VecDeque::new(),
            waiting: BinaryHeap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            rng,
            counts: Counts::default(),
            generation: 0,
            awaiting_health: Vec::new(),
            health_asked: false,
        }
    }

    /// `targets` targets in all (the default one included), each with its own breaker,
    /// throttling and evidence; `router` names an entry's.
    pub fn with_routes(mut self, targets: usize, router: Router) -> Self {
        let p = &self.policy;
        self.targets = (0..targets.max(1))
            .map(|_| Target::new(p.breaker_threshold, p.breaker_cooldown, p.window))
            .collect();
        self.ready = vec![VecDeque::new(); targets.max(1)];
        self.router = router;
        self
    }

    /// Whether the breaker of target `route` is open.
    pub fn breaker_open_for(&self, route: usize) -> bool {
        self.targets.get(route).is_some_and(Target::breaker_open)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.counts.in_flight
    }

    pub fn breaker_open(&self) -> bool {
        self.targets.iter().any(Target::breaker_open)
    }

    /// Failures of `id` so far in a row (for the first-failure log line).
    pub fn failures(&self, id: StreamId) -> u32 {
        self.jobs.get(&id).map_or(0, |j| j.failures)
    }

    /// Whether `id` is held.
    pub fn holds(&self, id: StreamId) -> bool {
        self.jobs.contains_key(&id)
    }

    /// Every held id (to keep them claimed).
    pub fn held(&self) -> Vec<StreamId> {
        self.jobs.keys().copied().collect()
    }

    /// The final write of `id` was made (or was not needed): forget it.
    pub fn written(&mut self, id: StreamId, now: Instant) {
        if self
            .jobs
            .get(&id)
            .is_some_and(|j| matches!(j.state, State::Finishing { .. }))
        {
            self.jobs.remove(&id);
            self.finished.insert(id, now);
            self.finished_order.push_back((now, id));
        }
    }

    /// The final write of `id` failed: `retry_writes` offers it again.
    pub fn write_failed(&mut self, id: StreamId) {
        if let Some(job) = self.jobs.get_mut(&id)
            && let State::Finishing { failed, .. } = &mut job.state
        {
            *failed = true;
        }
    }

    /// Webhooks whose final write (acknowledgement, dead letter) is not yet done, failed
    /// ones included.
    pub fn unwritten(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| matches!(j.state, State::Finishing { .. }))
            .count()
    }

    /// The final writes that failed, to make again.
    pub fn retry_writes(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        for (id, job) in &mut self.jobs {
            if let State::Finishing { write, failed } = &mut job.state
                && std::mem::take(failed)
            {
                fx.push(write_effect(*id, write));
            }
        }
        fx
    }

    /// The counts of `id` as stored in Redis.
    pub(super) fn stored(&self, id: StreamId, now: Instant, unix_ms: u64) -> Stored {
        let job = &self.jobs[&id];
        let wait = job.due.saturating_duration_since(now);
        Stored {
            tries: job.tries,
            counted: job.counted,
            failures: job.failures,
            due_ms: unix_ms + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The effect that makes `write` for `id`.
pub(super) fn write_effect(id: StreamId, write: &Write) -> Effect {
    match write {
        Write::Ack => Effect::Ack(id),
        Write::DeadLetter(dl) => Effect::DeadLetter(id, dl.clone()),
        Write::Forget => Effect::Forget(id),
    }
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
