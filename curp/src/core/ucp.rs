//! The leader's uncommitted pool (UCP, CURP.md 1, 2.2 "UCP insert", L2, E3, RD1).
//!
//! A multiset of every command in the leader's log that has not been applied yet, conflicting
//! ones included. A new proposal that conflicts with any of them must take the slow path (its
//! result depends on their order), and a read that conflicts with any of them must wait for
//! them to be applied.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use super::interval::{ConflictIndex, Footprint};
use super::types::{CommandData, ProposeId};
use crate::cmd::ConflictKeys;

/// One occurrence of a command in the pool.
#[derive(Debug, Clone)]
struct Occurrence {
    /// Its normalised conflict keys, kept so removal undoes insertion exactly (CURP.md C2).
    footprint: Footprint,
    /// Its token in the index.
    token: u64,
}

/// The occurrences of one id, oldest first. An id is almost always in the log once, so the
/// first occurrence is held inline and the rare later ones (a command recovered from the
/// witnesses and also re-proposed by its client) in `later`, which allocates only then.
#[derive(Debug, Clone)]
struct Occurrences {
    /// The oldest occurrence.
    first: Occurrence,
    /// The others, oldest first.
    later: VecDeque<Occurrence>,
}

/// The uncommitted pool: a multiset of commands with an index answering "does anything held
/// conflict with this?" in `O(log n)` per key range.
#[derive(Debug, Clone, Default)]
pub struct Ucp {
    /// Ranges, leases and exclusive count of every occurrence held.
    index: ConflictIndex,
    /// Occurrences by id (an id may be in the log more than once).
    entries: HashMap<ProposeId, Occurrences>,
}

impl Ucp {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `cmd` (always stored, conflicting or not). Returns `true` when it conflicts with a
    /// command already held (including an earlier occurrence of itself).
    pub fn insert(&mut self, cmd: &CommandData) -> bool {
        let footprint = Footprint::new(&cmd.keys);
        let conflict = self.index.conflicts(&footprint);
        let token = self.index.insert(&footprint);
        let occurrence = Occurrence { footprint, token };
        match self.entries.entry(cmd.id) {
            Entry::Occupied(mut held) => held.get_mut().later.push_back(occurrence),
            Entry::Vacant(slot) => {
                slot.insert(Occurrences {
                    first: occurrence,
                    later: VecDeque::new(),
                });
            }
        }
        conflict
    }

    /// Removes the oldest occurrence of the command with this id (it was applied); whether one
    /// was held.
    pub fn remove(&mut self, id: &ProposeId) -> bool {
        let Entry::Occupied(mut held) = self.entries.entry(*id) else {
            return false;
        };
        let oldest = match held.get_mut().later.pop_front() {
            Some(next) => std::mem::replace(&mut held.get_mut().first, next),
            None => held.remove().first,
        };
        self.index.remove(&oldest.footprint, oldest.token);
        true
    }

    /// Whether a command with these keys conflicts with any command held (for reads, CURP.md
    /// RD1: a conflicting read waits until the pool no longer conflicts).
    pub fn conflicts(&self, keys: &ConflictKeys) -> bool {
        self.index.conflicts(&Footprint::new(keys))
    }

    /// Whether an occurrence of the command with this id is held.
    pub fn contains(&self, id: &ProposeId) -> bool {
        self.entries.contains_key(id)
    }

