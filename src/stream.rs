//! Everything that speaks to Redis: the stored record's field names, the commands, and the one
//! shared multiplexed connection with its deadlines and reconnects. Nothing else builds RESP.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use crate::config::Secret;

/// Version of the record format, stored in field `v`.
pub const RECORD_VERSION: &str = "1";

/// Deadline for one whole Redis operation, connecting included: a dead or frozen Redis must
/// turn into a `503` well within the ~2 s a sender can be kept waiting.
pub const OP_DEADLINE: Duration = Duration::from_millis(1800);
/// Connect timeout (the redis crate default of 0.2x is none at all).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Response timeout of the shared connection; below `OP_DEADLINE`.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1500);

/// One webhook as stored in the main stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unix time in milliseconds when the server finished reading it.
    pub received_at: u64,
    pub method: String,
    /// Path with query string, as received.
    pub path: String,
    /// `<source>` of `/webhook/<source>`, or empty.
    pub source: String,
    /// Peer address as seen by the server.
    pub remote: String,
    /// Header fields in arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The raw body bytes, after de-chunking.
    pub body: Vec<u8>,
}

impl Record {
    /// The `headers` field: a JSON array of `[name, value]` pairs.
    pub fn headers_json(&self) -> String {
        serde_json::to_string(&self.headers).expect("string pairs always serialize")
    }
}

/// Why Redis did not take or answer a command.
#[derive(Debug)]
pub enum StoreError {
    /// No answer within the deadline.
    Timeout,
    /// Could not connect, or the connection broke.
    Connection(redis::RedisError),
    /// Redis answered with an error (`OOM`, `MISCONF`, `WRONGTYPE`, …).
    Refused(redis::RedisError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout => write!(f, "redis did not answer within {OP_DEADLINE:?}"),
            StoreError::Connection(e) => write!(f, "redis connection failed: {e}"),
            StoreError::Refused(e) => write!(f, "redis refused the command: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

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
        let client = Client::open(url.expose()).map_err(StoreError::Connection)?;
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

    /// Appends `record` to the stream; returns its id once Redis has it.
    pub async fn append(&self, record: &Record) -> Result<String, StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream)
            .arg("*")
            .arg("v")
            .arg(RECORD_VERSION)
            .arg("received_at")
            .arg(record.received_at)
            .arg("method")
            .arg(&record.method)
            .arg("path")
            .arg(&record.path)
            .arg("source")
            .arg(&record.source)
            .arg("remote")
            .arg(&record.remote)
            .arg("headers")
            .arg(record.headers_json())
            .arg("body")
            .arg(&record.body[..]);
        self.run(&cmd).await
    }

    /// `PING`, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run::<String>(&redis::cmd("PING")).await.map(drop)
    }

    /// Runs one command on the shared connection within `OP_DEADLINE`.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let attempt = async {
            let (generation, mut conn) = self.connection().await?;
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| (generation, e))
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
            Ok(_) | Err(StoreError::Refused(_)) => {
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
