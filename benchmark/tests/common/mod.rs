//! What the tests that run the `benchmark` binary against real servers share: finding the server
//! binary, starting members as processes on free loopback ports, and running the binary.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use benchmark::conn;
use serde_json::Value;
use xline_proto::etcdserverpb::RangeRequest;
use xline_proto::etcdserverpb::kv_client::KvClient;

/// Whether the tests run against Debian's etcd (`XLINE_TEST_SERVER=etcd`).
pub fn is_etcd() -> bool {
    std::env::var("XLINE_TEST_SERVER").as_deref() == Ok("etcd")
}

/// The server binary, or `None` (with the reason) when it is not there.
pub fn server_binary() -> Result<PathBuf, String> {
    if is_etcd() {
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

/// Member processes on free loopback ports; killed on drop.
pub struct Cluster {
    children: Vec<Child>,
    /// Client URLs (etcd API), one per member.
    pub urls: Vec<String>,
    /// Peer URLs (where xline also serves the native CURP client service).
    pub peer_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Starts `n` members of `bin` and waits until every one serves a range.
pub async fn start_cluster(bin: &PathBuf, n: usize) -> Cluster {
    let dir = tempfile::Builder::new()
        .prefix("benchmark-test-")
        .tempdir()
        .unwrap();
    // Hold every listener until all ports are chosen, so they differ.
    let listeners: Vec<_> = (0..2 * n).map(|_| free_port()).collect();
    let url = |l: &TcpListener| format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    let urls: Vec<String> = listeners[..n].iter().map(url).collect();
    let peer_urls: Vec<String> = listeners[n..].iter().map(url).collect();
    drop(listeners);
    let initial = peer_urls
        .iter()
        .enumerate()
        .map(|(i, p)| format!("bench{}={p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut cluster = Cluster {
        children: Vec::new(),
        urls,
        peer_urls,
        _dir: dir,
    };
    for i in 0..n {
        let (client, peer) = (&cluster.urls[i], &cluster.peer_urls[i]);
        let log = std::fs::File::create(cluster._dir.path().join(format!("m{i}.log"))).unwrap();
        let child = Command::new(bin)
            .args(["--name", &format!("bench{}", i + 1), "--data-dir"])
            .arg(cluster._dir.path().join(format!("data{i}")))
            .args(["--listen-client-urls", client])
            .args(["--advertise-client-urls", client])
            .args(["--listen-peer-urls", peer])
            .args(["--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &initial])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        cluster.children.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..n {
        loop {
            if let Ok(channel) = conn::connect(&cluster.urls[i]).await {
                let mut kv = KvClient::new(channel);
                let probe = kv.range(RangeRequest {
                    key: b"probe".to_vec(),
                    ..RangeRequest::default()
                });
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                    break;
                }
            }
            if let Some(status) = cluster.children[i].try_wait().unwrap() {
                panic!("member {i} exited during startup: {status}");
            }
            assert!(Instant::now() < deadline, "member {i} not ready after 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster
}

/// Runs the benchmark binary with `args`; its exit status, stdout and stderr.
pub fn run_bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_benchmark"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the benchmark binary with `--endpoints url`, `args` and `--json`; its report.
pub fn bench(url: &str, args: &[&str]) -> Value {
    let all: Vec<&str> = ["--endpoints", url, "--json"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let (ok, stdout, stderr) = run_bench(&all);
    assert!(ok, "benchmark {args:?} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// Checks a summary: `n` requests, all fine, with consistent latency figures.
pub fn assert_clean_run(report: &Value, workload: &str, n: u64) {
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
