use super::*;

const MS: Duration = Duration::from_millis(1);

fn policy(max_attempts: u32, threshold: u32) -> Policy {
    Policy {
        concurrency: 4,
        max_attempts,
        backoff: Backoff {
            base: 10 * MS,
            max: 10 * MS,
        },
        breaker_threshold: threshold,
        breaker_cooldown: 1000 * MS,
    }
}

fn entry(id: &str) -> Entry {
    Entry {
        id: id.to_owned(),
        fields: Some(vec![("v".into(), b"1".to_vec())]),
    }
}

fn status(s: u16) -> Attempt {
    Attempt::Status {
        status: s,
        retry_after: None,
    }
}

fn dead_letters(effects: &[Effect]) -> Vec<(&str, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::DeadLetter(id, dl) => Some((id.as_str(), dl.attempts)),
            _ => None,
        })
        .collect()
}

/// Runs every startable attempt at `now` through `answer`; returns all effects.
fn step(jobs: &mut Jobs, now: Instant, answer: &dyn Fn(&str) -> Attempt) -> Vec<Effect> {
    let mut effects = Vec::new();
    let mut started = Vec::new();
    while let Some(s) = jobs.next(now) {
        started.push(s);
    }
    for s in started {
        let fx = jobs.finish(&s.id, answer(&s.id), now, 0);
        for e in &fx {
            if let Effect::Ack(id) | Effect::DeadLetter(id, _) = e {
                jobs.finished(id);
            }
        }
        effects.extend(fx);
    }
    effects
}

#[test]
fn delivered_is_acked_and_rejected_is_dead_lettered_at_once() {
    let mut jobs = Jobs::new(policy(5, 5), Rng::new(1));
    jobs.add(entry("1-0"), 0, 0);
    jobs.add(entry("2-0"), 0, 0);
    assert!(!jobs.add(entry("1-0"), 0, 0), "duplicates are refused");
    let now = Instant::now();
    let fx = step(&mut jobs, now, &|id| {
        if id == "1-0" {
            status(200)
        } else {
            status(400)
        }
    });
    assert!(fx.contains(&Effect::Ack("1-0".into())));
    assert_eq!(dead_letters(&fx), [("2-0", 1)]);
    let Some(Effect::DeadLetter(_, dl)) = fx.iter().find(|e| matches!(e, Effect::DeadLetter(..)))
    else {
        unreachable!()
    };
    assert_eq!(
        (dl.last_status, dl.last_error.as_str()),
        (Some(400), "HTTP 400")
    );
    assert!(jobs.is_empty());
}

#[test]
fn a_poison_webhook_among_healthy_ones_is_dead_lettered_after_exactly_max_attempts() {
    let mut jobs = Jobs::new(policy(3, 5), Rng::new(7));
    let mut now = Instant::now();
    jobs.add(entry("poison"), 0, 0);
    let mut poison_attempts = 0;
    let mut n = 0;
    let mut dead = Vec::new();
    for _ in 0..200 {
        // A steady trickle of healthy webhooks.
        n += 1;
        jobs.add(entry(&format!("ok-{n}")), 0, 0);
        let fx = step(&mut jobs, now, &|id| {
            if id == "poison" {
                status(500)
            } else {
                status(200)
            }
        });
        poison_attempts += fx
            .iter()
            .filter(|e| matches!(e, Effect::Persist { id, .. } if id == "poison"))
            .count();
        dead.extend(
            dead_letters(&fx)
                .into_iter()
                .map(|(id, a)| (id.to_owned(), a)),
        );
        if !dead.is_empty() {
            break;
        }
        now += 5 * MS;
    }
    assert_eq!(dead, [("poison".to_owned(), 3)]);
    assert!(poison_attempts >= 3);
    assert!(!jobs.contains("poison"));
}

