//! The calls xlinectl makes: etcd's request messages in, response messages out (the printers
//! print the response messages themselves, as etcdctl does). One [`Rpc`] talks to the endpoints
//! given on the command line, bounded by `--dial-timeout` and `--command-timeout`, and carries
//! the auth token when `--user` is set.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use xline_proto::etcdserverpb::{
    auth_client::AuthClient, cluster_client::ClusterClient, kv_client::KvClient,
    lease_client::LeaseClient, maintenance_client::MaintenanceClient, watch_client::WatchClient, *,
};
use xline_proto::v3electionpb::{election_client::ElectionClient, *};
use xline_proto::v3lockpb::{lock_client::LockClient, *};

use crate::error::{CtlError, ExitCode, deadline};

/// How to reach the cluster (from the global flags).
#[derive(Debug, Clone)]
pub struct ConnCfg {
    /// Endpoints as given (`host:port` or URLs).
    pub endpoints: Vec<String>,
    /// `--dial-timeout`.
    pub dial_timeout: Duration,
    /// `--command-timeout`.
    pub command_timeout: Duration,
    /// `--user`/`--password`, split.
    pub user: Option<(String, String)>,
}

/// The URL tonic dials for an endpoint given as etcdctl takes it.
pub fn endpoint_url(ep: &str) -> String {
    if ep.contains("://") {
        ep.to_owned()
    } else {
        format!("http://{ep}")
    }
}

/// A connection to the cluster.
#[derive(Debug, Clone)]
pub struct Rpc {
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
}

impl Rpc {
    /// Dials the endpoints (all of them, balanced) and authenticates when a user is configured.
    pub async fn connect(cfg: &ConnCfg) -> Result<Self, CtlError> {
        let mut eps = Vec::new();
        for ep in &cfg.endpoints {
            let url = endpoint_url(ep);
            if url.starts_with("https://") {
                return Err(CtlError::new(
                    ExitCode::BadConnection,
                    "TLS is not supported yet",
                ));
            }
            let e = Endpoint::from_shared(url)
                .map_err(|e| CtlError::new(ExitCode::BadArgs, e.to_string()))?
                .connect_timeout(cfg.dial_timeout)
                .tcp_nodelay(true);
            eps.push(e);
        }
        // etcdctl blocks until one endpoint is reachable, up to the dial timeout.
        let dial = async {
            for e in &eps {
                if e.connect().await.is_ok() {
                    return true;
                }
            }
            false
        };
        let ok = tokio::time::timeout(cfg.dial_timeout, dial)
            .await
            .unwrap_or(false);
        if !ok {
            return Err(CtlError::new(
                ExitCode::BadConnection,
                "context deadline exceeded",
            ));
        }
        let channel = Channel::balance_list(eps.into_iter());
        let mut rpc = Self {
            channel,
            token: None,
            timeout: cfg.command_timeout,
        };
        if let Some((name, password)) = &cfg.user {
            let req = AuthenticateRequest {
                name: name.clone(),
                password: password.clone(),
            };
            let resp = rpc
                .unary(AuthClient::new(rpc.channel.clone()).authenticate(rpc.req(req)))
                .await?;
            let token = MetadataValue::try_from(resp.token.as_str())
                .map_err(|e| CtlError::new(ExitCode::Error, e.to_string()))?;
            rpc.token = Some(token);
        }
        Ok(rpc)
    }

    fn req<T>(&self, t: T) -> Request<T> {
        let mut r = Request::new(t);
        if let Some(tok) = &self.token {
            r.metadata_mut().insert("token", tok.clone());
        }
        r
    }

