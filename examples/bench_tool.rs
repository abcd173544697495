//! Helpers for `scripts/bench-delivery.sh` (not shipped; `cargo build --release --example
//! bench_tool`):
//!
//! - `sink LISTEN EXPECT`: answers `200` to everything; once EXPECT webhooks arrived prints
//!   one line: `received=N secs=T rate=R e2e_p50_ms e2e_p99_ms send_p50_ms send_p99_ms`, where
//!   e2e is sink arrival − `X-Relay-Received-At` (ms resolution, as stored) and send is sink
//!   arrival − the sender's µs timestamp in the body (`load` puts it there).
//! - `load URL API_KEY RATE SECS`: POSTs 1 KB JSON webhooks at a fixed RATE per second.
//! - `fill REDIS_URL STREAM N`: stores N 1 KB records directly (pipelined XADD).
//! - `ledger-load URL API_KEY RATE SECS OUT`: POSTs unique webhooks at RATE/s for SECS, one
//!   connection each, and writes the bodies answered `200` to OUT (one per line), printing
//!   counts of 200 / 503 / other.
//! - `record-sink LISTEN OUT`: answers `200` and appends every body received to OUT.
// Not shipped: spawns its tasks directly (clippy.toml asks the relay's code to use its task module).
#![allow(clippy::disallowed_methods)]

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crm_relay::http::{self, Limits, Request, Response};
use crm_relay::shutdown;
use crm_relay::stream::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn body(ts_us: u64) -> Vec<u8> {
    let mut b = format!("{{\"ts_us\":{ts_us},\"object\":\"whatsapp_business_account\",\"pad\":\"")
        .into_bytes();
    b.resize(1000, b'x');
    b.extend_from_slice(b"\"}");
    b
}

#[derive(Default)]
struct Stats {
    first: Option<Instant>,
    last: Option<Instant>,
    e2e_us: Vec<u64>,
    send_us: Vec<u64>,
}

struct Sink {
    stats: Arc<Mutex<Stats>>,
    expect: usize,
    done: tokio::sync::Notify,
}

impl http::Handler for Sink {
    async fn handle(&self, req: Request) -> Response {
        let now = now_us();
        let received_at: u64 = req
            .head
            .header_values("x-relay-received-at")
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let sent: Option<u64> = std::str::from_utf8(&req.body[..req.body.len().min(40)])
            .ok()
            .and_then(|s| s.strip_prefix("{\"ts_us\":"))
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok());
        let mut st = self.stats.lock().unwrap();
        st.first.get_or_insert_with(Instant::now);
        st.last = Some(Instant::now());
        st.e2e_us.push(now.saturating_sub(received_at * 1000));
        if let Some(s) = sent {
            st.send_us.push(now.saturating_sub(s));
        }
        if st.e2e_us.len() == self.expect {
            self.done.notify_one();
        }
        Response::text(200, "ok")
    }
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1000.0
}

async fn sink(listen: &str, expect: usize) {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("bind sink");
    let sink = Arc::new(Sink {
        stats: Arc::new(Mutex::new(Stats::default())),
        expect,
        done: tokio::sync::Notify::new(),
    });
    let (_trigger, shutdown) = shutdown::channel();
    tokio::spawn(http::serve(
        listener,
        sink.clone(),
        Limits::new(1 << 24, 10_000),
        shutdown,
    ));
    sink.done.notified().await;
    let mut st = sink.stats.lock().unwrap();
    let secs = st
        .last
        .unwrap()
        .duration_since(st.first.unwrap())
        .as_secs_f64();
    let n = st.e2e_us.len();
    let (e50, e99) = (pct(&mut st.e2e_us, 0.50), pct(&mut st.e2e_us, 0.99));
    let (s50, s99) = (pct(&mut st.send_us, 0.50), pct(&mut st.send_us, 0.99));
    println!(
        "received={n} secs={secs:.3} rate={:.0} e2e_p50_ms={e50:.3} e2e_p99_ms={e99:.3} send_p50_ms={s50:.3} send_p99_ms={s99:.3}",
        n as f64 / secs.max(1e-9)
    );
}

