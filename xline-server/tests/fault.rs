//! Fault test with a linearizability check over real processes (issue 4).
//!
//! Several client tasks put, get and compare-and-set (a txn comparing the value) a few keys
//! through random members of a 3-member cluster while a nemesis kills (SIGKILL) and restarts
//! members, pauses (SIGSTOP) and resumes (SIGCONT) them, and cuts links between them, on a
//! schedule drawn from a seeded PRNG. Peer traffic goes through the fault-injecting proxy of
//! `common::proxy`: the nemesis isolates a member (the leader or another, both ways), or cuts one
//! directed link (to or from the leader), either refusing connections or blackholing bytes, then
//! heals it. One fault at a time, so a majority can always make progress. Every operation is recorded with its invocation and completion (a timeout or an error
//! is indeterminate: it may or may not have taken effect), a final read of every key is added,
//! and the history is checked per key with curp's Wing & Gong checker
//! (`curp::testing::linearizability`) in its register model:
//!
//! - `put k v` is `Put`, answered `Put`;
//! - `get k` (linearizable) is `Get`, answered with the value or absence;
//! - `txn if value(k) == e then put k n` (`create_revision(k) == 0` for "absent") is `Cas`,
//!   answered with `succeeded`.
//!
//! The final reads make every acknowledged write's effect checkable: a lost write makes them
//! (or an earlier read) unexplainable. Beyond that, every acknowledged write (a put, or a
//! successful compare-and-set) is read back explicitly at the end at the revision it was
//! acknowledged with: the key must hold the written value with that mod revision.
//!
//! `XLINE_FAULT_SEED` fixes the nemesis and client choices (the default is drawn from the clock
//! and printed), `XLINE_FAULT_SECS` the length of the faulty phase (20 s by default; a long
//! run is `scripts/fault.sh`, which loops over seeds).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::{Cluster, connect_member};
use common::proxy::Link;
use common::{ServerOpts, server_kind};
use curp::testing::linearizability::{
    CheckResult, HistoryRecorder, Input, Key, OpHandle, Output, Value, check_with_budget,
};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Keys the clients work on.
const KEYS: u64 = 3;
/// Concurrent client tasks.
const CLIENTS: u64 = 5;
/// How long one client operation may take before it counts as indeterminate.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Search steps the checker may spend per key.
const CHECK_BUDGET: u64 = 50_000_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn key_name(key: Key) -> String {
    format!("lin/{key}")
}

/// An operation of the register model as an etcd request.
#[derive(Debug, Clone, Copy)]
enum Op {
    Put {
        key: Key,
        value: Value,
    },
    Get {
        key: Key,
    },
    Cas {
        key: Key,
        expected: Option<Value>,
        new: Value,
    },
}

impl Op {
    fn input(self) -> Input {
        match self {
            Op::Put { key, value } => Input::Put { key, value },
            Op::Get { key } => Input::Get { key },
            Op::Cas { key, expected, new } => Input::Cas { key, expected, new },
        }
    }
}

/// A value read back from etcd (values are decimal numbers).
fn parse_value(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected value {bytes:?}"))
}

/// Runs `op` against etcd's API and maps the answer into the model, with the revision of the
/// answer's header.
async fn execute(client: &mut Client, op: Op) -> Result<(Output, i64), etcd_client::Error> {
    let revision = |h: Option<&etcd_client::ResponseHeader>| {
        h.map_or(0, etcd_client::ResponseHeader::revision)
    };
    match op {
        Op::Put { key, value } => client
            .put(key_name(key), value.to_string(), None)
            .await
            .map(|r| (Output::Put, revision(r.header()))),
        Op::Get { key } => {
            let r = client.get(key_name(key), None).await?;
            Ok((
                Output::Get(r.kvs().first().map(|kv| parse_value(kv.value()))),
                revision(r.header()),
            ))
        }
        Op::Cas { key, expected, new } => {
            let name = key_name(key);
            let compare = match expected {
                Some(v) => Compare::value(name.clone(), CompareOp::Equal, v.to_string()),
                None => Compare::create_revision(name.clone(), CompareOp::Equal, 0),
            };
            let txn =
                Txn::new()
                    .when([compare])
                    .and_then([TxnOp::put(name, new.to_string(), None)]);
            client
                .txn(txn)
                .await
                .map(|r| (Output::Cas(r.succeeded()), revision(r.header())))
        }
    }
}

