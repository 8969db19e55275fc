//! Maintenance on 3-member clusters (also run against Debian's etcd with
//! `XLINE_TEST_SERVER=etcd`): HashKV agrees on every member, a NOSPACE alarm raised by one member
//! refuses writes on all of them until it is disarmed, and a snapshot saved from one member
//! restores into a new 3-member cluster that serves the same data and revisions.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{ServerOpts, expect_status, kvs, snapshot};
use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Client, CompactionOptions, DeleteOptions, GetOptions,
};
use tonic::Code;

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

/// Waits (up to 10 s) until every member has applied revision `rev` (a serializable read
/// on each member shows it).
async fn wait_revision(cluster: &Cluster, rev: i64) {
    for i in 0..cluster.len() {
        let mut c = cluster.client(i).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = c
                .get("probe", Some(GetOptions::new().with_serializable()))
                .await
                .unwrap();
            if r.header().unwrap().revision() >= rev {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {i} did not reach revision {rev}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `(hash, compact revision)` of HashKV at `rev` on every member.
async fn hashes(cluster: &Cluster, rev: i64) -> Vec<(u32, i64)> {
    let mut out = Vec::new();
    for i in 0..cluster.len() {
        let mut m = cluster.client(i).await.maintenance_client();
        let h = m.hash_kv(rev).await.unwrap();
        out.push((h.hash(), h.compact_version()));
    }
    out
}

async fn write_history(c: &mut Client) -> i64 {
    for i in 0..20 {
        c.put(format!("k{}", i % 7), format!("v{i}"), None)
            .await
            .unwrap();
    }
    c.delete("k3", None).await.unwrap();
    c.compact(12, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let r = c.put("last", "x", None).await.unwrap();
    r.header().unwrap().revision()
}

#[tokio::test]
async fn hash_kv_agrees_on_every_member() {
    let cluster = Cluster::start(3).await;
    let mut c = cluster.client(0).await;
    let rev = write_history(&mut c).await;
    wait_revision(&cluster, rev).await;
    for at in [rev, rev - 3] {
        let all = hashes(&cluster, at).await;
        assert!(all.iter().all(|h| *h == all[0]), "HashKV at {at}: {all:?}");
        assert_eq!(all[0].1, 12);
    }
}

#[tokio::test]
async fn nospace_raised_by_one_member_caps_every_member() {
    let quota = 4 * 1024 * 1024;
    let opts = ServerOpts::new().arg("--quota-backend-bytes", &quota.to_string());
    let cluster = Cluster::start_with(3, opts).await;
    let mut c0 = cluster.client(0).await;
    let value = vec![b'x'; 64 * 1024];
    let mut refused = None;
    for i in 0..400 {
        if let Err(e) = c0.put(format!("fill/{i:05}"), value.clone(), None).await {
            refused = Some(e);
            break;
        }
    }
    expect_status::<()>(
        Err(refused.expect("the quota refused a write")),
        Code::ResourceExhausted,
        NOSPACE,
    );
    let raiser = cluster.member_id(0);
    for i in 0..3 {
        let mut c = cluster.client(i).await;
        // The alarm is replicated: every member lists it and refuses writes...
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let listed = c
                .maintenance_client()
                .alarm(AlarmAction::Get, AlarmType::None, None)
                .await
                .unwrap();
            if listed
                .alarms()
                .iter()
                .any(|a| a.member_id() == raiser && a.alarm() == AlarmType::Nospace)
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {i} does not list the alarm"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        expect_status(
            c.put("small", "v", None).await,
            Code::ResourceExhausted,
            NOSPACE,
        );
        // ...and still serves reads.
        let r = c
            .get(
                "fill/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .unwrap();
        assert!(r.count() > 10);
    }

    // Free the space everywhere, then disarm as `etcdctl alarm disarm` does.
    let resp = c0
        .delete("", Some(DeleteOptions::new().with_all_keys()))
        .await
        .unwrap();
    let rev = resp.header().unwrap().revision();
    c0.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    wait_revision(&cluster, rev).await;
    for i in 0..3 {
        let mut m = cluster.client(i).await.maintenance_client();
        m.defragment().await.unwrap();
        let status = m.status().await.unwrap();
        assert!(status.db_size() < quota, "member {i}: {}", status.db_size());
    }
    let mut m = c0.maintenance_client();
    let listed = m
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    for alarm in listed.alarms() {
        let mut o = AlarmOptions::new();
        o.with_member(alarm.member_id());
        m.alarm(AlarmAction::Deactivate, alarm.alarm(), Some(o))
            .await
            .unwrap();
    }
    for i in 0..3 {
        let mut c = cluster.client(i).await;
        c.put(format!("after/{i}"), "v", None).await.unwrap();
    }
}

#[tokio::test]
async fn snapshot_restores_into_a_new_three_member_cluster() {
    let source = Cluster::start(3).await;
    let mut c = source.client(0).await;
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put(
        "leased",
        "l",
        Some(etcd_client::PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    let rev = write_history(&mut c).await;
    let expected = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    // Saved from a member that is not necessarily the leader.
    wait_revision(&source, rev).await;
    snapshot::save(&source.endpoint(2), &file);
    drop(source);

    let mut target = Cluster::start(3).await;
    for i in 0..3 {
        target.kill9(i);
    }
    for i in 0..3 {
        std::fs::remove_dir_all(target.data_dir(i)).unwrap();
        snapshot::restore(
            target.kind(),
            &file,
            &target.data_dir(i),
            target.name(i),
            target.initial_cluster(),
            &target.peer_url(i),
        );
    }
    for i in 0..3 {
        target.spawn(i);
    }
    for i in 0..3 {
        target.wait_serving(i).await;
    }
    for i in 0..3 {
        let mut t = target.client(i).await;
        let got = t
            .get("", Some(GetOptions::new().with_all_keys()))
            .await
            .unwrap();
        assert_eq!(kvs(got.kvs()), kvs(expected.kvs()), "member {i}");
        assert_eq!(got.header().unwrap().revision(), rev, "member {i}");
        let leases = t.leases().await.unwrap();
        assert!(
            leases.leases().iter().any(|l| l.id() == lease),
            "member {i} lists the lease"
        );
    }
    // The new cluster goes on from the snapshot's revision, and its members agree.
    let r = target.client(1).await.put("new", "v", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), rev + 1);
    wait_revision(&target, rev + 1).await;
    let all = hashes(&target, 0).await;
    assert!(all.iter().all(|h| *h == all[0]), "{all:?}");
}
