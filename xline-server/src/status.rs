//! The one place a `tonic::Status` is built: etcd's gRPC code and exact message for every error.

use tonic::codegen::{Service, http};
use tonic::{Code, Status};

use crate::error::{ConcurrencyError, EtcdError, ServerError};

/// The gRPC code etcd sends with `err`.
pub fn code_of(err: EtcdError) -> Code {
    use EtcdError::*;
    match err {
        EmptyKey
        | KeyNotFound
        | ValueProvided
        | LeaseProvided
        | TtlZero
        | TooManyOps
        | DuplicateKey
        | MemberBadUrls
        | RequestTooLarge
        | UserEmpty
        | RoleEmpty
        | AuthFailed
        | InvalidAuthMgmt
        | AuthOldRevision
        | PermissionNotGiven
        | WrongDowngradeVersionFormat
        | InvalidDowngradeTargetVersion => Code::InvalidArgument,
        Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
        NoSpace | TooManyRequests => Code::ResourceExhausted,
        LeaseNotFound | MemberNotFound => Code::NotFound,
        LeaseExist
        | MemberExist
        | PeerUrlExist
        | MemberNotEnoughStarted
        | MemberNotLearner
        | LearnerNotReady
        | TooManyLearners
        | RootUserNotExist
        | RootRoleNotExist
        | UserAlreadyExist
        | UserNotFound
        | RoleAlreadyExist
        | RoleNotFound
        | RoleNotGranted
        | PermissionNotGranted
        | AuthNotEnabled
        | NotLeader
        | BadLeaderTransferee
        | DowngradeInProcess
        | NoInflightDowngrade => Code::FailedPrecondition,
        PermissionDenied => Code::PermissionDenied,
        InvalidAuthToken => Code::Unauthenticated,
        NoLeader
        | LeaderChanged
        | NotCapable
        | Stopped
        | Timeout
        | TimeoutDueToLeaderFail
        | TimeoutDueToConnectionLost
        | Unhealthy
        | NotSupportedForLearner
        | ClusterVersionUnavailable => Code::Unavailable,
        Corrupt => Code::DataLoss,
        NoPasswordUser => Code::Unknown,
    }
}

impl From<EtcdError> for Status {
    fn from(err: EtcdError) -> Self {
        Status::new(code_of(err), err.to_string())
    }
}

impl From<ServerError> for Status {
    fn from(err: ServerError) -> Self {
        match err {
            ServerError::Etcd(e) => e.into(),
            ServerError::Unimplemented(what) => {
                Status::unimplemented(format!("unknown method {what}"))
            }
            // The member stopped applying: clients should go elsewhere, as with a stopped etcd.
            ServerError::Consensus(_) => EtcdError::Stopped.into(),
            ServerError::Backend(e) => Status::internal(e.to_string()),
            ServerError::Corrupt(e) => Status::data_loss(e),
            ServerError::Config(e) => Status::invalid_argument(e),
            ServerError::Io(e) => Status::internal(e.to_string()),
        }
    }
}

impl From<ConcurrencyError> for Status {
    /// As etcd's Lock and Election services answer: code Unknown with the error's message, also
    /// for the `etcdserver:` errors of the requests they made. A member that cannot serve at all
    /// answers as for any other request.
    fn from(err: ConcurrencyError) -> Self {
        match err {
            ConcurrencyError::Server(ServerError::Etcd(e)) => Status::unknown(e.to_string()),
            ConcurrencyError::Server(other) => other.into(),
            other => Status::unknown(other.to_string()),
        }
    }
}

/// A tower layer that gives oversized requests grpc-go's answer. tonic rejects a message over
/// the receive limit with `OutOfRange` and its own wording; etcd (grpc-go) answers
/// `ResourceExhausted` with "grpc: received message larger than max (N vs. M)", and clients
/// match on that code.
#[derive(Debug, Clone, Copy, Default)]
pub struct OversizeStatusLayer;

