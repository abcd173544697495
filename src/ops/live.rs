//! The inspector's live feed: Server-Sent Events on the admin listener (`GET /live`).
//!
//! One hub per listener, running only while someone watches, follows Redis for everyone:
//! it polls the stream for arrivals (a cheap `XREVRANGE` on the shared connection, never a
//! blocking read that would hold it) and follows the client's activity channel for outcomes.
//! Each watcher gets the hub's messages through a bounded buffer; one that falls behind is
//! told to reload (`reset`) or, if it stops reading, is cut off and reconnects with
//! `Last-Event-ID`, from which the arrivals it missed are sent again.
//!
//! Events: `received` (id: the stream id; data: the event as `/events` lists it), `outcome`
//! (data: `{"id":…, …the attempt record}`), `reset` (the page should reload its list), and a
//! comment every 15 s that keeps proxies from closing an idle stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::http::Response;
use crate::ops::events::{Event, status_of};
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

/// A message of the hub.
#[derive(Debug, Clone)]
enum Message {
    Received(StreamId, Arc<str>),
    Outcome(Arc<str>),
    Reset,
}

impl Message {
    fn wire(&self) -> Vec<u8> {
        match self {
            Message::Received(id, data) => format!("id: {id}\nevent: received\ndata: {data}\n\n"),
            Message::Outcome(data) => format!("event: outcome\ndata: {data}\n\n"),
            Message::Reset => "event: reset\ndata: {}\n\n".to_owned(),
        }
        .into_bytes()
    }
}

/// The live feed of one admin listener.
pub struct Live {
    store: Arc<Store>,
    hub: Arc<Mutex<Option<broadcast::Sender<Message>>>>,
    streams: Arc<Semaphore>,
}

