//! Prometheus metrics: counters, gauges and histograms, alone or in labelled families, rendered
//! in the text exposition format 0.0.4.
//!
//! Invariant: recording a value takes no lock (atomics only), so the data path can count
//! freely; a family takes a read lock only to find a member, which hot paths do once and keep
//! (`with` returns an `Arc`). What `render` writes is always valid exposition text: names are
//! checked when a metric is made (an invalid name is a programming error and panics), help
//! text and label values are escaped, and a histogram's `+Inf` bucket always equals its
//! `_count` even while other threads observe.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Upper bounds in seconds for request and step latencies: a millisecond to a minute.
pub const DEFAULT_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// `count` bucket bounds from `start`, each `factor` times the one before (object sizes in
/// bytes, say).
///
/// # Panics
/// If `start` is not positive or `factor` is not above 1.
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    assert!(start > 0.0, "exponential buckets start above 0");
    assert!(factor > 1.0, "exponential buckets grow by a factor above 1");
    std::iter::successors(Some(start), |bound| Some(bound * factor))
        .take(count)
        .collect()
}

/// Something that writes its samples, with their HELP and TYPE lines, in exposition format.
pub trait Render: Send + Sync {
    /// Appends this metric's exposition to `out`.
    fn render(&self, out: &mut String);
}

/// A metric's name and help text, shared by the members of a family.
#[derive(Debug)]
struct Desc {
    name: String,
    help: String,
}

impl Desc {
    fn new(name: &str, help: &str) -> Arc<Self> {
        assert!(valid_metric_name(name), "invalid metric name {name:?}");
        Arc::new(Self {
            name: name.to_owned(),
            help: help.to_owned(),
        })
    }

