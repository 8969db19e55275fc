//! `etcdserverpb.Cluster`: membership. A single member lists itself; changing membership comes
//! with the replicated cluster and answers `Unimplemented` until then.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use xline_proto::etcdserverpb::cluster_server::Cluster;
use xline_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

use crate::error::ServerError;
use crate::server::ServerContext;

/// Serves MemberList; the other RPCs are not available yet.
#[derive(Debug, Clone)]
pub struct ClusterService {
    ctx: Arc<ServerContext>,
}

impl ClusterService {
    /// A Cluster service over the member's context.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        Self { ctx }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(ServerError::Unimplemented("/etcdserverpb.Cluster/MemberAdd").into())
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(ServerError::Unimplemented("/etcdserverpb.Cluster/MemberRemove").into())
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(ServerError::Unimplemented("/etcdserverpb.Cluster/MemberUpdate").into())
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        // Voters and learners as consensus knows them; names and client URLs as each member
        // published them through consensus.
        let membership = self.ctx.node.status().membership;
        let published = self.ctx.store.published_members().map_err(Status::from)?;
        let describe = |id: u64, is_learner: bool| {
            let known = self.ctx.initial_members.iter().find(|m| m.id == id);
            let public = published.iter().find(|m| m.id == id);
            Member {
                id,
                // A member that has not published itself yet is listed without name and
                // client URLs, as etcd lists an unstarted member.
                name: public.map(|m| m.name.clone()).unwrap_or_default(),
                peer_ur_ls: public
                    .map(|m| m.peer_ur_ls.clone())
                    .or_else(|| known.map(|m| m.peer_urls.clone()))
                    .unwrap_or_default(),
                client_ur_ls: public.map(|m| m.client_ur_ls.clone()).unwrap_or_default(),
                is_learner,
            }
        };
        let members = membership
            .voters
            .iter()
            .map(|id| describe(*id, false))
            .chain(membership.learners.iter().map(|id| describe(*id, true)))
            .collect();
        Ok(Response::new(MemberListResponse {
            // etcd's cluster-service headers carry no revision.
            header: Some(self.ctx.header(0)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(ServerError::Unimplemented("/etcdserverpb.Cluster/MemberPromote").into())
    }
}
