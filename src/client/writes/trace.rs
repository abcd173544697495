//! Recording what became of each webhook (see `stream::trace`): a record per attempt, written
//! in batches, one batch in flight; the last failure of each held webhook is kept in memory
//! so that its dead-letter record still shows the app's last answer. Diagnostic only: a
//! failed write is dropped, never retried at the cost of deliveries; logged at WARN
//! (rate-limited) when Redis refused it, at DEBUG when Redis was away (the store says so).

use super::{Event, Writes};
use crate::client::deliver::Attempted;
use crate::client::policy::outcome::Verdict;
use crate::stream::{DeadLetter, State, StoreError, StreamId, Trace};

/// Records queued beyond this are dropped (Redis unreachable for long): memory stays bounded.
const MAX_QUEUED: usize = 10_000;

impl Writes {
    /// Records one finished attempt.
    pub fn trace(&mut self, a: &Attempted, verdict: Verdict, unix_ms: u64) {
        let delivered = verdict == Verdict::Delivered;
        let answer = a.outcome.answer.as_ref();
        let trace = Trace {
            state: if delivered {
                State::Delivered
            } else {
                State::Retrying
            },
            source: a.source.clone(),
            attempt: a.attempt,
            status: answer.map(|r| r.status),
            error: (!delivered).then(|| match answer {
                Some(r) if r.early => format!("HTTP {} before reading the whole body", r.status),
                _ => a.outcome.attempt.describe(),
            }),
            took_ms: u64::try_from(a.took.as_millis()).unwrap_or(u64::MAX),
            at: unix_ms,
            answer: answer
                .filter(|_| !delivered)
                .map(|r| String::from_utf8_lossy(&r.body_start).into_owned()),
            dlq_id: None,
            target: (a.target != crate::client::targets::DEFAULT).then(|| a.target.clone()),
        };
        if delivered {
            self.failing.remove(&a.id);
        } else {
            self.failing.insert(a.id, trace.clone());
        }
        self.queue_trace(a.id, trace);
    }

    /// Records a dead letter, with the last failure when it is known.
    pub fn trace_dead(&mut self, id: StreamId, dlq_id: String, info: &DeadLetter, source: String) {
        let mut trace = self.failing.remove(&id).unwrap_or(Trace {
            state: State::Dead,
            source,
            attempt: 0,
            status: info.last_status,
            error: Some(info.last_error.clone()),
            took_ms: 0,
            at: info.failed_at,
            answer: None,
            dlq_id: None,
            target: None,
        });
        trace.state = State::Dead;
        trace.dlq_id = Some(dlq_id);
        trace.at = info.failed_at;
        self.queue_trace(id, trace);
    }

    /// The webhook left this client without a record to add (acknowledged elsewhere).
    pub fn untrace(&mut self, id: StreamId) {
        self.failing.remove(&id);
    }

    fn queue_trace(&mut self, id: StreamId, trace: Trace) {
        if self.traces.len() < MAX_QUEUED {
            self.traces.push((id, trace));
        }
    }

    /// Records queued or being written: a shutdown writes them too (within its deadline).
    pub fn unwritten_traces(&self) -> usize {
        self.traces.len() + usize::from(self.tracing)
    }

    /// Starts writing the queued records, unless a batch is being written.
    pub fn flush_traces(&mut self) {
        if self.traces.is_empty() || self.tracing {
            return;
        }
        self.tracing = true;
        let batch = std::mem::take(&mut self.traces);
        let store = self.store.clone();
        self.spawn(async move { Event::Traced(store.record_traces(&batch).await) });
    }

    pub fn traced(&mut self, result: Result<(), StoreError>) {
        self.tracing = false;
        if let Err(e) = result {
            super::bookkeeping_failed(
                "recording delivery outcomes",
                &e,
                "deliveries go on; events and the inspector miss these outcomes",
            );
        }
    }
}
