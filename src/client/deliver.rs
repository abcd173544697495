//! One delivery attempt: the stored record turned into the request the local app receives,
//! and what came back turned into what the policy needs.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::dispatch::Event;
use super::sign::{self, Signer};
use super::targets::Destination;
use crate::client::policy::jobs::Start;
use crate::client::policy::outcome::Attempt;
use crate::http::client::{Answer, Client, OutRequest, SendError};
use crate::http::{FieldValue, Fields};
use crate::stream::{Entry, Record, StreamId};

/// Hop-by-hop headers (RFC 9110 §7.6.1), the ones we rewrite, and `Expect` (the relay sends
/// the body at once and never waits for `100 Continue`; an app or proxy answering `417` to
/// the sender's `Expect` would dead-letter the webhook). Never forwarded; kept in the record.
const DROPPED: [&str; 9] = [
    "expect",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
];

/// Headers the relay sets; copies arriving from the sender are dropped so that nobody can
/// forge the dedupe key.
const OURS: [&str; 6] = [
    "x-relay-id",
    "x-relay-attempt",
    "x-relay-received-at",
    "x-relay-source",
    "x-relay-redelivery-of",
    "x-relay-replay-of",
];

/// The headers to forward: the original ones in order, minus hop-by-hop ones (including any
/// named by `Connection`), `Proxy-*`, `Host`, `Content-Length` and `X-Relay-*`; then ours.
pub fn forward_headers(record: &Record, relay_id: &str, attempt: u32) -> Fields {
    let listed: Vec<String> = record
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .filter_map(|(_, v)| v.as_str())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out: Fields = record
        .headers
        .iter()
        .filter(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            !DROPPED.contains(&lower.as_str())
                && !OURS.contains(&lower.as_str())
                && !lower.starts_with("proxy-")
                && !listed.contains(&lower)
                && valid_field(name, value)
        })
        .cloned()
        .collect();
    out.push(("X-Relay-Id".into(), relay_id.into()));
    out.push(("X-Relay-Attempt".into(), attempt.to_string().into()));
    out.push((
        "X-Relay-Received-At".into(),
        record.received_at.to_string().into(),
    ));
    if !record.source.is_empty() {
        out.push(("X-Relay-Source".into(), record.source.clone().into()));
    }
    out
}

/// A field we can write without corrupting the request (records from other writers may
/// hold anything).
fn valid_field(name: &str, value: &FieldValue) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && !value
            .as_bytes()
            .iter()
            .any(|b| *b == b'\r' || *b == b'\n' || *b == 0)
}

/// What one attempt produced: the policy's view, and the app's answer when there was one
/// (its status and first bytes, for log lines).
#[derive(Debug)]
pub struct Outcome {
    pub attempt: Attempt,
    pub answer: Option<Answer>,
}

/// Sends attempt number `attempt` of `entry` through `client`, signed by `signer` if any.
pub async fn deliver(
    client: &Client,
    signer: Option<&Signer>,
    entry: &Entry,
    attempt: u32,
) -> Outcome {
    let record = match entry.fields.as_deref().map(Record::from_fields) {
        Some(Ok(record)) => record,
        // Checked on intake; kept total so a bug costs one attempt, not a panic.
        _ => {
            return Outcome {
                attempt: Attempt::Lost("undecodable record".into()),
                answer: None,
            };
        }
    };
    let mut headers = forward_headers(&record, &entry.relay_id(), attempt);
    // A copy made by `redeliver` or `dlq replay` says which entry it copies.
    for (field, header) in [
        ("redelivery_of", "X-Relay-Redelivery-Of"),
        ("replay_of", "X-Relay-Replay-Of"),
    ] {
        let of = entry.field(field).and_then(|v| std::str::from_utf8(v).ok());
        if let Some(of) = of.filter(|of| !of.is_empty()) {
            headers.push((header.into(), of.to_owned().into()));
        }
    }
    if let Some(signer) = signer {
        // The relay's signature replaces a sender's Standard Webhooks headers (kept in the
        // record): the app verifies one signer, the relay.
        headers.retain(|(n, _)| !sign::HEADERS.iter().any(|h| n.eq_ignore_ascii_case(h)));
        let now = crate::clock::unix_ms() / 1000;
        headers.extend(signer.headers(&entry.relay_id(), now, &record.body));
    }
    let req = OutRequest {
        method: &record.method,
        headers: &headers,
        body: &record.body,
    };
    match client.send(&req).await {
        Ok(answer) => Outcome {
            attempt: Attempt::Answered {
                status: answer.status,
                retry_after: answer.retry_after(),
            },
            answer: Some(answer),
        },
        Err(e) => Outcome {
            attempt: match e {
                SendError::Connect(_) | SendError::Tls(_) => Attempt::Unreachable(e.to_string()),
                SendError::Lost(_) | SendError::Timeout(_) => Attempt::Lost(e.to_string()),
            },
            answer: None,
        },
    }
}

