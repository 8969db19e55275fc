//! The client's error type. Errors a server reports are rebuilt into typed kinds from etcd's
//! exact messages ([`EtcdErrorKind`], [`ConcurrencyErrorKind`]), whatever gRPC code carried them
//! (the Lock and Election services send etcd's errors with code `Unknown`).

use tonic::{Code, Status};

/// The result type of every client call.
pub type Result<T> = std::result::Result<T, Error>;

/// Declares [`EtcdErrorKind`] with etcd's gRPC code and message for every variant.
macro_rules! etcd_errors {
    ($($(#[$doc:meta])* $name:ident => $code:ident, $msg:literal,)*) => {
        /// An error etcd defines for its clients, recognised by its exact message
        /// (`etcdserver: ...`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EtcdErrorKind {
            $($(#[$doc])* #[doc = concat!("`", $msg, "`")] $name,)*
        }

        impl EtcdErrorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EtcdErrorKind] = &[$(EtcdErrorKind::$name,)*];

            /// etcd's message for this kind, byte for byte.
            pub fn message(self) -> &'static str {
                match self {
                    $(EtcdErrorKind::$name => $msg,)*
                }
            }

            /// The gRPC code etcd's API sends this kind with (etcd's `rpctypes`).
            pub fn code(self) -> Code {
                match self {
                    $(EtcdErrorKind::$name => Code::$code,)*
                }
            }

            /// The kind whose message is `message`, if any.
            pub fn from_message(message: &str) -> Option<Self> {
                match message {
                    $($msg => Some(EtcdErrorKind::$name),)*
                    _ => None,
                }
            }
        }
    };
}

etcd_errors! {
    EmptyKey => InvalidArgument, "etcdserver: key is not provided",
    KeyNotFound => InvalidArgument, "etcdserver: key not found",
    ValueProvided => InvalidArgument, "etcdserver: value is provided",
    LeaseProvided => InvalidArgument, "etcdserver: lease is provided",
    TtlZero => InvalidArgument, "etcdserver: ttl is 0",
    TooManyOps => InvalidArgument, "etcdserver: too many operations in txn request",
    DuplicateKey => InvalidArgument, "etcdserver: duplicate key given in txn request",
    Compacted => OutOfRange, "etcdserver: mvcc: required revision has been compacted",
    FutureRev => OutOfRange, "etcdserver: mvcc: required revision is a future revision",
    NoSpace => ResourceExhausted, "etcdserver: mvcc: database space exceeded",
    LeaseNotFound => NotFound, "etcdserver: requested lease not found",
    LeaseExist => FailedPrecondition, "etcdserver: lease already exists",
    LeaseTtlTooLarge => OutOfRange, "etcdserver: too large lease TTL",
    MemberExist => FailedPrecondition, "etcdserver: member ID already exist",
    PeerUrlExist => FailedPrecondition, "etcdserver: Peer URLs already exists",
    MemberNotEnoughStarted => FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members",
    MemberBadUrls => InvalidArgument, "etcdserver: given member URLs are invalid",
    MemberNotFound => NotFound, "etcdserver: member not found",
    MemberNotLearner => FailedPrecondition, "etcdserver: can only promote a learner member",
    LearnerNotReady => FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader",
    TooManyLearners => FailedPrecondition, "etcdserver: too many learner members in cluster",
    RequestTooLarge => InvalidArgument, "etcdserver: request is too large",
    TooManyRequests => ResourceExhausted, "etcdserver: too many requests",
    RootUserNotExist => FailedPrecondition, "etcdserver: root user does not exist",
    RootRoleNotExist => FailedPrecondition, "etcdserver: root user does not have root role",
    UserAlreadyExist => FailedPrecondition, "etcdserver: user name already exists",
    UserEmpty => InvalidArgument, "etcdserver: user name is empty",
    UserNotFound => FailedPrecondition, "etcdserver: user name not found",
    RoleAlreadyExist => FailedPrecondition, "etcdserver: role name already exists",
    RoleNotFound => FailedPrecondition, "etcdserver: role name not found",
    RoleEmpty => InvalidArgument, "etcdserver: role name is empty",
    AuthFailed => InvalidArgument, "etcdserver: authentication failed, invalid user ID or password",
    PermissionDenied => PermissionDenied, "etcdserver: permission denied",
    RoleNotGranted => FailedPrecondition, "etcdserver: role is not granted to the user",
    PermissionNotGranted => FailedPrecondition, "etcdserver: permission is not granted to the role",
    AuthNotEnabled => FailedPrecondition, "etcdserver: authentication is not enabled",
    InvalidAuthToken => Unauthenticated, "etcdserver: invalid auth token",
    InvalidAuthMgmt => InvalidArgument, "etcdserver: invalid auth management",
    NoLeader => Unavailable, "etcdserver: no leader",
    NotLeader => FailedPrecondition, "etcdserver: not leader",
    LeaderChanged => Unavailable, "etcdserver: leader changed",
    NotCapable => Unavailable, "etcdserver: not capable",
    Stopped => Unavailable, "etcdserver: server stopped",
    Timeout => Unavailable, "etcdserver: request timed out",
    TimeoutDueToLeaderFail => Unavailable, "etcdserver: request timed out, possibly due to previous leader failure",
    TimeoutDueToConnectionLost => Unavailable, "etcdserver: request timed out, possibly due to connection lost",
    Unhealthy => Unavailable, "etcdserver: unhealthy cluster",
    Corrupt => DataLoss, "etcdserver: corrupt cluster",
    NotSupportedForLearner => Unavailable, "etcdserver: rpc not supported for learner",
    BadLeaderTransferee => FailedPrecondition, "etcdserver: bad leader transferee",
    ClusterVersionUnavailable => Unavailable, "etcdserver: cluster version not found during downgrade",
    WrongDowngradeVersionFormat => InvalidArgument, "etcdserver: wrong downgrade target version format",
    InvalidDowngradeTargetVersion => InvalidArgument, "etcdserver: invalid downgrade target version",
    DowngradeInProcess => FailedPrecondition, "etcdserver: cluster has a downgrade job in progress",
    NoInflightDowngrade => FailedPrecondition, "etcdserver: no inflight downgrade job",
}

