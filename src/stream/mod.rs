//! Everything that speaks to Redis: the stored record's field names, the commands, and the one
//! shared multiplexed connection with its deadlines and reconnects. Nothing else builds RESP.

use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::config::{RedisTopology, Secret};
use locate::Locator;

mod acl;
mod append;
mod attempts;
mod batch;
mod dlq;
mod error;
mod group;
mod headers_json;
mod history;
mod id;
mod info;
mod layout;
mod link;
mod locate;
mod pending;
mod reader;
mod record;
pub mod relay_id;
mod status;
mod trace;
pub mod url;

pub use acl::{CLIENT as CLIENT_COMMANDS, CLIENT_ACTIVITY, SERVER as SERVER_COMMANDS};
pub use attempts::Stored;
use error::convert;
pub use error::{StoreError, is_nogroup};
pub use group::{DeadLettered, GroupInfo};
pub use history::Summary;
pub use id::{BadId, StreamId};
pub use layout::Layout;
pub use link::LinkSpeed;
pub use pending::Claimed;
pub use reader::Reader;
pub use record::{DeadLetter, Entry, Record, parse_entries};
pub use status::flush_logs;
pub use trace::{State, Trace, parse_activity};

/// Deadline for one small Redis operation, connecting included: a dead or frozen Redis must
/// turn into a `503` well within the ~2 s a sender can be kept waiting. Calls that carry a
/// body get more: see `LinkSpeed`.
pub const OP_DEADLINE: Duration = Duration::from_millis(1800);
/// Connect timeout (the redis crate default of 0.2x is none at all).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The keys the relay uses. The hash tag in the default stream name keeps all of them in one
/// cluster slot, as Lua scripts that touch several require.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `RELAY_STREAM`.
    pub stream: String,
    /// `RELAY_DLQ_STREAM`.
    pub dlq: String,
}

/// A command or a pipeline, run the same way.
#[derive(Clone, Copy)]
enum Query<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
}

/// The shared connection to Redis and the keys it works on.
///
/// Every call carries a deadline. A connection that failed or timed out is dropped and the
/// next call reconnects (one caller at a time), so the server heals by itself when Redis
/// comes back, also from a frozen Redis that never closed its sockets.
pub struct Store {
    locator: Arc<Locator>,
    keys: Keys,
    /// The consumer group, for the client's commands.
    group: Option<String>,
    /// The current connection with a generation number, so a failure only drops the
    /// connection it happened on, not a fresh one another task just made.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    connecting: tokio::sync::Mutex<u64>,
    /// Up or not, as the log said it (`status`).
    status: AtomicU8,
    link: LinkSpeed,
    /// `RELAY_MIN_REPLICAS`: the replicas every append waits for, when set.
    replication: Option<append::Replication>,
    /// Appends waiting to go to Redis together.
    batches: batch::Batches,
}

impl Store {
    /// A store for `keys`; connects lazily, so a role starts even while Redis is down. With
    /// `ca` (PEM), a `rediss://` connection trusts exactly those roots.
    pub fn new(url: &Secret, ca: Option<&[u8]>, keys: Keys) -> Result<Self, StoreError> {
        Self::located(url, ca, &RedisTopology::Single, keys)
    }

    /// A store for `keys` on the node `topology` names for their hash tag.
    fn located(
        url: &Secret,
        ca: Option<&[u8]>,
        topology: &RedisTopology,
        keys: Keys,
    ) -> Result<Self, StoreError> {
        let tag = crate::config::hash_tag(&keys.stream).unwrap_or(&keys.stream);
        Ok(Store {
            locator: Arc::new(Locator::new(url, ca, topology, tag)?),
            keys,
            group: None,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(0),
            status: status::initial(),
            link: LinkSpeed::default(),
            replication: None,
            batches: batch::Batches::default(),
        })
    }

    /// The store of partition `p` of the configured ones.
    pub fn partition(config: &crate::config::CommonConfig, p: usize) -> Result<Self, StoreError> {
        let t = &config.topology;
        let keys = Keys {
            stream: crate::config::partition_key(&config.stream, p, t.partitions),
            dlq: crate::config::partition_key(&config.dlq_stream, p, t.partitions),
        };
        let mut store = Self::located(
            &config.redis_url,
            config.redis_roots().as_deref(),
            &t.redis,
            keys,
        )?
        .with_group(&config.group);
        if t.min_replicas > 0 {
            store.replication = Some(append::Replication::new(t.min_replicas, t.replica_timeout));
        }
        Ok(store)
    }

