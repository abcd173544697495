//! A budget of bytes shared by many connections: what a handler reserves for a body it must
//! read before it can tell whether to keep it (a signed webhook). Beyond the budget, such
//! requests are refused instead of buffered, so unauthenticated senders cannot make the
//! server hold more than the budget in memory, however many connections they open.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes are counted in KiB: a semaphore's permits are `u32` per acquisition.
const UNIT: u64 = 1024;

/// The shared budget; `in_use` counts the bytes reserved now (a gauge for operators).
#[derive(Debug, Clone)]
pub struct Budget {
    room: Arc<Semaphore>,
    in_use: Arc<AtomicU64>,
}

/// Bytes reserved from a `Budget`, given back when dropped.
#[derive(Debug)]
pub struct Reserved {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    in_use: Arc<AtomicU64>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.in_use.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Budget {
    pub fn new(bytes: u64, in_use: Arc<AtomicU64>) -> Budget {
        let units = usize::try_from(bytes.div_ceil(UNIT)).unwrap_or(Semaphore::MAX_PERMITS);
        Budget {
            room: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            in_use,
        }
    }

    /// Reserves `bytes` now, or `None` when the budget has no room for them.
    pub fn try_reserve(&self, bytes: u64) -> Option<Reserved> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).ok()?;
        let permit = self.room.clone().try_acquire_many_owned(units).ok()?;
        let bytes = u64::from(units) * UNIT;
        self.in_use.fetch_add(bytes, Ordering::Relaxed);
        Some(Reserved {
            _permit: permit,
            bytes,
            in_use: self.in_use.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_come_back_when_dropped() {
        let in_use = Arc::new(AtomicU64::new(0));
        let b = Budget::new(1024 * 1024, in_use.clone());
        let a = b.try_reserve(800 * 1024).expect("fits");
        assert_eq!(in_use.load(Ordering::Relaxed), 800 * 1024);
        assert!(b.try_reserve(300 * 1024).is_none(), "over the budget");
        drop(a);
        assert_eq!(in_use.load(Ordering::Relaxed), 0);
        assert!(b.try_reserve(1024 * 1024).is_some());
        assert!(b.try_reserve(u64::MAX).is_none());
    }
}
