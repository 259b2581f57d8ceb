//! Records the time criterion measures for each benchmark, so a run can print the ratio
//! of a subject to its baseline measured in the same run.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

static TOTALS: Mutex<BTreeMap<String, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// Adds one measurement of `iters` iterations that took `elapsed`.
pub(crate) fn record(name: &str, iters: u64, elapsed: Duration) -> Duration {
    let mut t = TOTALS.lock().unwrap_or_else(|p| p.into_inner());
    let e = t.entry(name.to_owned()).or_default();
    e.0 += elapsed;
    e.1 += iters;
    elapsed
}

/// Mean time per iteration recorded for `name`, in nanoseconds.
pub(crate) fn mean_ns(name: &str) -> f64 {
    let t = TOTALS.lock().unwrap_or_else(|p| p.into_inner());
    t.get(name)
        .map_or(f64::NAN, |(d, n)| d.as_nanos() as f64 / (*n).max(1) as f64)
}

/// Prints `subject / baseline` with both means.
pub(crate) fn report_ratio(label: &str, subject: &str, baseline: &str) -> f64 {
    let (s, b) = (mean_ns(subject), mean_ns(baseline));
    let ratio = s / b;
    println!("RATIO {label}: {subject} {s:.1} ns / {baseline} {b:.1} ns = {ratio:.2}x");
    ratio
}
