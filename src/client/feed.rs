//! The feed: reads from Redis for the dispatcher.
//!
//! - New entries (`XREADGROUP … >`) only when the dispatcher asks, for as many as it has room
//!   for: memory is the dispatcher's to bound.
//! - This consumer's pending ids on start, after every failed read or reconnect, and every
//!   `RESCAN_EVERY`: ids only (bodies are loaded when a webhook is due), so a client holding
//!   many waiting webhooks rescans cheaply. A lost `XREADGROUP` reply strands nothing.
//! - Ids idle longer than `claim_min_idle` in any consumer's pending list (dead clients'
//!   work), claimed without their bodies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::client::policy::backoff::{Backoff, Rng};
use crate::error::Report;
use crate::shutdown::Shutdown;
use crate::stream::{Entry, Reader, Store, StoreError, StreamId, is_nogroup};

/// How often the own pending list is re-read and idle entries of others are claimed.
const RESCAN_EVERY: Duration = Duration::from_secs(15);
/// Ids per `XPENDING` / `XAUTOCLAIM` page.
const PAGE: usize = 1000;
/// Backoff between attempts to reach a lost Redis.
const RECONNECT: Backoff = Backoff {
    base: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// What the feed hands to the dispatcher. `started`: when the read began, so that a copy
/// of a webhook finished after that moment is recognised as stale.
#[derive(Debug)]
pub enum FeedMsg {
    /// New entries (possibly none), answering one request.
    Fresh {
        entries: Vec<Entry>,
        asked: usize,
        started: Instant,
    },
    /// Ids pending for this consumer: its own, or just claimed.
    Pending {
        ids: Vec<StreamId>,
        started: Instant,
    },
}

/// What the feed needs.
pub struct Feed {
    pub reader: Reader,
    pub store: Arc<Store>,
    pub consumer: String,
    /// Entries idle this long in another consumer's pending list are claimed.
    pub claim_min_idle: Duration,
    /// How many new entries the dispatcher has room for, one request at a time.
    pub want: mpsc::Receiver<usize>,
    pub out: mpsc::Sender<FeedMsg>,
}

impl Feed {
    /// Runs until shutdown or until the dispatcher goes away.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut rescan = true;
        let mut next_rescan = Instant::now();
        let mut failures = 0u32;
        // Whether the last read of new entries failed: then only a read that works again
        // ends the failure. A Redis that refuses writes (`MISCONF`) refuses `XREADGROUP` but
        // still answers the rescan's `XPENDING`; taking that for recovery reset the backoff,
        // and the feed retried every 50 ms, logging each time.
        let mut read_failed = false;
        let mut rng = Rng::from_entropy();
        loop {
            if rescan || Instant::now() >= next_rescan {
                match self.rescan().await {
                    Ok(()) => {
                        rescan = false;
                        next_rescan = Instant::now() + RESCAN_EVERY;
                        if !read_failed {
                            self.recovered(&mut failures);
                        }
                    }
                    Err(Stop::Dispatcher) => return,
                    Err(Stop::Redis(e)) => {
                        self.failed(&e, &mut failures).await;
                        if !pause(&mut rng, failures, &mut shutdown).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let wanted = tokio::select! {
                _ = shutdown.wait() => return,
                w = self.want.recv() => w,
                _ = tokio::time::sleep_until(next_rescan.into()) => continue,
            };
            let Some(asked) = wanted else { return };
            let started = Instant::now();
            let read = tokio::select! {
                _ = shutdown.wait() => return,
                r = self.reader.read_new(asked) => r,
            };
            read_failed = read.is_err();
            let entries = match read {
                Ok(entries) => {
                    self.recovered(&mut failures);
                    entries
                }
                Err(e) => {
                    // A read that failed may have moved entries into our pending list.
                    rescan = true;
                    self.failed(&e, &mut failures).await;
                    Vec::new()
                }
            };
            let msg = FeedMsg::Fresh {
                entries,
                asked,
                started,
            };
            if self.out.send(msg).await.is_err() {
                return;
            }
            if failures > 0 && !pause(&mut rng, failures, &mut shutdown).await {
                return;
            }
        }
    }

    /// This consumer's pending ids, then claims of idle ones.
    async fn rescan(&mut self) -> Result<(), Stop> {
        let started = Instant::now();
        let mut after = None;
        loop {
            let ids = self.store.pending_ids(&self.consumer, after, PAGE).await?;
            let Some(last) = ids.last().copied() else {
                break;
            };
            after = Some(last);
            let full = ids.len() == PAGE;
            self.send(FeedMsg::Pending { ids, started }).await?;
            if !full {
                break;
            }
        }
        self.claim_idle().await
    }

    /// Claims ids idle past `claim_min_idle` (dead consumers' work), page by page.
    async fn claim_idle(&mut self) -> Result<(), Stop> {
        let min_idle = u64::try_from(self.claim_min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut cursor = "0-0".to_owned();
        loop {
            let started = Instant::now();
            let claimed = match self
                .store
                .autoclaim(&self.consumer, min_idle, &cursor, PAGE)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    log::debug!("XAUTOCLAIM failed: {}", Report(&e));
                    return Ok(());
                }
            };
            if !claimed.deleted.is_empty() {
                log::warn!(
                    "{} pending entries were deleted from the stream before delivery (trimmed by hand?): they are gone",
                    claimed.deleted.len()
                );
            }
            if !claimed.ids.is_empty() {
                log::info!(
                    "claimed {} entries left idle by other consumers",
                    claimed.ids.len()
                );
                let ids = claimed.ids;
                self.send(FeedMsg::Pending { ids, started }).await?;
            }
            if claimed.cursor == "0-0" {
                return Ok(());
            }
            cursor = claimed.cursor;
        }
    }

    async fn send(&self, msg: FeedMsg) -> Result<(), Stop> {
        self.out.send(msg).await.map_err(|_| Stop::Dispatcher)
    }

    async fn failed(&self, e: &StoreError, failures: &mut u32) {
        if is_nogroup(e) {
            log::error!(
                "stream {} or its consumer group disappeared (NOGROUP): recreating the group at 0; entries deleted with it are gone",
                self.store.stream(),
            );
            if let Err(e) = self.store.create_group().await {
                log::warn!("recreating the group failed: {}", Report(&e));
            }
            return;
        }
        if *failures == 0 {
            log::warn!("reading the stream failed, retrying: {}", Report(e));
        }
        *failures = failures.saturating_add(1);
    }

    fn recovered(&self, failures: &mut u32) {
        if std::mem::take(failures) > 0 {
            log::info!("reading the stream again; pending entries re-read first");
        }
    }
}

/// Why a scan stopped.
enum Stop {
    Dispatcher,
    Redis(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Redis(e)
    }
}

/// Waits the reconnect backoff; false on shutdown.
async fn pause(rng: &mut Rng, failures: u32, shutdown: &mut Shutdown) -> bool {
    let delay = RECONNECT
        .delay(failures, None, rng)
        .max(Duration::from_millis(50));
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.wait() => false,
    }
}
