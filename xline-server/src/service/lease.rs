//! `etcdserverpb.Lease`.
//!
//! Grant and Revoke go through consensus (the id of a grant is chosen here, before proposing).
//! Only the leader tracks expiry, so a follower forwards KeepAlive and TimeToLive to it. Leases
//! is answered by every member from its own lessor, as etcd does (`EtcdServer.LeaseLeases`
//! lists its local lessor, without forwarding or a read barrier): which leases exist is
//! replicated state, applied on every member; only deadlines are the leader's.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use xline_proto::etcdserverpb::lease_server::Lease;
use xline_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};

use crate::command::{self, Command};
use crate::error::{EtcdError, ServerError};
use crate::lease::{EXPIRED_RETRY_INTERVAL, LeaseIdGenerator, MAX_LEASE_TTL, Renewal, run_expiry};
use crate::mvcc::store::CommandResponse;
use crate::server::ServerContext;

/// What a lease record costs in the backend beyond its request, for the quota check (etcd's
/// `leaseOverhead`).
const LEASE_OVERHEAD_BYTES: usize = 64;

/// How long a keep-alive waits for a leader (etcd's default request timeout).
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// How long a keep-alive of an expired lease waits for the lease's revocation. Twice the retry
/// interval covers one failed revocation attempt.
const EXPIRED_RENEW_WAIT: Duration = Duration::from_secs(2 * EXPIRED_RETRY_INTERVAL.as_secs());

/// Serves LeaseGrant, LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive and LeaseLeases.
#[derive(Debug, Clone)]
pub struct LeaseService {
    ctx: Arc<ServerContext>,
    ids: Arc<LeaseIdGenerator>,
    /// Becomes `true` when the server stops: keep-alive streams, which clients keep open for
    /// as long as they run, end so that the graceful shutdown can finish.
    stop: Arc<watch::Sender<bool>>,
    /// The connection to the leader's peer listener that every forwarded request shares
    /// (HTTP/2 multiplexes their streams), with the leader it goes to.
    to_leader: Arc<parking_lot::Mutex<Option<(u64, tonic::transport::Channel)>>>,
}

impl LeaseService {
    /// A Lease service over the member's context.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        let ids = Arc::new(LeaseIdGenerator::new(ctx.member.id));
        let stop = Arc::new(watch::channel(false).0);
        Self {
            ctx,
            ids,
            stop,
            to_leader: Arc::default(),
        }
    }

    /// For a server shutdown: this member stops tracking expiry (as a leader stepping down
    /// does, so nothing is revoked while connections drain), and every keep-alive stream ends.
    pub fn shutdown(&self) {
        self.ctx.store.lessor().demote();
        self.stop.send_replace(true);
    }

    /// Starts the primary's expiry task: each expired lease is revoked by proposing a
    /// `LeaseRevoke`. Abort the task when the server stops.
    pub fn spawn_expiry(&self) -> tokio::task::JoinHandle<()> {
        let node = self.ctx.node.clone();
        let revoke = move |id: i64| {
            let node = node.clone();
            async move {
                let cmd = Command::new(command::Request::LeaseRevoke(LeaseRevokeRequest { id }));
                match node.propose(cmd).await {
                    // Not found: a client revoked it first.
                    Ok(Ok(_) | Err(EtcdError::LeaseNotFound)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(lease = %format!("{id:x}"), error = %e, "revoking an expired lease failed");
                    }
                    // Shutting down, or consensus failed (logged where it failed); the lease
                    // is handed out again later if this member still leads.
                    Err(e) => {
                        tracing::debug!(lease = %format!("{id:x}"), error = %e, "revoking an expired lease failed");
                    }
                }
            }
        };
        tokio::spawn(run_expiry(Arc::clone(self.ctx.store.lessor()), revoke))
    }

    async fn propose(&self, request: command::Request) -> Result<CommandResponse, ServerError> {
        self.propose_as(request, None).await
    }

    /// [`Self::propose`] on behalf of a client's user (`crate::auth`).
    async fn propose_as(
        &self,
        request: command::Request,
        auth: Option<crate::auth::AuthHeader>,
    ) -> Result<CommandResponse, ServerError> {
        let output = self
            .ctx
            .node
            .propose(Command::with_auth(request, auth))
            .await
            .map_err(|e| ServerError::Consensus(e.to_string()))?;
        Ok(output?)
    }

    /// With auth enabled, the request's user must be able to read every key attached to the
    /// leases (etcd's `checkLeaseTimeToLive` and `checkLeaseLeases`), or be an admin.
    async fn check_lease_keys(
        &self,
        md: &tonic::metadata::MetadataMap,
        ids: &[i64],
    ) -> Result<(), ServerError> {
        let auth = self.ctx.store.auth();
        if !auth.is_enabled() {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = {
            let table = self.ctx.store.lessor().lock();
            ids.iter()
                .filter_map(|id| table.get(*id))
                .flat_map(|lease| lease.keys().map(<[u8]>::to_vec))
                .collect()
        };
        auth.check_keys(md, crate::auth::Access::Read, &keys)
            .await
            .map_err(ServerError::from)
    }

    /// An id for a grant that did not choose one; skips ids in use (the grant still fails if
    /// another grant takes it first, as etcd's does).
    fn new_id(&self) -> i64 {
        let lessor = self.ctx.store.lessor();
        loop {
            let id = self.ids.next_id();
            if !lessor.contains(id) {
                return id;
            }
        }
    }

    /// Grants a lease with a server-chosen id and `ttl_secs` (a Lock or Campaign that names no
    /// lease gets one, as etcd's sessions do); returns its id.
    pub async fn grant_session(&self, ttl_secs: i64) -> Result<i64, ServerError> {
        let req = LeaseGrantRequest {
            ttl: ttl_secs,
            id: self.new_id(),
        };
        match self.propose(command::Request::LeaseGrant(req)).await? {
            CommandResponse::LeaseGrant(resp) => Ok(resp.id),
            _ => Err(unexpected("lease grant")),
        }
    }

    /// The header of a response that carries the current revision.
    fn header(&self) -> Option<ResponseHeader> {
        Some(self.ctx.header(self.ctx.store.current_revision()))
    }
}

