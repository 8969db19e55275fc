//! Raft ordering, tested section by section against the Raft paper (raft-rs
//! `test_raft_paper.rs` style): single members fed messages, asserting exactly what they emit.

use super::harness::{Cluster, cmd, config, voters};
use crate::core::{
    Config, Core, Entry, EntryKind, Envelope, Input, LogIndex, Message, NodeId, Ready, Restored,
    Role, Term,
};
use crate::storage::HardState;

/// A fresh member `id` of a cluster of voters `1..=n`.
pub(super) fn member(id: NodeId, n: u64) -> Core {
    member_with(config(id), n, Vec::new(), 0)
}

/// A member restored with `entries` at `term`.
pub(super) fn member_with(cfg: Config, n: u64, entries: Vec<Entry>, term: Term) -> Core {
    Core::new(
        cfg,
        Restored {
            hard_state: HardState {
                term,
                vote: 0,
                commit: 0,
            },
            entries,
            membership: voters(n),
            ..Restored::default()
        },
    )
}

/// Entries with these terms at indices 1, 2, ...
pub(super) fn entries(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &term)| Entry {
            index: i as u64 + 1,
            term,
            kind: EntryKind::Empty,
        })
        .collect()
}

pub(super) fn deliver(core: &mut Core, from: NodeId, msg: Message) {
    let to = core.status().id;
    core.step(Input::Message(Envelope { from, to, msg }));
}

/// Takes the Ready and acknowledges it as persisted.
pub(super) fn drain(core: &mut Core) -> Ready {
    let rd = core.ready();
    core.advance();
    rd
}

pub(super) fn env(from: NodeId, to: NodeId, msg: Message) -> Envelope {
    Envelope { from, to, msg }
}

/// Ticks until `core` leaves the follower role (at most 2 election timeouts).
pub(super) fn time_out(core: &mut Core) {
    for _ in 0..2 * core.cfg.election_tick {
        core.tick();
        if core.status().role != Role::Follower {
            return;
        }
    }
    panic!("no election timeout");
}

/// A member of 3 that has won the election of term 1 (its no-op is at index 1).
pub(super) fn leader_of_three() -> Core {
    let mut cfg = config(1);
    cfg.pre_vote = false;
    let mut core = member_with(cfg, 3, Vec::new(), 0);
    time_out(&mut core);
    drain(&mut core);
    deliver(&mut core, 2, vote_granted(1));
    assert_eq!(core.status().role, Role::Leader);
    drain(&mut core);
    core
}

pub(super) fn vote_granted(term: Term) -> Message {
    Message::VoteResponse {
        term,
        granted: true,
        pre_vote: false,
        witness: Vec::new(),
    }
}

pub(super) fn append_ok(term: Term, index: LogIndex) -> Message {
    Message::AppendResponse {
        term,
        success: true,
        index,
        read_round: 0,
    }
}

// ---- §5.1 terms ----------------------------------------------------------------------------

/// §5.1: a member seeing a higher term adopts it and becomes a follower (of the sender, for a
/// leader's message).
#[test]
fn test_update_term_from_message() {
    for role in [Role::Follower, Role::Candidate, Role::Leader] {
        let mut core = match role {
            Role::Leader => leader_of_three(),
            _ => member(1, 3),
        };
        if role == Role::Candidate {
            core.cfg.pre_vote = false;
            time_out(&mut core);
        }
        deliver(
            &mut core,
            2,
            Message::Append {
                term: 5,
                prev_index: 0,
                prev_term: 0,
                entries: Vec::new(),
                commit: 0,
                read_round: 0,
            },
        );
        let st = core.status();
        assert_eq!(
            (st.role, st.term, st.leader),
            (Role::Follower, 5, Some(2)),
            "{role:?}"
        );
    }
}

