//! Membership as a function of the log: single-server changes take effect when their entry is
//! appended (CURP.md section 7), so a member keeps the configuration of every `ConfChange`
//! entry it holds and rolls back when such an entry is truncated.

use super::types::{ConfChange, LogIndex, Membership, NodeId};

/// Applies `change` to `m`: the next configuration. Every change bumps the version, even one
/// that changes nothing, so the version is a pure function of the log. A [`ConfChange::Set`]
/// replaces the configuration by the one it carries (version included).
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
            next.peers.remove(id);
        }
        ConfChange::Add {
            id,
            peer_urls,
            learner,
        } => {
            if !next.voters.contains(id) && !next.learners.contains(id) {
                if *learner {
                    next.learners.insert(*id);
                } else {
                    next.voters.insert(*id);
                }
            }
            set_peer_urls(&mut next, *id, peer_urls);
        }
        ConfChange::Update { id, peer_urls } => {
            if next.voters.contains(id) || next.learners.contains(id) {
                set_peer_urls(&mut next, *id, peer_urls);
            }
        }
        ConfChange::Set(to) => return to.clone(),
    }
    next.version += 1;
    next
}

/// Records `id`'s peer URLs (none: forgets them).
fn set_peer_urls(m: &mut Membership, id: NodeId, urls: &[String]) {
    if urls.is_empty() {
        m.peers.remove(&id);
    } else {
        m.peers.insert(id, urls.to_vec());
    }
}

/// Whether `m` is a member (voter or learner).
fn is_member(m: &Membership, id: NodeId) -> bool {
    m.voters.contains(&id) || m.learners.contains(&id)
}

/// Whether another member than `id` already uses one of `urls`.
pub(crate) fn peer_url_taken(m: &Membership, id: NodeId, urls: &[String]) -> bool {
    m.peers
        .iter()
        .filter(|(other, _)| **other != id && is_member(m, **other))
        .any(|(_, theirs)| theirs.iter().any(|u| urls.contains(u)))
}

/// Whether `change` makes sense against `m` (a leader refuses the others).
pub(crate) fn is_valid_change(m: &Membership, change: &ConfChange) -> bool {
    match change {
        ConfChange::AddLearner(id) => *id != 0 && !is_member(m, *id),
        ConfChange::Add { id, peer_urls, .. } => {
            *id != 0 && !is_member(m, *id) && !peer_url_taken(m, *id, peer_urls)
        }
        ConfChange::Update { id, peer_urls } => {
            is_member(m, *id) && !peer_urls.is_empty() && !peer_url_taken(m, *id, peer_urls)
        }
        ConfChange::Promote(id) => m.learners.contains(id),
        // Removing the last voter would leave nobody to commit anything.
        ConfChange::Remove(id) => {
            m.learners.contains(id) || (m.voters.contains(id) && m.voters.len() > 1)
        }
        // Only a leader makes these, from one of the others.
        ConfChange::Set(_) => false,
    }
}

/// Whether configuration `m` (one the log reached) shows `change` done: how a proposer
/// recognises its change in the [`ConfChange::Set`] entry the leader appended for it.
pub(crate) fn shows_change(m: &Membership, change: &ConfChange) -> bool {
    match change {
        ConfChange::AddLearner(id) => is_member(m, *id),
        ConfChange::Add {
            id,
            peer_urls,
            learner,
        } => {
            let role_ok = if *learner {
                m.learners.contains(id)
            } else {
                m.voters.contains(id)
            };
            role_ok
                && m.peers
                    .get(id)
                    .map_or(peer_urls.is_empty(), |u| u == peer_urls)
        }
        ConfChange::Update { id, peer_urls } => m.peers.get(id) == Some(peer_urls),
        ConfChange::Promote(id) => m.voters.contains(id),
        ConfChange::Remove(id) => !is_member(m, *id),
        ConfChange::Set(to) => m == to,
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
            peers: Default::default(),
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
        assert!(!is_valid_change(&cur, &ConfChange::Set(cur.clone())));
    }

    fn add(id: NodeId, url: &str, learner: bool) -> ConfChange {
        ConfChange::Add {
            id,
            peer_urls: vec![url.to_owned()],
            learner,
        }
    }

    #[test]
    fn peer_urls_follow_adds_updates_and_removals() {
        let mut cur = m(&[1], &[]);
        cur.peers.insert(1, vec!["http://a:1".into()]);
        assert!(!is_valid_change(&cur, &add(2, "http://a:1", true)));
        let added = apply_change(&cur, &add(2, "http://b:1", true));
        assert!(added.learners.contains(&2));
        assert_eq!(added.peers[&2], vec!["http://b:1".to_owned()]);
        assert!(shows_change(&added, &add(2, "http://b:1", true)));
        assert!(!shows_change(&added, &add(2, "http://b:1", false)));
        let voter = apply_change(&cur, &add(3, "http://c:1", false));
        assert!(voter.voters.contains(&3) && voter.learners.is_empty());

        let update = ConfChange::Update {
            id: 2,
            peer_urls: vec!["http://b:2".into()],
        };
        assert!(is_valid_change(&added, &update));
        assert!(!is_valid_change(&cur, &update), "not a member");
        let taken = ConfChange::Update {
            id: 2,
            peer_urls: vec!["http://a:1".into()],
        };
        assert!(!is_valid_change(&added, &taken));
        let updated = apply_change(&added, &update);
        assert_eq!(updated.peers[&2], vec!["http://b:2".to_owned()]);
        assert!(shows_change(&updated, &update));

        let removed = apply_change(&updated, &ConfChange::Remove(2));
        assert!(!removed.peers.contains_key(&2));
        assert!(shows_change(&removed, &ConfChange::Remove(2)));
        assert_eq!(removed.version, 3);
    }

    #[test]
    fn a_set_entry_replays_without_the_base() {
        // A member that joined with an empty configuration learns the whole one from the
        // first `Set` entry it holds.
        let mut target = m(&[1, 2, 3], &[4]);
        target.version = 7;
        let mut log = MembershipLog::new(0, Membership::default());
        log.append(9, &ConfChange::Set(target.clone()));
        assert_eq!(log.current(), &target);
        assert!(!log.is_voter(4));
        log.truncate_from(9);
        assert_eq!(log.current(), &Membership::default());
    }
}
