//! The request-per-iteration workloads (put, delete, range, txn-put, txn-mixed,
//! lease-keepalive): what one request of each is, and the per-client state it needs (a gRPC
//! client, a lease stream, or with `--native` a shared CURP client).

use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;
use xline_proto::etcdserverpb::kv_client::KvClient;
use xline_proto::etcdserverpb::lease_client::LeaseClient;
use xline_proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};

use crate::conn::Conn;
use crate::error::BenchError;
use crate::keys::{self, KeySpec};
use crate::native::{self, NativeClient};
use crate::watch_latency::SendTimes;

/// TTL of the lease each lease-keepalive client keeps alive, in seconds (long enough never to
/// expire during a run; revoked at the end).
const LEASE_TTL_SECS: i64 = 60;

/// Which keys a range request reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeKeys {
    /// Always `[key, range_end)` (etcd's `range KEY [END]`); an empty end reads one key.
    Fixed {
        /// The key.
        key: Vec<u8>,
        /// The range end (empty: just `key`).
        range_end: Vec<u8>,
    },
    /// One key of the key space per request.
    Space(KeySpec),
}

/// A workload whose every request is one RPC.
#[derive(Debug, Clone)]
pub enum Workload {
    /// `Put` of a key from the space.
    Put {
        /// Keys.
        keys: KeySpec,
        /// The value written.
        value: Vec<u8>,
    },
    /// `DeleteRange` of one key from the space.
    Delete {
        /// Keys.
        keys: KeySpec,
    },
    /// `Range`.
    Range {
        /// Keys.
        keys: RangeKeys,
        /// `--consistency s`.
        serializable: bool,
        /// At most this many keys (0: no limit).
        limit: i64,
    },
    /// `Txn` whose success branch puts `ops` keys from the space.
    TxnPut {
        /// Keys.
        keys: KeySpec,
        /// The value written.
        value: Vec<u8>,
        /// Puts per transaction.
        ops: usize,
    },
    /// `Txn` that either reads or writes one key from the space.
    TxnMixed {
        /// Keys.
        keys: KeySpec,
        /// The value written.
        value: Vec<u8>,
        /// Probability of a read (from `--rw-ratio`: ratio / (ratio + 1)).
        read_probability: f64,
        /// Reads are serializable.
        serializable: bool,
    },
    /// One `LeaseKeepAlive` round trip on the client's own stream and lease.
    LeaseKeepalive,
    /// `Put` of one key whose value is the request number, with the send time noted (the
    /// puts of watch-latency).
    StampedPut {
        /// The key.
        key: Vec<u8>,
        /// Size of the value.
        val_size: usize,
        /// Where send times go.
        sent: Arc<SendTimes>,
    },
}

impl Workload {
    /// The name reports use.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Put { .. } => "put",
            Self::Delete { .. } => "delete",
            Self::Range { .. } => "range",
            Self::TxnPut { .. } => "txn-put",
            Self::TxnMixed { .. } => "txn-mixed",
            Self::LeaseKeepalive => "lease-keepalive",
            Self::StampedPut { .. } => "watch-latency-put",
        }
    }

    /// The request `seq` of a `Range` workload.
    fn range_request(&self, seq: u64, rng: &mut StdRng) -> Option<RangeRequest> {
        let Self::Range {
            keys,
            serializable,
            limit,
        } = self
        else {
            return None;
        };
        let (key, range_end) = match keys {
            RangeKeys::Fixed { key, range_end } => (key.clone(), range_end.clone()),
            RangeKeys::Space(spec) => (spec.key_for(seq, rng), Vec::new()),
        };
        Some(RangeRequest {
            key,
            range_end,
            limit: *limit,
            serializable: *serializable,
            ..RangeRequest::default()
        })
    }

    /// The transaction `seq` of a `TxnPut` or `TxnMixed` workload.
    pub(crate) fn txn_request(&self, seq: u64, rng: &mut StdRng) -> Option<TxnRequest> {
        let put = |key: Vec<u8>, value: &Vec<u8>| RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key,
                value: value.clone(),
                ..PutRequest::default()
            })),
        };
        let success = match self {
            Self::TxnPut { keys, value, ops } => distinct_indices(keys, seq, *ops, rng)
                .into_iter()
                .map(|i| put(keys.key(i), value))
                .collect(),
            Self::TxnMixed {
                keys,
                value,
                read_probability,
                serializable,
            } => {
                let key = keys.key_for(seq, rng);
                if rng.random_bool(*read_probability) {
                    vec![RequestOp {
                        request: Some(request_op::Request::RequestRange(RangeRequest {
                            key,
                            serializable: *serializable,
                            ..RangeRequest::default()
                        })),
                    }]
                } else {
                    vec![put(key, value)]
                }
            }
            _ => return None,
        };
        Some(TxnRequest {
            success,
            ..TxnRequest::default()
        })
    }
}

