//! The witness: the speculative pool (SP) every voter runs (CURP.md 1, 2.2 "SP insert", W1,
//! W2, P3, E3).
//!
//! A witness holds a conflict-free set of commands. A client records a command at every
//! witness in parallel with proposing it to the leader; once a superquorum accepted it (the
//! leader's own witness included), the command is durable without having been ordered, because
//! a new leader [`recover`]s it from the pools it collects with its votes.
//!
//! The pool is unaware of terms and cluster versions: the caller checks and stamps those
//! (CURP.md W2) and journals accepted records before acknowledging them (P2).

use std::collections::BTreeMap;

use super::interval::{ConflictIndex, Footprint};
use super::types::{CommandData, ProposeId};

/// A command held by the witness.
#[derive(Debug, Clone)]
struct Held {
    /// The command as recorded.
    cmd: CommandData,
    /// Its normalised conflict keys, kept so removal undoes insertion exactly (CURP.md C2).
    footprint: Footprint,
    /// Its token in the index.
    token: u64,
}

/// The speculative pool: a set of pairwise non-conflicting commands.
///
/// Conflicts are those of [`crate::ConflictKeys::conflicts_with`]: overlapping key ranges
/// (found through an interval tree, `O(log n)` per range), a shared lease id other than `0`
/// (a hash map) or an exclusive command (a single slot).
#[derive(Debug, Clone, Default)]
pub struct Witness {
    /// Ranges, leases and exclusive count of every command held.
    index: ConflictIndex,
    /// The commands held, by id.
    records: BTreeMap<ProposeId, Held>,
    /// The exclusive command held, if any; while it is, every other insert is refused.
    exclusive: Option<ProposeId>,
}

impl Witness {
    /// An empty witness.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `cmd` (CURP.md 2.2 "SP insert", W1). Returns `true` when the command was accepted,
    /// i.e. the witness answers "no conflict".
    ///
    /// - If `cmd` conflicts with a command held, or an exclusive command is held, nothing is
    ///   stored and the answer is `false`.
    /// - Otherwise `cmd` is stored. An exclusive command goes to the exclusive slot and the
    ///   answer is still `false`: exclusive commands always take the slow path, and block every
    ///   fast path until removed.
    /// - A command whose id is already held is a client's retry: nothing changes and the answer
    ///   is the one given the first time.
    pub fn insert(&mut self, cmd: CommandData) -> bool {
        if let Some(held) = self.records.get(&cmd.id) {
            return !held.footprint.is_exclusive();
        }
        if self.exclusive.is_some() {
            return false;
        }
        let footprint = Footprint::new(&cmd.keys);
        if self.index.conflicts(&footprint) {
            return false;
        }
        let token = self.index.insert(&footprint);
        let accepted = !footprint.is_exclusive();
        if !accepted {
            self.exclusive = Some(cmd.id);
        }
        self.records.insert(
            cmd.id,
            Held {
                cmd,
                footprint,
                token,
            },
        );
        accepted
    }

    /// Removes the commands with these ids (applied, or otherwise settled); returns those that
    /// were held, in the order given.
    pub fn remove(&mut self, ids: &[ProposeId]) -> Vec<ProposeId> {
        ids.iter()
            .copied()
            .filter(|id| self.remove_one(id))
            .collect()
    }

    /// Removes every command of `client_id`, whose client-id lease expired (CURP.md P3);
    /// returns their ids in order.
    pub fn remove_client(&mut self, client_id: u64) -> Vec<ProposeId> {
        let low = ProposeId { client_id, seq: 0 };
        let high = ProposeId {
            client_id,
            seq: u64::MAX,
        };
        let ids: Vec<ProposeId> = self.records.range(low..=high).map(|(id, _)| *id).collect();
        for id in &ids {
            self.remove_one(id);
        }
        ids
    }

    /// Removes every command for which `is_applied` holds (orphans of applied commands, e.g.
    /// after a snapshot install or a late record, CURP.md P3); returns their ids in order.
    pub fn remove_applied(&mut self, is_applied: impl Fn(&ProposeId) -> bool) -> Vec<ProposeId> {
        let ids: Vec<ProposeId> = self
            .records
            .keys()
            .copied()
            .filter(|id| is_applied(id))
            .collect();
        for id in &ids {
            self.remove_one(id);
        }
        ids
    }

    /// Whether the command with this id is held.
    pub fn contains(&self, id: &ProposeId) -> bool {
        self.records.contains_key(id)
    }

