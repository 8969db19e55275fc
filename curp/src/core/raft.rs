//! [`Core`]: the state of one member and its public driver API (`new`, `step`, `tick`,
//! `ready`, `advance`, `status`). The protocol itself is split by concern: `election.rs`,
//! `replication.rs`, `read.rs`, `curp.rs`, `snapshot.rs`, `change.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::config::Config;
use super::dedup::{self, DedupTable};
use super::log::RaftLog;
use super::membership::MembershipLog;
use super::ready::{Committed, Event, Input, Ready, Role, RoleState, SnapshotInstall, WitnessOp};
use super::rng::SplitMix64;
use super::types::{
    CommandData, Entry, EntryKind, Envelope, LogIndex, Membership, Message, NodeId, ProposeId,
    Rejection, Term,
};
use crate::storage::HardState;

/// What a member restores from durable storage (or the initial state of a new cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// The persisted hard state (all zero for a new member).
    pub hard_state: HardState,
    /// The persisted log entries after the snapshot (older ones are ignored).
    pub entries: Vec<Entry>,
    /// The latest snapshot record (the one `Ready::snapshot` or `Ready::snapshot_taken` last
    /// handed out), if any.
    pub snapshot: Option<SnapshotInstall>,
    /// Membership before `entries`: the initial configuration of a new cluster. With a
    /// snapshot, the snapshot's membership is used instead. `ConfChange` entries in `entries`
    /// are replayed on top.
    pub membership: Membership,
    /// The witness journal ([`WitnessOp`]s in the order persisted), replayed.
    pub witness: Vec<WitnessOp>,
    /// The state machine's durable applied index (committed entries after it are handed out
    /// again).
    pub applied: LogIndex,
}

/// A member's externally visible state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This member.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows in `term`.
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit: LogIndex,
    /// Highest index the driver reported applied.
    pub applied: LogIndex,
    /// Last log index.
    pub last_index: LogIndex,
    /// Configuration in effect.
    pub membership: Membership,
}

/// Votes collected by a (pre-)candidate.
#[derive(Debug, Clone, Default)]
pub(crate) struct Campaign {
    /// Pre-vote round (no term change) or a real election.
    pub(crate) pre_vote: bool,
    /// Answers so far, self included.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Witness pools of the granting voters, own included (real elections only).
    pub(crate) pools: Vec<Vec<CommandData>>,
}

/// What the leader knows about one other member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Highest index known to match and be durable there.
    pub(crate) match_index: LogIndex,
    /// Next index to send.
    pub(crate) next_index: LogIndex,
    /// Ticks since `match_index` last moved while entries were outstanding; when it reaches
    /// the retransmission timeout, the leader resends from `match_index + 1` (messages may be
    /// lost).
    pub(crate) idle_ticks: u32,
    /// The highest commit index an Append already sent lets it learn (the leader's commit,
    /// capped by the last index that Append covered).
    pub(crate) commit_told: LogIndex,
}

/// A leadership transfer in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transfer {
    /// The successor.
    pub(crate) to: NodeId,
    /// Ticks since it started (abandoned after an election timeout).
    pub(crate) elapsed: u32,
}

/// A read waiting for leadership confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingRead {
    /// Who asked: `None` for this member's driver, else the forwarding member.
    pub(crate) from: Option<NodeId>,
    /// The requester's id.
    pub(crate) id: u64,
    /// The read index (the leader's last index when the round started).
    pub(crate) index: LogIndex,
    /// The confirmation round (0: waiting for the no-op to commit).
    pub(crate) round: u64,
}

/// Leader-only state; dropped when stepping down (CURP.md E4).
#[derive(Debug, Default)]
pub(crate) struct LeaderState {
    /// Every other member (voters and learners).
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Index of this term's no-op.
    pub(crate) noop_index: LogIndex,
    /// Ticks since the last heartbeat.
    pub(crate) heartbeat_elapsed: u32,
    /// Leadership transfer in progress.
    pub(crate) transfer: Option<Transfer>,
    /// Latest read-confirmation round started.
    pub(crate) read_round: u64,
    /// Highest round each member acknowledged in this term.
    pub(crate) read_acks: BTreeMap<NodeId, u64>,
    /// Reads waiting for confirmation, in arrival order.
    pub(crate) reads: Vec<PendingRead>,
    /// Uncommitted pool (CURP.md 2.2): commands in the log not yet applied.
    pub(crate) ucp: super::ucp::Ucp,
    /// Per member, the highest index it waits to see committed: the last entry it proposed as
    /// origin, or the last read index it was given. Commit advances covering it are pushed at
    /// once instead of waiting for the next heartbeat (SIM_FINDINGS O1).
    pub(crate) commit_wanted: BTreeMap<NodeId, LogIndex>,
    /// Client ids of the records in the witness pools collected at this leader's election
    /// (see [`Core::leader_clients`]).
    pub(crate) election_clients: BTreeSet<u64>,
}

