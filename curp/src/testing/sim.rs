//! Seeded deterministic simulation of whole CURP clusters (CURP.md D7, section 9; TigerBeetle's
//! VOPR, openraft's tests-turmoil).
//!
//! A [`Simulation`] runs `n` members ([`Member`]: a pure [`crate::core::Core`] plus durable state
//! and a register state machine), closed-loop [`Client`]s and a nemesis over a simulated
//! [`Network`], all in virtual time and all driven by one seed: the same [`SimConfig`] replays
//! exactly, so a failing seed is a reproducer (`SIM_SEED=<seed> cargo test ...`).
//!
//! A run has two phases:
//! 1. **faults** (`duration_ms`): clients issue fast-path, ordered and read operations while
//!    the nemesis crashes and restarts members (from durable state only, sometimes right after
//!    a persist and before the messages that depended on it), pauses them, partitions the
//!    network (symmetric, one-way, leader isolation) and makes it lossy, duplicating and
//!    reordering;
//! 2. **liveness** (`liveness_ms`): everything heals; a probe write must complete and every
//!    member must apply it.
//!
//! Invariants ([`super::invariants`]) are checked continuously where cheap (elections, applies,
//! speculations) and at the end (log matching, no lost acknowledgement, linearizability).
//!
//! Virtual time is in milliseconds; the loop jumps from event to event (message delivery, tick,
//! apply, client timer, fault).

use super::client::{Client, HistOp, OpPath, Outbox};
use super::config::SimConfig;
use super::invariants::{Checks, Violation, linearizable, log_matching, no_lost_ack};
use super::kv::KvCommand;
use super::member::{Member, Outcome};
use super::network::{Addr, Millis, Network};
use super::packet::{Ctx, DriverOpts, DriverStats, Packet, Rule};
use super::report::{Report, RunStats};
use super::rng::SplitMix64;
use crate::core::{Config, Core, Membership, Role};

/// The key the liveness probe writes (outside every workload's key space).
pub const PROBE_KEY: u64 = u64::MAX - 1;

/// What undoes a fault, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    Restart(usize),
    Resume(usize),
    HealAll,
    Unblock(Addr, Addr),
    Calm,
}

/// A simulated cluster (see the module docs).
pub struct Simulation {
    cfg: SimConfig,
    now: Millis,
    rng: SplitMix64,
    net: Network<Packet>,
    members: Vec<Member>,
    clients: Vec<Client>,
    history: Vec<HistOp>,
    stamp: u64,
    checks: Checks,
    stats: DriverStats,
    opts: DriverOpts,
    faults_on: bool,
    next_fault: Millis,
    undo: Vec<(Millis, Undo)>,
    next_log_check: Millis,
    trace: Option<Vec<String>>,
}

/// Builds a driver context from the simulation's fields (disjoint from `members`/`clients`).
macro_rules! ctx {
    ($s:ident) => {
        Ctx {
            now: $s.now,
            net: &mut $s.net,
            checks: &mut $s.checks,
            opts: &$s.opts,
            stats: &mut $s.stats,
            trace: $s.trace.as_mut(),
        }
    };
}

