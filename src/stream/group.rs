//! Consumer-group commands on the shared connection: creating the group, acknowledging,
//! dead-lettering, claiming, and the per-webhook attempt counts kept in Redis.

use redis::Value;

use super::record::{DeadLetter, Entry, bytes, parse_entries};
use super::{Store, StoreError};

/// Dead-lettering in one atomic script: XADD to the DLQ, then XACK the original and forget
/// its attempt count. A script rather than MULTI because MULTI runs the XACK even when the
/// XADD fails at execution time (e.g. `WRONGTYPE`), which would acknowledge a webhook
/// without its DLQ copy; in a script the error stops everything after it.
const DEAD_LETTER_SCRIPT: &str = r"
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return id
";

/// A page of `XAUTOCLAIM`.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Where the next call continues; `0-0` when the scan is complete.
    pub cursor: String,
    pub entries: Vec<Entry>,
    /// Pending ids whose entries no longer exist (Redis drops them from the pending list).
    pub deleted: Vec<String>,
}

/// What `XINFO GROUPS` says about one group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub pending: u64,
    pub last_delivered: String,
    /// Entries not yet read by the group (Redis 7 `lag`), when known.
    pub lag: Option<u64>,
}

impl GroupInfo {
    /// Entries this group has not yet delivered: unread (`lag`) plus pending. Where Redis
    /// cannot tell the lag (nil after deletions; no `lag` before 7.0) the stream length
    /// `stream_len` stands in: an upper bound, so the backlog cap errs on the safe side.
    pub fn backlog(&self, stream_len: u64) -> u64 {
        self.lag.unwrap_or(stream_len) + self.pending
    }
}

impl Store {
    /// The hash holding `"tries counted"` per pending webhook id.
    fn attempts_key(&self) -> String {
        format!("{}:attempts", self.stream)
    }

    /// Creates `group` at id `0` with `MKSTREAM` (so entries stored before the first client
    /// start are delivered). Returns false when it already existed.
    pub async fn create_group(&self, group: &str) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM");
        match self.run::<()>(&cmd).await {
            Ok(()) => Ok(true),
            Err(StoreError::Refused(e)) if e.code() == Some("BUSYGROUP") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Acknowledges delivered webhooks and forgets their attempt counts, atomically.
    pub async fn ack(&self, group: &str, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(group)
            .arg(ids)
            .ignore()
            .cmd("HDEL")
            .arg(self.attempts_key())
            .arg(ids)
            .ignore();
        self.run_pipe::<()>(&pipe).await
    }

    /// Copies `entry` to `dlq` with `info` and acknowledges it, atomically. Returns the DLQ id.
    pub async fn dead_letter(
        &self,
        dlq: &str,
        group: &str,
        entry: &Entry,
        info: &DeadLetter,
    ) -> Result<String, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DEAD_LETTER_SCRIPT)
            .arg(3)
            .arg(&self.stream)
            .arg(dlq)
            .arg(self.attempts_key());
        cmd.arg(group).arg(&entry.id);
        info.write_fields(entry, &mut cmd);
        self.run(&cmd).await
    }

    /// The stored `(tries, counted)` of each id (zeros when none).
    pub async fn load_attempts(&self, ids: &[&str]) -> Result<Vec<(u32, u32)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.attempts_key()).arg(ids);
        let raw: Vec<Option<String>> = self.run(&cmd).await?;
        Ok(raw.iter().map(|v| parse_attempts(v.as_deref())).collect())
    }

    /// Records `(tries, counted)` for `id`.
    pub async fn save_attempts(
        &self,
        id: &str,
        tries: u32,
        counted: u32,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.attempts_key())
            .arg(id)
            .arg(format!("{tries} {counted}"));
        self.run::<()>(&cmd).await
    }

    /// Claims up to `count` entries idle for at least `min_idle_ms` from any consumer.
    pub async fn autoclaim(
        &self,
        group: &str,
        consumer: &str,
        min_idle_ms: u64,
        cursor: &str,
        count: usize,
    ) -> Result<Claimed, StoreError> {
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.stream)
            .arg(group)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(cursor);
        cmd.arg("COUNT").arg(count);
        let reply: Value = self.run(&cmd).await?;
        parse_autoclaim(&reply).map_err(StoreError::Protocol)
    }

    /// Resets the idle time of entries this consumer holds (`XCLAIM … JUSTID`, which does not
    /// bump delivery counters), so other clients' `XAUTOCLAIM` leaves them alone.
    pub async fn touch(&self, group: &str, consumer: &str, ids: &[&str]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.stream)
            .arg(group)
            .arg(consumer)
            .arg(0)
            .arg(ids)
            .arg("JUSTID");
        self.run::<Value>(&cmd).await.map(drop)
    }

    /// `XINFO GROUPS` of the main stream (empty when the stream does not exist).
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, StoreError> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(&self.stream);
        match self.run::<Vec<Vec<Value>>>(&cmd).await {
            Ok(groups) => Ok(groups.iter().map(|g| parse_group_info(g)).collect()),
            Err(StoreError::Refused(e)) if e.code() == Some("ERR") => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Entries not yet delivered by the slowest group; every entry when there is no group.
    pub async fn backlog(&self) -> Result<u64, StoreError> {
        let groups = self.groups().await?;
        let len = self.len(&self.stream).await?;
        Ok(groups.iter().map(|g| g.backlog(len)).max().unwrap_or(len))
    }

    /// `XLEN` of `key`.
    pub async fn len(&self, key: &str) -> Result<u64, StoreError> {
        self.run(redis::cmd("XLEN").arg(key)).await
    }
}

