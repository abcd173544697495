//! The web inspector's server side over real sockets: the page and its policy, the live feed
//! (Server-Sent Events on our own HTTP server) with arrivals, outcomes, `Last-Event-ID`
//! catch-up and the cap on open streams. The page itself is driven in a real browser by
//! `scripts/inspector-e2e.sh`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::sink::Sink;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

/// A `GET /live` connection and everything read from it so far.
pub(crate) struct Feed {
    stream: TcpStream,
    pub(crate) text: String,
}

impl Feed {
    pub(crate) async fn open(admin: SocketAddr, last_event_id: Option<&str>) -> Feed {
        let mut stream = TcpStream::connect(admin).await.expect("connect");
        let last = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        let req = format!("GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n{last}\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut feed = Feed {
            stream,
            text: String::new(),
        };
        assert!(feed.until("retry: ").await, "{}", feed.text);
        feed
    }

    /// Reads until `needle` has arrived (false on timeout or end of stream).
    pub(crate) async fn until(&mut self, needle: &str) -> bool {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.text.contains(needle) {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.text.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => return false,
            }
        }
        true
    }
}

async fn store(relay: &Relay, body: &[u8]) -> String {
    relay
        .request(&post("/webhook/wa", &[("X-API-Key", API_KEY)], body))
        .await
        .id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_a_strict_policy() {
    let redis = Redis::start().await;
    let admin = start_admin(
        &redis,
        "in:p",
        crm_relay::ops::admin::Role::Server(Default::default()),
    )
    .await;
    let page = Conn::request_once(admin, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").expect("a policy");
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains(r#"<body data-role="server">"#));
    let post = Conn::request_once(
        admin,
        b"POST /live HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert_eq!(post.status, 405);
    let foreign = Conn::request_once(admin, b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n").await;
    assert_eq!(
        foreign.status, 403,
        "DNS rebinding is refused for the page too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_shows_arrivals_and_outcomes_and_catches_up_after_a_reconnect() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "in:l").await;
    let sink = Sink::start().await;
    let client = RelayClient::start(client_config(&redis.url(), "in:l", &sink.url(), &[]));
    let admin = start_admin(
        &redis,
        "in:l",
        crm_relay::ops::admin::Role::Client(client.metrics.clone()),
    )
    .await;
    let mut feed = Feed::open(admin, None).await;
    assert!(
        feed.text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        feed.text
    );
    assert!(feed.text.contains("Content-Type: text/event-stream\r\n"));
    assert!(feed.text.contains("Transfer-Encoding: chunked\r\n"));

    // The app is down until the arrival has been seen: a delivery faster than the feed's
    // first look would come inside the arrival (as the hub means it to), never as an
    // outcome event of its own, and this test is about both.
    sink.down().await;
    let first = store(&relay, br#"{"n":1}"#).await;
    assert!(
        feed.until(&format!("id: {first}\nevent: received\ndata: {{"))
            .await,
        "{}",
        feed.text
    );
    sink.up().await;
    let outcome = format!(r#""id":"{first}","source":"wa","state":"delivered","status":200"#);
    assert!(feed.until(&outcome).await, "{}", feed.text);
    assert!(feed.text.contains("event: outcome\ndata: {"));

    // Gone for a while; what arrived meanwhile is sent first on reconnect.
    drop(feed);
    let second = store(&relay, br#"{"n":2}"#).await;
    let third = store(&relay, br#"{"n":3}"#).await;
    let mut feed = Feed::open(admin, Some(&first)).await;
    assert!(feed.until(&format!("id: {third}\n")).await, "{}", feed.text);
    let at = |id: &str| feed.text.find(&format!("id: {id}\n")).unwrap();
    assert!(at(&second) < at(&third), "in order: {}", feed.text);
    assert!(
        !feed.text.contains(&format!("id: {first}\n")),
        "nothing twice"
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_are_capped() {
    let redis = Redis::start().await;
    let admin = start_admin(
        &redis,
        "in:c",
        crm_relay::ops::admin::Role::Server(Default::default()),
    )
    .await;
    let mut feeds = Vec::new();
    for _ in 0..crm_relay::ops::live::MAX_STREAMS {
        feeds.push(Feed::open(admin, None).await);
    }
    let over = Conn::request_once(admin, b"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(over.status, 503);
    assert_eq!(over.header("retry-after"), Some("5"));
    // A stream that ends frees its place.
    feeds.pop();
    assert!(
        eventually(WAIT, || async {
            let mut s = TcpStream::connect(admin).await.unwrap();
            s.write_all(b"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap_or(0);
            buf[..n].starts_with(b"HTTP/1.1 200")
        })
        .await
    );
}
