//! What became of each webhook, as the client saw it: one record per webhook in
//! `<stream>:outcomes:<group>` (its last attempt, kept while the webhook is in the stream;
//! the records of its earlier attempts, newest last and at most `MAX_EARLIER`, in the field
//! `<id>:earlier`, one JSON record per line),
//! and the same records published on the channel `<stream>:activity`, which
//! `crm-relay tail` follows (nothing is kept, and publishing with nobody listening costs
//! Redis next to nothing). Written by the client after each attempt; diagnostic only:
//! delivery never depends on them.

use redis::Value;
use serde_json::Value as Json;

use super::{Store, StoreError, StreamId};

/// Removes, one `HSCAN` page at a time, the records of webhooks no longer in the stream (older
/// than its first entry: trimmed by retention). Returns `{next cursor, removed}`.
const CLEANUP_SCRIPT: &str = r"
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local fms, fseq = math.huge, 0
if #first > 0 then
  local a, b = string.match(first[1][1], '^(%d+)-(%d+)$')
  fms, fseq = tonumber(a), tonumber(b)
end
local r = redis.call('HSCAN', KEYS[2], ARGV[1], 'COUNT', ARGV[2])
local removed = 0
local fields = r[2]
for i = 1, #fields, 2 do
  local a, b = string.match(fields[i], '^(%d+)-(%d+)')
  local ms, seq = tonumber(a or 0), tonumber(b or 0)
  if ms < fms or (ms == fms and seq < fseq) then
    redis.call('HDEL', KEYS[2], fields[i])
    removed = removed + 1
  end
end
return {r[1], removed}
";

/// Records of a retried webhook's attempts before its last, kept per webhook (each holds at
/// most a KiB of the app's answer).
pub const MAX_EARLIER: usize = 10;

/// Writes records of attempts after the first: when the webhook already has a record of
/// another attempt, that record moves to the end of its `<id>:earlier` list (one JSON
/// record per line; compact JSON never holds a raw newline), of which the newest
/// `ARGV[1]` are kept. `ARGV[2..]`: `id, attempt, record` triples.
const HISTORY_SCRIPT: &str = r#"
local keep = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local id, attempt, rec = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', KEYS[1], id)
  if old and string.match(old, '"attempt":(%d+)') ~= attempt then
    local field = id .. ':earlier'
    local list = {}
    local h = redis.call('HGET', KEYS[1], field)
    if h then
      for line in string.gmatch(h, '[^\n]+') do list[#list + 1] = line end
    end
    list[#list + 1] = old
    while #list > keep do table.remove(list, 1) end
    redis.call('HSET', KEYS[1], field, table.concat(list, '\n'))
  end
  redis.call('HSET', KEYS[1], id, rec)
end
return 0
"#;

/// How a webhook's deliveries stand after its last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The app answered `2xx`.
    Delivered,
    /// The last attempt failed; another follows.
    Retrying,
    /// Moved to the dead-letter stream.
    Dead,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Delivered => "delivered",
            State::Retrying => "retrying",
            State::Dead => "dead",
        }
    }
}

/// One webhook's last attempt and where it left the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub state: State,
    pub source: String,
    /// `X-Relay-Attempt` of the last attempt (0: dead-lettered without one).
    pub attempt: u32,
    /// The app's status, when it answered.
    pub status: Option<u16>,
    /// The failure in plain words (none when delivered).
    pub error: Option<String>,
    /// How long the last attempt took, in ms.
    pub took_ms: u64,
    /// Unix ms when it ended.
    pub at: u64,
    /// The first KiB of the app's answer, kept for failed attempts.
    pub answer: Option<String>,
    /// The dead letter's id.
    pub dlq_id: Option<String>,
    /// The routed target it went to (`None`: the default target).
    pub target: Option<String>,
}

impl Trace {
    pub fn to_json(&self) -> Json {
        serde_json::from_str(&self.encode()).expect("encode writes valid JSON")
    }

