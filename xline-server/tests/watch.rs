//! Watch API integration tests, driven through `etcd-client` against a spawned server process.
//!
//! Every expectation here is etcd's: run with `XLINE_TEST_SERVER=etcd` to check them against
//! Debian's etcd, and without it to check our `xline` binary.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{ServerOpts, TestServer, check_header, header_rev, is_etcd};
use etcd_client::{
    Client, CompactionOptions, EventType, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse,
    WatchStream,
};

const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// The next response on the stream (fails after 10 s).
async fn next(ws: &mut WatchStream) -> WatchResponse {
    match tokio::time::timeout(Duration::from_secs(10), ws.message()).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => panic!("watch stream ended"),
        Ok(Err(e)) => panic!("watch stream failed: {e}"),
        Err(_) => panic!("no watch response within 10s"),
    }
}

/// Asserts nothing arrives on the stream for `wait`.
async fn silence(ws: &mut WatchStream, wait: Duration) {
    if let Ok(r) = tokio::time::timeout(wait, ws.message()).await {
        panic!("expected no watch response, got {r:?}");
    }
}

/// Opens a stream with one watcher and checks its created response (header at `rev`).
async fn open(c: &mut Client, key: &str, opts: WatchOptions, rev: i64) -> (WatchStream, i64) {
    let mut ws = c.watch(key, Some(opts)).await.unwrap();
    let r = next(&mut ws).await;
    assert!(r.created(), "first response must be the created one: {r:?}");
    assert!(!r.canceled(), "{r:?}");
    assert!(r.events().is_empty());
    check_header(r.header(), rev);
    let id = r.watch_id();
    (ws, id)
}

/// An event as (type, key, value, mod_revision).
type Ev = (&'static str, String, String, i64);

fn ev(kind: &'static str, key: &str, value: &str, rev: i64) -> Ev {
    (kind, key.to_owned(), value.to_owned(), rev)
}

fn evs(r: &WatchResponse) -> Vec<Ev> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event has a kv");
            let kind = match e.event_type() {
                EventType::Put => "PUT",
                EventType::Delete => "DELETE",
            };
            (
                kind,
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
            )
        })
        .collect()
}

/// Reads responses for watcher `id` until `n` events arrived; returns them with the number of
/// responses they came in. Events must arrive in revision order.
async fn collect(ws: &mut WatchStream, id: i64, n: usize) -> (Vec<Ev>, usize) {
    let mut out: Vec<Ev> = Vec::new();
    let mut responses = 0;
    while out.len() < n {
        let r = next(ws).await;
        assert_eq!(r.watch_id(), id, "{r:?}");
        assert!(!r.canceled() && !r.created(), "{r:?}");
        if r.events().is_empty() {
            continue; // progress notification
        }
        responses += 1;
        out.extend(evs(&r));
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    (out, responses)
}

async fn put(c: &mut Client, key: &str, value: &str) -> i64 {
    header_rev(c.put(key, value, None).await.unwrap().header())
}

// ---------------------------------------------------------------------------------------------
// keys and ranges
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn watch_single_key() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "foo", "0").await; // rev 2
    let (mut ws, id) = open(&mut c, "foo", WatchOptions::new(), 2).await;
    assert_eq!(id, 0, "the server assigns ids from 0");
    put(&mut c, "foo", "1").await; // 3
    put(&mut c, "foo1", "x").await; // 4
    put(&mut c, "bar", "x").await; // 5
    put(&mut c, "foo", "2").await; // 6
    c.delete("foo", None).await.unwrap(); // 7
    for want in [
        ev("PUT", "foo", "1", 3),
        ev("PUT", "foo", "2", 6),
        ev("DELETE", "foo", "", 7),
    ] {
        let r = next(&mut ws).await;
        assert_eq!(r.watch_id(), id);
        check_header(r.header(), want.3);
        assert_eq!(evs(&r), vec![want]);
        assert!(r.events()[0].prev_kv().is_none(), "prev_kv only when asked");
    }
    silence(&mut ws, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn watch_prefix_range_and_from_key() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let (mut prefix, _) = open(&mut c, "p/", WatchOptions::new().with_prefix(), 1).await;
    let (mut from, _) = open(&mut c, "m", WatchOptions::new().with_from_key(), 1).await;
    let (mut range, _) = open(&mut c, "b", WatchOptions::new().with_range("d"), 1).await;
    let (mut all, _) = open(&mut c, "", WatchOptions::new().with_all_keys(), 1).await;
    for (k, v) in [
        ("p/a", "1"),
        ("p", "2"),
        ("a", "3"),
        ("q", "4"),
        ("p/b", "5"),
        ("c", "6"),
    ] {
        put(&mut c, k, v).await;
    }
    c.put("d", "7", None).await.unwrap(); // rev 8
    let (got, _) = collect(&mut prefix, 0, 2).await;
    assert_eq!(
        got,
        vec![ev("PUT", "p/a", "1", 2), ev("PUT", "p/b", "5", 6)]
    );
    let (got, _) = collect(&mut from, 0, 4).await;
    assert_eq!(
        got,
        vec![
            ev("PUT", "p/a", "1", 2),
            ev("PUT", "p", "2", 3),
            ev("PUT", "q", "4", 5),
            ev("PUT", "p/b", "5", 6),
        ]
    );
    let (got, _) = collect(&mut range, 0, 1).await;
    assert_eq!(got, vec![ev("PUT", "c", "6", 7)]);
    let (got, _) = collect(&mut all, 0, 7).await;
    assert_eq!(
        got.iter().map(|e| e.3).collect::<Vec<_>>(),
        (2..=8).collect::<Vec<_>>()
    );
    for ws in [&mut prefix, &mut from, &mut range] {
        silence(ws, Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn empty_range_is_refused() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let mut ws = c
        .watch("b", Some(WatchOptions::new().with_range("a")))
        .await
        .unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), -1);
    assert_eq!(r.cancel_reason(), EMPTY_RANGE);
    check_header(r.header(), 1);
    // The stream still serves other watchers.
    ws.watch("a", None).await.unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && !r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), 0);
}

