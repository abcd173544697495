//! The dispatcher's Redis work, run in tasks so the loop never waits a round trip:
//! acknowledgements (batched), dead letters, counts, loading bodies and counts of held
//! webhooks, keeping held entries claimed, cleaning up orphaned counts, and the health URL.
//! Each task's result comes back as an `Event`. Loading is in `load.rs`, the periodic upkeep
//! and the health URL in `upkeep.rs`.

mod load;
mod trace;
mod upkeep;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::dispatch::Event;
use super::policy::jobs::Jobs;
use crate::error::Report;
use crate::http::client::Client as Http;
use crate::log_limit::LogLimit;
use crate::metrics::ClientMetrics;
use crate::stream::{DeadLetter, DeadLettered, Store, StoreError, Stored, StreamId, Trace};

/// The phases of a cleanup pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cleanup {
    /// Counts in the per-stream hash of earlier versions.
    Legacy,
    /// Counts of entries no longer pending.
    Counts,
    /// Records of webhooks retention removed.
    Records,
}

/// Diagnostic writes (outcome records, attempt counts) Redis refused, e.g. `OOM` when it is
/// full: deliveries go on without them, and the operator must hear of it, a few lines a
/// minute. (Connection failures are logged by the store as `redis unreachable`.)
static REFUSED: LogLimit = LogLimit::new("bookkeeping writes refused by redis");

/// Dead letters Redis did not take (refused, e.g. `OOM` when it is full, or unreachable):
/// each is retried at every housekeeping round, so with many the log repeated them all every
/// few seconds. Nothing is lost meanwhile: the webhook stays pending until it is written.
static DEAD_LETTERS: LogLimit = LogLimit::new("dead letters not written yet, retried");

/// Logs a diagnostic write's failure: a refusal at warn (rate-limited), anything else at debug.
fn bookkeeping_failed(what: &str, e: &StoreError, consequence: &str) {
    match e.is_refusal() {
        true => REFUSED.warn(|| format!("{what} failed: {}; {consequence}", Report(e))),
        false => log::debug!("{what} failed: {}", Report(e)),
    }
}

/// How often failed writes are retried, held entries re-claimed and gauges refreshed.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// How often orphaned attempt counts are looked for.
pub(super) const CLEANUP_EVERY: Duration = Duration::from_secs(300);
/// Ids per `XCLAIM … JUSTID`.
pub(super) const TOUCH_CHUNK: usize = 1000;
/// A body fetch aims at about this many bytes.
pub(super) const FETCH_BYTES: usize = 1024 * 1024;

pub struct Writes {
    pub store: Arc<Store>,
    pub consumer: String,
    pub health: Option<Arc<Http>>,
    pub tx: mpsc::UnboundedSender<Event>,
    tasks: JoinSet<()>,
    acks: Vec<StreamId>,
    acks_in_flight: usize,
    /// Dead letters and forgets being written.
    finals_in_flight: usize,
    persists: Vec<(StreamId, Stored)>,
    persisting: bool,
    health_in_flight: bool,
    pub next_housekeeping: Instant,
    /// Records of finished attempts not yet written, one batch being written.
    traces: Vec<(StreamId, Trace)>,
    tracing: bool,
    /// The last failed attempt of each held webhook, for its dead-letter record.
    failing: HashMap<StreamId, Trace>,
    /// Where the cleanup of orphaned counts and records is: `None` between passes.
    cleanup: Option<(Cleanup, u64)>,
    next_cleanup: Instant,
}

impl Writes {
    pub fn new(
        store: Arc<Store>,
        consumer: String,
        health: Option<Arc<Http>>,
        tx: mpsc::UnboundedSender<Event>,
    ) -> Self {
        let now = Instant::now();
        Writes {
            store,
            consumer,
            health,
            tx,
            tasks: JoinSet::new(),
            acks: Vec::new(),
            acks_in_flight: 0,
            finals_in_flight: 0,
            persists: Vec::new(),
            persisting: false,
            health_in_flight: false,
            next_housekeeping: now + HOUSEKEEPING_EVERY,
            traces: Vec::new(),
            tracing: false,
            failing: HashMap::new(),
            cleanup: None,
            next_cleanup: now,
        }
    }

    /// Webhooks whose final write (acknowledgement, dead letter) is queued or running, and
    /// counts not yet saved: what a shutdown waits for.
    pub fn unfinished(&self) -> usize {
        self.acks.len()
            + self.acks_in_flight
            + self.finals_in_flight
            + self.persists.len()
            + usize::from(self.persisting)
    }

    fn spawn<F>(&mut self, task: F)
    where
        F: std::future::Future<Output = Event> + Send + 'static,
    {
        while self.tasks.try_join_next().is_some() {}
        let tx = self.tx.clone();
        crate::task::spawn_in(&mut self.tasks, async move {
            let _ = tx.send(task.await);
        });
    }

