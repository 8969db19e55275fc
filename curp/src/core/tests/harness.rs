//! A tiny deterministic in-test cluster: cores wired through a FIFO queue, each member's
//! `Ready` persisted into an in-memory "disk" and applied at once. Not the seeded simulation
//! (that lives in `crate::testing`); just enough to drive scenarios step by step.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::cmd::{ConflictKeys, KeyRange};
use crate::core::{
    CommandData, Committed, Config, Core, Entry, Envelope, Event, Input, Membership, NodeId,
    ProposeId, Restored, Role, SnapshotInstall, WitnessOp,
};
use crate::storage::HardState;

/// What one member has made durable.
#[derive(Debug, Clone, Default)]
pub(crate) struct Disk {
    pub(crate) hard_state: HardState,
    pub(crate) entries: Vec<Entry>,
    pub(crate) snapshot: Option<SnapshotInstall>,
    pub(crate) witness: Vec<WitnessOp>,
    pub(crate) applied: u64,
}

/// Everything one member handed out, for assertions.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    pub(crate) committed: Vec<Committed>,
    pub(crate) events: Vec<Event>,
    pub(crate) speculated: Vec<CommandData>,
    pub(crate) installed: Vec<SnapshotInstall>,
}

/// N cores and a network.
pub(crate) struct Cluster {
    pub(crate) cores: BTreeMap<NodeId, Core>,
    pub(crate) disks: BTreeMap<NodeId, Disk>,
    pub(crate) outputs: BTreeMap<NodeId, Outputs>,
    pub(crate) queue: VecDeque<Envelope>,
    /// Members whose messages (both directions) are dropped.
    pub(crate) isolated: BTreeSet<NodeId>,
    /// Whether members report applied indices (off: entries stay unapplied).
    pub(crate) auto_apply: bool,
    initial: Membership,
}

/// The configuration of member `id` in tests.
pub(crate) fn config(id: NodeId) -> Config {
    Config {
        id,
        seed: 7,
        ..Config::default()
    }
}

/// Voters `1..=n`.
pub(crate) fn voters(n: u64) -> Membership {
    Membership {
        voters: (1..=n).collect(),
        learners: BTreeSet::new(),
        version: 0,
        peers: Default::default(),
    }
}

/// A command touching key `key`.
pub(crate) fn cmd(client_id: u64, seq: u64, key: &str) -> CommandData {
    CommandData {
        id: ProposeId { client_id, seq },
        keys: std::sync::Arc::new(ConflictKeys {
            ranges: vec![KeyRange::new(key.as_bytes().to_vec(), Vec::new())],
            leases: Vec::new(),
            exclusive: false,
        }),
        payload: Bytes::from(format!("put {key}")),
        first_incomplete: 0,
    }
}

impl Cluster {
    /// A new cluster of voters `1..=n`.
    pub(crate) fn new(n: u64) -> Self {
        let initial = voters(n);
        let mut cluster = Cluster {
            cores: BTreeMap::new(),
            disks: BTreeMap::new(),
            outputs: BTreeMap::new(),
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            auto_apply: true,
            initial: initial.clone(),
        };
        for id in 1..=n {
            cluster.add_member(id);
        }
        cluster
    }

    /// Starts member `id` with an empty disk and the initial membership.
    pub(crate) fn add_member(&mut self, id: NodeId) {
        let restored = Restored {
            membership: self.initial.clone(),
            ..Restored::default()
        };
        self.cores.insert(id, Core::new(config(id), restored));
        self.disks.insert(id, Disk::default());
        self.outputs.insert(id, Outputs::default());
    }

    /// The core of member `id`.
    pub(crate) fn core(&mut self, id: NodeId) -> &mut Core {
        self.cores.get_mut(&id).expect("member exists")
    }

    /// Member `id`'s outputs.
    pub(crate) fn out(&self, id: NodeId) -> &Outputs {
        &self.outputs[&id]
    }

