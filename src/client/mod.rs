//! `crm-relay client`: reads the stream through a consumer group and delivers every webhook
//! to the local app, at least once.
//!
//! - [`feed`] reads from Redis: new entries when asked, pending ids, claims.
//! - [`dispatch`] owns every held webhook and starts deliveries; [`writes`] does its Redis
//!   work in tasks; [`report`] writes the log lines.
//! - [`deliver`] turns a record into the request the app receives; [`targets`] says where
//!   it goes (routes per source), [`sign`] signs it for the app.
//! - [`policy`] decides, purely: what to attempt, what counts, when to dead-letter.

mod deliver;
mod dispatch;
mod feed;
mod layout;
pub(crate) mod policy;
mod report;
mod sign;
mod targets;
mod writes;

pub use sign::Signer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::ClientConfig;
use crate::error::{Fatal, Report};
use crate::http::client::{Client as Http, Endpoint};
use crate::metrics::ClientMetrics;
use crate::ops::admin::{Admin, Role};
use crate::shutdown::Shutdown;
use crate::stream::{Store, StoreError};
use dispatch::Dispatcher;
use feed::Feed;
use policy::backoff::Rng;
use policy::jobs::{Jobs, Policy};
use targets::Destinations;
use writes::{HOUSEKEEPING_EVERY, Writes};

/// Entries idle this long in any consumer's pending list are claimed: six re-claim periods,
/// so a live client (which touches everything it holds every `HOUSEKEEPING_EVERY`, waiting
/// and in-flight webhooks included) never loses an entry to another, whatever its forward
/// timeout.
const CLAIM_MIN_IDLE: Duration = Duration::from_secs(6 * HOUSEKEEPING_EVERY.as_secs());
/// Bytes of bodies held for attempts: with the capacity, what bounds the client's memory.
const ACTIVE_BYTES: usize = 32 * 1024 * 1024;
/// Bytes of bodies kept while their webhooks wait for a retry.
const WAITING_BYTES: usize = 8 * 1024 * 1024;

/// The delivery policy of `config`.
pub fn policy(config: &ClientConfig) -> Policy {
    Policy {
        concurrency: config.concurrency,
        max_attempts: config.max_attempts,
        backoff: config.backoff,
        breaker_threshold: config.breaker_threshold,
        breaker_cooldown: config.breaker_cooldown,
        // The target is "up around a failure" if it answered within a cooldown of it, and
        // never less than an attempt may take.
        window: config.breaker_cooldown.max(config.forward_timeout),
        capacity: (config.concurrency * 16).max(64),
        active_bytes: ACTIVE_BYTES,
        waiting_bytes: WAITING_BYTES,
        health_check: config.health.is_some(),
    }
}

/// The client role: its configuration, a store for the admin listener, and its metrics.
pub struct Client {
    config: ClientConfig,
    /// One store per partition.
    stores: Vec<Arc<Store>>,
    metrics: Arc<ClientMetrics>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, Fatal> {
        let stores = Store::partitions(&config.common).map_err(|error| Fatal::Store {
            doing: "opening the redis client",
            error,
        })?;
        Ok(Client {
            config,
            stores: stores.into_iter().map(Arc::new).collect(),
            metrics: Arc::default(),
        })
    }

    pub fn metrics(&self) -> Arc<ClientMetrics> {
        self.metrics.clone()
    }

    /// The admin listener's handler for this role (`None` when it has none).
    pub fn admin(&self) -> Option<(SocketAddr, Admin)> {
        Admin::listener(
            self.config.admin.as_ref(),
            Role::Client(self.metrics.clone()),
            self.stores.clone(),
        )
    }

