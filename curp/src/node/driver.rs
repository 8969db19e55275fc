//! The driver: recovery, then one thread that owns the core, the storage and the executor and
//! runs the rounds described in [`super`] (and, binding, in [`crate::core::ready`]).

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::codec::{self, WitnessJournal};
use super::handle::{Request, Shared};
use super::metrics::Counters;
use super::{NodeConfig, NodeError, stop_error};
use crate::cmd::{Command, CommandExecutor};
use crate::core::{
    self, CommandData, Committed, ConfChange, Core, EntryKind, Envelope, Event, Input, LogIndex,
    NodeId, ProposeId, Ready, Rejection, Role, RoleState, SnapshotInstall, WitnessOp,
    snapshot_state_machine_data,
};
use crate::error::ProposeError;
use crate::storage::LogStorage;
use crate::transport::Transport;

mod remote;

/// Most queued inputs (of each kind) taken per round: bounds the work between two looks at
/// the clock while still batching many inputs into one fsync.
const MAX_DRAIN: usize = 1024;
/// Most `ready()` rounds per wake-up before yielding to the clock.
const MAX_ROUNDS: usize = 64;
/// Client id of the driver's own requests (membership changes).
const DRIVER_CLIENT_ID: u64 = 0;

/// What recovery produced.
pub(super) struct Parts<C, E, S> {
    /// The core, restored.
    pub(super) core: Core,
    /// The storage.
    storage: S,
    /// The state machine.
    executor: Arc<E>,
    /// The witness journal.
    journal: WitnessJournal,
    /// Everything up to here is applied (all entry kinds).
    pub(super) applied: LogIndex,
    /// Commands at or below this index are already in the state machine.
    exec_floor: LogIndex,
    /// Index of the latest snapshot (0: none).
    last_snapshot: LogIndex,
    /// Term and vote of the stored hard state.
    durable_vote: (u64, u64),
    /// The command type.
    _cmd: PhantomData<fn() -> C>,
}

/// Reads everything back and builds the core (see [`super::Node::start`]).
pub(super) fn recover<C, E, S>(
    config: &NodeConfig,
    core_config: core::Config,
    storage: S,
    executor: Arc<E>,
) -> Result<Parts<C, E, S>, NodeError>
where
    C: Command,
    E: CommandExecutor<C>,
    S: LogStorage,
{
    let loaded = codec::load(&storage, &config.initial_membership)?;
    if !loaded.has_membership {
        storage.put_meta(
            codec::MEMBERSHIP_KEY,
            &codec::encode_membership(&config.initial_membership),
            true,
        )?;
    }
    let mut restored = loaded.restored;
    let mut applied = executor.applied_index()?;
    let snap_index = restored.snapshot.as_ref().map_or(0, |s| s.index);
    if let Some(snap) = &restored.snapshot
        && applied < snap.index
    {
        tracing::info!(
            id = config.id,
            index = snap.index,
            applied,
            "restoring the state machine from the stored snapshot"
        );
        executor.restore(&snapshot_state_machine_data(&snap.data), snap.index)?;
        applied = snap.index;
    }
    let last = restored.entries.last().map_or(snap_index, |e| e.index);
    if applied > last {
        return Err(NodeError::Inconsistent(format!(
            "the state machine has applied index {applied} but the log ends at {last}"
        )));
    }
    restored.applied = applied;
    let durable_vote = (restored.hard_state.term, restored.hard_state.vote);
    let core = Core::new(core_config, restored);
    let core_applied = core.status().applied;
    Ok(Parts {
        core,
        storage,
        executor,
        journal: loaded.journal,
        applied: core_applied,
        exec_floor: applied,
        last_snapshot: snap_index,
        durable_vote,
        _cmd: PhantomData,
    })
}

/// A proposal waiting for this member to apply it.
struct PendingPropose<O> {
    /// The command (re-proposed with the same id).
    data: CommandData,
    /// Where the result goes.
    reply: oneshot::Sender<Result<O, ProposeError>>,
    /// Answered with `Timeout` after this.
    deadline: Instant,
    /// Proposed again at this time if still waiting.
    retry_at: Instant,
}

