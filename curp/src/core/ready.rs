//! What goes into the core ([`Input`]) and what comes out ([`Ready`]).
//!
//! The driver loop, for every batch of inputs:
//! 1. `core.step(input)` / `core.tick()` as inputs arrive;
//! 2. `let rd = core.ready()`;
//! 3. send `rd.messages` at once (they do not depend on this member's persistence);
//! 4. persist `rd.snapshot` (installing its state-machine part) or `rd.snapshot_taken`,
//!    `rd.entries` (appending from `entries[0].index`, truncating any
//!    tail after it), `rd.hard_state` and `rd.witness`, durably (fsync), in that order;
//! 5. send `rd.persisted_messages`;
//! 6. apply `rd.committed` in order, execute `rd.speculate`, deliver `rd.events`;
//! 7. `core.advance()`, and later `core.step(Input::Applied { .. })` as applying completes.
//!    `advance` may produce more output (the leader counts its own durable copy, an origin
//!    commits): loop from step 2 until `ready()` is empty.
//!
//! A crash between steps 4 and 7 is safe: what was not persisted was never acknowledged.

use bytes::Bytes;

use super::types::{
    CommandData, ConfChange, Entry, Envelope, LogIndex, Membership, NodeId, ProposeId, Rejection,
    Term,
};
use crate::storage::HardState;

/// An input to the core (besides [`super::Core::tick`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A message from another member.
    Message(Envelope),
    /// A client proposes `cmd` at this member (which becomes its origin). `fast`: the client
    /// also sent `Record` to the witnesses and wants the leader's speculative answer
    /// ([`Event::Proposed`]); otherwise the command completes when applied (ordered path).
    Propose {
        /// The command.
        cmd: CommandData,
        /// Fast path requested.
        fast: bool,
    },
    /// A client asks this member's witness to record `cmd` (fast path, CURP.md W1/W2).
    Record {
        /// The command.
        cmd: CommandData,
        /// The term the client believes current.
        term: Term,
        /// The cluster version the client believes current.
        cluster_version: u64,
    },
    /// A linearizable read wants a read index (answered by [`Event::ReadIndex`]).
    ReadIndex {
        /// The driver's request id.
        id: u64,
    },
    /// Propose a membership change (leader only; others answer [`Event::Rejected`]).
    ChangeMembership {
        /// Request id for the answer.
        id: ProposeId,
        /// The change.
        change: ConfChange,
    },
    /// Hand leadership to `to` (MoveLeader).
    TransferLeader {
        /// The successor.
        to: NodeId,
    },
    /// The state machine has applied every committed entry up to `index`.
    Applied {
        /// Highest applied index.
        index: LogIndex,
    },
    /// The client-id lease of `client_id` expired (CURP.md 5.1, P3). Only the leader tracks
    /// these leases: it appends a [`super::EntryKind::ClientExpired`] entry, and once that is
    /// applied every member refuses the client's ids and purges its witness records (DD4).
    /// Ignored on other members (and for a client already expired).
    ExpireClient {
        /// The expired client.
        client_id: u64,
    },
    /// The driver took a snapshot of the state machine at `index` (already applied), so the
    /// log up to `index` may be dropped and lagging members get this snapshot instead.
    SnapshotTaken {
        /// The snapshot's index.
        index: LogIndex,
        /// Opaque snapshot bytes.
        data: Bytes,
    },
}

/// A witness journal operation, persisted before the record is acknowledged (CURP.md P2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessOp {
    /// A record was accepted in `term` at `cluster_version`.
    Insert {
        /// The record.
        cmd: CommandData,
        /// Term it was accepted in.
        term: Term,
        /// Cluster version it was accepted at.
        cluster_version: u64,
    },
    /// Records dropped (applied, or orphans purged).
    Remove(Vec<ProposeId>),
}

/// A snapshot the driver must install into the state machine (received from the leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInstall {
    /// Index the snapshot covers.
    pub index: LogIndex,
    /// Term of the entry at `index`.
    pub term: Term,
    /// Membership as of `index`.
    pub membership: Membership,
    /// Snapshot bytes in the core's format: the dedup table as of `index` followed by the
    /// state machine's opaque bytes, which [`super::snapshot_state_machine_data`] extracts.
    pub data: Bytes,
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Runs a pre-vote round.
    PreCandidate,
    /// Campaigns.
    Candidate,
    /// Leads.
    Leader,
    /// A non-voting member.
    Learner,
}

/// Role, term and known leader: published when any of them changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleState {
    /// Current role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Known leader in `term`.
    pub leader: Option<NodeId>,
}

/// Answers to local clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Leader: took a fast proposal. `conflict: false` means the driver executes it
    /// speculatively (it is in [`Ready::speculate`]) and the client may complete on the fast
    /// path; `true` means the client waits for the ordered result.
    Proposed {
        /// The proposal.
        id: ProposeId,
        /// Conflicted with the witness or the uncommitted pool.
        conflict: bool,
        /// The leader's term (clients count witness records of this term only, CURP.md F2).
        term: Term,
    },
    /// A proposal or membership change was not taken.
    Rejected {
        /// The proposal.
        id: ProposeId,
        /// Why.
        reason: Rejection,
    },
    /// This member's witness answered a record request.
    Recorded {
        /// The record.
        id: ProposeId,
        /// Accepted (no conflict, same term and version).
        accepted: bool,
        /// The witness's term.
        term: Term,
    },
    /// A read may be served once this member has applied `index`.
    ReadIndex {
        /// The driver's request id.
        id: u64,
        /// The read index, or why not (retry elsewhere or later).
        result: Result<LogIndex, Rejection>,
    },
}

/// A committed entry to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The entry.
    pub entry: Entry,
    /// A command whose proposal id was already applied (a retry, or a command recovered from
    /// witnesses after it committed): the state machine must skip it, and its origin answers the
    /// client from the first execution (CURP.md D5, P3, P4).
    pub duplicate: bool,
}

/// Everything the core wants done after a round of inputs (see the module docs for the order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// A snapshot to install before anything else.
    pub snapshot: Option<SnapshotInstall>,
    /// Entries to persist.
    pub entries: Vec<Entry>,
    /// Hard state to persist, when it changed.
    pub hard_state: Option<HardState>,
    /// Witness journal operations to persist.
    pub witness: Vec<WitnessOp>,
    /// Messages to send now.
    pub messages: Vec<Envelope>,
    /// Messages to send once the above is durable.
    pub persisted_messages: Vec<Envelope>,
    /// Committed entries to apply, in order.
    pub committed: Vec<Committed>,
    /// Commands to execute speculatively (leader, fast path).
    pub speculate: Vec<CommandData>,
    /// Answers to local clients.
    pub events: Vec<Event>,
    /// The new role state, when it changed.
    pub role: Option<RoleState>,
    /// After [`Input::SnapshotTaken`]: the snapshot record to persist (it replaces the previous
    /// one and is what [`super::Restored::snapshot`] gives back on restart; its `data` wraps
    /// the state machine's bytes with the dedup table). Once it is durable, the log storage
    /// may be compacted up to its index.
    pub snapshot_taken: Option<SnapshotInstall>,
}

impl Ready {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self == &Ready::default()
    }
}
