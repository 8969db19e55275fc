//! Leases applied through the store: grants and revokes in log order, keys attached and
//! detached by puts, txns and deletes, revocation as one deleting revision, and restore.

use std::sync::Arc;

use xline_proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, request_op,
};
use xline_proto::mvccpb::event::EventType;

use super::*;
use crate::command::{Command, Request};
use crate::storage::{MemoryBackend, RedbBackend};

fn grant(id: i64, ttl: i64) -> Command {
    Command::new(Request::LeaseGrant(LeaseGrantRequest { ttl, id }))
}

fn revoke(id: i64) -> Command {
    Command::new(Request::LeaseRevoke(LeaseRevokeRequest { id }))
}

fn put_lease(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    }
}

fn put(req: PutRequest) -> Command {
    Command::new(Request::Put(req))
}

fn apply_one(store: &KvStore, index: u64, cmd: Command) -> ApplyOutput {
    store.apply(&[(index, cmd)]).unwrap().remove(0)
}

/// The keys attached to lease `id`, in key order (`None`: no such lease).
fn attached(store: &KvStore, id: i64) -> Option<Vec<String>> {
    store.lessor().lock().get(id).map(|l| {
        l.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    })
}

fn live_keys(store: &KvStore) -> Vec<(String, i64)> {
    store
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.lease))
        .collect()
}

#[test]
fn grant_revoke_and_errors() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    match apply_one(&store, 1, grant(5, 1)).unwrap() {
        CommandResponse::LeaseGrant(g) => {
            assert_eq!((g.id, g.ttl), (5, 2), "raised to the 2 s minimum");
            assert_eq!(g.header.unwrap().revision, 1, "a grant is no revision");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        apply_one(&store, 2, grant(5, 10)),
        Err(EtcdError::LeaseExist)
    );
    assert_eq!(
        apply_one(&store, 3, grant(6, crate::lease::MAX_LEASE_TTL + 1)),
        Err(EtcdError::LeaseTtlTooLarge)
    );
    assert_eq!(
        apply_one(&store, 4, revoke(6)),
        Err(EtcdError::LeaseNotFound)
    );
    match apply_one(&store, 5, revoke(5)).unwrap() {
        CommandResponse::LeaseRevoke(r) => assert_eq!(r.header.unwrap().revision, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(attached(&store, 5), None);
    assert_eq!(store.current_revision(), 1);
    assert_eq!(
        store.backend().range(Table::Lease, &[], &[], 0).unwrap(),
        Vec::new()
    );
}

#[test]
fn a_grant_is_visible_to_the_next_command_of_its_batch() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    let outs = store
        .apply(&[(1, grant(7, 60)), (2, put(put_lease("k", "v", 7)))])
        .unwrap();
    assert!(outs.iter().all(Result::is_ok), "{outs:?}");
    assert_eq!(attached(&store, 7), Some(vec!["k".into()]));
}

#[test]
fn puts_txns_and_deletes_attach_and_detach() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    apply_one(&store, 1, grant(1, 60)).unwrap();
    apply_one(&store, 2, grant(2, 60)).unwrap();
    apply_one(&store, 3, put(put_lease("a", "1", 1))).unwrap();
    apply_one(&store, 4, put(put_lease("b", "1", 1))).unwrap();
    apply_one(&store, 5, put(put_lease("c", "1", 1))).unwrap();
    assert_eq!(
        attached(&store, 1),
        Some(vec!["a".into(), "b".into(), "c".into()])
    );

    // ignore_lease keeps the attachment.
    apply_one(
        &store,
        6,
        put(PutRequest {
            ignore_lease: true,
            ..put_lease("a", "2", 0)
        }),
    )
    .unwrap();
    // A put with another lease moves the key; one without a lease detaches it.
    apply_one(&store, 7, put(put_lease("b", "2", 2))).unwrap();
    apply_one(&store, 8, put(put_lease("c", "2", 0))).unwrap();
    assert_eq!(attached(&store, 1), Some(vec!["a".into()]));
    assert_eq!(attached(&store, 2), Some(vec!["b".into()]));

    // Txn puts do the same; a delete detaches.
    let txn = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestPut(put_lease("t", "1", 2))),
            },
            RequestOp {
                request: Some(request_op::Request::RequestPut(put_lease("c", "3", 1))),
            },
        ],
        failure: vec![],
    };
    apply_one(&store, 9, Command::new(Request::Txn(txn))).unwrap();
    let del = Command::new(Request::DeleteRange(DeleteRangeRequest {
        key: "a".into(),
        ..Default::default()
    }));
    apply_one(&store, 10, del).unwrap();
    assert_eq!(attached(&store, 1), Some(vec!["c".into()]));
    assert_eq!(attached(&store, 2), Some(vec!["b".into(), "t".into()]));
    assert_eq!(
        live_keys(&store),
        vec![("b".into(), 2), ("c".into(), 1), ("t".into(), 2)]
    );
}

