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

use serde_json::Value;
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::http::Response;
use crate::ops::events::{Event, status_of};
use crate::ops::partitions::{Partitions, merge_newest_first};
use crate::stream::{Store, StreamId, Summary, Trace, parse_activity};

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
        tokio::spawn(async move {
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
        tokio::spawn(run_hub(self.parts.clone(), self.hub.clone(), tx));
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

/// Follows Redis for every watcher while there is one.
async fn run_hub(
    parts: Partitions,
    slot: Arc<Mutex<Option<broadcast::Sender<Message>>>>,
    tx: broadcast::Sender<Message>,
) {
    log::debug!("live view: following {}", parts.streams());
    let n = parts.stores().len();
    let mut cursor = Cursor(vec![None; n]);
    // Every partition's activity messages, tagged with the partition; `None`: a
    // subscription ended (it is made again below).
    let (activity_tx, mut activity) = mpsc::unbounded_channel::<(usize, Option<Vec<u8>>)>();
    let mut subscribed = vec![false; n];
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            Some((p, m)) = activity.recv() => match m {
                Some(payload) => outcomes(&parts, p, &payload, &tx),
                None => subscribed[p] = false,
            },
            _ = poll.tick() => {
                {
                    // Stops when nobody watches; under the lock, so nobody subscribes to a
                    // hub that is going away.
                    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                    if tx.receiver_count() == 0 {
                        *slot = None;
                        log::debug!("live view: nobody watches, stopped");
                        return;
                    }
                }
                ticks += 1;
                for (p, store) in parts.stores().iter().enumerate() {
                    if !subscribed[p] && ticks % 20 == 1 {
                        subscribed[p] = subscribe(store, p, &activity_tx).await;
                    }
                    arrivals(&parts, p, &mut cursor, &tx).await;
                }
            }
        }
    }
}

/// Forwards partition `p`'s activity messages to `to`; false when Redis refused.
async fn subscribe(
    store: &Store,
    p: usize,
    to: &mpsc::UnboundedSender<(usize, Option<Vec<u8>>)>,
) -> bool {
    match store.follow_activity().await {
        Ok(mut rx) => {
            let to = to.clone();
            tokio::spawn(async move {
                while let Some(payload) = rx.recv().await {
                    if to.send((p, Some(payload))).is_err() {
                        return;
                    }
                }
                let _ = to.send((p, None));
            });
            true
        }
        Err(e) => {
            log::debug!("live view: outcomes not followed: {e}");
            false
        }
    }
}

async fn arrivals(
    parts: &Partitions,
    p: usize,
    cursor: &mut Cursor,
    tx: &broadcast::Sender<Message>,
) {
    let store = &parts.stores()[p];
    // A hub starts a few seconds back: a page that opened its stream and then loaded its
    // list misses nothing stored before the hub's first look (repeats are merged by id).
    // (Stream ids carry Redis's clock, so the start is taken from the newest id.)
    let after = match cursor.0[p] {
        Some(after) => after,
        None => match store.newest_id(store.stream()).await {
            Ok(newest) => {
                let newest: StreamId = newest.parse().unwrap_or(StreamId { ms: 0, seq: 0 });
                StreamId {
                    ms: newest.ms.saturating_sub(START_BACK_MS),
                    seq: 0,
                }
            }
            Err(e) => {
                log::debug!("live view: reading the stream failed: {e}");
                return;
            }
        },
    };
    let page = match store.page_after(after, MAX_ARRIVALS).await {
        Ok(page) => page,
        Err(e) => {
            log::debug!("live view: reading arrivals failed: {e}");
            return;
        }
    };
    cursor.0[p] = Some(after);
    if page.len() == MAX_ARRIVALS {
        cursor.0[p] = page.first().map(Summary::stream_id);
        let _ = tx.send(Message::Reset);
        return;
    }
    // A fast delivery's outcome is published before the poll sees its arrival: the arrival
    // carries what is already recorded.
    let ids: Vec<StreamId> = page.iter().map(Summary::stream_id).collect();
    let traces = store.traces(&ids).await.unwrap_or_default();
    for (i, s) in page.iter().enumerate().rev() {
        let id = s.stream_id();
        cursor.advance(p, id);
        let trace = traces.get(i).cloned().flatten();
        let _ = tx.send(Message::Received {
            p,
            id,
            cursor: cursor.to_string().into(),
            data: arrival(parts, p, s, trace).into(),
        });
    }
}

fn outcomes(parts: &Partitions, p: usize, payload: &[u8], tx: &broadcast::Sender<Message>) {
    let (group, traces) = parse_activity(payload);
    if group != parts.stores()[p].group() {
        return;
    }
    for (id, trace) in traces {
        let mut v = trace.to_json();
        v["id"] = Value::from(parts.label(p, &id));
        let _ = tx.send(Message::Outcome(v.to_string().into()));
    }
}

/// An arrival as `/events` lists it, with its outcome when one is already recorded.
fn arrival(parts: &Partitions, p: usize, s: &Summary, trace: Option<Trace>) -> String {
    let mut summary = s.clone();
    summary.id = parts.label(p, &s.id);
    Event {
        summary,
        status: status_of(trace.as_ref(), true, false),
        trace,
        earlier: Vec::new(),
    }
    .to_json()
    .to_string()
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
