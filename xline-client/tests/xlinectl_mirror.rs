//! `xlinectl make-mirror`: copies 10 000 keys from a real Debian etcd (the source) into the
//! destination server (xline, or etcd with `XLINE_TEST_SERVER=etcd`) while writers keep
//! putting and deleting keys on etcd, then checks the destination ends up with exactly the
//! source's keys and values under the destination prefix.

#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xline_client::{Client, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp};

const KEYS: usize = 10_000;

/// A Debian etcd member on fresh ports, killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_etcd() -> Option<Etcd> {
    if !std::path::Path::new("/usr/bin/etcd").is_file() {
        eprintln!("SKIP: /usr/bin/etcd not found");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("xlinectl-mirror-")
        .tempdir()
        .expect("tempdir");
    let (cp, pp) = (common::fresh_port(), common::fresh_port());
    let client = format!("http://127.0.0.1:{cp}");
    let peer = format!("http://127.0.0.1:{pp}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
    let child = Command::new("/usr/bin/etcd")
        .args(["--name", "src", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("src={peer}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn etcd");
    let etcd = Etcd {
        child,
        endpoint: client,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let opts = ConnectOptions::new()
            .with_dial_timeout(Duration::from_millis(300))
            .with_timeout(Duration::from_secs(1));
        if let Ok(c) = Client::connect([etcd.endpoint.clone()], opts).await
            && c.kv().get("probe", None).await.is_ok()
        {
            return Some(etcd);
        }
        assert!(Instant::now() < deadline, "etcd did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every key under `prefix` with `prefix` replaced by `as_prefix`, and its value.
async fn contents(c: &Client, prefix: &str, as_prefix: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let resp = c
        .kv()
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    resp.kvs
        .into_iter()
        .map(|kv| {
            (
                [as_prefix.as_bytes(), &kv.key[prefix.len()..]].concat(),
                kv.value,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_mirror_copies_a_live_etcd_prefix() {
    let Some(etcd) = start_etcd().await else {
        return;
    };
    let Some(dst) = common::Cluster::start(1).await else {
        return;
    };
    let src = Client::connect([etcd.endpoint.clone()], common::test_options())
        .await
        .expect("connect etcd");

    // 10 000 keys, written 100 per txn; plus keys outside the prefix that must not be copied.
    for batch in 0..KEYS / 100 {
        let ops = (0..100).map(|i| {
            let n = batch * 100 + i;
            TxnOp::put(format!("/src/key-{n:05}"), format!("value-{n}"), None)
        });
        src.kv().txn(Txn::new().and_then(ops)).await.expect("load");
    }
    src.kv()
        .put("/other/x", "not mirrored", None)
        .await
        .expect("put");

    let xlinectl = env!("CARGO_BIN_EXE_xlinectl");
    let mut mirror = Command::new(xlinectl)
        .args([
            "--endpoints",
            &etcd.endpoint,
            "make-mirror",
            "--prefix",
            "/src/",
            "--dest-prefix",
            "/dst/",
        ])
        .arg(dst.endpoint(0))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn xlinectl make-mirror");

    // Concurrent writers on etcd while the initial copy runs: overwrites, new keys, deletes,
    // and a multi-key txn (one revision, several events).
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let src = src.clone();
            tokio::spawn(async move {
                for i in 0..300usize {
                    let n = (i * 31 + w * 7) % KEYS;
                    match i % 4 {
                        0 => src
                            .kv()
                            .put(format!("/src/key-{n:05}"), format!("updated-{w}-{i}"), None)
                            .await
                            .map(drop),
                        1 => src
                            .kv()
                            .put(format!("/src/new-{w}-{i}"), "new", None)
                            .await
                            .map(drop),
                        2 => src
                            .kv()
                            .delete(format!("/src/key-{n:05}"), None)
                            .await
                            .map(drop),
                        _ => {
                            let ops = [
                                TxnOp::put(format!("/src/txn-{w}-{i}-a"), "a", None),
                                TxnOp::put(format!("/src/txn-{w}-{i}-b"), "b", None),
                                TxnOp::delete(format!("/src/new-{w}-{}", i - 2), None),
                            ];
                            src.kv().txn(Txn::new().and_then(ops)).await.map(drop)
                        }
                    }
                    .expect("concurrent write");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    src.kv()
        .delete("/src/key-0000", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("range delete");
    src.kv().put("/src/last", "done", None).await.expect("put");

    let dst_client = dst.client().await;
    let want = contents(&src, "/src/", "/dst/").await;
    assert!(
        want.len() > KEYS - 100,
        "source still holds most keys: {}",
        want.len()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got = BTreeMap::new();
    while Instant::now() < deadline {
        if let Some(status) = mirror.try_wait().expect("try_wait") {
            panic!("make-mirror exited early with {status}");
        }
        got = contents(&dst_client, "/dst/", "/dst/").await;
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = mirror.kill();
    let _ = mirror.wait();
    assert_eq!(got.len(), want.len(), "destination key count");
    assert!(got == want, "destination differs from the source");
    let other = dst_client
        .kv()
        .get("/other/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    assert_eq!(other.count, 0, "keys outside the prefix are not mirrored");
}
