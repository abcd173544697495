//! The dispatcher: one loop that owns every held webhook (`Jobs`), starts deliveries, asks the
//! feed for what it has room for, and carries out the policy's effects. Nothing in the loop
//! waits on Redis or the app: deliveries and writes run in tasks whose results come back as
//! `Event`s, and a delivery's result always comes back, also when its task panics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

mod drain;

use super::deliver::{self, Attempted};
use super::feed::FeedMsg;
use super::policy::jobs::{Effect, Jobs};
use super::policy::outcome::{Verdict, classify};
use super::targets::Destinations;
use super::writes::Writes;
use crate::clock::unix_ms;
use crate::metrics::ClientMetrics;
use crate::shutdown::Shutdown;
use crate::stream::{DeadLetter, DeadLettered, Entry, Record, StoreError, Stored, StreamId};

/// What comes back to the loop.
pub enum Event {
    Attempted(Box<Attempted>),
    Acked(Vec<StreamId>, Result<(), StoreError>),
    DeadLettered(
        StreamId,
        Result<DeadLettered, StoreError>,
        DeadLetter,
        String,
    ),
    Forgotten(StreamId, Result<(), StoreError>),
    Fetched(Vec<StreamId>, Result<Vec<Option<Entry>>, StoreError>),
    Counts(Vec<StreamId>, Instant, Result<Vec<Stored>, StoreError>),
    Health(bool),
    Persisted(Result<(), StoreError>),
    Cleaned(Result<(u64, u64), StoreError>),
    Traced(Result<(), StoreError>),
}

pub struct Dispatcher {
    pub jobs: Jobs,
    pub destinations: Destinations,
    pub metrics: Arc<ClientMetrics>,
    pub writes: Writes,
    pub tx: mpsc::UnboundedSender<Event>,
    pub rx: mpsc::UnboundedReceiver<Event>,
    pub want: mpsc::Sender<usize>,
    /// A request for new entries is outstanding.
    pub reading: bool,
    /// The last read found fewer entries than asked for.
    pub fresh_idle: bool,
    pub deliveries: JoinSet<()>,
    /// Set when the feed ended without a shutdown.
    pub feed_lost: bool,
}

