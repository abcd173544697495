//! The ledger fault suite (short versions; scripts/soak.sh runs the long one): real server
//! and client processes, a real redis-server with `appendfsync always`, a sink. A load
//! generator keeps a ledger of every webhook answered `200`; after each scenario settles,
//! every ledger entry must have reached the sink (or the DLQ), none read back empty.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::sink::Sink;
use crate::support::*;

/// What the load generator saw.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Bodies answered 200, in order.
    pub accepted: Mutex<Vec<Vec<u8>>>,
    pub unavailable: AtomicU64,
    pub failed: AtomicU64,
}

/// Posts unique webhooks at about `rate` per second until stopped.
pub(crate) struct Load {
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub(crate) fn start(addr: SocketAddr, rate: u64) -> Load {
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (ledger.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            let mut n = 0u64;
            let mut inflight = tokio::task::JoinSet::new();
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let body = format!("ledger-{n:08}").into_bytes();
                let l = l.clone();
                inflight.spawn(async move { send(addr, body, &l).await });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        });
        Load { ledger, stop, task }
    }

    pub(crate) async fn stop(self) -> Arc<Ledger> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("load task");
        self.ledger
    }

    pub(crate) fn accepted(&self) -> usize {
        self.ledger.accepted.lock().unwrap().len()
    }

    /// Answered 503 or not at all.
    fn refused(&self) -> u64 {
        self.ledger.unavailable.load(Ordering::Relaxed) + self.ledger.failed.load(Ordering::Relaxed)
    }

    /// Waits until `n` more webhooks were answered 200.
    pub(crate) async fn accepts(&self, n: usize) {
        let target = self.accepted() + n;
        let ok = eventually(Duration::from_secs(30), || async {
            self.accepted() >= target
        })
        .await;
        assert!(ok, "no {n} more 200s: {} accepted", self.accepted());
    }

    /// Waits until `n` more webhooks were refused.
    async fn refuses(&self, n: u64) {
        let target = self.refused() + n;
        let ok = eventually(Duration::from_secs(30), || async {
            self.refused() >= target
        })
        .await;
        assert!(ok, "no {n} more refusals");
    }
}

