//! The terminal views of `events` and `events show`.

use std::fmt::Write as _;

use super::{Event, Listing};
use crate::ops::dlq::{add_content_text, age};
use crate::stream::{Entry, Trace};

/// Characters of the last result shown in the table.
const LAST: usize = 40;

/// The `events` table, newest first.
pub fn table(listing: &Listing, now_ms: u64) -> String {
    let mut out = format!(
        "{:<22} {:>5} {:<12} {:>9} {:<12} {:>7}  {}\n",
        "ID", "AGE", "SOURCE", "SIZE", "STATUS", "ATTEMPT", "LAST RESULT"
    );
    for e in &listing.events {
        let s = &e.summary;
        let (attempt, last) = e
            .trace
            .as_ref()
            .map_or((String::new(), String::new()), |t| {
                (t.attempt.to_string(), shorten(&result(t), LAST))
            });
        let source = if s.source.is_empty() { "-" } else { &s.source };
        let _ = writeln!(
            out,
            "{:<22} {:>5} {:<12} {:>9} {:<12} {:>7}  {}",
            s.id,
            age(now_ms.saturating_sub(s.received_at)),
            shorten(source, 12),
            s.size,
            e.status.as_str(),
            attempt,
            last
        );
    }
    if !listing.complete {
        out.push_str("(stopped after scanning 200000 webhooks: narrow it with --since)\n");
    }
    if let Some(next) = listing.next {
        let _ = writeln!(out, "(more: add --before {next})");
    }
    out
}

/// The last attempt in a few words: `200 in 3 ms`, `HTTP 500 …`, `connection refused`.
fn result(t: &Trace) -> String {
    match (&t.error, t.status) {
        (None, Some(status)) => format!("{status} in {} ms", t.took_ms),
        (Some(e), _) => e.clone(),
        (None, None) => String::new(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    match s.chars().count() > max {
        true => s.chars().take(max - 1).collect::<String>() + "…",
        false => s.to_owned(),
    }
}

/// `events show`: the webhook, what became of it, then its headers and body.
pub fn show_text(e: &Event, entry: &Entry) -> String {
    let s = &e.summary;
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        if !v.is_empty() {
            let _ = writeln!(out, "{k}: {v}");
        }
    };
    line("id", &s.id);
    line("relay_id", &s.relay_id);
    line("redelivery_of", &s.redelivery_of);
    line("replay_of", &s.replay_of);
    line("source", &s.source);
    line("method", &s.method);
    line("path", &s.path);
    line("remote", &s.remote);
    line("received_at", &s.received_at.to_string());
    line("status", e.status.as_str());
    if let Some(t) = &e.trace {
        line("attempt", &t.attempt.to_string());
        line(
            "last_status",
            &t.status.map(|s| s.to_string()).unwrap_or_default(),
        );
        line("last_result", &result(t));
        line("last_attempt_at", &t.at.to_string());
        line("dlq_id", t.dlq_id.as_deref().unwrap_or(""));
        line("target", t.target.as_deref().unwrap_or("default"));
        if let Some(answer) = &t.answer {
            let _ = writeln!(out, "last_answer (first KiB):\n{}", answer.trim_end());
        }
    }
    if !e.earlier.is_empty() {
        let _ = writeln!(out, "earlier attempts:");
        for t in &e.earlier {
            let _ = writeln!(out, "  #{} at {}: {}", t.attempt, t.at, result(t));
        }
    }
    let headers = entry
        .field("headers")
        .and_then(|h| serde_json::from_slice(h).ok())
        .unwrap_or(serde_json::Value::Null);
    add_content_text(entry, &headers, &mut out);
    out
}
