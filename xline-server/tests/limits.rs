//! Request size limits, big ranges and malformed requests, against a spawned server process.
//!
//! Expectations are etcd's: run with `XLINE_TEST_SERVER=etcd` to check them against Debian's
//! etcd, and without it to check our `xline` binary.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use bytes::{Buf, BufMut, Bytes};
use common::{ServerOpts, TestServer, check_header, expect_code, expect_status};
use etcd_client::{Client, GetOptions, Txn, TxnOp};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const TOO_LARGE: &str = "etcdserver: request is too large";

/// etcd lets gRPC accept this much more than `--max-request-bytes`, so that its own check
/// ("request is too large") fires first for moderately large requests.
const GRPC_OVERHEAD: usize = 512 * 1024;

async fn rev(c: &mut Client) -> i64 {
    c.get("probe", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

#[tokio::test]
async fn max_request_bytes() {
    let s = TestServer::start(ServerOpts::new().arg("--max-request-bytes", "1024")).await;
    let mut c = s.client().await;
    let r = c.put("small", vec![b's'; 512], None).await.unwrap();
    check_header(r.header(), 2);

    // Bigger than --max-request-bytes but within gRPC's limit: etcd's own error.
    expect_status(
        c.put("big", vec![b'x'; 2048], None).await,
        Code::InvalidArgument,
        TOO_LARGE,
    );
    // A txn whose puts are small but add up to too much.
    expect_status(
        c.txn(Txn::new().and_then([
            TxnOp::put("t1", vec![b'x'; 400], None),
            TxnOp::put("t2", vec![b'x'; 400], None),
            TxnOp::put("t3", vec![b'x'; 400], None),
        ]))
        .await,
        Code::InvalidArgument,
        TOO_LARGE,
    );
    // Far beyond the gRPC limit (max-request-bytes + 512 KiB): the transport refuses it.
    expect_code(
        c.put("huge", vec![b'h'; 1024 + GRPC_OVERHEAD + 64 * 1024], None)
            .await,
        Code::ResourceExhausted,
    );

    // The server still serves, on the same and on new connections, and wrote nothing.
    assert_eq!(rev(&mut c).await, 2);
    let mut c2 = s.client().await;
    let r = c2.put("after", "ok", None).await.unwrap();
    check_header(r.header(), 3);
    let r = c
        .get("", Some(GetOptions::new().with_all_keys().with_keys_only()))
        .await
        .unwrap();
    check_header(r.header(), 3);
    let keys: Vec<&[u8]> = r.kvs().iter().map(etcd_client::KeyValue::key).collect();
    assert_eq!(keys, vec![b"after".as_slice(), b"small".as_slice()]);
}

#[tokio::test]
async fn default_request_size_limit() {
    // etcd's default --max-request-bytes is 1.5 MiB; gRPC takes up to 2 MiB.
    let s = TestServer::start_default().await;
    let mut c = s.client().await;
    let r = c
        .put("one-mib", vec![b'm'; 1024 * 1024], None)
        .await
        .unwrap();
    check_header(r.header(), 2);
    expect_status(
        c.put("too-big", vec![b'x'; 1800 * 1024], None).await,
        Code::InvalidArgument,
        TOO_LARGE,
    );
    expect_code(
        c.put("huge", vec![b'x'; 3 * 1024 * 1024], None).await,
        Code::ResourceExhausted,
    );
    let r = c.get("one-mib", None).await.unwrap();
    check_header(r.header(), 2);
    assert_eq!(r.kvs()[0].value().len(), 1024 * 1024);
}

#[tokio::test]
async fn range_over_many_keys() {
    // Responses are not bound by --max-request-bytes.
    let s = TestServer::start(ServerOpts::new().arg("--max-request-bytes", "1024")).await;
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 250;
    const N: usize = WRITERS * PER_WRITER;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut c = s.client().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let n = w * PER_WRITER + i;
                let value = format!("{n:0>600}");
                c.put(format!("key/{n:05}"), value, None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = s.client().await;
    let head = (N + 1) as i64;

    let r = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    check_header(r.header(), head);
    assert_eq!(r.count(), N as i64);
    assert!(!r.more());
    assert_eq!(r.kvs().len(), N);
    for (n, kv) in r.kvs().iter().enumerate() {
        assert_eq!(kv.key(), format!("key/{n:05}").as_bytes());
        assert_eq!(kv.value(), format!("{n:0>600}").as_bytes());
        assert_eq!(kv.version(), 1);
        assert_eq!(kv.create_revision(), kv.mod_revision());
    }
    // Every put took its own revision: 2..=N+1.
    let mut revs: Vec<i64> = r
        .kvs()
        .iter()
        .map(etcd_client::KeyValue::mod_revision)
        .collect();
    revs.sort_unstable();
    assert_eq!(revs, (2..=head).collect::<Vec<_>>());

    let r = c
        .get("key/", Some(GetOptions::new().with_prefix().with_limit(10)))
        .await
        .unwrap();
    assert_eq!((r.kvs().len(), r.count(), r.more()), (10, N as i64, true));
    let r = c
        .get(
            "key/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((r.kvs().len(), r.count(), r.more()), (0, N as i64, false));
    let r = c
        .get(
            "key/01000",
            Some(GetOptions::new().with_range("key/01100").with_keys_only()),
        )
        .await
        .unwrap();
    assert_eq!((r.kvs().len(), r.count(), r.more()), (100, 100, false));
    assert!(r.kvs().iter().all(|kv| kv.value().is_empty()));
}

// ---------------------------------------------------------------------------------------------
// Raw gRPC with arbitrary bytes
// ---------------------------------------------------------------------------------------------

/// A codec that sends and receives message bodies as they are.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Self::Error> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Sends `body` as the message of a unary call to `path`.
async fn raw_call(endpoint: &str, path: &'static str, body: &[u8]) -> Result<Bytes, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(endpoint.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(
        tonic::Request::new(Bytes::copy_from_slice(body)),
        path,
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn malformed_protobuf() {
    let s = TestServer::start_default().await;
    let ep = s.endpoint();

    // Sanity check of the raw path: a well-formed PutRequest {key: "k", value: "v"}.
    let ok = raw_call(&ep, "/etcdserverpb.KV/Put", &[0x0a, 1, b'k', 0x12, 1, b'v']).await;
    assert!(ok.is_ok(), "well-formed raw put: {ok:?}");

    let garbage: &[&[u8]] = &[
        // field 1 (key), length-delimited, length far past the end
        &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        // a truncated varint
        &[0x18, 0xff],
        // a field with wire type 7 (invalid)
        &[0x0f, 0x01],
        // field number 0
        &[0x00, 0x01],
        // an unterminated group
        &[0x0b],
        // random bytes
        &[0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff],
    ];
    for body in garbage {
        for path in [
            "/etcdserverpb.KV/Put",
            "/etcdserverpb.KV/Range",
            "/etcdserverpb.KV/Txn",
            "/etcdserverpb.KV/DeleteRange",
            "/etcdserverpb.KV/Compact",
        ] {
            match raw_call(&ep, path, body).await {
                // gRPC servers (grpc-go's as tonic's) answer INTERNAL for undecodable requests.
                Err(status) => assert_eq!(
                    status.code(),
                    Code::Internal,
                    "{path} with {body:02x?}: {status:?}"
                ),
                Ok(resp) => panic!("{path} with {body:02x?}: expected an error, got {resp:02x?}"),
            }
        }
    }

    // The server survives and still serves.
    let mut c = s.client().await;
    let r = c.get("k", None).await.unwrap();
    check_header(r.header(), 2);
    assert_eq!(r.kvs()[0].value(), b"v");
    let r = c.put("k2", "v2", None).await.unwrap();
    check_header(r.header(), 3);
}

#[tokio::test]
async fn quota_backend_bytes() {
    // Any real backend is larger than one byte, so every write that adds data is refused, while
    // reads and deletes still work.
    let s = TestServer::start(ServerOpts::new().arg("--quota-backend-bytes", "1")).await;
    let mut c = s.client().await;
    expect_status(
        c.put("k", "v", None).await,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
    let txn = Txn::new().and_then([TxnOp::put("k", "v", None)]);
    expect_status(
        c.txn(txn).await,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
    // A lease grant adds a lease record: refused too (etcd's quotaLeaseServer).
    expect_status(
        c.lease_grant(60, None).await,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
    let r = c.get("k", None).await.unwrap();
    assert!(r.kvs().is_empty());
    let d = c.delete("k", None).await.unwrap();
    assert_eq!(d.deleted(), 0);
}

#[tokio::test]
async fn lease_grant_over_quota_raises_nospace() {
    // The first request over the quota is a grant: it raises the alarm, which then refuses
    // puts as well; revoking and reading still work.
    let s = TestServer::start(ServerOpts::new().arg("--quota-backend-bytes", "1")).await;
    let mut c = s.client().await;
    expect_status(
        c.lease_grant(60, None).await,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
    let alarms = c
        .maintenance_client()
        .alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None,
        )
        .await
        .unwrap();
    let kinds: Vec<_> = alarms
        .alarms()
        .iter()
        .map(etcd_client::AlarmMember::alarm)
        .collect();
    assert_eq!(kinds, vec![etcd_client::AlarmType::Nospace]);
    expect_status(
        c.lease_grant(60, Some(etcd_client::LeaseGrantOptions::new().with_id(7)))
            .await,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
    assert!(c.leases().await.unwrap().leases().is_empty());
    assert_eq!(c.get("k", None).await.unwrap().count(), 0);
}
