//! The conformance suite every [`Backend`] must pass.
//!
//! Each `check_*` function takes a factory that opens a backend whose files live in the given
//! directory; opening the same directory again must see what was made durable before. The
//! `common_tests!` and `reopen_tests!` macros run them per engine; the reopen checks only for the
//! engines that persist (not memory).

use std::path::Path;
use std::sync::Arc;

use super::backend::{Backend, WriteBatch};
use super::schema::Table;
use super::{BackendKind, open_backend};

/// Opens a backend whose files live in the given directory.
type Factory<'a> = &'a dyn Fn(&Path) -> Arc<dyn Backend>;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn put(b: &dyn Backend, table: Table, key: &[u8], value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(table, key, value);
    b.write(batch, false).expect("write");
}

fn delete(b: &dyn Backend, table: Table, key: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.delete(table, key);
    b.write(batch, false).expect("write");
}

fn get(b: &dyn Backend, table: Table, key: &[u8]) -> Option<Vec<u8>> {
    b.get(table, key).expect("get")
}

fn range(b: &dyn Backend, table: Table, start: &[u8], end: &[u8], limit: usize) -> Vec<Vec<u8>> {
    b.range(table, start, end, limit)
        .expect("range")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

fn keys(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|k| k.to_vec()).collect()
}

pub(super) fn check_get_on_empty(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    for table in Table::ALL {
        assert_eq!(get(&*b, table, b"missing"), None);
        assert_eq!(get(&*b, table, b""), None);
        assert!(b.range(table, b"", b"", 0).expect("range").is_empty());
    }
}

pub(super) fn check_put_get_overwrite_delete(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    put(&*b, Table::Kv, b"k", b"v1");
    assert_eq!(get(&*b, Table::Kv, b"k"), Some(b"v1".to_vec()));
    put(&*b, Table::Kv, b"k", b"v2-longer");
    assert_eq!(get(&*b, Table::Kv, b"k"), Some(b"v2-longer".to_vec()));
    put(&*b, Table::Kv, b"k", b"");
    assert_eq!(
        get(&*b, Table::Kv, b"k"),
        Some(Vec::new()),
        "empty value is a value"
    );
    delete(&*b, Table::Kv, b"k");
    assert_eq!(get(&*b, Table::Kv, b"k"), None);
    put(&*b, Table::Kv, b"k", b"v3");
    assert_eq!(get(&*b, Table::Kv, b"k"), Some(b"v3".to_vec()));
}

pub(super) fn check_delete_missing(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    delete(&*b, Table::Meta, b"never-written");
    put(&*b, Table::Meta, b"a", b"1");
    delete(&*b, Table::Meta, b"b");
    delete(&*b, Table::Lease, b"a");
    assert_eq!(get(&*b, Table::Meta, b"a"), Some(b"1".to_vec()));
    assert_eq!(get(&*b, Table::Meta, b"b"), None);
}

