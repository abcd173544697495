use super::*;
use crate::client::policy::backoff::Backoff;
use crate::client::policy::outcome::Attempt;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

fn policy(max_attempts: u32) -> Policy {
    Policy {
        concurrency: 4,
        max_attempts,
        backoff: Backoff {
            base: 10 * MS,
            max: 10 * MS,
        },
        breaker_threshold: 5,
        breaker_cooldown: S,
        window: 2 * S,
        capacity: 64,
        active_bytes: 1 << 20,
        waiting_bytes: 0,
        health_check: false,
    }
}

fn id(n: u64) -> StreamId {
    StreamId { ms: n, seq: 0 }
}

/// Ids from 1000 on come from the source `down` (routed to a target of their own in
/// `routes_are_independent`).
fn entry(n: u64) -> Entry {
    let mut fields = vec![("body".into(), vec![b'x'; 100])];
    if n >= 1000 {
        fields.push(("source".into(), b"down".to_vec()));
    }
    Entry {
        id: id(n).to_string(),
        fields: Some(fields),
    }
}

fn status(s: u16) -> Attempt {
    Attempt::Answered {
        status: s,
        retry_after: None,
    }
}

/// A little world: jobs, a clock, and the effects seen so far.
struct World {
    jobs: Jobs,
    now: Instant,
    effects: Vec<Effect>,
}

impl World {
    fn new(policy: Policy) -> World {
        World {
            jobs: Jobs::new(policy, Rng::new(7)),
            now: Instant::now(),
            effects: Vec::new(),
        }
    }

    fn add(&mut self, n: u64) {
        assert!(self.jobs.add(entry(n), self.now, self.now));
    }

    fn unix(&self) -> u64 {
        1_700_000_000_000
    }

    /// Runs until nothing is in flight or startable, answering every attempt with `answer`,
    /// advancing the clock to each wakeup; stops at `until`.
    fn run(&mut self, until: Instant, answer: impl Fn(StreamId, u32) -> Attempt) {
        loop {
            let fx = self.jobs.tick(self.now, self.unix());
            self.apply(fx);
            loop {
                let mut started = Vec::new();
                while let Some(s) = self.jobs.next(self.now) {
                    started.push(s);
                }
                let plan = self.jobs.plan(self.now, true);
                if started.is_empty() && plan.fetch.is_empty() {
                    break;
                }
                for s in started {
                    self.now += MS;
                    let fx = self
                        .jobs
                        .finish(s.id, answer(s.id, s.attempt), self.now, self.unix());
                    self.apply(fx);
                }
                for (i, _) in plan.fetch {
                    let fx = self.jobs.fetched(i, Some(entry(i.ms)));
                    self.apply(fx);
                }
                // Attempts started are always answered: none is left in flight.
                if self.now > until {
                    break;
                }
            }
            match self.jobs.next_wakeup() {
                Some(w) if w <= until && self.now <= until => self.now = self.now.max(w),
                _ => return,
            }
        }
    }

    /// Starts and fails every startable attempt once, the clock standing still.
    fn fail_all_once(&mut self) {
        while let Some(s) = self.jobs.next(self.now) {
            let fx = self.jobs.finish(s.id, status(500), self.now, self.unix());
            self.apply(fx);
        }
    }

    /// Loads every body the plan asks for.
    fn load(&mut self) {
        let plan = self.jobs.plan(self.now, true);
        for (i, _) in plan.fetch {
            let fx = self.jobs.fetched(i, Some(entry(i.ms)));
            self.apply(fx);
        }
    }

    /// Writes succeed at once; a health check is not answered here.
    fn apply(&mut self, fx: Vec<Effect>) {
        for e in &fx {
            match e {
                Effect::Ack(i) | Effect::DeadLetter(i, _) | Effect::Forget(i) => {
                    self.jobs.written(*i, self.now)
                }
                _ => {}
            }
        }
        self.effects.extend(fx);
    }

