//! Appending a webhook: `XADD` (or, near the backlog cap, a script that counts and appends in
//! one step), and with `RELAY_MIN_REPLICAS`, the `WAIT` that makes the `200` mean "on the
//! replicas too".
//!
//! `WAIT` counts the writes made on its own connection before it, and blocks that connection
//! while it waits. One `WAIT` per webhook would line every append up behind the previous
//! one's replication round trip (a fifth of the throughput, measured); so appends share
//! rounds: each round is one `WAIT` on the shared connection, and it confirms every append
//! whose reply came back before it started. An append whose connection was replaced in
//! between is not confirmed by a `WAIT` on the new one (that `WAIT` covers no write of it):
//! it is answered `503`, and the sender retries.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::record::{self, Record};
use super::{OP_DEADLINE, Query, Store, StoreError};

/// The backlog counted as `GroupInfo::backlog` does (lag plus pending of the slowest group;
/// the stream length when a group's lag is unknown or there is no group), then `XADD` only
/// below `ARGV[1]`. Returns the new id, or false at the cap.
const APPEND_BELOW_SCRIPT: &str = r"
local len = redis.call('XLEN', KEYS[1])
local backlog = len
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if ok and #groups > 0 then
  backlog = 0
  for _, g in ipairs(groups) do
    local lag, pending = len, 0
    for i = 1, #g, 2 do
      if g[i] == 'lag' and g[i + 1] then lag = g[i + 1]
      elseif g[i] == 'pending' then pending = g[i + 1] end
    end
    if lag + pending > backlog then backlog = lag + pending end
  end
end
if backlog >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
";

/// `RELAY_MIN_REPLICAS` and the `WAIT` rounds shared by concurrent appends.
pub(super) struct Replication {
    want: u32,
    timeout: Duration,
    /// Rounds started so far, and whether one is running.
    rounds: Mutex<(u64, bool)>,
    /// The last round that ended.
    ended: watch::Sender<Ended>,
}

/// A finished `WAIT` round: its number, the connection it ran on, the replicas it counted
/// (`None`: it failed).
#[derive(Debug, Clone, Copy)]
struct Ended {
    round: u64,
    generation: u64,
    replicas: Option<u32>,
}

impl Replication {
    pub(super) fn new(want: u32, timeout: Duration) -> Replication {
        let none = Ended {
            round: 0,
            generation: 0,
            replicas: None,
        };
        Replication {
            want,
            timeout,
            rounds: Mutex::new((0, false)),
            ended: watch::Sender::new(none),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, bool)> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The round a task leads; if the task is dropped mid-round, the round ends as failed, so
/// nobody waits for it forever.
struct Lead<'a> {
    r: &'a Replication,
    round: u64,
    ended: Option<Ended>,
}

impl<'a> Lead<'a> {
    /// Starts the next round if none is running and none at or after round `wanted` has
    /// ended yet (another task may have run it already).
    fn start(r: &'a Replication, wanted: u64) -> Option<Lead<'a>> {
        let mut rounds = r.lock();
        if rounds.1 || r.ended.borrow().round >= wanted {
            return None;
        }
        *rounds = (rounds.0 + 1, true);
        Some(Lead {
            r,
            round: rounds.0,
            ended: None,
        })
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let ended = self.ended.unwrap_or(Ended {
            round: self.round,
            generation: u64::MAX,
            replicas: None,
        });
        self.r.lock().1 = false;
        self.r.ended.send_replace(ended);
    }
}

impl Store {
    /// Appends `record` to the stream; returns its id once Redis has it (and, with
    /// `RELAY_MIN_REPLICAS`, the replicas). The deadline grows with the body: a large webhook
    /// over a slow link to Redis is stored, not answered 503 while it lands anyway.
    pub async fn append(&self, record: &Record) -> Result<String, StoreError> {
        let mut cmd = record.command(3, "XADD*".len() + self.keys.stream.len());
        cmd.arg("XADD").arg(&self.keys.stream).arg("*");
        record.write_fields(&mut cmd);
        super::convert(self.write(cmd, record.body.len()).await?)
    }

