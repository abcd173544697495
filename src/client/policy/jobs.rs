//! The client's delivery policy, pure: which webhook to attempt next, what an attempt's
//! result means, when a failure counts, when a webhook is dead-lettered. The clock and the
//! random source come in from outside; the effects to carry out go out as values.
//!
//! Counting. A retryable failure is first *unconfirmed*: it might be the target's outage
//! rather than this webhook's fault. It becomes *counted* once the target answers another
//! delivery (it is up, so the failure was this webhook's own); it is forgotten if the failures
//! pile up into an open breaker (an outage). A webhook whose failure is unconfirmed waits for
//! that verdict before its retry, at most one breaker cooldown past its backoff. Failures
//! while the breaker is open, and of its probes, never count. So an outage of any length
//! dead-letters nothing, and a poison webhook is dead-lettered after exactly
//! `max_attempts` counted attempts while the target keeps taking others.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::policy::backoff::{Backoff, Rng};
use crate::client::policy::breaker::{Breaker, Permit, Transition};
use crate::client::policy::outcome::{Attempt, Verdict, classify};
use crate::stream::{DeadLetter, Entry};

/// The policy's knobs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    InFlight {
        probe: bool,
    },
    Waiting,
    /// Its acknowledgement or dead letter is being written.
    Finishing,
}

#[derive(Debug)]
struct Job {
    /// Shared with the delivery task of an attempt, so the body is never copied per attempt.
    entry: Arc<Entry>,
    tries: u32,
    counted: u32,
    unconfirmed: u32,
    last: Option<Attempt>,
    state: State,
    /// Already waited past its backoff for a verdict on its unconfirmed failures.
    gated: bool,
    /// Schedule generation: heap items of older generations are stale.
    generation: u64,
}

/// An attempt to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub id: String,
    /// `X-Relay-Attempt`: 1 for the first attempt.
    pub attempt: u32,
    pub probe: bool,
}

/// Something to carry out (Redis writes, log lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Ack(String),
    DeadLetter(String, DeadLetter),
    /// Store `(tries, counted)` so counts survive a restart.
    Persist {
        id: String,
        tries: u32,
        counted: u32,
    },
    BreakerOpened,
    BreakerClosed,
}

/// Every webhook the client holds, and the breaker.
pub struct Jobs {
    policy: Policy,
    jobs: HashMap<String, Job>,
    ready: VecDeque<String>,
    waiting: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// Ids of jobs with unconfirmed failures, so a success need not scan every job.
    suspects: HashSet<String>,
    breaker: Breaker,
    rng: Rng,
    in_flight: usize,
    generation: u64,
}

