//! Loopback tests of the gRPC transport: real tonic servers on 127.0.0.1 ports, each in its
//! own tokio runtime so that "the peer goes down" can drop every one of its sockets at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Endpoint, Server};

use super::curppb::peer_client::PeerClient;
use super::*;
use crate::cmd::{ConflictKeys, KeyRange};
use crate::core::{CommandData, Entry, EntryKind, Message, ProposeId};

/// Generous bound for anything that should happen "soon" on loopback.
const PATIENCE: Duration = Duration::from_secs(20);

/// Options with quick reconnection, for tests.
fn fast_options() -> GrpcOptions {
    GrpcOptions {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(2),
        seed: 42,
        ..GrpcOptions::default()
    }
}

/// A numbered probe message.
fn probe(from: NodeId, to: NodeId, seq: u64) -> Envelope {
    Envelope {
        from,
        to,
        msg: Message::ReadIndex { term: 1, id: seq },
    }
}

/// The sequence number of a probe.
fn seq_of(envelope: &Envelope) -> u64 {
    match envelope.msg {
        Message::ReadIndex { id, .. } => id,
        Message::Append { commit, .. } => commit,
        ref other => panic!("unexpected message {other:?}"),
    }
}

/// A port on 127.0.0.1 that nothing listens on (right now).
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A peer server in its own runtime; dropping it kills the server and all its connections.
struct PeerProcess {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl PeerProcess {
    /// Serves `curppb.Peer` on `addr` (port 0: any), delivering into `tx`.
    fn start(
        addr: SocketAddr,
        tx: mpsc::UnboundedSender<Envelope>,
        max_message_bytes: usize,
    ) -> Self {
        let listener = std::net::TcpListener::bind(addr).expect("bind peer listener");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let sink: Sink = Arc::new(move |envelope| {
            let _ = tx.send(envelope);
        });
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let result = Server::builder()
                .add_service(peer_server(sink, max_message_bytes))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
            if let Err(err) = result {
                panic!("server failed: {err}");
            }
        });
        Self {
            addr,
            runtime: Some(runtime),
        }
    }

    /// Kills the server and every connection it holds.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A member: a transport plus a server delivering into `rx`.
struct Member {
    id: NodeId,
    transport: GrpcTransport,
    server: PeerProcess,
    rx: mpsc::UnboundedReceiver<Envelope>,
}

fn start_members(ids: &[NodeId], options: &GrpcOptions) -> Vec<Member> {
    let mut members: Vec<Member> = ids
        .iter()
        .map(|&id| {
            let (tx, rx) = mpsc::unbounded_channel();
            Member {
                id,
                transport: GrpcTransport::new(id, options.clone()),
                server: PeerProcess::start(
                    "127.0.0.1:0".parse().expect("addr"),
                    tx,
                    options.max_message_bytes,
                ),
                rx,
            }
        })
        .collect();
    let peers: BTreeMap<NodeId, Vec<String>> = members
        .iter()
        .map(|m| (m.id, vec![url(m.server.addr)]))
        .collect();
    for member in &mut members {
        member.transport.set_peers(&peers);
    }
    members
}

/// Receives `n` envelopes, or fails after [`PATIENCE`].
async fn recv_n(rx: &mut mpsc::UnboundedReceiver<Envelope>, n: usize) -> Vec<Envelope> {
    let mut out = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(envelope)) => out.push(envelope),
            Ok(None) => panic!("sink closed"),
            Err(_) => panic!("timed out: received {} of {n}", out.len()),
        }
    }
    out
}

/// Receives until an envelope with sequence number `last` arrives from `from`.
async fn recv_through(
    rx: &mut mpsc::UnboundedReceiver<Envelope>,
    from: NodeId,
    last: u64,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(envelope)) => {
                assert_eq!(envelope.from, from);
                let seq = seq_of(&envelope);
                seqs.push(seq);
                if seq == last {
                    return seqs;
                }
            }
            Ok(None) => panic!("sink closed"),
            Err(_) => panic!("timed out waiting for {last}; got {seqs:?}"),
        }
    }
}

