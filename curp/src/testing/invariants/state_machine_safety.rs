//! State machine safety (Raft §5.4.3): every member applies the same entry at each index, and
//! applies indices in order without gaps (a snapshot may skip ahead).
//!
//! [`AppliedLog`] is the global record of what was applied at each index, first come first
//! served; every later application at that index must match it. Other invariants read it as
//! the set of entries known to be committed.

use std::collections::BTreeMap;

use crate::core::{Entry, EntryKind, LogIndex, NodeId, ProposeId, Term};

/// What an applied entry was, for comparison across members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// A leader's no-op.
    Empty,
    /// A command with this proposal id.
    Command(ProposeId),
    /// A membership change.
    ConfChange,
    /// A client-id lease expiry.
    ClientExpired(u64),
}

impl Digest {
    /// The digest of `entry`.
    pub fn of(entry: &Entry) -> Digest {
        match &entry.kind {
            EntryKind::Empty => Digest::Empty,
            EntryKind::Command { cmd, .. } => Digest::Command(cmd.id),
            EntryKind::ConfChange(_) => Digest::ConfChange,
            EntryKind::ClientExpired(client_id) => Digest::ClientExpired(*client_id),
        }
    }
}

/// The entries applied at each index, by anyone.
#[derive(Debug, Default, Clone)]
pub struct AppliedLog {
    /// Per index: entry term, digest, first applier, and the highest term any leader was
    /// observed in when it was first applied (its commit term is at most that).
    by_index: BTreeMap<LogIndex, (Term, Digest, NodeId, Term)>,
}

impl AppliedLog {
    /// Records that `member` applied `entry` while the highest leader term observed so far is
    /// `leader_term`.
    ///
    /// # Errors
    ///
    /// A description when another member applied a different entry at the same index.
    pub fn on_apply(
        &mut self,
        member: NodeId,
        entry: &Entry,
        leader_term: Term,
    ) -> Result<(), String> {
        let digest = Digest::of(entry);
        match self.by_index.get(&entry.index) {
            Some(&(term, d, first, _)) if (term, d) != (entry.term, digest) => Err(format!(
                "member {member} applied {digest:?} (term {}) at index {} where member {first} \
                 applied {d:?} (term {term})",
                entry.term, entry.index
            )),
            Some(_) => Ok(()),
            None => {
                self.by_index
                    .insert(entry.index, (entry.term, digest, member, leader_term));
                Ok(())
            }
        }
    }

    /// The (term, digest) applied at `index`, if anyone applied it.
    pub fn get(&self, index: LogIndex) -> Option<(Term, Digest)> {
        self.by_index.get(&index).map(|&(t, d, _, _)| (t, d))
    }

    /// Every applied index with its term, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (LogIndex, Term, Digest)> + '_ {
        self.by_index.iter().map(|(&i, &(t, d, _, _))| (i, t, d))
    }

    /// The applied entries certainly committed before term `term` began: those first applied
    /// while no leader of `term` or later had been observed. (A leader reports its role before
    /// it can commit anything, so an entry committed in term `c` is first applied once a leader
    /// of term `c` has been observed.)
    pub fn committed_before(
        &self,
        term: Term,
    ) -> impl Iterator<Item = (LogIndex, Term, Digest)> + '_ {
        self.by_index
            .iter()
            .filter(move |(_, v)| v.3 < term)
            .map(|(&i, &(t, d, _, _))| (i, t, d))
    }

    /// The highest index anyone applied.
    pub fn last_index(&self) -> LogIndex {
        self.by_index.keys().next_back().copied().unwrap_or(0)
    }
}

/// Checks that a member applying `index` had applied exactly up to `index - 1` before.
///
/// # Errors
///
/// A description of the gap or repetition.
pub fn check_in_order(
    member: NodeId,
    last_applied: LogIndex,
    index: LogIndex,
) -> Result<(), String> {
    if index == last_applied + 1 {
        Ok(())
    } else {
        Err(format!(
            "member {member} applied index {index} right after index {last_applied}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Empty,
        }
    }

    #[test]
    fn different_entries_at_one_index_are_caught() {
        let mut log = AppliedLog::default();
        assert!(log.on_apply(1, &noop(1, 1), 1).is_ok());
        assert!(log.on_apply(2, &noop(1, 1), 1).is_ok());
        assert!(log.on_apply(3, &noop(1, 2), 2).is_err());
        assert_eq!(log.last_index(), 1);
    }

    #[test]
    fn gaps_are_caught() {
        assert!(check_in_order(1, 4, 5).is_ok());
        assert!(check_in_order(1, 4, 6).is_err());
        assert!(check_in_order(1, 4, 4).is_err());
    }
}