// ---------------------------------------------------------------------------------------------
// revisions: history, compaction, future
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn start_revision_replays_history() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    for i in 0..5 {
        put(&mut c, "h", &format!("v{i}")).await; // revs 2..=6
    }
    c.delete("h", None).await.unwrap(); // 7
    let (mut ws, id) = open(&mut c, "h", WatchOptions::new().with_start_revision(3), 7).await;
    let (got, _) = collect(&mut ws, id, 5).await;
    assert_eq!(
        got,
        vec![
            ev("PUT", "h", "v1", 3),
            ev("PUT", "h", "v2", 4),
            ev("PUT", "h", "v3", 5),
            ev("PUT", "h", "v4", 6),
            ev("DELETE", "h", "", 7),
        ]
    );
    // Then live events continue without a gap or a repeat.
    put(&mut c, "h", "live").await; // 8
    let (got, _) = collect(&mut ws, id, 1).await;
    assert_eq!(got, vec![ev("PUT", "h", "live", 8)]);
    silence(&mut ws, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn long_history_replay_in_order() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    for i in 0..2500 {
        put(&mut c, &format!("long/{i:04}"), "v").await; // revs 2..=2501
    }
    let opts = WatchOptions::new().with_prefix().with_start_revision(2);
    let (mut ws, id) = open(&mut c, "long/", opts, 2501).await;
    let (got, _) = collect(&mut ws, id, 2500).await;
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.1, format!("long/{i:04}"));
        assert_eq!(e.3, i as i64 + 2);
    }
}

#[tokio::test]
async fn compacted_start_revision() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    for i in 0..6 {
        put(&mut c, "k", &format!("v{i}")).await; // revs 2..=7
    }
    c.compact(5, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    // Below the compaction point: created, then canceled with the compaction revision.
    let mut ws = c
        .watch("k", Some(WatchOptions::new().with_start_revision(4)))
        .await
        .unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && !r.canceled(), "{r:?}");
    check_header(r.header(), 7);
    let id = r.watch_id();
    let r = next(&mut ws).await;
    assert_eq!(r.watch_id(), id);
    assert!(r.canceled() && !r.created(), "{r:?}");
    assert_eq!(r.compact_revision(), 5);
    assert!(r.events().is_empty());
    check_header(r.header(), 0);
    // At the compaction point itself: served.
    ws.watch("k", Some(WatchOptions::new().with_start_revision(5)))
        .await
        .unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && !r.canceled(), "{r:?}");
    let id2 = r.watch_id();
    assert_ne!(id2, id, "a compacted watcher keeps its id until canceled");
    let (got, _) = collect(&mut ws, id2, 3).await;
    assert_eq!(
        got,
        vec![
            ev("PUT", "k", "v3", 5),
            ev("PUT", "k", "v4", 6),
            ev("PUT", "k", "v5", 7)
        ]
    );
}

