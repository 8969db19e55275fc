//! Membership changes and snapshots (CURP.md section 7, K2, D5).

use bytes::Bytes;

use super::harness::{Cluster, cmd, config, voters};
use crate::core::{
    ConfChange, Core, Entry, EntryKind, Envelope, Event, Input, Message, ProposeId, Rejection,
    Restored, Role, WitnessOp, snapshot_state_machine_data,
};

fn change_id(seq: u64) -> ProposeId {
    ProposeId { client_id: 99, seq }
}

/// A learner receives the log but never votes or campaigns; once promoted it votes.
#[test]
fn add_learner_then_promote() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.add_member(4);
    c.step(
        1,
        Input::ChangeMembership {
            id: change_id(1),
            change: ConfChange::AddLearner(4),
        },
    );
    // Effective when appended.
    assert!(c.cores[&1].status().membership.learners.contains(&4));
    assert_eq!(c.cores[&1].status().membership.version, 1);
    c.stabilize();
    c.heartbeat(1);
    assert_eq!(c.cores[&4].status().role, Role::Learner);
    assert_eq!(
        c.cores[&4].status().last_index,
        c.cores[&1].status().last_index
    );
    c.tick(4, 50);
    assert_eq!(
        c.cores[&4].status().role,
        Role::Learner,
        "learners never campaign"
    );
    c.core(4).step(Input::Message(Envelope {
        from: 2,
        to: 4,
        msg: Message::Vote {
            term: 9,
            last_index: 99,
            last_term: 9,
            pre_vote: false,
        },
    }));
    let rd = c.core(4).ready();
    assert!(matches!(
        rd.messages[..],
        [Envelope {
            msg: Message::VoteResponse { granted: false, .. },
            ..
        }]
    ));
    c.core(4).advance();
    c.step(
        1,
        Input::ChangeMembership {
            id: change_id(2),
            change: ConfChange::Promote(4),
        },
    );
    c.stabilize();
    c.heartbeat(1);
    assert_eq!(c.cores[&4].status().role, Role::Follower);
    assert_eq!(c.cores[&4].status().membership.voters.len(), 4);
    assert_eq!(c.cores[&4].status().membership.version, 2);
}

/// Changes go one at a time and must make sense; only the leader takes them.
#[test]
fn change_rejections() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.step(
        2,
        Input::ChangeMembership {
            id: change_id(1),
            change: ConfChange::AddLearner(4),
        },
    );
    assert!(matches!(
        c.out(2).events[..],
        [Event::Rejected {
            reason: Rejection::NotLeader {
                leader: Some(1),
                ..
            },
            ..
        }]
    ));
    c.step(
        1,
        Input::ChangeMembership {
            id: change_id(2),
            change: ConfChange::Promote(2),
        },
    );
    c.step(
        1,
        Input::ChangeMembership {
            id: change_id(3),
            change: ConfChange::AddLearner(4),
        },
    );
    c.step(
        1,
        Input::ChangeMembership {
            id: change_id(4),
            change: ConfChange::AddLearner(5),
        },
    );
    assert_eq!(
        c.out(1).events,
        vec![
            Event::Rejected {
                id: change_id(2),
                reason: Rejection::InvalidChange
            },
            Event::Rejected {
                id: change_id(4),
                reason: Rejection::ChangePending
            },
        ]
    );
}

/// A change takes effect when appended and is rolled back when its entry is truncated.
#[test]
fn change_rolled_back_on_truncation() {
    let mut core = Core::new(
        config(2),
        Restored {
            membership: voters(3),
            ..Restored::default()
        },
    );
    let append = |term, prev_index, prev_term, entries: Vec<Entry>| {
        Input::Message(Envelope {
            from: 1,
            to: 2,
            msg: Message::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit: 0,
                read_round: 0,
            },
        })
    };
    let entry = |index, term, kind| Entry { index, term, kind };
    core.step(append(
        1,
        0,
        0,
        vec![
            entry(1, 1, EntryKind::Empty),
            entry(2, 1, EntryKind::ConfChange(ConfChange::Remove(3))),
        ],
    ));
    assert!(!core.status().membership.voters.contains(&3));
    assert_eq!(core.status().membership.version, 1);
    core.step(append(2, 1, 1, vec![entry(2, 2, EntryKind::Empty)]));
    assert!(core.status().membership.voters.contains(&3));
    assert_eq!(core.status().membership.version, 0);
}

