//! The hub of the live feed: one task per listener, while someone watches, that follows
//! Redis for every watcher: polls each partition's stream for arrivals and follows its
//! activity channel for outcomes, and broadcasts both as messages.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use super::{Cursor, MAX_ARRIVALS, Message, POLL_EVERY, START_BACK_MS};
use crate::ops::events::{Event, status_of};
use crate::ops::partitions::Partitions;
use crate::stream::{Store, StreamId, Summary, Trace, parse_activity};

/// Follows Redis for every watcher while there is one.
pub(super) async fn run_hub(
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
            crate::task::spawn(async move {
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
pub(super) fn arrival(parts: &Partitions, p: usize, s: &Summary, trace: Option<Trace>) -> String {
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
