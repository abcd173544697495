//! Day two: the DLQ tools (CLI and admin API), retention, the backlog cap, metrics, `check`.

use std::time::Duration;

use crm_relay::ops::admin::Role;

use crate::support::sink::{Answer, Sink};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

async fn store_webhook(relay: &Relay, body: &[u8]) -> Resp {
    relay
        .request(&post("/webhook/ops", &[("X-API-Key", API_KEY)], body))
        .await
}

async fn admin(addr: std::net::SocketAddr, raw: &str) -> Resp {
    let mut c = Conn::connect(addr).await;
    c.send(raw.as_bytes()).await;
    c.response().await.expect("admin answer")
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_replayed_and_purged() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "o:dlq").await;
    let sink = Sink::start().await;
    sink.script(|r, _| {
        if r.body.starts_with(b"bad") {
            Answer::Status(422)
        } else {
            Answer::Status(200)
        }
    });
    let client = RelayClient::start(client_config(&redis.url(), "o:dlq", &sink.url(), &[]));
    let mut origin = Vec::new();
    for i in 1..=3 {
        origin.push(
            store_webhook(&relay, format!("bad-{i}").as_bytes())
                .await
                .relay_id(),
        );
    }
    assert!(eventually(WAIT, || async { redis.xlen("o:dlq:dlq") == 3 }).await);
    // Dead letters in body order (deliveries run concurrently, so DLQ order may differ).
    let mut dead = redis.entries("o:dlq:dlq");
    dead.sort_by(|a, b| a.1["body"].cmp(&b.1["body"]));
    let dlq_ids: Vec<String> = dead.into_iter().map(|(id, _)| id).collect();
    let vars = [
        ("REDIS_URL", redis.url()),
        ("RELAY_STREAM", "o:dlq".into()),
        ("RELAY_DLQ_STREAM", "o:dlq:dlq".into()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let (code, out, _) = run_relay(&["dlq", "list"], &vars);
    assert_eq!(code, 0);
    for (id, o) in dlq_ids.iter().zip(&origin) {
        assert!(
            out.contains(id.as_str()) && out.contains(o.as_str()),
            "{out}"
        );
    }
    assert!(out.contains("HTTP 422") && out.contains("ops"), "{out}");
    let (code, out, _) = run_relay(&["dlq", "list", "--limit", "1"], &vars);
    assert_eq!((code, out.lines().count()), (0, 2), "header + 1 row: {out}");
    let (code, out, _) = run_relay(&["dlq", "show", &dlq_ids[0]], &vars);
    assert_eq!(code, 0);
    assert!(
        out.contains("body (5 bytes):\nbad-1") && out.contains("Host: relay.test"),
        "{out}"
    );
    assert!(
        !out.contains(API_KEY),
        "the relay's own key is not stored: {out}"
    );
    assert_eq!(run_relay(&["dlq", "show", "1-1"], &vars).0, 1);

    // The admin API shows the same.
    let addr = start_admin(&redis, "o:dlq", Role::Client(client.metrics.clone())).await;
    let list = admin(addr, &get("/dlq?limit=2")).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["entries"].as_array().unwrap().len(), 2);
    let one = admin(addr, &get(&format!("/dlq/{}", dlq_ids[1])))
        .await
        .json();
    assert_eq!(one["body"], "bad-2");
    assert_eq!(one["origin_id"], origin[1].as_str());
    assert_eq!(one["last_status"], "422");
    assert_eq!(admin(addr, &get("/dlq/1-1")).await.status, 404);
    assert_eq!(admin(addr, &get("/dlq?limit=0")).await.status, 400);

    // Only full ids name a dead letter: the millisecond part alone (which XRANGE would read
    // as a range and XDEL as another id) is unknown, and nothing moves.
    let ms_only = dlq_ids[0].split('-').next().unwrap();
    let before = redis.xlen("o:dlq:dlq");
    let (code, _, err) = run_relay(&["dlq", "replay", ms_only], &vars);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("unknown dead letter {ms_only}")),
        "{err}"
    );
    assert_eq!(run_relay(&["dlq", "purge", ms_only], &vars).0, 1);
    assert_eq!(
        redis.xlen("o:dlq:dlq"),
        before,
        "nothing replayed or deleted"
    );
    assert_eq!(
        run_relay(&["dlq", "show", ms_only], &vars).0,
        2,
        "usage error"
    );

    // Replay through the CLI: delivered again with the first stored id as X-Relay-Id.
    sink.script(|_, _| Answer::Status(200));
    let (code, out, err) = run_relay(&["dlq", "replay", &dlq_ids[0], "123-0"], &vars);
    assert_eq!(code, 1, "an unknown id is reported and fails the command");
    assert!(
        out.contains(&format!("replayed {} as ", dlq_ids[0])),
        "{out}"
    );
    assert!(err.contains("unknown dead letter 123-0"), "{err}");
    assert!(
        sink.wait_for(WAIT, |r| r.iter().filter(|r| r.body == b"bad-1").count()
            == 2)
            .await
    );
    let replayed = sink
        .received()
        .into_iter()
        .rfind(|r| r.body == b"bad-1")
        .unwrap();
    assert_eq!(
        replayed.relay_id(),
        origin[0],
        "X-Relay-Id stays the first stored id"
    );

    // Replay through the API, then purge.
    let body = format!(r#"{{"ids":["{}"]}}"#, dlq_ids[1]);
    let raw = format!(
        "POST /dlq/replay HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = admin(addr, &raw).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["replayed"][0]["id"], dlq_ids[1].as_str());
    assert!(
        sink.wait_for(WAIT, |r| r.iter().filter(|r| r.body == b"bad-2").count()
            == 2)
            .await
    );
    let del = format!(
        "DELETE /dlq/{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        dlq_ids[2]
    );
    assert_eq!(admin(addr, &del).await.status, 200);
    assert_eq!(admin(addr, &del).await.status, 404);
    assert_eq!(redis.xlen("o:dlq:dlq"), 0);
    let (code, out, _) = run_relay(&["dlq", "purge", "--all"], &vars);
    assert_eq!(code, 0);
    assert!(out.contains("0 purged, 0 unknown"), "{out}");
    client.stop().await;
}

/// Waits for `n` more completed retention passes of `relay`.
async fn retention_passes(relay: &Relay, n: u64) {
    let target = relay.metrics.retention_runs.get() + n;
    let ran = eventually(WAIT, || async {
        relay.metrics.retention_runs.get() >= target
    })
    .await;
    assert!(ran, "retention stopped running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_delivered_entries_and_spares_undelivered_ones() {
    let redis = Redis::start().await;
    // Without a group nothing is trimmed, however old.
    let mut config = server_config(&redis.url(), "o:ret");
    config.retention = Duration::from_secs(1);
    let relay = Relay::start_with(config, |_| {}).await;
    for i in 0..3 {
        store_webhook(&relay, format!("early-{i}").as_bytes())
            .await
            .id();
    }
    // Passes run every second; three more mean the entries are past their 1 s retention.
    retention_passes(&relay, 3).await;
    assert_eq!(redis.xlen("o:ret"), 3, "no group yet: nothing trimmed");

    let sink = Sink::start().await;
    let client = RelayClient::start(client_config(&redis.url(), "o:ret", &sink.url(), &[]));
    assert!(sink.wait_for(WAIT, |r| r.len() == 3).await);
    client.stop().await;
    for i in 0..4 {
        store_webhook(&relay, format!("late-{i}").as_bytes())
            .await
            .id();
    }
    // Delivered entries are older than 1 s after a moment; the undelivered ones must stay.
    assert!(
        eventually(Duration::from_secs(6), || async {
            redis.xlen("o:ret") == 4
        })
        .await,
        "delivered entries trimmed"
    );
    retention_passes(&relay, 3).await;
    assert_eq!(
        redis.xlen("o:ret"),
        4,
        "undelivered entries are never trimmed"
    );
    let client = RelayClient::start(client_config(&redis.url(), "o:ret", &sink.url(), &[]));
    assert!(
        sink.wait_for(WAIT, |r| r.len() == 7).await,
        "the spared entries are delivered later"
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_cap_gives_503_until_the_client_drains() {
    let redis = Redis::start().await;
    let mut config = server_config(&redis.url(), "o:cap");
    config.max_stream_len = 3;
    let relay = Relay::start_with(config, |_| {}).await;
    for i in 0..3 {
        store_webhook(&relay, format!("w{i}").as_bytes()).await.id();
    }
    let refused = eventually_some(WAIT, || async {
        let r = store_webhook(&relay, b"over").await;
        (r.status == 503).then_some(r)
    })
    .await
    .expect("503 once the backlog holds RELAY_MAX_STREAM_LEN entries");
    assert!(refused.header("retry-after").is_some());
    assert_eq!(refused.json()["error"], "backlog full");
    let sink = Sink::start().await;
    let client = RelayClient::start(client_config(&redis.url(), "o:cap", &sink.url(), &[]));
    let accepted = eventually(WAIT, || async {
        store_webhook(&relay, b"after drain").await.status == 200
    })
    .await;
    assert!(accepted, "200 again once the client drained the backlog");
    assert!(relay.metrics.requests.get("backlog_full") >= 1);
    client.stop().await;
}

/// Checks every line of a Prometheus text exposition; returns the samples.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(
                rest.split_once(' ')
                    .is_some_and(|(n, h)| !n.is_empty() && !h.is_empty()),
                "{line}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
        } else {
            let (series, value) = line.rsplit_once(' ').expect(line);
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{line}"
            );
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(
                typed.contains(name) || typed.contains(base),
                "sample before its TYPE: {line}"
            );
            if let Some(labels) = series.strip_prefix(name)
                && !labels.is_empty()
            {
                {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                    for pair in labels[1..labels.len() - 1].split(',') {
                        let (k, v) = pair.split_once('=').expect(line);
                        assert!(
                            !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                            "{line}"
                        );
                    }
                }
            }
            samples.push((series.to_owned(), value));
        }
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no {series}"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_the_right_counts() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "o:met").await;
    let sink = Sink::start().await;
    sink.script(|r, _| {
        if r.body == b"reject" {
            Answer::Status(400)
        } else {
            Answer::Status(200)
        }
    });
    let client = RelayClient::start(client_config(&redis.url(), "o:met", &sink.url(), &[]));
    for i in 0..5 {
        store_webhook(&relay, format!("m{i}").as_bytes()).await.id();
    }
    store_webhook(&relay, b"reject").await.id();
    assert_eq!(
        relay.request(&post("/webhook", &[], b"x")).await.status,
        401
    );
    let mut c = relay.connect().await;
    c.send(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        .await;
    assert_eq!(c.response().await.unwrap().status, 400);
    // Refused from its head (here with Expect: 100-continue): unauthenticated, counted once.
    let mut c = relay.connect().await;
    c.send(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(c.response().await.unwrap().status, 401);
    assert_eq!(
        relay
            .request(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .status,
        404
    );
    assert!(eventually(WAIT, || async { redis.xlen("o:met:dlq") == 1 }).await);
    assert!(sink.wait_for(WAIT, |r| r.len() == 6).await);
    assert!(
        eventually(WAIT, || async {
            redis.pending("o:met") == 0 && client.metrics.deliveries.get("delivered") == 5
        })
        .await
    );

    let server_admin = start_admin(&redis, "o:met", Role::Server(relay.metrics.clone())).await;
    let resp = admin(server_admin, &get("/metrics")).await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let s = parse_prometheus(std::str::from_utf8(&resp.body).unwrap());
    assert_eq!(sample(&s, r#"relay_requests_total{outcome="stored"}"#), 6.0);
    assert_eq!(
        sample(&s, r#"relay_requests_total{outcome="unauthenticated"}"#),
        2.0
    );
    assert_eq!(sample(&s, r#"relay_requests_total{outcome="other"}"#), 1.0);
    assert_eq!(
        sample(&s, r#"relay_requests_total{outcome="invalid"}"#),
        1.0
    );
    // Webhooks whose body was read: the six stored. Both unauthenticated ones were refused
    // from their heads, with or without Expect, before any ingest.
    assert_eq!(sample(&s, "relay_ingest_seconds_count"), 6.0);
    assert_eq!(sample(&s, r#"relay_ingest_seconds_bucket{le="+Inf"}"#), 6.0);
    assert_eq!(sample(&s, r#"relay_redis_up{role="server"}"#), 1.0);
    assert_eq!(sample(&s, r#"relay_dlq_length{role="server"}"#), 1.0);
    assert_eq!(
        sample(&s, r#"relay_backlog{role="server",group="relay"}"#),
        0.0
    );
    assert_eq!(
        sample(&s, r#"relay_pending{role="server",group="relay"}"#),
        0.0
    );
    assert_eq!(sample(&s, r#"relay_webhooks_total{source="ops"}"#), 6.0);
    let version = format!(
        r#"relay_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&s, &version), 1.0);

    let client_admin = start_admin(&redis, "o:met", Role::Client(client.metrics.clone())).await;
    let body = admin(client_admin, &get("/metrics")).await.body;
    let s = parse_prometheus(std::str::from_utf8(&body).unwrap());
    assert_eq!(
        sample(&s, r#"relay_deliveries_total{outcome="delivered"}"#),
        5.0
    );
    assert_eq!(
        sample(&s, r#"relay_deliveries_total{outcome="dead_lettered"}"#),
        1.0
    );
    assert_eq!(
        sample(&s, r#"relay_deliveries_total{outcome="retried"}"#),
        0.0
    );
    assert_eq!(sample(&s, "relay_delivery_seconds_count"), 6.0);
    assert_eq!(sample(&s, "relay_end_to_end_seconds_count"), 5.0);
    assert_eq!(sample(&s, "relay_breaker_open"), 0.0);
    assert_eq!(sample(&s, r#"relay_delivered_total{source="ops"}"#), 5.0);
    assert_eq!(sample(&s, r#"relay_redis_up{role="client"}"#), 1.0);
    let health = admin(client_admin, &get("/health")).await;
    assert_eq!(health.status, 200);
    client.stop().await;
}

/// A Redis that refuses writes answers every webhook `503` while PING, INFO and the ACL
/// probes look healthy: `check` must say so, and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_when_redis_refuses_writes() {
    let redis = Redis::start_with(&["--maxmemory-policy", "noeviction"]).await;
    let url = redis.url();
    let server = [("REDIS_URL", url.as_str()), ("RELAY_API_KEYS", "k")];
    let client = [
        ("REDIS_URL", url.as_str()),
        ("RELAY_TARGET_URL", "http://127.0.0.1:1/"),
    ];
    let (code, out, _) = run_relay_off_runtime(&["check"], &server).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: redis takes writes"), "{out}");

    // Warnings: both roles start anyway (a full Redis needs the server's trimming) and go
    // on by themselves once Redis takes writes again.
    redis.config_set("maxmemory", "1");
    let (code, out, _) = run_relay_off_runtime(&["check"], &server).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: redis is full (maxmemory reached): it refuses new webhooks"),
        "{out}"
    );
    redis.config_set("maxmemory", "0");

    redis.lose_its_disk().await;
    let (code, out, _) = run_relay_off_runtime(&["check", "client"], &client).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: redis refuses writes now: redis refused the command: \"MISCONF\""),
        "{out}"
    );
}

/// A Redis at its `maxclients` writes `-ERR max number of clients reached` and closes each new
/// connection before reading it: the redis crate sees a broken pipe or a reset, never the
/// reason. `check` reads what Redis says first and names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_redis_at_its_maxclients() {
    let redis = Redis::start_with(&["--maxclients", "1"]).await;
    let _the_only_one = redis.conn();
    let (code, out, _) = run_relay_off_runtime(
        &["check", "server"],
        &[("REDIS_URL", &redis.url()), ("RELAY_API_KEYS", "k")],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "error: redis closes every new connection at once, saying: ERR max number of \
             clients reached: it has its maxclients connections already"
        ),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_risky_redis_settings_with_their_fixes() {
    let risky =
        Redis::start_with(&["--appendonly", "no", "--maxmemory-policy", "allkeys-lru"]).await;
    let (code, out, _) = run_relay(&["check"], &[("REDIS_URL", &risky.url())]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("warning: appendonly is no") && out.contains("CONFIG SET appendonly yes"),
        "{out}"
    );
    assert!(
        out.contains("maxmemory-policy is allkeys-lru")
            && out.contains("CONFIG SET maxmemory-policy noeviction"),
        "{out}"
    );
    assert!(out.contains("NOT usable"));

    let good = Redis::start().await;
    let (code, out, _) = run_relay(
        &["check"],
        &[
            ("REDIS_URL", &good.url()),
            ("RELAY_API_KEYS", "k"),
            ("RELAY_TARGET_URL", "http://127.0.0.1:1/"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok: server configuration") && out.contains("ok: client configuration"),
        "{out}"
    );
    assert!(
        out.contains("appendfsync always") && out.ends_with("usable\n"),
        "{out}"
    );

    let (code, out, _) = run_relay(&["check"], &[("REDIS_URL", "redis://127.0.0.1:1")]);
    assert_eq!(code, 1, "{out}");
    let (code, _, err) = run_relay(
        &["check"],
        &[("RELAY_TARGET_URL", "nope"), ("REDIS_URL", &good.url())],
    );
    assert_eq!(code, 2);
    assert!(err.contains("RELAY_TARGET_URL"));
}

/// `check server|client` names a permission the Redis user lacks (least-privilege ACL
/// users), and probes the client's target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_missing_permissions_and_unreachable_targets() {
    let redis =
        Redis::start_with(&["--user", "srv", "on", ">pw", "~relay:*", "+@all", "-xadd"]).await;
    let url = format!("redis://srv:pw@127.0.0.1:{}", redis.port);
    let (code, out, _) = run_relay(
        &["check", "server"],
        &[("REDIS_URL", &url), ("RELAY_API_KEYS", "k")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("may not run XADD on relay:{webhooks}") && out.contains("+xadd"),
        "{out}"
    );
    // The client's permissions are all there; its target is not.
    let (code, out, _) = run_relay(
        &["check", "client"],
        &[
            ("REDIS_URL", &url),
            ("RELAY_TARGET_URL", "http://127.0.0.1:1/in"),
            ("RELAY_ROUTES", "stripe"),
            ("RELAY_TARGET_URL_STRIPE", "http://127.0.0.1:2/stripe"),
        ],
    );
    // An app that is down is a warning: the client must still start and hold webhooks.
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("may run every command the client needs"),
        "{out}"
    );
    // No channel permissions: tail loses delivery results, deliveries do not suffer.
    assert!(
        out.contains("warning: the redis user may not PUBLISH on relay:{webhooks}:activity")
            && out.contains("&relay:{webhooks}:activity"),
        "{out}"
    );
    assert!(
        out.contains("warning: target http://127.0.0.1:1/in: connection refused"),
        "{out}"
    );
    assert!(
        out.contains("warning: route stripe http://127.0.0.1:2/stripe: connection refused"),
        "{out}"
    );
    // A role's whole configuration is required when it is named.
    let (code, _, err) = run_relay(&["check", "client"], &[("REDIS_URL", &url)]);
    assert_eq!(code, 2);
    assert!(err.contains("RELAY_TARGET_URL"), "{err}");
}

/// Near the cap the check is exact: with a cap of 5 and no client, the sixth webhook is
/// refused, however fast they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_cap_is_exact() {
    let redis = Redis::start().await;
    let mut config = server_config(&redis.url(), "o:exact");
    config.max_stream_len = 5;
    let relay = Relay::start_with(config, |_| {}).await;
    let statuses: Vec<u16> = {
        let mut s = Vec::new();
        for i in 0..8 {
            s.push(
                store_webhook(&relay, format!("e{i}").as_bytes())
                    .await
                    .status,
            );
        }
        s
    };
    assert_eq!(statuses, [200, 200, 200, 200, 200, 503, 503, 503]);
    assert_eq!(redis.xlen("o:exact"), 5);
}

/// REDIS_URL pointing at another service (here a web server): `check` says that what
/// answered is not Redis, on one line, instead of the parser's multi-line byte codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_when_redis_url_reaches_another_service() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/html\r\n\r\n<html>bad</html>\n")
                .await;
        }
    });
    let url = format!("redis://127.0.0.1:{port}");
    let (code, out, err) = run_relay_off_runtime(
        &["check", "server"],
        &[("REDIS_URL", &url), ("RELAY_API_KEYS", "k")],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line: {out}{err}"));
    assert!(line.contains("not a Redis answer"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.trim().is_empty()).count(),
        0,
        "{out}"
    );
}