impl Simulation {
    /// A new cluster at virtual time 0, no leader yet.
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = SplitMix64::new(cfg.seed);
        let net = Network::new(cfg.net.clone(), rng.fork());
        let n = cfg.nodes;
        let membership = Membership {
            voters: (1..=n as u64).collect(),
            learners: Default::default(),
            version: 1,
            peers: Default::default(),
        };
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let config = Config {
                    id: i as u64 + 1,
                    election_tick: cfg.election_tick,
                    heartbeat_tick: cfg.heartbeat_tick,
                    pre_vote: cfg.pre_vote,
                    max_append_entries: cfg.max_append_entries,
                    seed: cfg.seed,
                };
                let tick = cfg.tick_ms + rng.range(0, cfg.tick_skew_ms);
                let apply = rng.range(cfg.apply_delay_ms.0, cfg.apply_delay_ms.1);
                Member::new(config, membership.clone(), tick, apply)
            })
            .collect();
        let clients = (0..cfg.clients)
            .map(|c| Client::new(c as u64 + 1, n + c, n, membership.version, rng.fork()))
            .collect();
        let faults_on = cfg.faults.interval_ms.1 > 0 && cfg.faults.total_weight() > 0;
        let next_fault = if faults_on {
            rng.range(cfg.faults.interval_ms.0, cfg.faults.interval_ms.1)
        } else {
            Millis::MAX
        };
        let trace = cfg.trace.then(Vec::new);
        Self {
            opts: cfg.driver.clone(),
            next_log_check: cfg.log_check_every_ms,
            cfg,
            now: 0,
            rng,
            net,
            members,
            clients,
            history: Vec::new(),
            stamp: 0,
            checks: Checks::default(),
            stats: DriverStats::default(),
            faults_on,
            next_fault,
            undo: Vec::new(),
            trace,
        }
    }

    /// Runs the whole schedule: the fault phase, then healing and the liveness phase, then the
    /// final checks.
    pub fn run(mut self) -> Report {
        let end = self.cfg.duration_ms;
        self.run_until(end);
        self.finish()
    }

    /// Current virtual time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Violations so far.
    pub fn violations(&self) -> &[Violation] {
        &self.checks.violations
    }

    /// The client history so far.
    pub fn history(&self) -> &[HistOp] {
        &self.history
    }

    /// Runs for `ms` more milliseconds of virtual time.
    pub fn run_for(&mut self, ms: Millis) {
        let end = self.now + ms;
        self.run_until(end);
    }

    /// The invariant state (what was applied where, speculations, leaders).
    pub fn checks(&self) -> &Checks {
        &self.checks
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The network (for targeted partitions and link delays).
    pub fn net_mut(&mut self) -> &mut Network<Packet> {
        &mut self.net
    }

    /// The network address of client `c`.
    pub fn client_addr(&self, c: usize) -> Addr {
        self.cfg.nodes + c
    }

    /// Adds a targeted fault rule (drop or delay a kind of message).
    pub fn add_rule(&mut self, rule: Rule) {
        self.opts.rules.push(rule);
    }

    /// Removes every targeted fault rule.
    pub fn clear_rules(&mut self) {
        self.opts.rules.clear();
    }

    /// The member that leads in the highest term, if any (among members that are up).
    pub fn leader(&self) -> Option<usize> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.core.as_ref().map(|c| (i, c.status())))
            .filter(|(_, s)| s.role == Role::Leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(i, _)| i)
    }

    /// Runs until a leader exists (or `limit_ms` passes); returns it.
    pub fn await_leader(&mut self, limit_ms: Millis) -> Option<usize> {
        let deadline = self.now + limit_ms;
        while self.now < deadline {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            let t = self.now + 5;
            self.run_until(t);
        }
        self.leader()
    }

    /// Crashes member `m` (it stays down until [`Simulation::restart`]).
    pub fn crash(&mut self, m: usize) {
        if let Some(member) = self.members.get_mut(m) {
            member.crash();
            self.net.drop_to(m);
            let now = self.now;
            if let Some(t) = self.trace.as_mut() {
                t.push(format!("{now} crash member {}", m + 1));
            }
        }
    }

    /// Restarts member `m` from its durable state.
    pub fn restart(&mut self, m: usize) {
        let now = self.now;
        if let Some(member) = self.members.get_mut(m) {
            if let Err(e) = member.restart(now) {
                self.checks.violate("driver", now, e);
            }
            if let Some(t) = self.trace.as_mut() {
                t.push(format!("{now} restart member {}", m + 1));
            }
        }
    }

    /// Pauses member `m`.
    pub fn pause(&mut self, m: usize) {
        if let Some(member) = self.members.get_mut(m)
            && member.is_up()
        {
            member.paused = true;
        }
    }

    /// Resumes member `m`.
    pub fn resume(&mut self, m: usize) {
        let mut ctx = ctx!(self);
        if let Some(member) = self.members.get_mut(m)
            && member.paused
        {
            member.resume(&mut ctx);
        }
    }

    /// Has client `c` start `cmd` over `path` at member `target` (or one of its choice); does
    /// nothing while the client is busy. Returns the op's history index.
    pub fn submit(
        &mut self,
        c: usize,
        cmd: KvCommand,
        path: OpPath,
        target: Option<usize>,
    ) -> Option<usize> {
        let client = self.clients.get_mut(c)?;
        if client.busy() {
            return None;
        }
        let out = client.submit(
            self.now,
            cmd,
            path,
            target,
            &self.cfg.workload,
            &mut self.stamp,
            &mut self.history,
        );
        let addr = self.cfg.nodes + c;
        self.send_client(addr, out);
        Some(self.history.len() - 1)
    }

    /// Stops client `c` from issuing random ops (scripted ops still work).
    pub fn stop_client(&mut self, c: usize) {
        if let Some(client) = self.clients.get_mut(c) {
            client.stopped = true;
        }
    }

    /// Crashes client `c`: it issues nothing more and its outstanding op stays indeterminate.
    pub fn crash_client(&mut self, c: usize) {
        if let Some(client) = self.clients.get_mut(c) {
            client.crash();
        }
    }

    /// Client `c`'s id lease expires: member `m` (the leader, when it is one) is told.
    pub fn expire_client(&mut self, m: usize, c: usize) {
        let Some(client_id) = self.clients.get(c).map(|client| client.id) else {
            return;
        };
        if let Some(member) = self.members.get_mut(m) {
            member.expire_client(client_id);
        }
        let now = self.now;
        self.trace_line(|| format!("{now} client {client_id} expires at member {}", m + 1));
    }

    /// Client `c` gives up its outstanding op (it stays indeterminate) and may start another.
    pub fn abandon_op(&mut self, c: usize) {
        let now = self.now;
        if let Some(client) = self.clients.get_mut(c) {
            client.abandon(now);
        }
    }

    /// Runs until op `hist` of the history is answered or abandoned, or `limit_ms` passes.
    /// Returns whether it was answered.
    pub fn await_op(&mut self, hist: usize, limit_ms: Millis) -> bool {
        let deadline = self.now + limit_ms;
        while self.now < deadline {
            if self.history.get(hist).is_some_and(|h| h.ret.is_some()) {
                return true;
            }
            let t = self.now + 1;
            self.run_until(t);
        }
        self.history.get(hist).is_some_and(|h| h.ret.is_some())
    }

    fn send_client(&mut self, from: Addr, out: Outbox) {
        let mut ctx = ctx!(self);
        for (m, req) in out {
            ctx.send(ctx.now, from, m, Packet::Req(req));
        }
    }

    /// Advances virtual time to `end`, processing every event on the way (stops early at the
    /// first violation).
    pub fn run_until(&mut self, end: Millis) {
        while !self.checks.failed() {
            let Some(t) = self.next_event_time() else {
                break;
            };
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.step_time();
        }
        self.now = self.now.max(end);
    }

    fn next_event_time(&self) -> Option<Millis> {
        let mut t = self.next_fault.min(self.next_log_check);
        if let Some(n) = self.net.next_time() {
            t = t.min(n);
        }
        for m in self.members.iter().filter(|m| m.is_up()) {
            t = t.min(m.next_tick);
            if let Some(a) = m.next_apply().filter(|_| !m.paused) {
                t = t.min(a);
            }
        }
        for c in &self.clients {
            if let Some(w) = c.next_wake() {
                t = t.min(w);
            }
        }
        for (at, _) in &self.undo {
            t = t.min(*at);
        }
        (t != Millis::MAX).then_some(t)
    }

    fn step_time(&mut self) {
        let now = self.now;
        self.run_faults();
        while let Some(d) = self.net.pop_due(now) {
            if d.to < self.members.len() {
                let mut ctx = ctx!(self);
                self.members[d.to].deliver(&mut ctx, d.from, d.msg);
            } else if let Packet::Resp(resp) = d.msg {
                self.client_response(d.to - self.members.len(), d.from, resp);
            }
        }
        for m in &mut self.members {
            if m.next_tick <= now {
                if m.is_running() {
                    m.tick();
                }
                m.next_tick = now + m.tick_ms;
            }
        }
        for i in 0..self.members.len() {
            let mut ctx = ctx!(self);
            let every = ctx.opts.snapshot_every;
            let member = &mut self.members[i];
            if let Some(index) = member.apply_due(&mut ctx) {
                member.applied(index, every);
            }
        }
        for c in 0..self.clients.len() {
            if self.clients[c].next_wake().is_some_and(|w| w <= now) {
                let out = self.clients[c].wake(
                    now,
                    &self.cfg.workload,
                    &mut self.stamp,
                    &mut self.history,
                );
                let addr = self.clients[c].addr;
                self.send_client(addr, out);
            }
        }
        for i in 0..self.members.len() {
            let mut ctx = ctx!(self);
            if self.members[i].drive(&mut ctx) == Outcome::Crashed {
                self.crash(i);
                if self.faults_on {
                    let down = self.draw_down();
                    self.undo.push((now + down, Undo::Restart(i)));
                }
            }
        }
        if now >= self.next_log_check {
            self.next_log_check = now + self.cfg.log_check_every_ms.max(1);
            self.check_logs();
        }
    }

    fn client_response(&mut self, c: usize, from: Addr, resp: super::client::ClientResp) {
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        let done = client.on_response(
            self.now,
            from,
            resp,
            &self.cfg.workload,
            &mut self.stamp,
            &mut self.history,
        );
        let Some(op) = done.and_then(|h| self.history.get(h)) else {
            return;
        };
        if op.completed_fast
            && let Some(output) = op.output
        {
            let first = self.checks.exactly_once.first(&op.id);
            if let Err(e) = self.checks.fast_path.on_fast_ack(op.id, output, first) {
                self.checks.violate("fast_path_agrees", self.now, e);
            }
        }
    }

    fn check_logs(&mut self) {
        let logs: Vec<_> = self
            .members
            .iter()
            .map(|m| (m.id, m.durable.entries.as_slice()))
            .collect();
        if let Err(e) = log_matching::check(&logs) {
            let now = self.now;
            self.checks.violate("log_matching", now, e);
        }
    }

    fn draw_down(&mut self) -> Millis {
        let (lo, hi) = self.cfg.faults.down_ms;
        self.rng.range(lo, hi)
    }

    /// Runs due nemesis actions and undoes expired faults.
    fn run_faults(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        self.undo.retain(|&(at, u)| {
            if at <= now {
                due.push(u);
                false
            } else {
                true
            }
        });
        for u in due {
            self.trace_line(|| format!("{now} undo {u:?}"));
            match u {
                Undo::Restart(m) => {
                    if !self.members[m].is_up() {
                        self.restart(m);
                    }
                }
                Undo::Resume(m) => self.resume(m),
                Undo::HealAll => self.net.heal(),
                Undo::Unblock(a, b) => self.net.unblock(a, b),
                Undo::Calm => self.net.set_faults(0.0, 0.0, 0.0),
            }
        }
        if self.faults_on && now >= self.next_fault {
            let (lo, hi) = self.cfg.faults.interval_ms;
            self.next_fault = now + self.rng.range(lo.max(1), hi.max(1));
            self.nemesis();
        }
    }

    fn trace_line(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_mut() {
            t.push(line());
        }
    }

    /// One random fault.
    fn nemesis(&mut self) {
        let f = self.cfg.faults.clone();
        let n = self.members.len();
        let mut pick = self.rng.below(u64::from(f.total_weight()));
        let mut choose = |w: u32| {
            let hit = pick < u64::from(w);
            pick = pick.saturating_sub(u64::from(w));
            hit
        };
        let now = self.now;
        let down = self.draw_down();
        let m = self.rng.index(n);
        if choose(f.crash) {
            if self.members[m].is_up() {
                self.crash(m);
                self.undo.push((now + down, Undo::Restart(m)));
            }
        } else if choose(f.crash_after_persist) {
            self.members[m].crash_armed = true;
            self.trace_line(|| format!("{now} arm crash-after-persist of member {}", m + 1));
        } else if choose(f.pause) {
            if self.members[m].is_running() {
                self.pause(m);
                self.undo.push((now + down, Undo::Resume(m)));
                self.trace_line(|| format!("{now} pause member {}", m + 1));
            }
        } else if choose(f.partition) {
            let total = n + self.clients.len();
            let mut sides = [Vec::new(), Vec::new()];
            for a in 0..total {
                sides[self.rng.index(2)].push(a);
            }
            self.trace_line(|| format!("{now} partition {sides:?}"));
            self.net.partition(&sides);
            self.undo.push((now + down, Undo::HealAll));
        } else if choose(f.one_way) {
            let total = n + self.clients.len();
            let (a, b) = (self.rng.index(total), self.rng.index(n));
            if a != b {
                self.trace_line(|| format!("{now} block {a} -> {b}"));
                self.net.block(a, b);
                self.undo.push((now + down, Undo::Unblock(a, b)));
            }
        } else if choose(f.isolate_leader) {
            if let Some(l) = self.leader() {
                self.trace_line(|| format!("{now} isolate leader {}", l + 1));
                self.net.isolate(l, 0..n);
                self.undo.push((now + down, Undo::HealAll));
            }
        } else {
            self.trace_line(|| format!("{now} chaos"));
            self.net.set_faults(f.drop_prob, f.dup_prob, f.reorder_prob);
            self.undo.push((now + down, Undo::Calm));
        }
    }

    /// Heals everything: no more faults, every member up and running, clients stop issuing.
    pub fn heal_all(&mut self) {
        self.faults_on = false;
        self.next_fault = Millis::MAX;
        self.undo.clear();
        self.net.heal();
        self.net.set_faults(0.0, 0.0, 0.0);
        self.net.clear_link_delays();
        self.opts.rules.clear();
        for m in 0..self.members.len() {
            self.members[m].crash_armed = false;
            if !self.members[m].is_up() {
                self.restart(m);
            } else if self.members[m].paused {
                self.resume(m);
            }
        }
        for c in &mut self.clients {
            c.stopped = true;
        }
        let now = self.now;
        self.trace_line(|| format!("{now} heal all"));
    }

    /// The liveness phase and the final checks; consumes the simulation.
    pub fn finish(mut self) -> Report {
        if !self.checks.failed() {
            self.heal_all();
            self.liveness();
        }
        if !self.checks.failed() {
            self.final_checks();
        }
        self.report()
    }

    fn liveness(&mut self) {
        let deadline = self.now + self.cfg.liveness_ms;
        let mut probe: Option<usize> = None;
        let mut probes = 0u64;
        while self.now < deadline && !self.checks.failed() {
            let answered = probe.is_some_and(|h| self.history[h].ret.is_some());
            if answered && self.all_applied(probe) && self.settled() {
                return;
            }
            let client_idle = !self.clients[0].busy();
            if !answered && client_idle {
                probes += 1;
                let cmd = KvCommand::Put {
                    key: PROBE_KEY,
                    value: probes,
                };
                probe = self.submit(0, cmd, OpPath::Ordered, None);
            }
            let t = self.now + 10;
            self.run_until(t);
        }
        if !self.checks.failed() {
            let status: Vec<_> = self
                .members
                .iter()
                .map(|m| (m.id, m.core.as_ref().map(Core::status), m.kv.applied()))
                .collect();
            let now = self.now;
            self.checks.violate(
                "liveness",
                now,
                format!(
                    "after healing, no progress within {}ms (probe answered: {}); members: \
                     {status:?}",
                    self.cfg.liveness_ms,
                    probe.is_some_and(|h| self.history[h].ret.is_some()),
                ),
            );
        }
    }

    /// Whether the cluster is quiet: no client op outstanding, and every member applied the
    /// leader's whole log (so every fast-acknowledged command the leader holds is applied).
    fn settled(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let last = self.members[leader]
            .core
            .as_ref()
            .map_or(u64::MAX, |c| c.status().last_index);
        self.clients.iter().all(|c| !c.busy())
            && self.members.iter().all(|m| m.kv.applied() >= last)
    }

    /// Whether every member applied the probe (and everything before it).
    fn all_applied(&self, probe: Option<usize>) -> bool {
        let Some(first) = probe
            .and_then(|h| self.history.get(h))
            .and_then(|op| self.checks.exactly_once.first(&op.id))
        else {
            return false;
        };
        self.members.iter().all(|m| m.kv.applied() >= first.index)
    }

    fn final_checks(&mut self) {
        let now = self.now;
        self.check_logs();
        let kvs: Vec<_> = self.members.iter().map(|m| (m.id, &m.kv)).collect();
        let lost = no_lost_ack::check(&self.history, &self.checks.exactly_once, &kvs);
        if let Err(e) = lost {
            self.checks.violate("no_lost_ack", now, e);
        }
        match linearizable::check(&self.history) {
            Ok(()) => {}
            Err(e) if e.starts_with("undecided") => self.checks.undecided += 1,
            Err(e) => self.checks.violate("linearizable", now, e),
        }
    }

    fn report(self) -> Report {
        let h = &self.history;
        let fast_answered = h
            .iter()
            .filter(|o| o.path == OpPath::Fast && o.ret.is_some())
            .count();
        let stats = RunStats {
            virtual_ms: self.now,
            ops: h.len(),
            acked: h.iter().filter(|o| o.ret.is_some()).count(),
            indeterminate: h
                .iter()
                .filter(|o| o.ret.is_none() && o.path != OpPath::Read)
                .count(),
            fast_answered,
            fast_completed: h.iter().filter(|o| o.completed_fast).count(),
            commands_executed: self.checks.exactly_once.executed(),
            peer_messages: self.stats.peer_messages.values().sum(),
            client_messages: self.stats.client_messages,
            terms_with_leader: self.checks.election.terms_with_leader(),
            crashes: self.members.iter().map(|m| m.crashes).sum(),
            duplicates: self.checks.exactly_once.duplicates,
            speculations_checked: self.checks.fast_path.checked,
            snapshots: (self.stats.snapshots_taken, self.stats.snapshots_installed),
            linearizability_undecided: self.checks.undecided > 0,
        };
        Report {
            seed: self.cfg.seed,
            nodes: self.cfg.nodes,
            violations: self.checks.violations,
            stats,
            trace: self.trace.unwrap_or_default(),
            history: self.history,
        }
    }
}
