//! The client as a real process: SIGKILL mid-delivery loses nothing, SIGTERM exits 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::process::wait_exit;

use crate::support::sink::{Answer, Sink};
use crate::support::*;

fn spawn_client(redis: &Redis, stream: &str, target: &str) -> Proc {
    spawn_consumer(redis, stream, target, "proc-consumer")
}

/// A client process; it logs `delivering …` once its signal handlers and group are set up.
fn spawn_consumer(redis: &Redis, stream: &str, target: &str, consumer: &str) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_crm-relay"))
        .arg("client")
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env("RELAY_STREAM", stream)
        .env("RELAY_TARGET_URL", target)
        .env("RELAY_CONSUMER", consumer)
        .env("RELAY_ADMIN_LISTEN", "")
        .env("RELAY_BACKOFF_BASE", "20ms")
        .env("RELAY_BACKOFF_MAX", "100ms")
        .env("RELAY_FORWARD_TIMEOUT", "30s")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crm-relay client");
    Proc::watched(child, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_the_sink_holds_the_request_loses_nothing() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "p:kill").await;
    let sink = Sink::start().await;
    sink.script(|_, seen| {
        if seen == 0 {
            Answer::Hang
        } else {
            Answer::Status(200)
        }
    });
    let id = relay
        .request(&post("/webhook", &[("X-API-Key", API_KEY)], b"precious"))
        .await
        .relay_id();
    let first = spawn_client(&redis, "p:kill", &sink.url());
    assert!(
        sink.wait_for(Duration::from_secs(15), |r| r.len() == 1)
            .await,
        "first attempt reached the sink"
    );
    drop(first); // SIGKILL, mid-delivery: no ack was written
    let mut second = spawn_client(&redis, "p:kill", &sink.url());
    assert!(
        sink.wait_for(Duration::from_secs(15), |r| r.len() >= 2)
            .await,
        "redelivered after restart"
    );
    let received = sink.received();
    assert!(
        received
            .iter()
            .all(|r| r.relay_id() == id && r.body == b"precious")
    );
    signal(second.child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut second.child, Duration::from_secs(10)).await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_promptly_and_bad_config_exits_2() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let mut child = spawn_client(&redis, "p:term", &sink.url());
    child.logs("delivering p:term").await;
    signal(child.child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut child.child, Duration::from_secs(10)).await,
        Some(0)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_crm-relay"))
        .arg("client")
        .env_clear()
        .env("RELAY_TARGET_URL", "localhost:3000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RELAY_TARGET_URL"));
}

/// Two clients in one group: the one killed mid-delivery leaves entries in its pending list;
/// the survivor claims them (XAUTOCLAIM after 30 s idle) and delivers them. Takes about 45 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_client_claims_a_dead_clients_pending_entries() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "p:claim").await;
    let sink = Sink::start().await;
    sink.script(|_, _| Answer::Hang);
    for i in 0..5 {
        relay
            .request(&post(
                "/webhook",
                &[("X-API-Key", API_KEY)],
                format!("claim-{i}").as_bytes(),
            ))
            .await
            .id();
    }
    let dead = spawn_consumer(&redis, "p:claim", &sink.url(), "client-a");
    assert!(
        sink.wait_for(Duration::from_secs(15), |r| r.len() >= 4)
            .await,
        "client a holds them"
    );
    drop(dead); // SIGKILL
    let before = sink.count();
    sink.script(|_, _| Answer::Status(200));
    let mut survivor = spawn_consumer(&redis, "p:claim", &sink.url(), "client-b");
    let delivered_by_b = move |r: &[crate::support::sink::Received]| {
        let later = &r[before.min(r.len())..];
        (0..5).all(|i| {
            later
                .iter()
                .any(|x| x.body == format!("claim-{i}").as_bytes())
        })
    };
    assert!(
        sink.wait_for(Duration::from_secs(75), delivered_by_b).await,
        "the survivor claimed and delivered every entry"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            redis.pending("p:claim") == 0
        })
        .await,
        "all acknowledged"
    );
    signal(survivor.child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut survivor.child, Duration::from_secs(10)).await,
        Some(0)
    );
}