    /// Drops everything (the leader stepped down, CURP.md E4).
    pub fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
    }

    /// Number of occurrences held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::interval::test_util::{SplitMix64, command, conflict_keys};
    use super::*;
    use crate::cmd::KeyRange;

    fn keys(ranges: &[(&[u8], &[u8])], leases: &[i64], exclusive: bool) -> ConflictKeys {
        ConflictKeys {
            ranges: ranges
                .iter()
                .map(|(start, end)| KeyRange::new(start.to_vec(), end.to_vec()))
                .collect(),
            leases: leases.to_vec(),
            exclusive,
        }
    }

    fn id(client_id: u64, seq: u64) -> ProposeId {
        ProposeId { client_id, seq }
    }

    #[test]
    fn stores_conflicting_commands() {
        let mut ucp = Ucp::new();
        assert!(!ucp.insert(&command(1, 1, keys(&[(b"a", b"c")], &[], false))));
        assert!(ucp.insert(&command(1, 2, keys(&[(b"b", b"")], &[], false))));
        assert_eq!(ucp.len(), 2);
        // Touching ranges do not conflict.
        assert!(!ucp.insert(&command(1, 3, keys(&[(b"c", b"d")], &[0], false))));
        assert!(ucp.conflicts(&keys(&[(b"b", b"")], &[], false)));
        assert!(ucp.remove(&id(1, 1)));
        // [b] is still held by (1, 2).
        assert!(ucp.conflicts(&keys(&[(b"b", b"")], &[], false)));
        assert!(ucp.remove(&id(1, 2)));
        assert!(!ucp.conflicts(&keys(&[(b"b", b"")], &[], false)));
        assert!(!ucp.remove(&id(1, 2)));
        assert!(ucp.conflicts(&keys(&[(b"a", &[0])], &[], false)));
        assert!(ucp.conflicts(&keys(&[(&[0], &[0])], &[], false)));
        assert!(!ucp.conflicts(&keys(&[(b"d", &[0])], &[], false)));
        // Lease 0 never conflicts; other leases do.
        assert!(!ucp.conflicts(&keys(&[], &[0], false)));
        assert!(!ucp.insert(&command(1, 4, keys(&[], &[7], false))));
        assert!(ucp.conflicts(&keys(&[], &[7], false)));
        // Exclusive commands conflict with anything held, and anything with them.
        assert!(ucp.conflicts(&keys(&[], &[], true)));
        ucp.clear();
        assert!(ucp.is_empty());
        assert!(!ucp.conflicts(&keys(&[], &[], true)));
        assert!(!ucp.insert(&command(2, 1, keys(&[], &[], true))));
        assert!(ucp.conflicts(&ConflictKeys::default()));
        assert!(ucp.insert(&command(2, 2, ConflictKeys::default())));
    }

    #[test]
    fn duplicate_ids_are_counted() {
        let mut ucp = Ucp::new();
        let cmd = command(1, 1, keys(&[(b"a", b"")], &[3], false));
        assert!(!ucp.insert(&cmd));
        assert!(ucp.insert(&cmd));
        assert_eq!(ucp.len(), 2);
        assert!(ucp.remove(&cmd.id));
        assert!(ucp.contains(&cmd.id));
        assert!(ucp.conflicts(&cmd.keys));
        assert!(ucp.remove(&cmd.id));
        assert!(!ucp.contains(&cmd.id));
        assert!(!ucp.conflicts(&cmd.keys));
        assert!(!ucp.remove(&cmd.id));
        assert!(ucp.index.is_pristine());
    }

    /// (a) decisions equal the pairwise oracle over a multiset; (c) removing everything leaves
    /// nothing behind.
    #[test]
    fn matches_brute_force_oracle() {
        let (mut conflicting, mut clean) = (0usize, 0usize);
        for seed in 0..64 {
            let mut rng = SplitMix64::new(seed ^ 0xdead_beef);
            let mut ucp = Ucp::new();
            let mut model: Vec<CommandData> = Vec::new();
            let mut issued: Vec<CommandData> = Vec::new();
            for seq in 0..400u64 {
                match rng.below(100) {
                    0..=49 => {
                        let cmd = if rng.chance(1, 20) && !issued.is_empty() {
                            issued[rng.index(issued.len())].clone()
                        } else {
                            command(rng.below(4), seq, conflict_keys(&mut rng, 50))
                        };
                        let expected = model.iter().any(|c| c.keys.conflicts_with(&cmd.keys));
                        assert_eq!(ucp.insert(&cmd), expected, "seed {seed}: {cmd:?}");
                        if expected {
                            conflicting += 1;
                        } else {
                            clean += 1;
                        }
                        model.push(cmd.clone());
                        issued.push(cmd);
                    }
                    50..=84 if !issued.is_empty() => {
                        let id = if rng.chance(4, 5) && !model.is_empty() {
                            model[rng.index(model.len())].id
                        } else {
                            issued[rng.index(issued.len())].id
                        };
                        let position = model.iter().position(|c| c.id == id);
                        if let Some(position) = position {
                            model.remove(position);
                        }
                        assert_eq!(ucp.remove(&id), position.is_some(), "seed {seed}");
                    }
                    _ => {
                        let query = conflict_keys(&mut rng, 50);
                        let expected = model.iter().any(|c| c.keys.conflicts_with(&query));
                        assert_eq!(ucp.conflicts(&query), expected, "seed {seed}: {query:?}");
                    }
                }
                assert_eq!(ucp.len(), model.len());
            }
            let mut all: Vec<ProposeId> = model.iter().map(|c| c.id).collect();
            rng.shuffle(&mut all);
            for id in &all {
                assert!(ucp.remove(id));
            }
            assert!(ucp.is_empty());
            assert!(ucp.entries.is_empty());
            assert!(ucp.index.is_pristine(), "seed {seed}");
            let everything = keys(&[(&[0], &[0])], &[1, 2, 3, 4, 5], true);
            assert!(!ucp.conflicts(&everything));
        }
        assert!(
            conflicting > 1_000 && clean > 1_000,
            "{conflicting} / {clean}"
        );
    }
}
