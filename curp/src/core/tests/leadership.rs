//! Raft extensions beyond the basic paper sections: pre-vote (§9.6), read index (§6.4,
//! CURP.md D8) and leadership transfer (§3.10).

use super::harness::{Cluster, cmd};
use super::raft_paper::{append_ok, deliver, drain, env, heartbeat, leader_of_three, member};
use crate::core::{Event, Input, Message, Rejection, Role};

// ---- pre-vote (§9.6) -----------------------------------------------------------------------

/// §9.6: a pre-vote is refused while a leader is being heard, granted (without changing the
/// term or the vote) otherwise.
#[test]
fn test_pre_vote_refused_while_leader_heard() {
    let pre = Message::Vote {
        term: 2,
        last_index: 0,
        last_term: 0,
        pre_vote: true,
    };
    let mut core = member(1, 3);
    deliver(&mut core, 2, heartbeat(1, 0, 0, 0));
    drain(&mut core);
    deliver(&mut core, 3, pre.clone());
    let rd = drain(&mut core);
    assert_eq!(
        rd.messages,
        vec![env(
            1,
            3,
            Message::VoteResponse {
                term: 1,
                granted: false,
                pre_vote: true,
                witness: Vec::new()
            }
        )]
    );
    for _ in 0..10 {
        core.tick();
    }
    drain(&mut core);
    deliver(&mut core, 3, pre);
    let rd = drain(&mut core);
    assert_eq!(
        rd.messages,
        vec![env(
            1,
            3,
            Message::VoteResponse {
                term: 2,
                granted: true,
                pre_vote: true,
                witness: Vec::new()
            }
        )]
    );
    assert_eq!((core.status().term, rd.hard_state), (1, None));
}

/// §9.6: a member partitioned away and back does not disrupt the leader: its pre-votes fail
/// and its term stays put.
#[test]
fn test_pre_vote_partitioned_member_does_not_disrupt() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.cores[&1].status().term;
    c.isolated.insert(3);
    c.tick(3, 40);
    c.isolated.clear();
    c.tick(3, 1);
    c.heartbeat(1);
    c.stabilize();
    assert_eq!(c.cores[&1].status().role, Role::Leader);
    assert_eq!(c.cores[&1].status().term, term);
    assert_eq!(c.cores[&3].status().term, term);
}

// ---- §6.4 read index -----------------------------------------------------------------------

/// §6.4 / CURP.md D8: the leader answers a read index after a majority confirmed a heartbeat
/// round in its term; a follower forwards and relays the answer.
#[test]
fn test_read_index_leader_and_follower() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.step(
        1,
        Input::Propose {
            cmd: cmd(1, 1, "a"),
            fast: false,
        },
    );
    c.stabilize();
    let commit = c.cores[&1].status().commit;
    c.step(1, Input::ReadIndex { id: 7 });
    assert!(
        c.out(1).events.is_empty(),
        "waits for the confirmation round"
    );
    c.stabilize();
    assert_eq!(
        c.out(1).events,
        vec![Event::ReadIndex {
            id: 7,
            result: Ok(commit)
        }]
    );
    c.step(2, Input::ReadIndex { id: 9 });
    c.stabilize();
    assert_eq!(
        c.out(2).events,
        vec![Event::ReadIndex {
            id: 9,
            result: Ok(commit)
        }]
    );
}

/// §6.4: without a majority the read is never confirmed; when the leader steps down it fails.
#[test]
fn test_read_index_needs_quorum() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolated.insert(1);
    c.step(1, Input::ReadIndex { id: 1 });
    c.heartbeat(1);
    assert!(c.out(1).events.is_empty());
    // 3 stops hearing the leader, 2 times out and wins; then the partition heals.
    c.tick(3, 10);
    c.elect(2);
    c.isolated.clear();
    c.heartbeat(2);
    assert!(matches!(
        c.out(1).events.as_slice(),
        [Event::ReadIndex {
            id: 1,
            result: Err(Rejection::NotLeader { .. })
        }]
    ));
}

