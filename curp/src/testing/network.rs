//! A simulated network for deterministic simulation: a priority queue of in-flight messages
//! ordered by virtual delivery time.
//!
//! Every endpoint (a member or a client) has an [`Addr`]. A message sent at virtual time `now`
//! from `a` to `b` is delivered at `now + delay[a][b] + jitter`, unless the network drops it.
//! All randomness (jitter, drops, duplicates, reordering) comes from one seeded
//! [`SplitMix64`], so a run replays exactly from its seed.
//!
//! ```text
//!   send(now, a, b, m) ──► [drop?] ──► at = now + delay[a][b] + jitter (+ reorder delay)
//!                                         │            (+ a duplicate copy, maybe)
//!                                         ▼
//!                    BinaryHeap<(at, seq)> ──► pop_due(now): link blocked now? drop : deliver
//! ```
//!
//! Partitions are sets of blocked directed links, checked at delivery time (a cut cable also
//! loses the packets on the wire). Symmetric partitions block both directions, one-way
//! partitions only one.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::rng::SplitMix64;

/// An endpoint of the simulated network.
pub type Addr = usize;

/// Virtual time in milliseconds.
pub type Millis = u64;

/// How the network behaves. Probabilities are per message.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// One-way base delay in ms, indexed `[from][to]`. Missing rows or columns fall back to
    /// `default_delay_ms`.
    pub delay_ms: Vec<Vec<Millis>>,
    /// Base delay for pairs the matrix does not cover.
    pub default_delay_ms: Millis,
    /// Uniform random extra delay in `0..=jitter_ms` added to every message.
    pub jitter_ms: Millis,
    /// Probability that a message is lost.
    pub drop_prob: f64,
    /// Probability that a message is delivered twice (the copy gets its own delay).
    pub dup_prob: f64,
    /// Probability that a message is held back by an extra `0..=reorder_ms`, so later messages
    /// overtake it.
    pub reorder_prob: f64,
    /// Maximum extra hold-back of a reordered message.
    pub reorder_ms: Millis,
    /// Keep every link FIFO (no overtaking on one link, like a TCP stream). Jitter then only
    /// spreads delays; `reorder_prob` is ignored.
    pub fifo: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            delay_ms: Vec::new(),
            default_delay_ms: 1,
            jitter_ms: 0,
            drop_prob: 0.0,
            dup_prob: 0.0,
            reorder_prob: 0.0,
            reorder_ms: 0,
            fifo: false,
        }
    }
}

impl NetConfig {
    /// A configuration with every one-way delay equal to `delay_ms` and no faults.
    pub fn uniform(delay_ms: Millis) -> Self {
        Self {
            default_delay_ms: delay_ms,
            ..Self::default()
        }
    }
}

/// A message on the wire.
#[derive(Debug, Clone)]
pub struct Delivery<T> {
    /// Delivery time.
    pub at: Millis,
    /// Tie-breaker: send order, so equal times deliver deterministically.
    seq: u64,
    /// Sender.
    pub from: Addr,
    /// Receiver.
    pub to: Addr,
    /// Payload.
    pub msg: T,
}

impl<T> PartialEq for Delivery<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Delivery<T> {}

impl<T> PartialOrd for Delivery<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Delivery<T> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest delivery first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Counters of what the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to [`Network::send`].
    pub sent: u64,
    /// Messages delivered (duplicates included).
    pub delivered: u64,
    /// Messages lost at random.
    pub dropped_random: u64,
    /// Messages lost to a partition.
    pub dropped_partition: u64,
    /// Extra copies injected.
    pub duplicated: u64,
}

/// The simulated network, generic over the message type.
#[derive(Debug)]
pub struct Network<T> {
    cfg: NetConfig,
    rng: SplitMix64,
    queue: BinaryHeap<Delivery<T>>,
    next_seq: u64,
    /// Blocked directed links `(from, to)`.
    blocked: HashSet<(Addr, Addr)>,
    /// Per-link delay overrides (one-way, ms).
    link_delay: HashMap<(Addr, Addr), Millis>,
    /// Last scheduled delivery time per link, for FIFO links.
    last_at: HashMap<(Addr, Addr), Millis>,
    stats: NetStats,
}

