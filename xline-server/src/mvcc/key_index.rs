//! The revision history of one key, grouped into generations.
//!
//! A *generation* is one lifetime of a key: it starts with the put that creates the key (while the
//! key is absent or deleted) and ends with the tombstone that deletes it. Every write of the key is
//! recorded as a [`Revision`] in the generation that was current when it happened; a tombstone is
//! the last revision of its generation and is followed by a new, empty generation that stays empty
//! until the key is put again. So every generation but the last one is non-empty and ends in a
//! tombstone, and the key is live exactly when the last generation is non-empty.
//!
//! # Example
//!
//! The writes `put(2.0) put(3.0) delete(5.0) put(7.0) put(8.1)` to one key give
//!
//! ```text
//! generation 0: created 2.0, version 3, revisions [2.0, 3.0, 5.0(t)]
//! generation 1: created 7.0, version 2, revisions [7.0, 8.1]
//! ```
//!
//! A read at main revision `r` looks for the generation holding the newest revision with
//! `main <= r`, and answers with that revision unless it is the tombstone:
//!
//! * `get(1)` is nothing: the key did not exist yet;
//! * `get(3)` and `get(4)` are `3.0`, created at `2.0`, version 2 (the second write of generation 0);
//! * `get(5)` and `get(6)` are nothing: the key was deleted at 5 and not yet put again;
//! * `get(7)` is `7.0`, version 1; `get(8)` and later are `8.1`, created at `7.0`, version 2.
//!
//! A generation's version counts its writes, tombstone included; the version of a revision is the
//! generation's version minus the number of revisions after it, so it stays right when compaction
//! removes earlier revisions.
//!
//! Compacting at main revision `c` forgets what only reads below `c` could see, while reads at `c`
//! and later still answer the same. Every generation that ended before `c` is dropped; in the
//! generation visible at `c`, everything before its newest revision with `main <= c` is dropped;
//! and a generation whose tombstone is exactly at `c` keeps only that tombstone, so that watchers
//! starting at `c` still see the deletion (as in etcd). From the example:
//!
//! * `compact(3)` leaves `[3.0, 5.0(t)]`, `[7.0, 8.1]` and keeps `3.0` in the backend;
//! * `compact(5)` leaves `[5.0(t)]`, `[7.0, 8.1]` and keeps the tombstone `5.0`
//!   ([`KeyIndex::keep`], which lists only values visible at `c`, leaves that tombstone out);
//! * `compact(6)` leaves `[7.0, 8.1]` and keeps nothing of this key;
//! * `compact(8)` leaves `[8.1]` and keeps `8.1`.
//!
//! If the key is then deleted at `9.0`, it is `[8.1, 9.0(t)]` followed by an empty generation, and
//! `compact(10)` leaves only the empty generation: the key index is empty and is removed.

use std::collections::HashSet;

use super::index::KeyState;
use super::revision::Revision;

/// One lifetime of a key, from the put that created it to the tombstone that deleted it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Generation {
    /// The number of writes made in this generation, tombstone included (compacted ones too).
    version: i64,
    /// The revision of the put that created the key.
    created: Revision,
    /// The remaining revisions, ascending.
    revs: Vec<Revision>,
}

impl Generation {
    /// How many of `revs` have `main <= at_rev`.
    fn visible_len(&self, at_rev: i64) -> usize {
        self.revs.partition_point(|rev| rev.main <= at_rev)
    }
}

/// The revision history of one key: its generations, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    /// The newest write recorded (compaction does not change it).
    modified: Revision,
    /// Every generation but the last is non-empty and ends in a tombstone.
    generations: Vec<Generation>,
}

impl KeyIndex {
    /// A key index without history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no revision is left at all (a key index in this state can be removed).
    pub fn is_empty(&self) -> bool {
        self.generations.iter().all(|g| g.revs.is_empty())
    }

