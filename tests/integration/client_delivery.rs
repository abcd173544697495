//! End to end: sender → relay server → real Redis → relay client → scriptable sink.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::sink::{Answer, Sink};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

async fn store_webhook(relay: &Relay, body: &[u8]) -> String {
    relay
        .request(&post("/webhook", &[("X-API-Key", API_KEY)], body))
        .await
        .relay_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_arrive_byte_exact_and_still_verify() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "c:fix").await;
    let sink = Sink::start().await;
    let client = RelayClient::start(client_config(&redis.url(), "c:fix", &sink.url(), &[]));
    let fixtures = meta_fixtures();
    let mut ids = Vec::new();
    for (_, body, sig) in &fixtures {
        let raw = post(
            "/webhook/whatsapp?from=meta",
            &[
                ("Content-Type", "application/json"),
                ("X-Hub-Signature-256", sig),
                ("X-Multi", "first"),
                ("Connection", "keep-alive"),
                ("Keep-Alive", "timeout=5"),
                ("X-Multi", "second"),
            ],
            body,
        );
        ids.push(relay.request(&raw).await.relay_id());
    }
    assert!(sink.wait_for(WAIT, |r| r.len() >= fixtures.len()).await);
    let received = sink.received();
    for (id, (file, body, sig)) in ids.iter().zip(&fixtures) {
        let got = received
            .iter()
            .find(|r| &r.relay_id() == id)
            .expect("delivered");
        assert_eq!(&got.body, body, "{file}");
        assert_eq!(got.method, "POST");
        assert_eq!(
            got.path, "/hooks/in",
            "sent to the target URL as configured"
        );
        assert_eq!(got.header("x-hub-signature-256"), Some(sig.as_str()));
        let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
        mac.update(&got.body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            format!("sha256={hex}"),
            *sig,
            "{file}: signature verifies at the sink"
        );
        let multi: Vec<&str> = got
            .headers
            .iter()
            .filter(|(n, _)| n == "X-Multi")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(multi, ["first", "second"]);
        for dropped in ["connection", "keep-alive"] {
            assert!(got.header(dropped).is_none(), "{dropped} forwarded");
        }
        assert_eq!(got.header("host"), Some(sink.addr.to_string().as_str()));
        assert_eq!(got.header("x-relay-attempt"), Some("1"));
        assert_eq!(got.header("x-relay-source"), Some("whatsapp"));
        assert!(
            got.header("x-relay-received-at")
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 1_700_000_000_000
        );
    }
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_stored_before_the_first_client_start_are_delivered() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "c:early").await;
    let sink = Sink::start().await;
    for i in 0..20 {
        store_webhook(&relay, format!("early-{i}").as_bytes()).await;
    }
    let client = RelayClient::start(client_config(&redis.url(), "c:early", &sink.url(), &[]));
    assert!(sink.wait_for(WAIT, |r| r.len() >= 20).await);
    let mut bodies: Vec<Vec<u8>> = sink.received().into_iter().map(|r| r.body).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 20);
    client.stop().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            redis.pending("c:early") == 0
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_delivered_with_the_attempt_number() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "c:retry").await;
    let sink = Sink::start().await;
    sink.script(|_, seen| {
        if seen < 2 {
            Answer::Status(500)
        } else {
            Answer::Status(200)
        }
    });
    let client = RelayClient::start(client_config(&redis.url(), "c:retry", &sink.url(), &[]));
    let id = store_webhook(&relay, b"flaky").await;
    assert!(sink.wait_for(WAIT, |r| r.len() >= 3).await);
    let got = sink.received();
    let attempts: Vec<u32> = got.iter().map(|r| r.attempt()).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        got.iter().all(|r| r.relay_id() == id),
        "X-Relay-Id stable across retries"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            redis.pending("c:retry") == 0
        })
        .await
    );
    assert_eq!(redis.xlen("c:retry:dlq"), 0);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dead_lettered_after_one_attempt_with_every_field() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "c:400").await;
    let sink = Sink::start().await;
    sink.script(|_, _| Answer::Status(400));
    let client = RelayClient::start(client_config(&redis.url(), "c:400", &sink.url(), &[]));
    let id = relay
        .request(&post(
            "/webhook/shop?x=1",
            &[("X-API-Key", API_KEY)],
            b"bad one",
        ))
        .await
        .relay_id();
    assert!(eventually(WAIT, || async { redis.xlen("c:400:dlq") == 1 }).await);
    assert_eq!(sink.count(), 1);
    let (_, dl) = redis.entries("c:400:dlq").remove(0);
    let (_, orig) = redis.entries("c:400").remove(0);
    for field in [
        "v",
        "received_at",
        "method",
        "path",
        "source",
        "remote",
        "headers",
        "body",
    ] {
        assert_eq!(dl[field], orig[field], "{field} copied");
    }
    let text = |k: &str| String::from_utf8(dl[k].clone()).unwrap();
    assert_eq!(
        text("origin_id"),
        id,
        "the X-Relay-Id, kept by the dead letter"
    );
    assert_eq!(text("attempts"), "1");
    assert_eq!(text("last_status"), "400");
    assert_eq!(text("last_error"), "HTTP 400");
    assert!(text("failed_at").parse::<u64>().unwrap() > 1_700_000_000_000);
    assert!(
        eventually(Duration::from_secs(5), || async {
            redis.pending("c:400") == 0
        })
        .await,
        "acknowledged"
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_webhook_does_not_hold_back_healthy_ones_and_is_dead_lettered_after_max_attempts()
{
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "c:poison").await;
    let sink = Sink::start().await;
    sink.script(|r, _| {
        if r.body == b"poison" {
            Answer::Status(500)
        } else {
            Answer::Status(200)
        }
    });
    let config = client_config(
        &redis.url(),
        "c:poison",
        &sink.url(),
        &[
            ("RELAY_MAX_ATTEMPTS", "4"),
            ("RELAY_BACKOFF_BASE", "200ms"),
            ("RELAY_BACKOFF_MAX", "400ms"),
        ],
    );
    let client = RelayClient::start(config);
    store_webhook(&relay, b"poison").await;
    for i in 0..20 {
        store_webhook(&relay, format!("healthy-{i}").as_bytes()).await;
    }
    // The healthy ones arrive while the poison one is still being retried.
    assert!(
        sink.wait_for(WAIT, |r| r
            .iter()
            .filter(|r| r.body.starts_with(b"healthy-"))
            .count()
            == 20)
            .await
    );
    // The target keeps taking other webhooks (that is what tells a poison webhook from an
    // outage): a trickle until the poison one is dead-lettered.
    let mut traffic = tokio::time::interval(Duration::from_millis(20)); // 50 webhooks/s
    let mut n = 0;
    while redis.xlen("c:poison:dlq") == 0 {
        n += 1;
        assert!(n < 500, "poison webhook never dead-lettered");
        store_webhook(&relay, format!("trickle-{n}").as_bytes()).await;
        traffic.tick().await;
    }
    let received = sink.received();
    let poison_attempts = received.iter().filter(|r| r.body == b"poison").count();
    // Not held back: every healthy webhook arrived before the poison one's last attempt
    // (three backoffs of up to 200-400 ms each lie between its first and last).
    let last_healthy = received
        .iter()
        .rposition(|r| r.body.starts_with(b"healthy-"))
        .unwrap();
    let last_poison = received.iter().rposition(|r| r.body == b"poison").unwrap();
    assert!(
        last_healthy < last_poison,
        "healthy webhooks waited for the poison one"
    );
    assert!(
        received
            .iter()
            .filter(|r| r.body.starts_with(b"healthy-"))
            .all(|r| r.attempt() == 1)
    );
    assert_eq!(poison_attempts, 4, "exactly RELAY_MAX_ATTEMPTS attempts");
    let (_, dl) = redis.entries("c:poison:dlq").remove(0);
    assert_eq!(dl["attempts"], b"4");
    assert_eq!(dl["last_status"], b"500");
    assert_eq!(dl["body"], b"poison");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_several_cooldowns_dead_letters_nothing() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "c:outage").await;
    let sink = Sink::start().await;
    let config = client_config(
        &redis.url(),
        "c:outage",
        &sink.url(),
        &[
            ("RELAY_MAX_ATTEMPTS", "2"),
            ("RELAY_BREAKER_THRESHOLD", "3"),
            ("RELAY_BREAKER_COOLDOWN", "200ms"),
        ],
    );
    sink.down().await;
    let client = RelayClient::start(config);
    for i in 0..10 {
        store_webhook(&relay, format!("during-outage-{i}").as_bytes()).await;
    }
    // The breaker opened, and the webhooks kept failing through several probes.
    let failing = eventually(WAIT, || async {
        client
            .metrics
            .breaker_open
            .load(std::sync::atomic::Ordering::Relaxed)
            && client.metrics.deliveries.get("retried") >= 15
    })
    .await;
    assert!(failing, "the outage was never seen");
    assert_eq!(
        redis.xlen("c:outage:dlq"),
        0,
        "nothing dead-lettered during the outage"
    );
    sink.up().await;
    assert!(sink.wait_for(WAIT, |r| r.len() >= 10).await);
    assert!(
        eventually(Duration::from_secs(5), || async {
            redis.pending("c:outage") == 0
        })
        .await
    );
    assert_eq!(redis.xlen("c:outage:dlq"), 0);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_times_out_and_is_retried() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "c:hang").await;
    let sink = Sink::start().await;
    sink.script(|_, seen| {
        if seen == 0 {
            Answer::Hang
        } else {
            Answer::Status(200)
        }
    });
    let config = client_config(
        &redis.url(),
        "c:hang",
        &sink.url(),
        &[("RELAY_FORWARD_TIMEOUT", "300ms")],
    );
    let client = RelayClient::start(config);
    store_webhook(&relay, b"slow").await;
    assert!(sink.wait_for(WAIT, |r| r.len() >= 2).await);
    assert_eq!(sink.received()[1].attempt(), 2);
    assert!(
        eventually(Duration::from_secs(5), || async {
            redis.pending("c:hang") == 0
        })
        .await
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_while_the_client_blocks_and_a_deleted_group_are_survived() {
    let mut redis = Redis::start().await;
    let relay = Relay::start(&redis, "c:redis").await;
    let sink = Sink::start().await;
    let client = RelayClient::start(client_config(&redis.url(), "c:redis", &sink.url(), &[]));
    store_webhook(&relay, b"before").await;
    assert!(sink.wait_for(WAIT, |r| r.len() == 1).await);
    assert!(
        eventually(WAIT, || async { redis.blocked_clients() >= 1 }).await,
        "the client blocks in XREADGROUP"
    );
    redis.restart().await;
    let stored = eventually(WAIT, || async {
        let raw = post("/webhook", &[("X-API-Key", API_KEY)], b"after");
        relay.request(&raw).await.status == 200
    })
    .await;
    assert!(stored);
    assert!(
        sink.wait_for(WAIT, |r| r.iter().any(|r| r.body == b"after"))
            .await,
        "resumed after the restart"
    );

    // The stream (and its group with it) deleted under the client: it recreates the group.
    let _: () = redis::cmd("DEL")
        .arg("c:redis")
        .query(&mut redis.conn())
        .unwrap();
    store_webhook(&relay, b"after delete").await;
    assert!(
        sink.wait_for(WAIT, |r| r.iter().any(|r| r.body == b"after delete"))
            .await
    );
    client.stop().await;
}
