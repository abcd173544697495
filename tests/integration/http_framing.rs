//! HTTP/1.1 on the wire: keep-alive, pipelining, chunked bodies, `Expect: 100-continue`,
//! curl, hostile framing, limits, timeouts, the connection cap and panic containment.

use std::sync::Arc;
use std::time::Duration;

use crm_relay::http::{self, Limits, Request, Response};
use crm_relay::shutdown;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_pipelining_answer_in_order() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:pipe").await;
    let mut c = relay.connect().await;
    // Three requests in one write, then a fourth on the same connection.
    let mut batch = Vec::new();
    for body in [&b"one"[..], b"two", b"three"] {
        batch.extend(post("/webhook", &[("X-API-Key", API_KEY)], body));
    }
    c.send(&batch).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(c.response().await.unwrap().id());
    }
    c.send(&post("/webhook", &[("X-API-Key", API_KEY)], b"four"))
        .await;
    ids.push(c.response().await.unwrap().id());
    let entries = redis.entries("t:pipe");
    let stored: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(id, f)| (id.as_str(), f["body"].as_slice()))
        .collect();
    let expected: Vec<(&str, &[u8])> = ids
        .iter()
        .map(String::as_str)
        .zip([&b"one"[..], b"two", b"three", b"four"])
        .collect();
    assert_eq!(
        stored, expected,
        "stored in request order, answered in request order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_is_answered_and_closed() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:h10").await;
    let mut c = relay.connect().await;
    c.send(
        format!("POST /webhook HTTP/1.0\r\nX-API-Key: {API_KEY}\r\nContent-Length: 2\r\n\r\nhi")
            .as_bytes(),
    )
    .await;
    let resp = c.response().await.unwrap();
    resp.id();
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_with_expect_continue() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:chunked").await;
    let mut c = relay.connect().await;
    c.send(format!("POST /webhook HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n").as_bytes()).await;
    let interim = c.response().await.unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"6\r\nhello \r\n").await;
    c.send(b"5;ext=1\r\nworld\r\n0\r\nX-Trailer: x\r\n\r\n")
        .await;
    c.response().await.unwrap().id();
    assert_eq!(redis.entries("t:chunked")[0].1["body"], b"hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_refused_early_without_credentials_or_when_too_large() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:expect").await;
    for (raw, status) in [
        (
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n"
                .to_owned(),
            401,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Length: 999999\r\nExpect: 100-continue\r\n\r\n"
            ),
            413,
        ),
    ] {
        let mut c = relay.connect().await;
        c.send(raw.as_bytes()).await;
        let resp = c.response().await.unwrap();
        assert_eq!(resp.status, status, "{raw}");
        assert!(c.closed().await);
    }
    assert_eq!(redis.xlen("t:expect"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_uploads_chunked_and_large_bodies_with_expect() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:curl").await;
    let dir = TempDir::new("curl");
    let file = dir.0.join("body.json");
    let body: Vec<u8> = (0..60_000u32)
        .map(|i| b"0123456789abcdef"[(i % 16) as usize])
        .collect();
    std::fs::write(&file, &body).unwrap();
    let url = format!("http://{}/webhook/curl", relay.addr);
    let curl = |extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-H",
                &format!("X-API-Key: {API_KEY}"),
            ])
            .args(extra)
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(&url)
            .output()
            .expect("curl is installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let chunked = curl(&["-H", "Transfer-Encoding: chunked"]);
    let expect = curl(&["-H", "Expect: 100-continue"]);
    assert!(chunked.starts_with(r#"{"id":""#), "{chunked}");
    assert!(expect.starts_with(r#"{"id":""#), "{expect}");
    let entries = redis.entries("t:curl");
    assert_eq!(entries.len(), 2);
    for (_, f) in entries {
        assert_eq!(f["body"], body);
    }
}

/// Every hostile request gets its status, the connection is closed, nothing is stored, and
/// the server still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_framing_is_refused_and_closes() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:hostile").await;
    let key = format!("X-API-Key: {API_KEY}\r\n");
    let big_header = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17_000)
    );
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let cases: Vec<(String, u16)> = vec![
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
            ),
            400,
        ),
        (
            format!("POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Content-Length: -2\r\n\r\nab"),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: chunked\r\n\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}X-Bad: a\0b\r\nContent-Length: 1\r\n\r\na"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}X-Bad: a\rb\r\nContent-Length: 1\r\n\r\na"
            ),
            400,
        ),
        (
            format!("POST /webhook HTTP/1.1\nHost: x\n{key}Content-Length: 1\n\na"),
            400,
        ),
        (
            format!("POST /webhook HTTP/1.1\r\nHost: x\r\n{key}\r\n"),
            411,
        ),
        (
            format!("POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Content-Length: 70000\r\n\r\n"),
            413,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: chunked\r\n\r\n10000\r\n{}\r\n1\r\na\r\n0\r\n\r\n",
                "a".repeat(65536)
            ),
            413,
        ),
        (big_header, 431),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: chunked;a=b\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        // An underscore is not a dash: Content_Length is no length at all.
        (
            format!("POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Content_Length: 2\r\n\r\nab"),
            411,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Content-Length: 2\r\n folded\r\n\r\nab"
            ),
            400,
        ),
        (
            format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{key}Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n"
            ),
            400,
        ),
        (
            format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
            431,
        ),
    ];
    for (raw, status) in &cases {
        let mut c = relay.connect().await;
        // A valid request after the bad one on the same connection must never be parsed.
        let mut bytes = raw.clone().into_bytes();
        bytes.extend(post("/webhook", &[("X-API-Key", API_KEY)], b"smuggled"));
        c.try_send(&bytes).await;
        let resp = c
            .response()
            .await
            .unwrap_or_else(|| panic!("no answer to {raw:?}"));
        assert_eq!(resp.status, *status, "{:?}", &raw[..raw.len().min(120)]);
        assert_eq!(resp.header("connection"), Some("close"));
        assert!(resp.json()["error"].is_string());
        assert!(c.closed().await, "connection left open after {status}");
    }
    assert_eq!(redis.xlen("t:hostile"), 0, "nothing stored");
    assert_eq!(
        relay
            .request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_are_never_stored() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:trunc").await;
    for raw in [
        format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Length: 10\r\n\r\nabc"
        ),
        format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
        ),
    ] {
        let mut c = relay.connect().await;
        c.send(raw.as_bytes()).await;
        c.end().await; // the sender is gone mid-body
        assert!(c.closed().await, "the server saw the end and closed");
    }
    assert_eq!(redis.xlen("t:trunc"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_time_out_with_408() {
    let redis = Redis::start().await;
    let config = server_config(&redis.url(), "t:slow");
    let relay = Relay::start_with(config, |limits| {
        limits.header_timeout = Duration::from_millis(300);
        limits.body_timeout = Duration::from_millis(300);
        limits.idle_timeout = Duration::from_millis(300);
    })
    .await;

    let mut c = relay.connect().await;
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n").await; // head never finished
    assert_eq!(c.response().await.unwrap().status, 408);
    assert!(c.closed().await);

    let mut c = relay.connect().await;
    c.send(format!("POST /webhook HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Length: 5\r\n\r\nab").as_bytes()).await;
    assert_eq!(c.response().await.unwrap().status, 408);

    // An idle keep-alive connection is closed quietly.
    let mut c = relay.connect().await;
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(c.response().await.unwrap().status, 200);
    assert!(c.closed().await);
    assert_eq!(redis.xlen("t:slow"), 0);
}

/// The idle timeout counts from the last answer, not from the connection's first request:
/// one timer serves the whole connection and is moved later after every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_keep_alive_connection_outlives_its_idle_timeout() {
    let redis = Redis::start().await;
    let config = server_config(&redis.url(), "t:busy");
    let relay = Relay::start_with(config, |limits| {
        limits.idle_timeout = Duration::from_millis(1000);
    })
    .await;
    let mut c = relay.connect().await;
    let started = std::time::Instant::now();
    for _ in 0..5 {
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(c.response().await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(started.elapsed() > Duration::from_millis(1500));
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(c.response().await.unwrap().status, 200);
    assert!(c.closed().await, "closed once idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503() {
    let redis = Redis::start().await;
    let config = server_config(&redis.url(), "t:cap");
    let relay = Relay::start_with(config, |limits| {
        limits.max_connections = 2;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = relay.connect().await;
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(c.response().await.unwrap().status, 200);
        held.push(c);
    }
    let mut third = relay.connect().await;
    let resp = third.response().await.unwrap();
    assert_eq!(resp.status, 503);
    assert!(resp.header("retry-after").is_some());
    drop(held);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let mut c = relay.connect().await;
            c.try_send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
            c.response().await.is_some_and(|r| r.status == 200)
        })
        .await
    );
}

/// `http::serve` with a test handler on an ephemeral port, until `stop`.
struct Served {
    addr: std::net::SocketAddr,
    trigger: shutdown::Trigger,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start<H: http::Handler>(handler: H) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = shutdown::channel();
        let limits = Limits::new(1024, 100);
        let task = tokio::spawn(http::serve(listener, Arc::new(handler), limits, shutdown));
        Served {
            addr,
            trigger,
            task,
        }
    }

    /// Shuts the server down and waits until it has stopped.
    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A handler that panics on `/panic`: the panic costs that connection only.
struct Panicky;

impl http::Handler for Panicky {
    async fn handle(&self, req: Request) -> Response {
        if req.head.path() == "/panic" {
            panic!("deliberate test panic");
        }
        Response::text(200, "fine")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_costs_one_connection_not_the_server() {
    let server = Served::start(Panicky).await;
    let addr = server.addr;
    let mut bad = Conn::connect(addr).await;
    bad.send(b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        bad.response().await.is_none(),
        "the panicking connection is closed"
    );
    for _ in 0..3 {
        let mut c = Conn::connect(addr).await;
        c.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(c.response().await.unwrap().body, b"fine");
    }
    server.stop().await;
}

/// Answers with 8 MiB: more than a loopback socket's send buffer, so the first non-blocking
/// write of the answer is partial and the rest goes out under the write timeout.
struct Big;

const BIG: usize = 8 << 20;

impl http::Handler for Big {
    async fn handle(&self, _req: Request) -> Response {
        Response::text(200, "x".repeat(BIG))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_larger_than_the_socket_buffer_arrives_whole() {
    let server = Served::start(Big).await;
    let addr = server.addr;
    let mut c = Conn::connect(addr).await;
    for _ in 0..2 {
        // The same connection serves the next request after a partial first write.
        c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let resp = c.response().await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body.len(), BIG);
        assert!(resp.body.iter().all(|&b| b == b'x'));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_a_body_still_arriving() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:drain").await;
    let mut c = relay.connect().await;
    // `100 Continue` says the server has read the head and waits for the body.
    c.send(format!("POST /webhook HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n").as_bytes()).await;
    assert_eq!(c.response().await.unwrap().status, 100);
    c.send(b"hello").await;
    let mut idle = relay.connect().await;
    let addr = relay.addr;
    let stopping = tokio::spawn(relay.stop(Duration::from_secs(10)));
    assert!(idle.closed().await, "idle connections close at shutdown");
    c.send(b"world").await;
    let resp = c.response().await.unwrap();
    resp.id();
    assert_eq!(resp.header("connection"), Some("close"));
    stopping.await.unwrap();
    assert_eq!(redis.entries("t:drain")[0].1["body"], b"helloworld");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
