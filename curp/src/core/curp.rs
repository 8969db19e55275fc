//! CURP on top of Raft ordering (CURP.md sections 2-5, D2, D5):
//! - proposals: the leader appends every proposal in arrival order and reports whether the
//!   fast path holds (`conflict = witness conflict ∨ UCP conflict ∨ slow path requested`, L2);
//!   followers forward proposals to the leader;
//! - the witness: term- and version-stamped records, journaled before they are acknowledged
//!   (W1, W2, P2), purged on apply and by the dedup table (P3);
//! - origin commit (D2): replicas acknowledge durable entries to their origin, which commits as
//!   soon as a majority of voters holds a current-term entry;
//! - recovery on election (E3, P5).

use super::quorum;
use super::raft::Core;
use super::ready::{Event, Role, WitnessOp};
use super::types::{CommandData, EntryKind, LogIndex, Message, NodeId, Rejection, Term};
use super::witness;

impl Core {
    /// A client proposes `cmd` at this member.
    pub(crate) fn propose(&mut self, cmd: CommandData, fast: bool) {
        if self.client_expiring(cmd.id.client_id) {
            // The tombstone is in the log (applied or not): refuse before anything is
            // appended, so the client knows this attempt never executes (a copy appended
            // after the tombstone would be skipped).
            self.event(Event::Rejected {
                id: cmd.id,
                reason: Rejection::ClientExpired,
            });
        } else if self.role == Role::Leader {
            let id = cmd.id;
            if let Err(reason) = self.leader_propose(cmd, fast, self.cfg.id) {
                self.event(Event::Rejected { id, reason });
            }
        } else if let Some(leader) = self.leader {
            // The ordered path with origin commit: the leader appends, this member commits
            // from the replicas' acknowledgements (CURP.md D2).
            self.send(
                leader,
                Message::Propose {
                    term: self.term,
                    cmd,
                },
            );
        } else {
            let reason = self.not_leader();
            self.event(Event::Rejected { id: cmd.id, reason });
        }
    }

    /// Leader: a proposal forwarded by its origin (ordered path).
    pub(crate) fn handle_forwarded_propose(&mut self, from: NodeId, cmd: CommandData) {
        let id = cmd.id;
        let result = if self.role == Role::Leader {
            self.leader_propose(cmd, false, from)
        } else {
            Err(self.not_leader())
        };
        if let Err(reason) = result {
            self.send(
                from,
                Message::ProposeRejected {
                    term: self.term,
                    id,
                    reason,
                },
            );
        }
    }

    /// Leader: appends a proposal (CURP.md L1, L2).
    fn leader_propose(
        &mut self,
        cmd: CommandData,
        fast: bool,
        origin: NodeId,
    ) -> Result<(), Rejection> {
        let (noop_index, transferring) = match self.lead.as_ref() {
            Some(lead) => (lead.noop_index, lead.transfer.is_some()),
            None => return Err(self.not_leader()),
        };
        if transferring {
            return Err(Rejection::LeaderTransfer);
        }
        if self.client_expiring(cmd.id.client_id) {
            return Err(Rejection::ClientExpired);
        }
        // The leader's witness counts towards the superquorum; slow proposals sent no records,
        // so they do not occupy it.
        let witness_ok = fast && self.witness_insert(&cmd);
        let ucp_conflict = self.lead.as_mut().is_some_and(|lead| lead.ucp.insert(&cmd));
        // Until the no-op is applied, the UCP may miss committed-but-unapplied commands of the
        // previous term (CURP.md P5).
        let stale = self.applied < noop_index;
        let conflict = !witness_ok || ucp_conflict || !fast || stale;
        let id = cmd.id;
        if fast && !conflict {
            self.out.speculate.push(cmd.clone());
        }
        let index = self.append_local(EntryKind::Command { cmd, origin });
        self.want_commit(origin, index);
        if fast && origin == self.cfg.id {
            self.event(Event::Proposed {
                id,
                conflict,
                term: self.term,
            });
        }
        self.broadcast_append();
        self.maybe_commit();
        Ok(())
    }

    /// Inserts into this member's witness, journaling a newly held record. Returns the
    /// witness's answer (accepted = no conflict).
    fn witness_insert(&mut self, cmd: &CommandData) -> bool {
        let held = self.witness.contains(&cmd.id);
        let accepted = self.witness.insert(cmd.clone());
        if !held && self.witness.contains(&cmd.id) {
            self.out.witness.push(WitnessOp::Insert {
                cmd: cmd.clone(),
                term: self.term,
                cluster_version: self.members.current().version,
            });
        }
        accepted
    }

    /// Whether `client_id` expired or its expiry is in the log: its commands and records are
    /// refused from the moment the tombstone is appended, not only once it is applied.
    pub(crate) fn client_expiring(&self, client_id: u64) -> bool {
        self.dedup.is_expired(client_id) || self.log.expiry_logged(client_id)
    }

    /// Leader: a client's id lease expired; replicate it (CURP.md P3, DD4).
    pub(crate) fn expire_client(&mut self, client_id: u64) {
        if self.role != Role::Leader || self.client_expiring(client_id) {
            return;
        }
        self.append_local(EntryKind::ClientExpired(client_id));
        self.broadcast_append();
        self.maybe_commit();
    }

    /// A client records `cmd` at this member's witness (CURP.md W1, W2, P3). The answer is an
    /// event, delivered after the journal is durable; a record of an expired client is refused
    /// at once with [`Rejection::ClientExpired`].
    pub(crate) fn record(&mut self, cmd: CommandData, term: Term, cluster_version: u64) {
        let id = cmd.id;
        if self.client_expiring(id.client_id) {
            self.event(Event::Rejected {
                id,
                reason: Rejection::ClientExpired,
            });
            return;
        }
        let admissible = self.members.is_voter(self.cfg.id)
            && term == self.term
            && cluster_version == self.members.current().version
            && !self.dedup.is_applied(id);
        let accepted = admissible && self.witness_insert(&cmd);
        self.event(Event::Recorded {
            id,
            accepted,
            term: self.term,
        });
    }

