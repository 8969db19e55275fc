use std::collections::{BTreeMap, BTreeSet};
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
const ETCD_SNAPSHOT: &[u8] = include_bytes!("testdata/etcd-3.4.23-snapshot.db");

/// What `etcdctl snapshot status` computes: CRC-32C of bucket names and pairs, the main
/// revision of the last `key` entry, and the number of pairs.
fn status(buckets: &[Bucket]) -> (u32, i64, usize) {
    let mut hash = 0u32;
    let mut revision = 0;
    let mut total = 0;
    for b in buckets {
        hash = crc32c::crc32c_append(hash, &b.name);
        for (k, v) in &b.pairs {
            hash = crc32c::crc32c_append(hash, k);
            hash = crc32c::crc32c_append(hash, v);
            if b.name == b"key" {
                revision = parse_etcd_revision(k).map_or(0, |(r, _)| r.main);
            }
            total += 1;
        }
    }
    (hash, revision, total)
}

/// bbolt's `Tx.Check`, as `etcdctl snapshot status` runs it: every page below the high-water
/// mark is a meta page, the freelist, or reachable from exactly one place in the tree.
fn check_pages(file: &[u8]) {
    let meta = read_meta(file).unwrap();
    let ps = meta.page_size;
    assert_eq!(file.len() % ps, 0);
    assert_eq!(meta.high_water as usize, file.len() / ps);
    let mut reached = BTreeSet::from([0u64, 1]);
    let freelist = get_u64(&file[PAGE_HEADER..], 32);
    let header = &file[freelist as usize * ps..];
    assert_eq!(get_u16(header, 8), FREELIST_PAGE);
    assert_eq!(get_u16(header, 10), 0, "nothing is free");
    for i in 0..=u64::from(get_u32(header, 12)) {
        assert!(reached.insert(freelist + i));
    }
    fn visit(file: &[u8], ps: usize, id: u64, reached: &mut BTreeSet<u64>, buckets: bool) {
        let page = &file[id as usize * ps..];
        assert_eq!(get_u64(page, 0), id);
        for i in 0..=u64::from(get_u32(page, 12)) {
            assert!(reached.insert(id + i), "page {} reached twice", id + i);
        }
        let mut keys = Vec::new();
        match get_u16(page, 8) {
            BRANCH_PAGE => {
                for i in 0..get_u16(page, 10) as usize {
                    let at = PAGE_HEADER + ELEMENT * i;
                    let pos = at + get_u32(page, at) as usize;
                    keys.push(page[pos..pos + get_u32(page, at + 4) as usize].to_vec());
                    let child = get_u64(page, at + 8);
                    // A branch names each child by its first key.
                    let child_page = &file[child as usize * ps..];
                    assert_eq!(keys.last().map(Vec::as_slice), Some(first_key(child_page)));
                    visit(file, ps, child, reached, buckets);
                }
            }
            LEAF_PAGE => {
                let mut elements = Vec::new();
                leaf_elements(
                    &page[..(get_u32(page, 12) as usize + 1) * ps],
                    &mut elements,
                )
                .unwrap();
                for (flags, key, value) in elements {
                    assert_eq!(flags == BUCKET_LEAF, buckets);
                    if buckets && get_u64(&value, 0) != 0 {
                        visit(file, ps, get_u64(&value, 0), reached, false);
                    }
                    keys.push(key);
                }
            }
            other => panic!("page {id} has flags {other}"),
        }
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys out of order");
    }
    /// The first key of a branch or leaf page.
    fn first_key(page: &[u8]) -> &[u8] {
        let at = PAGE_HEADER;
        let (pos, len) = if get_u16(page, 8) == BRANCH_PAGE {
            (get_u32(page, at), get_u32(page, at + 4))
        } else {
            (get_u32(page, at + 4), get_u32(page, at + 8))
        };
        let start = at + pos as usize;
        &page[start..start + len as usize]
    }
    visit(file, ps, meta.root, &mut reached, true);
    assert_eq!(
        reached,
        (0..meta.high_water).collect::<BTreeSet<_>>(),
        "every page is reachable"
    );
}

fn sorted(mut buckets: Vec<Bucket>) -> Vec<Bucket> {
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    for b in &mut buckets {
        b.pairs.sort();
    }
    buckets
}