    fn dead_letters(&self) -> Vec<(StreamId, u32)> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::DeadLetter(i, dl) => Some((*i, dl.attempts)),
                _ => None,
            })
            .collect()
    }

    fn acked(&self) -> Vec<StreamId> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Ack(i) => Some(*i),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn an_outage_of_an_hour_dead_letters_nothing() {
    let mut p = policy(3);
    p.backoff.max = 60 * S;
    let mut w = World::new(p.clone());
    for n in 1..=50 {
        w.add(n);
    }
    let end = w.now + 3600 * S;
    w.run(end, |_, _| {
        Attempt::Unreachable("connection refused".into())
    });
    assert!(w.dead_letters().is_empty());
    let mut w = World::new(p);
    for n in 1..=50 {
        w.add(n);
    }
    w.run(end, |_, _| status(500));
    assert!(
        w.dead_letters().is_empty(),
        "every webhook failing is an outage"
    );
    assert!(w.effects.contains(&Effect::BreakerOpened(0)));
}

#[test]
fn a_poison_webhook_among_traffic_is_dead_lettered_after_exactly_max_attempts() {
    let mut w = World::new(policy(4));
    for n in 1..=200 {
        w.add(n);
    }
    w.run(w.now + 60 * S, |i, _| match i == id(100) {
        true => status(500),
        false => status(200),
    });
    assert_eq!(w.dead_letters(), [(id(100), 4)]);
    assert_eq!(w.acked().len(), 199);
    assert!(w.jobs.is_empty());
}

#[test]
fn a_lone_poison_counts_with_a_success_shortly_before_it() {
    // Others delivered, then only the poison is retried: its failures fall within the window
    // after the last success, and no outage followed them.
    let mut w = World::new(policy(3));
    for n in 1..=5 {
        w.add(n);
    }
    w.run(w.now + S, |_, _| status(200));
    w.add(99);
    w.run(w.now + 60 * S, |_, _| status(500));
    assert_eq!(w.dead_letters(), [(id(99), 3)]);
}

#[test]
fn a_lone_poison_without_evidence_is_reported_not_dead_lettered() {
    let mut w = World::new(policy(3));
    w.add(1);
    w.run(w.now + 600 * S, |_, _| status(500));
    assert!(w.dead_letters().is_empty());
    let uncounted: Vec<bool> = w
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Uncounted { first, .. } => Some(*first),
            _ => None,
        })
        .collect();
    assert!(uncounted.len() > 3);
    assert_eq!(uncounted.iter().filter(|f| **f).count(), 1, "warned once");
}

#[test]
fn the_health_url_gives_a_lone_poison_its_evidence() {
    let mut p = policy(3);
    p.health_check = true;
    let mut w = World::new(p);
    w.add(1);
    w.run(w.now + 600 * S, |_, _| status(500));
    assert!(w.effects.contains(&Effect::CheckHealth));
    assert!(
        w.dead_letters().is_empty(),
        "nothing counted before the answer"
    );
    let fx = w.jobs.health(true, w.now, w.unix());
    w.apply(fx);
    w.run(w.now + 600 * S, |_, _| status(500));
    // Each later failure asks again; answer every question with "up".
    for _ in 0..10 {
        if !w.dead_letters().is_empty() {
            break;
        }
        let fx = w.jobs.health(true, w.now, w.unix());
        w.apply(fx);
        w.run(w.now + 600 * S, |_, _| status(500));
    }
    assert_eq!(w.dead_letters(), [(id(1), 3)]);
}

#[test]
fn webhooks_waiting_for_retries_leave_room_for_fresh_ones() {
    let mut p = policy(10);
    p.breaker_threshold = 1000;
    let mut w = World::new(p);
    for n in 1..=64 {
        w.add(n);
    }
    assert_eq!(
        w.jobs.plan(w.now, false).fresh,
        0,
        "64 bodies held: no room"
    );
    w.fail_all_once();
    assert_eq!(w.jobs.len(), 64);
    assert_eq!(
        w.jobs.plan(w.now, false).fresh,
        64,
        "waiting webhooks hold no capacity"
    );
}

