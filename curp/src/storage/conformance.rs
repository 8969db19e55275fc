//! A conformance suite for [`LogStorage`] implementations.
//!
//! Each check takes a factory and panics (like a failed test assertion) when the storage it
//! builds breaks the contract. Checks named `reopen_*` take an `open` function that opens
//! *the same* storage each time it is called (the same directory, or a clone of the same
//! in-memory log); the previous instance is always dropped before `open` is called again.

use bytes::Bytes;

use super::{HardState, LogEntry, LogStorage};
use crate::error::StorageError;

/// Builds the entries `range`, all with `term`, whose data encodes the index.
pub fn make_entries(range: std::ops::Range<u64>, term: u64) -> Vec<LogEntry> {
    range
        .map(|index| LogEntry {
            index,
            term,
            data: Bytes::from(format!("entry-{index}-term-{term}")),
        })
        .collect()
}

/// Reads `[low, high)` with no size limit.
fn read_all<S: LogStorage>(log: &S, low: u64, high: u64) -> Vec<LogEntry> {
    log.entries(low, high, u64::MAX)
        .unwrap_or_else(|err| panic!("entries({low}, {high}) failed: {err}"))
}

/// Appends, panicking on failure.
fn append<S: LogStorage>(log: &S, entries: &[LogEntry]) {
    log.append(entries, true)
        .unwrap_or_else(|err| panic!("append failed: {err}"));
}

/// Compacts, panicking on failure.
fn compact<S: LogStorage>(log: &S, to: u64) {
    log.compact(to)
        .unwrap_or_else(|err| panic!("compact({to}) failed: {err}"));
}

/// Term lookup, panicking on failure.
fn term<S: LogStorage>(log: &S, index: u64) -> Option<u64> {
    log.term(index)
        .unwrap_or_else(|err| panic!("term({index}) failed: {err}"))
}

/// Runs every check that needs only fresh storages, each on a new one from `new`.
pub fn run_all<S: LogStorage>(mut new: impl FnMut() -> S) {
    new_log_is_empty(new());
    append_and_read(new());
    entries_size_limit(new());
    overlap_truncation(new());
    append_contract_violations(new());
    term_lookup(new());
    compaction_boundary(new());
    compact_everything(new());
    install_snapshot_beyond_and_below(new());
    hard_state_round_trip(new());
    meta_round_trip(new());
    write_round(new());
}

/// Runs every `reopen_*` check, each with its own storage from `new_opener`.
pub fn run_all_reopen<S: LogStorage, O: FnMut() -> S>(mut new_opener: impl FnMut() -> O) {
    reopen_persistence(new_opener());
    reopen_after_compaction(new_opener());
    reopen_after_compact_everything(new_opener());
    reopen_after_install_snapshot(new_opener());
    reopen_after_write_round(new_opener());
}

/// A new log has no entries, boundary 0 with term 0, and a zero hard state.
pub fn new_log_is_empty<S: LogStorage>(log: S) {
    assert_eq!(log.first_index(), 1);
    assert_eq!(log.last_index(), 0);
    assert_eq!(term(&log, 0), Some(0));
    assert_eq!(term(&log, 1), None);
    assert_eq!(read_all(&log, 1, 1), Vec::new());
    assert_eq!(log.hard_state().expect("hard_state"), HardState::default());
    assert_eq!(log.get_meta(b"missing").expect("get_meta"), None);
    log.sync().expect("sync");
    // Empty appends are no-ops, synced or not.
    log.append(&[], true).expect("empty append");
    log.append(&[], false).expect("empty append");
    assert_eq!(log.last_index(), 0);
}

/// Appended entries read back exactly, in any sub-range.
pub fn append_and_read<S: LogStorage>(log: S) {
    let all = make_entries(1..101, 1);
    append(&log, &all[..50]);
    log.append(&all[50..], false).expect("unsynced append");
    log.sync().expect("sync");
    assert_eq!(log.first_index(), 1);
    assert_eq!(log.last_index(), 100);
    assert_eq!(read_all(&log, 1, 101), all);
    assert_eq!(read_all(&log, 37, 64), all[36..63].to_vec());
    assert_eq!(read_all(&log, 100, 101), all[99..].to_vec());
    assert_eq!(read_all(&log, 5, 5), Vec::new());
    assert_eq!(read_all(&log, 9, 3), Vec::new());
    assert!(matches!(
        log.entries(90, 102, u64::MAX),
        Err(StorageError::Unavailable { .. })
    ));
    assert!(matches!(
        log.entries(0, 5, u64::MAX),
        Err(StorageError::Compacted { .. })
    ));
    // Large and empty payloads survive.
    let big = LogEntry {
        index: 101,
        term: 1,
        data: Bytes::from(vec![0xab; 100_000]),
    };
    let empty = LogEntry {
        index: 102,
        term: 2,
        data: Bytes::new(),
    };
    append(&log, &[big.clone(), empty.clone()]);
    assert_eq!(read_all(&log, 101, 103), vec![big, empty]);
}

