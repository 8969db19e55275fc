//! A linearizability checker for histories of key-value register operations.
//!
//! A test (typically a deterministic simulation) records every client operation with a
//! [`HistoryRecorder`]: the logical time it was invoked, the logical time its answer arrived
//! (or that no answer ever did), what was asked and what was answered. [`check`] then decides
//! whether some sequential execution of a plain map explains every answer while respecting
//! real time: an operation that returned before another was invoked takes effect before it.
//!
//! # Model
//!
//! The store is a map `Key -> Option<Value>`, every key initially absent. [`Input::Put`] and
//! [`Input::Delete`] overwrite, [`Input::Get`] reads, and [`Input::Cas`] replaces the value
//! only when the current one equals `expected` (`None` meaning "absent") and answers whether
//! it did. Keys and values are `u64` for speed; map byte strings onto them with an
//! [`Interner`].
//!
//! # History semantics
//!
//! - `call`/`ret` are logical times. Operations whose intervals touch (`a.ret == b.call`) count
//!   as concurrent. A `ret` earlier than `call` is read as `ret == call`.
//! - `ret: None` marks an *indeterminate* operation (timed out, connection lost, outcome
//!   unknown): it may never have taken effect, or taken effect at any moment after `call`.
//! - `output: None` means the answer is unknown: a `Get` then constrains nothing, and a `Cas`
//!   may have succeeded or failed (whichever the state at its linearization point dictates).
//! - An output of the wrong kind for its input (say `Output::Get` for a `Put`) can never be
//!   explained, so such a completed operation makes the history illegal.
//! - [`Operation::client`] is informational only.
//!
//! # Algorithm
//!
//! Linearizability is local (compositional): a history is linearizable if and only if each
//! per-key sub-history is, so every key is checked on its own. Per key the checker runs the
//! Wing & Gong depth-first search with Lowe's memoization: calls and returns form a doubly
//! linked list ordered by time; at each step any operation whose call precedes the first
//! pending return may be linearized next if the model accepts it, and configurations
//! (set of linearized operations, model state) already explored are skipped. A return reached
//! before its operation was linearized forces backtracking.
//!
//! Indeterminate ("floating") operations have no return event, are optional, and the search
//! succeeds once every completed operation is linearized. Several reductions, each preserving
//! the verdict, keep many timed-out operations from blowing up the search:
//!
//! - Before searching, operations that constrain nothing are dropped, a floating write whose
//!   (unique) value a completed operation observed becomes mandatory with that operation's
//!   return as deadline, floating writes of values nobody could observe are dropped, and
//!   values nobody observes are merged into one.
//! - Floating operations are tried only after completed ones, only when an operation that may
//!   come next needs them (behaves differently with them), and only that operation may come
//!   right after them; floating operations with identical effects are tried in call order.
//! - Configurations are memoized as (completed operations linearized, state) with the sets of
//!   floating operations used to get there: having used more is never better. Values no
//!   pending operation can observe any more are indistinguishable, both as states and as
//!   floating writes (only their number matters).
//!
//! When a key is illegal the checker shrinks a witness, within a bounded effort: the shortest
//! prefix (in event order) of that key's history that is already illegal (which the search
//! reports), cut at the latest completed write overlapped by writes only that keeps it
//! illegal, minus reads and failed compare-and-swaps not needed for the contradiction, plus
//! the cut-off writes of values it reads (for context). The witness, taken on its own, is
//! itself a non-linearizable history.
//!
//! # Cost
//!
//! Checking is worst-case exponential (the problem is NP-complete), though histories from a
//! sequential model with a handful of concurrent clients check in near-linear time; many
//! concurrent clients on one key, or many timed-out compare-and-swaps, make it costlier
//! (proving a history illegal, which needs an exhaustive search, more so).
//! [`check_with_budget`] bounds the effort.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A key of the modelled store. Map byte keys onto keys with an [`Interner`].
pub type Key = u64;

/// A value of the modelled store. Map byte values onto values with an [`Interner`].
pub type Value = u64;

/// What a client asked for. Every operation touches exactly one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// Store `value` under `key`, whatever was there.
    Put {
        /// The key written.
        key: Key,
        /// The value stored.
        value: Value,
    },
    /// Read the value under `key`.
    Get {
        /// The key read.
        key: Key,
    },
    /// Remove `key` (a no-op when it is absent).
    Delete {
        /// The key removed.
        key: Key,
    },
    /// Store `new` under `key` if the current value equals `expected` (`None`: absent).
    Cas {
        /// The key compared and maybe written.
        key: Key,
        /// The value the key must currently hold (`None`: the key must be absent).
        expected: Option<Value>,
        /// The value stored when the comparison holds.
        new: Value,
    },
}

impl Input {
    /// The key this operation touches.
    pub fn key(&self) -> Key {
        match *self {
            Input::Put { key, .. }
            | Input::Get { key }
            | Input::Delete { key }
            | Input::Cas { key, .. } => key,
        }
    }
}

/// What a client was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// A [`Input::Put`] was acknowledged.
    Put,
    /// A [`Input::Get`] saw this value (`None`: the key was absent).
    Get(Option<Value>),
    /// A [`Input::Delete`] was acknowledged.
    Delete,
    /// A [`Input::Cas`] reported whether the comparison held (and the write happened).
    Cas(bool),
}

/// One client operation in a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client that issued it (informational; not used by the checker).
    pub client: u64,
    /// Logical time of the invocation.
    pub call: u64,
    /// Logical time the answer arrived; `None` when it never did (the operation may or may
    /// not have taken effect, and if it did, at any time after `call`).
    pub ret: Option<u64>,
    /// What was asked.
    pub input: Input,
    /// What was answered; `None` when unknown.
    pub output: Option<Output>,
}

impl Operation {
    /// Whether the outcome of the operation is unknown (no answer ever arrived).
    pub fn is_indeterminate(&self) -> bool {
        self.ret.is_none()
    }
}

/// The verdict of [`check`] / [`check_with_budget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// The history is linearizable.
    Ok,
    /// The history is not linearizable. When several keys are illegal, the smallest is
    /// reported.
    Illegal {
        /// The key whose sub-history cannot be linearized.
        key: Key,
        /// Indices into the history (ascending) of a witness: operations on `key` that by
        /// themselves already form a non-linearizable history.
        ops: Vec<usize>,
    },
    /// No key was found illegal, but the search for at least one key ran out of steps.
    Timeout,
}

impl CheckResult {
    /// Whether the history was found linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether the history was found not linearizable.
    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal { .. })
    }

    /// A human-readable account of the verdict, listing the witness operations of an
    /// [`CheckResult::Illegal`] verdict from `history` (the history that was checked).
    pub fn describe(&self, history: &[Operation]) -> String {
        match self {
            CheckResult::Ok => "linearizable".to_owned(),
            CheckResult::Timeout => "undecided: the search ran out of steps".to_owned(),
            CheckResult::Illegal { key, ops } => {
                let mut text = format!(
                    "not linearizable: key {key}, witness of {} operation(s):",
                    ops.len()
                );
                for &index in ops {
                    let Some(op) = history.get(index) else {
                        continue;
                    };
                    let ret = op.ret.map_or_else(|| "?".to_owned(), |ret| ret.to_string());
                    let output = op
                        .output
                        .map_or_else(|| "?".to_owned(), |output| format!("{output:?}"));
                    text.push_str(&format!(
                        "\n  #{index} client {} [{}, {ret}] {:?} -> {output}",
                        op.client, op.call, op.input
                    ));
                }
                text
            }
        }
    }
}

/// Checks whether `history` is linearizable with respect to the key-value register model,
/// searching for as long as it takes.
pub fn check(history: &[Operation]) -> CheckResult {
    check_with_budget(history, u64::MAX)
}

/// Like [`check`], but gives up on a key after `max_steps` search steps and reports
/// [`CheckResult::Timeout`] (unless another key is proven illegal, which takes precedence).
///
/// The budget applies to each key separately, so the total work is bounded by roughly
/// `max_steps` times the number of keys (plus a bounded amount of witness shrinking).
pub fn check_with_budget(history: &[Operation], max_steps: u64) -> CheckResult {
    let mut by_key: BTreeMap<Key, Vec<KeyOp>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        by_key
            .entry(op.input.key())
            .or_default()
            .push(KeyOp::new(index, op));
    }
    let mut timed_out = false;
    for (key, ops) in by_key {
        let mut budget = max_steps;
        match verdict(&ops, &mut budget) {
            Verdict::Linearizable => {}
            Verdict::Timeout => timed_out = true,
            Verdict::Illegal(frontier) => {
                // Shrinking the witness may cost about twice what finding the problem did.
                let used = max_steps - budget;
                let shrink_steps = used.saturating_mul(2).saturating_add(100_000);
                return CheckResult::Illegal {
                    key,
                    ops: witness(&ops, frontier, shrink_steps),
                };
            }
        }
    }
    if timed_out {
        CheckResult::Timeout
    } else {
        CheckResult::Ok
    }
}