/// What became of one call.
#[derive(Debug)]
enum Outcome {
    /// Answered.
    Done(Output),
    /// Refused before anything was sent (the connection was refused): no effect.
    NotSent,
    /// Timed out or failed: may or may not have taken effect.
    Unknown,
}

/// Whether an error proves the request never reached a server: the TCP connection was
/// refused (the member is down). Anything else may have been executed.
fn never_sent(e: &etcd_client::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("Connection refused") || text.contains("ConnectionRefused")
}

/// An acknowledged write: `key` was set to `value` at `revision`.
#[derive(Debug, Clone, Copy)]
struct AckedWrite {
    key: Key,
    value: Value,
    revision: i64,
}

/// The shared history and counters.
#[derive(Default)]
struct History {
    recorder: HistoryRecorder,
    completed: u64,
    indeterminate: u64,
    not_sent: u64,
    /// Every acknowledged put and successful compare-and-set.
    acked: Vec<AckedWrite>,
}

impl History {
    fn invoke(&mut self, client: u64, op: Op) -> OpHandle {
        self.recorder.invoke(client, op.input())
    }

    /// Records an outcome. An operation that was never sent is recorded as indeterminate too
    /// (always sound), but counted apart.
    fn finish(&mut self, handle: OpHandle, outcome: Outcome) {
        match outcome {
            Outcome::Done(output) => {
                self.completed += 1;
                self.recorder.complete(handle, output);
            }
            Outcome::NotSent => {
                self.not_sent += 1;
                self.recorder.fail_indeterminate(handle);
            }
            Outcome::Unknown => {
                self.indeterminate += 1;
                self.recorder.fail_indeterminate(handle);
            }
        }
    }

    fn check(&self) -> CheckResult {
        check_with_budget(self.recorder.history(), CHECK_BUDGET)
    }
}

/// Runs one operation through `client`, recording it in `history`.
async fn run_op(history: &Mutex<History>, id: u64, client: &mut Client, op: Op) -> Outcome {
    let handle = history.lock().invoke(id, op);
    let outcome = match tokio::time::timeout(OP_TIMEOUT, execute(client, op)).await {
        Ok(Ok((output, revision))) => {
            let written = match (op, output) {
                (Op::Put { key, value }, Output::Put) => Some((key, value)),
                (Op::Cas { key, new, .. }, Output::Cas(true)) => Some((key, new)),
                _ => None,
            };
            if let Some((key, value)) = written {
                history.lock().acked.push(AckedWrite {
                    key,
                    value,
                    revision,
                });
            }
            Outcome::Done(output)
        }
        Ok(Err(e)) if never_sent(&e) => Outcome::NotSent,
        Ok(Err(_)) | Err(_) => Outcome::Unknown,
    };
    let recorded = match &outcome {
        Outcome::Done(o) => Outcome::Done(*o),
        Outcome::NotSent => Outcome::NotSent,
        Outcome::Unknown => Outcome::Unknown,
    };
    history.lock().finish(handle, recorded);
    outcome
}