impl Jobs {
    pub fn new(policy: Policy, rng: Rng) -> Self {
        let breaker = Breaker::new(policy.breaker_threshold, policy.breaker_cooldown);
        Jobs {
            policy,
            jobs: HashMap::new(),
            ready: VecDeque::new(),
            waiting: BinaryHeap::new(),
            suspects: HashSet::new(),
            breaker,
            rng,
            in_flight: 0,
            generation: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.jobs.contains_key(id)
    }

    pub fn entry(&self, id: &str) -> Option<&Arc<Entry>> {
        self.jobs.get(id).map(|j| &j.entry)
    }

    /// Ids of every held webhook (for keeping them claimed).
    pub fn ids(&self) -> Vec<&str> {
        self.jobs.keys().map(String::as_str).collect()
    }

    /// Takes a webhook read from the stream, with its stored counts. False if already held.
    pub fn add(&mut self, entry: Entry, tries: u32, counted: u32) -> bool {
        if self.jobs.contains_key(&entry.id) {
            return false;
        }
        let id = entry.id.clone();
        let job = Job {
            entry: Arc::new(entry),
            tries,
            counted,
            unconfirmed: 0,
            last: None,
            state: State::Ready,
            gated: false,
            generation: 0,
        };
        self.jobs.insert(id.clone(), job);
        self.ready.push_back(id);
        true
    }

    /// Takes a webhook that will not be attempted, only dead-lettered (an undecodable
    /// record): held so its dead letter can be written and retried.
    pub fn hold(&mut self, entry: Entry, tries: u32, counted: u32) {
        let id = entry.id.clone();
        if self.add(entry, tries, counted) {
            self.jobs.get_mut(&id).expect("just added").state = State::Finishing;
        }
    }

    /// The next attempt to start at `now`, if concurrency and the breaker allow one.
    pub fn next(&mut self, now: Instant) -> Option<Start> {
        self.promote_due(now);
        if self.in_flight >= self.policy.concurrency {
            return None;
        }
        while let Some(id) = self.ready.front() {
            if self.jobs.get(id).is_some_and(|j| j.state == State::Ready) {
                break;
            }
            self.ready.pop_front(); // finished or rescheduled meanwhile
        }
        self.ready.front()?;
        let probe = match self.breaker.permit(now) {
            Permit::Normal => false,
            Permit::Probe => true,
            Permit::WaitUntil(_) | Permit::Busy => return None,
        };
        let id = self.ready.pop_front().expect("front checked above");
        let job = self.jobs.get_mut(&id).expect("ready ids are held");
        job.state = State::InFlight { probe };
        self.in_flight += 1;
        Some(Start {
            attempt: job.tries + 1,
            id,
            probe,
        })
    }

    /// When `next` may have something new to offer: the earliest retry or breaker probe.
    pub fn next_wakeup(&mut self) -> Option<Instant> {
        let retry =
            loop {
                match self.waiting.peek() {
                    None => break None,
                    Some(Reverse((due, generation, id))) => {
                        if self.jobs.get(id).is_some_and(|j| {
                            j.generation == *generation && j.state == State::Waiting
                        }) {
                            break Some(*due);
                        }
                        self.waiting.pop();
                    }
                }
            };
        let probe = match self.breaker.permit_at() {
            Some(at) if !self.ready.is_empty() => Some(at),
            _ => None,
        };
        [retry, probe].into_iter().flatten().min()
    }

    /// Applies the result of an attempt finished at `now` (`unix_ms` for dead letters).
    pub fn finish(
        &mut self,
        id: &str,
        attempt: Attempt,
        now: Instant,
        unix_ms: u64,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Some(job) = self.jobs.get_mut(id) else {
            return effects;
        };
        let State::InFlight { probe } = job.state else {
            return effects;
        };
        self.in_flight -= 1;
        job.tries += 1;
        let verdict = classify(&attempt);
        job.last = Some(attempt);
        match verdict {
            Verdict::Delivered => {
                job.state = State::Finishing;
                effects.push(Effect::Ack(id.to_owned()));
                self.target_up(now, unix_ms, &mut effects);
            }
            Verdict::Reject => {
                job.counted += job.unconfirmed + 1;
                job.unconfirmed = 0;
                job.state = State::Finishing;
                let dl = dead_letter(job, unix_ms);
                effects.push(Effect::DeadLetter(id.to_owned(), dl));
                self.target_up(now, unix_ms, &mut effects);
            }
            Verdict::Retry { retry_after } => {
                self.failed(id, probe, retry_after, now, unix_ms, &mut effects)
            }
        }
        effects
    }

    fn failed(
        &mut self,
        id: &str,
        probe: bool,
        retry_after: Option<Duration>,
        now: Instant,
        unix_ms: u64,
        effects: &mut Vec<Effect>,
    ) {
        // Probes and attempts that overlapped an open breaker are outage failures: not counted.
        let counts = !probe && !self.breaker.is_open();
        if counts {
            self.jobs.get_mut(id).expect("held").unconfirmed += 1;
            self.suspects.insert(id.to_owned());
        }
        if self.breaker.failure(now) == Some(Transition::Opened) {
            effects.push(Effect::BreakerOpened);
            // An outage: none of these failures were the webhooks' fault.
            for id in self.suspects.drain() {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.unconfirmed = 0;
                }
            }
        }
        let job = self.jobs.get_mut(id).expect("held");
        effects.push(Effect::Persist {
            id: id.to_owned(),
            tries: job.tries,
            counted: job.counted,
        });
        if job.counted >= self.policy.max_attempts {
            job.state = State::Finishing;
            effects.push(Effect::DeadLetter(id.to_owned(), dead_letter(job, unix_ms)));
            return;
        }
        let delay = self
            .policy
            .backoff
            .delay(job.tries, retry_after, &mut self.rng);
        job.gated = false;
        schedule(
            &mut self.waiting,
            &mut self.generation,
            id,
            job,
            now + delay,
        );
    }

