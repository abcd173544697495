//! A bandwidth-limited TCP link: a proxy in front of a real server (Redis) that paces bytes
//! in each direction, like an SSH tunnel or a small uplink between the client and Redis.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// One direction's capacity, shared by every connection through the link.
struct Pace {
    bytes_per_sec: u64,
    /// When the link is free to send again.
    free_at: Mutex<Instant>,
}

impl Pace {
    /// Reserves the time `n` bytes take on the link; returns when they may be written.
    fn reserve(&self, n: usize) -> Instant {
        let mut free = self.free_at.lock().unwrap();
        let start = (*free).max(Instant::now());
        let took = Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
        *free = start + took;
        *free
    }
}

/// The proxy on `127.0.0.1:0`, forwarding to `upstream` at `bytes_per_sec` each way.
pub struct SlowLink {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// The pumps of every connection, so that `cut` can stop them.
    pumps: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl SlowLink {
    pub async fn start(upstream: SocketAddr, bytes_per_sec: u64) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind link");
        let addr = listener.local_addr().expect("link addr");
        let pace = |_| {
            Arc::new(Pace {
                bytes_per_sec,
                free_at: Mutex::new(Instant::now()),
            })
        };
        let (up, down) = (pace(()), pace(()));
        let pumps: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let handles = pumps.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let mut handles = handles.lock().unwrap();
                handles.push(tokio::spawn(pump(cr, sw, up.clone())).abort_handle());
                handles.push(tokio::spawn(pump(sr, cw, down.clone())).abort_handle());
            }
        });
        SlowLink { addr, task, pumps }
    }

    /// The link goes down with everything still on its way: what a machine that dies takes
    /// with it (bytes in its buffers and on the wire), which a killed process alone does not
    /// (the kernel still delivers what it had written).
    pub fn cut(&self) {
        self.task.abort();
        for pump in self.pumps.lock().unwrap().drain(..) {
            pump.abort();
        }
    }

    /// A `redis://` URL through the link.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    pace: Arc<Pace>,
) {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tokio::time::sleep_until(pace.reserve(n)).await;
        if to.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
