//! [`NodeHandle`]: the cloneable front of a running node. It talks to the driver thread over
//! bounded channels and reads what the driver publishes (role, applied index, status).

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cmd::Command;
use crate::core::{
    CommandData, ConfChange, Envelope, LogIndex, NodeId, ProposeId, Rejection, RoleState, Status,
    Term,
};
use crate::error::ProposeError;
use crate::transport::Transport;

/// A request from a handle to the driver.
pub(crate) enum Request<O> {
    /// Propose a command on the ordered path, answered when this member applies it.
    Propose {
        /// The command, with its proposal id.
        data: CommandData,
        /// Where the result goes.
        reply: oneshot::Sender<Result<O, ProposeError>>,
    },
    /// Get a read index (CURP.md D8).
    ReadIndex {
        /// Where the index goes.
        reply: oneshot::Sender<Result<LogIndex, ProposeError>>,
    },
    /// Change the membership (leader only).
    ChangeMembership {
        /// The change.
        change: ConfChange,
        /// Answered once the change is applied here.
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    /// Hand leadership to another voter (leader only).
    TransferLeader {
        /// The successor.
        to: NodeId,
        /// Answered once this member sees `to` lead.
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    /// Wakes the driver so that it notices [`Shared::closing`].
    Shutdown,
    /// A remote client proposes on the fast path (leader only), see
    /// [`NodeHandle::client_propose`].
    ClientPropose {
        /// The command, with the client's proposal id.
        data: CommandData,
        /// The cluster version the client believes current.
        cluster_version: u64,
        /// Encodes outputs for the client.
        encode: Encoder<O>,
        /// Where the leader's answer goes.
        reply: oneshot::Sender<Result<FastReply, ProposeError>>,
    },
    /// A remote client records a command at this member's witness.
    ClientRecord {
        /// The command.
        data: CommandData,
        /// The term the client believes current.
        term: Term,
        /// The cluster version the client believes current.
        cluster_version: u64,
        /// Encodes outputs for the client (results applied here are cached from now on).
        encode: Encoder<O>,
        /// Where the witness's answer goes (once journaled).
        reply: oneshot::Sender<Result<RecordReply, ProposeError>>,
    },
    /// A remote client keeps its id alive (leader only).
    ClientKeepAlive {
        /// The client.
        client_id: u64,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<KeepAliveReply, ProposeError>>,
    },
    /// A remote client waits for a command's ordered result (proposing it if unknown here).
    ClientWaitSynced {
        /// The command.
        data: CommandData,
        /// Encodes outputs for the client.
        encode: Encoder<O>,
        /// Where the encoded output goes.
        reply: oneshot::Sender<Result<Bytes, ProposeError>>,
    },
}

/// State shared by the handles and the driver thread.
pub(crate) struct Shared {
    /// This member.
    pub(crate) id: NodeId,
    /// Set by [`NodeHandle::shutdown`].
    pub(crate) closing: AtomicBool,
    /// Why the driver stopped, if it failed.
    pub(crate) fatal: Mutex<Option<String>>,
    /// Becomes `true` once the driver thread has exited (and released the storage).
    pub(crate) exited: watch::Sender<bool>,
    /// The latest status the driver published.
    pub(crate) status: Mutex<Status>,
    /// The transport (handles may update its peers).
    pub(crate) transport: Arc<dyn Transport>,
    /// How long a request may take before it is answered with [`ProposeError::Timeout`].
    pub(crate) request_timeout: Duration,
    /// The driver's counters.
    pub(crate) metrics: super::metrics::Counters,
}

impl Shared {
    /// The error for a request that cannot reach, or hear back from, the driver.
    pub(crate) fn stopped_error(&self) -> ProposeError {
        match &*self.fatal.lock() {
            Some(message) => ProposeError::Fatal(message.clone()),
            None => ProposeError::ShuttingDown,
        }
    }
}

/// Delivers peer messages to one node's driver (what a transport holds per member). Cheap to
/// clone; does not keep the node running.
#[derive(Debug, Clone)]
pub struct Inbox {
    /// The driver's bounded inbound queue.
    tx: mpsc::Sender<Envelope>,
}

impl Inbox {
    /// Queues `env` for the driver; dropped when the queue is full or the node has stopped
    /// (the protocol recovers lost messages by retransmission).
    pub fn deliver(&self, env: Envelope) {
        if self.tx.try_send(env).is_err() {
            tracing::trace!("inbound peer queue full or closed: message dropped");
        }
    }
}

/// One client identity: proposals get `(client_id, seq)` ids (CURP.md D5).
struct ClientIds {
    /// The client id (random per handle family).
    client_id: u64,
    /// Next sequence number.
    next_seq: AtomicU64,
    /// Sequence numbers whose result has not been handed back yet (the lowest is the
    /// `first_incomplete` watermark every proposal carries).
    in_flight: Mutex<BTreeSet<u64>>,
}

impl ClientIds {
    /// A fresh client identity.
    fn new() -> Self {
        Self {
            client_id: random_client_id(),
            next_seq: AtomicU64::new(1),
            in_flight: Mutex::new(BTreeSet::new()),
        }
    }
}

/// A random non-zero client id (std's randomly keyed hasher, so no RNG dependency). The
/// client-id lease (CURP.md 5.1) replaces this later.
fn random_client_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(elapsed) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(elapsed.as_nanos());
    }
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

/// Removes a proposal's sequence number from the in-flight set when its call ends, however it
/// ends (also when the caller drops the future).
struct InFlight<'a> {
    /// The client.
    ids: &'a ClientIds,
    /// The proposal's sequence number.
    seq: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.ids.in_flight.lock().remove(&self.seq);
    }
}

