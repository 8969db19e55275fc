//! The client-facing side of a member: the `curppb.ClientApi` gRPC service
//! ([`ClientService`], mounted with [`client_server`] on the peer listener next to the peer
//! service), and the two [`ClientTransport`]s the native client ([`crate::client`]) talks to it
//! through: [`GrpcClientTransport`] over tonic and [`MemClientTransport`] in-process for tests.
//!
//! The service turns each RPC into one [`NodeHandle`] call:
//!
//! | RPC | node | answer |
//! |---|---|---|
//! | `Propose` | [`NodeHandle::client_propose`] (leader only) | the leader's term and speculative output, or a rejection |
//! | `Record` | [`NodeHandle::client_record`] | accepted + witness term, sent after the journal is durable |
//! | `WaitSynced` | [`NodeHandle::client_wait_synced`] | the ordered output once applied here |
//! | `ReadIndex` | [`NodeHandle::linearizable_barrier`] | a read index this member has applied |
//! | `KeepAlive` | [`NodeHandle::client_keep_alive`] (leader only) | the client-id lease's time to live, or "expired" |
//! | `FetchCluster` | [`NodeHandle::status`] | leader, term, voters, learners, cluster version, addresses |
//!
//! Failures travel inside the responses ([`curppb::ClientFailure`]); a `tonic::Status` means
//! the call itself failed (transport, size limit). Messages are bounded both ways by the
//! `max_message_bytes` given to [`client_server`] and [`GrpcClientTransport::new`].
//!
//! Nothing a client sends about a command is trusted beyond its bytes: the service decodes
//! every command (`Propose`, `Record`, `WaitSynced`), recomputes its conflict keys from it
//! (a client that under-reported them would get speculative results for commands that do
//! conflict), and asks the [`Admission`] policy whether a client may propose it at all (the
//! node's own proposals do not pass through this service); the policy may also rewrite the
//! command (e.g. mark it as a client's), deterministically, since a retry must become the same
//! bytes. A refused command is answered with the output the policy gives, as if it had been
//! applied and failed: nothing was recorded, appended or executed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::grpc::curppb::{
    self, client_api_client::ClientApiClient, client_api_server::ClientApi,
    client_api_server::ClientApiServer, client_failure::Failure,
};
use crate::client::{ClientError, ClientTransport};
use crate::cmd::{Command, OutputCodec};
use crate::core::{CommandData, NodeId, Rejection};
use crate::error::ProposeError;
use crate::node::{FastReply, KeepAliveReply, NodeHandle};

/// Which commands clients of a [`ClientService`] may propose, and as what: `Ok(command)` is
/// what is proposed (the client's command, possibly rewritten; a pure function of it),
/// `Err(output)` refuses the command and is the answer the client gets (typically the
/// application's error output).
pub type Admission<C, O> = Arc<dyn Fn(C) -> Result<C, O> + Send + Sync>;

/// Implements `curppb.ClientApi` over a running node; outputs are encoded with `K`.
pub struct ClientService<C, O, K> {
    /// The node.
    node: NodeHandle<C, O>,
    /// Where each member serves this service (reported by `FetchCluster`).
    addresses: Arc<RwLock<BTreeMap<NodeId, Vec<String>>>>,
    /// The admission policy (every command, when none was given).
    admission: Option<Admission<C, O>>,
    /// The output codec.
    _codec: PhantomData<fn() -> K>,
}

impl<C, O, K> Clone for ClientService<C, O, K> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            addresses: Arc::clone(&self.addresses),
            admission: self.admission.clone(),
            _codec: PhantomData,
        }
    }
}

