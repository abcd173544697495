//! `crm-relay client`: reads the stream through a consumer group and delivers every webhook
//! to the local app, at least once.
//!
//! The feed task reads entries; the dispatcher (here) holds them in `Jobs`, starts up to
//! `RELAY_CONCURRENCY` delivery tasks, and carries out the effects the policy decides:
//! acknowledgements, dead letters, stored attempt counts, breaker log lines.

pub mod deliver;
pub mod feed;
pub mod policy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::client::policy::backoff::Rng;
use crate::client::policy::outcome::{Attempt, Verdict, classify};
use crate::config::ClientConfig;
use crate::http::client::Client;
use crate::metrics::ClientMetrics;
use crate::shutdown::Shutdown;
use crate::stream::{Reader, Record, Store, StoreError};
use feed::{Feed, Incoming};
use policy::jobs::{Effect, Jobs, Policy, Start};

/// How often held entries are re-claimed (so other clients' `XAUTOCLAIM` leaves them alone)
/// and failed Redis writes are retried.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// Entries idle this long in any consumer's pending list are claimed: six re-claim periods,
/// so a live client (which touches everything it holds every `HOUSEKEEPING_EVERY`, in-flight
/// attempts included) never loses an entry to another, whatever its forward timeout.
const CLAIM_MIN_IDLE: Duration = Duration::from_secs(30);
/// After SIGTERM, how long in-flight deliveries get to finish.
const DRAIN: Duration = Duration::from_secs(8);

/// Runs the client until `shutdown`. Fails only if the group cannot be set up at start.
pub async fn run(
    config: ClientConfig,
    store: Arc<Store>,
    metrics: Arc<ClientMetrics>,
    mut shutdown: Shutdown,
) -> Result<(), StoreError> {
    ensure_group(&store, &config.group, &mut shutdown).await?;
    let capacity = Arc::new(Semaphore::new((config.concurrency * 16).max(64)));
    let (tx, rx) = mpsc::channel(4);
    let feed = Feed {
        reader: Reader::new(
            &config.common.redis_url,
            config.common.ca_pem.as_deref(),
            &config.common.stream,
            &config.group,
            &config.consumer,
        )?,
        store: store.clone(),
        group: config.group.clone(),
        consumer: config.consumer.clone(),
        claim_min_idle: CLAIM_MIN_IDLE,
        capacity,
        out: tx,
    };
    let feed_task = tokio::spawn(feed.run(shutdown.clone()));
    let mut dispatcher = Dispatcher::new(&config, store, metrics);
    dispatcher.run(rx, shutdown).await;
    feed_task.abort();
    if dispatcher.feed_lost {
        return Err(StoreError::Protocol("the stream reader stopped".into()));
    }
    Ok(())
}

