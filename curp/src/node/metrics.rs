//! Counters the driver keeps for monitoring, read through
//! [`NodeHandle::metrics`](super::NodeHandle::metrics). Every update is one relaxed atomic operation; the driver
//! thread is the only writer, readers take a [`NodeMetrics`] snapshot.
//!
//! The crate does not depend on a metrics library: the server that embeds the node exports the
//! snapshot in whatever format it serves (xline: Prometheus text with etcd's names).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of etcd's disk latency histograms (`etcd_disk_wal_fsync_duration_seconds`,
/// `etcd_disk_backend_commit_duration_seconds`): Prometheus' `ExponentialBuckets(0.001, 2, 14)`.
pub const DISK_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A latency histogram with fixed bucket bounds, updated with atomics.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets, in seconds, ascending.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of the observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            count: counts.iter().sum(),
            counts,
            sum_seconds: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64(),
        }
    }
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets, in seconds, ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket, not cumulative: `counts[i]` fell in `(bounds[i-1], bounds[i]]`;
    /// the last entry (one more than `bounds`) counts those above every bound.
    pub counts: Vec<u64>,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl HistogramSnapshot {
    /// Cumulative counts per bound (Prometheus' `le` buckets, `+Inf` excluded).
    pub fn cumulative(&self) -> Vec<u64> {
        self.counts
            .iter()
            .take(self.bounds.len())
            .scan(0u64, |acc, c| {
                *acc += c;
                Some(*acc)
            })
            .collect()
    }
}

/// The driver's counters (shared with the handles).
#[derive(Debug)]
pub(crate) struct Counters {
    /// Times this member saw a new leader (none → some, or another one).
    pub(crate) leader_changes: AtomicU64,
    /// Local proposals answered with an error (timeout, refused change).
    pub(crate) proposals_failed: AtomicU64,
    /// Local and remote proposals waiting for their outcome.
    pub(crate) proposals_pending: AtomicU64,
    /// Proposals submitted on the ordered (slow) path at this member.
    pub(crate) slow_path: AtomicU64,
    /// Fast proposals this member, leading, speculated without conflict.
    pub(crate) fast_path: AtomicU64,
    /// Fast proposals this member, leading, found conflicting: the client waits for the
    /// ordered result instead.
    pub(crate) fast_path_fallback: AtomicU64,
    /// Records held by this member's witness.
    pub(crate) witness_pool_size: AtomicU64,
    /// Commands in the leader's uncommitted pool (0 on other members).
    pub(crate) uncommitted_pool_size: AtomicU64,
    /// 1 while an exclusive command is in the leader's uncommitted pool (CURP.md P11).
    pub(crate) exclusive_pending: AtomicU64,
    /// Duration of the log's sync (one per round that wrote anything).
    pub(crate) log_sync: Histogram,
    /// Duration of each executor batch (`CommandExecutor::apply`).
    pub(crate) apply: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            leader_changes: AtomicU64::new(0),
            proposals_failed: AtomicU64::new(0),
            proposals_pending: AtomicU64::new(0),
            slow_path: AtomicU64::new(0),
            fast_path: AtomicU64::new(0),
            fast_path_fallback: AtomicU64::new(0),
            witness_pool_size: AtomicU64::new(0),
            uncommitted_pool_size: AtomicU64::new(0),
            exclusive_pending: AtomicU64::new(0),
            log_sync: Histogram::new(&DISK_BUCKETS),
            apply: Histogram::new(&DISK_BUCKETS),
        }
    }
}

impl Counters {
    /// Adds one to `counter`.
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub(crate) fn set(gauge: &AtomicU64, value: usize) {
        gauge.store(u64::try_from(value).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The current values.
    pub(crate) fn snapshot(&self) -> NodeMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeMetrics {
            leader_changes: get(&self.leader_changes),
            proposals_failed: get(&self.proposals_failed),
            proposals_pending: get(&self.proposals_pending),
            slow_path: get(&self.slow_path),
            fast_path: get(&self.fast_path),
            fast_path_fallback: get(&self.fast_path_fallback),
            witness_pool_size: get(&self.witness_pool_size),
            uncommitted_pool_size: get(&self.uncommitted_pool_size),
            exclusive_pending: get(&self.exclusive_pending) != 0,
            log_sync: self.log_sync.snapshot(),
            apply: self.apply.snapshot(),
        }
    }
}

/// A node's counters at one moment (see [`NodeHandle::metrics`](super::NodeHandle::metrics)).
/// Counters only grow while the node runs; gauges are as of the driver's last round.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeMetrics {
    /// Times this member saw a new leader: from none to one, or from one to another (etcd's
    /// `leader_changes_seen`; the first election counts).
    pub leader_changes: u64,
    /// Proposals made through this member's handles that failed (timed out, or a membership
    /// change refused).
    pub proposals_failed: u64,
    /// Proposals (local and remote clients') waiting for their outcome at this member.
    pub proposals_pending: u64,
    /// Proposals submitted on the ordered (slow) path at this member (first attempts only).
    pub slow_path: u64,
    /// Fast proposals this member, as leader, speculated without conflict (CURP.md F2).
    pub fast_path: u64,
    /// Fast proposals this member, as leader, found conflicting (witness or uncommitted pool,
    /// or the leader's no-op not yet applied): their clients fall back to the ordered result.
    pub fast_path_fallback: u64,
    /// Records held by this member's witness (speculative pool).
    pub witness_pool_size: u64,
    /// Commands in the leader's uncommitted pool (0 on other members).
    pub uncommitted_pool_size: u64,
    /// Whether an exclusive command (auth, alarm, compaction) is pending in the leader's
    /// uncommitted pool, forcing every write onto the slow path (CURP.md P11).
    pub exclusive_pending: bool,
    /// Durations of the log's sync, one per round that wrote anything (etcd's WAL fsync).
    pub log_sync: HistogramSnapshot,
    /// Durations of the executor's batches.
    pub apply: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_sum() {
        let h = Histogram::new(&DISK_BUCKETS);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.counts.len(), DISK_BUCKETS.len() + 1);
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[2], 1);
        assert_eq!(s.counts[DISK_BUCKETS.len()], 1);
        let cumulative = s.cumulative();
        assert_eq!(cumulative[0], 2);
        assert_eq!(cumulative[1], 2);
        assert_eq!(cumulative[2], 3);
        assert_eq!(*cumulative.last().unwrap(), 3);
        assert!((s.sum_seconds - 10.0045).abs() < 1e-9);
    }
}
