//! Shutdown is detect → tell → wait: SIGINT or SIGTERM flips a watch channel that every long
//! loop selects on; the loops finish what they are doing and return.

use tokio::sync::watch;

/// The sending side: triggers shutdown for every `Shutdown` cloned from it.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// The receiving side, cloned into every task that must stop on shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and receiver, not yet triggered.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every receiver to shut down. Idempotent.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// True once shutdown was triggered, or the trigger is gone (as for `wait`).
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Completes when shutdown is triggered (or the trigger is gone).
    pub async fn wait(&mut self) {
        // An error means the trigger was dropped: nobody can stop us any more, which we
        // treat as a shutdown so no loop outlives its owner.
        let _ = self.0.wait_for(|t| *t).await;
    }
}

/// A receiver triggered by the first SIGINT or SIGTERM of the process.
///
/// Must be called inside a tokio runtime. Fails only if the signal handlers cannot be
/// installed.
pub fn on_signals() -> std::io::Result<Shutdown> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (trigger, shutdown) = channel();
    crate::task::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        log::info!("received {name}, shutting down");
        trigger.trigger();
    });
    Ok(shutdown)
}

/// SIGHUP, from now on (its default action, ending the process, no longer applies).
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_returns_after_trigger_and_when_trigger_dropped() {
        let (trigger, mut shutdown) = channel();
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        shutdown.wait().await;
        assert!(shutdown.is_triggered());

        let (trigger, mut shutdown) = channel();
        drop(trigger);
        assert!(shutdown.is_triggered(), "a dropped trigger is a shutdown");
        shutdown.wait().await;
    }
}
