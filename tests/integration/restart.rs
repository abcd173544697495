//! Restarts and key rotation without refusals: SIGHUP swaps the server's credentials in
//! place (and never ends either role); with the listening socket held outside the process
//! (systemd socket activation), a restart under a request loop refuses nothing.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::sink::Sink;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

fn webhook(key: &str) -> Vec<u8> {
    post("/webhook/rot", &[("X-API-Key", key)], b"{}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_keys_in_place_and_says_what_changed_without_values() {
    let redis = Redis::start().await;
    let dir = TempDir::new("hup");
    let file = dir.0.join("relay.env");
    std::fs::write(&file, "RELAY_API_KEYS=old-key-1234\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_crm-relay"))
        .arg("--env-file")
        .arg(&file)
        .arg("server")
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env("RELAY_STREAM", "r:hup")
        .env("RELAY_LISTEN", "127.0.0.1:0")
        .env("RELAY_ADMIN_LISTEN", "")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Proc::watched(child, "hup-server");
    let addr = server.lines.listening("RELAY_LISTEN").await;
    let status =
        |key: &'static str| async move { Conn::request_once(addr, &webhook(key)).await.status };
    assert_eq!(status("old-key-1234").await, 200);

    // Rotation, step 1: both keys valid.
    std::fs::write(&file, "RELAY_API_KEYS=new-key-5678,old-key-1234\n").unwrap();
    signal(server.child.id(), "HUP");
    server
        .logs("credentials reloaded: API keys 1 added, 0 removed (2 now); app secrets unchanged (0); source secrets unchanged (0); verify token unchanged")
        .await;
    assert_eq!(status("new-key-5678").await, 200);
    assert_eq!(status("old-key-1234").await, 200);
    // Step 2: the old key goes; a setting that needs a restart is named, not applied.
    std::fs::write(
        &file,
        "RELAY_API_KEYS=new-key-5678\nRELAY_META_VERIFY_TOKEN=tok\nRELAY_MAX_BODY=1MiB\n",
    )
    .unwrap();
    signal(server.child.id(), "HUP");
    server
        .logs("API keys 0 added, 1 removed (1 now); app secrets unchanged (0); source secrets unchanged (0); verify token set")
        .await;
    server
        .logs("SIGHUP: max_body changed; restart the server to apply")
        .await;
    assert_eq!(status("old-key-1234").await, 401);
    assert_eq!(status("new-key-5678").await, 200);
    let handshake = b"GET /webhook/rot?hub.mode=subscribe&hub.verify_token=tok&hub.challenge=42 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(Conn::request_once(addr, handshake).await.body, b"42");
    // A broken file changes nothing.
    std::fs::write(&file, "RELAY_API_KEYS=other\nRELAY_MAX_BODY=lots\n").unwrap();
    signal(server.child.id(), "HUP");
    server
        .logs("SIGHUP: the configuration is invalid, the running credentials stay")
        .await;
    assert_eq!(status("new-key-5678").await, 200);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "SIGHUP never ends the server"
    );
    signal(server.child.id(), "TERM");
    let log = server.lines.rest(WAIT).await;
    for secret in ["old-key-1234", "new-key-5678", "tok\n", "other"] {
        assert!(!log.contains(secret), "{secret:?} logged:\n{log}");
    }

    // The client has nothing to reload, and SIGHUP must not end it.
    let sink = Sink::start().await;
    let mut client = client_process(&redis, "r:hup", &sink.url(), &[]);
    client.logs("delivering r:hup").await;
    signal(client.child.id(), "HUP");
    client
        .logs("SIGHUP: the client has nothing to reload")
        .await;
    assert!(client.child.try_wait().unwrap().is_none());
}

/// A server on the socket `listener`, handed over as systemd does (`LISTEN_FDS`).
fn activated_server(redis: &Redis, listener: &std::net::TcpListener, name: &str) -> Proc {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crm-relay"));
    cmd.arg("server")
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env("RELAY_STREAM", "r:sock")
        .env("RELAY_LISTEN", "127.0.0.1:1") // not used: the passed socket decides
        .env("RELAY_ADMIN_LISTEN", "")
        .env("RELAY_API_KEYS", API_KEY)
        .env("RUST_LOG", "info")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDS_FIRST_FD", "10")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; it gives the child the socket as fd 10, without
    // close-on-exec, as systemd passes fd 3.
    unsafe {
        cmd.pre_exec(move || match libc::dup2(fd, 10) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    Proc::watched(cmd.spawn().expect("spawn server"), name)
}

/// One webhook on a fresh connection; `Err` for a refusal, reset or missing answer.
async fn one_webhook(addr: SocketAddr) -> Result<u16, String> {
    let exchange = async {
        let mut c = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let raw = post(
            "/webhook/rot",
            &[("X-API-Key", API_KEY), ("Connection", "close")],
            b"{}",
        );
        c.write_all(&raw).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        c.read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(format!("no answer: {line:?}"))
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .map_err(|_| "timeout".to_owned())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_socket_held_by_systemd_refuses_nothing() {
    let redis = Redis::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut first = activated_server(&redis, &listener, "sock-a");
    first.logs("(RELAY_LISTEN, socket passed by systemd)").await;

    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = one_webhook(addr).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    results.push(r);
                }
                results
            })
        })
        .collect();
    let reached = |n: usize| {
        let done = done.clone();
        move || {
            let done = done.clone();
            async move { done.load(Ordering::Relaxed) >= n }
        }
    };
    assert!(eventually(WAIT, reached(200)).await);
    // systemctl restart: SIGTERM, wait for the exit, start the new one.
    signal(first.child.id(), "TERM");
    let exit = tokio::task::spawn_blocking(move || first.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
    let at_restart = done.load(Ordering::Relaxed);
    let mut second = activated_server(&redis, &listener, "sock-b");
    second
        .logs("(RELAY_LISTEN, socket passed by systemd)")
        .await;
    assert!(eventually(WAIT, reached(at_restart + 200)).await);
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for l in loops {
        for r in l.await.unwrap() {
            assert_eq!(r, Ok(200), "every webhook answered 200 across the restart");
            answered += 1;
        }
    }
    assert_eq!(redis.xlen("r:sock"), answered as u64, "each 200 is stored");
}