pub(super) fn check_range(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    // Inserted out of order, across several batches.
    let all: [&[u8]; 9] = [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x00\xff",
        b"a",
        b"ab",
        b"b",
        b"\xff",
        b"\xff\xff",
    ];
    for k in all.iter().rev() {
        put(&*b, Table::Kv, k, [k.len() as u8].as_slice());
    }
    let mut batch = WriteBatch::new();
    for k in [&b"\x00\x01"[..], b"aa"] {
        batch.put(Table::Kv, k, b"x");
    }
    b.write(batch, false).expect("write");
    let sorted = keys(&[
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x00\x01",
        b"\x00\xff",
        b"a",
        b"aa",
        b"ab",
        b"b",
        b"\xff",
        b"\xff\xff",
    ]);

    // Everything, ascending; values come with their keys.
    assert_eq!(range(&*b, Table::Kv, b"", b"", 0), sorted);
    let pairs = b.range(Table::Kv, b"", b"", 0).expect("range");
    assert_eq!(pairs[0], (Vec::new(), vec![0]));
    assert_eq!(pairs[10], (b"\xff\xff".to_vec(), vec![2]));

    // Start inclusive, end exclusive.
    assert_eq!(
        range(&*b, Table::Kv, b"a", b"b", 0),
        keys(&[b"a", b"aa", b"ab"])
    );
    assert_eq!(range(&*b, Table::Kv, b"aa", b"ab", 0), keys(&[b"aa"]));
    assert_eq!(
        range(&*b, Table::Kv, b"a\x00", b"ab\x00", 0),
        keys(&[b"aa", b"ab"])
    );
    assert_eq!(
        range(&*b, Table::Kv, b"\x00", b"\x01", 0),
        keys(&[b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\xff"])
    );
    // Empty end means unbounded, including 0xff keys.
    assert_eq!(
        range(&*b, Table::Kv, b"b", b"", 0),
        keys(&[b"b", b"\xff", b"\xff\xff"])
    );
    assert_eq!(
        range(&*b, Table::Kv, b"\xff", b"", 0),
        keys(&[b"\xff", b"\xff\xff"])
    );
    assert_eq!(
        range(&*b, Table::Kv, b"\xff\xff", b"", 0),
        keys(&[b"\xff\xff"])
    );
    assert_eq!(
        range(&*b, Table::Kv, b"\xff\xff\x00", b"", 0),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        range(&*b, Table::Kv, b"\xff", b"\xff\xff", 0),
        keys(&[b"\xff"])
    );
    // Limit.
    assert_eq!(range(&*b, Table::Kv, b"", b"", 3), sorted[..3].to_vec());
    assert_eq!(range(&*b, Table::Kv, b"a", b"", 2), keys(&[b"a", b"aa"]));
    assert_eq!(
        range(&*b, Table::Kv, b"a", b"b", 100),
        keys(&[b"a", b"aa", b"ab"])
    );
    assert_eq!(range(&*b, Table::Kv, b"", b"", 1), keys(&[b""]));
    // Empty and inverted ranges.
    assert!(range(&*b, Table::Kv, b"c", b"d", 0).is_empty());
    assert!(range(&*b, Table::Kv, b"b", b"b", 0).is_empty());
    assert!(range(&*b, Table::Kv, b"b", b"a", 0).is_empty());
    // Deleted keys disappear from ranges.
    delete(&*b, Table::Kv, b"aa");
    assert_eq!(range(&*b, Table::Kv, b"a", b"b", 0), keys(&[b"a", b"ab"]));
}

pub(super) fn check_table_isolation(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    let probe: [&[u8]; 6] = [b"", b"\x00", b"k", b"\x07", b"\xff", b"\xff\xff\xff"];
    // Leave Meta empty, between two filled tables.
    let filled: Vec<Table> = Table::ALL
        .into_iter()
        .filter(|t| *t != Table::Meta)
        .collect();
    let mut batch = WriteBatch::new();
    for table in &filled {
        for k in probe {
            batch.put(*table, k, table.name());
        }
    }
    b.write(batch, false).expect("write");

    for table in Table::ALL {
        let expected = if table == Table::Meta {
            None
        } else {
            Some(table.name().as_bytes().to_vec())
        };
        for k in probe {
            assert_eq!(get(&*b, table, k), expected, "{table:?} {k:?}");
        }
        let pairs = b.range(table, b"", b"", 0).expect("range");
        if table == Table::Meta {
            assert!(
                pairs.is_empty(),
                "range over empty {table:?} leaked {pairs:?}"
            );
            continue;
        }
        let mut want = keys(&probe);
        want.sort();
        assert_eq!(
            pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            want,
            "{table:?}"
        );
        assert!(
            pairs.iter().all(|(_, v)| v == table.name().as_bytes()),
            "{table:?} leaked"
        );
        // Ranges starting at the top of the keyspace stay inside the table.
        let top = b.range(table, b"\xff", b"", 0).expect("range");
        assert_eq!(top.len(), 2, "{table:?}: {top:?}");
        assert!(top.iter().all(|(_, v)| v == table.name().as_bytes()));
    }

    // Deleting in one table leaves the others alone.
    delete(&*b, Table::Alarm, b"k");
    assert_eq!(get(&*b, Table::Alarm, b"k"), None);
    assert_eq!(get(&*b, Table::Members, b"k"), Some(b"members".to_vec()));
    assert_eq!(get(&*b, Table::Kv, b"k"), Some(b"kv".to_vec()));
    assert_eq!(
        b.range(Table::Alarm, b"", b"", 0).expect("range").len(),
        probe.len() - 1
    );
}

pub(super) fn check_batch(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    put(&*b, Table::Kv, b"gone", b"x");
    put(&*b, Table::Lease, b"revived", b"old");

    let mut batch = WriteBatch::new();
    batch.put(Table::Kv, b"a", b"1");
    batch.put(Table::Meta, b"rev", b"7");
    batch.put(Table::Auth, b"user", b"root");
    batch.delete(Table::Kv, b"gone");
    // Later ops on the same key win.
    batch.put(Table::Kv, b"twice", b"first");
    batch.put(Table::Kv, b"twice", b"second");
    batch.put(Table::Kv, b"put-then-delete", b"x");
    batch.delete(Table::Kv, b"put-then-delete");
    batch.delete(Table::Lease, b"revived");
    batch.put(Table::Lease, b"revived", b"new");
    assert!(!batch.is_empty());
    b.write(batch, false).expect("write");

    assert_eq!(get(&*b, Table::Kv, b"a"), Some(b"1".to_vec()));
    assert_eq!(get(&*b, Table::Meta, b"rev"), Some(b"7".to_vec()));
    assert_eq!(get(&*b, Table::Auth, b"user"), Some(b"root".to_vec()));
    assert_eq!(get(&*b, Table::Kv, b"gone"), None);
    assert_eq!(get(&*b, Table::Kv, b"twice"), Some(b"second".to_vec()));
    assert_eq!(get(&*b, Table::Kv, b"put-then-delete"), None);
    assert_eq!(get(&*b, Table::Lease, b"revived"), Some(b"new".to_vec()));
    assert_eq!(range(&*b, Table::Kv, b"", b"", 0), keys(&[b"a", b"twice"]));

    // An empty batch is fine, durable or not.
    b.write(WriteBatch::new(), false).expect("empty write");
    b.write(WriteBatch::new(), true)
        .expect("empty durable write");
    assert_eq!(get(&*b, Table::Kv, b"a"), Some(b"1".to_vec()));
}

pub(super) fn check_reopen_after_durable_write(open: Factory<'_>) {
    let dir = tempdir();
    {
        let b = open(dir.path());
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, b"k", b"v");
        batch.put(Table::Alarm, b"\xff", b"last");
        batch.put(Table::Meta, b"gone", b"x");
        b.write(batch, false).expect("write");
        let mut batch = WriteBatch::new();
        batch.put(Table::Meta, b"applied", b"42");
        batch.delete(Table::Meta, b"gone");
        b.write(batch, true).expect("durable write");
    }
    let b = open(dir.path());
    assert_eq!(get(&*b, Table::Kv, b"k"), Some(b"v".to_vec()));
    assert_eq!(get(&*b, Table::Alarm, b"\xff"), Some(b"last".to_vec()));
    assert_eq!(get(&*b, Table::Meta, b"applied"), Some(b"42".to_vec()));
    assert_eq!(get(&*b, Table::Meta, b"gone"), None);
    assert_eq!(range(&*b, Table::Meta, b"", b"", 0), keys(&[b"applied"]));
    // Still writable after reopening, and a second reopen sees both generations.
    put(&*b, Table::Kv, b"k2", b"v2");
    b.sync().expect("sync");
    drop(b);
    let b = open(dir.path());
    assert_eq!(range(&*b, Table::Kv, b"", b"", 0), keys(&[b"k", b"k2"]));
}

pub(super) fn check_reopen_after_sync(open: Factory<'_>) {
    let dir = tempdir();
    {
        let b = open(dir.path());
        for i in 0u32..100 {
            let mut batch = WriteBatch::new();
            batch.put(Table::Kv, i.to_be_bytes(), i.to_le_bytes());
            batch.put(Table::Meta, b"applied", i.to_be_bytes());
            b.write(batch, false).expect("write");
        }
        delete(&*b, Table::Kv, &7u32.to_be_bytes());
        b.sync().expect("sync");
    }
    let b = open(dir.path());
    assert_eq!(
        get(&*b, Table::Meta, b"applied"),
        Some(99u32.to_be_bytes().to_vec())
    );
    let pairs = b.range(Table::Kv, b"", b"", 0).expect("range");
    assert_eq!(pairs.len(), 99);
    assert!(pairs.iter().all(|(k, _)| k != &7u32.to_be_bytes()));
    assert_eq!(
        get(&*b, Table::Kv, &42u32.to_be_bytes()),
        Some(42u32.to_le_bytes().to_vec())
    );
}

pub(super) fn check_size_grows(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    let before = b.size().expect("size");
    let mut batch = WriteBatch::new();
    for i in 0u32..256 {
        batch.put(Table::Kv, i.to_be_bytes(), vec![i as u8; 8 * 1024]);
    }
    b.write(batch, true).expect("write");
    b.sync().expect("sync");
    let after = b.size().expect("size");
    assert!(after > before, "size did not grow: {before} -> {after}");
    assert!(after >= 2 * 1024 * 1024, "2 MiB stored but size is {after}");
}

pub(super) fn check_large_value(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    let value: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    put(&*b, Table::Kv, b"big", &value);
    put(&*b, Table::Kv, b"small", b"s");
    assert_eq!(
        get(&*b, Table::Kv, b"big").as_deref(),
        Some(value.as_slice())
    );
    let pairs = b.range(Table::Kv, b"", b"", 0).expect("range");
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0].1, value);
    assert_eq!(pairs[1].1, b"s");
}

