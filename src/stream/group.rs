//! Consumer-group commands on the shared connection: the group, acknowledgements, dead
//! letters, the pending list, claims, bodies of held webhooks, and the per-webhook attempt
//! counts kept in Redis (`<stream>:attempts:<group>`).

use redis::Value;

use super::record::{DeadLetter, Entry, bytes, parse_entries};
use super::{Store, StoreError, StreamId};

/// Dead-lettering in one atomic script, and only if the entry is still pending for this
/// consumer: a dead letter whose reply was lost (a timeout over a slow link) can be retried
/// without ever adding a second copy, and an entry acknowledged or claimed meanwhile is left
/// alone. The copy is made inside Redis (the body never travels for it): every field but
/// earlier dead-letter bookkeeping, then `origin_id` and the dead-letter fields. Then XACK and
/// HDEL. A script rather than MULTI, because MULTI runs the XACK even when the XADD fails at
/// execution time (e.g. `WRONGTYPE`); in a script the error stops everything after it.
/// Returns `{1, dlq id}`, `{0}` when not pending for us, `{2}` when the payload was deleted
/// (acknowledged: there is nothing to keep).
const DEAD_LETTER_SCRIPT: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return {0} end
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #e == 0 then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
  return {2}
end
local f = e[1][2]
local skip = { attempts = true, last_status = true, last_error = true, failed_at = true, replay_of = true }
local out = {}
local origin = ARGV[2]
for i = 1, #f, 2 do
  if f[i] == 'origin_id' then
    if f[i + 1] ~= '' then origin = f[i + 1] end
  elseif not skip[f[i]] then
    out[#out + 1] = f[i]; out[#out + 1] = f[i + 1]
  end
end
for _, v in ipairs({ 'origin_id', origin, 'attempts', ARGV[4], 'last_status', ARGV[5], 'last_error', ARGV[6], 'failed_at', ARGV[7] }) do
  out[#out + 1] = v
end
local id = redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return {1, id}
";

/// One page of attempt-count cleanup: every field of `KEYS[2]` whose id is no longer pending
/// in the group (acknowledged by another client, claimed and finished elsewhere, the stream
/// or group deleted) is removed; with `KEYS[3]`, a still-pending one is moved there instead
/// (the per-stream hash of earlier versions). Returns `{next cursor, removed}`.
const CLEANUP_SCRIPT: &str = r"
local r = redis.call('HSCAN', KEYS[2], ARGV[2], 'COUNT', ARGV[3])
local removed = 0
local fields = r[2]
for i = 1, #fields, 2 do
  local id = fields[i]
  local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local pending = ok and #p > 0
  if pending and KEYS[3] then
    redis.call('HSETNX', KEYS[3], id, fields[i + 1])
  end
  if not pending or KEYS[3] then
    redis.call('HDEL', KEYS[2], id)
    if not pending then removed = removed + 1 end
  end
end
return {r[1], removed}
";

/// The bytes of each entry (`-1` when deleted), computed inside Redis: so a body is loaded
/// with a deadline that fits its size, also over a slow link.
const SIZES_SCRIPT: &str = r"
local out = {}
for i, id in ipairs(ARGV) do
  local e = redis.call('XRANGE', KEYS[1], id, id)
  local n = -1
  if #e > 0 then
    n = 0
    for _, v in ipairs(e[1][2]) do n = n + #v end
  end
  out[i] = n
end
return out
";

/// A page of `XAUTOCLAIM … JUSTID`.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Where the next call continues; `0-0` when the scan is complete.
    pub cursor: String,
    pub ids: Vec<StreamId>,
    /// Pending ids whose entries no longer exist (Redis drops them from the pending list).
    pub deleted: Vec<StreamId>,
}

/// What a dead-letter write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLettered {
    /// Copied to the DLQ under this id and acknowledged.
    Moved(String),
    /// No longer pending for this consumer (already moved, acknowledged or claimed): nothing
    /// was written.
    NotPending,
    /// The payload had been deleted (trimmed by hand): acknowledged, nothing to copy.
    Gone,
}

/// The counts kept per pending webhook, so that a restart continues where it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Attempts sent so far (`X-Relay-Attempt` of the last one).
    pub tries: u32,
    /// Attempts counted toward `RELAY_MAX_ATTEMPTS`.
    pub counted: u32,
    /// Consecutive failures, for the backoff.
    pub failures: u32,
    /// Unix ms before which the next attempt is not due (0: now).
    pub due_ms: u64,
}