/// Shutdown is bounded even while Redis is frozen: acknowledgements that cannot be written
/// are left (logged), the process exits 0 within systemd's 15 s, and those webhooks stay
/// pending and are delivered again later, never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_frozen_redis_is_bounded_and_loses_nothing() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "p:frozen").await;
    let sink = Sink::start().await;
    sink.script(|_, _| Answer::Hang);
    for i in 0..4 {
        let body = format!("frozen-{i}");
        relay
            .request(&post(
                "/webhook",
                &[("X-API-Key", API_KEY)],
                body.as_bytes(),
            ))
            .await
            .id();
    }
    let child = Command::new(env!("CARGO_BIN_EXE_crm-relay"))
        .arg("client")
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env("RELAY_STREAM", "p:frozen")
        .env("RELAY_TARGET_URL", sink.url())
        .env("RELAY_CONSUMER", "frozen")
        .env("RELAY_ADMIN_LISTEN", "")
        .env("RELAY_BACKOFF_BASE", "20ms")
        .env("RELAY_BACKOFF_MAX", "100ms")
        .env("RELAY_FORWARD_TIMEOUT", "1s")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = Proc::watched(child, "frozen");
    // The client holds all four (in flight at the app) before Redis freezes.
    assert!(
        sink.wait_for(Duration::from_secs(15), |r| r.len() >= 4)
            .await
    );
    redis.signal("STOP");
    sink.script(|_, _| Answer::Status(200));
    // The held attempts time out and are retried from memory: the app takes them, and
    // their acknowledgements wait for the frozen Redis.
    assert!(
        sink.wait_for(Duration::from_secs(15), |r| r.len() >= 8)
            .await
    );
    let asked = std::time::Instant::now();
    signal(client.child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut client.child, Duration::from_secs(14)).await,
        Some(0)
    );
    assert!(
        asked.elapsed() < Duration::from_secs(12),
        "bounded: {:?}",
        asked.elapsed()
    );
    let log = client.lines.rest(Duration::from_secs(5)).await;
    assert!(
        log.contains("not written before the shutdown deadline"),
        "{log}"
    );
    // Acknowledgements sent before the deadline may still run once Redis resumes (a timed-out
    // command is not a cancelled one); the others stay pending, and the restarted client
    // delivers them again: in the end every webhook is acknowledged.
    redis.signal("CONT");
    let mut again = spawn_consumer(&redis, "p:frozen", &sink.url(), "frozen");
    again.logs("delivering p:frozen").await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            redis.pending("p:frozen") == 0
        })
        .await,
        "nothing left pending: the unacknowledged ones were delivered again"
    );
}

/// A client started while Redis refuses it (a wrong password here) retries once a second and
/// says so once, not at every attempt; a SIGTERM meanwhile stops it without a word about
/// delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_for_redis_at_start_warns_once_and_stops_cleanly() {
    let redis = Redis::start_with(&["--requirepass", "right-pw"]).await;
    // One connection of ours: what the count adds up is the client's.
    let ours = std::sync::Mutex::new(redis.conn());
    let connections = || {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut *ours.lock().unwrap())
            .expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let url = format!("redis://:wrong-pw@127.0.0.1:{}", redis.port);
    let mut child = client_process(
        &redis,
        "p:wait",
        "http://127.0.0.1:1/",
        &[("REDIS_URL", &url)],
    );
    child.logs("redis unreachable at start").await;
    // Three attempts more, each on a connection of its own.
    let after_first = connections();
    let retried = eventually(Duration::from_secs(20), || {
        std::future::ready(connections() >= after_first + 3)
    })
    .await;
    assert!(retried, "the client retries");
    signal(child.child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut child.child, Duration::from_secs(10)).await,
        Some(0)
    );
    let log = child.lines.rest(Duration::from_secs(5)).await;
    assert_eq!(log.matches("redis unreachable").count(), 2, "{log}");
    assert_eq!(log.matches("unreachable at start").count(), 1, "{log}");
    assert!(!log.contains("delivering"), "{log}");
}

