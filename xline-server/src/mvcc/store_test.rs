//! Store tests in-process: apply, reads, txn semantics, compaction and restore from the backend.

use std::sync::Arc;

use xline_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, compare, request_op, response_op,
};
use xline_proto::mvccpb::Event;

use super::*;
use crate::command::{Command, Request};
use crate::storage::{MemoryBackend, RedbBackend};

fn put(key: &str, value: &str) -> Command {
    Command::new(Request::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }))
}

fn get(store: &KvStore, key: &str, rev: i64) -> Option<KeyValue> {
    let req = RangeRequest {
        key: key.into(),
        revision: rev,
        ..Default::default()
    };
    store.range(&req).unwrap().kvs.into_iter().next()
}

fn apply_one(store: &KvStore, index: u64, cmd: Command) -> ApplyOutput {
    store.apply(&[(index, cmd)]).unwrap().remove(0)
}

#[test]
fn puts_share_nothing_across_requests_and_track_versions() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    let outs = store
        .apply(&[(1, put("a", "1")), (2, put("a", "2")), (3, put("b", "x"))])
        .unwrap();
    let revs: Vec<i64> = outs
        .iter()
        .map(|o| match o {
            Ok(CommandResponse::Put(p)) => p.header.as_ref().unwrap().revision,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(revs, vec![2, 3, 4], "a fresh store is at revision 1");
    let a = get(&store, "a", 0).unwrap();
    assert_eq!(
        (
            a.create_revision,
            a.mod_revision,
            a.version,
            a.value.as_slice()
        ),
        (2, 3, 2, &b"2"[..])
    );
    assert_eq!(get(&store, "a", 2).unwrap().value, b"1");
    assert!(get(&store, "a", 1).is_none());
    assert!(get(&store, "b", 3).is_none());
    assert_eq!(store.applied_index(), 3);
    assert_eq!(store.current_revision(), 4);
}

#[test]
fn delete_then_recreate_starts_a_new_generation() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    apply_one(&store, 1, put("k", "v1")).unwrap();
    let del = Command::new(Request::DeleteRange(DeleteRangeRequest {
        key: "k".into(),
        prev_kv: true,
        ..Default::default()
    }));
    match apply_one(&store, 2, del).unwrap() {
        CommandResponse::DeleteRange(d) => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs[0].value, b"v1");
            assert_eq!(d.header.unwrap().revision, 3);
        }
        other => panic!("{other:?}"),
    }
    // Deleting nothing does not bump the revision.
    let del = Command::new(Request::DeleteRange(DeleteRangeRequest {
        key: "k".into(),
        ..Default::default()
    }));
    match apply_one(&store, 3, del).unwrap() {
        CommandResponse::DeleteRange(d) => {
            assert_eq!((d.deleted, d.header.unwrap().revision), (0, 3));
        }
        other => panic!("{other:?}"),
    }
    apply_one(&store, 4, put("k", "v2")).unwrap();
    let k = get(&store, "k", 0).unwrap();
    assert_eq!((k.create_revision, k.mod_revision, k.version), (4, 4, 1));
}

fn txn_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

fn txn_get(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.into(),
            ..Default::default()
        })),
    }
}

#[test]
fn txn_writes_share_one_revision_and_reads_see_them() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    apply_one(&store, 1, put("a", "1")).unwrap();
    let txn = TxnRequest {
        compare: vec![Compare {
            key: "a".into(),
            target: compare::CompareTarget::Value as i32,
            result: compare::CompareResult::Equal as i32,
            target_union: Some(compare::TargetUnion::Value("1".into())),
            ..Default::default()
        }],
        success: vec![txn_put("b", "2"), txn_put("c", "3"), txn_get("b")],
        failure: vec![],
    };
    let resp = match apply_one(&store, 2, Command::new(Request::Txn(txn))).unwrap() {
        CommandResponse::Txn(t) => t,
        other => panic!("{other:?}"),
    };
    assert!(resp.succeeded);
    assert_eq!(resp.header.unwrap().revision, 3);
    match &resp.responses[2].response {
        Some(response_op::Response::ResponseRange(r)) => {
            assert_eq!(r.kvs[0].value, b"2");
            assert_eq!(r.header.as_ref().unwrap().revision, 3);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&store, "c", 0).unwrap().mod_revision, 3);
    // A lease that does not exist fails the whole txn before anything is written.
    let bad = TxnRequest {
        compare: vec![],
        success: vec![
            txn_put("d", "4"),
            RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: "e".into(),
                    lease: 99,
                    ..Default::default()
                })),
            },
        ],
        failure: vec![],
    };
    assert_eq!(
        apply_one(&store, 3, Command::new(Request::Txn(bad))),
        Err(EtcdError::LeaseNotFound)
    );
    assert!(get(&store, "d", 0).is_none());
    assert_eq!(store.current_revision(), 3);
}

