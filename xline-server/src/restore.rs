//! Snapshot files and `xline snapshot restore`.
//!
//! # Format
//! A snapshot file is etcd's: a bbolt database in etcd 3.4's bucket layout (see
//! [`crate::bolt`] and [`crate::bolt::etcd`]) followed by the SHA-256 of it, which is what
//! `Maintenance.Snapshot` streams and `etcdctl snapshot save` writes. So `etcdctl snapshot
//! status` and `etcdctl snapshot restore` read xline's snapshots, and `xline snapshot restore`
//! reads etcd's (migration from etcd) as well as xline's. (xline's earlier snapshot format, its
//! own store image, is not read any more.)
//!
//! # Restore
//! `xline snapshot restore FILE --data-dir DIR --name NAME --initial-cluster ...
//! --initial-cluster-token ... --initial-advertise-peer-urls ...` takes etcdctl's restore
//! flags. It checks the file's SHA-256 (unless `--skip-hash-check`; a file without one, e.g. a
//! copied `member/snap/db`, needs that flag, as with etcdctl), then creates `DIR` (which must not
//! exist) with a backend holding the snapshot's keys, revisions, compaction point, leases,
//! users, roles, auth state and alarms, and an empty consensus log. Starting `xline` on `DIR`
//! with the same `--name`, `--initial-cluster` and `--initial-cluster-token` then forms a new
//! cluster that serves the snapshot's data at its revisions (its members are the new ones).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use sha2::{Digest, Sha256};

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::mvcc::store::KvStore;
use crate::storage::backend::WriteBatch;
use crate::storage::{BackendKind, open_backend};

/// The length of the trailing checksum.
const SHA256_LEN: usize = 32;

/// bbolt files are whole pages, so a file with a checksum is 32 bytes more than a multiple of
/// this (etcdctl's test for one).
const SNAPSHOT_ALIGN: usize = 512;

/// The database inside a snapshot file's bytes: without the trailing SHA-256 if the file has
/// one, which is checked unless `skip_hash_check` (etcdctl's rules).
pub fn db_of_snapshot_file(file: &[u8], skip_hash_check: bool) -> Result<&[u8], ServerError> {
    let has_hash = file.len() % SNAPSHOT_ALIGN == SHA256_LEN;
    if !has_hash {
        if !skip_hash_check {
            return Err(ServerError::Corrupt(
                "snapshot missing hash but --skip-hash-check=false".into(),
            ));
        }
        return Ok(file);
    }
    let (db, sha) = file.split_at(file.len() - SHA256_LEN);
    if !skip_hash_check {
        let computed = Sha256::digest(db);
        if computed.as_slice() != sha {
            return Err(ServerError::Corrupt(format!(
                "expected sha256 {}, got {}",
                hex(sha),
                hex(&computed)
            )));
        }
    }
    Ok(db)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `xline snapshot restore`: etcdctl's restore flags, plus the backend to create.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "xline snapshot restore",
    about = "Restores a snapshot written by `etcdctl snapshot save` into a new member's data directory"
)]
pub struct RestoreArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// The data directory to create (default: `${name}.xline`); it must not exist.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The name of the member the directory is for.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// The new cluster's members, `name=peerURL,...` (default: `${name}=` the advertised peer
    /// URLs).
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// The new cluster's token.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// This member's peer URLs (comma-separated).
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Do not check the snapshot's SHA-256.
    #[arg(long)]
    pub skip_hash_check: bool,
    /// The storage engine to create (the member must be started with the same `--backend`).
    #[arg(long, value_enum, default_value_t = BackendKind::Redb)]
    pub backend: BackendKind,
}

impl RestoreArgs {
    /// The member configuration these flags describe, checked as a member's start checks it.
    fn member_config(&self) -> Result<ServerConfig, ServerError> {
        let mut args = vec![
            "xline".to_owned(),
            "--name".to_owned(),
            self.name.clone(),
            "--initial-cluster-token".to_owned(),
            self.initial_cluster_token.clone(),
            "--initial-advertise-peer-urls".to_owned(),
            self.initial_advertise_peer_urls.join(","),
            "--backend".to_owned(),
            self.backend.as_str().to_owned(),
        ];
        if let Some(cluster) = &self.initial_cluster {
            args.extend(["--initial-cluster".to_owned(), cluster.clone()]);
        }
        if let Some(dir) = &self.data_dir {
            args.extend(["--data-dir".to_owned(), dir.display().to_string()]);
        }
        let config =
            ServerConfig::try_parse_from(args).map_err(|e| ServerError::Config(e.to_string()))?;
        config.validate()?;
        let members = config.initial_members()?;
        let mut own = members
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|(_, urls)| urls.clone())
            .unwrap_or_default();
        let mut advertised = self.initial_advertise_peer_urls.clone();
        own.sort();
        advertised.sort();
        if own != advertised {
            return Err(ServerError::Config(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
                self.name,
                own.join(","),
                advertised.join(",")
            )));
        }
        Ok(config)
    }
}