/// `max_bytes` limits the result to the longest fitting prefix, but at least one entry.
pub fn entries_size_limit<S: LogStorage>(log: S) {
    let entries: Vec<LogEntry> = (1..=10)
        .map(|index| LogEntry {
            index,
            term: 1,
            data: Bytes::from(vec![index as u8; 10]),
        })
        .collect();
    append(&log, &entries);
    let read = |max| log.entries(1, 11, max).expect("entries");
    assert_eq!(read(0), entries[..1].to_vec());
    assert_eq!(read(9), entries[..1].to_vec());
    assert_eq!(read(10), entries[..1].to_vec());
    assert_eq!(read(19), entries[..1].to_vec());
    assert_eq!(read(20), entries[..2].to_vec());
    assert_eq!(read(55), entries[..5].to_vec());
    assert_eq!(read(100), entries);
    assert_eq!(read(u64::MAX), entries);
    assert_eq!(
        log.entries(4, 8, 25).expect("entries"),
        entries[3..5].to_vec()
    );
}

/// Appending inside the log replaces everything from that index on.
pub fn overlap_truncation<S: LogStorage>(log: S) {
    append(&log, &make_entries(1..11, 1));
    // Overwrite the tail from 6 with a shorter run in term 2.
    append(&log, &make_entries(6..8, 2));
    assert_eq!(log.last_index(), 7);
    let mut expected = make_entries(1..6, 1);
    expected.extend(make_entries(6..8, 2));
    assert_eq!(read_all(&log, 1, 8), expected);
    assert_eq!(term(&log, 8), None);
    assert!(matches!(
        log.entries(1, 9, u64::MAX),
        Err(StorageError::Unavailable { .. })
    ));
    // Overwrite with a longer run.
    append(&log, &make_entries(3..20, 3));
    assert_eq!(log.last_index(), 19);
    let mut expected = make_entries(1..3, 1);
    expected.extend(make_entries(3..20, 3));
    assert_eq!(read_all(&log, 1, 20), expected);
    // Overwrite from the very first entry.
    append(&log, &make_entries(1..3, 4));
    assert_eq!(log.first_index(), 1);
    assert_eq!(log.last_index(), 2);
    assert_eq!(read_all(&log, 1, 3), make_entries(1..3, 4));
    // Appending exactly at the end extends.
    append(&log, &make_entries(3..5, 4));
    assert_eq!(read_all(&log, 1, 5), make_entries(1..5, 4));
}

/// Gaps, compacted indices and non-consecutive batches are rejected and change nothing.
pub fn append_contract_violations<S: LogStorage>(log: S) {
    assert!(matches!(
        log.append(&make_entries(2..3, 1), true),
        Err(StorageError::InvalidArgument(_))
    ));
    assert!(matches!(
        log.append(&make_entries(0..2, 1), true),
        Err(StorageError::Compacted { .. })
    ));
    append(&log, &make_entries(1..11, 1));
    assert!(matches!(
        log.append(&make_entries(12..13, 1), true),
        Err(StorageError::InvalidArgument(_))
    ));
    let mut skipping = make_entries(11..13, 1);
    skipping[1].index = 13;
    assert!(matches!(
        log.append(&skipping, true),
        Err(StorageError::InvalidArgument(_))
    ));
    let mut descending = make_entries(5..7, 1);
    descending.reverse();
    assert!(matches!(
        log.append(&descending, true),
        Err(StorageError::InvalidArgument(_))
    ));
    compact(&log, 5);
    assert!(matches!(
        log.append(&make_entries(4..6, 2), true),
        Err(StorageError::Compacted { .. })
    ));
    assert!(matches!(
        log.compact(12),
        Err(StorageError::Unavailable { .. })
    ));
    assert_eq!(log.first_index(), 5);
    assert_eq!(log.last_index(), 10);
    assert_eq!(read_all(&log, 5, 11), make_entries(5..11, 1));
}