#[test]
fn due_retries_never_take_the_last_quarter_from_fresh_entries() {
    let mut p = policy(10);
    p.capacity = 8;
    p.breaker_threshold = 1000;
    let mut w = World::new(p);
    for batch in 0..4 {
        for n in 1..=8 {
            w.add(batch * 8 + n);
        }
        w.fail_all_once();
    }
    w.now += S; // all 32 retries due, no body kept while waiting
    let plan = w.jobs.plan(w.now, false);
    assert_eq!(plan.fetch.len(), 6, "at most three quarters for retries");
    assert_eq!(plan.fresh, 2);
    let idle = {
        let mut w2 = World::new(w.jobs.policy.clone());
        for n in 1..=8 {
            w2.add(n);
        }
        w2.fail_all_once();
        w2.now += S;
        w2.jobs.plan(w2.now, true)
    };
    assert_eq!(idle.fetch.len(), 8, "with no fresh traffic, all of it");
}

#[test]
fn throttling_is_not_counted_and_pauses_every_delivery() {
    let mut w = World::new(policy(2));
    for n in 1..=20 {
        w.add(n);
    }
    let throttled = std::cell::Cell::new(0);
    w.run(w.now + 60 * S, |_, attempt| match attempt {
        1..=3 => {
            throttled.set(throttled.get() + 1);
            Attempt::Answered {
                status: 429,
                retry_after: Some(Duration::from_millis(100)),
            }
        }
        _ => status(200),
    });
    assert!(throttled.get() >= 20);
    assert!(w.dead_letters().is_empty(), "429 never counts");
    assert_eq!(w.acked().len(), 20);
}

#[test]
fn a_degraded_app_dead_letters_no_healthy_webhook() {
    let mut w = World::new(policy(10));
    for n in 1..=2000 {
        w.add(n);
    }
    let mut rng = Rng::new(42);
    let fails: Vec<bool> = (0..200_000).map(|_| rng.below(10) < 3).collect();
    let k = std::cell::Cell::new(0);
    w.run(w.now + 3600 * S, |_, _| {
        k.set(k.get() + 1);
        match fails[k.get() % fails.len()] {
            true => status(503),
            false => status(200),
        }
    });
    assert!(w.dead_letters().is_empty());
    assert_eq!(w.acked().len(), 2000);
}

#[test]
fn a_read_that_started_before_an_acknowledgement_cannot_bring_it_back() {
    let mut w = World::new(policy(3));
    let read_started = w.now;
    w.add(1);
    w.run(w.now + S, |_, _| status(200));
    assert_eq!(w.acked(), [id(1)]);
    assert!(!w.jobs.add(entry(1), read_started, w.now), "stale copy");
    assert!(
        w.jobs
            .adopt(id(1), Stored::default(), read_started, w.now, w.unix())
            .is_empty()
    );
    assert!(w.jobs.is_empty());
    assert!(
        w.jobs.add(entry(1), w.now + MS, w.now + MS),
        "a later read may"
    );
}

#[test]
fn probes_and_attempts_overlapping_an_open_breaker_never_count() {
    let mut p = policy(2);
    p.breaker_threshold = 2;
    let mut w = World::new(p);
    w.add(1);
    w.add(2);
    w.add(3);
    let a = w.jobs.next(w.now).unwrap();
    let b = w.jobs.next(w.now).unwrap();
    let c = w.jobs.next(w.now).unwrap();
    w.now += MS;
    let fx = w.jobs.finish(a.id, status(500), w.now, w.unix());
    w.apply(fx);
    let fx = w.jobs.finish(b.id, status(500), w.now, w.unix());
    w.apply(fx);
    assert!(w.effects.contains(&Effect::BreakerOpened(0)));
    // c started before the opening and fails after a probe closed the breaker again.
    w.now += 2 * S;
    w.load();
    let probe = w.jobs.next(w.now).unwrap();
    assert!(probe.probe);
    let fx = w.jobs.finish(probe.id, status(200), w.now, w.unix());
    w.apply(fx);
    let fx = w.jobs.finish(c.id, status(500), w.now, w.unix());
    w.apply(fx);
    w.run(w.now + 10 * S, |_, _| status(200));
    assert!(w.dead_letters().is_empty());
    assert_eq!(w.acked().len(), 3);
}

