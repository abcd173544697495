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
use super::outcome::Attempt;
use super::target::{Gate, Target};
use crate::stream::{DeadLetter, Entry, Stored, StreamId};

/// How long a finished webhook is remembered, so that a pending-list read that started
/// before its acknowledgement landed cannot bring it back. Longer than any read may take.
const TOMBSTONE: Duration = Duration::from_secs(600);
/// Most bodies loaded in one round trip.
const FETCH_BATCH: usize = 32;
/// A fetch aims at about this many bytes (a single larger body is fetched alone).
const FETCH_BYTES: usize = 1024 * 1024;

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

/// Where a webhook is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Has its body, queued for an attempt.
    Ready,
    /// Due, but its body must be read from Redis first.
    NeedsBody,
    /// Its body is being read.
    Fetching,
    InFlight {
        probe: bool,
        started: Instant,
    },
    /// Until its backoff ends; `gated` while its uncounted failures could make it the last
    /// attempt: it waits for their ruling, so that no webhook is ever attempted more than
    /// `max_attempts` counted times.
    Waiting {
        gated: bool,
    },
    /// Its final write (acknowledgement or dead letter) is being made; `failed` once a write
    /// failed and must be made again.
    Finishing {
        write: Write,
        failed: bool,
    },
}

/// A webhook's final write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Ack,
    DeadLetter(DeadLetter),
    /// Its payload was deleted while pending: acknowledge, nothing to deliver.
    Forget,
}

/// One webhook.
#[derive(Debug)]
pub(super) struct Job {
    /// Shared with the delivery task of an attempt, so the body is never copied per attempt.
    pub(super) entry: Option<Arc<Entry>>,
    /// Bytes of the entry, when known (0 while unknown).
    pub(super) size: usize,
    pub(super) tries: u32,
    pub(super) counted: u32,
    pub(super) failures: u32,
    /// Countable failures awaiting their ruling.
    pub(super) suspects: u32,
    pub(super) last: Option<Attempt>,
    pub(super) state: State,
    pub(super) due: Instant,
    /// Schedule generation: heap items of older generations are stale.
    pub(super) generation: u64,
    /// Already warned that a failure of it was not counted.
    pub(super) warned: bool,
}

/// An attempt to start.
#[derive(Debug, Clone)]
pub struct Start {
    pub id: StreamId,
    pub entry: Arc<Entry>,
    /// `X-Relay-Attempt`: 1 for the first attempt.
    pub attempt: u32,
    pub probe: bool,
}

/// Something to carry out (Redis writes, log lines, a health check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Ack(StreamId),
    DeadLetter(StreamId, DeadLetter),
    Forget(StreamId),
    /// Store the counts so that they survive a restart.
    Persist(StreamId, Stored),
    BreakerOpened,
    BreakerClosed,
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

/// Counters that follow the states of the jobs; changed only by `enter`.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) in_flight: usize,
    /// Jobs ready, being loaded or in flight, and their bytes.
    pub(super) active: usize,
    pub(super) active_bytes: usize,
    /// Bytes of bodies kept by waiting jobs.
    pub(super) waiting_bytes: usize,
}