impl<S> tower_layer::Layer<S> for OversizeStatusLayer {
    type Service = OversizeStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OversizeStatus(inner)
    }
}

/// The service [`OversizeStatusLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct OversizeStatus<S>(S);

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for OversizeStatus<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future =
        futures::future::MapOk<S::Future, fn(http::Response<ResBody>) -> http::Response<ResBody>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        use futures::TryFutureExt;
        self.0
            .call(req)
            .map_ok(remap_oversize::<ResBody> as fn(_) -> _)
    }
}

/// Rewrites tonic's "decoded message length too large: found N bytes, the limit is: M bytes".
fn remap_oversize<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let is_out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    if !is_out_of_range {
        return response;
    }
    let Some(message) = headers.get("grpc-message").and_then(|v| v.to_str().ok()) else {
        return response;
    };
    let decoded = message
        .replace("%20", " ")
        .replace("%3A", ":")
        .replace("%2C", ",");
    let Some(rest) = decoded
        .split("decoded message length too large: found ")
        .nth(1)
    else {
        return response;
    };
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let (Some(found), Some(limit)) = (numbers.next(), numbers.next()) else {
        return response;
    };
    let text = format!("grpc: received message larger than max ({found} vs. {limit})");
    if let Ok(value) = http::HeaderValue::from_str(&text) {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        headers.insert("grpc-message", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Codes and messages as etcd's `rpctypes` defines them, written out independently of the
    /// enum so a typo in either place fails.
    const EXPECTED: &[(EtcdError, Code, &str)] = &[
        (
            EtcdError::EmptyKey,
            Code::InvalidArgument,
            "etcdserver: key is not provided",
        ),
        (
            EtcdError::KeyNotFound,
            Code::InvalidArgument,
            "etcdserver: key not found",
        ),
        (
            EtcdError::ValueProvided,
            Code::InvalidArgument,
            "etcdserver: value is provided",
        ),
        (
            EtcdError::LeaseProvided,
            Code::InvalidArgument,
            "etcdserver: lease is provided",
        ),
        (
            EtcdError::TtlZero,
            Code::InvalidArgument,
            "etcdserver: ttl is 0",
        ),
        (
            EtcdError::TooManyOps,
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        ),
        (
            EtcdError::DuplicateKey,
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        ),
        (
            EtcdError::Compacted,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            EtcdError::FutureRev,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            EtcdError::NoSpace,
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        ),
        (
            EtcdError::LeaseNotFound,
            Code::NotFound,
            "etcdserver: requested lease not found",
        ),
        (
            EtcdError::LeaseExist,
            Code::FailedPrecondition,
            "etcdserver: lease already exists",
        ),
        (
            EtcdError::LeaseTtlTooLarge,
            Code::OutOfRange,
            "etcdserver: too large lease TTL",
        ),
        (
            EtcdError::MemberExist,
            Code::FailedPrecondition,
            "etcdserver: member ID already exist",
        ),
        (
            EtcdError::PeerUrlExist,
            Code::FailedPrecondition,
            "etcdserver: Peer URLs already exists",
        ),
        (
            EtcdError::MemberNotEnoughStarted,
            Code::FailedPrecondition,
            "etcdserver: re-configuration failed due to not enough started members",
        ),
        (
            EtcdError::MemberBadUrls,
            Code::InvalidArgument,
            "etcdserver: given member URLs are invalid",
        ),
        (
            EtcdError::MemberNotFound,
            Code::NotFound,
            "etcdserver: member not found",
        ),
        (
            EtcdError::MemberNotLearner,
            Code::FailedPrecondition,
            "etcdserver: can only promote a learner member",
        ),
        (
            EtcdError::LearnerNotReady,
            Code::FailedPrecondition,
            "etcdserver: can only promote a learner member which is in sync with leader",
        ),
        (
            EtcdError::TooManyLearners,
            Code::FailedPrecondition,
            "etcdserver: too many learner members in cluster",
        ),
        (
            EtcdError::RequestTooLarge,
            Code::InvalidArgument,
            "etcdserver: request is too large",
        ),
        (
            EtcdError::TooManyRequests,
            Code::ResourceExhausted,
            "etcdserver: too many requests",
        ),
        (
            EtcdError::RootUserNotExist,
            Code::FailedPrecondition,
            "etcdserver: root user does not exist",
        ),
        (
            EtcdError::RootRoleNotExist,
            Code::FailedPrecondition,
            "etcdserver: root user does not have root role",
        ),
        (
            EtcdError::UserAlreadyExist,
            Code::FailedPrecondition,
            "etcdserver: user name already exists",
        ),
        (
            EtcdError::UserEmpty,
            Code::InvalidArgument,
            "etcdserver: user name is empty",
        ),
        (
            EtcdError::UserNotFound,
            Code::FailedPrecondition,
            "etcdserver: user name not found",
        ),
        (
            EtcdError::RoleAlreadyExist,
            Code::FailedPrecondition,
            "etcdserver: role name already exists",
        ),
        (
            EtcdError::RoleNotFound,
            Code::FailedPrecondition,
            "etcdserver: role name not found",
        ),
        (
            EtcdError::RoleEmpty,
            Code::InvalidArgument,
            "etcdserver: role name is empty",
        ),
        (
            EtcdError::AuthFailed,
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        (
            EtcdError::PermissionDenied,
            Code::PermissionDenied,
            "etcdserver: permission denied",
        ),
        (
            EtcdError::RoleNotGranted,
            Code::FailedPrecondition,
            "etcdserver: role is not granted to the user",
        ),
        (
            EtcdError::PermissionNotGranted,
            Code::FailedPrecondition,
            "etcdserver: permission is not granted to the role",
        ),
        (
            EtcdError::AuthNotEnabled,
            Code::FailedPrecondition,
            "etcdserver: authentication is not enabled",
        ),
        (
            EtcdError::InvalidAuthToken,
            Code::Unauthenticated,
            "etcdserver: invalid auth token",
        ),
        (
            EtcdError::InvalidAuthMgmt,
            Code::InvalidArgument,
            "etcdserver: invalid auth management",
        ),
        (
            EtcdError::AuthOldRevision,
            Code::InvalidArgument,
            "etcdserver: revision of auth store is old",
        ),
        (
            EtcdError::PermissionNotGiven,
            Code::InvalidArgument,
            "etcdserver: permission not given",
        ),
        (
            EtcdError::NoPasswordUser,
            Code::Unknown,
            "auth: authentication failed, password was given for no password user",
        ),
        (
            EtcdError::NoLeader,
            Code::Unavailable,
            "etcdserver: no leader",
        ),
        (
            EtcdError::NotLeader,
            Code::FailedPrecondition,
            "etcdserver: not leader",
        ),
        (
            EtcdError::LeaderChanged,
            Code::Unavailable,
            "etcdserver: leader changed",
        ),
        (
            EtcdError::NotCapable,
            Code::Unavailable,
            "etcdserver: not capable",
        ),
        (
            EtcdError::Stopped,
            Code::Unavailable,
            "etcdserver: server stopped",
        ),
        (
            EtcdError::Timeout,
            Code::Unavailable,
            "etcdserver: request timed out",
        ),
        (
            EtcdError::TimeoutDueToLeaderFail,
            Code::Unavailable,
            "etcdserver: request timed out, possibly due to previous leader failure",
        ),
        (
            EtcdError::TimeoutDueToConnectionLost,
            Code::Unavailable,
            "etcdserver: request timed out, possibly due to connection lost",
        ),
        (
            EtcdError::Unhealthy,
            Code::Unavailable,
            "etcdserver: unhealthy cluster",
        ),
        (
            EtcdError::Corrupt,
            Code::DataLoss,
            "etcdserver: corrupt cluster",
        ),
        (
            EtcdError::NotSupportedForLearner,
            Code::Unavailable,
            "etcdserver: rpc not supported for learner",
        ),
        (
            EtcdError::BadLeaderTransferee,
            Code::FailedPrecondition,
            "etcdserver: bad leader transferee",
        ),
        (
            EtcdError::ClusterVersionUnavailable,
            Code::Unavailable,
            "etcdserver: cluster version not found during downgrade",
        ),
        (
            EtcdError::WrongDowngradeVersionFormat,
            Code::InvalidArgument,
            "etcdserver: wrong downgrade target version format",
        ),
        (
            EtcdError::InvalidDowngradeTargetVersion,
            Code::InvalidArgument,
            "etcdserver: invalid downgrade target version",
        ),
        (
            EtcdError::DowngradeInProcess,
            Code::FailedPrecondition,
            "etcdserver: cluster has a downgrade job in progress",
        ),
        (
            EtcdError::NoInflightDowngrade,
            Code::FailedPrecondition,
            "etcdserver: no inflight downgrade job",
        ),
    ];

    #[test]
    fn every_variant_has_etcds_code_and_message() {
        assert_eq!(EXPECTED.len(), EtcdError::ALL.len());
        let covered: HashSet<EtcdError> = EXPECTED.iter().map(|(e, _, _)| *e).collect();
        for err in EtcdError::ALL {
            assert!(covered.contains(&err), "{err:?} has no expectation");
        }
        for (err, code, msg) in EXPECTED {
            let status = Status::from(*err);
            assert_eq!(status.code(), *code, "{err:?}");
            assert_eq!(status.message(), *msg, "{err:?}");
            let via_server = Status::from(ServerError::from(*err));
            assert_eq!((via_server.code(), via_server.message()), (*code, *msg));
        }
    }

    #[test]
    fn oversize_is_resource_exhausted() {
        let resp = http::Response::builder()
            .header("grpc-status", "11")
            .header(
                "grpc-message",
                "Error, decoded message length too large: found 590858 bytes, the limit is: 525312 bytes",
            )
            .body(())
            .unwrap();
        let resp = remap_oversize(resp);
        assert_eq!(resp.headers()["grpc-status"], "8");
        assert_eq!(
            resp.headers()["grpc-message"],
            "grpc: received message larger than max (590858 vs. 525312)"
        );
        let other = http::Response::builder()
            .header("grpc-status", "11")
            .header(
                "grpc-message",
                "etcdserver: mvcc: required revision is a future revision",
            )
            .body(())
            .unwrap();
        assert_eq!(remap_oversize(other).headers()["grpc-status"], "11");
    }

    #[test]
    fn lock_and_election_errors_are_unknown_with_etcds_message() {
        let cases = [
            (ConcurrencyError::NotLeader, "election: not leader"),
            (ConcurrencyError::NoLeader, "election: no leader"),
            (
                ConcurrencyError::MissingLeaderKey,
                "\"leader\" field must be provided",
            ),
            (
                ConcurrencyError::SessionExpired,
                "mutex: session is expired",
            ),
            (
                ConcurrencyError::from(EtcdError::LeaseNotFound),
                "etcdserver: requested lease not found",
            ),
        ];
        for (err, msg) in cases {
            let status = Status::from(err);
            assert_eq!((status.code(), status.message()), (Code::Unknown, msg));
        }
        let stopped = Status::from(ConcurrencyError::from(ServerError::Consensus("x".into())));
        assert_eq!(stopped.code(), Code::Unavailable);
    }

    #[test]
    fn unimplemented_is_unimplemented() {
        let status = Status::from(ServerError::Unimplemented(
            "/etcdserverpb.Maintenance/Snapshot",
        ));
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(
            Status::from(ServerError::Consensus("x".into())).code(),
            Code::Unavailable
        );
    }
}