#[test]
fn a_probe_is_the_webhook_that_failed_least() {
    let mut p = policy(10);
    p.breaker_threshold = 2;
    let mut w = World::new(p);
    w.add(1);
    w.add(2);
    w.run(w.now + 10 * MS, |_, _| status(500)); // opens the breaker
    w.add(3);
    w.now += 2 * S;
    w.load();
    let probe = w.jobs.next(w.now).unwrap();
    assert!(probe.probe);
    assert_eq!(probe.id, id(3), "the fresh one tests the target");
}

#[test]
fn a_final_4xx_is_dead_lettered_at_once_with_its_status() {
    let mut w = World::new(policy(10));
    w.add(1);
    w.run(w.now + S, |_, _| status(413));
    assert_eq!(w.dead_letters(), [(id(1), 1)]);
    let dl = w.effects.iter().find_map(|e| match e {
        Effect::DeadLetter(_, dl) => Some(dl.clone()),
        _ => None,
    });
    assert_eq!(dl.unwrap().last_status, Some(413));
}

#[test]
fn bodies_of_waiting_webhooks_are_dropped_beyond_the_budget_and_read_again() {
    let mut p = policy(10);
    p.waiting_bytes = 250; // two of the 104-byte entries
    let mut w = World::new(p);
    for n in 1..=4 {
        w.add(n);
    }
    let mut failed_once = std::collections::HashSet::new();
    // Fail each once with a long backoff, then look at what is kept.
    let now = w.now;
    for _ in 0..4 {
        let s = w.jobs.next(now).unwrap();
        failed_once.insert(s.id);
        let fx = w.jobs.finish(s.id, status(500), now, w.unix());
        w.apply(fx);
    }
    assert_eq!(w.jobs.counts.waiting_bytes, 208);
    w.now += S;
    let plan = w.jobs.plan(w.now, true);
    assert_eq!(plan.fetch.len(), 2, "two bodies to read again");
    for (i, _) in plan.fetch {
        w.jobs.fetched(i, Some(entry(i.ms)));
    }
    w.run(w.now + S, |_, _| status(200));
    assert_eq!(w.acked().len(), 4);
}

#[test]
fn an_entry_deleted_while_pending_is_forgotten() {
    let mut w = World::new(policy(3));
    let fx = w
        .jobs
        .adopt(id(5), Stored::default(), w.now, w.now, w.unix());
    assert!(fx.is_empty());
    let plan = w.jobs.plan(w.now, true);
    assert_eq!(plan.fetch, [(id(5), 0)]);
    assert_eq!(w.jobs.fetched(id(5), None), [Effect::Forget(id(5))]);
}

#[test]
fn adopted_webhooks_keep_their_counts_and_schedule() {
    let mut w = World::new(policy(3));
    let stored = Stored {
        tries: 7,
        counted: 2,
        failures: 7,
        due_ms: w.unix() + 5000,
    };
    w.jobs.adopt(id(9), stored, w.now, w.now, w.unix());
    assert_eq!(w.jobs.next_wakeup(), Some(w.now + 5 * S));
    w.now += 5 * S;
    let plan = w.jobs.plan(w.now, true);
    w.jobs.fetched(plan.fetch[0].0, Some(entry(9)));
    let s = w.jobs.next(w.now).unwrap();
    assert_eq!(s.attempt, 8, "X-Relay-Attempt continues across restarts");
    let counted_out = Stored {
        counted: 3,
        ..stored
    };
    let fx = w.jobs.adopt(id(10), counted_out, w.now, w.now, w.unix());
    assert!(matches!(fx[..], [Effect::DeadLetter(i, _)] if i == id(10)));
}

