//! Counters and histograms, and their Prometheus text exposition. Lock-free to update; the
//! gauges that need Redis are read at scrape time by the admin listener.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod client;

pub use client::ClientMetrics;

/// Bucket bounds in seconds for request and delivery times: sub-millisecond to a minute.
const TIME_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
/// End-to-end times include retries and outages: up to a day.
const E2E_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0,
    21_600.0, 86_400.0,
];

/// A cumulative histogram.
pub struct Histogram {
    bounds: &'static [f64],
    /// Per-bucket (non-cumulative) counts; the last slot is `+Inf`.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// A counter with one label value per variant.
pub struct Counters<const N: usize> {
    labels: [&'static str; N],
    values: [AtomicU64; N],
}

impl<const N: usize> Counters<N> {
    fn new(labels: [&'static str; N]) -> Self {
        Counters {
            labels,
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Adds one to the counter labelled `label` (unknown labels are a bug: ignored).
    pub fn inc(&self, label: &str) {
        if let Some(i) = self.labels.iter().position(|l| *l == label) {
            self.values[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, label: &str) -> u64 {
        self.labels
            .iter()
            .position(|l| *l == label)
            .map_or(0, |i| self.values[i].load(Ordering::Relaxed))
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (label, v) in self.labels.iter().zip(&self.values) {
            let _ = writeln!(
                out,
                "{name}{{outcome=\"{label}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

/// Counts per webhook source, for a bounded set of sources: the first `MAX_SOURCES` seen get a
/// series each, any further ones share `source="(other)"` (sources come from URLs, and a
/// metric's label set must not grow without bound).
#[derive(Default)]
pub struct Sources(std::sync::Mutex<Vec<(String, u64)>>);

/// Distinct `source` label values per counter.
const MAX_SOURCES: usize = 50;

impl Sources {
    pub fn inc(&self, source: &str) {
        let source = if source.is_empty() { "(none)" } else { source };
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = all.iter_mut().find(|(s, _)| s == source) {
            e.1 += 1;
        } else if all.len() < MAX_SOURCES {
            all.push((source.to_owned(), 1));
        } else if let Some(e) = all.iter_mut().find(|(s, _)| s == "(other)") {
            e.1 += 1;
        } else {
            all.push(("(other)".to_owned(), 1));
        }
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        self.render_as(name, help, "source", out);
    }

    /// With the values under label `key`.
    fn render_as(&self, name: &str, help: &str, key: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (value, n) in self.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "{name}{{{key}=\"{}\"}} {n}", label(value));
        }
    }
}

/// A label value with `\`, `"` and newlines escaped (Prometheus text format).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `relay_build_info{version="…"} 1`.
pub fn build_info(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP relay_build_info The running version.\n# TYPE relay_build_info gauge\nrelay_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

/// The server's metrics.
pub struct ServerMetrics {
    /// `relay_requests_total{outcome}`.
    pub requests: Counters<7>,
    /// `relay_ingest_seconds`: from a webhook POST's complete head (reading its body
    /// included) to its answer.
    pub ingest: Histogram,
    /// `relay_webhooks_total{source}`: webhooks stored, per source.
    pub stored_by_source: Sources,
    /// `relay_retention_runs_total`: completed retention passes.
    pub retention_runs: Counter,
    /// `relay_trimmed_total`: delivered entries removed by retention.
    pub trimmed: Counter,
    /// `relay_unverified_bytes`: bytes of `RELAY_UNVERIFIED_BUDGET` reserved now by signed
    /// bodies being read.
    pub unverified_bytes: std::sync::Arc<AtomicU64>,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            requests: Counters::new([
                "stored",
                "unauthenticated",
                "invalid",
                "unavailable",
                "backlog_full",
                "over_budget",
                "other",
            ]),
            ingest: Histogram::new(&TIME_BUCKETS),
            stored_by_source: Sources::default(),
            retention_runs: Counter::default(),
            trimmed: Counter::default(),
            unverified_bytes: Default::default(),
        }
    }
}

impl ServerMetrics {
    pub fn render(&self, out: &mut String) {
        self.requests.render(
            "relay_requests_total",
            "Requests on the public listener by outcome.",
            out,
        );
        self.ingest.render(
            "relay_ingest_seconds",
            "Time from a webhook's complete head, through reading its body, to its answer.",
            out,
        );
        self.stored_by_source
            .render("relay_webhooks_total", "Webhooks stored, per source.", out);
        self.retention_runs.render(
            "relay_retention_runs_total",
            "Completed retention passes.",
            out,
        );
        self.trimmed.render(
            "relay_trimmed_total",
            "Delivered entries removed by retention.",
            out,
        );
        gauge(
            out,
            "relay_unverified_bytes",
            "Bytes of RELAY_UNVERIFIED_BUDGET reserved by signed bodies being read.",
            self.unverified_bytes.load(Ordering::Relaxed),
        );
    }
}

/// A counter without labels.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            self.get()
        );
    }
}

/// Appends one gauge with its HELP and TYPE lines.
pub fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
