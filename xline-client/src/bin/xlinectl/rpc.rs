//! The calls xlinectl makes: etcd's request messages in, response messages out (the printers
//! print the response messages themselves, as etcdctl does). Every call goes through the
//! [`xline_client`] library's raw-request entry points (`*_request`), so it gets the library's
//! endpoint balancing, failover, safe retries (reads on `Unavailable`, writes only when no
//! connection was made) and auth token handling. xlinectl adds what etcdctl's command layer
//! does: the blocking first dial within `--dial-timeout`, and `--command-timeout` on the calls
//! etcdctl bounds with it (some, as etcdctl, run without a deadline).

use std::future::Future;
use std::time::Duration;

use xline_client::{
    Client, ConnectOptions, EtcdErrorKind, KeepAliveHandle, ObserveStream, SnapshotStream,
    TlsOptions, WatchStream, Watcher,
};
use xline_proto::etcdserverpb::*;
use xline_proto::v3electionpb::*;
use xline_proto::v3lockpb::*;

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
    /// TLS, when the TLS flags ask for it.
    pub tls: Option<TlsOptions>,
}

/// etcdctl's transport-security flags (global ones, or make-mirror's `--dest-*`).
#[derive(Debug, Clone, Copy)]
pub struct TlsFlags<'a> {
    /// `--cert`.
    pub cert: Option<&'a str>,
    /// `--key`.
    pub key: Option<&'a str>,
    /// `--cacert`.
    pub cacert: Option<&'a str>,
    /// `--insecure-transport`.
    pub insecure_transport: bool,
    /// `--insecure-skip-tls-verify`.
    pub insecure_skip_verify: bool,
}

/// The TLS settings the flags ask for, as etcdctl decides: any of `--cert`, `--key`,
/// `--cacert` means TLS with those files; without them, `--insecure-transport=false` means TLS
/// verified against the system's roots; `--insecure-skip-tls-verify` then skips verification.
/// Otherwise plaintext. (Endpoints given as `http://` stay plaintext and `https://` ones use
/// TLS whatever the flags, as in clientv3.)
pub fn tls_options(f: &TlsFlags<'_>) -> Result<Option<TlsOptions>, CtlError> {
    let nonempty = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
    let (cert, key, cacert) = (nonempty(f.cert), nonempty(f.key), nonempty(f.cacert));
    let tls = if cert.is_some() || key.is_some() || cacert.is_some() {
        if cert.is_some() != key.is_some() {
            return Err(CtlError::args(format!(
                "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                key.as_deref().unwrap_or_default(),
                cert.as_deref().unwrap_or_default()
            )));
        }
        let path = |p: &Option<String>| p.as_ref().map(std::path::PathBuf::from);
        let opts = TlsOptions::from_files(
            path(&cacert).as_deref(),
            path(&cert).as_deref(),
            path(&key).as_deref(),
        )
        .map_err(|e| CtlError::args(e.to_string()))?;
        Some(opts)
    } else if !f.insecure_transport {
        Some(TlsOptions::new())
    } else {
        None
    };
    Ok(tls.map(|t| {
        if f.insecure_skip_verify {
            t.with_insecure_skip_verify(true)
        } else {
            t
        }
    }))
}

/// A connection to the cluster.
#[derive(Debug, Clone)]
pub struct Rpc {
    client: Client,
    timeout: Duration,
}

/// The library's options for `cfg`, without the user.
fn options(cfg: &ConnCfg) -> ConnectOptions {
    // No per-call timeout in the library: xlinectl bounds the calls etcdctl bounds, and the
    // retries (reads on `Unavailable`, anything never sent) go on until then, as clientv3's do.
    let opts = ConnectOptions::new()
        .with_dial_timeout(cfg.dial_timeout)
        .with_max_retries(usize::MAX);
    match &cfg.tls {
        Some(tls) => opts.with_tls(tls.clone()),
        None => opts,
    }
}

/// What a failure to set the client up prints: etcdctl exits with `ExitBadConnection` when it
/// cannot make its client.
fn setup_error(e: xline_client::Error) -> CtlError {
    match e {
        xline_client::Error::InvalidArgs(msg) => CtlError::new(ExitCode::BadArgs, msg),
        xline_client::Error::Tls(msg) => CtlError::new(ExitCode::BadArgs, msg),
        e => CtlError::from(e).with_code(ExitCode::BadConnection),
    }
}

