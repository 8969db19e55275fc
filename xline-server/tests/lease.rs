//! Lease API integration tests: LeaseGrant, LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive and
//! LeaseLeases, keys attached to leases, expiry and restarts, driven through `etcd-client`
//! against a spawned server process.
//!
//! Every expectation here is etcd's: run with `XLINE_TEST_SERVER=etcd` to check them against
//! Debian's etcd, and without it to check our `xline` binary. TTLs are short (etcd's minimum is
//! 2 s with its default timings) so that each test takes a few seconds.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{TestServer, check_header, expect_status, header_rev};
use etcd_client::{
    Client, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp,
};
use tonic::Code;
use xline_proto::etcdserverpb::LeaseKeepAliveRequest;
use xline_proto::etcdserverpb::lease_client::LeaseClient;

const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const LEASE_EXIST: &str = "etcdserver: lease already exists";
const TTL_TOO_LARGE: &str = "etcdserver: too large lease TTL";

/// How late after its deadline an expired lease's keys may still be there: etcd looks for
/// expired leases every 500 ms, then revokes through consensus.
const EXPIRY_SLACK: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// Grants a lease with a server-assigned id; returns the id.
async fn grant(c: &mut Client, ttl: i64) -> i64 {
    let r = c.lease_grant(ttl, None).await.unwrap();
    assert_eq!(r.ttl(), ttl);
    r.id()
}

/// Puts `key` attached to `lease`.
async fn put_with(c: &mut Client, key: &str, value: &str, lease: i64) -> i64 {
    let r = c
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    header_rev(r.header())
}

/// Every live key with its lease, in key order.
async fn all_keys(c: &mut Client) -> Vec<(String, i64)> {
    let r = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    r.kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.lease()))
        .collect()
}

/// The store's revision.
async fn revision(c: &mut Client) -> i64 {
    header_rev(c.get("rev-probe", None).await.unwrap().header())
}

/// (TTL, granted TTL, attached keys sorted) as LeaseTimeToLive reports them.
async fn time_to_live(c: &mut Client, id: i64) -> (i64, i64, Vec<String>) {
    let r = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(r.id(), id);
    let mut keys: Vec<String> = r
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    // etcd lists them in map order.
    keys.sort();
    (r.ttl(), r.granted_ttl(), keys)
}

/// The ids LeaseLeases lists.
async fn lease_ids(c: &mut Client) -> BTreeSet<i64> {
    let r = c.leases().await.unwrap();
    check_header(r.header(), revision(c).await);
    r.leases()
        .iter()
        .map(etcd_client::LeaseStatus::id)
        .collect()
}

/// Polls until `key` is gone; returns when that was seen. Panics after `limit`.
async fn wait_gone(c: &mut Client, key: &str, limit: Duration) -> Instant {
    let start = Instant::now();
    loop {
        let r = c.get(key, None).await.unwrap();
        if r.kvs().is_empty() {
            return Instant::now();
        }
        assert!(
            start.elapsed() < limit,
            "{key} still exists after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// LeaseGrant
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn grant_assigns_or_takes_an_id() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;

    let r = c.lease_grant(60, None).await.unwrap();
    check_header(r.header(), 1);
    assert!(r.id() > 0, "server-assigned ids are positive: {:x}", r.id());
    assert_eq!(r.ttl(), 60);
    assert_eq!(r.error(), "");
    let assigned = r.id();
    let second = grant(&mut c, 60).await;
    assert_ne!(second, assigned);

    let chosen = 0x1234_5678;
    let r = c
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(chosen)))
        .await
        .unwrap();
    assert_eq!((r.id(), r.ttl()), (chosen, 30));
    check_header(r.header(), 1);

    // Taken ids.
    expect_status(
        c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(chosen)))
            .await,
        Code::FailedPrecondition,
        LEASE_EXIST,
    );
    expect_status(
        c.lease_grant(5, Some(LeaseGrantOptions::new().with_id(assigned)))
            .await,
        Code::FailedPrecondition,
        LEASE_EXIST,
    );

    // TTL bounds: small TTLs get etcd's minimum (2 s with default timings), the maximum is
    // 9,000,000,000 s.
    assert_eq!(c.lease_grant(1, None).await.unwrap().ttl(), 2);
    assert_eq!(c.lease_grant(0, None).await.unwrap().ttl(), 2);
    assert_eq!(c.lease_grant(-7, None).await.unwrap().ttl(), 2);
    assert_eq!(
        c.lease_grant(9_000_000_000, None).await.unwrap().ttl(),
        9_000_000_000
    );
    expect_status(
        c.lease_grant(9_000_000_001, None).await,
        Code::OutOfRange,
        TTL_TOO_LARGE,
    );
    expect_status(
        c.lease_grant(
            9_000_000_001,
            Some(LeaseGrantOptions::new().with_id(0x4242)),
        )
        .await,
        Code::OutOfRange,
        TTL_TOO_LARGE,
    );

    // Granting is no write: the revision stays.
    assert_eq!(revision(&mut c).await, 1);
    let ids = lease_ids(&mut c).await;
    assert_eq!(ids.len(), 7);
    assert!(ids.contains(&assigned) && ids.contains(&second) && ids.contains(&chosen));
}