/// A client of the leader's Lease service, for the requests only the leader can answer
/// (keep-alive and time-to-live: only the leader tracks expiry, CURP.md section 7).
type LeaderLease = xline_proto::etcdserverpb::lease_client::LeaseClient<tonic::transport::Channel>;

impl LeaseService {
    /// Connects to the current leader's peer listener, which takes the identity of the client
    /// a forwarded request is made for (`crate::tls::forward_identity`).
    async fn leader_client(&self) -> Result<(u64, LeaderLease), Status> {
        let leader = self
            .ctx
            .leader()
            .ok_or_else(|| Status::from(EtcdError::NoLeader))?;
        if leader == self.ctx.member.id {
            // This member leads but has not taken over the leases yet: never forward to itself.
            return Err(EtcdError::LeaderChanged.into());
        }
        let cached = self
            .to_leader
            .lock()
            .as_ref()
            .filter(|(l, _)| *l == leader)
            .map(|(_, channel)| channel.clone());
        let channel = match cached {
            Some(channel) => channel,
            None => {
                let channel = self
                    .ctx
                    .peer_channel(leader, Duration::from_secs(5))
                    .await?;
                *self.to_leader.lock() = Some((leader, channel.clone()));
                channel
            }
        };
        Ok((leader, LeaderLease::new(channel)))
    }

    /// Drops the shared connection to `leader` after a request on it failed (the next one
    /// connects again).
    fn forget_leader(&self, leader: u64) {
        let mut cached = self.to_leader.lock();
        if cached.as_ref().is_some_and(|(l, _)| *l == leader) {
            *cached = None;
        }
    }
}

/// One client keep-alive stream's forwarding stream to the leader: every keep-alive the
/// client sends while this member follows the same leader travels on it, in order (the
/// leader answers a stream's keep-alives in order).
struct Forwarding {
    /// The leader the stream goes to.
    leader: u64,
    /// The keep-alives to forward.
    requests: tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>,
    /// The leader's answers.
    answers: Streaming<LeaseKeepAliveResponse>,
}

impl Forwarding {
    /// Opens a forwarding stream to the current leader for the client of `md`.
    async fn open(
        service: &LeaseService,
        md: &tonic::metadata::MetadataMap,
    ) -> Result<Self, Status> {
        let (leader, mut client) = service.leader_client().await?;
        let (requests, rx) = tokio::sync::mpsc::channel(1);
        let mut request = Request::new(ReceiverStream::new(rx));
        crate::tls::forward_identity(md, request.metadata_mut());
        let answers = match client.lease_keep_alive(request).await {
            Ok(answers) => answers.into_inner(),
            Err(status) => {
                service.forget_leader(leader);
                return Err(status);
            }
        };
        Ok(Self {
            leader,
            requests,
            answers,
        })
    }

    /// Forwards one keep-alive and returns the TTL the leader answered.
    async fn renew(&mut self, id: i64) -> Result<i64, Status> {
        if self
            .requests
            .send(LeaseKeepAliveRequest { id })
            .await
            .is_err()
        {
            return Err(EtcdError::LeaderChanged.into());
        }
        match self.answers.message().await? {
            Some(resp) => Ok(resp.ttl),
            None => Err(EtcdError::LeaderChanged.into()),
        }
    }
}

