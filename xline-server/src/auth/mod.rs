//! etcd's authentication and authorization: users, roles, range permissions, the auth switch,
//! tokens and the checks every service makes.
//!
//! The [`AuthStore`] holds the replicated state (users, roles, whether auth is enabled, and the
//! auth revision, which moves on every change), loaded from `Table::Auth` and changed only by
//! applying consensus commands ([`AuthStore::apply`], from the MVCC store's apply, in the same
//! backend batch). It also keeps a per-user permission cache, rebuilt on every change.
//!
//! Checks follow etcd: reads are checked where they are served, writes are checked when they
//! are applied against the auth state of that moment, with the user and auth revision the
//! proposer attached (an [`AuthHeader`]); a request made at an older auth revision than the
//! store's fails with "auth revision is old" and clients re-authenticate. With auth disabled
//! every check is one atomic load.

pub mod perms;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use prost::Message;
use tonic::metadata::MetadataMap;
use xline_proto::authpb::{Role, User, UserAddOptions};
use xline_proto::etcdserverpb::{
    AuthRoleGetResponse, AuthStatusResponse, AuthUserGetResponse, RequestOp, TxnRequest, request_op,
};

use crate::command::Request;
use crate::error::{EtcdError, ServerError};
use crate::storage::backend::{Backend, WriteBatch};
use crate::storage::schema::Table;
pub use perms::Access;
use perms::{UserPerms, is_valid_permission_range};
pub use token::{TokenLookup, TokenProvider};

/// The user every permission is granted to when it has the root role.
pub const ROOT_USER: &str = "root";
/// The role that grants everything.
pub const ROOT_ROLE: &str = "root";
/// etcd's default bcrypt cost.
pub const DEFAULT_BCRYPT_COST: u32 = 10;
/// How long a request bearing a simple token issued at a log index this member has not
/// applied yet waits for it.
const TOKEN_INDEX_WAIT: Duration = Duration::from_secs(5);

/// `Table::Auth` keys.
const KEY_ENABLED: &[u8] = b"enabled";
const KEY_REVISION: &[u8] = b"revision";
const USER_PREFIX: &[u8] = b"user/";
const ROLE_PREFIX: &[u8] = b"role/";

/// Who makes a long-lived request (a Watch stream): the credentials it came with, checked
/// again on each watch it creates, as etcd checks each create against the stream's context.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The auth token (metadata `token` or `authorization`).
    pub token: Option<String>,
    /// The user the client's verified certificate names (`crate::tls::cert_user`); used only
    /// when there is no token, as etcd's `AuthInfoFromTLS`.
    pub cert_user: Option<String>,
}

impl Caller {
    /// The caller of a request with metadata `md`.
    pub fn of(md: &MetadataMap) -> Self {
        Self {
            token: AuthStore::token_of(md),
            cert_user: crate::tls::cert_user(md),
        }
    }
}

// The proposal types of the log live with the command (crate `xline-native`).
pub use xline_native::{AuthHeader, AuthenticateProposal};

/// What applying an auth command gives its proposer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthApplied {
    /// The change was made.
    Done,
    /// Authenticate: the token issued.
    Token(String),
}

#[derive(Debug, Default)]
struct AuthState {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Merged permissions by user, rebuilt on every change.
    perms: HashMap<String, UserPerms>,
}