    /// Runs until `shutdown`: each partition is consumed by a pipeline of its own (feed,
    /// dispatcher, breakers), with the whole delivery policy. Fails if `RELAY_PARTITIONS`
    /// changed while webhooks wait in streams it no longer reads (`layout`), if a consumer
    /// group cannot be set up, or if a stream reader stops without a shutdown: then every
    /// partition stops, and the service manager restarts the client.
    pub async fn run(self, mut shutdown: Shutdown) -> Result<(), Fatal> {
        if !layout::settle(&self.config.common, &mut shutdown).await? {
            return Ok(()); // stopped while waiting for Redis
        }
        let config = Arc::new(self.config);
        let mut partitions = JoinSet::new();
        for store in self.stores {
            let run = partition(
                config.clone(),
                store,
                self.metrics.clone(),
                shutdown.clone(),
            );
            crate::task::spawn_in(&mut partitions, run);
        }
        while let Some(done) = partitions.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(fatal)) => return Err(fatal),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        Ok(())
    }
}

/// Delivers one partition's webhooks until `shutdown`.
async fn partition(
    config: Arc<ClientConfig>,
    store: Arc<Store>,
    metrics: Arc<ClientMetrics>,
    mut shutdown: Shutdown,
) -> Result<(), Fatal> {
    if !ensure_group(&store, &mut shutdown).await? {
        return Ok(()); // stopped while waiting for Redis
    }
    let destinations = Destinations::new(&config);
    destinations.name_breakers(&metrics);
    log::info!(
        "delivering {} to {} as consumer {} of group {}",
        store.stream(),
        destinations.display(),
        config.consumer,
        config.common.group
    );
    let (want_tx, want_rx) = mpsc::channel(1);
    let (feed_tx, feed_rx) = mpsc::channel(16);
    let reader = store.reader(&config.consumer);
    let feed = Feed {
        reader,
        store: store.clone(),
        consumer: config.consumer.clone(),
        claim_min_idle: CLAIM_MIN_IDLE,
        want: want_rx,
        out: feed_tx,
    };
    let feed_task = crate::task::spawn(feed.run(shutdown.clone()));
    let (tx, rx) = mpsc::unbounded_channel();
    let http = |endpoint: &Endpoint, idle| {
        Arc::new(Http::new(endpoint.clone(), config.forward_timeout, idle))
    };
    let health = config.health.as_ref().map(|h| http(h, 1));
    let mut dispatcher = Dispatcher {
        jobs: Jobs::new(policy(&config), Rng::from_entropy())
            .with_routes(destinations.len(), destinations.router()),
        destinations,
        metrics,
        writes: Writes::new(store, config.consumer.clone(), health, tx.clone()),
        tx,
        rx,
        want: want_tx,
        reading: false,
        fresh_idle: false,
        deliveries: JoinSet::new(),
        feed_lost: false,
    };
    dispatcher.run(feed_rx, shutdown).await;
    feed_task.abort();
    match dispatcher.feed_lost {
        true => Err(Fatal::FeedLost),
        false => Ok(()),
    }
}

/// Creates the consumer group, retrying while Redis is unreachable. `false` when
/// `shutdown` came first.
async fn ensure_group(store: &Store, shutdown: &mut Shutdown) -> Result<bool, Fatal> {
    let doing = "setting up the consumer group";
    match at_start(doing, shutdown, || store.create_group()).await? {
        Some(created) => {
            if created {
                log::info!("created the consumer group at 0 on {}", store.stream());
            }
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Runs `op` until Redis answers it, once a second while Redis is unreachable (warned once);
/// `None` when `shutdown` came first. A refusal (an error reply) is fatal, as `doing`.
async fn at_start<T, Fut>(
    doing: &'static str,
    shutdown: &mut Shutdown,
    op: impl Fn() -> Fut,
) -> Result<Option<T>, Fatal>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut warned = false;
    loop {
        match op().await {
            Ok(done) => return Ok(Some(done)),
            Err(e) if !e.is_refusal() => {
                if !std::mem::replace(&mut warned, true) {
                    log::warn!("redis unreachable at start, retrying: {}", Report(&e));
                }
            }
            Err(error) => return Err(Fatal::Store { doing, error }),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait() => return Ok(None),
        }
    }
}