/// Waits until `cond` holds, or fails after [`PATIENCE`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn strictly_increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_deliver_in_order() {
    let mut members = start_members(&[1, 2], &fast_options());
    let total = 2000u64;
    for chunk in (0..total).collect::<Vec<_>>().chunks(7) {
        members[0]
            .transport
            .send(chunk.iter().map(|&s| probe(1, 2, s)).collect());
        members[1]
            .transport
            .send(chunk.iter().map(|&s| probe(2, 1, s)).collect());
        tokio::task::yield_now().await;
    }
    let at_2 = recv_n(&mut members[1].rx, total as usize).await;
    let at_1 = recv_n(&mut members[0].rx, total as usize).await;
    assert!(at_2.iter().all(|e| e.from == 1 && e.to == 2));
    assert!(at_1.iter().all(|e| e.from == 2 && e.to == 1));
    assert_eq!(
        at_2.iter().map(seq_of).collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    assert_eq!(
        at_1.iter().map(seq_of).collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    let stats = members[0].transport.peer_stats(2).expect("peer 2");
    assert_eq!(stats.sent, total);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.connections, 1);
    assert!(
        members[0].transport.peer_stats(1).is_none(),
        "self is not a peer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_deliver_in_order_per_link() {
    let ids = [1, 2, 3];
    let mut members = start_members(&ids, &fast_options());
    let per_link = 500u64;
    for seq in 0..per_link {
        for member in &members {
            let out = ids
                .iter()
                .filter(|&&to| to != member.id)
                .map(|&to| probe(member.id, to, seq))
                .collect();
            member.transport.send(out);
        }
        if seq % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for member in &mut members {
        let got = recv_n(&mut member.rx, 2 * per_link as usize).await;
        for from in ids.iter().filter(|&&id| id != member.id) {
            let seqs: Vec<u64> = got.iter().filter(|e| e.from == *from).map(seq_of).collect();
            assert_eq!(
                seqs,
                (0..per_link).collect::<Vec<_>>(),
                "link {from} -> {}",
                member.id
            );
        }
        assert!(got.iter().all(|e| e.to == member.id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_peer_receives_messages_sent_after_it_is_up() {
    let addr = free_addr();
    let transport = GrpcTransport::new(1, fast_options());
    transport.set_peers(&BTreeMap::from([(2, vec![url(addr)])]));
    // Nobody listens yet: these queue (or are dropped), and sending never blocks.
    transport.send((0..100).map(|s| probe(1, 2, s)).collect());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(transport.peer_stats(2).map(|s| s.connections), Some(0));

    let (tx, mut rx) = mpsc::unbounded_channel();
    let _server = PeerProcess::start(addr, tx, DEFAULT_MAX_MESSAGE_BYTES);
    wait_until("connected", || {
        transport.peer_stats(2).is_some_and(|s| s.connected)
    })
    .await;
    transport.send((100..200).map(|s| probe(1, 2, s)).collect());
    let seqs = recv_through(&mut rx, 1, 199).await;
    assert!(strictly_increasing(&seqs), "{seqs:?}");
    assert!(seqs.ends_with(&(100..200).collect::<Vec<_>>()), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_restarts_is_reconnected() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut server = PeerProcess::start(
        "127.0.0.1:0".parse().expect("addr"),
        tx,
        DEFAULT_MAX_MESSAGE_BYTES,
    );
    let addr = server.addr;
    let transport = GrpcTransport::new(1, fast_options());
    transport.set_peers(&BTreeMap::from([(2, vec![url(addr)])]));
    transport.send((0..50).map(|s| probe(1, 2, s)).collect());
    let seqs = recv_through(&mut rx, 1, 49).await;
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());

    server.kill();
    wait_until("disconnected", || {
        transport.peer_stats(2).is_some_and(|s| !s.connected)
    })
    .await;
    // Sent while the peer is down: may be lost, must not block.
    transport.send((50..100).map(|s| probe(1, 2, s)).collect());
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let _server = PeerProcess::start(addr, tx, DEFAULT_MAX_MESSAGE_BYTES);
    wait_until("reconnected", || {
        transport
            .peer_stats(2)
            .is_some_and(|s| s.connected && s.connections >= 2)
    })
    .await;
    transport.send((100..150).map(|s| probe(1, 2, s)).collect());
    let seqs = recv_through(&mut rx, 1, 149).await;
    assert!(strictly_increasing(&seqs), "{seqs:?}");
    assert!(seqs.ends_with(&(100..150).collect::<Vec<_>>()), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_peers_moves_and_removes_links() {
    let (tx_old, mut rx_old) = mpsc::unbounded_channel();
    let old = PeerProcess::start(
        "127.0.0.1:0".parse().expect("addr"),
        tx_old,
        DEFAULT_MAX_MESSAGE_BYTES,
    );
    let (tx_new, mut rx_new) = mpsc::unbounded_channel();
    let new = PeerProcess::start(
        "127.0.0.1:0".parse().expect("addr"),
        tx_new,
        DEFAULT_MAX_MESSAGE_BYTES,
    );

    let transport = GrpcTransport::new(1, fast_options());
    transport.set_peers(&BTreeMap::from([
        (1, vec!["http://ignored:1".to_owned()]),
        (2, vec![url(old.addr)]),
    ]));
    assert!(transport.peer_stats(1).is_none());
    transport.send(vec![probe(1, 2, 0)]);
    assert_eq!(recv_through(&mut rx_old, 1, 0).await, vec![0]);

    // Same URLs: the link is kept.
    transport.set_peers(&BTreeMap::from([(2, vec![url(old.addr)])]));
    assert_eq!(transport.peer_stats(2).map(|s| s.connections), Some(1));

    // Peer 2 moved; peer 3 appears at a URL list whose first entry is dead.
    transport.set_peers(&BTreeMap::from([
        (2, vec![url(new.addr)]),
        (3, vec![url(free_addr()), url(old.addr)]),
    ]));
    transport.send(vec![probe(1, 2, 1), probe(1, 3, 2)]);
    assert_eq!(recv_through(&mut rx_new, 1, 1).await, vec![1]);
    assert_eq!(recv_through(&mut rx_old, 1, 2).await, vec![2]);

    // Removed peers get nothing and cost nothing.
    transport.set_peers(&BTreeMap::new());
    assert!(transport.peer_stats(2).is_none());
    transport.send(vec![probe(1, 2, 3)]);
    assert_eq!(transport.dropped_unknown(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx_new.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_to_absent_or_unknown_peers_is_bounded_and_never_blocks() {
    let options = GrpcOptions {
        queue_capacity: 100,
        queue_bytes: 1024 * 1024,
        ..fast_options()
    };
    let transport = GrpcTransport::new(1, options);
    transport.set_peers(&BTreeMap::from([(2, vec![url(free_addr())])]));

    let n = 100_000u64;
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        transport.send(chunk.iter().map(|&s| probe(1, 2, s)).collect());
        transport.send(chunk.iter().map(|&s| probe(1, 9, s)).collect());
        transport.send(vec![probe(1, 1, 0)]);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "send took {elapsed:?}");

    let stats = transport.peer_stats(2).expect("peer 2");
    assert!(stats.queued <= 100, "{stats:?}");
    assert_eq!(stats.dropped + stats.queued as u64, n, "{stats:?}");
    assert_eq!(transport.dropped_unknown(), n + n / 1000);

    // Large envelopes are bounded by bytes as well.
    let big = |seq| Envelope {
        from: 1,
        to: 2,
        msg: Message::Snapshot {
            term: 1,
            index: seq,
            index_term: 1,
            membership: Default::default(),
            data: Bytes::from(vec![7u8; 256 * 1024]),
        },
    };
    transport.send((0..64).map(big).collect());
    let stats = transport.peer_stats(2).expect("peer 2");
    assert!(stats.queued_bytes <= 1024 * 1024, "{stats:?}");
    assert!(stats.queued <= 4, "{stats:?}");
}

/// A codec that sends and receives raw bytes, to speak malformed gRPC to the service.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        *self
    }

    fn decoder(&mut self) -> Self {
        *self
    }
}

/// Opens a client-streaming `Send` call carrying `frames` as raw gRPC messages.
async fn send_raw(addr: SocketAddr, frames: Vec<Vec<u8>>) -> Result<Vec<u8>, tonic::Status> {
    let channel = Endpoint::from_shared(url(addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc.client_streaming(
        tonic::Request::new(tokio_stream::iter(frames)),
        PathAndQuery::from_static("/curppb.Peer/Send"),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_does_not_hurt_the_service() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let max = 64 * 1024;
    let server = PeerProcess::start("127.0.0.1:0".parse().expect("addr"), tx, max);

    // Bytes that are no protobuf at all (a truncated length-delimited field).
    let garbage = vec![0x0a, 0xff, 0xff, 0x01, 0x02];
    let err = send_raw(server.addr, vec![garbage])
        .await
        .expect_err("undecodable");
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");

    // A batch larger than the decode limit.
    let huge = curppb::EnvelopeBatch {
        envelopes: vec![curppb::Envelope::from(&Envelope {
            from: 1,
            to: 2,
            msg: Message::Snapshot {
                term: 1,
                index: 1,
                index_term: 1,
                membership: Default::default(),
                data: Bytes::from(vec![0u8; 2 * max]),
            },
        })],
    };
    let err = send_raw(server.addr, vec![huge.encode_to_vec()])
        .await
        .expect_err("too large");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");

    // Well-formed protobuf without a core meaning, between good envelopes: only it is dropped.
    let batch = curppb::EnvelopeBatch {
        envelopes: vec![
            curppb::Envelope::from(&probe(1, 2, 0)),
            curppb::Envelope {
                from: 1,
                to: 2,
                msg: None,
            },
            curppb::Envelope::from(&probe(1, 2, 1)),
        ],
    };
    let ack = send_raw(server.addr, vec![batch.encode_to_vec(), Vec::new()])
        .await
        .expect("accepted");
    let ack = curppb::SendAck::decode(ack.as_slice()).expect("ack");
    assert_eq!(
        ack,
        curppb::SendAck {
            delivered: 2,
            malformed: 1
        }
    );
    let got = recv_n(&mut rx, 2).await;
    assert_eq!(got.iter().map(seq_of).collect::<Vec<_>>(), vec![0, 1]);

    // Still serving: Ping and a real transport both work.
    let mut client = PeerClient::connect(url(server.addr))
        .await
        .expect("connect");
    let pong = client
        .ping(curppb::PingRequest { nonce: 77 })
        .await
        .expect("ping")
        .into_inner();
    assert_eq!(pong.nonce, 77);
    let transport = GrpcTransport::new(1, fast_options());
    transport.set_peers(&BTreeMap::from([(2, vec![url(server.addr)])]));
    transport.send(vec![probe(1, 2, 5)]);
    assert_eq!(recv_through(&mut rx, 1, 5).await, vec![5]);
}

/// An Append whose entries carry `payload` bytes in total (split over a few entries), tagged
/// with `seq` in its commit index.
fn append(seq: u64, payload: usize) -> Envelope {
    let parts = 4;
    let entries = (0..parts)
        .map(|i| {
            let len = payload / parts + usize::from(i < payload % parts);
            Entry {
                index: seq * 10 + i as u64 + 1,
                term: 3,
                kind: EntryKind::Command {
                    cmd: CommandData {
                        id: ProposeId {
                            client_id: 9,
                            seq: seq * 10 + i as u64,
                        },
                        keys: std::sync::Arc::new(ConflictKeys {
                            ranges: vec![KeyRange::new(b"key".to_vec(), Vec::new())],
                            leases: vec![],
                            exclusive: false,
                        }),
                        payload: Bytes::from(vec![b'x'; len]),
                        first_incomplete: 0,
                    },
                    origin: 1,
                },
            }
        })
        .collect();
    Envelope {
        from: 1,
        to: 2,
        msg: Message::Append {
            term: 3,
            prev_index: seq * 10,
            prev_term: 3,
            entries,
            commit: seq,
            read_round: 0,
        },
    }
}

/// Encoded size of a batch holding just `envelope`.
fn batch_len(envelope: &Envelope) -> usize {
    curppb::EnvelopeBatch {
        envelopes: vec![curppb::Envelope::from(envelope)],
    }
    .encoded_len()
}

/// The Append (tagged `seq`) whose one-envelope batch is exactly `target` bytes.
fn append_of_batch_len(seq: u64, target: usize) -> Envelope {
    let mut payload = target.saturating_sub(batch_len(&append(seq, 0)));
    loop {
        let envelope = append(seq, payload);
        let len = batch_len(&envelope);
        match len.cmp(&target) {
            std::cmp::Ordering::Equal => return envelope,
            std::cmp::Ordering::Greater => payload -= len - target,
            std::cmp::Ordering::Less => payload += 1,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_appends_near_the_size_limit() {
    let max = 1024 * 1024;
    let options = GrpcOptions {
        max_message_bytes: max,
        max_batch_bytes: 256 * 1024,
        ..fast_options()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = PeerProcess::start("127.0.0.1:0".parse().expect("addr"), tx, max);
    let transport = GrpcTransport::new(1, options);
    transport.set_peers(&BTreeMap::from([(2, vec![url(server.addr)])]));

    let at_limit = append_of_batch_len(0, max);
    let over_limit = append_of_batch_len(1, max + 1);
    let mut sent = vec![at_limit.clone(), over_limit];
    // Many medium Appends: several batches' worth, split at the batch size.
    sent.extend((2..42).map(|seq| append(seq, 100 * 1024)));
    sent.push(at_limit.clone());
    sent.push(probe(1, 2, 1000));
    transport.send(sent.clone());

    let got = recv_through(&mut rx, 1, 1000).await;
    let mut expected: Vec<u64> = vec![0];
    expected.extend(2..42);
    expected.push(0);
    expected.push(1000);
    assert_eq!(got, expected);

    let stats = transport.peer_stats(2).expect("peer 2");
    assert_eq!(
        stats.dropped, 1,
        "the over-limit Append is dropped by the sender"
    );
    assert_eq!(stats.connections, 1, "the receiver accepted every batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_appends_arrive_intact() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = PeerProcess::start(
        "127.0.0.1:0".parse().expect("addr"),
        tx,
        DEFAULT_MAX_MESSAGE_BYTES,
    );
    let transport = GrpcTransport::new(1, fast_options());
    transport.set_peers(&BTreeMap::from([(2, vec![url(server.addr)])]));
    let sent: Vec<Envelope> = (0..20)
        .map(|seq| append(seq, 3 * 1024 * 1024 + seq as usize))
        .collect();
    transport.send(sent.clone());
    let got = recv_n(&mut rx, sent.len()).await;
    assert_eq!(got, sent);
}