/// A cloneable handle to a running node (see [`super::Node::start`]).
///
/// Clones share one client identity (proposal ids come from one `(client_id, seq)` sequence);
/// [`NodeHandle::with_new_client_id`] makes a handle with its own.
pub struct NodeHandle<C, O> {
    /// Requests to the driver.
    pub(crate) tx: mpsc::Sender<Request<O>>,
    /// Peer messages to the driver.
    pub(crate) peer_tx: mpsc::Sender<Envelope>,
    /// State shared with the driver.
    pub(crate) shared: Arc<Shared>,
    /// Role, term and leader, as the driver publishes them.
    pub(crate) role: watch::Receiver<RoleState>,
    /// The applied index, as the driver publishes it.
    pub(crate) applied: watch::Receiver<LogIndex>,
    /// This handle's client identity.
    ids: Arc<ClientIds>,
    /// The command type.
    _cmd: PhantomData<fn(C)>,
}

impl<C, O> Clone for NodeHandle<C, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            peer_tx: self.peer_tx.clone(),
            shared: Arc::clone(&self.shared),
            role: self.role.clone(),
            applied: self.applied.clone(),
            ids: Arc::clone(&self.ids),
            _cmd: PhantomData,
        }
    }
}

impl<C, O> std::fmt::Debug for NodeHandle<C, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("id", &self.shared.id)
            .field("client_id", &self.ids.client_id)
            .field("role", &*self.role.borrow())
            .field("applied", &*self.applied.borrow())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<C: Command, O: Send + 'static> NodeHandle<C, O> {
    /// A handle over the driver's channels, with a fresh client identity.
    pub(crate) fn new(
        tx: mpsc::Sender<Request<O>>,
        peer_tx: mpsc::Sender<Envelope>,
        shared: Arc<Shared>,
        role: watch::Receiver<RoleState>,
        applied: watch::Receiver<LogIndex>,
    ) -> Self {
        Self {
            tx,
            peer_tx,
            shared,
            role,
            applied,
            ids: Arc::new(ClientIds::new()),
            _cmd: PhantomData,
        }
    }

    /// The same node, with a new client identity (its own proposal id sequence).
    pub fn with_new_client_id(&self) -> Self {
        Self {
            ids: Arc::new(ClientIds::new()),
            ..self.clone()
        }
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// This handle's client id (the first half of its proposal ids).
    pub fn client_id(&self) -> u64 {
        self.ids.client_id
    }

    /// Proposes `cmd` on the ordered path with origin commit (CURP.md D1, D2) and returns the
    /// executor's output once **this member** has applied it.
    ///
    /// The command gets a fresh proposal id; the driver forwards it to the leader and, when the
    /// leader changes or no answer comes, proposes it again *with the same id* (DD1) until
    /// [`super::NodeConfig::request_timeout`] has passed. The replicated dedup table makes
    /// sure it executes at most once (D5). Dropping the future does not withdraw it.
    ///
    /// # Errors
    ///
    /// - [`ProposeError::Timeout`]: no outcome before the deadline (it may still apply later);
    /// - [`ProposeError::Duplicate`]: an earlier attempt with this id executed it, but its
    ///   result is lost (it was handed to an earlier waiter, or this member restarted);
    /// - [`ProposeError::ShuttingDown`] / [`ProposeError::Fatal`]: the node stopped.
    pub async fn propose(&self, cmd: C) -> Result<O, ProposeError> {
        // Allocating the sequence number and registering it as in flight is one step: otherwise
        // a concurrent proposal could compute a `first_incomplete` above this one's sequence
        // number, and the dedup table would then treat this command as already done.
        let (seq, first_incomplete) = {
            let mut in_flight = self.ids.in_flight.lock();
            let seq = self.ids.next_seq.fetch_add(1, Ordering::Relaxed);
            in_flight.insert(seq);
            (seq, in_flight.first().copied().unwrap_or(seq))
        };
        let _in_flight = InFlight {
            ids: &self.ids,
            seq,
        };
        let data = CommandData {
            id: ProposeId {
                client_id: self.ids.client_id,
                seq,
            },
            keys: Arc::new(cmd.conflict_keys()),
            payload: Bytes::from(cmd.encode()),
            first_incomplete,
        };
        self.request(|reply| Request::Propose { data, reply }).await
    }

    /// A linearizable read index (CURP.md D8): once this member has applied it
    /// ([`NodeHandle::wait_applied`]), its state reflects every write acknowledged before this
    /// call. On a follower the leader confirms the index; retried until the deadline.
    ///
    /// # Errors
    ///
    /// [`ProposeError::Timeout`] (no leader confirmed in time), or the node stopped.
    pub async fn read_index(&self) -> Result<LogIndex, ProposeError> {
        self.request(|reply| Request::ReadIndex { reply }).await
    }

    /// Waits until this member has applied `index`.
    ///
    /// # Errors
    ///
    /// [`ProposeError::ShuttingDown`] / [`ProposeError::Fatal`] if the node stops first.
    pub async fn wait_applied(&self, index: LogIndex) -> Result<(), ProposeError> {
        let mut applied = self.applied.clone();
        match applied.wait_for(|applied| *applied >= index).await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.shared.stopped_error()),
        }
    }

    /// [`NodeHandle::read_index`] then [`NodeHandle::wait_applied`]: afterwards a local read is
    /// linearizable.
    ///
    /// # Errors
    ///
    /// As the two calls.
    pub async fn linearizable_barrier(&self) -> Result<LogIndex, ProposeError> {
        let index = self.read_index().await?;
        self.wait_applied(index).await?;
        Ok(index)
    }

    /// Proposes a single-server membership change at this member, which must lead; returns
    /// once this member has applied it. Changes go one at a time: a change proposed while
    /// another is pending is retried until the deadline.
    ///
    /// # Errors
    ///
    /// [`ProposeError::NotLeader`] (ask the leader), [`ProposeError::InvalidChange`],
    /// [`ProposeError::Timeout`], or the node stopped.
    pub async fn change_membership(&self, change: ConfChange) -> Result<(), ProposeError> {
        self.request(|reply| Request::ChangeMembership { change, reply })
            .await
    }

    /// Hands leadership from this member (which must lead) to voter `to`; returns once this
    /// member sees `to` lead.
    ///
    /// # Errors
    ///
    /// [`ProposeError::NotLeader`], [`ProposeError::Timeout`] (the transfer lapsed), or the
    /// node stopped.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), ProposeError> {
        self.request(|reply| Request::TransferLeader { to, reply })
            .await
    }

    /// Sends a request and waits for its answer (the driver enforces the deadline; a second
    /// one here guards against a wedged driver).
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ProposeError>>) -> Request<O>,
    ) -> Result<T, ProposeError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(ProposeError::ShuttingDown);
        }
        let (reply, rx) = oneshot::channel();
        if self.tx.send(make(reply)).await.is_err() {
            return Err(self.shared.stopped_error());
        }
        let guard = self.shared.request_timeout + Duration::from_secs(5);
        match tokio::time::timeout(guard, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.shared.stopped_error()),
            Err(_) => Err(ProposeError::Timeout),
        }
    }
}

