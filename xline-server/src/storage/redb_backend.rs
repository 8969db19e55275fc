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
//! [`Backend::defragment`] is redb's `Database::compact`, which needs the database to itself:
//! every read and write holds a shared lock on the database handle for its duration, and
//! defragmentation takes it exclusively. [`Backend::size_in_use`] is the file size less the
//! pages redb reports free (`fragmented_bytes`).

use std::fs;
use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use redb::{Database, Durability, ReadableDatabase, TableDefinition, TableError, WriteTransaction};

use super::backend::{Backend, BackendError, Pair, WriteBatch, WriteOp};
use super::schema::Table;

/// The file name of the database inside the data directory.
pub const REDB_FILE_NAME: &str = "xline.redb";

/// The redb definition of `table`.
fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

/// A [`Backend`] storing every table in one redb database file.
#[derive(Debug)]
pub struct RedbBackend {
    /// Shared by every transaction, exclusive for [`Database::compact`].
    db: RwLock<Database>,
    path: PathBuf,
}

impl RedbBackend {
    /// Opens (creating when missing) `dir/xline.redb`, creating `dir` and every [`Table`] as
    /// needed.
    pub fn open(dir: &Path) -> Result<Self, BackendError> {
        fs::create_dir_all(dir).map_err(|e| BackendError::new("open", e))?;
        let path = dir.join(REDB_FILE_NAME);
        let db = Database::create(&path).map_err(|e| BackendError::new("open", e))?;
        let txn = Self::begin(&db, Durability::Immediate)?;
        for table in Table::ALL {
            txn.open_table(definition(table))
                .map_err(|e| BackendError::new("open", e))?;
        }
        txn.commit().map_err(|e| BackendError::new("open", e))?;
        Ok(Self {
            db: RwLock::new(db),
            path,
        })
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

impl Backend for RedbBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let db = self.db.read();
        let txn = db.begin_read().map_err(|e| BackendError::new("read", e))?;
        let t = match txn.open_table(definition(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(BackendError::new("read", e)),
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
        let txn = db.begin_read().map_err(|e| BackendError::new("read", e))?;
        let t = match txn.open_table(definition(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(BackendError::new("read", e)),
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
        txn.commit().map_err(|e| BackendError::new("write", e))
    }

    fn sync(&self) -> Result<(), BackendError> {
        let db = self.db.read();
        let txn = Self::begin(&db, Durability::Immediate)?;
        txn.commit().map_err(|e| BackendError::new("sync", e))
    }

    fn size(&self) -> Result<u64, BackendError> {
        fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| BackendError::new("size", e))
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
        // `compact` returns whether it moved anything; either way the file is as small as it
        // gets, and every commit before it is durable.
        db.compact()
            .map(drop)
            .map_err(|e| BackendError::new("defragment", e))
    }

    fn name(&self) -> &'static str {
        "redb"
    }
}
