//! Latency recording and the summary a run prints, modelled on etcd's `pkg/report`: total time,
//! requests per second, fastest/slowest, percentiles, a bar histogram, and error counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram tracks exactly; slower requests are recorded as this (µs).
const MAX_LATENCY_US: u64 = 600_000_000;
/// Significant decimal digits kept for every latency (relative error below 0.1%).
const SIGNIFICANT_DIGITS: u8 = 3;
/// Bars in the printed histogram.
const HISTOGRAM_BARS: usize = 10;
/// Width of the longest bar, in characters.
const BAR_WIDTH: u64 = 40;

/// Latencies and errors of one client (or, after [`Recorder::merge`], of a whole run).
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latencies of successful requests, in microseconds.
    latencies_us: Histogram<u64>,
    /// Failed requests by error message.
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        #[allow(clippy::expect_used)] // constant, valid bounds
        let latencies_us = Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
            .expect("valid histogram bounds");
        Self {
            latencies_us,
            errors: BTreeMap::new(),
        }
    }

    /// Records a successful request that took `latency`.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latencies_us.saturating_record(us.max(1));
    }

    /// Records a failed request.
    pub fn record_error(&mut self, message: impl Into<String>) {
        *self.errors.entry(message.into()).or_default() += 1;
    }

    /// Records `count` failed requests with the same message.
    pub fn record_errors(&mut self, message: impl Into<String>, count: u64) {
        if count > 0 {
            *self.errors.entry(message.into()).or_default() += count;
        }
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latencies_us.add(&other.latencies_us);
        for (message, count) in &other.errors {
            *self.errors.entry(message.clone()).or_default() += count;
        }
    }

    /// Successful requests recorded.
    pub fn successes(&self) -> u64 {
        self.latencies_us.len()
    }

    /// Failed requests recorded.
    pub fn failures(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latency statistics in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyMs {
    /// Fastest request.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stddev: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest request.
    pub max: f64,
}

/// One bar of the histogram: requests with latency in `(previous upper, upper_ms]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    /// Upper bound of the bar, in milliseconds.
    pub upper_ms: f64,
    /// Requests in the bar.
    pub count: u64,
}

/// One point of the latency distribution: `quantile` of the requests took at most `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CdfPoint {
    /// Fraction of the successful requests, in `[0, 1]`.
    pub quantile: f64,
    /// Latency at that quantile, in milliseconds.
    pub ms: f64,
}

/// Quantiles of [`Summary::cdf`]: every percent, then finer steps towards the tail.
const CDF_QUANTILES_TAIL: [f64; 6] = [0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0];

/// What a run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The workload (`put`, `range`, ...).
    pub workload: String,
    /// Successful requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Wall time of the run, in seconds.
    pub elapsed_secs: f64,
    /// Successful requests per second of wall time.
    pub requests_per_sec: f64,
    /// Latency of successful requests; `None` when none succeeded.
    pub latency_ms: Option<LatencyMs>,
    /// Latency histogram, [`HISTOGRAM_BARS`] equal-width bars from fastest to slowest.
    pub histogram: Vec<Bucket>,
    /// The latency distribution (for CDF plots): every percentile from 0 to 99, then 99.5, 99.9,
    /// 99.95, 99.99, 99.999 and 100; empty when no request succeeded.
    pub cdf: Vec<CdfPoint>,
    /// Failed requests by error message.
    pub error_counts: BTreeMap<String, u64>,
}

