//! The gRPC [`Transport`]: curp's own `curppb.Peer` service over tonic.
//!
//! # Wire protocol
//!
//! `proto/curp.proto` (package `curppb`) mirrors every core type an [`Envelope`] can carry;
//! [`convert`] maps between the two. Each sender keeps **one long-lived client-streaming
//! `Peer/Send` call per receiver**, and every stream item is an [`curppb::EnvelopeBatch`]: the
//! envelopes that were queued for that receiver when the stream had room, in send order.
//! `Peer/Ping` is a liveness check.
//!
//! # Sending ([`GrpcTransport`])
//!
//! - Every peer has a bounded outbound queue (at most [`GrpcOptions::queue_capacity`]
//!   envelopes and about [`GrpcOptions::queue_bytes`] bytes). When it is full the **oldest**
//!   queued envelope is dropped: newer messages carry newer terms and commit indexes and
//!   supersede older ones, and the protocol retransmits whatever matters.
//! - [`Transport::send`] only pushes onto those queues: it never blocks and never awaits.
//!   Envelopes for unknown peers (and for this member itself) are dropped and counted.
//! - One tokio task per peer drains its queue into the `Send` stream, building batches of at
//!   most [`GrpcOptions::max_batch_bytes`] (a single envelope larger than that travels alone;
//!   one larger than [`GrpcOptions::max_message_bytes`] is dropped with a warning). At most
//!   [`GrpcOptions::inflight_batches`] batches wait inside the stream, so a slow link backs
//!   up into the drop-oldest queue rather than into unbounded buffers.
//! - When the peer is unreachable or the stream breaks, the task reconnects with capped
//!   exponential backoff with jitter from a seeded SplitMix64 generator. Batches in flight on
//!   a broken stream are lost; queued envelopes are sent on the next stream.
//! - [`Transport::set_peers`] starts, restarts (new URLs) and stops those tasks.
//!
//! Envelopes on one link arrive in send order, with gaps where envelopes were dropped;
//! across a reconnection the old stream's last batches may in rare cases still be processed
//! after the new stream's first ones.
//!
//! # Receiving ([`PeerService`], [`peer_server`])
//!
//! The service decodes each batch and hands every envelope to the node's sink; envelopes
//! that do not map to core values are dropped with a warning. Batches larger than the
//! configured maximum are refused by tonic (the stream ends with an error and the sender
//! reconnects).
//!
//! Deployment note: mount [`peer_server`] on the peer listener with
//! `tonic::transport::Server::builder()` (serving TLS there when peers dial `https://` URLs
//! with [`GrpcOptions::tls`]); across a WAN, larger HTTP/2 windows
//! (`http2_adaptive_window(Some(true))` or explicit window sizes) help throughput.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::Transport;
use crate::core::{Envelope, NodeId};

/// Generated code for `proto/curp.proto` (package `curppb`).
#[allow(missing_docs, unused_qualifications, clippy::all, clippy::pedantic)]
pub mod curppb {
    tonic::include_proto!("curppb");
}

#[path = "convert.rs"]
pub mod convert;
mod link;
mod queue;
mod service;
#[cfg(test)]
mod tests;

pub use service::{PeerService, Sink, peer_server};

use link::{Link, LinkStats};
use queue::OutQueue;

/// Default bound of one gRPC message (an [`curppb::EnvelopeBatch`]), both directions.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Tuning of a [`GrpcTransport`]. [`Default`] gives values suitable for a WAN cluster.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    /// Most envelopes queued per peer; the oldest is dropped beyond it.
    pub queue_capacity: usize,
    /// About the most bytes queued per peer (by [`convert::estimated_size`]); the oldest
    /// envelopes are dropped beyond it (one envelope is always admitted into an empty queue).
    pub queue_bytes: usize,
    /// Target encoded size of one batch. Clamped to `max_message_bytes`.
    pub max_batch_bytes: usize,
    /// Largest gRPC message sent. Receivers must accept at least this much
    /// (`peer_server(sink, max_message_bytes)`); larger envelopes are dropped by the sender.
    pub max_message_bytes: usize,
    /// Batches that may wait inside one stream (in tonic/HTTP/2 buffers) at a time.
    pub inflight_batches: usize,
    /// Time allowed to open a TCP + HTTP/2 connection.
    pub connect_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings, which detect dead connections.
    pub keepalive_interval: Duration,
    /// How long a keep-alive ping may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
    /// First reconnection delay.
    pub backoff_initial: Duration,
    /// Largest reconnection delay (before jitter, which only shortens it).
    pub backoff_max: Duration,
    /// Seed of the jitter generator (combined with the member ids).
    pub seed: u64,
    /// TLS for `https://` peer URLs: the CA that signs the peers' certificates and this
    /// member's own certificate to present. `https://` peers cannot be reached without it.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 8192,
            queue_bytes: 64 * 1024 * 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            inflight_batches: 2,
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            seed: 0,
            tls: None,
        }
    }
}

impl GrpcOptions {
    /// The options with every bound made consistent (non-zero, batch <= message).
    fn normalized(mut self) -> Self {
        self.queue_capacity = self.queue_capacity.max(1);
        self.queue_bytes = self.queue_bytes.max(1);
        self.max_message_bytes = self.max_message_bytes.max(1024);
        self.max_batch_bytes = self.max_batch_bytes.clamp(1, self.max_message_bytes);
        self.inflight_batches = self.inflight_batches.max(1);
        self.backoff_initial = self.backoff_initial.max(Duration::from_millis(1));
        self.backoff_max = self.backoff_max.max(self.backoff_initial);
        self
    }
}

