//! `xlinectl` failover against a 3-member cluster: xlinectl gets `--endpoints` of all three, and
//! the member it uses first (the first endpoint, chosen to be the leader: the hardest case) is
//! killed with SIGKILL.
//!
//! - `put`/`get` run after the kill still succeed (the dead endpoint is skipped; the read is
//!   retried while the cluster elects a new leader).
//! - A `watch` started before the kill goes on printing events after it, resumed from the
//!   revision after the last one printed: every key exactly once, in order, none missing.
//! - `lease keep-alive` goes on renewing (and printing) through the members left, past the TTL.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use xline_client::GetOptions;

/// Keys the watch test writes, and after how many printed events the member is killed.
const KEYS: usize = 40;
const KILL_AFTER: usize = 12;

/// `xlinectl --endpoints=<eps> <args>` with generous timeouts (elections take a few seconds).
fn xlinectl(endpoints: &[String], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xlinectl"));
    cmd.arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=1s", "--command-timeout=20s"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs xlinectl to completion: (exit code, stdout, stderr).
async fn run(endpoints: &[String], args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), xlinectl(endpoints, args).output())
        .await
        .unwrap_or_else(|_| panic!("xlinectl {args:?} did not finish"))
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts 3 members and returns them with the leader's index and the endpoints, leader first.
async fn cluster_leader_first() -> Option<(common::Cluster, usize, Vec<String>)> {
    let cluster = common::Cluster::start(3).await?;
    let leader = cluster.leader_index(Duration::from_secs(20)).await;
    let mut eps = vec![cluster.endpoint(leader)];
    eps.extend((0..3).filter(|&i| i != leader).map(|i| cluster.endpoint(i)));
    Some((cluster, leader, eps))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_survive_killing_the_first_endpoint() {
    let Some((mut cluster, leader, eps)) = cluster_leader_first().await else {
        return;
    };
    let (code, out, err) = run(&eps, &["put", "before", "1"]).await;
    assert_eq!((code, out.as_str()), (0, "OK\n"), "stderr: {err}");

    cluster.kill9(leader);
    // A linearizable read first: it waits (retrying `Unavailable`) for the new leader.
    let (code, out, err) = run(&eps, &["get", "before"]).await;
    assert_eq!((code, out.as_str()), (0, "before\n1\n"), "stderr: {err}");
    let (code, out, err) = run(&eps, &["put", "after", "2"]).await;
    assert_eq!((code, out.as_str()), (0, "OK\n"), "stderr: {err}");
    let (code, out, err) = run(&eps, &["get", "after", "-w", "json"]).await;
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("\"count\":1"), "{out}");
    // A serializable read is answered by the first live member.
    let (code, out, err) = run(&eps, &["get", "after", "--consistency=s"]).await;
    assert_eq!((code, out.as_str()), (0, "after\n2\n"), "stderr: {err}");

    // Only the dead member: retried until the command timeout, then etcdctl's error (exit 1).
    let (code, out, err) = run(&eps[..1], &["get", "after", "--command-timeout=1s"]).await;
    assert_eq!(code, 1, "stdout: {out}");
    assert_eq!(err, "Error: context deadline exceeded\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_goes_on_after_killing_the_first_endpoint() {
    let Some((mut cluster, leader, eps)) = cluster_leader_first().await else {
        return;
    };
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let writer_client = cluster.client_of(&others).await;
    // The watch starts at the next revision, so it sees every write below however long it
    // takes to be created.
    let rev0 = writer_client
        .kv()
        .get("fo/", None)
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    let start = format!("--rev={}", rev0 + 1);
    let mut child = xlinectl(&eps, &["watch", "fo/", "--prefix", &start])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("xlinectl watch printed nothing for 30 s"))
            .unwrap()
            .expect("xlinectl watch ended")
    };

    let writer = {
        let kv = writer_client.kv();
        tokio::spawn(async move {
            for i in 0..=KEYS {
                let (key, value) = if i == KEYS {
                    ("fo/last".to_owned(), "z".to_owned())
                } else {
                    (format!("fo/{i:03}"), i.to_string())
                };
                let mut tries = 0;
                // A put that fails while the cluster elects a new leader is tried again (the
                // history read below is the reference, so a failed put that was applied
                // anyway is no false alarm).
                while let Err(e) = kv.put(key.clone(), value.clone(), None).await {
                    tries += 1;
                    assert!(tries < 100, "put {key} keeps failing: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };

    let mut printed: Vec<(String, String)> = Vec::new();
    let mut killed = false;
    while printed.last().is_none_or(|(k, _)| k != "fo/last") {
        let (kind, key, value) = (next_line().await, next_line().await, next_line().await);
        assert_eq!(kind, "PUT", "after {printed:?}");
        printed.push((key, value));
        if !killed && printed.len() >= KILL_AFTER {
            cluster.kill9(leader);
            killed = true;
        }
    }
    writer.await.unwrap();
    assert!(killed);
    child.start_kill().unwrap();
    let _ = child.wait().await;

    // The reference: the store's history of the prefix since rev0, read through the members
    // that stayed up.
    let (_w, mut history) = writer_client
        .watch()
        .watch(
            "fo/",
            Some(
                xline_client::WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev0 + 1),
            ),
        )
        .await
        .unwrap();
    let mut want: Vec<(String, String)> = Vec::new();
    while want.last().is_none_or(|(k, _)| k != "fo/last") {
        let resp = tokio::time::timeout(Duration::from_secs(10), history.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for ev in resp.events {
            let kv = ev.kv.unwrap();
            want.push((
                String::from_utf8(kv.key).unwrap(),
                String::from_utf8(kv.value).unwrap(),
            ));
        }
    }
    // Every event exactly once, in order, across the failover: no duplicate, no gap.
    assert_eq!(printed, want);
    assert!(want.len() > KEYS, "{want:?}");
    let count = writer_client
        .kv()
        .get(
            "fo/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count;
    assert_eq!(count, i64::try_from(KEYS).unwrap() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keep_alive_goes_on_after_killing_the_first_endpoint() {
    let Some((mut cluster, leader, eps)) = cluster_leader_first().await else {
        return;
    };
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let client = cluster.client_of(&others).await;
    // TTL 6 s: a renewal every 2 s; without them the lease would expire during the test.
    let id = client.lease().grant(6, None).await.unwrap().id;
    let hex = format!("{id:x}");
    let mut child = xlinectl(&eps, &["lease", "keep-alive", &hex])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let want = format!("lease {id:016x} keepalived with TTL(6)");
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("xlinectl lease keep-alive printed nothing for 30 s"))
            .unwrap()
            .expect("xlinectl lease keep-alive ended")
    };
    assert_eq!(next_line().await, want);
    assert_eq!(next_line().await, want);
    cluster.kill9(leader);
    // Renewals go on through the members left, longer than the TTL.
    let killed_at = std::time::Instant::now();
    let mut after = 0;
    while killed_at.elapsed() < Duration::from_secs(8) || after < 2 {
        assert_eq!(next_line().await, want);
        after += 1;
    }
    let ttl = client.lease().time_to_live(id, None).await.unwrap();
    assert!(ttl.ttl > 0, "the lease expired: {ttl:?}");
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