#[tokio::test]
async fn future_start_revision_waits() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    put(&mut c, "f", "a").await; // 2
    let (mut ws, id) = open(&mut c, "f", WatchOptions::new().with_start_revision(5), 2).await;
    for v in ["b", "c", "d", "e"] {
        put(&mut c, "f", v).await; // 3..=6
    }
    let (got, _) = collect(&mut ws, id, 2).await;
    assert_eq!(got, vec![ev("PUT", "f", "d", 5), ev("PUT", "f", "e", 6)]);
    silence(&mut ws, Duration::from_millis(200)).await;
}

// ---------------------------------------------------------------------------------------------
// options: prev_kv, filters
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn prev_kv_only_when_asked() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let (mut with, _) = open(&mut c, "k", WatchOptions::new().with_prev_key(), 1).await;
    let (mut without, _) = open(&mut c, "k", WatchOptions::new(), 1).await;
    put(&mut c, "k", "v1").await; // 2
    put(&mut c, "k", "v2").await; // 3
    c.delete("k", None).await.unwrap(); // 4
    let mut prevs = Vec::new();
    for _ in 0..3 {
        let r = next(&mut with).await;
        let e = &r.events()[0];
        prevs.push(e.prev_kv().map(|kv| {
            (
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
            )
        }));
        let r = next(&mut without).await;
        assert!(r.events()[0].prev_kv().is_none());
    }
    assert_eq!(
        prevs,
        vec![None, Some(("v1".to_owned(), 2)), Some(("v2".to_owned(), 3))]
    );
    // History replay carries prev_kv too.
    let opts = WatchOptions::new().with_prev_key().with_start_revision(3);
    let (mut replay, id) = open(&mut c, "k", opts, 4).await;
    let r = next(&mut replay).await;
    assert_eq!(r.watch_id(), id);
    let got: Vec<_> = r
        .events()
        .iter()
        .map(|e| e.prev_kv().map(etcd_client::KeyValue::mod_revision))
        .collect();
    assert_eq!(got, vec![Some(2), Some(3)]);
}

#[tokio::test]
async fn noput_and_nodelete_filters() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let opts = WatchOptions::new().with_prefix();
    let (mut noput, _) = open(
        &mut c,
        "x",
        opts.clone().with_filters([WatchFilterType::NoPut]),
        1,
    )
    .await;
    let (mut nodel, _) = open(
        &mut c,
        "x",
        opts.with_filters([WatchFilterType::NoDelete]),
        1,
    )
    .await;
    put(&mut c, "x1", "a").await; // 2
    put(&mut c, "x2", "b").await; // 3
    c.delete("x1", None).await.unwrap(); // 4
    put(&mut c, "x1", "c").await; // 5
    c.delete("x", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap(); // 6
    let (got, n) = collect(&mut noput, 0, 3).await;
    assert_eq!(
        got,
        vec![
            ev("DELETE", "x1", "", 4),
            ev("DELETE", "x1", "", 6),
            ev("DELETE", "x2", "", 6)
        ]
    );
    assert_eq!(n, 2, "the deletes of one revision come in one response");
    let (got, _) = collect(&mut nodel, 0, 3).await;
    assert_eq!(
        got,
        vec![
            ev("PUT", "x1", "a", 2),
            ev("PUT", "x2", "b", 3),
            ev("PUT", "x1", "c", 5)
        ]
    );
    silence(&mut nodel, Duration::from_millis(200)).await;
}

// ---------------------------------------------------------------------------------------------
// several watchers per stream, ids, cancel
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_chosen_ids_and_duplicates() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let (mut ws, id) = open(&mut c, "a", WatchOptions::new().with_watch_id(7), 1).await;
    assert_eq!(id, 7);
    ws.watch("b", Some(WatchOptions::new().with_watch_id(9)))
        .await
        .unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && !r.canceled());
    assert_eq!(r.watch_id(), 9);
    // Duplicate id: refused, the first watcher keeps working.
    ws.watch("c", Some(WatchOptions::new().with_watch_id(7)))
        .await
        .unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), -1);
    assert_eq!(r.cancel_reason(), DUPLICATE_ID);
    check_header(r.header(), 1);
    // Server-chosen ids skip the ones taken.
    ws.watch("d", None).await.unwrap();
    let r = next(&mut ws).await;
    assert_eq!((r.created(), r.watch_id()), (true, 0));
    put(&mut c, "b", "1").await; // 2
    put(&mut c, "a", "2").await; // 3
    put(&mut c, "c", "3").await; // 4
    put(&mut c, "d", "4").await; // 5
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = next(&mut ws).await;
        got.push((r.watch_id(), evs(&r)));
    }
    assert_eq!(
        got,
        vec![
            (9, vec![ev("PUT", "b", "1", 2)]),
            (7, vec![ev("PUT", "a", "2", 3)]),
            (0, vec![ev("PUT", "d", "4", 5)]),
        ]
    );
}

