//! The server's error enums: [`EtcdError`] for everything a client may be told (etcd's exact
//! messages, part of the wire contract: clients rebuild typed errors from them), and
//! [`ServerError`] for everything else. `crate::status` turns both into a `tonic::Status`.

use crate::storage::backend::BackendError;

/// An error etcd defines for its clients. The `Display` text is etcd's message, byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[allow(missing_docs)] // each variant is documented by its message
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: ttl is 0")]
    TtlZero,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// etcd leaves this one unmapped (gRPC code Unknown, the auth package's own text).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: not capable")]
    NotCapable,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    #[error("etcdserver: request timed out, possibly due to connection lost")]
    TimeoutDueToConnectionLost,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: cluster version not found during downgrade")]
    ClusterVersionUnavailable,
    #[error("etcdserver: wrong downgrade target version format")]
    WrongDowngradeVersionFormat,
    #[error("etcdserver: invalid downgrade target version")]
    InvalidDowngradeTargetVersion,
    #[error("etcdserver: cluster has a downgrade job in progress")]
    DowngradeInProcess,
    #[error("etcdserver: no inflight downgrade job")]
    NoInflightDowngrade,
}

impl EtcdError {
    /// Every variant, for exhaustive tests.
    pub const ALL: [EtcdError; 58] = {
        use EtcdError::*;
        [
            EmptyKey,
            KeyNotFound,
            ValueProvided,
            LeaseProvided,
            TtlZero,
            TooManyOps,
            DuplicateKey,
            Compacted,
            FutureRev,
            NoSpace,
            LeaseNotFound,
            LeaseExist,
            LeaseTtlTooLarge,
            MemberExist,
            PeerUrlExist,
            MemberNotEnoughStarted,
            MemberBadUrls,
            MemberNotFound,
            MemberNotLearner,
            LearnerNotReady,
            TooManyLearners,
            RequestTooLarge,
            TooManyRequests,
            RootUserNotExist,
            RootRoleNotExist,
            UserAlreadyExist,
            UserEmpty,
            UserNotFound,
            RoleAlreadyExist,
            RoleNotFound,
            RoleEmpty,
            AuthFailed,
            PermissionDenied,
            RoleNotGranted,
            PermissionNotGranted,
            AuthNotEnabled,
            InvalidAuthToken,
            InvalidAuthMgmt,
            AuthOldRevision,
            PermissionNotGiven,
            NoPasswordUser,
            NoLeader,
            NotLeader,
            LeaderChanged,
            NotCapable,
            Stopped,
            Timeout,
            TimeoutDueToLeaderFail,
            TimeoutDueToConnectionLost,
            Unhealthy,
            Corrupt,
            NotSupportedForLearner,
            BadLeaderTransferee,
            ClusterVersionUnavailable,
            WrongDowngradeVersionFormat,
            InvalidDowngradeTargetVersion,
            DowngradeInProcess,
            NoInflightDowngrade,
        ]
    };
}

impl From<curp::ProposeError> for ServerError {
    /// Consensus outcomes as etcd reports them: an unknown outcome is etcd's "request timed
    /// out", a stopping node is "server stopped", no reachable leader is "no leader".
    fn from(err: curp::ProposeError) -> Self {
        use curp::ProposeError as P;
        match err {
            P::Timeout | P::Duplicate => ServerError::Etcd(EtcdError::Timeout),
            P::NotLeader { leader: None } => ServerError::Etcd(EtcdError::NoLeader),
            P::NotLeader { leader: Some(_) } => ServerError::Etcd(EtcdError::NotLeader),
            P::ShuttingDown => ServerError::Etcd(EtcdError::Stopped),
            other => ServerError::Consensus(other.to_string()),
        }
    }
}

/// An error of the Lock and Election services. etcd serves them over an in-process client and
/// hands that client's errors on as plain errors, so every one of them (an underlying
/// `etcdserver: ...` error too) reaches the caller with gRPC code Unknown and the error's message.
#[derive(Debug, thiserror::Error)]
pub enum ConcurrencyError {
    /// etcd's `concurrency.ErrElectionNotLeader`: the leader key named is not the leader's (any
    /// more: resigned, or its lease expired).
    #[error("election: not leader")]
    NotLeader,
    /// etcd's `concurrency.ErrElectionNoLeader`: nobody campaigns in the election.
    #[error("election: no leader")]
    NoLeader,
    /// etcd's `v3election.ErrMissingLeaderKey`.
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    /// etcd's `concurrency.ErrSessionExpired`: a waiter's key was gone when its turn came (its
    /// lease expired while it waited).
    #[error("mutex: session is expired")]
    SessionExpired,
    /// A request the service made failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl From<EtcdError> for ConcurrencyError {
    fn from(err: EtcdError) -> Self {
        ConcurrencyError::Server(err.into())
    }
}

/// Anything that can fail while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// An error etcd defines; sent to the client as etcd would.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The storage engine failed; the member cannot go on safely.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The consensus layer failed or is shutting down.
    #[error("consensus: {0}")]
    Consensus(String),
    /// The state on disk or a log entry could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// An RPC this server does not serve yet.
    #[error("unimplemented: {0}")]
    Unimplemented(&'static str),
    /// Invalid startup configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O failure outside the backend (listeners, data directory).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
