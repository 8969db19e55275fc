//! One simulated member: a [`Core`], what its `Ready`s made durable ([`Durable`]), a register
//! state machine ([`KvStore`]) and the driver loop of `core::ready`, step by step.
//!
//! ```text
//!  deliver/tick ─► core.step / core.tick
//!  drive():  rd = core.ready()
//!            3. send rd.messages                    (now)
//!            4. persist snapshot | snapshot_taken, entries, hard_state, witness
//!               (a member armed to crash stops right here)
//!            5. send rd.persisted_messages          (now + fsync_ms)
//!            6. queue rd.committed for apply (applied after apply_delay_ms),
//!               execute rd.speculate on the applied state, answer rd.events
//!            7. core.advance(); core.step(Applied { .. }) once applying completes
//! ```
//!
//! On a crash everything but [`Durable`] is lost; a restart rebuilds the core from it
//! (`Restored`) and the state machine from the snapshot, after which the core hands the
//! committed entries after the snapshot out again.

use std::collections::{HashMap, VecDeque};

use super::client::{ClientReq, ClientResp};
use super::durable::Durable;
use super::invariants::exactly_once::FirstApply;
use super::invariants::{leader_completeness, state_machine_safety};
use super::kv::{Key, KvCommand, KvOutput, KvStore};
use super::network::{Addr, Millis};
use super::packet::{Ctx, Packet};
use crate::core::{
    Committed, Config, Core, EntryKind, Envelope, Event, Input, LogIndex, Membership, NodeId,
    ProposeId, Ready, Role, SnapshotInstall, snapshot_state_machine_data,
};

/// How processing a `Ready` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Normally.
    Done,
    /// The member crashed right after persisting (it was armed to).
    Crashed,
}

/// A simulated member.
#[derive(Debug)]
pub struct Member {
    /// Member id (`addr + 1`).
    pub id: NodeId,
    /// Network address.
    pub addr: Addr,
    config: Config,
    membership: Membership,
    /// The core; `None` while crashed.
    pub core: Option<Core>,
    /// Durable state.
    pub durable: Durable,
    /// The state machine (volatile; rebuilt on restart).
    pub kv: KvStore,
    /// Paused: takes no input and no ticks; deliveries wait in `inbox`.
    pub paused: bool,
    inbox: Vec<(Addr, Packet)>,
    /// Crash right after the next persist.
    pub crash_armed: bool,
    /// Delay between commit and apply.
    pub apply_delay_ms: Millis,
    apply_queue: VecDeque<(Millis, Committed)>,
    /// Tick period (per member: clocks drift).
    pub tick_ms: Millis,
    /// Next tick.
    pub next_tick: Millis,
    propose_waiters: HashMap<ProposeId, Addr>,
    record_waiters: HashMap<ProposeId, Addr>,
    reads: HashMap<u64, (Addr, u64, Key)>,
    waiting_reads: Vec<(LogIndex, Addr, u64, Key)>,
    next_read: u64,
    speculated: HashMap<ProposeId, KvOutput>,
    last_snapshot: LogIndex,
    /// Crashes so far.
    pub crashes: u32,
}

impl Member {
    /// A fresh member of a new cluster with `membership`.
    pub fn new(
        config: Config,
        membership: Membership,
        tick_ms: Millis,
        apply_delay_ms: Millis,
    ) -> Self {
        let durable = Durable::default();
        let core = Core::new(config.clone(), durable.restored(&membership));
        Self {
            id: config.id,
            addr: usize::try_from(config.id - 1).unwrap_or(0),
            config,
            membership,
            core: Some(core),
            durable,
            kv: KvStore::new(),
            paused: false,
            inbox: Vec::new(),
            crash_armed: false,
            apply_delay_ms,
            apply_queue: VecDeque::new(),
            tick_ms,
            next_tick: tick_ms,
            propose_waiters: HashMap::new(),
            record_waiters: HashMap::new(),
            reads: HashMap::new(),
            waiting_reads: Vec::new(),
            next_read: 1,
            speculated: HashMap::new(),
            last_snapshot: 0,
            crashes: 0,
        }
    }