    fn render_header(&self, kind: &str, out: &mut String) {
        out.push_str("# HELP ");
        out.push_str(&self.name);
        out.push(' ');
        escape_into(&self.help, false, out);
        out.push_str("\n# TYPE ");
        out.push_str(&self.name);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved for Prometheus itself).
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Escapes backslash and newline (help text), and double quotes too (label values).
fn escape_into(text: &str, quotes: bool, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A float as the exposition format spells it (`+Inf`, `-Inf`, `NaN`, or decimal).
fn push_float(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Writes `name{labels} value` for a sample whose label pairs are pre-rendered (`a="x",b="y"`,
/// empty for none) and whose extra pair (`le`) is optional.
fn push_sample(
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
    out: &mut String,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some((key, value)) = extra {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            out.push_str(value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}

/// A metric kind: what its TYPE line says and how one member writes its samples.
trait Kind: Send + Sync {
    const TYPE: &'static str;
    fn samples(&self, name: &str, labels: &str, out: &mut String);
}

/// A value that only goes up (requests served, bytes written).
#[derive(Debug)]
pub struct Counter {
    desc: Arc<Desc>,
    value: AtomicU64,
}

impl Counter {
    /// A counter at 0.
    ///
    /// # Panics
    /// If `name` is not a valid metric name.
    pub fn new(name: &str, help: &str) -> Self {
        Self::with_desc(Desc::new(name, help))
    }

    fn with_desc(desc: Arc<Desc>) -> Self {
        Self {
            desc,
            value: AtomicU64::new(0),
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Appends HELP, TYPE and the value to `out` (a family's member renders through its
    /// family, with its labels).
    pub fn render(&self, out: &mut String) {
        self.desc.render_header(Self::TYPE, out);
        self.samples(&self.desc.name, "", out);
    }
}

impl Kind for Counter {
    const TYPE: &'static str = "counter";
    fn samples(&self, name: &str, labels: &str, out: &mut String) {
        push_sample(name, "", labels, None, out);
        let _ = writeln!(out, "{}", self.get());
    }
}

/// A value that goes up and down (connections open, blobs below full redundancy).
#[derive(Debug)]
pub struct Gauge {
    desc: Arc<Desc>,
    value: AtomicI64,
}

impl Gauge {
    /// A gauge at 0.
    ///
    /// # Panics
    /// If `name` is not a valid metric name.
    pub fn new(name: &str, help: &str) -> Self {
        Self::with_desc(Desc::new(name, help))
    }

    fn with_desc(desc: Arc<Desc>) -> Self {
        Self {
            desc,
            value: AtomicI64::new(0),
        }
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.value.store(value, Ordering::Relaxed);
    }

    /// Adds `delta` (negative to subtract).
    pub fn add(&self, delta: i64) {
        self.value.fetch_add(delta, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Appends HELP, TYPE and the value to `out`.
    pub fn render(&self, out: &mut String) {
        self.desc.render_header(Self::TYPE, out);
        self.samples(&self.desc.name, "", out);
    }
}

impl Kind for Gauge {
    const TYPE: &'static str = "gauge";
    fn samples(&self, name: &str, labels: &str, out: &mut String) {
        push_sample(name, "", labels, None, out);
        let _ = writeln!(out, "{}", self.get());
    }
}

/// Observations counted into fixed buckets (latencies in seconds, sizes in bytes).
#[derive(Debug)]
pub struct Histogram {
    desc: Arc<Desc>,
    /// Upper bounds, strictly increasing and finite; the `+Inf` bucket is implied.
    bounds: Arc<[f64]>,
    /// Observations per bucket (not cumulative), one more than `bounds` for `+Inf`.
    buckets: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum_bits: AtomicU64,
}

impl Histogram {
    /// An empty histogram with upper `bounds` (e.g. [`DEFAULT_LATENCY_BUCKETS`]).
    ///
    /// # Panics
    /// If `name` is not a valid metric name, or `bounds` are not finite and strictly
    /// increasing.
    pub fn new(name: &str, help: &str, bounds: &[f64]) -> Self {
        Self::with_desc(Desc::new(name, help), checked_bounds(bounds))
    }

    fn with_desc(desc: Arc<Desc>, bounds: Arc<[f64]>) -> Self {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            desc,
            bounds,
            buckets,
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Counts one observation (NaN is ignored: it would poison the sum for good).
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Counts a duration, in seconds.
    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The sum of observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }

    /// Appends HELP, TYPE, the cumulative buckets, `_sum` and `_count` to `out`.
    pub fn render(&self, out: &mut String) {
        self.desc.render_header(Self::TYPE, out);
        self.samples(&self.desc.name, "", out);
    }
}

impl Kind for Histogram {
    const TYPE: &'static str = "histogram";
    fn samples(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            le.clear();
            push_float(
                self.bounds.get(i).copied().unwrap_or(f64::INFINITY),
                &mut le,
            );
            push_sample(name, "_bucket", labels, Some(("le", &le)), out);
            let _ = writeln!(out, "{cumulative}");
        }
        push_sample(name, "_sum", labels, None, out);
        push_float(self.sum(), out);
        out.push('\n');
        // The count is the buckets' total as read above, so `+Inf` and `_count` agree.
        push_sample(name, "_count", labels, None, out);
        let _ = writeln!(out, "{cumulative}");
    }
}

fn checked_bounds(bounds: &[f64]) -> Arc<[f64]> {
    assert!(
        bounds.iter().all(|b| b.is_finite()),
        "histogram bounds must be finite (+Inf is implied): {bounds:?}"
    );
    assert!(
        bounds.windows(2).all(|w| w[0] < w[1]),
        "histogram bounds must increase strictly: {bounds:?}"
    );
    bounds.into()
}

/// One member of a family: its label pairs, pre-rendered for exposition, and its metric.
#[derive(Debug)]
struct Member<M> {
    labels: String,
    metric: Arc<M>,
}

/// The members of a labelled family, by label values.
#[derive(Debug)]
struct Family<M> {
    desc: Arc<Desc>,
    label_names: Box<[String]>,
    /// Members by label values.
    members: RwLock<BTreeMap<Box<[String]>, Member<M>>>,
}

impl<M: Kind> Family<M> {
    fn new(name: &str, help: &str, label_names: &[&str], reserved: &[&str]) -> Self {
        for (i, label) in label_names.iter().enumerate() {
            assert!(valid_label_name(label), "invalid label name {label:?}");
            assert!(
                !reserved.contains(label),
                "label name {label:?} is reserved here"
            );
            assert!(
                !label_names[..i].contains(label),
                "label name {label:?} repeated"
            );
        }
        Self {
            desc: Desc::new(name, help),
            label_names: label_names.iter().map(|l| (*l).to_owned()).collect(),
            members: RwLock::new(BTreeMap::new()),
        }
    }

    fn check_arity(&self, values: &[&str]) {
        assert_eq!(
            values.len(),
            self.label_names.len(),
            "metric {} takes labels {:?}, got values {values:?}",
            self.desc.name,
            self.label_names
        );
    }

    fn with(&self, values: &[&str], make: impl FnOnce(Arc<Desc>) -> M) -> Arc<M> {
        self.check_arity(values);
        let key: Box<[String]> = values.iter().map(|v| (*v).to_owned()).collect();
        if let Some(member) = self
            .members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(&member.metric);
        }
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        let desc = Arc::clone(&self.desc);
        let labels = self.render_labels(values);
        let member = members.entry(key).or_insert_with(|| Member {
            labels,
            metric: Arc::new(make(desc)),
        });
        Arc::clone(&member.metric)
    }

    fn remove(&self, values: &[&str]) -> bool {
        self.check_arity(values);
        let key: Box<[String]> = values.iter().map(|v| (*v).to_owned()).collect();
        self.members
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key)
            .is_some()
    }

    fn render_labels(&self, values: &[&str]) -> String {
        let mut labels = String::new();
        for (i, (name, value)) in self.label_names.iter().zip(values).enumerate() {
            if i > 0 {
                labels.push(',');
            }
            labels.push_str(name);
            labels.push_str("=\"");
            escape_into(value, true, &mut labels);
            labels.push('"');
        }
        labels
    }

    fn render(&self, out: &mut String) {
        self.desc.render_header(M::TYPE, out);
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        for member in members.values() {
            member.metric.samples(&self.desc.name, &member.labels, out);
        }
    }
}

/// Counters by label values, each made on first use.
#[derive(Debug)]
pub struct CounterVec(Family<Counter>);

impl CounterVec {
    /// A family with no members yet.
    ///
    /// # Panics
    /// If a name is invalid or a label name repeats.
    pub fn new(name: &str, help: &str, label_names: &[&str]) -> Self {
        Self(Family::new(name, help, label_names, &[]))
    }

    /// The counter for these label values, in label-name order (keep it on hot paths).
    ///
    /// # Panics
    /// If the number of values differs from the number of label names.
    pub fn with(&self, values: &[&str]) -> Arc<Counter> {
        self.0.with(values, Counter::with_desc)
    }

    /// Drops the member with these label values (a node that left); whether there was one.
    pub fn remove(&self, values: &[&str]) -> bool {
        self.0.remove(values)
    }

    /// Appends HELP, TYPE and every member's value, in label-value order, to `out`.
    pub fn render(&self, out: &mut String) {
        self.0.render(out);
    }
}

/// Gauges by label values, each made on first use.
#[derive(Debug)]
pub struct GaugeVec(Family<Gauge>);

impl GaugeVec {
    /// A family with no members yet.
    ///
    /// # Panics
    /// If a name is invalid or a label name repeats.
    pub fn new(name: &str, help: &str, label_names: &[&str]) -> Self {
        Self(Family::new(name, help, label_names, &[]))
    }

    /// The gauge for these label values, in label-name order (keep it on hot paths).
    ///
    /// # Panics
    /// If the number of values differs from the number of label names.
    pub fn with(&self, values: &[&str]) -> Arc<Gauge> {
        self.0.with(values, Gauge::with_desc)
    }

    /// Drops the member with these label values; whether there was one.
    pub fn remove(&self, values: &[&str]) -> bool {
        self.0.remove(values)
    }

    /// Appends HELP, TYPE and every member's value, in label-value order, to `out`.
    pub fn render(&self, out: &mut String) {
        self.0.render(out);
    }
}

/// Histograms by label values, all with the same bounds, each made on first use.
#[derive(Debug)]
pub struct HistogramVec {
    family: Family<Histogram>,
    bounds: Arc<[f64]>,
}

impl HistogramVec {
    /// A family with no members yet.
    ///
    /// # Panics
    /// If a name is invalid, a label name repeats or is `le`, or the bounds are not finite and
    /// strictly increasing.
    pub fn new(name: &str, help: &str, label_names: &[&str], bounds: &[f64]) -> Self {
        Self {
            family: Family::new(name, help, label_names, &["le"]),
            bounds: checked_bounds(bounds),
        }
    }

    /// The histogram for these label values, in label-name order (keep it on hot paths).
    ///
    /// # Panics
    /// If the number of values differs from the number of label names.
    pub fn with(&self, values: &[&str]) -> Arc<Histogram> {
        let bounds = Arc::clone(&self.bounds);
        self.family
            .with(values, |desc| Histogram::with_desc(desc, bounds))
    }

    /// Drops the member with these label values; whether there was one.
    pub fn remove(&self, values: &[&str]) -> bool {
        self.family.remove(values)
    }

    /// Appends HELP, TYPE and every member's buckets, sum and count, in label-value order, to
    /// `out`.
    pub fn render(&self, out: &mut String) {
        self.family.render(out);
    }
}

macro_rules! render_by_inherent {
    ($($metric:ty),*) => {$(
        impl Render for $metric {
            fn render(&self, out: &mut String) {
                <$metric>::render(self, out);
            }
        }
    )*};
}

render_by_inherent!(
    Counter,
    Gauge,
    Histogram,
    CounterVec,
    GaugeVec,
    HistogramVec
);

#[cfg(test)]
#[path = "metrics_test.rs"]
mod tests;
