//! CURP on top of Raft: witness records, fast proposals, origin commit, recovery on election
//! and exactly-once (CURP.md sections 2-5, D2, D5).

use super::harness::{Cluster, cmd, config, voters};
use crate::core::{
    CommandData, Core, Entry, EntryKind, Envelope, Event, Input, Message, Rejection, Restored,
    Role, WitnessOp,
};

/// Records `c` at member `id` with the member's current term and version.
fn record(cluster: &mut Cluster, id: u64, c: &CommandData) {
    let st = cluster.cores[&id].status();
    cluster.step(
        id,
        Input::Record {
            cmd: c.clone(),
            term: st.term,
            cluster_version: st.membership.version,
        },
    );
}

fn recorded(cluster: &Cluster, id: u64) -> Vec<bool> {
    cluster
        .out(id)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Recorded { accepted, .. } => Some(*accepted),
            _ => None,
        })
        .collect()
}

/// W1/W2/P2: a witness accepts a record only in its term and cluster version, without a
/// conflict, and journals it in the same Ready that carries the answer.
#[test]
fn record_checks_term_version_conflict_and_journals() {
    let mut core = Core::new(
        config(2),
        Restored {
            membership: voters(3),
            ..Restored::default()
        },
    );
    core.step(Input::Message(Envelope {
        from: 1,
        to: 2,
        msg: Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: Vec::new(),
            commit: 0,
            read_round: 0,
        },
    }));
    core.ready();
    core.advance();
    let a = cmd(1, 1, "a");
    let rec = |c: &CommandData, term, cluster_version| Input::Record {
        cmd: c.clone(),
        term,
        cluster_version,
    };
    core.step(rec(&a, 1, 0));
    let rd = core.ready();
    assert_eq!(
        rd.witness,
        vec![WitnessOp::Insert {
            cmd: a.clone(),
            term: 1,
            cluster_version: 0
        }]
    );
    assert_eq!(
        rd.events,
        vec![Event::Recorded {
            id: a.id,
            accepted: true,
            term: 1
        }]
    );
    core.advance();
    // Stale term, wrong version, conflicting key: refused, nothing journaled.
    core.step(rec(&cmd(1, 2, "b"), 0, 0));
    core.step(rec(&cmd(1, 3, "b"), 1, 4));
    core.step(rec(&cmd(1, 4, "a"), 1, 0));
    let rd = core.ready();
    assert!(rd.witness.is_empty());
    assert!(rd.events.iter().all(|e| matches!(
        e,
        Event::Recorded {
            accepted: false,
            ..
        }
    )));
    assert_eq!(rd.events.len(), 3);
}

/// L2: at the leader a fast proposal is appended, speculated when conflict-free, and answered
/// with `Proposed`; a conflicting one (witness or UCP) or a slow one is not speculated.
#[test]
fn leader_fast_propose_conflicts() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let a = cmd(1, 1, "a");
    let a2 = cmd(2, 1, "a");
    let b = cmd(3, 1, "b");
    c.step(
        1,
        Input::Propose {
            cmd: a.clone(),
            fast: true,
        },
    );
    c.step(
        1,
        Input::Propose {
            cmd: a2.clone(),
            fast: true,
        },
    );
    c.step(
        1,
        Input::Propose {
            cmd: b.clone(),
            fast: false,
        },
    );
    let term = c.cores[&1].status().term;
    assert_eq!(
        c.out(1).events,
        vec![
            Event::Proposed {
                id: a.id,
                conflict: false,
                term
            },
            Event::Proposed {
                id: a2.id,
                conflict: true,
                term
            },
        ]
    );
    assert_eq!(c.out(1).speculated, vec![a.clone()]);
    // Every proposal is in the log, in arrival order.
    let ids: Vec<_> = c.cores[&1]
        .log()
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Command { cmd, .. } => Some(cmd.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![a.id, a2.id, b.id]);
    // Once applied, the key is free again (witness and UCP purged).
    c.stabilize();
    c.heartbeat(1);
    let a3 = cmd(4, 1, "a");
    c.step(
        1,
        Input::Propose {
            cmd: a3.clone(),
            fast: true,
        },
    );
    assert_eq!(c.out(1).speculated.last(), Some(&a3));
}

