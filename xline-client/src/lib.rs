//! A client for Xline and any etcd v3 server.
//!
//! [`Client::connect`] takes a list of endpoints; each service is reached through an accessor
//! ([`Client::kv`], [`Client::watch`], [`Client::lease`], [`Client::auth`], [`Client::cluster`],
//! [`Client::maintenance`], [`Client::lock`], [`Client::election`]). Handles are cheap clones that
//! share the connections, and every method takes `&self`.
//!
//! - **Balancing and failover**: calls go round-robin over the endpoints that are not marked
//!   failed; an endpoint that fails is skipped for a while.
//! - **Retries** follow etcd's safe-retry rules: reads are retried on `Unavailable`; writes only
//!   when the request was never sent (the endpoint could not be dialled).
//! - **Auth**: with [`ConnectOptions::with_user`] the client authenticates on connect, sends the
//!   token with every request, and fetches a new one once when a call fails with
//!   `etcdserver: invalid auth token`.
//! - **Errors** rebuild etcd's error kinds from the server's messages: see [`Error`] and
//!   [`EtcdErrorKind`].
//! - **Watches** resume after a member fails, from the revision after the last one delivered,
//!   on another endpoint (see [`WatchClient`]).
//! - **Helpers**: a lease keep-alive task ([`LeaseClient::keep_alive_task`]) and a session
//!   ([`Session`]) for locks and elections.
//!
//! Responses are the etcd protocol messages themselves (re-exported from [`proto`]).
//!
//! ```no_run
//! use xline_client::{Client, ConnectOptions, GetOptions};
//!
//! # async fn run() -> xline_client::Result<()> {
//! let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
//! client.kv().put("foo", "bar", None).await?;
//! let resp = client.kv().get("foo", Some(GetOptions::new().with_prefix())).await?;
//! assert_eq!(resp.kvs[0].value, b"bar");
//! # Ok(())
//! # }
//! ```
//!
//! TLS (`https://` endpoints) is not built in: connecting to one fails with
//! [`Error::Unimplemented`].

/// Runs one unary RPC through the connection pool: `unary!(self, Retry::X, RawClient, method, req)`.
macro_rules! unary {
    ($self:ident, $retry:expr, $client:ident, $method:ident, $req:expr) => {{
        let req = $req;
        $self
            .inner
            .call($retry, |svc| {
                #[allow(clippy::clone_on_copy)]
                let req = req.clone();
                async move { $client::new(svc).$method(req).await }
            })
            .await
    }};
}

mod auth;
mod cluster;
mod conn;
mod election;
mod error;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod session;
mod watch;

use std::sync::Arc;
use std::time::Duration;

pub use xline_proto as proto;
pub use xline_proto::authpb::{Permission as PermissionProto, Role, User};
pub use xline_proto::etcdserverpb::{
    AlarmMember, AlarmResponse, AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse,
    AuthRoleDeleteResponse, AuthRoleGetResponse, AuthRoleGrantPermissionResponse,
    AuthRoleListResponse, AuthRoleRevokePermissionResponse, AuthStatusResponse,
    AuthUserAddResponse, AuthUserChangePasswordResponse, AuthUserDeleteResponse,
    AuthUserGetResponse, AuthUserGrantRoleResponse, AuthUserListResponse,
    AuthUserRevokeRoleResponse, AuthenticateResponse, CompactionResponse, DefragmentResponse,
    DeleteRangeResponse, HashKvResponse, HashResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse, Member, MemberAddResponse,
    MemberListResponse, MemberPromoteResponse, MemberRemoveResponse, MemberUpdateResponse,
    MoveLeaderResponse, PutResponse, RangeResponse, ResponseHeader, ResponseOp, SnapshotResponse,
    StatusResponse, TxnResponse, WatchResponse,
};
pub use xline_proto::mvccpb::{Event, KeyValue, event::EventType};
pub use xline_proto::v3electionpb::{
    CampaignResponse, LeaderKey, LeaderResponse, ProclaimResponse, ResignResponse,
};
pub use xline_proto::v3lockpb::{LockResponse, UnlockResponse};