// ---------------------------------------------------------------------------------------------
// LeaseRevoke
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_deletes_attached_keys_in_one_revision() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let id = grant(&mut c, 60).await;
    let other = grant(&mut c, 60).await;
    assert_eq!(put_with(&mut c, "b", "1", id).await, 2);
    assert_eq!(put_with(&mut c, "a", "1", id).await, 3);
    assert_eq!(put_with(&mut c, "c", "1", id).await, 4);
    assert_eq!(put_with(&mut c, "o", "1", other).await, 5);
    c.put("plain", "1", None).await.unwrap();
    assert_eq!(time_to_live(&mut c, id).await.2, strs(&["a", "b", "c"]));

    let r = c.lease_revoke(id).await.unwrap();
    check_header(r.header(), 7);
    assert_eq!(
        all_keys(&mut c).await,
        vec![("o".to_owned(), other), ("plain".to_owned(), 0)]
    );
    // All three were deleted in revision 7: still there at 6.
    let r = c
        .get("", Some(GetOptions::new().with_all_keys().with_revision(6)))
        .await
        .unwrap();
    assert_eq!(r.kvs().len(), 5);
    assert!(r.kvs().iter().take(3).all(|kv| kv.lease() == id));

    // Gone.
    expect_status(c.lease_revoke(id).await, Code::NotFound, LEASE_NOT_FOUND);
    expect_status(
        c.put("x", "1", Some(PutOptions::new().with_lease(id)))
            .await,
        Code::NotFound,
        LEASE_NOT_FOUND,
    );
    assert_eq!(time_to_live(&mut c, id).await, (-1, 0, vec![]));
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([other]));

    // A lease without keys is revoked without a revision.
    let empty = grant(&mut c, 60).await;
    let r = c.lease_revoke(empty).await.unwrap();
    check_header(r.header(), 7);
    expect_status(c.lease_revoke(0).await, Code::NotFound, LEASE_NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// Attachments
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn puts_attach_move_keep_and_detach() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let id = grant(&mut c, 60).await;
    let other = grant(&mut c, 60).await;
    put_with(&mut c, "a", "1", id).await;
    put_with(&mut c, "b", "1", id).await;
    put_with(&mut c, "c", "1", id).await;
    put_with(&mut c, "d", "1", id).await;

    // ignore_lease keeps the attachment.
    c.put("a", "2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    // An overwrite without a lease detaches the key; with another lease it moves.
    c.put("b", "2", None).await.unwrap();
    put_with(&mut c, "c", "2", other).await;
    // A delete detaches.
    c.delete("d", None).await.unwrap();
    // Txn puts attach too.
    c.txn(Txn::new().and_then([TxnOp::put("t", "1", Some(PutOptions::new().with_lease(id)))]))
        .await
        .unwrap();

    assert_eq!(time_to_live(&mut c, id).await.2, strs(&["a", "t"]));
    assert_eq!(time_to_live(&mut c, other).await.2, strs(&["c"]));
    assert_eq!(
        all_keys(&mut c).await,
        vec![
            ("a".to_owned(), id),
            ("b".to_owned(), 0),
            ("c".to_owned(), other),
            ("t".to_owned(), id),
        ]
    );

    let before = revision(&mut c).await;
    c.lease_revoke(id).await.unwrap();
    assert_eq!(revision(&mut c).await, before + 1);
    assert_eq!(
        all_keys(&mut c).await,
        vec![("b".to_owned(), 0), ("c".to_owned(), other)]
    );
}

// ---------------------------------------------------------------------------------------------
// LeaseTimeToLive and LeaseLeases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn time_to_live_and_leases() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let id = grant(&mut c, 60).await;
    put_with(&mut c, "k2", "v", id).await;
    put_with(&mut c, "k1", "v", id).await;

    let (ttl, granted, keys) = time_to_live(&mut c, id).await;
    // Whole seconds, truncated: a just-granted 60 s lease has 59 s and a bit left.
    assert!((58..=60).contains(&ttl), "ttl {ttl}");
    assert_eq!(granted, 60);
    assert_eq!(keys, strs(&["k1", "k2"]));
    // Without `keys` none are listed.
    let r = c.lease_time_to_live(id, None).await.unwrap();
    check_header(r.header(), 3);
    assert!(r.keys().is_empty());
    assert_eq!(r.granted_ttl(), 60);

    // An unknown lease is no error: TTL -1.
    let r = c.lease_time_to_live(0x7777, None).await.unwrap();
    check_header(r.header(), 3);
    assert_eq!((r.id(), r.ttl(), r.granted_ttl()), (0x7777, -1, 0));
    assert!(r.keys().is_empty());

    let second = grant(&mut c, 30).await;
    let third = grant(&mut c, 90).await;
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([id, second, third]));
    c.lease_revoke(second).await.unwrap();
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([id, third]));
}

