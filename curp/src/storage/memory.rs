//! An in-memory [`LogStorage`] for tests and simulation.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{HardState, LogEntry, LogStorage, check_append, check_compact, check_range};
use crate::error::StorageError;

/// An in-memory [`LogStorage`] for tests and simulation.
///
/// Nothing is ever written to disk and `sync` is free. Clones share the same log, so a clone
/// kept aside plays the role of "the same directory, reopened" after the original is dropped.
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    /// The shared state.
    inner: Arc<Mutex<Inner>>,
}

/// The contents of a [`MemoryLog`].
#[derive(Debug, Default)]
struct Inner {
    /// Retained entries; the first one has index `boundary_index + 1`.
    entries: VecDeque<LogEntry>,
    /// Index just before the first retained entry.
    boundary_index: u64,
    /// Term of the entry at `boundary_index`.
    boundary_term: u64,
    /// The hard state.
    hard_state: HardState,
    /// Metadata records.
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Inner {
    /// First retained index.
    fn first_index(&self) -> u64 {
        self.boundary_index + 1
    }

    /// Last index.
    fn last_index(&self) -> u64 {
        self.boundary_index + self.entries.len() as u64
    }

    /// Position of `index` in `entries`; the caller checked that it is retained.
    fn position(&self, index: u64) -> usize {
        // Retained indices are at most `entries.len()` past the boundary, so this fits.
        usize::try_from(index - self.first_index()).unwrap_or(usize::MAX)
    }
}

impl MemoryLog {
    /// Creates an empty log.
    pub fn new() -> Self {
        Self::default()
    }
}

impl LogStorage for MemoryLog {
    fn append(&self, entries: &[LogEntry], _sync: bool) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        check_append(entries, inner.first_index(), inner.last_index())?;
        let Some(head) = entries.first() else {
            return Ok(());
        };
        let keep = inner.position(head.index);
        inner.entries.truncate(keep);
        inner.entries.extend(entries.iter().cloned());
        Ok(())
    }

    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<LogEntry>, StorageError> {
        if low >= high {
            return Ok(Vec::new());
        }
        let inner = self.inner.lock();
        check_range(low, high, inner.first_index(), inner.last_index())?;
        let start = inner.position(low);
        let end = inner.position(high);
        let mut out = Vec::new();
        let mut total = 0_u64;
        for entry in inner.entries.range(start..end) {
            total = total.saturating_add(entry.data.len() as u64);
            if total > max_bytes && !out.is_empty() {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> Result<Option<u64>, StorageError> {
        let inner = self.inner.lock();
        if index == inner.boundary_index {
            return Ok(Some(inner.boundary_term));
        }
        if index < inner.first_index() || index > inner.last_index() {
            return Ok(None);
        }
        Ok(inner
            .entries
            .get(inner.position(index))
            .map(|entry| entry.term))
    }

    fn first_index(&self) -> u64 {
        self.inner.lock().first_index()
    }

    fn last_index(&self) -> u64 {
        self.inner.lock().last_index()
    }

    fn compact(&self, to: u64) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        if !check_compact(to, inner.first_index(), inner.last_index())? {
            return Ok(());
        }
        let count = inner.position(to);
        let mut boundary_term = inner.boundary_term;
        for entry in inner.entries.drain(..count) {
            boundary_term = entry.term;
        }
        inner.boundary_index = to - 1;
        inner.boundary_term = boundary_term;
        Ok(())
    }

    fn install_snapshot(&self, index: u64, term: u64) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        inner.entries.clear();
        inner.boundary_index = index;
        inner.boundary_term = term;
        Ok(())
    }

    fn hard_state(&self) -> Result<HardState, StorageError> {
        Ok(self.inner.lock().hard_state)
    }

    fn set_hard_state(&self, hs: HardState, _sync: bool) -> Result<(), StorageError> {
        self.inner.lock().hard_state = hs;
        Ok(())
    }

    fn put_meta(&self, key: &[u8], value: &[u8], _sync: bool) -> Result<(), StorageError> {
        self.inner.lock().meta.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.inner.lock().meta.get(key).cloned())
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