/// Buckets that make every kind of page: inline buckets (empty, small), values spanning
/// overflow pages, and enough pairs for two levels of branch pages above the leaves.
fn varied_buckets() -> Vec<Bucket> {
    let mut big = Bucket::new("big");
    for (i, len) in [0usize, 1, 4000, 4081, 4096, 10_000, 100_000]
        .iter()
        .enumerate()
    {
        big.pairs
            .push((format!("v{i}").into_bytes(), vec![i as u8 + 1; *len]));
    }
    let mut many = Bucket::new("many");
    for i in 0..20_000u64 {
        many.pairs.push((
            i.to_be_bytes().to_vec(),
            format!("value {i:>20}").into_bytes(),
        ));
    }
    let small = Bucket {
        name: b"small".to_vec(),
        pairs: vec![
            (b"b".to_vec(), b"2".to_vec()),
            (b"a".to_vec(), b"1".to_vec()),
        ],
    };
    vec![small, big, Bucket::new("empty"), many]
}

#[test]
fn files_round_trip_with_inline_buckets_overflow_pages_and_deep_trees() {
    let buckets = varied_buckets();
    let file = write_db(&buckets, 9);
    check_pages(&file);
    assert_eq!(read_db(&file).unwrap(), sorted(buckets.clone()));
    // A trailing checksum (a snapshot file) is ignored.
    let mut with_sha = file.clone();
    with_sha.extend_from_slice(&Sha256::digest(&file));
    assert_eq!(read_db(&with_sha).unwrap(), sorted(buckets));

    // The many pairs need a branch page over branch pages.
    let root_page = &file[read_meta(&file).unwrap().root as usize * PAGE_SIZE..];
    let mut roots = Vec::new();
    leaf_elements(&root_page[..PAGE_SIZE], &mut roots).unwrap();
    let many_root = get_u64(&roots.iter().find(|e| e.1 == b"many").unwrap().2, 0);
    let many_page = &file[many_root as usize * PAGE_SIZE..];
    assert_eq!(get_u16(many_page, 8), BRANCH_PAGE);
    let child = get_u64(many_page, PAGE_HEADER + 8);
    assert_eq!(get_u16(&file[child as usize * PAGE_SIZE..], 8), BRANCH_PAGE);
    // Small and empty buckets are inline; the others have pages.
    for (_, name, value) in &roots {
        let inline = get_u64(value, 0) == 0;
        assert_eq!(inline, name == b"small" || name == b"empty", "{name:?}");
    }
}

#[test]
fn small_databases_take_four_pages() {
    let file = write_db(&[Bucket::new("a"), Bucket::new("b")], 1);
    assert_eq!(file.len(), 4 * PAGE_SIZE);
    check_pages(&file);
    let empty = write_db(&[], 1);
    check_pages(&empty);
    assert_eq!(read_db(&empty).unwrap(), vec![]);
}

#[test]
fn damaged_files_are_refused() {
    let file = write_db(&[Bucket::new("a")], 3);
    assert!(read_db(b"not a database").is_err());
    assert!(read_db(&vec![0u8; 3 * PAGE_SIZE]).is_err());
    // One damaged meta page: the other one serves.
    let mut one_bad = file.clone();
    one_bad[PAGE_HEADER + 20] ^= 1;
    assert_eq!(read_db(&one_bad).unwrap(), read_db(&file).unwrap());
    let mut both_bad = one_bad.clone();
    both_bad[PAGE_SIZE + PAGE_HEADER + 20] ^= 1;
    let err = read_db(&both_bad).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    // A root page pointing past the end.
    assert!(read_db(&file[..3 * PAGE_SIZE]).is_err());
}

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
    assert_eq!(status(&buckets), (382_033_196, 7, 14));

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
    check_pages(&file);
    let buckets = read_db(&file).unwrap();
    let (_, revision, _) = status(&buckets);
    assert_eq!(revision, src.current_revision());

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
    for (name, buckets) in [("store", ours), ("varied", varied_buckets())] {
        let file = write_db(&buckets, 2);
        let path = dir.path().join(format!("{name}.db"));
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
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (hash, revision, total) = status(&read_db(&file).unwrap());
        assert_eq!(json["hash"], u64::from(hash), "{name}");
        assert_eq!(json["revision"], revision, "{name}");
        assert_eq!(json["totalKey"], total as u64, "{name}");
        assert_eq!(json["totalSize"], file.len() as u64, "{name}");
    }
}
