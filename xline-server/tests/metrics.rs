//! Observability on one member (also runs against Debian's etcd with `XLINE_TEST_SERVER=etcd`):
//! `/metrics` on `--listen-metrics-urls` lists etcd's metrics, whose counters move with the
//! requests served; `/health` answers as etcd's; JSON logs are one parseable object per line.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

mod common;

use std::net::TcpListener;

use common::http::{get, has_metric, sample};
use common::{ServerOpts, TestServer, is_etcd};

/// A free loopback port for the metrics listener.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn scrape(url: &str) -> String {
    let (status, body) = get(&format!("{url}/metrics")).await.expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

const PUT_STARTED: &str = "grpc_server_started_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
const PUT_OK: &str = "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
const RANGE_OUT_OF_RANGE: &str = "grpc_server_handled_total{grpc_code=\"OutOfRange\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";

#[tokio::test]
async fn metrics_and_health_on_one_member() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let server = TestServer::start(ServerOpts::new().arg("--listen-metrics-urls", &url)).await;

    let (status, body) = get(&format!("{url}/health")).await.expect("GET /health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["health"], "true", "{body}");

    let before = scrape(&url).await;
    for name in [
        "etcd_server_has_leader",
        "etcd_server_is_leader",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_proposals_failed_total",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_debugging_mvcc_current_revision",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_wal_fsync_duration_seconds_count",
        "etcd_disk_backend_commit_duration_seconds_count",
        "etcd_server_version",
        "etcd_server_id",
        "grpc_server_started_total",
        "grpc_server_handled_total",
    ] {
        assert!(has_metric(&before, name), "{name} missing:\n{before}");
    }
    if !is_etcd() {
        for name in [
            "curp_fast_path_total",
            "curp_slow_path_total",
            "curp_fast_path_fallback_total",
            "curp_witness_pool_size",
            "curp_exclusive_pending",
        ] {
            assert!(has_metric(&before, name), "{name} missing:\n{before}");
        }
    }
    assert_eq!(sample(&before, "etcd_server_has_leader"), Some(1.0));
    assert_eq!(sample(&before, "etcd_server_is_leader"), Some(1.0));
    assert!(sample(&before, "etcd_server_leader_changes_seen_total").unwrap() >= 1.0);
    assert!(sample(&before, "etcd_mvcc_db_total_size_in_bytes").unwrap() > 0.0);
    // etcd's fsync buckets: ExponentialBuckets(0.001, 2, 14).
    assert!(before.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}"));
    assert!(before.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"}"));

    let mut client = server.client().await;
    for i in 0..5 {
        client.put(format!("k{i}"), "v", None).await.unwrap();
    }
    // A future revision: the server answers OutOfRange.
    let future = etcd_client::GetOptions::new().with_revision(1_000_000);
    client.get("k0", Some(future)).await.unwrap_err();

    // etcd commits its backend every 100 ms: wait for the commit counter to move.
    let commits = sample(&before, "etcd_disk_backend_commit_duration_seconds_count").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let after = loop {
        let after = scrape(&url).await;
        let now = sample(&after, "etcd_disk_backend_commit_duration_seconds_count").unwrap();
        if now > commits || std::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let delta = |series: &str| sample(&after, series).unwrap() - sample(&before, series).unwrap();
    assert_eq!(delta(PUT_STARTED), 5.0, "{after}");
    assert_eq!(delta(PUT_OK), 5.0);
    assert_eq!(delta(RANGE_OUT_OF_RANGE), 1.0);
    assert!(delta("etcd_server_proposals_applied_total") >= 5.0);
    assert!(delta("etcd_server_proposals_committed_total") >= 5.0);
    assert!(delta("etcd_disk_wal_fsync_duration_seconds_count") >= 1.0);
    assert!(delta("etcd_disk_backend_commit_duration_seconds_count") >= 1.0);
    assert!(delta("etcd_debugging_mvcc_current_revision") >= 5.0);
    assert_eq!(
        sample(&after, "etcd_server_proposals_failed_total"),
        Some(0.0)
    );
    if !is_etcd() {
        assert!(delta("curp_slow_path_total") >= 5.0);
    }

    let (status, _) = get(&format!("{url}/no-such-page")).await.unwrap();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("json.log");
    let log_arg = log.display().to_string();
    let opts = if is_etcd() {
        // etcd 3.4's zap logger writes JSON.
        ServerOpts::new()
            .arg("--logger", "zap")
            .arg("--log-outputs", &log_arg)
    } else {
        ServerOpts::new()
            .arg("--log-format", "json")
            .arg("--log-outputs", &log_arg)
            .arg("--log-level", "debug")
    };
    let server = TestServer::start(opts).await;
    server
        .client()
        .await
        .put("logged", "v", None)
        .await
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let mut saw_ready = false;
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["level", "ts", "msg"] {
            assert!(value.get(key).is_some(), "no {key}: {line}");
        }
        // Both servers log this line (etcd 3.4's zap logger has no "ready to serve" line).
        saw_ready |= value["msg"] == "published local member to cluster through raft";
        lines += 1;
    }
    assert!(lines >= 3, "{text}");
    assert!(saw_ready, "{text}");
}
