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
    /// The request needs the leader and this member is not it; `leader` is the leader this
    /// member knows, if any (retry there). Proposals never fail this way: a follower forwards
    /// them (and retries) itself.
    #[error("this member is not the leader (known leader: {leader:?})")]
    NotLeader {
        /// The leader this member knows of.
        leader: Option<u64>,
    },
    /// No answer before the deadline (no leader, a partition, an overloaded cluster). The
    /// outcome is unknown: the command may still be applied later, exactly once.
    #[error("the request timed out; its outcome is unknown")]
    Timeout,
    /// The command was already executed by an earlier attempt with the same proposal id, but
    /// its result is no longer available here (the attempt that executed it was answered, or
    /// the member restarted since). It was applied exactly once.
    #[error("the command was already executed; its result is not available")]
    Duplicate,
    /// The membership change does not apply to the current configuration (adding a member
    /// twice, promoting a non-learner, removing a non-member or the last voter).
    #[error("the membership change does not apply to the current configuration")]
    InvalidChange,
    /// The learner to promote has not caught up with the leader's log yet.
    #[error("the learner is not in sync with the leader yet")]
    LearnerNotReady,
    /// The command's client id lease expired and the member refused its only proposal (or a
    /// witness record) before anything was appended: this attempt never executes. The client
    /// continues under a fresh id.
    #[error("the client id expired; the command was not taken")]
    ClientExpired,
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
