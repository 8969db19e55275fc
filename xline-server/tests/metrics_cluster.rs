//! Observability on a 3-member cluster (also runs against Debian's etcd with
//! `XLINE_TEST_SERVER=etcd`): one leader by the metrics, `leader_changes_seen` grows on the
//! survivors after a leader kill, peer round-trip times are measured, and `/health` turns 503
//! when the member has lost its quorum.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::http::{get, has_metric, sample};

async fn scrape(cluster: &Cluster, i: usize) -> String {
    let url = format!("{}/metrics", cluster.metrics_url(i));
    let (status, body) = get(&url).await.expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

async fn health(cluster: &Cluster, i: usize) -> (u16, serde_json::Value) {
    let (status, body) = get(&format!("{}/health", cluster.metrics_url(i)))
        .await
        .expect("GET /health");
    (status, serde_json::from_str(body.trim()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_changes_and_health_follow_the_cluster() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader_index(Duration::from_secs(10)).await;
    let leader_id = cluster.member_id(leader);

    let mut seen_before = Vec::new();
    let mut leaders = 0.0;
    for i in 0..3 {
        let m = scrape(&cluster, i).await;
        assert_eq!(
            sample(&m, "etcd_server_has_leader"),
            Some(1.0),
            "member {i}"
        );
        leaders += sample(&m, "etcd_server_is_leader").unwrap();
        let seen = sample(&m, "etcd_server_leader_changes_seen_total").unwrap();
        assert!(seen >= 1.0, "member {i}: {seen}");
        seen_before.push(seen);
        let (status, body) = health(&cluster, i).await;
        assert_eq!((status, &body["health"]), (200, &serde_json::json!("true")));
    }
    assert_eq!(leaders, 1.0);

    // Round-trip times to the peers are measured within a few probe intervals.
    let survivor = (leader + 1) % 3;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = scrape(&cluster, survivor).await;
        if has_metric(&m, "etcd_network_peer_round_trip_time_seconds_count") {
            break;
        }
        assert!(Instant::now() < deadline, "no peer RTT measured:\n{m}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    cluster.kill9(leader);
    cluster
        .leader_other_than(leader_id, Duration::from_secs(20))
        .await;
    for i in (0..3).filter(|&i| i != leader) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = scrape(&cluster, i).await;
            let seen = sample(&m, "etcd_server_leader_changes_seen_total").unwrap();
            if seen > seen_before[i] && sample(&m, "etcd_server_has_leader") == Some(1.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member {i}: leader changes still {seen}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Without a quorum the last member loses its leader: unhealthy.
    let new_leader = cluster.leader_index(Duration::from_secs(10)).await;
    cluster.kill9(new_leader);
    let last = (0..3).find(|&i| i != leader && i != new_leader).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = health(&cluster, last).await;
        if status == 503 {
            assert_eq!(body["health"], "false", "{body}");
            // Either it noticed that it has no leader, or its linearizable read failed.
            if !common::is_etcd() {
                let reason = body["reason"].as_str().unwrap();
                assert!(
                    reason == "RAFT NO LEADER" || reason.starts_with("QGET ERROR:"),
                    "{body}"
                );
                if reason == "RAFT NO LEADER" {
                    let m = scrape(&cluster, last).await;
                    assert_eq!(sample(&m, "etcd_server_has_leader"), Some(0.0));
                }
            }
            break;
        }
        assert!(Instant::now() < deadline, "still healthy: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
