//! Membership as a function of the log: single-server changes take effect when their entry is
//! appended (CURP.md section 7), so a member keeps the configuration of every `ConfChange`
//! entry it holds and rolls back when such an entry is truncated.

use super::types::{ConfChange, LogIndex, Membership, NodeId};

/// Applies `change` to `m`: the next configuration. Every change bumps the version, even one
/// that changes nothing, so the version is a pure function of the log.
pub(crate) fn apply_change(m: &Membership, change: &ConfChange) -> Membership {
    let mut next = m.clone();
    match change {
        ConfChange::AddLearner(id) => {
            if !next.voters.contains(id) {
                next.learners.insert(*id);
            }
        }
        ConfChange::Promote(id) => {
            if next.learners.remove(id) {
                next.voters.insert(*id);
            }
        }
        ConfChange::Remove(id) => {
            next.voters.remove(id);
            next.learners.remove(id);
        }
    }
    next.version += 1;
    next
}

/// Whether `change` makes sense against `m` (a leader refuses the others).
pub(crate) fn is_valid_change(m: &Membership, change: &ConfChange) -> bool {
    match change {
        ConfChange::AddLearner(id) => {
            *id != 0 && !m.voters.contains(id) && !m.learners.contains(id)
        }
        ConfChange::Promote(id) => m.learners.contains(id),
        // Removing the last voter would leave nobody to commit anything.
        ConfChange::Remove(id) => {
            m.learners.contains(id) || (m.voters.contains(id) && m.voters.len() > 1)
        }
    }
}

/// The configuration as of the snapshot plus one configuration per `ConfChange` entry held.
#[derive(Debug, Clone, Default)]
pub(crate) struct MembershipLog {
    /// Index the base configuration is valid at (the snapshot index, or 0).
    base_index: LogIndex,
    /// Configuration as of `base_index`.
    base: Membership,
    /// `(index, configuration after the change at index)`, ascending.
    changes: Vec<(LogIndex, Membership)>,
}

impl MembershipLog {
    /// Starts from `base`, valid at `index`.
    pub(crate) fn new(index: LogIndex, base: Membership) -> Self {
        Self {
            base_index: index,
            base,
            changes: Vec::new(),
        }
    }

    /// The configuration in effect (that of the last change appended).
    pub(crate) fn current(&self) -> &Membership {
        self.changes.last().map_or(&self.base, |(_, m)| m)
    }

    /// The configuration as of `index`.
    pub(crate) fn at(&self, index: LogIndex) -> &Membership {
        self.changes
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&self.base, |(_, m)| m)
    }

    /// The index of the last change held (0 if none after the base).
    pub(crate) fn last_change_index(&self) -> LogIndex {
        self.changes.last().map_or(0, |(i, _)| *i)
    }

    /// A change was appended at `index`.
    pub(crate) fn append(&mut self, index: LogIndex, change: &ConfChange) {
        let next = apply_change(self.current(), change);
        self.changes.push((index, next));
    }

    /// Entries from `index` on were truncated: their changes are rolled back.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        self.changes.retain(|(i, _)| *i < index);
    }

    /// The log up to `index` was compacted: fold the changes up to it into the base.
    pub(crate) fn compact(&mut self, index: LogIndex) {
        if index <= self.base_index {
            return;
        }
        self.base = self.at(index).clone();
        self.base_index = index;
        self.changes.retain(|(i, _)| *i > index);
    }

    /// Replaces everything by a snapshot's configuration.
    pub(crate) fn reset(&mut self, index: LogIndex, m: Membership) {
        *self = Self::new(index, m);
    }

    /// Whether `id` votes in the current configuration.
    pub(crate) fn is_voter(&self, id: NodeId) -> bool {
        self.current().voters.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(voters: &[NodeId], learners: &[NodeId]) -> Membership {
        Membership {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            version: 0,
        }
    }

    #[test]
    fn changes_take_effect_when_appended_and_roll_back() {
        let mut log = MembershipLog::new(0, m(&[1, 2, 3], &[]));
        log.append(5, &ConfChange::AddLearner(4));
        assert_eq!(log.current().learners.len(), 1);
        assert_eq!(log.current().version, 1);
        log.append(7, &ConfChange::Promote(4));
        assert!(log.is_voter(4));
        assert_eq!(log.at(6).version, 1);
        log.truncate_from(7);
        assert!(!log.is_voter(4));
        assert_eq!(log.current().version, 1);
        log.compact(6);
        assert_eq!(log.current().version, 1);
        assert_eq!(log.last_change_index(), 0);
    }

    #[test]
    fn validity() {
        let cur = m(&[1, 2], &[3]);
        assert!(is_valid_change(&cur, &ConfChange::AddLearner(4)));
        assert!(!is_valid_change(&cur, &ConfChange::AddLearner(2)));
        assert!(is_valid_change(&cur, &ConfChange::Promote(3)));
        assert!(!is_valid_change(&cur, &ConfChange::Promote(2)));
        assert!(is_valid_change(&cur, &ConfChange::Remove(2)));
        assert!(!is_valid_change(&m(&[1], &[]), &ConfChange::Remove(1)));
    }
}
