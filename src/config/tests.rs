use std::collections::HashMap;

use super::*;

fn load(pairs: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ServerConfig::load(&|k| map.get(k).cloned())
}

#[test]
fn defaults_follow_spec() {
    let c = load(&[("RELAY_API_KEYS", "k1")]).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.common.stream, "relay:{webhooks}");
    assert_eq!(c.common.redis_url.expose(), "redis://127.0.0.1:6379");
    assert_eq!(c.max_body, 4 * 1024 * 1024);
    assert_eq!(c.common.log_level, log::LevelFilter::Info);
    assert!(c.verify_token.is_none());
    assert_eq!(c.admin.unwrap().listen, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(c.retention, std::time::Duration::from_secs(86_400));
    assert_eq!(c.max_stream_len, 1_000_000);
    let off = load(&[("RELAY_API_KEYS", "k1"), ("RELAY_ADMIN_LISTEN", "")]).unwrap();
    assert!(off.admin.is_none());
}

#[test]
fn auth_is_required_and_lists_are_split() {
    let err = load(&[]).unwrap_err();
    assert_eq!(err.var(), "RELAY_API_KEYS");
    let c = load(&[("RELAY_META_APP_SECRET", "s1, s2")]).unwrap();
    assert_eq!(c.app_secrets.len(), 2);
    assert!(c.api_keys.is_empty());
    // A placeholder from the docs is refused, without echoing it.
    let err = load(&[("RELAY_API_KEYS", "real-key,Change-Me-long-random-key")]).unwrap_err();
    assert_eq!(err.var(), "RELAY_API_KEYS");
    assert!(err.to_string().contains("placeholder"));
}

#[test]
fn invalid_values_name_their_variable() {
    for (var, bad) in [
        ("RELAY_LISTEN", "8080"),
        ("RELAY_MAX_BODY", "4MB"),
        ("RELAY_MAX_CONNECTIONS", "0"),
        ("RELAY_ADMIN_LISTEN", "9090"),
        ("RELAY_RETENTION", "1 day"),
        ("RELAY_MAX_STREAM_LEN", "0"),
        ("RUST_LOG", "verbose"),
        ("REDIS_URL", "http://x"),
        ("RELAY_CA_FILE", "/nonexistent/ca.pem"),
        ("RELAY_CA_FILE", "/etc/hostname"),
    ] {
        let err = load(&[("RELAY_API_KEYS", "k"), (var, bad)]).unwrap_err();
        assert_eq!(err.var(), var, "{var}={bad}");
    }
}

#[test]
fn summary_and_errors_hold_no_secret() {
    let c = load(&[
        ("RELAY_API_KEYS", "key-AAA"),
        ("RELAY_META_APP_SECRET", "sec-BBB"),
        ("RELAY_META_VERIFY_TOKEN", "tok-CCC"),
        ("REDIS_URL", "redis://user:pw-DDD@localhost:6390/2"),
    ])
    .unwrap();
    let text = format!("{} {:?}", c.summary(), c);
    for secret in ["key-AAA", "sec-BBB", "tok-CCC", "pw-DDD"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("redis://localhost:6390/2"));
    let err = load(&[
        ("RELAY_API_KEYS", "k"),
        ("REDIS_URL", "redis://:pw-EEE@/x?y"),
    ]);
    if let Err(e) = err {
        assert!(!e.to_string().contains("pw-EEE"));
    }
}

fn load_client(pairs: &[(&str, &str)]) -> Result<ClientConfig, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ClientConfig::load(&|k| map.get(k).cloned())
}

#[test]
fn client_defaults_follow_spec() {
    let c = load_client(&[("RELAY_TARGET_URL", "http://127.0.0.1:3000/in")]).unwrap();
    assert_eq!(c.common.group, "relay");
    assert!(!c.consumer.is_empty());
    assert_eq!(c.concurrency, 4);
    assert_eq!(c.forward_timeout, std::time::Duration::from_secs(15));
    assert_eq!(c.max_attempts, 10);
    assert_eq!(c.backoff.base, std::time::Duration::from_secs(1));
    assert_eq!(c.backoff.max, std::time::Duration::from_secs(600));
    assert_eq!(c.breaker_threshold, 5);
    assert_eq!(c.breaker_cooldown, std::time::Duration::from_secs(30));
    assert_eq!(c.common.dlq_stream, "relay:{webhooks}:dlq");
    assert_eq!(c.target.target().path, "/in");
    assert_eq!(c.admin.unwrap().listen, "127.0.0.1:9091".parse().unwrap());
}

#[test]
fn client_errors_name_their_variable() {
    assert_eq!(load_client(&[]).unwrap_err().var(), "RELAY_TARGET_URL");
    for (var, bad) in [
        ("RELAY_TARGET_URL", "127.0.0.1:3000"),
        ("RELAY_TARGET_URL", "http://h:99999/"),
        ("RELAY_CONCURRENCY", "0"),
        ("RELAY_FORWARD_TIMEOUT", "15"),
        ("RELAY_MAX_ATTEMPTS", "ten"),
        ("RELAY_BACKOFF_BASE", "1x"),
        ("RELAY_BACKOFF_MAX", "1ms"),
        ("RELAY_BREAKER_THRESHOLD", "-1"),
        ("RELAY_BREAKER_COOLDOWN", "soon"),
    ] {
        let err = load_client(&[("RELAY_TARGET_URL", "http://a/"), (var, bad)]).unwrap_err();
        assert_eq!(err.var(), var, "{var}={bad}");
    }
}

#[test]
fn the_server_reads_the_system_trust_store_only_for_rediss() {
    // A CA certificate of its own (its key was never kept), so that the test does not depend
    // on the machine having a system store.
    let bundle = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/ca-without-key.pem"
    );
    let plain = load(&[("RELAY_API_KEYS", "k1"), ("SSL_CERT_FILE", bundle)]).unwrap();
    assert!(
        plain.common.system_roots.is_none(),
        "redis:// needs no roots"
    );
    let tls = [
        ("RELAY_API_KEYS", "k1"),
        ("SSL_CERT_FILE", bundle),
        ("REDIS_URL", "rediss://redis.example:6380"),
    ];
    let roots = load(&tls)
        .unwrap()
        .common
        .system_roots
        .expect("the CA is read");
    assert_eq!((roots.count, roots.source.as_str()), (1, bundle));
}