    /// Runs the Ready loop of `id` until it has nothing more to do.
    pub(crate) fn process(&mut self, id: NodeId) {
        for _ in 0..100 {
            let core = self.cores.get_mut(&id).expect("member exists");
            let rd = core.ready();
            if rd.is_empty() {
                return;
            }
            let disk = self.disks.get_mut(&id).expect("member exists");
            if let Some(snap) = rd.snapshot.clone().or(rd.snapshot_taken.clone()) {
                disk.entries.retain(|e| e.index > snap.index);
                disk.applied = disk.applied.max(snap.index);
                disk.snapshot = Some(snap);
            }
            if let Some(first) = rd.entries.first() {
                disk.entries.retain(|e| e.index < first.index);
                disk.entries.extend(rd.entries.iter().cloned());
            }
            if let Some(hs) = rd.hard_state {
                disk.hard_state = hs;
            }
            disk.witness.extend(rd.witness.iter().cloned());
            let last_applied = rd.committed.last().map(|c| c.entry.index);
            if let Some(last) = last_applied {
                disk.applied = last;
            }
            let out = self.outputs.get_mut(&id).expect("member exists");
            out.committed.extend(rd.committed);
            out.events.extend(rd.events);
            out.speculated.extend(rd.speculate);
            out.installed.extend(rd.snapshot);
            self.queue.extend(rd.messages);
            self.queue.extend(rd.persisted_messages);
            let core = self.cores.get_mut(&id).expect("member exists");
            core.advance();
            if self.auto_apply
                && let Some(index) = last_applied
            {
                core.step(Input::Applied { index });
            }
        }
        panic!("member {id} never settles");
    }

    /// Delivers one message (dropping it if a filter says so). Returns false when none left.
    pub(crate) fn deliver_one(&mut self) -> bool {
        let Some(env) = self.queue.pop_front() else {
            return false;
        };
        let dropped = self.isolated.contains(&env.from)
            || self.isolated.contains(&env.to)
            || !self.cores.contains_key(&env.to);
        if !dropped {
            let to = env.to;
            self.core(to).step(Input::Message(env));
            self.process(to);
        }
        true
    }

    /// Processes every member and delivers messages until the network is quiet.
    pub(crate) fn stabilize(&mut self) {
        let ids: Vec<NodeId> = self.cores.keys().copied().collect();
        for id in &ids {
            self.process(*id);
        }
        let mut budget = 100_000;
        while self.deliver_one() {
            budget -= 1;
            assert!(budget > 0, "the network never quiets down");
        }
    }

    /// Feeds an input to `id` and processes it (without delivering messages).
    pub(crate) fn step(&mut self, id: NodeId, input: Input) {
        self.core(id).step(input);
        self.process(id);
    }

    /// Ticks `id` `n` times, processing after each.
    pub(crate) fn tick(&mut self, id: NodeId, n: u32) {
        for _ in 0..n {
            self.core(id).tick();
            self.process(id);
        }
    }

    /// Makes `id` leader: it times out alone, then the network settles.
    pub(crate) fn elect(&mut self, id: NodeId) {
        let timeout = 2 * config(id).election_tick;
        for _ in 0..timeout {
            self.core(id).tick();
            self.process(id);
            if self.cores[&id].status().role != Role::Follower {
                break;
            }
        }
        self.stabilize();
        assert_eq!(
            self.cores[&id].status().role,
            Role::Leader,
            "{id} should lead"
        );
    }

    /// One heartbeat round from the leader `id`, delivered.
    pub(crate) fn heartbeat(&mut self, id: NodeId) {
        self.tick(id, config(id).heartbeat_tick);
        self.stabilize();
    }

    /// Restarts `id` from its disk (volatile state lost).
    pub(crate) fn restart(&mut self, id: NodeId) {
        let disk = self.disks[&id].clone();
        let restored = Restored {
            hard_state: disk.hard_state,
            entries: disk.entries,
            snapshot: disk.snapshot,
            membership: self.initial.clone(),
            witness: disk.witness,
            applied: disk.applied,
        };
        self.cores.insert(id, Core::new(config(id), restored));
    }

    /// Indices and payload kinds of what `id` applied.
    pub(crate) fn applied_ids(&self, id: NodeId) -> Vec<(u64, Option<ProposeId>, bool)> {
        self.out(id)
            .committed
            .iter()
            .map(|c| {
                let pid = match &c.entry.kind {
                    crate::core::EntryKind::Command { cmd, .. } => Some(cmd.id),
                    _ => None,
                };
                (c.entry.index, pid, c.duplicate)
            })
            .collect()
    }
}