/// A client started while Redis loads its dataset (just rebooted, a large dataset: it
/// answers `LOADING` to everything) waits for it, saying so once, instead of exiting; then it
/// delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_started_while_redis_loads_its_dataset_waits_for_it() {
    let mut redis = Redis::start().await;
    // 300 keys of 1 KB in the AOF's RDB base file, which key-load-delay slows down.
    let mut conn = redis.conn();
    let value = vec![b'x'; 1000];
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query(&mut conn)
            .unwrap();
    }
    let _: () = redis::cmd("BGREWRITEAOF").query(&mut conn).unwrap();
    let rewritten = eventually(Duration::from_secs(20), || {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut conn)
            .unwrap();
        std::future::ready(
            info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0"),
        )
    })
    .await;
    assert!(rewritten);
    drop(conn);
    redis.restart_loading_slowly(20_000).await; // about 6 s
    let sink = Sink::start().await;
    let mut child = client_process(&redis, "p:loading", &sink.url(), &[]);
    child.logs("redis is loading its dataset").await;
    child.logs("delivering p:loading").await;
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "the client is running"
    );
}

/// A client started while a Lua script holds Redis past its busy threshold (Redis answers
/// `BUSY` to everything until the script ends or `SCRIPT KILL` stops it) waits, saying why,
/// instead of exiting; once the script is killed, it delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_started_while_a_script_holds_redis_waits_for_it() {
    let redis = Redis::start().await;
    // busy-reply-threshold's older name, which every Redis 7 (and 6) knows.
    redis.config_set("lua-time-limit", "50");
    let mut conn = redis.conn();
    // The script runs on a thread of its own: its connection waits for the script's end.
    let mut script = redis.conn();
    let looping = std::thread::spawn(move || {
        redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query::<redis::Value>(&mut script)
    });
    let busy = eventually(Duration::from_secs(10), || {
        let answer = redis::cmd("PING").query::<String>(&mut conn);
        std::future::ready(answer.is_err_and(|e| e.code() == Some("BUSY")))
    })
    .await;
    assert!(busy, "redis answers BUSY");
    let sink = Sink::start().await;
    let mut child = client_process(&redis, "p:busy", &sink.url(), &[]);
    child.logs("redis is busy running a script").await;
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "the client waits"
    );
    let _: () = redis::cmd("SCRIPT").arg("KILL").query(&mut conn).unwrap();
    assert!(looping.join().unwrap().is_err(), "the script was killed");
    child.logs("delivering p:busy").await;
    redis.add_webhook("p:busy", b"after the script");
    let delivered = sink
        .wait_for(Duration::from_secs(20), |got| got.len() == 1)
        .await;
    assert!(delivered, "the webhook added after the script is delivered");
}

/// A client started on `stream` once Redis (started with `noeviction`) holds `backlog`
/// webhooks and is full to its `maxmemory`. A first run has set the group and the layout up,
/// as in any deployment.
async fn started_on_a_full_redis(redis: &Redis, stream: &str, sink: &Sink, backlog: usize) -> Proc {
    let delivering = format!("delivering {stream}");
    let mut first = client_process(redis, stream, &sink.url(), &[]);
    first.logs(&delivering).await;
    signal(first.child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut first.child, Duration::from_secs(10)).await,
        Some(0)
    );
    for i in 0..backlog {
        redis.add_webhook(stream, format!("backlog {i}").as_bytes());
    }
    redis.config_set("maxmemory", "1");
    let mut child = client_process(redis, stream, &sink.url(), &[]);
    child.logs(&delivering).await;
    child
}

/// A Redis full to its `maxmemory` (the app was down for days, the backlog filled it)
/// refuses every write that could grow it. The client, restarted then, must still start,
/// deliver the backlog and acknowledge it: acknowledgements free memory, and the webhooks are
/// what the app has been waiting for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_restarted_while_redis_is_full_delivers_and_acknowledges_the_backlog() {
    let redis = Redis::start_with(&["--maxmemory-policy", "noeviction"]).await;
    let sink = Sink::start().await;
    let mut child = started_on_a_full_redis(&redis, "p:full", &sink, 5).await;
    let delivered = sink
        .wait_for(Duration::from_secs(20), |got| got.len() == 5)
        .await;
    assert!(delivered, "the backlog is delivered");
    let acknowledged = eventually(Duration::from_secs(20), || {
        std::future::ready(redis.pending("p:full") == 0)
    })
    .await;
    assert!(acknowledged, "every delivery is acknowledged");
    redis.config_set("maxmemory", "0");
    signal(child.child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut child.child, Duration::from_secs(10)).await,
        Some(0)
    );
    let log = child.lines.rest(Duration::from_secs(5)).await;
    assert!(!log.contains("unreachable"), "{log}");
    assert!(
        log.contains("recording delivery outcomes failed: redis refused the command"),
        "the operator is told what Redis refuses: {log}"
    );
    assert_eq!(sink.count(), 5, "each webhook once");
}

