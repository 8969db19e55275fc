//! The native CURP fast path of the library (`xline_client::native`) against a 3-member xline
//! started as processes: plain puts complete, mostly on the fast path with a revision that is
//! not final, and are then visible through the etcd API on every member; txns, ordered writes
//! and conflicting writes carry their final revision; errors map to the library's error kinds.
//! xline only: etcd has no CURP client service (skipped with `XLINE_TEST_SERVER=etcd`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use tonic::Code;
use xline_client::native::{NativeClient, NativeOptions, NativeResponse};
use xline_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, Error, EtcdErrorKind, GetOptions,
    PutOptions, PutResponse, Txn, TxnOp,
};

/// A response's revision agrees with its flag: 0 when speculative, assigned when final.
fn check_put(resp: &NativeResponse<PutResponse>) {
    if resp.revision_final {
        assert!(resp.revision() > 1, "{resp:?}");
    } else {
        assert_eq!(resp.revision(), 0, "{resp:?}");
    }
}

/// The value and mod revision of `key`, read linearizably through member `m`'s etcd API.
async fn read(client: &Client, key: &str) -> Option<(Vec<u8>, i64)> {
    let got = client.kv().get(key, None).await.unwrap();
    got.kvs
        .first()
        .map(|kv| (kv.value.clone(), kv.mod_revision))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_writes_through_the_curp_fast_path() {
    if common::is_etcd() {
        println!("skipped: etcd has no CURP client service");
        return;
    }
    let Some(cluster) = common::Cluster::start(3).await else {
        return;
    };
    cluster.leader_index(Duration::from_secs(20)).await;
    let client = cluster.client().await;
    let native = NativeClient::from_client(&client, NativeOptions::new())
        .await
        .unwrap();
    let members: Vec<Client> = {
        let mut v = Vec::new();
        for m in 0..3 {
            v.push(cluster.client_of(&[m]).await);
        }
        v
    };

    // Plain puts on distinct keys: one round trip each, mostly speculative.
    const PUTS: usize = 30;
    let mut fast = 0;
    for i in 0..PUTS {
        let resp = native
            .put(format!("native/{i:02}"), format!("v{i}"), None)
            .await
            .unwrap();
        check_put(&resp);
        if !resp.revision_final {
            fast += 1;
        }
    }
    println!("[native] {fast}/{PUTS} puts completed on the fast path");
    assert!(
        fast * 2 > PUTS,
        "plain commuting puts should mostly complete on the fast path: {fast}/{PUTS}"
    );
    assert_eq!(native.stats().fast, fast as u64);
    // Every acknowledged put is visible through the etcd API on every member.
    for (m, member) in members.iter().enumerate() {
        let got = member
            .kv()
            .get("native/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(got.kvs.len(), PUTS, "member {m}");
        for (i, kv) in got.kvs.iter().enumerate() {
            assert_eq!(kv.key, format!("native/{i:02}").into_bytes(), "member {m}");
            assert_eq!(kv.value, format!("v{i}").into_bytes(), "member {m}");
            assert!(kv.mod_revision > 1, "member {m}");
        }
    }

    // A delete reports the exact count on either path.
    let del = native
        .delete("native/0", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(del.response.deleted, 10, "{del:?}");
    assert_eq!(del.revision_final, del.revision() > 0, "{del:?}");
    for member in &members {
        assert_eq!(read(member, "native/05").await, None);
    }

    // A txn is always ordered: its revision is final and is the one the etcd API shows.
    let txn = native
        .txn(
            Txn::new()
                .when([Compare::value("native/15", CompareOp::Equal, "v15")])
                .and_then([TxnOp::put("native/15", "txn", None)])
                .or_else([TxnOp::get("native/15", None)]),
        )
        .await
        .unwrap();
    assert!(txn.revision_final && txn.response.succeeded, "{txn:?}");
    assert!(txn.revision() > 1);
    for member in &members {
        assert_eq!(
            read(member, "native/15").await,
            Some((b"txn".to_vec(), txn.revision()))
        );
    }

    // Ordered writes, and puts the server does not speculate (prev_kv), carry their revision.
    let ordered = native
        .ordered()
        .put("native/20", "ordered", None)
        .await
        .unwrap();
    assert!(ordered.revision_final, "{ordered:?}");
    assert!(ordered.revision() > txn.revision());
    assert_eq!(
        read(&members[1], "native/20").await,
        Some((b"ordered".to_vec(), ordered.revision()))
    );
    let prev = native
        .put("native/20", "again", Some(PutOptions::new().with_prev_kv()))
        .await
        .unwrap();
    assert!(prev.revision_final && prev.revision() > ordered.revision());
    assert_eq!(prev.response.prev_kv.unwrap().value, b"ordered");
    assert!(native.stats().ordered >= 1);

    // Concurrent puts on one key conflict with each other: those that do wait for their order
    // and get distinct final revisions; the key ends with one of the values written, at a
    // revision no lower than any of them.
    const HOT: usize = 16;
    let tasks: Vec<_> = (0..HOT)
        .map(|i| {
            let native = native.clone();
            tokio::spawn(async move { native.put("hot", format!("h{i}"), None).await })
        })
        .collect();
    let mut revisions = BTreeMap::new();
    let mut finals = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let resp = task.await.unwrap().unwrap();
        check_put(&resp);
        if resp.revision_final {
            finals += 1;
            let dup = revisions.insert(resp.revision(), format!("h{i}").into_bytes());
            assert!(dup.is_none(), "duplicate revision {}", resp.revision());
        }
    }
    println!("[native] {finals}/{HOT} concurrent puts on one key got a final revision");
    assert!(
        finals > 0,
        "{HOT} simultaneous puts on one key never conflicted"
    );
    let (value, rev) = read(&members[2], "hot").await.unwrap();
    assert!(value.starts_with(b"h"));
    let (&last_rev, last_value) = revisions.last_key_value().unwrap();
    assert!(rev >= last_rev);
    if finals == HOT {
        // Every put's revision is known: the last one in revision order is the value.
        assert_eq!((value, rev), (last_value.clone(), last_rev));
    }

    // Errors the server applies come back as the library's kinds.
    let err = native
        .put(
            "native/leased",
            "x",
            Some(PutOptions::new().with_lease(0x1234)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Etcd {
                kind: EtcdErrorKind::LeaseNotFound,
                code: Code::NotFound
            }
        ),
        "{err:?}"
    );
    let err = native
        .txn(Txn::new().and_then([TxnOp::put(
            "native/leased",
            "x",
            Some(PutOptions::new().with_lease(0x1234)),
        )]))
        .await
        .unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::LeaseNotFound));
    // ... and what etcd's front end refuses is refused before anything is sent.
    let err = native.put("", "x", None).await.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::EmptyKey));
    assert_eq!(read(&members[0], "native/leased").await, None);

    // A lone seed is enough: the client learns the other members and the leader.
    let peers = client.cluster().member_list().await.unwrap();
    let seed = peers.members[0].peer_ur_ls[0].clone();
    let seeded = NativeClient::connect([seed], NativeOptions::new())
        .await
        .unwrap();
    let resp = seeded.put("seeded", "1", None).await.unwrap();
    check_put(&resp);
    assert!(read(&members[0], "seeded").await.is_some());

    // The native path carries no credentials: a client configured with a user cannot open it,
    // nor can any client once auth is enabled.
    client.auth().user_add("root", "pw", None).await.unwrap();
    client.auth().role_add("root").await.unwrap();
    client.auth().user_grant_role("root", "root").await.unwrap();
    client.auth().auth_enable().await.unwrap();
    let err = NativeClient::from_client(&client, NativeOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unimplemented(_)), "{err:?}");
    let root = Client::connect(
        cluster.endpoints(),
        ConnectOptions::new().with_user("root", "pw"),
    )
    .await
    .unwrap();
    let err = NativeClient::from_client(&root, NativeOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unimplemented(_)), "{err:?}");
    assert!(err.to_string().contains("no credentials"), "{err}");
}

#[tokio::test]
async fn connecting_without_a_member_fails() {
    let port = common::fresh_port();
    let err = NativeClient::connect(
        [format!("127.0.0.1:{port}")],
        NativeOptions::new()
            .with_dial_timeout(Duration::from_millis(200))
            .with_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Connect { .. } | Error::Timeout),
        "{err:?}"
    );
    let none: [&str; 0] = [];
    let err = NativeClient::connect(none, NativeOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgs(_)), "{err:?}");
}
