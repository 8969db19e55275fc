//! The gRPC edge: each service validates, proposes or reads, and maps errors (through
//! `crate::status`). Services not listed here are not routed, so tonic answers their RPCs with
//! `Unimplemented`, the code clients feature-detect on.

mod auth;
mod cluster;
mod concurrency;
mod election;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod watch;

pub use auth::AuthService;
pub use cluster::ClusterService;
pub use concurrency::LocalClient;
pub use election::ElectionService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use lock::LockService;
pub use maintenance::MaintenanceService;
pub use watch::WatchService;
