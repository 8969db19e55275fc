//! Election API integration tests (`v3electionpb.Election`): Campaign, Proclaim, Leader, Observe
//! and Resign through `etcd-client` (and the raw gRPC client for requests `etcd-client` cannot
//! make) against a spawned server process.
//!
//! Every expectation here is etcd's: run with `XLINE_TEST_SERVER=etcd` to check them against
//! Debian's etcd, and without it to check our `xline` binary. etcd builds the service from a
//! lease, txns and watches (`clientv3/concurrency.Election`): a campaigner's key is
//! `name/<lease id in hex>`, and the oldest key under `name/` is the leader.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use tokio::sync::mpsc;

use common::{TestServer, check_header, expect_status, header_rev};
use etcd_client::{Client, LeaderKey, ObserveStream, ProclaimOptions, ResignOptions};
use tonic::Code;
use xline_proto::v3electionpb::election_client::ElectionClient;
use xline_proto::v3electionpb::{LeaderKey as PbLeaderKey, ProclaimRequest, ResignRequest};

const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER: &str = "\"leader\" field must be provided";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

/// How long a Campaign that must block is given before the test decides it did block.
const BLOCKED_FOR: Duration = Duration::from_millis(700);

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.unwrap().id()
}

/// The leader's value, or the error Leader answered.
async fn leader_value(c: &mut Client, name: &str) -> Result<String, etcd_client::Error> {
    let resp = c.leader(name).await?;
    Ok(String::from_utf8(resp.kv().unwrap().value().to_vec()).unwrap())
}

/// The raw Election client, for requests `etcd-client` cannot build.
async fn raw(server: &TestServer) -> ElectionClient<tonic::transport::Channel> {
    ElectionClient::connect(server.endpoint()).await.unwrap()
}

/// Observes election `name` from a task (etcd answers the Observe call itself only with the
/// first leader): each observation's key and value arrive on the returned channel.
fn observe(mut client: Client, name: &'static str) -> mpsc::UnboundedReceiver<(String, String)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream: ObserveStream = client.observe(name).await.unwrap();
        while let Some(resp) = stream.message().await.unwrap() {
            let kv = resp.kv().unwrap();
            let seen = (
                String::from_utf8(kv.key().to_vec()).unwrap(),
                String::from_utf8(kv.value().to_vec()).unwrap(),
            );
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next observation (key, value).
async fn observed(
    observations: &mut mpsc::UnboundedReceiver<(String, String)>,
) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(5), observations.recv())
        .await
        .expect("no leader change observed")
        .expect("the observe stream ended")
}

#[tokio::test]
async fn campaign_proclaim_leader_and_resign() {
    let server = TestServer::start_default().await;
    let mut c = server.client().await;
    expect_status(
        leader_value(&mut c, "elect").await,
        Code::Unknown,
        NO_LEADER,
    );

    let lease = grant(&mut c, 30).await;
    let won = c.campaign("elect", "v1", lease).await.unwrap();
    let rev = header_rev(won.header());
    check_header(won.header(), rev);
    let leader = won.leader().unwrap().clone();
    assert_eq!(leader.name(), b"elect");
    assert_eq!(leader.key(), format!("elect/{lease:x}").as_bytes());
    assert_eq!(leader.rev(), rev, "the key's create revision");
    assert_eq!(leader.lease(), lease);

    let current = c.leader("elect").await.unwrap();
    let kv = current.kv().unwrap();
    assert_eq!(kv.key(), leader.key());
    assert_eq!(kv.value(), b"v1");
    assert_eq!(kv.lease(), lease);
    assert_eq!(kv.create_revision(), rev);
    check_header(current.header(), rev);

    let proclaimed = c
        .proclaim(
            "v2",
            Some(ProclaimOptions::new().with_leader(leader.clone())),
        )
        .await
        .unwrap();
    check_header(proclaimed.header(), rev + 1);
    assert_eq!(leader_value(&mut c, "elect").await.unwrap(), "v2");

    // Campaigning again with the same lease keeps the leadership and proclaims the new value.
    let again = c.campaign("elect", "v3", lease).await.unwrap();
    assert_eq!(again.leader().unwrap().rev(), rev);
    assert_eq!(again.leader().unwrap().key(), leader.key());
    assert_eq!(leader_value(&mut c, "elect").await.unwrap(), "v3");

    let resigned = c
        .resign(Some(ResignOptions::new().with_leader(leader.clone())))
        .await
        .unwrap();
    check_header(resigned.header(), rev + 3);
    expect_status(
        leader_value(&mut c, "elect").await,
        Code::Unknown,
        NO_LEADER,
    );
    // A resigned leader can no longer proclaim; resigning again changes nothing.
    expect_status(
        c.proclaim(
            "v4",
            Some(ProclaimOptions::new().with_leader(leader.clone())),
        )
        .await,
        Code::Unknown,
        NOT_LEADER,
    );
    let twice = c
        .resign(Some(ResignOptions::new().with_leader(leader)))
        .await
        .unwrap();
    check_header(twice.header(), rev + 3);
}