impl<C, O, K> std::fmt::Debug for ClientService<C, O, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientService")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl<C: Command, O: Send + 'static, K: OutputCodec<O>> ClientService<C, O, K> {
    /// A service over `node`; `addresses` (member id -> client-service URLs, this member's
    /// included) is what `FetchCluster` reports, see [`ClientService::set_addresses`]; a
    /// member it does not list is reported at its peer URLs from the membership.
    pub fn new(node: NodeHandle<C, O>, addresses: BTreeMap<NodeId, Vec<String>>) -> Self {
        Self {
            node,
            addresses: Arc::new(RwLock::new(addresses)),
            admission: None,
            _codec: PhantomData,
        }
    }

    /// Sets the admission policy: which commands clients may propose (see the module docs).
    #[must_use]
    pub fn with_admission(mut self, admission: Admission<C, O>) -> Self {
        self.admission = Some(admission);
        self
    }

    /// Decodes a client's command, recomputes its conflict keys and applies the admission
    /// policy: `Err(Ok(output))` is a refusal to answer with `output`, `Err(Err(failure))` a
    /// malformed request.
    fn admit(
        &self,
        cmd: Option<curppb::CommandData>,
    ) -> Result<CommandData, Result<O, curppb::ClientFailure>> {
        let bad = |message: String| curppb::ClientFailure {
            failure: Some(Failure::BadRequest(message)),
        };
        let cmd = cmd.ok_or_else(|| Err(bad("the request carries no command".into())))?;
        let mut data = CommandData::try_from(cmd).map_err(|e| Err(bad(e.to_string())))?;
        let mut decoded = C::decode(&data.payload).map_err(|e| Err(bad(e.to_string())))?;
        if let Some(admission) = &self.admission {
            decoded = admission(decoded).map_err(Ok)?;
            data.payload = decoded.encode().into();
        }
        data.keys = Arc::new(decoded.conflict_keys());
        Ok(data)
    }

    /// Replaces the member addresses `FetchCluster` reports (after a membership change).
    pub fn set_addresses(&self, addresses: BTreeMap<NodeId, Vec<String>>) {
        *self.addresses.write() = addresses;
    }

    /// The wire failure for a node error.
    fn failure(&self, err: ProposeError) -> curppb::ClientFailure {
        let failure = match err {
            ProposeError::ShuttingDown => Failure::ShuttingDown(curppb::Empty {}),
            ProposeError::Timeout => Failure::Timeout(curppb::Empty {}),
            ProposeError::Duplicate => Failure::Duplicate(curppb::Empty {}),
            ProposeError::NotLeader { leader } => {
                let term = self.node.status().term;
                Failure::Rejected((&Rejection::NotLeader { leader, term }).into())
            }
            ProposeError::Fatal(message) => Failure::Fatal(message),
            ProposeError::ClientExpired => Failure::Rejected((&Rejection::ClientExpired).into()),
            other => Failure::Fatal(other.to_string()),
        };
        curppb::ClientFailure {
            failure: Some(failure),
        }
    }
}