/// A snapshot of one peer link's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStats {
    /// Envelopes waiting in the outbound queue.
    pub queued: usize,
    /// Estimated bytes waiting in the outbound queue.
    pub queued_bytes: usize,
    /// Envelopes dropped: queue overflow, or larger than the message limit.
    pub dropped: u64,
    /// Envelopes handed to a stream (not necessarily delivered).
    pub sent: u64,
    /// Whether a stream is currently open.
    pub connected: bool,
    /// Connections established so far.
    pub connections: u64,
}

/// One configured peer.
struct Peer {
    /// Where it listens.
    urls: Vec<String>,
    /// Its outbound queue (kept when the URLs change).
    queue: Arc<OutQueue>,
    /// Counters of its link task.
    stats: Arc<LinkStats>,
    /// Its link task (`None` when no tokio runtime was available to start it).
    task: Option<JoinHandle<()>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The gRPC [`Transport`]; see the module documentation.
pub struct GrpcTransport {
    /// This member.
    self_id: NodeId,
    /// Normalized options.
    options: Arc<GrpcOptions>,
    /// Runtime the link tasks run on (captured at construction when available).
    runtime: Option<Handle>,
    /// Configured peers.
    peers: RwLock<HashMap<NodeId, Peer>>,
    /// Envelopes dropped because their receiver is not a configured peer.
    dropped_unknown: AtomicU64,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("self_id", &self.self_id)
            .field("peers", &self.peers.read().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl GrpcTransport {
    /// A transport for member `self_id` with no peers yet (see [`Transport::set_peers`]).
    ///
    /// Link tasks run on the tokio runtime current at construction; if there is none then,
    /// on the one current when [`Transport::set_peers`] is called. Without any runtime, peers
    /// are recorded but nothing is sent (an error is logged).
    pub fn new(self_id: NodeId, options: GrpcOptions) -> Self {
        Self {
            self_id,
            options: Arc::new(options.normalized()),
            runtime: Handle::try_current().ok(),
            peers: RwLock::new(HashMap::new()),
            dropped_unknown: AtomicU64::new(0),
        }
    }

    /// This member's id.
    pub fn self_id(&self) -> NodeId {
        self.self_id
    }

    /// The counters of the link to `peer`, if it is configured.
    pub fn peer_stats(&self, peer: NodeId) -> Option<PeerStats> {
        let peers = self.peers.read();
        let p = peers.get(&peer)?;
        let (queued, queued_bytes) = p.queue.len_and_bytes();
        Some(PeerStats {
            queued,
            queued_bytes,
            dropped: p.queue.dropped() + p.stats.oversize.load(Ordering::Relaxed),
            sent: p.stats.sent.load(Ordering::Relaxed),
            connected: p.stats.connected.load(Ordering::Relaxed),
            connections: p.stats.connections.load(Ordering::Relaxed),
        })
    }

    /// Envelopes dropped because their receiver was not a configured peer.
    pub fn dropped_unknown(&self) -> u64 {
        self.dropped_unknown.load(Ordering::Relaxed)
    }

    /// Starts the link task for `peer` (or records why it cannot).
    fn spawn_link(
        &self,
        peer: NodeId,
        urls: &[String],
        queue: &Arc<OutQueue>,
    ) -> (Arc<LinkStats>, Option<JoinHandle<()>>) {
        let stats = Arc::new(LinkStats::default());
        let Some(runtime) = self.runtime.clone().or_else(|| Handle::try_current().ok()) else {
            tracing::error!(
                peer,
                "grpc transport: no tokio runtime; cannot start peer link"
            );
            return (stats, None);
        };
        let link = Link::new(
            self.self_id,
            peer,
            urls.to_vec(),
            Arc::clone(&self.options),
            Arc::clone(queue),
            Arc::clone(&stats),
        );
        (stats, Some(runtime.spawn(link.run())))
    }
}

impl Transport for GrpcTransport {
    fn send(&self, messages: Vec<Envelope>) {
        let peers = self.peers.read();
        for envelope in messages {
            match peers.get(&envelope.to) {
                Some(peer) if envelope.to != self.self_id => peer.queue.push(envelope),
                _ => {
                    self.dropped_unknown.fetch_add(1, Ordering::Relaxed);
                    tracing::trace!(to = envelope.to, "grpc transport: no such peer; dropped");
                }
            }
        }
    }

    fn connected_since(&self, peer: NodeId) -> Option<std::time::Instant> {
        let peers = self.peers.read();
        *peers.get(&peer)?.stats.since.lock()
    }

    fn set_peers(&self, peers: &BTreeMap<NodeId, Vec<String>>) {
        let mut current = self.peers.write();
        current.retain(|id, _| peers.contains_key(id) && *id != self.self_id);
        for (&id, urls) in peers {
            if id == self.self_id {
                continue;
            }
            if let Some(peer) = current.get_mut(&id) {
                if peer.urls == *urls && peer.task.is_some() {
                    continue;
                }
                // New address (or no task yet): restart the link, keep what is queued.
                if let Some(task) = peer.task.take() {
                    task.abort();
                }
                let (stats, task) = self.spawn_link(id, urls, &peer.queue);
                peer.urls.clone_from(urls);
                peer.stats = stats;
                peer.task = task;
                continue;
            }
            let queue = Arc::new(OutQueue::new(
                self.options.queue_capacity,
                self.options.queue_bytes,
            ));
            let (stats, task) = self.spawn_link(id, urls, &queue);
            current.insert(
                id,
                Peer {
                    urls: urls.clone(),
                    queue,
                    stats,
                    task,
                },
            );
        }
    }
}
