//! The server behind a real nginx, as most deployments run it: refusals reach the sender as
//! the relay's status (401, 413), never as the proxy's 502 for a reset connection, and the
//! client address comes from the proxy's X-Forwarded-For when the proxy is trusted.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const MIB: usize = 1024 * 1024;

/// nginx as one process (no privilege drop, temp files in its own directory), proxying a
/// port of its own to `upstream` with `client_max_body_size 10m`.
struct Nginx {
    port: u16,
    child: Child,
    _dir: TempDir,
}

impl Nginx {
    async fn start(upstream: std::net::SocketAddr) -> Nginx {
        let dir = TempDir::new("nginx");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let d = dir.0.display();
            let conf = format!(
                "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 10m;
    location / {{
      proxy_pass http://{upstream};
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"
            );
            let path = dir.0.join("nginx.conf");
            std::fs::write(&path, conf).expect("nginx.conf");
            let mut child = Command::new(nginx_binary())
                .arg("-c")
                .arg(&path)
                .arg("-p")
                .arg(&dir.0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx (scripts/test.sh installs nginx-light)");
            // nginx says nothing when ready: it is once its port answers (or it exits).
            let mut exited = false;
            let up = eventually(Duration::from_secs(10), || {
                exited = exited || child.try_wait().ok().flatten().is_some();
                let gone = exited;
                async move {
                    gone || tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                }
            })
            .await;
            if up && child.try_wait().ok().flatten().is_none() {
                return Nginx {
                    port,
                    child,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("nginx did not start");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

/// Sends a POST of `len` bytes through the proxy; the status the sender sees.
async fn status_through(port: u16, key: Option<&str>, len: usize) -> u16 {
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let key = key
        .map(|k| format!("X-API-Key: {k}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /webhook/px HTTP/1.1\r\nHost: hooks.example\r\n{key}Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let _ = c.write_all(&vec![b'x'; len]).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut out)).await;
    std::str::from_utf8(out.get(9..12).unwrap_or(b"000"))
        .unwrap()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_refusals_arrive_as_the_relays_status() {
    let redis = Redis::start().await;
    let config = server_config_with(
        &redis.url(),
        "x:nginx",
        &[
            ("RELAY_MAX_BODY", "4MiB"),
            ("RELAY_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    let relay = Relay::start_with(config, |_| {}).await;
    let nginx = Nginx::start(relay.addr).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(status_through(nginx.port, None, 2 * MIB).await);
        seen.push(status_through(nginx.port, Some(API_KEY), 5 * MIB).await);
    }
    let expected: Vec<u16> = [401, 413].repeat(6);
    assert_eq!(seen, expected, "a 502 is the proxy reporting a reset");
    assert_eq!(status_through(nginx.port, Some(API_KEY), 1000).await, 200);
    let (_, f) = redis.entries("x:nginx").remove(0);
    assert!(
        f["remote"].starts_with(b"127.0.0.1"),
        "the proxy's X-Forwarded-For names the client"
    );
    assert_eq!(redis.xlen("x:nginx"), 1);
}
