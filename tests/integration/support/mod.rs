//! Test support: a real `redis-server` on a free port in a temp directory, the relay server
//! in-process on `127.0.0.1:0`, and a raw HTTP/1.1 client that sees exactly what is on the wire.
#![allow(dead_code)]

pub mod link;
pub mod process;
pub mod sink;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crm_relay::config::{ClientConfig, ServerConfig};
use crm_relay::http::Limits;
use crm_relay::shutdown::{self, Trigger};
use crm_relay::stream::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const API_KEY: &str = "test-api-key-0123";
pub const APP_SECRET: &str = "test-app-secret";
pub const VERIFY_TOKEN: &str = "meatyhamhock";

/// Polls the async `check` every 20 ms until it holds or `limit` passes; true if it held.
/// Tests wait on events this way (a count in Redis, a metric, a received request), never on
/// a fixed sleep.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_some(limit, || {
        let held = check();
        async move { held.await.then_some(()) }
    })
    .await
    .is_some()
}

/// Like `eventually`, for a check that finds a value: the first one, or `None` after `limit`.
pub async fn eventually_some<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one series (`name` or `name{labels}`) in Prometheus text, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A unique scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("crm-relay-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` of our own, with AOF `appendfsync always` so a SIGKILL loses nothing
/// that was acknowledged.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    extra: Vec<String>,
    password: Option<String>,
    /// TLS only: `port` is the TLS port, there is no plaintext one.
    tls: bool,
}

