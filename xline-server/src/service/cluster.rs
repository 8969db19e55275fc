//! `etcdserverpb.Cluster`: membership, with etcd's semantics and errors.
//!
//! Changes are single-server consensus changes ([`ConfChange`]) that carry the member's peer
//! URLs, so every member learns them from the log and dials its peers accordingly. Only the
//! leader checks and proposes a change: any other member forwards the request to the leader's
//! peer URL, then waits until it has applied the change itself (a read-index barrier), so
//! that a `MemberList` on the member called right after reflects it.
//!
//! With auth enabled, every change needs an admin (etcd's `checkMembershipOperationPermission`):
//! the member called checks the caller (token, or certificate user), and a forwarded request
//! carries that identity on to the leader, which checks it again (`crate::tls::forward_identity`).
//!
//! etcd's `--strict-reconfig-check` rules are applied on the leader: a voter is added, removed
//! or promoted only if the voters that have published themselves (started) keep a quorum.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use curp::ProposeError;
use curp::core::{ConfChange, Membership, NodeId, Role};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use xline_proto::etcdserverpb::cluster_client::ClusterClient;
use xline_proto::etcdserverpb::cluster_server::Cluster;
use xline_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

use crate::config;
use crate::error::{EtcdError, ServerError};
use crate::server::ServerContext;

/// etcd allows at most this many learners at a time.
const MAX_LEARNERS: usize = 1;
/// How often a request is tried again after the leader changed under it.
const ATTEMPTS: usize = 3;
/// etcd's `HealthInterval`: a peer counts as connected once its link has been up this long.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Serves the Cluster service.
#[derive(Debug, Clone)]
pub struct ClusterService {
    ctx: Arc<ServerContext>,
}

/// A request to forward to the leader, with the caller's identity (metadata `md`) on it.
fn forwarded<T>(md: &MetadataMap, message: T) -> Request<T> {
    let mut request = Request::new(message);
    crate::tls::forward_identity(md, request.metadata_mut());
    request
}

/// Where a membership request is handled.
enum Route {
    /// This member leads: check and propose here.
    Local,
    /// Forward to the leader over this channel.
    Forward(ClusterClient<Channel>),
}

