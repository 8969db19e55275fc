//! Maintenance on one member: Hash, HashKV, Defragment, Snapshot (the stream, `etcdctl snapshot
//! save` and a restore, and snapshots restored across xline and etcd), alarms raised by RPC and by the quota, and Downgrade. Everything but
//! Downgrade (which etcd 3.4 lacks) passes against Debian's etcd too (`XLINE_TEST_SERVER=etcd`);
//! one test runs both servers and compares their HashKV numbers.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{ServerKind, ServerOpts, TestServer, expect_status, is_etcd, kvs, snapshot};
use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Client, CompactionOptions, Compare, CompareOp,
    DeleteOptions, DowngradeOptions, GetOptions, LeaseGrantOptions, PutOptions, Txn, TxnOp,
};
use sha2::{Digest, Sha256};
use tonic::Code;

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

/// A history with overwrites, a deletion, a txn, a leased key and a compaction; returns the
/// lease id.
async fn history(c: &mut Client) -> i64 {
    let lease = 0x1234;
    c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(lease)))
        .await
        .unwrap();
    c.put("a", "1", None).await.unwrap(); // 2
    c.put("b", "2", None).await.unwrap(); // 3
    c.put("a", "3", None).await.unwrap(); // 4
    c.delete("b", None).await.unwrap(); // 5
    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "3")])
        .and_then([TxnOp::put("c", "4", None), TxnOp::delete("a", None)]);
    c.txn(txn).await.unwrap(); // 6
    c.put("leased", "l", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap(); // 7
    c.put("a", "5", None).await.unwrap(); // 8
    c.compact(4, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    c.put("d", "6", None).await.unwrap(); // 9
    lease
}

async fn member_id(c: &mut Client) -> u64 {
    c.status().await.unwrap().header().unwrap().member_id()
}

#[tokio::test]
async fn hash_kv_covers_a_revision_and_checks_bounds() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    history(&mut c).await;
    let mut m = c.maintenance_client();
    let now = m.hash_kv(0).await.unwrap();
    assert_eq!(now.header().unwrap().revision(), 9);
    assert_eq!(now.compact_version(), 4);
    assert_eq!(m.hash_kv(9).await.unwrap().hash(), now.hash());
    let at6 = m.hash_kv(6).await.unwrap();
    assert_ne!(at6.hash(), now.hash());
    if !is_etcd() {
        assert_eq!(at6.hash_revision(), 6);
        assert_eq!(now.hash_revision(), 9);
    }
    // Later writes change the current hash, not that of an earlier revision.
    c.put("e", "7", None).await.unwrap();
    assert_eq!(m.hash_kv(6).await.unwrap().hash(), at6.hash());
    assert_eq!(m.hash_kv(9).await.unwrap().hash(), now.hash());
    assert_ne!(m.hash_kv(0).await.unwrap().hash(), now.hash());
    for rev in [3, 4] {
        expect_status(
            m.hash_kv(rev).await,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
    }
    expect_status(
        m.hash_kv(11).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
}

/// The same history on xline and on etcd hashes to the same HashKV numbers: the definition and
/// the encoding are etcd's.
#[tokio::test]
async fn hash_kv_equals_etcds() {
    let xline = TestServer::start_kind(ServerKind::Xline, ServerOpts::new()).await;
    let etcd = TestServer::start_kind(ServerKind::Etcd, ServerOpts::new()).await;
    let mut hashes = Vec::new();
    for s in [&xline, &etcd] {
        let mut c = s.client().await;
        c.put("a", "1", None).await.unwrap();
        let before = c.maintenance_client().hash_kv(0).await.unwrap().hash();
        history(&mut c).await;
        let mut m = c.maintenance_client();
        let mut got = vec![before];
        for rev in [0, 5, 7, 9, 10] {
            got.push(m.hash_kv(rev).await.unwrap().hash());
        }
        c.delete("", Some(DeleteOptions::new().with_all_keys()))
            .await
            .unwrap();
        // Nothing is visible at the hashed revision any more, so (as in etcd) every revision
        // still stored counts: a physical compaction makes that the same set on both servers.
        c.compact(10, Some(CompactionOptions::new().with_physical()))
            .await
            .unwrap();
        got.push(m.hash_kv(0).await.unwrap().hash());
        hashes.push(got);
    }
    assert_eq!(hashes[0], hashes[1], "xline's HashKV numbers, then etcd's");
}

#[tokio::test]
async fn hash_is_stable_until_a_write() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    c.put("k", "v", None).await.unwrap();
    let mut m = c.maintenance_client();
    let first = m.hash().await.unwrap();
    assert_eq!(first.header().unwrap().revision(), 2);
    assert_eq!(m.hash().await.unwrap().hash(), first.hash());
    c.put("k", "w", None).await.unwrap();
    assert_ne!(m.hash().await.unwrap().hash(), first.hash());
}

/// Writes `n` values of `size` bytes under `prefix`.
async fn fill(c: &mut Client, prefix: &str, n: usize, size: usize) {
    let value = vec![b'x'; size];
    for i in 0..n {
        c.put(format!("{prefix}{i:05}"), value.clone(), None)
            .await
            .unwrap();
    }
}

/// Deletes everything and compacts physically at the revision reached.
async fn delete_all_and_compact(c: &mut Client) {
    let resp = c
        .delete("", Some(DeleteOptions::new().with_all_keys()))
        .await
        .unwrap();
    let rev = resp.header().unwrap().revision();
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
}

#[tokio::test]
async fn defragment_gives_space_back() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    fill(&mut c, "big/", 200, 16 * 1024).await;
    delete_all_and_compact(&mut c).await;
    let mut m = c.maintenance_client();
    let before = m.status().await.unwrap();
    assert!(
        before.raft_used_db_size() < before.db_size(),
        "deleted data is free space: in use {} of {}",
        before.raft_used_db_size(),
        before.db_size()
    );
    m.defragment().await.unwrap();
    let after = m.status().await.unwrap();
    assert!(
        after.db_size() < before.db_size() / 2,
        "defragmentation shrank the file: {} -> {}",
        before.db_size(),
        after.db_size()
    );
    assert!(after.raft_used_db_size() <= after.db_size());
    // Nothing was lost: writes and reads go on.
    c.put("after", "defrag", None).await.unwrap();
    let r = c.get("after", None).await.unwrap();
    assert_eq!(r.kvs()[0].value(), b"defrag");
}

