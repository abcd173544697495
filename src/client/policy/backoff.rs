//! Retry delays: exponential backoff with full jitter, `Retry-After` honoured up to the max.
//! Pure: the random source is passed in.

use std::time::Duration;

/// The backoff schedule of `RELAY_BACKOFF_BASE` / `RELAY_BACKOFF_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling for retry number `attempt` (1 = after the first failure):
    /// `min(max, base · 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt: full jitter (uniform in `[0, ceiling]`), or the
    /// target's `Retry-After` capped at `max` when it sent one.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut Rng) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max);
        }
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.below(nanos.saturating_add(1)))
    }
}

/// A small SplitMix64 generator: jitter needs spread, not cryptographic quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Seeded from the clock and the process id.
    pub fn from_entropy() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng(t ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(600),
        }
    }

    #[test]
    fn ceiling_doubles_up_to_max() {
        assert_eq!(b().ceiling(1), Duration::from_secs(1));
        assert_eq!(b().ceiling(2), Duration::from_secs(2));
        assert_eq!(b().ceiling(10), Duration::from_secs(512));
        assert_eq!(b().ceiling(11), Duration::from_secs(600));
        assert_eq!(b().ceiling(1000), Duration::from_secs(600));
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_spreads() {
        let mut rng = Rng::new(42);
        let delays: Vec<Duration> = (0..1000).map(|_| b().delay(4, None, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        assert!(delays.iter().any(|d| *d < Duration::from_secs(2)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(6)));
    }

    #[test]
    fn retry_after_is_honoured_up_to_max() {
        let mut rng = Rng::new(1);
        assert_eq!(
            b().delay(1, Some(Duration::from_secs(30)), &mut rng),
            Duration::from_secs(30)
        );
        assert_eq!(
            b().delay(1, Some(Duration::from_secs(3600)), &mut rng),
            Duration::from_secs(600)
        );
    }
}
