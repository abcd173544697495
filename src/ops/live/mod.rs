//! The inspector's live feed: Server-Sent Events on the admin listener (`GET /live`).
//!
//! One hub per listener, running only while someone watches, follows Redis for everyone:
//! it polls the stream for arrivals (a cheap `XREVRANGE` on the shared connection, never a
//! blocking read that would hold it) and follows the client's activity channel for outcomes.
//! Each watcher gets the hub's messages through a bounded buffer; one that falls behind is
//! told to reload (`reset`) or, if it stops reading, is cut off and reconnects with
//! `Last-Event-ID`, from which the arrivals it missed are sent again.
//!
//! Events: `received` (id: the stream id, or with several partitions each partition's last
//! stream id, comma-separated; data: the event as `/events` lists it), `outcome`
//! (data: `{"id":…, …the attempt record}`), `reset` (the page should reload its list), and a
//! comment every 15 s that keeps proxies from closing an idle stream.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::http::Response;
use crate::ops::partitions::{Partitions, merge_newest_first};
use crate::stream::{StreamId, Summary};
use hub::{arrival, run_hub};

mod hub;

/// Streams served at once per listener; more get `503`.
pub const MAX_STREAMS: usize = 16;
/// Messages the hub holds for slow watchers before they lag.
const HUB_BUFFER: usize = 1024;
/// Chunks buffered per watcher before it is cut off.
const WATCHER_BUFFER: usize = 256;
/// How often the hub looks for arrivals.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Arrivals read per poll (or per catch-up); more than this since the last look: `reset`.
const MAX_ARRIVALS: usize = 200;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// How far back a new hub starts.
const START_BACK_MS: u64 = 5000;
/// How long the page waits before reconnecting (the SSE `retry` field).
const RETRY_MS: u64 = 2000;

/// Where a watcher is: the last arrival seen in each partition. Its text is the SSE `id`:
/// the stream id with one partition, else every partition's, comma-separated (`-`: none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor(Vec<Option<StreamId>>);

impl Cursor {
    fn parse(text: &str, partitions: usize) -> Option<Cursor> {
        let mut ids = Vec::with_capacity(partitions);
        for id in text.trim().split(',') {
            ids.push(match id {
                "-" => None,
                id => Some(id.parse().ok()?),
            });
        }
        (ids.len() == partitions).then_some(Cursor(ids))
    }

    /// Whether arrival `id` of partition `p` is news, noting it if so.
    fn advance(&mut self, p: usize, id: StreamId) -> bool {
        let news = self.0[p].is_none_or(|l| id > l);
        if news {
            self.0[p] = Some(id);
        }
        news
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            match id {
                Some(id) => write!(f, "{sep}{id}")?,
                None => write!(f, "{sep}-")?,
            }
        }
        Ok(())
    }
}

/// A message of the hub.
#[derive(Debug, Clone)]
enum Message {
    /// Arrival `id` of partition `p`, with the hub's cursor after it.
    Received {
        p: usize,
        id: StreamId,
        cursor: Arc<str>,
        data: Arc<str>,
    },
    Outcome(Arc<str>),
    Reset,
}

impl Message {
    fn wire(&self) -> Vec<u8> {
        match self {
            Message::Received { cursor, data, .. } => {
                format!("id: {cursor}\nevent: received\ndata: {data}\n\n")
            }
            Message::Outcome(data) => format!("event: outcome\ndata: {data}\n\n"),
            Message::Reset => "event: reset\ndata: {}\n\n".to_owned(),
        }
        .into_bytes()
    }
}

/// The live feed of one admin listener.
pub struct Live {
    parts: Partitions,
    hub: Arc<Mutex<Option<broadcast::Sender<Message>>>>,
    streams: Arc<Semaphore>,
}

impl Live {
    pub fn new(parts: Partitions) -> Live {
        Live {
            parts,
            hub: Arc::default(),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    /// Answers `GET /live`: a stream of events, from after `last_event_id` when the page
    /// reconnects.
    pub fn open(&self, last_event_id: Option<&str>) -> Response {
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            return Response::error(503, "too many live views open")
                .with_header("Retry-After", "5");
        };
        let n = self.parts.stores().len();
        let after = last_event_id.and_then(|id| Cursor::parse(id, n));
        let hub = self.subscribe();
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let parts = self.parts.clone();
        crate::task::spawn(async move {
            watch(&parts, hub, after, tx).await;
            drop(permit);
        });
        Response::streaming("text/event-stream", rx)
            .with_header("Cache-Control", "no-store")
            .with_header("X-Accel-Buffering", "no")
    }

    /// A receiver of the hub's messages, starting the hub if nobody watched.
    fn subscribe(&self) -> broadcast::Receiver<Message> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = hub.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(HUB_BUFFER);
        *hub = Some(tx.clone());
        crate::task::spawn(run_hub(self.parts.clone(), self.hub.clone(), tx));
        rx
    }
}

/// Feeds one watcher until it leaves, falls too far behind, or the hub stops.
async fn watch(
    parts: &Partitions,
    mut hub: broadcast::Receiver<Message>,
    after: Option<Cursor>,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let send = |m: Vec<u8>| tx.try_send(m).is_ok();
    if !send(format!("retry: {RETRY_MS}\n\n").into_bytes()) {
        return;
    }
    // Arrivals missed while disconnected; the hub's own copies of them are skipped.
    let mut last = after
        .clone()
        .unwrap_or_else(|| Cursor(vec![None; parts.stores().len()]));
    if let Some(after) = after {
        match missed(parts, &after).await {
            Some(missed) => {
                for (p, s) in missed {
                    let id = s.stream_id();
                    last.advance(p, id);
                    let data = arrival(parts, p, &s, None).into();
                    let cursor = last.to_string().into();
                    if !send(
                        Message::Received {
                            p,
                            id,
                            cursor,
                            data,
                        }
                        .wire(),
                    ) {
                        return;
                    }
                }
            }
            None => {
                if !send(Message::Reset.wire()) {
                    return;
                }
            }
        }
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.tick().await;
    loop {
        let wire = tokio::select! {
            m = hub.recv() => match m {
                Ok(Message::Received { p, id, .. }) if !last.advance(p, id) => continue,
                Ok(m) => m.wire(),
                Err(broadcast::error::RecvError::Lagged(_)) => Message::Reset.wire(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = heartbeat.tick() => b": keep-alive\n\n".to_vec(),
            () = tx.closed() => return,
        };
        // A watcher whose buffer is full has stopped reading: cut it off; it reconnects.
        if !send(wire) {
            return;
        }
    }
}

/// The arrivals after `after` in every partition, oldest first; `None` when there are too
/// many (or Redis fails): the page reloads instead.
async fn missed(parts: &Partitions, after: &Cursor) -> Option<Vec<(usize, Summary)>> {
    let mut pages = Vec::new();
    for (p, store) in parts.stores().iter().enumerate() {
        let page = match after.0[p] {
            Some(from) => store.page_after(from, MAX_ARRIVALS).await.ok()?,
            None => Vec::new(),
        };
        if page.len() == MAX_ARRIVALS {
            return None;
        }
        // Pages come newest first.
        pages.push(page.into_iter().map(|s| (s.stream_id(), s)).collect());
    }
    let merged = merge_newest_first(pages).into_iter().rev();
    Some(merged.map(|(p, _, s)| (p, s)).collect())
}

#[cfg(test)]
mod tests;
