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
    /// is an array of its bytes.
    pub fn headers_json(&self) -> String {
        let pairs: Vec<serde_json::Value> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    FieldValue::Text(t) => serde_json::Value::from(t.as_str()),
                    FieldValue::Bytes(b) => serde_json::Value::from(b.clone()),
                };
                serde_json::json!([name, value])
            })
            .collect();
        serde_json::Value::Array(pairs).to_string()
    }

    /// The format version this record needs.
    fn version(&self) -> &'static str {
        match self.headers.iter().any(|(_, v)| v.as_str().is_none()) {
            true => RECORD_VERSION_BYTES,
            false => RECORD_VERSION,
        }
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
        cmd.arg("headers")
            .arg(self.headers_json())
            .arg("body")
            .arg(&self.body[..]);
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
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn entries_decode_including_deleted_payloads() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk(b"1-0"),
                Value::Array(vec![
                    bulk(b"v"),
                    bulk(b"1"),
                    bulk(b"body"),
                    bulk(b"\xff\x00"),
                ]),
            ]),
            Value::Array(vec![bulk(b"2-0"), Value::Nil]),
        ]);
        let entries = parse_entries(&reply).unwrap();
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(entries[0].field("body"), Some(&b"\xff\x00"[..]));
        assert_eq!(entries[1].fields, None);
        assert_eq!(parse_entries(&Value::Nil).unwrap(), vec![]);
    }

    #[test]
    fn records_round_trip_through_fields() {
        let rec = Record {
            received_at: 17,
            method: "POST".into(),
            path: "/webhook/x?y".into(),
            source: "x".into(),
            remote: "1.2.3.4:5".into(),
            headers: vec![
                ("A".into(), "1".into()),
                ("a".into(), "2".into()),
                ("X-Latin1".into(), FieldValue::Bytes(b"Caf\xe9".to_vec())),
            ],
            body: b"\x00body".to_vec(),
            relay_id: "01ARYZ6S41TSV4RRFFQ69G5FAV".into(),
        };
        let mut cmd = redis::cmd("XADD");
        rec.write_fields(&mut cmd);
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .skip(1) // the command name
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => vec![],
            })
            .collect();
        let fields: Vec<(String, Vec<u8>)> = args
            .chunks(2)
            .map(|p| (String::from_utf8(p[0].clone()).unwrap(), p[1].clone()))
            .collect();
        assert_eq!(Record::from_fields(&fields).unwrap(), rec);
    }

    #[test]
    fn relay_id_prefers_origin_id() {
        let e = Entry {
            id: "5-0".into(),
            fields: Some(vec![("origin_id".into(), b"1-0".to_vec())]),
        };
        assert_eq!(e.relay_id(), "1-0");
        let e = Entry {
            id: "5-0".into(),
            fields: Some(vec![]),
        };
        assert_eq!(e.relay_id(), "5-0");
    }

    #[test]
    fn bad_records_are_errors() {
        assert!(Record::from_fields(&[]).is_err());
        let f = |v: &[u8], h: &[u8]| {
            vec![
                ("v".to_owned(), v.to_vec()),
                ("method".to_owned(), b"POST".to_vec()),
                ("headers".to_owned(), h.to_vec()),
            ]
        };
        assert!(Record::from_fields(&f(b"3", b"[]")).is_err());
        assert!(Record::from_fields(&f(b"2", br#"[["X",{"a":1}]]"#)).is_err());
        assert!(Record::from_fields(&f(b"1", b"{")).is_err());
        assert!(Record::from_fields(&f(b"1", b"[]")).is_ok());
    }
}
