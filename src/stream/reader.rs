//! The blocking `XREADGROUP … >` on a connection of its own (on the shared multiplexed
//! connection a blocked read would hold up every other command), with batches bounded by
//! bytes as well as count: Redis has no byte limit for a read, so the reader sizes its `COUNT`
//! from the entries it has seen, gives the reply a deadline that grows with the bytes it
//! expects, and after a timeout asks for fewer, larger-assumed entries.

use std::time::{Duration, Instant};

use std::sync::Arc;

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::link::LinkSpeed;
use super::locate::Locator;
use super::record::{Entry, parse_entries};
use super::{StoreError, connection_config};

/// How long one `XREADGROUP … BLOCK` waits for new entries. Short enough to notice shutdown
/// and lost connections promptly.
pub const BLOCK: Duration = Duration::from_secs(2);
/// The part of a read's deadline that is not transfer time.
const BASE: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A read aims at about this many bytes.
const READ_BYTES: usize = 1024 * 1024;
/// Most entries asked for at once.
const MAX_BATCH: usize = 256;
/// Entries are assumed this large until some are seen.
const INITIAL_ENTRY: usize = 4 * 1024;
const MAX_ENTRY_GUESS: usize = 512 * 1024 * 1024;

/// What the reader believes an entry weighs: as large as the largest recently seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    entry_bytes: usize,
}

impl Budget {
    /// Entries to ask for when `want` fit in memory.
    fn count(&self, want: usize) -> usize {
        (READ_BYTES / self.entry_bytes)
            .clamp(1, MAX_BATCH)
            .min(want.max(1))
    }

    /// A read timed out: its entries were larger than assumed.
    fn timed_out(&mut self) {
        self.entry_bytes = (self.entry_bytes * 2).min(MAX_ENTRY_GUESS);
    }

    /// A read returned entries of these sizes.
    fn observe(&mut self, sizes: impl Iterator<Item = usize>) {
        if let Some(largest) = sizes.max() {
            self.entry_bytes = largest.max(self.entry_bytes / 2).max(1024);
        }
    }
}

/// One consumer's reader of new entries of the main stream.
pub struct Reader {
    locator: Arc<Locator>,
    conn: Option<MultiplexedConnection>,
    stream: String,
    group: String,
    consumer: String,
    budget: Budget,
    link: LinkSpeed,
}

impl Reader {
    pub(super) fn new(locator: Arc<Locator>, stream: &str, group: &str, consumer: &str) -> Self {
        Reader {
            locator,
            conn: None,
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            budget: Budget {
                entry_bytes: INITIAL_ENTRY,
            },
            link: LinkSpeed::default(),
        }
    }

    /// Reads new entries, at most `want` and about `READ_BYTES`, blocking up to `BLOCK`.
    /// After a timeout the entries may be in this consumer's pending list: the caller
    /// re-reads that list.
    pub async fn read_new(&mut self, want: usize) -> Result<Vec<Entry>, StoreError> {
        let count = self.budget.count(want);
        let expected = count.saturating_mul(self.budget.entry_bytes);
        let deadline = BLOCK + self.link.deadline(BASE, expected);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">");
        let started = Instant::now();
        let reply = match tokio::time::timeout(deadline, self.query(&cmd)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let e = StoreError::from_redis(e, deadline);
                if !e.is_refusal() {
                    self.conn = None;
                }
                return Err(e);
            }
            Err(_) => {
                self.conn = None;
                self.budget.timed_out();
                self.link.timed_out(expected);
                return Err(StoreError::Timeout(deadline));
            }
        };
        let entries = parse_read_reply(&reply).map_err(StoreError::Protocol)?;
        let got: usize = entries.iter().map(Entry::size).sum();
        self.budget.observe(entries.iter().map(Entry::size));
        // The time may include waiting for entries: it can only underestimate the link, and
        // an observation only ever raises the guess.
        self.link.observe(got, started.elapsed());
        Ok(entries)
    }

    async fn query(&mut self, cmd: &redis::Cmd) -> Result<Value, redis::RedisError> {
        if self.conn.is_none() {
            self.conn = Some(
                self.locator
                    .connect(&connection_config(CONNECT_TIMEOUT))
                    .await?,
            );
        }
        let conn = self.conn.as_mut().expect("connected just above");
        cmd.query_async(conn).await
    }
}

/// `XREADGROUP` replies `nil` on timeout, else `[[stream, entries]]`.
fn parse_read_reply(reply: &Value) -> Result<Vec<Entry>, String> {
    match reply {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => match streams.first() {
            None => Ok(Vec::new()),
            Some(Value::Array(pair)) if pair.len() == 2 => parse_entries(&pair[1]),
            Some(other) => Err(format!("unexpected XREADGROUP reply {other:?}")),
        },
        Value::Map(streams) => match streams.first() {
            None => Ok(Vec::new()),
            Some((_, entries)) => parse_entries(entries),
        },
        other => Err(format!("unexpected XREADGROUP reply {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_by_bytes_and_shrink_after_timeouts() {
        let mut b = Budget {
            entry_bytes: INITIAL_ENTRY,
        };
        assert_eq!(b.count(1000), MAX_BATCH, "small entries: full batches");
        assert_eq!(b.count(10), 10, "never more than wanted");
        b.observe([1024 * 1024, 2000].into_iter());
        assert_eq!(b.count(1000), 1, "1 MiB entries: one per read");
        b.observe([1000].into_iter());
        assert_eq!(b.entry_bytes, 512 * 1024, "decays by halves");
        let mut b = Budget {
            entry_bytes: INITIAL_ENTRY,
        };
        for _ in 0..8 {
            b.timed_out();
        }
        assert_eq!(b.count(1000), 1);
        assert_eq!(b.entry_bytes, INITIAL_ENTRY << 8);
    }
}