impl std::fmt::Display for EtcdErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// An error of etcd's Lock and Election services (etcd's `concurrency` package), recognised by
/// its exact message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConcurrencyErrorKind {
    /// `election: not leader`: the leader key named is not (or no longer) the leader's.
    ElectionNotLeader,
    /// `election: no leader`: nobody campaigns in the election.
    ElectionNoLeader,
    /// `"leader" field must be provided`.
    MissingLeaderKey,
    /// `mutex: session is expired`: the waiter's lease expired before it got the lock.
    SessionExpired,
}

impl ConcurrencyErrorKind {
    /// etcd's message for this kind.
    pub fn message(self) -> &'static str {
        match self {
            ConcurrencyErrorKind::ElectionNotLeader => "election: not leader",
            ConcurrencyErrorKind::ElectionNoLeader => "election: no leader",
            ConcurrencyErrorKind::MissingLeaderKey => "\"leader\" field must be provided",
            ConcurrencyErrorKind::SessionExpired => "mutex: session is expired",
        }
    }

    /// The kind whose message is `message`, if any.
    pub fn from_message(message: &str) -> Option<Self> {
        [
            ConcurrencyErrorKind::ElectionNotLeader,
            ConcurrencyErrorKind::ElectionNoLeader,
            ConcurrencyErrorKind::MissingLeaderKey,
            ConcurrencyErrorKind::SessionExpired,
        ]
        .into_iter()
        .find(|k| k.message() == message)
    }
}

