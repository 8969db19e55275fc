//! `benchmark --native` against a real 3-member `xline` (processes on free loopback ports): the
//! native (CURP) client's put, txn-put and delete workloads through the members' peer URLs, with
//! the report's fast-path counts adding up to the requests, and the writes then checked through
//! the etcd API. Skipped with a message when `xline` is not built, and with
//! `XLINE_TEST_SERVER=etcd` (etcd has no CURP client service).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use benchmark::conn;
use common::{assert_clean_run, bench, is_etcd, run_bench, server_binary, start_cluster};
use serde_json::Value;
use xline_proto::etcdserverpb::RangeRequest;
use xline_proto::etcdserverpb::kv_client::KvClient;

/// Checks the native counts of a report of `n` requests: every request completed through the
/// fast path or its fallback (none on the ordered path), and returns the fast ones.
fn assert_native_counts(report: &Value, n: u64) -> u64 {
    assert_eq!(report["params"]["native"], true, "{report:#}");
    let native = &report["native"];
    let count = |k: &str| {
        native[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k}: {native}"))
    };
    let (fast, fallback, ordered) = (count("fast"), count("fallback"), count("ordered"));
    assert_eq!(fast + fallback + ordered, n, "{native}");
    assert_eq!(
        ordered, 0,
        "a benchmark proposes on the fast path: {native}"
    );
    let share = native["fast_share"].as_f64().unwrap();
    #[allow(clippy::cast_precision_loss)]
    let expected = fast as f64 / n as f64;
    assert!((share - expected).abs() < 1e-9, "{native}");
    fast
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_put_txn_put_and_delete_against_three_xline_members() {
    if is_etcd() {
        eprintln!("SKIPPED: etcd has no CURP client service (--native is xline's)");
        return;
    }
    let bin = match server_binary() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("SKIPPED native_put_txn_put_and_delete_against_three_xline_members: {why}");
            return;
        }
    };
    let cluster = start_cluster(&bin, 3).await;
    let peers = cluster.peer_urls.join(",");
    let keys = ["--key-size=6", "--key-space-size=50", "--sequential-keys"];

    let mut args = vec!["--native", "--clients=8", "--conns=2", "put", "--total=200"];
    args.extend(["--val-size=16"].iter().chain(&keys));
    let put = bench(&peers, &args);
    assert_clean_run(&put, "put", 200);
    let fast = assert_native_counts(&put, 200);
    assert!(
        fast > 0,
        "plain puts on distinct keys take the fast path: {put:#}"
    );
    assert_eq!(put["targets"].as_array().unwrap().len(), 3);

    // Every acknowledged put is visible through the etcd API: 200 sequential puts over 50
    // keys wrote each key 4 times, with a 16-byte value.
    let mut kv = KvClient::new(conn::connect(&cluster.urls[1]).await.unwrap());
    let mut read_all = async || {
        kv.range(RangeRequest {
            key: b"000000".to_vec(),
            range_end: b"000050".to_vec(),
            ..RangeRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
    };
    let all = read_all().await;
    assert_eq!(all.count, 50);
    assert!(
        all.kvs
            .iter()
            .all(|kv| kv.value.len() == 16 && kv.version == 4),
        "{:?}",
        all.kvs.first()
    );

    let mut args = vec!["--native", "--clients=4", "txn-put", "--total=40"];
    args.extend(["--txn-ops=2", "--val-size=16"].iter().chain(&keys));
    let txn = bench(&cluster.peer_urls[2], &args);
    assert_clean_run(&txn, "txn-put", 40);
    assert_native_counts(&txn, 40);
    // 40 transactions of 2 sequential keys: 80 more writes (keys 0..50, then 0..30).
    let versions: Vec<i64> = read_all().await.kvs.iter().map(|kv| kv.version).collect();
    assert_eq!(versions.iter().sum::<i64>(), 200 + 80, "{versions:?}");
    assert!(versions[..30].iter().all(|&v| v == 6), "{versions:?}");

    let mut args = vec![
        "--native",
        "--clients=5",
        "--conns=3",
        "delete",
        "--total=50",
    ];
    args.extend(keys);
    let delete = bench(&peers, &args);
    assert_clean_run(&delete, "delete", 50);
    assert_native_counts(&delete, 50);
    assert_eq!(read_all().await.count, 0, "every key was deleted");
}

#[test]
fn native_refuses_reads_before_connecting() {
    // No server needed: the plan is refused first.
    let (ok, _, stderr) = run_bench(&["--native", "--endpoints=127.0.0.1:1", "range", "foo"]);
    assert!(!ok);
    assert!(stderr.contains("--native: range"), "{stderr}");
    assert!(stderr.contains("without --native"), "{stderr}");
}
