use std::collections::HashSet;

use super::*;

fn rev(main: i64, sub: i64) -> Revision {
    Revision::new(main, sub)
}

fn state(modified: Revision, created: Revision, version: i64) -> Option<KeyState> {
    Some(KeyState {
        modified,
        created,
        version,
    })
}

/// The revisions of each generation, oldest first.
fn shape(ki: &KeyIndex) -> Vec<Vec<Revision>> {
    ki.generations.iter().map(|g| g.revs.clone()).collect()
}

/// put 2, put 4, delete 6, put 8, put 10, delete 12, put 14.0, put 14.1, delete 16.
fn three_generations() -> KeyIndex {
    let mut ki = KeyIndex::new();
    assert!(ki.put(rev(2, 0)));
    assert!(ki.put(rev(4, 0)));
    assert!(ki.tombstone(rev(6, 0)));
    assert!(ki.put(rev(8, 0)));
    assert!(ki.put(rev(10, 0)));
    assert!(ki.tombstone(rev(12, 0)));
    assert!(ki.put(rev(14, 0)));
    assert!(ki.put(rev(14, 1)));
    assert!(ki.tombstone(rev(16, 0)));
    ki
}

/// What a read of `three_generations` at each main revision sees.
fn three_generations_get(at: i64) -> Option<KeyState> {
    match at {
        2..=3 => state(rev(2, 0), rev(2, 0), 1),
        4..=5 => state(rev(4, 0), rev(2, 0), 2),
        8..=9 => state(rev(8, 0), rev(8, 0), 1),
        10..=11 => state(rev(10, 0), rev(8, 0), 2),
        14..=15 => state(rev(14, 1), rev(14, 0), 2),
        _ => None,
    }
}

#[test]
fn put_builds_one_generation() {
    let mut ki = KeyIndex::new();
    assert!(ki.is_empty());
    assert!(!ki.is_live());
    assert_eq!(ki.get(5), None);

    assert!(ki.put(rev(5, 0)));
    assert!(ki.put(rev(7, 2)));
    assert!(ki.is_live());
    assert_eq!(ki.modified(), rev(7, 2));
    assert_eq!(shape(&ki), vec![vec![rev(5, 0), rev(7, 2)]]);
    assert_eq!(ki.generations[0].created, rev(5, 0));
    assert_eq!(ki.generations[0].version, 2);

    assert_eq!(ki.get(4), None);
    assert_eq!(ki.get(5), state(rev(5, 0), rev(5, 0), 1));
    assert_eq!(ki.get(6), state(rev(5, 0), rev(5, 0), 1));
    assert_eq!(ki.get(7), state(rev(7, 2), rev(5, 0), 2));
    assert_eq!(ki.get(100), state(rev(7, 2), rev(5, 0), 2));
}

#[test]
fn put_rejects_stale_revisions() {
    let mut ki = KeyIndex::new();
    assert!(ki.put(rev(5, 1)));
    let before = ki.clone();
    assert!(!ki.put(rev(5, 1)));
    assert!(!ki.put(rev(5, 0)));
    assert!(!ki.put(rev(4, 9)));
    assert!(!ki.tombstone(rev(5, 0)));
    assert_eq!(ki, before);
    assert!(ki.put(rev(5, 2)));
}

#[test]
fn tombstone_ends_the_generation() {
    let mut ki = KeyIndex::new();
    assert!(!ki.tombstone(rev(1, 0)), "nothing to delete");
    assert!(ki.is_empty());

    assert!(ki.put(rev(2, 0)));
    assert!(ki.put(rev(3, 0)));
    assert!(ki.tombstone(rev(5, 0)));
    assert!(!ki.is_live());
    assert!(!ki.is_empty());
    assert_eq!(
        shape(&ki),
        vec![vec![rev(2, 0), rev(3, 0), rev(5, 0)], vec![]]
    );
    assert_eq!(ki.generations[0].version, 3);

    let before = ki.clone();
    assert!(!ki.tombstone(rev(6, 0)), "already deleted");
    assert_eq!(ki, before);

    assert!(ki.put(rev(7, 0)));
    assert!(ki.put(rev(8, 1)));
    assert_eq!(
        shape(&ki),
        vec![
            vec![rev(2, 0), rev(3, 0), rev(5, 0)],
            vec![rev(7, 0), rev(8, 1)]
        ]
    );
    // The module documentation's example.
    assert_eq!(ki.get(1), None);
    assert_eq!(ki.get(3), state(rev(3, 0), rev(2, 0), 2));
    assert_eq!(ki.get(4), state(rev(3, 0), rev(2, 0), 2));
    assert_eq!(ki.get(5), None);
    assert_eq!(ki.get(6), None);
    assert_eq!(ki.get(7), state(rev(7, 0), rev(7, 0), 1));
    assert_eq!(ki.get(8), state(rev(8, 1), rev(7, 0), 2));
    assert_eq!(ki.get(9), state(rev(8, 1), rev(7, 0), 2));
}

