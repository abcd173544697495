//! The blocking `XREADGROUP` on a connection of its own: on the shared multiplexed connection
//! a blocked read would hold up every other command.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};

use super::record::{Entry, parse_entries};
use super::{StoreError, open_client};
use crate::config::Secret;

/// How long one `XREADGROUP … BLOCK` waits for new entries. Short enough to notice shutdown
/// and lost connections promptly.
pub const BLOCK: Duration = Duration::from_secs(2);
/// The reader's response timeout: above `BLOCK`, so a normal empty wait is never a timeout.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(7);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One consumer's reader of the main stream.
pub struct Reader {
    client: Client,
    conn: Option<MultiplexedConnection>,
    stream: String,
    group: String,
    consumer: String,
}

impl Reader {
    pub fn new(
        url: &Secret,
        ca: Option<&[u8]>,
        stream: &str,
        group: &str,
        consumer: &str,
    ) -> Result<Self, StoreError> {
        Ok(Reader {
            client: open_client(url, ca)?,
            conn: None,
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
        })
    }

    /// Reads up to `count` entries after `from`: `">"` for new ones (blocking up to
    /// `BLOCK`), or an id to page through this consumer's own pending entries (no blocking).
    pub async fn read(&mut self, from: &str, count: usize) -> Result<Vec<Entry>, StoreError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if from == ">" {
            cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(from);
        let result =
            tokio::time::timeout(RESPONSE_TIMEOUT + Duration::from_secs(1), self.query(&cmd)).await;
        let reply = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                if e.code().is_none() || e.is_connection_dropped() {
                    self.conn = None;
                    return Err(StoreError::Connection(e));
                }
                return Err(StoreError::Refused(e));
            }
            Err(_) => {
                self.conn = None;
                return Err(StoreError::Timeout);
            }
        };
        parse_read_reply(&reply).map_err(StoreError::Protocol)
    }

    async fn query(&mut self, cmd: &redis::Cmd) -> Result<Value, redis::RedisError> {
        if self.conn.is_none() {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT));
            self.conn = Some(
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
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
