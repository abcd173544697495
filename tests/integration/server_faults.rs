//! Redis failures (killed, frozen, out of memory) and load: never a hang, never a 200 for an
//! entry Redis did not take, and recovery without restarting the relay.

use std::time::{Duration, Instant};

use crate::support::*;

/// How long a request may take while Redis is gone: the 1.8 s operation deadline plus slack
/// for a loaded test machine.
const BOUND: Duration = Duration::from_millis(3500);

async fn post_timed(relay: &Relay, body: &[u8]) -> (Resp, Duration) {
    let started = Instant::now();
    let resp = relay
        .request(&post("/webhook", &[("X-API-Key", API_KEY)], body))
        .await;
    (resp, started.elapsed())
}

async fn health(relay: &Relay) -> u16 {
    relay
        .request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_gives_503_then_recovers_without_losing_acknowledged_entries() {
    let mut redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:kill").await;
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        acknowledged.push(
            post_timed(&relay, format!("before-{i}").as_bytes())
                .await
                .0
                .id(),
        );
    }
    redis.kill();
    for _ in 0..3 {
        let (resp, took) = post_timed(&relay, b"during").await;
        assert_eq!(resp.status, 503);
        assert!(resp.header("retry-after").is_some());
        assert!(took < BOUND, "answered in {took:?}");
    }
    assert_eq!(health(&relay).await, 503);

    redis.restart().await;
    let mut recovered = false;
    for _ in 0..50 {
        let (resp, _) = post_timed(&relay, b"after").await;
        if resp.status == 200 {
            acknowledged.push(resp.id());
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "relay did not recover after redis came back");
    assert_eq!(health(&relay).await, 200);
    let stored: Vec<String> = redis
        .entries("t:kill")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged entry {id} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_gives_503_within_the_bound_then_recovers() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:frozen").await;
    post_timed(&relay, b"warm").await.0.id();
    redis.signal("STOP");
    let (resp, took) = post_timed(&relay, b"frozen").await;
    assert_eq!(resp.status, 503);
    assert!(took < BOUND, "answered in {took:?}");
    let (resp, took) = post_timed(&relay, b"frozen again").await;
    assert_eq!(resp.status, 503);
    assert!(took < BOUND, "answered in {took:?}");
    redis.signal("CONT");
    let mut ok = false;
    for _ in 0..50 {
        if post_timed(&relay, b"thawed").await.0.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "relay did not recover after SIGCONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_503() {
    let redis = Redis::start_with(&["--maxmemory-policy", "noeviction"]).await;
    let relay = Relay::start(&redis, "t:oom").await;
    post_timed(&relay, b"fits").await.0.id();
    redis.config_set("maxmemory", "1");
    let (resp, _) = post_timed(&relay, b"no room").await;
    assert_eq!(resp.status, 503);
    assert!(resp.header("retry-after").is_some());
    assert_eq!(redis.xlen("t:oom"), 1);
    redis.config_set("maxmemory", "0");
    post_timed(&relay, b"room again").await.0.id();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_posts_are_two_thousand_entries() {
    let redis = Redis::start().await;
    let relay = std::sync::Arc::new(Relay::start(&redis, "t:load").await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2000 {
        let relay = relay.clone();
        tasks.spawn(async move {
            let body = format!("{{\"n\":{i}}}");
            relay
                .request(&post(
                    "/webhook",
                    &[("X-API-Key", API_KEY)],
                    body.as_bytes(),
                ))
                .await
                .id()
        });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(id) = tasks.join_next().await {
        assert!(ids.insert(id.unwrap()), "duplicate id");
    }
    assert_eq!(ids.len(), 2000);
    assert_eq!(redis.xlen("t:load"), 2000);
    let mut bodies: Vec<Vec<u8>> = redis
        .entries("t:load")
        .into_iter()
        .map(|(_, f)| f["body"].clone())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 2000, "every body stored once");
}