#[tokio::test]
async fn snapshot_stream_ends_with_its_sha256() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    fill(&mut c, "k/", 20, 8 * 1024).await;
    let mut stream = c.maintenance_client().snapshot().await.unwrap();
    let mut chunks = Vec::new();
    while let Some(msg) = stream.message().await.unwrap() {
        chunks.push((msg.remaining_bytes(), msg.blob().to_vec()));
    }
    let (last_remaining, sha) = chunks.pop().unwrap();
    assert_eq!(last_remaining, 0);
    assert!(chunks.len() > 1, "160 KiB come in several chunks");
    let total: usize = chunks.iter().map(|(_, b)| b.len()).sum();
    let mut sent = 0;
    let mut hasher = Sha256::new();
    for (remaining, blob) in &chunks {
        sent += blob.len();
        assert_eq!(*remaining as usize, total - sent);
        hasher.update(blob);
    }
    assert_eq!(sha, hasher.finalize().to_vec());
}

/// Every key with its revisions, the revision, the leases, and an old revision's view.
async fn contents(c: &mut Client) -> (Vec<common::Kv>, i64, Vec<i64>, Vec<common::Kv>) {
    let all = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    let old = c
        .get("", Some(GetOptions::new().with_all_keys().with_revision(6)))
        .await
        .unwrap();
    let mut leases: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(etcd_client::LeaseStatus::id)
        .collect();
    leases.sort_unstable();
    (
        kvs(all.kvs()),
        all.header().unwrap().revision(),
        leases,
        kvs(old.kvs()),
    )
}

/// Stops `s`, replaces its data directory by a restore of `file`, and starts it again.
async fn restore_into(s: &mut TestServer, file: &Path) {
    s.stop();
    std::fs::remove_dir_all(s.data_dir()).unwrap();
    let initial = format!("{}={}", s.name(), s.peer_url());
    snapshot::restore(
        s.kind(),
        file,
        &s.data_dir(),
        s.name(),
        &initial,
        &s.peer_url(),
    );
    s.restart().await;
}