    /// Whether the member is up (crashed members are not).
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Whether the member takes input now.
    pub fn is_running(&self) -> bool {
        self.core.is_some() && !self.paused
    }

    /// The role, if up.
    pub fn role(&self) -> Option<Role> {
        self.core.as_ref().map(|c| c.status().role)
    }

    /// When the next queued apply is due.
    pub fn next_apply(&self) -> Option<Millis> {
        self.apply_queue.front().map(|(at, _)| *at)
    }

    /// Loses all volatile state.
    pub fn crash(&mut self) {
        self.reset_volatile();
        self.crashes += 1;
    }

    fn reset_volatile(&mut self) {
        self.core = None;
        self.kv = KvStore::new();
        self.paused = false;
        self.inbox.clear();
        self.crash_armed = false;
        self.apply_queue.clear();
        self.propose_waiters.clear();
        self.record_waiters.clear();
        self.reads.clear();
        self.waiting_reads.clear();
        self.speculated.clear();
    }

    /// Restarts from durable state only.
    ///
    /// # Errors
    ///
    /// A description when the snapshot's state machine bytes do not decode.
    pub fn restart(&mut self, now: Millis) -> Result<(), String> {
        self.reset_volatile();
        self.kv = match &self.durable.snapshot {
            Some(snap) => KvStore::restore(&snapshot_state_machine_data(&snap.data))
                .ok_or_else(|| format!("member {}: durable snapshot does not decode", self.id))?,
            None => KvStore::new(),
        };
        self.last_snapshot = self.durable.snapshot_index();
        self.core = Some(Core::new(
            self.config.clone(),
            self.durable.restored(&self.membership),
        ));
        self.next_tick = now + self.tick_ms;
        Ok(())
    }

    /// Hands a delivered packet to the member (held while paused, dropped while crashed).
    pub fn deliver(&mut self, ctx: &mut Ctx<'_>, from: Addr, pkt: Packet) {
        if self.core.is_none() {
            return;
        }
        if self.paused {
            self.inbox.push((from, pkt));
            return;
        }
        match pkt {
            Packet::Peer(env) => self.step(Input::Message(env)),
            Packet::Req(req) => self.client_request(ctx, from, req),
            Packet::Resp(_) => {}
        }
    }

    /// Resumes a paused member, handing it what arrived meanwhile.
    pub fn resume(&mut self, ctx: &mut Ctx<'_>) {
        self.paused = false;
        for (from, pkt) in std::mem::take(&mut self.inbox) {
            self.deliver(ctx, from, pkt);
        }
    }

    /// The client-id lease of `client_id` expired (as the leader's driver would report it).
    pub fn expire_client(&mut self, client_id: u64) {
        self.step(Input::ExpireClient { client_id });
    }

    /// One clock tick.
    pub fn tick(&mut self) {
        if let Some(core) = self.core.as_mut() {
            core.tick();
        }
    }

    fn step(&mut self, input: Input) {
        if let Some(core) = self.core.as_mut() {
            core.step(input);
        }
    }

    fn reply(&self, ctx: &mut Ctx<'_>, at: Millis, to: Addr, resp: ClientResp) {
        ctx.send(at, self.addr, to, Packet::Resp(resp));
    }

