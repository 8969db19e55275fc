//! `etcdserverpb.Maintenance`: Status, Alarm, Hash, HashKV, Defragment, Snapshot, MoveLeader
//! and Downgrade, with etcd's semantics.
//!
//! - Alarms are raised and cleared through consensus (every member applies them, and refuses
//!   writes alike while NOSPACE is raised; see `mvcc::store::maintenance`). A member whose
//!   backend is over `--quota-backend-bytes` raises NOSPACE itself (in the KV service).
//! - Hash and HashKV: see `mvcc::store::maintenance` for what is hashed.
//! - Defragment compacts this member's backend file and answers once it is done.
//! - Snapshot streams a consistent image of the store as etcd 3.4's backend file (a bbolt
//!   database in etcd's bucket layout, see [`crate::bolt::etcd`]) in 32 KiB chunks, then the
//!   SHA-256 of everything sent, as etcd does: `etcdctl snapshot save` writes it to a file that
//!   `etcdctl snapshot status` reads, `etcdctl snapshot restore` turns into a data directory etcd
//!   starts from, and `xline snapshot restore` turns into one xline starts from.
//! - Downgrade answers as etcd 3.5 does for a cluster at version 3.5: the only valid target is
//!   3.4; enabling stores the downgrade state through consensus (shown by Status) and cancelling
//!   clears it. Nothing is actually downgraded: no member of another version exists.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use prost::Message as _;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};
use xline_proto::etcdserverpb::maintenance_server::Maintenance;
use xline_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeInfo, DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse,
    StatusRequest, StatusResponse, alarm_request, downgrade_request,
};

use crate::command::{self, Command};
use crate::error::{EtcdError, ServerError};
use crate::mvcc::store::{CommandResponse, KvStore};
use crate::server::{ETCD_VERSION, ServerContext};
use crate::storage::schema::Table;

/// etcd's snapshot chunk size (`snapshotSendBufferSize`).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// The bbolt transaction id of a snapshot file (any: a restored etcd continues from it).
const SNAPSHOT_TXID: u64 = 2;

/// The cluster version Downgrade reports and downgrades from (major, minor).
const CLUSTER_VERSION: (i64, i64) = (3, 5);

/// Serves the Maintenance RPCs.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    ctx: Arc<ServerContext>,
}

impl MaintenanceService {
    /// A Maintenance service over the member's context.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        Self { ctx }
    }

    async fn propose(&self, request: command::Request) -> Result<CommandResponse, ServerError> {
        let output = self.ctx.node.propose(Command::new(request)).await?;
        Ok(output?)
    }

    /// Runs blocking work on the store off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&KvStore) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, ServerError> {
        let store = Arc::clone(&self.ctx.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ServerError::Consensus(format!("maintenance task failed: {e}")))?
    }

    /// Waits until this member has applied everything the leader had committed (etcd's
    /// `linearizableReadNotify`).
    async fn barrier(&self) -> Result<(), ServerError> {
        self.ctx.node.linearizable_barrier().await?;
        Ok(())
    }

    fn header(&self) -> Option<xline_proto::etcdserverpb::ResponseHeader> {
        Some(self.ctx.header(self.ctx.store.current_revision()))
    }

    /// etcd's `downgradeValidate`: the target must be a version, exactly one minor version
    /// below the cluster's, and no downgrade may be in progress. Answers the cluster version.
    async fn downgrade_validate(&self, version: &str) -> Result<(i64, i64), ServerError> {
        let target = parse_cluster_version(version)?;
        self.barrier().await?;
        if target != (CLUSTER_VERSION.0, CLUSTER_VERSION.1 - 1) {
            return Err(EtcdError::InvalidDowngradeTargetVersion.into());
        }
        if self.ctx.store.downgrade_info()?.enabled {
            return Err(EtcdError::DowngradeInProcess.into());
        }
        Ok(target)
    }
}

