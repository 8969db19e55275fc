//! Durable storage for the replicated log, the hard state and small metadata records.
//!
#![cfg_attr(
    feature = "storage",
    doc = "[`LogStorage`] is the contract; [`MemoryLog`] (tests, simulation) and [`RaftEngineLog`]"
)]
#![cfg_attr(
    not(feature = "storage"),
    doc = "[`LogStorage`] is the contract; [`MemoryLog`] (tests, simulation) and `RaftEngineLog`"
)]
//! (production, on raft-engine; feature `storage`) implement it, and the `conformance` suite
//! (feature `test-util`) checks any implementation against it.

use bytes::Bytes;

use crate::error::StorageError;

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
#[cfg(feature = "storage")]
mod engine;
mod memory;

#[cfg(feature = "storage")]
pub use engine::{RaftEngineLog, RaftEngineOptions};
pub use memory::MemoryLog;

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the log, starting at 1.
    pub index: u64,
    /// Term of the leader that created the entry.
    pub term: u64,
    /// The encoded payload.
    pub data: Bytes,
}

/// The consensus state that must survive restarts.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// The member voted for in `term`; 0 = none.
    pub vote: u64,
    /// Highest log index known to be committed.
    pub commit: u64,
}

/// The durable log of one consensus group.
///
/// The log holds the contiguous entries `first_index()..=last_index()`. Entries before
/// `first_index()` have been compacted away; the log still remembers the index just before
/// the first retained entry (the *compaction boundary*, 0 for a new log) and its term, so
/// that [`LogStorage::term`] answers for it.
///
/// All methods take `&self`; implementations synchronise internally, and each mutating call is
/// atomic: after a crash either all of its effect is visible or none. A write that was not
/// synced may be lost in a crash, but then so is every later write (prefix semantics).
///
/// # Errors
///
/// Every fallible method reports an I/O or engine failure as [`StorageError::Engine`] and
/// undecodable stored data as [`StorageError::Corrupted`]. Calls that break the contract
/// are reported as errors (never by panicking), as documented per method.
///
/// # Panics
///
/// Implementations must not panic on bad arguments.
#[cfg_attr(
    feature = "storage",
    doc = "[`RaftEngineLog`] panics if `fsync` itself fails (raft-engine treats a failed sync"
)]
#[cfg_attr(
    not(feature = "storage"),
    doc = "`RaftEngineLog` (feature `storage`) panics if `fsync` itself fails (raft-engine treats a failed sync"
)]
/// as unrecoverable).
pub trait LogStorage: Send + Sync + 'static {
    /// Appends contiguous ascending entries; `entries.first().index` must be in
    /// `first_index()..=last_index()+1`. Existing entries at or after it are replaced (tail
    /// truncated). With `sync`, durable (fsync) on return, together with every earlier write.
    ///
    /// An empty `entries` changes nothing (but still syncs when `sync` is set).
    ///
    /// # Errors
    ///
    /// - [`StorageError::Compacted`] if the first index is below `first_index()`;
    /// - [`StorageError::InvalidArgument`] if it is above `last_index() + 1` (a gap) or the
    ///   indices are not consecutive.
    ///
    /// The log is unchanged when an error is returned for bad arguments.
    fn append(&self, entries: &[LogEntry], sync: bool) -> Result<(), StorageError>;

    /// Entries in `[low, high)`, stopping once `max_bytes` is exceeded but returning at least
    /// one.
    ///
    /// The size of an entry is the length of its `data`. The result is the longest prefix of
    /// the range whose total size is at most `max_bytes`, or the first entry alone if that one
    /// is already larger. `low >= high` yields an empty vector.
    ///
    /// # Errors
    ///
    /// - [`StorageError::Compacted`] if `low < first_index()`;
    /// - [`StorageError::Unavailable`] if `high > last_index() + 1`.
    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<LogEntry>, StorageError>;

    /// The term of the entry at `index`; also answers for the compaction boundary
    /// (`first_index() - 1`, which is 0 with term 0 for a new log). `None` for indices that are
    /// compacted (below the boundary) or beyond `last_index()`.
    ///
    /// # Errors
    ///
    /// Only engine failures and corrupted data.
    fn term(&self, index: u64) -> Result<Option<u64>, StorageError>;

    /// The first retained entry; `last_index() + 1` when the log holds no entries.
    fn first_index(&self) -> u64;

    /// The last entry; 0 for a new log. After compacting everything, the compaction boundary
    /// (which is persisted).
    fn last_index(&self) -> u64;

    /// Discards entries with index `< to` (durably records the boundary index `to - 1` and its
    /// term). `to <= first_index()` is a no-op; `to == last_index() + 1` discards every entry,
    /// after which `first_index() == to` and `last_index() == to - 1`, and the next append must
    /// start at `to`.
    ///
    /// # Errors
    ///
    /// [`StorageError::Unavailable`] if `to > last_index() + 1`.
    fn compact(&self, to: u64) -> Result<(), StorageError>;

    /// Discards every entry and moves the compaction boundary to `(index, term)`, durably
    /// (synced on return): the log now holds no entries, `first_index() == index + 1`,
    /// `last_index() == index`, and the next append must start at `index + 1`. Unlike
    /// [`LogStorage::compact`], `index` may lie beyond `last_index()` (or below it: later
    /// entries are dropped too). A member installing a snapshot from its leader uses this.
    ///
    /// # Errors
    ///
    /// Only engine failures.
    fn install_snapshot(&self, index: u64, term: u64) -> Result<(), StorageError>;

    /// The stored hard state; the default (all zero) if none was ever stored.
    ///
    /// # Errors
    ///
    /// Only engine failures and corrupted data.
    fn hard_state(&self) -> Result<HardState, StorageError>;

    /// Replaces the hard state. With `sync`, durable on return.
    ///
    /// # Errors
    ///
    /// Only engine failures.
    fn set_hard_state(&self, hs: HardState, sync: bool) -> Result<(), StorageError>;

    /// Small named metadata records (membership, witness journal later), atomic and durable
    /// like entries. Replaces any previous value of `key`; with `sync`, durable on return.
    ///
    /// # Errors
    ///
    /// Only engine failures.
    fn put_meta(&self, key: &[u8], value: &[u8], sync: bool) -> Result<(), StorageError>;

    /// The value last stored under `key` with [`LogStorage::put_meta`], if any.
    ///
    /// # Errors
    ///
    /// Only engine failures.
    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Makes every earlier write durable.
    ///
    /// # Errors
    ///
    /// Only engine failures.
    fn sync(&self) -> Result<(), StorageError>;

    /// One round of the node driver: appends `entries` (as [`LogStorage::append`]; none
    /// appends nothing), then replaces the hard state when one is given. Implementations that
    /// can write both as one atomic batch do (the default writes them one after the other).
    /// With `sync`, durable on return together with every earlier write (even when there is
    /// nothing to write).
    ///
    /// # Errors
    ///
    /// Those of [`LogStorage::append`] (the hard state is not written then) and engine
    /// failures.
    fn write_round(
        &self,
        entries: &[LogEntry],
        hard_state: Option<HardState>,
        sync: bool,
    ) -> Result<(), StorageError> {
        match hard_state {
            None => self.append(entries, sync),
            Some(hs) => {
                if !entries.is_empty() {
                    self.append(entries, false)?;
                }
                self.set_hard_state(hs, sync)
            }
        }
    }
}

