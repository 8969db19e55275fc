//! Stream-level tests on an in-process member: falling behind the broadcast, catching up, and
//! compaction while behind.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use xline_proto::etcdserverpb::{
    CompactionRequest, PutRequest, WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};

use super::WatchHub;
use crate::command::{Command, Request};
use crate::config::ServerConfig;
use crate::server::{self, ServerContext};

fn member(dir: &std::path::Path) -> Arc<ServerContext> {
    let config = ServerConfig::try_parse_from([
        "xline",
        "--data-dir",
        dir.to_str().unwrap(),
        "--backend",
        "memory",
    ])
    .unwrap();
    server::open(config).unwrap()
}

async fn put(ctx: &ServerContext, key: &str) {
    let req = PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    ctx.node
        .propose(Command::new(Request::Put(req)))
        .await
        .unwrap()
        .unwrap();
}

fn create(key: &str, start_revision: i64) -> Result<WatchRequest, tonic::Status> {
    Ok(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: key.as_bytes().to_vec(),
                range_end: b"\0".to_vec(),
                start_revision,
                ..Default::default()
            },
        )),
    })
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<super::WatchItem>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a response within 10s")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_stream_catches_up_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = member(dir.path());
    let hub = WatchHub::new(Arc::clone(&ctx));
    let (req_tx, req_rx) = tokio::sync::mpsc::channel(4);
    let mut rx = hub.open_stream(tokio_stream::wrappers::ReceiverStream::new(req_rx));
    req_tx.send(create("a", 0)).await.unwrap();
    let created = next(&mut rx).await;
    assert!(created.created);
    // Nobody reads `rx` while 3000 writes (3000 broadcast batches) go through.
    let n = 3000;
    for i in 0..n {
        put(&ctx, &format!("a{i}")).await;
    }
    let mut revs = Vec::new();
    while revs.len() < n {
        let r = next(&mut rx).await;
        revs.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
    }
    let want: Vec<i64> = (2..2 + n as i64).collect();
    assert_eq!(revs, want);
    hub.shutdown();
    ctx.node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_while_behind_cancels_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = member(dir.path());
    let hub = WatchHub::new(Arc::clone(&ctx));
    let (req_tx, req_rx) = tokio::sync::mpsc::channel(4);
    let mut rx = hub.open_stream(tokio_stream::wrappers::ReceiverStream::new(req_rx));
    req_tx.send(create("a", 0)).await.unwrap();
    assert!(next(&mut rx).await.created);
    for i in 0..3000 {
        put(&ctx, &format!("a{i}")).await;
    }
    let compaction = CompactionRequest {
        revision: 2500,
        physical: false,
    };
    ctx.node
        .propose(Command::new(Request::Compaction(compaction)))
        .await
        .unwrap()
        .unwrap();
    // Whatever was buffered before the stream fell behind arrives in order, then the watcher is
    // canceled with the compaction revision, as etcd does for an unsynced watcher.
    let mut last = 1;
    loop {
        let r = next(&mut rx).await;
        if r.canceled {
            assert_eq!(r.compact_revision, 2500);
            assert_eq!(r.watch_id, 0);
            break;
        }
        for e in &r.events {
            let rev = e.kv.as_ref().unwrap().mod_revision;
            assert_eq!(rev, last + 1);
            last = rev;
        }
    }
    assert!(last < 2500, "the watcher was behind the compaction");
    hub.shutdown();
    ctx.node.shutdown();
}

/// A batch applied before anyone asked for `prev_kv` lacks the previous values; a watcher that
/// wants them and is live when such a batch arrives reads it from the store instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prev_kv_watcher_reads_a_batch_without_previous_values_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = member(dir.path());
    let mut batches = ctx.store.subscribe();
    put(&ctx, "a").await;
    put(&ctx, "a").await;
    let first = batches.recv().await.unwrap();
    let second = batches.recv().await.unwrap();
    assert!(first.prev_kv_complete, "a new key has no previous value");
    assert!(!second.prev_kv_complete, "nobody wanted prev_kv");
    assert!(second.events[0].prev_kv.is_none());
    // A watcher created (live) just before the second write, as in a race with its apply.
    let mut stream = super::WatchStream::new(Arc::clone(&ctx));
    let req = WatchCreateRequest {
        key: b"a".to_vec(),
        prev_kv: true,
        ..Default::default()
    };
    let id = stream.create(&req, first.revision).unwrap();
    stream.on_batch(&first);
    stream.on_batch(&second);
    assert!(stream.out.is_empty(), "nothing sent without prev_kv");
    assert!(stream.has_unsynced());
    stream.catch_up().await.unwrap();
    let resp = stream
        .out
        .pop_front()
        .expect("the batch, read from the store");
    assert_eq!(resp.watch_id, id);
    let ev = &resp.events[0];
    assert_eq!(ev.kv.as_ref().unwrap().mod_revision, second.revision);
    assert_eq!(
        ev.prev_kv.as_ref().map(|p| p.mod_revision),
        Some(first.revision)
    );
    assert!(stream.out.is_empty());
    // Live from here, and the store now fills prev_kv for the stream's sake.
    put(&ctx, "a").await;
    let third = batches.recv().await.unwrap();
    assert!(third.prev_kv_complete);
    stream.on_batch(&third);
    let ev = &stream.out.pop_front().unwrap().events[0];
    assert_eq!(
        ev.prev_kv.as_ref().map(|p| p.mod_revision),
        Some(second.revision)
    );
}
