//! Log replication (Raft §5.3, §5.4.2; CURP.md S1): the leader's heartbeats and Append
//! messages with fast backtracking, the follower's consistency check and conflict truncation,
//! and the commit rule (current-term entries on a majority, the leader counting its own copy
//! only once durable).

use super::raft::{Core, Progress};
use super::ready::Role;
use super::types::{Entry, EntryKind, LogIndex, Message, NodeId, Term};

impl Core {
    /// A leader tick: heartbeats, retransmission and the leadership-transfer timeout.
    pub(crate) fn tick_leader(&mut self) {
        let heartbeat_tick = self.cfg.heartbeat_tick;
        let election_tick = self.cfg.election_tick;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if let Some(transfer) = lead.transfer.as_mut() {
            transfer.elapsed += 1;
            if transfer.elapsed >= election_tick {
                lead.transfer = None;
            }
        }
        lead.heartbeat_elapsed += 1;
        if lead.heartbeat_elapsed < heartbeat_tick {
            return;
        }
        lead.heartbeat_elapsed = 0;
        let last = self.log.last_index();
        // Messages may be lost: resend what stayed unacknowledged for half an election timeout.
        let retransmit = (election_tick / 2).max(1);
        for pr in lead.progress.values_mut() {
            if pr.match_index < last {
                pr.idle_ticks = pr.idle_ticks.saturating_add(heartbeat_tick);
                if pr.idle_ticks >= retransmit {
                    pr.idle_ticks = 0;
                    pr.next_index = pr.match_index + 1;
                }
            } else {
                pr.idle_ticks = 0;
            }
        }
        self.broadcast_heartbeat();
    }

