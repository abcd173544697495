//! Appends that reach the store together go to Redis as one pipeline (`stream/batch.rs`):
//! each must still get its own id, its own record and its own error.

use std::sync::Arc;

use crm_relay::config::Secret;
use crm_relay::stream::{Keys, Record, Store, StoreError};

use crate::support::*;

fn store(url: String, stream: &str) -> Arc<Store> {
    let keys = Keys {
        stream: stream.into(),
        dlq: format!("{stream}:dlq"),
    };
    Arc::new(Store::new(&Secret::new(url), None, keys).unwrap())
}

fn record(n: usize) -> Record {
    Record {
        received_at: 1_700_000_000_000 + n as u64,
        method: "POST".into(),
        path: format!("/webhook/s{n}"),
        source: format!("s{n}"),
        remote: "127.0.0.1".into(),
        headers: vec![("X-N".into(), n.to_string().into())],
        body: format!("{{\"n\":{n}}}").into_bytes(),
        relay_id: String::new(),
    }
}

/// Spawned together on the test's one thread, the appends all reach the store in the same
/// turn of the runtime: one batch.
#[tokio::test]
async fn appends_in_one_batch_each_get_their_own_id_and_record() {
    let redis = Redis::start().await;
    let store = store(redis.url(), "batch:own");
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { (n, store.append(&record(n)).await) })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let (n, id) = task.await.unwrap();
        ids.push((id.expect("appended"), n));
    }
    let entries = redis.entries("batch:own");
    assert_eq!(entries.len(), 64);
    for (id, n) in ids {
        let (_, fields) = entries.iter().find(|(e, _)| *e == id).expect("entry");
        assert_eq!(fields["body"], record(n).body, "entry {id}");
        assert_eq!(fields["source"], format!("s{n}").into_bytes());
    }
}

#[tokio::test]
async fn an_error_reply_fails_only_its_own_append() {
    // A user that may XADD but not EVAL: append_below (a script) is refused, append is not.
    let redis = Redis::start().await;
    let mut admin = redis.conn();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "noeval", "on", ">pw", "~*", "+@all", "-eval"])
        .query(&mut admin)
        .unwrap();
    let store = store(
        format!("redis://noeval:pw@127.0.0.1:{}", redis.port),
        "batch:err",
    );
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.append(&record(1)).await }
    });
    let refused = tokio::spawn({
        let store = store.clone();
        async move { store.append_below(&record(2), 1000).await }
    });
    let last = tokio::spawn({
        let store = store.clone();
        async move { store.append(&record(3)).await }
    });
    let first = first.await.unwrap().expect("first append");
    let refused = refused.await.unwrap();
    let last = last.await.unwrap().expect("last append");
    assert!(
        matches!(&refused, Err(e @ StoreError::Refused(_)) if e.code() == Some("NOPERM")),
        "{refused:?}"
    );
    assert!(store.is_up(), "a refusal keeps the connection");
    let ids: Vec<String> = redis
        .entries("batch:err")
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(ids, [first, last]);
}

#[tokio::test]
async fn a_frozen_redis_fails_every_append_of_the_batch_then_heals() {
    let redis = Redis::start().await;
    let store = store(redis.url(), "batch:frozen");
    store.append(&record(0)).await.expect("connected");
    redis.signal("STOP");
    let tasks: Vec<_> = (1..=3)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.append(&record(n)).await })
        })
        .collect();
    for task in tasks {
        let result = task.await.unwrap();
        assert!(matches!(result, Err(StoreError::Timeout(_))), "{result:?}");
    }
    redis.signal("CONT");
    store.append(&record(4)).await.expect("a new connection");
    // The timed-out appends may have landed once Redis woke: at least once, never lost.
    assert!(redis.xlen("batch:frozen") >= 2);
}
