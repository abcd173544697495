//! The client's start with the partitions' layout (`stream::Layout`): a changed
//! `RELAY_PARTITIONS` that would leave webhooks undelivered in streams it no longer reads
//! stops the start (exit code 2, as for an invalid configuration), with what to do.

use crate::config::CommonConfig;
use crate::error::{ConfigError, Fatal};
use crate::shutdown::Shutdown;
use crate::stream::Layout;

/// Checks the layout and records the configured number, retrying while Redis is
/// unreachable (as the consumer groups' setup does). `false` when `shutdown` came first.
pub async fn settle(common: &CommonConfig, shutdown: &mut Shutdown) -> Result<bool, Fatal> {
    let now = common.topology.partitions;
    let doing = "checking the partitions' layout";
    let store = Layout::store(common).map_err(|error| Fatal::Store { doing, error })?;
    match super::at_start(doing, shutdown, || Layout::settle(&store, common)).await? {
        Some(stranded @ Layout::Stranded { .. }) => {
            let why = stranded.message(now).unwrap_or_default();
            Err(Fatal::Config(ConfigError::conflict(
                "RELAY_PARTITIONS",
                why,
            )))
        }
        Some(layout) => {
            if let Some(changed) = layout.message(now) {
                log::warn!("{changed}");
            }
            Ok(true)
        }
        None => Ok(false),
    }
}