#[test]
fn an_outage_of_any_length_dead_letters_nothing() {
    let mut jobs = Jobs::new(policy(2, 3), Rng::new(3));
    let mut now = Instant::now();
    for i in 0..10 {
        jobs.add(entry(&format!("{i}-0")), 0, 0);
    }
    let mut opened = 0;
    let mut attempts = 0;
    // One hour of a dead target, stepping 50 ms.
    for _ in 0..72_000 {
        let fx = step(&mut jobs, now, &|_| {
            Attempt::Failed("connection refused".into())
        });
        attempts += fx
            .iter()
            .filter(|e| matches!(e, Effect::Persist { .. }))
            .count();
        opened += fx.iter().filter(|e| **e == Effect::BreakerOpened).count();
        assert!(
            dead_letters(&fx).is_empty(),
            "dead-lettered during an outage"
        );
        now += 50 * MS;
    }
    assert_eq!(opened, 1, "opened once, failed probes keep it open");
    assert!(attempts < 3 + 3700, "only probes while open: {attempts}");
    assert!(jobs.breaker_open());
    // The target returns: everything is delivered, nothing dead-lettered.
    let mut acked = 0;
    for _ in 0..200 {
        let fx = step(&mut jobs, now, &|_| status(204));
        assert!(dead_letters(&fx).is_empty());
        acked += fx.iter().filter(|e| matches!(e, Effect::Ack(_))).count();
        now += 50 * MS;
    }
    assert_eq!(acked, 10);
    assert!(!jobs.breaker_open());
}

#[test]
fn a_waiting_retry_does_not_hold_back_the_others() {
    let mut jobs = Jobs::new(policy(10, 100), Rng::new(5));
    let now = Instant::now();
    jobs.add(entry("slow"), 0, 0);
    let s = jobs.next(now).unwrap();
    jobs.finish(&s.id, status(503), now, 0);
    jobs.add(entry("next"), 0, 0);
    let s = jobs.next(now).unwrap();
    assert_eq!(
        s.id, "next",
        "the new webhook goes while the failed one waits"
    );
    assert_eq!(s.attempt, 1);
}

#[test]
fn unconfirmed_failures_gate_the_retry_until_a_verdict_or_a_cooldown() {
    let mut jobs = Jobs::new(policy(10, 100), Rng::new(9));
    let t0 = Instant::now();
    jobs.add(entry("a"), 0, 0);
    let s = jobs.next(t0).unwrap();
    jobs.finish(&s.id, status(500), t0, 0);
    // Backoff (≤ 10 ms) is over, but nothing confirmed the failure: it waits.
    assert_eq!(jobs.next(t0 + 20 * MS), None);
    // Another webhook succeeds: the failure counts and "a" is released at once.
    jobs.add(entry("b"), 0, 0);
    let b = jobs.next(t0 + 20 * MS).unwrap();
    let fx = jobs.finish(&b.id, status(200), t0 + 21 * MS, 0);
    assert!(fx.contains(&Effect::Persist {
        id: "a".into(),
        tries: 1,
        counted: 1
    }));
    jobs.finished("b");
    let a = jobs.next(t0 + 21 * MS).unwrap();
    assert_eq!((a.id.as_str(), a.attempt), ("a", 2));

    // Without any verdict it goes anyway after one cooldown.
    jobs.finish("a", status(500), t0 + 30 * MS, 0);
    assert_eq!(jobs.next(t0 + 60 * MS), None);
    assert!(jobs.next(t0 + 60 * MS + 1000 * MS).is_some());
}

#[test]
fn stored_counts_carry_over_a_restart() {
    let mut jobs = Jobs::new(policy(3, 100), Rng::new(11));
    let now = Instant::now();
    jobs.add(entry("a"), 7, 2);
    let s = jobs.next(now).unwrap();
    assert_eq!(s.attempt, 8, "X-Relay-Attempt continues");
    let fx = jobs.finish(&s.id, status(500), now, 0);
    assert!(fx.contains(&Effect::Persist {
        id: "a".into(),
        tries: 8,
        counted: 2
    }));
    jobs.add(entry("b"), 0, 0);
    let later = now + 20 * MS;
    let b = jobs.next(later).unwrap();
    let fx = jobs.finish(&b.id, status(200), later, 0);
    assert_eq!(dead_letters(&fx), [("a", 3)]);
}

#[test]
fn concurrency_is_a_cap_and_abandoned_attempts_free_their_slot() {
    let mut p = policy(3, 100);
    p.concurrency = 2;
    let mut jobs = Jobs::new(p, Rng::new(2));
    let now = Instant::now();
    for id in ["a", "b", "c"] {
        jobs.add(entry(id), 0, 0);
    }
    let a = jobs.next(now).unwrap();
    jobs.next(now).unwrap();
    assert_eq!(jobs.next(now), None);
    jobs.abandon(&a.id);
    assert_eq!(jobs.in_flight(), 1);
    assert_eq!(jobs.next(now).unwrap().id, "c");
}
