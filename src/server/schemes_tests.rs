use super::*;

const NOW: u64 = 1_796_097_600;

fn vectors() -> (serde_json::Value, Vec<u8>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/senders");
    let v = serde_json::from_slice(&std::fs::read(dir.join("vectors.json")).unwrap()).unwrap();
    (v, std::fs::read(dir.join("body.json")).unwrap())
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, FieldValue)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), (*v).into()))
        .collect()
}

fn auth(scheme: &str, secrets: &[&str]) -> SourceAuth {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    SourceAuth::new(
        Scheme::parse(scheme).unwrap(),
        &secrets,
        Duration::from_secs(300),
    )
}

/// Each vendor's vector: valid, with the secret rotated (old one first), wrong secret, one
/// byte changed, header missing.
fn check(scheme: &str, v: &serde_json::Value, headers: &[(&str, &str)], body: &[u8], now: u64) {
    let secret = v["secret"].as_str().unwrap();
    let hs = h(headers);
    let ok = auth(scheme, &[secret]);
    assert_eq!(ok.verify(&hs, body, None, now), Ok(()), "{scheme}");
    let rotated = auth(scheme, &["whsec_b2xkLXNlY3JldA==", secret]);
    assert_eq!(
        rotated.verify(&hs, body, None, now),
        Ok(()),
        "{scheme} rotated"
    );
    let wrong = auth(scheme, &["whsec_d3Jvbmctc2VjcmV0"]);
    assert_eq!(
        wrong.verify(&hs, body, None, now),
        Err(AuthError::BadSignature),
        "{scheme} wrong secret"
    );
    let mut tampered = body.to_vec();
    tampered[3] ^= 1;
    assert_eq!(
        ok.verify(&hs, &tampered, None, now),
        Err(AuthError::BadSignature),
        "{scheme} tampered"
    );
    assert_eq!(
        ok.verify(&[], body, None, now),
        Err(AuthError::MissingCredentials),
        "{scheme} missing"
    );
    assert_eq!(
        ok.precheck(&hs, None),
        Ok(false),
        "{scheme}: the body decides"
    );
}

#[test]
fn github_documentation_vector() {
    let (v, _) = vectors();
    let g = &v["github"];
    let sig = g["X-Hub-Signature-256"].as_str().unwrap();
    let payload = g["payload"].as_str().unwrap().as_bytes();
    check("github", g, &[("X-Hub-Signature-256", sig)], payload, NOW);
}

#[test]
fn stripe_vector_from_stripe_node_with_its_tolerance() {
    let (v, body) = vectors();
    let s = &v["stripe"];
    let sig = s["Stripe-Signature"].as_str().unwrap();
    check("stripe", s, &[("Stripe-Signature", sig)], &body, NOW);
    let a = auth("stripe", &[s["secret"].as_str().unwrap()]);
    let hs = h(&[("Stripe-Signature", sig)]);
    assert_eq!(a.verify(&hs, &body, None, NOW + 300), Ok(()));
    assert_eq!(
        a.verify(&hs, &body, None, NOW + 301),
        Err(AuthError::Stale { ahead_s: -301 }),
        "a replay after the tolerance"
    );
    assert_eq!(
        a.verify(&hs, &body, None, NOW - 301),
        Err(AuthError::Stale { ahead_s: 301 })
    );
    // A forged signature is invalid, whatever its timestamp: `Stale` means authentic.
    let forged = format!(
        "{},v1={}",
        sig.split_once(",v1=").unwrap().0,
        "ab".repeat(32)
    );
    assert_eq!(
        a.verify(&h(&[("Stripe-Signature", &forged)]), &body, None, NOW + 301),
        Err(AuthError::BadSignature)
    );
    // Several v1 signatures (Stripe's own rotation): any one matching is enough.
    let (t, v1) = sig.split_once(",v1=").unwrap();
    let two = format!("{t},v1={},v1={v1},v0=abc", "00".repeat(32));
    assert_eq!(
        a.verify(&h(&[("Stripe-Signature", &two)]), &body, None, NOW),
        Ok(())
    );
}

#[test]
fn shopify_vector_per_its_documentation() {
    let (v, body) = vectors();
    let s = &v["shopify"];
    let sig = s["X-Shopify-Hmac-Sha256"].as_str().unwrap();
    check("shopify", s, &[("X-Shopify-Hmac-Sha256", sig)], &body, NOW);
}

#[test]
fn slack_vector_from_slack_sdk_with_its_tolerance() {
    let (v, body) = vectors();
    let s = &v["slack"];
    let headers = [
        (
            "X-Slack-Request-Timestamp",
            s["X-Slack-Request-Timestamp"].as_str().unwrap(),
        ),
        (
            "X-Slack-Signature",
            s["X-Slack-Signature"].as_str().unwrap(),
        ),
    ];
    check("slack", s, &headers, &body, NOW);
    let a = auth("slack", &[s["secret"].as_str().unwrap()]);
    assert_eq!(
        a.verify(&h(&headers), &body, None, NOW + 3600),
        Err(AuthError::Stale { ahead_s: -3600 })
    );
}

#[test]
fn standard_webhooks_vector_from_its_reference_library() {
    let (v, body) = vectors();
    let s = &v["standard"];
    let get = |k: &str| s[k].as_str().unwrap();
    let headers = [
        ("webhook-id", get("webhook-id")),
        ("webhook-timestamp", get("webhook-timestamp")),
        ("webhook-signature", get("webhook-signature")),
    ];
    check("standard", s, &headers, &body, NOW);
    // Svix's names, and several signatures in one header.
    let many = format!("v1,AAAA v2,xyz {}", get("webhook-signature"));
    let svix = [
        ("svix-id", get("webhook-id")),
        ("svix-timestamp", get("webhook-timestamp")),
        ("svix-signature", many.as_str()),
    ];
    let a = auth("svix", &[get("secret")]);
    assert_eq!(a.verify(&h(&svix), &body, None, NOW), Ok(()));
    assert_eq!(
        a.verify(&h(&headers), &body, None, NOW + 600),
        Err(AuthError::Stale { ahead_s: -600 })
    );
    assert!(key_of(Scheme::Standard, "not-whsec").is_err());
    assert!(key_of(Scheme::Standard, "whsec_%%%").is_err());
}

#[test]
fn tokens_are_decided_from_the_head() {
    let gl = auth("gitlab", &["old", "s3cret"]);
    let hs = h(&[("X-Gitlab-Token", "s3cret")]);
    assert_eq!(gl.precheck(&hs, None), Ok(true));
    assert_eq!(gl.verify(&hs, b"x", None, NOW), Ok(()));
    assert_eq!(
        gl.precheck(&h(&[("X-Gitlab-Token", "s3cre")]), None),
        Err(AuthError::BadSignature)
    );
    assert_eq!(gl.precheck(&[], None), Err(AuthError::MissingCredentials));
    let url = auth("token", &["t0k3n-long-and-random"]);
    assert_eq!(url.precheck(&[], Some("t0k3n-long-and-random")), Ok(true));
    assert_eq!(
        url.precheck(&[], Some("t0k3n")),
        Err(AuthError::BadSignature)
    );
    assert_eq!(url.precheck(&[], None), Err(AuthError::MissingCredentials));
    // A URL token means nothing to a signing scheme.
    let hub = auth("meta", &["s"]);
    assert_eq!(
        hub.precheck(&h(&[("X-Hub-Signature-256", "sha256=00")]), Some("x")),
        Err(AuthError::MissingCredentials)
    );
}