/// `n` different key indices for request `seq` (a transaction may not put a key twice: etcd
/// refuses it with "duplicate key given in txn request"). Sequential keys continue where the
/// previous request's stopped; random ones are drawn again on a repeat. `n` must not exceed
/// the key space (checked when the flags are).
fn distinct_indices(keys: &KeySpec, seq: u64, n: usize, rng: &mut StdRng) -> Vec<u64> {
    let mut picked: Vec<u64> = Vec::with_capacity(n);
    let n_u64 = n as u64;
    debug_assert!(n_u64 <= keys.key_space_size);
    for j in 0..n_u64.min(keys.key_space_size) {
        let index = if keys.sequential {
            seq.wrapping_mul(n_u64).wrapping_add(j) % keys.key_space_size
        } else {
            loop {
                let i = keys.index(seq, rng);
                if !picked.contains(&i) {
                    break i;
                }
            }
        };
        picked.push(index);
    }
    picked
}

/// What one client of a run holds between requests.
#[derive(Debug)]
pub enum ClientState {
    /// A KV client on the client's connection.
    Kv(KvClient<Channel>),
    /// A keep-alive stream and the lease it renews.
    Lease(Box<LeaseState>),
    /// The native client of the client's connection (shared with other clients).
    Native(Arc<NativeClient>),
}

/// A lease-keepalive client's lease and stream.
#[derive(Debug)]
pub struct LeaseState {
    /// For revoking at the end.
    client: LeaseClient<Channel>,
    /// Requests into the stream.
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    /// Responses.
    responses: Streaming<LeaseKeepAliveResponse>,
    /// The lease.
    id: i64,
}

impl ClientState {
    /// Prepares a client of `workload` on `conn` (grants its lease for lease-keepalive).
    pub async fn new(workload: &Workload, conn: &Conn) -> Result<Self, BenchError> {
        let channel = match conn {
            Conn::Native(client) => {
                native::check_workload(workload.name())?;
                return Ok(Self::Native(Arc::clone(client)));
            }
            Conn::Grpc(channel) => channel.clone(),
        };
        if !matches!(workload, Workload::LeaseKeepalive) {
            return Ok(Self::Kv(KvClient::new(channel)));
        }
        let mut client = LeaseClient::new(channel);
        let grant = client
            .lease_grant(LeaseGrantRequest {
                ttl: LEASE_TTL_SECS,
                id: 0,
            })
            .await
            .map_err(|s| BenchError::setup("LeaseGrant", &s))?
            .into_inner();
        let (requests, rx) = mpsc::channel(1);
        // A warm-up keep-alive is queued before the call and answered here: a grpc-go server
        // (etcd) sends the response headers only with its first message, so awaiting the call
        // before sending anything would wait forever.
        requests
            .try_send(LeaseKeepAliveRequest { id: grant.id })
            .map_err(|_| BenchError::Task("keep-alive queue full during setup".to_owned()))?;
        let mut responses = client
            .lease_keep_alive(ReceiverStream::new(rx))
            .await
            .map_err(|s| BenchError::setup("LeaseKeepAlive", &s))?
            .into_inner();
        match responses.next().await {
            Some(Ok(_)) => {}
            Some(Err(s)) => return Err(BenchError::setup("LeaseKeepAlive", &s)),
            None => {
                return Err(BenchError::Task(
                    "keep-alive stream closed during setup".to_owned(),
                ));
            }
        }
        Ok(Self::Lease(Box::new(LeaseState {
            client,
            requests,
            responses,
            id: grant.id,
        })))
    }

    /// Sends request `seq` of `workload` and waits for its response; the error is the message
    /// the report counts.
    pub async fn step(
        &mut self,
        workload: &Workload,
        seq: u64,
        rng: &mut StdRng,
    ) -> Result<(), String> {
        match self {
            Self::Kv(kv) => match workload {
                Workload::Put { keys, value } => {
                    let req = PutRequest {
                        key: keys.key_for(seq, rng),
                        value: value.clone(),
                        ..PutRequest::default()
                    };
                    kv.put(req).await.map(drop).map_err(status_message)
                }
                Workload::Delete { keys } => {
                    let req = DeleteRangeRequest {
                        key: keys.key_for(seq, rng),
                        ..DeleteRangeRequest::default()
                    };
                    kv.delete_range(req).await.map(drop).map_err(status_message)
                }
                Workload::StampedPut {
                    key,
                    val_size,
                    sent,
                } => {
                    let req = PutRequest {
                        key: key.clone(),
                        value: keys::seq_value(seq, *val_size),
                        ..PutRequest::default()
                    };
                    sent.mark(seq);
                    kv.put(req).await.map(drop).map_err(status_message)
                }
                Workload::Range { .. } => {
                    let req = workload.range_request(seq, rng).unwrap_or_default();
                    kv.range(req).await.map(drop).map_err(status_message)
                }
                Workload::TxnPut { .. } | Workload::TxnMixed { .. } => {
                    let req = workload.txn_request(seq, rng).unwrap_or_default();
                    kv.txn(req).await.map(drop).map_err(status_message)
                }
                Workload::LeaseKeepalive => Err("lease-keepalive needs a lease client".to_owned()),
            },
            Self::Native(client) => native::step(client, workload, seq, rng).await,
            Self::Lease(lease) => {
                let LeaseState {
                    requests,
                    responses,
                    id,
                    ..
                } = lease.as_mut();
                requests
                    .send(LeaseKeepAliveRequest { id: *id })
                    .await
                    .map_err(|_| "keep-alive stream closed".to_owned())?;
                match responses.next().await {
                    Some(Ok(resp)) if resp.ttl > 0 => Ok(()),
                    Some(Ok(_)) => Err("lease expired or not found".to_owned()),
                    Some(Err(s)) => Err(status_message(s)),
                    None => Err("keep-alive stream closed".to_owned()),
                }
            }
        }
    }