/// The pure protocol core of one member (CURP.md D7). See [`super::ready`] for how a driver
/// runs it.
#[derive(Debug)]
pub struct Core {
    pub(crate) cfg: Config,
    pub(crate) rng: SplitMix64,
    /// Current term (persistent).
    pub(crate) term: Term,
    /// Vote in `term`, 0 = none (persistent).
    pub(crate) vote: NodeId,
    pub(crate) log: RaftLog,
    pub(crate) members: MembershipLog,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    /// Ticks since the leader was last heard (or the election started).
    pub(crate) election_elapsed: u32,
    /// This round's election timeout, in `[election_tick, 2 * election_tick)`.
    pub(crate) randomized_timeout: u32,
    pub(crate) campaign: Option<Campaign>,
    pub(crate) lead: Option<LeaderState>,
    /// Highest index the driver reported applied.
    pub(crate) applied: LogIndex,
    /// Dedup table as of `log.emitted`.
    pub(crate) dedup: DedupTable,
    /// Dedup table as of the snapshot boundary (to build the table of a new snapshot).
    pub(crate) dedup_base: DedupTable,
    /// The latest snapshot (shipped to members that lag behind the log).
    pub(crate) snapshot: Option<SnapshotInstall>,
    /// This member's witness (speculative pool), persisted through the journal.
    pub(crate) witness: super::witness::Witness,
    /// Origin commit (CURP.md D2): per voter, the highest index it acknowledged durable in the
    /// current term with an entry of the current term there.
    pub(crate) acks: BTreeMap<NodeId, LogIndex>,
    /// Read ids this member forwarded to the leader, failed if the leader changes.
    pub(crate) forwarded_reads: BTreeSet<u64>,
    /// Outputs accumulated since the last `ready()`.
    pub(crate) out: Ready,
    pub(crate) last_hard_state: HardState,
    pub(crate) last_role: RoleState,
}

