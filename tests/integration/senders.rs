//! Senders verified per source, through the real server over raw sockets: a Stripe-signed
//! webhook (fresh, stale, under a rotated secret), GitLab's token, a secret URL token (never
//! stored, never logged), and the global API keys for sources without a scheme. The vendors'
//! own vectors are checked in `src/server/schemes_tests.rs`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::*;

const URL_TOKEN: &str = "f0rms-t0ken-a8d7e6c5b4a39281";

fn stripe_header(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_accepts_its_own_scheme_only() {
    let redis = Redis::start().await;
    let config = server_config_with(
        &redis.url(),
        "snd:s",
        &[
            ("RELAY_SOURCES", "stripe:stripe,forms:token,gl:gitlab"),
            ("RELAY_SECRET_STRIPE", "whsec_old,whsec_new"),
            ("RELAY_SECRET_FORMS", URL_TOKEN),
            ("RELAY_SECRET_GL", "gl-s3cret"),
        ],
    );
    let relay = Relay::start_with(config, |_| {}).await;
    let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    // Stripe: a fresh signature with the rotated-in secret; stored byte-exact, header kept.
    let sig = stripe_header("whsec_new", now(), body);
    let ok = relay
        .request(&post(
            "/webhook/stripe",
            &[("Stripe-Signature", &sig)],
            body,
        ))
        .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let stored = redis.entries("snd:s");
    assert_eq!(stored[0].1["body"], body);
    let headers = String::from_utf8(stored[0].1["headers"].clone()).unwrap();
    assert!(
        headers.contains(&format!(r#"["Stripe-Signature","{sig}"]"#)),
        "{headers}"
    );

    let refused = |status: u16, resp: &Resp, why: &str| {
        assert_eq!(resp.status, status, "{why}");
        String::from_utf8_lossy(&resp.body).into_owned()
    };
    let stale = stripe_header("whsec_new", now() - 600, body);
    let r = relay
        .request(&post(
            "/webhook/stripe",
            &[("Stripe-Signature", &stale)],
            body,
        ))
        .await;
    assert!(refused(401, &r, "stale").contains("tolerance"));
    let wrong = stripe_header("whsec_other", now(), body);
    let r = relay
        .request(&post(
            "/webhook/stripe",
            &[("Stripe-Signature", &wrong)],
            body,
        ))
        .await;
    refused(401, &r, "wrong secret");
    // The API key does not open a source that has its own scheme.
    let r = relay
        .request(&post("/webhook/stripe", &[("X-API-Key", API_KEY)], body))
        .await;
    refused(401, &r, "API key on a schemed source");

    // A URL token: accepted, and the stored path does not hold it.
    let r = relay
        .request(&post(
            &format!("/webhook/forms/{URL_TOKEN}?v=2"),
            &[],
            b"a=1",
        ))
        .await;
    assert_eq!(r.status, 200);
    let r2 = relay
        .request(&post("/webhook/forms/not-the-token", &[], b"a=1"))
        .await;
    refused(401, &r2, "wrong URL token");
    let r3 = relay
        .request(&post(
            &format!("/webhook/wa/{URL_TOKEN}"),
            &[("X-API-Key", API_KEY)],
            b"x",
        ))
        .await;
    refused(401, &r3, "a token on a source without the token scheme");

    // GitLab's token header; and the global key still serves sources without a scheme.
    let r = relay
        .request(&post(
            "/webhook/gl",
            &[("X-Gitlab-Token", "gl-s3cret")],
            b"{}",
        ))
        .await;
    assert_eq!(r.status, 200);
    let r = relay
        .request(&post("/webhook/whatsapp", &[("X-API-Key", API_KEY)], b"{}"))
        .await;
    assert_eq!(r.status, 200);

    let stored = redis.entries("snd:s");
    assert_eq!(stored.len(), 4, "nothing refused was stored");
    let paths: Vec<String> = stored
        .iter()
        .map(|(_, f)| String::from_utf8(f["path"].clone()).unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/webhook/stripe",
            "/webhook/forms?v=2",
            "/webhook/gl",
            "/webhook/whatsapp"
        ]
    );
    for (_, f) in &stored {
        for v in f.values() {
            assert!(
                !String::from_utf8_lossy(v).contains(URL_TOKEN),
                "the URL token is never stored"
            );
        }
    }
    relay.stop(std::time::Duration::from_secs(5)).await;
}

/// The real binary at TRACE level: the URL token never reaches a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_tokens_never_reach_the_log() {
    let redis = Redis::start().await;
    let (mut server, addr) = server_process_with(
        &redis,
        "snd:l",
        &[
            ("RUST_LOG", "trace"),
            ("RELAY_SOURCES", "forms:token"),
            ("RELAY_SECRET_FORMS", URL_TOKEN),
        ],
    )
    .await;
    let ok = Conn::request_once(
        addr,
        &post(&format!("/webhook/forms/{URL_TOKEN}"), &[], b"a=1"),
    )
    .await;
    assert_eq!(ok.status, 200);
    let bad =
        Conn::request_once(addr, &post("/webhook/forms/wrong-token-value", &[], b"a=1")).await;
    assert_eq!(bad.status, 401);
    signal(server.child.id(), "TERM");
    let _ =
        crate::support::process::wait_exit(&mut server.child, std::time::Duration::from_secs(10))
            .await;
    let log = server.lines.rest(std::time::Duration::from_secs(2)).await;
    assert!(
        log.contains("path=/webhook/forms "),
        "the requests were logged: {log}"
    );
    assert!(
        !log.contains(URL_TOKEN) && !log.contains("wrong-token-value"),
        "{log}"
    );
}