/// Dead letters that a full Redis refuses are retried at every housekeeping round (5 s):
/// with many of them, the log repeated each one every round. A few lines a minute now, the
/// rest counted; and once Redis has room, every dead letter is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_a_full_redis_refuses_are_logged_a_few_times_a_minute() {
    let redis = Redis::start_with(&["--maxmemory-policy", "noeviction"]).await;
    let sink = Sink::start().await;
    sink.script(|_, _| Answer::Status(400));
    let mut child = started_on_a_full_redis(&redis, "p:dlfull", &sink, 10).await;
    // The scripts Redis would not run to the end: the dead letters' first tries and at
    // least two rounds of retries.
    let failed_scripts =
        || redis.commandstat("eval", "failed_calls") + redis.commandstat("eval", "rejected_calls");
    let retried = eventually(Duration::from_secs(40), || {
        std::future::ready(failed_scripts() >= 30)
    })
    .await;
    assert!(retried, "the dead letters are retried");
    redis.config_set("maxmemory", "0");
    let written = eventually(Duration::from_secs(20), || {
        std::future::ready(redis.xlen("p:dlfull:dlq") == 10 && redis.pending("p:dlfull") == 0)
    })
    .await;
    assert!(written, "every dead letter is written once Redis has room");
    signal(child.child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut child.child, Duration::from_secs(10)).await,
        Some(0)
    );
    let log = child.lines.rest(Duration::from_secs(5)).await;
    let lines = log
        .lines()
        .filter(|l| l.contains("dead-lettering") && l.contains("failed, will retry"))
        .count();
    // Five a minute; ten if a slow machine stretched the run over a second minute. Logged
    // one by one, the 30 refused tries above were 30 lines.
    assert!(
        (1..=10).contains(&lines),
        "{lines} lines about dead letters not written: {log}"
    );
    assert_eq!(sink.count(), 10, "each webhook tried once (400 is final)");
}

/// A Redis that refuses writes but answers reads (`MISCONF`: it cannot save to disk) refuses
/// `XREADGROUP`, which is a write, while `XPENDING` still works. The client must back off
/// and say so once, not spin: it re-read its pending list after every refused read, took
/// that for Redis being back, and so retried every 50 ms with two log lines each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_reads_are_refused_backs_off_and_says_so_once() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let mut child = client_process(&redis, "p:misconf", &sink.url(), &[]);
    child.logs("delivering p:misconf").await;
    redis.lose_its_disk().await;
    let refused_reads = || redis.commandstat("xreadgroup", "rejected_calls");
    let retried = eventually(Duration::from_secs(30), || {
        std::future::ready(refused_reads() >= 5)
    })
    .await;
    assert!(retried, "the client retries its reads");
    // Redis takes writes again: the client says so and delivers.
    redis.config_set("stop-writes-on-bgsave-error", "no");
    child.logs("reading the stream again").await;
    redis.add_webhook("p:misconf", b"after the disk came back");
    let delivered = sink
        .wait_for(Duration::from_secs(20), |got| got.len() == 1)
        .await;
    assert!(delivered, "the webhook is delivered");
    signal(child.child.id(), "TERM");
    assert_eq!(
        wait_exit(&mut child.child, Duration::from_secs(10)).await,
        Some(0)
    );
    let log = child.lines.rest(Duration::from_secs(5)).await;
    assert_eq!(log.matches("reading the stream failed").count(), 1, "{log}");
    assert_eq!(log.matches("reading the stream again").count(), 1, "{log}");
}