impl Dispatcher {
    pub async fn run(&mut self, mut feed: mpsc::Receiver<FeedMsg>, mut shutdown: Shutdown) {
        loop {
            self.start_ready();
            self.plan();
            self.writes.flush();
            let wake = self.jobs.next_wakeup();
            let wake = wake.map_or(self.writes.next_housekeeping, |w| {
                w.min(self.writes.next_housekeeping)
            });
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(ev) = self.rx.recv() => self.on_event(ev),
                msg = feed.recv() => match msg {
                    Some(msg) => self.on_feed(msg),
                    None if shutdown.is_triggered() => break,
                    None => {
                        log::error!("the stream reader stopped unexpectedly; stopping the client");
                        self.feed_lost = true;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => self.tick(),
                Some(_) = self.deliveries.join_next() => {}
            }
        }
        drop(feed);
        self.drain().await;
    }

    /// Starts every attempt the policy allows now.
    fn start_ready(&mut self) {
        while let Some(start) = self.jobs.next(Instant::now()) {
            let to = self.destinations.get(start.route);
            deliver::spawn(&mut self.deliveries, to, start, &self.tx);
        }
    }

    /// Loads due bodies and asks the feed for what fits.
    fn plan(&mut self) {
        let plan = self.jobs.plan(Instant::now(), self.fresh_idle);
        if !plan.fetch.is_empty() {
            self.writes.fetch(plan.fetch);
        }
        if !self.reading && plan.fresh > 0 && self.want.try_send(plan.fresh).is_ok() {
            self.reading = true;
        }
    }

    fn on_feed(&mut self, msg: FeedMsg) {
        let now = Instant::now();
        match msg {
            FeedMsg::Fresh {
                entries,
                asked,
                started,
            } => {
                self.reading = false;
                self.fresh_idle = entries.len() < asked;
                for entry in entries {
                    self.take(entry, started, now);
                }
            }
            FeedMsg::Pending { ids, started } => {
                let new: Vec<StreamId> =
                    ids.into_iter().filter(|id| !self.jobs.holds(*id)).collect();
                if !new.is_empty() {
                    self.writes.load_counts(new, started);
                }
            }
        }
    }

    /// A new entry: held for delivery, or dead-lettered at once if it cannot be decoded.
    fn take(&mut self, entry: Entry, started: Instant, now: Instant) {
        let decoded = entry.fields.as_deref().map(Record::from_fields);
        match decoded {
            Some(Ok(_)) => {
                self.jobs.add(entry, started, now);
            }
            Some(Err(e)) => {
                log::error!(
                    "entry {} is not a valid record ({e}): dead-lettering it",
                    entry.id
                );
                let why = format!("undecodable record: {e}");
                let fx =
                    self.jobs
                        .add_undeliverable(entry.stream_id(), why, started, now, unix_ms());
                self.effects(fx);
            }
            None => {} // `>` never returns deleted payloads
        }
    }

    fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Attempted(a) => self.on_attempted(*a),
            Event::Acked(ids, result) => self.writes.acked(&mut self.jobs, ids, result, now),
            Event::DeadLettered(id, result, info, source) => self.writes.dead_lettered(
                &mut self.jobs,
                &self.metrics,
                id,
                (result, info, source),
                now,
            ),
            Event::Forgotten(id, result) => self.writes.forgotten(&mut self.jobs, id, result, now),
            Event::Fetched(ids, result) => {
                let fx = self.writes.fetched(&mut self.jobs, ids, result, now);
                self.effects(fx);
            }
            Event::Counts(ids, started, result) => {
                let fx = self
                    .writes
                    .counted(&mut self.jobs, ids, started, result, now);
                self.effects(fx);
            }
            Event::Health(up) => {
                self.writes.health_answered();
                let fx = self.jobs.health(up, now, unix_ms());
                self.effects(fx);
            }
            Event::Persisted(result) => self.writes.persisted(result),
            Event::Cleaned(result) => self.writes.cleaned(result),
            Event::Traced(result) => self.writes.traced(result),
        }
    }

    fn on_attempted(&mut self, a: Attempted) {
        let verdict = classify(&a.outcome.attempt);
        self.metrics.delivery.observe(a.took);
        match verdict {
            Verdict::Delivered => {
                self.metrics.deliveries.inc("delivered");
                self.metrics.delivered_by_source.inc(&a.source);
                self.metrics.delivered_by_target.inc(&a.target);
                let e2e = unix_ms().saturating_sub(a.received_at);
                self.metrics.end_to_end.observe(Duration::from_millis(e2e));
            }
            Verdict::Throttled { .. } => self.metrics.deliveries.inc("throttled"),
            Verdict::Rejected => {}
            Verdict::Failed { .. } | Verdict::Unreachable => self.metrics.deliveries.inc("retried"),
        }
        let fx = self
            .jobs
            .finish(a.id, a.outcome.attempt.clone(), Instant::now(), unix_ms());
        super::report::attempt(&a, verdict, self.jobs.failures(a.id));
        self.writes.trace(&a, verdict, unix_ms());
        self.effects(fx);
        self.metrics.breaker_open.store(
            self.jobs.breaker_open(),
            std::sync::atomic::Ordering::Relaxed,
        );
        // Named once at start (`Destinations::name_breakers`): only the flags change here.
        let mut breakers = self
            .metrics
            .target_breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (route, (_, open)) in breakers.iter_mut().enumerate() {
            *open = self.jobs.breaker_open_for(route);
        }
    }

    /// Carries out the policy's effects.
    pub fn effects(&mut self, fx: Vec<Effect>) {
        for effect in fx {
            match effect {
                Effect::Ack(id) => self.writes.ack(id),
                Effect::DeadLetter(id, info) => self.writes.dead_letter(id, info),
                Effect::Forget(id) => self.writes.forget(id),
                Effect::Persist(id, stored) => self.writes.persist(id, stored),
                Effect::BreakerOpened(route) => {
                    let to = self.destinations.get(route);
                    log::warn!(
                        "{} ({}) failing for several webhooks in a row: circuit breaker open, its deliveries paused",
                        to.http.target().display(),
                        to.name
                    )
                }
                Effect::BreakerClosed(route) => {
                    let to = self.destinations.get(route);
                    log::info!(
                        "{} ({}) answering again: circuit breaker closed",
                        to.http.target().display(),
                        to.name
                    )
                }
                Effect::Uncounted { id, first } => {
                    self.metrics.uncounted.inc();
                    super::report::uncounted(id, first);
                }
                Effect::CheckHealth => self.writes.check_health(),
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let fx = self.jobs.tick(now, unix_ms());
        self.effects(fx);
        if now >= self.writes.next_housekeeping {
            let fx = self.writes.housekeeping(&mut self.jobs, &self.metrics);
            self.effects(fx);
        }
    }
}
