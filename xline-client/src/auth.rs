//! The Auth service: enabling auth, users, roles and permissions.

use std::sync::Arc;

use xline_proto::authpb;
use xline_proto::etcdserverpb::auth_client::AuthClient as RawAuth;
use xline_proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse,
};

pub use xline_proto::authpb::permission::Type as PermissionType;

use crate::conn::{Inner, Retry};
use crate::error::Result;
use crate::kv::RangeSpec;

/// Options of [`AuthClient::user_add`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UserAddOptions {
    no_password: bool,
}

impl UserAddOptions {
    /// A user with a password.
    pub fn new() -> Self {
        Self::default()
    }

    /// A user without password (it authenticates only by other means, e.g. TLS CN).
    #[must_use]
    pub fn with_no_password(mut self) -> Self {
        self.no_password = true;
        self
    }
}

/// A permission granted to a role: access of a type to a key or range.
#[derive(Debug, Clone, PartialEq)]
pub struct Permission {
    perm_type: PermissionType,
    key: Vec<u8>,
    range: RangeSpec,
}

range_methods!(Permission, "Covers", with_range_end);

impl Permission {
    /// A permission of `perm_type` on `key`.
    pub fn new(perm_type: PermissionType, key: impl Into<Vec<u8>>) -> Self {
        Self {
            perm_type,
            key: key.into(),
            range: RangeSpec::Key,
        }
    }

    /// Read access to `key`.
    pub fn read(key: impl Into<Vec<u8>>) -> Self {
        Self::new(PermissionType::Read, key)
    }

    /// Write access to `key`.
    pub fn write(key: impl Into<Vec<u8>>) -> Self {
        Self::new(PermissionType::Write, key)
    }

    /// Read and write access to `key`.
    pub fn read_write(key: impl Into<Vec<u8>>) -> Self {
        Self::new(PermissionType::Readwrite, key)
    }

    /// The protocol message.
    pub fn into_proto(self) -> authpb::Permission {
        let (key, range_end) = self.range.resolve(self.key);
        authpb::Permission {
            perm_type: self.perm_type as i32,
            key,
            range_end,
        }
    }
}

/// Options of [`AuthClient::role_revoke_permission`].
#[derive(Debug, Clone, Default)]
pub struct RoleRevokePermissionOptions {
    range: RangeSpec,
}

range_methods!(
    RoleRevokePermissionOptions,
    "Revokes the permission on",
    with_range_end
);

impl RoleRevokePermissionOptions {
    /// Revokes the permission on just the key.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The Auth service.
///
/// ```no_run
/// use xline_client::{Client, ConnectOptions, Permission};
///
/// # async fn run() -> xline_client::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
/// let auth = client.auth();
/// auth.user_add("root", "rootpw", None).await?;
/// auth.role_add("root").await?;
/// auth.user_grant_role("root", "root").await?;
/// auth.role_add("reader").await?;
/// auth.role_grant_permission("reader", Permission::read("app/").with_prefix()).await?;
/// auth.auth_enable().await?;
/// // From now on, connect with credentials:
/// let root = Client::connect(["127.0.0.1:2379"], ConnectOptions::new().with_user("root", "rootpw")).await?;
/// root.auth().auth_disable().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AuthClient {
    inner: Arc<Inner>,
}

impl AuthClient {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Enables authentication (a `root` user with the `root` role must exist).
    pub async fn auth_enable(&self) -> Result<AuthEnableResponse> {
        unary!(
            self,
            Retry::NonRepeatable,
            RawAuth,
            auth_enable,
            AuthEnableRequest {}
        )
    }

    /// Disables authentication.
    pub async fn auth_disable(&self) -> Result<AuthDisableResponse> {
        unary!(
            self,
            Retry::NonRepeatable,
            RawAuth,
            auth_disable,
            AuthDisableRequest {}
        )
    }

    /// Whether authentication is enabled, and the auth revision.
    pub async fn auth_status(&self) -> Result<AuthStatusResponse> {
        unary!(
            self,
            Retry::Repeatable,
            RawAuth,
            auth_status,
            AuthStatusRequest {}
        )
    }

    /// Fetches a token for `name` (the client does this itself when given a user).
    pub async fn authenticate(
        &self,
        name: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<AuthenticateResponse> {
        let req = AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        };
        unary!(self, Retry::Repeatable, RawAuth, authenticate, req)
    }

