//! The client's start with the partitions' layout (`stream::Layout`): a changed
//! `RELAY_PARTITIONS` that would leave webhooks undelivered in streams it no longer reads
//! stops the start (exit code 2, as for an invalid configuration), with what to do.

use std::time::Duration;

use crate::config::CommonConfig;
use crate::error::{ConfigError, Fatal, Report};
use crate::shutdown::Shutdown;
use crate::stream::{Layout, StoreError};

/// Checks the layout and records the configured number, retrying while Redis is
/// unreachable (as the consumer groups' setup does).
pub async fn settle(common: &CommonConfig, shutdown: &mut Shutdown) -> Result<(), Fatal> {
    let now = common.topology.partitions;
    let mut warned = false;
    loop {
        let settled = async {
            // Ok(Err(_)): stranded webhooks, nothing recorded.
            let layout = Layout::inspect(common).await?;
            if let Layout::Stranded { .. } = layout {
                return Ok(Err(layout));
            }
            Layout::record(common).await?;
            Ok::<_, StoreError>(Ok(layout))
        };
        match settled.await {
            Ok(Ok(layout)) => {
                if let Some(changed) = layout.message(now) {
                    log::warn!("{changed}");
                }
                return Ok(());
            }
            Ok(Err(stranded)) => {
                let why = stranded.message(now).unwrap_or_default();
                return Err(Fatal::Config(ConfigError::new("RELAY_PARTITIONS", why)));
            }
            Err(e) if !e.is_refusal() => {
                if !std::mem::replace(&mut warned, true) {
                    log::warn!("redis unreachable at start, retrying: {}", Report(&e));
                }
            }
            Err(error) => {
                return Err(Fatal::Store {
                    doing: "checking the partitions' layout",
                    error,
                });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait() => return Ok(()),
        }
    }
}