#[tokio::test]
async fn second_campaigner_waits_for_the_leader_to_resign() {
    let server = TestServer::start_default().await;
    let mut c1 = server.client().await;
    let mut c2 = server.client().await;
    let l1 = grant(&mut c1, 30).await;
    let l2 = grant(&mut c2, 30).await;
    let first = c1.campaign("race", "one", l1).await.unwrap();
    let second = tokio::spawn(async move { c2.campaign("race", "two", l2).await });
    tokio::time::sleep(BLOCKED_FOR).await;
    assert!(
        !second.is_finished(),
        "the second Campaign won while the first led"
    );
    // The queued campaigner is not the leader and cannot proclaim.
    assert_eq!(leader_value(&mut c1, "race").await.unwrap(), "one");

    let resigned = c1
        .resign(Some(
            ResignOptions::new().with_leader(first.leader().unwrap().clone()),
        ))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second Campaign did not win after the leader resigned")
        .unwrap()
        .unwrap();
    let leader = second.leader().unwrap();
    assert_eq!(leader.key(), format!("race/{l2:x}").as_bytes());
    assert!(leader.rev() < header_rev(resigned.header()));
    // Campaign's header is the one of the txn that queued it.
    check_header(second.header(), leader.rev());
    assert_eq!(leader_value(&mut c1, "race").await.unwrap(), "two");
}

#[tokio::test]
async fn leadership_ends_when_the_leaders_lease_expires() {
    let server = TestServer::start_default().await;
    let mut c1 = server.client().await;
    let mut c2 = server.client().await;
    let short = grant(&mut c1, 2).await;
    let long = grant(&mut c2, 30).await;
    let first = c1.campaign("expiry", "old", short).await.unwrap();
    let second = tokio::spawn(async move { c2.campaign("expiry", "new", long).await });
    let second = tokio::time::timeout(Duration::from_secs(8), second)
        .await
        .expect("leadership was not handed over when the leader's lease expired")
        .unwrap()
        .unwrap();
    assert_eq!(second.leader().unwrap().lease(), long);
    assert_eq!(leader_value(&mut c1, "expiry").await.unwrap(), "new");
    // The expired leader's key is gone: it is not the leader any more.
    expect_status(
        c1.proclaim(
            "again",
            Some(ProclaimOptions::new().with_leader(first.leader().unwrap().clone())),
        )
        .await,
        Code::Unknown,
        NOT_LEADER,
    );
}

#[tokio::test]
async fn malformed_and_stale_leader_keys_are_refused() {
    let server = TestServer::start_default().await;
    let mut c = server.client().await;
    let mut pb = raw(&server).await;
    let status = pb
        .proclaim(ProclaimRequest {
            leader: None,
            value: b"v".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unknown, MISSING_LEADER)
    );
    let status = pb.resign(ResignRequest { leader: None }).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unknown, MISSING_LEADER)
    );

    let lease = grant(&mut c, 30).await;
    let won = c.campaign("stale", "v", lease).await.unwrap();
    let real = won.leader().unwrap();
    // The right key with the wrong create revision is not the leader.
    let wrong_rev = PbLeaderKey {
        name: b"stale".to_vec(),
        key: real.key().to_vec(),
        rev: real.rev() + 100,
        lease,
    };
    let status = pb
        .proclaim(ProclaimRequest {
            leader: Some(wrong_rev.clone()),
            value: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unknown, NOT_LEADER)
    );
    // Resigning with it deletes nothing (and is not an error).
    let resp = pb
        .resign(ResignRequest {
            leader: Some(wrong_rev),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.header.unwrap().revision, real.rev());
    assert_eq!(leader_value(&mut c, "stale").await.unwrap(), "v");

    // Campaigning with a lease that does not exist fails with the txn's error.
    expect_status(
        c.campaign("stale", "v", 0x1234).await,
        Code::Unknown,
        LEASE_NOT_FOUND,
    );
}

