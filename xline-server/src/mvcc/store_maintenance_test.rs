use std::sync::Arc;

use xline_proto::etcdserverpb::{
    AlarmRequest, AlarmType, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, alarm_request, request_op,
};

use crate::command::{Command, Request};
use crate::error::EtcdError;
use crate::mvcc::store::{ApplyOutput, CommandResponse, KvStore};
use crate::storage::{Backend, MemoryBackend};

fn put(key: &str, value: &str) -> Command {
    Command::new(Request::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }))
}

fn del(key: &str) -> Command {
    Command::new(Request::DeleteRange(DeleteRangeRequest {
        key: key.into(),
        ..Default::default()
    }))
}

fn compact(rev: i64) -> Command {
    Command::new(Request::Compaction(CompactionRequest {
        revision: rev,
        physical: false,
    }))
}

fn alarm(action: alarm_request::AlarmAction, member: u64, kind: AlarmType) -> Command {
    Command::new(Request::Alarm(AlarmRequest {
        action: action as i32,
        member_id: member,
        alarm: kind as i32,
    }))
}

/// Applies one command at log index `index`.
fn apply(store: &KvStore, index: u64, cmd: Command) -> ApplyOutput {
    store.apply(&[(index, cmd)]).unwrap().remove(0)
}

fn alarm_members(out: ApplyOutput) -> Vec<(u64, i32)> {
    match out {
        Ok(CommandResponse::Alarm(resp)) => {
            resp.alarms.iter().map(|a| (a.member_id, a.alarm)).collect()
        }
        other => panic!("not an alarm response: {other:?}"),
    }
}

fn history(store: &KvStore) {
    let cmds = [
        put("a", "1"),
        put("b", "2"),
        put("a", "3"),
        del("b"),
        put("c", "4"),
    ];
    for (i, cmd) in cmds.into_iter().enumerate() {
        apply(store, i as u64 + 1, cmd).unwrap();
    }
}

#[test]
fn alarms_answer_as_etcd_and_survive_reopening() {
    use alarm_request::AlarmAction::{Activate, Deactivate};
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let store = KvStore::open(Arc::clone(&backend)).unwrap();
    let nospace = AlarmType::Nospace as i32;
    assert_eq!(
        alarm_members(apply(&store, 1, alarm(Activate, 7, AlarmType::Nospace))),
        vec![(7, nospace)]
    );
    // Raising it again answers with the raised alarm and changes nothing.
    assert_eq!(
        alarm_members(apply(&store, 2, alarm(Activate, 7, AlarmType::Nospace))),
        vec![(7, nospace)]
    );
    // Activating NONE does nothing.
    assert!(alarm_members(apply(&store, 3, alarm(Activate, 7, AlarmType::None))).is_empty());
    apply(&store, 4, alarm(Activate, 3, AlarmType::Nospace)).unwrap();
    let listed: Vec<u64> = store
        .alarms(AlarmType::None)
        .iter()
        .map(|a| a.member_id)
        .collect();
    assert_eq!(listed, vec![3, 7]);
    assert!(store.alarms(AlarmType::Corrupt).is_empty());
    drop(store);

    let store = KvStore::open(Arc::clone(&backend)).unwrap();
    assert_eq!(store.alarms(AlarmType::Nospace).len(), 2);
    assert_eq!(
        alarm_members(apply(&store, 5, alarm(Deactivate, 3, AlarmType::Nospace))),
        vec![(3, nospace)]
    );
    // Deactivating an alarm that is not raised answers with nothing.
    assert!(alarm_members(apply(&store, 6, alarm(Deactivate, 3, AlarmType::Nospace))).is_empty());
    assert_eq!(store.alarms(AlarmType::None).len(), 1);
}

#[test]
fn nospace_refuses_what_adds_data_only() {
    use alarm_request::AlarmAction::{Activate, Deactivate};
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    apply(&store, 1, put("k", "v")).unwrap();
    apply(&store, 2, alarm(Activate, 1, AlarmType::Nospace)).unwrap();
    let rev = store.current_revision();

    assert_eq!(apply(&store, 3, put("k", "w")), Err(EtcdError::NoSpace));
    let grant = Command::new(Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 9 }));
    assert_eq!(apply(&store, 4, grant.clone()), Err(EtcdError::NoSpace));
    let nested_put = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                failure: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: "n".into(),
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    assert_eq!(
        apply(&store, 5, Command::new(Request::Txn(nested_put))),
        Err(EtcdError::NoSpace)
    );
    assert_eq!(store.current_revision(), rev, "nothing was written");

    // Deletes, delete-only txns, compactions and revocations go on.
    let delete_txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: "none".into(),
                    ..Default::default()
                },
            )),
        }],
        ..Default::default()
    };
    apply(&store, 6, Command::new(Request::Txn(delete_txn))).unwrap();
    apply(&store, 7, del("k")).unwrap();
    apply(&store, 8, compact(store.current_revision())).unwrap();
    let revoke = Command::new(Request::LeaseRevoke(LeaseRevokeRequest { id: 9 }));
    assert_eq!(apply(&store, 9, revoke), Err(EtcdError::LeaseNotFound));
    let range = store
        .range(&RangeRequest {
            key: "k".into(),
            ..Default::default()
        })
        .unwrap();
    assert!(range.kvs.is_empty());

    apply(&store, 10, alarm(Deactivate, 1, AlarmType::Nospace)).unwrap();
    apply(&store, 11, put("k", "back")).unwrap();
    apply(&store, 12, grant).unwrap();
}

