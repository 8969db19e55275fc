//! The outcome of a simulation run: violations, counters and the client history.

use std::fmt::Write as _;

use super::client::HistOp;
use super::invariants::Violation;
use super::network::Millis;

/// Counters and derived metrics of a run.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Virtual time at the end (ms).
    pub virtual_ms: Millis,
    /// Operations issued (probe included).
    pub ops: usize,
    /// Operations answered.
    pub acked: usize,
    /// Writes left indeterminate.
    pub indeterminate: usize,
    /// Fast-path writes answered, and those answered on the fast path itself.
    pub fast_answered: usize,
    /// Fast-path writes that completed on the fast path.
    pub fast_completed: usize,
    /// Distinct commands executed.
    pub commands_executed: usize,
    /// Messages between members.
    pub peer_messages: u64,
    /// Messages between clients and members.
    pub client_messages: u64,
    /// Terms that had a leader.
    pub terms_with_leader: usize,
    /// Crashes injected.
    pub crashes: u32,
    /// Entries flagged duplicate at apply.
    pub duplicates: u64,
    /// Speculations compared with their ordered result.
    pub speculations_checked: u64,
    /// Snapshots taken and installed.
    pub snapshots: (u64, u64),
    /// The linearizability checker ran out of budget (the history was not judged).
    pub linearizability_undecided: bool,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Violations (empty: the run passed).
    pub violations: Vec<Violation>,
    /// Counters.
    pub stats: RunStats,
    /// The trace, when tracing was on.
    pub trace: Vec<String>,
    /// The client history.
    pub history: Vec<HistOp>,
}

impl Report {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A human-readable summary of the failures (with the trace tail, if traced).
    pub fn describe(&self) -> String {
        let mut s = format!(
            "seed {} (n={}) failed {} invariant check(s); replay with SIM_SEED={} SIM_NODES={}",
            self.seed,
            self.nodes,
            self.violations.len(),
            self.seed,
            self.nodes
        );
        for v in self.violations.iter().take(5) {
            let _ = write!(s, "\n  {v}");
        }
        let tail = self.trace.len().saturating_sub(200);
        for line in &self.trace[tail..] {
            let _ = write!(s, "\n    | {line}");
        }
        s
    }
}