impl AuthState {
    fn load(backend: &dyn Backend) -> Result<Self, ServerError> {
        let mut st = AuthState {
            revision: 1,
            ..Default::default()
        };
        for (key, value) in backend.range(Table::Auth, &[], &[], 0)? {
            let corrupt = |what: &str| ServerError::Corrupt(format!("auth {what} {key:?}"));
            if key == KEY_ENABLED {
                st.enabled = value.first() == Some(&1);
            } else if key == KEY_REVISION {
                let bytes: [u8; 8] = value
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("revision"))?;
                st.revision = u64::from_be_bytes(bytes);
            } else if let Some(name) = key.strip_prefix(USER_PREFIX) {
                let user = User::decode(value.as_slice()).map_err(|_| corrupt("user"))?;
                st.users
                    .insert(String::from_utf8_lossy(name).into_owned(), user);
            } else if let Some(name) = key.strip_prefix(ROLE_PREFIX) {
                let role = Role::decode(value.as_slice()).map_err(|_| corrupt("role"))?;
                st.roles
                    .insert(String::from_utf8_lossy(name).into_owned(), role);
            }
        }
        st.refresh_perms();
        Ok(st)
    }

    fn refresh_perms(&mut self) {
        let roles = &self.roles;
        self.perms = self
            .users
            .iter()
            .map(|(name, user)| {
                let perms = UserPerms::build(user.roles.iter().filter_map(|r| roles.get(r)));
                (name.clone(), perms)
            })
            .collect();
    }

    /// etcd's `IsAdminPermitted`.
    fn admin(&self, ai: Option<&AuthHeader>) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(ai) = ai.filter(|ai| !ai.username.is_empty()) else {
            return Err(EtcdError::UserEmpty);
        };
        let user = self
            .users
            .get(&ai.username)
            .ok_or(EtcdError::UserNotFound)?;
        if !has_root_role(user) {
            return Err(EtcdError::PermissionDenied);
        }
        Ok(())
    }

    /// etcd's `isOpPermitted`.
    fn op(
        &self,
        ai: Option<&AuthHeader>,
        access: Access,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(ai) = ai.filter(|ai| ai.revision != 0) else {
            return Err(EtcdError::UserEmpty);
        };
        if ai.revision < self.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        let user = self
            .users
            .get(&ai.username)
            .ok_or(EtcdError::PermissionDenied)?;
        if has_root_role(user) {
            return Ok(());
        }
        let allowed = self
            .perms
            .get(&ai.username)
            .is_some_and(|p| p.allows(access, key, range_end));
        if allowed {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// etcd's `checkTxnPermission`: every compare reads, every op of both branches as itself.
    fn txn(&self, ai: Option<&AuthHeader>, txn: &TxnRequest) -> Result<(), EtcdError> {
        for cmp in &txn.compare {
            self.op(ai, Access::Read, &cmp.key, &cmp.range_end)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            self.request_op(ai, op)?;
        }
        Ok(())
    }

    fn request_op(&self, ai: Option<&AuthHeader>, op: &RequestOp) -> Result<(), EtcdError> {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                self.op(ai, Access::Read, &r.key, &r.range_end)
            }
            Some(request_op::Request::RequestPut(p)) => {
                self.op(ai, Access::Write, &p.key, &[])?;
                if p.prev_kv {
                    self.op(ai, Access::Read, &p.key, &[])?;
                }
                Ok(())
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                if d.prev_kv {
                    self.op(ai, Access::Read, &d.key, &d.range_end)?;
                }
                self.op(ai, Access::Write, &d.key, &d.range_end)
            }
            Some(request_op::Request::RequestTxn(t)) => self.txn(ai, t),
            None => Ok(()),
        }
    }
}

fn has_root_role(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT_ROLE)
}

fn user_key(name: &str) -> Vec<u8> {
    [USER_PREFIX, name.as_bytes()].concat()
}

fn role_key(name: &str) -> Vec<u8> {
    [ROLE_PREFIX, name.as_bytes()].concat()
}

/// Users, roles, the auth switch and tokens of one member; see the module docs.
#[derive(Debug)]
pub struct AuthStore {
    /// Mirrors `state.enabled`: the one load the hot path makes.
    enabled: AtomicBool,
    state: RwLock<AuthState>,
    tokens: RwLock<Arc<TokenProvider>>,
    bcrypt_cost: AtomicU32,
    /// The member's applied index (simple tokens name the index that issued them).
    applied: tokio::sync::watch::Sender<u64>,
}

impl AuthStore {
    /// Loads the auth state from `backend`, with simple tokens of etcd's default TTL until
    /// [`AuthStore::configure`] says otherwise.
    pub fn open(backend: &dyn Backend, applied_index: u64) -> Result<Self, ServerError> {
        let state = AuthState::load(backend)?;
        let simple = TokenProvider::from_option(
            "simple",
            Duration::from_secs(token::DEFAULT_SIMPLE_TTL_SECS),
        )
        .map_err(ServerError::Config)?;
        Ok(Self {
            enabled: AtomicBool::new(state.enabled),
            state: RwLock::new(state),
            tokens: RwLock::new(Arc::new(simple)),
            bcrypt_cost: AtomicU32::new(DEFAULT_BCRYPT_COST),
            applied: tokio::sync::watch::Sender::new(applied_index),
        })
    }