    /// Appends `record` only if the backlog (what the slowest group has not delivered; every
    /// entry without a group) is below `cap`, counted inside Redis in the same step.
    /// `Ok(None)` when it is not.
    pub async fn append_below(
        &self,
        record: &Record,
        cap: u64,
    ) -> Result<Option<String>, StoreError> {
        // EVAL <script> 1 <stream> <cap: at most 20 digits>
        let script = "EVAL".len() + APPEND_BELOW_SCRIPT.len() + "1".len() + 20;
        let mut cmd = record.command(5, script + self.keys.stream.len());
        cmd.arg("EVAL")
            .arg(APPEND_BELOW_SCRIPT)
            .arg(1)
            .arg(&self.keys.stream)
            .arg(cap);
        record.write_fields(&mut cmd);
        let reply = self.write(cmd, record.body.len()).await?;
        Ok(record::bytes(&reply).map(|id| String::from_utf8_lossy(id).into_owned()))
    }

    /// Runs a write: in the next batch of appends (`batch.rs`); with `RELAY_MIN_REPLICAS`, on
    /// its own, returning only once enough replicas have it. When no `WAIT` round is running,
    /// the write leads one, pipelined with it (one round trip, as a lone webhook would have
    /// it); otherwise it waits for the next round.
    async fn write(&self, cmd: redis::Cmd, bytes: usize) -> Result<redis::Value, StoreError> {
        let Some(r) = &self.replication else {
            return self.write_batched(cmd, bytes).await;
        };
        let deadline = self.link.deadline(OP_DEADLINE, bytes);
        if let Some(mut lead) = Lead::start(r, u64::MAX) {
            let mut pipe = redis::pipe();
            pipe.add_command(cmd).add_command(wait(r));
            let (generation, replies) = self
                .exec_on(Query::Pipe(&pipe), bytes, deadline + r.timeout)
                .await?;
            let (reply, got): (redis::Value, u32) = super::convert(replies)?;
            lead.ended = Some(Ended {
                round: lead.round,
                generation,
                replicas: Some(got),
            });
            return match got >= r.want {
                true => Ok(reply),
                false => Err(StoreError::NotReplicated { want: r.want, got }),
            };
        }
        let (generation, reply) = self.exec_on(Query::Cmd(&cmd), bytes, deadline).await?;
        self.replicated(r, generation).await?;
        Ok(reply)
    }

    /// Returns once a `WAIT` round that started after this task's write (made on connection
    /// `generation`) counted enough replicas.
    async fn replicated(&self, r: &Replication, generation: u64) -> Result<(), StoreError> {
        let mut ended = r.ended.subscribe();
        // Any round started from now on covers the write: its reply is already here.
        let mine = r.lock().0 + 1;
        loop {
            match Lead::start(r, mine) {
                Some(lead) => self.wait_round(lead).await,
                None if ended.borrow_and_update().round < mine => {
                    let _ = ended.changed().await;
                }
                None => {}
            }
            let last = *ended.borrow();
            if last.round >= mine {
                return match (last.generation == generation, last.replicas) {
                    (true, Some(got)) if got >= r.want => Ok(()),
                    (true, Some(got)) => Err(StoreError::NotReplicated { want: r.want, got }),
                    // The round failed, or ran on another connection than the write.
                    _ => Err(StoreError::NotReplicated {
                        want: r.want,
                        got: 0,
                    }),
                };
            }
        }
    }

    /// Runs a round on its own: one `WAIT` on the current connection.
    async fn wait_round(&self, mut lead: Lead<'_>) {
        let cmd = wait(lead.r);
        let deadline = OP_DEADLINE + lead.r.timeout;
        if let Ok((generation, reply)) = self.exec_on(Query::Cmd(&cmd), 0, deadline).await
            && let Ok(got) = super::convert::<u32>(reply)
        {
            lead.ended = Some(Ended {
                round: lead.round,
                generation,
                replicas: Some(got),
            });
        }
    }
}

/// `WAIT <RELAY_MIN_REPLICAS> <RELAY_REPLICA_TIMEOUT>`.
fn wait(r: &Replication) -> redis::Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(r.want).arg(r.timeout.as_millis() as u64);
    cmd
}