    /// Sends every member what it is missing, or a heartbeat when it misses nothing.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let last = self.log.last_index();
        let peers: Vec<(NodeId, Progress)> = match self.lead.as_ref() {
            Some(lead) => lead.progress.iter().map(|(id, pr)| (*id, *pr)).collect(),
            None => return,
        };
        for (to, pr) in peers {
            if pr.next_index <= last {
                self.send_append(to);
            } else {
                self.send_heartbeat(to, pr.match_index);
            }
        }
    }

    /// Sends new entries to every member that has not been sent them yet.
    pub(crate) fn broadcast_append(&mut self) {
        let last = self.log.last_index();
        let peers: Vec<NodeId> = match self.lead.as_ref() {
            Some(lead) => lead
                .progress
                .iter()
                .filter(|(_, pr)| pr.next_index <= last)
                .map(|(id, _)| *id)
                .collect(),
            None => return,
        };
        for to in peers {
            self.send_append(to);
        }
    }

    /// An empty Append anchored at what `to` is known to hold: carries the commit index (up
    /// to that point) and the current read round. Returns whether it was sent.
    fn send_heartbeat(&mut self, to: NodeId, match_index: LogIndex) -> bool {
        let prev_index = match_index.max(self.log.offset().0);
        let Some(prev_term) = self.log.term(prev_index) else {
            return false;
        };
        let read_round = self.lead.as_ref().map_or(0, |l| l.read_round);
        self.send(
            to,
            Message::Append {
                term: self.term,
                prev_index,
                prev_term,
                entries: Vec::new(),
                commit: self.log.commit,
                read_round,
            },
        );
        true
    }

    /// Sends `to` the entries from its next index (or the snapshot when those are compacted),
    /// and optimistically moves its next index past them (pipelining).
    pub(crate) fn send_append(&mut self, to: NodeId) {
        let Some(pr) = self
            .lead
            .as_ref()
            .and_then(|l| l.progress.get(&to))
            .copied()
        else {
            return;
        };
        let next = pr.next_index.min(self.log.last_index() + 1);
        let prev_index = next - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            self.send_snapshot(to);
            return;
        };
        let max = self.cfg.max_append_entries as u64;
        let entries = self.log.slice(next, next + max - 1).to_vec();
        let sent_to = prev_index + entries.len() as u64;
        let read_round = self.lead.as_ref().map_or(0, |l| l.read_round);
        if let Some(pr) = self.lead.as_mut().and_then(|l| l.progress.get_mut(&to)) {
            pr.next_index = sent_to + 1;
        }
        self.send(
            to,
            Message::Append {
                term: self.term,
                prev_index,
                prev_term,
                entries,
                commit: self.log.commit,
                read_round,
            },
        );
    }

    /// Follower/learner: an Append from the leader of the current term (Raft §5.3).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        term: Term,
        prev_index: LogIndex,
        prev_term: Term,
        mut entries: Vec<Entry>,
        commit: LogIndex,
        read_round: u64,
    ) {
        if self.role != Role::Follower && self.role != Role::Learner || self.leader != Some(from) {
            // A candidate of this term learns that the election is lost.
            self.become_follower(term, Some(from));
        }
        self.election_elapsed = 0;
        let mut prev_index = prev_index;
        let mut prev_term = prev_term;
        let (offset, offset_term) = self.log.offset();
        if prev_index < offset {
            // Everything up to the snapshot is committed, hence in the leader's log too.
            entries.retain(|e| e.index > offset);
            prev_index = offset;
            prev_term = offset_term;
            if entries.first().is_some_and(|e| e.index != offset + 1) {
                entries.clear();
            }
        }
        if !self.log.matches(prev_index, prev_term) {
            let hint = self.log.conflict_hint(prev_index, prev_term);
            self.respond_append(from, false, hint, read_round);
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        let appended = self.append_from_leader(entries);
        let commit = commit.min(last_new);
        if commit > self.log.commit {
            self.log.commit = commit;
        }
        self.respond_append(from, true, last_new, read_round);
        if let Some((low, high)) = appended {
            self.ack_origins(low, high, from);
        }
    }

    /// Appends the leader's entries after the matching prefix, truncating the first conflict
    /// (Raft §5.3). Returns the range of indexes actually added (`None`: nothing was).
    fn append_from_leader(&mut self, mut entries: Vec<Entry>) -> Option<(LogIndex, LogIndex)> {
        let first_new = entries
            .iter()
            .position(|e| !self.log.matches(e.index, e.term))?;
        // The matching prefix is already held; the rest moves into the log without a copy.
        let new = entries.split_off(first_new);
        let (head, last) = match (new.first(), new.last()) {
            (Some(head), Some(last)) => (head.index, last.index),
            _ => return None,
        };
        if head <= self.log.last_index() {
            if head <= self.log.commit {
                // A leader never conflicts with a committed entry; refuse rather than lose
                // committed data.
                debug_assert!(false, "leader conflicts with committed entry {head}");
                return None;
            }
            self.log.truncate_from(head);
            self.members.truncate_from(head);
        }
        for e in new {
            if let EntryKind::ConfChange(change) = &e.kind {
                self.members.append(e.index, change);
            }
            self.log.push(e);
        }
        self.refresh_role();
        Some((head, last))
    }

    /// A follower's answer, sent once what it acknowledges is durable.
    fn respond_append(&mut self, to: NodeId, success: bool, index: LogIndex, read_round: u64) {
        self.send_persisted(
            to,
            Message::AppendResponse {
                term: self.term,
                success,
                index,
                read_round,
            },
        );
    }

    /// Leader: a member's answer in the current term.
    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        index: LogIndex,
        read_round: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let Some(pr) = lead.progress.get_mut(&from) else {
            return;
        };
        if success {
            if index > pr.match_index {
                pr.match_index = index.min(last);
                pr.idle_ticks = 0;
            }
            pr.next_index = pr.next_index.max(pr.match_index + 1);
        } else {
            // Fast backtracking: retry right after the hint, never below what matched.
            pr.next_index = pr.next_index.min(index + 1).max(pr.match_index + 1);
        }
        let resend = pr.next_index <= last;
        let caught_up = pr.match_index == last;
        if read_round > 0 {
            let ack = lead.read_acks.entry(from).or_insert(0);
            *ack = (*ack).max(read_round);
        }
        let transfer_to = lead.transfer.map(|t| t.to);
        if success {
            self.maybe_commit();
        }
        if read_round > 0 {
            self.release_reads();
        }
        if transfer_to == Some(from) && caught_up {
            self.send(from, Message::TimeoutNow { term: self.term });
        } else if resend || !success {
            self.send_append(from);
        }
    }

    /// The leader's own copy up to `after` became durable: count it, and tell the origins of
    /// those entries (CURP.md D2).
    pub(crate) fn leader_persisted(&mut self, before: LogIndex, after: LogIndex) {
        self.maybe_commit();
        self.ack_origins(before + 1, after, self.cfg.id);
    }

    /// Leader: commits the highest current-term index durable on a majority (Raft §5.4.2).
    pub(crate) fn maybe_commit(&mut self) {
        let Some(lead) = self.lead.as_ref() else {
            return;
        };
        let (id, persisted) = (self.cfg.id, self.log.persisted());
        let matched = self.members.current().voters.iter().map(|v| {
            if *v == id {
                persisted
            } else {
                lead.progress.get(v).map_or(0, |pr| pr.match_index)
            }
        });
        let Some(candidate) = super::quorum::kth_largest(matched, self.quorum()) else {
            return;
        };
        if candidate > self.log.commit && self.log.term(candidate) == Some(self.term) {
            self.log.commit = candidate;
            self.on_leader_commit();
        }
    }

    /// Leader, before handing out a `Ready`: tells members the commit index as soon as it
    /// covers what they wait for (their own proposals as origin, their read indexes), without
    /// waiting for the next heartbeat (SIM_FINDINGS O1). Appends already queued in this round
    /// carry the latest commit index (piggyback); a member with nothing queued gets one empty
    /// Append, only when it can learn something it waits for.
    pub(crate) fn push_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let (term, commit) = (self.term, self.log.commit);
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let mut queued = std::collections::BTreeSet::new();
        for env in &mut self.out.messages {
            if let Message::Append {
                term: t,
                prev_index,
                entries,
                commit: c,
                ..
            } = &mut env.msg
                && *t == term
            {
                *c = (*c).max(commit);
                let covered = *prev_index + entries.len() as u64;
                if let Some(pr) = lead.progress.get_mut(&env.to) {
                    pr.commit_told = pr.commit_told.max(commit.min(covered));
                }
                queued.insert(env.to);
            }
        }
        let mut heartbeats = Vec::new();
        lead.commit_wanted.retain(|id, wanted| {
            let Some(pr) = lead.progress.get(id) else {
                return false;
            };
            let learnable = commit.min(pr.match_index);
            if *wanted <= pr.commit_told {
                return false;
            }
            if learnable >= *wanted && !queued.contains(id) {
                heartbeats.push((*id, pr.match_index));
            }
            true
        });
        for (to, match_index) in heartbeats {
            if !self.send_heartbeat(to, match_index) {
                continue;
            }
            if let Some(pr) = self.lead.as_mut().and_then(|l| l.progress.get_mut(&to)) {
                pr.commit_told = pr.commit_told.max(commit.min(match_index));
            }
        }
    }

    /// Leader: member `to` waits to see `index` committed (see [`Core::push_commit`]).
    pub(crate) fn want_commit(&mut self, to: NodeId, index: LogIndex) {
        if to == self.cfg.id {
            return;
        }
        if let Some(lead) = self.lead.as_mut() {
            let wanted = lead.commit_wanted.entry(to).or_insert(0);
            *wanted = (*wanted).max(index);
        }
    }

    /// Brings the leader's progress map in line with the configuration in effect.
    pub(crate) fn sync_progress(&mut self) {
        let members = self.members_except_self();
        let next = self.log.last_index() + 1;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        lead.progress.retain(|id, _| members.contains(id));
        for id in members {
            lead.progress.entry(id).or_insert(Progress {
                match_index: 0,
                next_index: next,
                idle_ticks: 0,
                commit_told: 0,
            });
        }
    }

    /// Follower/learner role after a configuration change took effect.
    pub(crate) fn refresh_role(&mut self) {
        match self.role {
            Role::Follower | Role::Learner => {
                self.role = if self.members.is_voter(self.cfg.id) {
                    Role::Follower
                } else {
                    Role::Learner
                };
            }
            Role::PreCandidate | Role::Candidate if !self.members.is_voter(self.cfg.id) => {
                self.become_follower(self.term, self.leader);
            }
            _ => {}
        }
    }
}
