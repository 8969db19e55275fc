//! Runs tiny `put` and `range` workloads of the real `benchmark` binary against a real server:
//! this workspace's `xline` (from the same target directory; the test is skipped with a message
//! when it was not built, e.g. by `cargo build --workspace --bins` as scripts/test.sh does), or
//! Debian's etcd when `XLINE_TEST_SERVER=etcd`. Then checks with its own client that the keys the
//! puts claim to have written are there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use benchmark::conn;
use serde_json::Value;
use xline_proto::etcdserverpb::RangeRequest;
use xline_proto::etcdserverpb::kv_client::KvClient;

/// The server binary, or `None` (with the reason) when it is not there.
fn server_binary() -> Result<PathBuf, String> {
    if std::env::var("XLINE_TEST_SERVER").as_deref() == Ok("etcd") {
        let etcd = PathBuf::from("/usr/bin/etcd");
        return if etcd.exists() {
            Ok(etcd)
        } else {
            Err("XLINE_TEST_SERVER=etcd but /usr/bin/etcd is missing".to_owned())
        };
    }
    if let Some(path) = std::env::var_os("XLINE_BIN") {
        return Ok(PathBuf::from(path));
    }
    // This test runs as target/<profile>/deps/<name>-<hash>: xline is in target/<profile>.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or("no target directory above the test binary")?;
    let xline = profile_dir.join("xline");
    if xline.exists() {
        Ok(xline)
    } else {
        Err(format!(
            "{} is not built (run `cargo build --bin xline` first)",
            xline.display()
        ))
    }
}

/// A server process on free loopback ports; killed on drop.
struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

async fn start_server(bin: &PathBuf) -> Server {
    let dir = tempfile::Builder::new()
        .prefix("benchmark-test-")
        .tempdir()
        .unwrap();
    // Hold both listeners until the ports are chosen, so they differ.
    let (a, b) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{}", a.local_addr().unwrap().port());
    let peer = format!("http://127.0.0.1:{}", b.local_addr().unwrap().port());
    drop((a, b));
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = Command::new(bin)
        .args(["--name", "bench1", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("bench1={peer}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let mut server = Server {
        child,
        url: client,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(channel) = conn::connect(&server.url).await {
            let mut kv = KvClient::new(channel);
            let probe = kv.range(RangeRequest {
                key: b"probe".to_vec(),
                ..RangeRequest::default()
            });
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                return server;
            }
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("server exited during startup: {status}");
        }
        assert!(Instant::now() < deadline, "server not ready after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the benchmark binary with `args` and `--json`, and returns its report.
fn bench(url: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_benchmark"))
        .args(["--endpoints", url, "--json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "benchmark {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// Checks a summary: `n` requests, all fine, with consistent latency figures.
fn assert_clean_run(report: &Value, workload: &str, n: u64) {
    let s = &report["summary"];
    assert_eq!(s["workload"], workload, "{report:#}");
    assert_eq!(s["requests"], n, "{report:#}");
    assert_eq!(s["errors"], 0, "{report:#}");
    assert!(s["requests_per_sec"].as_f64().unwrap() > 0.0);
    let l = &s["latency_ms"];
    let get = |k: &str| l[k].as_f64().unwrap();
    assert!(get("min") > 0.0);
    assert!(get("min") <= get("p50") && get("p50") <= get("p90"), "{l}");
    assert!(get("p90") <= get("p99") && get("p99") <= get("p999"), "{l}");
    assert!(get("p999") <= get("max"), "{l}");
    let in_bars: u64 = s["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(in_bars, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_range_against_a_real_server() {
    let bin = match server_binary() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("SKIPPED put_then_range_against_a_real_server: {why}");
            return;
        }
    };
    let server = start_server(&bin).await;

    let put = bench(
        &server.url,
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
    let mut kv = KvClient::new(conn::connect(&server.url).await.unwrap());
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
        &server.url,
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
    assert_eq!(range["targets"][0], server.url.as_str());

    let fixed = bench(
        &server.url,
        &["range", "000000", "000050", "--total=20", "--limit=10"],
    );
    assert_clean_run(&fixed, "range", 20);
}

#[test]
fn an_unreachable_endpoint_fails_with_its_name() {
    let port = free_port().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_benchmark"))
        .args(["--endpoints", &url, "put", "--total=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&url), "{stderr}");
}
