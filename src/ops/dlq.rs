//! Dead-letter operations shared by `crm-relay dlq …` and the admin API: summaries, the
//! readable table, one letter in full, replay and purge with unknown ids reported.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::ops::partitions::{Found, Partitions, merge_newest_first};
use std::sync::Arc;

use crate::stream::{Entry, Store, StoreError, StreamId};

/// Which dead letters an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<String>),
    All,
}

/// What a replay or purge did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `(dlq id, new main-stream id)` for replays; `(dlq id, None)` for purges.
    pub done: Vec<(String, Option<String>)>,
    /// Ids that are not in the DLQ (or are not stream ids at all).
    pub unknown: Vec<String>,
    /// `(id, the partitions' ids it may mean)`: a plain id found in several partitions.
    pub ambiguous: Vec<(String, Vec<String>)>,
}

impl Outcome {
    /// Whether every selected dead letter was handled.
    pub fn all_done(&self) -> bool {
        self.unknown.is_empty() && self.ambiguous.is_empty()
    }
}

/// The newest `limit` dead letters of every partition, newest first, ids labelled.
pub async fn list(parts: &Partitions, limit: usize) -> Result<Vec<Entry>, StoreError> {
    let mut lists = Vec::new();
    for store in parts.stores() {
        let entries = store.dlq_list(limit).await?;
        lists.push(entries.into_iter().map(|e| (e.stream_id(), e)).collect());
    }
    Ok(merge_newest_first(lists)
        .into_iter()
        .take(limit)
        .map(|(p, _, mut e)| {
            e.id = parts.label(p, &e.id);
            e
        })
        .collect())
}

/// The dead letter `handle` names, its id labelled.
pub async fn get(parts: &Partitions, handle: &str) -> Result<Found<Entry>, StoreError> {
    let found = parts
        .find(handle, |store, id| async move { store.dlq_get(id).await })
        .await?;
    Ok(match found {
        Found::One { p, id, mut value } => {
            value.id = parts.label(p, &value.id);
            Found::One { p, id, value }
        }
        other => other,
    })
}

/// Puts dead letters back on their partition's main stream (new id, same content) and
/// removes them.
pub async fn replay(parts: &Partitions, sel: &Selection) -> Result<Outcome, StoreError> {
    let mut out = Outcome::default();
    for (p, id, raw) in targets(parts, sel, &mut out).await? {
        match parts.stores()[p].dlq_replay(id).await? {
            Some(new_id) => out.done.push((raw, Some(parts.label(p, &new_id)))),
            None => out.unknown.push(raw),
        }
    }
    Ok(out)
}

/// Deletes dead letters.
pub async fn purge(parts: &Partitions, sel: &Selection) -> Result<Outcome, StoreError> {
    let mut out = Outcome::default();
    for (p, id, raw) in targets(parts, sel, &mut out).await? {
        match parts.stores()[p].dlq_delete(id).await? {
            true => out.done.push((raw, None)),
            false => out.unknown.push(raw),
        }
    }
    Ok(out)
}

/// The selected dead letters: partition, id there, name as given (or labelled, for `All`).
/// Names that find nothing, or several, go to `out`. Only full `<ms>-<seq>` ids name a dead
/// letter (a bare `1000` is unknown, never a range).
async fn targets(
    parts: &Partitions,
    sel: &Selection,
    out: &mut Outcome,
) -> Result<Vec<(usize, StreamId, String)>, StoreError> {
    let mut found = Vec::new();
    match sel {
        Selection::Ids(ids) => {
            for raw in ids {
                let exists =
                    |store: Arc<Store>, id| async move { Ok(store.dlq_get(id).await?.map(drop)) };
                match parts.find(raw, exists).await? {
                    Found::One { p, id, .. } => found.push((p, id, raw.clone())),
                    Found::Nothing => out.unknown.push(raw.clone()),
                    Found::Ambiguous(c) => out.ambiguous.push((raw.clone(), c)),
                }
            }
        }
        Selection::All => {
            for (p, store) in parts.stores().iter().enumerate() {
                for id in store.dlq_ids().await? {
                    found.push((p, id, parts.label(p, &id.to_string())));
                }
            }
        }
    }
    Ok(found)
}

