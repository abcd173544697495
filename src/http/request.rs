//! Request heads: parsing with httparse plus the framing rules httparse leaves to us
//! (RFC 9112 §6: `Content-Length`, `Transfer-Encoding`, `Host`, `Expect`, `Connection`).
//!
//! The parser is pure: bytes in, `Ok(None)` for "need more", a typed error for bad input.

use std::mem::MaybeUninit;

use super::error::RequestError;
use super::fields::{FieldValue, Fields, header_values};

/// Most header fields any request may have (SPEC.md); `HeadLimits::max_headers` may lower it.
pub const MAX_HEADERS: usize = 100;

/// The limits a request head is checked against.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Largest header section in bytes, request line included; beyond it `431`.
    pub max_head: usize,
    /// Most header fields (at most `MAX_HEADERS`); beyond it `431`.
    pub max_headers: usize,
    /// Largest body in bytes; a larger `Content-Length` is refused before reading (`413`).
    pub max_body: u64,
}

/// HTTP minor version of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Fields whose values decide framing and routing: they must be text.
const FRAMING_FIELDS: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "host",
    "expect",
    "connection",
];

/// A parsed and validated request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target in origin form (path plus optional query); an absolute-form
    /// target (`http://host/path`) is reduced to it.
    pub target: String,
    pub version: Version,
    /// Header fields in arrival order, names as received, duplicates kept.
    pub headers: Fields,
    pub framing: Framing,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` and waits for our interim answer.
    pub expect_continue: bool,
}

impl Head {
    /// The target's path, without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The target's query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Values of every header named `name` (case-insensitive), in arrival order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        header_values(&self.headers, name)
    }
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete (and still within `limits.max_head`),
/// `Ok(Some((head, consumed)))` once it is complete and valid.
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Result<Option<(Head, usize)>, RequestError> {
    // Stack slots, left uninitialised: this runs on every read of every request.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let slots = &mut slots[..limits.max_headers.min(MAX_HEADERS)];
    let consumed = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_head => n,
        Ok(httparse::Status::Complete(_)) => return Err(RequestError::HeadTooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head => {
            return Err(RequestError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(e) => return Err(RequestError::Malformed(httparse_reason(e))),
    };
    // httparse accepts bare LF line endings; RFC 9112 lets us refuse them, and we do so
    // that no two parsers on the path can disagree about where the head ends.
    if has_bare_lf(&buf[..consumed]) {
        return Err(RequestError::Malformed("bare LF in request head"));
    }
    let method = req.method.unwrap_or_default().to_owned();
    let target = origin_form(req.path.unwrap_or_default())?;
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    // One UTF-8 check for the whole head (ASCII but for the odd obs-text value).
    let text = std::str::from_utf8(&buf[..consumed]).ok();
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = FieldValue::from_head(text, buf, h.value);
        if value.as_str().is_none()
            && FRAMING_FIELDS
                .iter()
                .any(|f| h.name.eq_ignore_ascii_case(f))
        {
            return Err(RequestError::Malformed("framing header value is not text"));
        }
        headers.push((h.name.to_owned(), value));
    }
    let head = validate(method, target, version, headers, limits)?;
    Ok(Some((head, consumed)))
}

/// The origin form of a request target: a path as is, or the path of an absolute-form target
/// (RFC 9112 §3.2.2 says a server must accept those); anything else is malformed.
fn origin_form(target: &str) -> Result<String, RequestError> {
    if target.starts_with('/') {
        return Ok(target.to_owned());
    }
    let scheme_end = target.find("://").filter(|i| {
        let scheme = &target[..*i];
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    });
    let Some(i) = scheme_end else {
        return Err(RequestError::Malformed(
            "request target must be a path or an absolute URL",
        ));
    };
    let rest = &target[i + 3..];
    let path_at = rest.find(['/', '?']).unwrap_or(rest.len());
    if path_at == 0 {
        return Err(RequestError::Malformed("absolute URL without a host"));
    }
    Ok(match &rest[path_at..] {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    })
}

fn validate(
    method: String,
    target: String,
    version: Version,
    headers: Fields,
    limits: &HeadLimits,
) -> Result<Head, RequestError> {
    if version == Version::Http11 && header_values(&headers, "host").count() != 1 {
        return Err(RequestError::Malformed(
            "HTTP/1.1 request needs exactly one Host",
        ));
    }
    let framing = framing(&method, version, &headers)?;
    if let Framing::Length(n) = framing
        && n > limits.max_body
    {
        return Err(RequestError::BodyTooLarge);
    }
    let expect_continue = expects_continue(&headers)? && version == Version::Http11;
    let keep_alive = keep_alive(version, &headers);
    Ok(Head {
        method,
        target,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// Decides body framing per RFC 9112 §6.1–6.3, refusing every ambiguous case.
fn framing(
    method: &str,
    version: Version,
    headers: &[(String, FieldValue)],
) -> Result<Framing, RequestError> {
    let te = || header_values(headers, "transfer-encoding");
    let cl = || header_values(headers, "content-length");
    if te().next().is_some() {
        if cl().next().is_some() {
            return Err(RequestError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if version == Version::Http10 {
            return Err(RequestError::Malformed("Transfer-Encoding in HTTP/1.0"));
        }
        return transfer_coding(te());
    }
    if let Some(n) = content_length(cl())? {
        return Ok(Framing::Length(n));
    }
    if matches!(method, "POST" | "PUT" | "PATCH") {
        return Err(RequestError::LengthRequired);
    }
    Ok(Framing::None)
}

/// Only a single `chunked` coding is supported; anything else is refused.
fn transfer_coding<'a>(values: impl Iterator<Item = &'a str>) -> Result<Framing, RequestError> {
    let mut codings = values
        .flat_map(|v| v.split(','))
        .map(|c| c.trim_matches([' ', '\t']));
    match (codings.next(), codings.next()) {
        (Some(only), None) if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
        _ => Err(RequestError::Malformed("unsupported Transfer-Encoding")),
    }
}

/// All `Content-Length` values (several fields or a comma list) must be the same valid number.
fn content_length<'a>(values: impl Iterator<Item = &'a str>) -> Result<Option<u64>, RequestError> {
    let mut found: Option<u64> = None;
    for item in values.flat_map(|v| v.split(',')) {
        let n = parse_length(item.trim_matches([' ', '\t']))
            .ok_or(RequestError::Malformed("invalid Content-Length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(RequestError::Malformed("conflicting Content-Length"));
        }
        found = Some(n);
    }
    Ok(found)
}

/// 1*DIGIT, no sign, no spaces, no overflow.
fn parse_length(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

fn expects_continue(headers: &[(String, FieldValue)]) -> Result<bool, RequestError> {
    let mut cont = false;
    for v in header_values(headers, "expect") {
        if v.trim().eq_ignore_ascii_case("100-continue") {
            cont = true;
        } else {
            return Err(RequestError::ExpectationFailed);
        }
    }
    Ok(cont)
}

fn keep_alive(version: Version, headers: &[(String, FieldValue)]) -> bool {
    let has = |token: &str| {
        header_values(headers, "connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match version {
        Version::Http11 => !has("close"),
        Version::Http10 => has("keep-alive") && !has("close"),
    }
}

/// Whether a `\n` in `head` is not preceded by `\r`. Only the few line ends are looked at
/// (memchr skips the bytes between them); a byte loop was a fifth of reading a head.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