    /// Whether the key exists now (its newest write is a put).
    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.revs.is_empty())
    }

    /// The newest write recorded.
    pub fn modified(&self) -> Revision {
        self.modified
    }

    /// Records a put at `rev`, starting a new generation if the key is not live.
    ///
    /// Returns false and changes nothing if `rev` is not newer than every recorded write.
    pub fn put(&mut self, rev: Revision) -> bool {
        if !self.accepts(rev) {
            return false;
        }
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        if let Some(g) = self.generations.last_mut() {
            if g.revs.is_empty() {
                g.created = rev;
                g.version = 0;
            }
            g.revs.push(rev);
            g.version += 1;
        }
        self.modified = rev;
        true
    }

    /// Records a deletion at `rev`, ending the current generation.
    ///
    /// Returns false and changes nothing if the key is not live or `rev` is not newer than every
    /// recorded write.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if !self.is_live() || !self.put(rev) {
            return false;
        }
        self.generations.push(Generation::default());
        true
    }

    /// Rebuilds a put from the backend: like [`put`](Self::put) if the key is live, otherwise the
    /// start of a generation whose earlier writes may have been compacted, seeded with the
    /// creating main revision and the version that the stored value records.
    ///
    /// The creating revision's `sub` is only known when this put itself created the key
    /// (`created_main == rev.main` and `version == 1`); otherwise it is taken as 0.
    pub fn restore(&mut self, rev: Revision, created_main: i64, version: i64) -> bool {
        if self.is_live() {
            return self.put(rev);
        }
        if !self.accepts(rev) {
            return false;
        }
        let created = if created_main == rev.main && version == 1 {
            rev
        } else {
            Revision::new(created_main, 0)
        };
        let generation = Generation {
            version,
            created,
            revs: vec![rev],
        };
        match self.generations.last_mut() {
            Some(last) => *last = generation,
            None => self.generations.push(generation),
        }
        self.modified = rev;
        true
    }

    /// Rebuilds a tombstone from the backend: like [`tombstone`](Self::tombstone) if the key is
    /// live; if the key index has no history, a generation holding only this tombstone (what
    /// compacting exactly at a deletion leaves); otherwise nothing.
    pub fn restore_tombstone(&mut self, rev: Revision) -> bool {
        if self.is_live() {
            return self.tombstone(rev);
        }
        if !self.is_empty() || !self.accepts(rev) {
            return false;
        }
        self.generations = vec![
            Generation {
                version: 1,
                created: Revision::default(),
                revs: vec![rev],
            },
            Generation::default(),
        ];
        self.modified = rev;
        true
    }

    /// The key's state visible at main revision `at_rev`, or `None` if it did not exist then.
    pub fn get(&self, at_rev: i64) -> Option<KeyState> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && end.main <= at_rev {
                // The generation had already ended in its tombstone.
                return None;
            }
            if first.main <= at_rev {
                let n = g.visible_len(at_rev);
                let modified = *g.revs.get(n.checked_sub(1)?)?;
                let newer = (g.revs.len() - n) as i64;
                return Some(KeyState {
                    modified,
                    created: g.created,
                    version: g.version - newer,
                });
            }
        }
        None
    }

    /// Compacts the history below main revision `at_rev` (see the module documentation), adding to
    /// `available` the revisions with `main <= at_rev` that remain: the value visible at `at_rev`
    /// if the key was live then, and any tombstone at exactly `at_rev`.
    pub fn compact(&mut self, at_rev: i64, available: &mut HashSet<Revision>) {
        let last = self.generations.len().saturating_sub(1);
        let generations = std::mem::take(&mut self.generations);
        for (i, mut g) in generations.into_iter().enumerate() {
            if i != last && g.revs.last().is_none_or(|tomb| tomb.main < at_rev) {
                // Ended before `at_rev`: nothing in it is visible at `at_rev` or later.
                continue;
            }
            let n = g.visible_len(at_rev);
            if n > 0 {
                available.insert(g.revs[n - 1]);
                g.revs.drain(..n - 1);
            }
            self.generations.push(g);
        }
    }

    /// Adds to `available` the revision visible at `at_rev`, if any: what
    /// [`compact`](Self::compact) would add, without a tombstone at exactly `at_rev`.
    pub fn keep(&self, at_rev: i64, available: &mut HashSet<Revision>) {
        if let Some(state) = self.get(at_rev) {
            available.insert(state.modified);
        }
    }

    /// Every remaining write with `main >= since_rev`, ascending, with whether it is a tombstone.
    pub fn changes_since(&self, since_rev: i64) -> impl Iterator<Item = (Revision, bool)> + '_ {
        let last = self.generations.len().saturating_sub(1);
        self.generations.iter().enumerate().flat_map(move |(i, g)| {
            let tomb = (i != last).then(|| g.revs.len().saturating_sub(1));
            let start = g.revs.partition_point(|rev| rev.main < since_rev);
            g.revs
                .iter()
                .enumerate()
                .skip(start)
                .map(move |(j, rev)| (*rev, tomb == Some(j)))
        })
    }

    /// Whether `rev` may be recorded: it must be newer than every recorded write.
    fn accepts(&self, rev: Revision) -> bool {
        rev > self.modified
    }
}

#[cfg(test)]
#[path = "key_index_test.rs"]
mod tests;
