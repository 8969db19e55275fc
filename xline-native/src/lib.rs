//! Xline's native CURP wire types, shared by the server and native clients.
//!
//! - [`Command`]: a mutating etcd request as proposed to consensus and appended to the log (an
//!   envelope with a `oneof` of the etcd request messages themselves), with its conflict keys
//!   (the [`curp::Command`] implementation): two commands commute unless their key ranges or
//!   leases overlap, or one is exclusive.
//! - [`NativeOutput`]: what a command produced, as a native client receives it through the CURP
//!   client service that xline members serve on their peer listener; [`WireCodec`] is the
//!   client-side [`OutputCodec`] that hands it over undecoded.
//!
//! # Speculative responses
//!
//! A command that completes on the CURP fast path gets the leader's *speculative* output,
//! computed before the command was ordered. Xline only speculates results that cannot depend on
//! the order (plain puts and deletes), and a speculated response carries no revision: its
//! header's revision is 0, which no ordered write response has ([`is_speculative`]). The
//! revision is assigned by the order; the fast path does not report it.
//!
//! This crate depends on `curp` without its `storage` feature, so a client built on it does not
//! build raft-engine.

use curp::cmd::OutputCodec;
use curp::{ConflictKeys, DecodeError, KeyRange};
use prost::Message;
use xline_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, DowngradeInfo, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, PutRequest, PutResponse, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse, request_op,
};
use xline_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGrantRoleRequest,
    AuthUserRevokeRoleRequest,
};

/// Who made a request: the user its token names and the auth revision the token stands for
/// (etcd's `AuthInfo`, carried in proposals as etcd's `RequestHeader`).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct AuthHeader {
    /// The user.
    #[prost(string, tag = "1")]
    pub username: String,
    /// The auth revision the token was checked at.
    #[prost(uint64, tag = "2")]
    pub revision: u64,
}

/// An Authenticate whose password the proposer has checked: applying it issues a token.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct AuthenticateProposal {
    /// The user.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The random part of a simple token (empty for JWT).
    #[prost(string, tag = "2")]
    pub simple_token_prefix: String,
}

/// A mutating etcd request, as appended to the consensus log.
#[derive(Clone, PartialEq, Message)]
pub struct Command {
    /// The request.
    #[prost(
        oneof = "Request",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31"
    )]
    pub request: Option<Request>,
    /// Who asked, when auth is enabled: the user and the auth revision its token stood for.
    /// Checked against the permissions when the command is applied (etcd's request header).
    #[prost(message, optional, tag = "39")]
    pub auth: Option<AuthHeader>,
}

