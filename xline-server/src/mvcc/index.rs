//! The in-memory MVCC index: for every key, the revisions of its writes (see [`KeyIndex`]).
//!
//! The values themselves live in the backend under their revisions; the index answers which
//! revision holds the value of a key visible at a given main revision, and which revisions a
//! compaction must keep.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use super::key_index::KeyIndex;
use super::revision::Revision;

/// What the index knows of a key at some revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState {
    /// The revision of the write holding the visible value (the key's `mod_revision`).
    pub modified: Revision,
    /// The revision of the put that created the key (its `create_revision`); `sub` is 0 when the
    /// index was rebuilt after that put had been compacted away.
    pub created: Revision,
    /// The number of puts since the key was created, this one included.
    pub version: i64,
}

/// The key index of every key with history, ordered by key.
#[derive(Debug, Clone, Default)]
pub struct Index {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

/// The keys an etcd range request `[key, end)` selects.
enum KeyRange<'a> {
    /// Only `key` (an empty `end`).
    Single(&'a [u8]),
    /// The keys between two bounds.
    Span(Bound<&'a [u8]>, Bound<&'a [u8]>),
    /// No key (`end <= key`).
    Nothing,
}

impl<'a> KeyRange<'a> {
    fn new(key: &'a [u8], end: &'a [u8]) -> Self {
        match end {
            [] => Self::Single(key),
            [0] if key == [0] => Self::Span(Bound::Unbounded, Bound::Unbounded),
            [0] => Self::Span(Bound::Included(key), Bound::Unbounded),
            _ if end <= key => Self::Nothing,
            _ => Self::Span(Bound::Included(key), Bound::Excluded(end)),
        }
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key indexes of the range `[key, end)`, by etcd's conventions.
    fn select<'a>(
        &'a self,
        key: &'a [u8],
        end: &'a [u8],
    ) -> Box<dyn Iterator<Item = (&'a [u8], &'a KeyIndex)> + 'a> {
        match KeyRange::new(key, end) {
            KeyRange::Single(key) => Box::new(
                self.keys
                    .get_key_value(key)
                    .into_iter()
                    .map(|(k, ki)| (k.as_slice(), ki)),
            ),
            KeyRange::Span(start, end) => Box::new(
                self.keys
                    .range::<[u8], _>((start, end))
                    .map(|(k, ki)| (k.as_slice(), ki)),
            ),
            KeyRange::Nothing => Box::new(std::iter::empty()),
        }
    }

    /// The state of `key` visible at main revision `at_rev` (None if absent or deleted then).
    pub fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyState> {
        self.keys.get(key)?.get(at_rev)
    }

    /// The history of `key`, to read and extend in place (None if the index has none).
    pub fn key_mut(&mut self, key: &[u8]) -> Option<&mut KeyIndex> {
        self.keys.get_mut(key)
    }

    /// The history of `key`, created empty if the index has none; the caller records a write
    /// in it (an empty history must not stay in the index).
    pub fn entry(&mut self, key: &[u8]) -> &mut KeyIndex {
        self.keys.entry(key.to_vec()).or_default()
    }

