//! Metrics tests: the exact exposition text of every kind, escaping, name checks, and counts
//! that stay whole under concurrent updates.

use super::*;

fn rendered(metric: &dyn Render) -> String {
    let mut out = String::new();
    metric.render(&mut out);
    out
}

#[test]
fn a_counter_renders_help_type_and_value() {
    let counter = Counter::new("tessera_requests_total", "Requests served.");
    counter.inc();
    counter.inc_by(41);
    assert_eq!(counter.get(), 42);
    assert_eq!(
        rendered(&counter),
        "# HELP tessera_requests_total Requests served.\n\
         # TYPE tessera_requests_total counter\n\
         tessera_requests_total 42\n"
    );
}

#[test]
fn a_gauge_goes_both_ways() {
    let gauge = Gauge::new("tessera_connections", "Connections open.");
    gauge.set(5);
    gauge.inc();
    gauge.dec();
    gauge.dec();
    gauge.add(-10);
    assert_eq!(gauge.get(), -6);
    assert_eq!(
        rendered(&gauge),
        "# HELP tessera_connections Connections open.\n\
         # TYPE tessera_connections gauge\n\
         tessera_connections -6\n"
    );
}

#[test]
fn a_histogram_renders_cumulative_buckets_sum_and_count() {
    let histogram = Histogram::new("tessera_step_seconds", "Step latency.", &[0.25, 1.0]);
    for value in [0.125, 0.25, 0.5, 4.0] {
        histogram.observe(value);
    }
    assert_eq!(histogram.count(), 4);
    assert_eq!(histogram.sum(), 4.875);
    assert_eq!(
        rendered(&histogram),
        "# HELP tessera_step_seconds Step latency.\n\
         # TYPE tessera_step_seconds histogram\n\
         tessera_step_seconds_bucket{le=\"0.25\"} 2\n\
         tessera_step_seconds_bucket{le=\"1\"} 3\n\
         tessera_step_seconds_bucket{le=\"+Inf\"} 4\n\
         tessera_step_seconds_sum 4.875\n\
         tessera_step_seconds_count 4\n"
    );
}

#[test]
fn an_empty_histogram_renders_zeros() {
    let histogram = Histogram::new("tessera_empty", "Nothing yet.", &[]);
    assert_eq!(
        rendered(&histogram),
        "# HELP tessera_empty Nothing yet.\n\
         # TYPE tessera_empty histogram\n\
         tessera_empty_bucket{le=\"+Inf\"} 0\n\
         tessera_empty_sum 0\n\
         tessera_empty_count 0\n"
    );
}

#[test]
fn histogram_edge_values() {
    let histogram = Histogram::new("h", "h", &[0.001, 1.0]);
    histogram.observe(f64::NAN);
    assert_eq!(histogram.count(), 0, "NaN is ignored");
    histogram.observe(-1.0);
    histogram.observe_duration(Duration::from_millis(1));
    histogram.observe(f64::INFINITY);
    let text = rendered(&histogram);
    assert!(text.contains("h_bucket{le=\"0.001\"} 2\n"), "{text}");
    assert!(text.contains("h_bucket{le=\"1\"} 2\n"), "{text}");
    assert!(text.contains("h_bucket{le=\"+Inf\"} 3\n"), "{text}");
    assert!(text.contains("h_sum +Inf\n"), "{text}");
    assert!(text.contains("h_count 3\n"), "{text}");
}

