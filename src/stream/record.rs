//! The stored record: its field names, how it is written, and how entries read back from
//! Redis are decoded. With `headers_json.rs` (its `headers` field), the one place that knows
//! the record's wire format.

use redis::Value;

use super::headers_json;
use crate::http::Fields;

/// Version of the record format, stored in field `v`: `1`; `2` when a header value is not
/// UTF-8 (then that value is a JSON array of its bytes in `headers`). Readers take both.
pub const RECORD_VERSION: &str = "1";
const RECORD_VERSION_BYTES: &str = "2";

/// One webhook as stored in the main stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unix time in milliseconds when the server finished reading it.
    pub received_at: u64,
    pub method: String,
    /// Path with query string, as received.
    pub path: String,
    /// `<source>` of `/webhook/<source>`, or empty.
    pub source: String,
    /// Peer address as seen by the server.
    pub remote: String,
    /// Header fields in arrival order, duplicates kept, values byte-exact.
    pub headers: Fields,
    /// The raw body bytes, after de-chunking.
    pub body: Vec<u8>,
    /// The `X-Relay-Id` (field `origin_id`): made by the server, kept by every copy. Empty
    /// in records stored before there was one; their stream id is their relay id.
    pub relay_id: String,
}

impl Record {
    /// The `headers` field (`headers_json.rs`) in a buffer of its own.
    #[cfg(test)]
    pub fn headers_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(headers_json::len(&self.headers));
        headers_json::write(&self.headers, &mut out);
        out
    }

    /// The format version this record needs.
    fn version(&self) -> &'static str {
        match self.headers.iter().any(|(_, v)| v.as_str().is_none()) {
            true => RECORD_VERSION_BYTES,
            false => RECORD_VERSION,
        }
    }

    /// A command sized to hold `args` arguments of `bytes` bytes (all of them: the command's
    /// name too) besides this record's fields: sized once, not grown (copied again) while
    /// the body goes in.
    pub fn command(&self, args: usize, bytes: usize) -> redis::Cmd {
        redis::Cmd::with_capacity(args + 18, bytes + self.fields_len())
    }

    /// At least the bytes `write_fields` writes when no header needs escaping (the usual
    /// case; otherwise the command grows once).
    fn fields_len(&self) -> usize {
        const NAMES: usize = "v received_at method path source remote origin_id headers body".len();
        const FIXED: usize = NAMES + RECORD_VERSION.len() + u64::MAX.ilog10() as usize + 1;
        let fields = self.method.len() + self.path.len() + self.source.len() + self.remote.len();
        FIXED + fields + self.relay_id.len() + headers_json::len(&self.headers) + self.body.len()
    }

    /// Appends the record's field/value pairs to an `XADD`.
    pub fn write_fields(&self, cmd: &mut redis::Cmd) {
        cmd.arg("v")
            .arg(self.version())
            .arg("received_at")
            .arg(self.received_at)
            .arg("method")
            .arg(&self.method)
            .arg("path")
            .arg(&self.path)
            .arg("source")
            .arg(&self.source)
            .arg("remote")
            .arg(&self.remote);
        if !self.relay_id.is_empty() {
            cmd.arg("origin_id").arg(&self.relay_id);
        }
        let mut headers = Vec::with_capacity(headers_json::len(&self.headers));
        headers_json::write(&self.headers, &mut headers);
        cmd.arg("headers").arg(&headers[..]);
        cmd.arg("body").arg(&self.body[..]);
    }

    /// Decodes a record from an entry's fields.
    pub fn from_fields(fields: &[(String, Vec<u8>)]) -> Result<Record, String> {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_slice())
        };
        let text = |name: &str| -> Result<String, String> {
            let raw = get(name).unwrap_or_default();
            String::from_utf8(raw.to_vec()).map_err(|_| format!("field {name} is not UTF-8"))
        };
        match get("v") {
            Some(b"1" | b"2") => {}
            Some(other) => {
                return Err(format!(
                    "unknown record version {:?}",
                    String::from_utf8_lossy(other)
                ));
            }
            None => return Err("no record version".into()),
        }
        let headers = headers_json::parse(get("headers").unwrap_or(b"[]"))
            .map_err(|e| format!("field headers: {e}"))?;
        let method = text("method")?;
        if method.is_empty() {
            return Err("field method is empty".into());
        }
        Ok(Record {
            received_at: text("received_at")?.parse().unwrap_or(0),
            method,
            path: text("path")?,
            source: text("source")?,
            remote: text("remote")?,
            headers,
            body: get("body").unwrap_or_default().to_vec(),
            relay_id: text("origin_id")?,
        })
    }
}

/// An entry read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// Every field as stored, in order (kept whole so a dead letter copies all of them).
    /// `None` when the entry was deleted while still pending (its payload is gone).
    pub fields: Option<Vec<(String, Vec<u8>)>>,
}

impl Entry {
    /// The id the webhook was first stored under: `origin_id` for replays, else the id.
    /// It is the `X-Relay-Id` dedupe key.
    pub fn relay_id(&self) -> String {
        self.field("origin_id")
            .and_then(|v| String::from_utf8(v.to_vec()).ok())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.id.clone())
    }

    /// The entry's id as a `StreamId` (entries come from Redis, so it always parses; a
    /// malformed one maps to `0-0`, which nothing uses).
    pub fn stream_id(&self) -> super::StreamId {
        self.id.parse().unwrap_or(super::StreamId { ms: 0, seq: 0 })
    }

    /// Bytes of every field name and value: what the entry costs to hold and to transfer.
    pub fn size(&self) -> usize {
        self.fields
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }

    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a webhook was dead-lettered: the extra fields of its DLQ entry (the copy of the
/// original fields is made inside Redis, see `Store::dead_letter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Attempts counted toward `RELAY_MAX_ATTEMPTS`.
    pub attempts: u32,
    /// The last HTTP status, if the target answered at all.
    pub last_status: Option<u16>,
    pub last_error: String,
    /// Unix time in milliseconds.
    pub failed_at: u64,
}

/// Decodes the entries of an `XRANGE`-shaped reply: `[[id, [field, value, …] | nil], …]`.
pub fn parse_entries(reply: &Value) -> Result<Vec<Entry>, String> {
    let Value::Array(items) = reply else {
        return match reply {
            Value::Nil => Ok(Vec::new()),
            other => Err(format!("expected entries, got {other:?}")),
        };
    };
    items.iter().map(parse_entry).collect()
}

fn parse_entry(item: &Value) -> Result<Entry, String> {
    let Value::Array(pair) = item else {
        return Err("entry is not an array".into());
    };
    let [id, payload] = pair.as_slice() else {
        return Err("entry is not [id, fields]".into());
    };
    let id = bytes(id)
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .ok_or("entry id")?;
    let fields = match payload {
        Value::Nil => None,
        Value::Array(kv) => Some(
            kv.chunks(2)
                .map(|p| match p {
                    [k, v] => {
                        let k = bytes(k).map(|b| String::from_utf8_lossy(b).into_owned());
                        Ok((
                            k.ok_or("field name")?,
                            bytes(v).ok_or("field value")?.to_vec(),
                        ))
                    }
                    _ => Err("odd field list".to_owned()),
                })
                .collect::<Result<Vec<_>, String>>()?,
        ),
        _ => return Err("entry fields are not an array".into()),
    };
    Ok(Entry { id, fields })
}

pub(crate) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
