//! Snapshot files and `xline snapshot restore`.
//!
//! # Format
//! `Maintenance.Snapshot` streams [`SNAPSHOT_MAGIC`], the length of the store image (8 bytes,
//! big-endian), the image of `KvStore::snapshot` (every table of the backend, a protobuf
//! message) and zeros up to a multiple of 512 bytes, then, as etcd, the SHA-256 of those bytes as
//! the last message. `etcdctl snapshot save` writes all of it to the file and accepts it only if
//! its size is 32 more than a multiple of 512 (bbolt files are made of pages), hence the padding.
//! So a snapshot file is `body ++ sha256(body)`. The image is not a
//! bbolt file: `etcdctl snapshot status` and `etcdctl snapshot restore` cannot read it, and etcd
//! cannot be restored from it; `xline snapshot restore` can, whatever backend wrote it.
//!
//! # Restore
//! `xline snapshot restore FILE --data-dir DIR --name NAME --initial-cluster ...
//! --initial-cluster-token ... --initial-advertise-peer-urls ...` takes etcdctl's restore
//! flags. It checks the file's SHA-256 (unless `--skip-hash-check`), then creates `DIR` (which
//! must not exist) with a backend holding the snapshot's keys, revisions, compaction point,
//! leases and alarms, and an empty consensus log. Starting `xline` on `DIR` with the same
//! `--name`, `--initial-cluster` and `--initial-cluster-token` then forms a new cluster (its
//! members restored from the same file) that serves the snapshot's data at its revisions.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use sha2::{Digest, Sha256};

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::mvcc::store::KvStore;
use crate::storage::{BackendKind, open_backend};

/// The first bytes of every snapshot.
pub const SNAPSHOT_MAGIC: &[u8] = b"xline-snapshot-v1\n";

/// The length of the trailing checksum.
const SHA256_LEN: usize = 32;

/// etcdctl accepts a snapshot whose size is the checksum's plus a multiple of this.
const SNAPSHOT_ALIGN: usize = 512;

/// What `Maintenance.Snapshot` streams before the checksum: the magic, the image's length, the
/// store image, then zeros up to a multiple of 512 bytes.
pub fn snapshot_body(image: &[u8]) -> Vec<u8> {
    let len = SNAPSHOT_MAGIC.len() + 8 + image.len();
    let padded = len.div_ceil(SNAPSHOT_ALIGN) * SNAPSHOT_ALIGN;
    let mut body = Vec::with_capacity(padded);
    body.extend_from_slice(SNAPSHOT_MAGIC);
    body.extend_from_slice(&(image.len() as u64).to_be_bytes());
    body.extend_from_slice(image);
    body.resize(padded, 0);
    body
}

/// The store image inside a snapshot file's bytes, after checking the trailing SHA-256 (unless
/// `skip_hash_check`, as etcdctl's flag).
pub fn image_of_snapshot_file(file: &[u8], skip_hash_check: bool) -> Result<&[u8], ServerError> {
    let too_short = || {
        ServerError::Corrupt("snapshot file too short to hold a snapshot and its checksum".into())
    };
    let body_len = file.len().checked_sub(SHA256_LEN).ok_or_else(too_short)?;
    let (body, sha) = file.split_at(body_len);
    if !skip_hash_check {
        let computed = Sha256::digest(body);
        if computed.as_slice() != sha {
            return Err(ServerError::Corrupt(format!(
                "expected sha256 {}, got {}",
                hex(sha),
                hex(&computed)
            )));
        }
    }
    let rest = body.strip_prefix(SNAPSHOT_MAGIC).ok_or_else(|| {
        ServerError::Corrupt(
            "not an xline snapshot (an etcd snapshot cannot be restored into xline)".into(),
        )
    })?;
    let (len, rest) = rest.split_at_checked(8).ok_or_else(too_short)?;
    let len = u64::from_be_bytes(len.try_into().map_err(|_| too_short())?);
    usize::try_from(len)
        .ok()
        .and_then(|len| rest.get(..len))
        .ok_or_else(too_short)
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
    let image = image_of_snapshot_file(&file, args.skip_hash_check)?;
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
        let store = KvStore::open(Arc::clone(&backend))?;
        store.restore_for_new_cluster(image)?;
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
    fn snapshot_files_round_trip_and_are_checked() {
        let image = b"image bytes".to_vec();
        let body = snapshot_body(&image);
        assert_eq!(body.len() % 512, 0, "etcdctl wants whole 512-byte blocks");
        let mut file = body.clone();
        file.extend_from_slice(&Sha256::digest(&body));
        assert_eq!(image_of_snapshot_file(&file, false).unwrap(), image);
        let empty = snapshot_body(&[]);
        let mut file_of_empty = empty.clone();
        file_of_empty.extend_from_slice(&Sha256::digest(&empty));
        assert_eq!(image_of_snapshot_file(&file_of_empty, false).unwrap(), b"");

        let mut damaged = file.clone();
        damaged[SNAPSHOT_MAGIC.len() + 8] ^= 1;
        let err = image_of_snapshot_file(&damaged, false).unwrap_err();
        assert!(err.to_string().contains("expected sha256"), "{err}");
        assert!(image_of_snapshot_file(&damaged, true).is_ok());

        assert!(image_of_snapshot_file(b"short", false).is_err());
        let mut foreign = b"bbolt pages".to_vec();
        foreign.extend_from_slice(&Sha256::digest(b"bbolt pages"));
        let err = image_of_snapshot_file(&foreign, false).unwrap_err();
        assert!(err.to_string().contains("not an xline snapshot"), "{err}");
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