/// P5: a new leader answers `conflict` until its no-op is applied (the UCP may miss
/// committed-but-unapplied commands until then).
#[test]
fn new_leader_forces_conflict_until_noop_applied() {
    let mut c = Cluster::new(3);
    c.auto_apply = false;
    c.elect(1);
    let a = cmd(1, 1, "a");
    c.step(
        1,
        Input::Propose {
            cmd: a.clone(),
            fast: true,
        },
    );
    assert!(matches!(
        c.out(1).events[..],
        [Event::Proposed { conflict: true, .. }]
    ));
    assert!(c.out(1).speculated.is_empty());
    c.step(1, Input::Applied { index: 1 });
    let b = cmd(1, 2, "b");
    c.step(
        1,
        Input::Propose {
            cmd: b.clone(),
            fast: true,
        },
    );
    assert_eq!(c.out(1).speculated, vec![b]);
}

/// A follower forwards proposals to the leader; without a leader it refuses.
#[test]
fn follower_forwards_or_rejects_proposals() {
    let mut c = Cluster::new(3);
    let a = cmd(1, 1, "a");
    c.step(
        2,
        Input::Propose {
            cmd: a.clone(),
            fast: true,
        },
    );
    assert_eq!(
        c.out(2).events,
        vec![Event::Rejected {
            id: a.id,
            reason: Rejection::NotLeader {
                leader: None,
                term: 0
            }
        }]
    );
    c.elect(1);
    c.core(2).step(Input::Propose {
        cmd: a.clone(),
        fast: false,
    });
    let rd = c.core(2).ready();
    let term = c.cores[&2].status().term;
    assert_eq!(
        rd.messages,
        vec![Envelope {
            from: 2,
            to: 1,
            msg: Message::Propose { term, cmd: a }
        }]
    );
}

/// D2: the origin commits from the replicas' acknowledgements, before the leader's commit
/// index reaches it: member 3 (not the origin) has not applied the entry yet.
#[test]
fn origin_commits_from_persist_acks() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    let a = cmd(1, 1, "a");
    c.step(
        2,
        Input::Propose {
            cmd: a.clone(),
            fast: false,
        },
    );
    c.stabilize();
    let applied = |c: &Cluster, id| c.applied_ids(id).iter().any(|x| x.1 == Some(a.id));
    assert!(applied(&c, 2), "the origin applied its command");
    assert!(
        !applied(&c, 3),
        "member 3 waits for the leader's commit index"
    );
    assert!(applied(&c, 1));
    c.heartbeat(1);
    assert!(applied(&c, 3));
}

/// O1: when the origin's acknowledgements are lost, the leader's commit reaches the origin as
/// soon as the leader commits, not with the next heartbeat; members that wait for nothing get
/// no extra message.
#[test]
fn leader_pushes_commit_to_waiting_origin() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    let a = cmd(1, 1, "a");
    c.step(
        2,
        Input::Propose {
            cmd: a.clone(),
            fast: false,
        },
    );
    let mut heartbeats_to_3 = 0;
    while let Some(env) = c.queue.pop_front() {
        match &env.msg {
            Message::PersistAck { .. } => continue,
            Message::Append { entries, .. } if entries.is_empty() && env.to == 3 => {
                heartbeats_to_3 += 1;
            }
            _ => {}
        }
        let to = env.to;
        c.core(to).step(Input::Message(env));
        c.process(to);
    }
    let applied = |c: &Cluster, id| c.applied_ids(id).iter().any(|x| x.1 == Some(a.id));
    assert!(applied(&c, 1));
    assert!(
        applied(&c, 2),
        "the origin learned the commit without acknowledgements or a heartbeat"
    );
    assert!(!applied(&c, 3), "member 3 waits for the next heartbeat");
    assert_eq!(heartbeats_to_3, 0);
    c.heartbeat(1);
    assert!(applied(&c, 3));
}

/// D2: acknowledgements of an older term never commit (the acked entry may be overwritten).
#[test]
fn origin_ignores_acks_of_other_terms() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.cores[&2].status().term;
    let commit = c.cores[&2].status().commit;
    for from in [1, 3] {
        c.step(
            2,
            Input::Message(Envelope {
                from,
                to: 2,
                msg: Message::PersistAck {
                    term,
                    index: 1,
                    entry_term: term - 1,
                },
            }),
        );
    }
    assert_eq!(c.cores[&2].status().commit, commit);
}