impl ClusterService {
    /// A Cluster service over the member's context.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        Self { ctx }
    }

    /// The members as this member knows them, ordered by id as etcd lists them: voters and
    /// learners from consensus, names and client URLs as each member published them (empty
    /// for a member that has not started yet), peer URLs from the configuration.
    pub(crate) fn members(&self) -> Result<Vec<Member>, ServerError> {
        let membership = self.ctx.node.status().membership;
        self.members_of(&membership)
    }

    /// [`ClusterService::members`] for `membership`.
    fn members_of(&self, membership: &Membership) -> Result<Vec<Member>, ServerError> {
        let published = self.ctx.store.published_members()?;
        let ids: BTreeSet<NodeId> = membership
            .voters
            .iter()
            .chain(membership.learners.iter())
            .copied()
            .collect();
        Ok(ids
            .into_iter()
            .map(|id| {
                let public = published.iter().find(|m| m.id == id);
                let known = self.ctx.initial_members.iter().find(|m| m.id == id);
                Member {
                    id,
                    name: public.map(|m| m.name.clone()).unwrap_or_default(),
                    peer_ur_ls: membership
                        .peers
                        .get(&id)
                        .cloned()
                        .or_else(|| public.map(|m| m.peer_ur_ls.clone()))
                        .or_else(|| known.map(|m| m.peer_urls.clone()))
                        .unwrap_or_default(),
                    client_ur_ls: public.map(|m| m.client_ur_ls.clone()).unwrap_or_default(),
                    is_learner: membership.learners.contains(&id),
                }
            })
            .collect())
    }

    /// Ids of the members that have published their attributes (etcd's "started").
    fn started(&self) -> Result<BTreeSet<NodeId>, ServerError> {
        Ok(self
            .ctx
            .store
            .published_members()?
            .into_iter()
            .filter(|m| !m.name.is_empty())
            .map(|m| m.id)
            .collect())
    }

    /// Whether this member's link to `peer` has been up for [`HEALTH_INTERVAL`].
    fn connected(&self, peer: NodeId) -> bool {
        peer == self.ctx.member.id
            || self
                .ctx
                .node
                .peer_connected_since(peer)
                .is_some_and(|since| since.elapsed() >= HEALTH_INTERVAL)
    }

    /// etcd's `isConnectedFullySince`: every voter is connected.
    fn connected_fully(&self, m: &Membership) -> bool {
        m.voters.iter().all(|v| self.connected(*v))
    }

    /// Decides where to handle a request: here when this member leads, else at the leader.
    async fn route(&self) -> Result<Route, Status> {
        let role = *self.ctx.node.role().borrow();
        if role.role == Role::Leader {
            return Ok(Route::Local);
        }
        let leader = role
            .leader
            .ok_or_else(|| Status::from(EtcdError::NoLeader))?;
        // The leader's peer listener, which believes the caller's identity this member
        // forwards (`crate::tls::CertUserLayer::peer`).
        let channel = self
            .ctx
            .peer_channel(leader, Duration::from_secs(15))
            .await?;
        Ok(Route::Forward(ClusterClient::new(channel)))
    }

    /// After the leader answered a forwarded change: waits until this member has applied
    /// everything the leader had committed, the change included.
    async fn catch_up(&self) -> Result<(), Status> {
        self.ctx
            .node
            .linearizable_barrier()
            .await
            .map(|_| ())
            .map_err(|e| Status::from(ServerError::from(e)))
    }

    /// Proposes `change` here (the leader); `invalid` is the error etcd gives when the change
    /// no longer applies (another change got in between). Returns the configuration after it.
    async fn propose(&self, change: ConfChange, invalid: EtcdError) -> Result<Membership, Status> {
        match self.ctx.node.change_membership(change).await {
            Ok(()) => Ok(self.ctx.node.status().membership),
            Err(ProposeError::InvalidChange) => Err(invalid.into()),
            Err(ProposeError::LearnerNotReady) => Err(EtcdError::LearnerNotReady.into()),
            Err(e) => Err(ServerError::from(e).into()),
        }
    }

    /// etcd's `checkMembershipOperationPermission`: an admin, when auth is enabled.
    async fn check_admin(&self, md: &MetadataMap) -> Result<(), Status> {
        let auth = self.ctx.store.auth();
        auth.check_admin(md)
            .await
            .map_err(|e| Status::from(ServerError::from(e)))
    }

    /// Whether the error says the leader moved while the request was handled.
    fn leader_moved(status: &Status) -> bool {
        status.message() == EtcdError::NotLeader.to_string()
            || status.message() == EtcdError::LeaderChanged.to_string()
    }

    /// MemberAdd at the leader.
    async fn add_here(&self, req: &MemberAddRequest) -> Result<MemberAddResponse, Status> {
        let membership = self.ctx.node.status().membership;
        // etcd's strict reconfiguration check first, then the validation.
        if !req.is_learner {
            let started = self.started().map_err(Status::from)?;
            if !ready_to_add_voter(&membership, &started) {
                return Err(EtcdError::MemberNotEnoughStarted.into());
            }
        }
        if !self.connected_fully(&membership) {
            return Err(EtcdError::Unhealthy.into());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = config::new_member_id(&req.peer_ur_ls, now);
        if membership.voters.contains(&id) || membership.learners.contains(&id) {
            return Err(EtcdError::MemberExist.into());
        }
        let published = self.ctx.store.published_members().map_err(Status::from)?;
        let taken = membership
            .peers
            .values()
            .chain(
                published
                    .iter()
                    .filter(|m| {
                        membership.voters.contains(&m.id) || membership.learners.contains(&m.id)
                    })
                    .map(|m| &m.peer_ur_ls),
            )
            .any(|urls| urls.iter().any(|u| req.peer_ur_ls.contains(u)));
        if taken {
            return Err(EtcdError::PeerUrlExist.into());
        }
        if req.is_learner && membership.learners.len() >= MAX_LEARNERS {
            return Err(EtcdError::TooManyLearners.into());
        }
        let change = ConfChange::Add {
            id,
            peer_urls: req.peer_ur_ls.clone(),
            learner: req.is_learner,
        };
        let after = self.propose(change, EtcdError::PeerUrlExist).await?;
        Ok(MemberAddResponse {
            header: Some(self.ctx.header(0)),
            member: Some(Member {
                id,
                name: String::new(),
                peer_ur_ls: req.peer_ur_ls.clone(),
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members: self.members_of(&after).map_err(Status::from)?,
        })
    }

    /// MemberRemove at the leader.
    async fn remove_here(&self, id: NodeId) -> Result<MemberRemoveResponse, Status> {
        let membership = self.ctx.node.status().membership;
        if membership.voters.contains(&id) {
            let started = self.started().map_err(Status::from)?;
            if !ready_to_remove_voter(&membership, &started, id) {
                return Err(EtcdError::MemberNotEnoughStarted.into());
            }
            // A member that is down may go; otherwise the connected voters other than the one
            // removed must stay a quorum.
            let down = id != self.ctx.member.id && self.ctx.node.peer_connected_since(id).is_none();
            let active = membership
                .voters
                .iter()
                .filter(|v| self.connected(**v))
                .count();
            if !down && active.saturating_sub(1) < 1 + (membership.voters.len() - 1) / 2 {
                return Err(EtcdError::Unhealthy.into());
            }
        } else if !membership.learners.contains(&id) {
            return Err(EtcdError::MemberNotFound.into());
        }
        let after = self
            .propose(ConfChange::Remove(id), EtcdError::MemberNotFound)
            .await?;
        Ok(MemberRemoveResponse {
            header: Some(self.ctx.header(0)),
            members: self.members_of(&after).map_err(Status::from)?,
        })
    }

    /// MemberUpdate at the leader.
    async fn update_here(&self, req: &MemberUpdateRequest) -> Result<MemberUpdateResponse, Status> {
        let membership = self.ctx.node.status().membership;
        if !membership.voters.contains(&req.id) && !membership.learners.contains(&req.id) {
            return Err(EtcdError::MemberNotFound.into());
        }
        let taken = membership
            .peers
            .iter()
            .filter(|(id, _)| **id != req.id)
            .any(|(_, urls)| urls.iter().any(|u| req.peer_ur_ls.contains(u)));
        if taken {
            return Err(EtcdError::PeerUrlExist.into());
        }
        let unchanged = membership.peers.get(&req.id) == Some(&req.peer_ur_ls);
        if !unchanged && req.id == self.ctx.node.id() {
            // A leader whose peer URLs change stops hearing its followers: their links follow
            // the new URLs as soon as they append the change, before this member restarts
            // there, so the change itself could never commit. Hand leadership to another voter
            // first; the caller's retry loop then goes through the new leader.
            if let Some(&successor) = membership.voters.iter().find(|v| **v != req.id) {
                self.ctx
                    .node
                    .transfer_leader(successor)
                    .await
                    .map_err(ServerError::from)?;
                return Err(EtcdError::LeaderChanged.into());
            }
        }
        let after = if unchanged {
            // Nothing to change (etcd commits a no-op change; the outcome is the same).
            membership
        } else {
            let change = ConfChange::Update {
                id: req.id,
                peer_urls: req.peer_ur_ls.clone(),
            };
            self.propose(change, EtcdError::MemberNotFound).await?
        };
        Ok(MemberUpdateResponse {
            header: Some(self.ctx.header(0)),
            members: self.members_of(&after).map_err(Status::from)?,
        })
    }

    /// MemberPromote at the leader.
    async fn promote_here(&self, id: NodeId) -> Result<MemberPromoteResponse, Status> {
        let membership = self.ctx.node.status().membership;
        if membership.voters.contains(&id) {
            return Err(EtcdError::MemberNotLearner.into());
        }
        if !membership.learners.contains(&id) {
            return Err(EtcdError::MemberNotFound.into());
        }
        let started = self.started().map_err(Status::from)?;
        if !ready_to_promote(&membership, &started) {
            return Err(EtcdError::MemberNotEnoughStarted.into());
        }
        let after = self
            .propose(ConfChange::Promote(id), EtcdError::MemberNotLearner)
            .await?;
        Ok(MemberPromoteResponse {
            header: Some(self.ctx.header(0)),
            members: self.members_of(&after).map_err(Status::from)?,
        })
    }
}

/// Checks peer URLs as etcd's `types.NewURLs` does: each `scheme://host:port` with an
/// http(s) or unix(s) scheme and no path.
fn valid_peer_urls(urls: &[String]) -> bool {
    !urls.is_empty()
        && urls.iter().all(|u| {
            let Some((scheme, rest)) = u.split_once("://") else {
                return false;
            };
            if !["http", "https", "unix", "unixs"].contains(&scheme) {
                return false;
            }
            if rest.contains('/') {
                return false;
            }
            match rest.rsplit_once(':') {
                Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
                None => false,
            }
        })
}

/// etcd's `IsReadyToAddVotingMember`: the started voters stay a quorum of the voters plus the
/// new one (a single started voter may always add a second).
fn ready_to_add_voter(m: &Membership, started: &BTreeSet<NodeId>) -> bool {
    let members = m.voters.len() + 1;
    let up = m.voters.iter().filter(|v| started.contains(v)).count();
    (up == 1 && members == 2) || up > members / 2
}

/// etcd's `IsReadyToRemoveVotingMember`: the other started voters are a quorum of the rest.
fn ready_to_remove_voter(m: &Membership, started: &BTreeSet<NodeId>, id: NodeId) -> bool {
    let rest: Vec<_> = m.voters.iter().filter(|v| **v != id).collect();
    let up = rest.iter().filter(|v| started.contains(v)).count();
    up > rest.len() / 2
}

/// etcd's `IsReadyToPromoteMember`: the started voters plus the learner are a quorum of the
/// voters plus the learner.
fn ready_to_promote(m: &Membership, started: &BTreeSet<NodeId>) -> bool {
    let members = m.voters.len() + 1;
    let up = m.voters.iter().filter(|v| started.contains(v)).count() + 1;
    up > members / 2
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        if !valid_peer_urls(&request.get_ref().peer_ur_ls) {
            return Err(EtcdError::MemberBadUrls.into());
        }
        self.check_admin(request.metadata()).await?;
        let (md, _, req) = request.into_parts();
        let mut last = Status::from(EtcdError::NoLeader);
        for _ in 0..ATTEMPTS {
            let result = match self.route().await? {
                Route::Local => self.add_here(&req).await,
                Route::Forward(mut leader) => {
                    match leader.member_add(forwarded(&md, req.clone())).await {
                        Ok(resp) => {
                            self.catch_up().await?;
                            let mut resp = resp.into_inner();
                            resp.header = Some(self.ctx.header(0));
                            Ok(resp)
                        }
                        Err(status) => Err(status),
                    }
                }
            };
            match result {
                Err(status) if Self::leader_moved(&status) => last = status,
                other => return other.map(Response::new),
            }
        }
        Err(last)
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.check_admin(request.metadata()).await?;
        let (md, _, req) = request.into_parts();
        let mut last = Status::from(EtcdError::NoLeader);
        for _ in 0..ATTEMPTS {
            let result = match self.route().await? {
                Route::Local => self.remove_here(req.id).await,
                Route::Forward(mut leader) => match leader.member_remove(forwarded(&md, req)).await
                {
                    Ok(resp) => {
                        // A removed member cannot catch up any more: answer at once.
                        if req.id != self.ctx.member.id {
                            self.catch_up().await?;
                        }
                        let mut resp = resp.into_inner();
                        resp.header = Some(self.ctx.header(0));
                        Ok(resp)
                    }
                    Err(status) => Err(status),
                },
            };
            match result {
                Err(status) if Self::leader_moved(&status) => last = status,
                other => return other.map(Response::new),
            }
        }
        Err(last)
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.check_admin(request.metadata()).await?;
        let (md, _, req) = request.into_parts();
        let mut last = Status::from(EtcdError::NoLeader);
        for _ in 0..ATTEMPTS {
            let result = match self.route().await? {
                Route::Local => self.update_here(&req).await,
                Route::Forward(mut leader) => {
                    match leader.member_update(forwarded(&md, req.clone())).await {
                        Ok(resp) => {
                            // A member whose own peer URLs changed is cut off until it restarts
                            // on them: it cannot wait to apply the change.
                            if req.id != self.ctx.node.id() {
                                self.catch_up().await?;
                            }
                            let mut resp = resp.into_inner();
                            resp.header = Some(self.ctx.header(0));
                            Ok(resp)
                        }
                        Err(status) => Err(status),
                    }
                }
            };
            match result {
                Err(status) if Self::leader_moved(&status) => last = status,
                other => return other.map(Response::new),
            }
        }
        Err(last)
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            // etcd's cluster-service headers carry no revision.
            header: Some(self.ctx.header(0)),
            members: self.members().map_err(Status::from)?,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.check_admin(request.metadata()).await?;
        let (md, _, req) = request.into_parts();
        let mut last = Status::from(EtcdError::NoLeader);
        for _ in 0..ATTEMPTS {
            let result = match self.route().await? {
                Route::Local => self.promote_here(req.id).await,
                Route::Forward(mut leader) => {
                    match leader.member_promote(forwarded(&md, req)).await {
                        Ok(resp) => {
                            self.catch_up().await?;
                            let mut resp = resp.into_inner();
                            resp.header = Some(self.ctx.header(0));
                            Ok(resp)
                        }
                        Err(status) => Err(status),
                    }
                }
            };
            match result {
                Err(status) if Self::leader_moved(&status) => last = status,
                other => return other.map(Response::new),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(voters: &[NodeId], learners: &[NodeId]) -> Membership {
        Membership {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            ..Membership::default()
        }
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn peer_urls_are_checked_as_etcd_does() {
        assert!(valid_peer_urls(&["http://127.0.0.1:2380".into()]));
        assert!(valid_peer_urls(&[
            "https://a:1".into(),
            "http://b:2".into()
        ]));
        assert!(!valid_peer_urls(&[]));
        assert!(!valid_peer_urls(&["127.0.0.1:2380".into()]));
        assert!(!valid_peer_urls(&["http://127.0.0.1".into()]));
        assert!(!valid_peer_urls(&["ftp://a:1".into()]));
        assert!(!valid_peer_urls(&["http://a:1/path".into()]));
    }

    #[test]
    fn strict_reconfiguration_checks() {
        // One started voter may add a second; 2 of 3 started may add a fourth (3 of 4 needed).
        assert!(ready_to_add_voter(&m(&[1], &[]), &set(&[1])));
        assert!(ready_to_add_voter(&m(&[1, 2], &[]), &set(&[1, 2])));
        assert!(!ready_to_add_voter(&m(&[1, 2], &[]), &set(&[1])));
        assert!(!ready_to_add_voter(&m(&[1, 2, 3], &[]), &set(&[1, 2])));
        assert!(ready_to_add_voter(&m(&[1, 2, 3], &[]), &set(&[1, 2, 3])));
        // Removing: the rest must keep a quorum of started members.
        assert!(ready_to_remove_voter(&m(&[1, 2, 3], &[]), &set(&[1, 2]), 3));
        assert!(!ready_to_remove_voter(
            &m(&[1, 2, 3, 4], &[]),
            &set(&[1]),
            4
        ));
        // Promoting counts the learner as started.
        assert!(ready_to_promote(&m(&[1, 2, 3], &[4]), &set(&[1, 2])));
        assert!(!ready_to_promote(&m(&[1, 2, 3], &[4]), &set(&[1])));
    }
}
