//! Reading one final response: the head (skipping `1xx`), then the body as its framing says
//! (`Content-Length`, `chunked`, or until close), bounded, keeping its first KiB for log lines
//! and `events`, and whether the connection may carry another request (RFC 9112 §9.3).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::SendError;
use crate::http::chunked::ChunkedDecoder;
use crate::http::{FieldValue, Fields, header_values};

/// Largest response head we read.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest response body read to keep a connection; bigger ones cost the connection.
const MAX_RESPONSE_BODY: usize = 1024 * 1024;
/// Most response header fields.
const MAX_RESPONSE_HEADERS: usize = 100;
/// How much of a response body is kept.
pub const BODY_START: usize = 1024;

/// An answer from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Fields,
    /// The first `BODY_START` bytes of the body.
    pub body_start: Vec<u8>,
    /// The app answered before the whole request was written.
    pub early: bool,
}

impl Answer {
    /// `Retry-After` in delay-seconds (HTTP dates are ignored: local apps send seconds).
    pub fn retry_after(&self) -> Option<Duration> {
        header_values(&self.headers, "retry-after")
            .next()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    }
}

/// Reads one final response from `conn`; returns it and whether the connection may carry
/// another request. Bytes already read are in `buf`.
pub async fn read<R: AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Result<(Answer, bool), SendError> {
    loop {
        let Some((status, version, headers, used)) = parse_head(buf)? else {
            fill(conn, buf).await?;
            continue;
        };
        buf.drain(..used);
        if (100..200).contains(&status) {
            continue;
        }
        let connection = |token: &str| {
            header_values(&headers, "connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        // HTTP/1.0 is persistent only when it says so; HTTP/1.1 unless it says close.
        let persistent = match version {
            0 => connection("keep-alive") && !connection("close"),
            _ => !connection("close"),
        };
        let mut answer = Answer {
            status,
            headers,
            body_start: Vec::new(),
            early: false,
        };
        let framed = read_body(conn, buf, &mut answer, head_request).await;
        return Ok((answer, persistent && framed));
    }
}

type Head = (u16, u8, Fields, usize);

fn parse_head(buf: &[u8]) -> Result<Option<Head>, SendError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(used)) => {
            let status = resp
                .code
                .ok_or_else(|| SendError::Lost("response without status".into()))?;
            let text = std::str::from_utf8(&buf[..used]).ok();
            let headers = resp
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), FieldValue::from_head(text, buf, h.value)))
                .collect();
            Ok(Some((status, resp.version.unwrap_or(1), headers, used)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            Err(SendError::Lost("response head too large".into()))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(SendError::Lost(format!("malformed response: {e}"))),
    }
}

/// Reads the body (bounded) into `answer.body_start`; true when it was framed and read
/// whole, so the connection is positioned at the next response.
async fn read_body<R: AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut Vec<u8>,
    answer: &mut Answer,
    head_request: bool,
) -> bool {
    if head_request || answer.status == 204 || answer.status == 304 {
        return buf.is_empty();
    }
    let keep = |answer: &mut Answer, bytes: &[u8]| {
        let room = BODY_START.saturating_sub(answer.body_start.len());
        answer
            .body_start
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
    };
    if header_values(&answer.headers, "transfer-encoding")
        .next()
        .is_some()
    {
        let mut decoder = ChunkedDecoder::new(MAX_RESPONSE_BODY as u64);
        let mut body = Vec::new();
        loop {
            match decoder.decode(buf, &mut body) {
                Ok(used) => buf.drain(..used),
                Err(_) => return false,
            };
            keep(answer, &body);
            body.clear();
            if decoder.is_done() {
                return buf.is_empty();
            }
            if fill(conn, buf).await.is_err() {
                return false;
            }
        }
    }
    let length = header_values(&answer.headers, "content-length").next();
    let Some(Ok(len)) = length.map(|l| l.trim().parse::<usize>()) else {
        // Delimited by close: keep what arrives of its start, never reuse the connection.
        while answer.body_start.len() < BODY_START {
            keep(answer, buf);
            buf.clear();
            if fill(conn, buf).await.is_err() {
                break;
            }
        }
        return false;
    };
    if len > MAX_RESPONSE_BODY {
        keep(answer, buf);
        return false;
    }
    while buf.len() < len {
        if fill(conn, buf).await.is_err() {
            keep(answer, buf);
            return false;
        }
    }
    keep(answer, &buf[..len]);
    buf.drain(..len);
    buf.is_empty()
}

async fn fill<R: AsyncRead + Unpin>(conn: &mut R, buf: &mut Vec<u8>) -> Result<(), SendError> {
    buf.reserve(8192);
    match conn.read_buf(buf).await {
        Ok(0) if buf.is_empty() => {
            Err(SendError::Lost("connection closed before an answer".into()))
        }
        Ok(0) => Err(SendError::Lost("connection closed mid-answer".into())),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Err(SendError::Lost("connection reset before an answer".into()))
        }
        Err(e) => Err(SendError::Lost(format!("read: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8]) -> Result<(Answer, bool), SendError> {
        let mut conn = raw;
        let mut buf = Vec::new();
        read(&mut conn, &mut buf, false).await
    }

    #[tokio::test]
    async fn answers_with_their_body_start_and_persistence() {
        let (a, keep) =
            parse(b"HTTP/1.1 503 Busy\r\nRetry-After: 3\r\nContent-Length: 4\r\n\r\nbusy")
                .await
                .unwrap();
        assert_eq!(
            (a.status, a.body_start.as_slice(), keep),
            (503, &b"busy"[..], true)
        );
        assert_eq!(a.retry_after(), Some(Duration::from_secs(3)));
        let (a, keep) = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.body_start.as_slice(), keep),
            (200, &b"ok"[..], true)
        );
    }

    #[tokio::test]
    async fn http_1_0_and_close_delimited_answers_are_not_persistent() {
        let (_, keep) = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        assert!(!keep, "HTTP/1.0 without keep-alive");
        let (_, keep) =
            parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
        assert!(keep);
        let (a, keep) = parse(b"HTTP/1.1 500 Oops\r\n\r\nstack trace")
            .await
            .unwrap();
        assert_eq!(
            (a.body_start.as_slice(), keep),
            (&b"stack trace"[..], false)
        );
        let (_, keep) = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        assert!(!keep);
    }

    #[tokio::test]
    async fn a_long_body_keeps_only_its_start() {
        let mut raw = b"HTTP/1.1 500 X\r\nContent-Length: 5000\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'e', 5000));
        let (a, keep) = parse(&raw).await.unwrap();
        assert_eq!((a.body_start.len(), keep), (BODY_START, true));
    }

    #[tokio::test]
    async fn no_answer_or_garbage_is_lost() {
        assert!(matches!(parse(b"").await, Err(SendError::Lost(_))));
        assert!(matches!(
            parse(b"NOT HTTP\r\n\r\n").await,
            Err(SendError::Lost(_))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\n").await,
            Err(SendError::Lost(_))
        ));
    }
}
