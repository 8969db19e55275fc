//! Whole-store images for consensus snapshots: [`KvStore::snapshot`] reads every table into a
//! prost message, [`KvStore::restore`] replaces the backend's contents with one and rebuilds the
//! in-memory state exactly as [`KvStore::open`] does at startup.
//!
//! Limits, for now: the image is built and installed in memory (no streaming), and watchers
//! are not told about a restore (a member installs snapshots only while it lags, i.e. before
//! it serves; a watcher on a lagging member must resync).

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;

use super::{KvStore, ServerError};
use crate::mvcc::revision::Revision;
use crate::storage::backend::WriteBatch;
use crate::storage::schema::{META_APPLIED_INDEX, Table};

/// Every table of a store.
#[derive(Clone, PartialEq, prost::Message)]
struct StoreImage {
    /// One entry per table.
    #[prost(message, repeated, tag = "1")]
    tables: Vec<TableImage>,
}

/// One table's pairs.
#[derive(Clone, PartialEq, prost::Message)]
struct TableImage {
    /// [`Table::name`].
    #[prost(string, tag = "1")]
    name: String,
    /// Its pairs, ascending.
    #[prost(message, repeated, tag = "2")]
    pairs: Vec<PairImage>,
}

/// One key-value pair.
#[derive(Clone, PartialEq, prost::Message)]
struct PairImage {
    /// Key.
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    /// Value.
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// How long a restore waits for a running physical compaction to finish.
const COMPACTOR_WAIT: Duration = Duration::from_secs(60);

impl KvStore {
    /// An image of every table as of the last applied batch (applies are held off while it
    /// is read), for [`KvStore::restore`] on another member.
    pub fn snapshot(&self) -> Result<Vec<u8>, ServerError> {
        let mut image = StoreImage::default();
        for (table, pairs) in self.snapshot_tables()? {
            image.tables.push(TableImage {
                name: table.name().to_owned(),
                pairs: pairs
                    .into_iter()
                    .map(|(key, value)| PairImage { key, value })
                    .collect(),
            });
        }
        Ok(image.encode_to_vec())
    }

    /// Every table's pairs as of the last applied batch (applies are held off while they are
    /// read): the contents of [`KvStore::snapshot`], for `Maintenance.Snapshot`.
    #[allow(clippy::type_complexity)]
    pub fn snapshot_tables(&self) -> Result<Vec<(Table, Vec<(Vec<u8>, Vec<u8>)>)>, ServerError> {
        let _applies_held = self.state.read();
        Table::ALL
            .into_iter()
            .map(|table| Ok((table, self.backend.range(table, &[], &[], 0)?)))
            .collect()
    }

    /// Replaces the whole store by `image` (from [`KvStore::snapshot`]) as one durable batch,
    /// with applied index `index`, then rebuilds the key index, revisions and leases from the
    /// backend as [`KvStore::open`] does. Reads and applies wait meanwhile.
    pub fn restore(&self, image: &[u8], index: u64) -> Result<(), ServerError> {
        let image = StoreImage::decode(image)
            .map_err(|e| ServerError::Corrupt(format!("store image: {e}")))?;
        let mut st = self.state.write();
        // A physical compaction still running would delete from the new contents.
        self.wait_compactor(st.compact_rev)?;
        let mut wb = WriteBatch::new();
        for table in Table::ALL {
            for (key, _) in self.backend.range(table, &[], &[], 0)? {
                wb.delete(table, key);
            }
        }
        for t in image.tables {
            let table = Table::ALL
                .into_iter()
                .find(|table| table.name() == t.name)
                .ok_or_else(|| ServerError::Corrupt(format!("store image table {:?}", t.name)))?;
            for pair in t.pairs {
                wb.put(table, pair.key, pair.value);
            }
        }
        wb.put(Table::Meta, META_APPLIED_INDEX, index.to_be_bytes());
        self.backend.write(wb, true)?;

        // Rebuild exactly as at startup, then take over what was rebuilt.
        let fresh = KvStore::open(Arc::clone(&self.backend))?;
        self.auth.reload(&*self.backend, index)?;
        std::mem::swap(&mut *st, &mut *fresh.state.write());
        let was_primary = self.lessor.lock().is_primary();
        std::mem::swap(&mut *self.lessor.lock(), &mut *fresh.lessor.lock());
        // Dropping it joins its compactor, which finishes a compaction the image left unfinished.
        drop(fresh);
        self.report_compacted(st.compact_rev)?;
        drop(st);
        if was_primary {
            self.lessor.promote(crate::lease::ELECTION_TIMEOUT);
        }
        self.lessor.granted();
        self.lessor.revoked();
        Ok(())
    }