/// E3: a command recorded at a superquorum of witnesses (the leader's included) survives the
/// leader's loss: the next leader finds it in `r` of its majority's pools and re-appends it
/// after its no-op.
#[test]
fn new_leader_recovers_fast_command() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    let x = cmd(1, 1, "x");
    record(&mut c, 2, &x);
    record(&mut c, 3, &x);
    assert_eq!((recorded(&c, 2), recorded(&c, 3)), (vec![true], vec![true]));
    // The leader takes it fast but is cut off before replicating it.
    c.isolated.insert(1);
    c.step(
        1,
        Input::Propose {
            cmd: x.clone(),
            fast: true,
        },
    );
    c.stabilize();
    c.tick(3, 10);
    c.elect(2);
    c.heartbeat(2);
    let log = c.cores[&2].log().to_vec();
    let recovered: Vec<&Entry> = log
        .iter()
        .filter(|e| matches!(&e.kind, EntryKind::Command { cmd, .. } if cmd.id == x.id))
        .collect();
    assert_eq!(recovered.len(), 1);
    assert!(matches!(
        log[recovered[0].index as usize - 2].kind,
        EntryKind::Empty
    ));
    assert!(
        c.applied_ids(3).iter().any(|a| a.1 == Some(x.id)),
        "recovered and applied"
    );
    // The old leader rejoins: its unreplicated copy is overwritten, x applies once.
    c.isolated.clear();
    // Entries sent while it was cut off are resent after the retransmission timeout.
    for _ in 0..config(2).election_tick {
        c.heartbeat(2);
    }
    let at_1: Vec<_> = c
        .applied_ids(1)
        .into_iter()
        .filter(|a| a.1 == Some(x.id))
        .collect();
    assert_eq!(at_1.len(), 1);
    assert!(!at_1[0].2, "not a duplicate");
}

/// E3, P3: recovery skips commands already in the new leader's log or already executed, and
/// commands found in fewer than `r` pools.
#[test]
fn recovery_skips_logged_applied_and_rare_commands() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    let done = cmd(1, 1, "d");
    c.step(
        1,
        Input::Propose {
            cmd: done.clone(),
            fast: false,
        },
    );
    c.stabilize();
    c.heartbeat(1);
    // Late records of an applied command are refused (P3).
    record(&mut c, 2, &done);
    assert_eq!(recorded(&c, 2), vec![false]);
    let rare = cmd(2, 1, "r");
    record(&mut c, 3, &rare);
    c.isolated.insert(1);
    c.tick(3, 10);
    c.elect(2);
    let ids: Vec<_> = c.cores[&2]
        .log()
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Command { cmd, .. } => Some(cmd.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![done.id], "nothing recovered");
}

/// D5/DD2: a retried proposal id commits again but is marked duplicate everywhere, also after
/// a restart (the table is rebuilt from the log).
#[test]
fn duplicates_are_flagged_in_log_order_and_after_restart() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let a = cmd(1, 1, "a");
    c.step(
        1,
        Input::Propose {
            cmd: a.clone(),
            fast: false,
        },
    );
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
        let flags: Vec<bool> = c
            .applied_ids(id)
            .iter()
            .filter(|x| x.1 == Some(a.id))
            .map(|x| x.2)
            .collect();
        assert_eq!(flags, vec![false, true], "member {id}");
    }
    c.restart(2);
    c.stabilize();
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

/// P3/S2: witness records are removed (and the removal journaled) once their command applied.
#[test]
fn witness_purged_on_apply() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    let a = cmd(1, 1, "a");
    record(&mut c, 2, &a);
    assert_eq!(c.cores[&2].witness_records(), vec![a.clone()]);
    c.step(
        1,
        Input::Propose {
            cmd: a.clone(),
            fast: true,
        },
    );
    c.stabilize();
    c.heartbeat(1);
    assert!(c.cores[&2].witness_records().is_empty());
    assert!(c.disks[&2].witness.contains(&WitnessOp::Remove(vec![a.id])));
    // A restart replays the journal: still empty.
    c.restart(2);
    assert!(c.cores[&2].witness_records().is_empty());
    assert_eq!(c.cores[&2].status().role, Role::Follower);
}

/// Whether any member's witness holds a record of client `client_id`.
fn witnessed_client(c: &Cluster, client_id: u64) -> Vec<u64> {
    c.cores
        .iter()
        .filter(|(_, core)| {
            core.witness_records()
                .iter()
                .any(|r| r.id.client_id == client_id)
        })
        .map(|(id, _)| *id)
        .collect()
}