/// Forwards one keep-alive to the leader on the client stream's forwarding stream (opening
/// one when there is none or the leader changed) and returns the TTL it answered. A stream
/// that broke while the leader stayed the same (the leader restarted, a connection dropped)
/// is opened again once; any other failure ends the client's stream with the error, as a
/// failed forward did before.
async fn forward_keep_alive(
    service: &LeaseService,
    forward: &mut Option<Forwarding>,
    md: &tonic::metadata::MetadataMap,
    id: i64,
) -> Result<i64, Status> {
    let current = service.ctx.leader();
    let reused = match forward {
        Some(f) if Some(f.leader) == current => true,
        _ => {
            *forward = Some(Forwarding::open(service, md).await?);
            false
        }
    };
    let Some(f) = forward.as_mut() else {
        return Err(EtcdError::NoLeader.into());
    };
    let leader = f.leader;
    match f.renew(id).await {
        Ok(ttl) => Ok(ttl),
        Err(_) if reused => {
            *forward = None;
            // The shared connection may be what broke.
            service.forget_leader(leader);
            let mut fresh = Forwarding::open(service, md).await?;
            let ttl = fresh.renew(id).await;
            *forward = ttl.is_ok().then_some(fresh);
            ttl
        }
        Err(e) => {
            *forward = None;
            Err(e)
        }
    }
}

fn unexpected(what: &str) -> ServerError {
    ServerError::Corrupt(format!(
        "apply returned a response of the wrong kind for {what}"
    ))
}

/// The stream of keep-alive responses.
type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

/// One client keep-alive stream: answers each keep-alive, in order, until the client closes it.
///
/// As in etcd (3.4 and later: `EtcdServer.LeaseRenew` takes no auth info, and the renewal a
/// follower forwards carries none), no permission is checked here, not even with auth enabled:
/// renewing only delays an expiry, and revoking the lease or attaching keys to it is what needs
/// write permission on its keys (checked when applied). `tests/auth.rs` pins this against etcd.
struct KeepAlive {
    /// The Lease service.
    service: LeaseService,
    /// The client's metadata (its identity, for a forwarded keep-alive).
    md: tonic::metadata::MetadataMap,
    /// The client's keep-alives.
    requests: Streaming<LeaseKeepAliveRequest>,
    /// Set when the server stops.
    stop: watch::Receiver<bool>,
    /// The stream to the leader this member forwards keep-alives on, while it follows.
    forward: Option<Forwarding>,
}

impl KeepAlive {
    /// The answer to the client's next keep-alive; `None` once the client closed its side,
    /// went away, or the server stops.
    async fn next(&mut self) -> Option<Result<LeaseKeepAliveResponse, Status>> {
        let message = tokio::select! {
            message = self.requests.message() => message,
            _ = self.stop.wait_for(|stop| *stop) => return None,
        };
        let req = message.ok()??;
        Some(self.renew(req.id).await.map(|ttl| LeaseKeepAliveResponse {
            header: self.service.header(),
            id: req.id,
            ttl,
        }))
    }

    /// Renews lease `id` here if this member tracks expiry, or else through the leader; the
    /// TTL it has now. As etcd's `LeaseRenew` on a follower, a renewal waits up to
    /// [`LEADER_WAIT`] for a leader while there is none, or while leadership moves (the
    /// forwarding stream broke and another member leads now, or this member was elected and
    /// takes the leases over): the client's stream lives on across a leader change.
    async fn renew(&mut self, id: i64) -> Result<i64, Status> {
        let ctx = Arc::clone(&self.service.ctx);
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut role = ctx.node.role();
        loop {
            match ctx.store.lessor().renew(id, EXPIRED_RENEW_WAIT).await {
                Renewal::Renewed(ttl) => return Ok(ttl),
                // etcd answers an unknown (or just revoked) lease with TTL 0, not an error.
                Renewal::NotFound => return Ok(0),
                Renewal::Expired => return Err(EtcdError::Timeout.into()),
                // Only the leader tracks expiry: a follower forwards the keep-alive to it.
                Renewal::NotPrimary => {}
            }
            role.borrow_and_update();
            let leader = ctx.leader();
            let mut failure = None;
            if leader.is_some_and(|l| l != ctx.member.id) {
                match forward_keep_alive(&self.service, &mut self.forward, &self.md, id).await {
                    Ok(ttl) => return Ok(ttl),
                    // The leader's own answer (the lease expired there): final.
                    Err(status) if status.message() == EtcdError::Timeout.to_string() => {
                        return Err(status);
                    }
                    Err(status) => failure = Some(status),
                }
            }
            // No leader, this member taking the leases over, or the leader failed: wait
            // (bounded) for leadership to move, then try again; a failure that no change of
            // leader explains is the answer.
            let moved = if leader == Some(ctx.member.id) {
                // Promotion follows the role change within a moment.
                tokio::time::sleep(Duration::from_millis(20)).await;
                tokio::time::Instant::now() < deadline
            } else {
                let changed = async {
                    while role.changed().await.is_ok() {
                        if role.borrow_and_update().leader != leader {
                            return true;
                        }
                    }
                    false
                };
                matches!(tokio::time::timeout_at(deadline, changed).await, Ok(true))
            };
            if !moved {
                return Err(failure.unwrap_or_else(|| EtcdError::NoLeader.into()));
            }
        }
    }
}

