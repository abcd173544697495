//! Dead-letter stream commands: list, fetch, replay to the main stream, delete.

use redis::Value;

use super::record::{Entry, bytes, parse_entries};
use super::{Store, StoreError, StreamId};

/// Copies entry `ARGV[1]` of `KEYS[1]` to `KEYS[2]` (a new id) in one atomic script, with
/// `origin_id` (the first stored id, so `X-Relay-Id` stays stable) and the field named
/// `ARGV[2]` (`replay_of`, `redelivery_of`) holding the id copied, leaving out the dead-letter
/// fields and earlier copy markers; deletes the original when `ARGV[3]` is `1` (a DLQ
/// replay). Nil for an unknown id. Used by `dlq replay` and by `redeliver`.
const COPY_SCRIPT: &str = r"
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return false end
local f = e[1][2]
local out = {}
local origin = ARGV[1]
local skip = { attempts = true, last_status = true, last_error = true, failed_at = true, replay_of = true, redelivery_of = true }
for i = 1, #f, 2 do
  if f[i] == 'origin_id' then
    if f[i + 1] ~= '' then origin = f[i + 1] end
  elseif not skip[f[i]] then out[#out + 1] = f[i]; out[#out + 1] = f[i + 1] end
end
out[#out + 1] = 'origin_id'; out[#out + 1] = origin
out[#out + 1] = ARGV[2]; out[#out + 1] = ARGV[1]
local id = redis.call('XADD', KEYS[2], '*', unpack(out))
if ARGV[3] == '1' then redis.call('XDEL', KEYS[1], ARGV[1]) end
return id
";

impl Store {
    /// The newest `limit` entries of `dlq`, newest first.
    pub async fn dlq_list(&self, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&self.keys.dlq)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit);
        let reply: Value = self.run(&cmd).await?;
        parse_entries(&reply).map_err(StoreError::Protocol)
    }

    /// Every id in `dlq`, oldest first.
    pub async fn dlq_ids(&self) -> Result<Vec<StreamId>, StoreError> {
        let mut ids = Vec::new();
        let mut from = "-".to_owned();
        loop {
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(&self.keys.dlq)
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(1000);
            let reply: Value = self.run(&cmd).await?;
            let page = parse_entries(&reply).map_err(StoreError::Protocol)?;
            let Some(last) = page.last() else {
                return Ok(ids);
            };
            from = format!("({}", last.id);
            ids.extend(page.iter().map(Entry::stream_id));
        }
    }

    /// One dead letter, if it exists.
    pub async fn dlq_get(&self, id: StreamId) -> Result<Option<Entry>, StoreError> {
        let id = id.to_string();
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.keys.dlq).arg(&id).arg(&id);
        let reply: Value = self.run(&cmd).await?;
        Ok(parse_entries(&reply).map_err(StoreError::Protocol)?.pop())
    }

    /// Moves a dead letter back to the main stream; the new id, or `None` if unknown.
    pub async fn dlq_replay(&self, id: StreamId) -> Result<Option<String>, StoreError> {
        self.copy_to_stream(&self.keys.dlq, id, "replay_of", true)
            .await
    }

    /// Copies entry `id` of `from` to the main stream with `origin_id` and `marker` = `id`
    /// (`COPY_SCRIPT`), deleting it from `from` when `delete`; the copy's id, or `None` if
    /// unknown.
    pub(super) async fn copy_to_stream(
        &self,
        from: &str,
        id: StreamId,
        marker: &str,
        delete: bool,
    ) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(COPY_SCRIPT)
            .arg(2)
            .arg(from)
            .arg(&self.keys.stream)
            .arg(id.to_string())
            .arg(marker)
            .arg(u8::from(delete));
        let reply: Value = self.run(&cmd).await?;
        Ok(bytes(&reply).map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    /// Deletes a dead letter; false if it did not exist.
    pub async fn dlq_delete(&self, id: StreamId) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(&self.keys.dlq).arg(id.to_string());
        Ok(self.run::<u64>(&cmd).await? == 1)
    }
}
