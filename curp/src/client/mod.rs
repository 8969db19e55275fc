//! The native CURP client ([`CurpClient`]): commands complete in one round trip on the fast
//! path when they commute, otherwise with their ordered result (CURP.md D1, D3, sections 3 and
//! 5.1).
//!
//! # Paths
//!
//! - **Fast** ([`CurpClient::propose`], CURP.md F1-F3): `Propose` to the leader and, in
//!   parallel, `Record` to every other voter. The command completes with the leader's
//!   *speculative* output once the leader answered without conflict **and** `SQ − 1` other
//!   voters accepted the record in the leader's term ([`crate::core::quorum::super_quorum`],
//!   the leader's own witness makes the `SQ`-th). Otherwise (a conflict, a command the
//!   executor does not speculate, too few records) the client asks the leader for the
//!   ordered result (`WaitSynced`) and returns it as *final*.
//! - **Ordered** ([`CurpClient::propose_ordered`]): `WaitSynced` at the leader, which proposes
//!   the command with the client's id and answers once it has applied it: always *final*.
//!
//! A [`ProposeResponse`] says which it is ([`ResultKind`]). A speculative output never carries
//! anything ordering assigns (such as an MVCC revision): the executor only speculates results
//! that cannot depend on the order (D3, R2).
//!
//! # Retries and exactly once
//!
//! Every command gets one proposal id `(client_id, seq)` and keeps it for every retry (DD1):
//! after a refusal (not the leader, another cluster version, a transfer), a transport failure
//! or a member's timeout, the client refreshes its view of the cluster when needed (leader
//! discovery with `FetchCluster` at every known address, trusting the highest term) and tries
//! again after a capped exponential backoff, until [`ClientConfig::propose_timeout`]. The
//! replicated dedup table executes the command at most once (D5); members cache encoded
//! results, so a retry that finds its command already applied gets the result
//! ([`ClientError::Duplicate`] only when no member still holds it).
//!
//! # Client id
//!
//! A client picks a random non-zero id at construction and keeps it alive at the leader with
//! keep-alives (CURP.md 5.1); each request carries the `first_incomplete` watermark of its
//! commands still in flight. A client cut off for longer than its lease is expired by the
//! leader (a replicated tombstone, DD4) and continues under a fresh id. A command whose every
//! attempt was refused because of the expiry ([`Rejection::ClientExpired`], given before
//! anything is appended) never executed and is retried under the fresh id; one that may have
//! been ordered before ends with [`ClientError::Expired`] (outcome unknown). Two live clients
//! with the same id would collide; with 64 random bits this is negligible.

mod error;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::time::Instant;

pub use error::ClientError;

use crate::cmd::{Command, OutputCodec};
use crate::core::{CommandData, LogIndex, NodeId, ProposeId, Rejection, Term, quorum};
use crate::transport::grpc::curppb;

/// How a client reaches members: one call per RPC of `curppb.ClientApi`, addressed by URL.
/// Implemented over gRPC ([`crate::transport::client_service::GrpcClientTransport`]) and
/// in-process ([`crate::transport::client_service::MemClientTransport`]).
pub trait ClientTransport: Send + Sync + 'static {
    /// `KeepAlive` at `addr`.
    fn keep_alive(
        &self,
        addr: &str,
        req: curppb::ClientKeepAliveRequest,
    ) -> impl Future<Output = Result<curppb::ClientKeepAliveResponse, ClientError>> + Send;
    /// `Propose` (fast path) at `addr`.
    fn propose(
        &self,
        addr: &str,
        req: curppb::ClientProposeRequest,
    ) -> impl Future<Output = Result<curppb::ClientProposeResponse, ClientError>> + Send;
    /// `Record` at `addr`.
    fn record(
        &self,
        addr: &str,
        req: curppb::ClientRecordRequest,
    ) -> impl Future<Output = Result<curppb::ClientRecordResponse, ClientError>> + Send;
    /// `WaitSynced` at `addr`.
    fn wait_synced(
        &self,
        addr: &str,
        req: curppb::ClientWaitSyncedRequest,
    ) -> impl Future<Output = Result<curppb::ClientWaitSyncedResponse, ClientError>> + Send;
    /// `ReadIndex` at `addr`.
    fn read_index(
        &self,
        addr: &str,
    ) -> impl Future<Output = Result<curppb::ClientReadIndexResponse, ClientError>> + Send;
    /// `FetchCluster` at `addr`.
    fn fetch_cluster(
        &self,
        addr: &str,
    ) -> impl Future<Output = Result<curppb::ClientFetchClusterResponse, ClientError>> + Send;
}

