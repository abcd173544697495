//! Retention that cannot lose data: the server trims delivered entries older than
//! `RELAY_RETENTION`, but never one a consumer group still needs (pending, or not yet read).

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::ServerMetrics;
use crate::shutdown::Shutdown;
use crate::stream::{Store, StoreError};

/// A stream id as numbers, for comparison.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What one group still needs: its last-delivered id and the oldest id it has pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNeeds {
    pub last_delivered: String,
    pub oldest_pending: Option<String>,
}

/// The id below which entries may be deleted: older than `cutoff_ms`, below every group's
/// oldest pending entry, and not after its last-delivered id. `None` (trim nothing) without groups
/// or when an id cannot be read.
pub fn safe_min_id(groups: &[GroupNeeds], cutoff_ms: u64) -> Option<String> {
    if groups.is_empty() {
        return None;
    }
    let mut min = (cutoff_ms, 0);
    for g in groups {
        // Everything up to the last-delivered id was read; what is not pending of it was
        // acknowledged. So the first id the group may still need is the next one.
        let (ms, seq) = parse_id(&g.last_delivered)?;
        min = min.min((ms, seq.saturating_add(1)));
        if let Some(p) = &g.oldest_pending {
            min = min.min(parse_id(p)?);
        }
    }
    (min > (0, 0)).then(|| format!("{}-{}", min.0, min.1))
}

/// Trims once: computes the safe bound from Redis and applies it.
pub async fn trim_once(store: &Store, retention: Duration) -> Result<u64, StoreError> {
    let groups = store.groups().await?;
    let mut needs = Vec::with_capacity(groups.len());
    for g in &groups {
        needs.push(GroupNeeds {
            last_delivered: g.last_delivered.clone(),
            oldest_pending: store.oldest_pending(&g.name).await?,
        });
    }
    let now = crate::clock::unix_ms();
    let cutoff = now.saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
    match safe_min_id(&needs, cutoff) {
        Some(min_id) => store.trim_below(&min_id).await,
        None => Ok(0),
    }
}

/// Trims every `every` until shutdown.
pub async fn run(
    store: Arc<Store>,
    retention: Duration,
    every: Duration,
    metrics: Arc<ServerMetrics>,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => match trim_once(&store, retention).await {
                Ok(n) => {
                    if n > 0 {
                        log::info!("retention: trimmed {n} delivered entries older than {retention:?}");
                    }
                    metrics.trimmed.add(n);
                    metrics.retention_runs.inc();
                }
                Err(e) => log::debug!("retention pass skipped: {}", crate::error::Report(&e)),
            },
            _ = shutdown.wait() => return,
        }
    }
}

/// How often to trim: a tenth of the retention, between 1 s and 1 min.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(last: &str, pending: Option<&str>) -> GroupNeeds {
        GroupNeeds {
            last_delivered: last.into(),
            oldest_pending: pending.map(Into::into),
        }
    }

    #[test]
    fn no_group_trims_nothing() {
        assert_eq!(safe_min_id(&[], 1_000), None);
    }

    #[test]
    fn bound_is_the_minimum_of_cutoff_pending_and_last_delivered() {
        assert_eq!(
            safe_min_id(&[g("500-3", None)], 1_000).as_deref(),
            Some("500-4")
        );
        assert_eq!(
            safe_min_id(&[g("5000-0", None)], 1_000).as_deref(),
            Some("1000-0")
        );
        assert_eq!(
            safe_min_id(&[g("5000-0", Some("700-1"))], 1_000).as_deref(),
            Some("700-1")
        );
        assert_eq!(
            safe_min_id(&[g("5000-0", None), g("300-0", None)], 1_000).as_deref(),
            Some("300-1"),
            "the slowest group decides"
        );
        assert_eq!(
            safe_min_id(&[g("0-0", None)], 1_000).as_deref(),
            Some("0-1"),
            "nothing read yet: nothing can be below it"
        );
        assert_eq!(safe_min_id(&[g("garbage", None)], 1_000), None);
    }
}
