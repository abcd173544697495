//! The `X-Relay-Id` of a webhook: a ULID the server makes when it stores the webhook, kept in
//! the record's `origin_id` field, so retries, redeliveries and DLQ replays carry it.
//!
//! Stream ids cannot be that id once there is more than one stream or more than one Redis:
//! two partitions issue the same `ms-seq`, and a replica promoted after losing the tail of
//! the stream issues ids again. A ULID (48 bits of Unix milliseconds, 80 bits that are
//! unique per process) sorts by time like a stream id and cannot collide: within a process
//! the 64 low bits are a bijection of a counter, and each process starts from 80 bits read
//! from the kernel's random source.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Crockford's base32, as ULIDs are written.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

struct Seed {
    /// The 16 high bits of the random part: fixed for the process.
    high: u16,
    /// Where the counter starts, mixed into the 64 low bits.
    base: u64,
}

fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let mut bytes = [0u8; 10];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
        if random.is_err() {
            // No random source (a very bare sandbox): time and pid still differ per process.
            let t = crate::clock::unix_ms() ^ (u64::from(std::process::id()) << 40);
            bytes[..8].copy_from_slice(&mix(t).to_le_bytes());
            bytes[8..].copy_from_slice(&(std::process::id() as u16).to_le_bytes());
        }
        Seed {
            base: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            high: u16::from_le_bytes([bytes[8], bytes[9]]),
        }
    })
}

/// splitmix64's finaliser: a bijection on u64, so distinct counters give distinct values.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A new id for a webhook received at `ms` (Unix milliseconds).
pub fn new(ms: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = seed();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let low = mix(seed.base.wrapping_add(n));
    encode(ms, seed.high, low)
}

/// The 26 characters of a ULID: `ms` (48 bits), then `high` and `low` (80 bits). Each digit
/// is 5 bits, so the 130 bits of digits split into three runs that fit a `u64` each (no
/// `u128` shift per digit): 10 digits of time, 8 of `high` and the top of `low`, 8 of the
/// rest of `low`.
fn encode(ms: u64, high: u16, low: u64) -> String {
    const LOW_40: u64 = (1 << 40) - 1;
    let mut text = [0u8; 26];
    let (time, rest) = text.split_at_mut(10);
    let (middle, last) = rest.split_at_mut(8);
    digits(time, ms & 0xFFFF_FFFF_FFFF);
    digits(middle, (u64::from(high) << 24) | (low >> 40));
    digits(last, low & LOW_40);
    // Crockford digits, so always ASCII: one check, one allocation of the exact size (the
    // lossy conversion walked it in chunks: 240 instructions per webhook).
    std::str::from_utf8(&text)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// `v` as `out.len()` base-32 digits, most significant first.
fn digits(out: &mut [u8], v: u64) {
    let n = out.len();
    for (i, c) in out.iter_mut().enumerate() {
        *c = ALPHABET[((v >> (5 * (n - 1 - i))) & 31) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_ulid_spec_does() {
        // The specification's example: 1469918176385 ms is "01ARYZ6S41".
        let id = encode(1_469_918_176_385, 0, 0);
        assert_eq!(id, "01ARYZ6S410000000000000000");
        assert_eq!(encode(0, u16::MAX, u64::MAX), "0000000000ZZZZZZZZZZZZZZZZ");
        assert_eq!(encode(u64::MAX, 0, 0).len(), 26);
    }

    #[test]
    fn runs_of_digits_are_the_128_bit_value() {
        let by_u128 = |ms: u64, high: u16, low: u64| -> String {
            let value = (u128::from(ms & 0xFFFF_FFFF_FFFF) << 80)
                | (u128::from(high) << 64)
                | u128::from(low);
            (0..26)
                .map(|i| ALPHABET[((value >> (125 - 5 * i)) & 31) as usize] as char)
                .collect()
        };
        let mut x = 0x0123_4567_89AB_CDEFu64;
        for _ in 0..10_000 {
            x = mix(x);
            let (ms, high, low) = (x >> 7, (x >> 13) as u16, mix(x ^ 0x55));
            assert_eq!(encode(ms, high, low), by_u128(ms, high, low));
        }
        assert_eq!(
            encode(u64::MAX, u16::MAX, u64::MAX),
            by_u128(u64::MAX, u16::MAX, u64::MAX)
        );
    }

    #[test]
    fn ids_differ_and_sort_by_time() {
        let ids: std::collections::HashSet<String> = (0..100_000).map(|_| new(1)).collect();
        assert_eq!(ids.len(), 100_000, "no id repeats within a process");
        let (a, b) = (new(1_700_000_000_000), new(1_700_000_000_001));
        assert!(a < b, "{a} sorts before {b}");
    }
}
