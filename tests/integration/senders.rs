//! Senders verified per source, through the real server over raw sockets: a Stripe-signed
//! webhook (fresh, stale, under a rotated secret), GitLab's token, a secret URL token (never
//! stored, never logged), and the global API keys for sources without a scheme. The vendors'
//! own vectors are checked in `src/server/schemes_tests.rs`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::*;

const URL_TOKEN: &str = "f0rms-t0ken-a8d7e6c5b4a39281";

fn stripe_header(secret: &str, t: u64, body: &[u8]) -> String {
    let sig = mac(secret.as_bytes(), &[format!("{t}.").as_bytes(), body]);
    format!("t={t},v1={}", hex(&sig))
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
    let gl_headers = String::from_utf8_lossy(&stored[2].1["headers"]).to_lowercase();
    assert!(
        !gl_headers.contains("x-gitlab-token") && !gl_headers.contains("gl-s3cret"),
        "GitLab's token is a secret, not a signature: not stored ({gl_headers})"
    );
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

/// Routes per source with real sinks: the `stripe` target down (connection refused) while
/// the default one delivers; each target's breaker apart; the hop to the default target
/// signed with Standard Webhooks headers over the exact bytes; then `stripe` back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_keep_targets_apart_and_the_hop_is_signed() {
    use crate::support::sink::Sink;
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "snd:r").await;
    let (main, stripe) = (Sink::start().await, Sink::start().await);
    stripe.down().await;
    let secret = "whsec_cmVsYXktdG8tYXBwLWhvcC1zZWNyZXQtMzI=";
    let stripe_url = stripe.url();
    let client = RelayClient::start(client_config(
        &redis.url(),
        "snd:r",
        &main.url(),
        &[
            ("RELAY_ROUTES", "stripe"),
            ("RELAY_TARGET_URL_STRIPE", stripe_url.as_str()),
            ("RELAY_TARGET_SECRET", secret),
            ("RELAY_BREAKER_THRESHOLD", "3"),
        ],
    ));
    let mut stripe_ids = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"stripe":{i}}}"#);
        let r = relay
            .request(&post(
                "/webhook/stripe",
                &[("X-API-Key", API_KEY)],
                body.as_bytes(),
            ))
            .await;
        stripe_ids.push((r.id(), r.relay_id()));
    }
    for i in 0..5 {
        let body = format!(r#"{{"wa":{i}}}"#);
        relay
            .request(&post(
                "/webhook/whatsapp",
                &[("X-API-Key", API_KEY)],
                body.as_bytes(),
            ))
            .await;
    }
    const WAIT: std::time::Duration = std::time::Duration::from_secs(15);
    assert!(
        main.wait_for(WAIT, |r| r.len() == 5).await,
        "the default target delivers while stripe's is down"
    );
    let open = || {
        let mut out = String::new();
        client.metrics.render(&mut out);
        metric(&out, r#"relay_target_breaker_open{target="stripe"}"#) == Some(1.0)
            && metric(&out, r#"relay_target_breaker_open{target="default"}"#) == Some(0.0)
    };
    assert!(
        eventually(WAIT, || async { open() }).await,
        "only stripe's breaker opens"
    );

    // The signed hop: webhook-id is X-Relay-Id; the signature covers id.timestamp.body.
    let key = crm_relay::base64::whsec_key(secret).unwrap();
    for r in main.received() {
        assert_eq!(r.header("webhook-id"), Some(r.relay_id().as_str()));
        let ts = r.header("webhook-timestamp").unwrap();
        let sig = mac(
            &key,
            &[format!("{}.{ts}.", r.relay_id()).as_bytes(), &r.body],
        );
        let want = format!("v1,{}", crm_relay::base64::encode(&sig));
        assert_eq!(r.header("webhook-signature"), Some(want.as_str()));
        assert!(now().abs_diff(ts.parse().unwrap()) < 60);
    }

    stripe.up().await;
    assert!(
        stripe.wait_for(WAIT * 2, |r| r.len() == 5).await,
        "stripe's webhooks follow once it is back"
    );
    let got: Vec<String> = stripe.received().iter().map(|r| r.relay_id()).collect();
    for (_, relay_id) in &stripe_ids {
        assert!(got.contains(relay_id));
    }
    // Not signed: no secret for the stripe route.
    assert!(stripe.received()[0].header("webhook-signature").is_none());
    let outcome: String = redis::cmd("HGET")
        .arg("snd:r:outcomes:relay")
        .arg(&stripe_ids[0].0)
        .query(&mut redis.conn())
        .unwrap();
    assert!(outcome.contains(r#""target":"stripe""#), "{outcome}");
    client.stop().await;
}

/// Slack checks a Request URL with a signed challenge it wants echoed; a forged one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_url_verification_is_answered_not_stored() {
    let redis = Redis::start().await;
    let config = server_config_with(
        &redis.url(),
        "snd:k",
        &[
            ("RELAY_SOURCES", "slack:slack"),
            ("RELAY_SECRET_SLACK", "slack-signing-secret"),
        ],
    );
    let relay = Relay::start_with(config, |_| {}).await;
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let ts = now().to_string();
    let sign = |secret: &str| {
        let sig = mac(secret.as_bytes(), &[format!("v0:{ts}:").as_bytes(), body]);
        format!("v0={}", hex(&sig))
    };
    let good = sign("slack-signing-secret");
    let headers = [
        ("X-Slack-Request-Timestamp", ts.as_str()),
        ("X-Slack-Signature", good.as_str()),
    ];
    let r = relay.request(&post("/webhook/slack", &headers, body)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let forged = sign("not-the-secret");
    let headers = [
        ("X-Slack-Request-Timestamp", ts.as_str()),
        ("X-Slack-Signature", forged.as_str()),
    ];
    let r = relay.request(&post("/webhook/slack", &headers, body)).await;
    assert_eq!(r.status, 401);
    assert_eq!(redis.xlen("snd:k"), 0, "a handshake is not a webhook");
}

/// The signature of `parts` with `key`: hex or base64.
fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every signing scheme through the real server: valid under the rotated-in secret and under
/// the old one, a wrong secret, a missing header, and (where signed) a stale timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheme_end_to_end() {
    use crm_relay::base64::{encode as b64, whsec_key};
    let redis = Redis::start().await;
    let (new_std, old_std) = (
        "whsec_bmV3LXN0YW5kYXJkLXNlY3JldC0wMTIzNDU2Nzg5",
        "whsec_b2xkLXN0YW5kYXJkLXNlY3JldC0wMTIzNDU2Nzg5",
    );
    let config = server_config_with(
        &redis.url(),
        "snd:all",
        &[
            (
                "RELAY_SOURCES",
                "github:github,shopify:shopify,slack:slack,svix:standard",
            ),
            ("RELAY_SECRET_GITHUB", "gh-new,gh-old"),
            ("RELAY_SECRET_SHOPIFY", "sh-new,sh-old"),
            ("RELAY_SECRET_SLACK", "sl-new,sl-old"),
            ("RELAY_SECRET_SVIX", &format!("{new_std},{old_std}")),
        ],
    );
    let relay = Relay::start_with(config, |_| {}).await;
    let body: &[u8] = br#"{"event":"push","n":1}"#;
    // (source, secret) -> headers, at time `t`.
    // (source, [new, old, wrong] secrets, timestamped, signer(secret, time, body) -> headers)
    type Sign = fn(&str, u64, &[u8]) -> Vec<(String, String)>;
    let schemes: Vec<(&str, [&str; 3], bool, Sign)> = vec![
        (
            "github",
            ["gh-new", "gh-old", "gh-wrong"],
            false,
            |s, _, b| {
                let m = mac(s.as_bytes(), &[b]);
                vec![("X-Hub-Signature-256".into(), format!("sha256={}", hex(&m)))]
            },
        ),
        (
            "shopify",
            ["sh-new", "sh-old", "sh-wrong"],
            false,
            |s, _, b| {
                vec![(
                    "X-Shopify-Hmac-Sha256".into(),
                    b64(&mac(s.as_bytes(), &[b])),
                )]
            },
        ),
        (
            "slack",
            ["sl-new", "sl-old", "sl-wrong"],
            true,
            |s, t, b| {
                let m = mac(s.as_bytes(), &[format!("v0:{t}:").as_bytes(), b]);
                vec![
                    ("X-Slack-Request-Timestamp".into(), t.to_string()),
                    ("X-Slack-Signature".into(), format!("v0={}", hex(&m))),
                ]
            },
        ),
        (
            "svix",
            [new_std, old_std, "whsec_d3Jvbmctc3RhbmRhcmQtc2VjcmV0"],
            true,
            |s, t, b| {
                let m = mac(
                    &whsec_key(s).unwrap(),
                    &[format!("msg_1.{t}.").as_bytes(), b],
                );
                vec![
                    ("webhook-id".into(), "msg_1".into()),
                    ("webhook-timestamp".into(), t.to_string()),
                    ("webhook-signature".into(), format!("v1,{}", b64(&m))),
                ]
            },
        ),
    ];
    let mut stored = 0;
    for (source, [new, old, wrong], timed, signer) in schemes {
        let sign = |secret: &str, t: u64| signer(secret, t, body);
        let send = |headers: Vec<(String, String)>| {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            post(&format!("/webhook/{source}"), &h, body)
        };
        for (secret, want) in [(new, 200), (old, 200), (wrong, 401)] {
            let r = relay.request(&send(sign(secret, now()))).await;
            assert_eq!(r.status, want, "{source} with {secret}");
        }
        stored += 2;
        let r = relay
            .request(&send(vec![("X-API-Key".into(), API_KEY.into())]))
            .await;
        assert_eq!(r.status, 401, "{source}: missing signature, API key alone");
        if timed {
            let r = relay.request(&send(sign(new, now() - 400))).await;
            assert_eq!(r.status, 401, "{source}: stale");
            assert!(String::from_utf8_lossy(&r.body).contains("tolerance"));
        }
    }
    assert_eq!(redis.xlen("snd:all"), stored);
    // The signature headers reach the stream as sent (and so the app).
    let entries = redis.entries("snd:all");
    let headers = String::from_utf8(entries[0].1["headers"].clone()).unwrap();
    assert!(headers.contains("X-Hub-Signature-256"), "{headers}");
    assert!(entries.iter().all(|(_, f)| f["body"] == body));
}

/// A Stripe signature that is authentic but stamped ten minutes ago: the sender gets `401`, and
/// the operator's log says by how much and which clock to look at (a server whose clock is
/// off refuses every timestamped webhook so), while a forged one stays "invalid signature".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authentic_but_stale_signature_is_logged_with_its_offset() {
    let redis = Redis::start().await;
    let (mut server, addr) = server_process_with(
        &redis,
        "snd:clock",
        &[
            ("RELAY_SOURCES", "stripe:stripe"),
            ("RELAY_SECRET_STRIPE", "whsec_clock"),
        ],
    )
    .await;
    let body = br#"{"id":"evt_clock"}"#;
    let forged = stripe_header("whsec_other", now() - 600, body);
    let raw = post("/webhook/stripe", &[("Stripe-Signature", &forged)], body);
    assert_eq!(Conn::request_once(addr, &raw).await.status, 401);
    server.logs("invalid signature (401)").await;
    let stale = stripe_header("whsec_clock", now() - 600, body);
    let raw = post("/webhook/stripe", &[("Stripe-Signature", &stale)], body);
    let r = Conn::request_once(addr, &raw).await;
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("tolerance"));
    server
        .logs("s before this server's clock, beyond RELAY_SIGNATURE_TOLERANCE")
        .await;
}
