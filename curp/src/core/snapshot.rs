//! Log compaction and snapshots (CURP.md section 7, K1, K2): the driver reports a snapshot of
//! its state machine, the core wraps it with the dedup table as of that index and drops the log
//! before it; members behind the compacted log receive the cached snapshot.

use bytes::Bytes;

use super::dedup;
use super::raft::Core;
use super::ready::SnapshotInstall;
use super::types::{LogIndex, Membership, Message, NodeId, Term};

impl Core {
    /// The driver took a snapshot at `index` (already applied).
    pub(crate) fn on_snapshot_taken(&mut self, index: LogIndex, data: &Bytes) {
        let (offset, _) = self.log.offset();
        if index <= offset || index > self.applied {
            return;
        }
        let Some(term) = self.log.term(index) else {
            return;
        };
        let mut table = self.dedup_base.clone();
        for e in self.log.slice(offset + 1, index) {
            table.apply(&e.kind);
        }
        let snap = SnapshotInstall {
            index,
            term,
            membership: self.members.at(index).clone(),
            data: dedup::encode_snapshot(&table, data),
        };
        self.dedup_base = table;
        self.log.compact(index);
        self.members.compact(index);
        self.snapshot = Some(snap.clone());
        self.out.snapshot_taken = Some(snap);
    }

    /// Leader: sends the cached snapshot to a member whose next entry was compacted away.
    pub(crate) fn send_snapshot(&mut self, to: NodeId) {
        let Some(snap) = self.snapshot.clone() else {
            return;
        };
        if let Some(pr) = self.lead.as_mut().and_then(|l| l.progress.get_mut(&to)) {
            pr.next_index = snap.index + 1;
        }
        self.send(
            to,
            Message::Snapshot {
                term: self.term,
                index: snap.index,
                index_term: snap.term,
                membership: snap.membership,
                data: snap.data,
            },
        );
    }

    /// Follower/learner: a snapshot from the leader of the current term.
    pub(crate) fn handle_snapshot(
        &mut self,
        from: NodeId,
        term: Term,
        index: LogIndex,
        index_term: Term,
        membership: Membership,
        data: Bytes,
    ) {
        if self.leader != Some(from) {
            self.become_follower(term, Some(from));
        }
        self.election_elapsed = 0;
        let reply = |core: &mut Core, index| {
            core.send_persisted(
                from,
                Message::AppendResponse {
                    term: core.term,
                    success: true,
                    index,
                    read_round: 0,
                },
            );
        };
        if index <= self.log.commit {
            let commit = self.log.commit;
            reply(self, commit);
            return;
        }
        if self.log.matches(index, index_term) {
            // Our log already holds it: just learn the commit.
            self.log.commit = index;
            reply(self, index);
            return;
        }
        let Some((table, _)) = dedup::decode_snapshot(&data) else {
            return;
        };
        self.withdraw_speculation();
        self.log.reset_to_snapshot(index, index_term);
        self.members.reset(index, membership.clone());
        self.dedup = table.clone();
        self.dedup_base = table;
        self.applied = index;
        // Records of commands the snapshot executed are orphans now (CURP.md K2).
        self.purge_witness();
        let snap = SnapshotInstall {
            index,
            term: index_term,
            membership,
            data,
        };
        self.snapshot = Some(snap.clone());
        self.out.snapshot = Some(snap);
        self.refresh_role();
        reply(self, index);
    }
}
