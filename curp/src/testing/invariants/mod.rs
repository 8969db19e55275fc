//! Safety and liveness invariants of the simulation, one per file (openraft tests-turmoil
//! style). The simulation feeds them what it observes; each check returns a [`Violation`]
//! describing the first breach it finds.
//!
//! | invariant | checked |
//! |---|---|
//! | [`election_safety`]: at most one leader per term | on every role change |
//! | [`log_matching`]: same (index, term) ⇒ same prefix | periodically and at the end |
//! | [`leader_completeness`]: a new leader holds every committed entry | on every election |
//! | [`state_machine_safety`]: every member applies the same entry at each index | on every apply |
//! | [`exactly_once`]: no proposal id takes effect twice | on every apply |
//! | [`fast_path_agrees`]: a speculative result equals the ordered result | on apply and on fast ack |
//! | [`no_lost_ack`]: every acknowledged write is applied once healed | at the end |
//! | [`linearizable`]: the client history is linearizable | at the end |

pub mod election_safety;
pub mod exactly_once;
pub mod fast_path_agrees;
pub mod leader_completeness;
pub mod linearizable;
pub mod log_matching;
pub mod no_lost_ack;
pub mod state_machine_safety;

use std::fmt;

use super::network::Millis;

/// A breached invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name (its file name).
    pub invariant: &'static str,
    /// Virtual time of detection (ms).
    pub at_ms: Millis,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} @ {}ms] {}", self.invariant, self.at_ms, self.detail)
    }
}

/// The incremental invariant state of one run, and the violations found so far.
#[derive(Debug, Default)]
pub struct Checks {
    /// Leaders by term.
    pub election: election_safety::ElectionSafety,
    /// What was applied at each index.
    pub applied: state_machine_safety::AppliedLog,
    /// Which ids took effect, where, with what result.
    pub exactly_once: exactly_once::ExactlyOnce,
    /// Speculations and fast acks.
    pub fast_path: fast_path_agrees::FastPathAgrees,
    /// Violations, in detection order.
    pub violations: Vec<Violation>,
    /// Histories the linearizability checker could not decide within its step budget.
    pub undecided: u64,
}

impl Checks {
    /// Records a violation.
    pub fn violate(&mut self, invariant: &'static str, at_ms: Millis, detail: String) {
        self.violations.push(Violation {
            invariant,
            at_ms,
            detail,
        });
    }

    /// Whether any invariant failed.
    pub fn failed(&self) -> bool {
        !self.violations.is_empty()
    }
}