impl<C, O> NodeHandle<C, O> {
    /// Role, term and known leader; changes are published as they happen.
    pub fn role(&self) -> watch::Receiver<RoleState> {
        self.role.clone()
    }

    /// The member's state as of the driver's last round.
    pub fn status(&self) -> Status {
        self.shared.status.lock().clone()
    }

    /// The highest log index this member has applied.
    pub fn applied_index(&self) -> LogIndex {
        *self.applied.borrow()
    }

    /// Hands a peer message to the driver (what a transport calls on receipt). Never blocks:
    /// dropped when the inbound queue is full.
    pub fn deliver(&self, env: Envelope) {
        self.inbox().deliver(env);
    }

    /// The node's inbound peer queue, for a transport to hold.
    pub fn inbox(&self) -> Inbox {
        Inbox {
            tx: self.peer_tx.clone(),
        }
    }

    /// Since when the transport's link to `peer` is up (see
    /// [`Transport::connected_since`]).
    pub fn peer_connected_since(&self, peer: NodeId) -> Option<std::time::Instant> {
        self.shared.transport.connected_since(peer)
    }

    /// Updates the transport's peer addresses.
    pub fn set_peers(&self, peers: &BTreeMap<NodeId, Vec<String>>) {
        self.shared.transport.set_peers(peers);
    }

