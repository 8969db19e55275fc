//! The client model of the simulation: closed-loop clients issuing register commands through
//! random members, over the simulated network.
//!
//! A client has at most one operation outstanding. Each write gets a fresh [`ProposeId`]
//! `(client_id, seq)` and keeps it for every retry (CURP.md DD1). Three paths:
//!
//! - **fast** (CURP.md F1/F2): `Propose{fast: true}` to the member the client believes leads,
//!   `Record` to every other member. The op completes with the leader's speculative result once
//!   the leader answered `conflict = false` *and* `SQ − 1` other members accepted the record in
//!   the leader's term; otherwise it waits for the ordered result ([`ClientResp::Applied`]).
//! - **ordered** (CURP.md D2): `Propose{fast: false}` at a random member (the origin), which
//!   answers once it has applied the entry.
//! - **read** (CURP.md D8): a linearizable read at a random member, which obtains a read index
//!   and answers from its own state once it has applied up to it.
//!
//! An attempt that gets no answer within `attempt_timeout_ms` is retried at another member with
//! the same id; an op still unanswered after `op_timeout_ms` is abandoned and stays
//! *indeterminate* in the history (it may or may not take effect).

use std::collections::BTreeMap;

use super::kv::{Key, KvCommand, KvOutput, Value};
use super::network::{Addr, Millis};
use super::rng::SplitMix64;
use crate::core::{CommandData, ProposeId, Rejection, Term};

/// A request from a client to a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientReq {
    /// Propose a write (`fast`: also wants the leader's speculative answer).
    Propose {
        /// The command.
        cmd: CommandData,
        /// Fast path requested.
        fast: bool,
    },
    /// Ask the member's witness to record a write (fast path).
    Record {
        /// The command.
        cmd: CommandData,
        /// The term the client believes current.
        term: Term,
        /// The cluster version the client believes current.
        cluster_version: u64,
    },
    /// A linearizable read of `key`.
    Read {
        /// The client's read id.
        read_id: u64,
        /// The key.
        key: Key,
    },
}

/// An answer from a member to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResp {
    /// The leader took a fast proposal; `result` is its speculative result when
    /// `conflict == false`.
    Proposed {
        /// The proposal.
        id: ProposeId,
        /// Whether the leader found a conflict (then the client waits for `Applied`).
        conflict: bool,
        /// The leader's term.
        term: Term,
        /// The speculative result.
        result: Option<KvOutput>,
    },
    /// A witness answered a record request.
    Recorded {
        /// The proposal.
        id: ProposeId,
        /// Accepted.
        accepted: bool,
        /// The witness's term.
        term: Term,
    },
    /// The proposal was not taken.
    Rejected {
        /// The proposal.
        id: ProposeId,
        /// Why.
        reason: Rejection,
    },
    /// The proposal was applied in log order with this result.
    Applied {
        /// The proposal.
        id: ProposeId,
        /// The ordered result.
        result: KvOutput,
    },
    /// The read completed.
    ReadDone {
        /// The client's read id.
        read_id: u64,
        /// The value read.
        value: Option<Value>,
    },
    /// The read could not be served here.
    ReadRejected {
        /// The client's read id.
        read_id: u64,
        /// Why.
        reason: Rejection,
    },
}

/// How an operation is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpPath {
    /// Fast path: leader speculation plus witness records.
    Fast,
    /// Ordered path with origin commit.
    Ordered,
    /// Linearizable read.
    Read,
}

/// How keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpace {
    /// Every client draws from the same `0..n` keys.
    Shared(u64),
    /// Each client draws from its own `n` keys: the workload commutes.
    PerClient(u64),
}

/// The workload of every client.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Which keys the commands touch.
    pub keys: KeySpace,
    /// Probability an op is a linearizable read.
    pub read_ratio: f64,
    /// Among writes: probability of a delete.
    pub delete_ratio: f64,
    /// Among writes: probability of a compare-and-swap.
    pub cas_ratio: f64,
    /// Among writes: probability the fast path is used (else ordered).
    pub fast_ratio: f64,
    /// Pause between an op's completion and the next op: uniform in this range (ms).
    pub think_ms: (Millis, Millis),
    /// An attempt unanswered this long is retried elsewhere.
    pub attempt_timeout_ms: Millis,
    /// An op unanswered this long is abandoned (indeterminate).
    pub op_timeout_ms: Millis,
    /// Stop issuing new ops after this many (per client; `u64::MAX`: unbounded).
    pub max_ops: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            keys: KeySpace::Shared(4),
            read_ratio: 0.25,
            delete_ratio: 0.1,
            cas_ratio: 0.2,
            fast_ratio: 0.5,
            think_ms: (0, 20),
            attempt_timeout_ms: 400,
            op_timeout_ms: 2_000,
            max_ops: u64::MAX,
        }
    }
}

