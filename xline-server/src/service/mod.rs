//! The gRPC edge: each service validates, proposes or reads, and maps errors (through
//! `crate::status`). Services not listed here are not routed, so tonic answers their RPCs with
//! `Unimplemented`, the code clients feature-detect on.

mod cluster;
mod kv;
mod maintenance;

pub use cluster::ClusterService;
pub use kv::KvService;
pub use maintenance::MaintenanceService;