    /// The stored form: compact JSON written directly (one per delivery, so no tree is
    /// built), absent fields left out.
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let text = |s: &str| Json::from(s).to_string();
        let mut out = format!(
            r#"{{"state":"{}","source":{},"attempt":{},"took_ms":{},"at":{}"#,
            self.state.as_str(),
            text(&self.source),
            self.attempt,
            self.took_ms,
            self.at
        );
        if let Some(status) = self.status {
            let _ = write!(out, r#","status":{status}"#);
        }
        for (name, value) in [
            ("error", &self.error),
            ("answer", &self.answer),
            ("dlq_id", &self.dlq_id),
            ("target", &self.target),
        ] {
            if let Some(v) = value {
                let _ = write!(out, r#","{name}":{}"#, text(v));
            }
        }
        out.push('}');
        out
    }

    pub fn from_json(v: &Json) -> Option<Trace> {
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        Some(Trace {
            state: match v["state"].as_str()? {
                "delivered" => State::Delivered,
                "retrying" => State::Retrying,
                "dead" => State::Dead,
                _ => return None,
            },
            source: text("source").unwrap_or_default(),
            attempt: u32::try_from(v["attempt"].as_u64()?).ok()?,
            status: v["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
            error: text("error"),
            took_ms: v["took_ms"].as_u64().unwrap_or(0),
            at: v["at"].as_u64().unwrap_or(0),
            answer: text("answer"),
            dlq_id: text("dlq_id"),
            target: text("target"),
        })
    }

    fn decode(raw: &[u8]) -> Option<Trace> {
        Trace::from_json(&serde_json::from_slice(raw).ok()?)
    }
}

impl Store {
    /// The consumer group this store acts for.
    pub fn group(&self) -> &str {
        self.group_name()
    }

    /// `<stream>:outcomes:<group>`: one record per webhook of this group.
    pub fn outcomes_key(&self) -> String {
        format!("{}:outcomes:{}", self.keys.stream, self.group_name())
    }

    /// `<stream>:activity`: the channel the records are published on, for `tail`.
    pub fn activity_channel(&self) -> String {
        format!("{}:activity", self.keys.stream)
    }

    /// Records several webhooks' last attempts, and publishes them in one message
    /// (`{"group":…,"traces":[[id, record], …]}`) on the activity channel.
    pub async fn record_traces(&self, traces: &[(StreamId, Trace)]) -> Result<(), StoreError> {
        if traces.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(String, String)> = traces
            .iter()
            .map(|(id, t)| (id.to_string(), t.encode()))
            .collect();
        // A first attempt has no earlier record to keep: a plain `HSET`, the common case.
        let (first, later): (Vec<_>, Vec<_>) = traces
            .iter()
            .zip(&pairs)
            .partition(|((_, t), _)| t.attempt == 1);
        let mut pipe = redis::pipe();
        if !first.is_empty() {
            pipe.cmd("HSET").arg(self.outcomes_key());
            for (_, (id, t)) in &first {
                pipe.arg(id).arg(t);
            }
            pipe.ignore();
        }
        if !later.is_empty() {
            pipe.cmd("EVAL")
                .arg(HISTORY_SCRIPT)
                .arg(1)
                .arg(self.outcomes_key())
                .arg(MAX_EARLIER);
            for ((_, t), (id, encoded)) in &later {
                pipe.arg(id).arg(t.attempt).arg(encoded);
            }
            pipe.ignore();
        }
        let listed: Vec<String> = pairs
            .iter()
            .map(|(id, t)| format!("[\"{id}\",{t}]"))
            .collect();
        let group = Json::from(self.group_name()).to_string();
        let message = format!(r#"{{"group":{group},"traces":[{}]}}"#, listed.join(","));
        pipe.cmd("PUBLISH")
            .arg(self.activity_channel())
            .arg(message)
            .ignore();
        self.run_pipe::<()>(&pipe, 0).await
    }

    /// The records of `ids` (`None` where there is none).
    pub async fn traces(&self, ids: &[StreamId]) -> Result<Vec<Option<Trace>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.outcomes_key());
        for id in ids {
            cmd.arg(id.to_string());
        }
        let raw: Vec<Option<Vec<u8>>> = self.run(&cmd).await?;
        Ok(raw
            .iter()
            .map(|r| r.as_deref().and_then(Trace::decode))
            .collect())
    }

    /// The records of a webhook's attempts before its last, oldest first.
    pub async fn earlier_traces(&self, id: StreamId) -> Result<Vec<Trace>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.outcomes_key()).arg(format!("{id}:earlier"));
        let raw: Option<Vec<u8>> = self.run(&cmd).await?;
        Ok(raw
            .unwrap_or_default()
            .split(|b| *b == b'\n')
            .filter_map(Trace::decode)
            .collect())
    }

    /// One page of the cleanup of records whose webhook retention has removed. Returns the
    /// next cursor (`0` when done) and how many were removed.
    pub async fn cleanup_traces(&self, cursor: u64, count: u64) -> Result<(u64, u64), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLEANUP_SCRIPT)
            .arg(2)
            .arg(&self.keys.stream)
            .arg(self.outcomes_key())
            .arg(cursor)
            .arg(count);
        let reply: Vec<Value> = self.run(&cmd).await?;
        let cursor = reply
            .first()
            .and_then(super::record::bytes)
            .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok());
        match (cursor, reply.get(1)) {
            (Some(c), Some(Value::Int(n))) => Ok((c, u64::try_from(*n).unwrap_or(0))),
            _ => Err(StoreError::Protocol("trace cleanup reply".into())),
        }
    }
}

/// The records of one activity message: `(group, [(webhook id, record)])`.
pub fn parse_activity(payload: &[u8]) -> (String, Vec<(String, Trace)>) {
    let Ok(v) = serde_json::from_slice::<Json>(payload) else {
        return (String::new(), Vec::new());
    };
    let group = v["group"].as_str().unwrap_or_default().to_owned();
    let traces = v["traces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| Some((pair[0].as_str()?.to_owned(), Trace::from_json(&pair[1])?)))
        .collect();
    (group, traces)
}

impl Store {
    /// A connection subscribed to the activity channel (its own, as subscribing takes a
    /// connection over), and its messages' payloads.
    pub async fn follow_activity(
        &self,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>, StoreError> {
        let subscribe = async { self.locator.client().await?.get_async_pubsub().await };
        let mut pubsub = tokio::time::timeout(super::OP_DEADLINE, subscribe)
            .await
            .map_err(|_| StoreError::Timeout(super::OP_DEADLINE))?
            .map_err(|e| StoreError::from_redis(e, super::OP_DEADLINE))?;
        pubsub
            .subscribe(self.activity_channel())
            .await
            .map_err(|e| StoreError::from_redis(e, super::OP_DEADLINE))?;
        let mut messages = pubsub.into_on_message();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        crate::task::spawn(async move {
            use futures_core::Stream;
            while let Some(msg) =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut messages).poll_next(cx)).await
            {
                if tx.send(msg.get_payload_bytes().to_vec()).is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
