use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use xline_proto::etcdserverpb::{
    AlarmRequest, AlarmType, AuthRoleAddRequest, AuthUserAddRequest, CompactionRequest,
    DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, alarm_request,
};

use super::etcd::{etcd_buckets, parse_etcd_revision, tables_for_new_cluster};
use super::*;
use crate::command::{Command, Request};
use crate::mvcc::store::KvStore;
use crate::storage::MemoryBackend;
use crate::storage::backend::WriteBatch;

/// A snapshot `etcdctl snapshot save` wrote from Debian's etcd 3.4.23 after: put a 1, put a 2,
/// put b x, del b, lease grant 600, put leased l --lease, compact 3, put big (10000 `v`s),
/// user add root, role add r1, role grant-permission r1 read k1.
const ETCD_SNAPSHOT: &[u8] = include_bytes!("../../../xline-bolt/testdata/etcd-3.4.23-snapshot.db");

#[tokio::test]
async fn reads_a_snapshot_saved_from_etcd() {
    let buckets = read_db(ETCD_SNAPSHOT).unwrap();
    let names: Vec<_> = buckets
        .iter()
        .map(|b| String::from_utf8_lossy(&b.name).into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "alarm",
            "auth",
            "authRoles",
            "authUsers",
            "cluster",
            "key",
            "lease",
            "members",
            "members_removed",
            "meta"
        ]
    );
    // `etcdctl snapshot status -w json` said {"hash":382033196,"revision":7,"totalKey":14}.
    let s = status_of(ETCD_SNAPSHOT).unwrap();
    assert_eq!((s.hash, s.revision, s.total_key), (382_033_196, 7, 14));

    let key = buckets.iter().find(|b| b.name == b"key").unwrap();
    let revs: Vec<_> = key
        .pairs
        .iter()
        .map(|(k, _)| parse_etcd_revision(k).unwrap())
        .map(|(r, t)| (r.main, t))
        .collect();
    assert_eq!(
        revs,
        [(3, false), (4, false), (5, true), (6, false), (7, false)]
    );

    // Restored into xline: the same keys, values and revisions.
    let store = store_from_buckets(&buckets);
    assert_eq!(store.current_revision(), 7);
    assert_eq!(store.compact_revision(), 3);
    assert_eq!(get(&store, "a", 0), Some((b"2".to_vec(), 3)));
    assert_eq!(get(&store, "b", 4), Some((b"x".to_vec(), 4)));
    assert_eq!(get(&store, "b", 0), None);
    assert_eq!(get(&store, "big", 0), Some((vec![b'v'; 10_000], 7)));
    let leased = range(&store, "leased", 0).kvs.remove(0);
    assert_ne!(leased.lease, 0);
    assert!(store.lessor().contains(leased.lease));
    let md = tonic::metadata::MetadataMap::new();
    assert_eq!(store.auth().user_list(&md).await.unwrap(), ["root"]);
    assert_eq!(store.auth().role_list(&md).await.unwrap(), ["r1"]);
}

fn put(key: &str, value: &str, lease: i64) -> Command {
    Command::new(Request::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    }))
}

fn range(store: &KvStore, key: &str, rev: i64) -> xline_proto::etcdserverpb::RangeResponse {
    store
        .range(&RangeRequest {
            key: key.into(),
            revision: rev,
            ..Default::default()
        })
        .unwrap()
}

fn get(store: &KvStore, key: &str, rev: i64) -> Option<(Vec<u8>, i64)> {
    range(store, key, rev)
        .kvs
        .into_iter()
        .next()
        .map(|kv| (kv.value, kv.mod_revision))
}

/// A new-cluster store restored from etcd's buckets, as `xline snapshot restore` builds one.
fn store_from_buckets(buckets: &[Bucket]) -> Arc<KvStore> {
    let backend = Arc::new(MemoryBackend::new());
    let mut wb = WriteBatch::new();
    for (table, pairs) in tables_for_new_cluster(buckets).unwrap() {
        for (k, v) in pairs {
            wb.put(table, k, v);
        }
    }
    crate::storage::backend::Backend::write(&*backend, wb, true).unwrap();
    KvStore::open(backend).unwrap()
}