/// One operation in the client history (the input of the linearizability check and of
/// `no_lost_ack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistOp {
    /// The client's id.
    pub client: u64,
    /// The command.
    pub cmd: KvCommand,
    /// Proposal id (writes; reads get `seq` 0).
    pub id: ProposeId,
    /// The path used.
    pub path: OpPath,
    /// Invocation stamp (monotonic across the run).
    pub call: u64,
    /// Response stamp, `None` while pending or when abandoned (indeterminate).
    pub ret: Option<u64>,
    /// The result returned to the client.
    pub output: Option<KvOutput>,
    /// Completed on the fast path (the output is the leader's speculative result).
    pub completed_fast: bool,
    /// Virtual time of invocation and of response (ms).
    pub call_ms: Millis,
    /// Virtual time of the response (ms), when answered.
    pub ret_ms: Option<Millis>,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
}

/// What a client wants sent: `(member index, request)`.
pub type Outbox = Vec<(usize, ClientReq)>;

/// The state of the op a client is running.
#[derive(Debug, Clone)]
struct Pending {
    /// Index into the history.
    hist: usize,
    id: ProposeId,
    cmd: KvCommand,
    path: OpPath,
    deadline: Millis,
    attempt_deadline: Millis,
    /// Member the current attempt proposed (or read) at.
    target: usize,
    read_id: u64,
    /// Leader's fast answer: (member, term, conflict, speculative result).
    proposed: Option<(usize, Term, bool, Option<KvOutput>)>,
    /// Witness answers by member: (accepted, term).
    records: BTreeMap<usize, (bool, Term)>,
}

/// A simulated client.
#[derive(Debug)]
pub struct Client {
    /// The client's id (`ProposeId::client_id`, never 0).
    pub id: u64,
    /// Its network address.
    pub addr: Addr,
    rng: SplitMix64,
    members: usize,
    super_quorum: usize,
    next_seq: u64,
    next_read: u64,
    issued: u64,
    pending: Option<Pending>,
    next_op_at: Millis,
    leader_hint: Option<usize>,
    term: Term,
    cluster_version: u64,
    /// Stop issuing new ops (liveness phase or end of run).
    pub stopped: bool,
}

/// The superquorum for `n` voters, computed independently of the core (CURP.md D6):
/// `SQ = f + ⌊q/2⌋ + 1` with `q = ⌊n/2⌋ + 1` and `f = n − q`.
pub fn super_quorum(n: usize) -> usize {
    let q = n / 2 + 1;
    (n - q) + q / 2 + 1
}

impl Client {
    /// Client `id` at `addr`, talking to `members` voters.
    pub fn new(id: u64, addr: Addr, members: usize, cluster_version: u64, rng: SplitMix64) -> Self {
        Self {
            id,
            addr,
            rng,
            members,
            super_quorum: super_quorum(members),
            next_seq: 1,
            next_read: 1,
            issued: 0,
            pending: None,
            next_op_at: 0,
            leader_hint: None,
            term: 0,
            cluster_version,
            stopped: false,
        }
    }

    /// The client crashes: it stops, and its outstanding op (if any) stays indeterminate.
    pub fn crash(&mut self) {
        self.stopped = true;
        self.pending = None;
    }

    /// The client gives up its outstanding op (if any) without waiting for its timeout: the op
    /// stays indeterminate, and the client may start another.
    pub fn abandon(&mut self, now: Millis) {
        self.pending = None;
        self.next_op_at = now;
    }

    /// Whether an op is outstanding.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// When the client next wants to act (issue an op or time out an attempt).
    pub fn next_wake(&self) -> Option<Millis> {
        match &self.pending {
            Some(p) => Some(p.attempt_deadline.min(p.deadline)),
            None if self.stopped || self.next_op_at == Millis::MAX => None,
            None => Some(self.next_op_at),
        }
    }

    /// The lowest sequence number whose result the client has not consumed (CURP.md 5.1).
    fn first_incomplete(&self) -> u64 {
        match &self.pending {
            Some(p) if p.path != OpPath::Read => p.id.seq,
            _ => self.next_seq,
        }
    }

    fn pick_key(&mut self, keys: KeySpace) -> Key {
        match keys {
            KeySpace::Shared(n) => self.rng.below(n.max(1)),
            KeySpace::PerClient(n) => self.id * 1_000 + self.rng.below(n.max(1)),
        }
    }

