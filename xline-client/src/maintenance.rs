//! The Maintenance service: status, alarms, defragment, hashes, snapshot, move-leader,
//! downgrade. Status, Defragment, Hash, HashKV and Snapshot answer for the member that serves
//! them: to address one member, connect a [`crate::Client`] to that endpoint only.

use std::sync::Arc;

use tonic::Streaming;
use xline_proto::etcdserverpb::maintenance_client::MaintenanceClient as RawMaintenance;
use xline_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};

pub use xline_proto::etcdserverpb::AlarmType;
pub use xline_proto::etcdserverpb::alarm_request::AlarmAction;
pub use xline_proto::etcdserverpb::downgrade_request::DowngradeAction;

use crate::conn::{Inner, Retry};
use crate::error::{Error, Result};

/// The stream of [`MaintenanceClient::snapshot`]: chunks of the backend's snapshot.
#[derive(Debug)]
pub struct SnapshotStream {
    stream: Streaming<SnapshotResponse>,
}

impl SnapshotStream {
    /// The next chunk; `None` at the end of the snapshot.
    pub async fn message(&mut self) -> Result<Option<SnapshotResponse>> {
        self.stream.message().await.map_err(Error::from_status)
    }
}

/// The Maintenance service.
///
/// ```no_run
/// use xline_client::{Client, ConnectOptions};
///
/// # async fn run() -> xline_client::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
/// let status = client.maintenance().status().await?;
/// println!("leader {:x}, db size {}", status.leader, status.db_size);
/// let mut snapshot = client.maintenance().snapshot().await?;
/// let mut bytes = Vec::new();
/// while let Some(chunk) = snapshot.message().await? {
///     bytes.extend_from_slice(&chunk.blob);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MaintenanceClient {
    inner: Arc<Inner>,
}

impl MaintenanceClient {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Gets, activates or deactivates alarms (`member_id` 0: every member).
    pub async fn alarm(
        &self,
        action: AlarmAction,
        alarm: AlarmType,
        member_id: u64,
    ) -> Result<AlarmResponse> {
        let retry = if action == AlarmAction::Get {
            Retry::Repeatable
        } else {
            Retry::NonRepeatable
        };
        let req = AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        };
        unary!(self, retry, RawMaintenance, alarm, req)
    }

    /// The serving member's status.
    pub async fn status(&self) -> Result<StatusResponse> {
        unary!(
            self,
            Retry::Repeatable,
            RawMaintenance,
            status,
            StatusRequest {}
        )
    }

    /// Defragments the serving member's backend.
    pub async fn defragment(&self) -> Result<DefragmentResponse> {
        unary!(
            self,
            Retry::NonRepeatable,
            RawMaintenance,
            defragment,
            DefragmentRequest {}
        )
    }

    /// The hash of the serving member's whole backend.
    pub async fn hash(&self) -> Result<HashResponse> {
        unary!(
            self,
            Retry::Repeatable,
            RawMaintenance,
            hash,
            HashRequest {}
        )
    }

    /// The hash of the key-value history up to `revision` (0: the latest).
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        unary!(
            self,
            Retry::Repeatable,
            RawMaintenance,
            hash_kv,
            HashKvRequest { revision }
        )
    }

    /// Transfers leadership to member `target_id` (must be sent to the leader).
    pub async fn move_leader(&self, target_id: u64) -> Result<MoveLeaderResponse> {
        unary!(
            self,
            Retry::NonRepeatable,
            RawMaintenance,
            move_leader,
            MoveLeaderRequest { target_id }
        )
    }

    /// Validates, enables or cancels a cluster downgrade.
    pub async fn downgrade(
        &self,
        action: DowngradeAction,
        version: impl Into<String>,
    ) -> Result<DowngradeResponse> {
        let req = DowngradeRequest {
            action: action as i32,
            version: version.into(),
        };
        unary!(self, Retry::NonRepeatable, RawMaintenance, downgrade, req)
    }

    /// Streams a snapshot of the serving member's backend.
    pub async fn snapshot(&self) -> Result<SnapshotStream> {
        let stream = unary!(
            self,
            Retry::Repeatable,
            RawMaintenance,
            snapshot,
            SnapshotRequest {}
        )?;
        Ok(SnapshotStream { stream })
    }
}

/// Raw requests: etcd's request messages as they are, with the pool's balancing, failover,
/// retry rules and auth token (see the crate docs, "Raw requests").
impl MaintenanceClient {
    /// Maintenance.Status (repeatable).
    pub async fn status_request(&self, req: StatusRequest) -> Result<StatusResponse> {
        unary!(self, Retry::Repeatable, RawMaintenance, status, req)
    }

    /// Maintenance.Defragment (not repeatable).
    pub async fn defragment_request(&self, req: DefragmentRequest) -> Result<DefragmentResponse> {
        unary!(self, Retry::NonRepeatable, RawMaintenance, defragment, req)
    }

    /// Maintenance.Hash (repeatable).
    pub async fn hash_request(&self, req: HashRequest) -> Result<HashResponse> {
        unary!(self, Retry::Repeatable, RawMaintenance, hash, req)
    }

    /// Maintenance.HashKV (repeatable).
    pub async fn hash_kv_request(&self, req: HashKvRequest) -> Result<HashKvResponse> {
        unary!(self, Retry::Repeatable, RawMaintenance, hash_kv, req)
    }

    /// Maintenance.MoveLeader (not repeatable).
    pub async fn move_leader_request(&self, req: MoveLeaderRequest) -> Result<MoveLeaderResponse> {
        unary!(self, Retry::NonRepeatable, RawMaintenance, move_leader, req)
    }

    /// Maintenance.Downgrade (not repeatable).
    pub async fn downgrade_request(&self, req: DowngradeRequest) -> Result<DowngradeResponse> {
        unary!(self, Retry::NonRepeatable, RawMaintenance, downgrade, req)
    }

    /// Maintenance.Alarm (repeatable when it only reads: `AlarmAction::Get`).
    pub async fn alarm_request(&self, req: AlarmRequest) -> Result<AlarmResponse> {
        let retry = if req.action == AlarmAction::Get as i32 {
            Retry::Repeatable
        } else {
            Retry::NonRepeatable
        };
        unary!(self, retry, RawMaintenance, alarm, req)
    }

    /// Maintenance.Snapshot (opening the stream is repeatable); chunks may be of any size.
    pub async fn snapshot_request(&self, req: SnapshotRequest) -> Result<SnapshotStream> {
        let stream = self
            .inner
            .call(Retry::Repeatable, |svc| async move {
                RawMaintenance::new(svc)
                    .max_decoding_message_size(usize::MAX)
                    .snapshot(req)
                    .await
            })
            .await?;
        Ok(SnapshotStream { stream })
    }
}