/// A read-index request.
struct PendingRead {
    /// Where the index goes.
    reply: oneshot::Sender<Result<LogIndex, ProposeError>>,
    /// Answered with `Timeout` after this.
    deadline: Instant,
    /// Asked again at this time (after a refusal); `None` while an attempt is out.
    retry_at: Option<Instant>,
}

/// A membership change.
struct PendingChange {
    /// Its request id.
    id: ProposeId,
    /// The change.
    change: ConfChange,
    /// Answered once applied.
    reply: oneshot::Sender<Result<(), ProposeError>>,
    /// Answered with `Timeout` after this.
    deadline: Instant,
    /// Proposed again at this time (after a transient refusal).
    retry_at: Option<Instant>,
}

/// A leadership transfer.
struct PendingTransfer {
    /// The successor.
    to: NodeId,
    /// Answered once `to` leads.
    reply: oneshot::Sender<Result<(), ProposeError>>,
    /// Answered with `Timeout` after this.
    deadline: Instant,
}

/// The driver (runs on its own thread once spawned).
pub(super) struct Driver<C, E: CommandExecutor<C>, S>
where
    C: Command,
{
    /// Configuration.
    config: NodeConfig,
    /// The protocol.
    core: Core,
    /// The log, hard state and metadata.
    storage: S,
    /// The state machine.
    executor: Arc<E>,
    /// Peer messages out.
    transport: Arc<dyn Transport>,
    /// The witness journal.
    journal: WitnessJournal,
    /// Applied index (all entry kinds).
    applied: LogIndex,
    /// Commands at or below this are in the state machine already (after a restore).
    exec_floor: LogIndex,
    /// Latest snapshot index.
    last_snapshot: LogIndex,
    /// Term and vote of the last hard state written (synced before anything depends on it).
    durable_vote: (u64, u64),
    /// Proposals by id.
    proposals: HashMap<ProposeId, PendingPropose<E::Output>>,
    /// Reads by request id.
    reads: HashMap<u64, PendingRead>,
    /// Next read request id.
    next_read: u64,
    /// Membership changes.
    changes: Vec<PendingChange>,
    /// Next membership change sequence number.
    next_change: u64,
    /// Leadership transfers.
    transfers: Vec<PendingTransfer>,
    /// Remote clients' requests (fast path, witness records, ordered results).
    client: remote::ClientState<E::Output>,
    /// The peer URLs of the configuration last handed to the transport.
    peers: BTreeMap<NodeId, Vec<String>>,
    /// Current role state (as published).
    role: RoleState,
    /// Shared with the handles.
    shared: Arc<Shared>,
    /// Publishes role changes.
    role_tx: watch::Sender<RoleState>,
    /// Publishes the applied index.
    applied_tx: watch::Sender<LogIndex>,
}

