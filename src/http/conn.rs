//! One HTTP/1.1 connection: read a head, maybe answer `100 Continue`, read the body, call the
//! handler, write the answer; repeat while keep-alive allows. Pipelined requests are answered
//! in order because they are served one after another from the same buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant as Deadline, timeout, timeout_at};

use super::chunked::ChunkedDecoder;
use super::deadline::Later;
use super::error::RequestError;
use super::idle::{Ended, IdleWait};
use super::linger;
use super::request::{Framing, Head, parse_head};
use super::response::{Response, chunk};
use super::{Admission, Handler, Limits, Request};
use crate::shutdown::Shutdown;

/// Bytes requested from the socket per read of a body.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes requested per read of a head: a typical webhook's head and body fit (which then
/// need no second buffer), and a connection waiting for its head holds no more. Heads up to
/// `HeadLimits::max_head` take a few reads.
const HEAD_CHUNK: usize = 4 * 1024;

/// Why the connection stops serving requests.
enum Stop {
    /// Peer closed, idle timeout, shutdown: nothing to answer.
    Quiet(&'static str),
    /// The HTTP layer refuses the request (framing, limits, timeouts): answer with this
    /// (closing) response, then close.
    Answer(Response),
    /// The handler refused the request from its head: answer, close.
    Refused(Response),
}

impl From<RequestError> for Stop {
    fn from(e: RequestError) -> Self {
        Stop::Answer(Response::error(e.status(), &e.to_string()).closing())
    }
}

/// Serves requests on `stream` until the peer leaves, an error closes it, or shutdown.
pub async fn serve_connection<H: Handler>(
    stream: TcpStream,
    remote: SocketAddr,
    handler: Arc<H>,
    limits: Arc<Limits>,
    shutdown: Shutdown,
) {
    let mut conn = Conn {
        stream,
        remote,
        // Allocated on the first read; given back while the connection idles.
        buf: Vec::new(),
        out: Vec::new(),
        idle: IdleWait::new(limits.idle_timeout, shutdown.clone()),
        limits,
        shutdown,
        served: 0,
    };
    let why = loop {
        match conn.serve_one(&*handler).await {
            Ok(true) => {
                conn.served += 1;
                continue;
            }
            Ok(false) => break "done",
            Err(Stop::Quiet(why)) => break why,
            Err(Stop::Answer(resp)) => {
                log::debug!("refused remote={remote} status={}", resp.status);
                handler.on_refused(resp.status);
                conn.refuse(&resp).await;
                break "refused";
            }
            Err(Stop::Refused(resp)) => {
                log::debug!(
                    "refused before the body remote={remote} status={}",
                    resp.status
                );
                conn.refuse(&resp).await;
                break "refused";
            }
        }
    };
    log::trace!("connection closed remote={remote} reason={why}");
}

struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    /// Bytes read but not yet consumed; may hold the start of pipelined requests.
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Waiting for the next request: the idle timeout and shutdown.
    idle: IdleWait,
    limits: Arc<Limits>,
    shutdown: Shutdown,
    /// Requests answered on this connection so far.
    served: u32,
}

impl Conn {
    /// Answers a refusal, then closes gracefully: the write side first (the answer is
    /// complete), then a lingering close within `linger_time` and `linger_bytes` (see
    /// `linger`).
    async fn refuse(&mut self, resp: &Response) {
        if self.write(resp, false).await.is_err() {
            return;
        }
        let _ = self.stream.shutdown().await;
        let deadline = Deadline::now() + self.limits.linger_time;
        // The connection's buffer goes now: it holds no memory while it lingers.
        let drained = std::mem::take(&mut self.buf).len() as u64;
        linger::discard(&self.stream, deadline, self.limits.linger_bytes, drained).await;
    }

