//! The stored record: its field names, how it is written, and how entries read back from
//! Redis are decoded. The one place that knows the record's wire format.

use redis::Value;

use crate::http::{FieldValue, Fields};

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
    /// The `headers` field: a JSON array of `[name, value]` pairs; a value that is not UTF-8
    /// is an array of its bytes. Escaped as serde_json escapes. Written into a plain `Vec`
    /// (pushes inlined) and handed to the command whole: through the command's
    /// `io::Write`, each of the ~30 small writes per webhook was an out-of-line call.
    pub fn write_headers_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, (name, value)) in self.headers.iter().enumerate() {
            out.extend_from_slice(if i > 0 { b",[" } else { b"[" });
            json_str(out, name);
            out.push(b',');
            match value {
                FieldValue::Text(t) => json_str(out, t),
                FieldValue::Bytes(b) => {
                    out.push(b'[');
                    for (i, byte) in b.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(byte.to_string().as_bytes());
                    }
                    out.push(b']');
                }
            }
            out.push(b']');
        }
        out.push(b']');
    }

    /// `write_headers_json` into a buffer of its own.
    #[cfg(test)]
    pub fn headers_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.headers_len() + 2);
        self.write_headers_json(&mut out);
        out
    }

    /// About the length of `headers_json` (exact when nothing needs escaping).
    fn headers_len(&self) -> usize {
        let pair = |(n, v): &(String, FieldValue)| n.len() + v.as_bytes().len() + 8;
        self.headers.iter().map(pair).sum()
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
        FIXED + fields + self.relay_id.len() + self.headers_len() + 2 + self.body.len()
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
        let mut headers = Vec::with_capacity(self.headers_len() + 2);
        self.write_headers_json(&mut headers);
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
        let headers = parse_headers(get("headers").unwrap_or(b"[]"))
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

/// Bytes a JSON string escapes, as serde_json escapes them: the control characters, `"`
/// and `\\`.
const ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Whether any of the 8 bytes in `w` is one that JSON escapes (a control character, `"` or
/// `\\`): the classic "has a byte below n" and "has a zero byte" word tests, exact as a
/// yes/no.
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH != 0;
    below(w, 0x20)
        || below(w ^ (ONES * u64::from(b'"')), 1)
        || below(w ^ (ONES * u64::from(b'\\')), 1)
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it, the runs between escapes
/// copied whole. Header text rarely has any escape: the scan tests 8 bytes at a time, and
/// looks at single bytes only in a word that has one.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        let word = bytes
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok());
        if let Some(word) = word
            && !word_needs_escape(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        let (at, b) = (i, bytes[i]);
        i += 1;
        if !ESCAPED[usize::from(b)] {
            continue;
        }
        out.extend_from_slice(&bytes[run..at]);
        run = at + 1;
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            _ => 0,
        };
        match short {
            0 => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
            c => out.extend_from_slice(&[b'\\', c]),
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// The `headers` field back into fields: `[name, "text"]` or `[name, [bytes…]]` pairs.
fn parse_headers(raw: &[u8]) -> Result<Fields, String> {
    let pairs: Vec<(String, serde_json::Value)> =
        serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    pairs
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(t) => FieldValue::Text(t),
                serde_json::Value::Array(_) => {
                    FieldValue::Bytes(serde_json::from_value(value).map_err(|e| e.to_string())?)
                }
                _ => return Err(format!("value of {name} is neither text nor bytes")),
            };
            Ok((name, value))
        })
        .collect()
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
