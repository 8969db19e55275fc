//! etcd v3 wire-compatible protocol types and gRPC service stubs.
//!
//! The `.proto` files under `protos/` state the facts of etcd's interface (package, service,
//! message and field names and numbers) so that every etcd client speaks to this server unchanged.
//! Generated code lives in the modules below; nothing else here is hand-written beyond small helpers.

#![allow(missing_docs, unused_qualifications, clippy::all)]

/// Key-value types shared by the KV and Watch APIs (`mvccpb`).
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// Users, roles and permissions (`authpb`).
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// The etcd v3 services and their messages (`etcdserverpb`).
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The Lock service (`v3lockpb`).
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// The Election service (`v3electionpb`).
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::etcdserverpb::{
        Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, compare, request_op,
    };

    const ETCDSERVERPB: &str = include_str!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    const V3LOCKPB: &str = include_str!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
    const V3ELECTIONPB: &str = include_str!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));

    /// Every gRPC method path etcd v3.5 serves, grouped by generated file.
    const ETCDSERVERPB_PATHS: &[&str] = &[
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Put",
        "/etcdserverpb.KV/DeleteRange",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.KV/Compact",
        "/etcdserverpb.Watch/Watch",
        "/etcdserverpb.Lease/LeaseGrant",
        "/etcdserverpb.Lease/LeaseRevoke",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        "/etcdserverpb.Lease/LeaseTimeToLive",
        "/etcdserverpb.Lease/LeaseLeases",
        "/etcdserverpb.Cluster/MemberAdd",
        "/etcdserverpb.Cluster/MemberRemove",
        "/etcdserverpb.Cluster/MemberUpdate",
        "/etcdserverpb.Cluster/MemberList",
        "/etcdserverpb.Cluster/MemberPromote",
        "/etcdserverpb.Maintenance/Alarm",
        "/etcdserverpb.Maintenance/Status",
        "/etcdserverpb.Maintenance/Defragment",
        "/etcdserverpb.Maintenance/Hash",
        "/etcdserverpb.Maintenance/HashKV",
        "/etcdserverpb.Maintenance/Snapshot",
        "/etcdserverpb.Maintenance/MoveLeader",
        "/etcdserverpb.Maintenance/Downgrade",
        "/etcdserverpb.Auth/AuthEnable",
        "/etcdserverpb.Auth/AuthDisable",
        "/etcdserverpb.Auth/AuthStatus",
        "/etcdserverpb.Auth/Authenticate",
        "/etcdserverpb.Auth/UserAdd",
        "/etcdserverpb.Auth/UserGet",
        "/etcdserverpb.Auth/UserList",
        "/etcdserverpb.Auth/UserDelete",
        "/etcdserverpb.Auth/UserChangePassword",
        "/etcdserverpb.Auth/UserGrantRole",
        "/etcdserverpb.Auth/UserRevokeRole",
        "/etcdserverpb.Auth/RoleAdd",
        "/etcdserverpb.Auth/RoleGet",
        "/etcdserverpb.Auth/RoleList",
        "/etcdserverpb.Auth/RoleDelete",
        "/etcdserverpb.Auth/RoleGrantPermission",
        "/etcdserverpb.Auth/RoleRevokePermission",
    ];
    const V3LOCKPB_PATHS: &[&str] = &["/v3lockpb.Lock/Lock", "/v3lockpb.Lock/Unlock"];
    const V3ELECTIONPB_PATHS: &[&str] = &[
        "/v3electionpb.Election/Campaign",
        "/v3electionpb.Election/Proclaim",
        "/v3electionpb.Election/Leader",
        "/v3electionpb.Election/Observe",
        "/v3electionpb.Election/Resign",
    ];

    #[test]
    fn generated_code_has_every_etcd_grpc_path() {
        for (source, paths) in [
            (ETCDSERVERPB, ETCDSERVERPB_PATHS),
            (V3LOCKPB, V3LOCKPB_PATHS),
            (V3ELECTIONPB, V3ELECTIONPB_PATHS),
        ] {
            for path in paths {
                let quoted = format!("\"{path}\"");
                assert!(source.contains(&quoted), "missing gRPC path {path}");
            }
        }
        // Each path appears once in the client and once in the server stub, and no extra
        // methods exist beyond etcd's.
        assert_eq!(
            ETCDSERVERPB.matches("\"/etcdserverpb.").count(),
            2 * ETCDSERVERPB_PATHS.len()
        );
        assert_eq!(
            V3LOCKPB.matches("\"/v3lockpb.").count(),
            2 * V3LOCKPB_PATHS.len()
        );
        assert_eq!(
            V3ELECTIONPB.matches("\"/v3electionpb.").count(),
            2 * V3ELECTIONPB_PATHS.len()
        );
    }

    #[test]
    fn nested_txn_round_trip() {
        let inner = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Greater as i32,
                target: compare::CompareTarget::Mod as i32,
                key: b"inner".to_vec(),
                target_union: Some(compare::TargetUnion::ModRevision(7)),
                range_end: b"innes".to_vec(),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: b"a".to_vec(),
                    range_end: vec![0],
                    limit: 10,
                    ..Default::default()
                })),
            }],
            failure: vec![],
        };
        let txn = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Value as i32,
                key: b"k".to_vec(),
                target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
                range_end: vec![],
            }],
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: b"k".to_vec(),
                        value: b"v2".to_vec(),
                        prev_kv: true,
                        ..Default::default()
                    })),
                },
                RequestOp {
                    request: Some(request_op::Request::RequestTxn(inner)),
                },
            ],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    super::etcdserverpb::DeleteRangeRequest {
                        key: b"k".to_vec(),
                        prev_kv: true,
                        ..Default::default()
                    },
                )),
            }],
        };
        let bytes = txn.encode_to_vec();
        let decoded = TxnRequest::decode(bytes.as_slice()).expect("decode TxnRequest");
        assert_eq!(decoded, txn);
        assert_eq!(
            decoded.compare[0].target_union,
            Some(compare::TargetUnion::Value(b"v".to_vec()))
        );
    }

    #[test]
    fn field_numbers_match_etcd() {
        // RangeRequest.revision = 4, varint: tag (4 << 3 | 0) = 0x20.
        let range = RangeRequest {
            revision: 5,
            ..Default::default()
        };
        assert_eq!(range.encode_to_vec(), vec![0x20, 0x05]);

        // PutRequest.prev_kv = 4, varint bool.
        let put = PutRequest {
            prev_kv: true,
            ..Default::default()
        };
        assert_eq!(put.encode_to_vec(), vec![0x20, 0x01]);

        // Compare.value is oneof member 7 (length-delimited), Compare.range_end is 64.
        let cmp = Compare {
            target_union: Some(compare::TargetUnion::Value(b"x".to_vec())),
            range_end: b"y".to_vec(),
            ..Default::default()
        };
        // Tag 64, wire type 2 -> (64 << 3 | 2) = 514 = varint [0x82, 0x04].
        assert_eq!(
            cmp.encode_to_vec(),
            vec![0x3a, 0x01, b'x', 0x82, 0x04, 0x01, b'y']
        );

        // RequestOp.request_txn = 4 (length-delimited, empty message).
        let op = RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest::default())),
        };
        assert_eq!(op.encode_to_vec(), vec![0x22, 0x00]);

        // WatchResponse.events = 11; StatusResponse.isLearner = 10.
        let watch = super::etcdserverpb::WatchResponse {
            events: vec![super::mvccpb::Event::default()],
            ..Default::default()
        };
        assert_eq!(watch.encode_to_vec(), vec![0x5a, 0x00]);
        let status = super::etcdserverpb::StatusResponse {
            is_learner: true,
            ..Default::default()
        };
        assert_eq!(status.encode_to_vec(), vec![0x50, 0x01]);
    }
}
