//! The feed: reads webhooks from Redis for the dispatcher. Own pending entries first (on
//! start, after every reconnect and periodically, so a lost `XREADGROUP` reply strands
//! nothing), then new ones with a blocking `XREADGROUP` on its own connection, plus
//! `XAUTOCLAIM` of entries left idle by dead consumers. Holds one capacity permit per entry
//! handed over, so the client never holds more than its capacity in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::client::policy::backoff::{Backoff, Rng};
use crate::shutdown::Shutdown;
use crate::stream::{Entry, Reader, Store, StoreError, is_nogroup};

/// Most entries asked for per read.
const BATCH: usize = 256;
/// A read waits up to `BATCH_WAIT` for this many free slots.
const MIN_BATCH: usize = 32;
const BATCH_WAIT: Duration = Duration::from_millis(2);
/// How often the own pending list is re-read and idle entries of others are claimed.
const RESCAN_EVERY: Duration = Duration::from_secs(15);
/// Backoff between attempts to reach a lost Redis.
const RECONNECT: Backoff = Backoff {
    base: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// A webhook handed to the dispatcher, with its stored attempt counts.
#[derive(Debug)]
pub struct Incoming {
    pub entry: Entry,
    pub tries: u32,
    pub counted: u32,
    /// Released when the dispatcher is done with the webhook.
    pub permit: OwnedSemaphorePermit,
}

/// What the feed needs to know.
pub struct Feed {
    pub reader: Reader,
    pub store: Arc<Store>,
    pub group: String,
    pub consumer: String,
    /// Entries idle this long in another consumer's pending list are claimed.
    pub claim_min_idle: Duration,
    pub capacity: Arc<Semaphore>,
    pub out: mpsc::Sender<Vec<Incoming>>,
}

/// Where the next read starts.
enum Cursor {
    /// Paging through our own pending entries, after this id.
    Pending(String),
    /// New entries (`>`).
    New,
}

impl Feed {
    /// Runs until shutdown or until the dispatcher goes away.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut cursor = Cursor::Pending("0".into());
        let mut failures = 0u32;
        let mut rng = Rng::from_entropy();
        let mut next_rescan = Instant::now() + RESCAN_EVERY;
        while !shutdown.is_triggered() {
            let permits = tokio::select! {
                p = take_permits(&self.capacity) => p,
                _ = shutdown.wait() => return,
            };
            if Instant::now() >= next_rescan {
                next_rescan = Instant::now() + RESCAN_EVERY;
                cursor = Cursor::Pending("0".into());
                if self.claim_idle(permits).await.is_err() {
                    return;
                }
                continue;
            }
            let from = match &cursor {
                Cursor::Pending(after) => after.clone(),
                Cursor::New => ">".to_owned(),
            };
            let read = tokio::select! {
                r = self.reader.read(&from, permits.len()) => r,
                _ = shutdown.wait() => return,
            };
            match read {
                Ok(entries) => {
                    if failures > 0 {
                        log::info!("redis reachable again, re-reading pending entries first");
                        failures = 0;
                    }
                    if let Cursor::Pending(_) = cursor {
                        cursor = match entries.last() {
                            Some(last) => Cursor::Pending(last.id.clone()),
                            None => Cursor::New,
                        };
                    }
                    if self.hand_over(entries, permits).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    drop(permits);
                    cursor = Cursor::Pending("0".into());
                    self.read_failed(&e, &mut failures).await;
                    let delay = RECONNECT
                        .delay(failures, None, &mut rng)
                        .max(Duration::from_millis(50));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait() => return,
                    }
                }
            }
        }
    }

    async fn read_failed(&self, e: &StoreError, failures: &mut u32) {
        if is_nogroup(e) {
            log::error!(
                "stream {} or group {} disappeared (NOGROUP): recreating the group at 0; entries deleted with it are gone",
                self.store.stream(),
                self.group
            );
            if let Err(e) = self.store.create_group(&self.group).await {
                log::warn!("recreating the group failed: {e}");
            }
            return;
        }
        if *failures == 0 {
            log::warn!("redis unreachable, reading paused: {e}");
        }
        *failures = failures.saturating_add(1);
    }

    /// Loads stored attempt counts and passes entries on, one permit each. (Redis never
    /// returns more entries than asked for; if it did, the extra ones stay in this consumer's
    /// pending list and come back with the next pending re-read.)
    async fn hand_over(
        &self,
        entries: Vec<Entry>,
        mut permits: Vec<OwnedSemaphorePermit>,
    ) -> Result<(), ()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let counts = self.store.load_attempts(&ids).await.unwrap_or_else(|e| {
            // Zero counts can only delay a dead letter, never cause one.
            log::debug!("loading attempt counts failed, starting from zero: {e}");
            vec![(0, 0); ids.len()]
        });
        let batch: Vec<Incoming> = entries
            .into_iter()
            .zip(counts)
            .zip(std::iter::from_fn(|| permits.pop()))
            .map(|((entry, (tries, counted)), permit)| Incoming {
                entry,
                tries,
                counted,
                permit,
            })
            .collect();
        self.out.send(batch).await.map_err(drop)
    }

    /// Claims entries idle past `claim_min_idle` (dead consumers' work), page by page.
    async fn claim_idle(&self, mut permits: Vec<OwnedSemaphorePermit>) -> Result<(), ()> {
        let min_idle = u64::try_from(self.claim_min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut cursor = "0-0".to_owned();
        loop {
            let count = permits.len();
            let claimed = match self
                .store
                .autoclaim(&self.group, &self.consumer, min_idle, &cursor, count)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    log::debug!("XAUTOCLAIM failed: {e}");
                    return Ok(());
                }
            };
            if !claimed.deleted.is_empty() {
                log::warn!(
                    "{} pending entries were deleted from the stream before delivery (trimmed?)",
                    claimed.deleted.len()
                );
            }
            if !claimed.entries.is_empty() {
                log::info!(
                    "claimed {} idle entries from other consumers",
                    claimed.entries.len()
                );
            }
            let rest = permits.split_off(claimed.entries.len().min(permits.len()));
            self.hand_over(claimed.entries, permits).await?;
            permits = rest;
            if claimed.cursor == "0-0" || permits.is_empty() {
                return Ok(());
            }
            cursor = claimed.cursor;
        }
    }
}