    pub fn ack(&mut self, id: StreamId) {
        self.acks.push(id);
    }

    pub fn persist(&mut self, id: StreamId, stored: Stored) {
        self.persists.push((id, stored));
    }

    /// Starts queued acknowledgements (two batches at most in flight: under load one `XACK`
    /// carries many ids) and counts.
    pub fn flush(&mut self) {
        if !self.acks.is_empty() && self.acks_in_flight < 2 {
            self.acks_in_flight += 1;
            let ids = std::mem::take(&mut self.acks);
            let store = self.store.clone();
            self.spawn(async move {
                let result = store.ack(&ids).await;
                Event::Acked(ids, result)
            });
        }
        if !self.persists.is_empty() && !self.persisting {
            self.persisting = true;
            let counts = std::mem::take(&mut self.persists);
            let store = self.store.clone();
            self.spawn(async move { Event::Persisted(store.save_attempts(&counts).await) });
        }
        self.flush_traces();
    }

    pub fn acked(
        &mut self,
        jobs: &mut Jobs,
        ids: Vec<StreamId>,
        result: Result<(), StoreError>,
        now: Instant,
    ) {
        self.acks_in_flight -= 1;
        match result {
            Ok(()) => ids.iter().for_each(|id| jobs.written(*id, now)),
            Err(e) => {
                log::warn!(
                    "acknowledging {} deliveries failed, will retry: {}",
                    ids.len(),
                    Report(&e)
                );
                ids.iter().for_each(|id| jobs.write_failed(*id));
            }
        }
    }

    pub fn persisted(&mut self, result: Result<(), StoreError>) {
        self.persisting = false;
        if let Err(e) = result {
            bookkeeping_failed(
                "saving attempt counts",
                &e,
                "deliveries go on (a lost count can only delay a dead letter, never cause one)",
            );
        }
    }

    pub fn dead_letter(&mut self, id: StreamId, info: DeadLetter) {
        let source = self
            .failing
            .get(&id)
            .map(|t| t.source.clone())
            .unwrap_or_default();
        self.finals_in_flight += 1;
        let (store, consumer) = (self.store.clone(), self.consumer.clone());
        self.spawn(async move {
            let result = store.dead_letter(id, &consumer, &info).await;
            if let Ok(DeadLettered::Moved(dlq_id)) = &result {
                log::warn!(
                    "dead-lettered {id} as {dlq_id} after {} counted attempts: {}",
                    info.attempts,
                    info.last_error
                );
            }
            Event::DeadLettered(id, result, info, source)
        });
    }

    pub fn dead_lettered(
        &mut self,
        jobs: &mut Jobs,
        metrics: &ClientMetrics,
        id: StreamId,
        (result, info, source): (Result<DeadLettered, StoreError>, DeadLetter, String),
        now: Instant,
    ) {
        self.finals_in_flight -= 1;
        match result {
            Ok(DeadLettered::Moved(dlq_id)) => {
                metrics.deliveries.inc("dead_lettered");
                self.trace_dead(id, dlq_id, &info, source);
                jobs.written(id, now);
            }
            Ok(DeadLettered::NotPending) => {
                self.untrace(id);
                log::info!(
                    "{id} was no longer pending for this client when dead-lettering it (acknowledged or claimed elsewhere): nothing written"
                );
                jobs.written(id, now);
            }
            Ok(DeadLettered::Gone) => {
                self.untrace(id);
                log::error!(
                    "{id} was deleted while pending (stream trimmed by hand?): nothing to dead-letter"
                );
                jobs.written(id, now);
            }
            Err(e) => {
                DEAD_LETTERS
                    .warn(|| format!("dead-lettering {id} failed, will retry: {}", Report(&e)));
                jobs.write_failed(id);
            }
        }
    }

    /// An entry whose payload was deleted while pending: acknowledged, nothing to deliver.
    pub fn forget(&mut self, id: StreamId) {
        log::error!(
            "entry {id} was deleted while pending (stream trimmed by hand?): nothing to deliver, acknowledging it"
        );
        self.finals_in_flight += 1;
        let store = self.store.clone();
        self.spawn(async move { Event::Forgotten(id, store.ack(&[id]).await) });
    }

    pub fn forgotten(
        &mut self,
        jobs: &mut Jobs,
        id: StreamId,
        result: Result<(), StoreError>,
        now: Instant,
    ) {
        self.finals_in_flight -= 1;
        match result {
            Ok(()) => {
                self.untrace(id);
                jobs.written(id, now);
            }
            Err(_) => jobs.write_failed(id),
        }
    }
}