/// Tuning of a [`CurpClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// How long one command may take, retries included (then [`ClientError::Timeout`]).
    pub propose_timeout: Duration,
    /// How long one `Propose`, `Record`, `ReadIndex` or `FetchCluster` call may take.
    pub rpc_timeout: Duration,
    /// How long one `WaitSynced` call may take.
    pub wait_synced_timeout: Duration,
    /// First retry delay.
    pub backoff_initial: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            propose_timeout: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(2),
            wait_synced_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// Whether an output is the leader's speculation or the ordered result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultKind {
    /// Fast path: the leader's order-independent result, before the command was ordered.
    Speculative,
    /// Ordered path: the result of applying the command in log order.
    Final,
}

/// A completed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposeResponse<O> {
    /// The executor's output.
    pub output: O,
    /// Speculative (fast path) or final (ordered).
    pub kind: ResultKind,
    /// The command's proposal id.
    pub id: ProposeId,
    /// Attempts it took (1: no retry).
    pub attempts: u32,
}

impl<O> ProposeResponse<O> {
    /// Whether the command completed on the fast path.
    pub fn is_speculative(&self) -> bool {
        self.kind == ResultKind::Speculative
    }
}

/// Counters of a client's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Commands completed on the fast path.
    pub fast: u64,
    /// Fast-path commands that completed with the ordered result instead.
    pub fallback: u64,
    /// Commands sent on the ordered path that completed.
    pub ordered: u64,
    /// Attempts beyond the first, over all commands.
    pub retries: u64,
    /// `FetchCluster` rounds.
    pub refreshes: u64,
}

/// The cluster as the client last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// The highest term seen.
    pub term: Term,
    /// Voting members.
    pub voters: BTreeSet<NodeId>,
    /// The cluster version.
    pub cluster_version: u64,
    /// Client-service URLs of members.
    pub addresses: BTreeMap<NodeId, Vec<String>>,
}

impl ClusterView {
    /// The first URL of `member`.
    fn addr(&self, member: NodeId) -> Option<&str> {
        self.addresses.get(&member)?.first().map(String::as_str)
    }
}

/// The client's proposal ids and the watermark of those still in flight.
#[derive(Debug)]
struct Ids {
    /// This client's id (never 0: 0 is the node driver's own); replaced when it expires.
    client_id: AtomicU64,
    /// Next sequence number.
    next_seq: AtomicU64,
    /// Sequence numbers whose result has not been handed back yet.
    in_flight: Mutex<BTreeSet<u64>>,
}

impl Ids {
    /// The current client id.
    fn client_id(&self) -> u64 {
        self.client_id.load(Ordering::Acquire)
    }

    /// `expired` lapsed: continue with a fresh id (unless that happened already).
    fn renew(&self, expired: u64) {
        let fresh = random_client_id();
        if self
            .client_id
            .compare_exchange(expired, fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!(
                expired,
                fresh,
                "curp client: client id expired; using a new one"
            );
        }
    }

    /// The lowest sequence number still in flight (CURP.md 5.1), or `fallback`.
    fn first_incomplete(&self, fallback: u64) -> u64 {
        self.in_flight.lock().first().copied().unwrap_or(fallback)
    }
}

/// Takes a sequence number out of the in-flight set when its command ends, however it ends.
struct InFlight<'a> {
    /// The ids.
    ids: &'a Ids,
    /// The command's sequence number.
    seq: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.ids.in_flight.lock().remove(&self.seq);
    }
}