#[test]
fn families_render_members_in_label_order_with_escaped_values() {
    let requests = CounterVec::new(
        "tessera_s3_requests_total",
        "S3 requests by operation and outcome.",
        &["op", "code"],
    );
    requests.with(&["PutObject", "200"]).inc_by(3);
    requests.with(&["GetObject", "404"]).inc();
    requests.with(&["GetObject", "200"]).inc_by(7);
    requests.with(&["Get\"Odd\\\nName", "500"]).inc();
    assert_eq!(
        rendered(&requests),
        "# HELP tessera_s3_requests_total S3 requests by operation and outcome.\n\
         # TYPE tessera_s3_requests_total counter\n\
         tessera_s3_requests_total{op=\"Get\\\"Odd\\\\\\nName\",code=\"500\"} 1\n\
         tessera_s3_requests_total{op=\"GetObject\",code=\"200\"} 7\n\
         tessera_s3_requests_total{op=\"GetObject\",code=\"404\"} 1\n\
         tessera_s3_requests_total{op=\"PutObject\",code=\"200\"} 3\n"
    );
}

#[test]
fn a_gauge_family_renders_and_forgets_removed_members() {
    let shards = GaugeVec::new("tessera_node_shards", "Shards per node.", &["node"]);
    shards.with(&["2"]).set(10);
    shards.with(&["1"]).set(-1);
    assert!(shards.remove(&["2"]));
    assert!(!shards.remove(&["2"]));
    assert_eq!(
        rendered(&shards),
        "# HELP tessera_node_shards Shards per node.\n\
         # TYPE tessera_node_shards gauge\n\
         tessera_node_shards{node=\"1\"} -1\n"
    );
}

#[test]
fn a_histogram_family_puts_le_after_its_labels() {
    let latency = HistogramVec::new("tessera_rpc_seconds", "RPC latency.", &["method"], &[0.5]);
    latency.with(&["Put"]).observe(0.25);
    latency.with(&["Get"]).observe(2.0);
    assert_eq!(
        rendered(&latency),
        "# HELP tessera_rpc_seconds RPC latency.\n\
         # TYPE tessera_rpc_seconds histogram\n\
         tessera_rpc_seconds_bucket{method=\"Get\",le=\"0.5\"} 0\n\
         tessera_rpc_seconds_bucket{method=\"Get\",le=\"+Inf\"} 1\n\
         tessera_rpc_seconds_sum{method=\"Get\"} 2\n\
         tessera_rpc_seconds_count{method=\"Get\"} 1\n\
         tessera_rpc_seconds_bucket{method=\"Put\",le=\"0.5\"} 1\n\
         tessera_rpc_seconds_bucket{method=\"Put\",le=\"+Inf\"} 1\n\
         tessera_rpc_seconds_sum{method=\"Put\"} 0.25\n\
         tessera_rpc_seconds_count{method=\"Put\"} 1\n"
    );
}

#[test]
fn an_empty_family_renders_its_header_only() {
    let empty = CounterVec::new("tessera_none_total", "None yet.", &["kind"]);
    assert_eq!(
        rendered(&empty),
        "# HELP tessera_none_total None yet.\n# TYPE tessera_none_total counter\n"
    );
}

#[test]
fn help_text_escapes_backslashes_and_newlines_but_not_quotes() {
    let counter = Counter::new("c", "A \"quoted\" path C:\\x\nsecond line.");
    assert_eq!(
        rendered(&counter).lines().next().unwrap(),
        "# HELP c A \"quoted\" path C:\\\\x\\nsecond line."
    );
}

#[test]
fn the_same_labels_give_the_same_member() {
    let family = CounterVec::new("c", "c", &["a"]);
    let first = family.with(&["x"]);
    let again = family.with(&["x"]);
    assert!(Arc::ptr_eq(&first, &again));
    assert!(!Arc::ptr_eq(&first, &family.with(&["y"])));
    // A member removed while held keeps counting, but no longer renders.
    assert!(family.remove(&["x"]));
    first.inc();
    assert!(!rendered(&family).contains("a=\"x\""));
}

#[test]
fn a_family_without_labels_has_one_member() {
    let family = GaugeVec::new("g", "g", &[]);
    family.with(&[]).set(3);
    assert_eq!(rendered(&family), "# HELP g g\n# TYPE g gauge\ng 3\n");
}