impl<C, E, S> Driver<C, E, S>
where
    C: Command,
    E: CommandExecutor<C>,
    S: LogStorage,
{
    /// A driver over recovered `parts`.
    pub(super) fn new(
        config: NodeConfig,
        parts: Parts<C, E, S>,
        transport: Arc<dyn Transport>,
        shared: Arc<Shared>,
        role_tx: watch::Sender<RoleState>,
        applied_tx: watch::Sender<LogIndex>,
    ) -> Self {
        let role = *role_tx.borrow();
        Self {
            config,
            core: parts.core,
            storage: parts.storage,
            executor: parts.executor,
            transport,
            journal: parts.journal,
            applied: parts.applied,
            exec_floor: parts.exec_floor,
            last_snapshot: parts.last_snapshot,
            durable_vote: parts.durable_vote,
            proposals: HashMap::new(),
            reads: HashMap::new(),
            next_read: 1,
            changes: Vec::new(),
            next_change: 1,
            transfers: Vec::new(),
            client: remote::ClientState::default(),
            peers: BTreeMap::new(),
            role,
            shared,
            role_tx,
            applied_tx,
        }
    }

    /// The main loop: returns `Ok` on shutdown (or when every handle is gone).
    fn serve(
        &mut self,
        rt: &tokio::runtime::Runtime,
        rx: &mut mpsc::Receiver<Request<E::Output>>,
        peer_rx: &mut mpsc::Receiver<Envelope>,
    ) -> Result<(), ProposeError> {
        let tick = self.config.heartbeat_interval;
        let mut next_tick = Instant::now() + tick;
        // Hand out what restart made committed (and apply it) before waiting for anything.
        self.drain_ready()?;
        self.publish_status();
        loop {
            let wake = rt.block_on(async {
                tokio::select! {
                    biased;
                    req = rx.recv() => Wake::Request(req),
                    env = peer_rx.recv() => Wake::Peer(env),
                    () = tokio::time::sleep_until(next_tick.into()) => Wake::Tick,
                }
            });
            match wake {
                Wake::Request(None) => return Ok(()),
                Wake::Request(Some(req)) => self.request(req),
                Wake::Peer(Some(env)) => self.core.step(Input::Message(env)),
                Wake::Peer(None) | Wake::Tick => {}
            }
            for _ in 0..MAX_DRAIN {
                match peer_rx.try_recv() {
                    Ok(env) => self.core.step(Input::Message(env)),
                    Err(_) => break,
                }
            }
            for _ in 0..MAX_DRAIN {
                match rx.try_recv() {
                    Ok(req) => self.request(req),
                    Err(_) => break,
                }
            }
            if self.shared.closing.load(Ordering::Acquire) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_tick {
                self.core.tick();
                self.on_tick(now);
                next_tick += tick;
                if next_tick <= now {
                    // Far behind (a long round, a paused process): do not tick in a burst.
                    next_tick = now + tick;
                }
            }
            self.drain_ready()?;
            self.publish_status();
        }
    }

    /// Takes a request from a handle.
    fn request(&mut self, req: Request<E::Output>) {
        let now = Instant::now();
        let deadline = now + self.config.request_timeout;
        match req {
            Request::Propose { data, reply } => {
                let id = data.id;
                Counters::inc(&self.shared.metrics.slow_path);
                self.core.step(Input::Propose {
                    cmd: data.clone(),
                    fast: false,
                });
                self.proposals.insert(
                    id,
                    PendingPropose {
                        data,
                        reply,
                        deadline,
                        retry_at: now + self.resend_interval(),
                    },
                );
            }
            Request::ReadIndex { reply } => {
                let id = self.next_read;
                self.next_read += 1;
                self.reads.insert(
                    id,
                    PendingRead {
                        reply,
                        deadline,
                        retry_at: None,
                    },
                );
                self.core.step(Input::ReadIndex { id });
            }
            Request::ChangeMembership { change, reply } => {
                let id = ProposeId {
                    client_id: DRIVER_CLIENT_ID,
                    seq: self.next_change,
                };
                self.next_change += 1;
                self.core.step(Input::ChangeMembership {
                    id,
                    change: change.clone(),
                });
                self.changes.push(PendingChange {
                    id,
                    change,
                    reply,
                    deadline,
                    retry_at: None,
                });
            }
            Request::TransferLeader { to, reply } => {
                if self.role.role != Role::Leader {
                    let _ = reply.send(Err(ProposeError::NotLeader {
                        leader: self.role.leader,
                    }));
                    return;
                }
                if self.role.leader == Some(to) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                self.core.step(Input::TransferLeader { to });
                self.transfers.push(PendingTransfer {
                    to,
                    reply,
                    deadline,
                });
            }
            Request::Shutdown => {}
            req @ (Request::ClientPropose { .. }
            | Request::ClientRecord { .. }
            | Request::ClientKeepAlive { .. }
            | Request::ClientWaitSynced { .. }) => self.client_request(req, now),
        }
    }

    /// How long to wait for a proposal's outcome before proposing it again.
    fn resend_interval(&self) -> Duration {
        2 * self.config.election_timeout
    }

    /// After a refusal: how long before trying again.
    fn retry_delay(&self) -> Duration {
        self.config.heartbeat_interval
    }

    /// Timers of pending requests: deadlines and retries.
    fn on_tick(&mut self, now: Instant) {
        let resend = self.resend_interval();
        let mut again = Vec::new();
        let failed = &self.shared.metrics.proposals_failed;
        self.proposals.retain(|_, p| {
            if now >= p.deadline {
                let reply = std::mem::replace(&mut p.reply, oneshot::channel().0);
                let _ = reply.send(Err(ProposeError::Timeout));
                Counters::inc(failed);
                return false;
            }
            if now >= p.retry_at {
                p.retry_at = now + resend;
                again.push(p.data.clone());
            }
            true
        });
        for cmd in again {
            self.core.step(Input::Propose { cmd, fast: false });
        }
        let mut reads = Vec::new();
        self.reads.retain(|id, r| {
            if now >= r.deadline {
                let reply = std::mem::replace(&mut r.reply, oneshot::channel().0);
                let _ = reply.send(Err(ProposeError::Timeout));
                return false;
            }
            if r.retry_at.is_some_and(|at| now >= at) {
                r.retry_at = None;
                reads.push(*id);
            }
            true
        });
        for id in reads {
            self.core.step(Input::ReadIndex { id });
        }
        let mut changes = Vec::new();
        for c in self.changes.iter_mut() {
            if c.retry_at.is_some_and(|at| now >= at) {
                c.retry_at = None;
                changes.push((c.id, c.change.clone()));
            }
        }
        self.changes.retain_mut(|c| {
            if now >= c.deadline {
                let reply = std::mem::replace(&mut c.reply, oneshot::channel().0);
                let _ = reply.send(Err(ProposeError::Timeout));
                return false;
            }
            true
        });
        for (id, change) in changes {
            self.core.step(Input::ChangeMembership { id, change });
        }
        self.client_tick(now);
        self.transfers.retain_mut(|t| {
            if now >= t.deadline {
                let reply = std::mem::replace(&mut t.reply, oneshot::channel().0);
                let _ = reply.send(Err(ProposeError::Timeout));
                return false;
            }
            true
        });
    }

    /// Runs `ready()` rounds until the core is quiet (or the round budget is spent).
    fn drain_ready(&mut self) -> Result<(), ProposeError> {
        for _ in 0..MAX_ROUNDS {
            let rd = self.core.ready();
            if rd.is_empty() {
                return Ok(());
            }
            self.round(rd)?;
        }
        Ok(())
    }

    /// Steps 3-7 of the driver contract for one `Ready`.
    fn round(&mut self, rd: Ready) -> Result<(), ProposeError> {
        let Ready {
            snapshot,
            entries,
            hard_state,
            witness,
            messages,
            persisted_messages,
            committed,
            speculate,
            events,
            role,
            snapshot_taken,
        } = rd;
        // 3. Messages that do not depend on our persistence.
        if !messages.is_empty() {
            self.transport.send(messages);
        }
        if let Some(rs) = role {
            self.on_role(rs);
        }
        // 4. Persist (one sync).
        if let Some(snap) = &snapshot {
            self.install_snapshot(snap)?;
        }
        self.persist(snapshot_taken.as_ref(), &entries, hard_state, &witness)?;
        // 5. Messages that needed it.
        if !persisted_messages.is_empty() {
            self.transport.send(persisted_messages);
        }
        // 6. Apply, answer.
        let applied = self.apply(committed)?;
        self.client_speculate(speculate);
        for event in events {
            self.event(event);
        }
        self.client_round_done();
        // 7.
        self.core.advance();
        if let Some(index) = applied {
            self.core.step(Input::Applied { index });
            self.maybe_snapshot()?;
        }
        Ok(())
    }

    /// Installs a snapshot from the leader: the record first (durably, with the log reset to
    /// it), then the state machine. A crash in between restores the state machine from the
    /// record on restart.
    fn install_snapshot(&mut self, snap: &SnapshotInstall) -> Result<(), ProposeError> {
        tracing::info!(
            id = self.config.id,
            index = snap.index,
            "installing a snapshot"
        );
        guarded("storing the snapshot", || {
            self.storage
                .put_meta(codec::SNAPSHOT_KEY, &codec::encode_snapshot(snap), false)
        })?;
        guarded("resetting the log to the snapshot", || {
            self.storage.install_snapshot(snap.index, snap.term)
        })?;
        let data = snapshot_state_machine_data(&snap.data);
        guarded("restoring the state machine", || {
            self.executor.restore(&data, snap.index)
        })?;
        self.applied = snap.index;
        self.exec_floor = snap.index;
        self.last_snapshot = snap.index;
        self.applied_tx.send_replace(snap.index);
        Ok(())
    }

    /// Persists a round's snapshot record, entries, hard state and witness operations with at
    /// most one sync, then compacts the log behind a snapshot taken here.
    ///
    /// The sync rides on the last write of the round (a write with `sync` makes every earlier
    /// one durable too), so a round costs one fsync and no extra marker write. A round whose
    /// only change is the hard state's commit index is written without a sync, as etcd's raft
    /// does (`MustSync`): nothing sent or answered depends on the stored commit index, which
    /// only saves replaying work after a restart; a restart takes the state machine's applied
    /// index as committed (`Core::new`) and learns the rest from the leader. It becomes durable
    /// with the next synced write. Term and vote changes are always synced: a vote or a message
    /// in a new term must never be forgotten.
    fn persist(
        &mut self,
        snapshot_taken: Option<&SnapshotInstall>,
        entries: &[core::Entry],
        hard_state: Option<crate::storage::HardState>,
        witness: &[WitnessOp],
    ) -> Result<(), ProposeError> {
        let vote = hard_state.map(|hs| (hs.term, hs.vote));
        let must_sync = snapshot_taken.is_some()
            || !entries.is_empty()
            || !witness.is_empty()
            || vote.is_some_and(|v| v != self.durable_vote);
        let started = Instant::now();
        let mut synced = false;
        if let Some(snap) = snapshot_taken {
            let sync =
                must_sync && entries.is_empty() && hard_state.is_none() && witness.is_empty();
            guarded("storing the snapshot", || {
                self.storage
                    .put_meta(codec::SNAPSHOT_KEY, &codec::encode_snapshot(snap), sync)
            })?;
            synced |= sync;
        }
        if !entries.is_empty() || hard_state.is_some() {
            let stored: Vec<_> = entries.iter().map(codec::to_log_entry).collect();
            let sync = must_sync && witness.is_empty();
            guarded("appending to the log", || {
                self.storage.write_round(&stored, hard_state, sync)
            })?;
            synced |= sync;
        }
        if !witness.is_empty() {
            guarded("journaling witness records", || {
                self.journal.write(&self.storage, witness)
            })?;
            guarded("syncing the log", || self.storage.sync())?;
            synced = true;
        }
        if synced {
            self.shared.metrics.log_sync.observe(started.elapsed());
        }
        if let Some(v) = vote {
            // Durable now, or (no sync: unchanged) already.
            self.durable_vote = v;
        }
        if let Some(snap) = snapshot_taken {
            // The record is durable: the log up to it is no longer needed.
            let to = snap.index.min(self.storage.last_index()) + 1;
            if to > self.storage.first_index() {
                guarded("compacting the log", || self.storage.compact(to))?;
            }
        }
        Ok(())
    }

    /// Applies committed entries in order, batching consecutive commands; returns the last
    /// index handled.
    fn apply(&mut self, committed: Vec<Committed>) -> Result<Option<LogIndex>, ProposeError> {
        let mut last = None;
        let mut batch: Vec<(LogIndex, C)> = Vec::new();
        let mut ids: Vec<ProposeId> = Vec::new();
        for Committed { entry, duplicate } in committed {
            let index = entry.index;
            if index <= self.applied {
                continue;
            }
            match entry.kind {
                EntryKind::Command { cmd, .. } => {
                    self.client_watermark(&cmd);
                    if duplicate {
                        // Execute what precedes it first: its waiter may be answered there.
                        self.execute(&mut batch, &mut ids)?;
                        if let Some(p) = self.proposals.remove(&cmd.id) {
                            let _ = p.reply.send(Err(ProposeError::Duplicate));
                        }
                        self.client_duplicate(cmd.id);
                    } else if index > self.exec_floor {
                        let decoded = C::decode(&cmd.payload).map_err(|e| {
                            ProposeError::Fatal(format!("log entry {index} does not decode: {e}"))
                        })?;
                        batch.push((index, decoded));
                        ids.push(cmd.id);
                        if batch.len() >= self.config.max_apply_batch {
                            self.execute(&mut batch, &mut ids)?;
                        }
                    }
                }
                EntryKind::ConfChange(change) => {
                    self.execute(&mut batch, &mut ids)?;
                    // Whoever learns that the change is applied (its waiter, a reader of the
                    // applied index) sees it in the status too.
                    self.publish_status();
                    self.changes.retain_mut(|c| {
                        // A leader appends every change as the configuration it produces.
                        let done = match &change {
                            ConfChange::Set(m) => c.change.is_done_in(m),
                            other => c.change == *other,
                        };
                        if !done {
                            return true;
                        }
                        let reply = std::mem::replace(&mut c.reply, oneshot::channel().0);
                        let _ = reply.send(Ok(()));
                        false
                    });
                }
                // The core purges the client's witness records and dedup state itself.
                EntryKind::Empty | EntryKind::ClientExpired(_) => {}
            }
            last = Some(index);
        }
        self.execute(&mut batch, &mut ids)?;
        if let Some(index) = last {
            self.applied = index;
            self.applied_tx.send_replace(index);
        }
        Ok(last)
    }

    /// Runs one executor batch and answers its waiters.
    fn execute(
        &mut self,
        batch: &mut Vec<(LogIndex, C)>,
        ids: &mut Vec<ProposeId>,
    ) -> Result<(), ProposeError> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let outputs = guarded("applying commands", || self.executor.apply(batch))?;
        self.shared.metrics.apply.observe(started.elapsed());
        if outputs.len() != batch.len() {
            return Err(ProposeError::Fatal(format!(
                "the executor returned {} outputs for {} commands",
                outputs.len(),
                batch.len()
            )));
        }
        // Publish the applied index before answering, so that an answered proposer sees it.
        if let Some(&(last, _)) = batch.last() {
            self.applied_tx.send_replace(last);
        }
        batch.clear();
        self.client_outputs(ids, &outputs);
        for (id, output) in ids.drain(..).zip(outputs) {
            if let Some(p) = self.proposals.remove(&id) {
                // The proposer may have given up; the command is applied regardless.
                let _ = p.reply.send(Ok(output));
            }
        }
        Ok(())
    }

    /// Takes a snapshot every `snapshot_every_entries` applied entries: the executor is flushed
    /// first, so that compacting the log never drops entries the state machine has not made
    /// durable.
    fn maybe_snapshot(&mut self) -> Result<(), ProposeError> {
        let every = self.config.snapshot_every_entries;
        if every == 0 || self.applied < self.last_snapshot.saturating_add(every) {
            return Ok(());
        }
        guarded("flushing the state machine", || self.executor.flush())?;
        let data = guarded("snapshotting the state machine", || {
            self.executor.snapshot()
        })?;
        self.last_snapshot = self.applied;
        self.core.step(Input::SnapshotTaken {
            index: self.applied,
            data,
        });
        Ok(())
    }

    /// Answers to local requests.
    fn event(&mut self, event: Event) {
        if let Event::Proposed { conflict, .. } = &event {
            let metrics = &self.shared.metrics;
            Counters::inc(if *conflict {
                &metrics.fast_path_fallback
            } else {
                &metrics.fast_path
            });
        }
        let Some(event) = self.client_event(event) else {
            return;
        };
        let now = Instant::now();
        let retry_at = now + self.retry_delay();
        match event {
            Event::Rejected { id, reason } => {
                if let Some(p) = self.proposals.get_mut(&id) {
                    match reason {
                        Rejection::InvalidChange
                        | Rejection::ChangePending
                        | Rejection::LearnerNotReady => {
                            if let Some(p) = self.proposals.remove(&id) {
                                let _ = p.reply.send(Err(ProposeError::InvalidChange));
                                Counters::inc(&self.shared.metrics.proposals_failed);
                            }
                        }
                        // Not the leader (yet), a transfer, a stale version: try again soon.
                        _ => p.retry_at = p.retry_at.min(retry_at),
                    }
                    return;
                }
                if let Some(pos) = self.changes.iter().position(|c| c.id == id) {
                    let answer = match reason {
                        Rejection::InvalidChange => Some(ProposeError::InvalidChange),
                        Rejection::LearnerNotReady => Some(ProposeError::LearnerNotReady),
                        Rejection::NotLeader {
                            leader: Some(leader),
                            ..
                        } if leader != self.config.id => Some(ProposeError::NotLeader {
                            leader: Some(leader),
                        }),
                        _ => None,
                    };
                    match answer {
                        Some(err) => {
                            let c = self.changes.remove(pos);
                            let _ = c.reply.send(Err(err));
                        }
                        None => self.changes[pos].retry_at = Some(retry_at),
                    }
                }
            }
            Event::ReadIndex { id, result } => match result {
                Ok(index) => {
                    if let Some(r) = self.reads.remove(&id) {
                        let _ = r.reply.send(Ok(index));
                    }
                }
                Err(_) => {
                    if let Some(r) = self.reads.get_mut(&id) {
                        r.retry_at = Some(retry_at);
                    }
                }
            },
            // Remote clients' (answered by `client_event`).
            Event::Proposed { .. } | Event::Recorded { .. } => {}
        }
    }

    /// Publishes a role change; a new leader gets every waiting proposal again (the old one
    /// may have lost them), with the same ids.
    fn on_role(&mut self, rs: RoleState) {
        let leader_changed = rs.leader != self.role.leader || rs.term != self.role.term;
        if rs.leader.is_some() && rs.leader != self.role.leader {
            Counters::inc(&self.shared.metrics.leader_changes);
        }
        self.role = rs;
        self.role_tx.send_replace(rs);
        if leader_changed && rs.leader.is_some() {
            let now = Instant::now();
            for p in self.proposals.values_mut() {
                p.retry_at = now;
            }
            self.client_leader_changed(now);
        }
        self.transfers.retain_mut(|t| {
            if rs.leader != Some(t.to) {
                return true;
            }
            let reply = std::mem::replace(&mut t.reply, oneshot::channel().0);
            let _ = reply.send(Ok(()));
            false
        });
    }

    /// Publishes the status handles read, and hands the transport the peer URLs of a new
    /// configuration (after a change, a snapshot, or at start from the stored one).
    fn publish_status(&mut self) {
        let known = &self.core.members.current().peers;
        if *known != self.peers {
            self.peers.clone_from(known);
            let mut peers = self.config.peer_urls.clone();
            peers.extend(self.peers.iter().map(|(id, urls)| (*id, urls.clone())));
            peers.remove(&self.config.id);
            tracing::info!(id = self.config.id, ?peers, "peer URLs changed");
            self.transport.set_peers(&peers);
        }
        self.core.update_status(&mut self.shared.status.lock());
        let metrics = &self.shared.metrics;
        Counters::set(&metrics.proposals_pending, self.proposals.len());
        Counters::set(&metrics.witness_pool_size, self.core.witness.len());
        let (ucp_len, exclusive) = self.core.lead.as_ref().map_or((0, false), |lead| {
            // Empty keys conflict only with an exclusive command.
            let exclusive = lead.ucp.conflicts(&crate::cmd::ConflictKeys::default());
            (lead.ucp.len(), exclusive)
        });
        Counters::set(&metrics.uncommitted_pool_size, ucp_len);
        Counters::set(&metrics.exclusive_pending, usize::from(exclusive));
    }

    /// Stops: flushes the state machine (best effort) and answers everything pending.
    fn finish(&mut self, err: &ProposeError) {
        if self.shared.fatal.lock().is_none()
            && let Err(e) = guarded("flushing the state machine", || self.executor.flush())
        {
            tracing::warn!(id = self.config.id, %e, "final flush failed");
        }
        for (_, p) in self.proposals.drain() {
            let _ = p.reply.send(Err(err.clone()));
        }
        for (_, r) in self.reads.drain() {
            let _ = r.reply.send(Err(err.clone()));
        }
        for c in self.changes.drain(..) {
            let _ = c.reply.send(Err(err.clone()));
        }
        for t in self.transfers.drain(..) {
            let _ = t.reply.send(Err(err.clone()));
        }
        self.client_finish(err);
    }
}