/// Waits for one permit, then takes up to `BATCH` without waiting. When only a few are free
/// it waits a moment for more, so a busy client reads in batches rather than one entry per
/// round trip; the wait is short enough never to hold deliveries back.
async fn take_permits(capacity: &Arc<Semaphore>) -> Vec<OwnedSemaphorePermit> {
    let first = capacity.clone().acquire_owned().await;
    let mut permits = vec![first.expect("the semaphore is never closed")];
    grab(capacity, &mut permits);
    if permits.len() < MIN_BATCH {
        let more = (MIN_BATCH - permits.len()) as u32;
        let waited = tokio::time::timeout(BATCH_WAIT, capacity.clone().acquire_many_owned(more));
        if let Ok(Ok(p)) = waited.await {
            permits.push(p);
            grab(capacity, &mut permits);
        }
    }
    singles(permits)
}

/// Takes free permits without waiting, up to `BATCH` in all.
fn grab(capacity: &Arc<Semaphore>, permits: &mut Vec<OwnedSemaphorePermit>) {
    while permits.iter().map(|p| p.num_permits()).sum::<usize>() < BATCH {
        match capacity.clone().try_acquire_owned() {
            Ok(p) => permits.push(p),
            Err(_) => break,
        }
    }
}

/// Splits permits into single ones, one per entry.
fn singles(permits: Vec<OwnedSemaphorePermit>) -> Vec<OwnedSemaphorePermit> {
    let mut out = Vec::new();
    for mut p in permits {
        while p.num_permits() > 1 {
            out.push(p.split(1).expect("more than one permit left"));
        }
        out.push(p);
    }
    out
}
