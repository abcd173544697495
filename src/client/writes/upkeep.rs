//! Upkeep every `HOUSEKEEPING_EVERY`: failed final writes again, held entries re-claimed, the
//! held gauge, orphaned attempt counts cleaned up now and then; and the health URL.

use std::time::Instant;

use super::{CLEANUP_EVERY, Cleanup, Event, HOUSEKEEPING_EVERY, TOUCH_CHUNK, Writes};
use crate::client::policy::jobs::{Effect, Jobs};
use crate::error::Report;
use crate::http::client::OutRequest;
use crate::metrics::ClientMetrics;
use crate::stream::StoreError;

impl Writes {
    /// Asks the health URL (one question at a time).
    pub fn check_health(&mut self) {
        let Some(http) = self.health.clone() else {
            return;
        };
        if std::mem::replace(&mut self.health_in_flight, true) {
            return;
        }
        self.spawn(async move {
            let req = OutRequest {
                method: "GET",
                headers: &[],
                body: b"",
            };
            let up = match http.send(&req).await {
                Ok(answer) => (200..300).contains(&answer.status),
                Err(e) => {
                    log::debug!("RELAY_TARGET_HEALTH_URL: {e}");
                    false
                }
            };
            Event::Health(up)
        });
    }

    pub fn health_answered(&mut self) {
        self.health_in_flight = false;
    }

    /// Every `HOUSEKEEPING_EVERY`: failed final writes again, held entries re-claimed,
    /// orphaned counts cleaned up now and then, the held gauge.
    pub fn housekeeping(&mut self, jobs: &mut Jobs, metrics: &ClientMetrics) -> Vec<Effect> {
        let now = Instant::now();
        self.next_housekeeping = now + HOUSEKEEPING_EVERY;
        super::REFUSED.flush();
        super::DEAD_LETTERS.flush();
        crate::stream::flush_logs();
        metrics
            .held
            .store(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for ids in jobs.held().chunks(TOUCH_CHUNK) {
            let (store, consumer, ids) = (self.store.clone(), self.consumer.clone(), ids.to_vec());
            crate::task::spawn_in(&mut self.tasks, async move {
                if let Err(e) = store.touch(&consumer, &ids).await {
                    log::debug!("re-claiming held entries failed: {}", Report(&e));
                }
            });
        }
        if self.cleanup.is_none() && now >= self.next_cleanup {
            self.next_cleanup = now + CLEANUP_EVERY;
            self.cleanup = Some((Cleanup::Legacy, 0));
            self.clean_step();
        }
        jobs.retry_writes()
    }

    fn clean_step(&mut self) {
        let Some((phase, cursor)) = self.cleanup else {
            return;
        };
        let store = self.store.clone();
        self.spawn(async move {
            Event::Cleaned(match phase {
                Cleanup::Legacy => store.cleanup_attempts(true, cursor).await,
                Cleanup::Counts => store.cleanup_attempts(false, cursor).await,
                Cleanup::Records => store.cleanup_traces(cursor, 500).await,
            })
        });
    }

    pub fn cleaned(&mut self, result: Result<(u64, u64), StoreError>) {
        let Some((phase, _)) = self.cleanup else {
            return;
        };
        match result {
            Ok((next, removed)) => {
                match phase {
                    Cleanup::Records if removed > 0 => {
                        log::debug!("removed {removed} outcome records of trimmed webhooks");
                    }
                    Cleanup::Records => {}
                    _ if removed > 0 => {
                        log::info!("removed {removed} attempt counts of entries no longer pending");
                    }
                    _ => {}
                }
                self.cleanup = match (next, phase) {
                    (0, Cleanup::Legacy) => Some((Cleanup::Counts, 0)),
                    (0, Cleanup::Counts) => Some((Cleanup::Records, 0)),
                    (0, Cleanup::Records) => None,
                    (next, phase) => Some((phase, next)),
                };
                self.clean_step();
            }
            Err(e) => {
                log::debug!("cleaning up attempt counts failed: {}", Report(&e));
                self.cleanup = None;
            }
        }
    }
}