async fn send(addr: SocketAddr, body: Vec<u8>, ledger: &Ledger) {
    let raw = post("/webhook/load", &[("X-API-Key", API_KEY)], &body);
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = tokio::net::TcpStream::connect(addr).await.ok()?;
        tokio::io::AsyncWriteExt::write_all(&mut c, &raw)
            .await
            .ok()?;
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::io::AsyncReadExt::read(&mut c, &mut chunk)
                .await
                .ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() >= 12 && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return std::str::from_utf8(&buf[9..12]).ok()?.parse::<u16>().ok();
            }
        }
    })
    .await;
    match result {
        Ok(Some(200)) => ledger.accepted.lock().unwrap().push(body),
        Ok(Some(503)) => {
            ledger.unavailable.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            ledger.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Waits until every accepted body reached the sink or the DLQ; returns duplicates.
async fn settle(ledger: &Ledger, sink: &Sink, redis: &Redis, stream: &str, skip: usize) -> usize {
    let accepted: Vec<Vec<u8>> = ledger.accepted.lock().unwrap()[skip..].to_vec();
    assert!(!accepted.is_empty(), "the scenario accepted nothing");
    let dlq = format!("{stream}:dlq");
    let missing = |received: &[crate::support::sink::Received]| -> Vec<Vec<u8>> {
        let mut seen: HashMap<&[u8], usize> = HashMap::new();
        for r in received {
            assert!(!r.body.is_empty(), "an entry was read back empty");
            *seen.entry(&r.body).or_default() += 1;
        }
        let dead: Vec<Vec<u8>> = redis
            .entries(&dlq)
            .into_iter()
            .map(|(_, f)| f["body"].clone())
            .collect();
        accepted
            .iter()
            .filter(|b| !seen.contains_key(b.as_slice()) && !dead.contains(b))
            .cloned()
            .collect()
    };
    let settled = eventually(Duration::from_secs(30), || async {
        missing(&sink.received()).is_empty()
    })
    .await;
    let received = sink.received();
    let lost = missing(&received);
    assert!(
        settled,
        "{} of {} accepted webhooks never delivered, e.g. {:?}",
        lost.len(),
        accepted.len(),
        String::from_utf8_lossy(&lost[0])
    );
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for r in &received {
        *counts.entry(r.body.clone()).or_default() += 1;
    }
    counts.values().map(|c| c - 1).sum()
}

/// Waits until the server answers 200 again; returns how long that took.
async fn recovery(load: &Load, limit: Duration) -> Duration {
    let started = Instant::now();
    let before = load.accepted();
    let back = eventually(limit, || async { load.accepted() > before }).await;
    assert!(back, "no 200 within {limit:?}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_during_load_loses_nothing_acknowledged() {
    let mut redis = Redis::start().await;
    let sink = Sink::start().await;
    let (_server, addr) = server_process(&redis, "f:kill").await;
    let _client = client_process(&redis, "f:kill", &sink.url(), &[]);
    let load = Load::start(addr, 100);
    load.accepts(50).await;
    redis.kill();
    load.refuses(5).await;
    let during = load.accepted();
    load.refuses(50).await; // half a second of refusals at 100/s
    assert_eq!(load.accepted(), during, "no 200 while Redis is down");
    redis.restart().await;
    let back = recovery(&load, Duration::from_secs(5)).await;
    load.accepts(50).await;
    let ledger = load.stop().await;
    assert!(ledger.unavailable.load(Ordering::Relaxed) + ledger.failed.load(Ordering::Relaxed) > 0);
    let dups = settle(&ledger, &sink, &redis, "f:kill", 0).await;
    eprintln!("redis kill: 200s again after {back:?}, {dups} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_answers_503_within_the_bound_and_recovers() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let (_server, addr) = server_process(&redis, "f:stop").await;
    let _client = client_process(&redis, "f:stop", &sink.url(), &[]);
    let load = Load::start(addr, 50);
    load.accepts(25).await;
    redis.signal("STOP");
    // Answers keep coming while Redis is frozen: 503s within the deadline, no pile-up
    // (20 of them at 50/s is past any request that was waiting when it froze).
    let before = load.ledger.unavailable.load(Ordering::Relaxed);
    let answered = eventually(Duration::from_secs(15), || async {
        load.ledger.unavailable.load(Ordering::Relaxed) >= before + 20
    })
    .await;
    redis.signal("CONT");
    assert!(
        answered,
        "no 503s while Redis was frozen: requests piled up"
    );
    recovery(&load, Duration::from_secs(5)).await;
    load.accepts(25).await;
    let ledger = load.stop().await;
    assert_eq!(
        ledger.failed.load(Ordering::Relaxed),
        0,
        "every request was answered"
    );
    settle(&ledger, &sink, &redis, "f:stop", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_connections_reconnect_at_once() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let (_server, addr) = server_process(&redis, "f:ck").await;
    let _client = client_process(&redis, "f:ck", &sink.url(), &[]);
    let load = Load::start(addr, 100);
    for _ in 0..3 {
        load.accepts(30).await;
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query(&mut redis.conn())
            .unwrap();
    }
    recovery(&load, Duration::from_secs(2)).await;
    load.accepts(30).await;
    let ledger = load.stop().await;
    settle(&ledger, &sink, &redis, "f:ck", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_503_never_200_then_recovers() {
    let redis = Redis::start_with(&["--maxmemory-policy", "noeviction"]).await;
    let sink = Sink::start().await;
    let (_server, addr) = server_process(&redis, "f:oom").await;
    let _client = client_process(&redis, "f:oom", &sink.url(), &[]);
    let load = Load::start(addr, 100);
    load.accepts(50).await;
    redis.config_set("maxmemory", "1");
    load.refuses(5).await;
    let full = load.accepted();
    load.refuses(50).await;
    assert_eq!(load.accepted(), full, "no 200 while Redis is out of memory");
    redis.config_set("maxmemory", "0");
    recovery(&load, Duration::from_secs(3)).await;
    let ledger = load.stop().await;
    assert!(ledger.unavailable.load(Ordering::Relaxed) > 0);
    settle(&ledger, &sink, &redis, "f:oom", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_recreated_and_later_webhooks_delivered() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let (_server, addr) = server_process(&redis, "f:del").await;
    let mut client = client_process(&redis, "f:del", &sink.url(), &[]);
    let load = Load::start(addr, 100);
    load.accepts(50).await;
    let _: () = redis::cmd("DEL")
        .arg("f:del")
        .query(&mut redis.conn())
        .unwrap();
    // What was accepted before the operator deleted the stream may be gone with it.
    let after_delete = load.accepted() + 5;
    client.logs("disappeared (NOGROUP)").await;
    load.accepts(100).await;
    let ledger = load.stop().await;
    settle(&ledger, &sink, &redis, "f:del", after_delete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_again_and_again_loses_nothing() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let (_server, addr) = server_process(&redis, "f:ck9").await;
    let load = Load::start(addr, 100);
    for _ in 0..4 {
        let client = client_process(&redis, "f:ck9", &sink.url(), &[]);
        load.accepts(30).await;
        let delivered = sink.count();
        assert!(
            sink.wait_for(Duration::from_secs(30), |r| r.len() > delivered + 10)
                .await
        );
        drop(client); // SIGKILL, mid-stream
    }
    let _client = client_process(&redis, "f:ck9", &sink.url(), &[]);
    load.accepts(30).await;
    let ledger = load.stop().await;
    let dups = settle(&ledger, &sink, &redis, "f:ck9", 0).await;
    eprintln!("client killed 4 times: {dups} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_with_the_breaker_open_dead_letters_nothing() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let (_server, addr) = server_process(&redis, "f:down").await;
    let mut client = client_process(
        &redis,
        "f:down",
        &sink.url(),
        &[
            ("RELAY_MAX_ATTEMPTS", "2"),
            ("RELAY_BREAKER_THRESHOLD", "3"),
        ],
    );
    let load = Load::start(addr, 100);
    load.accepts(30).await;
    sink.down().await;
    client.logs("circuit breaker open").await;
    load.accepts(100).await; // a second of webhooks arriving during the outage
    sink.up().await;
    client.logs("circuit breaker closed").await;
    load.accepts(30).await;
    let ledger = load.stop().await;
    settle(&ledger, &sink, &redis, "f:down", 0).await;
    assert_eq!(
        redis.xlen("f:down:dlq"),
        0,
        "an outage dead-letters nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_app_times_out_is_retried_and_nothing_sticks() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let (_server, addr) = server_process(&redis, "f:hang").await;
    let mut client = client_process(
        &redis,
        "f:hang",
        &sink.url(),
        &[("RELAY_FORWARD_TIMEOUT", "300ms")],
    );
    let load = Load::start(addr, 50);
    load.accepts(15).await;
    sink.script(|_, _| crate::support::sink::Answer::Hang); // never answers
    client.logs("no answer within 300ms").await;
    load.accepts(50).await; // a second of webhooks arriving while the app hangs
    sink.script(|_, _| crate::support::sink::Answer::Status(200));
    load.accepts(15).await;
    let ledger = load.stop().await;
    settle(&ledger, &sink, &redis, "f:hang", 0).await;
    assert_eq!(redis.xlen("f:hang:dlq"), 0);
    assert!(
        eventually(Duration::from_secs(10), || async {
            redis.pending("f:hang") == 0
        })
        .await,
        "nothing stuck pending"
    );
}
