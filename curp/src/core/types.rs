//! The vocabulary of the protocol core: ids, log entries, membership and the messages members
//! exchange. Everything here is plain data (no I/O); the transport encodes it later.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::cmd::ConflictKeys;

/// A member id (etcd's member id).
pub type NodeId = u64;
/// A Raft term.
pub type Term = u64;
/// A position in the replicated log (the first entry has index 1).
pub type LogIndex = u64;

/// A proposal's identity: `(client_id, seq)`. A client reuses it for every retry of the same
/// command, which is what makes execution exactly-once (CURP.md D5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ProposeId {
    /// The client's id (leased from the cluster; unique among live clients).
    pub client_id: u64,
    /// The client's sequence number for this command.
    pub seq: u64,
}

/// A command as consensus sees it: opaque bytes plus what the command touches.
///
/// Cloning allocates nothing (the keys and the payload are shared): a command is copied into
/// the log, every Append carrying it, the persisted batch, the witness and the conflict pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandData {
    /// The proposal id.
    pub id: ProposeId,
    /// Conflict keys, as `Command::conflict_keys` reported them (shared, never mutated).
    pub keys: Arc<ConflictKeys>,
    /// The encoded command.
    pub payload: Bytes,
    /// The lowest sequence number of this client whose result the client has not yet
    /// consumed; lets dedup state below it be forgotten.
    pub first_incomplete: u64,
}

/// A single-server membership change (CURP.md section 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChange {
    /// Add a non-voting learner.
    AddLearner(NodeId),
    /// Turn a learner into a voter.
    Promote(NodeId),
    /// Remove a member (voter or learner).
    Remove(NodeId),
    /// Add a member with its peer URLs, as a learner or directly as a voter (etcd's
    /// MemberAdd; adding one voter is a single-server change, hence safe).
    Add {
        /// The new member.
        id: NodeId,
        /// Its peer URLs.
        peer_urls: Vec<String>,
        /// Whether it joins as a learner.
        learner: bool,
    },
    /// Replace the peer URLs of a member (etcd's MemberUpdate).
    Update {
        /// The member.
        id: NodeId,
        /// Its new peer URLs.
        peer_urls: Vec<String>,
    },
    /// The whole configuration a change produced. The leader appends every change in this
    /// form, so that an entry alone tells a member the configuration, also a member that
    /// joined with an empty log and without knowing the cluster's initial configuration.
    /// Never proposed directly.
    Set(Membership),
}

/// Who votes and who only learns, and the version every membership change bumps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// Voting members.
    pub voters: BTreeSet<NodeId>,
    /// Non-voting members that receive the log.
    pub learners: BTreeSet<NodeId>,
    /// Bumped by every change; requests and witness records carry it (CURP.md M1).
    pub version: u64,
    /// Peer URLs of members, as far as known (members added by id only have none).
    pub peers: BTreeMap<NodeId, Vec<String>>,
}

/// What a log entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// The no-op a new leader appends in its term.
    Empty,
    /// A client command and the member it was proposed at (its origin, CURP.md D2).
    Command {
        /// The command.
        cmd: CommandData,
        /// The member that proposed it and waits to answer its client.
        origin: NodeId,
    },
    /// A membership change; it takes effect when appended.
    ConfChange(ConfChange),
    /// The client-id lease of this client expired (CURP.md 5.1, P3): when applied, every
    /// member forgets the client's dedup state (keeping a tombstone that refuses its ids) and
    /// purges its witness records.
    ClientExpired(u64),
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log.
    pub index: LogIndex,
    /// Term of the leader that created it.
    pub term: Term,
    /// Payload.
    pub kind: EntryKind,
}

/// A message from one member to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Content.
    pub msg: Message,
}

/// Why a proposal could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// This member is not the leader (and knows this leader, if any, at this term).
    NotLeader {
        /// The leader this member knows of.
        leader: Option<NodeId>,
        /// This member's term.
        term: Term,
    },
    /// The request carried another cluster version.
    WrongClusterVersion {
        /// This member's cluster version.
        version: u64,
    },
    /// A leadership transfer is in progress.
    LeaderTransfer,
    /// A membership change is appended but not committed yet; changes go one at a time.
    ChangePending,
    /// The membership change does not apply to the current configuration (adding a member
    /// twice, promoting a non-learner, removing a non-member or the last voter).
    InvalidChange,
    /// A learner to promote has not caught up with the leader's log yet.
    LearnerNotReady,
    /// The proposal's (or record's) client id lease expired: the member has applied the
    /// client's tombstone (CURP.md DD4), so nothing of the client is taken any more. The
    /// command was not appended; any copy that gets into the log later follows the tombstone
    /// and never executes.
    ClientExpired,
}