#[tokio::test]
async fn server_assigned_ids_count_from_zero() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let (mut ws, id) = open(&mut c, "a", WatchOptions::new().with_watch_id(1), 1).await;
    assert_eq!(id, 1);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ws.watch("a", None).await.unwrap();
        let r = next(&mut ws).await;
        assert!(r.created());
        ids.push(r.watch_id());
    }
    assert_eq!(ids, vec![0, 2, 3]);
}

#[tokio::test]
async fn cancel_stops_one_watcher() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let (mut ws, a) = open(&mut c, "k", WatchOptions::new(), 1).await;
    ws.watch("k", None).await.unwrap();
    let b = next(&mut ws).await.watch_id();
    put(&mut c, "k", "1").await; // 2
    let first = [next(&mut ws).await, next(&mut ws).await];
    let ids: HashSet<i64> = first.iter().map(WatchResponse::watch_id).collect();
    assert_eq!(ids, HashSet::from([a, b]));
    ws.cancel(a).await.unwrap();
    let r = next(&mut ws).await;
    assert!(r.canceled() && !r.created(), "{r:?}");
    assert_eq!(r.watch_id(), a);
    check_header(r.header(), 2);
    // Canceling an unknown id is ignored.
    ws.cancel(42).await.unwrap();
    put(&mut c, "k", "2").await; // 3
    let r = next(&mut ws).await;
    assert_eq!(r.watch_id(), b);
    assert_eq!(evs(&r), vec![ev("PUT", "k", "2", 3)]);
    silence(&mut ws, Duration::from_millis(300)).await;
}

// ---------------------------------------------------------------------------------------------
// progress
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn progress_request() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let (mut ws, id) = open(&mut c, "k", WatchOptions::new(), 1).await;
    put(&mut c, "k", "1").await; // 2
    put(&mut c, "other", "1").await; // 3
    let (got, _) = collect(&mut ws, id, 1).await;
    assert_eq!(got, vec![ev("PUT", "k", "1", 2)]);
    ws.request_progress().await.unwrap();
    let r = next(&mut ws).await;
    assert_eq!(r.watch_id(), -1);
    assert!(!r.created() && !r.canceled() && r.events().is_empty());
    check_header(r.header(), 3);
}

#[tokio::test]
async fn progress_notify_interval() {
    let s = TestServer::start(
        ServerOpts::new().arg("--experimental-watch-progress-notify-interval", "300ms"),
    )
    .await;
    let mut c = s.client().await;
    put(&mut c, "other", "1").await; // 2
    let (mut ws, id) = open(&mut c, "k", WatchOptions::new().with_progress_notify(), 2).await;
    let (mut quiet, _) = open(&mut c, "k", WatchOptions::new(), 2).await;
    let r = next(&mut ws).await;
    assert_eq!(r.watch_id(), id);
    assert!(
        r.events().is_empty() && !r.created() && !r.canceled(),
        "{r:?}"
    );
    check_header(r.header(), 2);
    put(&mut c, "other", "2").await; // 3
    // The next notification carries the new revision.
    let r = next(&mut ws).await;
    assert!(r.events().is_empty());
    check_header(r.header(), 3);
    // A watcher that did not ask gets nothing (the event-free stream stays silent).
    silence(&mut quiet, Duration::from_millis(700)).await;
}

// ---------------------------------------------------------------------------------------------
// grouping, volume, slow clients
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn txn_events_arrive_in_one_response() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let (mut ws, id) = open(&mut c, "t/", WatchOptions::new().with_prefix(), 1).await;
    c.txn(Txn::new().and_then([
        TxnOp::put("t/a", "1", None),
        TxnOp::put("t/b", "2", None),
        TxnOp::put("t/c", "3", None),
    ]))
    .await
    .unwrap(); // 2
    c.txn(Txn::new().and_then([TxnOp::delete("t/a", None), TxnOp::put("t/b", "4", None)]))
        .await
        .unwrap(); // 3
    let r = next(&mut ws).await;
    assert_eq!(r.watch_id(), id);
    check_header(r.header(), 2);
    assert_eq!(
        evs(&r),
        vec![
            ev("PUT", "t/a", "1", 2),
            ev("PUT", "t/b", "2", 2),
            ev("PUT", "t/c", "3", 2)
        ]
    );
    let r = next(&mut ws).await;
    check_header(r.header(), 3);
    assert_eq!(
        evs(&r),
        vec![ev("DELETE", "t/a", "", 3), ev("PUT", "t/b", "4", 3)]
    );
}

