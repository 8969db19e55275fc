#![doc = "CURP consensus: commuting proposals complete in one round trip, the rest are ordered."]
//!
//! This crate knows nothing about the state machine it replicates. It sees opaque
//! [`Command`]s, which it stores in a [`LogStorage`] and hands, in log order, to a
//! [`CommandExecutor`].
//!
//! The crate provides the state-machine seam ([`cmd`]), the pure protocol core ([`core`]),
//! durable log storage ([`storage`]), the peer transport seam ([`transport`]), and the driver:
//! [`Node`] runs a member of a replicated cluster ([`node`]); a single member is a cluster of one.
//! Remote programs use the native client ([`client`]), which members serve through
//! [`transport::client_service`].

pub mod client;
pub mod cmd;
pub mod core;
pub mod error;
pub mod node;
pub mod storage;
/// Test support: simulation helpers and a linearizability checker (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod transport;

pub use cmd::{Command, CommandExecutor, ConflictKeys, KeyRange};
pub use error::{DecodeError, ExecutorError, ProposeError, StorageError};
pub use node::{Inbox, Node, NodeConfig, NodeError, NodeHandle};
pub use storage::{HardState, LogEntry, LogStorage, MemoryLog};
#[cfg(feature = "storage")]
pub use storage::{RaftEngineLog, RaftEngineOptions};
