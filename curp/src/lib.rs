#![doc = "CURP consensus: commuting proposals complete in one round trip, the rest are ordered."]
//!
//! This crate knows nothing about the state machine it replicates. It sees opaque
//! [`Command`]s, which it stores in a [`LogStorage`] and hands, in log order, to a
//! [`CommandExecutor`].
//!
//! For now the crate provides the state-machine seam ([`cmd`]), durable log storage
//! ([`storage`]) and [`SoloNode`], a single-voter driver that orders, persists and applies
//! proposals until the full consensus node exists.

pub mod cmd;
pub mod core;
pub mod error;
pub mod solo;
pub mod storage;

pub use cmd::{Command, CommandExecutor, ConflictKeys, KeyRange};
pub use error::{DecodeError, ExecutorError, ProposeError, StorageError};
pub use solo::{SoloConfig, SoloHandle, SoloNode};
pub use storage::{HardState, LogEntry, LogStorage, MemoryLog, RaftEngineLog, RaftEngineOptions};