impl Redis {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts with extra `redis-server` arguments (e.g. `["--requirepass", "pw"]`).
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::launch(extra, false).await
    }

    /// A TLS-only redis-server; `extra` gives its certificate settings.
    pub async fn start_tls(extra: &[&str]) -> Self {
        Self::launch(extra, true).await
    }

    async fn launch(extra: &[&str], tls: bool) -> Self {
        let mut redis = Redis {
            port: 0,
            child: None,
            dir: TempDir::new("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            password: extra
                .windows(2)
                .find(|w| w[0] == "--requirepass")
                .map(|w| w[1].to_string()),
            tls,
        };
        // Redis cannot report a port it picked: another process may take ours between the
        // probe and Redis binding it, which Redis says; then try another.
        for _ in 0..5 {
            redis.port = free_port();
            if redis.spawn("Ready to accept connections").await {
                return redis;
            }
        }
        panic!("redis-server did not start (is it installed? scripts/test.sh installs it)");
    }

    /// Starts redis-server and waits for it to say `ready` (or that it failed).
    async fn spawn(&mut self, ready: &str) -> bool {
        let mut cmd = Command::new("redis-server");
        let port = self.port.to_string();
        match self.tls {
            false => cmd.args(["--port", &port]),
            true => cmd.args(["--port", "0", "--tls-port", &port]),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn redis-server");
        let mut lines = process::watch(child.stdout.take().expect("piped"), "redis");
        let said = lines
            .until(Duration::from_secs(10), |l| {
                l.contains(ready) || l.contains("aborting")
            })
            .await;
        if said.is_some_and(|l| l.contains(ready)) {
            self.child = Some(child);
            true
        } else {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }

    /// The URL, with the password when the server has one.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(pw) => format!("{scheme}://:{pw}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// SIGKILL: no shutdown, no final fsync.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same data directory.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn("Ready to accept connections").await,
            "redis-server did not restart on port {}",
            self.port
        );
    }

    /// Restarts it loading its data slowly (`key-load-delay` µs a key, answering `LOADING`
    /// between keys), and returns as it starts loading: a Redis that has just rebooted with
    /// a large dataset. Later restarts load at full speed.
    pub async fn restart_loading_slowly(&mut self, key_load_delay_us: u32) {
        self.kill();
        let usual = self.extra.clone();
        let delay = key_load_delay_us.to_string();
        self.extra.extend(
            [
                "--key-load-delay",
                &delay,
                "--loading-process-events-interval-bytes",
                "1024",
            ]
            .map(String::from),
        );
        let loading = self.spawn("Loading RDB").await;
        self.extra = usual;
        assert!(
            loading,
            "redis-server did not start loading on port {}",
            self.port
        );
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the server process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        signal(pid, sig);
    }

    /// A plain synchronous connection for inspecting what the relay stored.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to test redis")
    }

    /// Entries in the `relay` group's pending list of `stream`.
    pub fn pending(&self, stream: &str) -> u64 {
        let reply: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(stream)
            .arg("relay")
            .query(&mut self.conn())
            .expect("XPENDING");
        reply.0
    }

    /// Clients blocked in a command such as `XREADGROUP … BLOCK` (`INFO clients`).
    pub fn blocked_clients(&self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut self.conn())
            .expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A counter of `command` in `INFO commandstats` (`calls`, `failed_calls`,
    /// `rejected_calls`); 0 before its first call.
    pub fn commandstat(&self, command: &str, counter: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.conn())
            .expect("INFO");
        let (line, prefix) = (format!("cmdstat_{command}:"), format!("{counter}="));
        info.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|l| l.split(',').find_map(|f| f.strip_prefix(prefix.as_str())))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Takes its data directory away and has it snapshot there: the snapshot fails, and Redis
    /// (with `save` points and `stop-writes-on-bgsave-error`, its defaults) refuses every
    /// write with `MISCONF` from then on, as when its disk is full. Returns once it does.
    pub async fn lose_its_disk(&self) {
        self.config_set("save", "3600 1");
        std::fs::remove_dir_all(&self.dir.0).expect("remove redis's dir");
        let _: () = redis::cmd("BGSAVE")
            .query(&mut self.conn())
            .expect("BGSAVE");
        let refused = eventually(Duration::from_secs(10), || {
            let answer = redis::cmd("SET")
                .arg("k")
                .arg("v")
                .query::<()>(&mut self.conn());
            std::future::ready(answer.is_err_and(|e| e.code() == Some("MISCONF")))
        })
        .await;
        assert!(refused, "redis refuses writes with MISCONF");
    }

    /// `CONFIG SET name value`.
    pub fn config_set(&self, name: &str, value: &str) {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(&mut self.conn())
            .expect("CONFIG SET");
    }

    /// Stores a webhook record the way the server does (for bodies the server's test limit
    /// would refuse); returns its id.
    pub fn add_webhook(&self, stream: &str, body: &[u8]) -> String {
        redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("v")
            .arg("1")
            .arg("received_at")
            .arg(1_700_000_000_000u64)
            .arg("method")
            .arg("POST")
            .arg("path")
            .arg("/webhook/big")
            .arg("source")
            .arg("big")
            .arg("remote")
            .arg("127.0.0.1:1")
            .arg("headers")
            .arg(r#"[["Content-Type","application/octet-stream"]]"#)
            .arg("body")
            .arg(body)
            .query(&mut self.conn())
            .expect("XADD")
    }

    /// One field of every DLQ entry of `stream`, as text.
    pub fn dlq_field(&self, stream: &str, field: &str) -> Vec<String> {
        self.entries(&format!("{stream}:dlq"))
            .into_iter()
            .map(|(_, f)| String::from_utf8_lossy(&f[field]).into_owned())
            .collect()
    }

    pub fn xlen(&self, stream: &str) -> u64 {
        redis::cmd("XLEN")
            .arg(stream)
            .query(&mut self.conn())
            .expect("XLEN")
    }

    /// Every entry of `stream`: id and fields (values as raw bytes).
    pub fn entries(&self, stream: &str) -> Vec<(String, HashMap<String, Vec<u8>>)> {
        let raw: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query(&mut self.conn())
            .expect("XRANGE");
        raw.into_iter()
            .map(|(id, kv)| {
                let fields = kv
                    .chunks(2)
                    .map(|p| {
                        (
                            String::from_utf8(p[0].clone()).expect("field name"),
                            p[1].clone(),
                        )
                    })
                    .collect();
                (id, fields)
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c.id(), "CONT");
        }
        self.kill();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

/// A server configuration for tests: every credential set, a unique stream key.
pub fn server_config(redis_url: &str, stream: &str) -> ServerConfig {
    server_config_with(redis_url, stream, &[])
}

/// `server_config` with `extra` variables on top.
pub fn server_config_with(redis_url: &str, stream: &str, extra: &[(&str, &str)]) -> ServerConfig {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("REDIS_URL".into(), redis_url.to_owned()),
        ("RELAY_STREAM".into(), stream.to_owned()),
        ("RELAY_API_KEYS".into(), format!("other-key,{API_KEY}")),
        (
            "RELAY_META_APP_SECRET".into(),
            format!("old-secret,{APP_SECRET}"),
        ),
        ("RELAY_META_VERIFY_TOKEN".into(), VERIFY_TOKEN.to_owned()),
        ("RELAY_LISTEN".into(), "127.0.0.1:0".to_owned()),
        ("RELAY_MAX_BODY".into(), "64KiB".to_owned()),
    ]);
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    ServerConfig::load(&|k| vars.get(k).cloned()).expect("valid test config")
}