/// `term` answers for retained entries and the boundary, `None` elsewhere.
pub fn term_lookup<S: LogStorage>(log: S) {
    append(&log, &make_entries(1..4, 1));
    append(&log, &make_entries(4..7, 2));
    append(&log, &make_entries(7..8, 5));
    assert_eq!(term(&log, 0), Some(0));
    for (index, expected) in [(1, 1), (3, 1), (4, 2), (6, 2), (7, 5)] {
        assert_eq!(term(&log, index), Some(expected), "term of {index}");
    }
    assert_eq!(term(&log, 8), None);
    assert_eq!(term(&log, u64::MAX), None);
    compact(&log, 5);
    assert_eq!(term(&log, 0), None);
    assert_eq!(term(&log, 3), None);
    assert_eq!(term(&log, 4), Some(2));
    assert_eq!(term(&log, 5), Some(2));
    assert_eq!(term(&log, 7), Some(5));
}

/// Compaction moves the first index and keeps the boundary's term; no-ops are no-ops.
pub fn compaction_boundary<S: LogStorage>(log: S) {
    append(&log, &make_entries(1..6, 1));
    append(&log, &make_entries(6..11, 2));
    // No-ops.
    compact(&log, 0);
    compact(&log, 1);
    assert_eq!(log.first_index(), 1);
    assert_eq!(term(&log, 0), Some(0));

    compact(&log, 6);
    assert_eq!(log.first_index(), 6);
    assert_eq!(log.last_index(), 10);
    assert_eq!(term(&log, 5), Some(1));
    assert_eq!(term(&log, 4), None);
    assert_eq!(read_all(&log, 6, 11), make_entries(6..11, 2));
    assert!(matches!(
        log.entries(5, 11, u64::MAX),
        Err(StorageError::Compacted { .. })
    ));
    // Compacting backwards does nothing.
    compact(&log, 3);
    assert_eq!(log.first_index(), 6);
    assert_eq!(term(&log, 5), Some(1));

    compact(&log, 8);
    assert_eq!(log.first_index(), 8);
    assert_eq!(term(&log, 7), Some(2));
    // Overlapping append at the first retained index replaces everything retained.
    append(&log, &make_entries(8..9, 3));
    assert_eq!(log.first_index(), 8);
    assert_eq!(log.last_index(), 8);
    assert_eq!(term(&log, 7), Some(2));
    assert_eq!(read_all(&log, 8, 9), make_entries(8..9, 3));
}

/// Compacting every entry leaves an empty log whose last index is the boundary.
pub fn compact_everything<S: LogStorage>(log: S) {
    append(&log, &make_entries(1..11, 3));
    compact(&log, 11);
    assert_eq!(log.first_index(), 11);
    assert_eq!(log.last_index(), 10);
    assert_eq!(term(&log, 10), Some(3));
    assert_eq!(term(&log, 9), None);
    assert_eq!(term(&log, 11), None);
    assert_eq!(read_all(&log, 11, 11), Vec::new());
    assert!(matches!(
        log.entries(10, 11, u64::MAX),
        Err(StorageError::Compacted { .. })
    ));
    assert!(matches!(
        log.entries(11, 12, u64::MAX),
        Err(StorageError::Unavailable { .. })
    ));
    // Again: a no-op.
    compact(&log, 11);
    assert!(matches!(
        log.compact(12),
        Err(StorageError::Unavailable { .. })
    ));
    // Appending must continue right after the boundary.
    assert!(matches!(
        log.append(&make_entries(12..13, 4), true),
        Err(StorageError::InvalidArgument(_))
    ));
    assert!(matches!(
        log.append(&make_entries(10..12, 4), true),
        Err(StorageError::Compacted { .. })
    ));
    append(&log, &make_entries(11..16, 4));
    assert_eq!(log.first_index(), 11);
    assert_eq!(log.last_index(), 15);
    assert_eq!(term(&log, 10), Some(3));
    assert_eq!(read_all(&log, 11, 16), make_entries(11..16, 4));
    // And compact everything once more.
    compact(&log, 16);
    assert_eq!(log.first_index(), 16);
    assert_eq!(log.last_index(), 15);
    assert_eq!(term(&log, 15), Some(4));
}

/// The hard state reads back what was last stored.
pub fn hard_state_round_trip<S: LogStorage>(log: S) {
    let first = HardState {
        term: 3,
        vote: 2,
        commit: 17,
    };
    log.set_hard_state(first, true).expect("set_hard_state");
    assert_eq!(log.hard_state().expect("hard_state"), first);
    let second = HardState {
        term: u64::MAX,
        vote: 0,
        commit: u64::MAX - 1,
    };
    log.set_hard_state(second, false).expect("set_hard_state");
    assert_eq!(log.hard_state().expect("hard_state"), second);
    // Entries and the hard state are independent.
    append(&log, &make_entries(1..3, 1));
    assert_eq!(log.hard_state().expect("hard_state"), second);
}