    /// Sets the token provider (`--auth-token`, `--auth-token-ttl`) and the bcrypt cost
    /// (`--bcrypt-cost`; out of bcrypt's range, etcd's default is used with a warning).
    pub fn configure(
        &self,
        auth_token: &str,
        token_ttl: Duration,
        bcrypt_cost: u32,
    ) -> Result<(), ServerError> {
        let provider = TokenProvider::from_option(auth_token, token_ttl)
            .map_err(|e| ServerError::Config(format!("--auth-token: {e}")))?;
        *self.tokens.write() = Arc::new(provider);
        let cost = if (4..=31).contains(&bcrypt_cost) {
            bcrypt_cost
        } else {
            tracing::warn!(
                given = bcrypt_cost,
                default = DEFAULT_BCRYPT_COST,
                "use default bcrypt cost instead of the invalid given cost"
            );
            DEFAULT_BCRYPT_COST
        };
        self.bcrypt_cost.store(cost, Ordering::Relaxed);
        Ok(())
    }

    /// Reloads everything from `backend` (after a snapshot was installed there). Tokens issued
    /// so far are dropped, as etcd's are when it recovers from a snapshot with auth disabled.
    pub fn reload(&self, backend: &dyn Backend, applied_index: u64) -> Result<(), ServerError> {
        let fresh = AuthState::load(backend)?;
        let mut st = self.state.write();
        if !fresh.enabled {
            self.tokens.read().clear();
        }
        self.enabled.store(fresh.enabled, Ordering::Release);
        *st = fresh;
        drop(st);
        self.applied.send_replace(applied_index);
        Ok(())
    }

    /// Records that the member has applied up to `index` (wakes requests waiting on a simple
    /// token issued there).
    pub fn set_applied(&self, index: u64) {
        self.applied.send_if_modified(|current| {
            let moved = *current < index;
            *current = (*current).max(index);
            moved
        });
    }

    /// Whether auth is enabled (one atomic load).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The auth revision.
    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// `Auth.AuthStatus`.
    pub fn status(&self) -> AuthStatusResponse {
        let st = self.state.read();
        AuthStatusResponse {
            header: None,
            enabled: st.enabled,
            auth_revision: st.revision,
        }
    }

    /// The bcrypt cost in force.
    pub fn bcrypt_cost(&self) -> u32 {
        self.bcrypt_cost.load(Ordering::Relaxed)
    }

    /// A fresh simple-token prefix (empty for JWT).
    pub fn gen_token_prefix(&self) -> String {
        self.tokens.read().gen_prefix()
    }

    // ----- the API side -----

