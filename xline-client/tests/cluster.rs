//! Failover against a 3-member cluster: the member a client uses is killed (SIGKILL) while a
//! watch streams from it and reads go on; the watch resumes on another member without a
//! duplicated or missing event, and reads keep succeeding.
//!
//! (Named `cluster` so nextest's `clusters` group runs it alone, like the server's cluster tests.)

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use xline_client::{GetOptions, WatchOptions};

const KEYS: usize = 60;
const KILL_AFTER: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_reads_survive_killing_the_member_in_use() {
    failover(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_reads_survive_killing_the_leader_in_use() {
    failover(true).await;
}

/// Kills the member the client's watch uses (the leader, or member 0) mid-stream.
async fn failover(kill_leader: bool) {
    let Some(mut cluster) = common::Cluster::start(3).await else {
        return;
    };
    let victim = if kill_leader {
        cluster.leader_index(Duration::from_secs(20)).await
    } else {
        0
    };
    let others: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    // The client's first call (the watch) goes to the first endpoint: the victim.
    let client = cluster.client_of(&[victim, others[0], others[1]]).await;
    let (_watcher, mut stream) = client
        .watch()
        .watch("fo/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();

    // A writer on the other members; a put that fails (leader change) is tried again.
    let writer_client = cluster.client_of(&others).await;
    let writer = tokio::spawn(async move {
        for i in 0..KEYS {
            let mut tries = 0;
            while let Err(e) = writer_client
                .kv()
                .put(format!("fo/{i:03}"), i.to_string(), None)
                .await
            {
                tries += 1;
                assert!(tries < 100, "put fo/{i:03} keeps failing: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let mut revisions = Vec::new();
    let mut keys = BTreeSet::new();
    let mut killed = false;
    while keys.len() < KEYS {
        let resp = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("watch stalled after {} keys", keys.len()))
            .unwrap()
            .expect("watch stream open");
        for ev in resp.events {
            let kv = ev.kv.unwrap();
            revisions.push(kv.mod_revision);
            keys.insert(kv.key);
        }
        if !killed && keys.len() >= KILL_AFTER {
            cluster.kill9(victim);
            killed = true;
            // Reads through the same client go on (retried past the dead member).
            for _ in 0..6 {
                let r = client
                    .kv()
                    .get(
                        "fo/",
                        Some(GetOptions::new().with_prefix().with_count_only()),
                    )
                    .await
                    .unwrap();
                assert!(r.count >= i64::try_from(KILL_AFTER).unwrap());
            }
        }
    }
    writer.await.unwrap();
    assert!(killed);
    // Every revision once, in order, without a gap (only these puts write to the cluster).
    for pair in revisions.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "duplicate or missing event: {revisions:?}"
        );
    }
    let last = client
        .kv()
        .get("fo/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(last.count, i64::try_from(KEYS).unwrap());
    assert_eq!(
        *revisions.last().unwrap(),
        last.kvs.iter().map(|kv| kv.mod_revision).max().unwrap()
    );
}
