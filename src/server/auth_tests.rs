use super::*;

fn h(pairs: &[(&str, &str)]) -> Vec<(String, FieldValue)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), (*v).into()))
        .collect()
}

fn fixtures() -> Vec<(Vec<u8>, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/meta");
    let sigs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("signatures.SYNTHETIC.json")).unwrap())
            .unwrap();
    sigs["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let body = std::fs::read(dir.join(v["file"].as_str().unwrap())).unwrap();
            assert_eq!(body.len() as u64, v["bytes"].as_u64().unwrap());
            (body, v["X-Hub-Signature-256"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn meta_only() -> Authenticator {
    Authenticator::new(
        &[],
        &[Secret::new("rotated-old"), Secret::new("test-app-secret")],
    )
}

#[test]
fn every_meta_fixture_verifies_with_its_known_signature() {
    let auth = meta_only();
    let vectors = fixtures();
    assert_eq!(vectors.len(), 10);
    for (body, sig) in vectors {
        let headers = h(&[("X-Hub-Signature-256", &sig)]);
        assert_eq!(
            auth.authenticate(&headers, &body),
            Ok(Credential::Signature)
        );
        // One changed byte breaks it.
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert_eq!(
            auth.authenticate(&headers, &tampered),
            Err(AuthError::BadSignature)
        );
    }
}

#[test]
fn reserialized_body_does_not_verify() {
    // The pitfall vector: a parse + re-serialise changes the bytes and the signature.
    let (body, sig) = fixtures().into_iter().next().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reserialized = serde_json::to_vec(&v).unwrap();
    let headers = h(&[("x-hub-signature-256", &sig)]);
    assert_eq!(
        meta_only().authenticate(&headers, &reserialized),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn github_vector_and_uppercase_hex() {
    let auth = Authenticator::new(&[], &[Secret::new("It's a Secret to Everybody")]);
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let body = b"Hello, World!";
    assert!(
        auth.authenticate(&h(&[("X-Hub-Signature-256", sig)]), body)
            .is_ok()
    );
    let upper = format!("sha256={}", sig[7..].to_uppercase());
    assert!(
        auth.authenticate(&h(&[("X-Hub-Signature-256", &upper)]), body)
            .is_ok()
    );
}

#[test]
fn malformed_or_duplicate_signatures_are_refused() {
    let auth = meta_only();
    for bad in [
        "",
        "sha256=",
        "sha1=abcd",
        "sha256=zz",
        &format!("sha256={}", "0".repeat(64)),
    ] {
        assert_eq!(
            auth.authenticate(&h(&[("X-Hub-Signature-256", bad)]), b"x"),
            Err(AuthError::BadSignature),
            "{bad:?}"
        );
    }
    let (body, sig) = fixtures().into_iter().next().unwrap();
    let two = h(&[("X-Hub-Signature-256", &sig), ("X-Hub-Signature-256", &sig)]);
    assert_eq!(auth.authenticate(&two, &body), Err(AuthError::BadSignature));
}

#[test]
fn a_wrong_signature_fails_even_with_a_valid_key() {
    let auth = Authenticator::new(&[Secret::new("k1")], &[Secret::new("s")]);
    let headers = h(&[("X-API-Key", "k1"), ("X-Hub-Signature-256", "sha256=00")]);
    assert_eq!(
        auth.authenticate(&headers, b"x"),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        auth.precheck(&headers),
        Ok(Admit::Key),
        "read, then checked"
    );
    let unkeyed = h(&[("X-Hub-Signature-256", "sha256=00")]);
    assert_eq!(auth.precheck(&unkeyed), Ok(Admit::VerifyBody));
    // After precheck admitted the key, the signature is still verified with the body.
    assert_eq!(
        auth.authenticate_for(None, None, &headers, b"x", 0, true),
        Err(AuthError::BadSignature)
    );
    let keyed = h(&[("X-API-Key", "k1")]);
    assert_eq!(
        auth.authenticate_for(None, None, &keyed, b"x", 0, true),
        Ok(Credential::ApiKey)
    );
    let wrong = h(&[("X-API-Key", "k2")]);
    assert_eq!(
        auth.authenticate_for(None, None, &wrong, b"x", 0, false),
        Err(AuthError::MissingCredentials),
        "not vouched for: checked"
    );
}

#[test]
fn signatures_without_app_secrets_are_refused_early() {
    let auth = Authenticator::new(&[Secret::new("k1")], &[]);
    let headers = h(&[("X-API-Key", "k1"), ("X-Hub-Signature-256", "sha256=00")]);
    assert_eq!(auth.precheck(&headers), Err(AuthError::BadSignature));
}

#[test]
fn api_keys_in_either_header() {
    let auth = Authenticator::new(&[Secret::new("k1"), Secret::new("k2")], &[]);
    assert_eq!(
        auth.authenticate(&h(&[("X-API-Key", "k2")]), b""),
        Ok(Credential::ApiKey)
    );
    assert_eq!(
        auth.authenticate(&h(&[("authorization", "Bearer k1")]), b""),
        Ok(Credential::ApiKey)
    );
    assert_eq!(
        auth.precheck(&h(&[("Authorization", "bearer  k1 ")])),
        Ok(Admit::Key)
    );
    for bad in [
        h(&[]),
        h(&[("X-API-Key", "k3")]),
        h(&[("X-API-Key", "")]),
        h(&[("Authorization", "Basic k1")]),
        h(&[("Authorization", "Bearer")]),
        h(&[("X-Api-Key-Extra", "k1")]),
    ] {
        assert_eq!(
            auth.authenticate(&bad, b""),
            Err(AuthError::MissingCredentials),
            "{bad:?}"
        );
    }
}

#[test]
fn our_credentials_are_stripped_others_kept() {
    let auth = Authenticator::new(&[Secret::new("k1")], &[]);
    let mut headers = h(&[
        ("Host", "x"),
        ("X-API-Key", "k1"),
        ("x-api-key", "other"),
        ("Authorization", "Bearer k1"),
        ("Authorization", "Basic dXNlcjpwdw=="),
        ("X-Hub-Signature-256", "sha256=00"),
    ]);
    auth.strip_credentials(&mut headers);
    assert_eq!(
        headers,
        h(&[
            ("Host", "x"),
            ("Authorization", "Basic dXNlcjpwdw=="),
            ("X-Hub-Signature-256", "sha256=00")
        ])
    );
}

#[test]
fn a_stale_timestamp_is_explained_with_its_offset_and_the_clock_to_check() {
    let ahead = AuthError::Stale { ahead_s: 412 }.explained();
    assert!(
        ahead.contains("412 s ahead of this server's clock") && ahead.contains("timedatectl"),
        "{ahead}"
    );
    let behind = AuthError::Stale { ahead_s: -3600 }.explained();
    assert!(
        behind.contains("3600 s before this server's clock") && behind.contains("replay"),
        "{behind}"
    );
    // The sender only ever gets the short reason.
    assert_eq!(
        AuthError::Stale { ahead_s: 1 }.reason(),
        "signature timestamp outside the tolerance"
    );
    assert_eq!(AuthError::BadSignature.explained(), "invalid signature");
}