/// One client task: random operations on random keys through random members until `stop`.
async fn client_task(
    id: u64,
    seed: u64,
    endpoints: Vec<String>,
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    let mut clients = Vec::new();
    for e in &endpoints {
        clients.push(connect_member(e).await);
    }
    // The last value this client saw or wrote per key: the CAS guess.
    let mut known: Vec<Option<Value>> = vec![None; usize::try_from(KEYS).unwrap()];
    let mut next_value = id * 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        let key = rng.random_range(0..KEYS);
        let slot = usize::try_from(key).unwrap();
        next_value += 1;
        let op = match rng.random_range(0..10) {
            0..=2 => Op::Put {
                key,
                value: next_value,
            },
            3..=5 => Op::Get { key },
            _ => Op::Cas {
                key,
                expected: known[slot],
                new: next_value,
            },
        };
        let member = rng.random_range(0..clients.len());
        match run_op(&history, id, &mut clients[member], op).await {
            Outcome::Done(Output::Get(v)) => known[slot] = v,
            Outcome::Done(Output::Put) => known[slot] = Some(next_value),
            Outcome::Done(Output::Cas(true)) => known[slot] = Some(next_value),
            // A failed CAS: learn the current value with the next read.
            Outcome::Done(_) => {}
            Outcome::NotSent | Outcome::Unknown => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the nemesis did.
#[derive(Debug, Default)]
struct Faults {
    kills: u32,
    leader_kills: u32,
    pauses: u32,
    leader_pauses: u32,
    /// A member cut off from all others, both ways.
    isolations: u32,
    leader_isolations: u32,
    /// One directed link cut (refused or blackholed).
    one_way_cuts: u32,
    /// Cuts (isolations or one-way) that blackholed bytes rather than refusing connections.
    blackholes: u32,
}

impl Faults {
    fn total(&self) -> u32 {
        self.kills + self.pauses + self.isolations + self.one_way_cuts
    }
}

/// Kills, restarts, pauses and resumes members and cuts and heals links on a seeded schedule
/// until `until`; one fault at a time (one member down, paused or cut off, or one directed link
/// cut), so a majority can always make progress.
async fn nemesis(cluster: &mut Cluster, seed: u64, until: Instant) -> Faults {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = Faults::default();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
        let leader = cluster.agreed_leader().await.map(|id| cluster.index_of(id));
        // Even actions aim at the leader (when there is an agreed one).
        let action = rng.random_range(0..8);
        let target = match (action % 2, leader) {
            (0, Some(l)) => l,
            _ => rng.random_range(0..cluster.len()),
        };
        let on_leader = Some(target) == leader;
        let down = Duration::from_millis(rng.random_range(500..2500));
        let link = if rng.random_bool(0.5) {
            Link::Refuse
        } else {
            Link::Blackhole
        };
        if action >= 4 {
            let net = cluster.net();
            if action < 6 {
                println!("nemesis: isolate m{target} ({link:?}, leader: {on_leader}) for {down:?}");
                net.isolate(target, link);
                faults.isolations += 1;
                faults.leader_isolations += u32::from(on_leader);
            } else {
                // One directed link between the target and another member, either way.
                let other = (target + rng.random_range(1..cluster.len())) % cluster.len();
                let (from, to) = if rng.random_bool(0.5) {
                    (target, other)
                } else {
                    (other, target)
                };
                println!(
                    "nemesis: cut m{from} -> m{to} ({link:?}, m{target} leader: {on_leader}) \
                     for {down:?}"
                );
                net.set(from, to, link);
                faults.one_way_cuts += 1;
            }
            faults.blackholes += u32::from(link == Link::Blackhole);
            tokio::time::sleep(down).await;
            cluster.net().heal_all();
        } else if action < 2 {
            println!("nemesis: kill -9 m{target} (leader: {on_leader}) for {down:?}");
            cluster.kill9(target);
            faults.kills += 1;
            faults.leader_kills += u32::from(on_leader);
            tokio::time::sleep(down).await;
            cluster.restart(target).await;
        } else {
            println!("nemesis: SIGSTOP m{target} (leader: {on_leader}) for {down:?}");
            cluster.pause(target);
            faults.pauses += 1;
            faults.leader_pauses += u32::from(on_leader);
            tokio::time::sleep(down).await;
            cluster.resume(target);
        }
    }
    faults
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_under_faults() {
    let seed = env_u64("XLINE_FAULT_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let secs = env_u64("XLINE_FAULT_SECS").unwrap_or(20);
    println!(
        "fault test: seed {seed} (XLINE_FAULT_SEED), {secs} s, {:?}",
        server_kind()
    );
    let started = Instant::now();
    // Short timings, so that several failovers fit in the run.
    let opts = ServerOpts::new()
        .arg("--heartbeat-interval", "50")
        .arg("--election-timeout", "500")
        .arg("--snapshot-count", "200");
    let mut cluster = Cluster::start_proxied(3, opts).await;
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client_task(
                id,
                seed,
                cluster.endpoints(),
                history.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let faults = nemesis(
        &mut cluster,
        seed,
        Instant::now() + Duration::from_secs(secs),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    // Heal, then read every key back through every member.
    cluster.net().heal_all();
    for i in 0..cluster.len() {
        cluster.resume(i);
        if !cluster.is_running(i) {
            cluster.restart(i).await;
        }
    }
    for i in 0..cluster.len() {
        let mut c = cluster.client(i).await;
        for key in 0..KEYS {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Outcome::Done(_) = run_op(&history, 1000, &mut c, Op::Get { key }).await {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "seed {seed}: member {i} cannot read key {key} after healing"
                );
            }
        }
    }
    let history = Arc::try_unwrap(history)
        .ok()
        .expect("clients finished")
        .into_inner();
    let lost = check_acked_writes(&cluster, &history.acked).await;
    let checking = Instant::now();
    let verdict = history.check();
    let ops = history.recorder.history().len();
    println!(
        "fault test: seed {seed}: {ops} ops ({} completed, {} indeterminate, {} refused), \
         {} acknowledged writes ({} missing), faults {faults:?}, proxy {:?}, checked in {:?}, \
         verdict: {}, total {:?}",
        history.completed,
        history.indeterminate,
        history.not_sent,
        history.acked.len(),
        lost.len(),
        cluster.net().stats(),
        checking.elapsed(),
        verdict.describe(history.recorder.history()),
        started.elapsed()
    );
    assert!(
        faults.total() >= 3,
        "seed {seed}: too few faults injected: {faults:?}"
    );
    assert!(
        lost.is_empty(),
        "seed {seed}: {} acknowledged writes are missing: {lost:#?}",
        lost.len()
    );
    assert!(
        history.completed >= 100,
        "seed {seed}: too few operations completed ({}): the cluster made no progress",
        history.completed
    );
    assert!(
        verdict.is_ok(),
        "seed {seed}: the history is not linearizable: {}",
        verdict.describe(history.recorder.history())
    );
}

/// The index of the leader that every member of `members` reports, once they agree on one of
/// them (panics after `timeout`).
async fn leader_among(cluster: &Cluster, members: &[usize], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen = Vec::new();
        for &i in members {
            seen.push(cluster.status_of(i).await.map(|(_, leader)| leader));
        }
        if let Some(Some(first)) = seen.first().copied()
            && first != 0
            && seen.iter().all(|&l| l == Some(first))
            && let Some(&l) = members.iter().find(|&&i| cluster.member_id(i) == first)
        {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "members {members:?} agree on no leader among them within {timeout:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `key = value` through member `i`, retrying failures for up to 10 s.
async fn put_retrying(cluster: &Cluster, i: usize, key: &str, value: &str) {
    let mut c = cluster.client(i).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(OP_TIMEOUT, c.put(key, value, None)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => assert!(Instant::now() < deadline, "put via m{i}: {e}"),
            Err(_) => assert!(Instant::now() < deadline, "put via m{i}: timeout"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A linearizable read of `key` through member `i` within `within`: `None` if it failed or
/// timed out, else the value (`Some(None)` when absent).
async fn try_get(
    cluster: &Cluster,
    i: usize,
    key: &str,
    within: Duration,
) -> Option<Option<String>> {
    let mut c = cluster.client(i).await;
    match tokio::time::timeout(within, c.get(key, None)).await {
        Ok(Ok(r)) => Some(r.kvs().first().map(|kv| kv.value_str().unwrap().to_owned())),
        _ => None,
    }
}

/// The proxy partitions for real: the leader isolated both ways (blackholed, then refused) or
/// cut off one way (every byte it sends held) loses leadership to one of the
/// others, which keep serving writes, while the cut-off member cannot serve a linearizable read
/// of them; once healed, it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_partitions_move_leadership() {
    let opts = ServerOpts::new()
        .arg("--heartbeat-interval", "50")
        .arg("--election-timeout", "500");
    let mut cluster = Cluster::start_proxied(3, opts).await;
    type Cut = fn(&Cluster, usize);
    let cuts: [(&str, Cut); 3] = [
        ("isolate-blackhole", |c, l| {
            c.net().isolate(l, Link::Blackhole);
        }),
        ("isolate-refuse", |c, l| {
            c.net().isolate(l, Link::Refuse);
        }),
        // Everything the leader sends is held, on every connection (in etcd, a follower opens
        // the stream its leader's messages come on, so refusing the leader's own connections
        // would not silence it).
        ("one-way-blackhole", |c, l| {
            for j in 0..c.len() {
                if j != l {
                    c.net().set(l, j, Link::Blackhole);
                }
            }
        }),
    ];
    for (name, cut) in cuts {
        let old = cluster.leader_index(Duration::from_secs(10)).await;
        let others: Vec<usize> = (0..cluster.len()).filter(|&i| i != old).collect();
        println!("{name}: cutting off the leader m{old}");
        cut(&cluster, old);
        let new = leader_among(&cluster, &others, Duration::from_secs(10)).await;
        let key = format!("partition/{name}");
        put_retrying(&cluster, others[0], &key, "written").await;
        assert_eq!(
            try_get(&cluster, new, &key, OP_TIMEOUT).await,
            Some(Some("written".to_owned()))
        );
        if name.starts_with("isolate") {
            // Cut off both ways, it cannot confirm a read with a majority.
            let read = try_get(&cluster, old, &key, Duration::from_secs(1)).await;
            assert_ne!(
                read,
                Some(Some("written".to_owned())),
                "{name}: the isolated m{old} served the new write"
            );
            assert!(
                read.is_none(),
                "{name}: the isolated m{old} served a linearizable read: {read:?}"
            );
        }
        cluster.net().heal_all();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if try_get(&cluster, old, &key, OP_TIMEOUT).await == Some(Some("written".to_owned())) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: m{old} did not catch up after healing"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "{name}: m{new} took over, m{old} caught up; proxy {:?}",
            cluster.net().stats()
        );
    }
}

/// Reads every acknowledged write back at the revision it was acknowledged with (rotating over
/// the members, retrying failures): the key must hold the written value with that mod
/// revision. Returns the writes that are not there, with what was found instead.
async fn check_acked_writes(cluster: &Cluster, acked: &[AckedWrite]) -> Vec<String> {
    let mut clients = Vec::new();
    for i in 0..cluster.len() {
        clients.push(cluster.client(i).await);
    }
    let mut lost = Vec::new();
    for (n, w) in acked.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut member = n % clients.len();
        let found = loop {
            let read = clients[member].get(
                key_name(w.key),
                Some(GetOptions::new().with_revision(w.revision)),
            );
            match tokio::time::timeout(OP_TIMEOUT, read).await {
                Ok(Ok(r)) => {
                    break r
                        .kvs()
                        .first()
                        .map(|kv| (parse_value(kv.value()), kv.mod_revision()));
                }
                Ok(Err(e)) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot read {w:?} back through m{member}: {e}"
                    );
                }
                Err(_) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot read {w:?} back through m{member}: timeout"
                    );
                }
            }
            member = (member + 1) % clients.len();
        };
        if found != Some((w.value, w.revision)) {
            lost.push(format!("{w:?}: found (value, mod_revision) {found:?}"));
        }
    }
    lost
}

/// The same model rejects what it must: crafted histories of etcd answers, recorded through
/// the same [`History`] the live test uses.
#[test]
fn the_checker_rejects_non_linearizable_etcd_histories() {
    fn run(steps: &[(u64, Op, Option<Output>)]) -> CheckResult {
        let mut h = History::default();
        for &(client, op, output) in steps {
            let handle = h.invoke(client, op);
            let outcome = output.map_or(Outcome::Unknown, Outcome::Done);
            h.finish(handle, outcome);
        }
        h.check()
    }
    let put = |value| Op::Put { key: 0, value };
    let get = Op::Get { key: 0 };
    let cas = |expected, new| Op::Cas {
        key: 0,
        expected,
        new,
    };
    // A stale read: a put and a CAS over it completed, then a read sees the put's value.
    let stale = [
        (1, put(1), Some(Output::Put)),
        (2, cas(Some(1), 2), Some(Output::Cas(true))),
        (1, get, Some(Output::Get(Some(1)))),
    ];
    assert!(run(&stale).is_illegal());
    // The same with the fresh value is fine.
    let fresh = [
        (1, put(1), Some(Output::Put)),
        (2, cas(Some(1), 2), Some(Output::Cas(true))),
        (1, get, Some(Output::Get(Some(2)))),
    ];
    assert!(run(&fresh).is_ok());
    // And if the CAS timed out, the old value may still be there.
    let unknown = [
        (1, put(1), Some(Output::Put)),
        (2, cas(Some(1), 2), None),
        (1, get, Some(Output::Get(Some(1)))),
    ];
    assert!(run(&unknown).is_ok());
    // Two CAS from the same value both succeeding, one after the other: lost update.
    let lost_update = [
        (1, put(1), Some(Output::Put)),
        (2, cas(Some(1), 2), Some(Output::Cas(true))),
        (3, cas(Some(1), 3), Some(Output::Cas(true))),
    ];
    assert!(run(&lost_update).is_illegal());
    // A CAS on an absent key (create_revision == 0) that fails although nothing was written.
    let bad_create = [(1, cas(None, 5), Some(Output::Cas(false)))];
    assert!(run(&bad_create).is_illegal());
    // An acknowledged write missing from the final read.
    let lost_write = [
        (1, put(7), Some(Output::Put)),
        (1000, get, Some(Output::Get(None))),
    ];
    assert!(run(&lost_write).is_illegal());
}
