//! The `crm-relay` binary as users run it: arguments, configuration errors, env files,
//! logs without secrets, and SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_crm-relay");

fn relay_cmd() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn help_version_and_usage_errors() {
    let out = relay_cmd().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "server",
        "client",
        "check",
        "dlq list",
        "dlq replay",
        "dlq purge",
        "--env-file",
    ] {
        assert!(help.contains(command), "--help lacks {command}");
    }
    for v in ["--version", "version", "-V"] {
        let out = relay_cmd().arg(v).output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8(out.stdout)
                .unwrap()
                .starts_with("crm-relay 0.")
        );
    }
    for args in [&["bogus"][..], &[], &["server", "--port", "1"]] {
        let out = relay_cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn configuration_errors_exit_2_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "RELAY_API_KEYS"),
        (
            &[("RELAY_API_KEYS", "k"), ("RELAY_MAX_BODY", "lots")],
            "RELAY_MAX_BODY",
        ),
        (
            &[("RELAY_API_KEYS", "k"), ("RELAY_LISTEN", "nowhere")],
            "RELAY_LISTEN",
        ),
        (
            &[
                ("RELAY_API_KEYS", "k"),
                ("REDIS_URL", "mysql://secret-pw@x"),
            ],
            "REDIS_URL",
        ),
    ];
    for (vars, name) in cases {
        let out = relay_cmd()
            .arg("server")
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{vars:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(name), "{err}");
        assert!(!err.contains("secret-pw"), "{err}");
    }
}

#[test]
fn a_port_in_use_is_a_runtime_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = relay_cmd()
        .arg("server")
        .env("RELAY_API_KEYS", "k")
        .env("RELAY_LISTEN", taken.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("binding"));
}

/// Runs the release-shaped binary at `trace` with secrets in every variable (from an env
/// file and the environment), drives every path that touches them, stops it with SIGTERM,
/// and checks no secret reached the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_trace_logs_and_sigterm_exits_0() {
    let password = "redis-pw-7f3a9";
    let redis = Redis::start_with(&["--requirepass", password]).await;
    let dir = TempDir::new("envfile");
    let env_file = dir.0.join("relay.env");
    std::fs::write(
        &env_file,
        format!(
            "# test env file\nREDIS_URL=\"redis://:{password}@127.0.0.1:{}\"\nRELAY_API_KEYS={API_KEY}\nRELAY_LISTEN=127.0.0.1:0\nRELAY_ADMIN_LISTEN=127.0.0.1:0\nRELAY_STREAM=t:proc\nRUST_LOG=debug\n",
            redis.port
        ),
    )
    .unwrap();
    let child = relay_cmd()
        .args(["--env-file", env_file.to_str().unwrap(), "server"])
        .env("RELAY_META_APP_SECRET", APP_SECRET)
        .env("RELAY_META_VERIFY_TOKEN", VERIFY_TOKEN)
        .env("RUST_LOG", "trace") // the environment wins over the file
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Proc::watched(child, "server");
    let addr = server.lines.listening("RELAY_LISTEN").await;

    let (_, body, sig) = meta_fixtures().remove(0);
    let mut c = Conn::connect(addr).await;
    c.send(&post("/webhook", &[("X-Hub-Signature-256", &sig)], &body))
        .await;
    c.response().await.unwrap().id();
    c.send(&post("/webhook", &[("X-API-Key", API_KEY)], b"k"))
        .await;
    c.response().await.unwrap().id();
    let mut wrong = Conn::connect(addr).await; // a refusal ends its connection
    wrong
        .send(&post(
            "/webhook",
            &[("X-API-Key", &format!("{API_KEY}x"))],
            b"k",
        ))
        .await;
    assert_eq!(wrong.response().await.unwrap().status, 401);
    let hs = format!(
        "GET /webhook?hub.mode=subscribe&hub.challenge=9&hub.verify_token={VERIFY_TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    c.send(hs.as_bytes()).await;
    assert_eq!(c.response().await.unwrap().body, b"9");
    let bad_hs = format!(
        "GET /webhook?hub.mode=subscribe&hub.challenge=9&hub.verify_token={VERIFY_TOKEN}x HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    c.send(bad_hs.as_bytes()).await;
    assert_eq!(c.response().await.unwrap().status, 403);
    drop(c);
    assert_eq!(redis.xlen("t:proc"), 2);

    signal(server.child.id(), "TERM");
    let code = crate::support::process::wait_exit(&mut server.child, Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "exit 0 within 10 s of SIGTERM");
    let log = server.lines.rest(Duration::from_secs(5)).await;
    assert!(
        log.contains("server starting") && log.contains("stopped"),
        "{log}"
    );
    assert!(
        log.contains("request remote="),
        "debug request lines present: {log}"
    );
    for secret in [password, API_KEY, APP_SECRET, VERIFY_TOKEN] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}

/// The env file means what systemd's EnvironmentFile= reads, and a typo is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_that_cannot_lie() {
    let dir = TempDir::new("envlie");
    let file = dir.0.join("relay.env");
    for (text, line, what) in [
        (
            "RELAY_API_KEYS=mykey # prod\n",
            "line 1",
            "inline '# comment'",
        ),
        (
            "# listen\nexport RELAY_LISTEN=127.0.0.1:1\n",
            "line 2",
            "'export '",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, _, err) = run_relay(&["--env-file", file.to_str().unwrap(), "check"], &[]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(line) && err.contains(what), "{err}");
        assert!(!err.contains("mykey"), "{err}");
    }
    std::fs::write(&file, "RELAY_API_KEYS=k\nRELAY_LISTN=127.0.0.1:1\n").unwrap();
    let (code, _, err) = run_relay(&["--env-file", file.to_str().unwrap(), "server"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("RELAY_LISTN: unknown variable; did you mean RELAY_LISTEN?"),
        "{err}"
    );
    let (code, _, err) = run_relay(
        &["server"],
        &[("RELAY_API_KEYS", "k"), ("RELAY_CONCURENCY", "4")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("did you mean RELAY_CONCURRENCY?"), "{err}");
}