/// The relay server running in-process on `127.0.0.1:0`.
pub struct Relay {
    pub addr: SocketAddr,
    pub stream: String,
    pub metrics: Arc<crm_relay::metrics::ServerMetrics>,
    trigger: Trigger,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(redis: &Redis, stream: &str) -> Relay {
        let config = server_config(&redis.url(), stream);
        Relay::start_with(config, |_| {}).await
    }

    /// Starts with `config`, its HTTP limits changed by `tune` first.
    pub async fn start_with(config: ServerConfig, tune: impl FnOnce(&mut Limits)) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stream = config.common.stream.clone();
        let mut server = crm_relay::server::Server::new(config).expect("server");
        tune(server.limits_mut());
        let metrics = server.metrics();
        let (trigger, shutdown) = shutdown::channel();
        let task = tokio::spawn(server.run(listener, shutdown, None));
        Relay {
            addr,
            stream,
            metrics,
            trigger,
            task,
        }
    }

    /// Triggers shutdown and waits for the server to return; fails after `limit`.
    pub async fn stop(self, limit: Duration) {
        self.trigger.trigger();
        tokio::time::timeout(limit, self.task)
            .await
            .expect("server stops in time")
            .expect("server task ends cleanly");
    }

    pub async fn connect(&self) -> Conn {
        Conn::connect(self.addr).await
    }

    /// One request on a fresh connection.
    pub async fn request(&self, raw: &[u8]) -> Resp {
        let mut c = self.connect().await;
        c.send(raw).await;
        c.response().await.expect("a response")
    }
}

/// A POST of `body` to `path` with `headers`, framed by Content-Length.
pub fn post(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("POST {path} HTTP/1.1\r\nHost: relay.test\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The `id` of a `200 {"id":…}` answer.
    pub fn id(&self) -> String {
        assert_eq!(
            self.status,
            200,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()["id"].as_str().expect("id").to_owned()
    }

    /// The `relay_id` of a `200` answer: the `X-Relay-Id` the app will see.
    pub fn relay_id(&self) -> String {
        assert_eq!(self.status, 200);
        self.json()["relay_id"]
            .as_str()
            .expect("relay_id")
            .to_owned()
    }
}

/// A raw client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.expect("connect to relay"),
            buf: Vec::new(),
        }
    }

    /// One request on a fresh connection; its answer.
    pub async fn request_once(addr: SocketAddr, raw: &[u8]) -> Resp {
        let mut c = Conn::connect(addr).await;
        c.send(raw).await;
        c.response().await.expect("an answer")
    }

    pub async fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.expect("send");
    }

    /// Shuts down our sending side: the server reads the end of the stream.
    pub async fn end(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Sends, ignoring errors (the server may already have closed on us).
    pub async fn try_send(&mut self, raw: &[u8]) {
        let _ = self.stream.write_all(raw).await;
    }

    /// Reads one response (`None` if the connection closes first); 10 s at most.
    pub async fn response(&mut self) -> Option<Resp> {
        tokio::time::timeout(Duration::from_secs(10), self.read_response(false))
            .await
            .expect("a response within 10 s")
    }

    /// Reads the response to a `HEAD` request: its `Content-Length` announces no body.
    pub async fn head_response(&mut self) -> Option<Resp> {
        tokio::time::timeout(Duration::from_secs(10), self.read_response(true))
            .await
            .expect("a response within 10 s")
    }

    async fn read_response(&mut self, to_head: bool) -> Option<Resp> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut slots);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let status = r.code.expect("status");
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len: usize = match to_head {
                    true => 0,
                    false => headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map_or(0, |(_, v)| v.parse().expect("content-length")),
                };
                while self.buf.len() < n + len {
                    if !self.fill().await {
                        return None;
                    }
                }
                let body = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                return Some(Resp {
                    status,
                    headers,
                    body,
                });
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// True when the server closed the connection (EOF or reset) within 5 s, with no
    /// further bytes sent.
    pub async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => self.buf.is_empty(),
            _ => false,
        }
    }
}

