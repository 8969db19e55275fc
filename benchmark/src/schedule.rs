//! How many requests a run sends and when: the budget (`--total` or `--duration`) and the
//! pacing (`--rate`).
//!
//! Every client claims request numbers from one shared counter. With a rate, request `n` is due
//! at `start + n / rate`: an open-loop schedule, so a slow response does not lower the offered
//! load the way a per-client sleep would, and the sum of all clients' requests matches the rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How much work a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Exactly this many requests.
    Total(u64),
    /// Requests until this much time has passed since the start.
    Duration(Duration),
}

/// One claimed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Request number, from 0.
    pub seq: u64,
    /// When the request is due; `None` means at once (no `--rate`).
    pub due: Option<Instant>,
}

/// The shared request counter of a run.
#[derive(Debug)]
pub struct Schedule {
    budget: Budget,
    /// Requests per second; `None` sends as fast as the clients can.
    rate: Option<f64>,
    start: Instant,
    next: AtomicU64,
}

impl Schedule {
    /// A schedule starting at `start`. `rate` must be positive when given.
    pub fn new(budget: Budget, rate: Option<f64>, start: Instant) -> Self {
        debug_assert!(rate.is_none_or(|r| r > 0.0 && r.is_finite()));
        Self {
            budget,
            rate,
            start,
            next: AtomicU64::new(0),
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The offset from the start at which request `seq` is due under `rate`.
    pub fn due_offset(seq: u64, rate: f64) -> Duration {
        // f64 is exact for request counts far beyond any run (2^53).
        #[allow(clippy::cast_precision_loss)]
        Duration::from_secs_f64(seq as f64 / rate)
    }

    /// Claims the next request at time `now`, or `None` when the budget is spent.
    pub fn claim(&self, now: Instant) -> Option<Ticket> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let due = self
            .rate
            .map(|rate| self.start + Self::due_offset(seq, rate));
        let within = match self.budget {
            Budget::Total(total) => seq < total,
            Budget::Duration(limit) => {
                let deadline = self.start + limit;
                now < deadline && due.is_none_or(|due| due < deadline)
            }
        };
        within.then_some(Ticket { seq, due })
    }

    /// An upper bound on the number of requests the run can send (for pre-sized tables);
    /// `None` for a duration without a rate.
    pub fn max_requests(budget: Budget, rate: Option<f64>) -> Option<u64> {
        match (budget, rate) {
            (Budget::Total(total), _) => Some(total),
            (Budget::Duration(limit), Some(rate)) => {
                // Requests due strictly before the deadline: at most ceil(limit * rate).
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some((limit.as_secs_f64() * rate).ceil() as u64)
            }
            (Budget::Duration(_), None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_budget_hands_out_exactly_that_many_numbers() {
        let t0 = Instant::now();
        let s = Schedule::new(Budget::Total(3), None, t0);
        let seqs: Vec<_> = std::iter::from_fn(|| s.claim(t0)).map(|t| t.seq).collect();
        assert_eq!(seqs, [0, 1, 2]);
        assert_eq!(s.claim(t0), None);
    }

    #[test]
    fn without_a_rate_requests_are_due_at_once() {
        let t0 = Instant::now();
        let s = Schedule::new(Budget::Total(1), None, t0);
        assert_eq!(s.claim(t0).unwrap().due, None);
    }

    #[test]
    fn a_rate_spaces_due_times_evenly_from_the_start() {
        let t0 = Instant::now();
        let s = Schedule::new(Budget::Total(5), Some(100.0), t0);
        let dues: Vec<_> = std::iter::from_fn(|| s.claim(t0))
            .map(|t| t.due.unwrap() - t0)
            .collect();
        let expect: Vec<_> = (0..5).map(|i| Duration::from_millis(10 * i)).collect();
        assert_eq!(dues, expect);
    }

    #[test]
    fn a_duration_budget_stops_at_the_deadline() {
        let t0 = Instant::now();
        let s = Schedule::new(Budget::Duration(Duration::from_secs(1)), None, t0);
        assert!(s.claim(t0 + Duration::from_millis(999)).is_some());
        assert!(s.claim(t0 + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn a_duration_with_a_rate_sends_rate_times_duration_requests() {
        let t0 = Instant::now();
        let s = Schedule::new(Budget::Duration(Duration::from_secs(2)), Some(10.0), t0);
        // Claiming early (clients claim, then sleep until due) still stops at due >= deadline.
        let n = std::iter::from_fn(|| s.claim(t0)).count();
        assert_eq!(n, 20);
        let bound = Schedule::max_requests(Budget::Duration(Duration::from_secs(2)), Some(10.0));
        assert_eq!(bound, Some(20));
        assert_eq!(
            Schedule::max_requests(Budget::Duration(Duration::from_secs(2)), None),
            None
        );
    }

    #[test]
    fn concurrent_claims_never_repeat_or_exceed_the_total() {
        let t0 = Instant::now();
        let s = std::sync::Arc::new(Schedule::new(Budget::Total(10_000), None, t0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    std::iter::from_fn(|| s.claim(t0))
                        .map(|t| t.seq)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..10_000).collect::<Vec<_>>());
    }
}