/// Microseconds to milliseconds.
#[allow(clippy::cast_precision_loss)] // latencies are far below 2^53 µs
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Summary {
    /// Summarizes `recorder` for a run of `workload` that took `elapsed`.
    pub fn new(workload: &str, recorder: &Recorder, elapsed: Duration) -> Self {
        let h = &recorder.latencies_us;
        let requests = h.len();
        let secs = elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let requests_per_sec = if secs > 0.0 {
            requests as f64 / secs
        } else {
            0.0
        };
        let latency_ms = (requests > 0).then(|| LatencyMs {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            stddev: h.stdev() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        });
        Self {
            workload: workload.to_owned(),
            requests,
            errors: recorder.failures(),
            elapsed_secs: secs,
            requests_per_sec,
            latency_ms,
            histogram: buckets(h),
            cdf: cdf(h),
            error_counts: recorder.errors.clone(),
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "Summary ({}):", self.workload)?;
        writeln!(out, "  Total:        {:.4} secs.", self.elapsed_secs)?;
        writeln!(
            out,
            "  Requests:     {} ok, {} failed",
            self.requests, self.errors
        )?;
        writeln!(out, "  Requests/sec: {:.1}", self.requests_per_sec)?;
        if let Some(l) = &self.latency_ms {
            writeln!(out, "  Fastest:      {:.3} ms", l.min)?;
            writeln!(out, "  Slowest:      {:.3} ms", l.max)?;
            writeln!(out, "  Average:      {:.3} ms", l.mean)?;
            writeln!(out, "  Stddev:       {:.3} ms", l.stddev)?;
            writeln!(out)?;
            writeln!(out, "Response time histogram (ms):")?;
            let peak = self.histogram.iter().map(|b| b.count).max().unwrap_or(0);
            for b in &self.histogram {
                let bar = (b.count * BAR_WIDTH).checked_div(peak).unwrap_or(0);
                let bar = "∎".repeat(usize::try_from(bar).unwrap_or(0));
                writeln!(out, "  {:>10.3} [{}]\t|{bar}", b.upper_ms, b.count)?;
            }
            writeln!(out)?;
            writeln!(out, "Latency distribution (ms):")?;
            for (name, v) in [
                ("p50", l.p50),
                ("p90", l.p90),
                ("p99", l.p99),
                ("p99.9", l.p999),
            ] {
                writeln!(out, "  {name:<6} {v:.3}")?;
            }
        }
        if !self.error_counts.is_empty() {
            writeln!(out)?;
            writeln!(out, "Errors:")?;
            for (message, count) in &self.error_counts {
                writeln!(out, "  [{count}] {message}")?;
            }
        }
        Ok(())
    }
}

/// The latency at every quantile of [`Summary::cdf`].
fn cdf(h: &Histogram<u64>) -> Vec<CdfPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..100u32)
        .map(|p| f64::from(p) / 100.0)
        .chain(CDF_QUANTILES_TAIL)
        .map(|quantile| CdfPoint {
            quantile,
            // The quantile-0 value is the fastest request, quantile 1 the slowest.
            ms: ms(h
                .highest_equivalent(h.value_at_quantile(quantile))
                .min(h.max())),
        })
        .collect()
}