async fn load(url: &str, key: &str, rate: u64, secs: u64) {
    let addr = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .expect("http://host:port/path");
    let path = &url["http://".len() + addr.len()..];
    let total = rate * secs;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    // A few connections, each sending on its own schedule; answers read as they come.
    let conns = 8u64;
    let mut tasks = Vec::new();
    let start = tokio::time::Instant::now();
    for c in 0..conns {
        let (addr, path, key) = (addr.to_owned(), path.to_owned(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut rd, mut wr) = stream.into_split();
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
            let mut i = c;
            while i < total {
                tokio::time::sleep_until(start + interval * i as u32).await;
                let b = body(now_us());
                let req = format!(
                    "POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                );
                let mut wire = req.into_bytes();
                wire.extend_from_slice(&b);
                wr.write_all(&wire).await.expect("send");
                i += conns;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            reader.abort();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!("sent={total}");
}

async fn fill(url: &str, stream: &str, n: usize) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect redis");
    let mut done = 0;
    while done < n {
        let mut pipe = redis::pipe();
        for _ in 0..1000.min(n - done) {
            let rec = Record {
                received_at: now_us() / 1000,
                method: "POST".into(),
                path: "/webhook/bench".into(),
                source: "bench".into(),
                remote: "127.0.0.1:1".into(),
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body(now_us()),
                relay_id: crm_relay::stream::relay_id::new(now_us() / 1000),
            };
            let mut cmd = redis::cmd("XADD");
            cmd.arg(stream).arg("*");
            rec.write_fields(&mut cmd);
            pipe.add_command(cmd).ignore();
            done += 1;
        }
        let () = pipe.query_async(&mut conn).await.expect("XADD batch");
    }
    println!("filled={n}");
}

async fn ledger_load(url: &str, key: &str, rate: u64, secs: u64, out: &str) {
    let addr = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .expect("http://host:port/path")
        .to_owned();
    let path = url["http://".len() + addr.len()..].to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Vec<u8>, u16)>();
    let start = tokio::time::Instant::now();
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    for i in 0..rate * secs {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (addr, path, key, tx) = (addr.clone(), path.clone(), key.to_owned(), tx.clone());
        tokio::spawn(async move {
            let body = format!("soak-{i:010}").into_bytes();
            let status = post_once(&addr, &path, &key, &body).await.unwrap_or(0);
            let _ = tx.send((body, status));
        });
    }
    drop(tx);
    let mut file = std::fs::File::create(out).expect("ledger file");
    let (mut ok, mut busy, mut other) = (0u64, 0u64, 0u64);
    while let Some((body, status)) = rx.recv().await {
        match status {
            200 => {
                ok += 1;
                file.write_all(&body).unwrap();
                file.write_all(b"\n").unwrap();
            }
            503 => busy += 1,
            _ => other += 1,
        }
    }
    println!("ledger: 200={ok} 503={busy} other={other}");
}

async fn post_once(addr: &str, path: &str, key: &str, body: &[u8]) -> Option<u16> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.ok()?;
        s.write_all(body).await.ok()?;
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.ok()?;
        std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}

struct Recorder(Mutex<std::fs::File>);

impl http::Handler for Recorder {
    async fn handle(&self, req: Request) -> Response {
        let mut f = self.0.lock().unwrap();
        f.write_all(&req.body).unwrap();
        f.write_all(b"\n").unwrap();
        Response::text(200, "ok")
    }
}

async fn record_sink(listen: &str, out: &str) {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("bind sink");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .expect("sink file");
    let shutdown = shutdown::on_signals().expect("signals");
    http::serve(
        listener,
        Arc::new(Recorder(Mutex::new(file))),
        Limits::new(1 << 24, 10_000),
        shutdown,
    )
    .await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("missing argument {i}"))
    };
    match a(0) {
        "sink" => sink(a(1), a(2).parse().unwrap()).await,
        "load" => load(a(1), a(2), a(3).parse().unwrap(), a(4).parse().unwrap()).await,
        "fill" => fill(a(1), a(2), a(3).parse().unwrap()).await,
        "ledger-load" => {
            ledger_load(
                a(1),
                a(2),
                a(3).parse().unwrap(),
                a(4).parse().unwrap(),
                a(5),
            )
            .await
        }
        "record-sink" => record_sink(a(1), a(2)).await,
        other => panic!("unknown mode {other}"),
    }
}