    fn random_member(&mut self, except: Option<usize>) -> usize {
        if self.members <= 1 {
            return 0;
        }
        loop {
            let m = self.rng.index(self.members);
            if Some(m) != except {
                return m;
            }
        }
    }

    /// Called when the client may act; issues a new op or retries a timed-out attempt.
    pub fn wake(
        &mut self,
        now: Millis,
        workload: &Workload,
        stamp: &mut u64,
        history: &mut Vec<HistOp>,
    ) -> Outbox {
        let mut out = Vec::new();
        if let Some(p) = &self.pending {
            if now >= p.deadline {
                // Abandon: the op stays indeterminate (ret = None).
                self.pending = None;
                self.next_op_at = now;
            } else if now >= p.attempt_deadline {
                let prev = p.target;
                let target = match (p.path, self.leader_hint) {
                    (OpPath::Fast, Some(l)) if l != prev => l,
                    _ => self.random_member(Some(prev)),
                };
                self.retry(now, target, workload, history, &mut out);
            }
            return out;
        }
        if self.issued >= workload.max_ops {
            // Scripted ops only: sleep until `submit`.
            self.next_op_at = Millis::MAX;
        }
        if self.stopped || now < self.next_op_at {
            return out;
        }
        self.issue(now, workload, stamp, history, &mut out);
        out
    }

    fn issue(
        &mut self,
        now: Millis,
        workload: &Workload,
        stamp: &mut u64,
        history: &mut Vec<HistOp>,
        out: &mut Outbox,
    ) {
        self.issued += 1;
        let key = self.pick_key(workload.keys);
        let (cmd, path) = if self.rng.chance(workload.read_ratio) {
            (KvCommand::Get { key }, OpPath::Read)
        } else {
            let value = self.id * 1_000_000 + self.next_seq;
            let cmd = if self.rng.chance(workload.delete_ratio) {
                KvCommand::Delete { key }
            } else if self.rng.chance(workload.cas_ratio) {
                // Expect either "absent" or a recent value of this client: some succeed.
                let expected = self
                    .rng
                    .chance(0.3)
                    .then(|| self.id * 1_000_000 + self.next_seq.saturating_sub(1));
                KvCommand::Cas {
                    key,
                    expected,
                    new: value,
                }
            } else {
                KvCommand::Put { key, value }
            };
            let path = if self.rng.chance(workload.fast_ratio) {
                OpPath::Fast
            } else {
                OpPath::Ordered
            };
            (cmd, path)
        };
        let target = match (path, self.leader_hint) {
            (OpPath::Fast, Some(l)) => l,
            _ => self.random_member(None),
        };
        self.start(now, cmd, path, target, workload, stamp, history, out);
    }