/// The etcd requests that go through consensus.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    /// `KV.Put`.
    #[prost(message, tag = "1")]
    Put(PutRequest),
    /// `KV.DeleteRange`.
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeRequest),
    /// `KV.Txn` (with at least one write somewhere; read-only txns are served as reads).
    #[prost(message, tag = "3")]
    Txn(TxnRequest),
    /// `KV.Compact`.
    #[prost(message, tag = "4")]
    Compaction(CompactionRequest),
    /// `Lease.LeaseGrant`, with the id already chosen (the proposer picks one when the client
    /// did not, so that every member applies the same).
    #[prost(message, tag = "5")]
    LeaseGrant(LeaseGrantRequest),
    /// `Lease.LeaseRevoke`, from a client or from the primary's expiry task. The keys it
    /// deletes are the lease's attached keys when it is applied.
    #[prost(message, tag = "6")]
    LeaseRevoke(LeaseRevokeRequest),
    /// A member publishes its name and client URLs to the cluster (etcd's "published local
    /// member to cluster through raft"), so every member can list them.
    #[prost(message, tag = "7")]
    PublishMember(xline_proto::etcdserverpb::Member),
    /// `Maintenance.Alarm` activate or deactivate (a member over its quota raises NOSPACE this
    /// way too), so every member refuses or accepts writes alike.
    #[prost(message, tag = "8")]
    Alarm(AlarmRequest),
    /// `Maintenance.Downgrade` enable (`enabled` with the target `major.minor.0`) or cancel
    /// (etcd's `DowngradeInfoSetRequest`).
    #[prost(message, tag = "9")]
    Downgrade(DowngradeInfo),
    /// `Auth.AuthEnable`.
    #[prost(message, tag = "20")]
    AuthEnable(AuthEnableRequest),
    /// `Auth.AuthDisable`.
    #[prost(message, tag = "21")]
    AuthDisable(AuthDisableRequest),
    /// `Auth.Authenticate`, after the proposer checked the password: issues the token.
    #[prost(message, tag = "22")]
    Authenticate(AuthenticateProposal),
    /// `Auth.UserAdd`, with the password already hashed by the proposer (`hashedPassword`;
    /// `password` cleared).
    #[prost(message, tag = "23")]
    UserAdd(AuthUserAddRequest),
    /// `Auth.UserDelete`.
    #[prost(message, tag = "24")]
    UserDelete(AuthUserDeleteRequest),
    /// `Auth.UserChangePassword`, hashed as `UserAdd`.
    #[prost(message, tag = "25")]
    UserChangePassword(AuthUserChangePasswordRequest),
    /// `Auth.UserGrantRole`.
    #[prost(message, tag = "26")]
    UserGrantRole(AuthUserGrantRoleRequest),
    /// `Auth.UserRevokeRole`.
    #[prost(message, tag = "27")]
    UserRevokeRole(AuthUserRevokeRoleRequest),
    /// `Auth.RoleAdd`.
    #[prost(message, tag = "28")]
    RoleAdd(AuthRoleAddRequest),
    /// `Auth.RoleDelete`.
    #[prost(message, tag = "29")]
    RoleDelete(AuthRoleDeleteRequest),
    /// `Auth.RoleGrantPermission`.
    #[prost(message, tag = "30")]
    RoleGrantPermission(AuthRoleGrantPermissionRequest),
    /// `Auth.RoleRevokePermission`.
    #[prost(message, tag = "31")]
    RoleRevokePermission(AuthRoleRevokePermissionRequest),
}

impl Command {
    /// Wraps a request.
    pub fn new(request: Request) -> Self {
        Self {
            request: Some(request),
            auth: None,
        }
    }

    /// Wraps a request made by the user `auth` names (`None`: auth is disabled).
    pub fn with_auth(request: Request, auth: Option<AuthHeader>) -> Self {
        Self {
            request: Some(request),
            auth,
        }
    }
}

impl curp::Command for Command {
    fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let cmd = <Self as Message>::decode(bytes).map_err(DecodeError::new)?;
        if cmd.request.is_none() {
            return Err(DecodeError::new("command without a request"));
        }
        Ok(cmd)
    }

    fn conflict_keys(&self) -> ConflictKeys {
        let mut keys = ConflictKeys::default();
        match &self.request {
            Some(Request::Put(put)) => {
                keys.ranges.push(KeyRange::new(put.key.clone(), Vec::new()));
                if put.lease != 0 {
                    keys.leases.push(put.lease);
                }
            }
            Some(Request::DeleteRange(del)) => {
                keys.ranges
                    .push(KeyRange::new(del.key.clone(), del.range_end.clone()));
            }
            Some(Request::Txn(txn)) => txn_keys(txn, &mut keys),
            Some(Request::LeaseGrant(grant)) => keys.leases.push(grant.id),
            // The attached keys are only known when it is applied; every put attaching a key
            // to this lease names it, so the lease id covers those.
            Some(Request::LeaseRevoke(revoke)) => keys.leases.push(revoke.id),
            // Touches no key or lease: commutes with everything.
            Some(Request::PublishMember(_)) => {}
            // Alarms and the downgrade state change what every later write may do: ordered
            // after everything before them.
            Some(Request::Alarm(_) | Request::Downgrade(_)) => keys.exclusive = true,
            // Only registers a token: touches no key.
            Some(Request::Authenticate(_)) => {}
            // Users, roles and the auth switch decide what every later request may do.
            Some(
                Request::AuthEnable(_)
                | Request::AuthDisable(_)
                | Request::UserAdd(_)
                | Request::UserDelete(_)
                | Request::UserChangePassword(_)
                | Request::UserGrantRole(_)
                | Request::UserRevokeRole(_)
                | Request::RoleAdd(_)
                | Request::RoleDelete(_)
                | Request::RoleGrantPermission(_)
                | Request::RoleRevokePermission(_),
            ) => keys.exclusive = true,
            Some(Request::Compaction(_)) | None => keys.exclusive = true,
        }
        keys
    }
}

