//! Incremental decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! Pure: feed it bytes as they arrive, it appends body data to `out` and reports how many
//! input bytes it consumed. It is stricter than httparse's chunk-size helper: an empty size
//! line, whitespace after the size, an extension that is not `;name[=token|"quoted"]`, a bare
//! LF anywhere in the framing, a missing CRLF after the data, an overlong size or extension
//! are all errors. Trailer fields are parsed as header fields under the same limits (a line
//! that is not `name: value`, such as a smuggled request line, is an error) and discarded.

use super::error::RequestError;

/// Longest chunk-size line we accept, extensions included; bounds memory and slow senders.
const MAX_SIZE_LINE: usize = 1024;
/// Most bytes of trailer section we read before giving up (the header section's limit).
const MAX_TRAILER: usize = 16 * 1024;
/// Most trailer fields (the header section's limit).
const MAX_TRAILER_FIELDS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// After chunk data, expecting CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    Done,
}

/// Decoder state for one chunked body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    max_body: u64,
    body_len: u64,
    trailer_len: usize,
    trailer_fields: usize,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies longer than `max_body` bytes (`413`).
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder {
            state: State::Size,
            max_body,
            body_len: 0,
            trailer_len: 0,
            trailer_fields: 0,
        }
    }

    /// True once the terminating chunk and trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as possible, appending body bytes to `out`.
    ///
    /// Returns the number of input bytes consumed. Bytes that form an incomplete line are
    /// left unconsumed: call again with them and more input. After `is_done()` the rest of
    /// `input` belongs to the next request and is not consumed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, RequestError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            let used = match self.state {
                State::Done => return Ok(pos),
                State::Size => self.size_line(rest)?,
                State::Data(left) => self.data(rest, left, out),
                State::DataEnd => self.data_end(rest)?,
                State::Trailer => self.trailer_line(rest)?,
            };
            match used {
                Some(0) | None => return Ok(pos),
                Some(n) => pos += n,
            }
        }
    }

    fn size_line(&mut self, rest: &[u8]) -> Result<Option<usize>, RequestError> {
        let Some(line) = take_line(rest, MAX_SIZE_LINE)? else {
            return Ok(None);
        };
        let size = parse_size_line(&rest[..line])?;
        self.body_len = self.body_len.saturating_add(size);
        if self.body_len > self.max_body {
            return Err(RequestError::BodyTooLarge);
        }
        self.state = if size == 0 {
            State::Trailer
        } else {
            State::Data(size)
        };
        Ok(Some(line + 2))
    }

    fn data(&mut self, rest: &[u8], left: u64, out: &mut Vec<u8>) -> Option<usize> {
        let n = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
        out.extend_from_slice(&rest[..n]);
        let left = left - n as u64;
        self.state = if left == 0 {
            State::DataEnd
        } else {
            State::Data(left)
        };
        Some(n)
    }

    fn data_end(&mut self, rest: &[u8]) -> Result<Option<usize>, RequestError> {
        match rest {
            [b'\r', b'\n', ..] => {
                self.state = State::Size;
                Ok(Some(2))
            }
            [] | [b'\r'] => Ok(None),
            _ => Err(RequestError::Malformed("missing CRLF after chunk data")),
        }
    }

    fn trailer_line(&mut self, rest: &[u8]) -> Result<Option<usize>, RequestError> {
        let Some(line) = take_line(rest, MAX_TRAILER)? else {
            return Ok(None);
        };
        self.trailer_len += line + 2;
        if self.trailer_len > MAX_TRAILER {
            return Err(RequestError::Malformed("trailer section too large"));
        }
        if line == 0 {
            self.state = State::Done;
        } else {
            self.trailer_fields += 1;
            if self.trailer_fields > MAX_TRAILER_FIELDS {
                return Err(RequestError::Malformed("too many trailer fields"));
            }
            check_field_line(&rest[..line])?;
        }
        Ok(Some(line + 2))
    }
}

/// Finds a CRLF-terminated line at the start of `rest` and returns its length without the
/// CRLF; `None` when more input is needed. A bare CR or LF, or a line longer than `max`,
/// is an error.
fn take_line(rest: &[u8], max: usize) -> Result<Option<usize>, RequestError> {
    for (i, &b) in rest.iter().enumerate() {
        if i > max {
            return Err(RequestError::Malformed("chunk framing line too long"));
        }
        match b {
            b'\n' => return Err(RequestError::Malformed("bare LF in chunk framing")),
            b'\r' => {
                return match rest.get(i + 1) {
                    Some(b'\n') => Ok(Some(i)),
                    Some(_) => Err(RequestError::Malformed("bare CR in chunk framing")),
                    None => Ok(None),
                };
            }
            _ => {}
        }
    }
    if rest.len() > max {
        return Err(RequestError::Malformed("chunk framing line too long"));
    }
    Ok(None)
}

/// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1.1): 1–16 hex digits, then any number of
/// `BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ]`, nothing else: no
/// whitespace that does not precede a `;`, no empty extension. Extensions are ignored.
fn parse_size_line(line: &[u8]) -> Result<u64, RequestError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(RequestError::Malformed("invalid chunk size"));
    }
    if digits > 16 {
        return Err(RequestError::Malformed("chunk size too large"));
    }
    check_extensions(&line[digits..])?;
    let hex = std::str::from_utf8(&line[..digits]).expect("hex digits are ASCII");
    u64::from_str_radix(hex, 16).map_err(|_| RequestError::Malformed("invalid chunk size"))
}

fn check_extensions(mut rest: &[u8]) -> Result<(), RequestError> {
    let bad = RequestError::Malformed("invalid chunk extension");
    while !rest.is_empty() {
        rest = skip_bws(rest);
        rest = rest.strip_prefix(b";").ok_or(bad)?;
        rest = skip_bws(rest);
        let name = token_len(rest);
        if name == 0 {
            return Err(bad);
        }
        rest = &rest[name..];
        let after = skip_bws(rest);
        if let Some(value) = after.strip_prefix(b"=") {
            let value = skip_bws(value);
            let len = match value.first() {
                Some(b'"') => quoted_len(value).ok_or(bad)?,
                _ => token_len(value),
            };
            if len == 0 {
                return Err(bad);
            }
            rest = &value[len..];
        }
    }
    Ok(())
}

fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    &s[n..]
}

/// Length of the `token` (RFC 9110 §5.6.2) at the start of `s`.
fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|b| is_tchar(**b)).count()
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Length of the `quoted-string` at the start of `s` (opening quote included), if valid.
fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                let next = *s.get(i + 1)?;
                if !(next == b'\t' || next == b' ' || next.is_ascii_graphic() || next >= 0x80) {
                    return None;
                }
                i += 2;
            }
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

/// A trailer line must be a header field: `token ":" OWS value OWS`, the value of visible
/// characters, spaces, tabs and obs-text.
fn check_field_line(line: &[u8]) -> Result<(), RequestError> {
    let name = token_len(line);
    if name == 0 || line.get(name) != Some(&b':') {
        return Err(RequestError::Malformed("invalid trailer field"));
    }
    let value = &line[name + 1..];
    if value
        .iter()
        .any(|&b| !(b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80))
    {
        return Err(RequestError::Malformed("invalid trailer field"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
