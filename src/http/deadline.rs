//! Deadlines of a connection's reads that start only when they are needed.

use std::time::Duration;

use tokio::time::Instant;

/// A deadline `after` from the first time it is asked for, then fixed: a head or body that
/// is already in the buffer reads no clock for it (every keep-alive request asked for two).
pub struct Later {
    after: Duration,
    at: Option<Instant>,
}

impl Later {
    pub fn new(after: Duration) -> Later {
        Later { after, at: None }
    }

    pub fn at(&mut self) -> Instant {
        *self.at.get_or_insert_with(|| Instant::now() + self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_when_first_asked_then_stays() {
        let mut later = Later::new(Duration::from_secs(10));
        let before = Instant::now();
        let at = later.at();
        assert!(at >= before + Duration::from_secs(10));
        assert!(at <= Instant::now() + Duration::from_secs(10));
        assert_eq!(later.at(), at);
    }
}
