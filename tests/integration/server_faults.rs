//! Redis failures (killed, frozen, out of memory) and load: never a hang, never a 200 for an
//! entry Redis did not take, and recovery without restarting the relay.

use std::time::Duration;

use crate::support::*;

/// Posts one webhook. A request with Redis gone must get its answer while Redis is still
/// gone (a 503 within the operation deadline), never wait for Redis to come back: the
/// tests below only bring Redis back after those answers arrived.
async fn post_one(relay: &Relay, body: &[u8]) -> Resp {
    relay
        .request(&post("/webhook", &[("X-API-Key", API_KEY)], body))
        .await
}

/// Posts until one is stored (Redis is back); its id.
async fn stored_again(relay: &Relay, body: &[u8]) -> String {
    let stored = eventually_some(Duration::from_secs(10), || async {
        let resp = post_one(relay, body).await;
        (resp.status == 200).then(|| resp.id())
    })
    .await;
    stored.expect("the relay did not recover after Redis came back")
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
            post_one(&relay, format!("before-{i}").as_bytes())
                .await
                .id(),
        );
    }
    redis.kill();
    for _ in 0..3 {
        let resp = post_one(&relay, b"during").await;
        assert_eq!(resp.status, 503);
        assert!(resp.header("retry-after").is_some());
    }
    assert_eq!(health(&relay).await, 503);

    redis.restart().await;
    acknowledged.push(stored_again(&relay, b"after").await);
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
    post_one(&relay, b"warm").await.id();
    redis.signal("STOP");
    assert_eq!(post_one(&relay, b"frozen").await.status, 503);
    assert_eq!(post_one(&relay, b"frozen again").await.status, 503);
    redis.signal("CONT");
    stored_again(&relay, b"thawed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_503() {
    let redis = Redis::start_with(&["--maxmemory-policy", "noeviction"]).await;
    let relay = Relay::start(&redis, "t:oom").await;
    post_one(&relay, b"fits").await.id();
    redis.config_set("maxmemory", "1");
    let resp = post_one(&relay, b"no room").await;
    assert_eq!(resp.status, 503);
    assert!(resp.header("retry-after").is_some());
    assert_eq!(redis.xlen("t:oom"), 1);
    redis.config_set("maxmemory", "0");
    post_one(&relay, b"room again").await.id();
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

/// A Redis frozen before the first connection: the connection is accepted (by the kernel)
/// and never answered. The error names the limit that ran out, the connect timeout, not the
/// deadline of the command that never got to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_frozen_before_the_first_connection_is_reported_with_the_connect_limit() {
    let redis = Redis::start().await;
    redis.signal("STOP");
    let url = redis.url();
    let (code, out, err) = run_relay_off_runtime(
        &["check", "server"],
        &[("REDIS_URL", &url), ("RELAY_API_KEYS", "k")],
    )
    .await;
    redis.signal("CONT");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("cannot use redis: redis did not answer within 1s"),
        "{out}{err}"
    );
}