    async fn unary<T>(
        &self,
        f: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CtlError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(s.into()),
            Err(_) => Err(deadline()),
        }
    }

    /// A call without the command timeout (lease timetolive/list use `context.TODO()`).
    async fn unbounded<T>(
        &self,
        f: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CtlError> {
        Ok(f.await?.into_inner())
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }
    fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone())
    }
    fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }
    fn maint(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }
    fn auth(&self) -> AuthClient<Channel> {
        AuthClient::new(self.channel.clone())
    }

    /// KV.Range.
    pub async fn range(&self, r: RangeRequest) -> Result<RangeResponse, CtlError> {
        self.unary(self.kv().range(self.req(r))).await
    }
    /// KV.Range without the command timeout (make-mirror's paged sync).
    pub async fn range_unbounded(&self, r: RangeRequest) -> Result<RangeResponse, CtlError> {
        self.unbounded(self.kv().range(self.req(r))).await
    }
    /// KV.Put.
    pub async fn put(&self, r: PutRequest) -> Result<PutResponse, CtlError> {
        self.unary(self.kv().put(self.req(r))).await
    }
    /// KV.DeleteRange.
    pub async fn delete(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse, CtlError> {
        self.unary(self.kv().delete_range(self.req(r))).await
    }
    /// KV.Txn.
    pub async fn txn(&self, r: TxnRequest) -> Result<TxnResponse, CtlError> {
        self.unary(self.kv().txn(self.req(r))).await
    }
    /// KV.Txn without the command timeout (etcdctl's txn uses `context.Background()`).
    pub async fn txn_unbounded(&self, r: TxnRequest) -> Result<TxnResponse, CtlError> {
        self.unbounded(self.kv().txn(self.req(r))).await
    }
    /// KV.Compact.
    pub async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse, CtlError> {
        self.unary(self.kv().compact(self.req(r))).await
    }

    /// Watch: opens the stream and sends `first`; more requests can be sent on the returned sender.
    pub async fn watch(
        &self,
        first: WatchRequest,
    ) -> Result<
        (
            tokio::sync::mpsc::Sender<WatchRequest>,
            Streaming<WatchResponse>,
        ),
        CtlError,
    > {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(first)
            .await
            .map_err(|_| CtlError::new(ExitCode::Error, "watch stream closed"))?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let resp = WatchClient::new(self.channel.clone())
            .watch(self.req(stream))
            .await?;
        Ok((tx, resp.into_inner()))
    }

    /// Lease.LeaseGrant.
    pub async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse, CtlError> {
        self.unary(
            self.lease()
                .lease_grant(self.req(LeaseGrantRequest { ttl, id: 0 })),
        )
        .await
    }
    /// Lease.LeaseRevoke.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse, CtlError> {
        self.unary(
            self.lease()
                .lease_revoke(self.req(LeaseRevokeRequest { id })),
        )
        .await
    }
    /// Lease.LeaseTimeToLive.
    pub async fn lease_ttl(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, CtlError> {
        self.unbounded(
            self.lease()
                .lease_time_to_live(self.req(LeaseTimeToLiveRequest { id, keys })),
        )
        .await
    }
    /// Lease.LeaseLeases.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse, CtlError> {
        self.unbounded(self.lease().lease_leases(self.req(LeaseLeasesRequest {})))
            .await
    }
    /// Lease.LeaseKeepAlive: a stream sending one request every `every` (the first at once).
    pub async fn lease_keep_alive(
        &self,
        id: i64,
        every: Option<Duration>,
    ) -> Result<Streaming<LeaseKeepAliveResponse>, CtlError> {
        let reqs = async_stream_keepalive(id, every);
        Ok(self
            .lease()
            .lease_keep_alive(self.req(reqs))
            .await?
            .into_inner())
    }

    /// Cluster.MemberAdd.
    pub async fn member_add(&self, r: MemberAddRequest) -> Result<MemberAddResponse, CtlError> {
        self.unary(self.cluster().member_add(self.req(r))).await
    }
    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse, CtlError> {
        self.unary(
            self.cluster()
                .member_remove(self.req(MemberRemoveRequest { id })),
        )
        .await
    }
    /// Cluster.MemberUpdate.
    pub async fn member_update(
        &self,
        id: u64,
        peer_ur_ls: Vec<String>,
    ) -> Result<MemberUpdateResponse, CtlError> {
        self.unary(
            self.cluster()
                .member_update(self.req(MemberUpdateRequest { id, peer_ur_ls })),
        )
        .await
    }
    /// Cluster.MemberPromote.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse, CtlError> {
        self.unary(
            self.cluster()
                .member_promote(self.req(MemberPromoteRequest { id })),
        )
        .await
    }
    /// Cluster.MemberList.
    pub async fn member_list(&self) -> Result<MemberListResponse, CtlError> {
        self.unary(self.cluster().member_list(self.req(MemberListRequest {
            linearizable: false,
        })))
        .await
    }

    /// Maintenance.Status.
    pub async fn status(&self) -> Result<StatusResponse, CtlError> {
        self.unary(self.maint().status(self.req(StatusRequest {})))
            .await
    }
    /// Maintenance.HashKV.
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse, CtlError> {
        self.unary(self.maint().hash_kv(self.req(HashKvRequest { revision })))
            .await
    }
    /// Maintenance.Defragment.
    pub async fn defragment(&self) -> Result<DefragmentResponse, CtlError> {
        self.unary(self.maint().defragment(self.req(DefragmentRequest {})))
            .await
    }
    /// Maintenance.Alarm.
    pub async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse, CtlError> {
        self.unary(self.maint().alarm(self.req(r))).await
    }
    /// Maintenance.MoveLeader.
    pub async fn move_leader(&self, target_id: u64) -> Result<MoveLeaderResponse, CtlError> {
        self.unary(
            self.maint()
                .move_leader(self.req(MoveLeaderRequest { target_id })),
        )
        .await
    }
    /// Maintenance.Snapshot (a stream of chunks).
    pub async fn snapshot(&self) -> Result<Streaming<SnapshotResponse>, CtlError> {
        Ok(self
            .maint()
            .snapshot(self.req(SnapshotRequest {}))
            .await?
            .into_inner())
    }

    /// Auth.AuthEnable.
    pub async fn auth_enable(&self) -> Result<AuthEnableResponse, CtlError> {
        self.unary(self.auth().auth_enable(self.req(AuthEnableRequest {})))
            .await
    }
    /// Auth.AuthDisable.
    pub async fn auth_disable(&self) -> Result<AuthDisableResponse, CtlError> {
        self.unary(self.auth().auth_disable(self.req(AuthDisableRequest {})))
            .await
    }
    /// Auth.AuthStatus.
    pub async fn auth_status(&self) -> Result<AuthStatusResponse, CtlError> {
        self.unary(self.auth().auth_status(self.req(AuthStatusRequest {})))
            .await
    }
    /// Auth.UserAdd.
    pub async fn user_add(&self, r: AuthUserAddRequest) -> Result<AuthUserAddResponse, CtlError> {
        self.unary(self.auth().user_add(self.req(r))).await
    }
    /// Auth.UserDelete.
    pub async fn user_delete(&self, name: String) -> Result<AuthUserDeleteResponse, CtlError> {
        self.unary(
            self.auth()
                .user_delete(self.req(AuthUserDeleteRequest { name })),
        )
        .await
    }
    /// Auth.UserGet.
    pub async fn user_get(&self, name: String) -> Result<AuthUserGetResponse, CtlError> {
        self.unary(self.auth().user_get(self.req(AuthUserGetRequest { name })))
            .await
    }
    /// Auth.UserList.
    pub async fn user_list(&self) -> Result<AuthUserListResponse, CtlError> {
        self.unary(self.auth().user_list(self.req(AuthUserListRequest {})))
            .await
    }
    /// Auth.UserChangePassword.
    pub async fn user_passwd(
        &self,
        name: String,
        password: String,
    ) -> Result<AuthUserChangePasswordResponse, CtlError> {
        let r = AuthUserChangePasswordRequest {
            name,
            password,
            hashed_password: String::new(),
        };
        self.unary(self.auth().user_change_password(self.req(r)))
            .await
    }
    /// Auth.UserGrantRole.
    pub async fn user_grant_role(
        &self,
        user: String,
        role: String,
    ) -> Result<AuthUserGrantRoleResponse, CtlError> {
        self.unary(
            self.auth()
                .user_grant_role(self.req(AuthUserGrantRoleRequest { user, role })),
        )
        .await
    }
    /// Auth.UserRevokeRole.
    pub async fn user_revoke_role(
        &self,
        name: String,
        role: String,
    ) -> Result<AuthUserRevokeRoleResponse, CtlError> {
        self.unary(
            self.auth()
                .user_revoke_role(self.req(AuthUserRevokeRoleRequest { name, role })),
        )
        .await
    }
    /// Auth.RoleAdd.
    pub async fn role_add(&self, name: String) -> Result<AuthRoleAddResponse, CtlError> {
        self.unary(self.auth().role_add(self.req(AuthRoleAddRequest { name })))
            .await
    }
    /// Auth.RoleDelete.
    pub async fn role_delete(&self, role: String) -> Result<AuthRoleDeleteResponse, CtlError> {
        self.unary(
            self.auth()
                .role_delete(self.req(AuthRoleDeleteRequest { role })),
        )
        .await
    }
    /// Auth.RoleGet.
    pub async fn role_get(&self, role: String) -> Result<AuthRoleGetResponse, CtlError> {
        self.unary(self.auth().role_get(self.req(AuthRoleGetRequest { role })))
            .await
    }
    /// Auth.RoleList.
    pub async fn role_list(&self) -> Result<AuthRoleListResponse, CtlError> {
        self.unary(self.auth().role_list(self.req(AuthRoleListRequest {})))
            .await
    }
    /// Auth.RoleGrantPermission.
    pub async fn role_grant(
        &self,
        r: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse, CtlError> {
        self.unary(self.auth().role_grant_permission(self.req(r)))
            .await
    }
    /// Auth.RoleRevokePermission.
    pub async fn role_revoke(
        &self,
        r: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse, CtlError> {
        self.unary(self.auth().role_revoke_permission(self.req(r)))
            .await
    }

    /// Lock.Lock (no timeout: waits for the lock).
    pub async fn lock(&self, name: Vec<u8>, lease: i64) -> Result<LockResponse, CtlError> {
        self.unbounded(
            LockClient::new(self.channel.clone()).lock(self.req(LockRequest { name, lease })),
        )
        .await
    }
    /// Lock.Unlock.
    pub async fn unlock(&self, key: Vec<u8>) -> Result<UnlockResponse, CtlError> {
        self.unary(LockClient::new(self.channel.clone()).unlock(self.req(UnlockRequest { key })))
            .await
    }
    /// Election.Campaign (no timeout: waits for leadership).
    pub async fn campaign(&self, r: CampaignRequest) -> Result<CampaignResponse, CtlError> {
        self.unbounded(ElectionClient::new(self.channel.clone()).campaign(self.req(r)))
            .await
    }
    /// Election.Resign.
    pub async fn resign(&self, leader: LeaderKey) -> Result<ResignResponse, CtlError> {
        self.unary(
            ElectionClient::new(self.channel.clone()).resign(self.req(ResignRequest {
                leader: Some(leader),
            })),
        )
        .await
    }
    /// Election.Observe.
    pub async fn observe(&self, name: Vec<u8>) -> Result<Streaming<LeaderResponse>, CtlError> {
        Ok(ElectionClient::new(self.channel.clone())
            .observe(self.req(LeaderRequest { name }))
            .await?
            .into_inner())
    }
}

/// The request stream of a keep-alive: one request at once, then one every `every` (or only one).
fn async_stream_keepalive(
    id: i64,
    every: Option<Duration>,
) -> impl tokio_stream::Stream<Item = LeaseKeepAliveRequest> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                return;
            }
            match every {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    // Keep the request side open until the response arrives and the caller drops it.
                    tx.closed().await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