/// Checks that `entries` may be appended to a log spanning `first..=last`.
fn check_append(entries: &[LogEntry], first: u64, last: u64) -> Result<(), StorageError> {
    let Some(head) = entries.first() else {
        return Ok(());
    };
    if head.index < first {
        return Err(StorageError::Compacted {
            index: head.index,
            first_index: first,
        });
    }
    if head.index > last.saturating_add(1) {
        return Err(StorageError::InvalidArgument(format!(
            "appending at index {} would leave a gap after last index {last}",
            head.index
        )));
    }
    if let Some(pair) = entries
        .windows(2)
        .find(|pair| pair[0].index.checked_add(1) != Some(pair[1].index))
    {
        return Err(StorageError::InvalidArgument(format!(
            "appended entries are not consecutive: {} followed by {}",
            pair[0].index, pair[1].index
        )));
    }
    Ok(())
}

/// Checks that `[low, high)` (non-empty) lies within a log spanning `first..=last`.
fn check_range(low: u64, high: u64, first: u64, last: u64) -> Result<(), StorageError> {
    if low < first {
        return Err(StorageError::Compacted {
            index: low,
            first_index: first,
        });
    }
    if high > last.saturating_add(1) {
        return Err(StorageError::Unavailable {
            index: high - 1,
            last_index: last,
        });
    }
    Ok(())
}

/// Checks that the log spanning `first..=last` may be compacted to `to`; `Ok(false)` for a
/// no-op.
fn check_compact(to: u64, first: u64, last: u64) -> Result<bool, StorageError> {
    if to <= first {
        return Ok(false);
    }
    if to > last.saturating_add(1) {
        return Err(StorageError::Unavailable {
            index: to - 1,
            last_index: last,
        });
    }
    Ok(true)
}

/// Encodes a hard state as 24 big-endian bytes.
#[cfg(feature = "storage")]
fn encode_hard_state(hs: HardState) -> Vec<u8> {
    let mut buf = Vec::with_capacity(24);
    buf.extend_from_slice(&hs.term.to_be_bytes());
    buf.extend_from_slice(&hs.vote.to_be_bytes());
    buf.extend_from_slice(&hs.commit.to_be_bytes());
    buf
}

/// Decodes [`encode_hard_state`]'s output.
#[cfg(feature = "storage")]
fn decode_hard_state(bytes: &[u8]) -> Result<HardState, StorageError> {
    let [term, vote, commit] = decode_u64s::<3>(bytes, "hard state")?;
    Ok(HardState { term, vote, commit })
}