#[tonic::async_trait]
impl<C, O, K> ClientApi for ClientService<C, O, K>
where
    C: Command,
    O: Send + 'static,
    K: OutputCodec<O>,
{
    async fn propose(
        &self,
        request: Request<curppb::ClientProposeRequest>,
    ) -> Result<Response<curppb::ClientProposeResponse>, Status> {
        use curppb::client_propose_response::Result as R;
        let req = request.into_inner();
        let result = match self.admit(req.cmd) {
            Err(Ok(refused)) => R::Applied(K::encode(&refused)),
            Err(Err(failure)) => R::Failure(failure),
            Ok(data) => match self
                .node
                .client_propose(data, req.cluster_version, K::encode)
                .await
            {
                Ok(FastReply::Speculated { term, output }) => {
                    R::Speculated(curppb::ClientSpeculated {
                        term,
                        output: output.map(|b| b.to_vec()),
                    })
                }
                Ok(FastReply::Applied(output)) => R::Applied(output.to_vec()),
                Ok(FastReply::Rejected(reason)) => R::Failure(curppb::ClientFailure {
                    failure: Some(Failure::Rejected((&reason).into())),
                }),
                Err(e) => R::Failure(self.failure(e)),
            },
        };
        Ok(Response::new(curppb::ClientProposeResponse {
            result: Some(result),
        }))
    }

    async fn keep_alive(
        &self,
        request: Request<curppb::ClientKeepAliveRequest>,
    ) -> Result<Response<curppb::ClientKeepAliveResponse>, Status> {
        use curppb::client_keep_alive_response::Result as R;
        let client_id = request.into_inner().client_id;
        let result = match self.node.client_keep_alive(client_id).await {
            Ok(KeepAliveReply::Lease { ttl }) => R::Lease(curppb::ClientLease {
                ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                expired: false,
            }),
            Ok(KeepAliveReply::Expired) => R::Lease(curppb::ClientLease {
                ttl_ms: 0,
                expired: true,
            }),
            Ok(KeepAliveReply::Rejected(reason)) => R::Failure(curppb::ClientFailure {
                failure: Some(Failure::Rejected((&reason).into())),
            }),
            Err(e) => R::Failure(self.failure(e)),
        };
        Ok(Response::new(curppb::ClientKeepAliveResponse {
            result: Some(result),
        }))
    }

    async fn record(
        &self,
        request: Request<curppb::ClientRecordRequest>,
    ) -> Result<Response<curppb::ClientRecordResponse>, Status> {
        use curppb::client_record_response::Result as R;
        let req = request.into_inner();
        let result = match self.admit(req.cmd) {
            // Refused: not recorded; the client's proposal gets the refusal.
            Err(Ok(_)) => R::Failure(curppb::ClientFailure {
                failure: Some(Failure::BadRequest(
                    "refused by the admission policy".into(),
                )),
            }),
            Err(Err(failure)) => R::Failure(failure),
            Ok(data) => match self
                .node
                .client_record(data, req.term, req.cluster_version, K::encode)
                .await
            {
                Ok(reply) => R::Recorded(curppb::ClientRecorded {
                    accepted: reply.accepted,
                    term: reply.term,
                }),
                Err(e) => R::Failure(self.failure(e)),
            },
        };
        Ok(Response::new(curppb::ClientRecordResponse {
            result: Some(result),
        }))
    }

    async fn wait_synced(
        &self,
        request: Request<curppb::ClientWaitSyncedRequest>,
    ) -> Result<Response<curppb::ClientWaitSyncedResponse>, Status> {
        use curppb::client_wait_synced_response::Result as R;
        let req = request.into_inner();
        let result = match self.admit(req.cmd) {
            Err(Ok(refused)) => R::Output(K::encode(&refused)),
            Err(Err(failure)) => R::Failure(failure),
            Ok(data) => match self.node.client_wait_synced(data, K::encode).await {
                Ok(output) => R::Output(output.to_vec()),
                Err(e) => R::Failure(self.failure(e)),
            },
        };
        Ok(Response::new(curppb::ClientWaitSyncedResponse {
            result: Some(result),
        }))
    }

    async fn read_index(
        &self,
        _request: Request<curppb::ClientReadIndexRequest>,
    ) -> Result<Response<curppb::ClientReadIndexResponse>, Status> {
        use curppb::client_read_index_response::Result as R;
        let result = match self.node.linearizable_barrier().await {
            Ok(index) => R::Index(curppb::ClientReadIndex {
                member: self.node.id(),
                index,
            }),
            Err(e) => R::Failure(self.failure(e)),
        };
        Ok(Response::new(curppb::ClientReadIndexResponse {
            result: Some(result),
        }))
    }

    async fn fetch_cluster(
        &self,
        _request: Request<curppb::ClientFetchClusterRequest>,
    ) -> Result<Response<curppb::ClientFetchClusterResponse>, Status> {
        let status = self.node.status();
        // Addresses given to the service win; other members are reached at their peer URLs
        // (the service is served on the peer listener).
        let mut known = status.membership.peers.clone();
        known.extend(
            self.addresses
                .read()
                .iter()
                .map(|(&id, urls)| (id, urls.clone())),
        );
        let addresses = known
            .into_iter()
            .map(|(id, urls)| curppb::ClientMemberAddresses { id, urls })
            .collect();
        Ok(Response::new(curppb::ClientFetchClusterResponse {
            member_id: status.id,
            leader: status.leader,
            term: status.term,
            voters: status.membership.voters.iter().copied().collect(),
            learners: status.membership.learners.iter().copied().collect(),
            cluster_version: status.membership.version,
            addresses,
        }))
    }
}