    /// Serves one request; `Ok(true)` when the connection stays open for another.
    async fn serve_one<H: Handler>(&mut self, handler: &H) -> Result<bool, Stop> {
        let head = self.read_head().await?;
        let started = Instant::now();
        // Every body is admitted from its head before a byte of it is read.
        let (reserved, vouched) = match head.framing {
            Framing::None => (None, false),
            _ => match handler.admit(&head, self.remote) {
                Admission::Read(reserved) => (reserved, false),
                Admission::Vouched => (None, true),
                Admission::Refuse(refusal) => return Err(Stop::Refused(refusal.closing())),
            },
        };
        if head.expect_continue && head.framing != Framing::None && self.buf.is_empty() {
            self.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = self.read_body(&head).await?;
        let head_only = head.method == "HEAD";
        let keep_alive = head.keep_alive;
        // For the DEBUG line only: copied (and redacted) only when it is written.
        let logged = log::log_enabled!(log::Level::Debug).then(|| {
            (
                head.method.clone(),
                handler.log_path(head.path()).into_owned(),
            )
        });
        let body_len = body.len();
        let request = Request {
            head,
            body,
            remote: self.remote,
            started,
            vouched,
        };
        let mut resp = handler.handle(request).await;
        drop(reserved);
        if !keep_alive || self.shutdown.is_triggered() {
            resp.close = true;
        }
        if let Some((method, path)) = logged {
            log::debug!(
                "request remote={} method={method} path={path} status={} body_bytes={body_len} ms={:.3}",
                self.remote,
                resp.status,
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
        self.write(&resp, head_only).await?;
        match resp.stream.take() {
            Some(chunks) if !head_only => {
                self.stream_body(chunks).await?;
                Ok(false)
            }
            _ => Ok(!resp.close),
        }
    }

    /// Sends a streamed body chunk by chunk until its producer ends it, the peer leaves
    /// (noticed at once: input is watched, and anything sent is discarded), a write times out,
    /// or shutdown.
    async fn stream_body(&mut self, mut chunks: mpsc::Receiver<Vec<u8>>) -> Result<(), Stop> {
        let mut shutdown = self.shutdown.clone();
        let mut input = [0u8; 512];
        let mut frame = Vec::new();
        loop {
            let next = tokio::select! {
                next = chunks.recv() => next,
                read = self.stream.read(&mut input) => match read {
                    Ok(n) if n > 0 => continue,
                    _ => return Err(Stop::Quiet("peer left the stream")),
                },
                () = shutdown.wait() => None,
            };
            frame.clear();
            match &next {
                Some(data) => chunk(data, &mut frame),
                None => frame.extend_from_slice(b"0\r\n\r\n"),
            }
            self.send_raw(&frame).await?;
            if next.is_none() {
                return Ok(());
            }
        }
    }

    /// Waits for the next request head: up to the idle timeout for its first byte (or until
    /// shutdown), then up to the header timeout for the whole head.
    async fn read_head(&mut self) -> Result<Head, Stop> {
        if self.buf.is_empty() {
            // An idle keep-alive connection holds no buffer (a body's worth, after a large
            // request) while it waits.
            self.buf = Vec::new();
            // A request read after shutdown is answered with `Connection: close`.
            let Conn { stream, buf, .. } = self;
            match self
                .idle
                .wait(self.served, fill(stream, buf, HEAD_CHUNK))
                .await
            {
                Ok(read) => read?,
                Err(Ended::Idle) => return Err(Stop::Quiet("idle timeout")),
                Err(Ended::Shutdown) => return Err(Stop::Quiet("shutdown")),
            }
        }
        let mut deadline = Later::new(self.limits.header_timeout);
        loop {
            if let Some((head, used)) = parse_head(&self.buf, &self.limits.head)? {
                self.buf.drain(..used);
                return Ok(head);
            }
            self.fill_until(deadline.at(), HEAD_CHUNK, "header read timeout")
                .await?;
        }
    }

    /// Reads the body the head announced, within the body timeout.
    async fn read_body(&mut self, head: &Head) -> Result<Vec<u8>, Stop> {
        let mut deadline = Later::new(self.limits.body_timeout);
        match head.framing {
            Framing::None => Ok(Vec::new()),
            Framing::Length(n) => {
                let n = usize::try_from(n).map_err(|_| RequestError::BodyTooLarge)?;
                if self.buf.len() < n {
                    // One allocation of the announced size (plus a read's worth), not a
                    // buffer that doubles its way there: memory is what the budget says it
                    // is. (A body that came with its head needs none: growing the buffer
                    // then only copied it.)
                    self.buf
                        .reserve_exact((n + READ_CHUNK).saturating_sub(self.buf.len()));
                }
                while self.buf.len() < n {
                    self.fill_until(deadline.at(), READ_CHUNK, "body read timeout")
                        .await?;
                }
                match self.buf.len() == n {
                    true => Ok(std::mem::take(&mut self.buf)),
                    false => {
                        let rest = self.buf.split_off(n);
                        Ok(std::mem::replace(&mut self.buf, rest))
                    }
                }
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new(self.limits.head.max_body);
                let mut body = Vec::new();
                loop {
                    let used = decoder.decode(&self.buf, &mut body)?;
                    self.buf.drain(..used);
                    if decoder.is_done() {
                        return Ok(body);
                    }
                    self.fill_until(deadline.at(), READ_CHUNK, "body read timeout")
                        .await?;
                }
            }
        }
    }

    /// Reads more bytes before `deadline`; a timeout is answered `408`.
    async fn fill_until(
        &mut self,
        deadline: Deadline,
        chunk: usize,
        what: &'static str,
    ) -> Result<(), Stop> {
        match timeout_at(deadline, fill(&mut self.stream, &mut self.buf, chunk)).await {
            Ok(r) => r,
            Err(_) => {
                log::debug!("{what} remote={}", self.remote);
                Err(Stop::Answer(Response::error(408, what).closing()))
            }
        }
    }

    async fn write(&mut self, resp: &Response, head_only: bool) -> Result<(), Stop> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        resp.encode(head_only, &mut out);
        let result = self.send_raw(&out).await;
        self.out = out;
        result
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        // An answer usually fits the socket's buffer at once: then no timer is made for it.
        let sent = match self.stream.try_write(bytes) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => return Err(Stop::Quiet("write error")),
        };
        let rest = &bytes[sent..];
        match timeout(self.limits.write_timeout, self.stream.write_all(rest)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Quiet("write error")),
            Err(_) => Err(Stop::Quiet("write timeout")),
        }
    }
}

/// One read of up to `chunk` more bytes into `buf`; end of stream or an error stops the
/// connection quietly (an incomplete request is never handed to the handler).
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, chunk: usize) -> Result<(), Stop> {
    buf.reserve(chunk);
    match stream.read_buf(buf).await {
        Ok(0) if buf.is_empty() => Err(Stop::Quiet("peer closed")),
        Ok(0) => Err(Stop::Quiet("peer closed mid-request")),
        Ok(_) => Ok(()),
        Err(_) => Err(Stop::Quiet("read error")),
    }
}
