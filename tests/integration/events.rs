//! What arrived and what became of it: `events`, `events show`, `redeliver` and `tail` as
//! real processes against a real Redis, and the same on the admin API.

use std::time::Duration;

use redis::Commands;

use crate::support::sink::{Answer, Sink};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

async fn store(relay: &Relay, source: &str, body: &[u8]) -> String {
    relay
        .request(&post(
            &format!("/webhook/{source}"),
            &[("X-API-Key", API_KEY)],
            body,
        ))
        .await
        .id()
}

fn vars<'a>(redis_url: &'a str, stream: &'a str, dlq: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("REDIS_URL", redis_url),
        ("RELAY_STREAM", stream),
        ("RELAY_DLQ_STREAM", dlq),
    ]
}

fn events_json(vars: &[(&str, &str)], args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["events", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = run_relay(&all, vars);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("events --json is JSON");
    v["events"].as_array().expect("events").clone()
}

fn status_of(events: &[serde_json::Value], id: &str) -> String {
    let e = events.iter().find(|e| e["id"] == id).expect("listed");
    e["status"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_say_what_became_of_each_webhook_and_redeliver_sends_it_again() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "ev:s").await;
    let sink = Sink::start().await;
    sink.script(|r, _| match r.body.as_slice() {
        b"refused" => Answer::Status(422),
        _ => Answer::Status(200),
    });
    let client = RelayClient::start(client_config(&redis.url(), "ev:s", &sink.url(), &[]));
    let stored = relay
        .request(&post("/webhook/wa", &[("X-API-Key", API_KEY)], b"fine"))
        .await;
    let (ok, ok_relay_id) = (stored.id(), stored.relay_id());
    let refused = store(&relay, "ig", b"refused").await;
    assert!(sink.wait_for(WAIT, |r| r.len() == 2).await);
    let outcomes = "ev:s:outcomes:relay";
    let recorded = || redis.conn().hlen::<_, u64>(outcomes).unwrap_or(0) == 2;
    assert!(eventually(WAIT, || async { recorded() }).await);
    client.stop().await;
    // Stored while no client runs: pending.
    let waiting = store(&relay, "wa", b"later").await;

    let url = redis.url();
    let env = vars(&url, "ev:s", "ev:s:dlq");
    let all = events_json(&env, &[]);
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["id"], waiting, "newest first");
    assert_eq!(status_of(&all, &ok), "delivered");
    assert_eq!(status_of(&all, &refused), "dead");
    assert_eq!(status_of(&all, &waiting), "pending");
    let delivered = all.iter().find(|e| e["id"] == ok).unwrap();
    assert_eq!(delivered["outcome"]["status"], 200);
    assert_eq!(delivered["source"], "wa");
    let dead = events_json(&env, &["--status", "dead"]);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["outcome"]["status"], 422);
    assert_eq!(
        dead[0]["outcome"]["answer"], "sink",
        "the app's answer is kept"
    );
    assert!(dead[0]["outcome"]["dlq_id"].is_string());
    assert_eq!(events_json(&env, &["--source", "wa"]).len(), 2);

    let (code, out, _) = run_relay(&["events", "show", &refused], &env);
    assert_eq!(code, 0);
    for want in [
        "status: dead",
        "last_status: 422",
        "last_answer (first KiB):\nsink",
        "refused",
    ] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    let (code, table, _) = run_relay(&["events"], &env);
    assert_eq!(code, 0);
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains("delivered") && table.contains("200 in "),
        "{table}"
    );

    // Redelivery: a copy with the same X-Relay-Id, saying what it copies.
    let (code, out, err) = run_relay(&["redeliver", &ok], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("redelivered {ok} as ")), "{out}");
    let (code, _, err) = run_relay(&["redeliver", &waiting], &env);
    assert_eq!(code, 1);
    assert!(
        err.contains("pending: it is still being delivered"),
        "{err}"
    );
    let (code, _, err) = run_relay(&["redeliver", "1-0"], &env);
    assert_eq!(code, 1);
    assert!(err.contains("no webhook 1-0"), "{err}");
    let client = RelayClient::start(client_config(&redis.url(), "ev:s", &sink.url(), &[]));
    assert!(sink.wait_for(WAIT, |r| r.len() == 4).await);
    let copy = sink
        .received()
        .into_iter()
        .find(|r| r.header("x-relay-redelivery-of") == Some(ok.as_str()))
        .expect("the copy arrived");
    assert_eq!(copy.header("x-relay-id"), Some(ok_relay_id.as_str()));
    assert_eq!(copy.header("x-relay-attempt"), Some("1"));
    assert_eq!(copy.body, b"fine");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_shows_and_redelivers() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "ev:a").await;
    let sink = Sink::start().await;
    let client = RelayClient::start(client_config(&redis.url(), "ev:a", &sink.url(), &[]));
    let id = store(&relay, "wa", b"one").await;
    assert!(sink.wait_for(WAIT, |r| r.len() == 1).await);
    let recorded = || {
        redis
            .conn()
            .hlen::<_, u64>("ev:a:outcomes:relay")
            .unwrap_or(0)
            == 1
    };
    assert!(eventually(WAIT, || async { recorded() }).await);
    let admin = start_admin(
        &redis,
        "ev:a",
        crm_relay::ops::admin::Role::Client(client.metrics.clone()),
    )
    .await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let list = Conn::request_once(admin, get("/events?status=delivered&since=1h").as_bytes()).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["events"][0]["id"], id);
    let one = Conn::request_once(admin, get(&format!("/events/{id}")).as_bytes()).await;
    assert_eq!(one.json()["body"], "one");
    assert_eq!(one.json()["status"], "delivered");
    let bad = Conn::request_once(admin, get("/events?status=done").as_bytes()).await;
    assert_eq!(bad.status, 400);
    let body = r#"{"since":"1h","source":"wa"}"#;
    let raw = format!(
        "POST /events/redeliver HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = Conn::request_once(admin, raw.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["redelivered"][0]["id"], id);
    assert!(sink.wait_for(WAIT, |r| r.len() == 2).await);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_arrivals_and_outcomes_as_json_lines() {
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "ev:t").await;
    let sink = Sink::start().await;
    sink.script(|r, _| match r.body.as_slice() {
        b"bad" => Answer::Status(400),
        _ => Answer::Status(204),
    });
    let client = RelayClient::start(client_config(&redis.url(), "ev:t", &sink.url(), &[]));
    let url = redis.url();
    let (mut tail, mut out) = tail_process(&[("REDIS_URL", &url), ("RELAY_STREAM", "ev:t")]).await;
    let good = store(&relay, "wa", b"good").await;
    let bad = store(&relay, "wa", b"bad").await;
    let line = |want: &'static str, id: String| {
        move |l: &str| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
            v["event"] == want && v["id"] == id.as_str()
        }
    };
    let got = out
        .until(WAIT, line("received", good.clone()))
        .await
        .expect("arrival");
    assert!(
        got.contains(r#""source":"wa""#) && got.contains(r#""size":4"#),
        "{got}"
    );
    let got = out
        .until(WAIT, line("delivered", good.clone()))
        .await
        .expect("delivery");
    assert!(got.contains(r#""status":204"#), "{got}");
    assert!(out.until(WAIT, line("dead", bad.clone())).await.is_some());
    signal(tail.id(), "INT");
    assert!(
        tokio::task::spawn_blocking(move || tail.wait())
            .await
            .unwrap()
            .unwrap()
            .success()
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_kept_newest_last_and_bounded() {
    use crm_relay::stream::{Keys, State, Trace};
    let redis = Redis::start().await;
    let id = redis.add_webhook("ev:h", b"{}");
    let keys = Keys {
        stream: "ev:h".into(),
        dlq: "ev:h:dlq".into(),
    };
    let store =
        crm_relay::stream::Store::new(&crm_relay::config::Secret::new(redis.url()), None, keys)
            .unwrap();
    let failed = |attempt: u32| Trace {
        state: State::Retrying,
        source: "wa".into(),
        attempt,
        status: Some(500),
        error: Some(format!("HTTP 500 on attempt {attempt}")),
        took_ms: 2,
        at: 1_000 + u64::from(attempt),
        answer: Some("{\"error\":\n\"boom\"}".into()),
        dlq_id: None,
        target: None,
    };
    let sid = id.parse().unwrap();
    // Attempts 1..=13 fail, one batch each; then the dead letter of attempt 13.
    for attempt in 1..=13 {
        store
            .record_traces(&[(sid, failed(attempt))])
            .await
            .unwrap();
    }
    let mut dead = failed(13);
    dead.state = State::Dead;
    dead.dlq_id = Some("9-0".into());
    store.record_traces(&[(sid, dead)]).await.unwrap();

    let earlier = store.earlier_traces(sid).await.unwrap();
    let attempts: Vec<u32> = earlier.iter().map(|t| t.attempt).collect();
    assert_eq!(
        attempts,
        (3..=12).collect::<Vec<_>>(),
        "the newest ten, oldest first"
    );
    assert_eq!(earlier[0].answer.as_deref(), Some("{\"error\":\n\"boom\"}"));

    let admin = start_admin(
        &redis,
        "ev:h",
        crm_relay::ops::admin::Role::Client(Default::default()),
    )
    .await;
    let raw = format!("GET /events/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let v = Conn::request_once(admin, raw.as_bytes()).await.json();
    let list = v["attempts"].as_array().expect("attempts");
    assert_eq!(list.len(), 11);
    assert_eq!(list[10]["state"], "dead");
    assert_eq!(list[10]["attempt"], 13);
    assert_eq!(list[0]["error"], "HTTP 500 on attempt 3");
    let (code, out, _) = run_relay(
        &["events", "show", &id],
        &vars(&redis.url(), "ev:h", "ev:h:dlq"),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("earlier attempts:\n  #3 at 1003: HTTP 500 on attempt 3"),
        "{out}"
    );
}

/// Pages of a listing cover every webhook once, across the store's own 500-entry pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_without_gaps_or_repeats() {
    let redis = Redis::start().await;
    let mut conn = redis.conn();
    let mut pipe = redis::pipe();
    for i in 0..1200 {
        pipe.cmd("XADD")
            .arg("ev:p")
            .arg("*")
            .arg("body")
            .arg(format!("{i}"))
            .arg("received_at")
            .arg(1)
            .ignore();
    }
    let () = pipe.query(&mut conn).unwrap();
    let admin = start_admin(
        &redis,
        "ev:p",
        crm_relay::ops::admin::Role::Client(Default::default()),
    )
    .await;
    let mut seen = Vec::new();
    let mut before = String::new();
    loop {
        let raw = format!("GET /events?limit=700{before} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let v = Conn::request_once(admin, raw.as_bytes()).await.json();
        for e in v["events"].as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_owned());
        }
        match v["next"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => break,
        }
    }
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(seen.len(), 1200, "every webhook once");
    assert_eq!(unique.len(), 1200);
    let (code, out, _) = run_relay(
        &["events", "--json", "--limit", "1000"],
        &vars(&redis.url(), "ev:p", "ev:p:dlq"),
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: std::collections::HashSet<_> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1000, "no repeats across the store's pages");
}
