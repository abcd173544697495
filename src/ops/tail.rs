//! `crm-relay tail`: webhooks as they arrive (the main stream) and as their attempts end (the
//! activity channel the client publishes on), one line each, until interrupted. `--json` prints one
//! JSON object per line for scripts.

use std::io::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::ops::partitions::Partitions;
use crate::shutdown::Shutdown;
use crate::stream::{Entry, Store, StoreError, Trace, parse_activity};

/// Entries per read.
const BATCH: usize = 16;
/// How long one read waits for news (below the store's deadline).
const BLOCK_MS: u64 = 1000;

/// What `tail` shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub json: bool,
    pub source: Option<String>,
}

/// Follows arrivals and outcomes until `shutdown` or until stdout is closed (`tail | head`).
/// Losing Redis ends it with an error (exit 1): a supervisor or the operator restarts it.
pub async fn run(
    parts: &Partitions,
    opts: &Options,
    mut shutdown: Shutdown,
) -> Result<(), StoreError> {
    let (tx, mut rx) = mpsc::channel::<Result<Vec<Value>, StoreError>>(64);
    let mut followers = JoinSet::new();
    for (p, store) in parts.stores().iter().enumerate() {
        let after = store.newest_id(store.stream()).await?;
        let activity = store.follow_activity().await?;
        let label = Labeller {
            parts: parts.clone(),
            p,
        };
        crate::task::spawn_in(
            &mut followers,
            follow(store.clone(), label, after, activity, tx.clone()),
        );
    }
    drop(tx);
    // On stderr, so `--json` output stays pure: scripts (and tests) wait for this line.
    eprintln!(
        "following {} (group {}); Ctrl-C to stop",
        parts.streams(),
        parts.first().group()
    );
    let mut out = std::io::stdout();
    loop {
        let events = tokio::select! {
            batch = rx.recv() => match batch {
                Some(events) => events?,
                None => return Err(StoreError::Protocol("every follower stopped".into())),
            },
            () = shutdown.wait() => return Ok(()),
        };
        let mut lines = String::new();
        for ev in events {
            let source = ev["source"].as_str().unwrap_or("");
            if opts.source.as_deref().is_some_and(|s| s != source) {
                continue;
            }
            lines.push_str(&match opts.json {
                true => ev.to_string(),
                false => render(&ev),
            });
            lines.push('\n');
        }
        if out
            .write_all(lines.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(()); // stdout closed
        }
    }
}

/// How one partition's ids are shown.
struct Labeller {
    parts: Partitions,
    p: usize,
}

impl Labeller {
    fn id(&self, id: &str) -> String {
        self.parts.label(self.p, id)
    }
}

/// Sends one partition's arrivals and outcomes to `tx` until it closes or Redis fails.
async fn follow(
    store: Arc<Store>,
    label: Labeller,
    mut after: String,
    mut activity: mpsc::UnboundedReceiver<Vec<u8>>,
    tx: mpsc::Sender<Result<Vec<Value>, StoreError>>,
) {
    let stream = store.stream().to_owned();
    let group = store.group().to_owned();
    loop {
        // A read cut short by a message is simply made again from the same id: nothing is
        // skipped (at worst an arrival waits for the abandoned read to time out in Redis).
        let from = [(stream.clone(), after.clone())];
        let events = tokio::select! {
            read = store.read_after(&from, BATCH, BLOCK_MS) => match read {
                Ok(read) => {
                    let entries = read.into_iter().flat_map(|(_, e)| e).collect::<Vec<_>>();
                    if let Some(last) = entries.last() {
                        after = last.id.clone();
                    }
                    Ok(entries.iter().map(|e| arrival(e, &label)).collect())
                }
                Err(e) => Err(e),
            },
            message = activity.recv() => match message {
                Some(payload) => Ok(endings(&payload, &group, &label)),
                None => Err(StoreError::Protocol("the activity subscription ended".into())),
            },
            () = tx.closed() => return,
        };
        let failed = events.is_err();
        if tx.send(events).await.is_err() || failed {
            return;
        }
    }
}

/// A webhook stored by the server.
fn arrival(e: &Entry, label: &Labeller) -> Value {
    let text = |name: &str| {
        e.field(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    json!({
        "event": "received",
        "id": label.id(&e.id),
        "relay_id": e.relay_id(),
        "source": text("source"),
        "method": text("method"),
        "path": text("path"),
        "size": e.field("body").map_or(0, <[u8]>::len),
        "at": text("received_at").parse::<u64>().unwrap_or(0),
    })
}

/// The attempts one activity message records, for `group` only.
fn endings(payload: &[u8], group: &str, label: &Labeller) -> Vec<Value> {
    let (g, traces) = parse_activity(payload);
    if g != group {
        return Vec::new();
    }
    traces
        .into_iter()
        .map(|(id, t)| ending(&label.id(&id), &t))
        .collect()
}

fn ending(id: &str, t: &Trace) -> Value {
    json!({
        "event": t.state.as_str(),
        "id": id,
        "source": t.source,
        "attempt": t.attempt,
        "status": t.status,
        "took_ms": t.took_ms,
        "error": t.error,
        "dlq_id": t.dlq_id,
        "answer": t.answer,
        "at": t.at,
    })
}

/// One readable line: `12:00:01.234Z  received   1764…-0  whatsapp  1234 B  POST /webhook/whatsapp`.
pub fn render(ev: &Value) -> String {
    let at = ev["at"].as_u64().unwrap_or(0);
    let clock = format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        at / 3_600_000 % 24,
        at / 60_000 % 60,
        at / 1000 % 60,
        at % 1000
    );
    let s = |k: &str| ev[k].as_str().unwrap_or("").to_owned();
    let source = match s("source") {
        src if src.is_empty() => "-".to_owned(),
        src => src,
    };
    let what = s("event");
    let answer: String = s("answer")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect();
    let error = match answer.trim() {
        "" => s("error"),
        a => format!("{}: {a}", s("error")),
    };
    let detail = match what.as_str() {
        "received" => format!("{} B  {} {}", ev["size"], s("method"), s("path")),
        "delivered" => format!("{} in {} ms", ev["status"], ev["took_ms"]),
        "dead" => format!("{error} → DLQ {}", s("dlq_id")),
        _ => error,
    };
    let attempt = match ev["attempt"].as_u64() {
        Some(n) if n > 1 => format!(" (attempt {n})"),
        _ => String::new(),
    };
    format!(
        "{clock}  {what:<9}  {:<22}  {source:<12}  {detail}{attempt}",
        s("id")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_like_a_log() {
        let ev = json!({"event": "delivered", "id": "1-0", "source": "wa", "attempt": 2,
            "status": 200, "took_ms": 3, "at": 3_723_004u64});
        assert_eq!(
            render(&ev),
            "01:02:03.004Z  delivered  1-0                     wa            200 in 3 ms (attempt 2)"
        );
        let ev = json!({"event": "received", "id": "1-0", "source": "", "size": 12,
            "method": "POST", "path": "/webhook", "at": 0});
        assert!(
            render(&ev).ends_with("-             12 B  POST /webhook"),
            "{}",
            render(&ev)
        );
    }
}