/// `write_round` appends (truncating an overlapped tail) and stores the hard state, each part
/// optional, and checks the append like `append` does.
pub fn write_round<S: LogStorage>(log: S) {
    let hs = |commit| HardState {
        term: 2,
        vote: 1,
        commit,
    };
    log.write_round(&make_entries(1..6, 1), Some(hs(3)), true)
        .expect("write_round");
    assert_eq!(read_all(&log, 1, 6), make_entries(1..6, 1));
    assert_eq!(log.hard_state().expect("hard_state"), hs(3));
    // Entries alone keep the hard state; a hard state alone keeps the entries.
    log.write_round(&make_entries(4..8, 2), None, false)
        .expect("write_round");
    assert_eq!(log.last_index(), 7);
    assert_eq!(term(&log, 3), Some(1));
    assert_eq!(term(&log, 4), Some(2));
    assert_eq!(log.hard_state().expect("hard_state"), hs(3));
    log.write_round(&[], Some(hs(6)), false)
        .expect("write_round");
    assert_eq!(log.last_index(), 7);
    assert_eq!(log.hard_state().expect("hard_state"), hs(6));
    // Nothing to write, synced: fine.
    log.write_round(&[], None, true).expect("write_round");
    // A gap is refused and the hard state of that call is not stored.
    assert!(matches!(
        log.write_round(&make_entries(9..10, 2), Some(hs(9)), true),
        Err(StorageError::InvalidArgument(_))
    ));
    assert_eq!(log.last_index(), 7);
    assert_eq!(log.hard_state().expect("hard_state"), hs(6));
}

/// Metadata records read back what was last stored under each key.
pub fn meta_round_trip<S: LogStorage>(log: S) {
    log.put_meta(b"members", b"a,b,c", true).expect("put_meta");
    log.put_meta(b"witness", b"", false).expect("put_meta");
    log.put_meta(b"", b"empty key", true).expect("put_meta");
    log.put_meta(b"__internal", b"not reserved", true)
        .expect("put_meta");
    assert_eq!(
        log.get_meta(b"members").expect("get_meta"),
        Some(b"a,b,c".to_vec())
    );
    assert_eq!(
        log.get_meta(b"witness").expect("get_meta"),
        Some(Vec::new())
    );
    assert_eq!(
        log.get_meta(b"").expect("get_meta"),
        Some(b"empty key".to_vec())
    );
    assert_eq!(
        log.get_meta(b"__internal").expect("get_meta"),
        Some(b"not reserved".to_vec())
    );
    assert_eq!(log.get_meta(b"member").expect("get_meta"), None);
    log.put_meta(b"members", b"a,b", true).expect("put_meta");
    assert_eq!(
        log.get_meta(b"members").expect("get_meta"),
        Some(b"a,b".to_vec())
    );
    // Metadata does not collide with the hard state.
    assert_eq!(log.hard_state().expect("hard_state"), HardState::default());
}

/// Entries, overwrites, the hard state and metadata survive reopening.
pub fn reopen_persistence<S: LogStorage>(mut open: impl FnMut() -> S) {
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: 12,
    };
    {
        let log = open();
        append(&log, &make_entries(1..21, 1));
        append(&log, &make_entries(15..18, 2));
        log.set_hard_state(hs, true).expect("set_hard_state");
        log.put_meta(b"members", b"one", true).expect("put_meta");
        log.put_meta(b"members", b"two", true).expect("put_meta");
    }
    {
        let log = open();
        assert_eq!(log.first_index(), 1);
        assert_eq!(log.last_index(), 17);
        let mut expected = make_entries(1..15, 1);
        expected.extend(make_entries(15..18, 2));
        assert_eq!(read_all(&log, 1, 18), expected);
        assert_eq!(term(&log, 0), Some(0));
        assert_eq!(log.hard_state().expect("hard_state"), hs);
        assert_eq!(
            log.get_meta(b"members").expect("get_meta"),
            Some(b"two".to_vec())
        );
        // Keep writing after the reopen.
        append(&log, &make_entries(18..20, 3));
    }
    let log = open();
    assert_eq!(log.last_index(), 19);
    assert_eq!(read_all(&log, 18, 20), make_entries(18..20, 3));
}