    /// The user a request's token names (metadata `token`, or `authorization` as etcd's
    /// gateway sends it), with the auth revision it stands for. `None` when auth is disabled
    /// or the request carries no token; etcd's "invalid auth token" when the token is unknown,
    /// expired or not valid.
    pub async fn request_info(&self, md: &MetadataMap) -> Result<Option<AuthHeader>, EtcdError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let Some(raw) = md.get("token").or_else(|| md.get("authorization")) else {
            // No token: with --client-cert-auth, the verified certificate's CN is the user
            // (etcd's AuthInfoFromTLS).
            return Ok(crate::tls::cert_user(md).map(|username| AuthHeader {
                username,
                revision: self.revision(),
            }));
        };
        let raw = raw.to_str().map_err(|_| EtcdError::InvalidAuthToken)?;
        let token = raw.strip_prefix("Bearer ").unwrap_or(raw);
        let tokens = Arc::clone(&self.tokens.read());
        let mut lookup = tokens.lookup(token, *self.applied.borrow());
        if let TokenLookup::Pending(index) = lookup {
            let mut rx = self.applied.subscribe();
            let applied =
                tokio::time::timeout(TOKEN_INDEX_WAIT, rx.wait_for(|a| *a >= index)).await;
            if matches!(applied, Ok(Ok(_))) {
                lookup = tokens.lookup(token, *self.applied.borrow());
            }
        }
        match lookup {
            TokenLookup::Valid { username, revision } => Ok(Some(AuthHeader {
                username,
                revision: revision.unwrap_or_else(|| self.revision()),
            })),
            TokenLookup::Pending(_) | TokenLookup::Invalid => {
                tracing::warn!("invalid auth token");
                Err(EtcdError::InvalidAuthToken)
            }
        }
    }

    /// The auth token a request carries, if any.
    pub fn token_of(md: &MetadataMap) -> Option<String> {
        let raw = md.get("token").or_else(|| md.get("authorization"))?;
        let raw = raw.to_str().ok()?;
        Some(raw.strip_prefix("Bearer ").unwrap_or(raw).to_owned())
    }

    /// Copies the auth token `from` carries (if any) into `to` as `token` metadata.
    pub fn copy_token(from: &MetadataMap, to: &mut MetadataMap) {
        if let Some(token) = Self::token_of(from)
            && let Ok(value) = tonic::metadata::AsciiMetadataValue::try_from(token.as_str())
        {
            to.insert("token", value);
        }
    }

    /// Copies the caller's identity (its token, and the user its certificate names) from one
    /// in-process request's metadata to another's: what the Lock and Election services' own
    /// requests carry. Never for a request sent over the network (the certificate's user is
    /// an in-process entry): a forwarded request uses [`crate::tls::forward_identity`].
    pub fn copy_identity(from: &MetadataMap, to: &mut MetadataMap) {
        Self::copy_token(from, to);
        crate::tls::copy_cert_user(from, to);
    }

    /// Whether `caller` may read the key or range (a Watch create, etcd's `isWatchPermitted`,
    /// which takes the user from the token, or from the certificate when there is no token);
    /// always true with auth disabled.
    pub fn permits_read(&self, caller: &Caller, key: &[u8], range_end: &[u8]) -> bool {
        if !self.is_enabled() {
            return true;
        }
        let ai = match (&caller.token, &caller.cert_user) {
            (None, None) => None,
            (None, Some(username)) => Some(AuthHeader {
                username: username.clone(),
                revision: self.revision(),
            }),
            (Some(token), _) => match self.tokens.read().lookup(token, *self.applied.borrow()) {
                TokenLookup::Valid { username, revision } => Some(AuthHeader {
                    username,
                    revision: revision.unwrap_or_else(|| self.revision()),
                }),
                TokenLookup::Pending(_) | TokenLookup::Invalid => return false,
            },
        };
        self.state
            .read()
            .op(ai.as_ref(), Access::Read, key, range_end)
            .is_ok()
    }

    /// The header to attach to a proposal made for a client's request; the permission check
    /// happens when it is applied. A request without a token (or made while auth is disabled)
    /// gets an empty header: should auth be enabled before it applies, it is refused as etcd
    /// refuses it. Only the member's own proposals (lease expiry, alarms) carry none.
    pub async fn proposal_header(&self, md: &MetadataMap) -> Result<Option<AuthHeader>, EtcdError> {
        Ok(Some(self.request_info(md).await?.unwrap_or_default()))
    }

    /// Checks a read of the key, or of `[key, range_end)`, for the request's user.
    pub async fn check_read(
        &self,
        md: &MetadataMap,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let ai = self.request_info(md).await?;
        self.state
            .read()
            .op(ai.as_ref(), Access::Read, key, range_end)
    }

    /// Checks every compare and op of a txn for the request's user.
    pub async fn check_txn(&self, md: &MetadataMap, txn: &TxnRequest) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let ai = self.request_info(md).await?;
        self.state.read().txn(ai.as_ref(), txn)
    }

    /// etcd's `IsAdminPermitted` for the request's user (root role needed).
    pub async fn check_admin(&self, md: &MetadataMap) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let ai = self.request_info(md).await?;
        self.state.read().admin(ai.as_ref())
    }

    /// An admin for a change, any authenticated user for a read (etcd's Maintenance.Alarm).
    pub async fn check_admin_or_user(
        &self,
        md: &MetadataMap,
        read_only: bool,
    ) -> Result<(), ServerError> {
        if read_only {
            self.check_user(md).await?;
        } else {
            self.check_admin(md).await?;
        }
        Ok(())
    }

    /// etcd's `requireAuthInfo`: any authenticated user (Lease grant, Status, alarm list).
    pub async fn check_user(&self, md: &MetadataMap) -> Result<Option<AuthHeader>, EtcdError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        match self.request_info(md).await? {
            Some(ai) => Ok(Some(ai)),
            None => Err(EtcdError::UserEmpty),
        }
    }

    /// Checks `access` to each of `keys` (the keys attached to a lease) for the request's user,
    /// unless it is an admin (etcd's `checkLeaseRenew` and friends).
    pub async fn check_keys(
        &self,
        md: &MetadataMap,
        access: Access,
        keys: &[Vec<u8>],
    ) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let ai = self.request_info(md).await?;
        let st = self.state.read();
        if ai.is_none() {
            return Err(EtcdError::UserEmpty);
        }
        if st.admin(ai.as_ref()).is_ok() {
            return Ok(());
        }
        for key in keys {
            st.op(ai.as_ref(), access, key, &[])?;
        }
        Ok(())
    }

    /// `Auth.UserGet`: an admin, or the user itself.
    pub async fn user_get(
        &self,
        md: &MetadataMap,
        name: &str,
    ) -> Result<AuthUserGetResponse, EtcdError> {
        let ai = self.request_info(md).await?;
        let st = self.state.read();
        if let Err(e) = st.admin(ai.as_ref())
            && ai.as_ref().is_none_or(|ai| ai.username != name)
        {
            return Err(e);
        }
        let user = st.users.get(name).ok_or(EtcdError::UserNotFound)?;
        Ok(AuthUserGetResponse {
            header: None,
            roles: user.roles.clone(),
        })
    }

    /// `Auth.RoleGet`: an admin, or a user that has the role.
    pub async fn role_get(
        &self,
        md: &MetadataMap,
        name: &str,
    ) -> Result<AuthRoleGetResponse, EtcdError> {
        let ai = self.request_info(md).await?;
        let st = self.state.read();
        if let Err(e) = st.admin(ai.as_ref()) {
            let has_role = ai
                .as_ref()
                .and_then(|ai| st.users.get(&ai.username))
                .is_some_and(|u| u.roles.iter().any(|r| r == name));
            if !has_role {
                return Err(e);
            }
        }
        let role = st.roles.get(name).ok_or(EtcdError::RoleNotFound)?;
        // The role's own grants, also for root, as etcd 3.4 answers (etcd 3.5 lists root with
        // one readwrite permission on every key instead; `etcdctl role get root` is compared
        // with etcd 3.4 in scripts/etcdctl-compat.sh).
        Ok(AuthRoleGetResponse {
            header: None,
            perm: role.key_permission.clone(),
        })
    }

    /// `Auth.UserList` (admin).
    pub async fn user_list(&self, md: &MetadataMap) -> Result<Vec<String>, EtcdError> {
        self.check_admin(md).await?;
        Ok(self.state.read().users.keys().cloned().collect())
    }

    /// `Auth.RoleList` (admin).
    pub async fn role_list(&self, md: &MetadataMap) -> Result<Vec<String>, EtcdError> {
        self.check_admin(md).await?;
        Ok(self.state.read().roles.keys().cloned().collect())
    }

    /// etcd's `CheckPassword`, before an Authenticate is proposed: the auth revision the
    /// password was checked at. bcrypt is slow by design: call it off the async workers.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, EtcdError> {
        let (hash, revision) = {
            let st = self.state.read();
            if !st.enabled {
                return Err(EtcdError::AuthNotEnabled);
            }
            let user = st.users.get(name).ok_or(EtcdError::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(EtcdError::NoPasswordUser);
            }
            (user.password.clone(), st.revision)
        };
        let hash = String::from_utf8(hash).map_err(|_| EtcdError::AuthFailed)?;
        match bcrypt::verify(password, &hash) {
            Ok(true) => Ok(revision),
            _ => Err(EtcdError::AuthFailed),
        }
    }

    /// Hashes a password for a proposal (etcd 3.5 hashes on the proposer so that applying is
    /// cheap). Slow by design: call it off the async workers.
    pub fn hash_password(&self, password: &str) -> Result<String, ServerError> {
        bcrypt::hash(password, self.bcrypt_cost())
            .map_err(|e| ServerError::Config(format!("bcrypt: {e}")))
    }

    // ----- the apply side -----

    /// Checks, at apply time, that the user `ai` names may make `request` (etcd's auth
    /// applier); `lease_keys` lists the keys attached to a lease.
    pub fn check_apply(
        &self,
        request: &Request,
        ai: Option<&AuthHeader>,
        lease_keys: impl Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        // The member's own proposals (etcd makes them as root).
        let Some(header) = ai else {
            return Ok(());
        };
        // The anonymous header of native clients (`native::admit`): no credentials.
        if header.username.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let st = self.state.read();
        let lease_puts = |lease: i64| -> Result<(), EtcdError> {
            if lease == 0 || st.admin(ai).is_ok() {
                return Ok(());
            }
            for key in lease_keys(lease) {
                st.op(ai, Access::Write, &key, &[])?;
            }
            Ok(())
        };
        match request {
            Request::Put(put) => {
                st.op(ai, Access::Write, &put.key, &[])?;
                lease_puts(put.lease)?;
                if put.prev_kv {
                    st.op(ai, Access::Read, &put.key, &[])?;
                }
                Ok(())
            }
            Request::DeleteRange(del) => {
                st.op(ai, Access::Write, &del.key, &del.range_end)?;
                if del.prev_kv {
                    st.op(ai, Access::Read, &del.key, &del.range_end)?;
                }
                Ok(())
            }
            Request::Txn(txn) => {
                st.txn(ai, txn)?;
                for_each_put_lease(txn, &mut |lease| lease_puts(lease))
            }
            Request::LeaseRevoke(revoke) => lease_puts(revoke.id),
            r if r.is_auth_management() => st.admin(ai),
            _ => Ok(()),
        }
    }

    /// Applies an auth command (one for which `Request::is_auth` holds) at log `index`,
    /// adding its writes to `wb`.
    pub fn apply(
        &self,
        request: &Request,
        ai: Option<&AuthHeader>,
        index: u64,
        wb: &mut WriteBatch,
    ) -> Result<AuthApplied, EtcdError> {
        let mut st = self.state.write();
        if request.is_auth_management() && ai.is_some() {
            st.admin(ai)?;
        }
        let mut bump = true;
        match request {
            Request::AuthEnable(_) => {
                if st.enabled {
                    return Ok(AuthApplied::Done);
                }
                let root = st.users.get(ROOT_USER).ok_or(EtcdError::RootUserNotExist)?;
                if !has_root_role(root) {
                    return Err(EtcdError::RootRoleNotExist);
                }
                st.enabled = true;
                wb.put(Table::Auth, KEY_ENABLED, [1u8]);
                // etcd does not move the revision on enable.
                bump = false;
                tracing::info!("enabled authentication");
            }
            Request::AuthDisable(_) => {
                if !st.enabled {
                    return Ok(AuthApplied::Done);
                }
                st.enabled = false;
                wb.put(Table::Auth, KEY_ENABLED, [0u8]);
                self.tokens.read().clear();
                tracing::info!("disabled authentication");
            }
            Request::Authenticate(req) => {
                if !st.enabled {
                    return Err(EtcdError::AuthNotEnabled);
                }
                let user = st.users.get(&req.name).ok_or(EtcdError::AuthFailed)?;
                if user.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(EtcdError::AuthFailed);
                }
                let token = self
                    .tokens
                    .read()
                    .assign(&req.name, st.revision, &req.simple_token_prefix, index)
                    .map_err(|e| {
                        tracing::error!(error = %e, "failed to issue an auth token");
                        EtcdError::AuthFailed
                    })?;
                return Ok(AuthApplied::Token(token));
            }
            Request::UserAdd(req) => {
                if req.name.is_empty() {
                    return Err(EtcdError::UserEmpty);
                }
                if st.users.contains_key(&req.name) {
                    return Err(EtcdError::UserAlreadyExist);
                }
                let options = req.options.unwrap_or(UserAddOptions { no_password: false });
                let password = if options.no_password {
                    Vec::new()
                } else {
                    req.hashed_password.as_bytes().to_vec()
                };
                let user = User {
                    name: req.name.as_bytes().to_vec(),
                    password,
                    roles: Vec::new(),
                    options: Some(options),
                };
                wb.put(Table::Auth, user_key(&req.name), user.encode_to_vec());
                st.users.insert(req.name.clone(), user);
            }
            Request::UserDelete(req) => {
                if st.enabled && req.name == ROOT_USER {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                if st.users.remove(&req.name).is_none() {
                    return Err(EtcdError::UserNotFound);
                }
                wb.delete(Table::Auth, user_key(&req.name));
                self.tokens.read().invalidate_user(&req.name);
            }
            Request::UserChangePassword(req) => {
                let user = st.users.get_mut(&req.name).ok_or(EtcdError::UserNotFound)?;
                if !user.options.as_ref().is_some_and(|o| o.no_password) {
                    user.password = req.hashed_password.as_bytes().to_vec();
                }
                wb.put(Table::Auth, user_key(&req.name), user.encode_to_vec());
                self.tokens.read().invalidate_user(&req.name);
            }
            Request::UserGrantRole(req) => {
                if req.role != ROOT_ROLE && !st.roles.contains_key(&req.role) {
                    if !st.users.contains_key(&req.user) {
                        return Err(EtcdError::UserNotFound);
                    }
                    return Err(EtcdError::RoleNotFound);
                }
                let user = st.users.get_mut(&req.user).ok_or(EtcdError::UserNotFound)?;
                match user.roles.binary_search(&req.role) {
                    Ok(_) => return Ok(AuthApplied::Done),
                    Err(at) => user.roles.insert(at, req.role.clone()),
                }
                wb.put(Table::Auth, user_key(&req.user), user.encode_to_vec());
            }
            Request::UserRevokeRole(req) => {
                if st.enabled && req.name == ROOT_USER && req.role == ROOT_ROLE {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let user = st.users.get_mut(&req.name).ok_or(EtcdError::UserNotFound)?;
                let before = user.roles.len();
                user.roles.retain(|r| *r != req.role);
                if user.roles.len() == before {
                    return Err(EtcdError::RoleNotGranted);
                }
                wb.put(Table::Auth, user_key(&req.name), user.encode_to_vec());
            }
            Request::RoleAdd(req) => {
                if req.name.is_empty() {
                    return Err(EtcdError::RoleEmpty);
                }
                if st.roles.contains_key(&req.name) {
                    return Err(EtcdError::RoleAlreadyExist);
                }
                let role = Role {
                    name: req.name.as_bytes().to_vec(),
                    key_permission: Vec::new(),
                };
                wb.put(Table::Auth, role_key(&req.name), role.encode_to_vec());
                st.roles.insert(req.name.clone(), role);
            }
            Request::RoleDelete(req) => {
                if st.enabled && req.role == ROOT_ROLE {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                if st.roles.remove(&req.role).is_none() {
                    return Err(EtcdError::RoleNotFound);
                }
                wb.delete(Table::Auth, role_key(&req.role));
                for (name, user) in st.users.iter_mut() {
                    let before = user.roles.len();
                    user.roles.retain(|r| *r != req.role);
                    if user.roles.len() != before {
                        wb.put(Table::Auth, user_key(name), user.encode_to_vec());
                    }
                }
            }
            Request::RoleGrantPermission(req) => {
                let perm = req.perm.as_ref().ok_or(EtcdError::PermissionNotGiven)?;
                if !is_valid_permission_range(&perm.key, &perm.range_end) {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let role = st.roles.get_mut(&req.name).ok_or(EtcdError::RoleNotFound)?;
                let existing = role
                    .key_permission
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end);
                match existing {
                    Some(p) => p.perm_type = perm.perm_type,
                    None => {
                        role.key_permission.push(perm.clone());
                        role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                wb.put(Table::Auth, role_key(&req.name), role.encode_to_vec());
            }
            Request::RoleRevokePermission(req) => {
                let role = st.roles.get_mut(&req.role).ok_or(EtcdError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission
                    .retain(|p| !(p.key == req.key && p.range_end == req.range_end));
                if role.key_permission.len() == before {
                    return Err(EtcdError::PermissionNotGranted);
                }
                wb.put(Table::Auth, role_key(&req.role), role.encode_to_vec());
            }
            _ => return Err(EtcdError::InvalidAuthMgmt),
        }
        if bump {
            st.revision += 1;
            wb.put(Table::Auth, KEY_REVISION, st.revision.to_be_bytes());
        }
        st.refresh_perms();
        self.enabled.store(st.enabled, Ordering::Release);
        Ok(AuthApplied::Done)
    }
}

/// Calls `f` with the lease of every put in both branches of `txn`, recursively.
fn for_each_put_lease(
    txn: &TxnRequest,
    f: &mut impl FnMut(i64) -> Result<(), EtcdError>,
) -> Result<(), EtcdError> {
    for op in txn.success.iter().chain(&txn.failure) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) if p.lease != 0 => f(p.lease)?,
            Some(request_op::Request::RequestTxn(t)) => for_each_put_lease(t, f)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
