//! Crash safety: a writer puts keys while the server is SIGKILLed and restarted on the same
//! data directory at random (seeded) points. Every acknowledged put must survive, with the
//! revision its response announced, and revisions must never go backwards.
//!
//! Expectations are etcd's: run with `XLINE_TEST_SERVER=etcd` to check them against Debian's
//! etcd, and without it to check our `xline` binary (with its default backend and with sled).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{ServerOpts, TestServer, check_header, connect, is_etcd};
use etcd_client::{Client, GetOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Keys k0..k(N-1).
const N: usize = 300;
/// A single put (or read) slower than this counts as failed; the writer then reconnects.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the writer keeps retrying one key before giving up.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// An acknowledged put.
#[derive(Debug, Clone)]
struct Ack {
    key: String,
    value: String,
    /// `header.revision` of the put's response.
    rev: i64,
}

/// The seed: `XLINE_KILL9_SEED` if set, else `default`.
fn seed(default: u64) -> u64 {
    std::env::var("XLINE_KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Puts k0..k(N-1) one after the other, retrying each until acknowledged.
/// Returns the acknowledged puts and fails if a revision ever goes backwards.
async fn writer(endpoint: String, progress: Arc<AtomicUsize>) -> (Vec<Ack>, usize) {
    let mut client = connect(&endpoint).await;
    let mut acks: Vec<Ack> = Vec::with_capacity(N);
    let mut last_rev = 0i64;
    let mut failures = 0usize;
    for i in 0..N {
        let key = format!("k{i}");
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            // Distinct per attempt, so we can tell which attempt's value survived.
            let value = format!("value-{i}-attempt-{attempt}");
            let res =
                tokio::time::timeout(OP_TIMEOUT, client.put(key.as_str(), value.as_str(), None))
                    .await;
            match res {
                Ok(Ok(resp)) => {
                    check_header(resp.header(), resp.header().unwrap().revision());
                    let rev = resp.header().unwrap().revision();
                    assert!(
                        rev > last_rev,
                        "put {key} acknowledged at revision {rev}, not after the previous acknowledged revision {last_rev}"
                    );
                    last_rev = rev;
                    acks.push(Ack {
                        key: key.clone(),
                        value,
                        rev,
                    });
                    break;
                }
                Ok(Err(_)) | Err(_) => {
                    failures += 1;
                    attempt += 1;
                    assert!(
                        started.elapsed() < RETRY_FOR,
                        "put {key} kept failing for {RETRY_FOR:?}: {res:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    client = connect(&endpoint).await;
                    // Once the server answers again, it must not have lost revisions.
                    if let Ok(Ok(r)) =
                        tokio::time::timeout(OP_TIMEOUT, client.get("probe", None)).await
                    {
                        let rev = r.header().unwrap().revision();
                        assert!(
                            rev >= last_rev,
                            "after a restart the server is at revision {rev}, behind the acknowledged revision {last_rev}"
                        );
                    }
                }
            }
        }
        progress.store(i + 1, Ordering::SeqCst);
    }
    (acks, failures)
}

/// Checks that every acknowledged put is there with its value and revision.
async fn verify(c: &mut Client, acks: &[Ack]) {
    let last = acks.last().unwrap().rev;
    let r = c
        .get("k", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let head = r.header().unwrap().revision();
    check_header(r.header(), head);
    assert!(
        head >= last,
        "store revision {head} is behind the last acknowledged put ({last})"
    );
    assert_eq!(r.count(), N as i64, "all keys are present");
    for ack in acks {
        let r = c.get(ack.key.as_str(), None).await.unwrap();
        assert_eq!(r.kvs().len(), 1, "acknowledged key {} is missing", ack.key);
        let kv = &r.kvs()[0];
        assert_eq!(
            kv.value(),
            ack.value.as_bytes(),
            "value of {} (acknowledged at revision {})",
            ack.key,
            ack.rev
        );
        assert_eq!(
            kv.mod_revision(),
            ack.rev,
            "mod_revision of {} must be the acknowledged revision",
            ack.key
        );
        assert!(kv.create_revision() <= kv.mod_revision());
        assert!(kv.version() >= 1);
        // History survives too.
        let h = c
            .get(
                ack.key.as_str(),
                Some(GetOptions::new().with_revision(ack.rev)),
            )
            .await
            .unwrap();
        assert_eq!(h.kvs().len(), 1, "{} at revision {}", ack.key, ack.rev);
        assert_eq!(h.kvs()[0].value(), ack.value.as_bytes());
        assert_eq!(h.kvs()[0].mod_revision(), ack.rev);
    }
}

async fn run(opts: ServerOpts, seed: u64) {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = TestServer::start(opts).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(writer(server.endpoint(), progress.clone()));

    let kills = rng.random_range(3..=5);
    let mut points: Vec<usize> = (0..kills).map(|_| rng.random_range(5..N - 5)).collect();
    points.sort_unstable();
    points.dedup();
    eprintln!("kill9 seed {seed}: SIGKILL after puts {points:?}");
    for point in &points {
        let deadline = Instant::now() + Duration::from_secs(40);
        while progress.load(Ordering::SeqCst) < *point {
            assert!(Instant::now() < deadline, "writer stuck before put {point}");
            assert!(!writer.is_finished(), "writer ended early");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Land the kill somewhere around the next put, possibly while it is in flight.
        tokio::time::sleep(Duration::from_micros(rng.random_range(0..5_000))).await;
        server.kill9();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        server.restart().await;
    }
    let (acks, failures) = writer.await.unwrap();
    eprintln!(
        "kill9 seed {seed}: {} puts acknowledged, {failures} failed attempts, {:?}",
        acks.len(),
        started.elapsed()
    );
    assert_eq!(acks.len(), N);

    let mut c = server.client().await;
    verify(&mut c, &acks).await;

    // Once more after a final crash with no writes in flight.
    drop(c);
    server.kill9();
    server.restart().await;
    let mut c = server.client().await;
    verify(&mut c, &acks).await;
    // And the store goes on from where it was.
    let head = c
        .get("probe", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let r = c.put("after", "1", None).await.unwrap();
    check_header(r.header(), head + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_default_backend() {
    run(ServerOpts::new(), seed(0x5eed_0001)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_sled_backend() {
    if is_etcd() {
        eprintln!("skipped: --backend sled is xline-only");
        return;
    }
    run(
        ServerOpts::new().xline_arg("--backend", "sled"),
        seed(0x5eed_0002),
    )
    .await;
}
