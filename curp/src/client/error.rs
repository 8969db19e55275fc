//! [`ClientError`]: the native client's one error type (members' wire failures, transport
//! failures and the client's own deadline).

use crate::core::Rejection;
use crate::error::DecodeError;
use crate::transport::grpc::curppb::{self, client_failure::Failure};

/// A request of the native client failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The operation had no outcome before the client's deadline. It may still be applied
    /// later, at most once (its id is never reused for another command).
    #[error("the request timed out; its outcome is unknown")]
    Timeout,
    /// A member could not be reached, or the call failed on the way.
    #[error("cannot reach member at {addr}: {message}")]
    Transport {
        /// The address called.
        addr: String,
        /// What failed.
        message: String,
    },
    /// No member address is known (none given, or none answered with the cluster's shape).
    #[error("no member of the cluster is known")]
    NoMembers,
    /// A member refused the request (not the leader, another cluster version, a transfer).
    #[error("the member refused the request: {0:?}")]
    Rejected(Rejection),
    /// The member is shutting down.
    #[error("the member is shutting down")]
    ShuttingDown,
    /// The member stopped after a fatal error.
    #[error("the member stopped after a fatal error: {0}")]
    Fatal(String),
    /// The member's own deadline passed without an outcome (retried with the same id).
    #[error("the member found no outcome before its deadline")]
    MemberTimeout,
    /// The command was executed, exactly once, by an earlier attempt with the same proposal
    /// id, but no member still holds its result.
    #[error("the command was already executed; its result is not available")]
    Duplicate,
    /// The client id expired (the client was cut off from the leader for longer than its
    /// lease) while the command was in flight, and an earlier attempt may have been ordered:
    /// it executed at most once, maybe not at all. The client continues under a fresh id.
    /// (When every attempt was refused because of the expiry, the client retries the command
    /// under the fresh id itself.)
    #[error("the client id expired; the outcome of the command is unknown")]
    Expired,
    /// The member could not decode the request.
    #[error("the member could not decode the request: {0}")]
    BadRequest(String),
    /// A response did not decode (a required field missing, an output the codec refuses).
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl ClientError {
    /// Whether another attempt with the same proposal id may succeed (CURP.md 5.1 retry
    /// classes): everything but a duplicate, a request the member cannot decode and a
    /// malformed response.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            ClientError::Duplicate
                | ClientError::Expired
                | ClientError::BadRequest(_)
                | ClientError::Malformed(_)
        )
    }

    /// Whether the client should refresh its view of the cluster before retrying.
    pub(crate) fn needs_refresh(&self) -> bool {
        match self {
            ClientError::Transport { .. }
            | ClientError::ShuttingDown
            | ClientError::Fatal(_)
            | ClientError::NoMembers
            | ClientError::MemberTimeout => true,
            ClientError::Rejected(r) => !matches!(
                r,
                Rejection::NotLeader {
                    leader: Some(_),
                    ..
                } | Rejection::LeaderTransfer
            ),
            _ => false,
        }
    }
}

impl From<DecodeError> for ClientError {
    fn from(err: DecodeError) -> Self {
        ClientError::Malformed(err.to_string())
    }
}

impl From<curppb::ClientFailure> for ClientError {
    fn from(failure: curppb::ClientFailure) -> Self {
        match failure.failure {
            Some(Failure::Rejected(r)) => match Rejection::try_from(r) {
                Ok(r) => ClientError::Rejected(r),
                Err(e) => ClientError::Malformed(e.to_string()),
            },
            Some(Failure::ShuttingDown(_)) => ClientError::ShuttingDown,
            Some(Failure::Fatal(message)) => ClientError::Fatal(message),
            Some(Failure::Timeout(_)) => ClientError::MemberTimeout,
            Some(Failure::Duplicate(_)) => ClientError::Duplicate,
            Some(Failure::BadRequest(message)) => ClientError::BadRequest(message),
            None => ClientError::Malformed("ClientFailure without a case".into()),
        }
    }
}
