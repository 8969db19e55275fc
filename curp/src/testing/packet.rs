//! What the simulated network carries ([`Packet`]), message kinds for targeted faults and
//! counts ([`PacketKind`], [`Rule`]), and the driver context ([`Ctx`]) through which members
//! send.

use std::collections::HashMap;

use super::client::{ClientReq, ClientResp};
use super::invariants::Checks;
use super::network::{Addr, Millis, Network};
use crate::core::{Envelope, Message};

/// What travels on the simulated network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Member to member.
    Peer(Envelope),
    /// Client to member.
    Req(ClientReq),
    /// Member to client.
    Resp(ClientResp),
}

/// A coarse message kind, for targeted fault rules and message counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PacketKind {
    /// `Message::Append` with entries.
    Append,
    /// `Message::Append` without entries.
    Heartbeat,
    /// `Message::AppendResponse`.
    AppendResponse,
    /// `Message::PersistAck` (origin commit).
    PersistAck,
    /// `Message::Vote` (pre-votes included).
    Vote,
    /// `Message::VoteResponse`.
    VoteResponse,
    /// `Message::Snapshot`.
    Snapshot,
    /// `Message::TimeoutNow`.
    TimeoutNow,
    /// `Message::Propose` (forwarded proposal).
    Propose,
    /// `Message::ProposeRejected`.
    ProposeRejected,
    /// `Message::ReadIndex` / `ReadIndexResponse`.
    ReadIndex,
    /// Client `Propose`.
    ClientPropose,
    /// Client `Record`.
    ClientRecord,
    /// Client `Read`.
    ClientRead,
    /// Any answer to a client.
    ClientResp,
}

impl PacketKind {
    /// The kind of `p`.
    pub fn of(p: &Packet) -> PacketKind {
        match p {
            Packet::Peer(env) => match &env.msg {
                Message::Append { entries, .. } if entries.is_empty() => PacketKind::Heartbeat,
                Message::Append { .. } => PacketKind::Append,
                Message::AppendResponse { .. } => PacketKind::AppendResponse,
                Message::PersistAck { .. } => PacketKind::PersistAck,
                Message::Vote { .. } => PacketKind::Vote,
                Message::VoteResponse { .. } => PacketKind::VoteResponse,
                Message::Snapshot { .. } => PacketKind::Snapshot,
                Message::TimeoutNow { .. } => PacketKind::TimeoutNow,
                Message::Propose { .. } => PacketKind::Propose,
                Message::ProposeRejected { .. } => PacketKind::ProposeRejected,
                Message::ReadIndex { .. } | Message::ReadIndexResponse { .. } => {
                    PacketKind::ReadIndex
                }
            },
            Packet::Req(ClientReq::Propose { .. }) => PacketKind::ClientPropose,
            Packet::Req(ClientReq::Record { .. }) => PacketKind::ClientRecord,
            Packet::Req(ClientReq::Read { .. }) => PacketKind::ClientRead,
            Packet::Resp(_) => PacketKind::ClientResp,
        }
    }

    /// Whether this kind travels between members.
    pub fn is_peer(self) -> bool {
        !matches!(
            self,
            PacketKind::ClientPropose
                | PacketKind::ClientRecord
                | PacketKind::ClientRead
                | PacketKind::ClientResp
        )
    }
}

/// What a [`Rule`] does to matching messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Lose them.
    Drop,
    /// Hold them back this many ms more.
    Delay(Millis),
}

/// A targeted fault: messages of `kind` (from/to the given endpoints, if set) are dropped or
/// delayed at send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Which messages.
    pub kind: PacketKind,
    /// Only from this endpoint.
    pub from: Option<Addr>,
    /// Only to this endpoint.
    pub to: Option<Addr>,
    /// What happens to them.
    pub action: RuleAction,
}

/// Driver knobs shared by all members.
#[derive(Debug, Clone, Default)]
pub struct DriverOpts {
    /// Time for an fsync: persisted messages and client answers leave this much later.
    pub fsync_ms: Millis,
    /// Take a snapshot every this many applied entries (0: never).
    pub snapshot_every: u64,
    /// Drop every `PersistAck` (leader-only commit, for comparison with origin commit).
    pub disable_persist_ack: bool,
    /// Targeted fault rules.
    pub rules: Vec<Rule>,
}

/// Counters the driver keeps.
#[derive(Debug, Clone, Default)]
pub struct DriverStats {
    /// Messages sent between members, by kind.
    pub peer_messages: HashMap<PacketKind, u64>,
    /// Messages between clients and members.
    pub client_messages: u64,
    /// Speculative executions.
    pub speculations: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Snapshots taken.
    pub snapshots_taken: u64,
}

/// What the member's driver has to work with for one step.
pub struct Ctx<'a> {
    /// Virtual time.
    pub now: Millis,
    /// The network.
    pub net: &'a mut Network<Packet>,
    /// Invariant state and violations.
    pub checks: &'a mut Checks,
    /// Driver knobs.
    pub opts: &'a DriverOpts,
    /// Counters.
    pub stats: &'a mut DriverStats,
    /// Trace lines, when tracing.
    pub trace: Option<&'a mut Vec<String>>,
}

impl Ctx<'_> {
    /// Sends `pkt` at `at` (≥ now), applying the driver rules.
    pub fn send(&mut self, at: Millis, from: Addr, to: Addr, pkt: Packet) {
        let kind = PacketKind::of(&pkt);
        if kind.is_peer() {
            *self.stats.peer_messages.entry(kind).or_insert(0) += 1;
        } else {
            self.stats.client_messages += 1;
        }
        if kind == PacketKind::PersistAck && self.opts.disable_persist_ack {
            return;
        }
        let mut extra = at.saturating_sub(self.now);
        for rule in &self.opts.rules {
            if rule.kind == kind
                && rule.from.is_none_or(|f| f == from)
                && rule.to.is_none_or(|t| t == to)
            {
                match rule.action {
                    RuleAction::Drop => return,
                    RuleAction::Delay(ms) => extra += ms,
                }
            }
        }
        self.net.send_delayed(self.now, from, to, pkt, extra);
    }

    /// Adds a trace line, prefixed with the time (built only when tracing).
    pub fn trace(&mut self, line: impl FnOnce() -> String) {
        let now = self.now;
        if let Some(t) = self.trace.as_mut() {
            t.push(format!("{now} {}", line()));
        }
    }
}