/// CURP.md D8: a new leader answers reads only once its no-op committed.
#[test]
fn test_read_index_waits_for_noop() {
    let mut core = leader_of_three();
    core.step(Input::ReadIndex { id: 1 });
    let rd = drain(&mut core);
    assert!(rd.events.is_empty());
    assert!(
        rd.messages
            .iter()
            .all(|m| matches!(m.msg, Message::Append { read_round: 0, .. }))
    );
    deliver(&mut core, 2, append_ok(1, 1));
    let rd = drain(&mut core);
    // The no-op committed: a confirmation round starts.
    assert!(
        rd.messages
            .iter()
            .any(|m| matches!(m.msg, Message::Append { read_round: 1, .. }))
    );
    deliver(
        &mut core,
        3,
        Message::AppendResponse {
            term: 1,
            success: true,
            index: 1,
            read_round: 1,
        },
    );
    let rd = drain(&mut core);
    assert_eq!(
        rd.events,
        vec![Event::ReadIndex {
            id: 1,
            result: Ok(1)
        }]
    );
}

// ---- §3.10 leadership transfer -------------------------------------------------------------

/// Leadership transfer: proposals are refused meanwhile, the successor gets TimeoutNow once
/// caught up and wins the next term.
#[test]
fn test_leader_transfer() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolated.insert(3);
    c.step(
        1,
        Input::Propose {
            cmd: cmd(1, 1, "a"),
            fast: false,
        },
    );
    c.stabilize();
    c.isolated.clear();
    c.step(1, Input::TransferLeader { to: 3 });
    c.step(
        1,
        Input::Propose {
            cmd: cmd(1, 2, "b"),
            fast: false,
        },
    );
    assert!(c.out(1).events.contains(&Event::Rejected {
        id: cmd(1, 2, "b").id,
        reason: Rejection::LeaderTransfer
    }));
    c.stabilize();
    assert_eq!(c.cores[&3].status().role, Role::Leader);
    assert_eq!(c.cores[&1].status().role, Role::Follower);
    assert_eq!(c.cores[&3].status().term, 2);
}

/// The harness itself: a 5-member cluster elects, replicates and applies everywhere.
#[test]
fn test_cluster_replicates_everywhere() {
    let mut c = Cluster::new(5);
    c.elect(3);
    for seq in 1..=5 {
        c.step(
            3,
            Input::Propose {
                cmd: cmd(1, seq, "k"),
                fast: false,
            },
        );
    }
    c.stabilize();
    c.heartbeat(3);
    for id in 1..=5 {
        let applied: Vec<u64> = c.applied_ids(id).iter().map(|a| a.0).collect();
        assert_eq!(applied, (1..=6).collect::<Vec<_>>(), "member {id}");
    }
}

/// Simulation finding F1: a write acknowledged before the leader's commit index covers it (here
/// a fast proposal, appended but not committed) is covered by a later read: the read index is
/// the leader's last index, answered only once committed.
#[test]
fn test_read_index_covers_appended_uncommitted_writes() {
    let mut core = leader_of_three();
    deliver(&mut core, 2, append_ok(1, 1));
    drain(&mut core);
    core.step(Input::Propose {
        cmd: cmd(1, 1, "a"),
        fast: true,
    });
    drain(&mut core);
    core.step(Input::ReadIndex { id: 5 });
    drain(&mut core);
    deliver(
        &mut core,
        3,
        Message::AppendResponse {
            term: 1,
            success: true,
            index: 1,
            read_round: 1,
        },
    );
    assert!(
        drain(&mut core).events.is_empty(),
        "confirmed, but index 2 not committed"
    );
    deliver(&mut core, 3, append_ok(1, 2));
    assert_eq!(
        drain(&mut core).events,
        vec![Event::ReadIndex {
            id: 5,
            result: Ok(2)
        }]
    );
}