/// A random non-zero client id (std's randomly keyed hasher; no RNG dependency).
fn random_client_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(elapsed) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(elapsed.as_nanos());
    }
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

/// What one attempt produced.
type Attempt<O> = Result<(O, ResultKind), ClientError>;

/// The native CURP client; see the module documentation. Cheap to share behind an `Arc`;
/// its methods may run concurrently.
pub struct CurpClient<C, O, K, T> {
    /// How members are reached.
    transport: Arc<T>,
    /// Addresses to discover the cluster from when nothing better is known.
    seeds: Vec<String>,
    /// The last view of the cluster (shared with the keep-alive task).
    view: Arc<Mutex<ClusterView>>,
    /// Proposal ids (shared with the keep-alive task).
    ids: Arc<Ids>,
    /// The keep-alive task, stopped when the client is dropped.
    keep_alive: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Tuning.
    config: ClientConfig,
    /// Counters.
    stats: Mutex<ClientStats>,
    /// Command, output and codec types.
    _types: PhantomData<fn(C) -> (O, K)>,
}

impl<C, O, K, T> std::fmt::Debug for CurpClient<C, O, K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurpClient")
            .field("client_id", &self.ids.client_id())
            .field("view", &*self.view.lock())
            .finish_non_exhaustive()
    }
}

