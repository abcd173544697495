//! Loading what the dispatcher holds no body or counts for: bodies of due webhooks (sizes
//! first, then fetches of about a MiB), and the stored counts of adopted pending ids.

use std::time::Instant;

use super::{Event, FETCH_BYTES, Writes};
use crate::client::policy::jobs::{Effect, Jobs};
use crate::clock::unix_ms;
use crate::error::Report;
use crate::stream::{Entry, StoreError, Stored, StreamId};

impl Writes {
    /// Loads the bodies of `ids` (with their sizes, 0 when unknown): sizes first where
    /// unknown (so each fetch's deadline fits its bytes), then in fetches of about a MiB.
    pub fn fetch(&mut self, ids: Vec<(StreamId, usize)>) {
        let (store, tx) = (self.store.clone(), self.tx.clone());
        self.spawn(async move {
            let unknown: Vec<StreamId> = ids
                .iter()
                .filter(|(_, s)| *s == 0)
                .map(|(i, _)| *i)
                .collect();
            let sizes = match store.sizes(&unknown).await {
                Ok(s) => s,
                Err(e) => return Event::Fetched(ids.iter().map(|(i, _)| *i).collect(), Err(e)),
            };
            let mut sizes = sizes.into_iter();
            let mut chunk: Vec<StreamId> = Vec::new();
            let mut bytes = 0;
            for (id, size) in ids {
                let size = match size {
                    0 => match sizes.next().flatten() {
                        Some(s) => s,
                        None => {
                            let _ = tx.send(Event::Fetched(vec![id], Ok(vec![None])));
                            continue;
                        }
                    },
                    s => s,
                };
                if !chunk.is_empty() && bytes + size > FETCH_BYTES {
                    let done = std::mem::take(&mut chunk);
                    let r = store.fetch(&done, bytes).await;
                    let _ = tx.send(Event::Fetched(done, r));
                    bytes = 0;
                }
                chunk.push(id);
                bytes += size;
            }
            let r = store.fetch(&chunk, bytes).await;
            Event::Fetched(chunk, r)
        });
    }

    pub fn fetched(
        &mut self,
        jobs: &mut Jobs,
        ids: Vec<StreamId>,
        result: Result<Vec<Option<Entry>>, StoreError>,
        now: Instant,
    ) -> Vec<Effect> {
        match result {
            Ok(entries) => ids
                .into_iter()
                .zip(entries)
                .flat_map(|(id, entry)| jobs.fetched(id, entry))
                .collect(),
            Err(e) => {
                log::debug!("loading {} bodies failed: {}", ids.len(), Report(&e));
                ids.iter().for_each(|id| jobs.fetch_failed(*id, now));
                Vec::new()
            }
        }
    }

    /// Loads the stored counts of pending ids the client does not hold yet.
    pub fn load_counts(&mut self, ids: Vec<StreamId>, started: Instant) {
        let store = self.store.clone();
        self.spawn(async move {
            let result = store.load_attempts(&ids).await;
            Event::Counts(ids, started, result)
        });
    }

    pub fn counted(
        &mut self,
        jobs: &mut Jobs,
        ids: Vec<StreamId>,
        started: Instant,
        result: Result<Vec<Stored>, StoreError>,
        now: Instant,
    ) -> Vec<Effect> {
        let counts = result.unwrap_or_else(|e| {
            // Zero counts can only delay a dead letter, never cause one.
            log::debug!(
                "loading attempt counts failed, starting from zero: {}",
                Report(&e)
            );
            vec![Stored::default(); ids.len()]
        });
        let unix = unix_ms();
        ids.into_iter()
            .zip(counts)
            .flat_map(|(id, stored)| jobs.adopt(id, stored, started, now, unix))
            .collect()
    }
}
