//! What a consumer holds: its pending ids (ids only), ids claimed from idle consumers, the
//! bodies of held webhooks (sizes first, so each fetch's deadline fits its bytes), and keeping
//! held entries claimed.

use redis::Value;

use super::record::{Entry, bytes, parse_entries};
use super::{Store, StoreError, StreamId};

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

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
