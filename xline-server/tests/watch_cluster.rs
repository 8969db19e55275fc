//! Watch consistency on a 3-member cluster across a leader kill and restart (issue 6).
//!
//! Writers put and delete keys under `w/` through random members; one watcher per member
//! watches the prefix from revision 1. Mid-run the leader is killed with SIGKILL and later
//! restarted. A watcher whose stream breaks resumes from its last revision + 1, first on the
//! same member (restarted by then, or not) and otherwise on the next one. At the end every
//! watcher's event sequence must equal the store's history of the prefix, read by a fresh watch
//! from revision 1 after the run; that history must itself hold exactly one event per revision
//! (the writers are the only writers), agree with every acknowledged write, and keep
//! `create_revision`/`version` consistent.
//!
//! `XLINE_WATCH_SEED` fixes the writers' choices (default from the clock, printed).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::{Cluster, connect_member};
use common::server_kind;
use etcd_client::{EventType, WatchOptions, WatchResponse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

const PREFIX: &str = "w/";
const WRITERS: u64 = 3;
const KEYS: u64 = 8;

/// One watch event, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    rev: i64,
    put: bool,
    key: String,
    value: String,
    create: i64,
    version: i64,
}

/// An acknowledged write: (revision, key, value; `None` for a delete).
type Ack = (i64, String, Option<String>);

fn events_of(resp: &WatchResponse) -> Vec<Event> {
    resp.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event has a kv");
            Event {
                rev: kv.mod_revision(),
                put: e.event_type() == EventType::Put,
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: String::from_utf8_lossy(kv.value()).into_owned(),
                create: kv.create_revision(),
                version: kv.version(),
            }
        })
        .collect()
}