/// The Meta fixtures with their known `X-Hub-Signature-256`.
pub fn meta_fixtures() -> Vec<(String, Vec<u8>, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/meta");
    let sigs: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("signatures.SYNTHETIC.json")).expect("signatures file"),
    )
    .expect("signatures JSON");
    sigs["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| {
            let file = v["file"].as_str().expect("file").to_owned();
            let body = std::fs::read(dir.join(&file)).expect("fixture");
            let sig = v["X-Hub-Signature-256"].as_str().expect("sig").to_owned();
            (file, body, sig)
        })
        .collect()
}

/// A client configuration for tests: fast retries, a unique consumer, `extra` on top.
pub fn client_config(
    redis_url: &str,
    stream: &str,
    target: &str,
    extra: &[(&str, &str)],
) -> ClientConfig {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("REDIS_URL".into(), redis_url.to_owned()),
        ("RELAY_STREAM".into(), stream.to_owned()),
        ("RELAY_DLQ_STREAM".into(), format!("{stream}:dlq")),
        ("RELAY_TARGET_URL".into(), target.to_owned()),
        ("RELAY_CONSUMER".into(), "test-consumer".into()),
        ("RELAY_BACKOFF_BASE".into(), "20ms".into()),
        ("RELAY_BACKOFF_MAX".into(), "100ms".into()),
        ("RELAY_BREAKER_COOLDOWN".into(), "200ms".into()),
        ("RELAY_FORWARD_TIMEOUT".into(), "2s".into()),
    ]);
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    ClientConfig::load(&|k| vars.get(k).cloned()).expect("valid client config")
}

/// The client running in-process.
pub struct RelayClient {
    trigger: Trigger,
    task: tokio::task::JoinHandle<()>,
    pub metrics: Arc<crm_relay::metrics::ClientMetrics>,
}

impl RelayClient {
    pub fn start(config: ClientConfig) -> RelayClient {
        let (trigger, shutdown) = shutdown::channel();
        let client = crm_relay::client::Client::new(config).expect("client");
        let metrics = client.metrics();
        let task = tokio::spawn(async move {
            client.run(shutdown).await.expect("client runs");
        });
        RelayClient {
            trigger,
            task,
            metrics,
        }
    }

    pub async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("client stops within 10 s")
            .expect("client task ends cleanly");
    }
}

/// An admin listener on `127.0.0.1:0` for `role`, over `stream` and `{stream}:dlq`.
pub async fn start_admin(
    redis: &Redis,
    stream: &str,
    role: crm_relay::ops::admin::Role,
) -> SocketAddr {
    start_admin_over(redis, stream, 1, role).await
}

/// The same over `partitions` partitions of `stream` (`RELAY_PARTITIONS`).
pub async fn start_admin_over(
    redis: &Redis,
    stream: &str,
    partitions: usize,
    role: crm_relay::ops::admin::Role,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind admin");
    let addr = listener.local_addr().expect("admin addr");
    let url = crm_relay::config::Secret::new(redis.url());
    let stores = (0..partitions)
        .map(|p| {
            let key = |k: &str| crm_relay::config::partition_key(k, p, partitions);
            let keys = crm_relay::stream::Keys {
                stream: key(stream),
                dlq: key(&format!("{stream}:dlq")),
            };
            Arc::new(Store::new(&url, None, keys).expect("store"))
        })
        .collect();
    let admin = crm_relay::ops::admin::Admin::new(
        role,
        crm_relay::ops::partitions::Partitions::new(stores),
        crm_relay::ops::access::Access::loopback(),
    );
    let (trigger, shutdown) = shutdown::channel();
    std::mem::forget(trigger); // lives as long as the test process
    tokio::spawn(crm_relay::http::serve(
        listener,
        Arc::new(admin),
        Limits::new(65536, 64),
        shutdown,
    ));
    addr
}