impl Rpc {
    /// Makes the client as etcdctl 3.4 does: endpoints are dialled when a call needs them (a
    /// call to unreachable endpoints retries until `--command-timeout`, then fails with
    /// `context deadline exceeded`, exit 1); with a user, it authenticates first, within
    /// `--dial-timeout`, and a failure there exits with `ExitBadConnection` (2). When the
    /// server says auth is not enabled, it goes on without a token, as clientv3 does.
    pub async fn connect(cfg: &ConnCfg) -> Result<Self, CtlError> {
        let opts = options(cfg);
        let client = match &cfg.user {
            None => Client::connect(&cfg.endpoints, opts).await,
            Some((name, password)) => {
                let with_user =
                    Client::connect(&cfg.endpoints, opts.clone().with_user(name, password));
                match tokio::time::timeout(cfg.dial_timeout, with_user).await {
                    Ok(Err(e)) if e.etcd_kind() == Some(EtcdErrorKind::AuthNotEnabled) => {
                        Client::connect(&cfg.endpoints, opts).await
                    }
                    Ok(r) => r,
                    Err(_) => Err(xline_client::Error::Timeout),
                }
            }
        }
        .map_err(setup_error)?;
        Ok(Self {
            client,
            timeout: cfg.command_timeout,
        })
    }