/// Peer-to-peer messages. Raft's, plus CURP's origin acknowledgements, proposal forwarding
/// and read-index confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Leader → follower/learner: entries after `(prev_index, prev_term)`, and the commit index.
    Append {
        /// Leader's term.
        term: Term,
        /// Index of the entry before `entries`.
        prev_index: LogIndex,
        /// Term of the entry at `prev_index`.
        prev_term: Term,
        /// Entries to append (may be empty: a heartbeat).
        entries: Vec<Entry>,
        /// Leader's commit index.
        commit: LogIndex,
        /// Read-index round this message also confirms (0: none).
        read_round: u64,
    },
    /// Follower → leader.
    AppendResponse {
        /// Responder's term.
        term: Term,
        /// Whether the log matched at `prev_index`.
        success: bool,
        /// On success: the last index known to match the leader's log and be persisted; on
        /// failure: a hint where to retry, below the rejected `prev_index` (the responder's
        /// last index, or the last one before it whose term is at most the leader's
        /// `prev_term`).
        index: LogIndex,
        /// The read-index round being answered (0: none).
        read_round: u64,
    },
    /// Replica → origin: "I have persisted my log up to `index`, whose entry has `entry_term`,
    /// while in term `term`". The origin counts a majority of these with
    /// `term == entry_term` as commitment (CURP.md D2).
    PersistAck {
        /// The acker's current term.
        term: Term,
        /// Last persisted index covering the origin's entries.
        index: LogIndex,
        /// Term of the entry at `index` in the acker's log.
        entry_term: Term,
    },
    /// Candidate → voter (also the pre-vote round).
    Vote {
        /// Term the candidate campaigns for (current + 1 for a pre-vote).
        term: Term,
        /// Candidate's last log index.
        last_index: LogIndex,
        /// Candidate's last log term.
        last_term: Term,
        /// A pre-vote: the voter changes no state.
        pre_vote: bool,
    },
    /// Voter → candidate. A real vote carries the voter's witness records, stamped and taken
    /// atomically with the term change (CURP.md W2), for recovery.
    VoteResponse {
        /// Voter's term (the candidate's when granted).
        term: Term,
        /// Granted or not.
        granted: bool,
        /// Whether it answers a pre-vote.
        pre_vote: bool,
        /// The voter's witness pool (empty for pre-votes and refusals).
        witness: Vec<CommandData>,
    },
    /// Leader → lagging member: a state-machine snapshot (meta only; data is the driver's).
    Snapshot {
        /// Leader's term.
        term: Term,
        /// Index the snapshot covers.
        index: LogIndex,
        /// Term of the entry at `index`.
        index_term: Term,
        /// Membership as of `index`.
        membership: Membership,
        /// Opaque snapshot bytes (state machine + dedup table).
        data: Bytes,
    },
    /// Leader → chosen successor: campaign now, skipping pre-vote (MoveLeader).
    TimeoutNow {
        /// Leader's term.
        term: Term,
    },
    /// Origin → leader: append this command on my behalf.
    Propose {
        /// Origin's term.
        term: Term,
        /// The command.
        cmd: CommandData,
    },
    /// Leader → origin: the proposal was not taken.
    ProposeRejected {
        /// Leader's (or former leader's) term.
        term: Term,
        /// Which proposal.
        id: ProposeId,
        /// Why.
        reason: Rejection,
    },
    /// Member → leader: confirm leadership for a read at request `id`.
    ReadIndex {
        /// Sender's term.
        term: Term,
        /// The sender's request id.
        id: u64,
    },
    /// Leader → member: reads for request `id` may be served once applied to `index`
    /// (`None`: not the leader any more; retry).
    ReadIndexResponse {
        /// Leader's term.
        term: Term,
        /// The request.
        id: u64,
        /// The read index.
        index: Option<LogIndex>,
    },
}

impl ConfChange {
    /// Whether configuration `m` shows this change done: how a proposer recognises its
    /// change in the [`ConfChange::Set`] entry the leader appended for it.
    pub fn is_done_in(&self, m: &Membership) -> bool {
        super::membership::shows_change(m, self)
    }
}
