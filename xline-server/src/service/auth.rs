//! `etcdserverpb.Auth`: users, roles, the auth switch and Authenticate.
//!
//! Mutations go through consensus (ordered after everything: they change what every later
//! request may do) and are checked when applied, as etcd's auth applier does; reads (status,
//! gets and lists) are served by this member after a linearizable barrier. Passwords are hashed
//! here, once, so that applying is cheap (etcd 3.5 does the same).

use std::sync::Arc;

use base64::Engine as _;
use tonic::{Request, Response, Status};
use xline_proto::etcdserverpb::auth_server::Auth;
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
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, ResponseHeader,
};

use crate::auth::{AuthApplied, AuthStore, AuthenticateProposal};
use crate::command::{self, Command};
use crate::error::{EtcdError, ServerError};
use crate::mvcc::store::CommandResponse;
use crate::server::ServerContext;

/// How many times Authenticate is retried when the auth state moved between the password
/// check and the token (etcd retries the same way).
const AUTHENTICATE_ATTEMPTS: usize = 8;

/// Serves the Auth RPCs.
#[derive(Debug, Clone)]
pub struct AuthService {
    ctx: Arc<ServerContext>,
}

impl AuthService {
    /// An Auth service over the member's context.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        Self { ctx }
    }

    fn auth(&self) -> &Arc<AuthStore> {
        self.ctx.store.auth()
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(self.ctx.header(self.ctx.store.current_revision()))
    }

    /// Proposes an auth mutation on behalf of the request's user.
    async fn propose<T>(
        &self,
        request: &Request<T>,
        cmd: command::Request,
    ) -> Result<AuthApplied, ServerError> {
        let who = self.auth().proposal_header(request.metadata()).await?;
        match self
            .ctx
            .node
            .propose(Command::with_auth(cmd, who))
            .await??
        {
            CommandResponse::Auth(applied) => Ok(applied),
            _ => Err(ServerError::Corrupt(
                "apply returned a response of the wrong kind for an auth request".into(),
            )),
        }
    }

    /// Proposes the request as it is; the header of the answer.
    async fn mutate<T: Clone>(
        &self,
        request: &Request<T>,
        variant: fn(T) -> command::Request,
    ) -> Result<Option<ResponseHeader>, ServerError> {
        self.propose(request, variant(request.get_ref().clone()))
            .await?;
        Ok(self.header())
    }

    async fn barrier(&self) -> Result<(), ServerError> {
        self.ctx.node.linearizable_barrier().await?;
        Ok(())
    }

    /// bcrypt-hashes `password` off the async workers.
    async fn hash(&self, password: String) -> Result<String, ServerError> {
        let auth = Arc::clone(self.auth());
        tokio::task::spawn_blocking(move || auth.hash_password(&password))
            .await
            .map_err(|e| ServerError::Consensus(format!("hash task failed: {e}")))?
    }

    /// The bcrypt hash to store: the client's pre-hashed password (base64 of a bcrypt hash,
    /// etcd's `hashedPassword`) or the hash of its plain password.
    async fn hashed(&self, password: String, hashed: &str) -> Result<String, ServerError> {
        if hashed.is_empty() {
            return self.hash(password).await;
        }
        base64::engine::general_purpose::STANDARD
            .decode(hashed)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or(EtcdError::AuthFailed.into())
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let header = self.mutate(&request, command::Request::AuthEnable).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self.mutate(&request, command::Request::AuthDisable).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let header = self.mutate(&request, command::Request::UserDelete).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let header = self
            .mutate(&request, command::Request::UserGrantRole)
            .await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let header = self
            .mutate(&request, command::Request::UserRevokeRole)
            .await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let header = self.mutate(&request, command::Request::RoleAdd).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let header = self.mutate(&request, command::Request::RoleDelete).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let header = self
            .mutate(&request, command::Request::RoleGrantPermission)
            .await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let header = self
            .mutate(&request, command::Request::RoleRevokePermission)
            .await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }

    async fn auth_status(
        &self,
        _request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        self.barrier().await?;
        let mut resp = self.auth().status();
        resp.header = self.header();
        Ok(Response::new(resp))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let req = request.into_inner();
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let auth = Arc::clone(self.auth());
            let (name, password) = (req.name.clone(), req.password.clone());
            let checked =
                tokio::task::spawn_blocking(move || auth.check_password(&name, &password))
                    .await
                    .map_err(|e| ServerError::Consensus(format!("password check failed: {e}")))?
                    .inspect_err(|e| {
                        if *e != EtcdError::AuthNotEnabled {
                            tracing::warn!(user = %req.name, "invalid user name or password");
                        }
                    })
                    .map_err(ServerError::from)?;
            let proposal = AuthenticateProposal {
                name: req.name.clone(),
                simple_token_prefix: self.auth().gen_token_prefix(),
            };
            let cmd = Command::new(command::Request::Authenticate(proposal));
            let applied = match self
                .ctx
                .node
                .propose(cmd)
                .await
                .map_err(ServerError::from)?
            {
                Ok(CommandResponse::Auth(applied)) => applied,
                Ok(_) => {
                    return Err(ServerError::Corrupt(
                        "apply returned a response of the wrong kind for authenticate".into(),
                    )
                    .into());
                }
                Err(e) => return Err(ServerError::from(e).into()),
            };
            // The password was checked at `checked`; a change since (e.g. a new password)
            // means checking again, as etcd does.
            if checked != self.auth().revision() {
                continue;
            }
            let AuthApplied::Token(token) = applied else {
                return Err(ServerError::Corrupt("authenticate issued no token".into()).into());
            };
            return Ok(Response::new(AuthenticateResponse {
                header: self.header(),
                token,
            }));
        }
        Err(ServerError::from(EtcdError::AuthFailed).into())
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let mut req = request.get_ref().clone();
        if req.options.is_none_or(|o| !o.no_password) {
            req.hashed_password = self
                .hashed(std::mem::take(&mut req.password), &req.hashed_password)
                .await?;
        } else {
            req.password.clear();
            req.hashed_password.clear();
        }
        self.propose(&request, command::Request::UserAdd(req))
            .await?;
        Ok(Response::new(AuthUserAddResponse {
            header: self.header(),
        }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let mut req = request.get_ref().clone();
        req.hashed_password = self
            .hashed(std::mem::take(&mut req.password), &req.hashed_password)
            .await?;
        self.propose(&request, command::Request::UserChangePassword(req))
            .await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: self.header(),
        }))
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        self.barrier().await?;
        let mut resp = self
            .auth()
            .user_get(request.metadata(), &request.get_ref().name)
            .await
            .map_err(ServerError::from)?;
        resp.header = self.header();
        Ok(Response::new(resp))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        self.barrier().await?;
        let users = self
            .auth()
            .user_list(request.metadata())
            .await
            .map_err(ServerError::from)?;
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        self.barrier().await?;
        let mut resp = self
            .auth()
            .role_get(request.metadata(), &request.get_ref().role)
            .await
            .map_err(ServerError::from)?;
        resp.header = self.header();
        Ok(Response::new(resp))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        self.barrier().await?;
        let roles = self
            .auth()
            .role_list(request.metadata())
            .await
            .map_err(ServerError::from)?;
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }
}
