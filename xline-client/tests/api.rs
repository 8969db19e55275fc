//! The client's services against one real server (xline, or etcd with XLINE_TEST_SERVER=etcd).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use tonic::Code;
use xline_client::{
    Client, Compare, CompareOp, ConcurrencyErrorKind, ConnectOptions, DeleteOptions, Error,
    EtcdErrorKind, EventType, GetOptions, LeaseTimeToLiveOptions, LockOptions, Permission,
    PutOptions, Session, SortOrder, SortTarget, Txn, TxnOp, WatchOptions,
};

fn etcd_kind<T: std::fmt::Debug>(r: xline_client::Result<T>) -> EtcdErrorKind {
    match r {
        Err(e) => e
            .etcd_kind()
            .unwrap_or_else(|| panic!("expected an etcd error, got {e:?}")),
        Ok(v) => panic!("expected an etcd error, got Ok({v:?})"),
    }
}

#[tokio::test]
async fn kv_get_put_delete_with_options() {
    let server = single_or_skip!();
    let kv = server.client().await.kv();
    for (k, v) in [("a/1", "x"), ("a/2", "yy"), ("a/3", "zzz"), ("b", "b")] {
        kv.put(k, v, None).await.unwrap();
    }
    let r = kv
        .get("a/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.count, 3);
    assert_eq!(
        r.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        [b"a/1", b"a/2", b"a/3"]
    );
    let r = kv
        .get("a/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .unwrap();
    assert_eq!((r.kvs.len(), r.more, r.count), (2, true, 3));
    let r = kv
        .get(
            "a/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Value, SortOrder::Descend),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.kvs[0].value, b"zzz");
    let r = kv
        .get(
            "a/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((r.count, r.kvs.len()), (3, 0));
    let r = kv
        .get(
            "a/1",
            Some(GetOptions::new().with_range("a/3").with_keys_only()),
        )
        .await
        .unwrap();
    assert_eq!(r.kvs.len(), 2);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    let r = kv
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(r.count, 4);

    // Older revisions and prev_kv.
    let first = kv.get("a/1", None).await.unwrap().kvs[0].mod_revision;
    let put = kv
        .put("a/1", "new", Some(PutOptions::new().with_prev_kv()))
        .await
        .unwrap();
    assert_eq!(put.prev_kv.unwrap().value, b"x");
    let old = kv
        .get("a/1", Some(GetOptions::new().with_rev(first)))
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, b"x");

    // ignore_value keeps the value; it needs the key to exist.
    kv.put("a/1", "", Some(PutOptions::new().with_ignore_value()))
        .await
        .unwrap();
    assert_eq!(kv.get("a/1", None).await.unwrap().kvs[0].value, b"new");
    assert_eq!(
        etcd_kind(
            kv.put("nope", "", Some(PutOptions::new().with_ignore_value()))
                .await
        ),
        EtcdErrorKind::KeyNotFound
    );

    let del = kv
        .delete(
            "a/",
            Some(DeleteOptions::new().with_prefix().with_prev_kv()),
        )
        .await
        .unwrap();
    assert_eq!((del.deleted, del.prev_kvs.len()), (3, 3));
    assert_eq!(
        kv.get("a/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count,
        0
    );
}

#[tokio::test]
async fn txn_compare_and_swap() {
    let server = single_or_skip!();
    let kv = server.client().await.kv();
    let create = || {
        Txn::new()
            .when([Compare::version("lock", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("lock", "me", None)])
            .or_else([TxnOp::get("lock", None)])
    };
    let r = kv.txn(create()).await.unwrap();
    assert!(r.succeeded);
    let r = kv.txn(create()).await.unwrap();
    assert!(!r.succeeded);
    let Some(xline_client::proto::etcdserverpb::response_op::Response::ResponseRange(range)) =
        r.responses[0].response.clone()
    else {
        panic!("expected a range response: {r:?}");
    };
    assert_eq!(range.kvs[0].value, b"me");
    // Value comparison and a nested txn.
    let r = kv
        .txn(
            Txn::new()
                .when([Compare::value("lock", CompareOp::Equal, "me")])
                .and_then([TxnOp::txn(
                    Txn::new().and_then([TxnOp::delete("lock", None)]),
                )]),
        )
        .await
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(kv.get("lock", None).await.unwrap().count, 0);
    // Two writes to one key in a txn: etcd's duplicate-key error.
    let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    assert_eq!(etcd_kind(kv.txn(dup).await), EtcdErrorKind::DuplicateKey);
}

#[tokio::test]
async fn error_kinds_are_rebuilt() {
    let server = single_or_skip!();
    let client = server.client().await;
    let kv = client.kv();
    let err = kv.put("", "v", None).await.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::EmptyKey));
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert_eq!(err.to_string(), "etcdserver: key is not provided");

    let rev = kv
        .put("k", "1", None)
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    kv.put("k", "2", None).await.unwrap();
    let err = kv
        .get("k", Some(GetOptions::new().with_rev(rev + 100)))
        .await
        .unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::FutureRev));
    assert_eq!(err.code(), Some(Code::OutOfRange));

    kv.compact(rev + 1, None).await.unwrap();
    let err = kv
        .get("k", Some(GetOptions::new().with_rev(rev)))
        .await
        .unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::Compacted));

    assert_eq!(
        etcd_kind(
            kv.put("k", "v", Some(PutOptions::new().with_lease(0x1234)))
                .await
        ),
        EtcdErrorKind::LeaseNotFound
    );
    assert_eq!(
        etcd_kind(client.lease().revoke(0x1234).await),
        EtcdErrorKind::LeaseNotFound
    );
    assert_eq!(
        etcd_kind(client.auth().user_get("nobody").await),
        EtcdErrorKind::UserNotFound
    );
    assert_eq!(
        etcd_kind(client.auth().authenticate("nobody", "x").await),
        EtcdErrorKind::AuthNotEnabled
    );
    // Election errors travel with code Unknown and their own messages.
    match client.election().leader("no-such-election").await {
        Err(Error::Concurrency { kind, .. }) => {
            assert_eq!(kind, ConcurrencyErrorKind::ElectionNoLeader);
        }
        other => panic!("expected election: no leader, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_events_cancel_and_compaction() {
    let server = single_or_skip!();
    let client = server.client().await;
    let kv = client.kv();
    let (watcher, mut stream) = client
        .watch()
        .watch("w/", Some(WatchOptions::new().with_prefix().with_prev_kv()))
        .await
        .unwrap();
    kv.put("w/a", "1", None).await.unwrap();
    kv.put("w/a", "2", None).await.unwrap();
    kv.delete("w/a", None).await.unwrap();
    kv.put("other", "x", None).await.unwrap();
    let mut events = Vec::new();
    while events.len() < 3 {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("watch event in time")
            .unwrap()
            .expect("stream open");
        assert_eq!(resp.watch_id, watcher.watch_id());
        events.extend(resp.events);
    }
    let kinds: Vec<EventType> = events.iter().map(xline_client::Event::r#type).collect();
    assert_eq!(kinds, [EventType::Put, EventType::Put, EventType::Delete]);
    assert_eq!(events[1].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(events[2].prev_kv.as_ref().unwrap().value, b"2");

    watcher.cancel().unwrap();
    let last = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .expect("cancel response");
    assert!(last.canceled);
    assert!(
        stream.message().await.unwrap().is_none(),
        "stream ends after cancel"
    );

    // A watch from a compacted revision reports the compaction as an error.
    let rev = kv
        .put("c", "1", None)
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    kv.put("c", "2", None).await.unwrap();
    kv.compact(
        rev + 1,
        Some(xline_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();
    let result = client
        .watch()
        .watch("c", Some(WatchOptions::new().with_start_revision(rev)))
        .await;
    let compacted = match result {
        Err(e) => e,
        // etcd confirms the creation first and cancels right after.
        Ok((_w, mut s)) => tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .unwrap()
            .unwrap_err(),
    };
    match compacted {
        Error::WatchCompacted { compact_revision } => assert_eq!(compact_revision, rev + 1),
        other => panic!("expected a compaction error, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_from_past_revision_replays_history() {
    let server = single_or_skip!();
    let client = server.client().await;
    let kv = client.kv();
    let start = kv
        .put("h", "0", None)
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    for i in 1..5 {
        kv.put("h", i.to_string(), None).await.unwrap();
    }
    let (_w, mut stream) = client
        .watch()
        .watch("h", Some(WatchOptions::new().with_start_revision(start)))
        .await
        .unwrap();
    let mut values = Vec::new();
    while values.len() < 5 {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        values.extend(resp.events.into_iter().map(|e| e.kv.unwrap().value));
    }
    assert_eq!(values, [b"0", b"1", b"2", b"3", b"4"]);
}

#[tokio::test]
async fn lease_grant_keepalive_and_expiry() {
    let server = single_or_skip!();
    let client = server.client().await;
    let lease = client.lease();
    let granted = lease.grant(2, None).await.unwrap();
    client
        .kv()
        .put(
            "leased",
            "v",
            Some(PutOptions::new().with_lease(granted.id)),
        )
        .await
        .unwrap();
    let ttl = lease
        .time_to_live(granted.id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(
        (ttl.granted_ttl, ttl.keys.clone()),
        (2, vec![b"leased".to_vec()])
    );
    assert!(
        lease
            .leases()
            .await
            .unwrap()
            .leases
            .iter()
            .any(|l| l.id == granted.id)
    );
    let once = lease.keep_alive_once(granted.id).await.unwrap();
    assert_eq!((once.id, once.ttl), (granted.id, 2));

    // The background keeper holds the 2 s lease well past its TTL.
    let keeper = lease.keep_alive_task(granted.id);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!keeper.is_finished());
    assert_eq!(keeper.ttl(), 2);
    assert_eq!(client.kv().get("leased", None).await.unwrap().count, 1);

    // Once stopped, the lease expires and takes its key along.
    keeper.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while client.kv().get("leased", None).await.unwrap().count == 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A keeper of a revoked lease ends with LeaseExpired.
    let other = lease.grant(30, None).await.unwrap();
    lease.revoke(other.id).await.unwrap();
    let keeper = lease.keep_alive_task(other.id);
    let ended = tokio::time::timeout(Duration::from_secs(10), keeper.wait())
        .await
        .expect("keeper ends");
    assert!(
        matches!(ended, Err(Error::LeaseExpired(id)) if id == other.id),
        "{ended:?}"
    );
}

#[tokio::test]
async fn lock_excludes_until_unlocked() {
    let server = single_or_skip!();
    let client = server.client().await;
    let l1 = client.lease().grant(30, None).await.unwrap().id;
    let l2 = client.lease().grant(30, None).await.unwrap().id;
    let held = client
        .lock()
        .lock("mtx", Some(LockOptions::new().with_lease(l1)))
        .await
        .unwrap();
    assert!(held.key.starts_with(b"mtx/"));
    let waiter = {
        let lock = client.lock();
        tokio::spawn(async move {
            lock.lock("mtx", Some(LockOptions::new().with_lease(l2)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiter.is_finished(),
        "second locker got the lock while it was held"
    );
    client.lock().unlock(held.key).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("second locker gets the lock")
        .unwrap()
        .unwrap();
    assert!(second.key.starts_with(b"mtx/"));

    // A session: the lock goes away with the session's lease.
    let session = Session::new(&client, 10).await.unwrap();
    let lock = session.lock("smtx").await.unwrap();
    assert_eq!(
        client
            .kv()
            .get(lock.key().to_vec(), None)
            .await
            .unwrap()
            .kvs[0]
            .lease,
        session.lease_id()
    );
    session.close().await.unwrap();
    assert_eq!(
        client
            .kv()
            .get(lock.key().to_vec(), None)
            .await
            .unwrap()
            .count,
        0
    );
}

#[tokio::test]
async fn election_campaign_proclaim_observe_resign() {
    let server = single_or_skip!();
    let client = server.client().await;
    let election = client.election();
    let session = Session::new(&client, 10).await.unwrap();
    let leader = session.campaign("elect", "v1").await.unwrap();
    assert_eq!(
        election.leader("elect").await.unwrap().kv.unwrap().value,
        b"v1"
    );
    let mut observe = election.observe("elect");
    let first = tokio::time::timeout(Duration::from_secs(10), observe.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.kv.unwrap().value, b"v1");
    election.proclaim(leader.clone(), "v2").await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), observe.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.kv.unwrap().value, b"v2");
    election.resign(leader.clone()).await.unwrap();
    match election.proclaim(leader, "v3").await {
        Err(Error::Concurrency { kind, .. }) => {
            assert_eq!(kind, ConcurrencyErrorKind::ElectionNotLeader);
        }
        other => panic!("expected election: not leader, got {other:?}"),
    }
    session.close().await.unwrap();
}

#[tokio::test]
async fn auth_token_and_refresh() {
    // Tokens unused for 1 s expire: the client must fetch a new one by itself.
    let server = single_or_skip!(&["--auth-token-ttl", "1"], &["--bcrypt-cost", "4"]);
    let admin = server.client().await;
    let auth = admin.auth();
    auth.user_add("root", "rootpw", None).await.unwrap();
    auth.role_add("root").await.unwrap();
    auth.user_grant_role("root", "root").await.unwrap();
    auth.user_add("alice", "alicepw", None).await.unwrap();
    auth.role_add("app").await.unwrap();
    auth.role_grant_permission("app", Permission::read_write("app/").with_prefix())
        .await
        .unwrap();
    auth.user_grant_role("alice", "app").await.unwrap();
    auth.auth_enable().await.unwrap();

    // Without a token: permission denied (etcd checks as the anonymous user).
    let err = admin.kv().put("app/x", "1", None).await.unwrap_err();
    assert!(
        matches!(
            err.etcd_kind(),
            Some(EtcdErrorKind::PermissionDenied | EtcdErrorKind::UserEmpty)
        ),
        "{err:?}"
    );
    // Bad password.
    let bad = Client::connect(
        server.endpoints(),
        common::test_options().with_user("alice", "wrong"),
    )
    .await
    .unwrap_err();
    assert_eq!(bad.etcd_kind(), Some(EtcdErrorKind::AuthFailed));

    let alice = Client::connect(
        server.endpoints(),
        common::test_options().with_user("alice", "alicepw"),
    )
    .await
    .unwrap();
    let token = alice.token().expect("a token after connect");
    alice.kv().put("app/x", "1", None).await.unwrap();
    assert_eq!(
        etcd_kind(alice.kv().put("other", "1", None).await),
        EtcdErrorKind::PermissionDenied
    );
    // Let the token expire; the next call refreshes it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = alice.kv().get("app/x", None).await.unwrap();
    assert_eq!(r.kvs[0].value, b"1");
    assert_ne!(alice.token().unwrap(), token, "the token was refreshed");

    // Watches carry the token too.
    let (_w, mut stream) = alice
        .watch()
        .watch("app/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    alice.kv().put("app/y", "2", None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.events[0].kv.as_ref().unwrap().key, b"app/y");

    let root = Client::connect(
        server.endpoints(),
        ConnectOptions::new().with_user("root", "rootpw"),
    )
    .await
    .unwrap();
    root.auth().auth_disable().await.unwrap();
}

#[tokio::test]
async fn cluster_and_maintenance_calls() {
    let server = single_or_skip!();
    let client = server.client().await;
    let members = client.cluster().member_list().await.unwrap().members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].client_ur_ls, [server.endpoint(0)]);
    let status = client.maintenance().status().await.unwrap();
    assert_eq!(status.leader, members[0].id);
    let hash = client.maintenance().hash_kv(0).await.unwrap();
    assert!(hash.header.unwrap().revision >= 1);
    let alarms = client
        .maintenance()
        .alarm(
            xline_client::AlarmAction::Get,
            xline_client::AlarmType::None,
            0,
        )
        .await
        .unwrap();
    assert!(alarms.alarms.is_empty());
    let mut snapshot = client.maintenance().snapshot().await.unwrap();
    let mut size = 0;
    while let Some(chunk) = snapshot.message().await.unwrap() {
        size += chunk.blob.len();
    }
    assert!(size > 0);
}

#[tokio::test]
async fn unreachable_endpoints_fail_fast_and_fail_over() {
    let server = single_or_skip!();
    // A dead endpoint first: the call is retried on the live one (never sent to the dead one).
    let dead = format!("127.0.0.1:{}", common::fresh_port());
    let client = Client::connect([dead.clone(), server.endpoint(0)], common::test_options())
        .await
        .unwrap();
    for i in 0..4 {
        client.kv().put(format!("f{i}"), "v", None).await.unwrap();
    }
    assert_eq!(
        client
            .kv()
            .get("f", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count,
        4
    );
    // Only dead endpoints: a connect error.
    let client = Client::connect([dead.clone()], common::test_options().with_max_retries(2))
        .await
        .unwrap();
    let err = client.kv().get("x", None).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    // With only a deadline, retries go on until it and the last error is reported.
    let opts = ConnectOptions::new().with_timeout(Duration::from_millis(700));
    let client = Client::connect([dead], opts).await.unwrap();
    let started = std::time::Instant::now();
    let err = client.kv().get("x", None).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "gave up before the deadline"
    );
    // TLS to a plaintext server: the handshake fails, a connect error (tests/tls.rs has TLS).
    let https = server.endpoint(0).replace("http://", "https://");
    let client = Client::connect([https], common::test_options().with_max_retries(1))
        .await
        .unwrap();
    let err = client.kv().get("x", None).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}
