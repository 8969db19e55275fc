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

/// How many keep-alive responses may wait for a slow client before its stream stops reading.
const KEEP_ALIVE_BUFFER: usize = 16;

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
}

impl LeaseService {
    /// A Lease service over the member's context.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        let ids = Arc::new(LeaseIdGenerator::new(ctx.member.id));
        let stop = Arc::new(watch::channel(false).0);
        Self { ctx, ids, stop }
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
    /// Connects to the current leader's client URL, as the leader published it.
    async fn leader_client(&self) -> Result<(u64, LeaderLease), Status> {
        let leader = self
            .ctx
            .leader()
            .ok_or_else(|| Status::from(EtcdError::NoLeader))?;
        if leader == self.ctx.member.id {
            // This member leads but has not taken over the leases yet: never forward to itself.
            return Err(EtcdError::LeaderChanged.into());
        }
        let members = self.ctx.store.published_members().map_err(Status::from)?;
        let url = members
            .iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.client_ur_ls.first().cloned())
            .ok_or_else(|| Status::from(EtcdError::NoLeader))?;
        let channel = self
            .ctx
            .tls
            .client
            .endpoint(&url)
            .map_err(|_| Status::from(EtcdError::NoLeader))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|_| Status::from(EtcdError::LeaderChanged))?;
        Ok((leader, LeaderLease::new(channel)))
    }
}

/// Forwards one keep-alive to the leader (reusing the connection while the leader stays the
/// same) and returns the TTL it answered.
async fn forward_keep_alive(
    service: &LeaseService,
    leader: &mut Option<(u64, LeaderLease)>,
    id: i64,
) -> Result<i64, Status> {
    let current = service.ctx.leader();
    if leader.as_ref().map(|(l, _)| Some(*l)) != Some(current) {
        *leader = Some(service.leader_client().await?);
    }
    let Some((_, client)) = leader.as_mut() else {
        return Err(EtcdError::NoLeader.into());
    };
    let once = tokio_stream::once(LeaseKeepAliveRequest { id });
    let mut answers = client.lease_keep_alive(once).await?.into_inner();
    match answers.message().await? {
        Some(resp) => Ok(resp.ttl),
        None => Err(EtcdError::LeaderChanged.into()),
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

/// Answers each keep-alive on one stream, in order, until the client closes it.
///
/// As in etcd (3.4 and later: `EtcdServer.LeaseRenew` takes no auth info, and the renewal a
/// follower forwards carries none), no permission is checked here, not even with auth enabled:
/// renewing only delays an expiry, and revoking the lease or attaching keys to it is what needs
/// write permission on its keys (checked when applied). `tests/auth.rs` pins this against etcd.
async fn keep_alive_loop(
    service: LeaseService,
    mut requests: Streaming<LeaseKeepAliveRequest>,
    tx: tokio::sync::mpsc::Sender<Result<LeaseKeepAliveResponse, Status>>,
) {
    let mut stop = service.stop.subscribe();
    let mut leader = None;
    loop {
        let message = tokio::select! {
            message = requests.message() => message,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        // Otherwise the client closed its side or went away: nothing to answer.
        let Ok(Some(req)) = message else {
            return;
        };
        let lessor = Arc::clone(service.ctx.store.lessor());
        let ttl = match lessor.renew(req.id, EXPIRED_RENEW_WAIT).await {
            Renewal::Renewed(ttl) => ttl,
            // etcd answers an unknown (or just revoked) lease with TTL 0, not an error.
            Renewal::NotFound => 0,
            Renewal::Expired => {
                let _ = tx.send(Err(EtcdError::Timeout.into())).await;
                return;
            }
            // Only the leader tracks expiry: a follower forwards the keep-alive to it.
            Renewal::NotPrimary => match forward_keep_alive(&service, &mut leader, req.id).await {
                Ok(ttl) => ttl,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            },
        };
        let resp = LeaseKeepAliveResponse {
            header: service.header(),
            id: req.id,
            ttl,
        };
        if tx.send(Ok(resp)).await.is_err() {
            return;
        }
    }
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
        let requests = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(KEEP_ALIVE_BUFFER);
        tokio::spawn(keep_alive_loop(self.clone(), requests, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.check_lease_keys(request.metadata(), &[request.get_ref().id])
            .await?;
        let req = request.into_inner();
        // Remaining TTLs are known to the leader only (followers' leases never expire).
        if self.ctx.node.role().borrow().role != curp::core::Role::Leader {
            let (_, mut client) = self.leader_client().await?;
            let mut resp = client.lease_time_to_live(req).await?.into_inner();
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