#[test]
fn revoke_deletes_the_keys_in_one_revision_with_events() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    apply_one(&store, 1, grant(1, 60)).unwrap();
    apply_one(&store, 2, put(put_lease("b", "1", 1))).unwrap();
    apply_one(&store, 3, put(put_lease("a", "1", 1))).unwrap();
    apply_one(&store, 4, put(put_lease("keep", "1", 0))).unwrap();
    assert_eq!(store.current_revision(), 4);
    let mut rx = store.subscribe();
    match apply_one(&store, 5, revoke(1)).unwrap() {
        CommandResponse::LeaseRevoke(r) => assert_eq!(r.header.unwrap().revision, 5),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.current_revision(), 5);
    assert_eq!(live_keys(&store), vec![("keep".into(), 0)]);
    let applied = rx.try_recv().unwrap();
    let events: Vec<(i32, String, i64)> = applied
        .events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                e.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        })
        .collect();
    let delete = EventType::Delete as i32;
    assert_eq!(
        events,
        vec![(delete, "a".into(), 5), (delete, "b".into(), 5)],
        "deleted in key order, in one revision"
    );
    assert!(applied.events.iter().all(|e| e.prev_kv.is_some()));
    assert_eq!(store.events_between(5, 5, 0).unwrap(), applied.events);
    // Gone: puts naming it fail.
    assert_eq!(
        apply_one(&store, 6, put(put_lease("x", "1", 1))),
        Err(EtcdError::LeaseNotFound)
    );
}

#[tokio::test]
async fn reopening_restores_leases_and_attachments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = KvStore::open(Arc::new(RedbBackend::open(dir.path()).unwrap())).unwrap();
        store
            .apply(&[
                (1, grant(1, 60)),
                (2, grant(2, 3)),
                (3, grant(3, 9)),
                (4, put(put_lease("a", "1", 1))),
                (5, put(put_lease("b", "1", 2))),
                (6, put(put_lease("c", "1", 2))),
                // Moved, detached, deleted, revoked: none of these may come back attached.
                (7, put(put_lease("a", "2", 2))),
                (8, put(put_lease("b", "2", 0))),
                (9, put(put_lease("d", "1", 3))),
                (10, revoke(3)),
                (11, put(put_lease("e", "1", 1))),
            ])
            .unwrap();
        let del = Command::new(Request::DeleteRange(DeleteRangeRequest {
            key: "e".into(),
            ..Default::default()
        }));
        apply_one(&store, 12, del).unwrap();
        // Compaction must not bring a detached lease back either.
        apply_one(
            &store,
            13,
            Command::new(Request::Compaction(CompactionRequest {
                revision: store.current_revision(),
                physical: true,
            })),
        )
        .unwrap();
        store.wait_compacted(store.current_revision()).await;
        store.flush().unwrap();
    }
    let store = KvStore::open(Arc::new(RedbBackend::open(dir.path()).unwrap())).unwrap();
    assert_eq!(attached(&store, 1), Some(vec![]));
    assert_eq!(attached(&store, 2), Some(vec!["a".into(), "c".into()]));
    assert_eq!(attached(&store, 3), None);
    let table = store.lessor().lock();
    assert_eq!(table.get(2).map(crate::lease::Lease::ttl), Some(3));
    assert!(!table.is_primary(), "deadlines wait for the member to lead");
}
