//! The configured API keys, compared with a presented key in constant time: the time taken
//! depends neither on the keys' bytes nor on their lengths, only on how many keys there are
//! and on the presented key's own length class.
//!
//! A key of up to `PADDED` bytes (every generated key in practice: 32 random bytes are 43
//! to 64 characters) is compared padded with zeros to that width, eight words at a time,
//! with its length compared alongside. That was a SHA-256 per webhook before, 1.4% of the
//! server's CPU under load (issue 15). Longer keys are compared through their SHA-256
//! digests, whose fixed size hides their lengths the same way.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::config::Secret;

/// Keys up to this many bytes are compared padded; longer ones by digest.
const PADDED: usize = 64;

/// A key of up to `PADDED` bytes, zero-padded, as words; and its length. A longer key is
/// represented by a length no presented short key has.
#[derive(Clone, Copy)]
struct Padded {
    words: [u64; PADDED / 8],
    len: u64,
}

impl Padded {
    fn of(key: &[u8]) -> Option<Padded> {
        let mut bytes = [0u8; PADDED];
        bytes.get_mut(..key.len())?.copy_from_slice(key);
        let mut words = [0u64; PADDED / 8];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        }
        Some(Padded {
            words,
            len: key.len() as u64,
        })
    }
}

impl ConstantTimeEq for Padded {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.words[..].ct_eq(&other.words[..]) & self.len.ct_eq(&other.len)
    }
}

/// The API keys, prepared for both kinds of comparison.
pub struct ApiKeys {
    padded: Vec<Padded>,
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub fn new(keys: &[Secret]) -> ApiKeys {
        let never = Padded {
            words: [0; PADDED / 8],
            len: u64::MAX,
        };
        ApiKeys {
            padded: keys
                .iter()
                .map(|k| Padded::of(k.expose().as_bytes()).unwrap_or(never))
                .collect(),
            digests: keys.iter().map(|k| digest(k.expose())).collect(),
        }
    }

    /// Whether `presented` is one of the keys; every key is compared, whatever matched.
    pub fn contains(&self, presented: &str) -> Choice {
        let mut found = Choice::from(0);
        match Padded::of(presented.as_bytes()) {
            Some(p) => {
                for known in &self.padded {
                    found |= known.ct_eq(&p);
                }
            }
            None => {
                let d = digest(presented);
                for known in &self.digests {
                    found |= known.ct_eq(&d);
                }
            }
        }
        found
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> ApiKeys {
        ApiKeys::new(&list.iter().map(|k| Secret::new(*k)).collect::<Vec<_>>())
    }

    fn has(keys: &ApiKeys, presented: &str) -> bool {
        keys.contains(presented).into()
    }

    #[test]
    fn only_the_exact_keys_match_at_every_length() {
        let short = "k";
        let at_width = "w".repeat(PADDED);
        let long = format!("{}L", "l".repeat(PADDED));
        let set = keys(&[short, &at_width, &long]);
        for key in [short, &at_width, &long] {
            assert!(has(&set, key), "{} bytes", key.len());
            // One byte more, one less, one changed: at the end and at the start.
            assert!(!has(&set, &format!("{key}x")));
            assert!(!has(&set, &key[..key.len() - 1]));
            assert!(!has(&set, &format!("{}?", &key[..key.len() - 1])));
            assert!(!has(&set, &format!("?{}", &key[1..])));
        }
        // Padding is zeros: a presented key ending in NUL bytes is not the shorter key.
        assert!(!has(&set, "k\0"));
        assert!(!has(&set, &format!("{at_width}\0")));
        // A short presented key never matches a long key's marker, nor the empty key.
        assert!(!has(&set, ""));
        assert!(!has(&keys(&[]), "k"));
    }

    #[test]
    fn a_long_presented_key_is_compared_by_digest() {
        let long = "x".repeat(PADDED + 1);
        let set = keys(&[&long]);
        assert!(has(&set, &long));
        assert!(!has(&set, &"x".repeat(PADDED + 2)));
        assert!(!has(&set, &"x".repeat(PADDED)));
    }
}