/// One finished attempt.
pub struct Attempted {
    pub id: StreamId,
    pub attempt: u32,
    pub outcome: Outcome,
    pub took: Duration,
    pub relay_id: String,
    pub source: String,
    pub received_at: u64,
    /// The target's name (`default`, or the routed source).
    pub target: String,
}

/// Sends a delivery's result when dropped without one: a panicking delivery task still
/// reports (as a lost attempt), so the webhook is never held forever.
struct Reporter {
    tx: mpsc::UnboundedSender<Event>,
    /// Taken when the attempt's own outcome is sent.
    result: Option<Box<Attempted>>,
}

impl Reporter {
    fn finish(mut self, outcome: Outcome, took: Duration) {
        if let Some(mut a) = self.result.take() {
            a.outcome = outcome;
            a.took = took;
            let _ = self.tx.send(Event::Attempted(a));
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(mut a) = self.result.take() {
            a.outcome.attempt = Attempt::Lost("the delivery task failed".into());
            let _ = self.tx.send(Event::Attempted(a));
        }
    }
}

/// Starts `start` in a task of `set`; its `Attempted` always comes back on `tx`.
pub fn spawn(
    set: &mut JoinSet<()>,
    to: &Destination,
    start: Start,
    tx: &mpsc::UnboundedSender<Event>,
) {
    let Start {
        id,
        entry,
        attempt,
        probe,
        route: _,
    } = start;
    if probe {
        log::debug!("probing the target with {id} (attempt {attempt})");
    }
    let text = |name| {
        entry
            .field(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let reporter = Reporter {
        tx: tx.clone(),
        result: Some(Box::new(Attempted {
            id,
            attempt,
            outcome: Outcome {
                attempt: Attempt::Lost(String::new()),
                answer: None,
            },
            took: Duration::ZERO,
            relay_id: entry.relay_id(),
            source: text("source"),
            received_at: text("received_at").parse().unwrap_or(0),
            target: to.name.clone(),
        })),
    };
    let (http, signer) = (to.http.clone(), to.signer.clone());
    crate::task::spawn_in(set, async move {
        let started = Instant::now();
        let outcome = deliver(&http, signer.as_ref(), &entry, attempt).await;
        reporter.finish(outcome, started.elapsed());
    });
}

/// The start of an answer's body as printable text for a log line (at most `max` chars).
pub fn body_excerpt(answer: &Answer, max: usize) -> String {
    let text = String::from_utf8_lossy(&answer.body_start);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(headers: &[(&str, &str)]) -> Record {
        Record {
            received_at: 1700000000123,
            method: "POST".into(),
            path: "/webhook/wa".into(),
            source: "wa".into(),
            remote: "1.2.3.4:5".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), (*v).into()))
                .collect(),
            body: b"{}".to_vec(),
            relay_id: String::new(),
        }
    }

    #[test]
    fn hop_by_hop_dropped_order_and_duplicates_kept_ours_added() {
        let r = record(&[
            ("Host", "relay.example"),
            ("X-A", "1"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "h"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Trailer", "X"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "x"),
            ("Expect", "100-continue"),
            ("Content-Length", "2"),
            ("x-a", "2"),
            ("X-Relay-Id", "forged"),
            ("X-Hub-Signature-256", "sha256=ab"),
        ]);
        let out = forward_headers(&r, "1-0", 3);
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str().expect("text")))
            .collect();
        assert_eq!(
            got,
            [
                ("X-A", "1"),
                ("x-a", "2"),
                ("X-Hub-Signature-256", "sha256=ab"),
                ("X-Relay-Id", "1-0"),
                ("X-Relay-Attempt", "3"),
                ("X-Relay-Received-At", "1700000000123"),
                ("X-Relay-Source", "wa"),
            ]
        );
    }

    #[test]
    fn no_source_header_without_source_and_unsafe_fields_skipped() {
        let mut r = record(&[("X-Evil", "a\r\nInjected: 1"), ("Bad Name", "v")]);
        r.source.clear();
        let out = forward_headers(&r, "1-0", 1);
        assert!(out.iter().all(|(n, _)| n.starts_with("X-Relay-")));
        assert!(!out.iter().any(|(n, _)| n == "X-Relay-Source"));
    }
}