/// Why the driver woke up.
enum Wake<O> {
    /// A request (or `None`: every handle is gone).
    Request(Option<Request<O>>),
    /// A peer message.
    Peer(Option<Envelope>),
    /// The tick timer fired.
    Tick,
}

/// Marks the driver as exited when its thread ends, even by panicking.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .fatal
                .lock()
                .get_or_insert_with(|| "the node driver thread panicked".to_owned());
        }
        self.0.exited.send_replace(true);
    }
}

/// Starts the driver thread.
pub(super) fn spawn<C, E, S>(
    driver: Driver<C, E, S>,
    rx: mpsc::Receiver<Request<E::Output>>,
    peer_rx: mpsc::Receiver<Envelope>,
    shared: Arc<Shared>,
) -> std::io::Result<()>
where
    C: Command,
    E: CommandExecutor<C>,
    S: LogStorage,
{
    let name = format!("curp-node-{}", shared.id);
    std::thread::Builder::new().name(name).spawn(move || {
        // Locals drop in reverse order, also when unwinding: the storage (in the driver) is
        // released before the guard reports the exit.
        let guard = ExitGuard(shared);
        let mut rx = rx;
        let mut peer_rx = peer_rx;
        let mut driver = driver;
        run(&mut driver, &mut rx, &mut peer_rx, &guard.0);
    })?;
    Ok(())
}