/// The responses to one client keep-alive stream. They are computed as the response stream
/// is polled, on the connection's own task, rather than on a task of their own that hands
/// them over through a channel: a keep-alive whose request is already in is answered in the
/// same poll that sends the response headers (one write for both, as etcd's clientv3
/// `KeepAliveOnce` opens a stream per keep-alive), with no cross-task wake-ups. An error
/// ends the stream.
fn keep_alive_stream(
    service: LeaseService,
    md: tonic::metadata::MetadataMap,
    requests: Streaming<LeaseKeepAliveRequest>,
) -> KeepAliveStream {
    let stop = service.stop.subscribe();
    let state = KeepAlive {
        service,
        md,
        requests,
        stop,
        forward: None,
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next().await? {
            Ok(resp) => Some((Ok(resp), Some(state))),
            Err(status) => Some((Err(status), None)),
        }
    }))
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        // As etcd: no permission is needed to grant a lease, not even a user when auth is
        // enabled (attaching keys to it is what is checked).
        let mut req = request.into_inner();
        // Applying checks it too; refusing here saves a proposal.
        if req.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        // etcd's quotaLeaseServer: a grant adds a lease record to the backend.
        let cost = (prost::Message::encoded_len(&req) + LEASE_OVERHEAD_BYTES) as u64;
        self.ctx.check_quota(cost).await?;
        if req.id == 0 {
            req.id = self.new_id();
        }
        match self.propose(command::Request::LeaseGrant(req)).await? {
            CommandResponse::LeaseGrant(mut resp) => {
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                resp.header = Some(self.ctx.header(revision));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("lease grant").into()),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let auth = self
            .ctx
            .store
            .auth()
            .proposal_header(request.metadata())
            .await;
        let auth = auth.map_err(ServerError::from)?;
        let req = request.into_inner();
        match self
            .propose_as(command::Request::LeaseRevoke(req), auth)
            .await?
        {
            CommandResponse::LeaseRevoke(mut resp) => {
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                resp.header = Some(self.ctx.header(revision));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("lease revoke").into()),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let (md, _, requests) = request.into_parts();
        Ok(Response::new(keep_alive_stream(self.clone(), md, requests)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.check_lease_keys(request.metadata(), &[request.get_ref().id])
            .await?;
        let (md, _, req) = request.into_parts();
        // Remaining TTLs are known to the leader only (followers' leases never expire); the
        // leader checks the caller's permissions again.
        if self.ctx.node.role().borrow().role != curp::core::Role::Leader {
            let (leader, mut client) = self.leader_client().await?;
            let mut forwarded = Request::new(req);
            crate::tls::forward_identity(&md, forwarded.metadata_mut());
            let mut resp = match client.lease_time_to_live(forwarded).await {
                Ok(resp) => resp.into_inner(),
                Err(status) => {
                    self.forget_leader(leader);
                    return Err(status);
                }
            };
            resp.header = self.header();
            return Ok(Response::new(resp));
        }
        let now = tokio::time::Instant::now();
        let found = {
            let table = self.ctx.store.lessor().lock();
            table.get(req.id).map(|lease| {
                let keys = if req.keys {
                    lease.keys().map(<[u8]>::to_vec).collect()
                } else {
                    Vec::new()
                };
                (lease.remaining_secs(now), lease.ttl(), keys)
            })
        };
        // etcd answers an unknown lease with TTL -1, not an error.
        let (ttl, granted_ttl, keys) = found.unwrap_or((-1, 0, Vec::new()));
        Ok(Response::new(LeaseTimeToLiveResponse {
            header: self.header(),
            id: req.id,
            ttl,
            granted_ttl,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let all = self.ctx.store.lessor().lock().ids_by_expiry();
        self.check_lease_keys(request.metadata(), &all).await?;
        // The applied leases of this member (see the module docs). On a follower no lease has
        // a deadline, so they come in id order; the leader's come soonest expiry first.
        let ids = self.ctx.store.lessor().lock().ids_by_expiry();
        Ok(Response::new(LeaseLeasesResponse {
            header: self.header(),
            leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(),
        }))
    }
}
