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
//! **Raw requests**: besides the typed builders, every RPC can be sent as etcd's own request
//! message through `<rpc>_request`, named after the RPC in snake case: e.g.
//! [`KvClient::range_request`] (`RangeRequest` in, `RangeResponse` out),
//! [`LeaseClient::lease_grant_request`], [`AuthClient::user_add_request`],
//! [`ClusterClient::member_list_request`], [`MaintenanceClient::status_request`],
//! [`LockClient::lock_request`], [`ElectionClient::campaign_request`],
//! [`WatchClient::watch_request`]. They go through the same balancing, failover, retry rules
//! (by the RPC: reads repeatable, writes not) and auth token as the typed calls; tools that
//! print etcd's messages themselves (`xlinectl`) use them.
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
//! **TLS**: `https://` endpoints use TLS (verified against the system's roots unless
//! [`ConnectOptions::with_tls`] gives a CA bundle); with [`TlsOptions`] given, bare `host:port`
//! endpoints use TLS too (as etcdctl with `--cacert`), while `http://` ones stay plaintext. A
//! client certificate ([`TlsOptions::with_identity`]) authenticates as its common name on a
//! server with `--client-cert-auth`.

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

/// Implements the key-range builders of an options type whose `range` field is a
/// `kv::RangeSpec`: `range_methods!(Type, "Verb", with_range [, with_all_keys])` adds the method
/// named by the third argument (`[key, end)`), `with_prefix`, `with_from_key` and, when named,
/// the every-key method, documented with the verb ("Gets", "Deletes", ...).
macro_rules! range_methods {
    ($ty:ty, $verb:literal, $with_end:ident $(, $with_all:ident)?) => {
        impl $ty {
            #[doc = concat!($verb, " `[key, end)`.")]
            #[must_use]
            pub fn $with_end(mut self, end: impl Into<Vec<u8>>) -> Self {
                self.range = $crate::kv::RangeSpec::End(end.into());
                self
            }

            #[doc = concat!($verb, " every key with the key as prefix (an empty key: every key).")]
            #[must_use]
            pub fn with_prefix(mut self) -> Self {
                self.range = $crate::kv::RangeSpec::Prefix;
                self
            }

            #[doc = concat!($verb, " every key `>=` the key.")]
            #[must_use]
            pub fn with_from_key(mut self) -> Self {
                self.range = $crate::kv::RangeSpec::FromKey;
                self
            }

            $(
                #[doc = concat!($verb, " every key (the key given is ignored).")]
                #[must_use]
                pub fn $with_all(mut self) -> Self {
                    self.range = $crate::kv::RangeSpec::All;
                    self
                }
            )?
        }
    };
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
#[cfg(feature = "native")]
pub mod native;
mod session;
mod tls;
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
pub use tls::TlsOptions;
pub use watch::{WatchClient, WatchOptions, WatchStream, Watcher};

/// How a [`Client`] connects and calls.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub(crate) user: Option<(String, String)>,
    pub(crate) dial_timeout: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) keep_alive: Option<(Duration, Duration)>,
    pub(crate) max_retries: Option<usize>,
    pub(crate) tls: Option<TlsOptions>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            user: None,
            dial_timeout: Duration::from_secs(2),
            timeout: None,
            keep_alive: None,
            max_retries: None,
            tls: None,
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

    /// Connects with TLS: to `https://` endpoints and bare `host:port` ones (`http://` endpoints
    /// stay plaintext). The PEM material is checked when the client is built
    /// ([`Error::Tls`]); a failed handshake is an [`Error::Connect`].
    #[must_use]
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A client of an etcd v3 / Xline cluster. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<conn::Inner>,
}

impl Client {
    /// Connects to a cluster through `endpoints` (`host:port`, `http://host:port` or
    /// `https://host:port`; see [`ConnectOptions::with_tls`]).
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