/// Every webhook the client holds, and the target's state.
pub struct Jobs {
    pub(super) policy: Policy,
    pub(super) jobs: HashMap<StreamId, Job>,
    pub(super) ready: VecDeque<StreamId>,
    pub(super) needs_body: VecDeque<StreamId>,
    pub(super) waiting: BinaryHeap<Reverse<(Instant, u64, StreamId)>>,
    /// Finished webhooks and when, so stale reads cannot bring them back.
    finished: HashMap<StreamId, Instant>,
    finished_order: VecDeque<(Instant, StreamId)>,
    pub(super) target: Target,
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
            policy,
            jobs: HashMap::new(),
            ready: VecDeque::new(),
            needs_body: VecDeque::new(),
            waiting: BinaryHeap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            target,
            rng,
            counts: Counts::default(),
            generation: 0,
            awaiting_health: Vec::new(),
            health_asked: false,
        }
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.counts.in_flight
    }

    pub fn breaker_open(&self) -> bool {
        self.target.breaker_open()
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

    /// Whether a read that started at `read_started` may carry a stale copy of `id`.
    fn stale(&self, id: StreamId, read_started: Instant) -> bool {
        self.jobs.contains_key(&id) || self.finished.get(&id).is_some_and(|f| *f >= read_started)
    }

    /// A new entry read from the stream by a read that started at `read_started`. False
    /// (and dropped) when already held or finished since.
    pub fn add(&mut self, entry: Entry, read_started: Instant, now: Instant) -> bool {
        let id = entry.stream_id();
        if self.stale(id, read_started) {
            return false;
        }
        let size = entry.size();
        self.insert(id, Some(Arc::new(entry)), size, Stored::default(), now);
        self.enter(id, State::Ready);
        self.ready.push_back(id);
        true
    }

    /// An entry that cannot be delivered (its record does not decode): dead-lettered at once.
    pub fn add_undeliverable(
        &mut self,
        id: StreamId,
        why: String,
        read_started: Instant,
        now: Instant,
        unix_ms: u64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        if !self.stale(id, read_started) {
            self.insert(id, None, 0, Stored::default(), now);
            let dl = DeadLetter {
                attempts: 0,
                last_status: None,
                last_error: why,
                failed_at: unix_ms,
            };
            self.settle(id, Write::DeadLetter(dl), &mut fx);
        }
        fx
    }

    /// An id of this consumer's pending list (left by an earlier run, a lost read reply, or
    /// claimed from a dead consumer), with its stored counts; its body is read when due.
    pub fn adopt(
        &mut self,
        id: StreamId,
        stored: Stored,
        read_started: Instant,
        now: Instant,
        unix_ms: u64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.stale(id, read_started) {
            return fx;
        }
        let due = now + Duration::from_millis(stored.due_ms.saturating_sub(unix_ms));
        self.insert(id, None, 0, stored, due);
        if stored.counted >= self.policy.max_attempts {
            // Counted out before a restart, never moved: finish the job.
            let dl = self.dead_letter_info(id, unix_ms);
            self.settle(id, Write::DeadLetter(dl), &mut fx);
        } else {
            self.schedule(id, due, false);
        }
        fx
    }

    fn insert(
        &mut self,
        id: StreamId,
        entry: Option<Arc<Entry>>,
        size: usize,
        s: Stored,
        due: Instant,
    ) {
        let job = Job {
            entry,
            size,
            tries: s.tries,
            counted: s.counted,
            failures: s.failures,
            suspects: 0,
            last: None,
            state: State::NeedsBody, // replaced at once by the caller through `enter`
            due,
            generation: 0,
            warned: false,
        };
        self.jobs.insert(id, job);
    }

    /// Moves `id` to `to`, keeping `Counts` in step and dropping the body where the new state
    /// does not keep it.
    pub(super) fn enter(&mut self, id: StreamId, to: State) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let c = &mut self.counts;
        match job.state {
            State::Ready | State::Fetching => {
                c.active -= 1;
                c.active_bytes -= job.size;
            }
            State::InFlight { .. } => {
                c.active -= 1;
                c.active_bytes -= job.size;
                c.in_flight -= 1;
            }
            State::Waiting { .. } if job.entry.is_some() => c.waiting_bytes -= job.size,
            _ => {}
        }
        match to {
            State::Ready | State::Fetching => {
                c.active += 1;
                c.active_bytes += job.size;
            }
            State::InFlight { .. } => {
                c.active += 1;
                c.active_bytes += job.size;
                c.in_flight += 1;
            }
            State::Waiting { .. } if job.entry.is_some() => {
                if c.waiting_bytes + job.size <= self.policy.waiting_bytes {
                    c.waiting_bytes += job.size;
                } else {
                    job.entry = None; // read again from Redis when due
                }
            }
            State::NeedsBody | State::Finishing { .. } => job.entry = None,
            State::Waiting { .. } => {}
        }
        job.state = to;
    }

    /// Puts `id` to wait until `due` (`gated`: see `State::Waiting`).
    pub(super) fn schedule(&mut self, id: StreamId, due: Instant, gated: bool) {
        self.generation += 1;
        let generation = self.generation;
        if let Some(job) = self.jobs.get_mut(&id) {
            job.due = due;
            job.generation = generation;
            self.waiting.push(Reverse((due, generation, id)));
        }
        self.enter(id, State::Waiting { gated });
    }

    /// Bodies to load and room for fresh entries at `now`. `fresh_idle`: the last read found
    /// nothing new, so due retries may use the whole capacity.
    pub fn plan(&mut self, now: Instant, fresh_idle: bool) -> Plan {
        self.promote_due(now);
        let (capacity, active_bytes) = (self.policy.capacity, self.policy.active_bytes);
        let reserve = if fresh_idle { 0 } else { capacity / 4 };
        let mut plan = Plan::default();
        let mut bytes = 0;
        while let Some(&id) = self.needs_body.front() {
            let Some(job) = self.jobs.get(&id).filter(|j| j.state == State::NeedsBody) else {
                self.needs_body.pop_front();
                continue;
            };
            let c = &self.counts;
            let fits = c.active == 0 || c.active_bytes + job.size <= active_bytes;
            let batch_full = plan.fetch.len() >= FETCH_BATCH
                || (!plan.fetch.is_empty() && bytes + job.size > FETCH_BYTES);
            if c.active + reserve >= capacity || !fits || batch_full {
                break;
            }
            bytes += job.size;
            plan.fetch.push((id, job.size));
            self.needs_body.pop_front();
            self.enter(id, State::Fetching);
        }
        let c = &self.counts;
        if c.active_bytes < self.policy.active_bytes {
            plan.fresh = self.policy.capacity.saturating_sub(c.active);
        }
        plan
    }

    /// The body of `id` was read (`None`: the entry was deleted while pending).
    pub fn fetched(&mut self, id: StreamId, entry: Option<Entry>) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self
            .jobs
            .get(&id)
            .is_none_or(|j| j.state != State::Fetching)
        {
            return fx; // finished meanwhile
        }
        match entry {
            Some(entry) => {
                self.enter(id, State::NeedsBody);
                let job = self.jobs.get_mut(&id).expect("checked above");
                job.size = entry.size();
                job.entry = Some(Arc::new(entry));
                self.enter(id, State::Ready);
                self.ready.push_back(id);
            }
            None => self.settle(id, Write::Forget, &mut fx),
        }
        fx
    }

    /// Reading the body of `id` failed: try again a little later.
    pub fn fetch_failed(&mut self, id: StreamId, now: Instant) {
        if self
            .jobs
            .get(&id)
            .is_some_and(|j| j.state == State::Fetching)
        {
            self.schedule(id, now + Duration::from_secs(1), false);
        }
    }

    /// The next attempt to start at `now`, if concurrency, the breaker and throttling allow.
    pub fn next(&mut self, now: Instant) -> Option<Start> {
        self.promote_due(now);
        if self.counts.in_flight >= self.policy.concurrency {
            return None;
        }
        while let Some(id) = self.ready.front() {
            if self.jobs.get(id).is_some_and(|j| j.state == State::Ready) {
                break;
            }
            self.ready.pop_front(); // finished or moved meanwhile
        }
        self.ready.front()?;
        let probe = match self.target.gate(now) {
            Gate::Normal => false,
            Gate::Probe => true,
            Gate::Closed => return None,
        };
        let id = match probe {
            true => self.take_probe(),
            false => self.ready.pop_front().expect("front checked above"),
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
        })
    }

    /// The probe tests the target, not a webhook: the ready one that failed least.
    fn take_probe(&mut self) -> StreamId {
        let at = self
            .ready
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some((i, self.jobs.get(id)?)))
            .filter(|(_, j)| j.state == State::Ready)
            .min_by_key(|(_, j)| j.failures)
            .map(|(i, _)| i)
            .expect("a ready job exists");
        self.ready.remove(at).expect("index from the queue")
    }

    /// Moves webhooks whose backoff is over to the ready queue (or to be loaded).
    fn promote_due(&mut self, now: Instant) {
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
                self.ready.push_back(id);
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
        let rulings = self.target.evidence.expire(now);
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
        let gate = match self.ready.is_empty() {
            true => None,
            false => self.target.reopens_at(),
        };
        [retry, gate, self.target.evidence.next_expiry()]
            .into_iter()
            .flatten()
            .min()
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
