//! Snapshot save and restore with the tools of each server kind: `etcdctl snapshot save` for
//! both, then `etcdctl snapshot restore` (etcd) or `xline snapshot restore` (xline).

use std::path::Path;
use std::process::Command;

use super::ServerKind;

/// Runs `etcdctl snapshot save file` against `endpoint`; panics unless it succeeds.
pub fn save(endpoint: &str, file: &Path) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .arg("snapshot")
        .arg("save")
        .arg(file)
        .output()
        .expect("run etcdctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Snapshot saved at"),
        "etcdctl snapshot save failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `data_dir` for member `name` of the new cluster `initial_cluster` from `file`, with
/// the restore tool of `kind`; panics unless it succeeds.
pub fn restore(
    kind: ServerKind,
    file: &Path,
    data_dir: &Path,
    name: &str,
    initial_cluster: &str,
    peer_url: &str,
) {
    let mut cmd = match kind {
        ServerKind::Xline => Command::new(env!("CARGO_BIN_EXE_xline")),
        ServerKind::Etcd => {
            let mut cmd = Command::new("etcdctl");
            cmd.env("ETCDCTL_API", "3");
            cmd
        }
    };
    let out = cmd
        .arg("snapshot")
        .arg("restore")
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--name")
        .arg(name)
        .arg("--initial-cluster")
        .arg(initial_cluster)
        .arg("--initial-advertise-peer-urls")
        .arg(peer_url)
        .output()
        .expect("run the restore tool");
    assert!(
        out.status.success(),
        "snapshot restore failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
