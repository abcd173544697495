//! Appends that arrive together go to Redis together: one pipeline instead of one command
//! each.
//!
//! The redis crate's multiplexed connection already writes queued commands with one system
//! call, but it pays for every command it is handed: a message to its connection task, a
//! one-shot reply channel, the routing of the reply; and our deadline arms a timer per call.
//! Under load that was a fifth of the server's own CPU per webhook. Here the first append of
//! a batch (the leader) yields once, so that every other connection with a webhook ready in
//! the same turn of the runtime can join, then runs them all as one pipeline on the shared
//! connection and hands each its own reply. The next append starts the next batch at once:
//! batches overlap on the connection as single commands did, so nobody waits for another
//! batch's round trip.
//!
//! Each reply is the append's own: an error reply (`OOM`, a script's error) fails that
//! append only (the pipeline ignores errors, it is not a transaction). A batch that times out
//! or loses its connection fails every append in it, each as it would have failed alone.

use std::sync::Mutex;

use tokio::sync::oneshot;

use super::{OP_DEADLINE, Query, Store, StoreError};

/// One append's reply: the value Redis answered, or why there is none.
type Reply = Result<redis::Value, StoreError>;

/// The batch that is forming, shared by a store's appends.
#[derive(Default)]
pub(super) struct Batches {
    forming: Mutex<Forming>,
}

#[derive(Default)]
struct Forming {
    /// A leader is yielding and will take `waiting`.
    led: bool,
    waiting: Vec<Waiting>,
}

/// An append waiting for its batch.
struct Waiting {
    cmd: redis::Cmd,
    bytes: usize,
    reply: oneshot::Sender<Reply>,
}

impl Batches {
    fn lock(&self) -> std::sync::MutexGuard<'_, Forming> {
        self.forming.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an append to the forming batch; true when it leads that batch.
    fn join(&self, waiting: Waiting) -> bool {
        let mut forming = self.lock();
        forming.waiting.push(waiting);
        !std::mem::replace(&mut forming.led, true)
    }

    /// Closes the forming batch and returns it: the next append leads a new one.
    fn close(&self) -> Vec<Waiting> {
        let mut forming = self.lock();
        forming.led = false;
        std::mem::take(&mut forming.waiting)
    }
}

/// The leader's claim on the forming batch. Dropped before it took the batch (the leader's
/// task was cancelled while it yielded), it closes the batch: the appends in it fail at once
/// instead of waiting for a leader that will not come.
struct Lead<'a>(&'a Batches);

impl Lead<'_> {
    /// The batch, to run.
    fn take(self) -> Vec<Waiting> {
        let batch = self.0.close();
        std::mem::forget(self);
        batch
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        // Dropping the waiting appends drops their reply senders: each fails as abandoned.
        drop(self.0.close());
    }
}

impl Store {
    /// Runs `cmd` (an append carrying about `bytes` bytes) in the next batch.
    pub(super) async fn write_batched(&self, cmd: redis::Cmd, bytes: usize) -> Reply {
        let (reply, answer) = oneshot::channel();
        if self.batches.join(Waiting { cmd, bytes, reply }) {
            let lead = Lead(&self.batches);
            // Every task woken in this turn of the runtime runs before the leader again.
            tokio::task::yield_now().await;
            self.run_batch(lead.take()).await;
        }
        answer.await.unwrap_or_else(|_| Err(abandoned()))
    }

    /// Runs a batch and answers every append in it.
    async fn run_batch(&self, mut batch: Vec<Waiting>) {
        let bytes = batch.iter().map(|w| w.bytes).sum();
        let deadline = self.link.deadline(OP_DEADLINE, bytes);
        if batch.len() == 1
            && let Some(w) = batch.pop()
        {
            let reply = self.exec_on(Query::Cmd(&w.cmd), bytes, deadline).await;
            let _ = w.reply.send(reply.map(|(_, value)| value));
            return;
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut replies = Vec::with_capacity(batch.len());
        for w in batch {
            pipe.add_command(w.cmd);
            replies.push(w.reply);
        }
        match self.exec_on(Query::Pipe(&pipe), bytes, deadline).await {
            Ok((generation, redis::Value::Array(values))) if values.len() == replies.len() => {
                for (value, reply) in values.into_iter().zip(replies) {
                    let value = value
                        .extract_error()
                        .map_err(|e| self.classify(generation, e, deadline));
                    if value.is_err() {
                        // A `READONLY` after a failover says as much as a lone command's would.
                        self.note(&value);
                    }
                    let _ = reply.send(value);
                }
            }
            Ok((_, other)) => {
                let what = format!("{} replies expected, got {other:?}", replies.len());
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Protocol(what.clone())));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The error of an append whose batch was dropped before it ran (its leader's task was
/// cancelled): not known to be stored, so the sender must send it again.
fn abandoned() -> StoreError {
    StoreError::Connection(redis::RedisError::from((
        redis::ErrorKind::Client,
        "append abandoned before it was sent",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting() -> (Waiting, oneshot::Receiver<Reply>) {
        let (reply, answer) = oneshot::channel();
        let cmd = redis::cmd("PING");
        (
            Waiting {
                cmd,
                bytes: 0,
                reply,
            },
            answer,
        )
    }

    #[test]
    fn the_first_append_leads_and_the_batch_closes_when_taken() {
        let batches = Batches::default();
        assert!(batches.join(waiting().0));
        assert!(!batches.join(waiting().0));
        assert_eq!(Lead(&batches).take().len(), 2);
        assert!(batches.join(waiting().0), "a taken batch is closed");
    }

    #[test]
    fn a_dropped_leader_fails_its_batch_instead_of_leaving_it_waiting() {
        let batches = Batches::default();
        let (first, mut first_answer) = waiting();
        let (second, mut second_answer) = waiting();
        assert!(batches.join(first));
        assert!(!batches.join(second));
        drop(Lead(&batches));
        let closed = Err(oneshot::error::TryRecvError::Closed);
        assert_eq!(first_answer.try_recv().map(drop), closed);
        assert_eq!(second_answer.try_recv().map(drop), closed);
        assert!(batches.join(waiting().0), "the next append leads again");
    }
}
