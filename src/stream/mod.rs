//! Everything that speaks to Redis: the stored record's field names, the commands, and the one
//! shared multiplexed connection with its deadlines and reconnects. Nothing else builds RESP.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use crate::config::Secret;

mod dlq;
mod group;
mod info;
mod reader;
mod record;

pub use dlq::valid_id;
pub use group::{Claimed, GroupInfo};
pub use reader::Reader;
pub use record::{DeadLetter, Entry, Record, parse_entries};

/// Deadline for one whole Redis operation, connecting included: a dead or frozen Redis must
/// turn into a `503` well within the ~2 s a sender can be kept waiting.
pub const OP_DEADLINE: Duration = Duration::from_millis(1800);
/// Connect timeout (the redis crate default of 0.2x is none at all).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Response timeout of the shared connection; below `OP_DEADLINE`.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Why Redis did not take or answer a command.
#[derive(Debug)]
pub enum StoreError {
    /// No answer within the deadline.
    Timeout,
    /// Could not connect, or the connection broke.
    Connection(redis::RedisError),
    /// Redis answered with an error (`OOM`, `MISCONF`, `WRONGTYPE`, …).
    Refused(redis::RedisError),
    /// Redis answered something this code does not understand.
    Protocol(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout => write!(f, "redis did not answer within {OP_DEADLINE:?}"),
            StoreError::Connection(e) => write!(f, "redis connection failed: {e}"),
            StoreError::Refused(e) => write!(f, "redis refused the command: {e}"),
            StoreError::Protocol(what) => write!(f, "unexpected redis reply: {what}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A command or a pipeline, run the same way.
#[derive(Clone, Copy)]
enum Query<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
}

/// The shared connection to Redis and the stream it writes to.
///
/// Every call carries a deadline. A connection that failed or timed out is dropped and the
/// next call reconnects (one caller at a time), so the server heals by itself when Redis
/// comes back, also from a frozen Redis that never closed its sockets.
pub struct Store {
    client: Client,
    stream: String,
    /// The current connection with a generation number, so a failure only drops the
    /// connection it happened on, not a fresh one another task just made.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    connecting: tokio::sync::Mutex<u64>,
    up: AtomicBool,
}

impl Store {
    /// A store for `stream`; connects lazily, so the server starts even while Redis is down.
    pub fn new(url: &Secret, stream: &str) -> Result<Self, StoreError> {
        Self::with_ca(url, None, stream)
    }

    /// A store for the configured Redis and main stream.
    pub fn from_config(config: &crate::config::CommonConfig) -> Result<Self, StoreError> {
        Self::with_ca(&config.redis_url, config.ca_pem.as_deref(), &config.stream)
    }

    /// Like `new`, trusting `ca` (PEM) for `rediss://`.
    pub fn with_ca(url: &Secret, ca: Option<&[u8]>, stream: &str) -> Result<Self, StoreError> {
        let client = open_client(url, ca)?;
        Ok(Store {
            client,
            stream: stream.to_owned(),
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(0),
            up: AtomicBool::new(true),
        })
    }

    /// Whether the last operation reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The main stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Appends `record` to the stream; returns its id once Redis has it.
    pub async fn append(&self, record: &Record) -> Result<String, StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream).arg("*");
        record.write_fields(&mut cmd);
        self.run(&cmd).await
    }

    /// `PING`, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run::<String>(&redis::cmd("PING")).await.map(drop)
    }

    /// Runs one command on the shared connection within `OP_DEADLINE`.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.exec(Query::Cmd(cmd)).await
    }

    /// Runs a pipeline (atomic when built with `.atomic()`) within `OP_DEADLINE`.
    async fn run_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.exec(Query::Pipe(pipe)).await
    }

    async fn exec<T: redis::FromRedisValue>(&self, query: Query<'_>) -> Result<T, StoreError> {
        let attempt = async {
            let (generation, mut conn) = self.connection().await?;
            let reply = match query {
                Query::Cmd(cmd) => cmd.query_async::<T>(&mut conn).await,
                Query::Pipe(pipe) => pipe.query_async::<T>(&mut conn).await,
            };
            reply.map_err(|e| (generation, e))
        };
        let result = match tokio::time::timeout(OP_DEADLINE, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err((generation, e))) => Err(self.classify(generation, e)),
            Err(_) => {
                // A timed-out command may still run on the server; the socket may be dead
                // without anyone noticing (frozen Redis): start over on a new one.
                self.drop_connection(None);
                Err(StoreError::Timeout)
            }
        };
        self.note(&result);
        result
    }

    fn classify(&self, generation: u64, e: redis::RedisError) -> StoreError {
        if e.code().is_some() && !e.is_connection_dropped() {
            StoreError::Refused(e)
        } else {
            self.drop_connection(Some(generation));
            if e.is_timeout() {
                StoreError::Timeout
            } else {
                StoreError::Connection(e)
            }
        }
    }

    /// The current connection, connecting first if there is none.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), (u64, redis::RedisError)> {
        if let Some(c) = self.current.lock().expect("store lock poisoned").clone() {
            return Ok(c);
        }
        let mut generation = self.connecting.lock().await;
        if let Some(c) = self.current.lock().expect("store lock poisoned").clone() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| (*generation, e))?;
        *generation += 1;
        let fresh = (*generation, conn);
        *self.current.lock().expect("store lock poisoned") = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets the connection (only the one of `generation`, when given).
    fn drop_connection(&self, generation: Option<u64>) {
        let mut current = self.current.lock().expect("store lock poisoned");
        if generation.is_none() || current.as_ref().map(|c| c.0) == generation {
            *current = None;
        }
    }

    /// Logs Redis going away and coming back, once per change.
    fn note<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) | Err(StoreError::Refused(_) | StoreError::Protocol(_)) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    log::info!("redis reachable again");
                }
            }
            Err(e) => {
                if self.up.swap(false, Ordering::Relaxed) {
                    log::warn!("redis unreachable: {e}");
                }
            }
        }
    }
}

/// A client for `url`; the URL (it may hold a password) never appears in the error.
/// With `ca` (PEM), a `rediss://` connection trusts exactly those roots (the redis crate
/// replaces its bundled roots with them); without, the bundled Mozilla roots.
fn open_client(url: &Secret, ca: Option<&[u8]>) -> Result<Client, StoreError> {
    crate::tls::install_default_provider();
    let invalid = |_| StoreError::Protocol("invalid REDIS_URL".into());
    match ca {
        Some(pem) if url.expose().starts_with("rediss://") => {
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            };
            Client::build_with_tls(url.expose(), certs).map_err(invalid)
        }
        _ => Client::open(url.expose()).map_err(invalid),
    }
}

/// Whether `e` is Redis's `NOGROUP` (the stream or the group was deleted).
pub fn is_nogroup(e: &StoreError) -> bool {
    matches!(e, StoreError::Refused(r) if r.code() == Some("NOGROUP"))
}
