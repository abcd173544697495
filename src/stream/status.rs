//! Whether Redis is up, as the log tells it: one line when it goes away, one when it is back.
//! A node that refuses writes as a replica (`READONLY`, …) answers reads in between; taken
//! for an outage each time, it made the log alternate "unreachable" and "reachable again"
//! every second. It is said a few times a minute instead, and a read that works then is not
//! news. The policy is `next`, pure; the state is one atomic byte.

use std::sync::atomic::{AtomicU8, Ordering};

use super::{Store, StoreError};

/// Nodes answering as replicas, or a cluster that moved or lost the slot: rate-limited.
static MISDIRECTED: crate::log_limit::LogLimit =
    crate::log_limit::LogLimit::new("redis: a node that is not the primary");

/// Reports what the rate-limited warning suppressed in the last minute (call now and then).
pub fn flush_logs() {
    MISDIRECTED.flush();
}

/// The last operation reached Redis.
const UP: u8 = 1;
/// The last failure was a node that is not the primary.
const MISDIRECTED_LAST: u8 = 2;

/// The state a store starts in: up, as nothing failed yet.
pub(super) fn initial() -> AtomicU8 {
    AtomicU8::new(UP)
}

/// How an operation ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Redis answered (a refusal included: the connection is fine).
    Answered,
    /// A node that is not the primary for the key.
    Misdirected,
    /// No connection, no answer.
    Lost,
}

/// What to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Say {
    Nothing,
    Unreachable,
    /// Rate-limited: the node is reachable, only not the primary.
    NotPrimary,
    Again,
}

/// The state after `outcome`, and what to log.
fn next(state: u8, outcome: Outcome) -> (u8, Say) {
    let (up, misdirected) = (state & UP != 0, state & MISDIRECTED_LAST != 0);
    match outcome {
        Outcome::Misdirected => (MISDIRECTED_LAST, Say::NotPrimary),
        Outcome::Lost if up || misdirected => (0, Say::Unreachable),
        Outcome::Lost => (0, Say::Nothing),
        Outcome::Answered if !up && !misdirected => (UP, Say::Again),
        Outcome::Answered => (UP, Say::Nothing),
    }
}

impl Store {
    /// Whether the last operation reached Redis.
    pub fn is_up(&self) -> bool {
        self.status.load(Ordering::Relaxed) & UP != 0
    }

    /// Logs Redis going away and coming back, once per change (see the module).
    pub(super) fn note<T>(&self, result: &Result<T, StoreError>) {
        let outcome = match result {
            Err(e) if e.is_misdirected() => Outcome::Misdirected,
            Err(e) if !e.is_refusal() => Outcome::Lost,
            _ => Outcome::Answered,
        };
        let mut say = Say::Nothing;
        let _ = self
            .status
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| {
                let (state, said) = next(state, outcome);
                say = said;
                Some(state)
            });
        match (say, result) {
            (Say::Unreachable, Err(e)) => {
                log::warn!("redis unreachable: {}", crate::error::Report(e));
            }
            (Say::NotPrimary, Err(e)) => {
                MISDIRECTED.warn(|| format!("redis unreachable: {}", crate::error::Report(e)));
            }
            (Say::Again, _) => log::info!("redis reachable again"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcomes: &[Outcome]) -> Vec<Say> {
        let mut state = UP;
        outcomes
            .iter()
            .map(|o| {
                let (s, say) = next(state, *o);
                state = s;
                say
            })
            .collect()
    }

    use Outcome::*;

    #[test]
    fn an_outage_is_said_once_and_its_end_once() {
        assert_eq!(
            run(&[Answered, Lost, Lost, Lost, Answered, Answered]),
            [
                Say::Nothing,
                Say::Unreachable,
                Say::Nothing,
                Say::Nothing,
                Say::Again,
                Say::Nothing
            ]
        );
    }

    #[test]
    fn a_replica_answering_reads_in_between_does_not_flap() {
        assert_eq!(
            run(&[Misdirected, Answered, Misdirected, Answered]),
            [Say::NotPrimary, Say::Nothing, Say::NotPrimary, Say::Nothing]
        );
    }

    #[test]
    fn an_outage_after_a_replica_is_still_said() {
        assert_eq!(
            run(&[Misdirected, Lost, Answered]),
            [Say::NotPrimary, Say::Unreachable, Say::Again]
        );
    }
}