/// §5.1: a stale-term request is refused with the current term, so the stale leader steps
/// down.
#[test]
fn test_reject_stale_term_message() {
    let mut core = member_with(config(1), 3, entries(&[1, 2]), 2);
    drain(&mut core);
    deliver(
        &mut core,
        2,
        Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: entries(&[1]),
            commit: 0,
            read_round: 0,
        },
    );
    let rd = drain(&mut core);
    assert_eq!(
        rd.messages,
        vec![env(
            1,
            2,
            Message::AppendResponse {
                term: 2,
                success: false,
                index: 2,
                read_round: 0
            }
        )]
    );
    assert_eq!(core.status().last_index, 2);
}

// ---- §5.2 leader election ------------------------------------------------------------------

/// §5.2: members start as followers without a leader.
#[test]
fn test_start_as_follower() {
    let core = member(1, 3);
    let st = core.status();
    assert_eq!((st.role, st.term, st.leader), (Role::Follower, 0, None));
}

/// §5.2: a leader sends heartbeats (empty Appends carrying its commit) every heartbeat tick.
#[test]
fn test_leader_bcast_beat() {
    let mut core = leader_of_three();
    core.tick();
    let rd = drain(&mut core);
    // Nobody acknowledged the no-op: both followers are resent it.
    let to: Vec<NodeId> = rd.messages.iter().map(|m| m.to).collect();
    assert_eq!(to, vec![2, 3]);
    for m in &rd.messages {
        assert!(matches!(m.msg, Message::Append { term: 1, .. }), "{m:?}");
    }
    // Once both acknowledged, heartbeats carry no entries.
    deliver(&mut core, 2, append_ok(1, 1));
    deliver(&mut core, 3, append_ok(1, 1));
    drain(&mut core);
    core.tick();
    let rd = drain(&mut core);
    assert_eq!(
        rd.messages,
        vec![
            env(1, 2, heartbeat(1, 1, 1, 1)),
            env(1, 3, heartbeat(1, 1, 1, 1)),
        ]
    );
}

pub(super) fn heartbeat(
    term: Term,
    prev_index: LogIndex,
    prev_term: Term,
    commit: LogIndex,
) -> Message {
    Message::Append {
        term,
        prev_index,
        prev_term,
        entries: Vec::new(),
        commit,
        read_round: 0,
    }
}

/// §5.2 + §9.6: with pre-vote, a follower that times out asks for pre-votes at term + 1 without
/// changing its own term; a majority of pre-votes starts the real election.
#[test]
fn test_follower_start_pre_vote_then_election() {
    let mut core = member(1, 3);
    time_out(&mut core);
    let rd = drain(&mut core);
    assert_eq!(core.status().role, Role::PreCandidate);
    assert_eq!(core.status().term, 0);
    assert_eq!(rd.hard_state, None, "a pre-vote changes nothing durable");
    let pre = Message::Vote {
        term: 1,
        last_index: 0,
        last_term: 0,
        pre_vote: true,
    };
    assert_eq!(rd.messages, vec![env(1, 2, pre.clone()), env(1, 3, pre)]);
    deliver(
        &mut core,
        3,
        Message::VoteResponse {
            term: 1,
            granted: true,
            pre_vote: true,
            witness: Vec::new(),
        },
    );
    let rd = drain(&mut core);
    assert_eq!(core.status().role, Role::Candidate);
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: 1,
            commit: 0
        })
    );
    // Real vote requests go out only once the own vote is durable.
    assert!(rd.messages.is_empty());
    let vote = Message::Vote {
        term: 1,
        last_index: 0,
        last_term: 0,
        pre_vote: false,
    };
    assert_eq!(
        rd.persisted_messages,
        vec![env(1, 2, vote.clone()), env(1, 3, vote)]
    );
}