/// P3, DD4: a client's id lease expires. The leader replicates the expiry; once applied, every
/// member purges the client's witness records, refuses new ones, and flags any later copy of
/// its commands duplicate (the dedup table keeps a tombstone). Other members ignore the input.
#[test]
fn client_expiry_purges_witnesses_and_dedup_state() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    // An applied command of client 5, and an orphan (recorded, never proposed).
    let done = cmd(5, 1, "a");
    c.step(
        1,
        Input::Propose {
            cmd: done.clone(),
            fast: false,
        },
    );
    c.stabilize();
    c.heartbeat(1);
    let orphan = cmd(5, 2, "b");
    let other = cmd(6, 1, "c");
    for id in 1..=3 {
        record(&mut c, id, &orphan);
        record(&mut c, id, &other);
    }
    assert_eq!(witnessed_client(&c, 5), vec![1, 2, 3]);
    // A follower does not track client leases.
    let last = c.cores[&2].status().last_index;
    c.step(2, Input::ExpireClient { client_id: 5 });
    c.stabilize();
    assert_eq!(c.cores[&2].status().last_index, last);
    c.step(1, Input::ExpireClient { client_id: 5 });
    c.stabilize();
    c.heartbeat(1);
    for id in 1..=3 {
        let expired = c
            .out(id)
            .committed
            .iter()
            .any(|e| e.entry.kind == EntryKind::ClientExpired(5));
        assert!(expired, "member {id} applied the expiry");
    }
    assert!(witnessed_client(&c, 5).is_empty(), "records purged");
    assert_eq!(
        witnessed_client(&c, 6),
        vec![1, 2, 3],
        "other clients untouched"
    );
    // Expiring twice appends nothing.
    let last = c.cores[&1].status().last_index;
    c.step(1, Input::ExpireClient { client_id: 5 });
    assert_eq!(c.cores[&1].status().last_index, last);
    // New records of the client are refused with a distinct reason, and so are its
    // proposals, at the leader and at a follower (which does not forward them): nothing of it
    // is appended any more, so the client knows a refused attempt never executes.
    let refused = |c: &Cluster, id: u64, x: &CommandData| {
        c.out(id).events.iter().any(|e| {
            *e == Event::Rejected {
                id: x.id,
                reason: Rejection::ClientExpired,
            }
        })
    };
    let late_record = cmd(5, 3, "d");
    let answers = recorded(&c, 2).len();
    record(&mut c, 2, &late_record);
    assert!(refused(&c, 2, &late_record), "record refused");
    assert_eq!(recorded(&c, 2).len(), answers, "no Recorded answer");
    for (member, late, fast) in [
        (1, done.clone(), false),
        (1, cmd(5, 4, "e"), true),
        (2, cmd(5, 5, "f"), false),
    ] {
        let last = c.cores[&1].status().last_index;
        c.step(
            member,
            Input::Propose {
                cmd: late.clone(),
                fast,
            },
        );
        assert!(
            refused(&c, member, &late),
            "{:?} refused at {member}",
            late.id
        );
        c.stabilize();
        assert_eq!(c.cores[&1].status().last_index, last, "nothing appended");
        assert!(
            !c.cores[&1]
                .witness_records()
                .iter()
                .any(|r| r.id == late.id),
            "the leader's witness holds no record of it"
        );
    }
    // A client that is not expired is not affected.
    let live = cmd(6, 2, "g");
    let last = c.cores[&1].status().last_index;
    c.step(
        1,
        Input::Propose {
            cmd: live,
            fast: false,
        },
    );
    assert_eq!(c.cores[&1].status().last_index, last + 1);
    c.stabilize();
    let executions = c
        .applied_ids(1)
        .iter()
        .filter(|x| x.1 == Some(done.id) && !x.2)
        .count();
    assert_eq!(executions, 1);
}

/// DD4: a new leader that has not applied the expiry yet may still collect the expired
/// client's records from the majority's pools and re-append them; the expiry precedes them in
/// the log, so they are flagged duplicate and never execute.
#[test]
fn records_of_an_expired_client_never_execute_after_failover() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    let orphan = cmd(5, 1, "a");
    for id in 1..=3 {
        record(&mut c, id, &orphan);
    }
    // The followers persist the expiry but do not learn that it committed.
    c.step(1, Input::ExpireClient { client_id: 5 });
    c.stabilize();
    assert!(
        c.cores[&2]
            .witness_records()
            .iter()
            .any(|r| r.id == orphan.id)
    );
    c.isolated.insert(1);
    c.tick(3, 10);
    c.elect(2);
    c.heartbeat(2);
    for id in [2, 3] {
        let copies: Vec<bool> = c
            .applied_ids(id)
            .iter()
            .filter(|x| x.1 == Some(orphan.id))
            .map(|x| x.2)
            .collect();
        assert!(
            !copies.is_empty() && copies.iter().all(|dup| *dup),
            "member {id}: the recovered copy must be applied as a duplicate: {copies:?}"
        );
    }
    assert!(witnessed_client(&c, 5).is_empty());
}

