//! Lock, Election and LeaseLeases on a 3-member cluster (also run against Debian's etcd with
//! `XLINE_TEST_SERVER=etcd`): every member serves them, whichever member the other calls of the
//! same lock or election went through.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use etcd_client::{Client, LockOptions, ProclaimOptions};

/// How long a call that must block is given before the test decides it did block.
const BLOCKED_FOR: Duration = Duration::from_millis(700);

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.unwrap().id()
}

/// The lease ids member `c` lists.
async fn listed(c: &mut Client) -> Vec<i64> {
    let resp = c.leases().await.unwrap();
    resp.leases()
        .iter()
        .map(etcd_client::LeaseStatus::id)
        .collect()
}

/// Waits (up to 5 s) until `c` lists `lease` (`present`) or does not.
async fn wait_listed(c: &mut Client, lease: i64, present: bool) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ids = listed(c).await;
        if ids.contains(&lease) == present || tokio::time::Instant::now() >= deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next value an observer reported.
async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no leader change observed")
        .expect("the observe stream ended")
}

#[tokio::test]
async fn lock_and_election_work_through_every_member() {
    let mut cluster = Cluster::start(3).await;
    let li = cluster.leader_index(Duration::from_secs(10)).await;
    let (f1, f2) = ((li + 1) % 3, (li + 2) % 3);
    let mut c1 = cluster.client(f1).await;
    let mut c2 = cluster.client(f2).await;
    let mut cl = cluster.client(li).await;

    // A lock taken through one follower blocks a locker on the other until it is released
    // through the leader.
    let l1 = grant(&mut c1, 30).await;
    let l2 = grant(&mut c2, 30).await;
    let first = c1
        .lock("cl", Some(LockOptions::new().with_lease(l1)))
        .await
        .unwrap();
    let second = tokio::spawn(async move {
        c2.lock("cl", Some(LockOptions::new().with_lease(l2)))
            .await
            .map(|r| r.key().to_vec())
    });
    tokio::time::sleep(BLOCKED_FOR).await;
    assert!(
        !second.is_finished(),
        "the second Lock returned while the lock was held"
    );
    cl.unlock(first.key()).await.unwrap();
    let key = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the lock was not handed over")
        .unwrap()
        .unwrap();
    assert_eq!(key, format!("cl/{l2:x}").into_bytes());

    // Campaign through a follower, proclaim through the leader, read and observe through the
    // other follower.
    let won = c1.campaign("ce", "first", l1).await.unwrap();
    let mut c3 = cluster.client(f2).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = c3.observe("ce").await.unwrap();
        while let Some(resp) = stream.message().await.unwrap() {
            let value = resp.kv().unwrap().value().to_vec();
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    assert_eq!(next(&mut rx).await, b"first");
    cl.proclaim(
        "second",
        Some(ProclaimOptions::new().with_leader(won.leader().unwrap().clone())),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut rx).await, b"second");
    let mut c4 = cluster.client(f2).await;
    let leader = c4.leader("ce").await.unwrap();
    assert_eq!(leader.kv().unwrap().value(), b"second");
}

#[tokio::test]
async fn every_member_lists_the_clusters_leases() {
    let mut cluster = Cluster::start(3).await;
    let li = cluster.leader_index(Duration::from_secs(10)).await;
    let f1 = (li + 1) % 3;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(cluster.client(i).await);
    }
    // Granted through a follower: every member knows it (etcd lists its local, replicated
    // leases; a member that has not applied the grant yet lists it a moment later).
    let lease = grant(&mut clients[f1], 60).await;
    for (i, c) in clients.iter_mut().enumerate() {
        let ids = wait_listed(c, lease, true).await;
        assert!(
            ids.contains(&lease),
            "member {i} does not list {lease:x}: {ids:x?}"
        );
    }
    // Revoked through the leader: gone from every member.
    clients[li].lease_revoke(lease).await.unwrap();
    for (i, c) in clients.iter_mut().enumerate() {
        let ids = wait_listed(c, lease, false).await;
        assert!(
            !ids.contains(&lease),
            "member {i} still lists {lease:x}: {ids:x?}"
        );
    }
}