impl Core {
    /// A member restored from `restored` (a new cluster: default hard state, no entries, the
    /// initial membership). Every member starts as a follower (or learner) without a leader.
    pub fn new(config: Config, restored: Restored) -> Core {
        debug_assert_eq!(config.validate(), Ok(()));
        let (snap_index, snap_term) = restored
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.index, s.term));
        let mut log = RaftLog::restore(snap_index, snap_term, restored.entries);
        let base = restored
            .snapshot
            .as_ref()
            .map_or_else(|| restored.membership.clone(), |s| s.membership.clone());
        let mut members = MembershipLog::new(snap_index, base);
        for e in log.entries() {
            if let EntryKind::ConfChange(change) = &e.kind {
                members.append(e.index, change);
            }
        }
        let dedup_base = restored
            .snapshot
            .as_ref()
            .and_then(|s| dedup::decode_snapshot(&s.data))
            .map(|(table, _)| table)
            .unwrap_or_default();
        let hs = restored.hard_state;
        // What was applied was committed, even if the hard state's commit lagged behind.
        log.commit = hs
            .commit
            .max(restored.applied)
            .clamp(snap_index, log.last_index());
        let applied = restored.applied.clamp(snap_index, log.commit);
        let mut dedup = dedup_base.clone();
        for e in log.slice(snap_index + 1, applied) {
            dedup.apply(&e.kind);
        }
        log.emitted = applied;
        let mut witness = super::witness::Witness::default();
        for op in restored.witness {
            match op {
                // Terms and versions were checked when the record was accepted.
                WitnessOp::Insert { cmd, .. } => {
                    witness.insert(cmd);
                }
                WitnessOp::Remove(ids) => {
                    witness.remove(&ids);
                }
            }
        }
        let mut rng = SplitMix64::new(config.seed ^ config.id.rotate_left(32));
        let randomized_timeout = rng.range(config.election_tick, 2 * config.election_tick);
        let role = if members.is_voter(config.id) {
            Role::Follower
        } else {
            Role::Learner
        };
        let hard_state = HardState {
            term: hs.term,
            vote: hs.vote,
            commit: log.commit,
        };
        Core {
            rng,
            term: hs.term,
            vote: hs.vote,
            log,
            members,
            role,
            leader: None,
            election_elapsed: 0,
            randomized_timeout,
            campaign: None,
            lead: None,
            applied,
            dedup,
            dedup_base,
            snapshot: restored.snapshot,
            witness,
            acks: BTreeMap::new(),
            forwarded_reads: BTreeSet::new(),
            out: Ready::default(),
            last_hard_state: hard_state,
            last_role: RoleState {
                role,
                term: hs.term,
                leader: None,
            },
            cfg: config,
        }
    }

    /// Feeds one input.
    pub fn step(&mut self, input: Input) {
        match input {
            Input::Message(env) => {
                if env.to == self.cfg.id && env.from != self.cfg.id {
                    self.step_message(env.from, env.msg);
                }
            }
            Input::Propose { cmd, fast } => self.propose(cmd, fast),
            Input::Record {
                cmd,
                term,
                cluster_version,
            } => self.record(cmd, term, cluster_version),
            Input::ReadIndex { id } => self.read_index_local(id),
            Input::ChangeMembership { id, change } => self.change_membership(id, change),
            Input::TransferLeader { to } => self.transfer_leader(to),
            Input::Applied { index } => self.on_applied(index),
            Input::SnapshotTaken { index, data } => self.on_snapshot_taken(index, &data),
            Input::ExpireClient { client_id } => self.expire_client(client_id),
        }
    }

    /// One logical clock tick.
    pub fn tick(&mut self) {
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// Takes everything accumulated since the last call (see [`super::ready`] for what the
    /// driver does with it). Call again after [`Core::advance`]: persistence may have produced
    /// more (the leader counts its own copy, origins learn commits).
    pub fn ready(&mut self) -> Ready {
        self.push_commit();
        let mut rd = std::mem::take(&mut self.out);
        rd.entries = self.log.take_unstable();
        let hs = HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        };
        if hs != self.last_hard_state {
            rd.hard_state = Some(hs);
            self.last_hard_state = hs;
        }
        rd.committed = self.take_committed();
        let role = RoleState {
            role: self.role,
            term: self.term,
            leader: self.leader,
        };
        if role != self.last_role {
            rd.role = Some(role);
            self.last_role = role;
        }
        rd
    }

    /// The driver persisted (and handled) every `Ready` taken so far.
    pub fn advance(&mut self) {
        let before = self.log.persisted();
        let after = self.log.on_persisted();
        if after <= before {
            return;
        }
        if self.role == Role::Leader {
            self.leader_persisted(before, after);
        } else {
            self.maybe_origin_commit();
        }
    }

    /// This member's externally visible state.
    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit: self.log.commit,
            applied: self.applied,
            last_index: self.log.last_index(),
            membership: self.members.current().clone(),
        }
    }

    /// Brings `status` up to date with [`Core::status`], cloning the membership only when it
    /// changed (a driver publishes its status after every round).
    pub fn update_status(&self, status: &mut Status) {
        status.id = self.cfg.id;
        status.role = self.role;
        status.term = self.term;
        status.leader = self.leader;
        status.commit = self.log.commit;
        status.applied = self.applied;
        status.last_index = self.log.last_index();
        let membership = self.members.current();
        if status.membership != *membership {
            status.membership.clone_from(membership);
        }
    }

    /// The entries currently held (`first_index..=last_index`, after the snapshot), for
    /// invariant checkers.
    pub fn log(&self) -> &[Entry] {
        self.log.entries()
    }

    /// The snapshot boundary `(index, term)`: entries up to it are compacted ((0, 0): none).
    pub fn snapshot_boundary(&self) -> (LogIndex, Term) {
        self.log.offset()
    }

    /// Leader: the clients whose records or commands it inherited and must eventually expire
    /// if they never come back (CURP.md P3, DD4): the client ids of the witness pools
    /// collected at its election (recovered or not), of its own witness, and of the commands
    /// in its log not applied yet. Expired clients and the driver's own id 0 are left out;
    /// empty on a non-leader. The driver starts a client-id lease for each when it takes
    /// office, so a client that crashed before the election still expires and its orphan
    /// records are purged everywhere.
    pub fn leader_clients(&self) -> BTreeSet<u64> {
        let Some(lead) = self.lead.as_ref() else {
            return BTreeSet::new();
        };
        let unapplied = self
            .log
            .slice(self.applied + 1, self.log.last_index())
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Command { cmd, .. } => Some(cmd.id.client_id),
                _ => None,
            });
        let witnessed = self.witness.records().into_iter().map(|c| c.id.client_id);
        lead.election_clients
            .iter()
            .copied()
            .chain(unapplied)
            .chain(witnessed)
            .filter(|&c| c != 0 && !self.dedup.is_expired(c))
            .collect()
    }

    /// The proposal ids this member's witness currently holds (for invariant checkers).
    pub fn witness_records(&self) -> Vec<CommandData> {
        self.witness.records()
    }

    // ----- shared helpers -------------------------------------------------------------------

    /// Queues a message to send now.
    pub(crate) fn send(&mut self, to: NodeId, msg: Message) {
        self.out.messages.push(Envelope {
            from: self.cfg.id,
            to,
            msg,
        });
    }

    /// Queues a message to send once this round's outputs are durable.
    pub(crate) fn send_persisted(&mut self, to: NodeId, msg: Message) {
        self.out.persisted_messages.push(Envelope {
            from: self.cfg.id,
            to,
            msg,
        });
    }

    /// Queues an answer to a local client.
    pub(crate) fn event(&mut self, event: Event) {
        self.out.events.push(event);
    }

    /// Current voters.
    pub(crate) fn voters(&self) -> Vec<NodeId> {
        self.members.current().voters.iter().copied().collect()
    }

    /// The majority of the current voters.
    pub(crate) fn quorum(&self) -> usize {
        super::quorum::majority(self.members.current().voters.len())
    }

    /// The rejection for requests that need the leader.
    pub(crate) fn not_leader(&self) -> Rejection {
        Rejection::NotLeader {
            leader: self.leader,
            term: self.term,
        }
    }

    /// Draws a new election timeout and restarts the election clock.
    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.randomized_timeout = self
            .rng
            .range(self.cfg.election_tick, 2 * self.cfg.election_tick);
    }

    /// Becomes a follower (or learner) in `term` (>= the current one) under `leader`.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = 0;
            self.acks.clear();
        }
        let was_leader = self.role == Role::Leader;
        let leader_changed = self.leader != leader;
        self.campaign = None;
        self.role = if self.members.is_voter(self.cfg.id) {
            Role::Follower
        } else {
            Role::Learner
        };
        self.leader = leader;
        if was_leader {
            self.step_down();
        }
        if leader_changed {
            self.fail_forwarded_reads();
        }
        self.reset_election_timer();
    }

    /// Leader-only state goes away (CURP.md E4): pending reads fail, the UCP is dropped.
    fn step_down(&mut self) {
        if let Some(lead) = self.lead.take() {
            for read in lead.reads {
                self.answer_read(read.from, read.id, None);
            }
        }
        self.withdraw_speculation();
    }

    /// Takes back speculations not yet handed to the driver: once this member stops leading
    /// (or installs a snapshot) in the same round, the driver would execute them on a state that
    /// may already hold the new leader's entries, the command itself included (simulation
    /// finding F2). Their clients are told `conflict` and wait for the ordered result instead.
    pub(crate) fn withdraw_speculation(&mut self) {
        let withdrawn: Vec<ProposeId> = self.out.speculate.drain(..).map(|c| c.id).collect();
        if withdrawn.is_empty() {
            return;
        }
        for event in &mut self.out.events {
            if let Event::Proposed { id, conflict, .. } = event
                && withdrawn.contains(id)
            {
                *conflict = true;
            }
        }
    }

    /// Handles a peer message: settles the term first (Raft §5.1), then dispatches by kind.
    fn step_message(&mut self, from: NodeId, msg: Message) {
        let term = msg_term(&msg);
        if let Message::Vote { pre_vote, .. } = msg
            && !self.members.is_voter(self.cfg.id)
        {
            // A non-voter cannot vote, and must not let a campaign move its term: it would
            // then refuse the leader's Appends and depose it.
            self.send(
                from,
                Message::VoteResponse {
                    term: self.term,
                    granted: false,
                    pre_vote,
                    witness: Vec::new(),
                },
            );
            return;
        }
        if term > self.term {
            let keeps_term = matches!(
                msg,
                Message::Vote { pre_vote: true, .. }
                    | Message::VoteResponse {
                        pre_vote: true,
                        granted: true,
                        ..
                    }
            );
            if !keeps_term {
                let leader = matches!(
                    msg,
                    Message::Append { .. } | Message::Snapshot { .. } | Message::TimeoutNow { .. }
                )
                .then_some(from);
                self.become_follower(term, leader);
            }
        } else if term < self.term {
            match msg {
                // Tell a stale leader about the newer term so that it steps down.
                Message::Append { .. } | Message::Snapshot { .. } => {
                    let index = self.log.last_index();
                    self.send(
                        from,
                        Message::AppendResponse {
                            term: self.term,
                            success: false,
                            index,
                            read_round: 0,
                        },
                    );
                    return;
                }
                Message::Vote { pre_vote, .. } => {
                    self.send(
                        from,
                        Message::VoteResponse {
                            term: self.term,
                            granted: false,
                            pre_vote,
                            witness: Vec::new(),
                        },
                    );
                    return;
                }
                // A leader takes proposals and answers reads whatever the sender's term.
                Message::Propose { .. } | Message::ReadIndex { .. } => {}
                _ => return,
            }
        }
        self.dispatch(from, msg);
    }

    /// Routes a message whose term has been settled.
    fn dispatch(&mut self, from: NodeId, msg: Message) {
        match msg {
            Message::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
                read_round,
            } => self.handle_append(
                from, term, prev_index, prev_term, entries, commit, read_round,
            ),
            Message::AppendResponse {
                success,
                index,
                read_round,
                ..
            } => self.handle_append_response(from, success, index, read_round),
            Message::PersistAck {
                term,
                index,
                entry_term,
            } => self.handle_persist_ack(from, term, index, entry_term),
            Message::Vote {
                term,
                last_index,
                last_term,
                pre_vote,
            } => self.handle_vote(from, term, last_index, last_term, pre_vote),
            Message::VoteResponse {
                term,
                granted,
                pre_vote,
                witness,
            } => self.handle_vote_response(from, term, granted, pre_vote, witness),
            Message::Snapshot {
                term,
                index,
                index_term,
                membership,
                data,
            } => self.handle_snapshot(from, term, index, index_term, membership, data),
            Message::TimeoutNow { .. } => self.handle_timeout_now(from),
            Message::Propose { cmd, .. } => self.handle_forwarded_propose(from, cmd),
            Message::ProposeRejected { id, reason, .. } => {
                self.event(Event::Rejected { id, reason });
            }
            Message::ReadIndex { id, .. } => self.read_index_remote(from, id),
            Message::ReadIndexResponse { id, index, .. } => {
                self.handle_read_index_response(id, index);
            }
        }
    }

    /// Committed entries not yet handed out, with their dedup verdicts (the table advances in
    /// log order here, identically on every member).
    fn take_committed(&mut self) -> Vec<Committed> {
        let entries = self.log.next_committed();
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let duplicate = self.dedup.apply(&entry.kind);
            out.push(Committed {
                entry: entry.clone(),
                duplicate,
            });
        }
        if let Some(last) = out.last() {
            self.log.emitted = last.entry.index;
        }
        out
    }
}

/// The term a message carries.
pub(crate) fn msg_term(msg: &Message) -> Term {
    match msg {
        Message::Append { term, .. }
        | Message::AppendResponse { term, .. }
        | Message::PersistAck { term, .. }
        | Message::Vote { term, .. }
        | Message::VoteResponse { term, .. }
        | Message::Snapshot { term, .. }
        | Message::TimeoutNow { term }
        | Message::Propose { term, .. }
        | Message::ProposeRejected { term, .. }
        | Message::ReadIndex { term, .. }
        | Message::ReadIndexResponse { term, .. } => *term,
    }
}