/// Creates the consumer group, retrying while Redis is unreachable.
async fn ensure_group(
    store: &Store,
    group: &str,
    shutdown: &mut Shutdown,
) -> Result<(), StoreError> {
    let mut warned = false;
    loop {
        match store.create_group(group).await {
            Ok(created) => {
                if created {
                    log::info!("created consumer group {group} at 0 on {}", store.stream());
                }
                return Ok(());
            }
            Err(e @ (StoreError::Connection(_) | StoreError::Timeout)) => {
                if !std::mem::replace(&mut warned, true) {
                    log::warn!("redis unreachable at start, retrying: {e}");
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait() => return Ok(()),
        }
    }
}

/// A finished attempt.
struct Done {
    id: String,
    attempt: Attempt,
    /// How long the attempt took.
    took: Duration,
    /// The record's `received_at` (ms), for the end-to-end time.
    received_at: u64,
}

/// Ids acknowledged together, and how the write went.
type AckBatch = (Vec<String>, Result<(), StoreError>);

struct Dispatcher {
    jobs: Jobs,
    permits: HashMap<String, OwnedSemaphorePermit>,
    store: Arc<Store>,
    client: Arc<Client>,
    group: String,
    consumer: String,
    dlq: String,
    /// Acks and dead letters whose write failed: retried at housekeeping.
    unwritten: Vec<Effect>,
    tasks: JoinSet<Done>,
    /// Which webhook each delivery task carries, to recover from a task that panicked.
    task_ids: HashMap<tokio::task::Id, String>,
    metrics: Arc<ClientMetrics>,
    /// Delivered ids waiting for their acknowledgement to be written.
    ack_queue: Vec<String>,
    /// Acknowledgement batches in flight: the dispatcher never waits a Redis round trip per
    /// delivery, and under load one `XACK` carries many ids.
    acks: JoinSet<AckBatch>,
    next_housekeeping: Instant,
    /// Set when the feed task ended without a shutdown.
    feed_lost: bool,
}

impl Dispatcher {
    fn new(config: &ClientConfig, store: Arc<Store>, metrics: Arc<ClientMetrics>) -> Self {
        let policy = Policy {
            concurrency: config.concurrency,
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            breaker_threshold: config.breaker_threshold,
            breaker_cooldown: config.breaker_cooldown,
        };
        Dispatcher {
            jobs: Jobs::new(policy, Rng::from_entropy()),
            permits: HashMap::new(),
            store,
            client: Arc::new(
                Client::new(
                    config.target.clone(),
                    config.forward_timeout,
                    config.concurrency,
                    config.tls.clone(),
                )
                .expect("the target and its TLS settings were validated with the configuration"),
            ),
            group: config.group.clone(),
            consumer: config.consumer.clone(),
            dlq: config.common.dlq_stream.clone(),
            unwritten: Vec::new(),
            tasks: JoinSet::new(),
            task_ids: HashMap::new(),
            metrics,
            ack_queue: Vec::new(),
            acks: JoinSet::new(),
            next_housekeeping: Instant::now() + HOUSEKEEPING_EVERY,
            feed_lost: false,
        }
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Vec<Incoming>>, mut shutdown: Shutdown) {
        loop {
            self.start_ready();
            self.flush_acks();
            let wake = self
                .jobs
                .next_wakeup()
                .map_or(self.next_housekeeping, |w| w.min(self.next_housekeeping));
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(done) = self.tasks.join_next_with_id() => self.on_done(done).await,
                Some(acked) = self.acks.join_next() => self.on_acked(acked),
                batch = rx.recv() => match batch {
                    Some(batch) => self.take(batch).await,
                    None if shutdown.is_triggered() => break,
                    None => {
                        // The feed ended without a shutdown (a bug): stop, so that the exit
                        // code says so and systemd restarts the client.
                        log::error!("the stream reader stopped unexpectedly; stopping the client");
                        self.feed_lost = true;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => self.housekeeping().await,
            }
        }
        drop(rx);
        self.drain().await;
    }

    /// Starts every attempt the policy allows now.
    fn start_ready(&mut self) {
        while let Some(Start { id, attempt, .. }) = self.jobs.next(Instant::now()) {
            let entry = self.jobs.entry(&id).expect("started jobs are held").clone();
            let client = self.client.clone();
            let webhook = id.clone();
            let handle = self.tasks.spawn(async move {
                let started = Instant::now();
                let (result, received_at) = match entry.fields.as_deref().map(Record::from_fields) {
                    Some(Ok(record)) => {
                        let result = deliver::deliver(&client, &entry, &record, attempt).await;
                        (result, record.received_at)
                    }
                    // Checked on intake; kept total so a bug costs one attempt, not a panic.
                    _ => (Attempt::Failed("undecodable record".into()), 0),
                };
                Done {
                    id: entry.id.clone(),
                    attempt: result,
                    took: started.elapsed(),
                    received_at,
                }
            });
            self.task_ids.insert(handle.id(), webhook);
        }
    }

    /// Takes new entries; refuses duplicates and entries that cannot be delivered.
    async fn take(&mut self, batch: Vec<Incoming>) {
        for incoming in batch {
            let Incoming {
                entry,
                tries,
                counted,
                permit,
            } = incoming;
            if self.jobs.contains(&entry.id) {
                continue; // re-read while we hold it; the permit goes back
            }
            let Some(fields) = &entry.fields else {
                log::error!(
                    "entry {} was deleted while pending (stream trimmed?): nothing to deliver, acknowledging it",
                    entry.id
                );
                self.write(Effect::Ack(entry.id.clone())).await;
                continue;
            };
            if let Err(e) = Record::from_fields(fields) {
                log::error!(
                    "entry {} is not a valid record ({e}): dead-lettering it",
                    entry.id
                );
                let id = entry.id.clone();
                let dl = crate::stream::DeadLetter {
                    attempts: 0,
                    last_status: None,
                    last_error: format!("undecodable record: {e}"),
                    failed_at: unix_ms(),
                };
                self.jobs.hold(entry, tries, counted);
                self.permits.insert(id.clone(), permit);
                self.write(Effect::DeadLetter(id, dl)).await;
                continue;
            }
            self.permits.insert(entry.id.clone(), permit);
            self.jobs.add(entry, tries, counted);
        }
    }

    async fn on_done(&mut self, done: Result<(tokio::task::Id, Done), tokio::task::JoinError>) {
        let done = match done {
            Ok((task, done)) => {
                self.task_ids.remove(&task);
                done
            }
            Err(e) => {
                // The task panicked: that attempt is lost; the webhook stays pending in Redis
                // and is picked up again by the next pending re-read.
                log::error!("delivery task failed: {e}");
                if let Some(id) = self.task_ids.remove(&e.id()) {
                    self.jobs.abandon(&id);
                    self.permits.remove(&id);
                }
                return;
            }
        };
        let Done {
            id,
            attempt,
            took,
            received_at,
        } = done;
        match &attempt {
            Attempt::Status { status, .. } => {
                log::debug!("delivery id={id} status={status} ms={}", took.as_millis())
            }
            Attempt::Failed(e) => log::debug!("delivery id={id} failed: {e}"),
        }
        self.metrics.delivery.observe(took);
        match classify(&attempt) {
            Verdict::Delivered => {
                self.metrics.deliveries.inc("delivered");
                let e2e_ms = unix_ms().saturating_sub(received_at);
                self.metrics
                    .end_to_end
                    .observe(Duration::from_millis(e2e_ms));
            }
            Verdict::Retry { .. } => self.metrics.deliveries.inc("retried"),
            Verdict::Reject => {}
        }
        for effect in self.jobs.finish(&id, attempt, Instant::now(), unix_ms()) {
            self.write(effect).await;
        }
        self.metrics.breaker_open.store(
            self.jobs.breaker_open(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Carries out one effect; failed acks and dead letters are kept for a retry.
    async fn write(&mut self, effect: Effect) {
        match &effect {
            Effect::Ack(id) => self.ack_queue.push(id.clone()),
            Effect::DeadLetter(id, info) => {
                let Some(entry) = self.jobs.entry(id) else {
                    return;
                };
                match self
                    .store
                    .dead_letter(&self.dlq, &self.group, entry, info)
                    .await
                {
                    Ok(dlq_id) => {
                        self.metrics.deliveries.inc("dead_lettered");
                        log::warn!(
                            "dead-lettered {id} as {dlq_id} after {} attempts: {}",
                            info.attempts,
                            info.last_error
                        );
                        self.done(id);
                    }
                    Err(e) => {
                        log::warn!("dead-lettering {id} failed, will retry: {e}");
                        self.unwritten.push(effect);
                    }
                }
            }
            Effect::Persist { id, tries, counted } => {
                if let Err(e) = self.store.save_attempts(id, *tries, *counted).await {
                    log::debug!("saving attempt counts of {id} failed: {e}");
                }
            }
            Effect::BreakerOpened => {
                log::warn!("target failing: circuit breaker open, deliveries paused")
            }
            Effect::BreakerClosed => log::info!("target answering again: circuit breaker closed"),
        }
    }

    /// Writes queued acknowledgements, at most two batches at a time.
    fn flush_acks(&mut self) {
        if self.ack_queue.is_empty() || self.acks.len() >= 2 {
            return;
        }
        let ids = std::mem::take(&mut self.ack_queue);
        let (store, group) = (self.store.clone(), self.group.clone());
        self.acks.spawn(async move {
            let result = store.ack(&group, &ids).await;
            (ids, result)
        });
    }

    fn on_acked(&mut self, acked: Result<AckBatch, tokio::task::JoinError>) {
        match acked {
            Ok((ids, Ok(()))) => ids.iter().for_each(|id| self.done(id)),
            Ok((ids, Err(e))) => {
                log::warn!(
                    "acknowledging {} deliveries failed, will retry: {e}",
                    ids.len()
                );
                self.unwritten.extend(ids.into_iter().map(Effect::Ack));
            }
            Err(e) => log::error!("acknowledgement task failed: {e}"),
        }
    }

    fn done(&mut self, id: &str) {
        self.jobs.finished(id);
        self.permits.remove(id);
    }

    /// Retries failed writes and keeps held entries claimed by this consumer.
    async fn housekeeping(&mut self) {
        let now = Instant::now();
        if now < self.next_housekeeping {
            return;
        }
        self.next_housekeeping = now + HOUSEKEEPING_EVERY;
        for effect in std::mem::take(&mut self.unwritten) {
            self.write(effect).await;
        }
        let ids = self.jobs.ids();
        for chunk in ids.chunks(500) {
            if let Err(e) = self.store.touch(&self.group, &self.consumer, chunk).await {
                log::debug!("re-claiming held entries failed: {e}");
                break;
            }
        }
    }

    /// After shutdown: in-flight deliveries get `DRAIN` to finish and be acknowledged; what
    /// is still running then stays pending in Redis and is delivered after a restart.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + DRAIN;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(done)) => self.on_done(done).await,
                Ok(None) => break,
                Err(_) => {
                    log::warn!(
                        "{} deliveries still running at the deadline; they stay pending",
                        self.tasks.len()
                    );
                    self.tasks.shutdown().await;
                    break;
                }
            }
        }
        for effect in std::mem::take(&mut self.unwritten) {
            self.write(effect).await;
        }
        loop {
            self.flush_acks();
            match tokio::time::timeout_at(deadline, self.acks.join_next()).await {
                Ok(Some(acked)) => self.on_acked(acked),
                _ => break,
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