    fn client_request(&mut self, ctx: &mut Ctx<'_>, from: Addr, req: ClientReq) {
        match req {
            ClientReq::Propose { cmd, fast } => {
                // Driver-level dedup: answer an executed proposal from the state machine.
                if let Some(result) = self.kv.result(&cmd.id) {
                    let resp = ClientResp::Applied { id: cmd.id, result };
                    self.reply(ctx, ctx.now, from, resp);
                    return;
                }
                self.propose_waiters.insert(cmd.id, from);
                self.step(Input::Propose { cmd, fast });
            }
            ClientReq::Record {
                cmd,
                term,
                cluster_version,
            } => {
                self.record_waiters.insert(cmd.id, from);
                self.step(Input::Record {
                    cmd,
                    term,
                    cluster_version,
                });
            }
            ClientReq::Read { read_id, key } => {
                let id = self.next_read;
                self.next_read += 1;
                self.reads.insert(id, (from, read_id, key));
                self.step(Input::ReadIndex { id });
            }
        }
    }

    /// Runs the driver loop until the core has nothing more to do.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        for _ in 0..1_000 {
            if !self.is_running() {
                return Outcome::Done;
            }
            let Some(core) = self.core.as_mut() else {
                return Outcome::Done;
            };
            let rd = core.ready();
            if rd.is_empty() {
                return Outcome::Done;
            }
            if self.process(ctx, rd) == Outcome::Crashed {
                return Outcome::Crashed;
            }
        }
        ctx.checks.violate(
            "driver",
            ctx.now,
            format!("member {}: Ready never drains", self.id),
        );
        Outcome::Done
    }

    /// Steps 3-7 of the driver loop for one `Ready`.
    fn process(&mut self, ctx: &mut Ctx<'_>, rd: Ready) -> Outcome {
        let Ready {
            snapshot,
            entries,
            hard_state,
            witness,
            messages,
            persisted_messages,
            committed,
            speculate,
            events,
            role,
            snapshot_taken,
        } = rd;
        let persisted = snapshot.is_some()
            || snapshot_taken.is_some()
            || !entries.is_empty()
            || hard_state.is_some()
            || !witness.is_empty();
        let after_fsync = ctx.now + if persisted { ctx.opts.fsync_ms } else { 0 };
        // 3. Messages that do not depend on this member's persistence.
        for env in messages {
            self.send_peer(ctx, ctx.now, env);
        }
        if let Some(rs) = role {
            ctx.trace(|| format!("member {} role {:?}", self.id, rs));
            if rs.role == Role::Leader
                && let Err(e) = ctx.checks.election.on_leader(rs.term, self.id)
            {
                ctx.checks.violate("election_safety", ctx.now, e);
            }
        }
        // 4. Persist, in the contract's order.
        if let Some(snap) = snapshot {
            self.install_snapshot(ctx, snap);
        }
        if let Some(snap) = snapshot_taken {
            ctx.stats.snapshots_taken += 1;
            self.durable.snapshot_taken(snap);
        }
        if let Err(e) = self.durable.append(&entries) {
            ctx.checks
                .violate("driver", ctx.now, format!("member {}: {e}", self.id));
        }
        if let Some(hs) = hard_state {
            self.durable.hard_state = hs;
        }
        self.durable.witness.extend(witness);
        if persisted && self.crash_armed {
            ctx.trace(|| format!("member {} crashes after persisting", self.id));
            return Outcome::Crashed;
        }
        if let Some(rs) = role
            && rs.role == Role::Leader
        {
            self.check_leader_completeness(ctx, rs.term);
        }
        // 5. Messages that needed the persistence.
        for env in persisted_messages {
            self.send_peer(ctx, after_fsync, env);
        }
        // 6. Apply, speculate, answer.
        let at = ctx.now + self.apply_delay_ms;
        self.apply_queue
            .extend(committed.into_iter().map(|c| (at, c)));
        let applied = if self.apply_delay_ms == 0 {
            self.apply_due(ctx)
        } else {
            None
        };
        for cmd in speculate {
            ctx.stats.speculations += 1;
            match KvCommand::decode(&cmd.payload) {
                Some(c) => {
                    self.speculated.insert(cmd.id, self.kv.peek(&c));
                }
                None => ctx.checks.violate(
                    "driver",
                    ctx.now,
                    format!("member {}: undecodable speculation {:?}", self.id, cmd.id),
                ),
            }
        }
        for ev in events {
            self.event(ctx, after_fsync, ev);
        }
        // 7.
        if let Some(core) = self.core.as_mut() {
            core.advance();
        }
        if let Some(index) = applied {
            self.applied(index, ctx.opts.snapshot_every);
        }
        Outcome::Done
    }

    fn send_peer(&self, ctx: &mut Ctx<'_>, at: Millis, env: Envelope) {
        let Some(to) = usize::try_from(env.to).ok().and_then(|t| t.checked_sub(1)) else {
            return;
        };
        ctx.send(at, self.addr, to, Packet::Peer(env));
    }

    fn install_snapshot(&mut self, ctx: &mut Ctx<'_>, snap: SnapshotInstall) {
        ctx.stats.snapshots_installed += 1;
        match KvStore::restore(&snapshot_state_machine_data(&snap.data)) {
            Some(kv) => self.kv = kv,
            None => ctx.checks.violate(
                "driver",
                ctx.now,
                format!("member {}: installed snapshot does not decode", self.id),
            ),
        }
        ctx.trace(|| format!("member {} installs snapshot {}", self.id, snap.index));
        self.kv.set_applied(snap.index);
        self.last_snapshot = snap.index;
        self.apply_queue.retain(|(_, c)| c.entry.index > snap.index);
        self.durable.install(snap);
        self.serve_reads(ctx);
    }

    fn check_leader_completeness(&self, ctx: &mut Ctx<'_>, term: u64) {
        let result = leader_completeness::check(
            self.id,
            term,
            self.durable.snapshot_index(),
            &self.durable.entries,
            &ctx.checks.applied,
        );
        if let Err(e) = result {
            ctx.checks.violate("leader_completeness", ctx.now, e);
        }
    }

    fn event(&mut self, ctx: &mut Ctx<'_>, at: Millis, ev: Event) {
        match ev {
            Event::Proposed { id, conflict, term } => {
                let result = if conflict {
                    None
                } else {
                    let spec = self.speculated.get(&id).copied();
                    match spec {
                        Some(r) => {
                            let first = ctx.checks.exactly_once.first(&id);
                            if let Err(e) = ctx.checks.fast_path.on_speculate(id, term, r, first) {
                                ctx.checks.violate("fast_path_agrees", ctx.now, e);
                            }
                        }
                        None => ctx.checks.violate(
                            "driver",
                            ctx.now,
                            format!("member {}: Proposed {id:?} without speculation", self.id),
                        ),
                    }
                    spec
                };
                if let Some(&to) = self.propose_waiters.get(&id) {
                    let resp = ClientResp::Proposed {
                        id,
                        conflict,
                        term,
                        result,
                    };
                    self.reply(ctx, at, to, resp);
                }
            }
            Event::Rejected { id, reason } => {
                if let Some(&to) = self.propose_waiters.get(&id) {
                    self.reply(ctx, at, to, ClientResp::Rejected { id, reason });
                }
            }
            Event::Recorded { id, accepted, term } => {
                if let Some(&to) = self.record_waiters.get(&id) {
                    let resp = ClientResp::Recorded { id, accepted, term };
                    self.reply(ctx, at, to, resp);
                }
            }
            Event::ReadIndex { id, result } => {
                let Some((to, read_id, key)) = self.reads.remove(&id) else {
                    return;
                };
                ctx.trace(|| {
                    format!(
                        "member {} read {read_id} of key {key} for {to}: index {result:?}, \
                         applied {}",
                        self.id,
                        self.kv.applied()
                    )
                });
                match result {
                    Ok(index) => {
                        self.waiting_reads.push((index, to, read_id, key));
                        self.serve_reads(ctx);
                    }
                    Err(reason) => {
                        self.reply(ctx, at, to, ClientResp::ReadRejected { read_id, reason });
                    }
                }
            }
        }
    }

    /// Answers every read whose index is applied.
    fn serve_reads(&mut self, ctx: &mut Ctx<'_>) {
        let applied = self.kv.applied();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_reads)
            .into_iter()
            .partition(|r| r.0 <= applied);
        self.waiting_reads = waiting;
        for (_, to, read_id, key) in ready {
            let value = self.kv.get(key);
            self.reply(ctx, ctx.now, to, ClientResp::ReadDone { read_id, value });
        }
    }

    /// Applies every queued committed entry that is due; returns the last index applied.
    pub fn apply_due(&mut self, ctx: &mut Ctx<'_>) -> Option<LogIndex> {
        if !self.is_running() {
            return None;
        }
        let mut last = None;
        while self
            .apply_queue
            .front()
            .is_some_and(|(at, _)| *at <= ctx.now)
        {
            let Some((_, c)) = self.apply_queue.pop_front() else {
                break;
            };
            let index = c.entry.index;
            self.apply_one(ctx, c);
            last = Some(index);
        }
        if last.is_some() {
            self.serve_reads(ctx);
        }
        last
    }

    /// Tells the core that applying reached `index`, and takes a snapshot every
    /// `snapshot_every` entries (0: never).
    pub fn applied(&mut self, index: LogIndex, snapshot_every: u64) {
        self.step(Input::Applied { index });
        let every = snapshot_every;
        if every > 0 && index >= self.last_snapshot + every {
            self.last_snapshot = index;
            self.step(Input::SnapshotTaken {
                index,
                data: self.kv.snapshot(),
            });
        }
    }

    fn apply_one(&mut self, ctx: &mut Ctx<'_>, c: Committed) {
        let Committed { entry, duplicate } = c;
        let index = entry.index;
        ctx.trace(|| {
            format!(
                "member {} applies {index}/{} dup={duplicate} {:?}",
                self.id,
                entry.term,
                state_machine_safety::Digest::of(&entry)
            )
        });
        if let Err(e) = state_machine_safety::check_in_order(self.id, self.kv.applied(), index) {
            ctx.checks.violate("state_machine_safety", ctx.now, e);
        }
        let leader_term = ctx.checks.election.max_term();
        if let Err(e) = ctx.checks.applied.on_apply(self.id, &entry, leader_term) {
            ctx.checks.violate("state_machine_safety", ctx.now, e);
        }
        let EntryKind::Command { cmd, .. } = &entry.kind else {
            self.kv.set_applied(index);
            return;
        };
        let id = cmd.id;
        let had = self.kv.was_applied(&id);
        let result = if duplicate {
            ctx.checks.exactly_once.on_duplicate(had);
            self.kv.set_applied(index);
            self.kv.result(&id)
        } else {
            let Some(kv_cmd) = KvCommand::decode(&cmd.payload) else {
                ctx.checks.violate(
                    "driver",
                    ctx.now,
                    format!("member {}: undecodable command {id:?}", self.id),
                );
                self.kv.set_applied(index);
                return;
            };
            let result = self.kv.apply(index, id, &kv_cmd);
            match ctx
                .checks
                .exactly_once
                .on_execute(self.id, id, index, entry.term, result, had)
            {
                Ok(true) => {
                    let first = FirstApply {
                        index,
                        term: entry.term,
                        result,
                    };
                    if let Err(e) = ctx.checks.fast_path.on_first_execute(id, first) {
                        ctx.checks.violate("fast_path_agrees", ctx.now, e);
                    }
                }
                Ok(false) => {}
                Err(e) => ctx.checks.violate("exactly_once", ctx.now, e),
            }
            Some(result)
        };
        if let (Some(&to), Some(result)) = (self.propose_waiters.get(&id), result) {
            self.reply(ctx, ctx.now, to, ClientResp::Applied { id, result });
        }
    }
}