/// §5.2: a candidate wins with a majority, loses with a majority of refusals, else waits.
#[test]
fn test_leader_election_in_one_round_rpc() {
    // (cluster size, granted by, refused by, expected role)
    let cases: &[(u64, &[NodeId], &[NodeId], Role)] = &[
        (1, &[], &[], Role::Leader),
        (3, &[2], &[], Role::Leader),
        (3, &[2, 3], &[], Role::Leader),
        (5, &[2, 3], &[], Role::Leader),
        (5, &[2], &[], Role::Candidate),
        (3, &[], &[2, 3], Role::Follower),
        (5, &[], &[2, 3, 4], Role::Follower),
        (5, &[2], &[3, 4], Role::Candidate),
    ];
    for &(n, granted, refused, expected) in cases {
        let mut cfg = config(1);
        cfg.pre_vote = false;
        let mut core = member_with(cfg, n, Vec::new(), 0);
        time_out(&mut core);
        drain(&mut core);
        for &v in granted {
            deliver(&mut core, v, vote_granted(1));
        }
        for &v in refused {
            deliver(
                &mut core,
                v,
                Message::VoteResponse {
                    term: 1,
                    granted: false,
                    pre_vote: false,
                    witness: Vec::new(),
                },
            );
        }
        assert_eq!(
            core.status().role,
            expected,
            "n={n} granted={granted:?} refused={refused:?}"
        );
    }
}

/// §5.2: a voter grants at most one vote per term, first come first served (and repeats a
/// granted vote to the same candidate).
#[test]
fn test_follower_vote() {
    let vote = |term| Message::Vote {
        term,
        last_index: 0,
        last_term: 0,
        pre_vote: false,
    };
    let mut core = member(1, 3);
    deliver(&mut core, 2, vote(1));
    deliver(&mut core, 3, vote(1));
    deliver(&mut core, 2, vote(1));
    let rd = drain(&mut core);
    let answers: Vec<(NodeId, bool)> = rd
        .persisted_messages
        .iter()
        .map(|m| match m.msg {
            Message::VoteResponse { granted, .. } => (m.to, granted),
            _ => panic!("unexpected {m:?}"),
        })
        .collect();
    assert_eq!(answers, vec![(2, true), (3, false), (2, true)]);
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: 2,
            commit: 0
        })
    );
    assert!(rd.messages.is_empty(), "votes are sent only once durable");
}

/// §5.2: a candidate hearing from a leader of its term steps back to follower.
#[test]
fn test_candidate_fallback() {
    let mut cfg = config(1);
    cfg.pre_vote = false;
    let mut core = member_with(cfg, 3, Vec::new(), 0);
    time_out(&mut core);
    assert_eq!(core.status().role, Role::Candidate);
    deliver(&mut core, 2, heartbeat(1, 0, 0, 0));
    let st = core.status();
    assert_eq!((st.role, st.term, st.leader), (Role::Follower, 1, Some(2)));
}

/// §5.2: election timeouts are randomized in `[election_tick, 2 * election_tick)`, and the
/// same seed gives the same timeouts.
#[test]
fn test_follower_election_timeout_randomized() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..50 {
        let cfg = Config { seed, ..config(1) };
        let mut core = member_with(cfg.clone(), 3, Vec::new(), 0);
        let mut ticks = 0;
        while core.status().role == Role::Follower {
            core.tick();
            ticks += 1;
        }
        assert!((10..20).contains(&ticks), "timeout {ticks}");
        seen.insert(ticks);
        let mut again = member_with(cfg, 3, Vec::new(), 0);
        for _ in 0..ticks - 1 {
            again.tick();
        }
        assert_eq!(
            again.status().role,
            Role::Follower,
            "same seed, same timeout"
        );
    }
    assert!(seen.len() > 3, "timeouts vary with the seed: {seen:?}");
}

// ---- §5.3 log replication ------------------------------------------------------------------

/// §5.3: a new leader appends a no-op of its term and replicates at once; a proposal is
/// appended and sent to every follower.
#[test]
fn test_leader_start_replication() {
    let mut core = leader_of_three();
    assert_eq!(core.log()[0].kind, EntryKind::Empty);
    let c = cmd(1, 1, "a");
    core.step(Input::Propose {
        cmd: c.clone(),
        fast: false,
    });
    let rd = drain(&mut core);
    let entry = Entry {
        index: 2,
        term: 1,
        kind: EntryKind::Command { cmd: c, origin: 1 },
    };
    assert_eq!(rd.entries, vec![entry.clone()]);
    let append = Message::Append {
        term: 1,
        prev_index: 1,
        prev_term: 1,
        entries: vec![entry],
        commit: 0,
        read_round: 0,
    };
    assert_eq!(
        rd.messages,
        vec![env(1, 2, append.clone()), env(1, 3, append)]
    );
}