/// A store with history, a compaction, a deletion, a lease, a user, a role and an alarm.
async fn source() -> Arc<KvStore> {
    let store = KvStore::open(Arc::new(MemoryBackend::new())).unwrap();
    let batch = vec![
        (1, put("a", "1", 0)),
        (2, put("a", "2", 0)),
        (3, put("b", "x", 0)),
        (
            4,
            Command::new(Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 7 })),
        ),
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
        (9, put("big", &"v".repeat(20_000), 0)),
        (
            10,
            Command::new(Request::UserAdd(AuthUserAddRequest {
                name: "u1".into(),
                hashed_password: bcrypt::hash("p", 4).unwrap(),
                ..Default::default()
            })),
        ),
        (
            11,
            Command::new(Request::RoleAdd(AuthRoleAddRequest { name: "r1".into() })),
        ),
        (
            12,
            Command::new(Request::Alarm(AlarmRequest {
                action: alarm_request::AlarmAction::Activate as i32,
                member_id: 5,
                alarm: AlarmType::Nospace as i32,
            })),
        ),
    ];
    for out in store.apply(&batch).unwrap() {
        out.unwrap();
    }
    store.wait_compacted(3).await;
    store
}

#[tokio::test]
async fn xline_state_round_trips_through_etcd_layout() {
    let src = source().await;
    let tables = src.snapshot_tables().unwrap();
    let file = write_db(&etcd_buckets(&tables).unwrap(), 2);
    check(&file).unwrap();
    let buckets = read_db(&file).unwrap();
    assert_eq!(status_of(&file).unwrap().revision, src.current_revision());

    let dst = store_from_buckets(&buckets);
    assert_eq!(dst.current_revision(), src.current_revision());
    assert_eq!(dst.compact_revision(), 3);
    assert_eq!(dst.applied_index(), 0, "a new cluster's log starts empty");
    for rev in [0, 3, 4, 5, 6, 7] {
        for key in ["a", "b", "leased", "big"] {
            assert_eq!(get(&dst, key, rev), get(&src, key, rev), "{key}@{rev}");
        }
    }
    assert!(dst.lessor().contains(7));
    let md = tonic::metadata::MetadataMap::new();
    assert_eq!(dst.auth().user_list(&md).await.unwrap(), ["u1"]);
    assert_eq!(dst.auth().role_list(&md).await.unwrap(), ["r1"]);
    assert_eq!(
        dst.alarms(AlarmType::None),
        src.alarms(AlarmType::None),
        "alarms are kept"
    );
    // The members and applied index of the old cluster are left out.
    let restored: BTreeMap<_, _> = tables_for_new_cluster(&buckets)
        .unwrap()
        .into_iter()
        .collect();
    assert!(!restored.contains_key(&crate::storage::schema::Table::Members));
}

#[test]
fn members_are_etcd_json() {
    let member = xline_proto::etcdserverpb::Member {
        id: 0x8e9e_05c5_2164_694d,
        name: "m<1>".into(),
        peer_ur_ls: vec!["http://127.0.0.1:2380".into()],
        client_ur_ls: vec![],
        is_learner: false,
    };
    let pairs = vec![(
        member.id.to_be_bytes().to_vec(),
        prost::Message::encode_to_vec(&member),
    )];
    let buckets = etcd_buckets(&vec![(crate::storage::schema::Table::Members, pairs)]).unwrap();
    let members = buckets.iter().find(|b| b.name == b"members").unwrap();
    assert_eq!(
        members.pairs,
        [(
            b"8e9e05c52164694d".to_vec(),
            br#"{"id":10276657743932975437,"peerURLs":["http://127.0.0.1:2380"],"name":"m\u003c1\u003e"}"#
                .to_vec()
        )]
    );
}

/// `etcdctl snapshot status` reads our files and computes what we expect (skipped without
/// etcdctl).
#[tokio::test]
async fn etcdctl_reads_our_snapshots() {
    if std::process::Command::new("etcdctl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("etcdctl not installed: skipped");
        return;
    }
    let src = source().await;
    let ours = etcd_buckets(&src.snapshot_tables().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write_db(&ours, 2);
    let path = dir.path().join("store.db");
    let mut with_sha = file.clone();
    with_sha.extend_from_slice(&Sha256::digest(&file));
    std::fs::write(&path, &with_sha).unwrap();
    let out = std::process::Command::new("etcdctl")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = status(&path).unwrap();
    assert_eq!(json["hash"], u64::from(s.hash));
    assert_eq!(json["revision"], s.revision);
    assert_eq!(json["totalKey"], s.total_key);
    assert_eq!(json["totalSize"], s.total_size);
    assert_eq!(s.total_size, file.len() as u64);
}
