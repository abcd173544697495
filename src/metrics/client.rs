//! The client's metrics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Counter, Counters, E2E_BUCKETS, Histogram, Sources, TIME_BUCKETS, gauge, label};

/// The client's metrics.
pub struct ClientMetrics {
    /// `relay_deliveries_total{outcome="delivered|retried|throttled|dead_lettered"}`.
    pub deliveries: Counters<4>,
    /// `relay_uncounted_failures_total`: failures not counted for lack of evidence.
    pub uncounted: Counter,
    /// `relay_held`: webhooks this client holds (in flight, ready, or waiting for a retry).
    pub held: AtomicU64,
    /// `relay_delivered_total{source}`: webhooks delivered, per source.
    pub delivered_by_source: Sources,
    /// `relay_delivery_seconds`: one attempt, request to response.
    pub delivery: Histogram,
    /// `relay_end_to_end_seconds`: from `received_at` to the target's 2xx.
    pub end_to_end: Histogram,
    /// `relay_breaker_open`: any target's.
    pub breaker_open: AtomicBool,
    /// `relay_target_delivered_total{target}`: webhooks delivered, per target.
    pub delivered_by_target: Sources,
    /// `relay_target_breaker_open{target}`.
    pub target_breakers: std::sync::Mutex<Vec<(String, bool)>>,
}

impl Default for ClientMetrics {
    fn default() -> Self {
        ClientMetrics {
            deliveries: Counters::new(["delivered", "retried", "throttled", "dead_lettered"]),
            uncounted: Counter::default(),
            held: AtomicU64::new(0),
            delivered_by_source: Sources::default(),
            delivery: Histogram::new(&TIME_BUCKETS),
            end_to_end: Histogram::new(&E2E_BUCKETS),
            breaker_open: AtomicBool::new(false),
            delivered_by_target: Sources::default(),
            target_breakers: std::sync::Mutex::default(),
        }
    }
}

impl ClientMetrics {
    pub fn render(&self, out: &mut String) {
        self.deliveries.render(
            "relay_deliveries_total",
            "Delivery attempts by outcome.",
            out,
        );
        self.delivery.render(
            "relay_delivery_seconds",
            "Duration of one delivery attempt.",
            out,
        );
        self.end_to_end.render(
            "relay_end_to_end_seconds",
            "Time from the server receiving a webhook to its delivery.",
            out,
        );
        self.delivered_by_source.render(
            "relay_delivered_total",
            "Webhooks delivered, per source.",
            out,
        );
        self.uncounted.render(
            "relay_uncounted_failures_total",
            "Failed attempts not counted toward RELAY_MAX_ATTEMPTS: nothing showed the target was up.",
            out,
        );
        gauge(
            out,
            "relay_held",
            "Webhooks this client holds: in flight, ready, or waiting for a retry.",
            self.held.load(Ordering::Relaxed),
        );
        gauge(
            out,
            "relay_breaker_open",
            "1 while the circuit breaker of any target is open.",
            u64::from(self.breaker_open.load(Ordering::Relaxed)),
        );
        self.delivered_by_target.render_as(
            "relay_target_delivered_total",
            "Webhooks delivered, per target (default, or the routed source).",
            "target",
            out,
        );
        let name = "relay_target_breaker_open";
        let _ = writeln!(
            out,
            "# HELP {name} 1 while the target's circuit breaker is open.\n# TYPE {name} gauge"
        );
        for (target, open) in self
            .target_breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "{name}{{target=\"{}\"}} {}",
                label(target),
                u8::from(*open)
            );
        }
    }
}