    /// Adds a user.
    pub async fn user_add(
        &self,
        name: impl Into<String>,
        password: impl Into<String>,
        opts: Option<UserAddOptions>,
    ) -> Result<AuthUserAddResponse> {
        let no_password = opts.unwrap_or_default().no_password;
        let req = AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            options: Some(authpb::UserAddOptions { no_password }),
            hashed_password: String::new(),
        };
        unary!(self, Retry::NonRepeatable, RawAuth, user_add, req)
    }

    /// A user's roles.
    pub async fn user_get(&self, name: impl Into<String>) -> Result<AuthUserGetResponse> {
        let req = AuthUserGetRequest { name: name.into() };
        unary!(self, Retry::Repeatable, RawAuth, user_get, req)
    }

    /// Every user.
    pub async fn user_list(&self) -> Result<AuthUserListResponse> {
        unary!(
            self,
            Retry::Repeatable,
            RawAuth,
            user_list,
            AuthUserListRequest {}
        )
    }

    /// Deletes a user.
    pub async fn user_delete(&self, name: impl Into<String>) -> Result<AuthUserDeleteResponse> {
        let req = AuthUserDeleteRequest { name: name.into() };
        unary!(self, Retry::NonRepeatable, RawAuth, user_delete, req)
    }

    /// Changes a user's password.
    pub async fn user_change_password(
        &self,
        name: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<AuthUserChangePasswordResponse> {
        let req = AuthUserChangePasswordRequest {
            name: name.into(),
            password: password.into(),
            hashed_password: String::new(),
        };
        unary!(
            self,
            Retry::NonRepeatable,
            RawAuth,
            user_change_password,
            req
        )
    }

    /// Grants `role` to `user`.
    pub async fn user_grant_role(
        &self,
        user: impl Into<String>,
        role: impl Into<String>,
    ) -> Result<AuthUserGrantRoleResponse> {
        let req = AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        unary!(self, Retry::NonRepeatable, RawAuth, user_grant_role, req)
    }

    /// Revokes `role` from `user`.
    pub async fn user_revoke_role(
        &self,
        user: impl Into<String>,
        role: impl Into<String>,
    ) -> Result<AuthUserRevokeRoleResponse> {
        let req = AuthUserRevokeRoleRequest {
            name: user.into(),
            role: role.into(),
        };
        unary!(self, Retry::NonRepeatable, RawAuth, user_revoke_role, req)
    }

    /// Adds a role.
    pub async fn role_add(&self, name: impl Into<String>) -> Result<AuthRoleAddResponse> {
        let req = AuthRoleAddRequest { name: name.into() };
        unary!(self, Retry::NonRepeatable, RawAuth, role_add, req)
    }

    /// A role's permissions.
    pub async fn role_get(&self, name: impl Into<String>) -> Result<AuthRoleGetResponse> {
        let req = AuthRoleGetRequest { role: name.into() };
        unary!(self, Retry::Repeatable, RawAuth, role_get, req)
    }

    /// Every role.
    pub async fn role_list(&self) -> Result<AuthRoleListResponse> {
        unary!(
            self,
            Retry::Repeatable,
            RawAuth,
            role_list,
            AuthRoleListRequest {}
        )
    }

    /// Deletes a role.
    pub async fn role_delete(&self, name: impl Into<String>) -> Result<AuthRoleDeleteResponse> {
        let req = AuthRoleDeleteRequest { role: name.into() };
        unary!(self, Retry::NonRepeatable, RawAuth, role_delete, req)
    }

    /// Grants a permission to a role.
    pub async fn role_grant_permission(
        &self,
        name: impl Into<String>,
        perm: Permission,
    ) -> Result<AuthRoleGrantPermissionResponse> {
        let req = AuthRoleGrantPermissionRequest {
            name: name.into(),
            perm: Some(perm.into_proto()),
        };
        unary!(
            self,
            Retry::NonRepeatable,
            RawAuth,
            role_grant_permission,
            req
        )
    }

    /// Revokes a role's permission on `key` (or a range, with options).
    pub async fn role_revoke_permission(
        &self,
        name: impl Into<String>,
        key: impl Into<Vec<u8>>,
        opts: Option<RoleRevokePermissionOptions>,
    ) -> Result<AuthRoleRevokePermissionResponse> {
        let (key, range_end) = opts.unwrap_or_default().range.resolve(key.into());
        let req = AuthRoleRevokePermissionRequest {
            role: name.into(),
            key,
            range_end,
        };
        unary!(
            self,
            Retry::NonRepeatable,
            RawAuth,
            role_revoke_permission,
            req
        )
    }
}