    /// Every command held, in [`ProposeId`] order (what a voter sends with its vote, CURP.md E2).
    pub fn records(&self) -> Vec<CommandData> {
        self.records.values().map(|held| held.cmd.clone()).collect()
    }

    /// Number of commands held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no command is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops every command.
    pub fn clear(&mut self) {
        self.index.clear();
        self.records.clear();
        self.exclusive = None;
    }

    /// Removes one command; whether it was held.
    fn remove_one(&mut self, id: &ProposeId) -> bool {
        let Some(held) = self.records.remove(id) else {
            return false;
        };
        self.index.remove(&held.footprint, held.token);
        if self.exclusive == Some(*id) {
            self.exclusive = None;
        }
        true
    }
}

/// The commands a new leader recovers (CURP.md E3): those whose id appears in at least
/// `threshold` of `pools`, each once, in [`ProposeId`] order. A pool listing an id twice counts
/// once; when pools hold different copies of a command, the first pool's copy is returned.
///
/// `pools` are the witness pools collected with the votes of a majority (the candidate's own
/// included), and `threshold` is the recover quorum `r = ⌊q/2⌋ + 1`
/// ([`super::quorum::recover_quorum`]). Commands already in the new leader's log, or already
/// applied, are the caller's to skip.
///
/// # Why `r` is safe (CURP.md section 5)
///
/// - *Nothing acknowledged is lost.* A fast-completed command was accepted by `SQ = f + r`
///   witnesses. At most `f` of them lie outside the collected majority, so at least `r` of the
///   collected pools hold it (provided records are term-stamped so none of those acceptances
///   happened after the vote, CURP.md W2).
/// - *Recovered commands commute.* No single pool ever holds two conflicting commands, and
///   `2r > q`: two conflicting commands each held by `r` of the `q` pools would share a pool.
///   So the recovered commands can be appended in any order.
/// - *Nothing overtakes an earlier command.* The old leader logged every proposal in arrival
///   order, conflicting ones included; a command that conflicts with a recovered one and was
///   logged before it is already in any log that holds the later one, so recovery only ever
///   appends commands after what they must follow.
/// - *Dropping is safe.* A command below `r` was never fast-acknowledged; its client retries.
pub fn recover(pools: &[Vec<CommandData>], threshold: usize) -> Vec<CommandData> {
    let mut seen: BTreeMap<ProposeId, (usize, &CommandData)> = BTreeMap::new();
    for pool in pools {
        let mut in_pool: BTreeMap<ProposeId, &CommandData> = BTreeMap::new();
        for cmd in pool {
            in_pool.entry(cmd.id).or_insert(cmd);
        }
        for (id, cmd) in in_pool {
            seen.entry(id).or_insert((0, cmd)).0 += 1;
        }
    }
    seen.into_values()
        .filter(|(count, _)| *count >= threshold)
        .map(|(_, cmd)| cmd.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::interval::test_util::{SplitMix64, command, conflict_keys};
    use super::super::quorum::{majority, recover_quorum, super_quorum};
    use super::*;
    use crate::cmd::{ConflictKeys, KeyRange};

    fn keys(ranges: &[(&[u8], &[u8])], leases: &[i64]) -> ConflictKeys {
        ConflictKeys {
            ranges: ranges
                .iter()
                .map(|(start, end)| KeyRange::new(start.to_vec(), end.to_vec()))
                .collect(),
            leases: leases.to_vec(),
            exclusive: false,
        }
    }

    fn exclusive() -> ConflictKeys {
        ConflictKeys {
            exclusive: true,
            ..ConflictKeys::default()
        }
    }

    fn id(client_id: u64, seq: u64) -> ProposeId {
        ProposeId { client_id, seq }
    }

    fn ids(cmds: &[CommandData]) -> Vec<ProposeId> {
        cmds.iter().map(|c| c.id).collect()
    }

    fn assert_conflict_free(cmds: &[CommandData]) {
        for (i, a) in cmds.iter().enumerate() {
            for b in &cmds[i + 1..] {
                assert!(
                    !a.keys.conflicts_with(&b.keys),
                    "{:?} conflicts with {:?}",
                    a.id,
                    b.id
                );
            }
        }
    }

    #[test]
    fn accepts_commuting_rejects_conflicting() {
        let mut w = Witness::new();
        assert!(w.is_empty());
        assert!(w.insert(command(1, 1, keys(&[(b"a", b"c")], &[]))));
        // Touching at the boundary: [a,c) and [c,e) commute.
        assert!(w.insert(command(1, 2, keys(&[(b"c", b"e")], &[]))));
        // A single key inside a held range conflicts, and nothing is stored.
        assert!(!w.insert(command(1, 3, keys(&[(b"b", b"")], &[]))));
        assert!(!w.contains(&id(1, 3)));
        // A single key at the exclusive end of everything held commutes.
        assert!(w.insert(command(1, 4, keys(&[(b"e", b"")], &[]))));
        // An unbounded range overlapping something held conflicts.
        assert!(!w.insert(command(1, 5, keys(&[(b"d", &[0])], &[]))));
        // One starting after everything held commutes.
        assert!(w.insert(command(1, 6, keys(&[(b"e\0", &[0])], &[]))));
        // All keys conflicts with anything holding a key.
        assert!(!w.insert(command(1, 7, keys(&[(&[0], &[0])], &[]))));
        assert_eq!(w.len(), 4);
        assert_eq!(
            ids(&w.records()),
            vec![id(1, 1), id(1, 2), id(1, 4), id(1, 6)]
        );
        assert_conflict_free(&w.records());
    }

    #[test]
    fn leases() {
        let mut w = Witness::new();
        assert!(w.insert(command(1, 1, keys(&[(b"a", b"")], &[0, 5]))));
        // Lease 0 is "no lease" and never conflicts (CURP.md C3).
        assert!(w.insert(command(1, 2, keys(&[(b"b", b"")], &[0]))));
        assert!(!w.insert(command(1, 3, keys(&[(b"c", b"")], &[5]))));
        assert!(w.insert(command(1, 4, keys(&[], &[6, 6]))));
        assert_eq!(w.remove(&[id(1, 1)]), vec![id(1, 1)]);
        assert!(w.insert(command(1, 3, keys(&[(b"c", b"")], &[5]))));
    }

    #[test]
    fn exclusive_slot() {
        let mut w = Witness::new();
        // An exclusive command is stored yet answered "conflict".
        assert!(!w.insert(command(1, 1, exclusive())));
        assert!(w.contains(&id(1, 1)));
        assert_eq!(w.len(), 1);
        // While it is held, everything is refused, even a command touching nothing.
        assert!(!w.insert(command(1, 2, ConflictKeys::default())));
        assert!(!w.insert(command(1, 3, keys(&[(b"z", b"")], &[]))));
        assert!(!w.insert(command(1, 4, exclusive())));
        assert_eq!(w.len(), 1);
        // A retry of the exclusive command gets the same answer.
        assert!(!w.insert(command(1, 1, exclusive())));
        assert_eq!(w.remove(&[id(1, 1), id(1, 2)]), vec![id(1, 1)]);
        assert!(w.insert(command(1, 2, ConflictKeys::default())));
        // An exclusive command conflicts with anything held: refused and not stored.
        assert!(!w.insert(command(1, 5, exclusive())));
        assert!(!w.contains(&id(1, 5)));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn retries_are_idempotent() {
        let mut w = Witness::new();
        let a = command(1, 1, keys(&[(b"a", b"")], &[]));
        assert!(w.insert(a.clone()));
        assert!(w.insert(a.clone()));
        assert_eq!(w.len(), 1);
        // A refused command is not remembered: a retry is judged afresh.
        let b = command(2, 1, keys(&[(b"a", b"b")], &[]));
        assert!(!w.insert(b.clone()));
        w.remove(&[a.id]);
        assert!(w.insert(b));
    }

    #[test]
    fn remove_client_and_applied() {
        let mut w = Witness::new();
        for client in 1..=3u64 {
            for seq in 0..4u64 {
                let key = vec![
                    b'a' + u8::try_from(client).expect("small"),
                    b'0' + seq as u8,
                ];
                assert!(w.insert(command(client, seq, keys(&[(&key, b"")], &[]))));
            }
        }
        // Extreme sequence numbers are covered by the client's range.
        assert!(w.insert(command(2, u64::MAX, keys(&[(b"zz", b"")], &[]))));
        assert_eq!(
            w.remove_client(2),
            vec![id(2, 0), id(2, 1), id(2, 2), id(2, 3), id(2, u64::MAX)]
        );
        assert!(w.remove_client(2).is_empty());
        assert_eq!(w.len(), 8);
        let removed = w.remove_applied(|id| id.seq < 2);
        assert_eq!(removed, vec![id(1, 0), id(1, 1), id(3, 0), id(3, 1)]);
        assert_eq!(
            ids(&w.records()),
            vec![id(1, 2), id(1, 3), id(3, 2), id(3, 3)]
        );
        // The freed keys can be recorded again.
        assert!(w.insert(command(4, 0, keys(&[(b"c0", b"")], &[]))));
        w.clear();
        assert!(w.is_empty());
        assert!(w.index.is_pristine());
        assert!(!w.insert(command(5, 0, exclusive())));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn recover_counts_per_pool() {
        let a = command(1, 1, keys(&[(b"a", b"")], &[]));
        let b = command(1, 2, keys(&[(b"b", b"")], &[]));
        let c = command(2, 1, keys(&[(b"c", b"")], &[]));
        let pools = vec![
            vec![c.clone(), a.clone(), a.clone()],
            vec![a.clone(), b.clone()],
            vec![b.clone()],
        ];
        assert_eq!(ids(&recover(&pools, 2)), vec![a.id, b.id]);
        assert_eq!(ids(&recover(&pools, 3)), Vec::<ProposeId>::new());
        assert_eq!(ids(&recover(&pools, 1)), vec![a.id, b.id, c.id]);
        assert!(recover(&[], 1).is_empty());
    }

    /// The brute-force model of a witness: what it holds, with the answers it gave.
    #[derive(Default)]
    struct Model {
        held: Vec<(CommandData, bool)>,
    }

    impl Model {
        fn insert(&mut self, cmd: &CommandData) -> bool {
            if let Some((_, answer)) = self.held.iter().find(|(c, _)| c.id == cmd.id) {
                return *answer;
            }
            if self
                .held
                .iter()
                .any(|(c, _)| c.keys.conflicts_with(&cmd.keys))
            {
                return false;
            }
            let answer = !cmd.keys.exclusive;
            self.held.push((cmd.clone(), answer));
            answer
        }

        fn remove_where(&mut self, pred: impl Fn(&ProposeId) -> bool) -> Vec<ProposeId> {
            let mut removed: Vec<ProposeId> = self
                .held
                .iter()
                .map(|(c, _)| c.id)
                .filter(|id| pred(id))
                .collect();
            removed.sort();
            self.held.retain(|(c, _)| !pred(&c.id));
            removed
        }

        fn sorted(&self) -> Vec<CommandData> {
            let mut cmds: Vec<CommandData> = self.held.iter().map(|(c, _)| c.clone()).collect();
            cmds.sort_by_key(|c| c.id);
            cmds
        }
    }

    /// (a) decisions equal the pairwise oracle, (b) the pool stays conflict-free, (c) removing
    /// everything leaves nothing behind.
    #[test]
    fn matches_brute_force_oracle() {
        let (mut accepted, mut refused) = (0usize, 0usize);
        for seed in 0..64 {
            let mut rng = SplitMix64::new(seed);
            let mut w = Witness::new();
            let mut model = Model::default();
            let mut issued: Vec<CommandData> = Vec::new();
            let mut next_seq = [0u64; 4];
            for _ in 0..400 {
                match rng.below(100) {
                    0..=69 => {
                        let client = rng.below(4);
                        let slot = usize::try_from(client).expect("small");
                        next_seq[slot] += 1;
                        let cmd = command(client, next_seq[slot], conflict_keys(&mut rng, 40));
                        issued.push(cmd.clone());
                        let expected = model.insert(&cmd);
                        assert_eq!(w.insert(cmd.clone()), expected, "seed {seed}: {cmd:?}");
                        if expected {
                            accepted += 1;
                        } else {
                            refused += 1;
                        }
                    }
                    70..=79 if !issued.is_empty() => {
                        let cmd = issued[rng.index(issued.len())].clone();
                        let expected = model.insert(&cmd);
                        assert_eq!(w.insert(cmd), expected, "seed {seed}: retry");
                    }
                    80..=93 if !issued.is_empty() => {
                        let mut batch: Vec<ProposeId> = (0..1 + rng.index(4))
                            .map(|_| issued[rng.index(issued.len())].id)
                            .collect();
                        batch.dedup();
                        let mut expected = Vec::new();
                        for id in &batch {
                            expected.extend(model.remove_where(|x| x == id));
                        }
                        assert_eq!(w.remove(&batch), expected, "seed {seed}");
                    }
                    94..=96 => {
                        let client = rng.below(4);
                        let expected = model.remove_where(|id| id.client_id == client);
                        assert_eq!(w.remove_client(client), expected, "seed {seed}");
                    }
                    97..=98 => {
                        let k = rng.below(5);
                        let applied = |id: &ProposeId| id.seq % 5 == k;
                        let expected = model.remove_where(applied);
                        assert_eq!(w.remove_applied(applied), expected, "seed {seed}");
                    }
                    _ => {}
                }
                let records = w.records();
                assert_eq!(records, model.sorted(), "seed {seed}");
                assert_eq!(w.len(), records.len());
                assert_conflict_free(&records);
                for cmd in issued.iter().rev().take(8) {
                    assert_eq!(
                        w.contains(&cmd.id),
                        model.held.iter().any(|(c, _)| c.id == cmd.id)
                    );
                }
            }
            // (c) symmetry: remove everything, in random order.
            let mut all: Vec<ProposeId> = w.records().iter().map(|c| c.id).collect();
            rng.shuffle(&mut all);
            assert_eq!(w.remove(&all).len(), all.len());
            assert!(w.is_empty());
            assert!(w.index.is_pristine(), "seed {seed}: index not empty");
            assert!(w.exclusive.is_none());
            let mut everything = keys(&[(&[0], &[0])], &[1, 2, 3, 4, 5]);
            assert!(w.insert(command(9, 0, everything.clone())));
            everything.exclusive = true;
            w.clear();
            assert!(!w.insert(command(9, 1, everything)));
            assert!(w.contains(&id(9, 1)));
        }
        assert!(
            accepted > 1_000 && refused > 1_000,
            "{accepted} / {refused}"
        );
    }

    /// (d) recovery from pools built by real witnesses never yields two conflicting commands, and
    /// never loses a command a superquorum accepted.
    #[test]
    fn recover_is_conflict_free_and_keeps_fast_commands() {
        let mut recovered_total = 0usize;
        let mut fast_total = 0usize;
        for n in [3usize, 5, 7] {
            let (q, r, sq) = (majority(n), recover_quorum(n), super_quorum(n));
            for seed in 0..200u64 {
                let mut rng = SplitMix64::new(seed * 31 + n as u64);
                let cmds: Vec<CommandData> = (0..24)
                    .map(|i| command(rng.below(3), i, conflict_keys(&mut rng, 60)))
                    .collect();
                let mut witnesses = vec![Witness::new(); n];
                let mut acceptances = vec![0usize; cmds.len()];
                for w in &mut witnesses {
                    // Each witness gets a random subset, in its own order, and settles a few.
                    let mut order: Vec<usize> = (0..cmds.len()).collect();
                    rng.shuffle(&mut order);
                    for &i in &order {
                        if rng.chance(4, 5) && w.insert(cmds[i].clone()) {
                            acceptances[i] += 1;
                        }
                    }
                }
                // A few commands get applied and garbage-collected at some witnesses only; a
                // command that was fast-acknowledged must not be, so spare those.
                for w in &mut witnesses {
                    let victims: Vec<ProposeId> = cmds
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| acceptances[*i] < sq && rng.chance(1, 10))
                        .map(|(_, c)| c.id)
                        .collect();
                    w.remove(&victims);
                }
                for _ in 0..4 {
                    let mut members: Vec<usize> = (0..n).collect();
                    rng.shuffle(&mut members);
                    let pools: Vec<Vec<CommandData>> = members[..q]
                        .iter()
                        .map(|&m| witnesses[m].records())
                        .collect();
                    let recovered = recover(&pools, r);
                    recovered_total += recovered.len();
                    assert_conflict_free(&recovered);
                    let got = ids(&recovered);
                    assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted, deduplicated");
                    for cmd in &recovered {
                        let count = pools
                            .iter()
                            .filter(|p| p.iter().any(|c| c.id == cmd.id))
                            .count();
                        assert!(count >= r);
                    }
                    for (i, cmd) in cmds.iter().enumerate() {
                        if acceptances[i] >= sq {
                            fast_total += 1;
                            assert!(got.contains(&cmd.id), "n={n} seed={seed}: lost {cmd:?}");
                        }
                    }
                }
            }
        }
        assert!(recovered_total > 1_000, "{recovered_total}");
        assert!(fast_total > 1_000, "{fast_total}");
    }
}