impl Request {
    /// Whether this is one of the Auth service's mutations (Authenticate included), applied
    /// by the auth store.
    pub fn is_auth(&self) -> bool {
        matches!(self, Request::Authenticate(_)) || self.is_auth_management()
    }

    /// Whether this changes users, roles or the auth switch.
    pub fn is_auth_management(&self) -> bool {
        matches!(
            self,
            Request::AuthEnable(_)
                | Request::AuthDisable(_)
                | Request::UserAdd(_)
                | Request::UserDelete(_)
                | Request::UserChangePassword(_)
                | Request::UserGrantRole(_)
                | Request::UserRevokeRole(_)
                | Request::RoleAdd(_)
                | Request::RoleDelete(_)
                | Request::RoleGrantPermission(_)
                | Request::RoleRevokePermission(_)
        )
    }
}

/// Every range a txn compares or touches, in both branches, recursively.
fn txn_keys(txn: &TxnRequest, keys: &mut ConflictKeys) {
    for cmp in &txn.compare {
        keys.ranges
            .push(KeyRange::new(cmp.key.clone(), cmp.range_end.clone()));
    }
    for op in txn.success.iter().chain(&txn.failure) {
        op_keys(op, keys);
    }
}

fn op_keys(op: &RequestOp, keys: &mut ConflictKeys) {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => {
            keys.ranges
                .push(KeyRange::new(r.key.clone(), r.range_end.clone()));
        }
        Some(request_op::Request::RequestPut(p)) => {
            keys.ranges.push(KeyRange::new(p.key.clone(), Vec::new()));
            if p.lease != 0 {
                keys.leases.push(p.lease);
            }
        }
        Some(request_op::Request::RequestDeleteRange(d)) => {
            keys.ranges
                .push(KeyRange::new(d.key.clone(), d.range_end.clone()));
        }
        Some(request_op::Request::RequestTxn(t)) => txn_keys(t, keys),
        None => {}
    }
}

/// What a command produced, as it travels to a native client: the etcd response message
/// itself, or the etcd error's message. The server encodes its apply output this way; a client
/// decodes it with [`WireCodec`].
#[derive(Clone, PartialEq, Message)]
pub struct NativeOutput {
    /// The response or the error.
    #[prost(oneof = "NativeResult", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12")]
    pub result: Option<NativeResult>,
}

/// The cases of a [`NativeOutput`]: one per kind of command result, plus the error.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum NativeResult {
    /// `KV.Put`.
    #[prost(message, tag = "1")]
    Put(PutResponse),
    /// `KV.DeleteRange`.
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeResponse),
    /// `KV.Txn`.
    #[prost(message, tag = "3")]
    Txn(TxnResponse),
    /// `KV.Compact`.
    #[prost(message, tag = "4")]
    Compaction(CompactionResponse),
    /// `Lease.LeaseGrant`.
    #[prost(message, tag = "5")]
    LeaseGrant(LeaseGrantResponse),
    /// `Lease.LeaseRevoke`.
    #[prost(message, tag = "6")]
    LeaseRevoke(LeaseRevokeResponse),
    /// A member's attributes were published (always `true`).
    #[prost(bool, tag = "7")]
    MemberPublished(bool),
    /// `Maintenance.Alarm`.
    #[prost(message, tag = "8")]
    Alarm(AlarmResponse),
    /// The downgrade state was set (always `true`).
    #[prost(bool, tag = "9")]
    DowngradeSet(bool),
    /// An auth mutation was made (always `true`).
    #[prost(bool, tag = "10")]
    AuthDone(bool),
    /// `Auth.Authenticate`: the token issued.
    #[prost(string, tag = "11")]
    AuthToken(String),
    /// The etcd error the command failed with: its message (`etcdserver: ...`).
    #[prost(string, tag = "12")]
    Error(String),
}