/// The `curppb.ClientApi` server to mount on the peer listener; messages larger than
/// `max_message_bytes` are refused both ways.
pub fn client_server<C, O, K>(
    service: ClientService<C, O, K>,
    max_message_bytes: usize,
) -> ClientApiServer<ClientService<C, O, K>>
where
    C: Command,
    O: Send + 'static,
    K: OutputCodec<O>,
{
    ClientApiServer::new(service)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

// --- gRPC client transport -------------------------------------------------------------------

/// [`ClientTransport`] over tonic: one lazily connected channel per address (`http://host:port`),
/// messages bounded by `max_message_bytes`.
#[derive(Debug)]
pub struct GrpcClientTransport {
    /// Channels by address.
    channels: Mutex<HashMap<String, ClientApiClient<Channel>>>,
    /// Time allowed to connect.
    connect_timeout: Duration,
    /// Largest message either way.
    max_message_bytes: usize,
    /// TLS for `https://` addresses.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl GrpcClientTransport {
    /// A transport that connects within `connect_timeout` and bounds messages to
    /// `max_message_bytes`.
    pub fn new(connect_timeout: Duration, max_message_bytes: usize) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            connect_timeout,
            max_message_bytes,
            tls: None,
        }
    }

    /// The same transport, dialing `https://` addresses with `tls` (the CA that signs the
    /// members' certificates, and the client's own certificate if they require one).
    pub fn with_tls(mut self, tls: tonic::transport::ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The client for `addr` (created on first use; connects lazily).
    fn client(&self, addr: &str) -> Result<ClientApiClient<Channel>, ClientError> {
        if let Some(client) = self.channels.lock().get(addr) {
            return Ok(client.clone());
        }
        let mut endpoint =
            Endpoint::from_shared(addr.to_owned()).map_err(|e| transport_error(addr, e))?;
        if addr.starts_with("https://") {
            endpoint = endpoint
                .tls_config(self.tls.clone().unwrap_or_default())
                .map_err(|e| transport_error(addr, e))?;
        }
        let endpoint = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        let client = ClientApiClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        self.channels.lock().insert(addr.to_owned(), client.clone());
        Ok(client)
    }
}

/// A transport failure at `addr`.
fn transport_error(addr: &str, err: impl std::fmt::Display) -> ClientError {
    ClientError::Transport {
        addr: addr.to_owned(),
        message: err.to_string(),
    }
}

impl ClientTransport for GrpcClientTransport {
    fn keep_alive(
        &self,
        addr: &str,
        req: curppb::ClientKeepAliveRequest,
    ) -> impl Future<Output = Result<curppb::ClientKeepAliveResponse, ClientError>> + Send {
        let client = self.client(addr);
        let addr = addr.to_owned();
        async move {
            let mut client = client?;
            client
                .keep_alive(req)
                .await
                .map(Response::into_inner)
                .map_err(|s| transport_error(&addr, s))
        }
    }

    fn propose(
        &self,
        addr: &str,
        req: curppb::ClientProposeRequest,
    ) -> impl Future<Output = Result<curppb::ClientProposeResponse, ClientError>> + Send {
        let client = self.client(addr);
        let addr = addr.to_owned();
        async move {
            let mut client = client?;
            client
                .propose(req)
                .await
                .map(Response::into_inner)
                .map_err(|s| transport_error(&addr, s))
        }
    }

    fn record(
        &self,
        addr: &str,
        req: curppb::ClientRecordRequest,
    ) -> impl Future<Output = Result<curppb::ClientRecordResponse, ClientError>> + Send {
        let client = self.client(addr);
        let addr = addr.to_owned();
        async move {
            let mut client = client?;
            client
                .record(req)
                .await
                .map(Response::into_inner)
                .map_err(|s| transport_error(&addr, s))
        }
    }

    fn wait_synced(
        &self,
        addr: &str,
        req: curppb::ClientWaitSyncedRequest,
    ) -> impl Future<Output = Result<curppb::ClientWaitSyncedResponse, ClientError>> + Send {
        let client = self.client(addr);
        let addr = addr.to_owned();
        async move {
            let mut client = client?;
            client
                .wait_synced(req)
                .await
                .map(Response::into_inner)
                .map_err(|s| transport_error(&addr, s))
        }
    }

    fn read_index(
        &self,
        addr: &str,
    ) -> impl Future<Output = Result<curppb::ClientReadIndexResponse, ClientError>> + Send {
        let client = self.client(addr);
        let addr = addr.to_owned();
        async move {
            let mut client = client?;
            client
                .read_index(curppb::ClientReadIndexRequest {})
                .await
                .map(Response::into_inner)
                .map_err(|s| transport_error(&addr, s))
        }
    }

    fn fetch_cluster(
        &self,
        addr: &str,
    ) -> impl Future<Output = Result<curppb::ClientFetchClusterResponse, ClientError>> + Send {
        let client = self.client(addr);
        let addr = addr.to_owned();
        async move {
            let mut client = client?;
            client
                .fetch_cluster(curppb::ClientFetchClusterRequest {})
                .await
                .map(Response::into_inner)
                .map_err(|s| transport_error(&addr, s))
        }
    }
}

// --- in-process client transport ------------------------------------------------------------

/// A service as the in-process transport holds it.
pub type DynClientApi = Arc<dyn ClientApi>;