/// DD4: compaction never loses dedup state of a live client: after a snapshot, a retry of any
/// executed id at or above the client's `first_incomplete` is still a duplicate, on the member
/// that compacted, after its restart, and on a member that installs the snapshot.
#[test]
fn compaction_keeps_dedup_state_of_live_clients() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    c.isolated.insert(3);
    let mut executed = Vec::new();
    for seq in 1..=6u64 {
        let mut x = cmd(7, seq, &format!("k{seq}"));
        // The client consumed the replies below 4 only.
        x.first_incomplete = seq.min(4);
        c.step(
            1,
            Input::Propose {
                cmd: x.clone(),
                fast: false,
            },
        );
        c.stabilize();
        executed.push(x);
    }
    c.heartbeat(1);
    let applied = c.cores[&1].status().applied;
    for id in [1, 2] {
        c.step(
            id,
            Input::SnapshotTaken {
                index: applied,
                data: bytes::Bytes::from_static(b"sm"),
            },
        );
        assert_eq!(c.cores[&id].snapshot_boundary().0, applied);
    }
    c.restart(2);
    c.isolated.remove(&3);
    c.heartbeat(1);
    c.heartbeat(1);
    assert_eq!(
        c.out(3).installed.len(),
        1,
        "member 3 installed the snapshot"
    );
    for x in &executed {
        for id in 1..=3 {
            c.step(
                id,
                Input::Record {
                    cmd: x.clone(),
                    term: c.cores[&id].status().term,
                    cluster_version: c.cores[&id].status().membership.version,
                },
            );
            assert_eq!(
                recorded(&c, id).last(),
                Some(&false),
                "member {id} accepted a record of executed {:?}",
                x.id
            );
        }
        c.step(
            1,
            Input::Propose {
                cmd: x.clone(),
                fast: false,
            },
        );
        c.stabilize();
        c.heartbeat(1);
        for id in 1..=3 {
            let last = c.out(id).committed.iter().rev().find(
                |e| matches!(&e.entry.kind, EntryKind::Command { cmd, .. } if cmd.id == x.id),
            );
            assert!(
                last.is_some_and(|e| e.duplicate),
                "member {id}: retry of {:?} not flagged duplicate",
                x.id
            );
        }
    }
}

/// P3: a new leader learns the clients of every record in the pools collected at its election,
/// recovered or not (here: an orphan held by one witness, below the recover quorum), so its
/// driver can start their leases; once it expires one, the orphan is purged everywhere.
#[test]
fn new_leader_reports_clients_of_collected_records() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    let orphan = cmd(9, 1, "z");
    record(&mut c, 3, &orphan);
    assert_eq!(recorded(&c, 3).last(), Some(&true));
    assert!(
        c.cores[&1].leader_clients().is_empty(),
        "member 1 never saw it"
    );
    c.isolated.insert(1);
    c.tick(3, 10);
    c.elect(2);
    c.heartbeat(2);
    assert!(
        !c.cores[&2]
            .witness_records()
            .iter()
            .any(|r| r.id == orphan.id),
        "one pool is below the recover quorum: not recovered"
    );
    assert_eq!(
        c.cores[&2].leader_clients().into_iter().collect::<Vec<_>>(),
        vec![9]
    );
    assert!(
        c.cores[&3].leader_clients().is_empty(),
        "a follower reports none"
    );
    c.step(2, Input::ExpireClient { client_id: 9 });
    c.stabilize();
    c.heartbeat(2);
    assert!(witnessed_client(&c, 9).is_empty(), "orphan purged");
    assert!(
        c.cores[&2].leader_clients().is_empty(),
        "expired clients are left out"
    );
}

/// DD4: once a client's expiry is in the leader's log, even before it is committed or
/// applied, the leader refuses the client's proposals: a command appended after the tombstone
/// would be skipped as a duplicate when applied, so a fast-path answer for it would be an
/// acknowledged write that is lost.
#[test]
fn proposals_after_an_unapplied_expiry_are_refused() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat(1);
    c.step(1, Input::ExpireClient { client_id: 5 });
    // Not stabilized: the tombstone is appended at the leader, not committed.
    let last = c.cores[&1].status().last_index;
    assert!(
        c.cores[&1].status().commit < last,
        "expiry still uncommitted"
    );
    let late = cmd(5, 1, "a");
    c.step(
        1,
        Input::Propose {
            cmd: late.clone(),
            fast: true,
        },
    );
    assert_eq!(c.cores[&1].status().last_index, last, "nothing appended");
    assert!(
        c.out(1).events.contains(&Event::Rejected {
            id: late.id,
            reason: Rejection::ClientExpired,
        }),
        "refused with the expiry reason"
    );
    // A record at the leader's own witness is refused the same way.
    record(&mut c, 1, &late);
    assert!(witnessed_client(&c, 5).is_empty(), "no record held");
}