/// Removing the leader: it leads until the removal commits, then hands over and steps down.
#[test]
fn removing_the_leader_steps_it_down() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.step(
        1,
        Input::ChangeMembership {
            id: change_id(1),
            change: ConfChange::Remove(1),
        },
    );
    c.stabilize();
    c.heartbeat(1);
    c.stabilize();
    assert_eq!(c.cores[&1].status().role, Role::Learner);
    let leaders: Vec<u64> = [2, 3]
        .into_iter()
        .filter(|id| c.cores[id].status().role == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1, "a remaining voter took over");
    let leader = leaders[0];
    assert_eq!(c.cores[&leader].status().membership.voters.len(), 2);
    c.step(
        leader,
        Input::Propose {
            cmd: cmd(1, 1, "a"),
            fast: false,
        },
    );
    c.stabilize();
    assert!(
        c.applied_ids(leader)
            .iter()
            .any(|a| a.1 == Some(cmd(1, 1, "a").id))
    );
}

/// Compaction and catch-up by snapshot: the leader wraps the state machine's bytes with the
/// dedup table; a lagging member installs it, purges witness records of executed commands
/// (K2), and keeps flagging duplicates of commands executed before the snapshot (D5).
#[test]
fn snapshot_catches_up_lagging_member_with_dedup_table() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    let a = cmd(1, 1, "a");
    // Member 3's witness holds a record of `a`, then 3 is cut off while `a` executes.
    let st = c.cores[&3].status();
    c.step(
        3,
        Input::Record {
            cmd: a.clone(),
            term: st.term,
            cluster_version: 0,
        },
    );
    c.isolated.insert(3);
    c.step(
        1,
        Input::Propose {
            cmd: a.clone(),
            fast: false,
        },
    );
    for seq in 2..=4 {
        c.step(
            1,
            Input::Propose {
                cmd: cmd(1, seq, "b"),
                fast: false,
            },
        );
    }
    c.stabilize();
    c.heartbeat(1);
    let applied = c.cores[&1].status().applied;
    let sm = Bytes::from_static(b"state machine at 6");
    c.step(
        1,
        Input::SnapshotTaken {
            index: applied,
            data: sm.clone(),
        },
    );
    let snap = c.disks[&1]
        .snapshot
        .clone()
        .expect("snapshot_taken persisted");
    assert_eq!(snap.index, applied);
    assert_eq!(snapshot_state_machine_data(&snap.data), sm);
    assert!(
        c.cores[&1].log().is_empty(),
        "log compacted up to the snapshot"
    );
    assert_eq!(c.cores[&1].snapshot_boundary().0, applied);
    // Member 3 comes back: it is behind the compacted log.
    c.isolated.clear();
    for _ in 0..config(1).election_tick {
        c.heartbeat(1);
    }
    let installed = c.out(3).installed.clone();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].index, applied);
    assert_eq!(c.cores[&3].status().applied, applied);
    assert!(
        c.cores[&3].witness_records().is_empty(),
        "K2: orphan record purged"
    );
    assert!(c.disks[&3].witness.contains(&WitnessOp::Remove(vec![a.id])));
    // A retry of `a` is a duplicate on every member, 3 included.
    c.step(
        1,
        Input::Propose {
            cmd: a.clone(),
            fast: false,
        },
    );
    c.stabilize();
    c.heartbeat(1);
    for id in 1..=3 {
        let last = c.applied_ids(id).last().copied();
        assert_eq!(
            last.map(|x| (x.1, x.2)),
            Some((Some(a.id), true)),
            "member {id}"
        );
    }
    // And after a restart from a snapshot: the table comes back from the snapshot record.
    let applied_2 = c.cores[&2].status().applied;
    c.step(
        2,
        Input::SnapshotTaken {
            index: applied_2,
            data: sm,
        },
    );
    c.restart(2);
    c.step(
        1,
        Input::Propose {
            cmd: a.clone(),
            fast: false,
        },
    );
    c.stabilize();
    c.heartbeat(1);
    let last = c.applied_ids(2).last().copied();
    assert_eq!(last.map(|x| (x.1, x.2)), Some((Some(a.id), true)));
}