/// The registry and the switches of a [`MemClientTransport`].
#[derive(Default)]
struct MemNet {
    /// Services by address.
    services: HashMap<String, DynClientApi>,
    /// Addresses that cannot be reached.
    cut: HashSet<String>,
}

/// An in-process [`ClientTransport`] for tests: calls the registered services directly (the
/// same code the gRPC server runs, without the network). Cheap to clone; clones share the
/// registry. An address can be cut off (calls fail as if the member were unreachable).
#[derive(Clone, Default)]
pub struct MemClientTransport {
    /// Shared state.
    net: Arc<Mutex<MemNet>>,
}

impl std::fmt::Debug for MemClientTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let net = self.net.lock();
        f.debug_struct("MemClientTransport")
            .field("services", &net.services.keys().collect::<Vec<_>>())
            .field("cut", &net.cut)
            .finish()
    }
}

impl MemClientTransport {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// `service` now answers at `addr` (replacing a previous one, e.g. after a restart).
    pub fn register(&self, addr: impl Into<String>, service: DynClientApi) {
        self.net.lock().services.insert(addr.into(), service);
    }

    /// Nothing answers at `addr` any more.
    pub fn unregister(&self, addr: &str) {
        self.net.lock().services.remove(addr);
    }

    /// Calls to `addr` fail as unreachable.
    pub fn cut(&self, addr: impl Into<String>) {
        self.net.lock().cut.insert(addr.into());
    }

    /// Undoes [`MemClientTransport::cut`].
    pub fn restore(&self, addr: &str) {
        self.net.lock().cut.remove(addr);
    }

    /// The service at `addr`, unless it is cut off or unknown.
    fn service(&self, addr: &str) -> Result<DynClientApi, ClientError> {
        let net = self.net.lock();
        if net.cut.contains(addr) {
            return Err(transport_error(addr, "unreachable (cut)"));
        }
        net.services
            .get(addr)
            .cloned()
            .ok_or_else(|| transport_error(addr, "no service registered"))
    }
}

/// Runs one in-process call.
async fn mem_call<T, Fut>(
    addr: String,
    service: Result<DynClientApi, ClientError>,
    call: impl FnOnce(DynClientApi) -> Fut,
) -> Result<T, ClientError>
where
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let service = service?;
    call(service)
        .await
        .map(Response::into_inner)
        .map_err(|s| transport_error(&addr, s))
}

impl ClientTransport for MemClientTransport {
    fn keep_alive(
        &self,
        addr: &str,
        req: curppb::ClientKeepAliveRequest,
    ) -> impl Future<Output = Result<curppb::ClientKeepAliveResponse, ClientError>> + Send {
        mem_call(addr.to_owned(), self.service(addr), move |s| async move {
            s.keep_alive(Request::new(req)).await
        })
    }

    fn propose(
        &self,
        addr: &str,
        req: curppb::ClientProposeRequest,
    ) -> impl Future<Output = Result<curppb::ClientProposeResponse, ClientError>> + Send {
        mem_call(addr.to_owned(), self.service(addr), |s| async move {
            s.propose(Request::new(req)).await
        })
    }

    fn record(
        &self,
        addr: &str,
        req: curppb::ClientRecordRequest,
    ) -> impl Future<Output = Result<curppb::ClientRecordResponse, ClientError>> + Send {
        mem_call(addr.to_owned(), self.service(addr), |s| async move {
            s.record(Request::new(req)).await
        })
    }

    fn wait_synced(
        &self,
        addr: &str,
        req: curppb::ClientWaitSyncedRequest,
    ) -> impl Future<Output = Result<curppb::ClientWaitSyncedResponse, ClientError>> + Send {
        mem_call(addr.to_owned(), self.service(addr), |s| async move {
            s.wait_synced(Request::new(req)).await
        })
    }

    fn read_index(
        &self,
        addr: &str,
    ) -> impl Future<Output = Result<curppb::ClientReadIndexResponse, ClientError>> + Send {
        mem_call(addr.to_owned(), self.service(addr), |s| async move {
            s.read_index(Request::new(curppb::ClientReadIndexRequest {}))
                .await
        })
    }

    fn fetch_cluster(
        &self,
        addr: &str,
    ) -> impl Future<Output = Result<curppb::ClientFetchClusterResponse, ClientError>> + Send {
        mem_call(addr.to_owned(), self.service(addr), |s| async move {
            s.fetch_cluster(Request::new(curppb::ClientFetchClusterRequest {}))
                .await
        })
    }
}