pub(super) fn check_many_keys_in_one_batch(open: Factory<'_>) {
    const N: u32 = 10_000;
    let dir = tempdir();
    let b = open(dir.path());
    let mut batch = WriteBatch::new();
    // Inserted in a scrambled order; stored big-endian so byte order is numeric order.
    for i in 0..N {
        let k = (i * 7919) % N;
        batch.put(Table::Kv, k.to_be_bytes(), format!("v{k}"));
    }
    b.write(batch, true).expect("write");
    let pairs = b.range(Table::Kv, b"", b"", 0).expect("range");
    assert_eq!(pairs.len(), N as usize);
    for (i, (k, v)) in pairs.iter().enumerate() {
        let i = i as u32;
        assert_eq!(k, &i.to_be_bytes());
        assert_eq!(v, format!("v{i}").as_bytes());
    }
    assert_eq!(
        get(&*b, Table::Kv, &9_999u32.to_be_bytes()),
        Some(b"v9999".to_vec())
    );
    let page = b
        .range(Table::Kv, &5_000u32.to_be_bytes(), b"", 10)
        .expect("range");
    assert_eq!(page.len(), 10);
    assert_eq!(page[9].0, 5_009u32.to_be_bytes());
    assert!(b.range(Table::Meta, b"", b"", 0).expect("range").is_empty());
}