/// Maps byte strings (keys or values) to dense `u64` ids, so byte-keyed histories can be
/// checked: the same bytes always get the same id, distinct bytes distinct ids.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    ids: HashMap<Vec<u8>, u64>,
    names: Vec<Vec<u8>>,
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `bytes`, assigning the next free id (0, 1, 2, ...) on first sight.
    pub fn intern(&mut self, bytes: &[u8]) -> u64 {
        if let Some(&id) = self.ids.get(bytes) {
            return id;
        }
        let id = self.names.len() as u64;
        self.names.push(bytes.to_vec());
        self.ids.insert(bytes.to_vec(), id);
        id
    }

    /// The id of `bytes`, if it was interned.
    pub fn get(&self, bytes: &[u8]) -> Option<u64> {
        self.ids.get(bytes).copied()
    }

    /// The bytes behind `id`, if it was assigned.
    pub fn resolve(&self, id: u64) -> Option<&[u8]> {
        let index = usize::try_from(id).ok()?;
        self.names.get(index).map(Vec::as_slice)
    }

    /// How many distinct byte strings were interned.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether nothing was interned yet.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Records a history for [`check`], assigning logical times from a counter that advances on
/// every invocation and every completion (so all times in a recorded history are distinct).
///
/// Operations never completed are indeterminate, exactly as if
/// [`HistoryRecorder::fail_indeterminate`] had been called for them.
#[derive(Debug, Clone, Default)]
pub struct HistoryRecorder {
    clock: u64,
    ops: Vec<Operation>,
}

/// An operation invoked through a [`HistoryRecorder`] and not completed yet.
#[must_use = "complete the operation or mark it indeterminate"]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct OpHandle(usize);

impl OpHandle {
    /// Index of the operation in the recorded history.
    pub fn index(&self) -> usize {
        self.0
    }
}

impl HistoryRecorder {
    /// An empty recorder, its clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn tick(&mut self) -> u64 {
        let now = self.clock;
        self.clock += 1;
        now
    }

    /// Records that `client` invoked `input` now.
    pub fn invoke(&mut self, client: u64, input: Input) -> OpHandle {
        let call = self.tick();
        self.ops.push(Operation {
            client,
            call,
            ret: None,
            input,
            output: None,
        });
        OpHandle(self.ops.len() - 1)
    }

    /// Records that the operation returned `output` now.
    pub fn complete(&mut self, handle: OpHandle, output: Output) {
        let ret = self.tick();
        if let Some(op) = self.ops.get_mut(handle.0) {
            op.ret = Some(ret);
            op.output = Some(output);
        }
    }

    /// Records that the operation's outcome will never be known (it timed out, its
    /// connection broke, ...): it may or may not have taken effect. Recording an error this
    /// way is always safe, just less strict than a definite answer.
    pub fn fail_indeterminate(&mut self, handle: OpHandle) {
        if let Some(op) = self.ops.get_mut(handle.0) {
            op.ret = None;
            op.output = None;
        }
    }

    /// The current logical time (the time the next event will get).
    pub fn now(&self) -> u64 {
        self.clock
    }

    /// The operations recorded so far, in invocation order.
    pub fn history(&self) -> &[Operation] {
        &self.ops
    }

    /// The recorded history.
    pub fn into_history(self) -> Vec<Operation> {
        self.ops
    }

    /// Checks the history recorded so far with [`check`].
    pub fn check(&self) -> CheckResult {
        check(&self.ops)
    }

    /// Checks the history recorded so far with [`check_with_budget`].
    pub fn check_with_budget(&self, max_steps: u64) -> CheckResult {
        check_with_budget(&self.ops, max_steps)
    }
}

// ---------------------------------------------------------------------------------------------
// Per-key representation and model.

/// What an operation does to, and requires of, its key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Act {
    /// Overwrites the state (`Put`: `Some`, `Delete`: `None`).
    Write(Option<Value>),
    /// Requires the state to be this, changes nothing.
    Read(Option<Value>),
    /// Compare-and-swap, with its reported outcome if known.
    Cas {
        expected: Option<Value>,
        new: Value,
        outcome: Option<bool>,
    },
    /// Requires and changes nothing (a read with an unknown answer).
    Unconstrained,
    /// Can never be linearized (an answer of the wrong kind).
    Impossible,
}

impl Act {
    fn new(input: Input, output: Option<Output>) -> Self {
        match (input, output) {
            (Input::Put { value, .. }, None | Some(Output::Put)) => Act::Write(Some(value)),
            (Input::Delete { .. }, None | Some(Output::Delete)) => Act::Write(None),
            (Input::Get { .. }, None) => Act::Unconstrained,
            (Input::Get { .. }, Some(Output::Get(value))) => Act::Read(value),
            (Input::Cas { expected, new, .. }, None) => Act::Cas {
                expected,
                new,
                outcome: None,
            },
            (Input::Cas { expected, new, .. }, Some(Output::Cas(ok))) => Act::Cas {
                expected,
                new,
                outcome: Some(ok),
            },
            _ => Act::Impossible,
        }
    }

    /// The state after applying this to `state`, or `None` when the answer contradicts it.
    fn apply(self, state: Option<Value>) -> Option<Option<Value>> {
        match self {
            Act::Write(value) => Some(value),
            Act::Read(value) => (value == state).then_some(state),
            Act::Cas {
                expected,
                new,
                outcome,
            } => {
                let holds = state == expected;
                match outcome {
                    Some(reported) if reported != holds => None,
                    _ => Some(if holds { Some(new) } else { state }),
                }
            }
            Act::Unconstrained => Some(state),
            Act::Impossible => None,
        }
    }

    /// Whether linearizing this never changes the state.
    fn has_no_effect(self) -> bool {
        matches!(
            self,
            Act::Read(_)
                | Act::Cas {
                    outcome: Some(false),
                    ..
                }
                | Act::Unconstrained
                | Act::Impossible
        )
    }
}

/// An operation of one key's sub-history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyOp {
    /// Index in the full history.
    index: usize,
    call: u64,
    ret: Option<u64>,
    act: Act,
}

impl KeyOp {
    fn new(index: usize, op: &Operation) -> Self {
        Self {
            index,
            call: op.call,
            ret: op.ret.map(|ret| ret.max(op.call)),
            act: Act::new(op.input, op.output),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Linearizable,
    /// With the latest return no partial linearization got past, if known: the history up to
    /// it is the shortest illegal prefix.
    Illegal(Option<Frontier>),
    Timeout,
}

/// A return event: its time and the history index of its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frontier {
    time: u64,
    index: usize,
}

/// Simplifies one key's sub-history and searches it.
fn verdict(ops: &[KeyOp], budget: &mut u64) -> Verdict {
    let mut ops = simplify(ops);
    // Completed operations first: bit positions in the memo are split by this.
    ops.sort_by_key(|op| op.ret.is_none());
    search(&ops, budget)
}

/// Rewrites a sub-history into an equivalent (same verdict) one that is cheaper to search.
fn simplify(ops: &[KeyOp]) -> Vec<KeyOp> {
    let mut kept: Vec<KeyOp> = ops
        .iter()
        .copied()
        .filter(|op| match op.act {
            Act::Unconstrained => false,
            // Optional and without effect: linearizing it can never help.
            act => op.ret.is_some() || !act.has_no_effect(),
        })
        .collect();
    promote_observed_writes(&mut kept);
    drop_unobservable_writes(&mut kept);
    merge_unobserved_values(&mut kept);
    kept
}

/// Values that no read returns and no compare-and-swap expects are indistinguishable to every
/// operation (the model only compares the state with those): write them all as one value,
/// so that floating writes of such values become interchangeable.
fn merge_unobserved_values(ops: &mut [KeyOp]) {
    let mut observed: HashSet<Value> = HashSet::new();
    for op in ops.iter() {
        if let Act::Read(Some(value))
        | Act::Cas {
            expected: Some(value),
            ..
        } = op.act
        {
            observed.insert(value);
        }
    }
    let mut merged = Value::MAX;
    while observed.contains(&merged) {
        merged -= 1;
    }
    for op in ops.iter_mut() {
        if let Act::Write(Some(value)) | Act::Cas { new: value, .. } = &mut op.act
            && !observed.contains(value)
        {
            *value = merged;
        }
    }
}

/// A floating operation that is the only one able to produce `Some(v)`, while a completed
/// operation requires state `Some(v)`, must be linearized before that operation returns: give
/// it that return time (the earliest such one).
fn promote_observed_writes(ops: &mut [KeyOp]) {
    let mut producers: HashMap<Value, (usize, usize)> = HashMap::new();
    for (pos, op) in ops.iter().enumerate() {
        let produced = match op.act {
            Act::Write(Some(value)) => Some(value),
            Act::Cas {
                new,
                outcome: None | Some(true),
                ..
            } => Some(new),
            _ => None,
        };
        if let Some(value) = produced {
            producers.entry(value).or_insert((0, pos)).0 += 1;
        }
    }
    let mut deadlines: HashMap<Value, u64> = HashMap::new();
    for op in ops.iter() {
        let Some(ret) = op.ret else { continue };
        let required = match op.act {
            Act::Read(Some(value)) => Some(value),
            Act::Cas {
                expected: Some(value),
                outcome: Some(true),
                ..
            } => Some(value),
            _ => None,
        };
        if let Some(value) = required {
            deadlines
                .entry(value)
                .and_modify(|deadline| *deadline = (*deadline).min(ret))
                .or_insert(ret);
        }
    }
    for (value, (count, pos)) in producers {
        let Some(&deadline) = deadlines.get(&value) else {
            continue;
        };
        if count != 1 {
            continue;
        }
        if let Some(op) = ops.get_mut(pos)
            && op.ret.is_none()
            && deadline >= op.call
        {
            op.ret = Some(deadline);
        }
    }
}

/// Drops floating writes of a state nobody can observe: no read returns it, no
/// compare-and-swap expects it, and no completed compare-and-swap that may have failed could
/// be linearized after it. Any linearization using such a write stays one without it.
fn drop_unobservable_writes(ops: &mut Vec<KeyOp>) {
    let mut observed: HashSet<Option<Value>> = HashSet::new();
    let mut last_weak_cas_ret: Option<u64> = None;
    for op in ops.iter() {
        match op.act {
            Act::Read(value) => {
                observed.insert(value);
            }
            Act::Cas {
                expected, outcome, ..
            } => {
                observed.insert(expected);
                if let (Some(ret), None | Some(false)) = (op.ret, outcome) {
                    last_weak_cas_ret = Some(last_weak_cas_ret.map_or(ret, |last| last.max(ret)));
                }
            }
            _ => {}
        }
    }
    ops.retain(|op| {
        if op.ret.is_some() {
            return true;
        }
        let written = match op.act {
            Act::Write(value) => value,
            Act::Cas { new, .. } => Some(new),
            _ => return true,
        };
        observed.contains(&written) || last_weak_cas_ret.is_some_and(|ret| ret >= op.call)
    });
}

// ---------------------------------------------------------------------------------------------
// The search.

/// Sentinel of the list of completed operations' events; also "no node".
const HEAD: usize = 0;
/// Sentinel of the list of floating operations' calls.
const FLOATING_HEAD: usize = 1;

/// The events of one key's sub-history in time order (calls before returns at equal times),
/// as two doubly linked lists: calls and returns of completed operations, and calls of
/// floating ones. An operation's events can be removed and put back in reverse order
/// ("dancing links").
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Operation of each node (nodes 0 and 1 are the sentinels).
    op_of: Vec<usize>,
    is_call: Vec<bool>,
    /// Rank of each node's event in time order (`usize::MAX` for the sentinels).
    position: Vec<usize>,
    /// Return node of each operation, `HEAD` for floating ones.
    ret_of: Vec<usize>,
}