#[test]
fn get_across_generations() {
    let ki = three_generations();
    assert_eq!(
        shape(&ki),
        vec![
            vec![rev(2, 0), rev(4, 0), rev(6, 0)],
            vec![rev(8, 0), rev(10, 0), rev(12, 0)],
            vec![rev(14, 0), rev(14, 1), rev(16, 0)],
            vec![],
        ]
    );
    for at in 0..=20 {
        assert_eq!(ki.get(at), three_generations_get(at), "get({at})");
    }
}

#[test]
fn changes_since_marks_tombstones() {
    let ki = three_generations();
    let all: Vec<_> = ki.changes_since(0).collect();
    assert_eq!(
        all,
        vec![
            (rev(2, 0), false),
            (rev(4, 0), false),
            (rev(6, 0), true),
            (rev(8, 0), false),
            (rev(10, 0), false),
            (rev(12, 0), true),
            (rev(14, 0), false),
            (rev(14, 1), false),
            (rev(16, 0), true),
        ]
    );
    for since in 0..=17 {
        let expected: Vec<_> = all
            .iter()
            .copied()
            .filter(|(r, _)| r.main >= since)
            .collect();
        assert_eq!(ki.changes_since(since).collect::<Vec<_>>(), expected);
    }
}

/// Compacting `three_generations` at each main revision: the generations left, the revisions
/// compaction keeps in the backend and those `keep` reports.
#[test]
fn compact_at_every_point() {
    let g1 = vec![rev(8, 0), rev(10, 0), rev(12, 0)];
    let g2 = vec![rev(14, 0), rev(14, 1), rev(16, 0)];
    let none: Vec<Revision> = Vec::new();
    #[allow(clippy::type_complexity)]
    let cases: Vec<(i64, Vec<Vec<Revision>>, Vec<Revision>, Vec<Revision>)> = vec![
        (
            1,
            vec![
                vec![rev(2, 0), rev(4, 0), rev(6, 0)],
                g1.clone(),
                g2.clone(),
                vec![],
            ],
            none.clone(),
            none.clone(),
        ),
        (
            2,
            vec![
                vec![rev(2, 0), rev(4, 0), rev(6, 0)],
                g1.clone(),
                g2.clone(),
                vec![],
            ],
            vec![rev(2, 0)],
            vec![rev(2, 0)],
        ),
        (
            3,
            vec![
                vec![rev(2, 0), rev(4, 0), rev(6, 0)],
                g1.clone(),
                g2.clone(),
                vec![],
            ],
            vec![rev(2, 0)],
            vec![rev(2, 0)],
        ),
        (
            4,
            vec![vec![rev(4, 0), rev(6, 0)], g1.clone(), g2.clone(), vec![]],
            vec![rev(4, 0)],
            vec![rev(4, 0)],
        ),
        (
            5,
            vec![vec![rev(4, 0), rev(6, 0)], g1.clone(), g2.clone(), vec![]],
            vec![rev(4, 0)],
            vec![rev(4, 0)],
        ),
        // At the tombstone: it stays (for watchers from 6) but is no value to keep.
        (
            6,
            vec![vec![rev(6, 0)], g1.clone(), g2.clone(), vec![]],
            vec![rev(6, 0)],
            none.clone(),
        ),
        (
            7,
            vec![g1.clone(), g2.clone(), vec![]],
            none.clone(),
            none.clone(),
        ),
        (
            8,
            vec![g1.clone(), g2.clone(), vec![]],
            vec![rev(8, 0)],
            vec![rev(8, 0)],
        ),
        (
            9,
            vec![g1.clone(), g2.clone(), vec![]],
            vec![rev(8, 0)],
            vec![rev(8, 0)],
        ),
        (
            10,
            vec![vec![rev(10, 0), rev(12, 0)], g2.clone(), vec![]],
            vec![rev(10, 0)],
            vec![rev(10, 0)],
        ),
        (
            11,
            vec![vec![rev(10, 0), rev(12, 0)], g2.clone(), vec![]],
            vec![rev(10, 0)],
            vec![rev(10, 0)],
        ),
        (
            12,
            vec![vec![rev(12, 0)], g2.clone(), vec![]],
            vec![rev(12, 0)],
            none.clone(),
        ),
        (13, vec![g2.clone(), vec![]], none.clone(), none.clone()),
        // Only the newest write of main revision 14 is visible at 14.
        (
            14,
            vec![vec![rev(14, 1), rev(16, 0)], vec![]],
            vec![rev(14, 1)],
            vec![rev(14, 1)],
        ),
        (
            15,
            vec![vec![rev(14, 1), rev(16, 0)], vec![]],
            vec![rev(14, 1)],
            vec![rev(14, 1)],
        ),
        (
            16,
            vec![vec![rev(16, 0)], vec![]],
            vec![rev(16, 0)],
            none.clone(),
        ),
        (17, vec![vec![]], none.clone(), none.clone()),
        (100, vec![vec![]], none.clone(), none.clone()),
    ];

    let mut stepwise = three_generations();
    for (at, generations, compacted, kept) in cases {
        let fresh = three_generations();
        let mut keep = HashSet::new();
        fresh.keep(at, &mut keep);
        assert_eq!(keep, kept.iter().copied().collect(), "keep({at})");

        let mut ki = fresh.clone();
        let mut available = HashSet::new();
        ki.compact(at, &mut available);
        assert_eq!(shape(&ki), generations, "compact({at})");
        assert_eq!(
            available,
            compacted.iter().copied().collect(),
            "compact({at})"
        );
        assert_eq!(ki.is_empty(), at > 16);
        assert_eq!(ki.modified(), rev(16, 0));

        // Compacting earlier first changes nothing; compacting again changes nothing.
        let mut again = HashSet::new();
        stepwise.compact(at, &mut again);
        assert_eq!(stepwise, ki, "stepwise compact({at})");
        ki.compact(at, &mut again);
        assert_eq!(shape(&ki), generations, "second compact({at})");

        // Reads at and after the compaction point are unchanged, versions included.
        for read in at..=20 {
            assert_eq!(
                ki.get(read),
                three_generations_get(read),
                "get({read}) after compact({at})"
            );
        }
        // So are the changes after it.
        let all: Vec<_> = fresh.changes_since(at + 1).collect();
        assert_eq!(ki.changes_since(at + 1).collect::<Vec<_>>(), all);
    }
}

