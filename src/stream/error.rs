//! Why Redis did not take or answer a command.

use std::fmt;
use std::time::Duration;

/// Error replies of a node that does not serve the key as primary: after a failover
/// (`READONLY`, `UNBLOCKED` for a blocked read on a demoted primary, `MASTERDOWN`) or a
/// resharding (`MOVED`, `ASK`), or while the cluster settles (`CLUSTERDOWN`, `TRYAGAIN`).
const MISDIRECTED: [&str; 7] = [
    "READONLY",
    "UNBLOCKED",
    "MASTERDOWN",
    "MOVED",
    "ASK",
    "CLUSTERDOWN",
    "TRYAGAIN",
];

/// Why Redis did not take or answer a command.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// No answer within the deadline.
    Timeout(Duration),
    /// Could not connect, or the connection broke.
    Connection(redis::RedisError),
    /// Redis answered with an error (`OOM`, `MISCONF`, `WRONGTYPE`, `NOPERM`, …).
    Refused(redis::RedisError),
    /// Redis answered something this code does not understand.
    Protocol(String),
    /// The write is on the primary, but fewer than `RELAY_MIN_REPLICAS` replicas confirmed
    /// it in time: not safe from a failover yet.
    NotReplicated { want: u32, got: u32 },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout(d) => write!(f, "redis did not answer within {d:?}"),
            StoreError::Connection(e) | StoreError::Refused(e) if bad_credentials(e) => f
                .write_str(
                    "redis refused the credentials in REDIS_URL (a wrong password, or an ACL \
                     user that does not exist or is off)",
                ),
            StoreError::Connection(e) if e.kind() == redis::ErrorKind::Parse => f.write_str(
                "redis connection failed: not a Redis answer (is another service on REDIS_URL's \
                 port?)",
            ),
            StoreError::Connection(e) if e.code() == Some("LOADING") => f.write_str(
                "redis is loading its dataset into memory (it has just started): not usable \
                 until it is done",
            ),
            StoreError::Connection(e) if e.code() == Some("BUSY") => f.write_str(
                "redis is busy running a script past its busy-reply-threshold (a long EVAL or \
                 FCALL): not usable until it ends or SCRIPT KILL (FUNCTION KILL) stops it",
            ),
            StoreError::Connection(e) if e.code() == Some("READONLY") => f.write_str(
                "redis answered READONLY: this node is a replica (REDIS_URL names one, or a \
                 failover demoted it), and the relay writes: REDIS_URL must name the primary, \
                 or RELAY_SENTINELS follow failovers",
            ),
            StoreError::Refused(e) if e.code() == Some("NOAUTH") => f.write_str(
                "redis asks for a password and REDIS_URL has none: redis://:PASSWORD@host:port \
                 (or redis://USER:PASSWORD@host:port for an ACL user)",
            ),
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
            StoreError::NotReplicated { want, got } => write!(
                f,
                "only {got} of the {want} replicas RELAY_MIN_REPLICAS asks for confirmed the write in time"
            ),
        }
    }
}

/// Whether Redis refused the username or password: the redis crate's own kind when `AUTH`
/// fails while connecting, `WRONGPASS` when an `AUTH` reply reaches us as is.
fn bad_credentials(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed || e.code() == Some("WRONGPASS")
}

/// The code Redis answered with. For a pipeline, the first failed command's: the redis crate
/// names a pipeline's code only when it knows the code (`NOPERM`, not `OOM`), and a refusal
/// taken for a broken connection would be logged as `redis unreachable` and reconnected.
fn reply_code(e: &redis::RedisError) -> Option<String> {
    e.code().map(str::to_owned).or_else(|| {
        let failed = e.clone().into_server_errors()?;
        failed.first().map(|(_, reply)| reply.code().to_owned())
    })
}

/// A reply as the type the caller expects; one that does not fit is a protocol error (the
/// connection is fine).
pub(super) fn convert<T: redis::FromRedisValue>(reply: redis::Value) -> Result<T, StoreError> {
    T::from_redis_value(reply).map_err(|e| StoreError::Protocol(e.to_string()))
}

/// Whether `e` is Redis's `NOGROUP` (the stream or the group was deleted).
pub fn is_nogroup(e: &StoreError) -> bool {
    e.code() == Some("NOGROUP")
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Connection(e) | StoreError::Refused(e) => Some(e),
            StoreError::Timeout(_) | StoreError::Protocol(_) | StoreError::NotReplicated { .. } => {
                None
            }
        }
    }
}

impl StoreError {
    /// What a failed command means: an error reply on a healthy connection is a refusal;
    /// anything else means the connection must not be used again.
    pub(super) fn from_redis(e: redis::RedisError, deadline: Duration) -> StoreError {
        let code = reply_code(&e);
        match code.as_deref() {
            // A node that is no longer (or not) the primary for this key: a connection to
            // drop, so that the next command asks Sentinel or the Cluster again.
            Some(c) if MISDIRECTED.contains(&c) => StoreError::Connection(e),
            // A Redis that has just started reads its dataset first, and one running a script
            // past its busy threshold serves nothing else: each answers every command so until
            // it is done. As if it were not up yet, not a refusal.
            Some("LOADING" | "BUSY") => StoreError::Connection(e),
            Some(_) if !e.is_connection_dropped() => StoreError::Refused(e),
            _ if e.is_timeout() => StoreError::Timeout(deadline),
            _ => StoreError::Connection(e),
        }
    }

    /// Whether the other end closed the connection (a reset, a broken pipe, an early end),
    /// rather than refusing it or not answering.
    pub fn is_closed_by_peer(&self) -> bool {
        matches!(self, StoreError::Connection(e)
            if e.is_connection_dropped() && !e.is_connection_refusal())
    }

    /// Whether a node answered that it is not the primary for the key (`READONLY`, `MOVED`,
    /// …): reachable, but not where writes go.
    pub fn is_misdirected(&self) -> bool {
        matches!(self, StoreError::Connection(e)
            if reply_code(e).is_some_and(|c| MISDIRECTED.contains(&c.as_str())))
    }

    /// Whether Redis itself answered (an error reply): the connection is fine.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::Refused(_) | StoreError::Protocol(_) | StoreError::NotReplicated { .. }
        )
    }

    /// The Redis error code (`OOM`, `NOGROUP`, …) of a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::Refused(e) => e.code(),
            _ => None,
        }
    }
}
