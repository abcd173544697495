//! Delivery under the failure shapes real apps and links produce: many poison webhooks, a lone
//! poison, throttling, early answers, lost requests on reused connections, HTTP/1.0, slow
//! links to Redis with large bodies. Server and Redis are real; the app is the raw sink.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::link::SlowLink;
use crate::support::sink::{Answer, Received, Sink};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;

async fn store(relay: &Relay, body: &[u8]) -> String {
    relay
        .request(&post("/webhook/t", &[("X-API-Key", API_KEY)], body))
        .await
        .id()
}

fn count_of(received: &[Received], body: &[u8]) -> usize {
    received.iter().filter(|r| r.body == body).count()
}

fn metrics_text(client: &RelayClient) -> String {
    let mut out = String::new();
    client.metrics.render(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_waiting_for_a_retry_never_stop_fresh_ones() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "d:stall").await;
    let sink = Sink::start().await;
    sink.script(|r, _| match r.body.starts_with(b"poison") {
        true => Answer::Status(500),
        false => Answer::Status(200),
    });
    let config = client_config(
        &redis.url(),
        "d:stall",
        &sink.url(),
        // About capacity, not the breaker (64 different webhooks failing would open it).
        &[
            ("RELAY_CONCURRENCY", "1"),
            ("RELAY_MAX_ATTEMPTS", "3"),
            ("RELAY_BREAKER_THRESHOLD", "1000"),
        ],
    );
    let client = RelayClient::start(config);
    for i in 0..64 {
        store(&relay, format!("poison-{i}").as_bytes()).await;
    }
    assert!(
        sink.wait_for(WAIT, |r| r.len() >= 64).await,
        "the poison ones are attempted"
    );
    for i in 0..5 {
        store(&relay, format!("healthy-{i}").as_bytes()).await;
    }
    assert!(
        sink.wait_for(WAIT, |r| r
            .iter()
            .filter(|r| r.body.starts_with(b"healthy-"))
            .count()
            >= 5)
            .await,
        "64 webhooks waiting for retries held back the fresh ones"
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_webhook_among_traffic_is_dead_lettered_after_exactly_max_attempts() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "d:lone").await;
    let sink = Sink::start().await;
    sink.script(|r, _| match r.body == b"poison" {
        true => Answer::Status(500),
        false => Answer::Status(200),
    });
    let config = client_config(
        &redis.url(),
        "d:lone",
        &sink.url(),
        // Retries come after the other traffic has been delivered.
        &[
            ("RELAY_MAX_ATTEMPTS", "4"),
            ("RELAY_BACKOFF_BASE", "300ms"),
            ("RELAY_BACKOFF_MAX", "600ms"),
        ],
    );
    let client = RelayClient::start(config);
    for i in 0..10 {
        store(&relay, format!("before-{i}").as_bytes()).await;
    }
    let poison = relay
        .request(&post("/webhook/t", &[("X-API-Key", API_KEY)], b"poison"))
        .await
        .relay_id();
    for i in 0..10 {
        store(&relay, format!("after-{i}").as_bytes()).await;
    }
    assert!(
        eventually(WAIT, || async { redis.xlen("d:lone:dlq") == 1 }).await,
        "the poison webhook was never dead-lettered"
    );
    assert_eq!(redis.dlq_field("d:lone", "origin_id"), [poison]);
    assert_eq!(redis.dlq_field("d:lone", "attempts"), ["4"]);
    assert_eq!(redis.dlq_field("d:lone", "last_status"), ["500"]);
    assert_eq!(count_of(&sink.received(), b"poison"), 4);
    assert!(eventually(WAIT, || async { redis.pending("d:lone") == 0 }).await);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_app_gets_no_webhook_dead_lettered() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "d:429").await;
    let sink = Sink::start().await;
    let n = Arc::new(AtomicUsize::new(0));
    let m = n.clone();
    sink.script(move |_, _| match m.fetch_add(1, Ordering::Relaxed) % 2 {
        0 => Answer::Status(429),
        _ => Answer::Status(200),
    });
    let config = client_config(
        &redis.url(),
        "d:429",
        &sink.url(),
        &[("RELAY_MAX_ATTEMPTS", "3")],
    );
    let client = RelayClient::start(config);
    for i in 0..200 {
        store(&relay, format!("wh-{i}").as_bytes()).await;
    }
    let delivered = |r: &[Received]| {
        let mut ok: Vec<&[u8]> = r.iter().map(|r| r.body.as_slice()).collect();
        ok.sort();
        ok.dedup();
        ok.len()
    };
    assert!(
        eventually(WAIT, || async {
            redis.pending("d:429") == 0 && delivered(&sink.received()) == 200
        })
        .await
    );
    assert_eq!(
        redis.xlen("d:429:dlq"),
        0,
        "429 is backpressure, not failure"
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_413_is_taken_as_the_answer() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    // Like gunicorn past its body limit: answer from the head, close with the body unread.
    sink.early(|r| (r.content_length() > MIB).then_some(413));
    let client = RelayClient::start(client_config(&redis.url(), "d:early", &sink.url(), &[]));
    let id = redis.add_webhook("d:early", &vec![b'x'; 16 * MIB]);
    assert!(
        eventually(WAIT, || async { redis.xlen("d:early:dlq") == 1 }).await,
        "the app's 413 was never read"
    );
    assert_eq!(redis.dlq_field("d:early", "origin_id"), [id]);
    assert_eq!(redis.dlq_field("d:early", "last_status"), ["413"]);
    assert_eq!(redis.dlq_field("d:early", "attempts"), ["1"]);
    assert_eq!(sink.count(), 1, "a final answer is not retried");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_lost_on_a_reused_connection_is_the_next_attempt() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "d:reuse").await;
    let sink = Sink::start().await;
    // The second request on a kept-alive connection is read, then the connection closes
    // without an answer: the app may have processed it.
    sink.script(|r, _| match r.on_connection {
        0 => Answer::Status(200),
        _ => Answer::Drop,
    });
    let config = client_config(
        &redis.url(),
        "d:reuse",
        &sink.url(),
        &[("RELAY_CONCURRENCY", "1")],
    );
    let client = RelayClient::start(config);
    store(&relay, b"first").await;
    assert!(sink.wait_for(WAIT, |r| count_of(r, b"first") == 1).await);
    store(&relay, b"second").await;
    assert!(sink.wait_for(WAIT, |r| count_of(r, b"second") == 2).await);
    assert!(eventually(WAIT, || async { redis.pending("d:reuse") == 0 }).await);
    let attempts: Vec<(u32, usize)> = sink
        .received()
        .iter()
        .filter(|r| r.body == b"second")
        .map(|r| (r.attempt(), r.on_connection))
        .collect();
    assert_eq!(
        attempts,
        [(1, 1), (2, 0)],
        "a request that may have been processed is resent as the next attempt"
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_answers_do_not_keep_the_connection() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "d:h10").await;
    let sink = Sink::start().await;
    sink.script(|_, _| Answer::Http10(200));
    let config = client_config(
        &redis.url(),
        "d:h10",
        &sink.url(),
        &[("RELAY_CONCURRENCY", "1")],
    );
    let client = RelayClient::start(config);
    for body in [&b"one"[..], b"two", b"three"] {
        store(&relay, body).await;
        assert!(sink.wait_for(WAIT, |r| count_of(r, body) == 1).await);
    }
    assert!(eventually(WAIT, || async { redis.pending("d:h10") == 0 }).await);
    let got: Vec<(u32, usize)> = sink
        .received()
        .iter()
        .map(|r| (r.attempt(), r.on_connection))
        .collect();
    assert_eq!(got, [(1, 0), (1, 0), (1, 0)], "each on a new connection");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_entries_over_a_slow_link_are_each_delivered_once() {
    let redis = Redis::start().await;
    let link = SlowLink::start(
        format!("127.0.0.1:{}", redis.port).parse().unwrap(),
        MIB as u64,
    )
    .await;
    let sink = Sink::start().await;
    let mut bodies = vec![vec![b'L'; 4 * MIB]];
    for i in 0..6u8 {
        bodies.push(vec![b'a' + i; MIB]);
    }
    for b in &bodies {
        redis.add_webhook("d:slow", b);
    }
    let client = RelayClient::start(client_config(&link.redis_url(), "d:slow", &sink.url(), &[]));
    assert!(
        sink.wait_for(Duration::from_secs(60), |r| bodies
            .iter()
            .all(|b| count_of(r, b) >= 1))
            .await,
        "not every large entry was delivered over a 1 MiB/s link"
    );
    assert!(eventually(WAIT, || async { redis.pending("d:slow") == 0 }).await);
    let received = sink.received();
    for b in &bodies {
        assert_eq!(count_of(&received, b), 1, "delivered once");
    }
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_dead_letter_write_lands_exactly_once() {
    let redis = Redis::start().await;
    let link = SlowLink::start(
        format!("127.0.0.1:{}", redis.port).parse().unwrap(),
        MIB as u64,
    )
    .await;
    let sink = Sink::start().await;
    sink.script(|_, _| Answer::Status(400));
    redis.add_webhook("d:dlslow", &vec![b'z'; 5 * MIB / 2]);
    let client = RelayClient::start(client_config(
        &link.redis_url(),
        "d:dlslow",
        &sink.url(),
        &[],
    ));
    assert!(
        eventually(Duration::from_secs(60), || async {
            redis.xlen("d:dlslow:dlq") >= 1 && redis.pending("d:dlslow") == 0
        })
        .await
    );
    // Nothing can signal that a duplicate will *not* come: watch past two housekeeping
    // periods (5 s each), the cadence at which failed writes are retried.
    let dup = eventually(Duration::from_secs(11), || async {
        redis.xlen("d:dlslow:dlq") > 1
    })
    .await;
    assert!(
        !dup,
        "one webhook, {} dead letters",
        redis.xlen("d:dlslow:dlq")
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_poison_is_dead_lettered_only_with_evidence_that_the_target_is_up() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "d:health").await;
    let sink = Sink::start().await;
    sink.script(|r, _| match (r.method.as_str(), r.body.as_slice()) {
        ("GET", _) => Answer::Status(200),
        (_, b"poison") => Answer::Status(500),
        _ => Answer::Status(200),
    });
    let extra = [("RELAY_MAX_ATTEMPTS", "3")];
    let client = RelayClient::start(client_config(&redis.url(), "d:health", &sink.url(), &extra));
    store(&relay, b"poison").await;
    // With no other traffic nothing says the target is up: never dead-lettered, but said.
    assert!(
        eventually(WAIT, || async {
            metric(&metrics_text(&client), "relay_uncounted_failures_total").unwrap_or(0.0) >= 1.0
                && count_of(&sink.received(), b"poison") >= 6
        })
        .await,
        "uncounted failures are not reported"
    );
    assert_eq!(redis.xlen("d:health:dlq"), 0);
    client.stop().await;

    let health = format!("http://{}/health", sink.addr);
    let extra = [
        ("RELAY_MAX_ATTEMPTS", "3"),
        ("RELAY_TARGET_HEALTH_URL", health.as_str()),
    ];
    let client = RelayClient::start(client_config(&redis.url(), "d:health", &sink.url(), &extra));
    assert!(
        eventually(WAIT, || async { redis.xlen("d:health:dlq") == 1 }).await,
        "the health URL's 2xx did not count as evidence"
    );
    assert_eq!(redis.dlq_field("d:health", "attempts"), ["3"]);
    assert!(
        sink.received()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/health")
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_app_dead_letters_no_healthy_webhook() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "d:degraded").await;
    let sink = Sink::start().await;
    // 30 % of requests fail at random (a deterministic hash of body and attempt).
    sink.script(|r, seen| {
        let h = r
            .body
            .iter()
            .fold(seen as u64 + 1469598103934665603, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(1099511628211)
            });
        match h % 10 < 3 {
            true => Answer::Status(503),
            false => Answer::Status(200),
        }
    });
    let client = RelayClient::start(client_config(&redis.url(), "d:degraded", &sink.url(), &[]));
    for i in 0..300 {
        store(&relay, format!("wh-{i}").as_bytes()).await;
    }
    assert!(eventually(WAIT, || async { redis.pending("d:degraded") == 0 }).await);
    let mut per_body: HashMap<Vec<u8>, usize> = HashMap::new();
    for r in sink.received() {
        *per_body.entry(r.body).or_default() += 1;
    }
    assert_eq!(per_body.len(), 300);
    assert_eq!(redis.xlen("d:degraded:dlq"), 0);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_counts_of_entries_no_longer_pending_are_cleaned_up() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    // Left behind by entries acknowledged elsewhere, claimed away, or a deleted stream.
    let mut conn = redis.conn();
    for id in ["1-1", "1-2", "1-3"] {
        let _: () = redis::cmd("HSET")
            .arg("d:gc:attempts:relay")
            .arg(id)
            .arg("3 1")
            .query(&mut conn)
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg("d:gc:attempts")
            .arg(id)
            .arg("3 1")
            .query(&mut conn)
            .unwrap();
    }
    let client = RelayClient::start(client_config(&redis.url(), "d:gc", &sink.url(), &[]));
    assert!(
        eventually(WAIT, || async {
            let mut c = redis.conn();
            let a: u64 = redis::cmd("HLEN")
                .arg("d:gc:attempts:relay")
                .query(&mut c)
                .unwrap();
            let b: u64 = redis::cmd("HLEN")
                .arg("d:gc:attempts")
                .query(&mut c)
                .unwrap();
            a + b == 0
        })
        .await,
        "orphaned attempt counts stay forever"
    );
    client.stop().await;
}
