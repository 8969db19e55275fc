use std::collections::{BTreeMap, BTreeSet, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn rev(main: i64, sub: i64) -> Revision {
    Revision::new(main, sub)
}

fn keys_of(found: Vec<(Vec<u8>, Revision)>) -> Vec<Vec<u8>> {
    found.into_iter().map(|(k, _)| k).collect()
}

fn owned(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}

/// a, ab, b, c (deleted at 6), d: one put each at 2..=5 and 7 (c at 4).
fn sample() -> Index {
    let mut index = Index::new();
    index.put(b"a", rev(2, 0));
    index.put(b"ab", rev(3, 0));
    index.put(b"b", rev(3, 1));
    index.put(b"c", rev(4, 0));
    index.put(b"a", rev(5, 0));
    assert!(index.tombstone(b"c", rev(6, 0)));
    index.put(b"d", rev(7, 0));
    index
}

#[test]
fn get_put_tombstone() {
    let mut index = sample();
    assert_eq!(index.len(), 5);
    assert!(!index.is_empty());
    assert_eq!(index.get(b"a", 1), None);
    assert_eq!(
        index.get(b"a", 4),
        Some(KeyState {
            modified: rev(2, 0),
            created: rev(2, 0),
            version: 1
        })
    );
    assert_eq!(
        index.get(b"a", 7),
        Some(KeyState {
            modified: rev(5, 0),
            created: rev(2, 0),
            version: 2
        })
    );
    assert_eq!(index.get(b"c", 5).map(|s| s.modified), Some(rev(4, 0)));
    assert_eq!(index.get(b"c", 6), None);
    assert_eq!(index.get(b"zz", 7), None);

    assert!(!index.tombstone(b"c", rev(8, 0)), "already deleted");
    assert!(!index.tombstone(b"zz", rev(8, 0)), "never existed");
    assert!(index.get(b"zz", 8).is_none());
    assert_eq!(index.len(), 5, "a failed delete adds no key");

    index.put(b"c", rev(8, 0));
    assert_eq!(
        index.get(b"c", 8),
        Some(KeyState {
            modified: rev(8, 0),
            created: rev(8, 0),
            version: 1
        })
    );
    // A stale put is ignored.
    index.put(b"c", rev(8, 0));
    index.put(b"c", rev(7, 5));
    assert_eq!(index.get(b"c", 9).map(|s| s.version), Some(1));
}

#[test]
fn range_conventions() {
    let index = sample();
    let at = 7;
    // Empty end: just the key.
    assert_eq!(
        index.range(b"a", b"", at, 0),
        vec![(b"a".to_vec(), rev(5, 0))]
    );
    assert_eq!(index.range(b"c", b"", at, 0), vec![]);
    assert_eq!(index.range(b"zz", b"", at, 0), vec![]);
    assert_eq!(index.count(b"a", b"", at), 1);
    assert_eq!(index.count(b"c", b"", at), 0);
    // [a, c): prefix keys included, the end excluded.
    assert_eq!(
        index.range(b"a", b"c", at, 0),
        vec![
            (b"a".to_vec(), rev(5, 0)),
            (b"ab".to_vec(), rev(3, 0)),
            (b"b".to_vec(), rev(3, 1)),
        ]
    );
    assert_eq!(index.count(b"a", b"c", at), 3);
    assert_eq!(
        keys_of(index.range(b"a", b"b", at, 0)),
        owned(&[b"a", b"ab"])
    );
    // Deleted keys are skipped; at 5 c is still there.
    assert_eq!(
        keys_of(index.range(b"b", b"e", at, 0)),
        owned(&[b"b", b"d"])
    );
    assert_eq!(keys_of(index.range(b"b", b"e", 5, 0)), owned(&[b"b", b"c"]));
    // From key: "\0" as end.
    assert_eq!(
        keys_of(index.range(b"b", b"\0", at, 0)),
        owned(&[b"b", b"d"])
    );
    assert_eq!(index.count(b"ab", b"\0", at), 3);
    // All keys.
    assert_eq!(
        keys_of(index.range(b"\0", b"\0", at, 0)),
        owned(&[b"a", b"ab", b"b", b"d"])
    );
    assert_eq!(index.count(b"\0", b"\0", at), 4);
    assert_eq!(index.count(b"\0", b"\0", 3), 3);
    assert_eq!(index.count(b"\0", b"\0", 1), 0);
    // end <= key: nothing.
    assert_eq!(index.range(b"c", b"a", at, 0), vec![]);
    assert_eq!(index.range(b"b", b"b", at, 0), vec![]);
    assert_eq!(index.range(b"b", b"ab", at, 0), vec![]);
    assert_eq!(index.count(b"c", b"a", at), 0);
    assert_eq!(index.count(b"b", b"b", at), 0);
    // Limits cut the list, not the count.
    assert_eq!(
        keys_of(index.range(b"\0", b"\0", at, 2)),
        owned(&[b"a", b"ab"])
    );
    assert_eq!(keys_of(index.range(b"\0", b"\0", at, 10)).len(), 4);
    assert_eq!(index.range(b"a", b"", at, 1).len(), 1);
}

#[test]
fn compact_removes_empty_keys() {
    let mut index = sample();
    let kept = index.keep(6);
    let compacted = index.compact(6);
    // c was deleted exactly at 6: its tombstone stays, but is not a value to keep.
    assert_eq!(kept, HashSet::from([rev(5, 0), rev(3, 0), rev(3, 1)]));
    assert_eq!(
        compacted,
        HashSet::from([rev(5, 0), rev(3, 0), rev(3, 1), rev(6, 0)])
    );
    assert_eq!(index.len(), 5, "c's tombstone is left");
    assert_eq!(
        index.changes_since(b"c", b"", 6),
        vec![(b"c".to_vec(), rev(6, 0), true)]
    );

    let compacted = index.compact(7);
    assert_eq!(
        compacted,
        HashSet::from([rev(5, 0), rev(3, 0), rev(3, 1), rev(7, 0)])
    );
    assert_eq!(index.len(), 4, "c is gone");
    assert_eq!(index.count(b"\0", b"\0", 7), 4);

    assert!(index.tombstone(b"a", rev(8, 0)));
    assert!(index.tombstone(b"ab", rev(8, 1)));
    assert!(index.tombstone(b"b", rev(8, 2)));
    assert!(index.tombstone(b"d", rev(8, 3)));
    assert_eq!(index.compact(8).len(), 4);
    assert_eq!(index.len(), 4);
    assert!(index.compact(9).is_empty());
    assert!(index.is_empty());
}

#[test]
fn restore_put_then_continue() {
    let mut index = Index::new();
    // What the backend holds after a compaction at 10: foo's value at 10 (created 4, version 3)
    // and bar's tombstone at exactly 10.
    index.restore_put(b"foo", rev(10, 0), 4, 3);
    index.restore_tombstone(b"bar", rev(10, 1));
    index.restore_put(b"baz", rev(11, 0), 11, 1);
    index.restore_put(b"foo", rev(12, 0), 4, 4);
    index.restore_tombstone(b"baz", rev(13, 0));
    index.restore_tombstone(b"nope", rev(13, 1));
    index.restore_tombstone(b"baz", rev(14, 0));

    assert_eq!(
        index.get(b"foo", 12),
        Some(KeyState {
            modified: rev(12, 0),
            created: rev(4, 0),
            version: 4
        })
    );
    assert_eq!(index.get(b"foo", 11).map(|s| s.modified), Some(rev(10, 0)));
    assert_eq!(index.get(b"bar", 10), None);
    assert_eq!(index.get(b"baz", 11).map(|s| s.version), Some(1));
    assert_eq!(index.get(b"baz", 13), None);
    assert_eq!(
        index.changes_since(b"\0", b"\0", 10),
        vec![
            (b"foo".to_vec(), rev(10, 0), false),
            (b"bar".to_vec(), rev(10, 1), true),
            (b"baz".to_vec(), rev(11, 0), false),
            (b"foo".to_vec(), rev(12, 0), false),
            (b"baz".to_vec(), rev(13, 0), true),
            (b"nope".to_vec(), rev(13, 1), true),
        ]
    );

    // Then the store carries on.
    index.put(b"foo", rev(15, 0));
    index.put(b"bar", rev(15, 1));
    assert!(index.tombstone(b"foo", rev(16, 0)));
    index.put(b"foo", rev(17, 0));
    assert_eq!(
        index.get(b"foo", 15),
        Some(KeyState {
            modified: rev(15, 0),
            created: rev(4, 0),
            version: 5
        })
    );
    assert_eq!(
        index.get(b"bar", 15),
        Some(KeyState {
            modified: rev(15, 1),
            created: rev(15, 1),
            version: 1
        })
    );
    assert_eq!(
        index.get(b"foo", 17).map(|s| (s.created, s.version)),
        Some((rev(17, 0), 1))
    );
    index.compact(16);
    assert_eq!(keys_of(index.range(b"\0", b"\0", 16, 0)), owned(&[b"bar"]));
    assert_eq!(
        keys_of(index.range(b"\0", b"\0", 17, 0)),
        owned(&[b"bar", b"foo"])
    );
    assert_eq!(index.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Randomized comparison with a model that keeps every write.

const KEYS: [&[u8]; 6] = [b"a", b"ab", b"b", b"ba", b"c", b"d"];

/// The ranges checked: (key, end).
const RANGES: [(&[u8], &[u8]); 10] = [
    (b"a", b""),
    (b"ba", b""),
    (b"zz", b""),
    (b"a", b"c"),
    (b"ab", b"ba"),
    (b"b", b"\0"),
    (b"\0", b"\0"),
    (b"c", b"a"),
    (b"b", b"b"),
    (b"a", b"b\0"),
];

/// One stored write, with what its value records.
#[derive(Debug, Clone)]
struct Write {
    key: Vec<u8>,
    rev: Revision,
    tomb: bool,
    created_main: i64,
    version: i64,
}

/// Every write ever made, in order.
#[derive(Default)]
struct Model {
    writes: Vec<Write>,
}

impl Model {
    /// For each key, its state after each write: (revision, state).
    fn timelines(&self) -> BTreeMap<Vec<u8>, Vec<(Revision, Option<KeyState>)>> {
        let mut out: BTreeMap<Vec<u8>, Vec<(Revision, Option<KeyState>)>> = BTreeMap::new();
        for w in &self.writes {
            let line = out.entry(w.key.clone()).or_default();
            let prev = line.last().and_then(|(_, s)| *s);
            let next = if w.tomb {
                None
            } else {
                Some(match prev {
                    None => KeyState {
                        modified: w.rev,
                        created: w.rev,
                        version: 1,
                    },
                    Some(s) => KeyState {
                        modified: w.rev,
                        created: s.created,
                        version: s.version + 1,
                    },
                })
            };
            line.push((w.rev, next));
        }
        out
    }

    fn state_now(&self, key: &[u8]) -> Option<KeyState> {
        let line = self.timelines().remove(key)?;
        line.last().and_then(|(_, s)| *s)
    }
}

/// A read of the model at `at` from precomputed timelines.
fn model_get(
    lines: &BTreeMap<Vec<u8>, Vec<(Revision, Option<KeyState>)>>,
    key: &[u8],
    at: i64,
) -> Option<KeyState> {
    let line = lines.get(key)?;
    let n = line.partition_point(|(r, _)| r.main <= at);
    line.get(n.checked_sub(1)?)?.1
}

fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == key,
        [0] if key == [0] => true,
        [0] => k >= key,
        _ => k >= key && k < end,
    }
}

/// Compares `index` with the model at every main revision in `from..=to`.
fn check_reads(index: &Index, model: &Model, from: i64, to: i64, exact_created: bool, ctx: &str) {
    let lines = model.timelines();
    let norm = |s: Option<KeyState>| {
        s.map(|mut s| {
            if !exact_created {
                s.created.sub = 0;
            }
            s
        })
    };
    for at in from..=to {
        for key in KEYS {
            assert_eq!(
                norm(index.get(key, at)),
                norm(model_get(&lines, key, at)),
                "{ctx}: get({:?}, {at})",
                String::from_utf8_lossy(key)
            );
        }
        for (key, end) in RANGES {
            let live: Vec<(Vec<u8>, Revision)> = lines
                .keys()
                .filter(|k| in_range(k, key, end))
                .filter_map(|k| Some((k.clone(), model_get(&lines, k, at)?.modified)))
                .collect();
            assert_eq!(
                index.count(key, end, at),
                live.len(),
                "{ctx}: count {key:?}..{end:?} @{at}"
            );
            for limit in [0, 1, 2] {
                let expected: Vec<_> = if limit == 0 {
                    live.clone()
                } else {
                    live.iter().take(limit).cloned().collect()
                };
                assert_eq!(
                    index.range(key, end, at, limit),
                    expected,
                    "{ctx}: range {key:?}..{end:?} @{at} limit {limit}"
                );
            }
        }
    }
}

/// Compares the changes reported after the compaction point with the model's writes.
fn check_changes(index: &Index, model: &Model, compacted: i64, to: i64, ctx: &str) {
    for (key, end) in [(&b"\0"[..], &b"\0"[..]), (b"a", b"c"), (b"ba", b"")] {
        let all: Vec<(Vec<u8>, Revision, bool)> = model
            .writes
            .iter()
            .filter(|w| in_range(&w.key, key, end))
            .map(|w| (w.key.clone(), w.rev, w.tomb))
            .collect();
        for since in compacted + 1..=to + 1 {
            let expected: Vec<_> = all.iter().filter(|c| c.1.main >= since).cloned().collect();
            assert_eq!(
                index.changes_since(key, end, since),
                expected,
                "{ctx}: changes_since {key:?}..{end:?} {since}"
            );
        }
        // At the compaction point itself, whatever is reported really happened.
        let at_point = index.changes_since(key, end, compacted);
        assert!(
            at_point.iter().all(|c| all.contains(c)),
            "{ctx}: changes at {compacted}"
        );
    }
}

/// Rebuilds an index from the backend's writes, as at startup.
fn restore(backend: &[Write]) -> Index {
    let mut index = Index::new();
    for w in backend {
        if w.tomb {
            index.restore_tombstone(&w.key, w.rev);
        } else {
            index.restore_put(&w.key, w.rev, w.created_main, w.version);
        }
    }
    index
}

fn run_model(seed: u64, steps: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut index = Index::new();
    // An index rebuilt from the backend at every simulated restart, then kept up to date.
    let mut restarted = Index::new();
    // The writes the backend still holds.
    let mut backend: Vec<Write> = Vec::new();
    let mut current: i64 = 1;
    let mut compacted: i64 = 0;

    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        let roll = rng.random_range(0..100);
        if roll < 75 {
            // A request at the next main revision with a few writes.
            let main = current + 1;
            let mut sub = 0;
            let mut touched: Vec<&[u8]> = Vec::new();
            for _ in 0..rng.random_range(1..=3) {
                let key = KEYS[rng.random_range(0..KEYS.len())];
                // etcd refuses two writes to one key in a request; allow it now and then anyway.
                if touched.contains(&key) && rng.random_range(0..10) > 0 {
                    continue;
                }
                touched.push(key);
                let r = rev(main, sub);
                let delete = rng.random_range(0..3) == 0;
                let write = if delete {
                    let live = model.state_now(key).is_some();
                    assert_eq!(index.tombstone(key, r), live, "{ctx}: delete");
                    assert_eq!(
                        restarted.tombstone(key, r),
                        live,
                        "{ctx}: delete (restarted)"
                    );
                    if !live {
                        continue;
                    }
                    Write {
                        key: key.to_vec(),
                        rev: r,
                        tomb: true,
                        created_main: 0,
                        version: 0,
                    }
                } else {
                    index.put(key, r);
                    restarted.put(key, r);
                    let (created_main, version) = match model.state_now(key) {
                        Some(s) => (s.created.main, s.version + 1),
                        None => (main, 1),
                    };
                    Write {
                        key: key.to_vec(),
                        rev: r,
                        tomb: false,
                        created_main,
                        version,
                    }
                };
                model.writes.push(write.clone());
                backend.push(write);
                sub += 1;
            }
            if sub > 0 {
                current = main;
            }
        } else if roll < 92 {
            // A compaction somewhere between the last one and now.
            let at = rng.random_range(compacted..=current);
            let lines = model.timelines();
            let visible: HashSet<Revision> = KEYS
                .iter()
                .filter_map(|k| Some(model_get(&lines, k, at)?.modified))
                .collect();
            let tombs_at: HashSet<Revision> = model
                .writes
                .iter()
                .filter(|w| w.tomb && w.rev.main == at)
                .map(|w| w.rev)
                .collect();
            assert_eq!(index.keep(at), visible, "{ctx}: keep({at})");
            assert_eq!(restarted.keep(at), visible, "{ctx}: keep({at}) (restarted)");
            let kept = index.compact(at);
            assert_eq!(
                kept,
                visible.union(&tombs_at).copied().collect(),
                "{ctx}: compact({at})"
            );
            assert_eq!(
                restarted.compact(at),
                kept,
                "{ctx}: compact({at}) (restarted)"
            );
            assert_eq!(index.keep(at), visible, "{ctx}: keep({at}) after compact");
            backend.retain(|w| w.rev.main > at || kept.contains(&w.rev));
            compacted = at;
            // Reading at the compaction point needs only the kept revisions.
            for key in KEYS {
                if let Some(s) = index.get(key, at) {
                    assert!(kept.contains(&s.modified), "{ctx}: {key:?} at {at}");
                }
            }
        } else {
            // A restart: rebuild from what the backend holds.
            restarted = restore(&backend);
            let everything = |i: &Index| i.changes_since(b"\0", b"\0", i64::MIN);
            assert_eq!(
                everything(&restarted),
                everything(&index),
                "{ctx}: restored history"
            );
            assert_eq!(restarted.len(), index.len(), "{ctx}: restored keys");
        }

        check_reads(&index, &model, compacted, current + 1, true, &ctx);
        check_reads(
            &restarted,
            &model,
            compacted,
            current + 1,
            false,
            &format!("{ctx} restarted"),
        );
        check_changes(&index, &model, compacted, current, &ctx);
        check_changes(
            &restarted,
            &model,
            compacted,
            current,
            &format!("{ctx} restarted"),
        );
        // Every key the index holds has something left to say at or after the compaction point.
        let holds: BTreeSet<Vec<u8>> = index
            .changes_since(b"\0", b"\0", i64::MIN)
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(holds.len(), index.len(), "{ctx}: no empty keys");
    }
}

#[test]
fn randomized_against_model() {
    for seed in [1, 2, 3, 7, 42, 1234, 99_991, 2_718_281] {
        run_model(seed, 150);
    }
}