    /// Starts a scripted op (targeted scenarios): `cmd` over `path` at member `target` (or a
    /// member of the client's choice). Ignored while another op is outstanding.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &mut self,
        now: Millis,
        cmd: KvCommand,
        path: OpPath,
        target: Option<usize>,
        workload: &Workload,
        stamp: &mut u64,
        history: &mut Vec<HistOp>,
    ) -> Outbox {
        let mut out = Vec::new();
        if self.pending.is_some() {
            return out;
        }
        let target = match (target, path, self.leader_hint) {
            (Some(t), _, _) => t,
            (None, OpPath::Fast, Some(l)) => l,
            _ => self.random_member(None),
        };
        self.start(now, cmd, path, target, workload, stamp, history, &mut out);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        now: Millis,
        cmd: KvCommand,
        path: OpPath,
        target: usize,
        workload: &Workload,
        stamp: &mut u64,
        history: &mut Vec<HistOp>,
        out: &mut Outbox,
    ) {
        let id = if path == OpPath::Read {
            ProposeId {
                client_id: self.id,
                seq: 0,
            }
        } else {
            let id = ProposeId {
                client_id: self.id,
                seq: self.next_seq,
            };
            self.next_seq += 1;
            id
        };
        *stamp += 1;
        history.push(HistOp {
            client: self.id,
            cmd,
            id,
            path,
            call: *stamp,
            ret: None,
            output: None,
            completed_fast: false,
            call_ms: now,
            ret_ms: None,
            attempts: 0,
        });
        self.pending = Some(Pending {
            hist: history.len() - 1,
            id,
            cmd,
            path,
            deadline: now + workload.op_timeout_ms,
            attempt_deadline: now,
            target,
            read_id: 0,
            proposed: None,
            records: BTreeMap::new(),
        });
        self.retry(now, target, workload, history, out);
    }

    /// Sends (again) the pending op's requests, with `target` as leader/origin/reader.
    fn retry(
        &mut self,
        now: Millis,
        target: usize,
        workload: &Workload,
        history: &mut [HistOp],
        out: &mut Outbox,
    ) {
        let first_incomplete = self.first_incomplete();
        let read_id = self.next_read;
        let (term, version, members) = (self.term, self.cluster_version, self.members);
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        p.target = target;
        p.attempt_deadline = now + workload.attempt_timeout_ms;
        p.proposed = None;
        if let Some(h) = history.get_mut(p.hist) {
            h.attempts += 1;
        }
        match p.path {
            OpPath::Read => {
                self.next_read += 1;
                p.read_id = read_id;
                out.push((
                    target,
                    ClientReq::Read {
                        read_id,
                        key: p.cmd.key(),
                    },
                ));
            }
            OpPath::Ordered => {
                let cmd = p.cmd.to_data(p.id, first_incomplete);
                out.push((target, ClientReq::Propose { cmd, fast: false }));
            }
            OpPath::Fast => {
                let cmd = p.cmd.to_data(p.id, first_incomplete);
                for m in (0..members).filter(|&m| m != target) {
                    let record = ClientReq::Record {
                        cmd: cmd.clone(),
                        term,
                        cluster_version: version,
                    };
                    out.push((m, record));
                }
                out.push((target, ClientReq::Propose { cmd, fast: true }));
            }
        }
    }

    fn learn(&mut self, from: usize, reason: &Rejection) {
        match *reason {
            Rejection::NotLeader { leader, term } => {
                self.term = self.term.max(term);
                self.leader_hint = leader.and_then(|l| usize::try_from(l).ok()?.checked_sub(1));
                if self.leader_hint == Some(from) {
                    self.leader_hint = None;
                }
            }
            Rejection::WrongClusterVersion { version } => self.cluster_version = version,
            _ => self.leader_hint = None,
        }
    }

    /// Handles an answer from member `from`: completes the op (returning its history index), or
    /// schedules a retry (sent by the next [`Client::wake`]).
    pub fn on_response(
        &mut self,
        now: Millis,
        from: usize,
        resp: ClientResp,
        workload: &Workload,
        stamp: &mut u64,
        history: &mut [HistOp],
    ) -> Option<usize> {
        let p = self.pending.as_mut()?;
        let mut done: Option<(KvOutput, bool)> = None;
        let mut retry_at: Option<usize> = None;
        match resp {
            ClientResp::Proposed {
                id,
                conflict,
                term,
                result,
            } if id == p.id => {
                p.proposed = Some((from, term, conflict, result));
                self.term = self.term.max(term);
                self.leader_hint = Some(from);
            }
            ClientResp::Recorded { id, accepted, term } if id == p.id => {
                p.records.insert(from, (accepted, term));
                self.term = self.term.max(term);
            }
            ClientResp::Applied { id, result } if id == p.id => done = Some((result, false)),
            ClientResp::Rejected { id, reason } if id == p.id && from == p.target => {
                retry_at = Some(from);
                self.learn(from, &reason);
            }
            ClientResp::ReadDone { read_id, value } if read_id == p.read_id => {
                done = Some((value, false));
            }
            ClientResp::ReadRejected { read_id, reason } if read_id == p.read_id => {
                retry_at = Some(from);
                self.learn(from, &reason);
            }
            _ => {}
        }
        let p = self.pending.as_mut()?;
        if done.is_none()
            && let Some((leader, term, false, Some(result))) = p.proposed
        {
            let accepted = p
                .records
                .iter()
                .filter(|&(&m, &(ok, t))| m != leader && ok && t == term)
                .count();
            if accepted + 1 >= self.super_quorum {
                done = Some((result, true));
            }
        }
        if let Some((output, fast)) = done {
            *stamp += 1;
            if let Some(h) = history.get_mut(p.hist) {
                h.ret = Some(*stamp);
                h.ret_ms = Some(now);
                h.output = Some(output);
                h.completed_fast = fast;
            }
            let hist = p.hist;
            self.pending = None;
            let think = self.rng.range(workload.think_ms.0, workload.think_ms.1);
            self.next_op_at = now + think;
            return Some(hist);
        } else if retry_at.is_some() {
            // Retry from `wake` after a short backoff, so a leaderless cluster is not hammered.
            p.attempt_deadline = now + 10 + self.rng.below(20);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn super_quorum_matches_design_table() {
        let table = [(1, 1), (3, 3), (4, 3), (5, 4), (7, 6), (9, 7)];
        for (n, sq) in table {
            assert_eq!(super_quorum(n), sq, "n={n}");
        }
    }
}