/// Builds the data directory `args` describe from the snapshot file; returns the directory and
/// the restored revision.
pub fn restore(args: &RestoreArgs) -> Result<(PathBuf, i64), ServerError> {
    let config = args.member_config()?;
    if config.backend == BackendKind::Memory {
        return Err(ServerError::Config(
            "--backend memory keeps nothing on disk: restore into redb or sled".into(),
        ));
    }
    let data_dir = config.data_dir();
    if data_dir.exists() {
        return Err(ServerError::Config(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        )));
    }
    let file = std::fs::read(&args.file)?;
    let db = db_of_snapshot_file(&file, args.skip_hash_check)?;
    let tables = crate::bolt::etcd::tables_for_new_cluster(&crate::bolt::read_db(db)?)?;
    // Built beside the target and renamed into place, so a failed restore leaves nothing.
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let staging = parent.join(format!(
        ".{}.restoring",
        data_dir
            .file_name()
            .map_or_else(|| "xline".into(), |n| n.to_string_lossy())
    ));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let result = (|| {
        let backend = open_backend(config.backend, &staging.join("member").join("kv"))?;
        let mut wb = WriteBatch::new();
        for (table, pairs) in tables {
            for (key, value) in pairs {
                wb.put(table, key, value);
            }
        }
        backend.write(wb, true)?;
        // Opening rebuilds the index, leases and auth from what was written, checking it.
        let store = KvStore::open(Arc::clone(&backend))?;
        let revision = store.current_revision();
        backend.sync()?;
        drop(store);
        drop(backend);
        Ok::<_, ServerError>(revision)
    })();
    let revision = match result {
        Ok(revision) => revision,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    std::fs::rename(&staging, &data_dir)?;
    Ok((data_dir, revision))
}

/// `xline snapshot restore ...` (`args` starts with the program name, then `snapshot`).
#[allow(
    clippy::print_stderr,
    reason = "a command line's usage and errors go to stderr"
)]
pub fn main(args: Vec<String>) -> std::process::ExitCode {
    let mut args = args.into_iter();
    let program = args.next().unwrap_or_else(|| "xline".into());
    let _snapshot = args.next();
    let rest: Vec<String> = args.collect();
    match rest.first().map(String::as_str) {
        Some("restore") => {}
        _ => {
            eprintln!("usage: {program} snapshot restore <file> [flags] (see --help)");
            return std::process::ExitCode::FAILURE;
        }
    }
    let restore_args = match RestoreArgs::try_parse_from(rest) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    match restore(&restore_args) {
        Ok((dir, revision)) => {
            tracing::info!(
                path = %restore_args.file.display(),
                data_dir = %dir.display(),
                revision,
                "restored snapshot"
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_files_are_checked_as_etcdctl_does() {
        let db = vec![7u8; 4096];
        let mut file = db.clone();
        file.extend_from_slice(&Sha256::digest(&db));
        assert_eq!(db_of_snapshot_file(&file, false).unwrap(), db.as_slice());
        assert_eq!(db_of_snapshot_file(&file, true).unwrap(), db.as_slice());

        let mut damaged = file.clone();
        damaged[100] ^= 1;
        let err = db_of_snapshot_file(&damaged, false).unwrap_err();
        assert!(err.to_string().contains("expected sha256"), "{err}");
        assert!(db_of_snapshot_file(&damaged, true).is_ok());

        // A bare database (no checksum) needs --skip-hash-check.
        let err = db_of_snapshot_file(&db, false).unwrap_err();
        assert!(err.to_string().contains("snapshot missing hash"), "{err}");
        assert_eq!(db_of_snapshot_file(&db, true).unwrap(), db.as_slice());
    }

    #[test]
    fn restore_flags_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("m1").display().to_string();
        let args = |extra: &[&str]| {
            let v: Vec<String> = ["restore", "snap.db", "--data-dir", data_dir.as_str()]
                .iter()
                .chain(extra)
                .map(|s| (*s).to_owned())
                .collect();
            RestoreArgs::try_parse_from(v).unwrap()
        };
        let wrong_name = args(&["--name", "m1", "--initial-cluster", "m2=http://a:1"]);
        assert!(
            restore(&wrong_name)
                .unwrap_err()
                .to_string()
                .contains("couldn't find local name")
        );
        let wrong_urls = args(&[
            "--name",
            "m1",
            "--initial-cluster",
            "m1=http://a:1",
            "--initial-advertise-peer-urls",
            "http://b:2",
        ]);
        assert!(
            restore(&wrong_urls)
                .unwrap_err()
                .to_string()
                .contains("missing from --initial-advertise-peer-urls")
        );
        // A missing file is an I/O error and leaves no directory behind.
        let ok_flags = args(&[
            "--name",
            "m1",
            "--initial-cluster",
            "m1=http://a:1",
            "--initial-advertise-peer-urls",
            "http://a:1",
        ]);
        assert!(restore(&ok_flags).is_err());
        assert!(!dir.path().join("m1").exists());
    }
}
