//! How a keep-alive connection waits for its next request: until a byte arrives, the idle
//! timeout, or shutdown (plus a grace for a request already on the way).
//!
//! Both the timer and the shutdown watch live as long as the connection. A timer made per
//! request was put in tokio's wheel and taken out again, under the driver's lock, on every
//! keep-alive request, and a shutdown wait made per request joined and left the watch's
//! waiter list each time; moving a registered timer's deadline later is a compare-and-swap.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::shutdown::Shutdown;

/// After shutdown, how long a connection accepted just before it gets for its first request:
/// its sender connected while we were accepting, and its request is on the way.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// After shutdown, how long an idle keep-alive connection is watched for a request already
/// on the way before it is closed (a request sent as we close would be reset).
const KEEP_ALIVE_GRACE: Duration = Duration::from_millis(100);

/// Why waiting for a request ended without one.
pub enum Ended {
    Idle,
    Shutdown,
}

pub struct IdleWait {
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// Completes on shutdown; `None` once it has (a finished future must not be polled).
    stopped: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl IdleWait {
    pub fn new(timeout: Duration, mut shutdown: Shutdown) -> IdleWait {
        IdleWait {
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            stopped: Some(Box::pin(async move { shutdown.wait().await })),
        }
    }

    /// Runs `read` (cancel-safe: nothing it read is lost when it is dropped) until it
    /// completes, the idle timeout passes, or shutdown plus the grace for a connection that
    /// has `served` requests: a request that starts within the grace is read and answered.
    pub async fn wait<T>(
        &mut self,
        served: u32,
        read: impl Future<Output = T>,
    ) -> Result<T, Ended> {
        self.timer.as_mut().reset(Instant::now() + self.timeout);
        let grace = match served {
            0 => FIRST_REQUEST_GRACE,
            _ => KEEP_ALIVE_GRACE,
        };
        let stopped = &mut self.stopped;
        let stopping = async {
            if let Some(watch) = stopped {
                watch.await;
                *stopped = None;
            }
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            biased;
            r = read => Ok(r),
            () = self.timer.as_mut() => Err(Ended::Idle),
            () = stopping => Err(Ended::Shutdown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn reads_time_out_and_shutdown_ends_the_wait_after_the_grace() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let mut wait = IdleWait::new(Duration::from_millis(50), shutdown);
        assert_eq!(wait.wait(1, async { 7 }).await.ok(), Some(7));
        let never = std::future::pending::<()>;
        for _ in 0..2 {
            // Each wait gets the whole timeout again.
            let started = Instant::now();
            assert!(matches!(wait.wait(1, never()).await, Err(Ended::Idle)));
            assert!(started.elapsed() >= Duration::from_millis(50));
        }
        let started = Instant::now();
        trigger.trigger();
        let mut wait = IdleWait {
            timeout: Duration::from_secs(60),
            ..wait
        };
        assert!(matches!(wait.wait(1, never()).await, Err(Ended::Shutdown)));
        assert!(started.elapsed() >= KEEP_ALIVE_GRACE);
        // After shutdown: a request within the grace is still read, and waiting again
        // (the shutdown watch already finished) ends after the grace.
        assert_eq!(wait.wait(0, async { 8 }).await.ok(), Some(8));
        assert!(matches!(wait.wait(1, never()).await, Err(Ended::Shutdown)));
    }
}