/// Runs the binary with `args` and the given variables only; returns (exit code, stdout, stderr).
pub fn run_relay(args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-relay"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .expect("run crm-relay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `run_relay` on a blocking thread, so the test's own tasks (a fake service, a signal to
/// send) keep running meanwhile.
pub async fn run_relay_off_runtime(args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_relay(&args, &vars)
    })
    .await
    .expect("crm-relay ran")
}

/// A `crm-relay` process of ours, killed on drop, with what it logs.
pub struct Proc {
    pub child: Child,
    pub lines: process::Lines,
}

impl Proc {
    pub fn watched(mut child: Child, name: &str) -> Proc {
        let lines = process::watch(child.stderr.take().expect("stderr piped"), name);
        Proc { child, lines }
    }

    /// Waits for a log line containing `text` (within 30 s).
    pub async fn logs(&mut self, text: &str) {
        let found = self
            .lines
            .until(Duration::from_secs(30), |l| l.contains(text))
            .await;
        assert!(found.is_some(), "the process never logged {text:?}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child's log level: `$CRM_TEST_RUST_LOG` (to read more in `$CRM_TEST_LOG_DIR`), else
/// `info`, which carries the `listening on` line the tests wait for.
fn child_log_level() -> String {
    std::env::var("CRM_TEST_RUST_LOG").unwrap_or_else(|_| "info".into())
}

/// The server binary, on a port it picks and reports: (process, public address).
pub async fn server_process(redis: &Redis, stream: &str) -> (Proc, SocketAddr) {
    server_process_with(redis, stream, &[]).await
}

/// `server_process` with `extra` variables.
pub async fn server_process_with(
    redis: &Redis,
    stream: &str,
    extra: &[(&str, &str)],
) -> (Proc, SocketAddr) {
    let child = Command::new(env!("CARGO_BIN_EXE_crm-relay"))
        .arg("server")
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env("RELAY_STREAM", stream)
        .env("RELAY_LISTEN", "127.0.0.1:0")
        .env("RELAY_ADMIN_LISTEN", "")
        .env("RELAY_API_KEYS", API_KEY)
        .env("RUST_LOG", child_log_level())
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut proc = Proc::watched(child, "server");
    let addr = proc.lines.listening("RELAY_LISTEN").await;
    (proc, addr)
}

/// The client binary delivering `stream` to `target`, with fast retries.
pub fn client_process(redis: &Redis, stream: &str, target: &str, extra: &[(&str, &str)]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_crm-relay"))
        .arg("client")
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env("RELAY_STREAM", stream)
        .env("RELAY_DLQ_STREAM", format!("{stream}:dlq"))
        .env("RELAY_TARGET_URL", target)
        .env("RELAY_CONSUMER", "fault-client")
        .env("RELAY_ADMIN_LISTEN", "")
        .env("RELAY_BACKOFF_BASE", "50ms")
        .env("RELAY_BACKOFF_MAX", "500ms")
        .env("RELAY_BREAKER_COOLDOWN", "300ms")
        .env("RUST_LOG", child_log_level())
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    Proc::watched(child, "client")
}

/// `crm-relay tail --json` with only `vars`, once it says it is following: the process, and
/// its stdout lines.
pub async fn tail_process(vars: &[(&str, &str)]) -> (Child, process::Lines) {
    let mut tail = Command::new(env!("CARGO_BIN_EXE_crm-relay"))
        .args(["tail", "--json"])
        .env_clear()
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail starts");
    let mut err = process::watch(tail.stderr.take().expect("piped"), "tail-err");
    let out = process::watch(tail.stdout.take().expect("piped"), "tail-out");
    let following = err
        .until(Duration::from_secs(15), |l| l.starts_with("following "))
        .await;
    assert!(following.is_some(), "tail never said it follows");
    (tail, out)
}
