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

/// One raw HTTP/1.1 exchange on `addr` (`host:port`): the status line, the headers and the
/// body, as one string.
async fn raw_http(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .unwrap()
    .unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn client_port_serves_version_health_and_metrics_next_to_grpc() {
    // As etcd's client port: HTTP/1.1 and gRPC on the same port.
    let server = TestServer::start(ServerOpts::new()).await;
    let url = server.endpoint();
    let mut c = server.client().await;
    c.put("k", "v", None).await.unwrap();

    let (status, body) = get(&format!("{url}/version")).await.expect("GET /version");
    assert_eq!(status, 200, "{body}");
    let version: serde_json::Value = serde_json::from_str(&body).unwrap();
    let server_version = version["etcdserver"].as_str().unwrap();
    let cluster_version = version["etcdcluster"].as_str().unwrap();
    assert!(server_version.starts_with("3."), "{body}");
    // etcdcluster is the major.minor of the server, with patch 0.
    let minor: Vec<&str> = server_version.split('.').take(2).collect();
    assert_eq!(cluster_version, format!("{}.0", minor.join(".")), "{body}");
    assert_eq!(version.as_object().unwrap().len(), 2, "{body}");

    let (status, body) = get(&format!("{url}/health")).await.expect("GET /health");
    assert_eq!(status, 200, "{body}");
    // (etcd 3.5, which xline reports, adds an empty "reason"; 3.4 has none.)
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["health"], "true", "{body}");
    let (status, body) = get(&format!("{url}/metrics")).await.expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(body.contains("etcd_server_has_leader 1"), "{body}");
    let (status, body) = get(&format!("{url}/nope")).await.expect("GET /nope");
    assert_eq!((status, body.as_str()), (404, "404 page not found\n"));

    // etcd's answers in full (but the date): headers, keep-alive, and the methods refused.
    let addr = url.strip_prefix("http://").unwrap();
    let both = raw_http(
        addr,
        "GET /version HTTP/1.1\r\nHost: x\r\n\r\nPOST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    let both: String = both
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("Date:"))
        .collect();
    let cors = "Access-Control-Allow-Headers: accept, content-type, authorization\r\nAccess-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\nAccess-Control-Allow-Origin: *\r\n";
    assert!(
        both.starts_with(&format!("HTTP/1.1 200 OK\r\n{cors}")),
        "{both}"
    );
    assert!(
        both.contains("Content-Type: application/json\r\n"),
        "{both}"
    );
    assert!(
        both.contains(&format!(
            "{}\"}}HTTP/1.1 405 Method Not Allowed\r\n{cors}",
            cluster_version
        )),
        "{both}"
    );
    assert!(both.contains("Allow: GET\r\n"), "{both}");
    assert!(both.ends_with("\r\n\r\nMethod Not Allowed\n"), "{both}");

    // gRPC still works on the port, on this connection and on new ones.
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v");
    let mut other = server.client().await;
    assert_eq!(other.get("k", None).await.unwrap().count(), 1);
}