    /// Releases what the client holds (revokes its lease), best effort.
    pub async fn close(self) {
        if let Self::Lease(lease) = self {
            let LeaseState {
                mut client,
                requests,
                id,
                ..
            } = *lease;
            drop(requests);
            let _ = client.lease_revoke(LeaseRevokeRequest { id }).await;
        }
    }
}

/// The report's message for a failed request: etcd's own string when the server sent one.
pub fn status_message(status: tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_owned()
    }
}

/// The value for a `--val-size`.
pub fn value(val_size: usize) -> Vec<u8> {
    keys::value(val_size)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn space(n: u64) -> KeySpec {
        KeySpec {
            key_size: 4,
            key_space_size: n,
            sequential: true,
        }
    }

    #[test]
    fn txn_put_has_the_requested_number_of_puts() {
        let w = Workload::TxnPut {
            keys: space(100),
            value: value(3),
            ops: 4,
        };
        let mut rng = StdRng::seed_from_u64(0);
        let txn = w.txn_request(7, &mut rng).unwrap();
        assert!(txn.compare.is_empty() && txn.failure.is_empty());
        assert_eq!(txn.success.len(), 4);
        let keys: Vec<&[u8]> = txn
            .success
            .iter()
            .map(|op| {
                let Some(request_op::Request::RequestPut(p)) = &op.request else {
                    panic!("not a put: {op:?}");
                };
                assert_eq!(p.value, b"vvv");
                p.key.as_slice()
            })
            .collect();
        // Sequential: request 7 of 4 puts each takes keys 28..32.
        assert_eq!(keys, [&b"0028"[..], b"0029", b"0030", b"0031"]);
    }

    #[test]
    fn txn_put_never_repeats_a_key_in_one_transaction() {
        let w = Workload::TxnPut {
            keys: KeySpec {
                key_size: 1,
                key_space_size: 5,
                sequential: false,
            },
            value: value(1),
            ops: 5,
        };
        let mut rng = StdRng::seed_from_u64(9);
        for seq in 0..100 {
            let txn = w.txn_request(seq, &mut rng).unwrap();
            let mut keys: Vec<_> = txn
                .success
                .iter()
                .map(|op| match &op.request {
                    Some(request_op::Request::RequestPut(p)) => p.key.clone(),
                    other => panic!("not a put: {other:?}"),
                })
                .collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), 5);
        }
    }

    #[test]
    fn txn_mixed_follows_the_read_probability() {
        let mix = |read_probability| Workload::TxnMixed {
            keys: space(10),
            value: value(1),
            read_probability,
            serializable: true,
        };
        let reads = |w: &Workload| {
            let mut rng = StdRng::seed_from_u64(5);
            (0..1000)
                .filter(|&seq| {
                    let txn = w.txn_request(seq, &mut rng).unwrap();
                    matches!(
                        &txn.success[0].request,
                        Some(request_op::Request::RequestRange(r)) if r.serializable
                    )
                })
                .count()
        };
        assert_eq!(reads(&mix(0.0)), 0);
        assert_eq!(reads(&mix(1.0)), 1000);
        // --rw-ratio 1: about half.
        assert!((400..600).contains(&reads(&mix(0.5))));
    }

    #[test]
    fn range_requests_read_a_fixed_range_or_a_key_of_the_space() {
        let mut rng = StdRng::seed_from_u64(0);
        let fixed = Workload::Range {
            keys: RangeKeys::Fixed {
                key: b"a".to_vec(),
                range_end: b"z".to_vec(),
            },
            serializable: false,
            limit: 10,
        };
        let r = fixed.range_request(3, &mut rng).unwrap();
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice()),
            (&b"a"[..], &b"z"[..])
        );
        assert_eq!(r.limit, 10);
        assert!(!r.serializable);
        let from_space = Workload::Range {
            keys: RangeKeys::Space(space(10)),
            serializable: true,
            limit: 0,
        };
        let r = from_space.range_request(13, &mut rng).unwrap();
        assert_eq!(r.key, b"0003");
        assert!(r.range_end.is_empty() && r.serializable);
    }
}
