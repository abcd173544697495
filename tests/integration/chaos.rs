//! The chaos ledger: 2,000 webhooks through the real server and client binaries, a real
//! Redis, and an app that mixes every answer real apps give: 2xx, poison 5xx for 5 % of the
//! bodies, 429, an early 413 for large bodies, connection resets, 503s, and a 20 s outage.
//! Every non-poison webhook must be delivered, every poison one dead-lettered exactly once
//! after exactly `RELAY_MAX_ATTEMPTS` counted attempts, every large one dead-lettered with
//! its 413, and nothing else in the DLQ.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::support::sink::{Answer, Sink};
use crate::support::*;

const TOTAL: usize = 2000;
const MAX_ATTEMPTS: &str = "10";

fn body(n: usize) -> Vec<u8> {
    let mut b = format!("chaos-{n:05}").into_bytes();
    if is_big(n) {
        b.resize(200 * 1024, b'.');
    }
    b
}

fn is_poison(n: usize) -> bool {
    n.is_multiple_of(20)
}

fn is_big(n: usize) -> bool {
    n % 50 == 7
}

fn number(body: &[u8]) -> usize {
    std::str::from_utf8(&body[6..11]).unwrap().parse().unwrap()
}

/// A deterministic spread over (body, attempt): 0..100.
fn dice(body: &[u8], seen: usize) -> u64 {
    let h = body
        .iter()
        .take(11)
        .fold(seen as u64 ^ 0xcbf29ce484222325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        });
    h % 100
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_webhooks_through_every_failure_shape() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let delivered: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let d = delivered.clone();
    sink.script(move |r, seen| {
        let n = number(&r.body);
        if is_poison(n) {
            return Answer::Status(500);
        }
        match dice(&r.body, seen) {
            0..=4 => Answer::RetryAfter(429, 0),
            5..=7 => Answer::Reset,
            8..=10 => Answer::Status(503),
            _ => {
                *d.lock().unwrap().entry(n).or_default() += 1;
                Answer::Status(200)
            }
        }
    });
    sink.early(|r| (r.content_length() > 100_000).then_some(413));
    let (_server, addr) = server_process(&redis, "x:chaos").await;
    let _client = client_process(
        &redis,
        "x:chaos",
        &sink.url(),
        &[("RELAY_MAX_ATTEMPTS", MAX_ATTEMPTS)],
    );

    // Send everything, with a 20 s outage of the app in the middle.
    let mut senders = JoinSet::new();
    let mut accepted = HashSet::new();
    for n in 0..TOTAL {
        if n == TOTAL / 2 {
            while let Some(r) = senders.join_next().await {
                accepted.extend(r.unwrap());
            }
            sink.down().await;
            tokio::time::sleep(Duration::from_secs(20)).await;
            sink.up().await;
        }
        if senders.len() >= 20 {
            accepted.extend(senders.join_next().await.unwrap().unwrap());
        }
        senders.spawn(async move {
            let mut c = Conn::connect(addr).await;
            c.send(&post("/webhook/chaos", &[("X-API-Key", API_KEY)], &body(n)))
                .await;
            (c.response().await?.status == 200).then_some(n)
        });
    }
    while let Some(r) = senders.join_next().await {
        accepted.extend(r.unwrap());
    }
    assert_eq!(accepted.len(), TOTAL, "the server took every webhook");

    let poison: HashSet<usize> = (0..TOTAL).filter(|n| is_poison(*n)).collect();
    let big: HashSet<usize> = (0..TOTAL)
        .filter(|n| is_big(*n) && !is_poison(*n))
        .collect();
    let healthy: Vec<usize> = (0..TOTAL)
        .filter(|n| !poison.contains(n) && !big.contains(n))
        .collect();
    let settled = eventually(Duration::from_secs(180), || async {
        let got = delivered.lock().unwrap().clone();
        healthy.iter().all(|n| got.contains_key(n))
            && redis.xlen("x:chaos:dlq") as usize >= poison.len() + big.len()
            && redis.pending("x:chaos") == 0
    })
    .await;
    let got = delivered.lock().unwrap().clone();
    let missing: Vec<&usize> = healthy.iter().filter(|n| !got.contains_key(n)).collect();
    assert!(
        settled,
        "not settled: {} healthy undelivered (e.g. {:?}), {} dead letters, {} pending",
        missing.len(),
        missing.first(),
        redis.xlen("x:chaos:dlq"),
        redis.pending("x:chaos")
    );

    let mut dead: HashMap<usize, usize> = HashMap::new();
    for (_, f) in redis.entries("x:chaos:dlq") {
        let n = number(&f["body"]);
        *dead.entry(n).or_default() += 1;
        let text = |k: &str| String::from_utf8_lossy(&f[k]).into_owned();
        if poison.contains(&n) {
            assert_eq!(text("attempts"), MAX_ATTEMPTS, "poison {n}");
            assert_eq!(text("last_status"), "500", "poison {n}");
        } else if big.contains(&n) {
            assert_eq!(
                (text("attempts").as_str(), text("last_status").as_str()),
                ("1", "413"),
                "large {n}"
            );
        } else {
            panic!("healthy webhook {n} dead-lettered: {}", text("last_error"));
        }
    }
    let expected: HashSet<usize> = poison.union(&big).copied().collect();
    assert_eq!(dead.keys().copied().collect::<HashSet<_>>(), expected);
    assert!(dead.values().all(|c| *c == 1), "one dead letter each");
    let duplicates: usize = got.values().map(|c| c - 1).sum();
    eprintln!(
        "chaos: {TOTAL} accepted, {} delivered ({duplicates} duplicates), {} poison and {} large dead-lettered once each",
        healthy.len(),
        poison.len(),
        big.len()
    );
}
