//! Lock API integration tests (`v3lockpb.Lock`): Lock and Unlock through `etcd-client` against a
//! spawned server process.
//!
//! Every expectation here is etcd's: run with `XLINE_TEST_SERVER=etcd` to check them against
//! Debian's etcd, and without it to check our `xline` binary. etcd builds the service from a
//! lease, a txn and watches (`clientv3/concurrency.Mutex`): the lock's key is
//! `name/<lease id in hex>`, and the oldest key under `name/` holds the lock.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestServer, check_header, expect_status, header_rev};
use etcd_client::{Client, GetOptions, LockOptions};
use tonic::Code;

const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

/// How long a Lock call that must block is given before the test decides it did block.
const BLOCKED_FOR: Duration = Duration::from_millis(700);

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.unwrap().id()
}

async fn lock(
    c: &mut Client,
    name: &str,
    lease: i64,
) -> Result<etcd_client::LockResponse, etcd_client::Error> {
    c.lock(name, Some(LockOptions::new().with_lease(lease)))
        .await
}

/// The keys under `prefix` with their create revisions and leases, in create order.
async fn waiters(c: &mut Client, prefix: &str) -> Vec<(String, i64, i64)> {
    let r = c
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_sort(
                etcd_client::SortTarget::Create,
                etcd_client::SortOrder::Ascend,
            )),
        )
        .await
        .unwrap();
    r.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.create_revision(),
                kv.lease(),
            )
        })
        .collect()
}

/// Waits (up to `limit`) until no key is left under `prefix`.
async fn wait_gone(c: &mut Client, prefix: &str, limit: Duration) -> Vec<(String, i64, i64)> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = waiters(c, prefix).await;
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn lock_returns_the_owner_key_and_unlock_deletes_it() {
    let server = TestServer::start_default().await;
    let mut c = server.client().await;
    let lease = grant(&mut c, 30).await;
    let resp = lock(&mut c, "mylock", lease).await.unwrap();
    let key = format!("mylock/{lease:x}");
    assert_eq!(resp.key(), key.as_bytes());
    // Uncontended: the header is the txn's that created the key.
    let rev = header_rev(resp.header());
    check_header(resp.header(), rev);
    assert_eq!(
        waiters(&mut c, "mylock/").await,
        vec![(key.clone(), rev, lease)]
    );
    let got = c.get(key.as_str(), None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"");

    // Locking again with the same lease is the same acquisition: same key, nothing written.
    let again = lock(&mut c, "mylock", lease).await.unwrap();
    assert_eq!(again.key(), key.as_bytes());
    assert_eq!(header_rev(again.header()), rev);

    let unlocked = c.unlock(key.as_str()).await.unwrap();
    check_header(unlocked.header(), rev + 1);
    assert!(waiters(&mut c, "mylock/").await.is_empty());
    // Unlocking a key that is gone is not an error (a plain delete).
    let twice = c.unlock(key.as_str()).await.unwrap();
    check_header(twice.header(), rev + 1);
}

#[tokio::test]
async fn lock_with_a_missing_lease_fails() {
    let server = TestServer::start_default().await;
    let mut c = server.client().await;
    expect_status(
        lock(&mut c, "nolease", 0x1234).await,
        Code::Unknown,
        LEASE_NOT_FOUND,
    );
    assert!(waiters(&mut c, "nolease/").await.is_empty());
}

#[tokio::test]
async fn second_locker_waits_until_the_first_unlocks() {
    let server = TestServer::start_default().await;
    let mut c1 = server.client().await;
    let mut c2 = server.client().await;
    let l1 = grant(&mut c1, 30).await;
    let l2 = grant(&mut c2, 30).await;
    let first = lock(&mut c1, "contended", l1).await.unwrap();
    let first_key = String::from_utf8(first.key().to_vec()).unwrap();

    let second = tokio::spawn(async move { lock(&mut c2, "contended", l2).await });
    tokio::time::sleep(BLOCKED_FOR).await;
    assert!(
        !second.is_finished(),
        "the second Lock returned while the lock was held"
    );
    // The waiter's key is queued behind the owner's.
    let queued = waiters(&mut c1, "contended/").await;
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert_eq!(queued[0].0, first_key);
    assert_eq!(queued[1].0, format!("contended/{l2:x}"));

    let unlocked = c1.unlock(first_key.as_str()).await.unwrap();
    let unlock_rev = header_rev(unlocked.header());
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second Lock did not return after the unlock")
        .unwrap()
        .unwrap();
    assert_eq!(second.key(), format!("contended/{l2:x}").as_bytes());
    assert!(header_rev(second.header()) >= unlock_rev, "{second:?}");
    assert_eq!(
        waiters(&mut c1, "contended/").await,
        vec![(format!("contended/{l2:x}"), queued[1].1, l2)]
    );
}

