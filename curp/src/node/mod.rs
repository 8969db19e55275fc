//! The node: a driver thread that owns one member's protocol [`Core`](crate::core::Core) and
//! does all its I/O (storage, transport, state machine, timers), and the cloneable
//! [`NodeHandle`] clients use.
//!
//! ```text
//!  NodeHandle::propose/read_index/...  --bounded mpsc-->  +----------------------------+
//!  Transport --> NodeHandle::deliver   --bounded mpsc-->  | curp-node-<id> thread      |
//!                                        (full: drop)     |  tick every heartbeat      |
//!                                                         |  core.step / core.tick     |
//!   role watch, applied watch, status  <--------------    |  ready(): send, persist    |
//!                                                         |  (1 fsync), send, apply,   |
//!                                                         |  answer, advance, snapshot |
//!                                                         +----------------------------+
//! ```
//!
//! # Why a dedicated OS thread
//!
//! Every round ends in an fsync and in `CommandExecutor::apply`, both blocking. One thread that
//! owns the core, the storage and the executor runs them in order without handing work between
//! tasks (a tokio task would need `spawn_blocking` for each round, adding a wake-up and a
//! thread hop per fsync, and could not hold the core across them without locking). The thread
//! waits for inputs with a small current-thread tokio runtime of its own (channels plus the
//! tick timer), so it needs no runtime from the caller and never blocks the caller's runtime.
//! [`Node::start`] may be called inside or outside a tokio runtime.
//!
//! # Rounds
//!
//! The driver follows the contract in [`crate::core::ready`]: it takes every input that is
//! queued (up to a bound), ticks when due, then loops `ready()` / `advance()` until the core is
//! quiet: messages out, then snapshot / entries / hard state / witness journal written and
//! synced **once**, then `persisted_messages` out, then committed entries applied in batches
//! through the executor, answers delivered, `advance()`, `Input::Applied`, and every
//! [`NodeConfig::snapshot_every_entries`] a snapshot (`Input::SnapshotTaken`) after which the
//! log storage is compacted.
//!
//! # Restart
//!
//! [`Node::start`] reads everything back ([`codec::load`]); if the state machine is behind the
//! stored snapshot it is restored from it first. Committed entries after the state machine's
//! applied index are applied again (the core hands them out).
//!
//! # Exactly once and duplicates
//!
//! Proposal ids come from the handle; the driver re-proposes with the same id after a leader
//! change or when no answer came, and the core's replicated dedup table marks later copies
//! `duplicate`, which are not executed. A waiter is answered by the first copy this member
//! applies. A waiter that only sees a duplicate (the first copy was applied before the waiter
//! existed, i.e. before a restart of this member) gets [`ProposeError::Duplicate`]: results
//! are not cached across restarts.

pub mod codec;
mod driver;
mod handle;
pub mod metrics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

pub use handle::{Encoder, FastReply, Inbox, KeepAliveReply, NodeHandle, RecordReply};
pub use metrics::{HistogramSnapshot, NodeMetrics};

use crate::cmd::{Command, CommandExecutor};
use crate::core::{self, Membership, NodeId};
use crate::error::{ExecutorError, ProposeError, StorageError};
use crate::storage::LogStorage;
use crate::transport::Transport;

/// Configuration of one member's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This member's id (never 0).
    pub id: NodeId,
    /// The cluster's membership before its first log entry, used when the storage holds none
    /// (a member's first start); stored then. A member joining an existing cluster as a learner
    /// must be given the same initial membership as the founding members (the log replays
    /// changes on top of it), unless the leader's log is compacted so that it receives a
    /// snapshot, which carries the membership.
    pub initial_membership: Membership,
    /// Peer URLs handed to the transport at start (may be empty).
    pub peer_urls: BTreeMap<NodeId, Vec<String>>,
    /// The tick: heartbeat interval (etcd `--heartbeat-interval`, default 100 ms).
    pub heartbeat_interval: Duration,
    /// Election timeout (etcd `--election-timeout`, default 1000 ms): the core's
    /// `election_tick` is this divided by the heartbeat interval (at least 2); followers
    /// campaign after a random `[1, 2)` times it without a leader.
    pub election_timeout: Duration,
    /// Run a pre-vote round before campaigning.
    pub pre_vote: bool,
    /// At most this many entries per `Append` message.
    pub max_append_entries: usize,
    /// Take a state-machine snapshot (and compact the log) every this many applied entries;
    /// 0: never.
    pub snapshot_every_entries: u64,
    /// How long a request ([`NodeHandle::propose`], `read_index`, ...) may take.
    pub request_timeout: Duration,
    /// Capacity of the inbound peer-message queue (messages beyond are dropped).
    pub inbox_capacity: usize,
    /// Capacity of the request queue (callers wait while it is full).
    pub request_queue_capacity: usize,
    /// Most commands per executor batch.
    pub max_apply_batch: usize,
    /// Seed of the core's PRNG (election timeouts); `None`: derived from the id and the clock.
    pub seed: Option<u64>,
}