    /// The driver applied everything up to `index`: purge the witness (and the leader's UCP) of
    /// what was applied (CURP.md S2 step 5, P3).
    pub(crate) fn on_applied(&mut self, index: LogIndex) {
        let index = index.min(self.log.emitted);
        if index <= self.applied {
            return;
        }
        if let Some(lead) = self.lead.as_mut() {
            for e in self.log.slice(self.applied + 1, index) {
                if let EntryKind::Command { cmd, .. } = &e.kind {
                    lead.ucp.remove(&cmd.id);
                }
            }
        }
        self.applied = index;
        self.purge_witness();
    }

    /// Drops witness records of commands the dedup table knows executed (applied, committed,
    /// or below their client's watermark), journaling the removal.
    pub(crate) fn purge_witness(&mut self) {
        let dedup = &self.dedup;
        let removed = self.witness.remove_applied(|id| dedup.is_applied(*id));
        if !removed.is_empty() {
            self.out.witness.push(WitnessOp::Remove(removed));
        }
    }

    /// After persisting the log's entries in `[low, high]`, tells their origins (other than this
    /// member and `leader`, which learns from the Append answer) that this replica holds them
    /// durably (CURP.md D2). Followers send once the current Ready is durable, the leader at
    /// once (it calls this from `advance`).
    pub(crate) fn ack_origins(&mut self, low: LogIndex, high: LogIndex, leader: NodeId) {
        let entries = self.log.slice(low, high);
        let Some(index) = entries.last().map(|e| e.index) else {
            return;
        };
        let entry_term = self.log.term(index).unwrap_or(0);
        if entry_term != self.term {
            return;
        }
        let mut origins: Vec<NodeId> = entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Command { origin, .. } => Some(*origin),
                _ => None,
            })
            .filter(|&o| o != self.cfg.id && o != leader)
            .collect();
        origins.sort_unstable();
        origins.dedup();
        for origin in origins {
            let msg = Message::PersistAck {
                term: self.term,
                index,
                entry_term,
            };
            if self.role == Role::Leader {
                self.send(origin, msg);
            } else {
                self.send_persisted(origin, msg);
            }
        }
    }

    /// Origin: a replica holds our log durably up to `index` (CURP.md D2).
    pub(crate) fn handle_persist_ack(
        &mut self,
        from: NodeId,
        term: Term,
        index: LogIndex,
        entry_term: Term,
    ) {
        if term != self.term || entry_term != term || !self.members.is_voter(from) {
            return;
        }
        let known = self.acks.entry(from).or_insert(0);
        *known = (*known).max(index);
        self.maybe_origin_commit();
    }

    /// Origin commit: an entry of the current term durable on a majority of voters is
    /// committed (Raft §5.4.2), and so is everything before it. Each ack certifies that its
    /// sender's log matches the current leader's up to the acked index (it holds an entry of
    /// this term there); this member commits only what its own log holds with this term, so
    /// its prefix matches too.
    pub(crate) fn maybe_origin_commit(&mut self) {
        if self.role == Role::Leader || self.acks.is_empty() {
            return;
        }
        let own = self.log.persisted();
        let own = if self.log.term(own) == Some(self.term) {
            own
        } else {
            0
        };
        let acked = self.members.current().voters.iter().map(|v| {
            if *v == self.cfg.id {
                own
            } else {
                self.acks.get(v).copied().unwrap_or(0)
            }
        });
        let Some(candidate) = quorum::kth_largest(acked, self.quorum()) else {
            return;
        };
        if candidate > self.log.commit && self.log.term(candidate) == Some(self.term) {
            self.log.commit = candidate;
        }
    }

    /// New leader: re-appends, after its no-op, the commands that at least `r` of the
    /// majority's witness pools hold and that are neither in its log nor executed (CURP.md E3,
    /// P3). Their `first_incomplete` is cleared: their order is arbitrary, so they must not move
    /// their client's dedup watermark (DD3).
    pub(crate) fn recover_from_witnesses(&mut self, pools: &[Vec<CommandData>]) {
        if let Some(lead) = self.lead.as_mut() {
            lead.election_clients = pools.iter().flatten().map(|c| c.id.client_id).collect();
        }
        let threshold = quorum::recover_quorum(self.members.current().voters.len());
        let recovered = witness::recover(pools, threshold);
        if recovered.is_empty() {
            return;
        }
        let in_log: std::collections::HashSet<_> = self
            .log
            .entries()
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Command { cmd, .. } => Some(cmd.id),
                _ => None,
            })
            .collect();
        for mut cmd in recovered {
            if in_log.contains(&cmd.id) || self.dedup.is_applied(cmd.id) {
                continue;
            }
            cmd.first_incomplete = 0;
            self.witness_insert(&cmd);
            self.append_local(EntryKind::Command {
                cmd,
                origin: self.cfg.id,
            });
        }
    }

    /// New leader: the UCP holds every command after the applied index (CURP.md E3, P5).
    pub(crate) fn rebuild_ucp(&mut self) {
        let pending: Vec<CommandData> = self
            .log
            .slice(self.applied + 1, self.log.last_index())
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Command { cmd, .. } => Some(cmd.clone()),
                _ => None,
            })
            .collect();
        if let Some(lead) = self.lead.as_mut() {
            lead.ucp.clear();
            for cmd in &pending {
                lead.ucp.insert(cmd);
            }
        }
    }
}
