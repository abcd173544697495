//! How fast the link to Redis is assumed to be, for deadlines that grow with the bytes a call
//! carries. A fixed deadline turns a large webhook over a slow link (an SSH tunnel, a small
//! uplink) into a timeout that repeats forever, while Redis still runs every timed-out write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Assumed at start: a modest VPS uplink. Local Redis is far faster, so small calls keep the
/// base deadline in practice.
const INITIAL: u64 = 1024 * 1024;
/// Never assume less than this: a 4 MiB body then gets about two minutes.
const FLOOR: u64 = 32 * 1024;
/// Calls smaller than this say little about the link; they neither slow nor speed the guess.
const SIGNIFICANT: usize = 64 * 1024;

/// The assumed bytes per second of one link to Redis. Halved when a call that carried a
/// significant number of bytes timed out; raised to half of what a completed call achieved,
/// when that is more.
#[derive(Debug)]
pub struct LinkSpeed(AtomicU64);

impl Default for LinkSpeed {
    fn default() -> Self {
        LinkSpeed(AtomicU64::new(INITIAL))
    }
}

/// Whether a call of `bytes` says something about the link (is worth timing).
pub fn significant(bytes: usize) -> bool {
    bytes >= SIGNIFICANT
}

impl LinkSpeed {
    /// The deadline of a call carrying about `bytes` bytes: `base` plus their transfer time.
    pub fn deadline(&self, base: Duration, bytes: usize) -> Duration {
        let bps = self.0.load(Ordering::Relaxed).max(FLOOR);
        base + Duration::from_secs_f64(bytes as f64 / bps as f64)
    }

    /// A call of `bytes` timed out: assume a slower link for the next ones.
    pub fn timed_out(&self, bytes: usize) {
        if bytes >= SIGNIFICANT {
            let _ = self
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some((b / 2).max(FLOOR))
                });
        }
    }

    /// A call of `bytes` completed in `took`.
    pub fn observe(&self, bytes: usize, took: Duration) {
        if !significant(bytes) || took.is_zero() {
            return;
        }
        let seen = (bytes as f64 / took.as_secs_f64() / 2.0) as u64;
        self.0.fetch_max(seen.max(FLOOR), Ordering::Relaxed);
    }

    /// The current guess in bytes per second.
    pub fn bytes_per_sec(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(FLOOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(1800);

    #[test]
    fn deadlines_grow_with_bytes_and_after_timeouts() {
        let link = LinkSpeed::default();
        assert_eq!(link.deadline(BASE, 0), BASE);
        assert_eq!(
            link.deadline(BASE, 1024 * 1024),
            BASE + Duration::from_secs(1)
        );
        link.timed_out(100); // too small to say anything
        assert_eq!(link.bytes_per_sec(), INITIAL);
        link.timed_out(3 * 1024 * 1024);
        assert_eq!(
            link.deadline(BASE, 1024 * 1024),
            BASE + Duration::from_secs(2)
        );
        for _ in 0..20 {
            link.timed_out(3 * 1024 * 1024);
        }
        assert_eq!(link.bytes_per_sec(), FLOOR);
    }

    #[test]
    fn a_fast_call_raises_the_guess_a_slow_one_does_not_lower_it() {
        let link = LinkSpeed::default();
        link.observe(8 * 1024 * 1024, Duration::from_secs(1)); // 8 MiB/s seen
        assert_eq!(link.bytes_per_sec(), 4 * 1024 * 1024);
        link.observe(1024 * 1024, Duration::from_secs(10));
        assert_eq!(link.bytes_per_sec(), 4 * 1024 * 1024);
    }
}