pub use auth::{
    AuthClient, Permission, PermissionType, RoleRevokePermissionOptions, UserAddOptions,
};
pub use cluster::{ClusterClient, MemberAddOptions};
pub use election::{ElectionClient, ObserveStream};
pub use error::{ConcurrencyErrorKind, Error, EtcdErrorKind, Result};
pub use kv::{
    CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, KvClient, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp,
};
pub use lease::{
    KeepAliveHandle, LeaseClient, LeaseGrantOptions, LeaseKeepAliveStream, LeaseKeeper,
    LeaseTimeToLiveOptions,
};
pub use lock::{LockClient, LockOptions};
pub use maintenance::{AlarmAction, AlarmType, MaintenanceClient, SnapshotStream};
pub use session::{Session, SessionLock};
pub use watch::{WatchClient, WatchOptions, WatchStream, Watcher};

/// How a [`Client`] connects and calls.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub(crate) user: Option<(String, String)>,
    pub(crate) dial_timeout: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) keep_alive: Option<(Duration, Duration)>,
    pub(crate) max_retries: Option<usize>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            user: None,
            dial_timeout: Duration::from_secs(2),
            timeout: None,
            keep_alive: None,
            max_retries: None,
        }
    }
}

impl ConnectOptions {
    /// Defaults: no auth, 2 s dial timeout, no per-call timeout, no keep-alive pings, and
    /// retries until the per-call timeout (without one: `2 * endpoints + 1` attempts per call).
    pub fn new() -> Self {
        Self::default()
    }

    /// Authenticates as `name` with `password` (on connect, and again when the token expires).
    #[must_use]
    pub fn with_user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((name.into(), password.into()));
        self
    }

    /// How long dialling one endpoint may take (etcdctl's `--dial-timeout`).
    #[must_use]
    pub fn with_dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// How long one call may take, retries included (etcdctl's `--command-timeout`); streams
    /// are bounded only while they open.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// HTTP/2 keep-alive pings every `interval`; a connection whose ping is not answered within
    /// `timeout` is closed (and its calls fail over).
    #[must_use]
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((interval, timeout));
        self
    }

    /// At most `n` attempts per call (at least 1).
    #[must_use]
    pub fn with_max_retries(mut self, n: usize) -> Self {
        self.max_retries = Some(n);
        self
    }
}

/// A client of an etcd v3 / Xline cluster. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<conn::Inner>,
}

impl Client {
    /// Connects to a cluster through `endpoints` (`host:port` or `http://host:port`).
    ///
    /// Endpoints are dialled when first used; with a user configured, the client authenticates
    /// here (so bad credentials fail now).
    pub async fn connect<E, S>(endpoints: E, options: ConnectOptions) -> Result<Self>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.as_ref().to_owned())
            .collect();
        let inner = Arc::new(conn::Inner::new(&endpoints, options)?);
        if inner.opts.user.is_some() {
            let refresh = inner.refresh_token();
            match inner.opts.timeout {
                Some(t) => tokio::time::timeout(t, refresh)
                    .await
                    .map_err(|_| Error::Timeout)??,
                None => refresh.await?,
            }
        }
        Ok(Self { inner })
    }

    /// The endpoint URLs this client balances over.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.endpoints()
    }

    /// The auth token in use, if the client authenticated.
    pub fn token(&self) -> Option<String> {
        self.inner.token()
    }

    /// The KV service: get, put, delete, txn, compact.
    pub fn kv(&self) -> KvClient {
        KvClient::new(self.inner.clone())
    }

    /// The Watch service.
    pub fn watch(&self) -> WatchClient {
        WatchClient::new(self.inner.clone())
    }

    /// The Lease service and the keep-alive helper.
    pub fn lease(&self) -> LeaseClient {
        LeaseClient::new(self.inner.clone())
    }

    /// The Auth service: users, roles, enabling auth.
    pub fn auth(&self) -> AuthClient {
        AuthClient::new(self.inner.clone())
    }

    /// The Cluster service: membership.
    pub fn cluster(&self) -> ClusterClient {
        ClusterClient::new(self.inner.clone())
    }

    /// The Maintenance service: status, alarms, defragment, hashes, snapshot, move-leader.
    pub fn maintenance(&self) -> MaintenanceClient {
        MaintenanceClient::new(self.inner.clone())
    }

    /// The Lock service.
    pub fn lock(&self) -> LockClient {
        LockClient::new(self.inner.clone())
    }

    /// The Election service.
    pub fn election(&self) -> ElectionClient {
        ElectionClient::new(self.inner.clone())
    }
}