/// A cluster version as etcd reads a downgrade target: `major.minor.patch` (with an optional
/// `-prerelease` and `+metadata`) or `major.minor`; the patch is dropped.
fn parse_cluster_version(text: &str) -> Result<(i64, i64), EtcdError> {
    fn tri(text: &str) -> Option<(i64, i64)> {
        let text = text.split_once('+').map_or(text, |(v, _)| v);
        let text = text.split_once('-').map_or(text, |(v, _)| v);
        let mut parts = text.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let _patch: i64 = parts.next()?.parse().ok()?;
        Some((major, minor))
    }
    tri(text)
        .or_else(|| tri(&format!("{text}.0")))
        .ok_or(EtcdError::WrongDowngradeVersionFormat)
}

/// The cluster version as etcd prints it (`3.5.0`).
fn cluster_version_string() -> String {
    format!("{}.{}.0", CLUSTER_VERSION.0, CLUSTER_VERSION.1)
}

/// An alarm as etcd lists it among a member's Status errors (the protobuf text form).
fn alarm_text(alarm: &AlarmMember) -> String {
    let name = AlarmType::try_from(alarm.alarm)
        .map_or_else(|_| alarm.alarm.to_string(), |t| t.as_str_name().to_owned());
    format!("memberID:{} alarm:{name} ", alarm.member_id)
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let get = request.get_ref().action == alarm_request::AlarmAction::Get as i32;
        let auth = self.ctx.store.auth();
        auth.check_admin_or_user(request.metadata(), get).await?;
        let req = request.into_inner();
        match req.action() {
            alarm_request::AlarmAction::Get => {
                // etcd answers through raft: a linearizable read of the alarm list.
                self.barrier().await?;
                Ok(Response::new(AlarmResponse {
                    header: self.header(),
                    alarms: self.ctx.store.alarms(req.alarm()),
                }))
            }
            alarm_request::AlarmAction::Activate | alarm_request::AlarmAction::Deactivate => {
                match self.propose(command::Request::Alarm(req)).await? {
                    CommandResponse::Alarm(mut resp) => {
                        resp.header = self.header();
                        Ok(Response::new(resp))
                    }
                    _ => {
                        Err(ServerError::Corrupt("alarm answered with another kind".into()).into())
                    }
                }
            }
        }
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let md = request.metadata();
        self.ctx
            .store
            .auth()
            .check_user(md)
            .await
            .map_err(ServerError::from)?;
        let (db_size, db_size_in_use, downgrade) = self
            .blocking(|store| {
                let backend = store.backend();
                Ok((
                    backend.size()?,
                    backend.size_in_use()?,
                    store.downgrade_info()?,
                ))
            })
            .await?;
        let status = self.ctx.node.status();
        let mut errors = if status.leader.is_none() {
            vec![EtcdError::NoLeader.to_string()]
        } else {
            Vec::new()
        };
        errors.extend(
            self.ctx
                .store
                .alarms(AlarmType::None)
                .iter()
                .map(alarm_text),
        );
        Ok(Response::new(StatusResponse {
            header: self.header(),
            version: ETCD_VERSION.to_owned(),
            db_size: i64::try_from(db_size).unwrap_or(i64::MAX),
            leader: status.leader.unwrap_or(0),
            raft_index: status.commit,
            raft_term: status.term,
            raft_applied_index: status.applied,
            errors,
            db_size_in_use: i64::try_from(db_size_in_use).unwrap_or(i64::MAX),
            is_learner: status.membership.learners.contains(&self.ctx.member.id),
            storage_version: String::new(),
            db_size_quota: i64::try_from(self.ctx.config.quota_bytes()).unwrap_or(i64::MAX),
            downgrade_info: Some(downgrade),
        }))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let md = request.metadata();
        self.ctx
            .store
            .auth()
            .check_admin(md)
            .await
            .map_err(ServerError::from)?;
        self.blocking(|store| Ok(store.backend().defragment()?))
            .await?;
        Ok(Response::new(DefragmentResponse {
            header: self.header(),
        }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let md = request.metadata();
        self.ctx
            .store
            .auth()
            .check_admin(md)
            .await
            .map_err(ServerError::from)?;
        let (hash, revision) = self.blocking(KvStore::hash).await?;
        Ok(Response::new(HashResponse {
            header: Some(self.ctx.header(revision)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let md = request.metadata();
        self.ctx
            .store
            .auth()
            .check_admin(md)
            .await
            .map_err(ServerError::from)?;
        let rev = request.into_inner().revision;
        let h = self.blocking(move |store| store.hash_kv(rev)).await?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.ctx.header(h.current_rev)),
            hash: h.hash,
            compact_revision: h.compact_rev,
            hash_revision: h.hash_rev,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let md = request.metadata();
        self.ctx
            .store
            .auth()
            .check_admin(md)
            .await
            .map_err(ServerError::from)?;
        // etcd's `members` bucket holds every member of the cluster, also those that have not
        // started (published) yet: the members as MemberList shows them.
        let members = crate::service::ClusterService::new(Arc::clone(&self.ctx)).members()?;
        let (body, revision) = self
            .blocking(move |store| {
                let mut tables = store.snapshot_tables()?;
                for (table, pairs) in &mut tables {
                    if *table == Table::Members {
                        *pairs = members
                            .iter()
                            .map(|m| (m.id.to_be_bytes().to_vec(), m.encode_to_vec()))
                            .collect();
                    }
                }
                let revision = store.current_revision();
                let buckets = crate::bolt::etcd::etcd_buckets(&tables)?;
                Ok((crate::bolt::write_db(&buckets, SNAPSHOT_TXID), revision))
            })
            .await?;
        let header = Some(self.ctx.header(revision));
        let body = bytes::Bytes::from(body);
        let total = body.len();
        let mut messages = Vec::with_capacity(total / SNAPSHOT_CHUNK + 2);
        let mut sha = Sha256::new();
        let mut sent = 0;
        while sent < total {
            let end = (sent + SNAPSHOT_CHUNK).min(total);
            let blob = body.slice(sent..end);
            sha.update(&blob);
            sent = end;
            messages.push(Ok(SnapshotResponse {
                header,
                remaining_bytes: (total - sent) as u64,
                blob: blob.to_vec(),
                version: String::new(),
            }));
        }
        messages.push(Ok(SnapshotResponse {
            header,
            remaining_bytes: 0,
            blob: sha.finalize().to_vec(),
            version: String::new(),
        }));
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let md = request.metadata();
        self.ctx
            .store
            .auth()
            .check_admin(md)
            .await
            .map_err(ServerError::from)?;
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
            header: self.header(),
        }))
    }

    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        let md = request.metadata();
        self.ctx
            .store
            .auth()
            .check_admin(md)
            .await
            .map_err(ServerError::from)?;
        let req = request.into_inner();
        match req.action() {
            downgrade_request::DowngradeAction::Validate => {
                self.downgrade_validate(&req.version).await?;
            }
            downgrade_request::DowngradeAction::Enable => {
                let (major, minor) = self.downgrade_validate(&req.version).await?;
                let info = DowngradeInfo {
                    enabled: true,
                    target_version: format!("{major}.{minor}.0"),
                };
                self.propose(command::Request::Downgrade(info)).await?;
            }
            downgrade_request::DowngradeAction::Cancel => {
                self.barrier().await?;
                if !self
                    .ctx
                    .store
                    .downgrade_info()
                    .map_err(Status::from)?
                    .enabled
                {
                    return Err(ServerError::from(EtcdError::NoInflightDowngrade).into());
                }
                let info = DowngradeInfo {
                    enabled: false,
                    target_version: String::new(),
                };
                self.propose(command::Request::Downgrade(info)).await?;
            }
        }
        Ok(Response::new(DowngradeResponse {
            header: self.header(),
            version: cluster_version_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downgrade_versions_parse_as_etcd() {
        assert_eq!(parse_cluster_version("3.4"), Ok((3, 4)));
        assert_eq!(parse_cluster_version("3.4.0"), Ok((3, 4)));
        assert_eq!(parse_cluster_version("3.4.9-rc.1+build"), Ok((3, 4)));
        assert_eq!(parse_cluster_version("3.6.1"), Ok((3, 6)));
        for bad in ["", "3", "v3.4", "3.4.x", "3.4.0.1", "three.four"] {
            assert_eq!(
                parse_cluster_version(bad),
                Err(EtcdError::WrongDowngradeVersionFormat),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn alarms_print_as_etcd_status_errors() {
        let alarm = AlarmMember {
            member_id: 42,
            alarm: AlarmType::Nospace as i32,
        };
        assert_eq!(alarm_text(&alarm), "memberID:42 alarm:NOSPACE ");
    }
}