/// Writes 4 MiB in 512 keys, deletes all but every eighth, and returns the backend with the
/// keys that are left.
fn fill_and_thin(b: &dyn Backend) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut batch = WriteBatch::new();
    for i in 0u32..512 {
        batch.put(Table::Kv, i.to_be_bytes(), vec![i as u8; 8 * 1024]);
    }
    b.write(batch, true).expect("write");
    let mut batch = WriteBatch::new();
    for i in (0u32..512).filter(|i| i % 8 != 0) {
        batch.delete(Table::Kv, i.to_be_bytes());
    }
    b.write(batch, false).expect("write");
    (0u32..512)
        .filter(|i| i % 8 == 0)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 8 * 1024]))
        .collect()
}

pub(super) fn check_defragment_keeps_contents(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    let left = fill_and_thin(&*b);
    put(&*b, Table::Meta, b"m", b"1");
    b.defragment().expect("defragment");
    assert_eq!(b.range(Table::Kv, b"", b"", 0).expect("range"), left);
    assert_eq!(get(&*b, Table::Meta, b"m"), Some(b"1".to_vec()));
    let size = b.size().expect("size");
    let in_use = b.size_in_use().expect("size in use");
    assert!(in_use <= size, "in use {in_use} > size {size}");
    assert!(
        in_use >= 64 * 8 * 1024,
        "64 values of 8 KiB stored, in use {in_use}"
    );
    // Writes go on after it.
    put(&*b, Table::Kv, b"after", b"a");
    assert_eq!(get(&*b, Table::Kv, b"after"), Some(b"a".to_vec()));
}