    /// Every partition's store, in order.
    pub fn partitions(config: &crate::config::CommonConfig) -> Result<Vec<Self>, StoreError> {
        (0..config.topology.partitions)
            .map(|p| Self::partition(config, p))
            .collect()
    }

    /// A reader of new entries for `consumer`, on a connection of its own to the same node.
    pub fn reader(&self, consumer: &str) -> Reader {
        Reader::new(
            self.locator.clone(),
            &self.keys.stream,
            self.group_name(),
            consumer,
        )
    }

    /// Where the topology says this store's data lives (`check`); `None` for one Redis.
    pub async fn placement(&self) -> Result<Option<String>, StoreError> {
        self.locator
            .describe()
            .await
            .map_err(|e| StoreError::from_redis(e, OP_DEADLINE))
    }

    /// The same store acting for consumer group `group`.
    pub fn with_group(mut self, group: &str) -> Self {
        self.group = Some(group.to_owned());
        self
    }

    /// The main stream's key.
    pub fn stream(&self) -> &str {
        &self.keys.stream
    }

    /// The dead-letter stream's key.
    pub fn dlq(&self) -> &str {
        &self.keys.dlq
    }

    /// The consumer group (only the client sets one).
    fn group_name(&self) -> &str {
        self.group.as_deref().unwrap_or("relay")
    }

    /// `PING`, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run::<String>(&redis::cmd("PING")).await.map(drop)
    }

    /// Runs one small command on the shared connection within `OP_DEADLINE`.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.exec(Query::Cmd(cmd), 0).await
    }

    /// Runs a command that carries or returns about `bytes` bytes.
    async fn run_sized<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        bytes: usize,
    ) -> Result<T, StoreError> {
        self.exec(Query::Cmd(cmd), bytes).await
    }

    /// Runs a pipeline (atomic when built with `.atomic()`) carrying about `bytes` bytes.
    async fn run_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        bytes: usize,
    ) -> Result<T, StoreError> {
        self.exec(Query::Pipe(pipe), bytes).await
    }

    async fn exec<T: redis::FromRedisValue>(
        &self,
        query: Query<'_>,
        bytes: usize,
    ) -> Result<T, StoreError> {
        let deadline = self.link.deadline(OP_DEADLINE, bytes);
        let (_, reply) = self.exec_on(query, bytes, deadline).await?;
        convert(reply)
    }

    /// `exec` within `deadline`, with the reply as Redis sent it; also says which connection
    /// (generation) ran it. Not generic: one copy of this state machine serves every command.
    async fn exec_on(
        &self,
        query: Query<'_>,
        bytes: usize,
        deadline: Duration,
    ) -> Result<(u64, redis::Value), StoreError> {
        // Only calls large enough to say something about the link are timed.
        let started = link::significant(bytes).then(Instant::now);
        // A failure says which limit ran out: connecting has its own (`CONNECT_TIMEOUT`).
        let attempt = async {
            let (generation, mut conn) = self
                .connection()
                .await
                .map_err(|(generation, e)| (generation, e, CONNECT_TIMEOUT))?;
            let reply = match query {
                Query::Cmd(cmd) => cmd.query_async::<redis::Value>(&mut conn).await,
                Query::Pipe(pipe) => pipe.query_async::<redis::Value>(&mut conn).await,
            };
            reply
                .map(|v| (generation, v))
                .map_err(|e| (generation, e, deadline))
        };
        let result = match tokio::time::timeout(deadline, attempt).await {
            Ok(Ok(v)) => {
                if let Some(started) = started {
                    self.link.observe(bytes, started.elapsed());
                }
                Ok(v)
            }
            Ok(Err((generation, e, limit))) => Err(self.classify(generation, e, limit)),
            Err(_) => {
                // A timed-out command may still run on the server; the socket may be dead
                // without anyone noticing (frozen Redis): start over on a new one.
                self.drop_connection(None);
                self.link.timed_out(bytes);
                Err(StoreError::Timeout(deadline))
            }
        };
        self.note(&result);
        result
    }

    fn classify(&self, generation: u64, e: redis::RedisError, deadline: Duration) -> StoreError {
        let e = StoreError::from_redis(e, deadline);
        if !e.is_refusal() {
            self.drop_connection(Some(generation));
        }
        e
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
        let conn = self
            .locator
            .connect(&connection_config(CONNECT_TIMEOUT))
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
}

/// Connection settings: an explicit connect timeout, and explicitly no response timeout of
/// the crate's own (its defaults differ between versions, see PITFALLS). Every call on these
/// connections runs inside a deadline of ours that grows with its bytes (`exec_on`, the
/// reader, `locate`); a crate timer on top would be a second timer armed for every command.
fn connection_config(connect: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(None)
}
