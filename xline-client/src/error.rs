//! The client's error type. Errors a server reports are rebuilt into typed kinds from etcd's
//! exact messages ([`EtcdErrorKind`], [`ConcurrencyErrorKind`]), whatever gRPC code carried them
//! (the Lock and Election services send etcd's errors with code `Unknown`).

use tonic::{Code, Status};

/// The result type of every client call.
pub type Result<T> = std::result::Result<T, Error>;

/// Declares [`EtcdErrorKind`] with etcd's message for every variant.
macro_rules! etcd_errors {
    ($($(#[$doc:meta])* $name:ident => $msg:literal,)*) => {
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
    EmptyKey => "etcdserver: key is not provided",
    KeyNotFound => "etcdserver: key not found",
    ValueProvided => "etcdserver: value is provided",
    LeaseProvided => "etcdserver: lease is provided",
    TtlZero => "etcdserver: ttl is 0",
    TooManyOps => "etcdserver: too many operations in txn request",
    DuplicateKey => "etcdserver: duplicate key given in txn request",
    Compacted => "etcdserver: mvcc: required revision has been compacted",
    FutureRev => "etcdserver: mvcc: required revision is a future revision",
    NoSpace => "etcdserver: mvcc: database space exceeded",
    LeaseNotFound => "etcdserver: requested lease not found",
    LeaseExist => "etcdserver: lease already exists",
    LeaseTtlTooLarge => "etcdserver: too large lease TTL",
    MemberExist => "etcdserver: member ID already exist",
    PeerUrlExist => "etcdserver: Peer URLs already exists",
    MemberNotEnoughStarted => "etcdserver: re-configuration failed due to not enough started members",
    MemberBadUrls => "etcdserver: given member URLs are invalid",
    MemberNotFound => "etcdserver: member not found",
    MemberNotLearner => "etcdserver: can only promote a learner member",
    LearnerNotReady => "etcdserver: can only promote a learner member which is in sync with leader",
    TooManyLearners => "etcdserver: too many learner members in cluster",
    RequestTooLarge => "etcdserver: request is too large",
    TooManyRequests => "etcdserver: too many requests",
    RootUserNotExist => "etcdserver: root user does not exist",
    RootRoleNotExist => "etcdserver: root user does not have root role",
    UserAlreadyExist => "etcdserver: user name already exists",
    UserEmpty => "etcdserver: user name is empty",
    UserNotFound => "etcdserver: user name not found",
    RoleAlreadyExist => "etcdserver: role name already exists",
    RoleNotFound => "etcdserver: role name not found",
    RoleEmpty => "etcdserver: role name is empty",
    AuthFailed => "etcdserver: authentication failed, invalid user ID or password",
    PermissionDenied => "etcdserver: permission denied",
    RoleNotGranted => "etcdserver: role is not granted to the user",
    PermissionNotGranted => "etcdserver: permission is not granted to the role",
    AuthNotEnabled => "etcdserver: authentication is not enabled",
    InvalidAuthToken => "etcdserver: invalid auth token",
    InvalidAuthMgmt => "etcdserver: invalid auth management",
    NoLeader => "etcdserver: no leader",
    NotLeader => "etcdserver: not leader",
    LeaderChanged => "etcdserver: leader changed",
    NotCapable => "etcdserver: not capable",
    Stopped => "etcdserver: server stopped",
    Timeout => "etcdserver: request timed out",
    TimeoutDueToLeaderFail => "etcdserver: request timed out, possibly due to previous leader failure",
    TimeoutDueToConnectionLost => "etcdserver: request timed out, possibly due to connection lost",
    Unhealthy => "etcdserver: unhealthy cluster",
    Corrupt => "etcdserver: corrupt cluster",
    NotSupportedForLearner => "etcdserver: rpc not supported for learner",
    BadLeaderTransferee => "etcdserver: bad leader transferee",
    ClusterVersionUnavailable => "etcdserver: cluster version not found during downgrade",
    WrongDowngradeVersionFormat => "etcdserver: wrong downgrade target version format",
    InvalidDowngradeTargetVersion => "etcdserver: invalid downgrade target version",
    DowngradeInProcess => "etcdserver: cluster has a downgrade job in progress",
    NoInflightDowngrade => "etcdserver: no inflight downgrade job",
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
