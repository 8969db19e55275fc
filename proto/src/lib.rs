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
