// Tests spawn their tasks directly (clippy.toml asks the relay's own code to use crate::task).
#![allow(clippy::disallowed_methods)]

use super::*;
use crate::config::Secret;
use crate::stream::{Keys, Store};

fn parts() -> Partitions {
    let keys = Keys {
        stream: "s".into(),
        dlq: "s:dlq".into(),
    };
    // Never used: no catch-up without Last-Event-ID.
    let store = Store::new(&Secret::new("redis://127.0.0.1:1"), None, keys).unwrap();
    Partitions::new(vec![Arc::new(store)])
}

fn received(n: u64) -> Message {
    let id = StreamId { ms: n, seq: 0 };
    Message::Received {
        p: 0,
        id,
        cursor: id.to_string().into(),
        data: "{}".into(),
    }
}

#[test]
fn cursors_name_every_partitions_last_arrival() {
    let one = Cursor::parse("17-3", 1).unwrap();
    assert_eq!(
        one.to_string(),
        "17-3",
        "one partition: the stream id, as before"
    );
    let mut c = Cursor::parse("5-0,-,9-1", 3).unwrap();
    assert!(!c.advance(0, StreamId { ms: 5, seq: 0 }), "seen");
    assert!(
        c.advance(1, StreamId { ms: 2, seq: 0 }),
        "the first of partition 1"
    );
    assert!(c.advance(2, StreamId { ms: 9, seq: 2 }));
    assert_eq!(c.to_string(), "5-0,2-0,9-2");
    assert_eq!(
        Cursor::parse("5-0,9-1", 3),
        None,
        "a cursor for another layout"
    );
    assert_eq!(Cursor::parse("junk", 1), None);
}

/// A watcher that stops reading is cut off once its buffer is full, instead of holding
/// messages (and memory) for it.
#[tokio::test]
async fn a_watcher_that_stops_reading_is_cut_off() {
    let (hub, rx) = broadcast::channel(64);
    let (tx, mut out) = mpsc::channel(4);
    let watcher = tokio::spawn(async move { watch(&parts(), rx, None, tx).await });
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
    let watcher = tokio::spawn(async move { watch(&parts(), rx, None, tx).await });
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
