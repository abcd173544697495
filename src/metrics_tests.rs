//! Unit tests of the metrics text.

use super::*;

#[test]
fn histogram_is_cumulative_with_inf_sum_and_count() {
    let h = Histogram::new(&TIME_BUCKETS);
    h.observe(Duration::from_micros(300));
    h.observe(Duration::from_millis(3));
    h.observe(Duration::from_secs(100));
    let mut out = String::new();
    h.render("x_seconds", "help", &mut out);
    assert!(out.contains("# TYPE x_seconds histogram"));
    assert!(out.contains("x_seconds_bucket{le=\"0.0005\"} 1\n"));
    assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 2\n"));
    assert!(out.contains("x_seconds_bucket{le=\"60\"} 2\n"));
    assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert!(out.contains("x_seconds_count 3\n"));
    assert!(out.contains("x_seconds_sum 100.0033"));
}

#[test]
fn counters_render_every_label() {
    let m = ServerMetrics::default();
    m.requests.inc("stored");
    m.requests.inc("stored");
    m.requests.inc("nonsense");
    let mut out = String::new();
    m.render(&mut out);
    assert!(out.contains("relay_requests_total{outcome=\"stored\"} 2\n"));
    assert!(out.contains("relay_requests_total{outcome=\"other\"} 0\n"));
    assert_eq!(m.requests.get("stored"), 2);
}