/// (time, is return, operation) for every event, sorted.
fn sorted_events(ops: &[KeyOp]) -> Vec<(u64, bool, usize)> {
    let mut events = Vec::with_capacity(ops.len() * 2);
    for (pos, op) in ops.iter().enumerate() {
        events.push((op.call, false, pos));
        if let Some(ret) = op.ret {
            events.push((ret, true, pos));
        }
    }
    events.sort_unstable();
    events
}

impl EventList {
    fn new(ops: &[KeyOp]) -> Self {
        let events = sorted_events(ops);
        let nodes = events.len() + 2;
        let mut list = Self {
            next: vec![HEAD; nodes],
            prev: vec![HEAD; nodes],
            op_of: vec![0; nodes],
            is_call: vec![false; nodes],
            position: vec![usize::MAX; nodes],
            ret_of: vec![HEAD; ops.len()],
        };
        list.next[FLOATING_HEAD] = FLOATING_HEAD;
        list.prev[FLOATING_HEAD] = FLOATING_HEAD;
        for (position, &(_, is_ret, op)) in events.iter().enumerate() {
            let node = position + 2;
            list.op_of[node] = op;
            list.is_call[node] = !is_ret;
            list.position[node] = position;
            if is_ret {
                list.ret_of[op] = node;
            }
            let head = if ops[op].ret.is_some() {
                HEAD
            } else {
                FLOATING_HEAD
            };
            let tail = list.prev[head];
            list.next[tail] = node;
            list.prev[node] = tail;
            list.next[node] = head;
            list.prev[head] = node;
        }
        list
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }

    /// What the operations that may be linearized next (calls of completed operations
    /// before the first pending return, and calls of floating ones before the event at
    /// `limit`) need from a floating operation, in state `state`.
    fn window_needs(&self, ops: &[KeyOp], state: Option<Value>, limit: usize) -> NeedSummary {
        let mut summary = NeedSummary::default();
        let mut node = self.next[HEAD];
        while node != HEAD && self.is_call[node] {
            summary.add(need_of(ops[self.op_of[node]].act, state));
            node = self.next[node];
        }
        let mut node = self.next[FLOATING_HEAD];
        while node != FLOATING_HEAD && self.position[node] < limit {
            summary.add(need_of(ops[self.op_of[node]].act, state));
            node = self.next[node];
        }
        summary
    }

    /// Removes the call node `call` and its operation's return node.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let ret = self.ret_of[self.op_of[call]];
        if ret != HEAD {
            self.unlink(ret);
        }
    }

    /// Undoes the [`EventList::lift`] of `call` (which must be the latest one not undone).
    fn unlift(&mut self, call: usize) {
        let ret = self.ret_of[self.op_of[call]];
        if ret != HEAD {
            self.relink(ret);
        }
        self.relink(call);
    }
}

/// Whether `act`, linearized in state `after` (reached by a floating operation from
/// `before`), behaves differently than it would have in `before`, other than by not changing
/// either state.
///
/// Any linearization can be normalized so that every floating operation it uses is
/// immediately followed by an operation that needs it: a floating operation followed by one
/// that behaves the same without it is deleted, and one followed by an operation without
/// effect in either state is moved after it (it has no return time to respect).
fn needs(act: Act, before: Option<Value>, after: Option<Value>) -> bool {
    let Some(result) = act.apply(after) else {
        return false;
    };
    match act.apply(before) {
        None => true,
        Some(without) => without != result && !(without == before && result == after),
    }
}

/// [`needs`] in closed form: for which states `after != before` `act` needs a floating
/// operation taking `before` to `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    /// Exactly this state.
    Exactly(Option<Value>),
    /// Any state but this one.
    AnyBut(Option<Value>),
}

impl Need {
    fn accepts(self, after: Option<Value>) -> bool {
        match self {
            Need::Nothing => false,
            Need::Exactly(wanted) => after == wanted,
            Need::AnyBut(unwanted) => after != unwanted,
        }
    }
}

/// What `act` needs from a floating operation in state `before` (see [`needs`]).
fn need_of(act: Act, before: Option<Value>) -> Need {
    match act {
        Act::Read(seen) if seen != before => Need::Exactly(seen),
        Act::Cas {
            expected,
            outcome: Some(true),
            ..
        } if expected != before => Need::Exactly(expected),
        Act::Cas {
            expected,
            outcome: Some(false),
            ..
        } if expected == before => Need::AnyBut(expected),
        Act::Cas {
            expected,
            new,
            outcome: None,
        } if Some(new) != expected => {
            if expected == before {
                Need::AnyBut(Some(new))
            } else if Some(new) != before {
                Need::Exactly(expected)
            } else {
                Need::Nothing
            }
        }
        _ => Need::Nothing,
    }
}

/// The [`Need`]s of a set of operations.
#[derive(Debug, Default)]
struct NeedSummary {
    exactly: Vec<Option<Value>>,
    any_but: Vec<Option<Value>>,
}

impl NeedSummary {
    fn add(&mut self, need: Need) {
        match need {
            Need::Nothing => {}
            Need::Exactly(wanted) => self.exactly.push(wanted),
            Need::AnyBut(unwanted) => self.any_but.push(unwanted),
        }
    }