    /// Waits until the compactor has finished every compaction up to `rev` (or has stopped).
    fn wait_compactor(&self, rev: i64) -> Result<(), ServerError> {
        let give_up = Instant::now() + COMPACTOR_WAIT;
        while *self.finished_compaction.borrow() < rev {
            if self.finished_compaction.has_changed().is_err() {
                return Ok(());
            }
            if Instant::now() > give_up {
                return Err(ServerError::Corrupt(format!(
                    "physical compaction at {rev} did not finish"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Makes this store's compactor report the restored compaction point as finished (it was
    /// done in the backend already): a job that keeps every revision still stored.
    fn report_compacted(&self, rev: i64) -> Result<(), ServerError> {
        if rev < 0 || *self.finished_compaction.borrow() >= rev {
            return Ok(());
        }
        let end = Revision::main_key(rev.saturating_add(1));
        let keep = self
            .backend
            .range(Table::Kv, &[], &end, 0)?
            .iter()
            .filter_map(|(key, _)| Revision::from_key(key).map(|(r, _)| r))
            .collect();
        if let Some(tx) = self.compactor.lock().as_ref() {
            // A stopped compactor logged why; nothing is waiting on it then.
            let _ = tx.send((rev, keep));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use xline_proto::etcdserverpb::{
        CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    };

    use super::*;
    use crate::command::{Command, Request};
    use crate::storage::MemoryBackend;

    fn put(key: &str, value: &str, lease: i64) -> Command {
        Command::new(Request::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            ..Default::default()
        }))
    }

    fn get(store: &KvStore, key: &str, rev: i64) -> Option<Vec<u8>> {
        let req = RangeRequest {
            key: key.into(),
            revision: rev,
            ..Default::default()
        };
        let resp = store.range(&req).unwrap();
        resp.kvs.into_iter().next().map(|kv| kv.value)
    }

    /// A store with history, a compaction, a deletion and a lease.
    fn source() -> Arc<KvStore> {
        let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
        let grant = Command::new(Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 7 }));
        let batch = vec![
            (1, put("a", "1", 0)),
            (2, put("a", "2", 0)),
            (3, put("b", "x", 0)),
            (4, grant),
            (5, put("leased", "l", 7)),
            (
                6,
                Command::new(Request::DeleteRange(DeleteRangeRequest {
                    key: "b".into(),
                    ..Default::default()
                })),
            ),
            (
                7,
                Command::new(Request::Compaction(CompactionRequest {
                    revision: 3,
                    physical: false,
                })),
            ),
            (8, put("a", "3", 0)),
        ];
        for out in store.apply(&batch).unwrap() {
            out.unwrap();
        }
        store
    }

    #[tokio::test]
    async fn restore_rebuilds_everything() {
        let src = source();
        src.wait_compacted(3).await;
        let image = src.snapshot().unwrap();

        // The target has other data, which must all go.
        let backend = Arc::new(MemoryBackend::new());
        let dst = KvStore::open(backend.clone()).unwrap();
        dst.apply(&[(1, put("stale", "s", 0)), (2, put("a", "old", 0))])
            .unwrap();
        dst.restore(&image, 42).unwrap();

        assert_eq!(dst.applied_index(), 42);
        assert_eq!(dst.current_revision(), src.current_revision());
        assert_eq!(dst.compact_revision(), 3);
        assert_eq!(get(&dst, "stale", 0), None);
        for rev in [0, 3, 4, 5, 6] {
            for key in ["a", "b", "leased"] {
                assert_eq!(get(&dst, key, rev), get(&src, key, rev), "{key}@{rev}");
            }
        }
        assert!(dst.lessor().contains(7));
        // The compaction point is reported as done (a physical compaction waits on it).
        tokio::time::timeout(Duration::from_secs(5), dst.wait_compacted(3))
            .await
            .expect("compaction reported");

        // Applying goes on from the restored revision, on both.
        let next = |store: &KvStore| {
            store
                .apply(&[(43, put("c", "new", 0))])
                .unwrap()
                .remove(0)
                .unwrap()
        };
        assert_eq!(next(&dst), next(&src));

        // What was written is durable: reopening the backend gives the same store.
        drop(dst);
        let reopened = KvStore::open(backend).unwrap();
        assert_eq!(reopened.applied_index(), 43);
        assert_eq!(reopened.current_revision(), src.current_revision());
        assert_eq!(get(&reopened, "leased", 0), Some(b"l".to_vec()));
        assert!(reopened.lessor().contains(7));
    }

    #[test]
    fn restore_rejects_garbage() {
        let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
        store.apply(&[(1, put("k", "v", 0))]).unwrap();
        assert!(store.restore(b"\xff\xff\xff", 5).is_err());
        // Unchanged.
        assert_eq!(store.applied_index(), 1);
        assert_eq!(get(&store, "k", 0), Some(b"v".to_vec()));
    }
}
