//! The client's shutdown: stop reading, let deliveries in flight finish, write their
//! acknowledgements, all within a bound, and say what was left.

use std::time::{Duration, Instant};

use super::{Dispatcher, Event};

/// After SIGTERM: deliveries in flight get this long to finish …
const DRAIN: Duration = Duration::from_secs(7);
/// … and everything, acknowledgements included, this long: the process exits within 10 s.
const SHUTDOWN: Duration = Duration::from_millis(9500);

impl Dispatcher {
    /// Stops reading, lets deliveries in flight finish (up to `DRAIN`), then writes what it
    /// can until `SHUTDOWN`; what is not written stays pending and is delivered again.
    pub(super) async fn drain(&mut self) {
        let started = Instant::now();
        while self.jobs.in_flight() > 0 {
            let until = started + DRAIN;
            let ev = tokio::time::timeout_at(until.into(), self.rx.recv()).await;
            match ev {
                Ok(Some(Event::Attempted(a))) => self.on_attempted(*a),
                Ok(Some(other)) => self.on_event(other),
                Ok(None) => break,
                Err(_) => {
                    log::warn!(
                        "{} deliveries still running at the shutdown deadline: they stay pending and are delivered again later",
                        self.jobs.in_flight()
                    );
                    self.deliveries.abort_all();
                    break;
                }
            }
        }
        self.writes.flush();
        let until = started + SHUTDOWN;
        loop {
            if self.writes.unfinished() == 0 && self.jobs.unwritten() > 0 {
                // Every final write in flight is done, some failed: try them again, until
                // the deadline.
                let fx = self.jobs.retry_writes();
                self.effects(fx);
            }
            if self.writes.unfinished() + self.writes.unwritten_traces() == 0 {
                break;
            }
            self.writes.flush();
            match tokio::time::timeout_at(until.into(), self.rx.recv()).await {
                Ok(Some(Event::Attempted(_))) | Ok(None) => {}
                Ok(Some(ev)) => self.on_event(ev),
                Err(_) => break,
            }
        }
        let left = self.jobs.unwritten();
        if left > 0 {
            log::warn!(
                "{left} acknowledgements or dead letters not written before the shutdown deadline: those webhooks stay pending and are delivered again"
            );
        }
    }
}