impl<C, O, K, T> CurpClient<C, O, K, T>
where
    C: Command,
    O: Send + 'static,
    K: OutputCodec<O>,
    T: ClientTransport,
{
    /// Connects: discovers the cluster (members, leader, term, version, addresses) through
    /// `FetchCluster` at `seeds`, retrying until a leader is known or
    /// [`ClientConfig::propose_timeout`] passes.
    ///
    /// # Errors
    ///
    /// [`ClientError::NoMembers`] without seeds; otherwise the last failure, or
    /// [`ClientError::Timeout`].
    pub async fn connect(
        transport: Arc<T>,
        seeds: Vec<String>,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        if seeds.is_empty() {
            return Err(ClientError::NoMembers);
        }
        let client = Self {
            transport,
            seeds,
            view: Arc::new(Mutex::new(ClusterView::default())),
            ids: Arc::new(Ids {
                client_id: AtomicU64::new(random_client_id()),
                next_seq: AtomicU64::new(1),
                in_flight: Mutex::new(BTreeSet::new()),
            }),
            keep_alive: Mutex::new(None),
            config,
            stats: Mutex::new(ClientStats::default()),
            _types: PhantomData,
        };
        let deadline = Instant::now() + client.config.propose_timeout;
        let mut backoff = client.config.backoff_initial;
        loop {
            match client.refresh().await {
                Ok(view) if view.leader.is_some() => {
                    let task = tokio::spawn(keep_alive(
                        Arc::clone(&client.transport),
                        Arc::clone(&client.view),
                        Arc::clone(&client.ids),
                        client.config.rpc_timeout,
                    ));
                    *client.keep_alive.lock() = Some(task);
                    return Ok(client);
                }
                Ok(_) => {}
                Err(e) if Instant::now() + backoff >= deadline => return Err(e),
                Err(_) => {}
            }
            if Instant::now() + backoff >= deadline {
                return Err(ClientError::Timeout);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(client.config.backoff_max);
        }
    }

    /// This client's id (the first half of its proposal ids). A new one replaces it if the
    /// cluster expired it (the client was cut off for longer than the lease).
    pub fn client_id(&self) -> u64 {
        self.ids.client_id()
    }

    /// The cluster as last seen.
    pub fn view(&self) -> ClusterView {
        self.view.lock().clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        *self.stats.lock()
    }

    /// Proposes `cmd` on the fast path (CURP.md F1-F3): a speculative result in one round
    /// trip when the command commutes with everything in flight and the executor speculates
    /// it, else the ordered result.
    ///
    /// # Errors
    ///
    /// [`ClientError::Timeout`] (the outcome is unknown), [`ClientError::Duplicate`], or a
    /// failure that retrying cannot fix.
    pub async fn propose(&self, cmd: &C) -> Result<ProposeResponse<O>, ClientError> {
        self.run(cmd, true).await
    }

    /// Proposes `cmd` on the ordered path: the result of applying it in log order.
    ///
    /// # Errors
    ///
    /// As [`CurpClient::propose`].
    pub async fn propose_ordered(&self, cmd: &C) -> Result<ProposeResponse<O>, ClientError> {
        self.run(cmd, false).await
    }

    /// A read index from the leader (CURP.md D8), which has applied it when answering: its
    /// state reflects every command that completed on the ordered path before the call. A
    /// command completed on the fast path is reflected only once it is applied (it may still
    /// be uncommitted); a reader that must see it asks for its ordered result first.
    ///
    /// # Errors
    ///
    /// [`ClientError::Timeout`], or a failure that retrying cannot fix.
    pub async fn read_index(&self) -> Result<(NodeId, LogIndex), ClientError> {
        let deadline = Instant::now() + self.config.propose_timeout;
        let mut backoff = self.config.backoff_initial;
        loop {
            let attempt = async {
                let (_, addr) = self.leader_addr().await?;
                let resp = self.call(self.transport.read_index(&addr)).await?;
                match resp.result {
                    Some(curppb::client_read_index_response::Result::Index(i)) => {
                        Ok((i.member, i.index))
                    }
                    Some(curppb::client_read_index_response::Result::Failure(f)) => {
                        Err(ClientError::from(f))
                    }
                    None => Err(ClientError::Malformed("ReadIndex without a result".into())),
                }
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(Ok(index)) => return Ok(index),
                Ok(Err(e)) => self.after_failure(&e, deadline, &mut backoff).await?,
            }
        }
    }

    /// Runs one command to completion (retrying with the same id).
    async fn run(&self, cmd: &C, fast: bool) -> Result<ProposeResponse<O>, ClientError> {
        // Allocating the sequence number and registering it as in flight is one step, so that
        // no concurrent command computes a watermark above it.
        let seq = {
            let mut in_flight = self.ids.in_flight.lock();
            let seq = self.ids.next_seq.fetch_add(1, Ordering::Relaxed);
            in_flight.insert(seq);
            seq
        };
        let _in_flight = InFlight {
            ids: &self.ids,
            seq,
        };
        let mut id = ProposeId {
            client_id: self.ids.client_id(),
            seq,
        };
        // Whether every attempt with `id` so far was refused because the client id expired:
        // then none of them was ever appended, so the command never executes under `id` and
        // may run under a fresh id (CURP.md DD4). Any other outcome (a timeout, a failover
        // after records were accepted) leaves it possibly executed.
        let mut never_taken = true;
        let keys = Arc::new(cmd.conflict_keys());
        let payload = Bytes::from(cmd.encode());
        let deadline = Instant::now() + self.config.propose_timeout;
        let mut backoff = self.config.backoff_initial;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let data = CommandData {
                id,
                keys: keys.clone(),
                payload: payload.clone(),
                first_incomplete: self.ids.first_incomplete(seq),
            };
            let attempt = async {
                if fast {
                    self.fast_attempt(data).await
                } else {
                    self.ordered_attempt(data).await
                }
            };
            let err = match tokio::time::timeout_at(deadline, attempt).await {
                Err(_) => ClientError::Timeout,
                Ok(Ok((output, kind))) => {
                    let mut stats = self.stats.lock();
                    stats.retries += u64::from(attempts - 1);
                    match (fast, kind) {
                        (_, ResultKind::Speculative) => stats.fast += 1,
                        (true, ResultKind::Final) => stats.fallback += 1,
                        (false, ResultKind::Final) => stats.ordered += 1,
                    }
                    return Ok(ProposeResponse {
                        output,
                        kind,
                        id,
                        attempts,
                    });
                }
                Ok(Err(e)) => e,
            };
            if err == ClientError::Timeout {
                self.stats.lock().retries += u64::from(attempts - 1);
                return Err(err);
            }
            if err == ClientError::Rejected(Rejection::ClientExpired) {
                self.ids.renew(id.client_id);
                if !never_taken {
                    self.stats.lock().retries += u64::from(attempts - 1);
                    return Err(ClientError::Expired);
                }
                id.client_id = self.ids.client_id();
                tracing::debug!(?id, attempts, "curp client: retrying under a fresh id");
                continue;
            }
            never_taken = false;
            tracing::debug!(?id, attempts, %err, "curp client: attempt failed");
            if let Err(e) = self.after_failure(&err, deadline, &mut backoff).await {
                self.stats.lock().retries += u64::from(attempts - 1);
                return Err(e);
            }
        }
    }

    /// After a failed attempt: gives up on a final failure or at the deadline, otherwise
    /// learns what the failure says, waits the backoff and refreshes the view if needed.
    async fn after_failure(
        &self,
        err: &ClientError,
        deadline: Instant,
        backoff: &mut Duration,
    ) -> Result<(), ClientError> {
        if !err.is_retryable() {
            return Err(err.clone());
        }
        if Instant::now() + *backoff >= deadline {
            return Err(ClientError::Timeout);
        }
        if let ClientError::Rejected(Rejection::NotLeader { leader, term }) = err {
            let mut view = self.view.lock();
            if *term >= view.term {
                view.term = *term;
                view.leader = *leader;
            }
        }
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(self.config.backoff_max);
        let leader_known = self.view.lock().leader.is_some();
        if err.needs_refresh() || !leader_known {
            // A failed refresh is fine here: the next attempt fails and retries.
            let _ = self.refresh().await;
        }
        Ok(())
    }

    /// The leader and its address, refreshing the view when none is known.
    async fn leader_addr(&self) -> Result<(NodeId, String), ClientError> {
        let known = {
            let view = self.view.lock();
            view.leader
                .and_then(|l| view.addr(l).map(|a| (l, a.to_owned())))
        };
        if let Some(found) = known {
            return Ok(found);
        }
        let view = self.refresh().await?;
        view.leader
            .and_then(|l| view.addr(l).map(|a| (l, a.to_owned())))
            .ok_or(ClientError::Rejected(Rejection::NotLeader {
                leader: None,
                term: view.term,
            }))
    }

    /// Runs `call` with the RPC timeout.
    async fn call<R>(
        &self,
        call: impl Future<Output = Result<R, ClientError>>,
    ) -> Result<R, ClientError> {
        tokio::time::timeout(self.config.rpc_timeout, call)
            .await
            .unwrap_or(Err(ClientError::MemberTimeout))
    }

    /// Decodes an output.
    fn decode(bytes: &[u8]) -> Result<O, ClientError> {
        K::decode(bytes).map_err(ClientError::from)
    }

    /// One fast-path attempt (CURP.md F1-F3).
    ///
    /// The records and the proposal are driven by this task, the records polled first: a
    /// witness then has the record queued before the leader even sees the proposal, so it
    /// cannot have applied the command already (which would make it refuse the record, P3).
    async fn fast_attempt(&self, data: CommandData) -> Attempt<O> {
        let (leader, leader_addr) = self.leader_addr().await?;
        let (term, version, witnesses, voters) = {
            let view = self.view.lock();
            let witnesses: Vec<String> = view
                .voters
                .iter()
                .filter(|&&v| v != leader)
                .filter_map(|&v| view.addr(v).map(str::to_owned))
                .collect();
            (
                view.term,
                view.cluster_version,
                witnesses,
                view.voters.len(),
            )
        };
        let needed = quorum::super_quorum(voters).saturating_sub(1);
        let wire = curppb::CommandData::from(&data);
        // F1: records to every other voter, in parallel with the proposal.
        let mut records: FuturesUnordered<_> = witnesses
            .iter()
            .map(|addr| {
                let req = curppb::ClientRecordRequest {
                    cmd: Some(wire.clone()),
                    term,
                    cluster_version: version,
                };
                self.call(self.transport.record(addr, req))
            })
            .collect();
        // The leader answers a command it cannot speculate (a conflict) with the ordered
        // result (F3), so the call may take as long as a `WaitSynced`.
        let propose = tokio::time::timeout(
            self.config.rpc_timeout.max(self.config.wait_synced_timeout),
            self.transport.propose(
                &leader_addr,
                curppb::ClientProposeRequest {
                    cmd: Some(wire),
                    cluster_version: version,
                },
            ),
        );
        let propose = async move { propose.await.unwrap_or(Err(ClientError::MemberTimeout)) };
        let mut propose = std::pin::pin!(propose);
        let mut answers = Vec::new();
        let proposed = loop {
            tokio::select! {
                biased;
                Some(answer) = records.next(), if !records.is_empty() => answers.push(answer),
                proposed = &mut propose => break proposed?,
            }
        };
        use curppb::client_propose_response::Result as R;
        let (leader_term, speculated) = match proposed.result {
            Some(R::Speculated(s)) => (s.term, s.output),
            Some(R::Applied(output)) => return Ok((Self::decode(&output)?, ResultKind::Final)),
            Some(R::Failure(f)) => return Err(ClientError::from(f)),
            None => return Err(ClientError::Malformed("Propose without a result".into())),
        };
        self.learn_term(leader, leader_term);
        if let Some(output) = speculated {
            // F2: the leader's answer plus SQ-1 accepted records in the leader's term; stop as
            // soon as that is reached or out of reach.
            let mut accepted = 0;
            let mut outstanding = witnesses.len();
            let mut answers = answers.into_iter();
            while accepted < needed && accepted + outstanding >= needed {
                let answer = match answers.next() {
                    Some(answer) => answer,
                    None => match records.next().await {
                        Some(answer) => answer,
                        None => break,
                    },
                };
                outstanding -= 1;
                if let Ok(curppb::ClientRecordResponse {
                    result: Some(curppb::client_record_response::Result::Recorded(r)),
                }) = answer
                {
                    if r.accepted && r.term == leader_term {
                        accepted += 1;
                    }
                    self.learn_term(leader, r.term);
                }
            }
            if accepted >= needed {
                return Ok((Self::decode(&output)?, ResultKind::Speculative));
            }
        }
        drop(records);
        // F3: the ordered result, from the leader that took the proposal.
        let output = self.wait_synced(&leader_addr, data).await?;
        Ok((output, ResultKind::Final))
    }

    /// One ordered-path attempt: `WaitSynced` at the leader.
    async fn ordered_attempt(&self, data: CommandData) -> Attempt<O> {
        let (_, addr) = self.leader_addr().await?;
        let output = self.wait_synced(&addr, data).await?;
        Ok((output, ResultKind::Final))
    }

    /// The ordered result of `data` from `addr`.
    async fn wait_synced(&self, addr: &str, data: CommandData) -> Result<O, ClientError> {
        let req = curppb::ClientWaitSyncedRequest {
            cmd: Some(curppb::CommandData::from(&data)),
        };
        let resp = tokio::time::timeout(
            self.config.wait_synced_timeout,
            self.transport.wait_synced(addr, req),
        )
        .await
        .unwrap_or(Err(ClientError::MemberTimeout))?;
        use curppb::client_wait_synced_response::Result as R;
        match resp.result {
            Some(R::Output(output)) => Self::decode(&output),
            Some(R::Failure(f)) => Err(ClientError::from(f)),
            None => Err(ClientError::Malformed("WaitSynced without a result".into())),
        }
    }

    /// A member answered in `term`: a higher term than known means a newer leadership (the
    /// leader is known only if it is `leader`'s own answer).
    fn learn_term(&self, leader: NodeId, term: Term) {
        let mut view = self.view.lock();
        if term > view.term {
            view.term = term;
            if view.leader != Some(leader) {
                view.leader = None;
            }
        }
    }

    /// Leader discovery: `FetchCluster` at every known address (the seeds included), in
    /// parallel; adopts the answer with the highest term, preferring one that knows a leader.
    async fn refresh(&self) -> Result<ClusterView, ClientError> {
        self.stats.lock().refreshes += 1;
        let mut addrs: BTreeSet<String> = self.seeds.iter().cloned().collect();
        addrs.extend(self.view.lock().addresses.values().flatten().cloned());
        let mut tasks = tokio::task::JoinSet::new();
        for addr in addrs {
            let transport = Arc::clone(&self.transport);
            let timeout = self.config.rpc_timeout;
            tasks.spawn(async move {
                tokio::time::timeout(timeout, transport.fetch_cluster(&addr))
                    .await
                    .unwrap_or(Err(ClientError::MemberTimeout))
            });
        }
        let mut best: Option<curppb::ClientFetchClusterResponse> = None;
        let mut last_err = ClientError::NoMembers;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(resp)) => {
                    let better = best.as_ref().is_none_or(|b| {
                        (resp.term, resp.leader.is_some()) > (b.term, b.leader.is_some())
                    });
                    if better {
                        best = Some(resp);
                    }
                }
                Ok(Err(e)) => last_err = e,
                Err(e) => last_err = ClientError::Malformed(format!("fetch task failed: {e}")),
            }
        }
        let best = best.ok_or(last_err)?;
        let mut view = self.view.lock();
        if best.term >= view.term {
            view.term = best.term;
            view.leader = best.leader;
            view.voters = best.voters.iter().copied().collect();
            view.cluster_version = best.cluster_version;
            let addresses: BTreeMap<NodeId, Vec<String>> = best
                .addresses
                .into_iter()
                .filter(|a| !a.urls.is_empty())
                .map(|a| (a.id, a.urls))
                .collect();
            if !addresses.is_empty() {
                view.addresses = addresses;
            }
        }
        Ok(view.clone())
    }
}