fn parse_attempts(v: Option<&str>) -> (u32, u32) {
    let mut parts = v
        .unwrap_or("")
        .split_whitespace()
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn parse_autoclaim(reply: &Value) -> Result<Claimed, String> {
    let Value::Array(parts) = reply else {
        return Err("XAUTOCLAIM reply is not an array".into());
    };
    let cursor = parts
        .first()
        .and_then(bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or("XAUTOCLAIM cursor")?;
    let entries = parse_entries(parts.get(1).unwrap_or(&Value::Nil))?;
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect(),
        _ => Vec::new(),
    };
    Ok(Claimed {
        cursor,
        entries,
        deleted,
    })
}

fn parse_group_info(kv: &[Value]) -> GroupInfo {
    let mut info = GroupInfo::default();
    for pair in kv.chunks(2) {
        let [k, v] = pair else { continue };
        let text = bytes(v).map(|b| String::from_utf8_lossy(b).into_owned());
        let num = match v {
            Value::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        };
        match bytes(k) {
            Some(b"name") => info.name = text.unwrap_or_default(),
            Some(b"pending") => info.pending = num.unwrap_or(0),
            Some(b"last-delivered-id") => info.last_delivered = text.unwrap_or_default(),
            Some(b"lag") => info.lag = num,
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_counts_parse_leniently() {
        assert_eq!(parse_attempts(Some("3 2")), (3, 2));
        assert_eq!(parse_attempts(Some("3")), (3, 0));
        assert_eq!(parse_attempts(None), (0, 0));
        assert_eq!(parse_attempts(Some("x y")), (0, 0));
    }

    #[test]
    fn backlog_is_unread_plus_pending_with_the_length_as_fallback() {
        let g = |lag, pending| GroupInfo {
            lag,
            pending,
            ..Default::default()
        };
        assert_eq!(g(Some(3), 2).backlog(100), 5);
        assert_eq!(g(None, 2).backlog(100), 102);
    }

    #[test]
    fn autoclaim_reply_parses() {
        let reply = Value::Array(vec![
            Value::BulkString(b"0-0".to_vec()),
            Value::Array(vec![Value::Array(vec![
                Value::BulkString(b"1-1".to_vec()),
                Value::Array(vec![]),
            ])]),
            Value::Array(vec![Value::BulkString(b"1-2".to_vec())]),
        ]);
        let c = parse_autoclaim(&reply).unwrap();
        assert_eq!(c.cursor, "0-0");
        assert_eq!(c.entries[0].id, "1-1");
        assert_eq!(c.deleted, ["1-2"]);
    }
}
