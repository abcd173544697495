//! The number of partitions the streams are laid out in (`RELAY_PARTITIONS`), recorded in
//! Redis next to the one-partition stream (`relay:{webhooks}:layout`, field `partitions`) by
//! the client, the role that reads them. A client started with another number reads other
//! streams: webhooks not yet delivered in the streams it would no longer read would wait
//! forever. The client's start (`client::layout`, through `Layout::settle`) refuses that and
//! says how to drain them; once they are delivered, it records the new number.

use crate::config::{CommonConfig, PARTITIONS, partition_key};

use super::{Store, StoreError};

/// The hash field holding the number.
const FIELD: &str = "partitions";

/// What a start with `RELAY_PARTITIONS=now` finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Nothing recorded yet, or the same number.
    Same,
    /// Recorded with `from`; the streams this layout does not read hold nothing undelivered.
    /// `left`: those streams that still hold entries (delivered ones, or dead letters).
    Changed { from: usize, left: Vec<String> },
    /// Recorded with `from`, and these streams (not read with the new number) hold webhooks
    /// not yet delivered: (stream, how many).
    Stranded {
        from: usize,
        undelivered: Vec<(String, u64)>,
    },
}

impl Layout {
    /// Compares the configuration with the recorded number, looking into the streams of the
    /// recorded layout that the configured one does not read.
    pub async fn inspect(common: &CommonConfig) -> Result<Layout, StoreError> {
        let store = Self::store(common)?;
        let recorded = store.recorded_partitions().await?;
        Self::compare(common, recorded).await
    }

    /// The store holding the record: the one-partition layout's stream, whose key is the
    /// same whatever the number (in a cluster, its own slot).
    pub fn store(common: &CommonConfig) -> Result<Store, StoreError> {
        Store::partition(&with_partitions(common, 1), 0)
    }

    /// `inspect`, then records the configured number unless that would strand webhooks (the
    /// client's start), through `store` (`Layout::store`: one for all the attempts, so
    /// Redis being away is logged once). A number already recorded is not written again: a
    /// Redis full to its `maxmemory` refuses the write, and the client must still start.
    pub async fn settle(store: &Store, common: &CommonConfig) -> Result<Layout, StoreError> {
        let now = common.topology.partitions;
        let recorded = store.recorded_partitions().await?;
        let layout = Self::compare(common, recorded).await?;
        if recorded != Some(now) && !matches!(layout, Layout::Stranded { .. }) {
            store.record_partitions(now).await?;
        }
        Ok(layout)
    }

    /// The configuration against the `recorded` number.
    async fn compare(common: &CommonConfig, recorded: Option<usize>) -> Result<Layout, StoreError> {
        let now = common.topology.partitions;
        let from = match recorded {
            Some(from) if from != now => from,
            _ => return Ok(Layout::Same),
        };
        let read = |key: &str| (0..now).any(|p| partition_key(&common.stream, p, now) == key);
        let old = Store::partitions(&with_partitions(common, from))?;
        let (mut left, mut undelivered) = (Vec::new(), Vec::new());
        for store in old.iter().filter(|s| !read(s.stream())) {
            let backlog = store.backlog().await?;
            let held = store.len(store.stream()).await? + store.len(store.dlq()).await?;
            if backlog > 0 {
                undelivered.push((store.stream().to_owned(), backlog));
            } else if held > 0 {
                left.push(store.stream().to_owned());
            }
        }
        Ok(match undelivered.is_empty() {
            true => Layout::Changed { from, left },
            false => Layout::Stranded { from, undelivered },
        })
    }

    /// What to tell the operator, for `now` partitions; `None` when there is nothing to say.
    pub fn message(&self, now: usize) -> Option<String> {
        match self {
            Layout::Same => None,
            Layout::Changed { from, left } if left.is_empty() => Some(format!(
                "RELAY_PARTITIONS changed from {from} to {now}; the streams of {from} held nothing undelivered"
            )),
            Layout::Changed { from, left } => Some(format!(
                "RELAY_PARTITIONS changed from {from} to {now}: {} of the {from}-partition layout still \
                 hold delivered webhooks or dead letters that events, dlq and the inspector no longer \
                 show, and retention no longer trims; delete them when they are no longer needed",
                left.join(", ")
            )),
            Layout::Stranded { from, undelivered } => {
                let total: u64 = undelivered.iter().map(|(_, n)| n).sum();
                let streams: Vec<String> = undelivered
                    .iter()
                    .map(|(s, n)| format!("{s} ({n})"))
                    .collect();
                let (webhooks, wait) = match total {
                    1 => ("webhook", "waits"),
                    _ => ("webhooks", "wait"),
                };
                Some(format!(
                    "the streams were written with RELAY_PARTITIONS={from}, and {total} {webhooks} \
                     not yet delivered {wait} in streams that {now} partitions do not read: {}. Run \
                     the client with RELAY_PARTITIONS={from} until relay_backlog is 0, then \
                     restart it with {now} (or keep {from})",
                    streams.join(", ")
                ))
            }
        }
    }
}

/// `common` with `n` partitions, waiting for no replica: nothing written here is a webhook.
fn with_partitions(common: &CommonConfig, n: usize) -> CommonConfig {
    let mut c = common.clone();
    c.topology.partitions = n;
    c.topology.min_replicas = 0;
    c
}

impl Store {
    fn layout_key(&self) -> String {
        format!("{}:layout", self.keys.stream)
    }

    /// The recorded number of partitions, if any (anything but a valid `RELAY_PARTITIONS`
    /// there reads as none).
    async fn recorded_partitions(&self) -> Result<Option<usize>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.layout_key()).arg(FIELD);
        let values: Vec<Option<String>> = self.run(&cmd).await?;
        Ok(values
            .into_iter()
            .next()
            .flatten()
            .and_then(|v| v.parse().ok())
            .filter(|n| PARTITIONS.contains(n)))
    }

    async fn record_partitions(&self, n: usize) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.layout_key()).arg(FIELD).arg(n);
        self.run::<u64>(&cmd).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_told_what_is_left_and_what_to_do() {
        let one = Layout::Stranded {
            from: 1,
            undelivered: vec![("r:{w}".into(), 1)],
        };
        assert!(
            one.message(2)
                .unwrap()
                .contains(", and 1 webhook not yet delivered waits in streams")
        );
        assert_eq!(Layout::Same.message(3), None);
        let drained = Layout::Changed {
            from: 3,
            left: vec![],
        };
        assert_eq!(
            drained.message(2).unwrap(),
            "RELAY_PARTITIONS changed from 3 to 2; the streams of 3 held nothing undelivered"
        );
        let left = Layout::Changed {
            from: 3,
            left: vec!["r:{w:2}".into()],
        };
        assert!(left.message(2).unwrap().starts_with(
            "RELAY_PARTITIONS changed from 3 to 2: r:{w:2} of the 3-partition layout still hold"
        ));
        let stranded = Layout::Stranded {
            from: 3,
            undelivered: vec![("r:{w:1.1}".into(), 2), ("r:{w:2}".into(), 3)],
        };
        assert_eq!(
            stranded.message(2).unwrap(),
            "the streams were written with RELAY_PARTITIONS=3, and 5 webhooks not yet \
             delivered wait in streams that 2 partitions do not read: r:{w:1.1} (2), r:{w:2} \
             (3). Run the client with RELAY_PARTITIONS=3 until relay_backlog is 0, then \
             restart it with 2 (or keep 3)"
        );
    }
}
