//! The backlog cap: webhooks not yet delivered may not exceed `RELAY_MAX_STREAM_LEN`; beyond
//! it new ones get `503` and nothing is trimmed to make room.
//!
//! Exact without a Redis round trip per webhook: the backlog is sampled every `WATCH_EVERY`,
//! and between samples `sampled + stored since + in flight` bounds it from above (deliveries
//! only lower it). While that bound stays within the cap, a webhook is appended as usual;
//! when it would not, the append is one script that counts the backlog inside Redis and
//! appends only below the cap. The sampling doubles as the Redis watch: losing and regaining
//! Redis is logged (and a dead connection replaced) even while no webhook arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::stream::Store;

/// How often the backlog is sampled.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// What the server knows about the backlog.
#[derive(Debug)]
pub struct Cap {
    pub max: u64,
    /// The last sample minus the webhooks stored when it was taken: adding those stored
    /// now gives the sample plus what came since, in one atomic read.
    base: AtomicI64,
    stored: AtomicU64,
    in_flight: AtomicU64,
}

/// A webhook on its way to Redis; `exact` when the cheap bound says the cap may be reached.
pub struct Appending<'a> {
    cap: &'a Cap,
    pub exact: bool,
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.cap.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Appending<'_> {
    /// The webhook is in the stream.
    pub fn stored(self) {
        self.cap.stored.fetch_add(1, Ordering::SeqCst);
    }
}

impl Cap {
    pub fn new(max: u64) -> Cap {
        Cap {
            max,
            base: AtomicI64::new(0),
            stored: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Counts a webhook in flight (itself included in the bound, so two at the last slot
    /// cannot both take it) and says whether its append must check the cap exactly.
    pub fn appending(&self) -> Appending<'_> {
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let bound = self.base.load(Ordering::SeqCst)
            + self.stored.load(Ordering::SeqCst) as i64
            + in_flight as i64;
        Appending {
            cap: self,
            exact: bound > self.max as i64,
        }
    }

    /// The bound without a webhook in hand (for log lines).
    fn bound(&self) -> u64 {
        let b = self.base.load(Ordering::SeqCst) + self.stored.load(Ordering::SeqCst) as i64;
        u64::try_from(b).unwrap_or(0)
    }
}

/// Samples the backlog every `WATCH_EVERY` until shutdown.
pub async fn watch(store: Arc<Store>, cap: Arc<Cap>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    let mut full = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Read before sampling: a webhook stored meanwhile is counted twice (the
                // bound stays an upper bound), never not at all.
                let stored_before = cap.stored.load(Ordering::SeqCst);
                let Ok(backlog) = store.backlog().await else { continue };
                cap.base.store(backlog as i64 - stored_before as i64, Ordering::SeqCst);
                let now_full = cap.bound() >= cap.max;
                if std::mem::replace(&mut full, now_full) != now_full {
                    match now_full {
                        true => log::warn!("backlog cap reached ({backlog} >= RELAY_MAX_STREAM_LEN {}): new webhooks get 503 until the client catches up", cap.max),
                        false => log::info!("backlog below the cap again ({backlog} < {}): accepting webhooks", cap.max),
                    }
                }
            }
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_counts_what_came_since_the_sample_and_what_is_in_flight() {
        let cap = Cap::new(3);
        let a = cap.appending();
        assert!(!a.exact);
        a.stored();
        let b = cap.appending();
        let c = cap.appending();
        assert!(!b.exact && !c.exact, "1 stored + 2 in flight = 3");
        let d = cap.appending();
        assert!(d.exact, "a fourth must be checked");
        drop((b, c, d));
        // A sample of 0 after deliveries: stored before the sample no longer count.
        cap.base.store(
            -(cap.stored.load(Ordering::SeqCst) as i64),
            Ordering::SeqCst,
        );
        assert!(!cap.appending().exact);
    }
}