#[test]
fn compaction_errors_and_reads() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    for i in 1..=5 {
        apply_one(&store, i, put("k", &format!("v{i}"))).unwrap();
    }
    let compact = |rev| {
        Command::new(Request::Compaction(CompactionRequest {
            revision: rev,
            physical: false,
        }))
    };
    assert_eq!(apply_one(&store, 6, compact(10)), Err(EtcdError::FutureRev));
    apply_one(&store, 7, compact(4)).unwrap();
    assert_eq!(apply_one(&store, 8, compact(4)), Err(EtcdError::Compacted));
    assert_eq!(apply_one(&store, 9, compact(3)), Err(EtcdError::Compacted));
    let at = |rev| {
        store.range(&RangeRequest {
            key: "k".into(),
            revision: rev,
            ..Default::default()
        })
    };
    assert!(matches!(
        at(3),
        Err(ServerError::Etcd(EtcdError::Compacted))
    ));
    assert!(matches!(
        at(7),
        Err(ServerError::Etcd(EtcdError::FutureRev))
    ));
    assert_eq!(at(4).unwrap().kvs[0].value, b"v3");
    assert_eq!(at(6).unwrap().kvs[0].value, b"v5");
}

#[tokio::test]
async fn restore_after_reopen_including_physical_compaction() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = KvStore::open(Arc::new(RedbBackend::open(dir.path()).unwrap())).unwrap();
        let mut index = 0;
        for round in 0..3 {
            for k in ["a", "b", "c"] {
                index += 1;
                apply_one(&store, index, put(k, &format!("{k}{round}"))).unwrap();
            }
        }
        index += 1;
        let del = Command::new(Request::DeleteRange(DeleteRangeRequest {
            key: "b".into(),
            ..Default::default()
        }));
        apply_one(&store, index, del).unwrap();
        index += 1;
        apply_one(
            &store,
            index,
            Command::new(Request::Compaction(CompactionRequest {
                revision: 9,
                physical: true,
            })),
        )
        .unwrap();
        store.wait_compacted(9).await;
        index += 1;
        apply_one(&store, index, put("d", "d0")).unwrap();
        assert_eq!(store.flush().unwrap(), index);
    }
    let store = KvStore::open(Arc::new(RedbBackend::open(dir.path()).unwrap())).unwrap();
    assert_eq!(store.applied_index(), 12);
    assert_eq!(store.current_revision(), 12);
    assert_eq!(store.compact_revision(), 9);
    let a = get(&store, "a", 0).unwrap();
    assert_eq!(
        (
            a.value.as_slice(),
            a.create_revision,
            a.mod_revision,
            a.version
        ),
        (&b"a2"[..], 2, 8, 3)
    );
    assert!(get(&store, "b", 0).is_none());
    assert_eq!(get(&store, "b", 9).unwrap().value, b"b2");
    assert_eq!(get(&store, "c", 9).unwrap().value, b"c1");
    // Only what reads at revision >= 9 need survived the physical compaction.
    let stored = store.backend().range(Table::Kv, &[], &[], 0).unwrap();
    assert_eq!(stored.len(), 6, "a@8 b@9 c@7 c@10 b-tombstone@11 d@12");
    // Writes after the restore continue the same key histories.
    apply_one(&store, 13, put("a", "a3")).unwrap();
    let a = get(&store, "a", 0).unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 13, 4));
}

