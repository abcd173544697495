//! The dispatcher's Redis work, run in tasks so the loop never waits a round trip:
//! acknowledgements (batched), dead letters, counts, loading bodies and counts of held
//! webhooks, keeping held entries claimed, cleaning up orphaned counts, and the health URL.
//! Each task's result comes back as an `Event`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::dispatch::{Event, unix_ms};
use super::policy::jobs::{Effect, Jobs};
use crate::error::Report;
use crate::http::client::{Client as Http, OutRequest};
use crate::metrics::ClientMetrics;
use crate::stream::{DeadLetter, DeadLettered, Entry, Store, StoreError, Stored, StreamId};

/// How often failed writes are retried, held entries re-claimed and gauges refreshed.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// How often orphaned attempt counts are looked for.
const CLEANUP_EVERY: Duration = Duration::from_secs(300);
/// Ids per `XCLAIM … JUSTID`.
const TOUCH_CHUNK: usize = 1000;
/// A body fetch aims at about this many bytes.
const FETCH_BYTES: usize = 1024 * 1024;

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
    /// Where the orphaned-count cleanup is: `None` between passes.
    cleanup: Option<(bool, u64)>,
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
        self.tasks.spawn(async move {
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
            // Lost counts can only delay a dead letter, never cause one.
            log::debug!("saving attempt counts failed: {}", Report(&e));
        }
    }

    pub fn dead_letter(&mut self, id: StreamId, info: DeadLetter) {
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
            Event::DeadLettered(id, result)
        });
    }

    pub fn dead_lettered(
        &mut self,
        jobs: &mut Jobs,
        metrics: &ClientMetrics,
        id: StreamId,
        result: Result<DeadLettered, StoreError>,
        now: Instant,
    ) {
        self.finals_in_flight -= 1;
        match result {
            Ok(DeadLettered::Moved(_)) => {
                metrics.deliveries.inc("dead_lettered");
                jobs.written(id, now);
            }
            Ok(DeadLettered::NotPending) => {
                log::info!(
                    "{id} was no longer pending for this client when dead-lettering it (acknowledged or claimed elsewhere): nothing written"
                );
                jobs.written(id, now);
            }
            Ok(DeadLettered::Gone) => {
                log::error!(
                    "{id} was deleted while pending (stream trimmed by hand?): nothing to dead-letter"
                );
                jobs.written(id, now);
            }
            Err(e) => {
                log::warn!("dead-lettering {id} failed, will retry: {}", Report(&e));
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
            Ok(()) => jobs.written(id, now),
            Err(_) => jobs.write_failed(id),
        }
    }

    /// Loads the bodies of `ids` (with their sizes, 0 when unknown): sizes first where
    /// unknown (so each fetch's deadline fits its bytes), then in fetches of about a MiB.
    pub fn fetch(&mut self, ids: Vec<(StreamId, usize)>) {
        let (store, tx) = (self.store.clone(), self.tx.clone());
        self.spawn(async move {
            let unknown: Vec<StreamId> = ids
                .iter()
                .filter(|(_, s)| *s == 0)
                .map(|(i, _)| *i)
                .collect();
            let sizes = match store.sizes(&unknown).await {
                Ok(s) => s,
                Err(e) => return Event::Fetched(ids.iter().map(|(i, _)| *i).collect(), Err(e)),
            };
            let mut sizes = sizes.into_iter();
            let mut chunk: Vec<StreamId> = Vec::new();
            let mut bytes = 0;
            for (id, size) in ids {
                let size = match size {
                    0 => match sizes.next().flatten() {
                        Some(s) => s,
                        None => {
                            let _ = tx.send(Event::Fetched(vec![id], Ok(vec![None])));
                            continue;
                        }
                    },
                    s => s,
                };
                if !chunk.is_empty() && bytes + size > FETCH_BYTES {
                    let done = std::mem::take(&mut chunk);
                    let r = store.fetch(&done, bytes).await;
                    let _ = tx.send(Event::Fetched(done, r));
                    bytes = 0;
                }
                chunk.push(id);
                bytes += size;
            }
            let r = store.fetch(&chunk, bytes).await;
            Event::Fetched(chunk, r)
        });
    }

    pub fn fetched(
        &mut self,
        jobs: &mut Jobs,
        ids: Vec<StreamId>,
        result: Result<Vec<Option<Entry>>, StoreError>,
        now: Instant,
    ) -> Vec<Effect> {
        match result {
            Ok(entries) => ids
                .into_iter()
                .zip(entries)
                .flat_map(|(id, entry)| jobs.fetched(id, entry))
                .collect(),
            Err(e) => {
                log::debug!("loading {} bodies failed: {}", ids.len(), Report(&e));
                ids.iter().for_each(|id| jobs.fetch_failed(*id, now));
                Vec::new()
            }
        }
    }

    /// Loads the stored counts of pending ids the client does not hold yet.
    pub fn load_counts(&mut self, ids: Vec<StreamId>, started: Instant) {
        let store = self.store.clone();
        self.spawn(async move {
            let result = store.load_attempts(&ids).await;
            Event::Counts(ids, started, result)
        });
    }

    pub fn counted(
        &mut self,
        jobs: &mut Jobs,
        ids: Vec<StreamId>,
        started: Instant,
        result: Result<Vec<Stored>, StoreError>,
        now: Instant,
    ) -> Vec<Effect> {
        let counts = result.unwrap_or_else(|e| {
            // Zero counts can only delay a dead letter, never cause one.
            log::debug!(
                "loading attempt counts failed, starting from zero: {}",
                Report(&e)
            );
            vec![Stored::default(); ids.len()]
        });
        let unix = unix_ms();
        ids.into_iter()
            .zip(counts)
            .flat_map(|(id, stored)| jobs.adopt(id, stored, started, now, unix))
            .collect()
    }

    /// Asks the health URL (one question at a time).
    pub fn check_health(&mut self) {
        let Some(http) = self.health.clone() else {
            return;
        };
        if std::mem::replace(&mut self.health_in_flight, true) {
            return;
        }
        self.spawn(async move {
            let req = OutRequest {
                method: "GET",
                headers: &[],
                body: b"",
            };
            let up = match http.send(&req).await {
                Ok(answer) => (200..300).contains(&answer.status),
                Err(e) => {
                    log::debug!("RELAY_TARGET_HEALTH_URL: {e}");
                    false
                }
            };
            Event::Health(up)
        });
    }

    pub fn health_answered(&mut self) {
        self.health_in_flight = false;
    }

    /// Every `HOUSEKEEPING_EVERY`: failed final writes again, held entries re-claimed,
    /// orphaned counts cleaned up now and then, the held gauge.
    pub fn housekeeping(&mut self, jobs: &mut Jobs, metrics: &ClientMetrics) -> Vec<Effect> {
        let now = Instant::now();
        self.next_housekeeping = now + HOUSEKEEPING_EVERY;
        metrics
            .held
            .store(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for ids in jobs.held().chunks(TOUCH_CHUNK) {
            let (store, consumer, ids) = (self.store.clone(), self.consumer.clone(), ids.to_vec());
            self.tasks.spawn(async move {
                if let Err(e) = store.touch(&consumer, &ids).await {
                    log::debug!("re-claiming held entries failed: {}", Report(&e));
                }
            });
        }
        if self.cleanup.is_none() && now >= self.next_cleanup {
            self.next_cleanup = now + CLEANUP_EVERY;
            self.cleanup = Some((true, 0));
            self.clean_step();
        }
        jobs.retry_writes()
    }

    fn clean_step(&mut self) {
        let Some((legacy, cursor)) = self.cleanup else {
            return;
        };
        let store = self.store.clone();
        self.spawn(async move { Event::Cleaned(store.cleanup_attempts(legacy, cursor).await) });
    }

    pub fn cleaned(&mut self, result: Result<(u64, u64), StoreError>) {
        let Some((legacy, _)) = self.cleanup else {
            return;
        };
        match result {
            Ok((next, removed)) => {
                if removed > 0 {
                    log::info!("removed {removed} attempt counts of entries no longer pending");
                }
                self.cleanup = match (next, legacy) {
                    (0, true) => Some((false, 0)),
                    (0, false) => None,
                    (next, legacy) => Some((legacy, next)),
                };
                self.clean_step();
            }
            Err(e) => {
                log::debug!("cleaning up attempt counts failed: {}", Report(&e));
                self.cleanup = None;
            }
        }
    }
}