#[test]
fn corrupt_refuses_every_write() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    apply(&store, 1, put("k", "v")).unwrap();
    apply(
        &store,
        2,
        alarm(alarm_request::AlarmAction::Activate, 1, AlarmType::Corrupt),
    )
    .unwrap();
    assert_eq!(apply(&store, 3, put("k", "w")), Err(EtcdError::Corrupt));
    assert_eq!(apply(&store, 4, del("k")), Err(EtcdError::Corrupt));
    assert_eq!(apply(&store, 5, compact(2)), Err(EtcdError::Corrupt));
    // Reads still work.
    let range = store
        .range(&RangeRequest {
            key: "k".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(range.kvs[0].value, b"v");
}

#[test]
fn hash_kv_of_a_revision_does_not_move_and_checks_bounds() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    history(&store);
    let now = store.hash_kv(0).unwrap();
    assert_eq!(now.current_rev, 6);
    assert_eq!(now.hash_rev, 6);
    assert_eq!(now.compact_rev, -1);
    assert_eq!(store.hash_kv(6).unwrap(), now);
    let at4 = store.hash_kv(4).unwrap();
    assert_ne!(at4.hash, now.hash);
    assert_eq!(at4.hash_rev, 4);

    apply(&store, 10, put("d", "5")).unwrap();
    assert_eq!(store.hash_kv(4).unwrap().hash, at4.hash);
    assert_eq!(store.hash_kv(6).unwrap().hash, now.hash);
    assert_ne!(store.hash_kv(0).unwrap().hash, now.hash);
    assert_eq!(
        store.hash_kv(8).unwrap_err().to_string(),
        EtcdError::FutureRev.to_string()
    );

    apply(&store, 11, compact(4)).unwrap();
    for rev in [3, 4] {
        assert_eq!(
            store.hash_kv(rev).unwrap_err().to_string(),
            EtcdError::Compacted.to_string()
        );
    }
    let after = store.hash_kv(6).unwrap();
    assert_eq!(after.compact_rev, 4);
    assert_eq!(after.current_rev, 7);
    // Physical compaction (waited for by the hash) does not change it.
    assert_eq!(store.hash_kv(6).unwrap(), after);
}

#[test]
fn members_with_the_same_history_agree_on_both_hashes() {
    let a = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    let b = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    history(&a);
    history(&b);
    apply(&a, 20, compact(3)).unwrap();
    apply(&b, 20, compact(3)).unwrap();
    assert_eq!(a.hash_kv(0).unwrap(), b.hash_kv(0).unwrap());
    assert_eq!(a.hash().unwrap(), b.hash().unwrap());
    // The applied index is left out of Hash (as etcd leaves out its consistent index)...
    apply(&a, 30, del("missing")).unwrap();
    apply(&b, 31, del("missing")).unwrap();
    assert_eq!(a.hash().unwrap(), b.hash().unwrap());
    // ...but the data is not.
    apply(&a, 32, put("x", "1")).unwrap();
    assert_ne!(a.hash().unwrap().0, b.hash().unwrap().0);
}

#[test]
fn downgrade_state_is_stored() {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    assert!(!store.downgrade_info().unwrap().enabled);
    let set = |enabled: bool, target: &str| {
        Command::new(Request::Downgrade(
            xline_proto::etcdserverpb::DowngradeInfo {
                enabled,
                target_version: target.into(),
            },
        ))
    };
    assert_eq!(
        apply(&store, 1, set(true, "3.4.0")),
        Ok(CommandResponse::DowngradeSet)
    );
    let info = store.downgrade_info().unwrap();
    assert!(info.enabled);
    assert_eq!(info.target_version, "3.4.0");
    apply(&store, 2, set(false, "3.4.0")).unwrap();
    let info = store.downgrade_info().unwrap();
    assert!(!info.enabled);
    assert_eq!(info.target_version, "");
}