#[test]
fn compaction_keeps_versions_and_allows_more_writes() {
    let mut ki = KeyIndex::new();
    for main in 1..=5 {
        assert!(ki.put(rev(main, 0)));
    }
    let mut available = HashSet::new();
    ki.compact(4, &mut available);
    assert_eq!(shape(&ki), vec![vec![rev(4, 0), rev(5, 0)]]);
    assert_eq!(ki.get(4), state(rev(4, 0), rev(1, 0), 4));
    assert_eq!(ki.get(5), state(rev(5, 0), rev(1, 0), 5));
    assert!(ki.put(rev(6, 0)));
    assert_eq!(ki.get(6), state(rev(6, 0), rev(1, 0), 6));
    assert!(ki.tombstone(rev(7, 0)));
    assert!(ki.put(rev(8, 0)));
    assert_eq!(ki.get(8), state(rev(8, 0), rev(8, 0), 1));
}

#[test]
fn restore_seeds_a_compacted_generation() {
    let mut ki = KeyIndex::new();
    // Stored value at 10.0 says: created at 4, version 3.
    assert!(ki.restore(rev(10, 0), 4, 3));
    assert_eq!(ki.get(10), state(rev(10, 0), rev(4, 0), 3));
    assert_eq!(ki.get(9), None);
    // Later writes continue the generation.
    assert!(ki.restore(rev(11, 2), 4, 4));
    assert_eq!(ki.get(11), state(rev(11, 2), rev(4, 0), 4));
    assert!(ki.restore_tombstone(rev(12, 0)));
    assert_eq!(ki.get(12), None);
    // A put after the deletion starts a generation; it created the key itself.
    assert!(ki.restore(rev(13, 1), 13, 1));
    assert_eq!(ki.get(13), state(rev(13, 1), rev(13, 1), 1));
    assert!(!ki.restore(rev(13, 0), 13, 1), "out of order");
    assert_eq!(
        shape(&ki),
        vec![vec![rev(10, 0), rev(11, 2), rev(12, 0)], vec![rev(13, 1)]]
    );
}

#[test]
fn restore_tombstone_without_history() {
    let mut ki = KeyIndex::new();
    assert!(ki.restore_tombstone(rev(6, 0)));
    assert!(!ki.is_empty());
    assert!(!ki.is_live());
    assert_eq!(ki.get(6), None);
    assert_eq!(ki.get(7), None);
    assert_eq!(
        ki.changes_since(6).collect::<Vec<_>>(),
        vec![(rev(6, 0), true)]
    );
    // Exactly what compacting at the tombstone leaves.
    let mut compacted = KeyIndex::new();
    assert!(compacted.put(rev(3, 0)));
    assert!(compacted.tombstone(rev(6, 0)));
    compacted.compact(6, &mut HashSet::new());
    assert_eq!(shape(&compacted), shape(&ki));

    // A second tombstone of a deleted key is ignored.
    let before = ki.clone();
    assert!(!ki.restore_tombstone(rev(7, 0)));
    assert_eq!(ki, before);

    ki.compact(7, &mut HashSet::new());
    assert!(ki.is_empty());
}
