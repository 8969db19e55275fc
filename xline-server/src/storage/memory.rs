//! [`MemoryBackend`]: an in-memory [`Backend`] for tests and ephemeral servers.
//!
//! One `BTreeMap` per [`Table`] behind a single `parking_lot::RwLock`. A batch is applied under one
//! write lock, so readers see all of it or none of it. Nothing survives the process, so `durable`
//! and [`Backend::sync`] are no-ops.

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::RwLock;

use super::backend::{Backend, BackendError, Pair, WriteBatch, WriteOp};
use super::schema::Table;

/// The tables plus a running count of stored key and value bytes.
#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>,
    bytes: u64,
}

/// Byte length as `u64` (lossless on every supported target).
fn len64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// A volatile [`Backend`] keeping every table in a `BTreeMap`.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: RwLock<State>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Backend for MemoryBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let state = self.state.read();
        Ok(state.tables.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn range(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, BackendError> {
        // `BTreeMap::range` panics on an inverted range; the contract asks for an empty result.
        if !end.is_empty() && start >= end {
            return Ok(Vec::new());
        }
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let state = self.state.read();
        let Some(map) = state.tables.get(&table) else {
            return Ok(Vec::new());
        };
        let take = if limit == 0 { usize::MAX } else { limit };
        Ok(map
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(take)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&self, batch: WriteBatch, _durable: bool) -> Result<(), BackendError> {
        let mut state = self.state.write();
        let State { tables, bytes } = &mut *state;
        for op in batch.ops() {
            match op {
                WriteOp::Put { table, key, value } => {
                    let map = tables.entry(*table).or_default();
                    *bytes += len64(value);
                    match map.insert(key.clone(), value.clone()) {
                        Some(old) => *bytes -= len64(&old),
                        None => *bytes += len64(key),
                    }
                }
                WriteOp::Delete { table, key } => {
                    if let Some(old) = tables.get_mut(table).and_then(|m| m.remove(key)) {
                        *bytes -= len64(key) + len64(&old);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn size(&self) -> Result<u64, BackendError> {
        Ok(self.state.read().bytes)
    }

    fn size_in_use(&self) -> Result<u64, BackendError> {
        self.size()
    }

    /// Nothing to give back: the maps hold exactly their contents.
    fn defragment(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