pub(super) fn check_reopen_after_defragment(open: Factory<'_>) {
    let dir = tempdir();
    let left = {
        let b = open(dir.path());
        let left = fill_and_thin(&*b);
        // Not durable by itself: defragmenting makes it so.
        b.write(
            {
                let mut batch = WriteBatch::new();
                batch.put(Table::Meta, b"m".to_vec(), b"2".to_vec());
                batch
            },
            false,
        )
        .expect("write");
        b.defragment().expect("defragment");
        left
    };
    let b = open(dir.path());
    assert_eq!(b.range(Table::Kv, b"", b"", 0).expect("range"), left);
    assert_eq!(get(&*b, Table::Meta, b"m"), Some(b"2".to_vec()));
}

/// Reads observe every write that returned (also reads taken between writes, which a backend
/// may serve from a shared read snapshot), reads racing writes never go back in time, and
/// defragmenting works right after reads.
pub(super) fn check_reads_follow_writes(open: Factory<'_>) {
    let dir = tempdir();
    let b = open(dir.path());
    for i in 0u32..50 {
        put(&*b, Table::Kv, b"k", &i.to_be_bytes());
        assert_eq!(get(&*b, Table::Kv, b"k"), Some(i.to_be_bytes().to_vec()));
        assert_eq!(range(&*b, Table::Kv, b"", b"", 0), keys(&[b"k"]));
    }
    delete(&*b, Table::Kv, b"k");
    assert_eq!(get(&*b, Table::Kv, b"k"), None);
    assert!(range(&*b, Table::Kv, b"", b"", 0).is_empty());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut last = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::Acquire) {
                        if let Some(v) = get(&*b, Table::Kv, b"c") {
                            let v = u32::from_be_bytes(v.try_into().expect("4 bytes"));
                            assert!(v >= last, "read {v} after {last}");
                            last = v;
                        }
                    }
                })
            })
            .collect();
        for i in 1u32..=300 {
            put(&*b, Table::Kv, b"c", &i.to_be_bytes());
            assert_eq!(get(&*b, Table::Kv, b"c"), Some(i.to_be_bytes().to_vec()));
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        for r in readers {
            r.join().expect("reader");
        }
    });
    b.defragment().expect("defragment after reads");
    assert_eq!(
        get(&*b, Table::Kv, b"c"),
        Some(300u32.to_be_bytes().to_vec())
    );
    put(&*b, Table::Kv, b"c", &301u32.to_be_bytes());
    assert_eq!(
        get(&*b, Table::Kv, b"c"),
        Some(301u32.to_be_bytes().to_vec())
    );
}

