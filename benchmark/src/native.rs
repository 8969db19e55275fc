//! `--native`: requests go through xline's CURP client instead of the etcd API.
//!
//! The CURP client ([`curp::client::CurpClient`]) talks to the client service every xline member
//! serves on its **peer** listener, so with `--native` the endpoints are the members' peer URLs;
//! they are only seeds: the client learns every member's address and the leader from them.
//! [`CurpClient::propose`] takes the fast path (CURP.md F1-F3): a proposal to the leader and a
//! record to every other voter at once, complete in one round trip when the command commutes
//! with everything in flight and the server speculates it (plain puts and deletes), otherwise
//! with the ordered result (a *fallback*, one more round trip to the leader).
//!
//! Only writes exist natively: put, delete and txn-put. The server does not serve reads,
//! watches or leases through the CURP client, so those workloads are refused with `--native`.
//!
//! Every connection (`--conns`) is one [`NativeClient`] with its own transport (its own HTTP/2
//! connection to each member); the `--clients` tasks share them round-robin and propose
//! concurrently (the client is made for that: its methods take `&self`).

use std::sync::Arc;
use std::time::Duration;

use curp::client::{ClientConfig, ClientStats, CurpClient};
use curp::transport::client_service::GrpcClientTransport;
use rand::rngs::StdRng;
use serde::Serialize;
use xline_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};
use xline_server::command::{Command, Request};
use xline_server::mvcc::store::ApplyOutput;
use xline_server::native::NativeCodec;

use crate::error::BenchError;
use crate::workload::Workload;

/// The native client of an xline cluster.
pub type NativeClient = CurpClient<Command, ApplyOutput, NativeCodec, GrpcClientTransport>;

/// How long connecting to a member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest message either way (the server's default bound).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Whether `workload` can be sent through the native client; the error explains why not.
pub fn check_workload(workload: &str) -> Result<(), BenchError> {
    match workload {
        "put" | "delete" | "txn-put" => Ok(()),
        "range" | "txn-mixed" => Err(BenchError::NativeUnsupported {
            workload: workload.to_owned(),
            reason: "reads are served through the etcd API only (no native reads); \
                     run it without --native",
        }),
        _ => Err(BenchError::NativeUnsupported {
            workload: workload.to_owned(),
            reason: "watches and leases are served through the etcd API only; \
                     run it without --native",
        }),
    }
}

/// `conns` native clients; client `i` is seeded with the peer URLs starting at `urls[i % n]`
/// (each discovers the whole cluster and the leader from them).
pub async fn connect_all(
    urls: &[String],
    conns: usize,
    propose_timeout: Duration,
) -> Result<Vec<Arc<NativeClient>>, BenchError> {
    let config = ClientConfig {
        propose_timeout,
        ..ClientConfig::default()
    };
    let mut clients = Vec::with_capacity(conns);
    for i in 0..conns {
        let seeds: Vec<String> = urls
            .iter()
            .cycle()
            .skip(i % urls.len().max(1))
            .take(urls.len())
            .cloned()
            .collect();
        let transport = Arc::new(GrpcClientTransport::new(CONNECT_TIMEOUT, MAX_MESSAGE_BYTES));
        let client = NativeClient::connect(transport, seeds.clone(), config.clone())
            .await
            .map_err(|e| BenchError::Connect {
                endpoint: seeds.join(","),
                reason: format!(
                    "native client: {e} (with --native, --endpoints are the members' peer URLs)"
                ),
            })?;
        clients.push(Arc::new(client));
    }
    Ok(clients)
}

/// The command request `seq` of `workload` sends, or `None` for a workload with no native form.
pub fn command(workload: &Workload, seq: u64, rng: &mut StdRng) -> Option<Command> {
    let request = match workload {
        Workload::Put { keys, value } => Request::Put(PutRequest {
            key: keys.key_for(seq, rng),
            value: value.clone(),
            ..PutRequest::default()
        }),
        Workload::Delete { keys } => Request::DeleteRange(DeleteRangeRequest {
            key: keys.key_for(seq, rng),
            ..DeleteRangeRequest::default()
        }),
        Workload::TxnPut { .. } => Request::Txn(workload.txn_request(seq, rng)?),
        _ => return None,
    };
    Some(Command::new(request))
}