    /// The target answered: its earlier failures of other webhooks were their own.
    fn target_up(&mut self, now: Instant, unix_ms: u64, effects: &mut Vec<Effect>) {
        if self.breaker.success() == Some(Transition::Closed) {
            effects.push(Effect::BreakerClosed);
        }
        for id in std::mem::take(&mut self.suspects) {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if job.unconfirmed == 0 {
                continue;
            }
            job.counted += job.unconfirmed;
            job.unconfirmed = 0;
            effects.push(Effect::Persist {
                id: id.clone(),
                tries: job.tries,
                counted: job.counted,
            });
            match job.state {
                State::Ready | State::Waiting if job.counted >= self.policy.max_attempts => {
                    job.state = State::Finishing;
                    effects.push(Effect::DeadLetter(id.clone(), dead_letter(job, unix_ms)));
                }
                // Released from waiting for this verdict: its backoff is over.
                State::Waiting if job.gated => {
                    schedule(&mut self.waiting, &mut self.generation, &id, job, now);
                }
                _ => {}
            }
        }
    }

    /// An attempt that ended without a result (shutdown): the webhook stays pending in Redis
    /// and is dropped here.
    pub fn abandon(&mut self, id: &str) {
        self.suspects.remove(id);
        if let Some(job) = self.jobs.remove(id)
            && let State::InFlight { probe } = job.state
        {
            self.in_flight -= 1;
            if probe {
                self.breaker.probe_abandoned();
            }
        }
    }

    /// The webhook's acknowledgement or dead letter is written: forget it.
    pub fn finished(&mut self, id: &str) {
        self.suspects.remove(id);
        self.jobs.remove(id);
    }

    /// Moves due retries to the ready queue; a retry still waiting for a verdict on its
    /// unconfirmed failures waits up to one more breaker cooldown.
    fn promote_due(&mut self, now: Instant) {
        while let Some(Reverse((due, generation, _))) = self.waiting.peek() {
            if *due > now {
                break;
            }
            let generation = *generation;
            let Reverse((_, _, id)) = self.waiting.pop().expect("peeked");
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if job.generation != generation || job.state != State::Waiting {
                continue;
            }
            if job.unconfirmed > 0 && !job.gated {
                job.gated = true;
                let until = now + self.policy.breaker_cooldown;
                schedule(&mut self.waiting, &mut self.generation, &id, job, until);
                continue;
            }
            job.state = State::Ready;
            self.ready.push_back(id);
        }
    }
}

fn schedule(
    waiting: &mut BinaryHeap<Reverse<(Instant, u64, String)>>,
    counter: &mut u64,
    id: &str,
    job: &mut Job,
    due: Instant,
) {
    *counter += 1;
    job.generation = *counter;
    job.state = State::Waiting;
    waiting.push(Reverse((due, *counter, id.to_owned())));
}

fn dead_letter(job: &Job, unix_ms: u64) -> DeadLetter {
    let (last_status, last_error) = match &job.last {
        Some(Attempt::Status { status, .. }) => (Some(*status), format!("HTTP {status}")),
        Some(Attempt::Failed(e)) => (None, e.clone()),
        None => (None, String::new()),
    };
    DeadLetter {
        attempts: job.counted,
        last_status,
        last_error,
        failed_at: unix_ms,
    }
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