    /// A call bounded by `--command-timeout`.
    async fn unary<T>(
        &self,
        f: impl Future<Output = xline_client::Result<T>>,
    ) -> Result<T, CtlError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(CtlError::from),
            Err(_) => Err(deadline()),
        }
    }

    /// A call without the command timeout (where etcdctl uses `context.TODO()`/`Background()`).
    async fn unbounded<T>(
        &self,
        f: impl Future<Output = xline_client::Result<T>>,
    ) -> Result<T, CtlError> {
        f.await.map_err(CtlError::from)
    }

    /// KV.Range.
    pub async fn range(&self, r: RangeRequest) -> Result<RangeResponse, CtlError> {
        self.unary(self.client.kv().range_request(r)).await
    }
    /// KV.Range without the command timeout (make-mirror's paged sync).
    pub async fn range_unbounded(&self, r: RangeRequest) -> Result<RangeResponse, CtlError> {
        self.unbounded(self.client.kv().range_request(r)).await
    }
    /// KV.Put.
    pub async fn put(&self, r: PutRequest) -> Result<PutResponse, CtlError> {
        self.unary(self.client.kv().put_request(r)).await
    }
    /// KV.DeleteRange.
    pub async fn delete(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse, CtlError> {
        self.unary(self.client.kv().delete_range_request(r)).await
    }
    /// KV.Txn.
    pub async fn txn(&self, r: TxnRequest) -> Result<TxnResponse, CtlError> {
        self.unary(self.client.kv().txn_request(r)).await
    }
    /// KV.Txn without the command timeout (etcdctl's txn uses `context.Background()`).
    pub async fn txn_unbounded(&self, r: TxnRequest) -> Result<TxnResponse, CtlError> {
        self.unbounded(self.client.kv().txn_request(r)).await
    }
    /// KV.Compact.
    pub async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse, CtlError> {
        self.unary(self.client.kv().compact_request(r)).await
    }

    /// Watch: creates the watch `req` (a create request) and returns once the server confirmed
    /// it. The library re-creates it on another member if its member fails, from the revision
    /// after the last event delivered; the server's cancel responses come on the stream.
    pub async fn watch(&self, req: WatchRequest) -> Result<(Watcher, WatchStream), CtlError> {
        let Some(watch_request::RequestUnion::CreateRequest(create)) = req.request_union else {
            return Err(CtlError::new(
                ExitCode::Error,
                "a watch starts with a create request",
            ));
        };
        self.unbounded(self.client.watch().watch_request(create))
            .await
    }

    /// Lease.LeaseGrant.
    pub async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse, CtlError> {
        self.unary(
            self.client
                .lease()
                .lease_grant_request(LeaseGrantRequest { ttl, id: 0 }),
        )
        .await
    }
    /// Lease.LeaseRevoke.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse, CtlError> {
        self.unary(
            self.client
                .lease()
                .lease_revoke_request(LeaseRevokeRequest { id }),
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
            self.client
                .lease()
                .lease_time_to_live_request(LeaseTimeToLiveRequest { id, keys }),
        )
        .await
    }
    /// Lease.LeaseLeases.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse, CtlError> {
        self.unbounded(
            self.client
                .lease()
                .lease_leases_request(LeaseLeasesRequest {}),
        )
        .await
    }
    /// Lease.LeaseKeepAlive once: the answer to one keep-alive (TTL 0: the lease is gone).
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse, CtlError> {
        self.unbounded(self.client.lease().keep_alive_once(id))
            .await
    }
    /// Lease.LeaseKeepAlive, renewed every third of the TTL over a stream the library re-opens
    /// on another member when its member fails: the task and its answers.
    pub fn lease_keep_alive(
        &self,
        id: i64,
    ) -> (
        KeepAliveHandle,
        tokio::sync::mpsc::Receiver<LeaseKeepAliveResponse>,
    ) {
        self.client.lease().keep_alive_responses(id)
    }
    /// A background keep-alive of lease `id` (etcd's concurrency session).
    pub fn lease_keep_alive_task(&self, id: i64) -> KeepAliveHandle {
        self.client.lease().keep_alive_task(id)
    }

    /// Cluster.MemberAdd.
    pub async fn member_add(&self, r: MemberAddRequest) -> Result<MemberAddResponse, CtlError> {
        self.unary(self.client.cluster().member_add_request(r))
            .await
    }
    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse, CtlError> {
        self.unary(
            self.client
                .cluster()
                .member_remove_request(MemberRemoveRequest { id }),
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
            self.client
                .cluster()
                .member_update_request(MemberUpdateRequest { id, peer_ur_ls }),
        )
        .await
    }
    /// Cluster.MemberPromote.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse, CtlError> {
        self.unary(
            self.client
                .cluster()
                .member_promote_request(MemberPromoteRequest { id }),
        )
        .await
    }
    /// Cluster.MemberList.
    pub async fn member_list(&self) -> Result<MemberListResponse, CtlError> {
        self.unary(
            self.client
                .cluster()
                .member_list_request(MemberListRequest {
                    linearizable: false,
                }),
        )
        .await
    }

    /// Maintenance.Status.
    pub async fn status(&self) -> Result<StatusResponse, CtlError> {
        self.unary(self.client.maintenance().status_request(StatusRequest {}))
            .await
    }
    /// Maintenance.HashKV.
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse, CtlError> {
        self.unary(
            self.client
                .maintenance()
                .hash_kv_request(HashKvRequest { revision }),
        )
        .await
    }
    /// Maintenance.Defragment.
    pub async fn defragment(&self) -> Result<DefragmentResponse, CtlError> {
        self.unary(
            self.client
                .maintenance()
                .defragment_request(DefragmentRequest {}),
        )
        .await
    }
    /// Maintenance.Alarm.
    pub async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse, CtlError> {
        self.unary(self.client.maintenance().alarm_request(r)).await
    }
    /// Maintenance.MoveLeader.
    pub async fn move_leader(&self, target_id: u64) -> Result<MoveLeaderResponse, CtlError> {
        self.unary(
            self.client
                .maintenance()
                .move_leader_request(MoveLeaderRequest { target_id }),
        )
        .await
    }
    /// Maintenance.Snapshot (a stream of chunks; only opening it is bounded).
    pub async fn snapshot(&self) -> Result<SnapshotStream, CtlError> {
        self.unary(
            self.client
                .maintenance()
                .snapshot_request(SnapshotRequest {}),
        )
        .await
    }

    /// Auth.AuthEnable.
    pub async fn auth_enable(&self) -> Result<AuthEnableResponse, CtlError> {
        self.unary(self.client.auth().auth_enable_request(AuthEnableRequest {}))
            .await
    }
    /// Auth.AuthDisable.
    pub async fn auth_disable(&self) -> Result<AuthDisableResponse, CtlError> {
        self.unary(
            self.client
                .auth()
                .auth_disable_request(AuthDisableRequest {}),
        )
        .await
    }
    /// Auth.AuthStatus.
    pub async fn auth_status(&self) -> Result<AuthStatusResponse, CtlError> {
        self.unary(self.client.auth().auth_status_request(AuthStatusRequest {}))
            .await
    }
    /// Auth.UserAdd.
    pub async fn user_add(&self, r: AuthUserAddRequest) -> Result<AuthUserAddResponse, CtlError> {
        self.unary(self.client.auth().user_add_request(r)).await
    }
    /// Auth.UserDelete.
    pub async fn user_delete(&self, name: String) -> Result<AuthUserDeleteResponse, CtlError> {
        self.unary(
            self.client
                .auth()
                .user_delete_request(AuthUserDeleteRequest { name }),
        )
        .await
    }
    /// Auth.UserGet.
    pub async fn user_get(&self, name: String) -> Result<AuthUserGetResponse, CtlError> {
        self.unary(
            self.client
                .auth()
                .user_get_request(AuthUserGetRequest { name }),
        )
        .await
    }
    /// Auth.UserList.
    pub async fn user_list(&self) -> Result<AuthUserListResponse, CtlError> {
        self.unary(self.client.auth().user_list_request(AuthUserListRequest {}))
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
        self.unary(self.client.auth().user_change_password_request(r))
            .await
    }
    /// Auth.UserGrantRole.
    pub async fn user_grant_role(
        &self,
        user: String,
        role: String,
    ) -> Result<AuthUserGrantRoleResponse, CtlError> {
        self.unary(
            self.client
                .auth()
                .user_grant_role_request(AuthUserGrantRoleRequest { user, role }),
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
            self.client
                .auth()
                .user_revoke_role_request(AuthUserRevokeRoleRequest { name, role }),
        )
        .await
    }
    /// Auth.RoleAdd.
    pub async fn role_add(&self, name: String) -> Result<AuthRoleAddResponse, CtlError> {
        self.unary(
            self.client
                .auth()
                .role_add_request(AuthRoleAddRequest { name }),
        )
        .await
    }
    /// Auth.RoleDelete.
    pub async fn role_delete(&self, role: String) -> Result<AuthRoleDeleteResponse, CtlError> {
        self.unary(
            self.client
                .auth()
                .role_delete_request(AuthRoleDeleteRequest { role }),
        )
        .await
    }
    /// Auth.RoleGet.
    pub async fn role_get(&self, role: String) -> Result<AuthRoleGetResponse, CtlError> {
        self.unary(
            self.client
                .auth()
                .role_get_request(AuthRoleGetRequest { role }),
        )
        .await
    }
    /// Auth.RoleList.
    pub async fn role_list(&self) -> Result<AuthRoleListResponse, CtlError> {
        self.unary(self.client.auth().role_list_request(AuthRoleListRequest {}))
            .await
    }
    /// Auth.RoleGrantPermission.
    pub async fn role_grant(
        &self,
        r: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse, CtlError> {
        self.unary(self.client.auth().role_grant_permission_request(r))
            .await
    }
    /// Auth.RoleRevokePermission.
    pub async fn role_revoke(
        &self,
        r: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse, CtlError> {
        self.unary(self.client.auth().role_revoke_permission_request(r))
            .await
    }

    /// Lock.Lock (no timeout: waits for the lock).
    pub async fn lock(&self, name: Vec<u8>, lease: i64) -> Result<LockResponse, CtlError> {
        self.unbounded(self.client.lock().lock_request(LockRequest { name, lease }))
            .await
    }
    /// Lock.Unlock.
    pub async fn unlock(&self, key: Vec<u8>) -> Result<UnlockResponse, CtlError> {
        self.unary(self.client.lock().unlock_request(UnlockRequest { key }))
            .await
    }
    /// Election.Campaign (no timeout: waits for leadership).
    pub async fn campaign(&self, r: CampaignRequest) -> Result<CampaignResponse, CtlError> {
        self.unbounded(self.client.election().campaign_request(r))
            .await
    }
    /// Election.Resign.
    pub async fn resign(&self, leader: LeaderKey) -> Result<ResignResponse, CtlError> {
        self.unary(self.client.election().resign_request(ResignRequest {
            leader: Some(leader),
        }))
        .await
    }
    /// Election.Observe.
    pub fn observe(&self, name: Vec<u8>) -> ObserveStream {
        self.client
            .election()
            .observe_request(LeaderRequest { name })
    }
}