/// The tests every engine runs; expects a `factory` function in scope.
macro_rules! common_tests {
    () => {
        #[test]
        fn get_on_empty() {
            check_get_on_empty(&factory);
        }
        #[test]
        fn put_get_overwrite_delete() {
            check_put_get_overwrite_delete(&factory);
        }
        #[test]
        fn delete_missing() {
            check_delete_missing(&factory);
        }
        #[test]
        fn range() {
            check_range(&factory);
        }
        #[test]
        fn table_isolation() {
            check_table_isolation(&factory);
        }
        #[test]
        fn batch() {
            check_batch(&factory);
        }
        #[test]
        fn size_grows() {
            check_size_grows(&factory);
        }
        #[test]
        fn large_value() {
            check_large_value(&factory);
        }
        #[test]
        fn many_keys_in_one_batch() {
            check_many_keys_in_one_batch(&factory);
        }
        #[test]
        fn defragment_keeps_contents() {
            check_defragment_keeps_contents(&factory);
        }
        #[test]
        fn reads_follow_writes() {
            check_reads_follow_writes(&factory);
        }
    };
}

/// The reopen tests, for engines that persist; expects a `factory` function in scope.
macro_rules! reopen_tests {
    () => {
        #[test]
        fn reopen_after_durable_write() {
            check_reopen_after_durable_write(&factory);
        }
        #[test]
        fn reopen_after_sync() {
            check_reopen_after_sync(&factory);
        }
        #[test]
        fn reopen_after_defragment() {
            check_reopen_after_defragment(&factory);
        }
    };
}

mod memory {
    use super::*;

    fn factory(_dir: &Path) -> Arc<dyn Backend> {
        open_backend(BackendKind::Memory, Path::new("")).expect("open")
    }

    common_tests!();
}

mod redb {
    use super::*;

    fn factory(dir: &Path) -> Arc<dyn Backend> {
        open_backend(BackendKind::Redb, dir).expect("open")
    }

    common_tests!();
    reopen_tests!();

    /// redb gives the space of deleted data back: the file shrinks and in-use equals size.
    #[test]
    fn defragment_shrinks_the_file() {
        let dir = tempdir();
        let b = factory(dir.path());
        fill_and_thin(&*b);
        b.sync().expect("sync");
        let before = b.size().expect("size");
        let in_use_before = b.size_in_use().expect("size in use");
        assert!(
            in_use_before < before,
            "deleted 7/8 of the data: in use {in_use_before} of {before}"
        );
        b.defragment().expect("defragment");
        let after = b.size().expect("size");
        assert!(
            after < before / 2,
            "file did not shrink: {before} -> {after}"
        );
    }
}

mod sled {
    use super::*;

    fn factory(dir: &Path) -> Arc<dyn Backend> {
        open_backend(BackendKind::Sled, dir).expect("open")
    }

    common_tests!();
    reopen_tests!();
}

#[test]
fn backend_kind_names() {
    use clap::ValueEnum;
    assert_eq!(BackendKind::default(), BackendKind::Redb);
    for kind in BackendKind::value_variants() {
        let name = kind.to_string();
        assert_eq!(BackendKind::from_str(&name, false), Ok(*kind));
        let dir = tempdir();
        assert_eq!(open_backend(*kind, dir.path()).expect("open").name(), name);
    }
    let names: Vec<String> = BackendKind::value_variants()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["redb", "sled", "memory"]);
}

#[test]
fn open_creates_missing_dirs() {
    let dir = tempdir();
    let nested = dir.path().join("a").join("b");
    let redb = super::RedbBackend::open(&nested.join("r")).expect("open redb");
    assert!(redb.path().exists());
    drop(redb);
    super::SledBackend::open(&nested.join("s")).expect("open sled");
    assert!(
        nested
            .join("s")
            .join(super::sled_backend::SLED_DIR_NAME)
            .exists()
    );
}
