//! The state machine behind consensus: applies committed [`Command`]s to the MVCC store.

use std::sync::Arc;

use curp::{CommandExecutor, ExecutorError};

use crate::command::Command;
use crate::mvcc::store::{ApplyOutput, KvStore};

/// Applies committed commands to the [`KvStore`], one backend batch per log batch, recording
/// the applied index in the same batch.
#[derive(Debug, Clone)]
pub struct Executor {
    store: Arc<KvStore>,
}

impl Executor {
    /// An executor over `store`.
    pub fn new(store: Arc<KvStore>) -> Self {
        Self { store }
    }
}

impl CommandExecutor<Command> for Executor {
    type Output = ApplyOutput;

    fn apply(&self, batch: &[(u64, Command)]) -> Result<Vec<ApplyOutput>, ExecutorError> {
        self.store.apply(batch).map_err(ExecutorError::new)
    }

    fn flush(&self) -> Result<u64, ExecutorError> {
        self.store.flush().map_err(ExecutorError::new)
    }

    fn applied_index(&self) -> Result<u64, ExecutorError> {
        Ok(self.store.applied_index())
    }

    fn snapshot(&self) -> Result<bytes::Bytes, ExecutorError> {
        self.store
            .snapshot()
            .map(bytes::Bytes::from)
            .map_err(ExecutorError::new)
    }

    fn restore(&self, data: &[u8], index: u64) -> Result<(), ExecutorError> {
        self.store.restore(data, index).map_err(ExecutorError::new)
    }

    /// Only the native client's fast path asks (the etcd front end proposes ordered): see
    /// [`crate::native`] for what speculates.
    fn speculate(&self, cmd: &Command) -> Option<ApplyOutput> {
        crate::native::speculate(&self.store, cmd)
    }
}
