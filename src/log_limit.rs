//! Warnings about what outsiders cause (refused senders, failed handshakes, refused writes)
//! are rate-limited, so nobody can flood the log: the first few of a kind in a minute are
//! logged, the rest counted and summed up ("… and 1234 more in the last minute").

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines of one kind logged per window.
const PER_WINDOW: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);

/// One kind of warning.
pub struct LogLimit {
    what: &'static str,
    state: Mutex<Window>,
}

/// The current window of one kind: pure, the clock passed in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Window {
    /// An event at `now`: whether to log it, and a count of suppressed events of the window
    /// that just ended, to report first.
    fn event(&mut self, now: Instant) -> (bool, Option<u64>) {
        let summary = self.roll(now);
        self.started.get_or_insert(now);
        if self.logged < PER_WINDOW {
            self.logged += 1;
            (true, summary)
        } else {
            self.suppressed += 1;
            (false, summary)
        }
    }

    /// Ends the window if it is over; returns what it suppressed.
    fn roll(&mut self, now: Instant) -> Option<u64> {
        let over = self
            .started
            .is_some_and(|s| now.duration_since(s) >= WINDOW);
        if !over {
            return None;
        }
        let suppressed = std::mem::take(self);
        (suppressed.suppressed > 0).then_some(suppressed.suppressed)
    }
}

impl LogLimit {
    /// `what` names the kind in the summary line ("refused senders: missing API key").
    pub const fn new(what: &'static str) -> Self {
        LogLimit {
            what,
            state: Mutex::new(Window {
                started: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Logs `line()` at warn unless this kind has had its share in the last minute.
    pub fn warn(&self, line: impl FnOnce() -> String) {
        let (log, summary) = self.window().event(Instant::now());
        self.summary(summary);
        if log {
            log::warn!("{}", line());
        }
    }

    /// Reports what the last window suppressed, once it is over (call now and then).
    pub fn flush(&self) {
        let summary = self.window().roll(Instant::now());
        self.summary(summary);
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn summary(&self, suppressed: Option<u64>) {
        if let Some(n) = suppressed {
            log::warn!("{}: … and {n} more in the last minute", self.what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_minute_then_a_count() {
        let t0 = Instant::now();
        let mut w = Window::default();
        let logged = (0..100).filter(|_| w.event(t0).0).count();
        assert_eq!(logged, PER_WINDOW as usize);
        assert_eq!(
            w.roll(t0 + Duration::from_secs(59)),
            None,
            "window still open"
        );
        assert_eq!(
            w.event(t0 + WINDOW),
            (true, Some(95)),
            "the next window reports the last one's count"
        );
        assert_eq!(w.roll(t0 + 2 * WINDOW), None, "nothing suppressed since");
    }
}
