//! The Redis ACL users of `deploy/redis-users.acl`, loaded into a real Redis as the README
//! says: each role runs with its own least-privilege user, end to end.

use std::time::Duration;

use crate::support::sink::{Answer, Sink};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_acl_users_run_both_roles_and_the_tools() {
    let recipe = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/redis-users.acl"
    ))
    .expect("deploy/redis-users.acl");
    let users: String = recipe
        .lines()
        .filter(|l| l.starts_with("user "))
        .map(|l| {
            l.replace("CHANGE-ME-server-password", "spw")
                .replace("CHANGE-ME-client-password", "cpw")
                + "\n"
        })
        .collect();
    assert_eq!(users.lines().count(), 2);
    let dir = TempDir::new("acl");
    let file = dir.0.join("users.acl");
    // The tests' own helpers use the default user.
    std::fs::write(
        &file,
        format!("user default on nopass ~* &* +@all\n{users}"),
    )
    .unwrap();
    let redis = Redis::start_with(&["--aclfile", file.to_str().unwrap()]).await;
    let server_url = format!("redis://relay-server:spw@127.0.0.1:{}", redis.port);
    let client_url = format!("redis://relay-client:cpw@127.0.0.1:{}", redis.port);

    for (role, url) in [("server", &server_url), ("client", &client_url)] {
        let (code, out, err) = run_relay(
            &["check", role],
            &[
                ("REDIS_URL", url),
                ("RELAY_API_KEYS", "k"),
                ("RELAY_TARGET_URL", "http://127.0.0.1:1/"),
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!("may run every command the {role} needs")),
            "{out}"
        );
        assert!(!out.contains("may not PUBLISH"), "{out}");
    }

    // The extra REDIS_URL replaces the helper's default-user URL.
    let (_server, addr) =
        server_process_with(&redis, "relay:{webhooks}", &[("REDIS_URL", &server_url)]).await;
    let sink = Sink::start().await;
    sink.script(|r, _| {
        if r.body == b"bad" {
            Answer::Status(400)
        } else {
            Answer::Status(200)
        }
    });
    let _client = client_process(
        &redis,
        "relay:{webhooks}",
        &sink.url(),
        &[("REDIS_URL", &client_url)],
    );
    for body in [&b"one"[..], b"bad", b"two"] {
        let resp =
            Conn::request_once(addr, &post("/webhook/acl", &[("X-API-Key", API_KEY)], body)).await;
        assert_eq!(resp.status, 200);
    }
    assert!(sink.wait_for(WAIT, |r| r.len() == 3).await);
    assert!(eventually(WAIT, || async { redis.xlen("relay:{webhooks}:dlq") == 1 }).await);
    assert!(
        eventually(WAIT, || async { redis.pending("relay:{webhooks}") == 0 }).await,
        "every delivery acknowledged"
    );
    let tools = [("REDIS_URL", client_url.as_str())];
    // The dead letter's outcome is recorded just after the dead letter itself.
    let dead_listed = || async {
        let (code, out, err) = run_relay(&["events", "--json", "--status", "dead"], &tools);
        assert_eq!(code, 0, "{err}");
        out.contains(r#""status":"dead""#)
    };
    assert!(eventually(WAIT, dead_listed).await);
    let (code, _, err) = run_relay(&["dlq", "list"], &tools);
    assert_eq!(code, 0, "{err}");
}

/// A Redis that wants a password, asked without one and with a wrong one: `check` says what
/// is wrong with REDIS_URL (never the password), and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_missing_or_wrong_redis_password() {
    let redis = Redis::start_with(&["--requirepass", "right-pw-51c2"]).await;
    let cases = [
        (
            format!("redis://127.0.0.1:{}", redis.port),
            "redis asks for a password and REDIS_URL has none",
        ),
        (
            format!("redis://:wrong-pw-9d1e@127.0.0.1:{}", redis.port),
            "redis refused the credentials in REDIS_URL",
        ),
        (
            format!("redis://someone:wrong-pw-9d1e@127.0.0.1:{}", redis.port),
            "redis refused the credentials in REDIS_URL",
        ),
    ];
    for (url, says) in &cases {
        let (code, out, err) = run_relay(
            &["check", "server"],
            &[("REDIS_URL", url), ("RELAY_API_KEYS", "k")],
        );
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.contains(says), "{url}: {out}{err}");
        assert!(!format!("{out}{err}").contains("-pw-"), "{out}{err}");
    }
}