#[test]
fn names_are_checked() {
    assert!(valid_metric_name("tessera_repair:rate_5m"));
    assert!(valid_metric_name("_x"));
    for bad in ["", "1x", "a-b", "a b", "é"] {
        assert!(!valid_metric_name(bad), "{bad:?}");
    }
    assert!(valid_label_name("op"));
    assert!(valid_label_name("_op2"));
    for bad in ["", "__name__", "a:b", "2a", "a-b"] {
        assert!(!valid_label_name(bad), "{bad:?}");
    }
}

#[test]
#[should_panic(expected = "invalid metric name")]
fn an_invalid_metric_name_panics() {
    let _ = Counter::new("tessera-requests", "x");
}

#[test]
#[should_panic(expected = "invalid label name")]
fn an_invalid_label_name_panics() {
    let _ = CounterVec::new("c", "c", &["__reserved"]);
}

#[test]
#[should_panic(expected = "repeated")]
fn a_repeated_label_name_panics() {
    let _ = GaugeVec::new("g", "g", &["node", "node"]);
}

#[test]
#[should_panic(expected = "reserved")]
fn le_is_reserved_in_histograms() {
    let _ = HistogramVec::new("h", "h", &["le"], DEFAULT_LATENCY_BUCKETS);
}

#[test]
#[should_panic(expected = "increase strictly")]
fn unordered_bounds_panic() {
    let _ = Histogram::new("h", "h", &[1.0, 0.5]);
}

#[test]
#[should_panic(expected = "finite")]
fn an_explicit_infinite_bound_panics() {
    let _ = Histogram::new("h", "h", &[1.0, f64::INFINITY]);
}

#[test]
#[should_panic(expected = "takes labels")]
fn the_wrong_number_of_label_values_panics() {
    let family = CounterVec::new("c", "c", &["a", "b"]);
    let _ = family.with(&["only-one"]);
}

#[test]
fn bucket_helpers() {
    assert_eq!(DEFAULT_LATENCY_BUCKETS.first(), Some(&0.001));
    assert_eq!(DEFAULT_LATENCY_BUCKETS.last(), Some(&60.0));
    assert!(DEFAULT_LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        exponential_buckets(1024.0, 4.0, 4),
        [1024.0, 4096.0, 16384.0, 65536.0]
    );
    assert!(exponential_buckets(1.0, 2.0, 0).is_empty());
}

#[test]
fn concurrent_updates_are_all_counted() {
    let counter = Arc::new(Counter::new("c", "c"));
    let histogram = Arc::new(Histogram::new("h", "h", DEFAULT_LATENCY_BUCKETS));
    let family = Arc::new(CounterVec::new("f", "f", &["thread"]));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let counter = Arc::clone(&counter);
            let histogram = Arc::clone(&histogram);
            let family = Arc::clone(&family);
            std::thread::spawn(move || {
                let mine = family.with(&[if t % 2 == 0 { "even" } else { "odd" }]);
                for _ in 0..10_000 {
                    counter.inc();
                    histogram.observe(0.5);
                    mine.inc();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(counter.get(), 80_000);
    assert_eq!(histogram.count(), 80_000);
    assert_eq!(histogram.sum(), 40_000.0);
    assert_eq!(family.with(&["even"]).get(), 40_000);
    assert_eq!(family.with(&["odd"]).get(), 40_000);
}

#[test]
fn metrics_render_side_by_side_through_the_trait() {
    let up = Gauge::new("up", "Whether the process is up.");
    up.set(1);
    let served = Counter::new("served_total", "Served.");
    let metrics: [&dyn Render; 2] = [&up, &served];
    let mut out = String::new();
    for metric in metrics {
        metric.render(&mut out);
    }
    assert_eq!(
        out,
        "# HELP up Whether the process is up.\n# TYPE up gauge\nup 1\n\
         # HELP served_total Served.\n# TYPE served_total counter\nserved_total 0\n"
    );
}
