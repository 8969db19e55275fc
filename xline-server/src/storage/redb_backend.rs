//! [`RedbBackend`]: the default [`Backend`], on [redb](https://docs.rs/redb) 4.x.
//!
//! One file, `<dir>/xline.redb`, with one redb table (`&[u8] -> &[u8]`) per [`Table`], named by
//! [`Table::name`] and created when the database is opened.
//!
//! A [`WriteBatch`] is one redb write transaction, so it is atomic. Batches written with
//! `durable = false` commit with [`Durability::None`]: they are visible to readers at once but
//! reach stable storage only with the next durable commit (a durable batch or [`Backend::sync`],
//! which commits an empty transaction with [`Durability::Immediate`]). redb orders commits, so a
//! crash loses a suffix of non-durable batches, never a partial batch. Reads run in read
//! transactions, which are consistent snapshots.
//!
//! Reads share one read transaction (with its tables opened) taken after the newest commit: every
//! write drops it once committed, and the next read takes a fresh one. Opening a read transaction
//! and its table costs more than a point read, and the state machine reads the previous value of
//! every key it puts, so this saves most of the cost of a read while applying a batch (and of a
//! linearizable read of a few keys).
//!
//! [`Backend::defragment`] is redb's `Database::compact`, which needs the database to itself:
//! every read and write holds a shared lock on the database handle for its duration, and
//! defragmentation takes it exclusively (and drops the shared read transaction). [`Backend::size_in_use`] is the file size less the
//! pages redb reports free (`fragmented_bytes`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, TableDefinition,
    TableError, WriteTransaction,
};

use super::backend::{Backend, BackendError, Pair, WriteBatch, WriteOp};
use super::schema::Table;

/// The file name of the database inside the data directory.
pub const REDB_FILE_NAME: &str = "xline.redb";

/// The redb definition of `table`.
fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

/// A read transaction's tables, in [`Table::ALL`] order (`None`: the table does not exist).
struct ReadView {
    tables: Vec<Option<ReadOnlyTable<&'static [u8], &'static [u8]>>>,
    /// The transaction (dropped after its tables).
    _txn: ReadTransaction,
}

impl ReadView {
    /// A read transaction on the newest commit of `db`, with every table opened.
    fn new(db: &Database) -> Result<Self, BackendError> {
        let txn = db.begin_read().map_err(|e| BackendError::new("read", e))?;
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            tables.push(match txn.open_table(definition(table)) {
                Ok(t) => Some(t),
                Err(TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(BackendError::new("read", e)),
            });
        }
        Ok(Self { tables, _txn: txn })
    }

    fn table(&self, table: Table) -> Option<&ReadOnlyTable<&'static [u8], &'static [u8]>> {
        let idx = Table::ALL.iter().position(|t| *t == table)?;
        self.tables.get(idx)?.as_ref()
    }
}

