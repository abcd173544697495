//! Webhooks coming in (new entries, pending ids adopted with their stored counts, records
//! that cannot be delivered) and their bodies: which to load from Redis now, and how many new
//! entries there is room for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::{Job, State};
use super::jobs::{Effect, Jobs, Plan, Write};
use crate::stream::{DeadLetter, Entry, Stored, StreamId};

/// Most bodies loaded in one round trip.
const FETCH_BATCH: usize = 32;

/// A fetch aims at about this many bytes (a single larger body is fetched alone).
const FETCH_BYTES: usize = 1024 * 1024;

impl Jobs {
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
        self.push_ready(id);
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
            route: entry.as_deref().map_or(0, |e| (self.router)(e)),
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
                job.route = (self.router)(&entry);
                job.entry = Some(Arc::new(entry));
                self.enter(id, State::Ready);
                self.push_ready(id);
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
}
