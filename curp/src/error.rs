//! Error types, one per layer: [`DecodeError`] and [`ExecutorError`] at the state-machine seam,
//! [`StorageError`] for log storage and [`ProposeError`] for callers of a running node.

use std::fmt::Display;

/// A command could not be decoded from its encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode command: {message}")]
pub struct DecodeError {
    message: String,
}

impl DecodeError {
    /// Creates a decode error carrying `message`.
    pub fn new(message: impl Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The message this error was created with.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The state machine failed to apply or flush commands.
///
/// The driver treats it as fatal: the node stops rather than diverge from the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("command executor failed: {message}")]
pub struct ExecutorError {
    message: String,
}

impl ExecutorError {
    /// Creates an executor error carrying `message`.
    pub fn new(message: impl Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The message this error was created with.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// An error from a [`LogStorage`](crate::LogStorage) implementation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The requested index lies before the first retained entry.
    #[error("log index {index} has been compacted (first retained index is {first_index})")]
    Compacted {
        /// The requested index.
        index: u64,
        /// The first index still retained.
        first_index: u64,
    },
    /// The requested index lies after the last entry.
    #[error("log index {index} is not available (last index is {last_index})")]
    Unavailable {
        /// The requested index.
        index: u64,
        /// The last index in the log.
        last_index: u64,
    },
    /// The call broke the storage contract (a gap in appended indices, for example).
    #[error("invalid storage request: {0}")]
    InvalidArgument(String),
    /// Stored data could not be decoded.
    #[error("log storage is corrupted: {0}")]
    Corrupted(String),
    /// The underlying engine or the file system failed.
    #[error("log storage engine failed: {0}")]
    Engine(String),
}

/// A proposal could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// The node is shutting down or has stopped; the command was not applied.
    #[error("the consensus node is shutting down")]
    ShuttingDown,
    /// A storage or executor failure stopped the node. Whether the command was applied is
    /// unknown: it may have been made durable in the log and will then be applied on restart.
    #[error("the consensus node stopped after a fatal error: {0}")]
    Fatal(String),
}

impl From<StorageError> for ProposeError {
    fn from(err: StorageError) -> Self {
        Self::Fatal(err.to_string())
    }
}

impl From<ExecutorError> for ProposeError {
    fn from(err: ExecutorError) -> Self {
        Self::Fatal(err.to_string())
    }
}

impl From<DecodeError> for ProposeError {
    fn from(err: DecodeError) -> Self {
        Self::Fatal(err.to_string())
    }
}
