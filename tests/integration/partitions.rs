//! `RELAY_PARTITIONS` on one Redis, through real server, client and CLI processes: webhooks
//! spread over every partition and all delivered; the operator's views (events, show,
//! redeliver, dlq, tail, the admin API, metrics) see every partition, with ids labelled
//! `<p>/<id>`, and a plain id that two partitions hold is refused as ambiguous.

use std::collections::HashSet;

use serde_json::Value;

use crate::support::sink::{Answer, Sink};
use crate::support::*;

const STREAM: &str = "pt:{w}";
const DLQ: &str = "pt:{w}:dlq";
const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

fn partition_of(id: &str) -> usize {
    let (p, _) = id.split_once('/').expect("a labelled id");
    p.parse().expect("a partition number")
}

fn json_lines(out: &str) -> Value {
    serde_json::from_str(out.trim()).expect("JSON")
}

/// The variables of every role here: three partitions of `STREAM` on `redis`.
fn three_partitions(redis: &Redis) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", redis.url()),
        ("RELAY_STREAM", STREAM.to_owned()),
        ("RELAY_DLQ_STREAM", DLQ.to_owned()),
        ("RELAY_PARTITIONS", "3".to_owned()),
    ]
}

fn pairs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The ids of every page of `events --json --limit LIMIT`, following each page's `next`.
fn page_through(vars: &[(&str, &str)], limit: &str) -> Vec<String> {
    let mut paged = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut args = vec!["events", "--json", "--limit", limit];
        if let Some(b) = &before {
            args.extend(["--before", b.as_str()]);
        }
        let (code, out, err) = run_relay(&args, vars);
        assert_eq!(code, 0, "{err}");
        let page = json_lines(&out);
        for e in page["events"].as_array().unwrap() {
            paged.push(e["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return paged,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_sees_every_partition() {
    let redis = Redis::start().await;
    let admin_port = free_port().to_string();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let owned = three_partitions(&redis);
    let vars = pairs(&owned);
    let sink = Sink::start().await;
    sink.script(|r, _| match r.body.starts_with(b"bad") {
        true => Answer::Status(422),
        false => Answer::Status(200),
    });
    let (_server, addr) = server_process_with(&redis, STREAM, &vars).await;
    let mut client_vars = vars.clone();
    client_vars.push(("RELAY_ADMIN_LISTEN", &admin_listen));
    let _client = client_process(&redis, STREAM, &sink.url(), &client_vars);
    for i in 0..12 {
        let body = match i % 4 {
            3 => format!("bad-{i}"),
            _ => format!("good-{i}"),
        };
        let resp = Conn::request_once(
            addr,
            &post("/webhook/pt", &[("X-API-Key", API_KEY)], body.as_bytes()),
        )
        .await;
        resp.id(); // a 200 with an id
    }
    assert!(sink.wait_for(WAIT, |r| r.len() >= 12).await);
    let keys: Vec<String> = (0..3)
        .map(|p| crm_relay::config::partition_key(STREAM, p, 3))
        .collect();
    for key in &keys {
        assert_eq!(redis.xlen(key), 4, "{key}: webhooks take turns");
    }
    let dead_letters = || async {
        let dlqs = (0..3).map(|p| crm_relay::config::partition_key(DLQ, p, 3));
        dlqs.map(|k| redis.xlen(&k)).sum::<u64>() == 3
    };
    assert!(eventually(WAIT, dead_letters).await);

    // events: every partition, newest first, ids labelled; pages cover all without repeats.
    let (code, out, err) = run_relay(&["events", "--json", "--limit", "100"], &vars);
    assert_eq!(code, 0, "{err}");
    let all = json_lines(&out)["events"].as_array().unwrap().clone();
    assert_eq!(all.len(), 12, "{out}");
    let ids: Vec<String> = all
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let parts: HashSet<usize> = ids.iter().map(|id| partition_of(id)).collect();
    assert_eq!(parts.len(), 3);
    // Newest first by stream id (Redis's clock). Not by `received_at` (the server's): two
    // partitions often store in the same millisecond, and which of those came first is not
    // in their ids.
    let order: Vec<crm_relay::stream::StreamId> = ids
        .iter()
        .map(|id| id.split_once('/').unwrap().1.parse().unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {ids:?}"
    );
    let paged = page_through(&vars, "5");
    assert_eq!(paged, ids, "pages over partitions: no gap, no repeat");

    // events show and redeliver take a labelled id, and stay in its partition.
    let delivered = all.iter().find(|e| e["status"] == "delivered").unwrap();
    let id = delivered["id"].as_str().unwrap();
    let (code, out, err) = run_relay(&["events", "show", id, "--json"], &vars);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_lines(&out)["id"], id);
    let (code, out, err) = run_relay(&["redeliver", id], &vars);
    assert_eq!(code, 0, "{err}");
    let copy = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("redelivered {id} as ")))
        .expect(&out);
    assert_eq!(partition_of(copy), partition_of(id), "{out}");
    assert!(sink.wait_for(WAIT, |r| r.len() >= 13).await);

    // The dead letters of every partition, one replayed within its partition.
    let (code, out, _) = run_relay(&["dlq", "list"], &vars);
    assert_eq!(code, 0);
    let dead: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.contains('/'))
        .collect();
    assert_eq!(dead.len(), 3, "{out}");
    let (code, out, err) = run_relay(&["dlq", "replay", dead[0]], &vars);
    assert_eq!(code, 0, "{err}");
    let new_id = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("replayed {} as ", dead[0])))
        .expect(&out);
    assert_eq!(partition_of(new_id), partition_of(dead[0]));

    // The admin API merges partitions too; metrics sum them.
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let admin = admin_listen.parse().unwrap();
    let listed = Conn::request_once(admin, get("/events?limit=100").as_bytes()).await;
    assert_eq!(listed.status, 200);
    assert!(listed.json()["events"].as_array().unwrap().len() >= 13);
    let one = Conn::request_once(admin, get(&format!("/events/{id}")).as_bytes()).await;
    assert_eq!(one.json()["id"], id);
    let metrics = Conn::request_once(admin, get("/metrics").as_bytes()).await;
    let text = String::from_utf8_lossy(&metrics.body);
    let total: u64 = keys.iter().map(|k| redis.xlen(k)).sum();
    let want = format!("relay_stream_length{{role=\"client\"}} {total}");
    assert!(text.contains(&want), "{want} in {text}");

    // The live feed: arrivals of every partition; its event ids hold each partition's place,
    // and a reconnect from one brings what every partition stored meanwhile. Webhooks are
    // told apart by relay id: the plain stream id the server answers may be another
    // partition's too.
    let post_one = |body: String| async move {
        let raw = post("/webhook/pt", &[("X-API-Key", API_KEY)], body.as_bytes());
        let relay_id = Conn::request_once(addr, &raw).await.relay_id();
        format!(r#""relay_id":"{relay_id}""#)
    };
    let mut feed = crate::inspector::Feed::open(admin, None).await;
    let mut live = Vec::new();
    for i in 0..3 {
        live.push(post_one(format!("live-{i}")).await);
    }
    for webhook in &live {
        assert!(feed.until(webhook).await, "{}", feed.text);
    }
    // The place after the last arrival seen (the hub emits a tick's arrivals partition by
    // partition, so the event of the newest webhook need not be the last one).
    let cursor = feed
        .text
        .rsplit("\nid: ")
        .next()
        .and_then(|rest| rest.split('\n').next())
        .unwrap()
        .to_owned();
    assert_eq!(
        cursor.split(',').count(),
        3,
        "one place per partition: {cursor}"
    );
    drop(feed);
    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(post_one(format!("missed-{i}")).await);
    }
    let mut feed = crate::inspector::Feed::open(admin, Some(&cursor)).await;
    for webhook in &missed {
        assert!(feed.until(webhook).await, "{}", feed.text);
    }
    for webhook in &live {
        assert!(
            !feed.text.contains(webhook.as_str()),
            "{webhook} again: {}",
            feed.text
        );
    }
    drop(feed);

    // A plain id two partitions hold is ambiguous; labelled, it is one.
    for p in [0, 2] {
        let dlq = crm_relay::config::partition_key(DLQ, p, 3);
        let _: String = redis::cmd("XADD")
            .arg(&dlq)
            .arg("99999999999999-0")
            .arg("v")
            .arg("1")
            .query(&mut redis.conn())
            .unwrap();
    }
    let (code, _, err) = run_relay(&["dlq", "show", "99999999999999-0"], &vars);
    assert_eq!(code, 1);
    assert!(
        err.contains("several partitions")
            && err.contains("0/99999999999999-0, 2/99999999999999-0"),
        "{err}"
    );
    let (code, out, err) = run_relay(&["dlq", "show", "2/99999999999999-0"], &vars);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2/99999999999999-0"), "{out}");
    let ambiguous = Conn::request_once(admin, get("/dlq/99999999999999-0").as_bytes()).await;
    assert_eq!(ambiguous.status, 409);
    let (code, _, err) = run_relay(
        &["dlq", "purge", "0/99999999999999-0", "2/99999999999999-0"],
        &vars,
    );
    assert_eq!(code, 0, "{err}");

    // tail follows every partition.
    let (mut tail, mut out) = tail_process(&vars).await;
    for i in 0..3 {
        let body = format!("tail-{i}");
        let raw = post("/webhook/pt", &[("X-API-Key", API_KEY)], body.as_bytes());
        Conn::request_once(addr, &raw).await.id();
    }
    let mut seen = HashSet::new();
    while seen.len() < 3 {
        let line = out
            .until(WAIT, |l| l.contains(r#""event":"received""#))
            .await
            .expect("three arrivals");
        let v: Value = serde_json::from_str(&line).unwrap();
        seen.insert(partition_of(v["id"].as_str().unwrap()));
    }
    signal(tail.id(), "INT");
    let _ = tokio::task::spawn_blocking(move || tail.wait()).await;
}

/// Stream ids repeat across partitions: a page that ends on `1000-0` of one partition must
/// leave the `1000-0` of the others to the next page, on the command line and on the admin
/// API (whose inspector sends the labelled `next` URL-encoded), whatever the page size; and
/// a `before` in a partition that does not exist is refused.
#[tokio::test]
async fn pages_that_end_between_equal_ids_lose_nothing() {
    let redis = Redis::start().await;
    let owned = three_partitions(&redis);
    let vars = pairs(&owned);
    let stored: [(usize, &str); 8] = [
        (0, "999-0"),
        (0, "1000-0"),
        (1, "1000-0"),
        (2, "1000-0"),
        (0, "1000-1"),
        (2, "1000-1"),
        (1, "1001-0"),
        (2, "1001-0"),
    ];
    for (p, id) in stored {
        let key = crm_relay::config::partition_key(STREAM, p, 3);
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg(id)
            .arg("v")
            .arg("1")
            .arg("source")
            .arg("pt")
            .arg("body")
            .arg(id)
            .query(&mut redis.conn())
            .unwrap();
    }
    let (code, out, err) = run_relay(&["events", "--json", "--limit", "100"], &vars);
    assert_eq!(code, 0, "{err}");
    let all: Vec<String> = json_lines(&out)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all.len(), stored.len(), "{out}");
    let admin = start_admin_over(
        &redis,
        STREAM,
        3,
        crm_relay::ops::admin::Role::Client(Default::default()),
    )
    .await;
    for limit in 1..=4 {
        let limit = limit.to_string();
        let paged = page_through(&vars, &limit);
        assert_eq!(paged, all, "command line, pages of {limit}");

        let mut paged = Vec::new();
        let mut query = format!("/events?limit={limit}");
        loop {
            let get = format!("GET {query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            let page = Conn::request_once(admin, get.as_bytes()).await;
            assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
            let page = page.json();
            for e in page["events"].as_array().unwrap() {
                paged.push(e["id"].as_str().unwrap().to_owned());
            }
            match page["next"].as_str() {
                Some(next) => {
                    let next = next.replace('/', "%2F");
                    query = format!("/events?limit={limit}&before={next}");
                }
                None => break,
            }
        }
        assert_eq!(paged, all, "admin API, pages of {limit}");
    }

    // A page cannot resume in a partition that is not configured: refused, not guessed.
    let (code, out, err) = run_relay(&["events", "--before", "3/1000-0"], &vars);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(
        err.contains("there is no partition 3 (RELAY_PARTITIONS=3: 0 to 2)"),
        "{err}"
    );
    let get = b"GET /events?before=3%2F1000-0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let refused = Conn::request_once(admin, get).await;
    assert_eq!(refused.status, 400);
    assert!(
        String::from_utf8_lossy(&refused.body).contains("there is no partition 3"),
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
}

/// A client restarted with another `RELAY_PARTITIONS` while webhooks wait in streams the new
/// number does not read refuses to start (exit code 2) and says how to drain them, and
/// `check client` fails with the same words; drained with the old number, the new one starts,
/// records itself, and says what the old streams still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_partition_count_never_strands_webhooks() {
    let redis = Redis::start().await;
    let sink = Sink::start().await;
    let three = three_partitions(&redis);
    let mut two: Vec<(&str, String)> = three.clone();
    two.retain(|(k, _)| *k != "RELAY_PARTITIONS");
    two.push(("RELAY_PARTITIONS", "2".to_owned()));
    let key = |p, n| crm_relay::config::partition_key(STREAM, p, n);
    let unread: Vec<String> = (0..3)
        .map(|p| key(p, 3))
        .filter(|k| (0..2).all(|q| key(q, 2) != *k))
        .collect();
    assert!(!unread.is_empty(), "two partitions read other streams");
    let layout = format!("{STREAM}:layout");
    let recorded = || -> Option<String> {
        redis::cmd("HGET")
            .arg(&layout)
            .arg("partitions")
            .query(&mut redis.conn())
            .unwrap()
    };

    // A client with three partitions records them.
    sink.down().await;
    let client = client_process(&redis, STREAM, &sink.url(), &pairs(&three));
    assert!(eventually(WAIT, || async { recorded().as_deref() == Some("3") }).await);
    drop(client);
    for k in &unread {
        redis.add_webhook(k, b"waiting");
    }

    let target = sink.url();
    let mut with_two = pairs(&two);
    with_two.push(("RELAY_TARGET_URL", target.as_str()));
    let (code, _, err) = run_relay(&["client"], &with_two);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("configuration error: RELAY_PARTITIONS: "),
        "{err}"
    );
    let said = format!(
        "the streams were written with RELAY_PARTITIONS=3, and {} webhooks not yet delivered \
         wait in streams that 2 partitions do not read",
        unread.len()
    );
    assert!(err.contains(&said), "{err}");
    assert!(err.contains(&format!("{} (1)", unread[0])), "{err}");
    assert!(
        err.contains("Run the client with RELAY_PARTITIONS=3"),
        "{err}"
    );
    // The message says what to do; `--help` would not.
    assert!(!err.contains("--help"), "{err}");
    let (code, out, _) = run_relay(&["check", "client"], &with_two);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("error: {said}")), "{out}");
    // The server strands nothing itself: its check warns with the same words.
    let mut server_two = pairs(&two);
    server_two.push(("RELAY_API_KEYS", API_KEY));
    let (code, out, _) = run_relay(&["check", "server"], &server_two);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("warning: {said}")), "{out}");
    assert_eq!(recorded().as_deref(), Some("3"), "nothing recorded");

    // Drained with three, the client starts with two and records it.
    sink.up().await;
    let client = client_process(&redis, STREAM, &sink.url(), &pairs(&three));
    assert!(sink.wait_for(WAIT, |r| r.len() >= unread.len()).await);
    let drained = || async { unread.iter().all(|k| redis.pending(k) == 0) };
    assert!(eventually(WAIT, drained).await);
    drop(client);
    let mut client = client_process(&redis, STREAM, &sink.url(), &pairs(&two));
    client.logs("RELAY_PARTITIONS changed from 3 to 2: ").await;
    assert_eq!(recorded().as_deref(), Some("2"));
    let (code, out, _) = run_relay(&["check", "client"], &with_two);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok: RELAY_PARTITIONS=2: the layout the client recorded"),
        "{out}"
    );
}
