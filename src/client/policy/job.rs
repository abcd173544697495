//! One held webhook and its states, and the counters that follow the states: every state
//! change goes through `Jobs::enter`, which keeps the counts of bodies in memory in step and
//! drops a body where the new state does not keep it.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Instant;

use super::jobs::{Jobs, Write};
use super::outcome::Attempt;
use crate::stream::{Entry, StreamId};

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

/// One webhook.
#[derive(Debug)]
pub(super) struct Job {
    /// Which target it goes to (an index into `Jobs::targets`; set once its entry is known).
    pub(super) route: usize,
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

impl Jobs {
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
}