impl<T: Clone> Network<T> {
    /// A network with configuration `cfg`, drawing randomness from `rng`.
    pub fn new(cfg: NetConfig, rng: SplitMix64) -> Self {
        Self {
            cfg,
            rng,
            queue: BinaryHeap::new(),
            next_seq: 0,
            blocked: HashSet::new(),
            link_delay: HashMap::new(),
            last_at: HashMap::new(),
            stats: NetStats::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Replaces the random-fault probabilities (drop, duplicate, reorder).
    pub fn set_faults(&mut self, drop_prob: f64, dup_prob: f64, reorder_prob: f64) {
        self.cfg.drop_prob = drop_prob;
        self.cfg.dup_prob = dup_prob;
        self.cfg.reorder_prob = reorder_prob;
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// The base one-way delay from `from` to `to`.
    pub fn base_delay(&self, from: Addr, to: Addr) -> Millis {
        if let Some(&d) = self.link_delay.get(&(from, to)) {
            return d;
        }
        self.cfg
            .delay_ms
            .get(from)
            .and_then(|row| row.get(to))
            .copied()
            .unwrap_or(self.cfg.default_delay_ms)
    }

    /// Overrides the one-way delay of the link `from → to`.
    pub fn set_link_delay(&mut self, from: Addr, to: Addr, delay_ms: Millis) {
        self.link_delay.insert((from, to), delay_ms);
    }

    /// Removes every per-link delay override.
    pub fn clear_link_delays(&mut self) {
        self.link_delay.clear();
    }

    /// Sends `msg` from `from` to `to` at time `now`.
    pub fn send(&mut self, now: Millis, from: Addr, to: Addr, msg: T) {
        self.send_delayed(now, from, to, msg, 0);
    }

    /// Sends `msg` with `extra_ms` added to its delay (for targeted schedules that hold back
    /// one kind of message).
    pub fn send_delayed(&mut self, now: Millis, from: Addr, to: Addr, msg: T, extra_ms: Millis) {
        self.stats.sent += 1;
        if self.rng.chance(self.cfg.drop_prob) {
            self.stats.dropped_random += 1;
            return;
        }
        if self.rng.chance(self.cfg.dup_prob) {
            self.stats.duplicated += 1;
            let copy = msg.clone();
            self.schedule(now, from, to, copy, extra_ms);
        }
        self.schedule(now, from, to, msg, extra_ms);
    }

    fn schedule(&mut self, now: Millis, from: Addr, to: Addr, msg: T, extra_ms: Millis) {
        let mut at =
            now + self.base_delay(from, to) + extra_ms + self.rng.range(0, self.cfg.jitter_ms);
        if self.cfg.fifo {
            let last = self.last_at.entry((from, to)).or_insert(0);
            at = at.max(*last);
            *last = at;
        } else if self.rng.chance(self.cfg.reorder_prob) {
            at += self.rng.range(0, self.cfg.reorder_ms);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Delivery {
            at,
            seq,
            from,
            to,
            msg,
        });
    }

    /// The delivery time of the earliest in-flight message.
    pub fn next_time(&self) -> Option<Millis> {
        self.queue.peek().map(|d| d.at)
    }

    /// Pops the next message due at or before `now` whose link is not blocked; messages on
    /// blocked links are dropped on the way.
    pub fn pop_due(&mut self, now: Millis) -> Option<Delivery<T>> {
        while self.queue.peek().is_some_and(|d| d.at <= now) {
            let d = self.queue.pop()?;
            if self.blocked.contains(&(d.from, d.to)) {
                self.stats.dropped_partition += 1;
                continue;
            }
            self.stats.delivered += 1;
            return Some(d);
        }
        None
    }

    /// Drops every in-flight message addressed to `to` (a crashed endpoint).
    pub fn drop_to(&mut self, to: Addr) {
        let before = self.queue.len();
        self.queue.retain(|d| d.to != to);
        self.stats.dropped_partition += (before - self.queue.len()) as u64;
    }

    /// Number of messages in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Blocks the directed link `from → to` (a one-way partition).
    pub fn block(&mut self, from: Addr, to: Addr) {
        self.blocked.insert((from, to));
    }

    /// Unblocks the directed link `from → to`.
    pub fn unblock(&mut self, from: Addr, to: Addr) {
        self.blocked.remove(&(from, to));
    }

    /// Whether the directed link `from → to` is blocked.
    pub fn is_blocked(&self, from: Addr, to: Addr) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Blocks both directions between `a` and `b`.
    pub fn block_both(&mut self, a: Addr, b: Addr) {
        self.block(a, b);
        self.block(b, a);
    }

    /// Splits the endpoints into `groups`: every link between two different groups is blocked
    /// both ways. Endpoints in no group are unaffected.
    pub fn partition(&mut self, groups: &[Vec<Addr>]) {
        for (i, g) in groups.iter().enumerate() {
            for h in groups.iter().skip(i + 1) {
                for &a in g {
                    for &b in h {
                        self.block_both(a, b);
                    }
                }
            }
        }
    }

    /// Cuts `a` off from every endpoint in `others`, both ways.
    pub fn isolate(&mut self, a: Addr, others: impl IntoIterator<Item = Addr>) {
        for b in others {
            if b != a {
                self.block_both(a, b);
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Number of blocked directed links.
    pub fn blocked_links(&self) -> usize {
        self.blocked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(cfg: NetConfig) -> Network<u32> {
        Network::new(cfg, SplitMix64::new(1))
    }

    #[test]
    fn delivers_in_time_order() {
        let mut cfg = NetConfig::uniform(5);
        cfg.delay_ms = vec![vec![0, 10], vec![1, 0]];
        let mut n = net(cfg);
        n.send(0, 0, 1, 1); // at 10
        n.send(0, 1, 0, 2); // at 1
        n.send(2, 0, 2, 3); // at 7 (default)
        assert!(n.pop_due(0).is_none());
        assert_eq!(n.next_time(), Some(1));
        assert_eq!(n.pop_due(100).map(|d| d.msg), Some(2));
        assert_eq!(n.pop_due(100).map(|d| d.msg), Some(3));
        assert_eq!(n.pop_due(100).map(|d| d.msg), Some(1));
        assert!(n.pop_due(100).is_none());
    }

    #[test]
    fn partitions_drop_at_delivery() {
        let mut n = net(NetConfig::uniform(5));
        n.send(0, 0, 1, 1);
        n.send(0, 1, 0, 2);
        n.block(0, 1);
        assert_eq!(n.pop_due(10).map(|d| d.msg), Some(2));
        assert!(n.pop_due(10).is_none());
        assert_eq!(n.stats().dropped_partition, 1);
        n.heal();
        n.send(10, 0, 1, 3);
        assert_eq!(n.pop_due(20).map(|d| d.msg), Some(3));
    }

    #[test]
    fn groups_partition_both_ways() {
        let mut n = net(NetConfig::uniform(1));
        n.partition(&[vec![0, 1], vec![2]]);
        assert!(n.is_blocked(0, 2) && n.is_blocked(2, 1));
        assert!(!n.is_blocked(0, 1));
        assert_eq!(n.blocked_links(), 4);
    }

    #[test]
    fn fifo_links_never_reorder() {
        let mut cfg = NetConfig::uniform(1);
        cfg.jitter_ms = 50;
        cfg.fifo = true;
        let mut n = net(cfg);
        for i in 0..100 {
            n.send(i, 0, 1, i as u32);
        }
        let mut last = None;
        while let Some(d) = n.pop_due(u64::MAX) {
            assert!(last.is_none_or(|l| l < d.msg));
            last = Some(d.msg);
        }
    }

    #[test]
    fn same_seed_same_schedule() {
        let run = || {
            let mut cfg = NetConfig::uniform(3);
            cfg.jitter_ms = 20;
            cfg.drop_prob = 0.2;
            cfg.dup_prob = 0.2;
            cfg.reorder_prob = 0.3;
            cfg.reorder_ms = 40;
            let mut n = net(cfg);
            for i in 0..200 {
                n.send(i, (i % 3) as usize, ((i + 1) % 3) as usize, i as u32);
            }
            let mut out = Vec::new();
            while let Some(d) = n.pop_due(u64::MAX) {
                out.push((d.at, d.msg));
            }
            out
        };
        assert_eq!(run(), run());
    }
}