impl<C, O, K, T> Drop for CurpClient<C, O, K, T> {
    fn drop(&mut self) {
        if let Some(task) = self.keep_alive.lock().take() {
            task.abort();
        }
    }
}

/// Keep-alive interval before the leader told the lease's time to live.
const KEEP_ALIVE_INITIAL: Duration = Duration::from_millis(500);

/// Keeps the client id alive at the leader (CURP.md 5.1): about four keep-alives per time to
/// live; a keep-alive also registers the id (the first one goes at once). An expired id is
/// replaced by a fresh one.
async fn keep_alive<T: ClientTransport>(
    transport: Arc<T>,
    view: Arc<Mutex<ClusterView>>,
    ids: Arc<Ids>,
    rpc_timeout: Duration,
) {
    use curppb::client_keep_alive_response::Result as R;
    let mut interval = KEEP_ALIVE_INITIAL;
    loop {
        let leader = {
            let view = view.lock();
            view.leader.and_then(|l| view.addr(l).map(str::to_owned))
        };
        if let Some(addr) = leader {
            let client_id = ids.client_id();
            let req = curppb::ClientKeepAliveRequest { client_id };
            let answer = tokio::time::timeout(rpc_timeout, transport.keep_alive(&addr, req)).await;
            match answer {
                Ok(Ok(curppb::ClientKeepAliveResponse {
                    result: Some(R::Lease(lease)),
                })) => {
                    if lease.expired {
                        ids.renew(client_id);
                        continue;
                    }
                    interval = (Duration::from_millis(lease.ttl_ms) / 4)
                        .clamp(Duration::from_millis(10), Duration::from_secs(5));
                }
                Ok(Ok(curppb::ClientKeepAliveResponse {
                    result: Some(R::Failure(failure)),
                })) => {
                    if let ClientError::Rejected(Rejection::NotLeader { leader, term }) =
                        ClientError::from(failure)
                    {
                        let mut view = view.lock();
                        if term > view.term || (term == view.term && leader.is_some()) {
                            view.term = term;
                            view.leader = leader;
                        }
                    }
                    // Try the new leader soon.
                    tokio::time::sleep(KEEP_ALIVE_INITIAL.min(interval)).await;
                    continue;
                }
                // Unreachable or slow: the proposals' own retries refresh the view.
                _ => {}
            }
        }
        tokio::time::sleep(interval).await;
    }
}
