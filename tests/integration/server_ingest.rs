//! The server's happy paths and authentication, against a real redis-server.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_meta_fixture_is_stored_byte_exact() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:fixtures").await;
    let fixtures = meta_fixtures();
    assert_eq!(fixtures.len(), 10);
    let mut ids = Vec::new();
    for (file, body, sig) in &fixtures {
        let resp = relay
            .request(&post(
                "/webhook/whatsapp",
                &[
                    ("Content-Type", "application/json"),
                    ("X-Hub-Signature-256", sig),
                ],
                body,
            ))
            .await;
        assert_eq!(resp.status, 200, "{file}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        ids.push(resp.id());
    }
    let entries = redis.entries("t:fixtures");
    assert_eq!(entries.len(), fixtures.len());
    for ((id, fields), (file, body, sig)) in entries.iter().zip(&fixtures) {
        assert!(ids.contains(id));
        assert_eq!(&fields["body"], body, "{file} stored byte-exact");
        let headers: Vec<(String, String)> = serde_json::from_slice(&fields["headers"]).unwrap();
        assert!(headers.contains(&("X-Hub-Signature-256".into(), sig.clone())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_has_every_field_of_spec() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:record").await;
    let before = now_ms();
    let raw = post(
        "/webhook/stripe_live-1?a=1&b=%20x",
        &[
            ("X-API-Key", API_KEY),
            ("X-Dup", "one"),
            ("x-dup", "two"),
            ("X-Empty", ""),
        ],
        b"\x00\x01binary\xff",
    );
    let id = relay.request(&raw).await.id();
    let entries = redis.entries("t:record");
    let (stored_id, f) = &entries[0];
    assert_eq!(stored_id, &id);
    let text = |k: &str| String::from_utf8(f[k].clone()).unwrap();
    assert_eq!(text("v"), "1");
    assert_eq!(text("method"), "POST");
    assert_eq!(text("path"), "/webhook/stripe_live-1?a=1&b=%20x");
    assert_eq!(text("source"), "stripe_live-1");
    assert!(text("remote").starts_with("127.0.0.1:"));
    let at: u64 = text("received_at").parse().unwrap();
    assert!(at >= before && at <= now_ms());
    assert_eq!(f["body"], b"\x00\x01binary\xff");
    let headers: Vec<(String, String)> = serde_json::from_slice(&f["headers"]).unwrap();
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    // X-API-Key is the relay's own credential: not stored.
    assert_eq!(
        names,
        ["Host", "X-Dup", "x-dup", "X-Empty", "Content-Length"]
    );
    assert_eq!(headers[2].1, "two");

    let id2 = relay
        .request(&post(
            "/webhook",
            &[("Authorization", &format!("Bearer {API_KEY}"))],
            b"{}",
        ))
        .await
        .id();
    let entries = redis.entries("t:record");
    assert_eq!(entries[1].0, id2);
    assert_eq!(entries[1].1["source"], b"");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_posts_get_401_and_store_nothing() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:auth").await;
    let (_, body, sig) = meta_fixtures().remove(0);
    let wrong_sig = format!("sha256={}", "ab".repeat(32));
    let basic = format!("Basic {API_KEY}");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("X-API-Key", "nope")],
        vec![("Authorization", "Bearer nope")],
        vec![("Authorization", &basic)],
        vec![("X-Hub-Signature-256", &wrong_sig)],
        // A present-but-wrong signature is refused even with a valid key.
        vec![("X-Hub-Signature-256", &wrong_sig), ("X-API-Key", API_KEY)],
        vec![("X-Hub-Signature-256", "sha1=abc")],
        vec![("X-Hub-Signature-256", &sig), ("X-Hub-Signature-256", &sig)],
    ];
    for headers in &cases {
        let resp = relay.request(&post("/webhook", headers, &body)).await;
        assert_eq!(resp.status, 401, "{headers:?}");
        assert!(resp.json()["error"].is_string());
    }
    // The right signature over different bytes fails too.
    let mut tampered = body.clone();
    tampered.push(b' ');
    let resp = relay
        .request(&post(
            "/webhook",
            &[("X-Hub-Signature-256", &sig)],
            &tampered,
        ))
        .await;
    assert_eq!(resp.status, 401);
    assert_eq!(redis.xlen("t:auth"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_handshake() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:hs").await;
    // Meta calls the callback URL the user registered: `/webhook` or `/webhook/<source>`.
    for path in ["/webhook", "/webhook/whatsapp"] {
        handshake_at(&relay, path).await;
    }
    assert_eq!(redis.xlen("t:hs"), 0, "a handshake stores nothing");

    // Without a verify token the handshake does not exist.
    let mut config = server_config(&redis.url(), "t:hs2");
    config.verify_token = None;
    let bare = Relay::start_with(config, |_| {}).await;
    for path in ["/webhook", "/webhook/whatsapp"] {
        let raw = format!(
            "GET {path}?hub.mode=subscribe&hub.challenge=1&hub.verify_token=meatyhamhock HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        assert_eq!(bare.request(raw.as_bytes()).await.status, 404, "{path}");
    }
}

async fn handshake_at(relay: &Relay, path: &str) {
    let get = |q: &str| format!("GET {path}?{q} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
    let ok = relay
        .request(&get(
            "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock",
        ))
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"1158201444");
    assert!(ok.header("content-type").unwrap().starts_with("text/plain"));
    let enc = relay
        .request(&get(
            "hub.verify_token=meaty%68amhock&hub.challenge=a%20b&hub.mode=subscribe",
        ))
        .await;
    assert_eq!((enc.status, enc.body.as_slice()), (200, &b"a b"[..]));
    for q in [
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong",
        "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meatyhamhock",
        "hub.mode=subscribe&hub.challenge=1",
        "",
    ] {
        assert_eq!(relay.request(&get(q)).await.status, 403, "{path}?{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_routes_and_methods() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:routes").await;
    let health = relay
        .request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json(),
        serde_json::json!({"status":"ok","redis":"ok"})
    );

    let mut c = relay.connect().await;
    c.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let head = c.head_response().await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("28"));
    // Had the HEAD answer carried a body, this would parse garbage.
    assert_eq!(c.response().await.unwrap().status, 404);

    for (raw, status, allow) in [
        (
            &b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"[..],
            405,
            Some("GET, HEAD"),
        ),
        (
            b"DELETE /webhook HTTP/1.1\r\nHost: x\r\n\r\n",
            405,
            Some("GET, HEAD, POST"),
        ),
        (
            b"DELETE /webhook/meta HTTP/1.1\r\nHost: x\r\n\r\n",
            405,
            Some("GET, HEAD, POST"),
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404, None),
        (
            b"POST /webhook/bad.source HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            404,
            None,
        ),
    ] {
        let resp = relay.request(raw).await;
        assert_eq!(resp.status, status, "{}", String::from_utf8_lossy(raw));
        assert_eq!(resp.header("allow"), allow);
    }
}