#[tokio::test]
async fn fragments_large_responses() {
    // etcd fragments responses over --max-request-bytes plus its 512 KiB gRPC allowance. Puts of
    // 60 KB fit the limit; deleting twelve of them with prev_kv makes one revision of about
    // 720 KB, over it.
    let s = TestServer::start(ServerOpts::new().arg("--max-request-bytes", "100000")).await;
    let mut c = s.client().await;
    let big = "v".repeat(60_000);
    for i in 0..12 {
        put(&mut c, &format!("g/{i:02}"), &big).await; // 2..=13
    }
    let opts = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_fragment();
    let (mut ws, id) = open(&mut c, "g/", opts, 13).await;
    let (mut whole, _) = open(
        &mut c,
        "g/",
        WatchOptions::new().with_prefix().with_prev_key(),
        13,
    )
    .await;
    c.delete("g/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap(); // 14
    let mut parts = Vec::new();
    loop {
        let r = next(&mut ws).await;
        assert_eq!(r.watch_id(), id);
        check_header(r.header(), 14);
        let more = format!("{r:?}").contains("fragment: true");
        parts.push(evs(&r).len());
        if !more {
            break;
        }
    }
    assert_eq!(parts, vec![10, 2], "fragments under 624288 bytes each");
    // Without `fragment` the revision comes whole.
    let r = next(&mut whole).await;
    assert_eq!(r.events().len(), 12);
    assert!(!format!("{r:?}").contains("fragment: true"));
}

#[tokio::test]
async fn many_quick_puts_arrive_once_in_order() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let (mut ws, id) = open(&mut c, "q/", WatchOptions::new().with_prefix(), 1).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut c = s.client().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                c.put(format!("q/{t}/{i}"), "v", None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (got, _) = collect(&mut ws, id, 2000).await;
    let revs: Vec<i64> = got.iter().map(|e| e.3).collect();
    assert_eq!(revs, (2..2002).collect::<Vec<_>>());
    let keys: HashSet<&str> = got.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(keys.len(), 2000);
    silence(&mut ws, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn stalled_client_does_not_block_puts() {
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let opts = WatchOptions::new().with_prefix().with_prev_key();
    let (mut ws, id) = open(&mut c, "s/", opts, 1).await;
    // The watch client reads nothing while 3000 puts of 2 KiB (with prev_kv: about 12 MiB of
    // events) go through.
    let value = "x".repeat(2048);
    let n = 3000;
    let started = std::time::Instant::now();
    let puts = async {
        for i in 0..n {
            c.put(format!("s/{}", i % 500), value.as_str(), None)
                .await
                .unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(180), puts)
        .await
        .expect("puts blocked by a stalled watcher");
    eprintln!(
        "{n} puts with a stalled watcher took {:?}",
        started.elapsed()
    );
    let (got, _) = collect(&mut ws, id, n).await;
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.3, i as i64 + 2, "event {i} out of order");
        assert_eq!(e.1, format!("s/{}", i % 500));
    }
    put(&mut c, "s/last", "v").await;
    let (got, _) = collect(&mut ws, id, 1).await;
    assert_eq!(got[0].3, n as i64 + 2);
}

#[tokio::test]
async fn watchers_per_stream_limit() {
    if is_etcd() {
        return; // xline's own flag: etcd has no such limit.
    }
    let s = TestServer::start(ServerOpts::new().xline_arg("--max-watchers-per-stream", "3")).await;
    let mut c = s.client().await;
    let (mut ws, _) = open(&mut c, "a", WatchOptions::new(), 1).await;
    for _ in 0..2 {
        ws.watch("a", None).await.unwrap();
        assert!(!next(&mut ws).await.canceled());
    }
    ws.watch("a", None).await.unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), -1);
    assert!(r.cancel_reason().contains("too many watchers"), "{r:?}");
    // Canceling one makes room again.
    ws.cancel(1).await.unwrap();
    assert!(next(&mut ws).await.canceled());
    ws.watch("a", None).await.unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && !r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), 3);
}
