//! Why a request was refused, and the status each refusal is answered with.

use std::fmt;

/// A request the server refuses to process. Every variant closes the connection: after a
/// framing error nothing that follows on it can be trusted (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Syntax or framing the server will not interpret (`400`).
    Malformed(&'static str),
    /// A body-carrying method without `Content-Length` or `Transfer-Encoding` (`411`).
    LengthRequired,
    /// The body is larger than the configured maximum (`413`).
    BodyTooLarge,
    /// The header section is larger than its limit (`431`).
    HeadTooLarge,
    /// More header fields than allowed (`431`).
    TooManyHeaders,
    /// An `Expect` other than `100-continue` (`417`).
    ExpectationFailed,
}

impl RequestError {
    /// The status code this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Malformed(_) => 400,
            RequestError::LengthRequired => 411,
            RequestError::BodyTooLarge => 413,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::ExpectationFailed => 417,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Malformed(why) => f.write_str(why),
            RequestError::LengthRequired => f.write_str("length required"),
            RequestError::BodyTooLarge => f.write_str("body too large"),
            RequestError::HeadTooLarge => f.write_str("header section too large"),
            RequestError::TooManyHeaders => f.write_str("too many headers"),
            RequestError::ExpectationFailed => f.write_str("unsupported expectation"),
        }
    }
}

impl std::error::Error for RequestError {}