/// Decodes exactly `N` big-endian u64s.
#[cfg(feature = "storage")]
fn decode_u64s<const N: usize>(bytes: &[u8], what: &str) -> Result<[u64; N], StorageError> {
    if bytes.len() != N * 8 {
        return Err(StorageError::Corrupted(format!(
            "{what} record has {} bytes, expected {}",
            bytes.len(),
            N * 8
        )));
    }
    let mut out = [0; N];
    for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        *value = u64::from_be_bytes(word);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "storage")]
    use std::path::Path;

    use super::conformance;
    use super::*;

    #[test]
    fn memory_log_conforms() {
        conformance::run_all(MemoryLog::new);
    }

    #[test]
    fn memory_log_clones_share_state() {
        conformance::run_all_reopen(|| {
            let log = MemoryLog::new();
            move || log.clone()
        });
    }

    #[cfg(feature = "storage")]
    fn open(dir: &Path) -> RaftEngineLog {
        RaftEngineLog::open(dir).expect("open raft-engine log")
    }

    #[cfg(feature = "storage")]
    #[test]
    fn raft_engine_log_conforms() {
        let dirs = tempfile::tempdir().expect("tempdir");
        let mut n = 0;
        conformance::run_all(|| {
            n += 1;
            open(&dirs.path().join(n.to_string()))
        });
    }

    #[cfg(feature = "storage")]
    #[test]
    fn raft_engine_log_persists() {
        let dirs = tempfile::tempdir().expect("tempdir");
        let mut n = 0;
        conformance::run_all_reopen(|| {
            n += 1;
            let dir = dirs.path().join(n.to_string());
            move || open(&dir)
        });
    }

    #[cfg(feature = "storage")]
    #[test]
    fn raft_engine_log_is_locked_while_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path());
        assert!(matches!(
            RaftEngineLog::open(dir.path()),
            Err(StorageError::Engine(_))
        ));
        drop(log);
        open(dir.path());
    }

    /// Names of the append-queue files that hold data.
    #[cfg(feature = "storage")]
    fn append_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|entry| {
                entry
                    .expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".raftlog"))
            .collect();
        names.sort();
        names
    }

    /// An incompressible payload for `index` (raft-engine compresses batches with lz4).
    #[cfg(feature = "storage")]
    fn noise(index: u64) -> Bytes {
        let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_be_bytes()[0]
            })
            .collect::<Vec<u8>>()
            .into()
    }

    #[cfg(feature = "storage")]
    #[test]
    fn raft_engine_log_reclaims_compacted_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = RaftEngineOptions {
            target_file_size: 64 << 10,
            purge_threshold: 256 << 10,
        };
        let hs = HardState {
            term: 1,
            vote: 0,
            commit: 0,
        };
        let last = {
            let log = RaftEngineLog::open_with(dir.path(), options).expect("open");
            log.set_hard_state(hs, true).expect("set_hard_state");
            log.put_meta(b"members", b"solo", true).expect("put_meta");
            // 4 MiB in 64 KiB files; compacting to the tail as we go keeps the live part
            // small, so old files must be reclaimed.
            let mut index = 0;
            for _ in 0..128 {
                let batch: Vec<LogEntry> = (0..8)
                    .map(|_| {
                        index += 1;
                        LogEntry {
                            index,
                            term: 1,
                            data: noise(index),
                        }
                    })
                    .collect();
                log.append(&batch, true).expect("append");
                log.compact(index.saturating_sub(4)).expect("compact");
            }
            let files = append_files(dir.path());
            assert!(
                files.len() < 16,
                "compacted files were not reclaimed: {files:?}"
            );
            index
        };
        let log = RaftEngineLog::open_with(dir.path(), options).expect("reopen");
        assert_eq!(log.first_index(), last - 4);
        assert_eq!(log.last_index(), last);
        assert_eq!(log.term(last - 5).expect("term"), Some(1));
        let entries = log.entries(last - 4, last + 1, u64::MAX).expect("entries");
        let expected: Vec<LogEntry> = (last - 4..=last)
            .map(|index| LogEntry {
                index,
                term: 1,
                data: noise(index),
            })
            .collect();
        assert_eq!(entries, expected);
        assert_eq!(log.hard_state().expect("hard_state"), hs);
        assert_eq!(
            log.get_meta(b"members").expect("get_meta"),
            Some(b"solo".to_vec())
        );
    }

    #[cfg(feature = "storage")]
    #[test]
    fn raft_engine_rejects_bad_options() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = RaftEngineOptions {
            target_file_size: 2 << 20,
            purge_threshold: 1 << 20,
        };
        assert!(matches!(
            RaftEngineLog::open_with(dir.path(), options),
            Err(StorageError::InvalidArgument(_))
        ));
    }
}