#[tokio::test]
async fn etcdctl_snapshot_save_then_restore_keeps_everything() {
    let source = TestServer::start_default().await;
    let mut c = source.client().await;
    let lease = history(&mut c).await;
    let expected = contents(&mut c).await;
    assert_eq!(expected.1, 9);
    assert_eq!(expected.2, vec![lease]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot::save(&source.endpoint(), &file);

    let mut target = TestServer::start_default().await;
    target.client().await.put("other", "x", None).await.unwrap();
    restore_into(&mut target, &file).await;
    let mut t = target.client().await;
    assert_eq!(contents(&mut t).await, expected);
    expect_status(
        t.get("a", Some(GetOptions::new().with_revision(3))).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    let ttl = t.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() > 0, "the lease lives on: {ttl:?}");
    // The restored member goes on from the snapshot's revision.
    let r = t.put("new", "v", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 10);
}

/// `etcdctl snapshot status -w json` of a snapshot file.
fn snapshot_status(file: &Path) -> serde_json::Value {
    let out = std::process::Command::new("etcdctl")
        .args(["snapshot", "status", "-w", "json"])
        .arg(file)
        .output()
        .expect("run etcdctl");
    assert!(
        out.status.success(),
        "etcdctl snapshot status {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Snapshots are etcd's files both ways: the same history saved from xline and from etcd gives
/// the same revision and number of keys in `etcdctl snapshot status`; xline's snapshot restored
/// with `etcdctl snapshot restore` makes an etcd that serves xline's keys, revisions and leases,
/// and etcd's restored with `xline snapshot restore` makes an xline that serves etcd's.
#[tokio::test]
async fn snapshots_move_between_xline_and_etcd() {
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("etcd is not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut saved = Vec::new();
    for kind in [ServerKind::Xline, ServerKind::Etcd] {
        let s = TestServer::start_kind(kind, ServerOpts::new()).await;
        let mut c = s.client().await;
        history(&mut c).await;
        // Enough for branch pages above the leaves, and a value spanning overflow pages.
        fill(&mut c, "many/", 300, 1000).await;
        fill(&mut c, "huge/", 1, 20_000).await;
        c.user_add("u1", "pw", None).await.unwrap();
        c.role_add("r1").await.unwrap();
        let expected = contents(&mut c).await;
        let file = dir.path().join(format!("{kind:?}.db"));
        snapshot::save(&s.endpoint(), &file);
        saved.push((file, expected));
    }
    let (xline_file, xline_contents) = &saved[0];
    let (etcd_file, etcd_contents) = &saved[1];
    assert_eq!(xline_contents, etcd_contents, "the same history on both");
    let (xs, es) = (snapshot_status(xline_file), snapshot_status(etcd_file));
    eprintln!("snapshot status: xline {xs}, etcd {es}");
    assert_eq!(xs["revision"], 310);
    assert_eq!(xline_contents.1, 310);
    assert_eq!(xs["revision"], es["revision"]);
    assert_eq!(xs["totalKey"], es["totalKey"]);

    for (kind, file) in [
        (ServerKind::Etcd, xline_file),
        (ServerKind::Xline, etcd_file),
    ] {
        let mut target = TestServer::start_kind(kind, ServerOpts::new()).await;
        restore_into(&mut target, file).await;
        let mut t = target.client().await;
        assert_eq!(&contents(&mut t).await, xline_contents, "{kind:?} restored");
        assert_eq!(t.user_list().await.unwrap().users(), ["u1"]);
        assert_eq!(t.role_list().await.unwrap().roles(), ["r1"]);
        let r = t.put("new", "v", None).await.unwrap();
        assert_eq!(r.header().unwrap().revision(), 311, "{kind:?} goes on");
    }
}

/// A snapshot's `members` bucket lists every member of the cluster as etcd does (hex id -> JSON),
/// also one that was added but has not started.
#[tokio::test]
async fn snapshot_lists_every_member_as_etcd() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let own = member_id(&mut c).await;
    let learner = c
        .member_add(
            ["http://127.0.0.1:1"],
            Some(etcd_client::MemberAddOptions::new().with_is_learner()),
        )
        .await
        .unwrap()
        .member()
        .unwrap()
        .id();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    snapshot::save(&s.endpoint(), &file);
    let buckets = xline_server::bolt::read_db(&std::fs::read(&file).unwrap()).unwrap();
    let members = &buckets.iter().find(|b| b.name == b"members").unwrap().pairs;
    let got: std::collections::BTreeMap<String, serde_json::Value> = members
        .iter()
        .map(|(k, v)| {
            let key = String::from_utf8(k.clone()).unwrap();
            (key, serde_json::from_slice(v).unwrap())
        })
        .collect();
    let expected = std::collections::BTreeMap::from([
        (
            format!("{own:x}"),
            serde_json::json!({"id": own, "peerURLs": [s.peer_url()], "name": s.name(),
                "clientURLs": [s.endpoint()]}),
        ),
        (
            format!("{learner:x}"),
            serde_json::json!({"id": learner, "peerURLs": ["http://127.0.0.1:1"],
                "isLearner": true}),
        ),
    ]);
    assert_eq!(got, expected);
}

#[tokio::test]
async fn alarm_activated_by_rpc_caps_writes_until_deactivated() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    c.put("k", "v", None).await.unwrap();
    let id = member_id(&mut c).await;
    let mut m = c.maintenance_client();
    let member = || {
        let mut o = AlarmOptions::new();
        o.with_member(id);
        Some(o)
    };
    let raised = m
        .alarm(AlarmAction::Activate, AlarmType::Nospace, member())
        .await
        .unwrap();
    let alarms: Vec<(u64, AlarmType)> = raised
        .alarms()
        .iter()
        .map(|a| (a.member_id(), a.alarm()))
        .collect();
    assert_eq!(alarms, vec![(id, AlarmType::Nospace)]);
    let listed = m
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    assert_eq!(listed.alarms().len(), 1);
    let status = m.status().await.unwrap();
    assert!(
        status.errors().iter().any(|e| e.contains("alarm:NOSPACE")),
        "{:?}",
        status.errors()
    );

    expect_status(
        c.put("k", "w", None).await,
        Code::ResourceExhausted,
        NOSPACE,
    );
    expect_status(
        c.txn(Txn::new().and_then([TxnOp::put("t", "v", None)]))
            .await,
        Code::ResourceExhausted,
        NOSPACE,
    );
    expect_status(
        c.lease_grant(60, None).await,
        Code::ResourceExhausted,
        NOSPACE,
    );
    // Reads, deletes and compactions still work.
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v");
    assert_eq!(c.delete("k", None).await.unwrap().deleted(), 1);
    c.compact(3, None).await.unwrap();

    let cleared = m
        .alarm(AlarmAction::Deactivate, AlarmType::Nospace, member())
        .await
        .unwrap();
    assert_eq!(cleared.alarms().len(), 1);
    let again = m
        .alarm(AlarmAction::Deactivate, AlarmType::Nospace, member())
        .await
        .unwrap();
    assert!(again.alarms().is_empty());
    assert!(
        m.alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .unwrap()
            .alarms()
            .is_empty()
    );
    c.put("k", "back", None).await.unwrap();
}

#[tokio::test]
async fn quota_raises_nospace_and_disarm_after_defrag_frees_it() {
    let quota = 4 * 1024 * 1024;
    let s =
        TestServer::start(ServerOpts::new().arg("--quota-backend-bytes", &quota.to_string())).await;
    let mut c = s.client().await;
    let id = member_id(&mut c).await;
    let value = vec![b'x'; 64 * 1024];
    let mut refused = None;
    for i in 0..400 {
        match c.put(format!("fill/{i:05}"), value.clone(), None).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    expect_status::<()>(
        Err(refused.expect("the quota refused a write")),
        Code::ResourceExhausted,
        NOSPACE,
    );
    let mut m = c.maintenance_client();
    let listed = m
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    let alarms: Vec<(u64, AlarmType)> = listed
        .alarms()
        .iter()
        .map(|a| (a.member_id(), a.alarm()))
        .collect();
    assert_eq!(alarms, vec![(id, AlarmType::Nospace)]);
    // Even a small write is refused now; reads are served.
    expect_status(
        c.put("small", "v", None).await,
        Code::ResourceExhausted,
        NOSPACE,
    );
    let r = c
        .get(
            "fill/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert!(r.count() > 10);

    delete_all_and_compact(&mut c).await;
    m.defragment().await.unwrap();
    assert!(m.status().await.unwrap().db_size() < quota);
    // `etcdctl alarm disarm` deactivates each listed alarm.
    for alarm in listed.alarms() {
        let mut o = AlarmOptions::new();
        o.with_member(alarm.member_id());
        m.alarm(AlarmAction::Deactivate, alarm.alarm(), Some(o))
            .await
            .unwrap();
    }
    c.put("small", "v", None).await.unwrap();
}

/// etcd 3.4 has no Downgrade; xline answers as etcd 3.5 does for a cluster at 3.5.
#[tokio::test]
async fn downgrade_answers_as_etcd_3_5() {
    if is_etcd() {
        return;
    }
    let s = TestServer::start_default().await;
    let mut m = s.client().await.maintenance_client();
    let v = m
        .downgrade(DowngradeOptions::Validate("3.4".into()))
        .await
        .unwrap();
    assert_eq!(v.version(), "3.5.0");
    expect_status(
        m.downgrade(DowngradeOptions::Validate("3.3.0".into()))
            .await,
        Code::InvalidArgument,
        "etcdserver: invalid downgrade target version",
    );
    expect_status(
        m.downgrade(DowngradeOptions::Enable("v3".into())).await,
        Code::InvalidArgument,
        "etcdserver: wrong downgrade target version format",
    );
    expect_status(
        m.downgrade(DowngradeOptions::Cancel).await,
        Code::FailedPrecondition,
        "etcdserver: no inflight downgrade job",
    );
    m.downgrade(DowngradeOptions::Enable("3.4.0".into()))
        .await
        .unwrap();
    let status = m.status().await.unwrap();
    let info = status.downgrade_info().unwrap();
    assert!(info.enabled());
    assert_eq!(info.target_version(), "3.4.0");
    expect_status(
        m.downgrade(DowngradeOptions::Validate("3.4".into())).await,
        Code::FailedPrecondition,
        "etcdserver: cluster has a downgrade job in progress",
    );
    m.downgrade(DowngradeOptions::Cancel).await.unwrap();
    assert!(
        !m.status()
            .await
            .unwrap()
            .downgrade_info()
            .unwrap()
            .enabled()
    );
}
