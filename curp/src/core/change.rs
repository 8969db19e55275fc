//! Leader-driven changes: single-server membership changes (CURP.md section 7) and leadership
//! transfer (Raft §3.10, MoveLeader).

use super::membership;
use super::raft::{Core, Transfer};
use super::ready::{Event, Role};
use super::types::{ConfChange, EntryKind, LogIndex, Message, NodeId, ProposeId, Rejection};

/// Whether a learner whose log matches the leader's up to `matched` may be promoted: like
/// etcd, once it holds at least 90% of the leader's log.
fn learner_ready(matched: LogIndex, leader_last: LogIndex) -> bool {
    u128::from(matched) * 10 >= u128::from(leader_last) * 9
}

impl Core {
    /// Proposes a membership change. It takes effect when appended; one at a time.
    pub(crate) fn change_membership(&mut self, id: ProposeId, change: ConfChange) {
        let reason = match self.lead.as_ref() {
            None => Some(self.not_leader()),
            Some(lead) if lead.transfer.is_some() => Some(Rejection::LeaderTransfer),
            Some(_) if self.members.last_change_index() > self.log.commit => {
                Some(Rejection::ChangePending)
            }
            Some(_) if !membership::is_valid_change(self.members.current(), &change) => {
                Some(Rejection::InvalidChange)
            }
            Some(lead) => match change {
                ConfChange::Promote(learner) => {
                    let matched = lead.progress.get(&learner).map_or(0, |pr| pr.match_index);
                    (!learner_ready(matched, self.log.last_index()))
                        .then_some(Rejection::LearnerNotReady)
                }
                _ => None,
            },
        };
        if let Some(reason) = reason {
            self.event(Event::Rejected { id, reason });
            return;
        }
        // The entry carries the whole resulting configuration (see `ConfChange::Set`).
        let next = membership::apply_change(self.members.current(), &change);
        self.append_local(EntryKind::ConfChange(ConfChange::Set(next)));
        self.broadcast_append();
        self.maybe_commit();
        self.release_reads();
    }

    /// Leader: the commit index moved.
    pub(crate) fn on_leader_commit(&mut self) {
        self.start_read_round();
        self.release_reads();
        // A leader removed from the voters hands over once the removal is committed.
        if !self.members.is_voter(self.cfg.id)
            && self.log.commit >= self.members.last_change_index()
        {
            if let Some(successor) = self.most_caught_up_voter() {
                self.send(successor, Message::TimeoutNow { term: self.term });
            }
            self.become_follower(self.term, None);
        }
    }

    /// The voter (other than this member) with the highest match index.
    fn most_caught_up_voter(&self) -> Option<NodeId> {
        let lead = self.lead.as_ref()?;
        self.voters()
            .into_iter()
            .filter(|v| *v != self.cfg.id)
            .max_by_key(|v| lead.progress.get(v).map_or(0, |pr| pr.match_index))
    }

    /// Hands leadership to `to`: once it holds the whole log it is told to campaign at once.
    /// Proposals are refused meanwhile; the attempt lapses after an election timeout.
    pub(crate) fn transfer_leader(&mut self, to: NodeId) {
        if self.role != Role::Leader || to == self.cfg.id || !self.members.is_voter(to) {
            return;
        }
        let last = self.log.last_index();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        lead.transfer = Some(Transfer { to, elapsed: 0 });
        let caught_up = lead
            .progress
            .get(&to)
            .is_some_and(|pr| pr.match_index == last);
        if caught_up {
            self.send(to, Message::TimeoutNow { term: self.term });
        } else {
            self.send_append(to);
        }
    }
}
