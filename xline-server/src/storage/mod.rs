//! Durable state behind the [`Backend`](backend::Backend) trait.
//!
//! Engines: [`RedbBackend`] (the default), [`SledBackend`] and [`MemoryBackend`], chosen with
//! [`BackendKind`] and opened with [`open_backend`].

pub mod backend;
pub mod memory;
pub mod redb_backend;
pub mod schema;
pub mod sled_backend;

#[cfg(test)]
mod conformance;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use backend::{Backend, BackendError};
pub use memory::MemoryBackend;
pub use redb_backend::RedbBackend;
pub use sled_backend::SledBackend;

/// The storage engine selected with `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendKind {
    /// redb: one file, fsync-durable (the default).
    #[default]
    Redb,
    /// sled: the original choice; its flush is `sync_file_range`, not an fsync.
    Sled,
    /// In memory: nothing survives the process (tests, throwaway servers).
    Memory,
}

impl BackendKind {
    /// The name used on the command line and by [`Backend::name`].
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Redb => "redb",
            BackendKind::Sled => "sled",
            BackendKind::Memory => "memory",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Opens the engine `kind` with its files under `dir` (created when missing; ignored by
/// [`BackendKind::Memory`]).
pub fn open_backend(kind: BackendKind, dir: &Path) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(match kind {
        BackendKind::Redb => Arc::new(RedbBackend::open(dir)?),
        BackendKind::Sled => Arc::new(SledBackend::open(dir)?),
        BackendKind::Memory => Arc::new(MemoryBackend::new()),
    })
}

/// Makes the entries of directory `dir` durable (files created, renamed or removed in it):
/// a file's own fsync does not cover its name. Called after creating or renaming durable
/// files, and on a new directory's parent.
///
/// # Errors
///
/// The I/O error of opening or syncing the directory.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