impl NodeConfig {
    /// etcd's defaults for member `id` of a cluster that starts as `initial_membership`.
    pub fn new(id: NodeId, initial_membership: Membership) -> Self {
        Self {
            id,
            initial_membership,
            peer_urls: BTreeMap::new(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            pre_vote: true,
            max_append_entries: 64,
            snapshot_every_entries: 10_000,
            request_timeout: Duration::from_secs(10),
            inbox_capacity: 4096,
            request_queue_capacity: 4096,
            max_apply_batch: 256,
            seed: None,
        }
    }

    /// The election timeout in ticks.
    pub fn election_tick(&self) -> u32 {
        let heartbeat = self.heartbeat_interval.as_micros().max(1);
        let ticks = self.election_timeout.as_micros() / heartbeat;
        u32::try_from(ticks).unwrap_or(u32::MAX).max(2)
    }

    /// The core's configuration.
    ///
    /// # Errors
    ///
    /// [`NodeError::Config`] for a zero id, a zero heartbeat interval, an election timeout not
    /// above the heartbeat, zero capacities or batch sizes.
    pub fn core_config(&self) -> Result<core::Config, NodeError> {
        if self.heartbeat_interval.is_zero() {
            return Err(NodeError::Config("heartbeat interval must not be 0".into()));
        }
        if self.election_timeout <= self.heartbeat_interval {
            return Err(NodeError::Config(format!(
                "election timeout {:?} must exceed the heartbeat interval {:?}",
                self.election_timeout, self.heartbeat_interval
            )));
        }
        if self.inbox_capacity == 0 || self.request_queue_capacity == 0 || self.max_apply_batch == 0
        {
            return Err(NodeError::Config(
                "queue capacities and the apply batch must be at least 1".into(),
            ));
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let cfg = core::Config {
            id: self.id,
            election_tick: self.election_tick(),
            heartbeat_tick: 1,
            pre_vote: self.pre_vote,
            max_append_entries: self.max_append_entries,
            seed,
        };
        cfg.validate()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        Ok(cfg)
    }
}

/// A node could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid.
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// Reading or initialising the storage failed.
    #[error("node storage: {0}")]
    Storage(#[from] StorageError),
    /// The state machine failed (reading its applied index, restoring a snapshot).
    #[error("node state machine: {0}")]
    Executor(#[from] ExecutorError),
    /// The state machine and the log disagree (the state machine is ahead of every stored
    /// entry and snapshot: the log was lost or belongs to another state machine).
    #[error("node state is inconsistent: {0}")]
    Inconsistent(String),
    /// The driver thread could not be spawned.
    #[error("cannot spawn the node driver thread: {0}")]
    Spawn(String),
}

/// Starts nodes; see [`Node::start`].
#[derive(Debug)]
pub struct Node {
    /// Not constructible.
    _private: (),
}

impl Node {
    /// Recovers member `config.id` from `storage` (and `executor`), then starts its driver
    /// thread (`curp-node-<id>`), which sends through `transport`. Every member starts as a
    /// follower (or learner); the returned handle's [`NodeHandle::deliver`] must be wired to the
    /// transport's receiving side.
    ///
    /// Recovery runs on the calling thread before this returns (it may restore the state
    /// machine from the stored snapshot): call it before serving, or from `spawn_blocking`.
    /// The driver runs until [`NodeHandle::shutdown`], a fatal error, or until every handle
    /// (not [`Inbox`]) is dropped.
    ///
    /// # Errors
    ///
    /// [`NodeError`] when the configuration is invalid, the storage or the state machine fails
    /// or disagree, or the thread cannot be spawned.
    pub fn start<C, E, S, T>(
        config: NodeConfig,
        storage: S,
        executor: Arc<E>,
        transport: T,
    ) -> Result<NodeHandle<C, E::Output>, NodeError>
    where
        C: Command,
        E: CommandExecutor<C>,
        S: LogStorage,
        T: Transport,
    {
        let core_config = config.core_config()?;
        let transport: Arc<dyn Transport> = Arc::new(transport);
        if !config.peer_urls.is_empty() {
            transport.set_peers(&config.peer_urls);
        }
        let (tx, rx) = mpsc::channel(config.request_queue_capacity);
        let (peer_tx, peer_rx) = mpsc::channel(config.inbox_capacity);
        let parts = driver::recover::<C, E, S>(&config, core_config, storage, executor)?;
        let status = parts.core.status();
        let (role_tx, role_rx) = watch::channel(core::RoleState {
            role: status.role,
            term: status.term,
            leader: status.leader,
        });
        let (applied_tx, applied_rx) = watch::channel(parts.applied);
        let (exited, _) = watch::channel(false);
        let shared = Arc::new(handle::Shared {
            id: config.id,
            closing: AtomicBool::new(false),
            fatal: Mutex::new(None),
            exited,
            status: Mutex::new(status),
            transport: Arc::clone(&transport),
            request_timeout: config.request_timeout,
            metrics: metrics::Counters::default(),
        });
        let driver = driver::Driver::new(
            config,
            parts,
            transport,
            Arc::clone(&shared),
            role_tx,
            applied_tx,
        );
        driver::spawn(driver, rx, peer_rx, Arc::clone(&shared))
            .map_err(|e| NodeError::Spawn(e.to_string()))?;
        Ok(NodeHandle::new(tx, peer_tx, shared, role_rx, applied_rx))
    }
}

/// The error a request gets when the node stopped (used by the driver on exit).
pub(crate) fn stop_error(fatal: Option<&str>) -> ProposeError {
    match fatal {
        Some(message) => ProposeError::Fatal(message.to_owned()),
        None => ProposeError::ShuttingDown,
    }
}
