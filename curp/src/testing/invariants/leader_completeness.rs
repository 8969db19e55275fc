//! Leader completeness (Raft §5.4): a member that becomes leader holds every entry committed
//! before its election.
//!
//! "Committed before the election" is approximated from below by "first applied by some member
//! before any leader of this term or later was observed" ([`AppliedLog::committed_before`]),
//! which is sound: only committed entries are applied, and a leader's role change is observed
//! before it can commit anything. (A leader's role may be observed late - a paused member - so
//! entries committed meanwhile by later leaders must not be held against it.) Entries at or
//! below the leader's snapshot are covered by the snapshot.

use super::state_machine_safety::{AppliedLog, Digest};
use crate::core::{Entry, LogIndex, NodeId, Term};

/// Checks the durable `log` of `leader`, just elected in `term`, whose snapshot covers up to
/// `snapshot_index`.
///
/// # Errors
///
/// A description of the first committed entry the leader lacks.
pub fn check(
    leader: NodeId,
    term: Term,
    snapshot_index: LogIndex,
    log: &[Entry],
    applied: &AppliedLog,
) -> Result<(), String> {
    let first = log.first().map_or(snapshot_index + 1, |e| e.index);
    for (index, entry_term, digest) in applied.committed_before(term) {
        if index <= snapshot_index {
            continue;
        }
        let held = usize::try_from(index.saturating_sub(first))
            .ok()
            .filter(|_| index >= first)
            .and_then(|pos| log.get(pos));
        match held {
            Some(e) if e.term == entry_term && Digest::of(e) == digest => {}
            other => {
                return Err(format!(
                    "member {leader} became leader of term {term} without committed entry \
                     {index} (term {entry_term}, {digest:?}); it holds {other:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;

    fn noop(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Empty,
        }
    }

    #[test]
    fn missing_committed_entry_is_caught() {
        let mut applied = AppliedLog::default();
        applied.on_apply(1, &noop(1, 1), 1).ok();
        applied.on_apply(1, &noop(2, 1), 1).ok();
        applied.on_apply(1, &noop(3, 3), 3).ok();
        assert!(check(2, 2, 0, &[noop(1, 1), noop(2, 1)], &applied).is_ok());
        assert!(check(2, 2, 0, &[noop(1, 1)], &applied).is_err());
        assert!(check(2, 2, 0, &[noop(1, 1), noop(2, 2)], &applied).is_err());
        // Covered by a snapshot.
        assert!(check(2, 2, 2, &[], &applied).is_ok());
        assert!(check(2, 2, 1, &[noop(2, 1)], &applied).is_ok());
        // Entry 3 was committed in term 3: not held against the leader of term 2.
        assert!(check(2, 2, 0, &[noop(1, 1), noop(2, 1)], &applied).is_ok());
        assert!(check(4, 4, 0, &[noop(1, 1), noop(2, 1)], &applied).is_err());
    }
}
