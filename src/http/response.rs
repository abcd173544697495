//! Responses: a status, a few headers, a body (or a stream of chunks), and their HTTP/1.1
//! wire form.

use std::borrow::Cow;

use tokio::sync::mpsc;

/// A response to one request.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Extra header fields; `Content-Length` and `Connection` are written by `encode`.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
    /// A body sent as it is produced instead of `body` (`Transfer-Encoding: chunked`),
    /// until the sender is dropped; the connection closes after it.
    pub stream: Option<mpsc::Receiver<Vec<u8>>>,
}

impl Response {
    /// A response with a JSON body.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.into(),
            close: false,
            stream: None,
        }
    }

    /// A `200` whose body is whatever `chunks` yields, sent as it comes.
    pub fn streaming(content_type: &str, chunks: mpsc::Receiver<Vec<u8>>) -> Self {
        Response {
            status: 200,
            headers: vec![("Content-Type", content_type.to_owned().into())],
            body: Vec::new(),
            close: true,
            stream: Some(chunks),
        }
    }

    /// A response with a plain-text body.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![
                ("Content-Type", "text/plain; charset=utf-8".into()),
                ("X-Content-Type-Options", "nosniff".into()),
            ],
            body: body.into(),
            close: false,
            stream: None,
        }
    }

    /// The `{"error":"<reason>"}` answer used for every refusal.
    pub fn error(status: u16, reason: &str) -> Self {
        let body = serde_json::json!({ "error": reason }).to_string();
        Response::json(status, body)
    }

    /// `405` with the `Allow` header listing the methods the path supports.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Response::error(405, "method not allowed").with_header("Allow", allow)
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Marks the connection to be closed after this response.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Appends the wire form to `out`. `head_only` leaves the body out (answers to `HEAD`);
    /// `Content-Length` still announces it.
    pub fn encode(&self, head_only: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        decimal(self.status.into(), out);
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.stream.is_some() {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else {
            out.extend_from_slice(b"Content-Length: ");
            decimal(self.body.len() as u64, out);
            out.extend_from_slice(b"\r\n");
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// One chunk of a chunked body (an empty `data` would end it, so it is never framed).
pub fn chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, without going through `fmt` (this is on every answer's path).
pub fn decimal(n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The reason phrase for the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_status_headers_length_and_body() {
        let mut out = Vec::new();
        Response::json(200, r#"{"id":"1-0"}"#).encode(false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"id\":\"1-0\"}"
        );
    }

    #[test]
    fn decimals_as_fmt_writes_them() {
        for n in [0, 7, 10, 99, 100, 65535, 1 << 40, u64::MAX] {
            let mut out = b"x".to_vec();
            decimal(n, &mut out);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }

    #[test]
    fn streams_are_chunked_and_close() {
        let (_tx, rx) = mpsc::channel(1);
        let mut out = Vec::new();
        Response::streaming("text/event-stream", rx).encode(false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        let mut framed = Vec::new();
        chunk(b"data: 1\n\n", &mut framed);
        chunk(b"", &mut framed);
        assert_eq!(framed, b"9\r\ndata: 1\n\n\r\n");
    }

    #[test]
    fn head_only_keeps_length_but_drops_body() {
        let mut out = Vec::new();
        Response::text(200, "abc").closing().encode(true, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn errors_are_json_and_405_lists_allow() {
        let r = Response::method_not_allowed("GET, HEAD");
        assert_eq!(r.status, 405);
        assert_eq!(r.body, br#"{"error":"method not allowed"}"#);
        assert!(r.headers.contains(&("Allow", "GET, HEAD".into())));
    }
}
