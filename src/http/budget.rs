//! A budget of bytes shared by many connections: what a handler reserves for a body it must
//! read before it can tell whether to keep it (a signed webhook). Beyond the budget, such
//! requests are refused instead of buffered, so unauthenticated senders cannot make the
//! server hold more than the budget in memory, however many connections they open.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes are counted in KiB: a semaphore's permits are `u32` per acquisition.
const UNIT: u64 = 1024;

/// The shared budget.
#[derive(Debug, Clone)]
pub struct Budget(Arc<Semaphore>);

/// Bytes reserved from a `Budget`, given back when dropped.
#[derive(Debug)]
pub struct Reserved(#[allow(dead_code)] OwnedSemaphorePermit);

impl Budget {
    pub fn new(bytes: u64) -> Budget {
        let units = usize::try_from(bytes.div_ceil(UNIT)).unwrap_or(Semaphore::MAX_PERMITS);
        Budget(Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))))
    }

    /// Reserves `bytes` now, or `None` when the budget has no room for them.
    pub fn try_reserve(&self, bytes: u64) -> Option<Reserved> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).ok()?;
        self.0
            .clone()
            .try_acquire_many_owned(units)
            .ok()
            .map(Reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_come_back_when_dropped() {
        let b = Budget::new(1024 * 1024);
        let a = b.try_reserve(800 * 1024).expect("fits");
        assert!(b.try_reserve(300 * 1024).is_none(), "over the budget");
        drop(a);
        assert!(b.try_reserve(1024 * 1024).is_some());
        assert!(b.try_reserve(u64::MAX).is_none());
    }
}