/// Puts (and sometimes deletes) random keys through random members until `stop`.
async fn writer(id: u64, seed: u64, endpoints: Vec<String>, stop: Arc<AtomicBool>) -> Vec<Ack> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(id));
    let mut clients = Vec::new();
    for e in &endpoints {
        clients.push(connect_member(e).await);
    }
    let mut acks = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("{PREFIX}{}", rng.random_range(0..KEYS));
        let c = &mut clients[rng.random_range(0..endpoints.len())];
        let timeout = Duration::from_secs(2);
        if rng.random_range(0..5) == 0 {
            match tokio::time::timeout(timeout, c.delete(key.as_str(), None)).await {
                Ok(Ok(r)) if r.deleted() > 0 => {
                    acks.push((r.header().unwrap().revision(), key, None));
                }
                Ok(Ok(_)) => {}
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        } else {
            let value = format!("{id}-{n}");
            match tokio::time::timeout(timeout, c.put(key.as_str(), value.as_str(), None)).await {
                Ok(Ok(r)) => acks.push((r.header().unwrap().revision(), key, Some(value))),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    acks
}

/// What a watcher saw.
#[derive(Debug, Default)]
struct Watched {
    events: Vec<Event>,
    /// Streams that broke and were resumed.
    resumes: u32,
    /// Resumptions on a member other than the one whose stream broke.
    moved: u32,
}

/// Watches the prefix from revision 1 through member `home`, resuming after breaks, until it
/// has seen the revision `target` announces (0: not known yet).
async fn watcher(home: usize, endpoints: Vec<String>, mut target: watch::Receiver<i64>) -> Watched {
    let mut seen = Watched::default();
    let mut member = home;
    let mut failures_here = 0;
    let mut last_rev = 0i64;
    let done = |last: i64, target: &watch::Receiver<i64>| {
        let t = *target.borrow();
        t > 0 && last >= t
    };
    while !done(last_rev, &target) {
        let mut client = connect_member(&endpoints[member]).await;
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(last_rev + 1);
        let opened = tokio::time::timeout(Duration::from_secs(3), async {
            let mut ws = client.watch(PREFIX, Some(opts)).await?;
            // Wait for the created response, so a dead member is noticed here.
            let first = ws.message().await?;
            Ok::<_, etcd_client::Error>((ws, first))
        })
        .await;
        let (mut ws, first) = match opened {
            Ok(Ok((ws, Some(first)))) if first.created() && !first.canceled() => (ws, first),
            other => {
                if let Ok(Ok((_, Some(r)))) = &other {
                    assert!(!r.canceled(), "watch on member {member} canceled: {r:?}");
                }
                // Try the same member once more, then move on.
                failures_here += 1;
                if failures_here >= 2 {
                    failures_here = 0;
                    member = (member + 1) % endpoints.len();
                    seen.moved += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        failures_here = 0;
        let mut pending = vec![first];
        loop {
            for resp in pending.drain(..) {
                assert!(!resp.canceled(), "watcher canceled: {resp:?}");
                for ev in events_of(&resp) {
                    assert!(
                        ev.rev > last_rev,
                        "watcher on member {member}: event at revision {} after {last_rev}",
                        ev.rev
                    );
                    last_rev = ev.rev;
                    seen.events.push(ev);
                }
            }
            if done(last_rev, &target) {
                return seen;
            }
            tokio::select! {
                msg = ws.message() => match msg {
                    Ok(Some(r)) => pending.push(r),
                    Ok(None) | Err(_) => {
                        seen.resumes += 1;
                        break;
                    }
                },
                _ = target.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    seen
}

/// The whole history of the prefix up to `until`, from a fresh watch from revision 1.
async fn history(endpoint: &str, until: i64) -> Vec<Event> {
    let mut c = connect_member(endpoint).await;
    let opts = WatchOptions::new().with_prefix().with_start_revision(1);
    let mut ws = c.watch(PREFIX, Some(opts)).await.unwrap();
    let mut events = Vec::new();
    while events.last().is_none_or(|e: &Event| e.rev < until) {
        let r = tokio::time::timeout(Duration::from_secs(10), ws.message())
            .await
            .expect("history watch stalled")
            .unwrap()
            .expect("history watch ended");
        assert!(!r.canceled(), "{r:?}");
        events.extend(events_of(&r));
    }
    events
}

/// The history is one event per revision from the first write to `last`, consistent with the
/// acknowledged writes and with itself (create revisions and versions).
fn check_history(events: &[Event], acks: &[Ack], first: i64, last: i64) {
    let revs: Vec<i64> = events.iter().map(|e| e.rev).collect();
    let expected: Vec<i64> = (first..=last).collect();
    assert_eq!(revs, expected, "the history skips or repeats revisions");
    let by_rev: HashMap<i64, &Event> = events.iter().map(|e| (e.rev, e)).collect();
    for (rev, key, value) in acks {
        let ev = by_rev
            .get(rev)
            .unwrap_or_else(|| panic!("acknowledged write at {rev} missing"));
        assert_eq!(&ev.key, key, "revision {rev}");
        assert_eq!(ev.put, value.is_some(), "revision {rev}");
        if let Some(v) = value {
            assert_eq!(&ev.value, v, "revision {rev}");
        }
    }
    let mut live: HashMap<&str, (i64, i64)> = HashMap::new();
    for ev in events {
        if ev.put {
            let (create, version) = match live.get(ev.key.as_str()) {
                Some(&(create, version)) => (create, version + 1),
                None => (ev.rev, 1),
            };
            assert_eq!((ev.create, ev.version), (create, version), "{ev:?}");
            live.insert(&ev.key, (create, version));
        } else {
            assert!(
                live.remove(ev.key.as_str()).is_some(),
                "delete of absent: {ev:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_event_once_in_order_across_a_leader_kill() {
    let seed = std::env::var("XLINE_WATCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    println!(
        "watch consistency: seed {seed} (XLINE_WATCH_SEED), {:?}",
        server_kind()
    );
    let started = Instant::now();
    let mut cluster = Cluster::start(3).await;
    let endpoints = cluster.endpoints();
    let (target_tx, target_rx) = watch::channel(0i64);
    let watchers: Vec<_> = (0..cluster.len())
        .map(|i| tokio::spawn(watcher(i, endpoints.clone(), target_rx.clone())))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(id, seed, endpoints.clone(), stop.clone())))
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    let li = cluster.leader_index(Duration::from_secs(10)).await;
    let old = cluster.member_id(li);
    println!("killing leader m{li} at {:?}", started.elapsed());
    cluster.kill9(li);
    cluster
        .leader_other_than(old, Duration::from_secs(10))
        .await;
    println!("new leader at {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(li).await;
    println!("m{li} restarted at {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    for w in writers {
        acks.extend(w.await.unwrap());
    }
    // The final revision, read linearizably after the last write was acknowledged.
    let mut c = cluster.client((li + 1) % 3).await;
    let last = c
        .get("w/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    target_tx.send(last).unwrap();
    let mut watched = Vec::new();
    for (i, w) in watchers.into_iter().enumerate() {
        let seen = tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .unwrap_or_else(|_| panic!("watcher {i} did not reach revision {last}"))
            .unwrap();
        watched.push(seen);
    }
    let reference = history(&cluster.endpoint((li + 2) % 3), last).await;
    let first = reference.first().map_or(last + 1, |e| e.rev);
    check_history(&reference, &acks, first, last);
    for (i, seen) in watched.iter().enumerate() {
        println!(
            "watcher {i}: {} events, {} resumes, {} moves to another member",
            seen.events.len(),
            seen.resumes,
            seen.moved
        );
        assert_eq!(
            seen.events.len(),
            reference.len(),
            "watcher {i}: event count"
        );
        for (a, b) in seen.events.iter().zip(&reference) {
            assert_eq!(a, b, "watcher {i} differs from the store's history");
        }
    }
    assert!(
        watched[li].resumes >= 1,
        "the watcher on the killed leader never had to resume"
    );
    println!(
        "watch consistency: {} acknowledged writes, revisions {first}..={last}, {:?}",
        acks.len(),
        started.elapsed()
    );
    assert!(acks.len() > 50, "too few writes: {}", acks.len());
}