// ---------------------------------------------------------------------------------------------
// LeaseKeepAlive and expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keep_alive_extends_the_lease() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let id = grant(&mut c, 2).await;
    put_with(&mut c, "k", "v", id).await;

    let (mut keeper, mut responses) = c.lease_keep_alive(id).await.unwrap();
    assert_eq!(keeper.id(), id);
    // Keep it alive for twice its TTL.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        keeper.keep_alive().await.unwrap();
        let r = responses.message().await.unwrap().expect("a response");
        assert_eq!((r.id(), r.ttl()), (id, 2));
        check_header(r.header(), 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(all_keys(&mut c).await, vec![("k".to_owned(), id)]);
    let (ttl, granted, _) = time_to_live(&mut c, id).await;
    assert!((1..=2).contains(&ttl), "ttl {ttl}");
    assert_eq!(granted, 2);

    // Then it expires from the last keep-alive on.
    let last = Instant::now();
    keeper.keep_alive().await.unwrap();
    responses.message().await.unwrap().expect("a response");
    drop(keeper);
    let gone = wait_gone(&mut c, "k", Duration::from_secs(10)).await;
    let after = gone - last;
    assert!(after >= Duration::from_secs(2), "expired {after:?} after");
    assert!(
        after <= Duration::from_secs(2) + EXPIRY_SLACK,
        "expired {after:?} after"
    );

    // A keep-alive for an unknown (here: expired) lease answers TTL 0, not an error (which
    // etcd-client turns into an error of its own, so this uses the raw gRPC client).
    let mut raw = LeaseClient::connect(s.endpoint()).await.unwrap();
    let requests = futures::stream::iter([
        LeaseKeepAliveRequest { id },
        LeaseKeepAliveRequest { id: 0x7777 },
    ]);
    let mut responses = raw.lease_keep_alive(requests).await.unwrap().into_inner();
    for want in [id, 0x7777] {
        let r = responses.message().await.unwrap().expect("a response");
        assert_eq!((r.id, r.ttl), (want, 0));
        assert_eq!(
            r.header.map(|h| h.revision),
            Some(3),
            "after the expiry's revision"
        );
    }
}

#[tokio::test]
async fn expiry_deletes_the_keys_on_time() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let sent = Instant::now();
    let id = grant(&mut c, 3).await;
    let granted = Instant::now();
    let short = grant(&mut c, 2).await;
    put_with(&mut c, "k1", "v", id).await;
    put_with(&mut c, "k2", "v", id).await;
    put_with(&mut c, "s", "v", short).await;
    c.put("plain", "v", None).await.unwrap();
    assert_eq!(revision(&mut c).await, 5);

    wait_gone(&mut c, "s", Duration::from_secs(10)).await;
    let gone = wait_gone(&mut c, "k1", Duration::from_secs(10)).await;
    assert!(
        gone - sent >= Duration::from_secs(3),
        "expired after {:?}",
        gone - sent
    );
    assert!(
        gone - granted <= Duration::from_secs(3) + EXPIRY_SLACK,
        "expired after {:?}",
        gone - granted
    );
    assert_eq!(all_keys(&mut c).await, vec![("plain".to_owned(), 0)]);
    // Each revocation is one revision.
    assert_eq!(revision(&mut c).await, 7);
    assert_eq!(time_to_live(&mut c, id).await, (-1, 0, vec![]));
    assert!(lease_ids(&mut c).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn lease_survives_a_restart_with_its_keys() {
    let mut s = TestServer::start_default().await;
    let mut c = s.client().await;
    let id = grant(&mut c, 3).await;
    let long = grant(&mut c, 600).await;
    put_with(&mut c, "k", "v", id).await;
    put_with(&mut c, "l", "v", long).await;
    c.put("moved", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    c.put("moved", "v2", None).await.unwrap();

    // xline's graceful stop waits for open client connections: close ours first.
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.restart().await;
    let ready = Instant::now();
    let mut c = s.client().await;
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([id, long]));
    let (ttl, granted, keys) = time_to_live(&mut c, id).await;
    assert_eq!(granted, 3);
    assert_eq!(keys, strs(&["k"]));
    // The deadline restarts: at least the TTL from now (etcd adds an election timeout).
    assert!(ttl >= 2, "ttl {ttl}");
    assert_eq!(time_to_live(&mut c, long).await.2, strs(&["l"]));
    assert_eq!(
        all_keys(&mut c).await,
        vec![
            ("k".to_owned(), id),
            ("l".to_owned(), long),
            ("moved".to_owned(), 0)
        ]
    );

    let gone = wait_gone(&mut c, "k", Duration::from_secs(10)).await;
    let after = gone - ready;
    assert!(
        after >= Duration::from_secs(3),
        "expired {after:?} after restart"
    );
    // TTL, the election timeout etcd adds on becoming leader, and the expiry slack.
    assert!(
        after <= Duration::from_secs(4) + EXPIRY_SLACK,
        "expired {after:?} after restart"
    );
    assert_eq!(
        all_keys(&mut c).await,
        vec![("l".to_owned(), long), ("moved".to_owned(), 0)]
    );
}