/// Raw requests: etcd's request messages as they are, with the pool's balancing, failover,
/// retry rules and auth token (see the crate docs, "Raw requests").
impl AuthClient {
    /// Auth.AuthEnable (not repeatable).
    pub async fn auth_enable_request(&self, req: AuthEnableRequest) -> Result<AuthEnableResponse> {
        unary!(self, Retry::NonRepeatable, RawAuth, auth_enable, req)
    }

    /// Auth.AuthDisable (not repeatable).
    pub async fn auth_disable_request(
        &self,
        req: AuthDisableRequest,
    ) -> Result<AuthDisableResponse> {
        unary!(self, Retry::NonRepeatable, RawAuth, auth_disable, req)
    }

    /// Auth.AuthStatus (repeatable).
    pub async fn auth_status_request(&self, req: AuthStatusRequest) -> Result<AuthStatusResponse> {
        unary!(self, Retry::Repeatable, RawAuth, auth_status, req)
    }

    /// Auth.Authenticate (repeatable).
    pub async fn authenticate_request(
        &self,
        req: AuthenticateRequest,
    ) -> Result<AuthenticateResponse> {
        unary!(self, Retry::Repeatable, RawAuth, authenticate, req)
    }

    /// Auth.UserAdd (not repeatable).
    pub async fn user_add_request(&self, req: AuthUserAddRequest) -> Result<AuthUserAddResponse> {
        unary!(self, Retry::NonRepeatable, RawAuth, user_add, req)
    }

    /// Auth.UserGet (repeatable).
    pub async fn user_get_request(&self, req: AuthUserGetRequest) -> Result<AuthUserGetResponse> {
        unary!(self, Retry::Repeatable, RawAuth, user_get, req)
    }

    /// Auth.UserList (repeatable).
    pub async fn user_list_request(
        &self,
        req: AuthUserListRequest,
    ) -> Result<AuthUserListResponse> {
        unary!(self, Retry::Repeatable, RawAuth, user_list, req)
    }

    /// Auth.UserDelete (not repeatable).
    pub async fn user_delete_request(
        &self,
        req: AuthUserDeleteRequest,
    ) -> Result<AuthUserDeleteResponse> {
        unary!(self, Retry::NonRepeatable, RawAuth, user_delete, req)
    }

    /// Auth.UserChangePassword (not repeatable).
    pub async fn user_change_password_request(
        &self,
        req: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse> {
        unary!(
            self,
            Retry::NonRepeatable,
            RawAuth,
            user_change_password,
            req
        )
    }

    /// Auth.UserGrantRole (not repeatable).
    pub async fn user_grant_role_request(
        &self,
        req: AuthUserGrantRoleRequest,
    ) -> Result<AuthUserGrantRoleResponse> {
        unary!(self, Retry::NonRepeatable, RawAuth, user_grant_role, req)
    }

    /// Auth.UserRevokeRole (not repeatable).
    pub async fn user_revoke_role_request(
        &self,
        req: AuthUserRevokeRoleRequest,
    ) -> Result<AuthUserRevokeRoleResponse> {
        unary!(self, Retry::NonRepeatable, RawAuth, user_revoke_role, req)
    }

    /// Auth.RoleAdd (not repeatable).
    pub async fn role_add_request(&self, req: AuthRoleAddRequest) -> Result<AuthRoleAddResponse> {
        unary!(self, Retry::NonRepeatable, RawAuth, role_add, req)
    }

    /// Auth.RoleGet (repeatable).
    pub async fn role_get_request(&self, req: AuthRoleGetRequest) -> Result<AuthRoleGetResponse> {
        unary!(self, Retry::Repeatable, RawAuth, role_get, req)
    }

    /// Auth.RoleList (repeatable).
    pub async fn role_list_request(
        &self,
        req: AuthRoleListRequest,
    ) -> Result<AuthRoleListResponse> {
        unary!(self, Retry::Repeatable, RawAuth, role_list, req)
    }

    /// Auth.RoleDelete (not repeatable).
    pub async fn role_delete_request(
        &self,
        req: AuthRoleDeleteRequest,
    ) -> Result<AuthRoleDeleteResponse> {
        unary!(self, Retry::NonRepeatable, RawAuth, role_delete, req)
    }

    /// Auth.RoleGrantPermission (not repeatable).
    pub async fn role_grant_permission_request(
        &self,
        req: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse> {
        unary!(
            self,
            Retry::NonRepeatable,
            RawAuth,
            role_grant_permission,
            req
        )
    }

    /// Auth.RoleRevokePermission (not repeatable).
    pub async fn role_revoke_permission_request(
        &self,
        req: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse> {
        unary!(
            self,
            Retry::NonRepeatable,
            RawAuth,
            role_revoke_permission,
            req
        )
    }
}
