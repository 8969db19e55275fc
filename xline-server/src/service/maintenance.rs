//! `etcdserverpb.Maintenance`: Status, alarm listing and MoveLeader. Snapshot, hashing,
//! defragmentation and downgrade answer `Unimplemented` until they are built.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};
use xline_proto::etcdserverpb::maintenance_server::Maintenance;
use xline_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
    alarm_request,
};

use crate::error::{EtcdError, ServerError};
use crate::server::{ETCD_VERSION, ServerContext};

/// Serves Status and Alarm (listing and disarming; no alarm is raised yet).
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    ctx: Arc<ServerContext>,
}

impl MaintenanceService {
    /// A Maintenance service over the member's context.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        Self { ctx }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        match request.into_inner().action() {
            // Nothing raises alarms yet (the quota check refuses writes directly), so the list is
            // empty and disarming has nothing to do.
            alarm_request::AlarmAction::Get | alarm_request::AlarmAction::Deactivate => {
                Ok(Response::new(AlarmResponse {
                    header: Some(self.ctx.header(self.ctx.store.current_revision())),
                    alarms: Vec::new(),
                }))
            }
            alarm_request::AlarmAction::Activate => {
                Err(ServerError::Unimplemented("/etcdserverpb.Maintenance/Alarm (activate)").into())
            }
        }
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let store = &self.ctx.store;
        let db_size = store.backend().size().map_err(ServerError::from)?;
        let db_size = i64::try_from(db_size).unwrap_or(i64::MAX);
        let status = self.ctx.node.status();
        let errors = if status.leader.is_none() {
            vec![EtcdError::NoLeader.to_string()]
        } else {
            Vec::new()
        };
        Ok(Response::new(StatusResponse {
            header: Some(self.ctx.header(store.current_revision())),
            version: ETCD_VERSION.to_owned(),
            db_size,
            leader: status.leader.unwrap_or(0),
            raft_index: status.commit,
            raft_term: status.term,
            raft_applied_index: status.applied,
            errors,
            db_size_in_use: db_size,
            is_learner: status.membership.learners.contains(&self.ctx.member.id),
            storage_version: String::new(),
            db_size_quota: i64::try_from(self.ctx.config.quota_bytes()).unwrap_or(i64::MAX),
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Err(ServerError::Unimplemented("/etcdserverpb.Maintenance/Defragment").into())
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(ServerError::Unimplemented("/etcdserverpb.Maintenance/Hash").into())
    }

    async fn hash_kv(&self, _: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(ServerError::Unimplemented("/etcdserverpb.Maintenance/HashKV").into())
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(ServerError::Unimplemented("/etcdserverpb.Maintenance/Snapshot").into())
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        // As etcd: only the leader moves leadership, and only to a voting member.
        let target = request.into_inner().target_id;
        let status = self.ctx.node.status();
        if status.leader != Some(self.ctx.member.id) {
            return Err(ServerError::from(EtcdError::NotLeader).into());
        }
        if !status.membership.voters.contains(&target) {
            return Err(ServerError::from(EtcdError::BadLeaderTransferee).into());
        }
        self.ctx
            .node
            .transfer_leader(target)
            .await
            .map_err(ServerError::from)?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.ctx.header(self.ctx.store.current_revision())),
        }))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(ServerError::Unimplemented("/etcdserverpb.Maintenance/Downgrade").into())
    }
}
