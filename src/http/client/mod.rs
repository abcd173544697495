//! Our HTTP/1.1 client side: one request per call under one deadline, keep-alive connections
//! reused while they are safe to reuse. Knows nothing of delivery policy: it says what the
//! app answered, or why nothing usable came back and whether the app may have received it.
//!
//! - The request is written while the answer is read: an app that answers early (a `413`
//!   from a body limit) and closes has its answer used, not taken for a broken connection.
//! - A pooled connection is used only if it is younger than `POOL_IDLE` and the peer has not
//!   closed it; so a request is never resent: a failure after writing may have reached the
//!   app, and the caller decides (the next attempt), never this layer silently.
//! - `HTTP/1.0` answers without `Connection: keep-alive`, and close-delimited ones, end
//!   their connection.

mod conn;
mod response;
mod target;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

pub use conn::{CA_AS_LEAF, UNKNOWN_ISSUER};
pub use response::{Answer, BODY_START};
pub use target::Target;

use conn::{Connector, Stream};

/// Idle connections older than this are not reused: below the 5 s after which Node, uvicorn
/// and aiohttp close idle keep-alive connections, so that we never write into one the app is
/// closing at that moment.
pub const POOL_IDLE: Duration = Duration::from_secs(4);

/// An outgoing request: the caller has chosen the headers (no `Host` or `Content-Length`;
/// those are written here).
#[derive(Debug)]
pub struct OutRequest<'a> {
    pub method: &'a str,
    pub headers: &'a [(String, crate::http::FieldValue)],
    pub body: &'a [u8],
}

/// Why no usable answer came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Could not connect: the app received nothing.
    Connect(String),
    /// The TLS handshake failed: the app received nothing.
    Tls(String),
    /// Closed, reset or garbled after the request was (partly) written: it may have reached
    /// the app.
    Lost(String),
    /// No complete answer within the deadline; it may have reached the app.
    Timeout(Duration),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) | SendError::Tls(e) | SendError::Lost(e) => f.write_str(e),
            SendError::Timeout(d) => write!(f, "no answer within {d:?}"),
        }
    }
}

impl std::error::Error for SendError {}

/// A target with what it takes to reach it: for `https://`, the TLS settings. Built once
/// with the configuration, so an `https://` target without TLS settings cannot exist.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Http(Target),
    Https(Target, Arc<rustls::ClientConfig>),
}

impl Endpoint {
    /// `target`, with TLS settings from `tls` when it is `https://`.
    pub fn new<E>(
        target: Target,
        tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, E>,
    ) -> Result<Endpoint, E> {
        Ok(match target.tls {
            false => Endpoint::Http(target),
            true => Endpoint::Https(target, tls()?),
        })
    }

    pub fn target(&self) -> &Target {
        match self {
            Endpoint::Http(t) | Endpoint::Https(t, _) => t,
        }
    }
}

/// A client for one target with a pool of idle keep-alive connections.
pub struct Client {
    target: Target,
    connector: Connector,
    timeout: Duration,
    idle: Mutex<Vec<(Stream, Instant)>>,
    max_idle: usize,
}

impl Client {
    /// A client for `endpoint`: each request must be answered within `timeout`; at most
    /// `max_idle` connections are kept.
    pub fn new(endpoint: Endpoint, timeout: Duration, max_idle: usize) -> Self {
        let (target, tls) = match endpoint {
            Endpoint::Http(target) => (target, None),
            Endpoint::Https(target, config) => {
                let name = target.server_name();
                (target, Some((conn::tls_connector(config), name)))
            }
        };
        Client {
            connector: Connector {
                host: target.host.clone(),
                port: target.port,
                tls,
            },
            target,
            timeout,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// The target, for log lines.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Connects (and completes the TLS handshake), within the client's deadline: whether a
    /// request could be sent now.
    pub async fn probe(&self) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.connector.connect()).await {
            Ok(conn) => conn.map(drop),
            Err(_) => Err(SendError::Timeout(self.timeout)),
        }
    }

    /// Sends `req` and reads the answer, all within the client's deadline.
    pub async fn send(&self, req: &OutRequest<'_>) -> Result<Answer, SendError> {
        let mut wire = Vec::with_capacity(req.body.len() + 512);
        self.encode(req, &mut wire);
        let head = req.method == "HEAD";
        match tokio::time::timeout(self.timeout, self.exchange(&wire, head)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(self.timeout)),
        }
    }

    async fn exchange(&self, wire: &[u8], head: bool) -> Result<Answer, SendError> {
        let conn = match self.pooled() {
            Some(conn) => conn,
            None => self.connector.connect().await?,
        };
        let (answer, reusable, conn) = exchange_on(conn, wire, head).await?;
        if reusable {
            let mut idle = self.idle.lock().expect("pool lock poisoned");
            if idle.len() < self.max_idle {
                idle.push((conn, Instant::now()));
            }
        }
        Ok(answer)
    }

    /// The most recently used idle connection that is young and still open.
    fn pooled(&self) -> Option<Stream> {
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        while let Some((mut conn, since)) = idle.pop() {
            if since.elapsed() < POOL_IDLE && conn.is_alive() {
                return Some(conn);
            }
        }
        None
    }

    fn encode(&self, req: &OutRequest<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(req.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.target.authority.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in req.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(req.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(req.body);
    }
}

/// Writes `wire` on `conn` while reading the answer. An answer that arrives first is used
/// (the rest of the request is not written, the connection not reused); a failed write is
/// followed by reading what the app may have answered before it closed.
async fn exchange_on(
    conn: Stream,
    wire: &[u8],
    head: bool,
) -> Result<(Answer, bool, Stream), SendError> {
    let (mut r, mut w) = tokio::io::split(conn);
    let mut buf = Vec::with_capacity(4096);
    let mut written: Option<std::io::Result<()>> = None;
    let result = {
        let read = response::read(&mut r, &mut buf, head);
        let write = async {
            w.write_all(wire).await?;
            w.flush().await
        };
        tokio::pin!(read, write);
        loop {
            tokio::select! {
                biased;
                done = &mut write, if written.is_none() => written = Some(done),
                answer = &mut read => break answer,
            }
        }
    };
    let conn = r.unsplit(w);
    match (result, written) {
        (Ok((mut answer, reusable)), Some(Ok(()))) => {
            answer.early = false;
            Ok((answer, reusable, conn))
        }
        (Ok((mut answer, _)), _) => {
            answer.early = true;
            Ok((answer, false, conn))
        }
        (Err(SendError::Lost(why)), Some(Err(e))) => Err(SendError::Lost(format!(
            "{why} (writing the request failed: {e})"
        ))),
        (Err(e), _) => Err(e),
    }
}