    /// Asks the driver to stop: new requests are refused with [`ProposeError::ShuttingDown`],
    /// pending ones are answered with it, the executor is flushed and the thread exits. Returns
    /// at once; see [`NodeHandle::closed`].
    pub fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let _ = self.tx.try_send(Request::Shutdown);
    }

    /// Waits until the driver thread has exited and released the storage.
    pub async fn closed(&self) {
        let mut exited = self.shared.exited.subscribe();
        let _ = exited.wait_for(|exited| *exited).await;
    }

    /// Whether the driver thread has exited.
    pub fn is_closed(&self) -> bool {
        *self.shared.exited.borrow()
    }

    /// Why the driver stopped, if it stopped on a fatal error.
    pub fn fatal_error(&self) -> Option<String> {
        self.shared.fatal.lock().clone()
    }

    /// The node's counters for monitoring (see [`super::metrics`]).
    pub fn metrics(&self) -> super::NodeMetrics {
        self.shared.metrics.snapshot()
    }
}

/// Encodes an executor output for a remote client (an [`crate::cmd::OutputCodec`]'s `encode`).
pub type Encoder<O> = fn(&O) -> Vec<u8>;

/// The leader's answer to a remote client's fast proposal ([`NodeHandle::client_propose`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastReply {
    /// The leader appended the command; `output` is its speculative result (CURP.md F2). A
    /// command without one (it conflicted, or the executor would not speculate it) is
    /// answered with [`FastReply::Applied`] once applied instead (F3); `None` remains part of
    /// the wire contract (a client then asks [`NodeHandle::client_wait_synced`] at this
    /// member), but this leader no longer sends it.
    Speculated {
        /// The leader's term (witness records count only in this term).
        term: Term,
        /// The encoded speculative output.
        output: Option<Bytes>,
    },
    /// The command was already applied (an earlier attempt with the same id): its ordered,
    /// encoded output.
    Applied(Bytes),
    /// The proposal was not taken (not the leader, another cluster version, a transfer).
    Rejected(Rejection),
}

