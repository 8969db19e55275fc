//! Leader election (Raft §5.2, §5.4.1, §9.6 pre-vote; CURP.md E1, E2): election timeouts,
//! (pre-)campaigns, granting votes, counting them, and taking office.

use super::raft::{Campaign, Core, LeaderState, Progress};
use super::ready::Role;
use super::types::{CommandData, Entry, EntryKind, LogIndex, Message, NodeId, Term};

impl Core {
    /// A follower, learner or candidate tick: campaign when the election timeout elapses.
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        // The only voter has nobody to wait for or collide with: it campaigns on its first tick
        // instead of after an election timeout (as etcd's initial election tick advance does).
        let alone = self.leader.is_none() && self.members.current().voters.len() == 1;
        if (self.election_elapsed >= self.randomized_timeout || alone)
            && self.members.is_voter(self.cfg.id)
        {
            self.campaign_start(self.cfg.pre_vote);
        }
    }

    /// Starts a pre-vote round (`pre_vote`) or a real election.
    pub(crate) fn campaign_start(&mut self, pre_vote: bool) {
        if !self.members.is_voter(self.cfg.id) {
            return;
        }
        self.reset_election_timer();
        if self.leader.is_some() {
            self.fail_forwarded_reads();
        }
        self.leader = None;
        let term = if pre_vote {
            self.role = Role::PreCandidate;
            self.term + 1
        } else {
            self.role = Role::Candidate;
            self.term += 1;
            self.vote = self.cfg.id;
            self.acks.clear();
            self.term
        };
        let mut campaign = Campaign {
            pre_vote,
            ..Campaign::default()
        };
        campaign.votes.insert(self.cfg.id, true);
        if !pre_vote {
            // The own pool is taken in the same step as the term change (CURP.md W2).
            campaign.pools.push(self.witness.records());
        }
        self.campaign = Some(campaign);
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for to in self.voters() {
            if to == self.cfg.id {
                continue;
            }
            let msg = Message::Vote {
                term,
                last_index,
                last_term,
                pre_vote,
            };
            // A real vote request waits for our own vote to be durable: a candidate must never
            // count a vote it could forget in a crash.
            if pre_vote {
                self.send(to, msg);
            } else {
                self.send_persisted(to, msg);
            }
        }
        self.tally();
    }

    /// A (pre-)vote request (Raft §5.2, §5.4.1). The term was settled by the caller, except
    /// for pre-votes, which change nothing.
    pub(crate) fn handle_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
        last_term: Term,
        pre_vote: bool,
    ) {
        let up_to_date = self.log.is_up_to_date(last_index, last_term);
        let voter = self.members.is_voter(self.cfg.id);
        if pre_vote {
            // Refuse while a live leader is being heard (CURP.md E1), so a member that was
            // partitioned away cannot disrupt a healthy cluster.
            let hears_leader =
                self.leader.is_some() && self.election_elapsed < self.cfg.election_tick;
            let granted = voter && term > self.term && up_to_date && !hears_leader;
            let term = if granted { term } else { self.term };
            self.send(
                from,
                Message::VoteResponse {
                    term,
                    granted,
                    pre_vote: true,
                    witness: Vec::new(),
                },
            );
            return;
        }
        let free = self.vote == 0 || self.vote == from;
        let granted = voter && term == self.term && free && up_to_date && self.leader.is_none();
        let witness = if granted {
            self.vote = from;
            self.reset_election_timer();
            // Taken atomically with the vote; records of older terms are refused from now on
            // because their term no longer matches (CURP.md W2).
            self.witness.records()
        } else {
            Vec::new()
        };
        self.send_persisted(
            from,
            Message::VoteResponse {
                term: self.term,
                granted,
                pre_vote: false,
                witness,
            },
        );
    }

    /// A (pre-)vote answer.
    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        pre_vote: bool,
        witness: Vec<CommandData>,
    ) {
        let expected_role = if pre_vote {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role != expected_role || !self.members.is_voter(from) {
            return;
        }
        let expected_term = if pre_vote { self.term + 1 } else { self.term };
        if granted && term != expected_term {
            return;
        }
        let Some(campaign) = self.campaign.as_mut() else {
            return;
        };
        if campaign.pre_vote != pre_vote || campaign.votes.contains_key(&from) {
            return;
        }
        campaign.votes.insert(from, granted);
        if granted && !pre_vote {
            campaign.pools.push(witness);
        }
        self.tally();
    }

    /// Wins or loses the campaign once the answers decide it.
    fn tally(&mut self) {
        let Some(campaign) = self.campaign.as_ref() else {
            return;
        };
        let voters = self.voters();
        let granted = voters
            .iter()
            .filter(|v| campaign.votes.get(v) == Some(&true))
            .count();
        let rejected = voters
            .iter()
            .filter(|v| campaign.votes.get(v) == Some(&false))
            .count();
        let quorum = self.quorum();
        if granted >= quorum {
            if campaign.pre_vote {
                self.campaign_start(false);
            } else {
                let pools = campaign.pools.clone();
                self.become_leader(&pools);
            }
        } else if rejected > voters.len() - quorum {
            self.become_follower(self.term, None);
        }
    }

    /// Takes office (Raft §5.2; CURP.md E3): appends the no-op, recovers witness records from
    /// the majority's pools, rebuilds the UCP, and replicates at once.
    fn become_leader(&mut self, pools: &[Vec<CommandData>]) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.campaign = None;
        let last = self.log.last_index();
        let mut lead = LeaderState::default();
        for id in self.members_except_self() {
            lead.progress.insert(
                id,
                Progress {
                    match_index: 0,
                    next_index: last + 1,
                    idle_ticks: 0,
                    commit_told: 0,
                },
            );
        }
        lead.noop_index = last + 1;
        self.lead = Some(lead);
        self.append_local(EntryKind::Empty);
        self.recover_from_witnesses(pools);
        self.rebuild_ucp();
        self.broadcast_append();
        self.maybe_commit();
    }

    /// Every member (voter or learner) other than this one.
    pub(crate) fn members_except_self(&self) -> Vec<NodeId> {
        let m = self.members.current();
        m.voters
            .iter()
            .chain(m.learners.iter())
            .copied()
            .filter(|&id| id != self.cfg.id)
            .collect()
    }

    /// Leader: appends an entry of the current term at the end of its log. Returns its index.
    pub(crate) fn append_local(&mut self, kind: EntryKind) -> LogIndex {
        let index = self.log.last_index() + 1;
        if let EntryKind::ConfChange(change) = &kind {
            self.members.append(index, change);
            self.sync_progress();
        }
        self.log.push(Entry {
            index,
            term: self.term,
            kind,
        });
        index
    }

    /// The chosen successor of a leadership transfer campaigns at once (skipping pre-vote:
    /// the leader asked for it).
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.leader == Some(from) && self.role == Role::Follower {
            self.campaign_start(false);
        }
    }
}
