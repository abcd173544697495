//! Reading the main stream as a history: pages of webhooks without their bodies (the bodies
//! stay inside Redis), one webhook in full, which of them the group still holds, and
//! redelivery (a copy appended to the stream).

use std::collections::HashSet;

use redis::Value;

use super::record::{Entry, bytes, parse_entries};
use super::{Store, StoreError, StreamId};

/// Newest first, at most `ARGV[3]` entries from `ARGV[1]` (inclusive, `+` for the newest)
/// down to `ARGV[2]`, each as `{id, received_at, method, path, source, remote, origin_id,
/// redelivery_of, replay_of, body length}`: the bodies never leave Redis.
const PAGE_SCRIPT: &str = r"
local e = redis.call('XREVRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local out = {}
local names = { 'received_at', 'method', 'path', 'source', 'remote', 'origin_id', 'redelivery_of', 'replay_of' }
for i = 1, #e do
  local f = e[i][2]
  local m = {}
  local size = 0
  for j = 1, #f, 2 do
    if f[j] == 'body' then size = #f[j + 1] else m[f[j]] = f[j + 1] end
  end
  local row = { e[i][1] }
  for _, n in ipairs(names) do row[#row + 1] = m[n] or '' end
  row[#row + 1] = size
  out[#out + 1] = row
end
return out
";

/// A webhook in the stream, without its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub id: String,
    pub received_at: u64,
    pub method: String,
    pub path: String,
    pub source: String,
    pub remote: String,
    /// The `X-Relay-Id`: `origin_id` for copies, else the id.
    pub relay_id: String,
    pub redelivery_of: String,
    pub replay_of: String,
    pub size: u64,
}

impl Summary {
    pub fn stream_id(&self) -> StreamId {
        self.id.parse().unwrap_or(StreamId { ms: 0, seq: 0 })
    }
}

impl Store {
    /// Up to `count` webhooks, newest first, older than `before` (`None`: from the newest)
    /// down to `since_ms`.
    pub async fn page(
        &self,
        before: Option<StreamId>,
        since_ms: u64,
        count: usize,
    ) -> Result<Vec<Summary>, StoreError> {
        let from = before.map_or_else(|| "+".to_owned(), |id| format!("({id}"));
        self.summaries(&from, &format!("{since_ms}-0"), count).await
    }

    /// Up to `count` of the newest webhooks stored after `after`, newest first.
    pub async fn page_after(
        &self,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<Summary>, StoreError> {
        self.summaries("+", &format!("({after}"), count).await
    }

    async fn summaries(
        &self,
        max: &str,
        min: &str,
        count: usize,
    ) -> Result<Vec<Summary>, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(PAGE_SCRIPT)
            .arg(1)
            .arg(&self.keys.stream)
            .arg(max)
            .arg(min)
            .arg(count);
        let rows: Vec<Vec<Value>> = self.run(&cmd).await?;
        rows.iter().map(|r| parse_summary(r)).collect()
    }

    /// One webhook of the main stream, with every field.
    pub async fn entry(&self, id: StreamId) -> Result<Option<Entry>, StoreError> {
        let id = id.to_string();
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.keys.stream).arg(&id).arg(&id);
        let reply: Value = self.run(&cmd).await?;
        Ok(parse_entries(&reply).map_err(StoreError::Protocol)?.pop())
    }

    /// Which ids between `low` and `high` the group holds (read, not yet acknowledged), at
    /// most `count` of them.
    pub async fn pending_between(
        &self,
        low: StreamId,
        high: StreamId,
        count: usize,
    ) -> Result<HashSet<StreamId>, StoreError> {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.keys.stream)
            .arg(self.group_name())
            .arg(low.to_string())
            .arg(high.to_string())
            .arg(count);
        match self.run::<Vec<Vec<Value>>>(&cmd).await {
            Ok(rows) => Ok(rows
                .iter()
                .filter_map(|r| bytes(r.first()?))
                .filter_map(|b| std::str::from_utf8(b).ok()?.parse().ok())
                .collect()),
            Err(e) if super::is_nogroup(&e) => Ok(HashSet::new()),
            Err(e) => Err(e),
        }
    }

    /// The group's last-delivered id: entries after it are unread (`None` without a group).
    pub async fn last_delivered(&self) -> Result<Option<StreamId>, StoreError> {
        let groups = self.groups().await?;
        Ok(groups
            .iter()
            .find(|g| g.name == self.group_name())
            .and_then(|g| g.last_delivered.parse().ok()))
    }

    /// The newest id of `key` (`0-0` when it is empty or missing): where a live view starts.
    pub async fn newest_id(&self, key: &str) -> Result<String, StoreError> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(key).arg("+").arg("-").arg("COUNT").arg(1);
        let reply: Value = self.run(&cmd).await?;
        let newest = parse_entries(&reply).map_err(StoreError::Protocol)?.pop();
        Ok(newest.map_or_else(|| "0-0".to_owned(), |e| e.id))
    }

    /// Entries after the given id of each key, waiting up to `block_ms` for one: `XREAD`.
    pub async fn read_after(
        &self,
        after: &[(String, String)],
        count: usize,
        block_ms: u64,
    ) -> Result<Vec<(String, Vec<Entry>)>, StoreError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS");
        for (key, _) in after {
            cmd.arg(key);
        }
        for (_, id) in after {
            cmd.arg(id);
        }
        // Bodies come along: allow for about a MiB per entry over a slow link.
        let reply: Value = self.run_sized(&cmd, count * 1024 * 1024).await?;
        let Value::Array(streams) = reply else {
            return Ok(Vec::new()); // nil: nothing within block_ms
        };
        let mut out = Vec::new();
        for s in &streams {
            let Value::Array(pair) = s else {
                return Err(StoreError::Protocol("XREAD reply".into()));
            };
            let (Some(key), Some(entries)) = (pair.first().and_then(bytes), pair.get(1)) else {
                return Err(StoreError::Protocol("XREAD reply".into()));
            };
            let entries = parse_entries(entries).map_err(StoreError::Protocol)?;
            out.push((String::from_utf8_lossy(key).into_owned(), entries));
        }
        Ok(out)
    }

    /// Appends a copy of `id` for another delivery; the copy's id, or `None` if unknown.
    pub async fn redeliver(&self, id: StreamId) -> Result<Option<String>, StoreError> {
        self.copy_to_stream(&self.keys.stream, id, "redelivery_of", false)
            .await
    }
}

fn parse_summary(row: &[Value]) -> Result<Summary, StoreError> {
    let text = |i: usize| {
        row.get(i)
            .and_then(bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let (Some(Value::Int(size)), 10) = (row.get(9), row.len()) else {
        return Err(StoreError::Protocol("history page row".into()));
    };
    let id = text(0);
    let origin = text(6);
    Ok(Summary {
        relay_id: if origin.is_empty() {
            id.clone()
        } else {
            origin
        },
        id,
        received_at: text(1).parse().unwrap_or(0),
        method: text(2),
        path: text(3),
        source: text(4),
        remote: text(5),
        redelivery_of: text(7),
        replay_of: text(8),
        size: u64::try_from(*size).unwrap_or(0),
    })
}