impl Live {
    pub fn new(store: Arc<Store>) -> Live {
        Live {
            store,
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
        let after = last_event_id.and_then(|id| id.trim().parse::<StreamId>().ok());
        let hub = self.subscribe();
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let store = self.store.clone();
        tokio::spawn(async move {
            watch(&store, hub, after, tx).await;
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
        tokio::spawn(run_hub(self.store.clone(), self.hub.clone(), tx));
        rx
    }
}

/// Feeds one watcher until it leaves, falls too far behind, or the hub stops.
async fn watch(
    store: &Store,
    mut hub: broadcast::Receiver<Message>,
    after: Option<StreamId>,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let send = |m: Vec<u8>| tx.try_send(m).is_ok();
    if !send(format!("retry: {RETRY_MS}\n\n").into_bytes()) {
        return;
    }
    // Arrivals missed while disconnected; the hub's own copies of them are skipped.
    let mut last = after;
    if let Some(after) = after {
        match store.page_after(after, MAX_ARRIVALS).await {
            Ok(page) if page.len() < MAX_ARRIVALS => {
                for s in page.iter().rev() {
                    let id = s.stream_id();
                    if !send(Message::Received(id, arrival(s, None).into()).wire()) {
                        return;
                    }
                    last = Some(id);
                }
            }
            _ => {
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
                Ok(Message::Received(id, _)) if last.is_some_and(|l| id <= l) => continue,
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

/// Follows Redis for every watcher while there is one.
async fn run_hub(
    store: Arc<Store>,
    slot: Arc<Mutex<Option<broadcast::Sender<Message>>>>,
    tx: broadcast::Sender<Message>,
) {
    log::debug!("live view: following {}", store.stream());
    let mut last: Option<StreamId> = None;
    let mut activity: Option<mpsc::UnboundedReceiver<Vec<u8>>> = None;
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        let message = async {
            match activity.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = message => match m {
                Some(payload) => outcomes(&store, &payload, &tx),
                None => activity = None, // subscription lost: made again below
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
                if activity.is_none() && ticks % 20 == 1 {
                    match store.follow_activity().await {
                        Ok(rx) => activity = Some(rx),
                        Err(e) => log::debug!("live view: outcomes not followed: {e}"),
                    }
                }
                arrivals(&store, &mut last, &tx).await;
            }
        }
    }
}

async fn arrivals(store: &Store, last: &mut Option<StreamId>, tx: &broadcast::Sender<Message>) {
    // A hub starts a few seconds back: a page that opened its stream and then loaded its
    // list misses nothing stored before the hub's first look (repeats are merged by id).
    // (Stream ids carry Redis's clock, so the start is taken from the newest id.)
    let after = match *last {
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
    *last = Some(page.first().map_or(after, Summary::stream_id));
    if page.len() == MAX_ARRIVALS {
        let _ = tx.send(Message::Reset);
        return;
    }
    // A fast delivery's outcome is published before the poll sees its arrival: the arrival
    // carries what is already recorded.
    let ids: Vec<StreamId> = page.iter().map(Summary::stream_id).collect();
    let traces = store.traces(&ids).await.unwrap_or_default();
    for (i, s) in page.iter().enumerate().rev() {
        let trace = traces.get(i).cloned().flatten();
        let _ = tx.send(Message::Received(s.stream_id(), arrival(s, trace).into()));
    }
}

fn outcomes(store: &Store, payload: &[u8], tx: &broadcast::Sender<Message>) {
    let (group, traces) = parse_activity(payload);
    if group != store.group() {
        return;
    }
    for (id, trace) in traces {
        let mut v = trace.to_json();
        v["id"] = Value::from(id);
        let _ = tx.send(Message::Outcome(v.to_string().into()));
    }
}

/// An arrival as `/events` lists it, with its outcome when one is already recorded.
fn arrival(s: &Summary, trace: Option<Trace>) -> String {
    Event {
        summary: s.clone(),
        status: status_of(trace.as_ref(), true, false),
        trace,
        earlier: Vec::new(),
    }
    .to_json()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::stream::Keys;

    fn store() -> Store {
        let keys = Keys {
            stream: "s".into(),
            dlq: "s:dlq".into(),
        };
        // Never used: no catch-up without Last-Event-ID.
        Store::new(&Secret::new("redis://127.0.0.1:1"), None, keys).unwrap()
    }

    fn received(n: u64) -> Message {
        Message::Received(StreamId { ms: n, seq: 0 }, "{}".into())
    }

    /// A watcher that stops reading is cut off once its buffer is full, instead of holding
    /// messages (and memory) for it.
    #[tokio::test]
    async fn a_watcher_that_stops_reading_is_cut_off() {
        let (hub, rx) = broadcast::channel(64);
        let (tx, mut out) = mpsc::channel(4);
        let watcher = tokio::spawn(async move { watch(&store(), rx, None, tx).await });
        for n in 1..=10 {
            hub.send(received(n)).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("the watcher ends")
            .unwrap();
        let mut got = Vec::new();
        while let Ok(chunk) = out.try_recv() {
            got.push(String::from_utf8(chunk).unwrap());
        }
        assert_eq!(got.len(), 4, "only what fit: {got:?}");
        assert!(got[0].starts_with("retry: "));
        assert!(got[1].starts_with("id: 1-0\nevent: received\n"));
    }

    /// A watcher that fell behind the hub is told to reload instead of missing events silently.
    #[tokio::test]
    async fn a_lagging_watcher_is_told_to_reload() {
        let (hub, rx) = broadcast::channel(2);
        for n in 1..=5 {
            hub.send(received(n)).unwrap();
        }
        let (tx, mut out) = mpsc::channel(16);
        let watcher = tokio::spawn(async move { watch(&store(), rx, None, tx).await });
        let mut got = Vec::new();
        while got.len() < 4 {
            let chunk = tokio::time::timeout(Duration::from_secs(5), out.recv())
                .await
                .expect("a chunk")
                .expect("open");
            got.push(String::from_utf8(chunk).unwrap());
        }
        assert!(got[1].starts_with("event: reset\n"), "{got:?}");
        assert!(got[2].starts_with("id: 4-0\n") && got[3].starts_with("id: 5-0\n"));
        drop(hub);
        tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("the hub's end ends the watcher")
            .unwrap();
    }
}