#[test]
fn failed_final_writes_are_offered_again() {
    let mut w = World::new(policy(3));
    w.add(1);
    let s = w.jobs.next(w.now).unwrap();
    let fx = w.jobs.finish(s.id, status(200), w.now, w.unix());
    assert_eq!(fx, [Effect::Ack(id(1))]);
    assert!(w.jobs.retry_writes().is_empty(), "not failed yet");
    w.jobs.write_failed(id(1));
    assert_eq!(w.jobs.retry_writes(), [Effect::Ack(id(1))]);
    assert!(w.jobs.retry_writes().is_empty(), "offered once per failure");
    w.jobs.written(id(1), w.now);
    assert!(w.jobs.is_empty());
}

/// Two targets: one refuses every connection for a minute, the other answers. The other's
/// webhooks are all delivered meanwhile, only the dead one's breaker opens, nothing is
/// dead-lettered, and once it is back its webhooks are delivered too.
#[test]
fn one_targets_outage_does_not_pause_another() {
    let mut w = World::new(policy(3));
    w.jobs = Jobs::new(policy(3), Rng::new(7)).with_routes(
        2,
        Box::new(|e: &Entry| usize::from(e.field("source") == Some(b"down".as_slice()))),
    );
    for n in (1..=10).chain(1000..1010) {
        w.add(n);
    }
    let outage_ends = w.now + 60 * S;
    w.run(outage_ends, |i, _| match i.ms >= 1000 {
        true => Attempt::Unreachable("connection refused".into()),
        false => status(200),
    });
    let acked = w.acked();
    assert_eq!(acked.len(), 10, "the healthy target's webhooks: {acked:?}");
    assert!(acked.iter().all(|i| i.ms < 1000));
    assert!(w.effects.contains(&Effect::BreakerOpened(1)));
    assert!(!w.effects.contains(&Effect::BreakerOpened(0)));
    assert!(w.jobs.breaker_open_for(1) && !w.jobs.breaker_open_for(0));
    assert!(
        w.dead_letters().is_empty(),
        "an outage dead-letters nothing"
    );
    // Back: the waiting ones go through.
    let later = w.now + 60 * S;
    w.run(later, |_, _| status(200));
    assert_eq!(w.acked().len(), 20);
    assert!(w.effects.contains(&Effect::BreakerClosed(1)));
}

/// A target that stays down while its sender keeps sending must not fill the client's
/// capacity with webhooks it cannot take: the other target's fresh webhooks keep being read
/// and delivered.
#[test]
fn a_down_target_does_not_take_the_capacity_of_the_others() {
    let mut w = World::new(policy(3));
    w.jobs = Jobs::new(policy(3), Rng::new(7)).with_routes(
        2,
        Box::new(|e: &Entry| usize::from(e.field("source") == Some(b"down".as_slice()))),
    );
    let (mut down, mut healthy) = (1000, 1);
    let end = w.now + 30 * S; // healthy ids stay below the down ones (1000+)
    while w.now < end {
        // The feed reads what the plan has room for: three of the down target's for each
        // healthy one, as they arrive.
        let room = w.jobs.plan(w.now, false).fresh;
        for i in 0..room.min(8) {
            match i % 4 {
                3 => {
                    w.add(healthy);
                    healthy += 1;
                }
                _ => {
                    w.add(down);
                    down += 1;
                }
            }
        }
        let step = w.now + 100 * MS;
        w.run(step, |i, _| match i.ms >= 1000 {
            true => Attempt::Unreachable("connection refused".into()),
            false => status(200),
        });
        w.now = w.now.max(step);
    }
    let delivered = w.acked().len() as u64;
    assert!(healthy > 100, "fresh entries kept being read: {healthy}");
    assert_eq!(delivered, healthy - 1, "every healthy webhook delivered");
    assert!(w.dead_letters().is_empty());
}