impl Stored {
    /// `"tries counted failures due_ms"`; older two-field values still parse.
    fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.tries, self.counted, self.failures, self.due_ms
        )
    }

    fn decode(v: Option<&str>) -> Stored {
        let mut parts = v.unwrap_or("").split_whitespace();
        let mut next = || {
            parts
                .next()
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Stored {
            tries: small(next()),
            counted: small(next()),
            failures: small(next()),
            due_ms: next(),
        }
    }
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
    /// The hash of `Stored` counts per pending webhook id of this group.
    fn attempts_key(&self) -> String {
        format!("{}:attempts:{}", self.keys.stream, self.group_name())
    }

    /// Creates the group at id `0` with `MKSTREAM` (so entries stored before the first client
    /// start are delivered). Returns false when it already existed.
    pub async fn create_group(&self) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.keys.stream)
            .arg(self.group_name())
            .arg("0")
            .arg("MKSTREAM");
        match self.run::<()>(&cmd).await {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Acknowledges webhooks and forgets their attempt counts, atomically.
    pub async fn ack(&self, ids: &[StreamId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.iter().map(StreamId::to_string).collect();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XACK")
            .arg(&self.keys.stream)
            .arg(self.group_name())
            .arg(&ids)
            .ignore()
            .cmd("HDEL")
            .arg(self.attempts_key())
            .arg(&ids)
            .ignore();
        self.run_pipe::<()>(&pipe, 0).await
    }

    /// Moves `id` to the DLQ with `info` and acknowledges it, if `consumer` still holds it.
    pub async fn dead_letter(
        &self,
        id: StreamId,
        consumer: &str,
        info: &DeadLetter,
    ) -> Result<DeadLettered, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DEAD_LETTER_SCRIPT)
            .arg(3)
            .arg(&self.keys.stream)
            .arg(&self.keys.dlq)
            .arg(self.attempts_key())
            .arg(self.group_name())
            .arg(id.to_string())
            .arg(consumer)
            .arg(info.attempts)
            .arg(info.last_status.map(|s| s.to_string()).unwrap_or_default())
            .arg(&info.last_error)
            .arg(info.failed_at);
        let reply: Vec<Value> = self.run(&cmd).await?;
        match (reply.first(), reply.get(1).and_then(bytes)) {
            (Some(Value::Int(1)), Some(dlq_id)) => Ok(DeadLettered::Moved(
                String::from_utf8_lossy(dlq_id).into_owned(),
            )),
            (Some(Value::Int(0)), _) => Ok(DeadLettered::NotPending),
            (Some(Value::Int(2)), _) => Ok(DeadLettered::Gone),
            _ => Err(StoreError::Protocol("dead-letter script reply".into())),
        }
    }

    /// The stored counts of each id (zeros when none).
    pub async fn load_attempts(&self, ids: &[StreamId]) -> Result<Vec<Stored>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.attempts_key());
        for id in ids {
            cmd.arg(id.to_string());
        }
        let raw: Vec<Option<String>> = self.run(&cmd).await?;
        Ok(raw.iter().map(|v| Stored::decode(v.as_deref())).collect())
    }

    /// Records the counts of several webhooks in one `HSET`.
    pub async fn save_attempts(&self, counts: &[(StreamId, Stored)]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.attempts_key());
        for (id, stored) in counts {
            cmd.arg(id.to_string()).arg(stored.encode());
        }
        self.run::<()>(&cmd).await
    }

    /// One page of the attempt-count cleanup (see `CLEANUP_SCRIPT`); also moves the counts
    /// of the per-stream hash older versions kept. Returns the next cursor (`0` when done)
    /// and how many orphaned counts were removed.
    pub async fn cleanup_attempts(
        &self,
        legacy: bool,
        cursor: u64,
    ) -> Result<(u64, u64), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLEANUP_SCRIPT);
        if legacy {
            cmd.arg(3)
                .arg(&self.keys.stream)
                .arg(format!("{}:attempts", self.keys.stream))
                .arg(self.attempts_key());
        } else {
            cmd.arg(2).arg(&self.keys.stream).arg(self.attempts_key());
        }
        cmd.arg(self.group_name()).arg(cursor).arg(200);
        let (next, removed): (String, u64) = self.run(&cmd).await?;
        Ok((next.parse().unwrap_or(0), removed))
    }

    /// Ids in `consumer`'s pending list after `after`, at most `count`, in order: ids only,
    /// so scanning what a client holds costs no bodies.
    pub async fn pending_ids(
        &self,
        consumer: &str,
        after: Option<StreamId>,
        count: usize,
    ) -> Result<Vec<StreamId>, StoreError> {
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.keys.stream)
            .arg(self.group_name())
            .arg(start)
            .arg("+")
            .arg(count)
            .arg(consumer);
        let rows: Vec<Value> = self.run(&cmd).await?;
        rows.iter()
            .map(|row| match row {
                Value::Array(parts) => parts
                    .first()
                    .and_then(bytes)
                    .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                    .ok_or_else(|| StoreError::Protocol("XPENDING row".into())),
                _ => Err(StoreError::Protocol("XPENDING row".into())),
            })
            .collect()
    }

    /// The size in bytes of each entry of `ids` (`None` for one that no longer exists).
    pub async fn sizes(&self, ids: &[StreamId]) -> Result<Vec<Option<usize>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SIZES_SCRIPT).arg(1).arg(&self.keys.stream);
        for id in ids {
            cmd.arg(id.to_string());
        }
        let sizes: Vec<i64> = self.run(&cmd).await?;
        Ok(sizes.into_iter().map(|n| usize::try_from(n).ok()).collect())
    }

    /// The entries of `ids` (`None` for one deleted meanwhile), expected to weigh about
    /// `bytes` in all, in one pipeline.
    pub async fn fetch(
        &self,
        ids: &[StreamId],
        bytes: usize,
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            let id = id.to_string();
            pipe.cmd("XRANGE").arg(&self.keys.stream).arg(&id).arg(&id);
        }
        let replies: Vec<Value> = self.run_pipe(&pipe, bytes).await?;
        replies
            .iter()
            .map(|r| {
                parse_entries(r)
                    .map(|mut e| e.pop())
                    .map_err(StoreError::Protocol)
            })
            .collect()
    }

    /// Claims up to `count` ids idle for at least `min_idle_ms` from any consumer, without
    /// their bodies (`JUSTID`, which also leaves delivery counters alone).
    pub async fn autoclaim(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        cursor: &str,
        count: usize,
    ) -> Result<Claimed, StoreError> {
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.keys.stream)
            .arg(self.group_name())
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .arg("JUSTID");
        let reply: Value = self.run(&cmd).await?;
        parse_autoclaim(&reply).map_err(StoreError::Protocol)
    }

    /// Resets the idle time of entries this consumer holds (`XCLAIM … JUSTID`, which does not
    /// bump delivery counters), so other clients' `XAUTOCLAIM` leaves them alone.
    pub async fn touch(&self, consumer: &str, ids: &[StreamId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.keys.stream)
            .arg(self.group_name())
            .arg(consumer)
            .arg(0);
        for id in ids {
            cmd.arg(id.to_string());
        }
        cmd.arg("JUSTID");
        self.run::<Value>(&cmd).await.map(drop)
    }

    /// `XINFO GROUPS` of the main stream (empty when the stream does not exist).
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, StoreError> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(&self.keys.stream);
        match self.run::<Vec<Vec<Value>>>(&cmd).await {
            Ok(groups) => Ok(groups.iter().map(|g| parse_group_info(g)).collect()),
            Err(e) if e.code() == Some("ERR") => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Entries not yet delivered by the slowest group; every entry when there is no group.
    pub async fn backlog(&self) -> Result<u64, StoreError> {
        let groups = self.groups().await?;
        let len = self.len(&self.keys.stream).await?;
        Ok(groups.iter().map(|g| g.backlog(len)).max().unwrap_or(len))
    }

    /// `XLEN` of `key`.
    pub async fn len(&self, key: &str) -> Result<u64, StoreError> {
        self.run(redis::cmd("XLEN").arg(key)).await
    }
}