/// §5.3 + §5.4.2: an entry commits once durable on a majority, the leader's own copy counting
/// only after `advance`; committed entries are handed out once, in order.
#[test]
fn test_leader_commit_entry_counts_itself_after_persistence() {
    let mut cfg = config(1);
    cfg.pre_vote = false;
    let mut core = member_with(cfg, 3, Vec::new(), 0);
    time_out(&mut core);
    drain(&mut core);
    deliver(&mut core, 2, vote_granted(1));
    // Leader; its no-op is not durable yet. Follower 2 acknowledges it.
    deliver(&mut core, 2, append_ok(1, 1));
    let rd = core.ready();
    assert!(rd.committed.is_empty(), "own copy not durable: only 1 of 3");
    assert_eq!(core.status().commit, 0);
    core.advance();
    assert_eq!(core.status().commit, 1);
    let rd = drain(&mut core);
    assert_eq!(rd.committed.len(), 1);
    assert_eq!(rd.hard_state.map(|h| h.commit), Some(1));
    assert!(drain(&mut core).committed.is_empty(), "handed out once");
}

/// §5.3: a follower appends matching entries, learns the commit index (bounded by what it
/// holds), and acknowledges after persistence.
#[test]
fn test_follower_commit_entry() {
    let mut core = member(2, 3);
    let es = entries(&[1, 1]);
    deliver(
        &mut core,
        1,
        Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: es.clone(),
            commit: 5,
            read_round: 0,
        },
    );
    let rd = drain(&mut core);
    assert_eq!(rd.entries, es);
    assert_eq!(
        rd.committed.len(),
        2,
        "commit = min(leader commit, last new entry)"
    );
    assert!(rd.messages.is_empty());
    assert_eq!(rd.persisted_messages, vec![env(2, 1, append_ok(1, 2))]);
}

/// §5.3: the consistency check fails when the follower lacks `prev` or has another term
/// there; the answer carries a hint that skips the conflicting term.
#[test]
fn test_follower_check_append() {
    // (prev_index, prev_term, success, index in the answer)
    let cases = [
        (2, 2, true, 2),
        (3, 2, false, 2),
        (2, 1, false, 1),
        (0, 0, true, 0),
    ];
    for (prev_index, prev_term, success, index) in cases {
        let mut core = member_with(config(2), 3, entries(&[1, 2]), 2);
        deliver(&mut core, 1, heartbeat_at(2, prev_index, prev_term));
        let rd = drain(&mut core);
        assert_eq!(
            rd.persisted_messages,
            vec![env(
                2,
                1,
                Message::AppendResponse {
                    term: 2,
                    success,
                    index,
                    read_round: 0
                }
            )],
            "prev ({prev_index}, {prev_term})"
        );
    }
}

fn heartbeat_at(term: Term, prev_index: LogIndex, prev_term: Term) -> Message {
    heartbeat(term, prev_index, prev_term, 0)
}

/// §5.3: conflicting suffixes are truncated, matching entries kept, new ones appended.
#[test]
fn test_follower_append_entries() {
    // (prev_index, prev_term, entries as (index, term), resulting terms, entries persisted)
    type Case = (LogIndex, Term, Vec<(LogIndex, Term)>, Vec<Term>, usize);
    let cases: Vec<Case> = vec![
        (2, 2, vec![(3, 3)], vec![1, 2, 3], 1),
        (1, 1, vec![(2, 3), (3, 4)], vec![1, 3, 4], 2),
        (0, 0, vec![(1, 1)], vec![1, 2], 0),
        (0, 0, vec![(1, 3)], vec![3], 1),
    ];
    for (prev_index, prev_term, new, want, persisted) in cases {
        let mut core = member_with(config(2), 3, entries(&[1, 2]), 2);
        let new: Vec<Entry> = new
            .iter()
            .map(|&(index, term)| Entry {
                index,
                term,
                kind: EntryKind::Empty,
            })
            .collect();
        deliver(
            &mut core,
            1,
            Message::Append {
                term: 4,
                prev_index,
                prev_term,
                entries: new,
                commit: 0,
                read_round: 0,
            },
        );
        let rd = drain(&mut core);
        let terms: Vec<Term> = core.log().iter().map(|e| e.term).collect();
        assert_eq!(terms, want);
        assert_eq!(rd.entries.len(), persisted);
    }
}