    /// Keys of the etcd range `[key, end)` live at `at_rev`, ascending, with the revision holding
    /// the visible value.
    ///
    /// etcd's range conventions: an empty `end` selects just `key`; `end == b"\0"` selects every
    /// key `>= key` (so `key == end == b"\0"` selects all keys); any other `end <= key` selects
    /// nothing. A `limit` of 0 means no limit.
    pub fn range(
        &self,
        key: &[u8],
        end: &[u8],
        at_rev: i64,
        limit: usize,
    ) -> Vec<(Vec<u8>, Revision)> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.select(key, end)
            .filter_map(|(k, ki)| Some((k.to_vec(), ki.get(at_rev)?.modified)))
            .take(limit)
            .collect()
    }

    /// How many keys of the range `[key, end)` (see [`range`](Self::range)) are live at `at_rev`.
    pub fn count(&self, key: &[u8], end: &[u8], at_rev: i64) -> usize {
        self.select(key, end)
            .filter(|(_, ki)| ki.get(at_rev).is_some())
            .count()
    }

    /// Records a put of `key` at `rev` (starts a new generation if the key is absent or deleted).
    ///
    /// A `rev` not newer than the key's last write is a caller bug: it is logged and ignored.
    pub fn put(&mut self, key: &[u8], rev: Revision) {
        Self::record_put(self.entry(key), key, rev);
    }

    /// Records a put of `key` at `rev` in its history (found with [`Index::key_mut`] or
    /// [`Index::entry`]); a `rev` not newer than the key's last write is logged and ignored.
    pub fn record_put(history: &mut KeyIndex, key: &[u8], rev: Revision) {
        if !history.put(rev) {
            tracing::error!(key = ?key, ?rev, "index: put not newer than the key's last write, ignored");
        }
    }

    /// Records a deletion of a live key at `rev`; returns false (and changes nothing) if the key
    /// is not live (or `rev` is not newer than its last write).
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// Startup rebuild from the backend, called in ascending revision order for every stored
    /// write: a put at `rev` whose value says create_revision `created_main` and `version`.
    ///
    /// These seed a new generation when the key is absent or deleted, since compaction may have
    /// removed the generation's earlier revisions; a put to a live key is an ordinary put.
    pub fn restore_put(&mut self, key: &[u8], rev: Revision, created_main: i64, version: i64) {
        let restored = match self.keys.get_mut(key) {
            Some(ki) => ki.restore(rev, created_main, version),
            None => {
                let mut ki = KeyIndex::new();
                let restored = ki.restore(rev, created_main, version);
                self.keys.insert(key.to_vec(), ki);
                restored
            }
        };
        if !restored {
            tracing::error!(key = ?key, ?rev, "index: restored put out of order, ignored");
        }
    }

    /// Startup rebuild of a stored tombstone.
    ///
    /// Deletes the key if it is live. A tombstone of a key without any history is what compacting
    /// exactly at a deletion leaves in the backend: it is recorded on its own (no read sees it,
    /// but [`changes_since`](Self::changes_since) does, as before the restart). Otherwise it is
    /// ignored.
    pub fn restore_tombstone(&mut self, key: &[u8], rev: Revision) {
        match self.keys.get_mut(key) {
            Some(ki) => {
                ki.restore_tombstone(rev);
            }
            None => {
                let mut ki = KeyIndex::new();
                if ki.restore_tombstone(rev) {
                    self.keys.insert(key.to_vec(), ki);
                }
            }
        }
    }

    /// Compacts history below main revision `at_rev` and returns the revisions `<= at_rev` that
    /// must stay in the backend; every other stored revision with `main <= at_rev` may be deleted.
    ///
    /// The set holds the visible value at `at_rev` of each key live at `at_rev` (exactly
    /// [`keep`](Self::keep)) and, as in etcd, the tombstone of each key deleted exactly at
    /// `at_rev`, which stays in the index too so that watchers starting at `at_rev` still see that
    /// deletion. Reads at any revision `>= at_rev` answer exactly as before; keys with nothing
    /// left are removed.
    pub fn compact(&mut self, at_rev: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at_rev, &mut available);
            !ki.is_empty()
        });
        available
    }

    /// The revisions holding the visible value at `at_rev` of each key live at `at_rev`, without
    /// changing anything (for hashing and verification): what [`compact`](Self::compact) returns
    /// minus the tombstones at exactly `at_rev`, so that the set does not depend on whether a
    /// compaction at `at_rev` already ran.
    pub fn keep(&self, at_rev: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        for ki in self.keys.values() {
            ki.keep(at_rev, &mut available);
        }
        available
    }

    /// `(key, revision, is_tombstone)` of every write still indexed in the range `[key, end)` (see
    /// [`range`](Self::range)) with `main >= since_rev`, ascending by revision.
    ///
    /// Complete for `since_rev` above the last compaction point; at the compaction point itself
    /// only the writes that compaction kept remain.
    pub fn changes_since(
        &self,
        key: &[u8],
        end: &[u8],
        since_rev: i64,
    ) -> Vec<(Vec<u8>, Revision, bool)> {
        let mut changes: Vec<(Vec<u8>, Revision, bool)> = self
            .select(key, end)
            .flat_map(|(k, ki)| {
                ki.changes_since(since_rev)
                    .map(move |(rev, tomb)| (k.to_vec(), rev, tomb))
            })
            .collect();
        changes.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        changes
    }

    /// The number of keys with history in the index: live ones and deleted ones whose history
    /// has not been compacted away yet.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key has history in the index.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
#[path = "index_test.rs"]
mod tests;