/// Proposes request `seq` of `workload` on the fast path and waits for its outcome; the error
/// is the message the report counts (etcd's own string for an etcd error).
pub async fn step(
    client: &NativeClient,
    workload: &Workload,
    seq: u64,
    rng: &mut StdRng,
) -> Result<(), String> {
    let cmd = command(workload, seq, rng)
        .ok_or_else(|| format!("{} has no native form", workload.name()))?;
    match client.propose(&cmd).await {
        Ok(resp) => resp.output.map(drop).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// How the native client's commands completed, over every connection of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NativeStats {
    /// Completed on the fast path (the leader's speculative result, one round trip).
    pub fast: u64,
    /// Proposed on the fast path but completed with the ordered result (a conflict, a command
    /// the server does not speculate, or too few witnesses recorded it).
    pub fallback: u64,
    /// Sent on the ordered path (never, in a benchmark run; kept so the counts add up).
    pub ordered: u64,
    /// Attempts beyond the first (retries after a refusal, a timeout or a transport failure).
    pub retries: u64,
    /// Cluster-view refreshes (`FetchCluster` rounds), discovery at connect included.
    pub refreshes: u64,
    /// `fast / (fast + fallback + ordered)`; 0 when nothing completed.
    pub fast_share: f64,
}

impl NativeStats {
    /// The counters of `clients`, added up.
    pub fn sum(clients: &[Arc<NativeClient>]) -> Self {
        let mut total = ClientStats::default();
        for c in clients {
            let s = c.stats();
            total.fast += s.fast;
            total.fallback += s.fallback;
            total.ordered += s.ordered;
            total.retries += s.retries;
            total.refreshes += s.refreshes;
        }
        Self::from(total)
    }

    /// Commands that completed (with an output, success or etcd error).
    pub fn completed(&self) -> u64 {
        self.fast + self.fallback + self.ordered
    }

    /// One line for the text report.
    pub fn to_text(&self) -> String {
        format!(
            "Native client: {} fast path ({:.1}%), {} fallback to the ordered result, \
             {} ordered, {} retries, {} cluster refreshes",
            self.fast,
            self.fast_share * 100.0,
            self.fallback,
            self.ordered,
            self.retries,
            self.refreshes
        )
    }
}

impl From<ClientStats> for NativeStats {
    fn from(s: ClientStats) -> Self {
        let completed = s.fast + s.fallback + s.ordered;
        #[allow(clippy::cast_precision_loss)] // counts far below 2^53
        let fast_share = if completed == 0 {
            0.0
        } else {
            s.fast as f64 / completed as f64
        };
        Self {
            fast: s.fast,
            fallback: s.fallback,
            ordered: s.ordered,
            retries: s.retries,
            refreshes: s.refreshes,
            fast_share,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use xline_proto::etcdserverpb::request_op;

    use super::*;
    use crate::keys::{self, KeySpec};

    fn space() -> KeySpec {
        KeySpec {
            key_size: 4,
            key_space_size: 10,
            sequential: true,
        }
    }

    #[test]
    fn writes_become_commands_and_reads_have_no_native_form() {
        let mut rng = StdRng::seed_from_u64(1);
        let put = Workload::Put {
            keys: space(),
            value: keys::value(3),
        };
        match command(&put, 12, &mut rng).map(|c| c.request) {
            Some(Some(Request::Put(p))) => {
                assert_eq!((p.key.as_slice(), p.value.len()), (&b"0002"[..], 3));
                assert!(
                    p.lease == 0 && !p.prev_kv,
                    "a plain put, so it can be speculated"
                );
            }
            other => panic!("{other:?}"),
        }
        let delete = Workload::Delete { keys: space() };
        match command(&delete, 7, &mut rng).map(|c| c.request) {
            Some(Some(Request::DeleteRange(d))) => {
                assert_eq!(d.key, b"0007");
                assert!(d.range_end.is_empty() && !d.prev_kv);
            }
            other => panic!("{other:?}"),
        }
        let txn = Workload::TxnPut {
            keys: space(),
            value: keys::value(1),
            ops: 2,
        };
        match command(&txn, 1, &mut rng).map(|c| c.request) {
            Some(Some(Request::Txn(t))) => {
                assert_eq!(t.success.len(), 2);
                assert!(
                    t.success
                        .iter()
                        .all(|op| matches!(op.request, Some(request_op::Request::RequestPut(_))))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(command(&Workload::LeaseKeepalive, 0, &mut rng).is_none());
    }

    #[test]
    fn only_writes_are_native_workloads() {
        for w in ["put", "delete", "txn-put"] {
            assert!(check_workload(w).is_ok(), "{w}");
        }
        for w in ["range", "txn-mixed", "watch-latency", "lease-keepalive"] {
            let err = check_workload(w).unwrap_err().to_string();
            assert!(err.contains(w) && err.contains("without --native"), "{err}");
        }
    }

    #[test]
    fn fast_share_counts_every_completed_command() {
        let s = NativeStats::from(ClientStats {
            fast: 3,
            fallback: 1,
            ordered: 0,
            retries: 2,
            refreshes: 1,
        });
        assert_eq!(s.completed(), 4);
        assert!((s.fast_share - 0.75).abs() < 1e-12);
        assert!(
            s.to_text().contains("3 fast path (75.0%)"),
            "{}",
            s.to_text()
        );
        assert!(NativeStats::from(ClientStats::default()).fast_share.abs() < f64::EPSILON);
    }
}