/// §5.3, Figure 7: a new leader brings every follower's log in line with its own, whatever
/// they hold (missing entries, extra uncommitted entries, conflicting terms).
#[test]
fn test_leader_sync_follower_log() {
    let leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let follower_logs: [&[Term]; 6] = [
        &[1, 1, 1, 4, 4, 5, 5, 6, 6],
        &[1, 1, 1, 4],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        &[1, 1, 1, 4, 4, 4, 4],
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    for follower_log in follower_logs {
        let mut cluster = Cluster::new(3);
        let restore = |id: NodeId, terms: &[Term], term: Term| {
            let mut cfg = config(id);
            cfg.pre_vote = false;
            member_with(cfg, 3, entries(terms), term)
        };
        cluster.cores.insert(1, restore(1, &leader_log, 8));
        cluster.cores.insert(2, restore(2, follower_log, 8));
        // Member 3 votes for the leader but is cut off afterwards.
        cluster.cores.insert(3, restore(3, &[1], 8));
        cluster.elect(1);
        cluster.heartbeat(1);
        let leader: Vec<Term> = cluster.cores[&1].log().iter().map(|e| e.term).collect();
        let follower: Vec<Term> = cluster.cores[&2].log().iter().map(|e| e.term).collect();
        assert_eq!(follower, leader, "follower started with {follower_log:?}");
        assert_eq!(cluster.cores[&2].status().commit, 11);
    }
}

// ---- §5.4 safety ---------------------------------------------------------------------------

/// §5.4.1: a vote is granted only to a candidate whose log is at least as up to date.
#[test]
fn test_voter() {
    // (voter's log terms, candidate's last (index, term), granted)
    let cases: &[(&[Term], LogIndex, Term, bool)] = &[
        (&[1], 1, 1, true),
        (&[1], 2, 1, true),
        (&[1, 1], 1, 1, false),
        (&[1], 1, 2, true),
        (&[1], 2, 2, true),
        (&[2], 1, 1, false),
        (&[2], 3, 1, false),
    ];
    for &(log, last_index, last_term, granted) in cases {
        let mut core = member_with(config(1), 3, entries(log), 2);
        deliver(
            &mut core,
            2,
            Message::Vote {
                term: 3,
                last_index,
                last_term,
                pre_vote: false,
            },
        );
        let rd = drain(&mut core);
        assert_eq!(
            rd.persisted_messages,
            vec![env(
                1,
                2,
                Message::VoteResponse {
                    term: 3,
                    granted,
                    pre_vote: false,
                    witness: Vec::new()
                }
            )],
            "log {log:?} candidate ({last_index}, {last_term})"
        );
    }
}

/// §5.4.2: a leader never commits an entry of an older term by counting replicas; it commits
/// one of its own term, which commits the older ones with it.
#[test]
fn test_leader_only_commits_log_from_current_term() {
    let mut cfg = config(1);
    cfg.pre_vote = false;
    // Entries of term 1 at 1..=2, leader of term 3.
    let mut core = member_with(cfg, 3, entries(&[1, 1]), 2);
    time_out(&mut core);
    drain(&mut core);
    deliver(&mut core, 2, vote_granted(3));
    drain(&mut core);
    assert_eq!(core.status().last_index, 3, "no-op of term 3 at index 3");
    deliver(&mut core, 2, append_ok(3, 2));
    assert_eq!(
        core.status().commit,
        0,
        "old-term entries are not committed by counting"
    );
    deliver(&mut core, 2, append_ok(3, 3));
    assert_eq!(core.status().commit, 3);
}
