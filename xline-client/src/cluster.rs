//! The Cluster service: membership.

use std::sync::Arc;

use xline_proto::etcdserverpb::cluster_client::ClusterClient as RawCluster;
use xline_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

use crate::conn::{Inner, Retry};
use crate::error::Result;

/// Options of [`ClusterClient::member_add`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemberAddOptions {
    learner: bool,
}

impl MemberAddOptions {
    /// A voting member.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the member as a learner (promote it later).
    #[must_use]
    pub fn with_learner(mut self) -> Self {
        self.learner = true;
        self
    }
}

/// The Cluster service.
///
/// ```no_run
/// use xline_client::{Client, ConnectOptions};
///
/// # async fn run() -> xline_client::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
/// for m in client.cluster().member_list().await?.members {
///     println!("{:x} {} {:?}", m.id, m.name, m.client_ur_ls);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterClient {
    inner: Arc<Inner>,
}

impl ClusterClient {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Adds a member with these peer URLs.
    pub async fn member_add<S: Into<String>>(
        &self,
        peer_urls: impl IntoIterator<Item = S>,
        opts: Option<MemberAddOptions>,
    ) -> Result<MemberAddResponse> {
        let req = MemberAddRequest {
            peer_ur_ls: peer_urls.into_iter().map(Into::into).collect(),
            is_learner: opts.unwrap_or_default().learner,
        };
        unary!(self, Retry::NonRepeatable, RawCluster, member_add, req)
    }

    /// Removes member `id`.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse> {
        let req = MemberRemoveRequest { id };
        unary!(self, Retry::NonRepeatable, RawCluster, member_remove, req)
    }

    /// Replaces member `id`'s peer URLs.
    pub async fn member_update<S: Into<String>>(
        &self,
        id: u64,
        peer_urls: impl IntoIterator<Item = S>,
    ) -> Result<MemberUpdateResponse> {
        let req = MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls.into_iter().map(Into::into).collect(),
        };
        unary!(self, Retry::NonRepeatable, RawCluster, member_update, req)
    }

    /// Every member (linearizable).
    pub async fn member_list(&self) -> Result<MemberListResponse> {
        let req = MemberListRequest { linearizable: true };
        unary!(self, Retry::Repeatable, RawCluster, member_list, req)
    }

    /// Promotes learner `id` to a voting member.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse> {
        let req = MemberPromoteRequest { id };
        unary!(self, Retry::NonRepeatable, RawCluster, member_promote, req)
    }
}

/// Raw requests: etcd's request messages as they are, with the pool's balancing, failover,
/// retry rules and auth token (see the crate docs, "Raw requests").
impl ClusterClient {
    /// Cluster.MemberAdd (not repeatable).
    pub async fn member_add_request(&self, req: MemberAddRequest) -> Result<MemberAddResponse> {
        unary!(self, Retry::NonRepeatable, RawCluster, member_add, req)
    }

    /// Cluster.MemberRemove (not repeatable).
    pub async fn member_remove_request(
        &self,
        req: MemberRemoveRequest,
    ) -> Result<MemberRemoveResponse> {
        unary!(self, Retry::NonRepeatable, RawCluster, member_remove, req)
    }

    /// Cluster.MemberUpdate (not repeatable).
    pub async fn member_update_request(
        &self,
        req: MemberUpdateRequest,
    ) -> Result<MemberUpdateResponse> {
        unary!(self, Retry::NonRepeatable, RawCluster, member_update, req)
    }

    /// Cluster.MemberList (repeatable).
    pub async fn member_list_request(&self, req: MemberListRequest) -> Result<MemberListResponse> {
        unary!(self, Retry::Repeatable, RawCluster, member_list, req)
    }

    /// Cluster.MemberPromote (not repeatable).
    pub async fn member_promote_request(
        &self,
        req: MemberPromoteRequest,
    ) -> Result<MemberPromoteResponse> {
        unary!(self, Retry::NonRepeatable, RawCluster, member_promote, req)
    }
}
