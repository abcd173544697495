//! The backlog cap: samples the number of webhooks not yet delivered and refuses new ones
//! with `503` while it is at or above `RELAY_MAX_STREAM_LEN`. The sampling doubles as the
//! Redis watch: losing and regaining Redis is logged (and a dead connection replaced) even
//! while no webhook arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::shutdown::Shutdown;
use crate::stream::Store;

/// How often the backlog is sampled. The backlog can exceed the cap by what arrives in this
/// time.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Samples the backlog every `WATCH_EVERY` and sets `full` while `max_len` or more wait.
pub async fn watch(store: Arc<Store>, max_len: u64, full: Arc<AtomicBool>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let Ok(len) = store.backlog().await else { continue };
                let now_full = len >= max_len;
                if full.swap(now_full, Ordering::Relaxed) != now_full {
                    if now_full {
                        log::warn!("backlog cap reached ({len} >= RELAY_MAX_STREAM_LEN {max_len}): new webhooks get 503 until the client catches up");
                    } else {
                        log::info!("backlog below the cap again ({len} < {max_len}): accepting webhooks");
                    }
                }
            }
            _ = shutdown.wait() => return,
        }
    }
}
