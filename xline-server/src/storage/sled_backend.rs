//! [`SledBackend`]: a selectable [`Backend`] on [sled](https://docs.rs/sled) 0.34.7.
//!
//! sled was the original storage choice and is kept selectable with `--backend sled`; redb is the
//! default.
//!
//! # Layout
//! The database lives in `<dir>/sled`. Every [`Table`] shares sled's default tree: each key is
//! stored as `[Table::tag()] ++ key`. Keeping everything in one tree makes a [`WriteBatch`] one
//! [`sled::Batch`], applied atomically by [`sled::Tree::apply_batch`] (sled's multi-tree
//! transactions would be needed otherwise). Tags are `1..=6`, so a table's whole keyspace is
//! `[tag] ..= [tag, 0xff, 0xff, ...]`, bounded above by `[tag + 1]`, and ranges never leak into the
//! next table.
//!
//! # Durability caveat
//! A `durable` write and [`Backend::sync`] call [`sled::Db::flush`]. On Linux sled's flush ends in
//! `sync_file_range`, **not** `fsync`: the data is written back but the file-system metadata and
//! the disk cache are not flushed, so a flushed batch can still be lost on power failure (it does
//! survive a process crash). Choose redb when power-loss durability matters. sled 0.34 has not been
//! released since 2021 and uses about three times the disk space of redb.
//!
//! # Defragmentation
//! sled has no compaction call: it rewrites its segments in the background as they fill with
//! dead data. [`Backend::defragment`] therefore only flushes, and [`Backend::size_in_use`] is
//! the size on disk.

use std::fs;
use std::path::Path;

use sled::{Batch, Db, IVec};

use super::backend::{Backend, BackendError, Pair, WriteBatch, WriteOp};
use super::schema::Table;

/// The name of the sled directory inside the data directory.
pub const SLED_DIR_NAME: &str = "sled";

/// `[table.tag()] ++ key`: the key as stored in the shared tree.
fn prefixed(table: Table, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(table.tag());
    out.extend_from_slice(key);
    out
}

/// The exclusive upper bound of `table`'s keyspace in the shared tree.
fn table_end(table: Table) -> Vec<u8> {
    // Tags are small (1..=6), so this never overflows.
    vec![table.tag().saturating_add(1)]
}

/// A [`Backend`] keeping every table in one sled tree under a one-byte table prefix.
#[derive(Debug)]
pub struct SledBackend {
    db: Db,
}

impl SledBackend {
    /// Opens (creating when missing) the sled database at `dir/sled`.
    pub fn open(dir: &Path) -> Result<Self, BackendError> {
        fs::create_dir_all(dir).map_err(|e| BackendError::new("open", e))?;
        // A sled database dropped in this process keeps its file lock until its background
        // flusher thread has exited; reopening right after a drop waits briefly for that.
        let mut attempts = 0;
        loop {
            match sled::open(dir.join(SLED_DIR_NAME)) {
                Ok(db) => return Ok(Self { db }),
                Err(e) if attempts < 50 && e.to_string().contains("could not acquire lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(BackendError::new("open", e)),
            }
        }
    }
}

impl Backend for SledBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let value = self
            .db
            .get(prefixed(table, key))
            .map_err(|e| BackendError::new("read", e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn range(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, BackendError> {
        if !end.is_empty() && start >= end {
            return Ok(Vec::new());
        }
        let lo = prefixed(table, start);
        let hi = if end.is_empty() {
            table_end(table)
        } else {
            prefixed(table, end)
        };
        let take = if limit == 0 { usize::MAX } else { limit };
        let mut out = Vec::new();
        for entry in self.db.range(lo..hi).take(take) {
            let (k, v) = entry.map_err(|e| BackendError::new("read", e))?;
            let key = k.get(1..).unwrap_or_default().to_vec();
            out.push((key, v.to_vec()));
        }
        Ok(out)
    }

    fn write(&self, batch: WriteBatch, durable: bool) -> Result<(), BackendError> {
        let mut sled_batch = Batch::default();
        // `Batch` keeps one entry per key, the last one queued, as the contract requires.
        for op in batch.ops() {
            match op {
                WriteOp::Put { table, key, value } => {
                    sled_batch.insert(prefixed(*table, key), IVec::from(value.as_slice()));
                }
                WriteOp::Delete { table, key } => sled_batch.remove(prefixed(*table, key)),
            }
        }
        self.db
            .apply_batch(sled_batch)
            .map_err(|e| BackendError::new("write", e))?;
        if durable {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), BackendError> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| BackendError::new("sync", e))
    }

    fn size(&self) -> Result<u64, BackendError> {
        self.db
            .size_on_disk()
            .map_err(|e| BackendError::new("size", e))
    }

    fn size_in_use(&self) -> Result<u64, BackendError> {
        self.size()
    }

    fn defragment(&self) -> Result<(), BackendError> {
        self.sync()
    }

    fn name(&self) -> &'static str {
        "sled"
    }
}
