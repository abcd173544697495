//! Our HTTP/1.1 client side, for forwarding: one request per attempt under one deadline,
//! keep-alive connections reused, responses framed by `Content-Length`, `chunked` or close.
//! Only the status and `Retry-After` matter to the caller; a body is read (bounded) only to
//! keep the connection reusable.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::chunked::ChunkedDecoder;
use super::request::header_values;
use crate::client::policy::outcome::{Attempt, parse_retry_after};

/// Largest response head we read.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest response body read to keep a connection; bigger ones cost the connection.
const MAX_RESPONSE_BODY: usize = 1024 * 1024;
/// Most response header fields.
const MAX_RESPONSE_HEADERS: usize = 100;

/// Where requests go: an `http(s)://host[:port][/path][?query]` URL, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://`: TLS, never a plaintext fallback.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query sent in the request line.
    pub path: String,
    /// The `Host` header value.
    pub authority: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err("must start with http:// or https://".into());
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".into());
        }
        let path = path.split('#').next().unwrap_or("");
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path contains spaces or control characters".into());
        }
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })?;
        if tls && ServerName::try_from(host.clone()).is_err() {
            return Err(format!("{host:?} is not a valid TLS server name"));
        }
        Ok(Target {
            tls,
            host,
            port,
            path,
            authority: authority.to_owned(),
        })
    }

    /// The URL again, for log lines.
    pub fn display(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6.split_once(']').ok_or("unclosed [ in host")?;
        (h, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
    };
    Ok((host.to_owned(), port))
}

/// An outgoing request: the caller has already chosen the headers (no `Host` or
/// `Content-Length`; those are written here).
#[derive(Debug)]
pub struct OutRequest<'a> {
    pub method: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// A connection to the target, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A forwarding client for one target with a pool of idle keep-alive connections.
pub struct Client {
    target: Target,
    timeout: Duration,
    idle: Mutex<Vec<Stream>>,
    max_idle: usize,
    /// Set for `https://` targets.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// How a connection fared, to decide whether to retry on a fresh one.
enum Failure {
    /// Nothing came back at all: a pooled connection the peer had already closed.
    Stale(String),
    Other(String),
}

impl Client {
    /// A client for `target`; `tls` is required for `https://` targets (see `crate::tls`).
    pub fn new(
        target: Target,
        timeout: Duration,
        max_idle: usize,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, String> {
        let tls = match (target.tls, tls) {
            (false, _) => None,
            (true, None) => return Err("https:// target without TLS settings".into()),
            (true, Some(config)) => {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|_| format!("{:?} is not a valid TLS server name", target.host))?;
                Some((TlsConnector::from(config), name))
            }
        };
        Ok(Client {
            target,
            timeout,
            idle: Mutex::new(Vec::new()),
            max_idle,
            tls,
        })
    }

    async fn connect(&self) -> Result<Stream, String> {
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, name)) => connector
                .connect(name.clone(), tcp)
                .await
                .map(|s| Stream::Tls(Box::new(s)))
                .map_err(|e| format!("TLS handshake: {e}")),
        }
    }

    /// Sends `req` and reads the answer, all within the forward timeout.
    pub async fn send(&self, req: &OutRequest<'_>) -> Attempt {
        let mut wire = Vec::with_capacity(req.body.len() + 512);
        self.encode(req, &mut wire);
        let deadline = self.timeout;
        match tokio::time::timeout(deadline, self.exchange(&wire, req.method == "HEAD")).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::Failed(format!("no response within {deadline:?}")),
        }
    }

    async fn exchange(&self, wire: &[u8], head: bool) -> Attempt {
        let pooled = self.idle.lock().expect("pool lock poisoned").pop();
        if let Some(conn) = pooled {
            match self.on(conn, wire, head).await {
                Ok(attempt) => return attempt,
                // The keep-alive connection was closed under us; try once on a fresh one.
                Err(Failure::Stale(_)) => {}
                Err(Failure::Other(e)) => return Attempt::Failed(e),
            }
        }
        let conn = match self.connect().await {
            Ok(c) => c,
            Err(e) => return Attempt::Failed(e),
        };
        match self.on(conn, wire, head).await {
            Ok(attempt) => attempt,
            Err(Failure::Stale(e) | Failure::Other(e)) => Attempt::Failed(e),
        }
    }

    async fn on(&self, mut conn: Stream, wire: &[u8], head: bool) -> Result<Attempt, Failure> {
        if let Err(e) = conn.write_all(wire).await {
            return Err(Failure::Stale(format!("write: {e}")));
        }
        let mut buf = Vec::with_capacity(4096);
        let (status, retry_after, reusable) = read_response(&mut conn, &mut buf, head).await?;
        if reusable {
            let mut idle = self.idle.lock().expect("pool lock poisoned");
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
        Ok(Attempt::Status {
            status,
            retry_after,
        })
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
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", req.body.len()).as_bytes());
        out.extend_from_slice(req.body);
    }
}

