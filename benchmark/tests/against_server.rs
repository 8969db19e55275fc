//! Runs tiny `put` and `range` workloads of the real `benchmark` binary against a real server:
//! this workspace's `xline` (from the same target directory; the test is skipped with a message
//! when it was not built, e.g. by `cargo build --workspace --bins` as scripts/test.sh does), or
//! Debian's etcd when `XLINE_TEST_SERVER=etcd`. Then checks with its own client that the keys the
//! puts claim to have written are there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use benchmark::conn;
use common::{assert_clean_run, bench, free_port, server_binary, start_cluster};
use xline_proto::etcdserverpb::RangeRequest;
use xline_proto::etcdserverpb::kv_client::KvClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_range_against_a_real_server() {
    let bin = match server_binary() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("SKIPPED put_then_range_against_a_real_server: {why}");
            return;
        }
    };
    let cluster = start_cluster(&bin, 1).await;
    let url = &cluster.urls[0];

    let put = bench(
        url,
        &[
            "--clients=8",
            "--conns=2",
            "put",
            "--total=300",
            "--key-size=6",
            "--val-size=16",
            "--key-space-size=50",
            "--sequential-keys",
        ],
    );
    assert_clean_run(&put, "put", 300);
    assert_eq!(put["params"]["val_size"], 16);

    // 300 sequential puts over 50 keys: every key exists, holding a 16-byte value, 6 versions.
    let mut kv = KvClient::new(conn::connect(url).await.unwrap());
    let all = kv
        .range(RangeRequest {
            key: b"000000".to_vec(),
            range_end: b"000050".to_vec(),
            ..RangeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.count, 50);
    assert!(
        all.kvs
            .iter()
            .all(|kv| kv.value.len() == 16 && kv.version == 6)
    );

    let range = bench(
        url,
        &[
            "--clients=4",
            "--target-leader",
            "range",
            "--total=200",
            "--key-size=6",
            "--key-space-size=50",
            "--consistency=s",
        ],
    );
    assert_clean_run(&range, "range", 200);
    assert_eq!(range["params"]["consistency"], "s");
    assert_eq!(range["targets"][0], url.as_str());

    let fixed = bench(
        url,
        &["range", "000000", "000050", "--total=20", "--limit=10"],
    );
    assert_clean_run(&fixed, "range", 20);
}

#[test]
fn an_unreachable_endpoint_fails_with_its_name() {
    let port = free_port().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (ok, _, stderr) = common::run_bench(&["--endpoints", &url, "put", "--total=1"]);
    assert!(!ok);
    assert!(stderr.contains(&url), "{stderr}");
}