/// Equal-width bars between the fastest and slowest latency (one bar when they are equal).
fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let (lo, hi) = (h.min(), h.max());
    if h.equivalent(lo, hi) {
        return vec![Bucket {
            upper_ms: ms(hi),
            count: h.len(),
        }];
    }
    let bars = HISTOGRAM_BARS as u64;
    let width = (hi - lo).div_ceil(bars);
    let mut counts = vec![0u64; HISTOGRAM_BARS];
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to()).min(hi);
        // Bar i holds (lo + i*width, lo + (i+1)*width]; the fastest value goes to bar 0.
        let bar = (value.saturating_sub(lo).saturating_sub(1) / width).min(bars - 1);
        counts[usize::try_from(bar).unwrap_or(0)] += v.count_at_value();
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| Bucket {
            upper_ms: ms((lo + width * (i as u64 + 1)).min(hi)),
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(latencies_ms: &[u64]) -> Recorder {
        let mut r = Recorder::new();
        for &l in latencies_ms {
            r.record(Duration::from_millis(l));
        }
        r
    }

    /// Equal within the histogram's precision.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.002 + 1e-9
    }

    #[test]
    fn percentiles_of_one_to_a_thousand_ms() {
        let r = recorder(&(1..=1000).collect::<Vec<_>>());
        let s = Summary::new("put", &r, Duration::from_secs(2));
        let l = s.latency_ms.unwrap();
        assert!(close(l.min, 1.0), "{l:?}");
        assert!(close(l.max, 1000.0), "{l:?}");
        assert!(close(l.p50, 500.0), "{l:?}");
        assert!(close(l.p90, 900.0), "{l:?}");
        assert!(close(l.p99, 990.0), "{l:?}");
        assert!(close(l.p999, 999.0), "{l:?}");
        assert!(close(l.mean, 500.5), "{l:?}");
        assert_eq!(s.requests, 1000);
        assert!(close(s.requests_per_sec, 500.0));
    }

    #[test]
    fn histogram_bars_cover_every_request_once() {
        let r = recorder(&(1..=1000).collect::<Vec<_>>());
        let s = Summary::new("put", &r, Duration::from_secs(1));
        assert_eq!(s.histogram.len(), HISTOGRAM_BARS);
        assert_eq!(s.histogram.iter().map(|b| b.count).sum::<u64>(), 1000);
        assert!(close(s.histogram.last().unwrap().upper_ms, 1000.0));
        // Uniform latencies: every bar holds about a tenth.
        assert!(
            s.histogram.iter().all(|b| (90..=110).contains(&b.count)),
            "{:?}",
            s.histogram
        );
    }

    #[test]
    fn one_latency_makes_one_bar() {
        let s = Summary::new("range", &recorder(&[5, 5, 5]), Duration::from_secs(1));
        assert_eq!(s.histogram.len(), 1);
        assert_eq!(s.histogram[0].count, 3);
    }

    #[test]
    fn merging_adds_latencies_and_errors() {
        let mut a = recorder(&[1, 2]);
        a.record_error("etcdserver: request timed out");
        let mut b = recorder(&[3]);
        b.record_error("etcdserver: request timed out");
        b.record_errors("connection refused", 2);
        b.record_errors("never", 0);
        a.merge(&b);
        assert_eq!(a.successes(), 3);
        assert_eq!(a.failures(), 4);
        let s = Summary::new("put", &a, Duration::from_secs(1));
        assert_eq!(s.errors, 4);
        assert_eq!(s.error_counts.len(), 2);
        assert_eq!(s.error_counts["etcdserver: request timed out"], 2);
        let text = s.to_text();
        assert!(text.contains("[2] etcdserver: request timed out"), "{text}");
        assert!(text.contains("3 ok, 4 failed"), "{text}");
    }

    #[test]
    fn a_run_with_no_success_has_no_latency() {
        let mut r = Recorder::new();
        r.record_error("boom");
        let s = Summary::new("put", &r, Duration::from_secs(1));
        assert_eq!(s.latency_ms, None);
        assert!(s.histogram.is_empty());
        assert_eq!(s.requests_per_sec, 0.0);
        assert!(s.to_text().contains("[1] boom"));
    }

    #[test]
    fn text_shows_the_percentiles_and_json_has_every_field() {
        let s = Summary::new("put", &recorder(&[1, 2, 3, 4]), Duration::from_millis(500));
        let text = s.to_text();
        for needle in [
            "Requests/sec: 8.0",
            "p50",
            "p99.9",
            "Response time histogram",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        let json: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(json["requests"], 4);
        assert_eq!(json["workload"], "put");
        assert!(json["latency_ms"]["p999"].is_number());
        assert!(json["histogram"].is_array());
        assert!(json["cdf"].is_array());
    }

    #[test]
    fn cdf_rises_from_the_fastest_to_the_slowest_request() {
        let s = Summary::new(
            "put",
            &recorder(&(1..=1000).collect::<Vec<_>>()),
            Duration::from_secs(1),
        );
        assert_eq!(s.cdf.len(), 100 + CDF_QUANTILES_TAIL.len());
        assert!(close(s.cdf[0].ms, 1.0), "{:?}", s.cdf[0]);
        assert!(close(s.cdf[50].ms, 500.0), "{:?}", s.cdf[50]);
        assert_eq!(s.cdf[50].quantile, 0.5);
        let last = s.cdf.last().unwrap();
        assert_eq!(last.quantile, 1.0);
        assert!(close(last.ms, 1000.0), "{last:?}");
        assert!(
            s.cdf
                .windows(2)
                .all(|w| w[0].quantile < w[1].quantile && w[0].ms <= w[1].ms)
        );
        let empty = Summary::new("put", &Recorder::new(), Duration::from_secs(1));
        assert!(empty.cdf.is_empty());
    }
}