#[tokio::test]
async fn lock_is_released_when_the_owners_lease_expires() {
    let server = TestServer::start_default().await;
    let mut c1 = server.client().await;
    let mut c2 = server.client().await;
    // Never kept alive: expires about 2 s after the grant.
    let short = grant(&mut c1, 2).await;
    let long = grant(&mut c2, 30).await;
    lock(&mut c1, "expiring", short).await.unwrap();
    let second = tokio::spawn(async move { lock(&mut c2, "expiring", long).await });
    tokio::time::sleep(BLOCKED_FOR).await;
    assert!(
        !second.is_finished(),
        "the second Lock returned while the lock was held"
    );
    let second = tokio::time::timeout(Duration::from_secs(8), second)
        .await
        .expect("the lock was not handed over when the owner's lease expired")
        .unwrap()
        .unwrap();
    assert_eq!(second.key(), format!("expiring/{long:x}").as_bytes());
    let left = waiters(&mut c1, "expiring/").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].2, long);
}

#[tokio::test]
async fn a_waiter_that_goes_away_leaves_no_key_behind() {
    let server = TestServer::start_default().await;
    let mut c1 = server.client().await;
    let mut c2 = server.client().await;
    let l1 = grant(&mut c1, 30).await;
    let l2 = grant(&mut c2, 30).await;
    let first = lock(&mut c1, "abandoned", l1).await.unwrap();
    // The client gives up waiting: the call is cancelled (its HTTP/2 stream reset).
    let gave_up = tokio::time::timeout(BLOCKED_FOR, lock(&mut c2, "abandoned", l2)).await;
    assert!(
        gave_up.is_err(),
        "the second Lock returned while the lock was held: {gave_up:?}"
    );
    // The server deletes the waiter's key, so only the owner's is left...
    let left = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = waiters(&mut c1, "abandoned/").await;
            if left.len() == 1 || tokio::time::Instant::now() >= deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(left.len(), 1, "the abandoned waiter's key stayed: {left:?}");
    assert_eq!(left[0].0.as_bytes(), first.key());
    // ...and once it unlocks, nobody holds the lock.
    c1.unlock(first.key()).await.unwrap();
    assert!(
        wait_gone(&mut c1, "abandoned/", Duration::from_secs(1))
            .await
            .is_empty()
    );
    // A new locker gets it at once.
    let l3 = grant(&mut c1, 30).await;
    let third = tokio::time::timeout(Duration::from_secs(5), lock(&mut c1, "abandoned", l3))
        .await
        .expect("the lock stayed taken after its owner unlocked")
        .unwrap();
    assert_eq!(third.key(), format!("abandoned/{l3:x}").as_bytes());
}

#[tokio::test]
async fn lockers_get_the_lock_in_the_order_they_asked() {
    let server = TestServer::start_default().await;
    let mut c = server.client().await;
    let owner = grant(&mut c, 30).await;
    let held = lock(&mut c, "fifo", owner).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let mut client = server.client().await;
        let lease = grant(&mut client, 30).await;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let resp = lock(&mut client, "fifo", lease).await.unwrap();
            tx.send(i).unwrap();
            // Hold it briefly, then pass it on.
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.unlock(resp.key()).await.unwrap();
        }));
        // Each waiter's key is written before the next one asks.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while waiters(&mut c, "fifo/").await.len() < i + 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waiter {i} never queued"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(tx);
    c.unlock(held.key()).await.unwrap();
    let mut order = Vec::new();
    while let Some(i) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
    {
        order.push(i);
    }
    assert_eq!(order, vec![0, 1, 2]);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(waiters(&mut c, "fifo/").await.is_empty());
}

#[tokio::test]
async fn lock_without_a_lease_uses_a_fresh_sixty_second_lease() {
    let server = TestServer::start_default().await;
    let mut c = server.client().await;
    let resp = c.lock("nolease0", None).await.unwrap();
    let held = waiters(&mut c, "nolease0/").await;
    assert_eq!(held.len(), 1, "{held:?}");
    let (key, _, lease) = &held[0];
    assert_ne!(*lease, 0);
    assert_eq!(key.as_bytes(), resp.key());
    assert_eq!(*key, format!("nolease0/{lease:x}"));
    let ttl = c.lease_time_to_live(*lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    c.unlock(resp.key()).await.unwrap();
}
