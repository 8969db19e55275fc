//! `xlinectl snapshot save | status | restore` end to end: a snapshot saved from the server
//! under test (xline, or etcd with `XLINE_TEST_SERVER=etcd`: xline restores etcd's snapshots
//! too), its status (the same bytes as `etcdctl snapshot status` prints, in every format, when
//! etcdctl is installed), restored by xlinectl through the `xline` binary, and an `xline`
//! started on the restored directory serving the same keys at the same revisions.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use xline_client::{Client, ConnectOptions, GetOptions};

fn xlinectl(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xlinectl"));
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn etcdctl_installed() -> bool {
    Command::new("etcdctl").arg("version").output().is_ok()
}

/// An `xline` serving the restored directory; killed on drop.
struct Restored(Child);

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_serving(endpoint: &str, child: &mut Child, log: &Path) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "restored xline exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "restored xline not serving");
        let opts = ConnectOptions::new()
            .with_dial_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(2))
            .with_max_retries(1);
        if let Ok(c) = Client::connect([endpoint.to_owned()], opts).await
            && c.kv().get("probe", None).await.is_ok()
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_status_restore_and_serve_the_restored_directory() {
    let Some(cluster) = common::Cluster::start(1).await else {
        return;
    };
    let Some(xline) = common::server_binary(common::ServerKind::Xline) else {
        return;
    };
    let client = cluster.client().await;
    let kv = client.kv();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("a", "4")] {
        kv.put(k, v, None).await.unwrap();
    }
    kv.delete("b", None).await.unwrap();
    let before = kv
        .get("", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    let revision = before.header.as_ref().unwrap().revision;

    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.db");
    let snap_s = snap.to_str().unwrap();
    let endpoints = format!("--endpoints={}", cluster.endpoint(0));
    let (code, out, err) = run(xlinectl(&[&endpoints, "snapshot", "save", snap_s]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("Snapshot saved at {snap_s}\n"));

    // Status: the revision is the server's; etcdctl prints the same bytes.
    let (code, out, err) = run(xlinectl(&["snapshot", "status", snap_s, "-w", "json"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("\"revision\":{revision},")),
        "{out} (revision {revision})"
    );
    if etcdctl_installed() {
        for w in ["simple", "table", "json", "fields", "protobuf"] {
            let args = ["snapshot", "status", snap_s, "-w", w];
            let mut etcdctl = Command::new("etcdctl");
            etcdctl.args(args).env("ETCDCTL_API", "3");
            assert_eq!(run(xlinectl(&args)), run(etcdctl), "-w {w}");
        }
    } else {
        eprintln!("etcdctl not installed: status not compared");
    }

    // Restore through xlinectl (which runs the xline binary beside it).
    let peer = format!("http://127.0.0.1:{}", common::fresh_port());
    let client_url = format!("http://127.0.0.1:{}", common::fresh_port());
    let data_dir = dir.path().join("restored");
    let initial = format!("r0={peer}");
    let restore_args = [
        "snapshot",
        "restore",
        snap_s,
        "--name=r0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--initial-cluster",
        &initial,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster-token=restored",
    ];
    let (code, _, err) = run(xlinectl(&restore_args));
    assert_eq!(code, 0, "{err}");
    assert!(data_dir.is_dir());
    // Restoring again fails as xline says (the directory exists), with its exit status.
    let (code, _, err) = run(xlinectl(&restore_args));
    assert_eq!(code, 1);
    assert!(err.contains("Error: "), "{err}");

    drop(client);
    drop(cluster);
    let log = dir.path().join("restored.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new(&xline)
        .args(["--name", "r0", "--data-dir"])
        .arg(&data_dir)
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &initial])
        .args(["--initial-cluster-token", "restored"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let mut restored = Restored(child);
    let client = wait_serving(&client_url, &mut restored.0, &log).await;
    let after = client
        .kv()
        .get("", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    let pairs = |r: &xline_proto::etcdserverpb::RangeResponse| -> Vec<_> {
        r.kvs
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone(), kv.mod_revision))
            .collect()
    };
    assert_eq!(pairs(&after), pairs(&before));
    assert_eq!(
        pairs(&after)
            .iter()
            .map(|(k, v, _)| (k.as_slice(), v.as_slice()))
            .collect::<Vec<_>>(),
        [(&b"a"[..], &b"4"[..]), (b"c", b"3")]
    );
    assert_eq!(after.header.unwrap().revision, revision);
}

/// Without an `xline` binary next to xlinectl or on PATH, restore names the command to run.
#[test]
fn restore_without_an_xline_binary_names_the_command() {
    let original = Path::new(env!("CARGO_BIN_EXE_xlinectl"));
    // A directory beside the target's binaries (a hard link needs the same file system).
    let dir = tempfile::tempdir_in(original.parent().unwrap().parent().unwrap()).unwrap();
    let lone = dir.path().join("xlinectl");
    if std::fs::hard_link(original, &lone).is_err() {
        std::fs::copy(original, &lone).unwrap();
    }
    let mut cmd = Command::new(&lone);
    cmd.args(["snapshot", "restore", "s.db", "--data-dir", "d"])
        .env("PATH", dir.path())
        .stdin(Stdio::null());
    let (code, out, err) = run(cmd);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err,
        "Error: the xline binary was not found next to xlinectl or on PATH; xline restores \
         snapshots itself, run: xline snapshot restore s.db --name=default \
         --initial-cluster=default=http://localhost:2380 --initial-cluster-token=etcd-cluster \
         --initial-advertise-peer-urls=http://localhost:2380 --data-dir=d\n"
    );
}