impl std::fmt::Display for ConcurrencyErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with one of etcd's errors.
    #[error("{kind}")]
    Etcd {
        /// Which error.
        kind: EtcdErrorKind,
        /// The gRPC code it came with.
        code: Code,
    },
    /// The Lock or Election service answered with one of its own errors.
    #[error("{kind}")]
    Concurrency {
        /// Which error.
        kind: ConcurrencyErrorKind,
        /// The gRPC code it came with.
        code: Code,
    },
    /// Any other gRPC status (transport failures included).
    #[error("grpc status {}: {}", .0.code(), .0.message())]
    Status(Status),
    /// No endpoint could be dialled.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// The last endpoint tried.
        endpoint: String,
        /// Why it failed.
        reason: String,
    },
    /// The call did not finish within the per-call timeout.
    #[error("context deadline exceeded")]
    Timeout,
    /// A watch was cancelled because the revision it asked for has been compacted.
    #[error("{}: compact revision {compact_revision}", EtcdErrorKind::Compacted)]
    WatchCompacted {
        /// The compaction revision the server reported; re-watch from it.
        compact_revision: i64,
    },
    /// The server cancelled a watch (other than for compaction).
    #[error("watch canceled: {reason}")]
    WatchCanceled {
        /// The server's cancel reason.
        reason: String,
    },
    /// A lease keep-alive found the lease gone (TTL 0: it expired or was revoked).
    #[error("lease {0:x} expired or revoked")]
    LeaseExpired(i64),
    /// An argument the client rejects before sending anything.
    #[error("invalid argument: {0}")]
    InvalidArgs(String),
    /// Bad TLS settings: an unreadable or empty PEM file, a certificate without its key, no CA
    /// bundle to verify the server with. (A failed handshake is a [`Error::Connect`].)
    #[error("tls: {0}")]
    Tls(String),
    /// A feature this build does not provide (e.g. `unixs://` endpoints).
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    /// A background task or stream this handle relied on has stopped.
    #[error("{0} closed")]
    Closed(&'static str),
    /// The native CURP client failed (feature `native`, see [`crate::native`]): the cluster
    /// could not be reached or refused the request, or the response was malformed.
    #[cfg(feature = "native")]
    #[error("native client: {0}")]
    Native(curp::client::ClientError),
}

impl Error {
    /// Rebuilds the typed error a status carries.
    pub fn from_status(status: Status) -> Self {
        let code = status.code();
        if let Some(kind) = EtcdErrorKind::from_message(status.message()) {
            return Error::Etcd { kind, code };
        }
        if let Some(kind) = ConcurrencyErrorKind::from_message(status.message()) {
            return Error::Concurrency { kind, code };
        }
        Error::Status(status)
    }

    /// The etcd error kind, if this is one of etcd's errors.
    pub fn etcd_kind(&self) -> Option<EtcdErrorKind> {
        match self {
            Error::Etcd { kind, .. } => Some(*kind),
            Error::WatchCompacted { .. } => Some(EtcdErrorKind::Compacted),
            _ => None,
        }
    }

    /// The gRPC code of a server-sent error (`None` for client-side errors).
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Etcd { code, .. } | Error::Concurrency { code, .. } => Some(*code),
            Error::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::from_status(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        for &kind in EtcdErrorKind::ALL {
            assert_eq!(EtcdErrorKind::from_message(kind.message()), Some(kind));
            let err = Error::from_status(Status::new(Code::Unavailable, kind.message()));
            assert_eq!(err.etcd_kind(), Some(kind));
            assert_eq!(err.to_string(), kind.message());
        }
        assert_eq!(EtcdErrorKind::ALL.len(), 55);
    }

    #[test]
    fn concurrency_errors_with_unknown_code() {
        let err = Error::from_status(Status::unknown("election: no leader"));
        assert!(matches!(
            err,
            Error::Concurrency {
                kind: ConcurrencyErrorKind::ElectionNoLeader,
                code: Code::Unknown
            }
        ));
        let err = Error::from_status(Status::unknown("etcdserver: requested lease not found"));
        assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::LeaseNotFound));
        assert_eq!(err.code(), Some(Code::Unknown));
    }

    #[test]
    fn unknown_messages_stay_statuses() {
        let err = Error::from_status(Status::unavailable("tcp connect error"));
        assert!(matches!(err, Error::Status(ref s) if s.code() == Code::Unavailable));
        assert_eq!(err.etcd_kind(), None);
    }
}