/// The [`OutputCodec`] of a native client that takes the [`NativeOutput`] as it is (the
/// server's codec decodes into its own apply output instead).
#[derive(Debug, Clone, Copy, Default)]
pub struct WireCodec;

impl OutputCodec<NativeOutput> for WireCodec {
    fn encode(output: &NativeOutput) -> Vec<u8> {
        output.encode_to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<NativeOutput, DecodeError> {
        let output = NativeOutput::decode(bytes).map_err(DecodeError::new)?;
        if output.result.is_none() {
            return Err(DecodeError::new("an output without a result"));
        }
        Ok(output)
    }
}

/// Whether a write response's header marks it as speculative (absent, or revision 0; see the
/// crate docs).
pub fn is_speculative(header: Option<&ResponseHeader>) -> bool {
    header.is_none_or(|h| h.revision == 0)
}

#[cfg(test)]
mod tests {
    use curp::Command as _;
    use xline_proto::etcdserverpb::{Compare, RangeRequest};

    use super::*;

    #[test]
    fn round_trip_and_keys() {
        let txn = TxnRequest {
            compare: vec![Compare {
                key: b"c".to_vec(),
                range_end: b"d".to_vec(),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"p".to_vec(),
                    lease: 7,
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: b"r".to_vec(),
                    ..Default::default()
                })),
            }],
        };
        let cmd = Command::new(Request::Txn(txn));
        let back = <Command as curp::Command>::decode(&curp::Command::encode(&cmd)).unwrap();
        assert_eq!(back, cmd);
        let keys = cmd.conflict_keys();
        assert_eq!(keys.ranges.len(), 3);
        assert_eq!(keys.leases, vec![7]);
        assert!(!keys.exclusive);
        let compact = Command::new(Request::Compaction(CompactionRequest::default()));
        assert!(compact.conflict_keys().exclusive);
        assert!(<Command as curp::Command>::decode(&[]).is_err());
    }

    #[test]
    fn lease_commands_round_trip_and_name_their_lease() {
        let grant = Command::new(Request::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 42 }));
        let revoke = Command::new(Request::LeaseRevoke(LeaseRevokeRequest { id: 42 }));
        for cmd in [&grant, &revoke] {
            let back = <Command as curp::Command>::decode(&curp::Command::encode(cmd)).unwrap();
            assert_eq!(&back, cmd);
            let keys = cmd.conflict_keys();
            assert_eq!(keys.leases, vec![42]);
            assert!(keys.ranges.is_empty() && !keys.exclusive);
        }
        let put = Command::new(Request::Put(PutRequest {
            key: b"k".to_vec(),
            lease: 42,
            ..Default::default()
        }));
        assert!(revoke.conflict_keys().conflicts_with(&put.conflict_keys()));
        assert!(
            grant
                .conflict_keys()
                .conflicts_with(&revoke.conflict_keys())
        );
    }

    #[test]
    fn wire_codec_passes_outputs_through() {
        let outputs = [
            NativeResult::Put(PutResponse {
                header: Some(ResponseHeader {
                    revision: 4,
                    ..Default::default()
                }),
                prev_kv: None,
            }),
            NativeResult::DeleteRange(DeleteRangeResponse {
                header: Some(ResponseHeader::default()),
                deleted: 2,
                prev_kvs: Vec::new(),
            }),
            NativeResult::Txn(TxnResponse::default()),
            NativeResult::Error("etcdserver: requested lease not found".into()),
        ];
        for result in outputs {
            let output = NativeOutput {
                result: Some(result),
            };
            let back = WireCodec::decode(&WireCodec::encode(&output)).unwrap();
            assert_eq!(back, output);
        }
        assert!(WireCodec::decode(&NativeOutput { result: None }.encode_to_vec()).is_err());
        assert!(WireCodec::decode(b"\xff\xff").is_err());
    }

    #[test]
    fn speculative_headers_have_no_revision() {
        assert!(is_speculative(None));
        assert!(is_speculative(Some(&ResponseHeader::default())));
        assert!(!is_speculative(Some(&ResponseHeader {
            revision: 1,
            ..Default::default()
        })));
    }
}
