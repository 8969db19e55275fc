//! Moving [`Envelope`]s between members.
//!
//! [`Transport`] is what the node driver needs; [`grpc`] implements it over tonic.

use std::collections::BTreeMap;

use crate::core::{Envelope, NodeId};

pub mod client_service;
pub mod grpc;
pub mod mem;

pub use mem::{MemNetwork, MemTransport};

/// Best-effort, non-blocking delivery of peer messages. The protocol tolerates loss,
/// duplication and (across reconnections) reordering.
pub trait Transport: Send + Sync + 'static {
    /// Queues `messages` for their receivers (`Envelope::to`). Best effort; never blocks the
    /// caller.
    fn send(&self, messages: Vec<Envelope>);
    /// Replaces the set of peers: member id -> peer URLs (`"http://host:port"`).
    fn set_peers(&self, peers: &BTreeMap<NodeId, Vec<String>>);
    /// Since when the link to `peer` is up without interruption (etcd's "active since");
    /// `None` while it is down, or when the transport does not track connections.
    fn connected_since(&self, _peer: NodeId) -> Option<std::time::Instant> {
        None
    }
}