/// A [`Backend`] storing every table in one redb database file.
pub struct RedbBackend {
    /// Shared by every transaction, exclusive for [`Database::compact`].
    db: RwLock<Database>,
    /// The read view of the newest commit, once a read asked for it (taken and dropped under
    /// this lock; a write drops it after committing, so reads observe every returned write).
    view: Mutex<Option<Arc<ReadView>>>,
    path: PathBuf,
    /// The file's length as of the last commit or compaction: the file changes length only
    /// then, so [`Backend::size`] (asked before every write proposal by the quota check)
    /// answers without a `statx` per request.
    size: AtomicU64,
    /// Held from a commit (or compaction) until its length is recorded, so that a later
    /// commit's length is never overwritten by an earlier one's.
    resize: Mutex<()>,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbBackend {
    /// Opens (creating when missing) `dir/xline.redb`, creating `dir` and every [`Table`] as
    /// needed.
    pub fn open(dir: &Path) -> Result<Self, BackendError> {
        fs::create_dir_all(dir).map_err(|e| BackendError::new("open", e))?;
        let path = dir.join(REDB_FILE_NAME);
        let db = Database::create(&path).map_err(|e| BackendError::new("open", e))?;
        // The file's name (and a new `dir`'s) is durable, not only its contents.
        for d in [Some(dir), dir.parent()].into_iter().flatten() {
            if !d.as_os_str().is_empty() {
                super::sync_dir(d).map_err(|e| BackendError::new("open", e))?;
            }
        }
        let txn = Self::begin(&db, Durability::Immediate)?;
        for table in Table::ALL {
            txn.open_table(definition(table))
                .map_err(|e| BackendError::new("open", e))?;
        }
        txn.commit().map_err(|e| BackendError::new("open", e))?;
        let size = AtomicU64::new(file_size(&path)?);
        Ok(Self {
            db: RwLock::new(db),
            view: Mutex::new(None),
            path,
            size,
            resize: Mutex::new(()),
        })
    }

    /// Records the file's length after a commit or compaction changed it; the caller holds
    /// `resize` from before that change.
    fn refresh_size(&self) -> Result<(), BackendError> {
        self.size.store(file_size(&self.path)?, Ordering::Release);
        Ok(())
    }

    /// The shared read view (taken now if there is none). The caller holds the database lock
    /// while it uses the view, so that defragmentation waits for it.
    fn view(&self, db: &Database) -> Result<Arc<ReadView>, BackendError> {
        let mut view = self.view.lock();
        if let Some(v) = &*view {
            return Ok(Arc::clone(v));
        }
        let fresh = Arc::new(ReadView::new(db)?);
        *view = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// Drops the shared read view: the next read sees every commit made so far.
    fn drop_view(&self) {
        *self.view.lock() = None;
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a write transaction that will commit with `durability`.
    fn begin(db: &Database, durability: Durability) -> Result<WriteTransaction, BackendError> {
        let mut txn = db
            .begin_write()
            .map_err(|e| BackendError::new("write", e))?;
        txn.set_durability(durability)
            .map_err(|e| BackendError::new("write", e))?;
        Ok(txn)
    }
}

/// The length of the file at `path`.
fn file_size(path: &Path) -> Result<u64, BackendError> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| BackendError::new("size", e))
}

impl Backend for RedbBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let db = self.db.read();
        let view = self.view(&db)?;
        let Some(t) = view.table(table) else {
            return Ok(None);
        };
        let value = t.get(key).map_err(|e| BackendError::new("read", e))?;
        Ok(value.map(|v| v.value().to_vec()))
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
        let db = self.db.read();
        let view = self.view(&db)?;
        let Some(t) = view.table(table) else {
            return Ok(Vec::new());
        };
        let iter = if end.is_empty() {
            t.range(start..)
        } else {
            t.range(start..end)
        }
        .map_err(|e| BackendError::new("read", e))?;
        let take = if limit == 0 { usize::MAX } else { limit };
        let mut out = Vec::new();
        for entry in iter.take(take) {
            let (k, v) = entry.map_err(|e| BackendError::new("read", e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn write(&self, batch: WriteBatch, durable: bool) -> Result<(), BackendError> {
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        let db = self.db.read();
        let txn = Self::begin(&db, durability)?;
        {
            // Open each table at most once per transaction.
            let mut opened = Vec::with_capacity(Table::ALL.len());
            for op in batch.ops() {
                let table = match op {
                    WriteOp::Put { table, .. } | WriteOp::Delete { table, .. } => *table,
                };
                let idx = match opened.iter().position(|(t, _)| *t == table) {
                    Some(idx) => idx,
                    None => {
                        let handle = txn
                            .open_table(definition(table))
                            .map_err(|e| BackendError::new("write", e))?;
                        opened.push((table, handle));
                        opened.len() - 1
                    }
                };
                let handle = &mut opened[idx].1;
                match op {
                    WriteOp::Put { key, value, .. } => {
                        handle
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(|e| BackendError::new("write", e))?;
                    }
                    WriteOp::Delete { key, .. } => {
                        handle
                            .remove(key.as_slice())
                            .map_err(|e| BackendError::new("write", e))?;
                    }
                }
            }
        }
        let resize = self.resize.lock();
        let committed = txn.commit().map_err(|e| BackendError::new("write", e));
        // Even after a failed commit: a read taken before it must not outlive it unnoticed.
        self.drop_view();
        committed?;
        self.refresh_size()?;
        drop(resize);
        Ok(())
    }

    fn sync(&self) -> Result<(), BackendError> {
        let db = self.db.read();
        let txn = Self::begin(&db, Durability::Immediate)?;
        let resize = self.resize.lock();
        txn.commit().map_err(|e| BackendError::new("sync", e))?;
        self.refresh_size()?;
        drop(resize);
        Ok(())
    }

    fn size(&self) -> Result<u64, BackendError> {
        Ok(self.size.load(Ordering::Acquire))
    }

    fn size_in_use(&self) -> Result<u64, BackendError> {
        let size = self.size()?;
        let db = self.db.read();
        let txn = db.begin_write().map_err(|e| BackendError::new("size", e))?;
        let stats = txn.stats().map_err(|e| BackendError::new("size", e))?;
        txn.abort().map_err(|e| BackendError::new("size", e))?;
        Ok(size.saturating_sub(stats.fragmented_bytes()))
    }

    fn defragment(&self) -> Result<(), BackendError> {
        self.sync()?;
        let mut db = self.db.write();
        // No read may be live while compacting; reads take a new view once it is done.
        self.drop_view();
        // `compact` returns whether it moved anything; either way the file is as small as it
        // gets, and every commit before it is durable.
        let resize = self.resize.lock();
        let compacted = db
            .compact()
            .map(drop)
            .map_err(|e| BackendError::new("defragment", e));
        // Even after a failed compaction: it may have moved pages and shrunk the file.
        let refreshed = self.refresh_size();
        drop(resize);
        compacted.and(refreshed)
    }

    fn name(&self) -> &'static str {
        "redb"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_len(b: &RedbBackend) -> u64 {
        fs::metadata(b.path()).expect("metadata").len()
    }

    /// The tracked size follows the file through unsynced and synced commits and compaction.
    #[test]
    fn tracked_size_is_the_file_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = RedbBackend::open(dir.path()).expect("open");
        assert_eq!(b.size().expect("size"), file_len(&b));
        let mut batch = WriteBatch::new();
        for i in 0u32..512 {
            batch.put(Table::Kv, i.to_be_bytes(), vec![i as u8; 4096]);
        }
        b.write(batch, false).expect("write");
        let grown = b.size().expect("size");
        assert_eq!(grown, file_len(&b));
        assert!(grown >= 2 * 1024 * 1024, "2 MiB stored but size is {grown}");
        let mut batch = WriteBatch::new();
        for i in 0u32..512 {
            batch.delete(Table::Kv, i.to_be_bytes());
        }
        b.write(batch, true).expect("write");
        assert_eq!(b.size().expect("size"), file_len(&b));
        b.defragment().expect("defragment");
        let compacted = b.size().expect("size");
        assert_eq!(compacted, file_len(&b));
        assert!(compacted < grown, "compaction left {compacted} of {grown}");
    }
}
