//! What defines a simulation run: [`SimConfig`] (cluster, network, timing, workload, driver
//! knobs) and the nemesis' [`FaultConfig`]. [`SimConfig::random`] draws a whole configuration
//! from a seed for the sweep.

use super::client::{KeySpace, Workload};
use super::network::{Millis, NetConfig};
use super::packet::DriverOpts;
use super::rng::SplitMix64;

/// The nemesis: how often it acts, what it does (relative weights) and how long faults last.
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Pause between nemesis actions, uniform in this range; `(0, 0)`: no nemesis.
    pub interval_ms: (Millis, Millis),
    /// How long a crash, pause or partition lasts before it is undone.
    pub down_ms: (Millis, Millis),
    /// Weight: crash a member (it restarts later from durable state).
    pub crash: u32,
    /// Weight: crash a member right after its next persist, before it sends what depended on it.
    pub crash_after_persist: u32,
    /// Weight: pause a member (no ticks, input queued).
    pub pause: u32,
    /// Weight: split members and clients into two sides.
    pub partition: u32,
    /// Weight: block one direction of one link.
    pub one_way: u32,
    /// Weight: cut the leader off from the other members (clients still reach it).
    pub isolate_leader: u32,
    /// Weight: make the network lossy, duplicating and reordering for a while.
    pub chaos: u32,
    /// Drop probability while chaotic.
    pub drop_prob: f64,
    /// Duplicate probability while chaotic.
    pub dup_prob: f64,
    /// Reorder probability while chaotic.
    pub reorder_prob: f64,
}

impl FaultConfig {
    /// No faults at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sum of the action weights (0: the nemesis never acts).
    pub fn total_weight(&self) -> u32 {
        self.crash
            + self.crash_after_persist
            + self.pause
            + self.partition
            + self.one_way
            + self.isolate_leader
            + self.chaos
    }
}

/// Everything that defines a run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of voters (1, 3, 5 or 7).
    pub nodes: usize,
    /// The seed of every random choice.
    pub seed: u64,
    /// Number of clients.
    pub clients: usize,
    /// Network delays (addresses: members `0..nodes`, then clients) and base faults.
    pub net: NetConfig,
    /// Tick period.
    pub tick_ms: Millis,
    /// Each member's tick period is `tick_ms + [0, tick_skew_ms]` (clock drift).
    pub tick_skew_ms: Millis,
    /// Core `election_tick`.
    pub election_tick: u32,
    /// Core `heartbeat_tick`.
    pub heartbeat_tick: u32,
    /// Core `pre_vote`.
    pub pre_vote: bool,
    /// Core `max_append_entries`.
    pub max_append_entries: usize,
    /// Each member's commit-to-apply delay is drawn from this range.
    pub apply_delay_ms: (Millis, Millis),
    /// Driver knobs (fsync time, snapshots, targeted rules).
    pub driver: DriverOpts,
    /// What clients do.
    pub workload: Workload,
    /// What the nemesis does.
    pub faults: FaultConfig,
    /// Length of the fault phase.
    pub duration_ms: Millis,
    /// Bound of the liveness phase.
    pub liveness_ms: Millis,
    /// Period of the (quadratic) log matching check.
    pub log_check_every_ms: Millis,
    /// Keep a trace of what happened (printed with failures).
    pub trace: bool,
}

impl SimConfig {
    /// A fault-free cluster of `nodes` with a LAN-like network (1-3 ms), 3 clients.
    pub fn new(nodes: usize, seed: u64) -> Self {
        let mut net = NetConfig::uniform(1);
        net.jitter_ms = 2;
        Self {
            nodes,
            seed,
            clients: 3,
            net,
            tick_ms: 10,
            tick_skew_ms: 0,
            election_tick: 10,
            heartbeat_tick: 3,
            pre_vote: true,
            max_append_entries: 64,
            apply_delay_ms: (0, 0),
            driver: DriverOpts::default(),
            workload: Workload::default(),
            faults: FaultConfig::none(),
            duration_ms: 2_000,
            liveness_ms: 5_000,
            log_check_every_ms: 100,
            trace: false,
        }
    }

    /// A randomized configuration for the seed sweep: delays, clock drift, apply lag,
    /// snapshots, workload mix and nemesis weights all drawn from `seed`.
    ///
    /// Recorded failing seeds (`curp/tests/SIM_FINDINGS.md`, the regression tests) name
    /// configurations drawn by this function: changing what it draws, or in which order,
    /// invalidates them.
    pub fn random(nodes: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x5EED_0FC0_FFEE);
        let mut cfg = Self::new(nodes, seed);
        cfg.clients = rng.range(2, 5) as usize;
        cfg.net.default_delay_ms = rng.range(1, 5);
        cfg.net.jitter_ms = rng.range(0, 8);
        cfg.tick_skew_ms = rng.range(0, 3);
        cfg.pre_vote = rng.chance(0.8);
        cfg.max_append_entries = rng.range(1, 16) as usize;
        cfg.apply_delay_ms = if rng.chance(0.4) {
            (0, rng.range(0, 60))
        } else {
            (0, 0)
        };
        cfg.driver.fsync_ms = rng.range(0, 3);
        cfg.driver.snapshot_every = if rng.chance(0.5) { rng.range(3, 30) } else { 0 };
        cfg.workload = Workload {
            keys: KeySpace::Shared(rng.range(1, 6)),
            read_ratio: rng.unit() * 0.4,
            delete_ratio: 0.1,
            cas_ratio: rng.unit() * 0.4,
            fast_ratio: rng.unit(),
            think_ms: (0, rng.range(5, 40)),
            attempt_timeout_ms: rng.range(150, 500),
            op_timeout_ms: rng.range(600, 2_000),
            max_ops: u64::MAX,
        };
        cfg.faults = FaultConfig {
            interval_ms: (20, rng.range(60, 300)),
            down_ms: (20, rng.range(100, 600)),
            crash: rng.range(0, 3) as u32,
            crash_after_persist: rng.range(0, 2) as u32,
            pause: rng.range(0, 2) as u32,
            partition: rng.range(0, 3) as u32,
            one_way: rng.range(0, 2) as u32,
            isolate_leader: rng.range(0, 3) as u32,
            chaos: rng.range(0, 2) as u32,
            drop_prob: rng.unit() * 0.2,
            dup_prob: rng.unit() * 0.1,
            reorder_prob: rng.unit() * 0.3,
        };
        cfg.net.reorder_ms = 30;
        cfg.duration_ms = rng.range(800, 2_000);
        cfg
    }
}