#[test]
fn applied_events_match_the_stored_history() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    let mut rx = store.subscribe();
    let _interest = store.prev_kv_interest();
    apply_one(&store, 1, put("a", "1")).unwrap();
    let del = Command::new(Request::DeleteRange(DeleteRangeRequest {
        key: "a".into(),
        range_end: "b".into(),
        ..Default::default()
    }));
    store.apply(&[(2, put("a", "2")), (3, del)]).unwrap();
    let first = rx.try_recv().unwrap();
    let second = rx.try_recv().unwrap();
    assert_eq!((first.revision, second.revision), (2, 4));
    let live: Vec<Event> = first.events.iter().chain(&second.events).cloned().collect();
    let kinds: Vec<(i32, i64, Option<Vec<u8>>)> = live
        .iter()
        .map(|e| {
            (
                e.r#type,
                e.kv.as_ref().unwrap().mod_revision,
                e.prev_kv.as_ref().map(|p| p.value.clone()),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, 2, None),
            (0, 3, Some(b"1".to_vec())),
            (1, 4, Some(b"2".to_vec()))
        ]
    );
    // The same history read back from the backend, whole or from a revision on.
    assert_eq!(store.events_between(2, 4, 0).unwrap(), live);
    assert_eq!(store.events_between(3, 10, 0).unwrap(), live[1..].to_vec());
    assert_eq!(store.events_between(2, 4, 1).unwrap(), live[..1].to_vec());
    apply_one(
        &store,
        4,
        Command::new(Request::Compaction(CompactionRequest {
            revision: 3,
            physical: false,
        })),
    )
    .unwrap();
    assert!(matches!(
        store.events_between(2, 4, 0),
        Err(ServerError::Etcd(EtcdError::Compacted))
    ));
}

#[test]
fn puts_read_the_previous_value_only_for_someone_who_wants_it() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    let mut rx = store.subscribe();
    apply_one(&store, 1, put("a", "1")).unwrap();
    // Nobody wants prev_kv: an overwrite's event lacks it and its batch says so ...
    apply_one(&store, 2, put("a", "2")).unwrap();
    // ... unless the request asks for it.
    let mut with_prev = put("a", "3");
    if let Some(Request::Put(p)) = &mut with_prev.request {
        p.prev_kv = true;
    }
    match apply_one(&store, 3, with_prev).unwrap() {
        CommandResponse::Put(r) => assert_eq!(r.prev_kv.unwrap().value, b"2"),
        other => panic!("{other:?}"),
    }
    let interest = store.prev_kv_interest();
    apply_one(&store, 4, put("a", "4")).unwrap();
    drop(interest);
    apply_one(&store, 5, put("b", "1")).unwrap();
    let batches: Vec<(bool, Option<Vec<u8>>)> = (0..5)
        .map(|_| {
            let b = rx.try_recv().unwrap();
            let prev = b.events[0].prev_kv.as_ref().map(|p| p.value.clone());
            (b.prev_kv_complete, prev)
        })
        .collect();
    assert_eq!(
        batches,
        vec![
            (true, None),
            (false, None),
            (true, Some(b"2".to_vec())),
            (true, Some(b"3".to_vec())),
            // A new key has no previous value: complete without anyone's interest.
            (true, None),
        ]
    );
    // Versions and creation come from the index either way; the stored history has every
    // previous value.
    let a = get(&store, "a", 0).unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 5, 4));
    let prevs: Vec<Option<Vec<u8>>> = store
        .events_between(2, 6, 0)
        .unwrap()
        .iter()
        .map(|e| e.prev_kv.as_ref().map(|p| p.value.clone()))
        .collect();
    assert_eq!(
        prevs,
        vec![
            None,
            Some(b"1".to_vec()),
            Some(b"2".to_vec()),
            Some(b"3".to_vec()),
            None
        ]
    );
}