fn text(entry: &Entry, name: &str) -> String {
    entry
        .field(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The one-line view of a dead letter, as JSON.
pub fn summary_json(entry: &Entry) -> Value {
    json!({
        "id": entry.id,
        "origin_id": entry.relay_id(),
        "source": text(entry, "source"),
        "attempts": text(entry, "attempts").parse::<u64>().unwrap_or(0),
        "last_status": text(entry, "last_status"),
        "last_error": text(entry, "last_error"),
        "failed_at": text(entry, "failed_at").parse::<u64>().unwrap_or(0),
        "size": entry.field("body").map_or(0, <[u8]>::len),
    })
}

/// One dead letter in full: every field, headers as pairs, the body as text when it is.
pub fn detail_json(entry: &Entry) -> Value {
    let mut v = summary_json(entry);
    v["method"] = json!(text(entry, "method"));
    v["path"] = json!(text(entry, "path"));
    v["received_at"] = json!(text(entry, "received_at").parse::<u64>().unwrap_or(0));
    add_content_json(entry, &mut v);
    v
}

/// Adds an entry's `headers` (as pairs) and `body` (when it is text; else `body_binary`).
pub fn add_content_json(entry: &Entry, v: &mut Value) {
    v["headers"] = entry
        .field("headers")
        .and_then(|h| serde_json::from_slice(h).ok())
        .unwrap_or(Value::Null);
    let body = entry.field("body").unwrap_or_default();
    match printable(body) {
        Some(t) => v["body"] = json!(t),
        None => {
            v["body_binary"] = json!(true);
            let shown = &body[..body.len().min(MAX_HEX)];
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            v["body_hex"] = json!(hex);
            v["body_hex_truncated"] = json!(shown.len() < body.len());
        }
    }
}

/// Bytes of a binary body shown in hex.
const MAX_HEX: usize = 64 * 1024;

/// The body as text if it is UTF-8 without control characters (other than whitespace).
fn printable(body: &[u8]) -> Option<&str> {
    let t = std::str::from_utf8(body).ok()?;
    t.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .then_some(t)
}

/// The `dlq list` table.
pub fn table(entries: &[Entry], now_ms: u64) -> String {
    let mut out = format!(
        "{:<22} {:<22} {:<12} {:>8} {:<24} {:>8} {:>9}\n",
        "ID", "ORIGIN ID", "SOURCE", "ATTEMPTS", "LAST ERROR", "AGE", "SIZE"
    );
    for e in entries {
        let s = summary_json(e);
        let failed_at = s["failed_at"].as_u64().unwrap_or(0);
        let mut err = s["last_error"].as_str().unwrap_or("").to_owned();
        if err.chars().count() > 24 {
            err = err.chars().take(23).collect::<String>() + "…";
        }
        let _ = writeln!(
            out,
            "{:<22} {:<22} {:<12} {:>8} {:<24} {:>8} {:>9}",
            e.id,
            s["origin_id"].as_str().unwrap_or(""),
            s["source"].as_str().unwrap_or(""),
            s["attempts"].to_string(),
            err,
            age(now_ms.saturating_sub(failed_at)),
            s["size"].to_string(),
        );
    }
    out
}

/// The `dlq show` text: metadata, headers, then the body (as-is when text).
pub fn show(entry: &Entry) -> String {
    let d = detail_json(entry);
    let mut out = String::new();
    for key in [
        "id",
        "origin_id",
        "source",
        "method",
        "path",
        "attempts",
        "last_status",
        "last_error",
        "received_at",
        "failed_at",
    ] {
        let v = &d[key];
        let _ = writeln!(
            out,
            "{key}: {}",
            v.as_str().map_or_else(|| v.to_string(), str::to_owned)
        );
    }
    add_content_text(entry, &d["headers"], &mut out);
    out
}

/// Appends an entry's headers and body (as-is when text) to a `show` text.
pub fn add_content_text(entry: &Entry, headers: &Value, out: &mut String) {
    out.push_str("headers:\n");
    for pair in headers.as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {}: {}",
            pair[0].as_str().unwrap_or(""),
            pair[1].as_str().unwrap_or("")
        );
    }
    let body = entry.field("body").unwrap_or_default();
    match printable(body) {
        Some(t) => {
            let _ = write!(out, "body ({} bytes):\n{t}\n", body.len());
        }
        None => {
            let _ = writeln!(out, "body: binary, {} bytes (not printed)", body.len());
        }
    }
}

pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &[u8]) -> Entry {
        let f = |k: &str, v: &[u8]| (k.to_owned(), v.to_vec());
        Entry {
            id: "9-0".into(),
            fields: Some(vec![
                f("v", b"1"),
                f("method", b"POST"),
                f("source", b"wa"),
                f("headers", br#"[["X-A","1"]]"#),
                f("body", body),
                f("origin_id", b"1-0"),
                f("attempts", b"3"),
                f("last_status", b"500"),
                f("last_error", b"HTTP 500"),
                f("failed_at", b"1000"),
            ]),
        }
    }

    #[test]
    fn table_and_show_are_readable() {
        let t = table(&[entry(b"{\"a\":1}")], 3_601_000);
        assert!(t.starts_with("ID"));
        assert!(
            t.contains("9-0") && t.contains("1-0") && t.contains("HTTP 500") && t.contains("1h")
        );
        let s = show(&entry(b"{\"a\":1}"));
        assert!(s.contains("origin_id: 1-0\n"));
        assert!(s.contains("  X-A: 1\n"));
        assert!(s.contains("body (7 bytes):\n{\"a\":1}\n"));
        let s = show(&entry(b"\x00\x01\xff"));
        assert!(s.contains("body: binary, 3 bytes (not printed)"));
    }

    #[test]
    fn json_views() {
        let d = detail_json(&entry(b"hi"));
        assert_eq!(d["attempts"], 3);
        assert_eq!(d["body"], "hi");
        assert_eq!(d["headers"][0][0], "X-A");
        assert_eq!(detail_json(&entry(b"\x00"))["body_binary"], true);
    }
}