/// What `write_round` wrote (synced by its last call) survives reopening.
pub fn reopen_after_write_round<S: LogStorage>(mut open: impl FnMut() -> S) {
    let hs = HardState {
        term: 4,
        vote: 3,
        commit: 9,
    };
    {
        let log = open();
        log.write_round(&make_entries(1..11, 4), None, false)
            .expect("write_round");
        log.write_round(&make_entries(11..13, 4), Some(hs), true)
            .expect("write_round");
    }
    let log = open();
    assert_eq!(log.last_index(), 12);
    assert_eq!(read_all(&log, 1, 13), make_entries(1..13, 4));
    assert_eq!(log.hard_state().expect("hard_state"), hs);
}

/// The compaction boundary survives reopening.
pub fn reopen_after_compaction<S: LogStorage>(mut open: impl FnMut() -> S) {
    {
        let log = open();
        append(&log, &make_entries(1..11, 1));
        append(&log, &make_entries(11..21, 2));
        compact(&log, 13);
    }
    {
        let log = open();
        assert_eq!(log.first_index(), 13);
        assert_eq!(log.last_index(), 20);
        assert_eq!(term(&log, 12), Some(2));
        assert_eq!(term(&log, 11), None);
        assert_eq!(read_all(&log, 13, 21), make_entries(13..21, 2));
        assert!(matches!(
            log.entries(12, 21, u64::MAX),
            Err(StorageError::Compacted { .. })
        ));
        compact(&log, 20);
    }
    let log = open();
    assert_eq!(log.first_index(), 20);
    assert_eq!(log.last_index(), 20);
    assert_eq!(term(&log, 19), Some(2));
    assert_eq!(read_all(&log, 20, 21), make_entries(20..21, 2));
}

/// An emptied log keeps its boundary (as last index) across reopening and continues there.
pub fn reopen_after_compact_everything<S: LogStorage>(mut open: impl FnMut() -> S) {
    let hs = HardState {
        term: 4,
        vote: 0,
        commit: 30,
    };
    {
        let log = open();
        append(&log, &make_entries(1..31, 4));
        log.set_hard_state(hs, true).expect("set_hard_state");
        compact(&log, 31);
    }
    {
        let log = open();
        assert_eq!(log.first_index(), 31);
        assert_eq!(log.last_index(), 30);
        assert_eq!(term(&log, 30), Some(4));
        assert_eq!(log.hard_state().expect("hard_state"), hs);
        append(&log, &make_entries(31..36, 5));
    }
    let log = open();
    assert_eq!(log.first_index(), 31);
    assert_eq!(log.last_index(), 35);
    assert_eq!(term(&log, 30), Some(4));
    assert_eq!(read_all(&log, 31, 36), make_entries(31..36, 5));
}

/// Installs a snapshot boundary, panicking on failure.
fn install<S: LogStorage>(log: &S, index: u64, term: u64) {
    log.install_snapshot(index, term)
        .unwrap_or_else(|err| panic!("install_snapshot({index}, {term}) failed: {err}"));
}

/// `install_snapshot` empties the log at any boundary: beyond the last entry (a gap that
/// `compact` refuses) and below it (later entries go too).
pub fn install_snapshot_beyond_and_below<S: LogStorage>(log: S) {
    append(&log, &make_entries(1..11, 2));
    install(&log, 100, 7);
    assert_eq!(log.first_index(), 101);
    assert_eq!(log.last_index(), 100);
    assert_eq!(term(&log, 100), Some(7));
    assert_eq!(term(&log, 5), None);
    assert!(matches!(
        log.append(&make_entries(102..103, 7), true),
        Err(StorageError::InvalidArgument(_))
    ));
    append(&log, &make_entries(101..111, 8));
    assert_eq!(read_all(&log, 101, 111), make_entries(101..111, 8));
    // Below the last entry: everything after the boundary is dropped as well.
    install(&log, 105, 8);
    assert_eq!(log.first_index(), 106);
    assert_eq!(log.last_index(), 105);
    assert_eq!(term(&log, 105), Some(8));
    append(&log, &make_entries(106..108, 9));
    assert_eq!(read_all(&log, 106, 108), make_entries(106..108, 9));
    compact(&log, 107);
    assert_eq!(log.first_index(), 107);
    assert_eq!(term(&log, 106), Some(9));
}

/// An installed snapshot boundary and the entries after it survive reopening.
pub fn reopen_after_install_snapshot<S: LogStorage>(mut open: impl FnMut() -> S) {
    {
        let log = open();
        append(&log, &make_entries(1..21, 3));
        install(&log, 50, 5);
        append(&log, &make_entries(51..56, 6));
    }
    let log = open();
    assert_eq!(log.first_index(), 51);
    assert_eq!(log.last_index(), 55);
    assert_eq!(term(&log, 50), Some(5));
    assert_eq!(read_all(&log, 51, 56), make_entries(51..56, 6));
}
