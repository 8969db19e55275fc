//! The WAN emulation's one error type.

use std::io;

/// Everything that can go wrong while reading a delay matrix or running the router.
#[derive(Debug, thiserror::Error)]
pub enum WanError {
    /// A line of a matrix file (or a command-line flag) could not be understood.
    #[error("matrix line {line}: {msg}")]
    Parse {
        /// 1-based line number (0 for command-line flags).
        line: usize,
        /// What was wrong with it.
        msg: String,
    },
    /// The matrix parsed, but is inconsistent (unknown region, missing delay, overlap...).
    #[error("invalid matrix: {0}")]
    Invalid(String),
    /// No preset has this name.
    #[error("unknown preset {0:?} (known: G1, G2, LAN)")]
    UnknownPreset(String),
    /// Reading a matrix file, or the TUN device, failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl WanError {
    pub(crate) fn parse(line: usize, msg: impl Into<String>) -> Self {
        Self::Parse {
            line,
            msg: msg.into(),
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
