//! Stream entry ids (`<ms>-<seq>`), parsed once at the boundary: 16 bytes, `Copy`, ordered as
//! Redis orders them. The client keeps one per webhook it holds, so a waiting webhook costs
//! its id and a few counters, never a string per data structure.

use std::fmt;
use std::str::FromStr;

/// A full stream id: both parts are required, so `1000` (which Redis would read as
/// `1000-0` in some commands and as a range in others) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

/// Not an id of the form `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadId;

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a stream id like 1764351234567-0")
    }
}

impl std::error::Error for BadId {}

impl FromStr for StreamId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        let (ms, seq) = s.split_once('-').ok_or(BadId)?;
        let digits = |p: &str| {
            (!p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u64>().ok())
                .flatten()
        };
        Ok(StreamId {
            ms: digits(ms).ok_or(BadId)?,
            seq: digits(seq).ok_or(BadId)?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ids_only() {
        assert_eq!(
            "1700000000000-12".parse(),
            Ok(StreamId {
                ms: 1_700_000_000_000,
                seq: 12
            })
        );
        assert_eq!("0-0".parse::<StreamId>().unwrap().to_string(), "0-0");
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1000",
            "a-1",
            "1-1-1",
            "1 -0",
            "+",
            "$",
            "-1-0",
            "+1-0",
            "99999999999999999999999-0",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ordered_like_redis() {
        let a: StreamId = "5-9".parse().unwrap();
        let b: StreamId = "10-0".parse().unwrap();
        assert!(a < b);
    }
}
