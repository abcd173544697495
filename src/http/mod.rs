//! Our HTTP/1.1 server side, on httparse and tokio TCP: heads, body framing, responses, the
//! per-connection loop and the accept loop with its connection cap and graceful drain.

mod budget;
mod chunked;
pub mod client;
mod conn;
mod deadline;
mod error;
mod fields;
mod idle;
mod linger;
mod query;
mod request;
mod response;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use budget::{Budget, Reserved};
pub use chunked::ChunkedDecoder;
pub use error::RequestError;
pub use fields::{FieldValue, Fields, header_values};
pub use query::{pairs as query_pairs, percent_decode};
pub use request::{Framing, Head, HeadLimits, Version, parse_head};
pub use response::{Response, decimal};

use crate::shutdown::Shutdown;

/// A complete request: its head, its de-chunked body and the peer it came from.
#[derive(Debug)]
pub struct Request {
    pub head: Head,
    pub body: Vec<u8>,
    pub remote: SocketAddr,
    /// When the head was complete: reading the body is part of serving the request.
    pub started: std::time::Instant,
    /// `admit` found the sender's credentials complete in the head (`Admission::Vouched`).
    pub vouched: bool,
}

/// What a handler decides from a head, before any byte of the body is read.
#[derive(Debug)]
pub enum Admission {
    /// Read the body; hold the reservation (if any) until the request is answered.
    Read(Option<Reserved>),
    /// Read the body: the head alone proved who sent it, `handle` need not check again.
    Vouched,
    /// Answer this at once: the body is drained and discarded, never buffered.
    Refuse(Response),
}

/// What a server does with requests.
pub trait Handler: Send + Sync + 'static {
    /// Called for every request with a body, from its head alone: a refusal (`401`, `404`,
    /// `503`, …) costs no body in memory, also without `Expect: 100-continue`.
    fn admit(&self, _head: &Head, _remote: SocketAddr) -> Admission {
        Admission::Read(None)
    }

    /// Answers a complete request.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;

    /// Told about every request the HTTP layer refused itself (framing, limits, timeouts).
    fn on_refused(&self, _status: u16) {}

    /// The path as log lines may show it (a handler whose paths can carry a credential
    /// removes it here).
    fn log_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        path.into()
    }
}

/// Every limit and timeout of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Limits {
    pub head: HeadLimits,
    /// From the first byte of a request to the end of its head (slowloris bound).
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long writing one response may take before the peer is given up.
    pub write_timeout: Duration,
    /// Connections served at once; further ones get `503` and are closed.
    pub max_connections: usize,
    /// After shutdown, how long open connections get to finish their request.
    pub drain_timeout: Duration,
    /// After a refusal, how long and how many bytes the rest of the request is read and
    /// discarded before closing (a lingering close: closing with unread input sends RST,
    /// which proxies report as 502 instead of our answer).
    pub linger_time: Duration,
    pub linger_bytes: u64,
}

impl Limits {
    /// The limits of SPEC.md with a body limit of `max_body` bytes.
    pub fn new(max_body: u64, max_connections: usize) -> Self {
        Limits {
            head: HeadLimits {
                max_head: 16 * 1024,
                max_headers: 100,
                max_body,
            },
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_connections,
            // Leaves a margin below the 10 s in which the process must exit.
            drain_timeout: Duration::from_secs(8),
            linger_time: Duration::from_secs(10),
            // A refused body of up to twice the limit reaches its end: a proxy that already
            // forwarded it gets our answer.
            linger_bytes: max_body.saturating_mul(2).saturating_add(64 * 1024),
        }
    }
}

/// Accepts connections on `listener` and serves them with `handler` until `shutdown`; then
/// stops accepting, lets open connections finish their current request (up to
/// `limits.drain_timeout`) and returns.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    mut shutdown: Shutdown,
) {
    let limits = Arc::new(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut tasks = JoinSet::new();
    let mut at_cap = false;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(done) = tasks.join_next() => report_task_end(done),
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        refuse_over_cap(&stream, remote, &mut at_cap);
                        continue;
                    };
                    if std::mem::take(&mut at_cap) {
                        log::info!("connections below the cap of {} again", limits.max_connections);
                    }
                    let _ = stream.set_nodelay(true);
                    let conn = conn::serve_connection(
                        stream, remote, handler.clone(), limits.clone(), shutdown.clone(),
                    );
                    crate::task::spawn_in(&mut tasks, async move {
                        conn.await;
                        drop(permit);
                    });
                }
                Err(e) => accept_failed(e).await,
            },
        }
    }
    drop(listener);
    drain(tasks, limits.drain_timeout).await;
}

/// Answers `503` without waiting (the socket buffer of a new connection has room) and closes.
fn refuse_over_cap(stream: &TcpStream, remote: SocketAddr, at_cap: &mut bool) {
    if !std::mem::replace(at_cap, true) {
        log::warn!("connection cap reached, refusing new connections with 503");
    }
    log::debug!("refused remote={remote} reason=connection cap");
    let mut out = Vec::new();
    Response::error(503, "too many connections")
        .with_header("Retry-After", "1")
        .closing()
        .encode(false, &mut out);
    let _ = stream.try_write(&out);
}

/// Accept errors (out of file descriptors, mostly) are transient: log and pause briefly
/// instead of spinning.
async fn accept_failed(e: std::io::Error) {
    log::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn drain(mut tasks: JoinSet<()>, deadline: Duration) {
    if tasks.is_empty() {
        return;
    }
    log::info!("waiting for {} open connection(s) to finish", tasks.len());
    let finished = tokio::time::timeout(deadline, async {
        while let Some(done) = tasks.join_next().await {
            report_task_end(done);
        }
    })
    .await;
    if finished.is_err() {
        log::warn!(
            "{} connection(s) still busy after {deadline:?}, closing them",
            tasks.len()
        );
        tasks.shutdown().await;
    }
}

/// A connection task that panicked cost that connection only: say so, with the message.
fn report_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        let payload = e.into_panic();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        log::error!("connection handler panicked, connection closed: {msg}");
    }
}
