//! xlinectl's one error type: a message and etcdctl's exit code for it.

use std::fmt;

/// etcdctl's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// A failed request.
    Error = 1,
    /// Could not connect, or a connection-level failure.
    BadConnection = 2,
    /// Bad input on stdin (txn, watch -i).
    InvalidInput = 3,
    /// A valid flag with an unsupported value.
    BadFeature = 4,
    /// Interrupted (watch canceled).
    Interrupted = 5,
    /// Bad arguments.
    BadArgs = 128,
}

/// An error that ends the command: printed as `Error: <msg>` with its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    /// The exit code.
    pub code: ExitCode,
    /// The message after `Error: `.
    pub msg: String,
}

impl CtlError {
    /// An error with `code` and `msg`.
    pub fn new(code: ExitCode, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }

    /// A bad-arguments error.
    pub fn args(msg: impl Into<String>) -> Self {
        Self::new(ExitCode::BadArgs, msg)
    }

    /// An error that only sets the exit code (what was to say is already printed).
    pub fn silent(mut self) -> Self {
        self.msg.clear();
        self
    }

    /// The same message with another exit code.
    pub fn with_code(mut self, code: ExitCode) -> Self {
        self.code = code;
        self
    }

    /// The message wrapped as etcdctl does, e.g. `failed to grant lease (<msg>)`.
    pub fn wrap(mut self, prefix: &str) -> Self {
        self.msg = format!("{prefix} ({})", self.msg);
        self
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CtlError {}

/// Go gRPC's name of a status code, as `rpc error: code = X desc = ...` prints it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

impl From<tonic::Status> for CtlError {
    /// etcd's client turns a status whose message is one of etcd's errors back into that error
    /// (printed as its bare message); anything else prints as Go gRPC formats a status.
    fn from(s: tonic::Status) -> Self {
        let msg = if s.message().starts_with("etcdserver: ") {
            s.message().to_owned()
        } else {
            format!(
                "rpc error: code = {} desc = {}",
                code_name(s.code()),
                s.message()
            )
        };
        Self::new(ExitCode::Error, msg)
    }
}

impl From<xline_client::Error> for CtlError {
    /// The library's errors print as etcdctl prints what clientv3 returns: etcd's own errors
    /// as their bare message, other statuses as Go gRPC formats them.
    fn from(e: xline_client::Error) -> Self {
        use xline_client::Error;
        match e {
            Error::Etcd { kind, .. } => Self::new(ExitCode::Error, kind.message()),
            Error::Concurrency { kind, code } => {
                Self::from(tonic::Status::new(code, kind.message()))
            }
            Error::Status(s) => Self::from(s),
            Error::Timeout => deadline(),
            // Every endpoint refused the dial until the retries ran out.
            Error::Connect { endpoint, reason } => Self::new(
                ExitCode::Error,
                format!(
                    "rpc error: code = Unavailable desc = connection error: dial {endpoint}: {reason}"
                ),
            ),
            Error::InvalidArgs(msg) => Self::new(ExitCode::BadArgs, msg),
            e => Self::new(ExitCode::Error, e.to_string()),
        }
    }
}

/// The deadline error Go's context reports.
pub fn deadline() -> CtlError {
    CtlError::new(ExitCode::Error, "context deadline exceeded")
}