/// Runs the driver to its end and records why it ended.
fn run<C, E, S>(
    driver: &mut Driver<C, E, S>,
    rx: &mut mpsc::Receiver<Request<E::Output>>,
    peer_rx: &mut mpsc::Receiver<Envelope>,
    shared: &Shared,
) where
    C: Command,
    E: CommandExecutor<C>,
    S: LogStorage,
{
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => match catch_unwind(AssertUnwindSafe(|| driver.serve(&rt, rx, peer_rx))) {
            Ok(result) => result,
            Err(panic) => Err(ProposeError::Fatal(format!(
                "the node driver panicked: {}",
                panic_message(panic.as_ref())
            ))),
        },
        Err(e) => Err(ProposeError::Fatal(format!(
            "cannot build the driver's runtime: {e}"
        ))),
    };
    if let Err(err) = &result {
        tracing::error!(id = shared.id, %err, "the node driver stopped");
        let message = match err {
            ProposeError::Fatal(message) => message.clone(),
            other => other.to_string(),
        };
        *shared.fatal.lock() = Some(message);
    }
    let err = stop_error(shared.fatal.lock().as_deref());
    driver.finish(&err);
    rx.close();
    while let Ok(req) = rx.try_recv() {
        reject(req, &err);
    }
}

/// Answers a request that arrived after the driver stopped.
fn reject<O>(req: Request<O>, err: &ProposeError) {
    match req {
        Request::Propose { reply, .. } => {
            let _ = reply.send(Err(err.clone()));
        }
        Request::ReadIndex { reply } => {
            let _ = reply.send(Err(err.clone()));
        }
        Request::ChangeMembership { reply, .. } | Request::TransferLeader { reply, .. } => {
            let _ = reply.send(Err(err.clone()));
        }
        Request::Shutdown => {}
        Request::ClientPropose { reply, .. } => {
            let _ = reply.send(Err(err.clone()));
        }
        Request::ClientRecord { reply, .. } => {
            let _ = reply.send(Err(err.clone()));
        }
        Request::ClientKeepAlive { reply, .. } => {
            let _ = reply.send(Err(err.clone()));
        }
        Request::ClientWaitSynced { reply, .. } => {
            let _ = reply.send(Err(err.clone()));
        }
    }
}

/// Runs `f`, turning its error or panic into a fatal error described by `what`.
fn guarded<T, Err: std::fmt::Display>(
    what: &str,
    f: impl FnOnce() -> Result<T, Err>,
) -> Result<T, ProposeError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(ProposeError::Fatal(format!("{what} failed: {err}"))),
        Err(panic) => Err(ProposeError::Fatal(format!(
            "{what} panicked: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

/// The message of a panic payload, if it has one.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
    }
}
