//! Consumer-group commands on the shared connection: the group, acknowledgements, dead
//! letters, the pending list, claims, bodies of held webhooks, and the per-webhook attempt
//! counts kept in Redis (`<stream>:attempts:<group>`).

use redis::Value;

use super::record::{DeadLetter, bytes};
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

/// Acknowledges `ARGV[2..]` in group `ARGV[1]` of `KEYS[1]` and forgets their attempt counts
/// (`KEYS[2]`), atomically. A script rather than MULTI: a Redis full to its `maxmemory`
/// refuses every command queued in a MULTI, while a script runs XACK and HDEL, which only
/// free memory. In slices, as Lua's `unpack` is limited to a few thousand values and one call
/// may carry every acknowledgement queued while Redis was away.
const ACK_SCRIPT: &str = r"
for i = 2, #ARGV, 1000 do
  local last = math.min(i + 999, #ARGV)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, last))
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, last))
end
";

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
    /// Creates the group at id `0` with `MKSTREAM` (so entries stored before the first client
    /// start are delivered). Returns false when it already existed, also when Redis refuses
    /// the write itself: a Redis full to its `maxmemory` answers `OOM` to `XGROUP CREATE`
    /// before looking, and the client must still start to deliver what it holds.
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
            Err(e) if e.is_refusal() => {
                let group = self.group_name();
                match self.groups().await?.iter().any(|g| g.name == group) {
                    true => Ok(false),
                    false => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Acknowledges webhooks and forgets their attempt counts, atomically.
    pub async fn ack(&self, ids: &[StreamId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ACK_SCRIPT)
            .arg(2)
            .arg(&self.keys.stream)
            .arg(self.attempts_key())
            .arg(self.group_name());
        for id in ids {
            cmd.arg(id.to_string());
        }
        self.run::<()>(&cmd).await
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
    fn backlog_is_unread_plus_pending_with_the_length_as_fallback() {
        let g = |lag, pending| GroupInfo {
            lag,
            pending,
            ..Default::default()
        };
        assert_eq!(g(Some(3), 2).backlog(100), 5);
        assert_eq!(g(None, 2).backlog(100), 102);
    }
}
