//! Linearizable reads by read index (CURP.md D8, RD1; Raft §6.4): the leader confirms it still
//! leads with a heartbeat round acknowledged by a majority in its term, after its no-op
//! committed, and answers with its last log index as of the round once that is committed (see
//! `start_read_round` for why not the commit index); the member serving the read waits until
//! it applied that index. Followers forward requests to the leader.

use super::raft::{Core, PendingRead};
use super::ready::{Event, Role};
use super::types::{LogIndex, Message, NodeId, Rejection};

impl Core {
    /// A read-index request from this member's driver.
    pub(crate) fn read_index_local(&mut self, id: u64) {
        if self.role == Role::Leader {
            self.leader_read(None, id);
        } else if let Some(leader) = self.leader {
            self.forwarded_reads.insert(id);
            self.send(
                leader,
                Message::ReadIndex {
                    term: self.term,
                    id,
                },
            );
        } else {
            let reason = self.not_leader();
            self.event(Event::ReadIndex {
                id,
                result: Err(reason),
            });
        }
    }

    /// A read-index request forwarded by another member.
    pub(crate) fn read_index_remote(&mut self, from: NodeId, id: u64) {
        if self.role == Role::Leader {
            self.leader_read(Some(from), id);
        } else {
            self.send(
                from,
                Message::ReadIndexResponse {
                    term: self.term,
                    id,
                    index: None,
                },
            );
        }
    }

    /// The leader's answer to a request this member forwarded.
    pub(crate) fn handle_read_index_response(&mut self, id: u64, index: Option<LogIndex>) {
        if !self.forwarded_reads.remove(&id) {
            return;
        }
        let result = index.ok_or_else(|| self.not_leader());
        self.event(Event::ReadIndex { id, result });
    }

    /// Fails every forwarded read: the leader they went to is no longer known to lead.
    pub(crate) fn fail_forwarded_reads(&mut self) {
        let ids = std::mem::take(&mut self.forwarded_reads);
        for id in ids {
            let reason = self.not_leader();
            self.event(Event::ReadIndex {
                id,
                result: Err(reason),
            });
        }
    }

    /// Leader: queues a read and starts a confirmation round when possible.
    fn leader_read(&mut self, from: Option<NodeId>, id: u64) {
        if let Some(lead) = self.lead.as_mut() {
            lead.reads.push(PendingRead {
                from,
                id,
                index: 0,
                round: 0,
            });
        }
        self.start_read_round();
    }

    /// Leader: once this term's no-op committed, gives every waiting read a new round and, as
    /// its read index, the leader's **last** index: writes may be acknowledged before the
    /// leader's commit index covers them (origin commit, D2; the fast path, D1), but every
    /// acknowledged write is in the leader's log by now. The read is answered once the round is
    /// confirmed *and* that index is committed in this term, so the answer never names an entry
    /// that a later leader could replace (simulation finding F1).
    pub(crate) fn start_read_round(&mut self) {
        let commit = self.log.commit;
        let last = self.log.last_index();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if commit < lead.noop_index || lead.reads.iter().all(|r| r.round != 0) {
            return;
        }
        lead.read_round += 1;
        let round = lead.read_round;
        for read in lead.reads.iter_mut().filter(|r| r.round == 0) {
            read.round = round;
            read.index = last;
        }
        self.broadcast_heartbeat();
        self.release_reads();
    }

    /// Leader: answers every read whose round a majority (this member included) confirmed and
    /// whose index is committed.
    pub(crate) fn release_reads(&mut self) {
        let commit = self.log.commit;
        let quorum = self.quorum();
        let id = self.cfg.id;
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let read_acks = &lead.read_acks;
        let acked = self.members.current().voters.iter().map(|v| {
            if *v == id {
                u64::MAX
            } else {
                read_acks.get(v).copied().unwrap_or(0)
            }
        });
        let confirmed = super::quorum::kth_largest(acked, quorum).unwrap_or(0);
        let (ready, waiting): (Vec<PendingRead>, Vec<PendingRead>) = lead
            .reads
            .drain(..)
            .partition(|r| r.round != 0 && r.round <= confirmed && r.index <= commit);
        lead.reads = waiting;
        for read in ready {
            self.answer_read(read.from, read.id, Some(read.index));
        }
    }

    /// Delivers a read-index answer (`None`: this member does not lead any more).
    pub(crate) fn answer_read(&mut self, from: Option<NodeId>, id: u64, index: Option<LogIndex>) {
        match from {
            None => {
                let result = index.ok_or(Rejection::NotLeader {
                    leader: self.leader,
                    term: self.term,
                });
                self.event(Event::ReadIndex { id, result });
            }
            Some(to) => {
                if let Some(index) = index {
                    self.want_commit(to, index);
                }
                self.send(
                    to,
                    Message::ReadIndexResponse {
                        term: self.term,
                        id,
                        index,
                    },
                );
            }
        }
    }
}
