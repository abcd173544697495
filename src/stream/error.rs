//! Why Redis did not take or answer a command.

use std::fmt;
use std::time::Duration;

/// Why Redis did not take or answer a command.
#[derive(Debug)]
pub enum StoreError {
    /// No answer within the deadline.
    Timeout(Duration),
    /// Could not connect, or the connection broke.
    Connection(redis::RedisError),
    /// Redis answered with an error (`OOM`, `MISCONF`, `WRONGTYPE`, `NOPERM`, …).
    Refused(redis::RedisError),
    /// Redis answered something this code does not understand.
    Protocol(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout(d) => write!(f, "redis did not answer within {d:?}"),
            StoreError::Connection(e) => {
                let text = e.to_string();
                if text.contains("UnknownIssuer") {
                    write!(
                        f,
                        "redis connection failed ({})",
                        crate::http::client::UNKNOWN_ISSUER
                    )
                } else if text.contains("CaUsedAsEndEntity") {
                    write!(
                        f,
                        "redis connection failed ({})",
                        crate::http::client::CA_AS_LEAF
                    )
                } else {
                    f.write_str("redis connection failed")
                }
            }
            StoreError::Refused(_) => f.write_str("redis refused the command"),
            StoreError::Protocol(what) => write!(f, "unexpected redis reply: {what}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Connection(e) | StoreError::Refused(e) => Some(e),
            StoreError::Timeout(_) | StoreError::Protocol(_) => None,
        }
    }
}

impl StoreError {
    /// What a failed command means: an error reply on a healthy connection is a refusal;
    /// anything else means the connection must not be used again.
    pub(super) fn from_redis(e: redis::RedisError, deadline: Duration) -> StoreError {
        if e.code().is_some() && !e.is_connection_dropped() {
            StoreError::Refused(e)
        } else if e.is_timeout() {
            StoreError::Timeout(deadline)
        } else {
            StoreError::Connection(e)
        }
    }

    /// Whether Redis itself answered (an error reply): the connection is fine.
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Refused(_) | StoreError::Protocol(_))
    }

    /// The Redis error code (`OOM`, `NOGROUP`, …) of a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::Refused(e) => e.code(),
            _ => None,
        }
    }
}
