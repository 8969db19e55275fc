//! The backend seam: an ordered key-value store with named tables and atomic write batches.
//!
//! The MVCC store keeps every durable byte behind this trait. Implementations: [`super::redb`]
//! (the default; fsync-durable), [`super::sled`] (selectable; its flush is not an fsync) and
//! [`super::memory`] (tests). All of them pass the conformance suite in `super::conformance`.
//!
//! # Contract
//! - Keys within a table are ordered bytewise; [`Backend::range`] returns them ascending.
//! - [`Backend::write`] applies a [`WriteBatch`] atomically: after a crash either every op of the
//!   batch is visible or none is.
//! - A batch written with `durable = false` may be lost on a crash (together with every later
//!   batch), but never partially and never out of order. A batch written with `durable = true`, and
//!   every batch before it, survives a crash once `write` returns (for redb and memory; sled's
//!   flush is `sync_file_range`, not an fsync).
//! - Reads observe every batch whose `write` has returned.

use super::schema::Table;

/// A failure of the storage engine (I/O, corruption). Never a domain error.
#[derive(Debug, thiserror::Error)]
#[error("backend {op}: {message}")]
pub struct BackendError {
    /// What was being done (`open`, `read`, `write`, ...).
    pub op: &'static str,
    /// The engine's description of the failure.
    pub message: String,
}

impl BackendError {
    /// Wraps an engine error.
    pub fn new(op: &'static str, err: impl std::fmt::Display) -> Self {
        Self {
            op,
            message: err.to_string(),
        }
    }
}

/// One mutation inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert or overwrite `key` in `table`.
    Put {
        /// Target table.
        table: Table,
        /// Key bytes.
        key: Vec<u8>,
        /// Value bytes.
        value: Vec<u8>,
    },
    /// Remove `key` from `table` (no-op when absent).
    Delete {
        /// Target table.
        table: Table,
        /// Key bytes.
        key: Vec<u8>,
    },
}

/// An ordered list of mutations applied atomically by [`Backend::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a put.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put {
            table,
            key: key.into(),
            value: value.into(),
        });
    }

    /// Queues a delete.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete {
            table,
            key: key.into(),
        });
    }

    /// The queued ops, in order. Later ops on the same key win.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key-value pair read from a table.
pub type Pair = (Vec<u8>, Vec<u8>);

/// An ordered, table-partitioned key-value engine (see the module docs for the contract).
pub trait Backend: Send + Sync + 'static {
    /// The value of `key` in `table`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;

    /// Pairs with `start <= key < end` in ascending key order; an empty `end` means no upper bound.
    /// At most `limit` pairs when `limit > 0`.
    fn range(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, BackendError>;

    /// Applies `batch` atomically; with `durable` it is on stable storage when this returns.
    fn write(&self, batch: WriteBatch, durable: bool) -> Result<(), BackendError>;

    /// Makes every batch written so far durable.
    fn sync(&self) -> Result<(), BackendError>;

    /// Bytes the engine occupies on disk (or in memory for the memory backend).
    fn size(&self) -> Result<u64, BackendError>;

    /// Bytes of [`Backend::size`] that hold data; the rest is free space inside the files that
    /// [`Backend::defragment`] can give back (etcd's "in use" size).
    fn size_in_use(&self) -> Result<u64, BackendError>;

    /// Gives the engine's free space back to the file system (etcd's defragmentation) and makes
    /// every batch written so far durable. Reads and writes wait while it runs; the contents
    /// are unchanged.
    fn defragment(&self) -> Result<(), BackendError>;

    /// The engine's name as selected with `--backend` (`redb`, `sled`, `memory`).
    fn name(&self) -> &'static str;
}
