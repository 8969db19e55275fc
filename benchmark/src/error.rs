//! The one error type of the load generator.

use thiserror::Error;

/// Everything that stops a benchmark run before it can report.
///
/// Failures of individual requests during a run are not errors of this type: they are counted
/// in the report (see [`crate::report::Recorder::record_error`]), as etcd's tool does.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A flag or a combination of flags makes no sense.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// `--native` with a workload the native client cannot send.
    #[error("--native: {workload} is not available through the native client: {reason}")]
    NativeUnsupported {
        /// The workload.
        workload: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// An endpoint could not be parsed or reached.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// The endpoint as given.
        endpoint: String,
        /// Why (parse or transport error).
        reason: String,
    },
    /// A setup request (not a measured one) failed.
    #[error("{context}: {code:?}: {message}")]
    Setup {
        /// What was being done.
        context: &'static str,
        /// The gRPC code.
        code: tonic::Code,
        /// The server's message (etcd's "etcdserver: ..." strings).
        message: String,
    },
    /// `--target-leader` found no member that knows a leader it can reach.
    #[error("--target-leader: no leader found among {0}")]
    NoLeader(String),
    /// A task of the run panicked or was cancelled.
    #[error("benchmark task failed: {0}")]
    Task(String),
}

impl BenchError {
    /// A failed setup request.
    pub fn setup(context: &'static str, status: &tonic::Status) -> Self {
        Self::Setup {
            context,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}