    /// How many of the operations need state `after`.
    fn count(&self, after: Option<Value>) -> usize {
        self.exactly
            .iter()
            .filter(|&&wanted| wanted == after)
            .count()
            + self
                .any_but
                .iter()
                .filter(|&&unwanted| unwanted != after)
                .count()
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Random-looking key of a completed operation for the incremental set hash.
fn zobrist(op: usize) -> u64 {
    splitmix64((op as u64).wrapping_mul(2).wrapping_add(1))
}

fn memo_hash(set_hash: u64, state: Canonical) -> u64 {
    let state_code = match state {
        None => 0x5851_F42D_4C95_7F2D,
        Some(None) => 0x243F_6A88_85A3_08D3,
        Some(Some(value)) => splitmix64(value ^ 0x1319_8A2E_0370_7344),
    };
    splitmix64(set_hash ^ state_code.rotate_left(29))
}

fn set_bit(words: &mut [u64], bit: usize) {
    words[bit / 64] |= 1 << (bit % 64);
}

fn has_bit(words: &[u64], bit: usize) -> bool {
    words[bit / 64] & (1 << (bit % 64)) != 0
}

fn clear_bit(words: &mut [u64], bit: usize) {
    words[bit / 64] &= !(1 << (bit % 64));
}

/// Word `i` of `words` with bit `extra` (if any) set.
fn word_with(words: &[u64], i: usize, extra: Option<usize>) -> u64 {
    match extra {
        Some(bit) if bit / 64 == i => words[i] | 1 << (bit % 64),
        _ => words[i],
    }
}

fn words_with(words: &[u64], extra: Option<usize>) -> Box<[u64]> {
    (0..words.len())
        .map(|i| word_with(words, i, extra))
        .collect()
}

/// Hashes are already well mixed; use them as they are.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// One explored (completed operations linearized, state) pair, with every (minimal) set of
/// floating operations it was reached with.
struct MemoEntry {
    completed: Box<[u64]>,
    state: Canonical,
    floating: Vec<Box<[u64]>>,
}

/// Lowe's memo, extended with dominance over floating operations.
#[derive(Default)]
struct Memo {
    buckets: HashMap<u64, Vec<MemoEntry>, BuildHasherDefault<IdentityHasher>>,
}

impl Memo {
    /// Records the configuration (`completed` + `add_completed`, `floating`, `state`) and
    /// returns true, unless it is no better than one recorded before, in which case it
    /// returns false. "No better" means the same completed set and state, and no more
    /// floating operations left: a subset of them used, except that floating writes in
    /// `dead_writes` (nobody can observe their values any more) are interchangeable, so only
    /// their number counts. (All floating operations used are called before the first
    /// pending return, which the completed set fixes, so the unused interchangeable ones
    /// include that many already called.)
    fn visit(
        &mut self,
        hash: u64,
        completed: &[u64],
        add_completed: usize,
        floating: &[u64],
        dead_writes: &[u64],
        state: Canonical,
    ) -> bool {
        let add_completed = Some(add_completed);
        let bucket = self.buckets.entry(hash).or_default();
        for entry in bucket.iter_mut() {
            if entry.state != state
                || !(0..completed.len())
                    .all(|i| entry.completed[i] == word_with(completed, i, add_completed))
            {
                continue;
            }
            let dead_now: u32 = floating
                .iter()
                .zip(dead_writes)
                .map(|(now, dead)| (now & dead).count_ones())
                .sum();
            let dominated = entry.floating.iter().any(|seen| {
                let distinct_ok = seen
                    .iter()
                    .zip(floating)
                    .zip(dead_writes)
                    .all(|((seen, now), dead)| seen & !dead & !now == 0);
                distinct_ok && {
                    let dead_seen: u32 = seen
                        .iter()
                        .zip(dead_writes)
                        .map(|(seen, dead)| (seen & dead).count_ones())
                        .sum();
                    dead_seen <= dead_now
                }
            });
            if dominated {
                return false;
            }
            entry.floating.push(floating.into());
            return true;
        }
        bucket.push(MemoEntry {
            completed: words_with(completed, add_completed),
            state,
            floating: vec![floating.into()],
        });
        true
    }
}

/// A state as the memo sees it: `None` for any value nobody can observe any more.
type Canonical = Option<Option<Value>>;

/// Which states the operations not linearized yet can still tell apart.
///
/// The model only ever compares the state with values read or expected. Once every
/// operation that compares with some value is linearized (floating ones never count as
/// such), that value is indistinguishable from any other such value for the rest of the
/// search: states holding them are equivalent, and so are floating writes of them.
struct Liveness {
    ids: HashMap<Option<Value>, usize>,
    /// Per operation, the value (id) it compares the state with.
    observes: Vec<Option<usize>>,
    /// Per value, how many operations not linearized yet compare with it (floating ones
    /// count forever).
    observers: Vec<u32>,
    /// Per value, the floating writes of it (indices among floating operations).
    writers: Vec<Vec<usize>>,
    /// Floating writes of values nobody can observe any more, as a bitset.
    dead_writes: Vec<u64>,
}

impl Liveness {
    fn new(ops: &[KeyOp], completed_count: usize) -> Self {
        let mut ids: HashMap<Option<Value>, usize> = HashMap::new();
        let mut id = |value: Option<Value>| {
            let next = ids.len();
            *ids.entry(value).or_insert(next)
        };
        let observes: Vec<Option<usize>> = ops
            .iter()
            .map(|op| match op.act {
                Act::Read(value)
                | Act::Cas {
                    expected: value, ..
                } => Some(id(value)),
                _ => None,
            })
            .collect();
        let writes: Vec<Option<usize>> = ops[completed_count..]
            .iter()
            .map(|op| match op.act {
                Act::Write(value) => Some(id(value)),
                _ => None,
            })
            .collect();
        let mut observers = vec![0; ids.len()];
        for &value in observes.iter().flatten() {
            observers[value] += 1;
        }
        let mut writers = vec![Vec::new(); ids.len()];
        for (floating, &value) in writes.iter().enumerate() {
            if let Some(value) = value {
                writers[value].push(floating);
            }
        }
        let mut dead_writes = vec![0; writes.len().div_ceil(64)];
        for (value, writers) in writers.iter().enumerate() {
            if observers[value] == 0 {
                for &floating in writers {
                    set_bit(&mut dead_writes, floating);
                }
            }
        }
        Self {
            ids,
            observes,
            observers,
            writers,
            dead_writes,
        }
    }

    /// Records that the completed operation `op` got linearized.
    fn linearize(&mut self, op: usize) {
        if let Some(value) = self.observes[op] {
            self.observers[value] -= 1;
            if self.observers[value] == 0 {
                for &floating in &self.writers[value] {
                    set_bit(&mut self.dead_writes, floating);
                }
            }
        }
    }

    /// Undoes [`Liveness::linearize`].
    fn unlinearize(&mut self, op: usize) {
        if let Some(value) = self.observes[op] {
            self.observers[value] += 1;
            if self.observers[value] == 1 {
                for &floating in &self.writers[value] {
                    clear_bit(&mut self.dead_writes, floating);
                }
            }
        }
    }

    fn canonical(&self, state: Option<Value>) -> Canonical {
        match self.ids.get(&state) {
            Some(&value) if self.observers[value] == 0 => None,
            _ => Some(state),
        }
    }
}

/// A linearization step that can be undone.
struct Frame {
    /// Call node of the linearized operation.
    node: usize,
    /// State before it.
    state: Option<Value>,
    /// Whether it was chosen in the floating pass, and that pass's limit.
    floating_pass: bool,
    limit: usize,
}

/// Wing & Gong / Lowe search over one key's simplified sub-history, completed operations
/// first in `ops`.
fn search(ops: &[KeyOp], budget: &mut u64) -> Verdict {
    let completed_count = ops.iter().take_while(|op| op.ret.is_some()).count();
    if completed_count == 0 {
        return Verdict::Linearizable;
    }
    let floating_count = ops.len() - completed_count;
    // Floating operations with identical effects are interchangeable once called: only the
    // earliest-called unused one of each kind is tried, so the used ones of each kind always
    // are the earliest-called ones, and an operation may be tried only if its predecessor
    // of the same kind is used.
    let mut by_call: Vec<usize> = (0..floating_count).collect();
    by_call.sort_unstable_by_key(|&j| (ops[completed_count + j].call, j));
    let mut same_before = vec![usize::MAX; floating_count];
    let mut last_of_kind: HashMap<Act, usize> = HashMap::new();
    for j in by_call {
        if let Some(previous) = last_of_kind.insert(ops[completed_count + j].act, j) {
            same_before[j] = previous;
        }
    }
    let mut list = EventList::new(ops);
    let mut liveness = Liveness::new(ops, completed_count);
    let mut memo = Memo::default();
    let mut completed = vec![0u64; completed_count.div_ceil(64)];
    let mut floating = vec![0u64; floating_count.div_ceil(64)];
    let mut set_hash = 0u64;
    let mut state: Option<Value> = None;
    let mut remaining = completed_count;
    let mut stack: Vec<Frame> = Vec::new();
    // Candidates are tried in two passes: completed operations (calls before the first
    // pending return), then floating ones called before that return. Floating operations are
    // rarely needed, so trying them last finds linearizations of legal histories sooner.
    let mut floating_pass = false;
    let mut limit = usize::MAX;
    let mut frontier = HEAD;
    // During the floating pass: what the operations that may follow need.
    let mut window = NeedSummary::default();
    let mut cursor = list.next[HEAD];
    loop {
        if *budget == 0 {
            return Verdict::Timeout;
        }
        *budget -= 1;

        let exhausted = if floating_pass {
            cursor == FLOATING_HEAD || list.position[cursor] > limit
        } else {
            cursor == HEAD || !list.is_call[cursor]
        };
        if exhausted {
            if !floating_pass
                && cursor != HEAD
                && (frontier == HEAD || list.position[cursor] > list.position[frontier])
            {
                frontier = cursor;
            }
            if !floating_pass && floating_count > 0 {
                floating_pass = true;
                limit = list.position[cursor];
                window = list.window_needs(ops, state, limit);
                cursor = list.next[FLOATING_HEAD];
                continue;
            }
            let Some(frame) = stack.pop() else {
                let frontier = (frontier != HEAD).then(|| {
                    let op = &ops[list.op_of[frontier]];
                    Frontier {
                        time: op.ret.unwrap_or(op.call),
                        index: op.index,
                    }
                });
                return Verdict::Illegal(frontier);
            };

            let op = list.op_of[frame.node];
            if op < completed_count {
                clear_bit(&mut completed, op);
                set_hash ^= zobrist(op);
                remaining += 1;
                liveness.unlinearize(op);
            } else {
                clear_bit(&mut floating, op - completed_count);
            }
            state = frame.state;
            list.unlift(frame.node);
            floating_pass = frame.floating_pass;
            limit = frame.limit;
            if floating_pass {
                window = list.window_needs(ops, state, limit);
            }
            cursor = list.next[frame.node];
            continue;
        }

        let op = list.op_of[cursor];
        let is_completed = op < completed_count;
        let canonical = is_completed || {
            let previous = same_before[op - completed_count];
            previous == usize::MAX || has_bit(&floating, previous)
        };
        // Right after a floating operation, only an operation that needs it may follow.
        let after_floating = stack
            .last()
            .filter(|frame| list.op_of[frame.node] >= completed_count)
            .map(|frame| frame.state);
        if canonical
            && let Some(next_state) = ops[op].act.apply(state)
            && after_floating.is_none_or(|before| needs(ops[op].act, before, state))
            && (is_completed
                || (next_state != state
                    && window.count(next_state)
                        > usize::from(need_of(ops[op].act, state).accepts(next_state))))
        {
            let next_hash = if is_completed {
                set_hash ^ zobrist(op)
            } else {
                set_hash
            };
            // Only configurations reached by a completed operation are memoized: those are
            // explored without the constraint above.
            let fresh = !is_completed || {
                liveness.linearize(op);
                let canonical = liveness.canonical(next_state);
                let fresh = memo.visit(
                    memo_hash(next_hash, canonical),
                    &completed,
                    op,
                    &floating,
                    &liveness.dead_writes,
                    canonical,
                );
                if !fresh {
                    liveness.unlinearize(op);
                }
                fresh
            };
            if fresh {
                stack.push(Frame {
                    node: cursor,
                    state,
                    floating_pass,
                    limit,
                });
                if is_completed {
                    set_bit(&mut completed, op);
                    remaining -= 1;
                    if remaining == 0 {
                        return Verdict::Linearizable;
                    }
                } else {
                    set_bit(&mut floating, op - completed_count);
                }
                set_hash = next_hash;
                state = next_state;
                list.lift(cursor);
                floating_pass = false;
                cursor = list.next[HEAD];
                continue;
            }
        }
        cursor = list.next[cursor];
    }
}

// ---------------------------------------------------------------------------------------------
// Witness shrinking.

/// At most this many searches are spent shrinking a witness.
const MAX_WITNESS_CHECKS: usize = 64;

/// The sub-history made of the events `prefix`: operations called in it, those whose return
/// is not in it becoming floating. If the whole history is linearizable, so is this.
fn prefix_history(ops: &[KeyOp], prefix: &[(u64, bool, usize)]) -> Vec<KeyOp> {
    let mut called = vec![false; ops.len()];
    let mut returned = vec![false; ops.len()];
    for &(_, is_ret, pos) in prefix {
        if is_ret {
            returned[pos] = true;
        } else {
            called[pos] = true;
        }
    }
    ops.iter()
        .enumerate()
        .filter(|&(pos, _)| called[pos])
        .map(|(pos, op)| KeyOp {
            ret: if returned[pos] { op.ret } else { None },
            ..*op
        })
        .collect()
}

fn without(ops: &[KeyOp], dropped: &HashSet<usize>) -> Vec<KeyOp> {
    ops.iter()
        .copied()
        .filter(|op| !dropped.contains(&op.index))
        .collect()
}

/// Runs the (bounded number of) searches spent shrinking a witness.
struct Shrinker {
    checks_left: usize,
    /// Steps left for all searches together.
    steps_left: u64,
}

impl Shrinker {
    /// Whether `candidate` is proven illegal (false when out of checks or steps).
    fn illegal(&mut self, candidate: &[KeyOp]) -> bool {
        if self.checks_left == 0 || self.steps_left == 0 {
            return false;
        }
        self.checks_left -= 1;
        let mut budget = self.steps_left;
        let verdict = verdict(candidate, &mut budget);
        self.steps_left = budget;
        matches!(verdict, Verdict::Illegal(_))
    }

    /// The shortest illegal prefix of the illegal `ops` by bisection (illegality is monotone
    /// in the prefix), and the operation whose return ends it.
    fn shortest_prefix(&mut self, ops: &[KeyOp]) -> (Vec<KeyOp>, Option<usize>) {
        let events = sorted_events(ops);
        let mut best = ops.to_vec();
        let (mut legal_len, mut illegal_len) = (0, events.len());
        while illegal_len - legal_len > 1 {
            let mid = legal_len + (illegal_len - legal_len) / 2;
            let candidate = prefix_history(ops, &events[..mid]);
            if self.illegal(&candidate) {
                illegal_len = mid;
                best = candidate;
            } else {
                legal_len = mid;
            }
        }
        let culprit = events
            .get(illegal_len.wrapping_sub(1))
            .and_then(|&(_, _, pos)| ops.get(pos))
            .map(|op| op.index);
        (best, culprit)
    }

    /// Shrinks `best` further; `None` if it was not `verified` illegal and could not be
    /// shown to be.
    fn shrink(
        &mut self,
        mut best: Vec<KeyOp>,
        mut verified: bool,
        culprit: Option<usize>,
    ) -> Option<Vec<usize>> {
        // Cut the beginning off at a completed write overlapped by writes only: nothing
        // before it can be seen past it. Take the latest cut that keeps the history illegal
        // (bisection: cutting is monotone too).
        let cuts: Vec<KeyOp> = best
            .iter()
            .copied()
            .filter(|cut| {
                let Some(cut_ret) = cut.ret else { return false };
                matches!(cut.act, Act::Write(_))
                    && best.iter().all(|op| {
                        op.ret.is_none_or(|ret| ret < cut.call)
                            || op.call > cut_ret
                            || matches!(op.act, Act::Write(_))
                    })
            })
            .collect();
        let cut_at = |best: &[KeyOp], cut: &KeyOp| -> Vec<KeyOp> {
            best.iter()
                .copied()
                .filter(|op| op.ret.is_none_or(|ret| ret >= cut.call))
                .collect()
        };
        let mut cut_best: Option<(Vec<KeyOp>, u64)> = None;
        let (mut illegal_cuts, mut legal_from) = (0, cuts.len());
        while illegal_cuts < legal_from {
            let mid = illegal_cuts + (legal_from - illegal_cuts) / 2;
            let candidate = cut_at(&best, &cuts[mid]);
            if self.illegal(&candidate) {
                illegal_cuts = mid + 1;
                cut_best = Some((candidate, cuts[mid].call));
            } else {
                legal_from = mid;
            }
        }
        let mut cut_off = Vec::new();
        if let Some((candidate, cut_call)) = cut_best {
            cut_off = best
                .iter()
                .copied()
                .filter(|op| op.ret.is_some_and(|ret| ret < cut_call))
                .collect();
            best = candidate;
            verified = true;
        }

        // Drop completed operations without effect (reads, failed compare-and-swaps):
        // removing those never turns a legal history illegal. The operation whose return
        // ends the prefix is the likely culprit: first try keeping it alone.
        let removable: Vec<usize> = best
            .iter()
            .filter(|op| op.ret.is_some() && op.act.has_no_effect() && op.act != Act::Impossible)
            .map(|op| op.index)
            .collect();
        let mut dropped: HashSet<usize> = HashSet::new();
        let others: HashSet<usize> = removable
            .iter()
            .copied()
            .filter(|&index| Some(index) != culprit)
            .collect();
        let mut pending: Vec<usize> =
            if !others.is_empty() && self.illegal(&without(&best, &others)) {
                dropped = others;
                verified = true;
                removable
                    .into_iter()
                    .filter(|&index| Some(index) == culprit)
                    .collect()
            } else {
                removable
            };
        let mut chunk = pending.len().div_ceil(2).max(1);
        while !pending.is_empty() {
            let mut start = 0;
            while start < pending.len() {
                let end = (start + chunk).min(pending.len());
                let mut trial = dropped.clone();
                trial.extend(pending[start..end].iter().copied());
                if self.illegal(&without(&best, &trial)) {
                    dropped = trial;
                    verified = true;
                    pending.drain(start..end);
                } else {
                    start = end;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }

        let witness = simplify(&without(&best, &dropped));
        if !verified && !self.illegal(&witness) {
            return None;
        }
        // For context, add back the cut-off writers of the values the witness reads or
        // expects. Operations that all precede the cut keep the history illegal (the cut
        // argument, applied to the enlarged history).
        let mut observed: HashSet<Value> = HashSet::new();
        for op in &witness {
            if let Act::Read(Some(value))
            | Act::Cas {
                expected: Some(value),
                ..
            } = op.act
            {
                observed.insert(value);
            }
        }
        let context = cut_off.iter().filter(|op| match op.act {
            Act::Write(Some(value)) => observed.contains(&value),
            Act::Cas { new, outcome, .. } => outcome != Some(false) && observed.contains(&new),
            _ => false,
        });
        let mut indices: Vec<usize> = witness.iter().chain(context).map(|op| op.index).collect();
        indices.sort_unstable();
        Some(indices)
    }
}

/// Shrinks the illegal sub-history `ops` to a smaller illegal one; returns history indices.
/// `frontier` is the search's hint at the shortest illegal prefix; `max_steps` bounds the
/// searches spent.
fn witness(ops: &[KeyOp], frontier: Option<Frontier>, max_steps: u64) -> Vec<usize> {
    let mut shrinker = Shrinker {
        checks_left: MAX_WITNESS_CHECKS,
        steps_left: max_steps,
    };
    if let Some(frontier) = frontier {
        // The prefix the search points at is the shortest illegal one; it gets verified
        // along the way.
        let events = sorted_events(ops);
        let len = events.partition_point(|&(time, _, _)| time <= frontier.time);
        let prefix = prefix_history(ops, &events[..len]);
        if let Some(witness) = shrinker.shrink(prefix, false, Some(frontier.index)) {
            return witness;
        }
    }
    let (prefix, culprit) = shrinker.shortest_prefix(ops);
    shrinker.shrink(prefix, true, culprit).unwrap_or_else(|| {
        let mut indices: Vec<usize> = ops.iter().map(|op| op.index).collect();
        indices.sort_unstable();
        indices
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    // ---- helpers ------------------------------------------------------------------------

    fn op(
        client: u64,
        call: u64,
        ret: Option<u64>,
        input: Input,
        output: Option<Output>,
    ) -> Operation {
        Operation {
            client,
            call,
            ret,
            input,
            output,
        }
    }

    fn put(key: Key, client: u64, call: u64, ret: u64, value: Value) -> Operation {
        op(
            client,
            call,
            Some(ret),
            Input::Put { key, value },
            Some(Output::Put),
        )
    }

    fn put_lost(key: Key, client: u64, call: u64, value: Value) -> Operation {
        op(client, call, None, Input::Put { key, value }, None)
    }

    fn get(key: Key, client: u64, call: u64, ret: u64, seen: Option<Value>) -> Operation {
        op(
            client,
            call,
            Some(ret),
            Input::Get { key },
            Some(Output::Get(seen)),
        )
    }

    fn del(key: Key, client: u64, call: u64, ret: u64) -> Operation {
        op(
            client,
            call,
            Some(ret),
            Input::Delete { key },
            Some(Output::Delete),
        )
    }

    fn cas(
        key: Key,
        client: u64,
        call: u64,
        ret: u64,
        expected: Option<Value>,
        new: Value,
        ok: bool,
    ) -> Operation {
        op(
            client,
            call,
            Some(ret),
            Input::Cas { key, expected, new },
            Some(Output::Cas(ok)),
        )
    }

    const K: Key = 7;

    fn assert_ok(history: &[Operation]) {
        let result = check(history);
        assert_eq!(result, CheckResult::Ok, "{}", result.describe(history));
    }

    /// Asserts the history is illegal, and that the witness is illegal on its own.
    fn assert_illegal(history: &[Operation]) -> Vec<usize> {
        let result = check(history);
        let CheckResult::Illegal { key, ops } = result else {
            panic!("expected illegal, got {result:?}");
        };
        assert!(!ops.is_empty());
        assert!(
            ops.windows(2).all(|w| w[0] < w[1]),
            "witness not ascending: {ops:?}"
        );
        assert!(ops.iter().all(|&i| history[i].input.key() == key));
        let sub: Vec<Operation> = ops.iter().map(|&i| history[i]).collect();
        assert!(
            check(&sub).is_illegal(),
            "witness {ops:?} is linearizable on its own"
        );
        ops
    }

    // ---- basic semantics ----------------------------------------------------------------

    #[test]
    fn empty_and_sequential_ok() {
        assert_ok(&[]);
        assert_ok(&[
            get(K, 1, 0, 1, None),
            put(K, 1, 2, 3, 10),
            get(K, 2, 4, 5, Some(10)),
            put(K, 2, 6, 7, 11),
            get(K, 1, 8, 9, Some(11)),
            del(K, 1, 10, 11),
            get(K, 2, 12, 13, None),
        ]);
    }

    #[test]
    fn concurrent_put_get_either_order_ok() {
        // The read overlaps the write: it may see the old or the new value.
        assert_ok(&[put(K, 1, 0, 10, 1), get(K, 2, 1, 5, None)]);
        assert_ok(&[put(K, 1, 0, 10, 1), get(K, 2, 1, 5, Some(1))]);
        // Two overlapping writes, read afterwards: either may win.
        assert_ok(&[
            put(K, 1, 0, 5, 1),
            put(K, 2, 1, 6, 2),
            get(K, 3, 7, 8, Some(1)),
        ]);
        assert_ok(&[
            put(K, 1, 0, 5, 1),
            put(K, 2, 1, 6, 2),
            get(K, 3, 7, 8, Some(2)),
        ]);
        // Touching intervals count as concurrent.
        assert_ok(&[put(K, 1, 0, 5, 1), get(K, 2, 5, 6, None)]);
    }

    #[test]
    fn stale_read_after_completed_write_rejected() {
        assert_illegal(&[put(K, 1, 0, 1, 1), get(K, 2, 2, 3, None)]);
        let ops = assert_illegal(&[
            put(K, 1, 0, 1, 1),
            put(K, 1, 2, 3, 2),
            get(K, 2, 4, 5, Some(2)),
            get(K, 2, 6, 7, Some(1)),
        ]);
        assert_eq!(ops, vec![0, 1, 3]);
    }

    #[test]
    fn read_of_never_written_value_rejected() {
        let ops = assert_illegal(&[put(K, 1, 0, 10, 1), get(K, 2, 1, 5, Some(99))]);
        assert_eq!(ops, vec![1]);
    }

    #[test]
    fn read_own_write_missing_rejected() {
        // Each client reads the other's write but not its own, after both writes completed:
        // both reads see the final state and must agree.
        assert_illegal(&[
            put(K, 1, 0, 5, 1),
            put(K, 2, 0, 5, 2),
            get(K, 1, 6, 10, Some(2)),
            get(K, 2, 7, 11, Some(1)),
        ]);
    }

    #[test]
    fn readers_disagreeing_on_write_order_rejected() {
        // Two concurrent writes; one reader sees 1 then 2, the other 2 then 1.
        assert_illegal(&[
            put(K, 1, 0, 100, 1),
            put(K, 2, 0, 100, 2),
            get(K, 3, 1, 2, Some(1)),
            get(K, 3, 3, 4, Some(2)),
            get(K, 4, 1, 2, Some(2)),
            get(K, 4, 3, 4, Some(1)),
        ]);
        // With one reader only, it is fine.
        assert_ok(&[
            put(K, 1, 0, 100, 1),
            put(K, 2, 0, 100, 2),
            get(K, 3, 1, 2, Some(1)),
            get(K, 3, 3, 4, Some(2)),
        ]);
    }

    #[test]
    fn new_then_old_read_rejected() {
        // A write in flight: once someone saw it, later readers must see it too.
        assert_illegal(&[
            put(K, 1, 0, 10, 1),
            get(K, 2, 1, 2, Some(1)),
            get(K, 3, 3, 4, None),
        ]);
        assert_ok(&[
            put(K, 1, 0, 10, 1),
            get(K, 2, 1, 2, None),
            get(K, 3, 3, 4, Some(1)),
        ]);
    }

    // ---- indeterminate operations ---------------------------------------------------------

    #[test]
    fn indeterminate_write_observed_or_not_ok() {
        let base = [put(K, 1, 0, 1, 1), put_lost(K, 2, 2, 2)];
        let mut observed = base.to_vec();
        observed.extend([get(K, 1, 10, 11, Some(2)), get(K, 3, 12, 13, Some(2))]);
        assert_ok(&observed);
        let mut unobserved = base.to_vec();
        unobserved.extend([get(K, 1, 10, 11, Some(1)), get(K, 3, 12, 13, Some(1))]);
        assert_ok(&unobserved);
        // Taking effect long after the call is fine too.
        let mut late = base.to_vec();
        late.extend([
            get(K, 1, 10, 11, Some(1)),
            put(K, 3, 20, 21, 3),
            get(K, 3, 30, 31, Some(2)),
        ]);
        assert_ok(&late);
        // A lost read or a lost delete changes nothing.
        assert_ok(&[
            put(K, 1, 0, 1, 1),
            op(2, 2, None, Input::Get { key: K }, None),
            op(3, 2, None, Input::Delete { key: K }, None),
            get(K, 1, 3, 4, Some(1)),
        ]);
    }

    #[test]
    fn indeterminate_write_observed_then_unobserved_rejected() {
        let ops = assert_illegal(&[
            put(K, 1, 0, 1, 1),
            put_lost(K, 2, 2, 2),
            get(K, 1, 10, 11, Some(2)),
            get(K, 3, 12, 13, Some(1)),
        ]);
        assert_eq!(ops, vec![0, 1, 2, 3]);
    }

    #[test]
    fn indeterminate_write_cannot_take_effect_before_its_call() {
        assert_illegal(&[get(K, 1, 0, 1, Some(5)), put_lost(K, 2, 2, 5)]);
        // ... nor twice.
        assert_illegal(&[
            put(K, 1, 0, 1, 1),
            put_lost(K, 2, 2, 2),
            get(K, 1, 3, 4, Some(2)),
            put(K, 1, 5, 6, 1),
            get(K, 1, 7, 8, Some(2)),
        ]);
    }

    #[test]
    fn indeterminate_delete_explains_missing_value() {
        assert_ok(&[
            put(K, 1, 0, 1, 1),
            op(2, 2, None, Input::Delete { key: K }, None),
            get(K, 1, 5, 6, None),
        ]);
    }

    #[test]
    fn many_unobserved_lost_writes_are_cheap() {
        let mut history = vec![put(K, 0, 0, 1, 1)];
        for i in 0..200 {
            history.push(put_lost(K, 1 + i, 2 + i, 1000 + i));
        }
        for i in 0..200 {
            history.push(get(K, 0, 300 + 2 * i, 301 + 2 * i, Some(1)));
        }
        assert_eq!(check_with_budget(&history, 10_000), CheckResult::Ok);
        history.push(get(K, 0, 1000, 1001, Some(2)));
        assert!(check_with_budget(&history, 10_000).is_illegal());
    }

    #[test]
    fn many_floating_writes_observed_by_failed_cas_stay_polynomial() {
        // Failed compare-and-swaps might be explained by any lost write, so none can be
        // dropped up front; the floating-set dominance keeps the search polynomial.
        let mut history = vec![put(K, 0, 0, 1, 1)];
        for i in 0..40 {
            history.push(put_lost(K, 1 + i, 2 + i, 1000 + i));
        }
        let mut t = 100;
        for _ in 0..40 {
            history.push(cas(K, 0, t, t + 1, Some(77), 5, false));
            history.push(get(K, 0, t + 2, t + 3, Some(1)));
            t += 4;
        }
        assert_eq!(check_with_budget(&history, 1_000_000), CheckResult::Ok);
        // A read of a value no one wrote is still found, without exploring 2^40 subsets.
        history.push(get(K, 0, t, t + 1, Some(3)));
        assert!(check_with_budget(&history, 1_000_000).is_illegal());
    }

    // ---- compare-and-swap and delete ------------------------------------------------------

    #[test]
    fn cas_semantics() {
        assert_ok(&[
            put(K, 1, 0, 1, 1),
            cas(K, 1, 2, 3, Some(1), 2, true),
            get(K, 2, 4, 5, Some(2)),
            cas(K, 2, 6, 7, Some(1), 3, false),
            get(K, 1, 8, 9, Some(2)),
            cas(K, 1, 10, 11, None, 4, false),
        ]);
        // Creation of an absent key.
        assert_ok(&[cas(K, 1, 0, 1, None, 4, true), get(K, 1, 2, 3, Some(4))]);
        // A failure when the comparison must have held.
        assert_illegal(&[put(K, 1, 0, 1, 1), cas(K, 1, 2, 3, Some(1), 2, false)]);
        // A success when it cannot have held.
        assert_illegal(&[put(K, 1, 0, 1, 1), cas(K, 1, 2, 3, None, 2, true)]);
        // A successful swap whose effect is not seen.
        assert_illegal(&[
            put(K, 1, 0, 1, 1),
            cas(K, 1, 2, 3, Some(1), 2, true),
            get(K, 2, 4, 5, Some(1)),
        ]);
    }

    #[test]
    fn concurrent_cas_exactly_one_winner() {
        let race = |first: bool, second: bool| {
            vec![
                cas(K, 1, 0, 10, None, 1, first),
                cas(K, 2, 1, 11, None, 2, second),
            ]
        };
        assert_ok(&race(true, false));
        assert_ok(&race(false, true));
        assert_illegal(&race(true, true));
        assert_illegal(&race(false, false));
        // The winner must be the one whose value is read.
        let mut history = race(true, false);
        history.push(get(K, 3, 12, 13, Some(2)));
        assert_illegal(&history);
    }

    #[test]
    fn cas_with_unknown_outcome() {
        let lost = op(
            2,
            2,
            None,
            Input::Cas {
                key: K,
                expected: Some(1),
                new: 2,
            },
            None,
        );
        assert_ok(&[put(K, 1, 0, 1, 1), lost, get(K, 1, 5, 6, Some(2))]);
        assert_ok(&[put(K, 1, 0, 1, 1), lost, get(K, 1, 5, 6, Some(1))]);
        // Answered, but the answer was lost: it still took effect (or failed) by its return.
        let unknown = op(
            2,
            2,
            Some(3),
            Input::Cas {
                key: K,
                expected: Some(1),
                new: 2,
            },
            None,
        );
        assert_ok(&[put(K, 1, 0, 1, 1), unknown, get(K, 1, 5, 6, Some(2))]);
        assert_illegal(&[put(K, 1, 0, 1, 1), unknown, get(K, 1, 5, 6, Some(1))]);
    }

    #[test]
    fn delete_semantics() {
        assert_ok(&[
            put(K, 1, 0, 1, 1),
            del(K, 1, 2, 3),
            get(K, 2, 4, 5, None),
            del(K, 2, 6, 7),
            cas(K, 1, 8, 9, None, 3, true),
            get(K, 2, 10, 11, Some(3)),
        ]);
        assert_illegal(&[
            put(K, 1, 0, 1, 1),
            del(K, 1, 2, 3),
            get(K, 2, 4, 5, Some(1)),
        ]);
        assert_ok(&[
            put(K, 1, 0, 1, 1),
            del(K, 1, 2, 10),
            get(K, 2, 4, 5, Some(1)),
        ]);
    }

    #[test]
    fn mismatched_output_kind_rejected() {
        let ops = assert_illegal(&[
            put(K, 1, 0, 1, 1),
            op(
                1,
                2,
                Some(3),
                Input::Put { key: K, value: 2 },
                Some(Output::Delete),
            ),
        ]);
        assert!(ops.contains(&1), "{ops:?}");
        // Unless the operation was indeterminate: then it simply never happened.
        assert_ok(&[op(
            1,
            2,
            None,
            Input::Put { key: K, value: 2 },
            Some(Output::Delete),
        )]);
    }

    // ---- per-key checking ------------------------------------------------------------------

    #[test]
    fn illegal_key_is_reported() {
        let history = vec![
            put(0, 1, 0, 1, 1),
            put(1, 1, 2, 3, 1),
            get(0, 2, 4, 5, Some(1)),
            put(2, 2, 6, 7, 5),
            get(1, 2, 8, 9, None), // stale: key 1 was written at [2, 3]
            get(2, 1, 10, 11, Some(5)),
        ];
        let result = check(&history);
        assert_eq!(
            result,
            CheckResult::Illegal {
                key: 1,
                ops: vec![1, 4]
            }
        );
        assert!(result.describe(&history).contains("key 1"));
    }

    #[test]
    fn keys_do_not_interfere() {
        // Interleaved keys that would be illegal as one register.
        assert_ok(&[
            put(1, 1, 0, 1, 1),
            put(2, 1, 2, 3, 2),
            get(1, 2, 4, 5, Some(1)),
            get(2, 2, 6, 7, Some(2)),
            get(3, 2, 8, 9, None),
        ]);
    }

    // ---- recorder and interner -------------------------------------------------------------

    #[test]
    fn recorder_assigns_increasing_times() {
        let mut rec = HistoryRecorder::new();
        let a = rec.invoke(1, Input::Put { key: 1, value: 1 });
        let b = rec.invoke(2, Input::Get { key: 1 });
        let c = rec.invoke(3, Input::Put { key: 1, value: 2 });
        assert_eq!(b.index(), 1);
        rec.complete(b, Output::Get(Some(1)));
        rec.complete(a, Output::Put);
        rec.fail_indeterminate(c);
        let d = rec.invoke(2, Input::Get { key: 1 });
        rec.complete(d, Output::Get(Some(2)));
        let _pending = rec.invoke(4, Input::Delete { key: 1 });
        assert_eq!(rec.now(), 8);
        let history = rec.history();
        assert_eq!(history[0].call, 0);
        assert_eq!(history[0].ret, Some(4));
        assert_eq!(history[1].ret, Some(3));
        assert!(history[2].is_indeterminate());
        assert!(history[4].is_indeterminate());
        assert!(rec.check().is_ok());
        let history = rec.into_history();
        assert_eq!(history.len(), 5);
    }

    #[test]
    fn interner_maps_bytes() {
        let mut keys = Interner::new();
        assert!(keys.is_empty());
        let foo = keys.intern(b"foo");
        let bar = keys.intern(b"bar");
        assert_ne!(foo, bar);
        assert_eq!(keys.intern(b"foo"), foo);
        assert_eq!(keys.get(b"bar"), Some(bar));
        assert_eq!(keys.get(b"baz"), None);
        assert_eq!(keys.resolve(foo), Some(&b"foo"[..]));
        assert_eq!(keys.resolve(99), None);
        assert_eq!(keys.len(), 2);

        let mut values = Interner::new();
        let mut rec = HistoryRecorder::new();
        let h = rec.invoke(
            1,
            Input::Put {
                key: keys.intern(b"foo"),
                value: values.intern(b"v1"),
            },
        );
        rec.complete(h, Output::Put);
        let h = rec.invoke(
            1,
            Input::Get {
                key: keys.intern(b"foo"),
            },
        );
        rec.complete(h, Output::Get(values.get(b"v2")));
        assert!(rec.check().is_illegal());
    }

    // ---- budget ------------------------------------------------------------------------------

    #[test]
    fn budget_exhaustion_is_timeout() {
        let history = random_history(3, 500, 5, 1, 0);
        assert_eq!(check(&history), CheckResult::Ok);
        assert_eq!(check_with_budget(&history, 10), CheckResult::Timeout);
        // A proven illegal key wins over a timed-out one.
        let mut history = history;
        let call = history.len() as u64 * 10;
        history.push(put(99, 1, call, call + 1, 1));
        history.push(get(99, 1, call + 2, call + 3, Some(2)));
        assert!(matches!(
            check_with_budget(&history, 10),
            CheckResult::Illegal { key: 99, .. }
        ));
    }

    // ---- random histories --------------------------------------------------------------------

    /// xorshift64*, deterministic.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Self(splitmix64(seed) | 1)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn percent(&mut self, p: u64) -> bool {
            self.below(100) < p
        }
    }

    /// A linearizable history: clients invoke random operations, each takes effect on a
    /// sequential model at a random moment while pending, and returns later; `lost_pct`
    /// percent of them never return (half of those never take effect).
    fn random_history(
        seed: u64,
        n_ops: usize,
        clients: u64,
        keys: u64,
        lost_pct: u64,
    ) -> Vec<Operation> {
        struct Pending {
            index: usize,
            applied: bool,
            lost: bool,
        }
        let mut rng = Rng::new(seed);
        let mut model: HashMap<Key, Option<Value>> = HashMap::new();
        let mut fresh = 1;
        let mut now = 0;
        let mut history: Vec<Operation> = Vec::new();
        let mut pending: Vec<Option<Pending>> = (0..clients).map(|_| None).collect();
        while history.len() < n_ops || pending.iter().any(Option::is_some) {
            let client = rng.below(clients);
            let slot = &mut pending[client as usize];
            match slot.take() {
                None => {
                    if history.len() >= n_ops {
                        continue;
                    }
                    let key = rng.below(keys);
                    let current = model.get(&key).copied().flatten();
                    let input = match rng.below(100) {
                        0..40 => {
                            fresh += 1;
                            Input::Put { key, value: fresh }
                        }
                        40..75 => Input::Get { key },
                        75..85 => Input::Delete { key },
                        _ => {
                            fresh += 1;
                            let expected = match rng.below(3) {
                                0 => current,
                                1 => None,
                                _ => Some(rng.below(fresh)),
                            };
                            Input::Cas {
                                key,
                                expected,
                                new: fresh,
                            }
                        }
                    };
                    history.push(op(client, now, None, input, None));
                    now += 1;
                    *slot = Some(Pending {
                        index: history.len() - 1,
                        applied: false,
                        lost: rng.percent(lost_pct),
                    });
                }
                Some(p) if !p.applied => {
                    if p.lost && rng.percent(50) {
                        continue; // never takes effect, never returns
                    }
                    let input = history[p.index].input;
                    let state = model.entry(input.key()).or_default();
                    let output = match input {
                        Input::Put { value, .. } => {
                            *state = Some(value);
                            Output::Put
                        }
                        Input::Get { .. } => Output::Get(*state),
                        Input::Delete { .. } => {
                            *state = None;
                            Output::Delete
                        }
                        Input::Cas { expected, new, .. } => {
                            let holds = *state == expected;
                            if holds {
                                *state = Some(new);
                            }
                            Output::Cas(holds)
                        }
                    };
                    if !p.lost {
                        history[p.index].output = Some(output);
                    }
                    *slot = Some(Pending { applied: true, ..p });
                }
                Some(p) => {
                    if !p.lost {
                        history[p.index].ret = Some(now);
                        now += 1;
                    }
                }
            }
        }
        history
    }

    /// Index of a completed read, near the middle of the history, made to return the value
    /// of a write that was certainly overwritten before the read began.
    fn make_stale_read(history: &mut [Operation]) -> usize {
        let mid = history.len() / 2;
        for g in (mid..history.len()).chain((0..mid).rev()) {
            let (Input::Get { key }, Some(g_call), Some(Output::Get(seen))) = (
                history[g].input,
                history[g].ret.map(|_| history[g].call),
                history[g].output,
            ) else {
                continue;
            };
            // p2: a completed overwrite that returned before g's call; p1: a completed put
            // that returned before p2's call.
            for p2 in history.iter().filter(|o| {
                o.input.key() == key
                    && o.ret.is_some_and(|r| r < g_call)
                    && matches!(o.input, Input::Put { .. } | Input::Delete { .. })
            }) {
                let stale = history.iter().find_map(|o| match o.input {
                    Input::Put { key: k, value }
                        if k == key
                            && o.ret.is_some_and(|r| r < p2.call)
                            && Some(value) != seen =>
                    {
                        Some(value)
                    }
                    _ => None,
                });
                if let Some(stale) = stale {
                    history[g].output = Some(Output::Get(Some(stale)));
                    return g;
                }
            }
        }
        panic!("no read suitable for a stale value");
    }

    #[test]
    fn random_linearizable_history_ok_and_fast() {
        for (keys, lost_pct) in [(4, 0), (4, 5), (1, 0), (1, 5)] {
            let history = random_history(42 + keys + lost_pct, 2000, 6, keys, lost_pct);
            assert_eq!(history.len(), 2000);
            let started = Instant::now();
            let result = check(&history);
            let elapsed = started.elapsed();
            println!("2000 ops, {keys} key(s), {lost_pct}% lost: {result:?} in {elapsed:?}");
            assert_eq!(result, CheckResult::Ok, "{}", result.describe(&history));
            // Deterministic stand-in for "fast": near-linear search.
            assert_eq!(check_with_budget(&history, 1_000_000), CheckResult::Ok);
            assert!(elapsed.as_secs_f64() < 5.0, "took {elapsed:?}");
        }
    }

    #[test]
    fn random_history_with_stale_read_rejected() {
        for (keys, lost_pct) in [(4, 0), (4, 5), (1, 0), (1, 5)] {
            let mut history = random_history(7 + keys + lost_pct, 2000, 6, keys, lost_pct);
            assert!(check(&history).is_ok());
            let stale = make_stale_read(&mut history);
            let started = Instant::now();
            let result = check(&history);
            let elapsed = started.elapsed();
            println!(
                "2000 ops, {keys} key(s), {lost_pct}% lost, stale read #{stale}: {} in {elapsed:?}",
                result.describe(&history).lines().next().unwrap_or_default()
            );
            let CheckResult::Illegal { key, ops } = result else {
                panic!("stale read #{stale} not detected: {result:?}");
            };
            assert_eq!(key, history[stale].input.key());
            assert!(ops.contains(&stale), "witness {ops:?} misses #{stale}");
            let sub: Vec<Operation> = ops.iter().map(|&i| history[i]).collect();
            assert!(check(&sub).is_illegal());
            assert!(elapsed.as_secs_f64() < 5.0, "took {elapsed:?}");
        }
    }

    #[test]
    fn need_of_matches_needs() {
        let states = [None, Some(1), Some(2), Some(3)];
        let mut acts = vec![Act::Unconstrained, Act::Impossible];
        for &state in &states {
            acts.push(Act::Write(state));
            acts.push(Act::Read(state));
            for new in 1..=3 {
                for outcome in [None, Some(true), Some(false)] {
                    acts.push(Act::Cas {
                        expected: state,
                        new,
                        outcome,
                    });
                }
            }
        }
        for act in acts {
            for before in states {
                for after in states.into_iter().filter(|&after| after != before) {
                    assert_eq!(
                        need_of(act, before).accepts(after),
                        needs(act, before, after),
                        "{act:?} {before:?} -> {after:?}"
                    );
                }
            }
        }
    }

    // ---- cross-check against brute force --------------------------------------------------------

    /// Applies `op` to `state` the naive way; `None` when its answer contradicts the state.
    fn brute_step(state: Option<Value>, op: &Operation) -> Option<Option<Value>> {
        match (op.input, op.output) {
            (Input::Put { value, .. }, None | Some(Output::Put)) => Some(Some(value)),
            (Input::Delete { .. }, None | Some(Output::Delete)) => Some(None),
            (Input::Get { .. }, None) => Some(state),
            (Input::Get { .. }, Some(Output::Get(seen))) => (seen == state).then_some(state),
            (Input::Cas { expected, new, .. }, out) => {
                let holds = state == expected;
                match out {
                    None => {}
                    Some(Output::Cas(reported)) if reported == holds => {}
                    Some(_) => return None,
                }
                Some(if holds { Some(new) } else { state })
            }
            _ => None,
        }
    }

    /// Tries every order (and every subset of indeterminate operations) on one key.
    fn brute_linearizable(ops: &[Operation]) -> bool {
        fn go(ops: &[Operation], done: &mut [bool], state: Option<Value>) -> bool {
            if ops
                .iter()
                .zip(done.iter())
                .all(|(o, &d)| d || o.ret.is_none())
            {
                return true;
            }
            for i in 0..ops.len() {
                if done[i] {
                    continue;
                }
                let ret = |o: &Operation| o.ret.map(|r| r.max(o.call));
                let blocked = ops
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && !done[j] && ret(o).is_some_and(|r| r < ops[i].call));
                if blocked {
                    continue;
                }
                if let Some(next) = brute_step(state, &ops[i]) {
                    done[i] = true;
                    if go(ops, done, next) {
                        return true;
                    }
                    done[i] = false;
                }
            }
            false
        }
        go(ops, &mut vec![false; ops.len()], None)
    }

    fn random_small_history(rng: &mut Rng, max_ops: u64) -> Vec<Operation> {
        let n = 1 + rng.below(max_ops);
        // Few values (collisions) or many (mostly unique writes, which the simplifications
        // exploit); reads and comparisons mostly use values written in the history.
        let domain = if rng.percent(50) { 3 } else { 50 };
        let lost_pct = if rng.percent(50) { 10 } else { 40 };
        let mut written: Vec<Value> = Vec::new();
        let mut history = Vec::new();
        for client in 0..n {
            let seen = |rng: &mut Rng, written: &[Value]| match rng.below(10) {
                0..3 => None,
                3 => Some(1 + rng.below(domain)),
                _ if written.is_empty() => None,
                _ => Some(written[rng.below(written.len() as u64) as usize]),
            };
            let call = rng.below(10);
            let ret = (!rng.percent(lost_pct)).then(|| call + rng.below(6));
            let (input, output) = match rng.below(4) {
                0 => {
                    let value = 1 + rng.below(domain);
                    written.push(value);
                    (Input::Put { key: K, value }, Output::Put)
                }
                1 => (Input::Get { key: K }, Output::Get(seen(rng, &written))),
                2 => (Input::Delete { key: K }, Output::Delete),
                _ => {
                    let new = 1 + rng.below(domain);
                    let expected = seen(rng, &written);
                    written.push(new);
                    (
                        Input::Cas {
                            key: K,
                            expected,
                            new,
                        },
                        Output::Cas(rng.percent(50)),
                    )
                }
            };
            let output = match rng.below(20) {
                0 => None,
                1 => Some(Output::Delete), // usually the wrong kind
                _ if ret.is_none() && rng.percent(70) => None,
                _ => Some(output),
            };
            history.push(op(client, call, ret, input, output));
        }
        history
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let mut rng = Rng::new(2024);
        let (mut legal, mut illegal) = (0, 0);
        for _ in 0..5000 {
            let history = random_small_history(&mut rng, 6);
            let expected = brute_linearizable(&history);
            let result = check(&history);
            assert_eq!(
                result.is_ok(),
                expected,
                "history {history:#?}: got {result:?}"
            );
            if let CheckResult::Illegal { ops, .. } = &result {
                let sub: Vec<Operation> = ops.iter().map(|&i| history[i]).collect();
                assert!(
                    !brute_linearizable(&sub),
                    "witness {ops:?} of {history:#?} is legal"
                );
                illegal += 1;
            } else {
                legal += 1;
            }
        }
        assert!(
            legal > 1000 && illegal > 1000,
            "legal {legal}, illegal {illegal}"
        );
    }
}