/// Reads one final response (skipping `1xx`); returns status, `Retry-After` and whether the
/// connection can carry another request.
async fn read_response(
    conn: &mut Stream,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Result<(u16, Option<Duration>, bool), Failure> {
    loop {
        let parsed = parse_response_head(buf).map_err(Failure::Other)?;
        let Some((status, headers, used)) = parsed else {
            fill(conn, buf).await?;
            continue;
        };
        buf.drain(..used);
        if (100..200).contains(&status) {
            continue;
        }
        let retry_after = header_values(&headers, "retry-after")
            .next()
            .and_then(parse_retry_after);
        let close = header_values(&headers, "connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"));
        let reusable = !close && read_body(conn, buf, status, &headers, head_request).await;
        return Ok((status, retry_after, reusable));
    }
}

type ParsedHead = (u16, Vec<(String, String)>, usize);

fn parse_response_head(buf: &[u8]) -> Result<Option<ParsedHead>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(used)) => {
            let status = resp.code.ok_or("response without status")?;
            let headers = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            Ok(Some((status, headers, used)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            Err("response head too large".into())
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("malformed response: {e}")),
    }
}

/// Reads the body if it is framed and small; true when the connection stays usable.
async fn read_body(
    conn: &mut Stream,
    buf: &mut Vec<u8>,
    status: u16,
    headers: &[(String, String)],
    head_request: bool,
) -> bool {
    if head_request || status == 204 || status == 304 {
        return buf.is_empty();
    }
    if header_values(headers, "transfer-encoding").next().is_some() {
        let mut decoder = ChunkedDecoder::new(MAX_RESPONSE_BODY as u64);
        let mut sink = Vec::new();
        loop {
            match decoder.decode(buf, &mut sink) {
                Ok(used) => {
                    buf.drain(..used);
                }
                Err(_) => return false,
            }
            if decoder.is_done() {
                return buf.is_empty();
            }
            sink.clear();
            if fill(conn, buf).await.is_err() {
                return false;
            }
        }
    }
    let Some(len) = header_values(headers, "content-length").next() else {
        return false; // delimited by close
    };
    let Ok(len) = len.trim().parse::<usize>() else {
        return false;
    };
    if len > MAX_RESPONSE_BODY {
        return false;
    }
    while buf.len() < len {
        if fill(conn, buf).await.is_err() {
            return false;
        }
    }
    buf.len() == len
}

async fn fill(conn: &mut Stream, buf: &mut Vec<u8>) -> Result<(), Failure> {
    buf.reserve(8192);
    let empty = buf.is_empty();
    match conn.read_buf(buf).await {
        Ok(0) if empty => Err(Failure::Stale("connection closed before a response".into())),
        Ok(0) => Err(Failure::Other("connection closed mid-response".into())),
        Ok(_) => Ok(()),
        Err(e) if empty => Err(Failure::Stale(format!("read: {e}"))),
        Err(e) => Err(Failure::Other(format!("read: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("http://127.0.0.1:3000/hooks/in?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 3000, "/hooks/in?x=1")
        );
        assert_eq!(t.authority, "127.0.0.1:3000");
        let t = Target::parse("http://app.internal").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = Target::parse("http://[::1]:8081?q").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8081, "/?q")
        );
        for bad in [
            "",
            "ftp://x",
            "http://",
            "http://:80/",
            "http://h:port/",
            "http://u:p@h/",
            "http://h/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
        let t = Target::parse("https://app.internal/in").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.port, t.display().as_str()),
            (443, "https://app.internal/in")
        );
    }

    #[test]
    fn response_heads_parse_or_wait() {
        let (status, headers, used) =
            parse_response_head(b"HTTP/1.1 503 Busy\r\nRetry-After: 3\r\n\r\nrest")
                .unwrap()
                .unwrap();
        assert_eq!((status, used), (503, 37));
        assert_eq!(headers[0].1, "3");
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(parse_response_head(b"NOT HTTP\r\n\r\n").is_err());
    }
}