/// A witness's answer to a remote client's record ([`NodeHandle::client_record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordReply {
    /// Accepted: no conflict, same term and cluster version, this member votes.
    pub accepted: bool,
    /// The witness's term.
    pub term: Term,
}

/// The leader's answer to a client's keep-alive ([`NodeHandle::client_keep_alive`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAliveReply {
    /// The id is leased for `ttl` from now.
    Lease {
        /// Time to live.
        ttl: Duration,
    },
    /// The id expired (its later commands count as executed and are never applied): the
    /// client must continue with a new id.
    Expired,
    /// This member does not lead.
    Rejected(Rejection),
}

/// The remote-client API a client service calls (CURP.md F1-F3, W1/W2): the client's own
/// proposal ids are used as given, so its retries are deduplicated (D5).
impl<C: Command, O: Send + 'static> NodeHandle<C, O> {
    /// Fast path at the leader: appends `data` and answers with the leader's speculative
    /// result (see [`FastReply`]); the ordered result is then available through
    /// [`NodeHandle::client_wait_synced`] at this member. Followers answer
    /// [`FastReply::Rejected`] with the leader they know.
    ///
    /// # Errors
    ///
    /// [`ProposeError::Timeout`], or the node stopped.
    pub async fn client_propose(
        &self,
        data: CommandData,
        cluster_version: u64,
        encode: Encoder<O>,
    ) -> Result<FastReply, ProposeError> {
        self.request(|reply| Request::ClientPropose {
            data,
            cluster_version,
            encode,
            reply,
        })
        .await
    }

    /// Keeps `client_id` alive at the leader (CURP.md 5.1, P3): the leader expires a client
    /// it has not heard from (keep-alives, proposals) for the lease's time to live.
    ///
    /// # Errors
    ///
    /// [`ProposeError::Timeout`], or the node stopped.
    pub async fn client_keep_alive(&self, client_id: u64) -> Result<KeepAliveReply, ProposeError> {
        self.request(|reply| Request::ClientKeepAlive { client_id, reply })
            .await
    }

    /// Records `data` at this member's witness; answered once the record is journaled. From
    /// then on this member caches the (`encode`d) results it applies, so that it can answer a
    /// retry with the same id should it lead later.
    ///
    /// # Errors
    ///
    /// [`ProposeError::Timeout`], or the node stopped.
    pub async fn client_record(
        &self,
        data: CommandData,
        term: Term,
        cluster_version: u64,
        encode: Encoder<O>,
    ) -> Result<RecordReply, ProposeError> {
        self.request(|reply| Request::ClientRecord {
            data,
            term,
            cluster_version,
            encode,
            reply,
        })
        .await
    }

    /// The encoded ordered result of `data` once this member has applied it: after a fast
    /// proposal here, or otherwise proposed here on the ordered path with the client's id
    /// (and retried with it) until applied.
    ///
    /// # Errors
    ///
    /// [`ProposeError::Timeout`], [`ProposeError::Duplicate`] (applied by an earlier attempt
    /// whose result is no longer cached), or the node stopped.
    pub async fn client_wait_synced(
        &self,
        data: CommandData,
        encode: Encoder<O>,
    ) -> Result<Bytes, ProposeError> {
        self.request(|reply| Request::ClientWaitSynced {
            data,
            encode,
            reply,
        })
        .await
    }
}