fn parse_ids(v: Option<&Value>) -> Vec<StreamId> {
    match v {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(bytes)
            .filter_map(|b| std::str::from_utf8(b).ok()?.parse().ok())
            .collect(),
        _ => Vec::new(),
    }
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
    Ok(Claimed {
        cursor,
        ids: parse_ids(parts.get(1)),
        deleted: parse_ids(parts.get(2)),
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
    fn stored_counts_round_trip_and_old_values_parse() {
        let s = Stored {
            tries: 5,
            counted: 2,
            failures: 3,
            due_ms: 1_700_000_000_123,
        };
        assert_eq!(Stored::decode(Some(&s.encode())), s);
        assert_eq!(
            Stored::decode(Some("3 2")),
            Stored {
                tries: 3,
                counted: 2,
                ..Default::default()
            }
        );
        assert_eq!(Stored::decode(None), Stored::default());
        assert_eq!(Stored::decode(Some("x y")), Stored::default());
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
    fn autoclaim_justid_reply_parses() {
        let reply = Value::Array(vec![
            Value::BulkString(b"0-0".to_vec()),
            Value::Array(vec![Value::BulkString(b"1-1".to_vec())]),
            Value::Array(vec![Value::BulkString(b"1-2".to_vec())]),
        ]);
        let c = parse_autoclaim(&reply).unwrap();
        assert_eq!(c.cursor, "0-0");
        assert_eq!(c.ids, ["1-1".parse().unwrap()]);
        assert_eq!(c.deleted, ["1-2".parse().unwrap()]);
    }
}
