//! The raw-request entry points (`<rpc>_request`) xlinectl prints etcd's messages from, against
//! one real server (xline, or etcd with XLINE_TEST_SERVER=etcd).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use xline_client::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, request_op,
};
use xline_client::{EtcdErrorKind, WatchOptions};

#[tokio::test]
async fn kv_and_lease_raw_requests_round_trip() {
    let server = single_or_skip!();
    let client = server.client().await;
    let (kv, lease) = (client.kv(), client.lease());
    let grant = lease
        .lease_grant_request(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .unwrap();
    assert!(grant.id != 0 && grant.ttl == 60, "{grant:?}");
    let put = kv
        .put_request(PutRequest {
            key: b"raw/a".to_vec(),
            value: b"1".to_vec(),
            lease: grant.id,
            ..Default::default()
        })
        .await
        .unwrap();
    let put2 = kv
        .put_request(PutRequest {
            key: b"raw/a".to_vec(),
            value: b"2".to_vec(),
            prev_kv: true,
            ignore_lease: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(put2.prev_kv.unwrap().value, b"1");
    let range = kv
        .range_request(RangeRequest {
            key: b"raw/".to_vec(),
            range_end: b"raw0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(range.kvs.len(), 1);
    assert_eq!(range.kvs[0].lease, grant.id, "ignore_lease kept the lease");
    let ttl = lease
        .lease_time_to_live_request(LeaseTimeToLiveRequest {
            id: grant.id,
            keys: true,
        })
        .await
        .unwrap();
    assert_eq!(ttl.keys, [b"raw/a".to_vec()]);
    let leases = lease
        .lease_leases_request(LeaseLeasesRequest {})
        .await
        .unwrap();
    assert!(leases.leases.iter().any(|l| l.id == grant.id));

    // A read-only txn and a writing one.
    let get_op = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: b"raw/a".to_vec(),
            ..Default::default()
        })),
    };
    let txn = kv
        .txn_request(TxnRequest {
            success: vec![get_op.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(txn.succeeded);
    let del = RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: b"raw/a".to_vec(),
                prev_kv: true,
                ..Default::default()
            },
        )),
    };
    let txn = kv
        .txn_request(TxnRequest {
            success: vec![del, get_op],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(txn.responses.len(), 2);
    let gone = kv
        .delete_range_request(DeleteRangeRequest {
            key: b"raw/a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(gone.deleted, 0);

    // Etcd's errors come back typed.
    let err = kv
        .compact_request(CompactionRequest {
            revision: put.header.unwrap().revision + 1000,
            physical: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::FutureRev));
    lease
        .lease_revoke_request(LeaseRevokeRequest { id: grant.id })
        .await
        .unwrap();
    let err = lease
        .lease_revoke_request(LeaseRevokeRequest { id: grant.id })
        .await
        .unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::LeaseNotFound));
}

#[tokio::test]
async fn raw_watch_delivers_the_servers_cancel_response() {
    let server = single_or_skip!();
    let client = server.client().await;
    let kv = client.kv();
    let first = kv.put("w/k", "1", None).await.unwrap();
    let rev = first.header.unwrap().revision;
    kv.put("w/k", "2", None).await.unwrap();
    kv.put("w/k", "3", None).await.unwrap();
    kv.compact(rev + 1, None).await.unwrap();

    // From a compacted revision: the typed watch fails, the raw one hands over the response.
    let typed = client
        .watch()
        .watch("w/k", Some(WatchOptions::new().with_start_revision(rev)))
        .await;
    let typed_err = match typed {
        Ok((_, mut stream)) => stream.message().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(typed_err.etcd_kind(), Some(EtcdErrorKind::Compacted));

    let (_watcher, mut stream) = client
        .watch()
        .watch_request(WatchCreateRequest {
            key: b"w/k".to_vec(),
            start_revision: rev,
            ..Default::default()
        })
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .expect("the cancel response");
    assert!(resp.canceled, "{resp:?}");
    assert_eq!(resp.compact_revision, rev + 1);
    assert!(resp.events.is_empty());
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none(), "the stream ends after the cancel: {end:?}");

    // From the current revision: events, then our cancel's response.
    let (watcher, mut stream) = client
        .watch()
        .watch_request(WatchCreateRequest {
            key: b"w/".to_vec(),
            range_end: b"w0".to_vec(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap();
    kv.put("w/k", "4", None).await.unwrap();
    let resp = stream.message().await.unwrap().unwrap();
    assert_eq!(resp.events.len(), 1);
    assert_eq!(resp.events[0].prev_kv.as_ref().unwrap().value, b"3");
    watcher.cancel().unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .expect("the cancel response");
    assert!(resp.canceled && resp.compact_revision == 0, "{resp:?}");
    assert_eq!(resp.watch_id, watcher.watch_id());
}

#[tokio::test]
async fn keep_alive_responses_end_when_the_lease_is_revoked() {
    let server = single_or_skip!();
    let client = server.client().await;
    let lease = client.lease();
    let id = lease.grant(3, None).await.unwrap().id;
    let (handle, mut answers) = lease.keep_alive_responses(id);
    // One answer at once, then one a second (a third of the TTL).
    for _ in 0..2 {
        let a = tokio::time::timeout(Duration::from_secs(5), answers.recv())
            .await
            .unwrap()
            .expect("an answer");
        assert_eq!((a.id, a.ttl), (id, 3));
    }
    lease.revoke(id).await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while answers.recv().await.is_some() {}
    })
    .await;
    assert!(rest.is_ok(), "answers go on after the revoke");
    let end = handle.wait().await.unwrap_err();
    assert!(
        matches!(end, xline_client::Error::LeaseExpired(i) if i == id),
        "{end:?}"
    );
}