#[tokio::test]
async fn observe_reports_every_leader_and_value_in_order() {
    let server = TestServer::start_default().await;
    let mut c = server.client().await;
    // Observing before anyone campaigns: the stream waits for the first leader.
    let mut stream = observe(server.client().await, "obs");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l1 = grant(&mut c, 30).await;
    let l2 = grant(&mut c, 30).await;
    let first = c.campaign("obs", "a1", l1).await.unwrap();
    let k1 = format!("obs/{l1:x}");
    assert_eq!(observed(&mut stream).await, (k1.clone(), "a1".to_owned()));
    let leader1 = first.leader().unwrap().clone();
    for value in ["a2", "a3"] {
        c.proclaim(
            value,
            Some(ProclaimOptions::new().with_leader(leader1.clone())),
        )
        .await
        .unwrap();
        assert_eq!(observed(&mut stream).await, (k1.clone(), value.to_owned()));
    }
    // A second campaigner queues; it is observed once the first resigns.
    let mut c2 = server.client().await;
    let second = tokio::spawn(async move { c2.campaign("obs", "b1", l2).await });
    tokio::time::sleep(BLOCKED_FOR).await;
    c.resign(Some(ResignOptions::new().with_leader(leader1)))
        .await
        .unwrap();
    let k2 = format!("obs/{l2:x}");
    assert_eq!(observed(&mut stream).await, (k2.clone(), "b1".to_owned()));
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    c.proclaim(
        "b2",
        Some(ProclaimOptions::new().with_leader(second.leader().unwrap().clone())),
    )
    .await
    .unwrap();
    assert_eq!(observed(&mut stream).await, (k2, "b2".to_owned()));

    // An observer that starts while a leader leads gets it at once.
    let mut late = observe(server.client().await, "obs");
    assert_eq!(observed(&mut late).await.1, "b2");
}

#[tokio::test]
async fn an_abandoned_campaign_resigns() {
    let server = TestServer::start_default().await;
    let mut c1 = server.client().await;
    let mut c2 = server.client().await;
    let l1 = grant(&mut c1, 30).await;
    let l2 = grant(&mut c2, 30).await;
    let first = c1.campaign("gone", "one", l1).await.unwrap();
    let gave_up = tokio::time::timeout(BLOCKED_FOR, c2.campaign("gone", "two", l2)).await;
    assert!(
        gave_up.is_err(),
        "the second Campaign won while the first led: {gave_up:?}"
    );
    // The waiter's key is removed, so when the leader resigns nobody leads.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = c1
            .get("gone/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .unwrap();
        if left.kvs().len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned campaigner's key stayed: {:?}",
            left.kvs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c1.resign(Some(
        ResignOptions::new().with_leader(first.leader().unwrap().clone()),
    ))
    .await
    .unwrap();
    expect_status(
        leader_value(&mut c1, "gone").await,
        Code::Unknown,
        NO_LEADER,
    );
}

#[tokio::test]
async fn campaign_without_a_lease_uses_a_fresh_sixty_second_lease() {
    let server = TestServer::start_default().await;
    let mut c = server.client().await;
    let won = c.campaign("nolease", "v", 0).await.unwrap();
    let leader: LeaderKey = won.leader().unwrap().clone();
    assert_ne!(leader.lease(), 0);
    assert_eq!(
        leader.key(),
        format!("nolease/{:x}", leader.lease()).as_bytes()
    );
    let ttl = c.lease_time_to_live(leader.lease(), None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    c.resign(Some(ResignOptions::new().with_leader(leader)))
        .await
        .unwrap();
}
