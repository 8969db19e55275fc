use xline_proto::authpb::{Permission, permission};
use xline_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserDeleteRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, PutRequest,
    RangeRequest,
};

use super::*;
use crate::storage::memory::MemoryBackend;

struct Harness {
    backend: MemoryBackend,
    auth: AuthStore,
    index: u64,
}

impl Harness {
    fn new() -> Self {
        let backend = MemoryBackend::new();
        let auth = AuthStore::open(&backend, 0).unwrap();
        auth.configure("simple", Duration::from_secs(300), 4)
            .unwrap();
        Self {
            backend,
            auth,
            index: 0,
        }
    }

    fn apply(&mut self, req: Request, ai: Option<&AuthHeader>) -> Result<AuthApplied, EtcdError> {
        self.index += 1;
        let mut wb = WriteBatch::new();
        let out = self.auth.apply(&req, ai, self.index, &mut wb);
        self.backend.write(wb, false).unwrap();
        self.auth.set_applied(self.index);
        out
    }

    fn root(&self) -> AuthHeader {
        AuthHeader {
            username: ROOT_USER.into(),
            revision: self.auth.revision(),
        }
    }
}

fn user_add(name: &str, no_password: bool) -> Request {
    Request::UserAdd(AuthUserAddRequest {
        name: name.into(),
        hashed_password: if no_password {
            String::new()
        } else {
            bcrypt::hash("pw", 4).unwrap()
        },
        options: Some(UserAddOptions { no_password }),
        ..Default::default()
    })
}

fn grant_role(user: &str, role: &str) -> Request {
    Request::UserGrantRole(AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })
}

fn grant_perm(role: &str, key: &str, end: &[u8], t: permission::Type) -> Request {
    Request::RoleGrantPermission(AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        }),
    })
}

#[test]
fn enable_needs_root_with_root_role_and_root_stays() {
    let mut h = Harness::new();
    let enable = || Request::AuthEnable(AuthEnableRequest {});
    assert_eq!(h.auth.revision(), 1);
    assert_eq!(h.apply(enable(), None), Err(EtcdError::RootUserNotExist));
    h.apply(user_add("root", false), None).unwrap();
    assert_eq!(h.apply(enable(), None), Err(EtcdError::RootRoleNotExist));
    // The root role need not exist to be granted.
    h.apply(grant_role("root", "root"), None).unwrap();
    let rev = h.auth.revision();
    assert_eq!(rev, 3);
    h.apply(enable(), None).unwrap();
    assert!(h.auth.is_enabled());
    assert_eq!(h.auth.revision(), rev, "enable does not move the revision");
    // Now management needs root.
    let role_add = || Request::RoleAdd(AuthRoleAddRequest { name: "r".into() });
    let anonymous = AuthHeader::default();
    assert_eq!(
        h.apply(role_add(), Some(&anonymous)),
        Err(EtcdError::UserEmpty)
    );
    let nobody = AuthHeader {
        username: "nobody".into(),
        revision: rev,
    };
    assert_eq!(
        h.apply(role_add(), Some(&nobody)),
        Err(EtcdError::UserNotFound)
    );
    let root = h.root();
    h.apply(role_add(), Some(&root)).unwrap();
    let root = h.root();
    assert_eq!(
        h.apply(
            Request::UserDelete(AuthUserDeleteRequest {
                name: "root".into()
            }),
            Some(&root)
        ),
        Err(EtcdError::InvalidAuthMgmt)
    );
    assert_eq!(
        h.apply(
            Request::UserRevokeRole(AuthUserRevokeRoleRequest {
                name: "root".into(),
                role: "root".into()
            }),
            Some(&root)
        ),
        Err(EtcdError::InvalidAuthMgmt)
    );
    assert_eq!(
        h.apply(
            Request::RoleDelete(AuthRoleDeleteRequest {
                role: "root".into()
            }),
            Some(&root)
        ),
        Err(EtcdError::InvalidAuthMgmt)
    );
    h.apply(Request::AuthDisable(AuthDisableRequest {}), Some(&root))
        .unwrap();
    assert!(!h.auth.is_enabled());
    // Everything survives a reload from the backend.
    let reloaded = AuthStore::open(&h.backend, h.index).unwrap();
    assert_eq!(reloaded.status(), h.auth.status());
    assert_eq!(reloaded.state.read().users, h.auth.state.read().users);
    assert_eq!(reloaded.state.read().roles, h.auth.state.read().roles);
}

#[test]
fn users_roles_and_permissions() {
    let mut h = Harness::new();
    h.apply(user_add("root", false), None).unwrap();
    h.apply(grant_role("root", "root"), None).unwrap();
    h.apply(user_add("u", false), None).unwrap();
    assert_eq!(
        h.apply(user_add("u", false), None),
        Err(EtcdError::UserAlreadyExist)
    );
    assert_eq!(
        h.apply(user_add("", false), None),
        Err(EtcdError::UserEmpty)
    );
    assert_eq!(
        h.apply(grant_role("u", "r"), None),
        Err(EtcdError::RoleNotFound)
    );
    assert_eq!(
        h.apply(grant_role("x", "r"), None),
        Err(EtcdError::UserNotFound)
    );
    h.apply(
        Request::RoleAdd(AuthRoleAddRequest { name: "r".into() }),
        None,
    )
    .unwrap();
    h.apply(grant_role("u", "r"), None).unwrap();
    let rev = h.auth.revision();
    h.apply(grant_role("u", "r"), None).unwrap();
    assert_eq!(
        h.auth.revision(),
        rev,
        "granting a granted role changes nothing"
    );
    h.apply(grant_perm("r", "k", &[], permission::Type::Read), None)
        .unwrap();
    h.apply(
        grant_perm("r", "p/", b"p0", permission::Type::Readwrite),
        None,
    )
    .unwrap();
    assert_eq!(
        h.apply(grant_perm("r", "b", b"a", permission::Type::Read), None),
        Err(EtcdError::InvalidAuthMgmt)
    );
    h.apply(Request::AuthEnable(AuthEnableRequest {}), None)
        .unwrap();
    let u = AuthHeader {
        username: "u".into(),
        revision: h.auth.revision(),
    };
    let st = h.auth.state.read();
    assert_eq!(st.op(Some(&u), Access::Read, b"k", b""), Ok(()));
    assert_eq!(
        st.op(Some(&u), Access::Write, b"k", b""),
        Err(EtcdError::PermissionDenied)
    );
    assert_eq!(st.op(Some(&u), Access::Write, b"p/x", b""), Ok(()));
    assert_eq!(st.op(Some(&u), Access::Read, b"p/", b"p0"), Ok(()));
    assert_eq!(
        st.op(Some(&u), Access::Read, b"p/", &[0]),
        Err(EtcdError::PermissionDenied)
    );
    assert_eq!(
        st.op(None, Access::Read, b"k", b""),
        Err(EtcdError::UserEmpty)
    );
    let old = AuthHeader {
        revision: u.revision - 1,
        ..u.clone()
    };
    assert_eq!(
        st.op(Some(&old), Access::Read, b"k", b""),
        Err(EtcdError::AuthOldRevision)
    );
    drop(st);
    // Checks at apply time.
    let put = |key: &str, prev_kv: bool| {
        Request::Put(PutRequest {
            key: key.into(),
            prev_kv,
            ..Default::default()
        })
    };
    let none = |_| Vec::new();
    assert_eq!(
        h.auth.check_apply(&put("p/a", false), Some(&u), none),
        Ok(())
    );
    // The anonymous header of native clients is refused while auth is enabled; only a command
    // without any header is the member's own.
    assert_eq!(
        h.auth
            .check_apply(&put("p/a", false), Some(&AuthHeader::default()), none),
        Err(EtcdError::UserEmpty)
    );
    assert_eq!(h.auth.check_apply(&put("p/a", false), None, none), Ok(()));
    assert_eq!(
        h.auth.check_apply(&put("k", false), Some(&u), none),
        Err(EtcdError::PermissionDenied)
    );
    let txn = Request::Txn(TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"z".to_vec(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    });
    assert_eq!(
        h.auth.check_apply(&txn, Some(&u), none),
        Err(EtcdError::PermissionDenied)
    );
    let root = h.root();
    h.apply(
        Request::RoleRevokePermission(AuthRoleRevokePermissionRequest {
            role: "r".into(),
            key: b"p/".to_vec(),
            range_end: b"p0".to_vec(),
        }),
        Some(&root),
    )
    .unwrap();
    let u = AuthHeader {
        username: "u".into(),
        revision: h.auth.revision(),
    };
    assert_eq!(
        h.auth.check_apply(&put("p/a", false), Some(&u), none),
        Err(EtcdError::PermissionDenied)
    );
    let root = h.root();
    assert_eq!(
        h.apply(
            Request::RoleRevokePermission(AuthRoleRevokePermissionRequest {
                role: "r".into(),
                key: b"p/".to_vec(),
                range_end: b"p0".to_vec(),
            }),
            Some(&root),
        ),
        Err(EtcdError::PermissionNotGranted)
    );
    // Deleting a role takes it from its users.
    h.apply(
        Request::RoleDelete(AuthRoleDeleteRequest { role: "r".into() }),
        Some(&root),
    )
    .unwrap();
    assert!(h.auth.state.read().users["u"].roles.is_empty());
}

#[test]
fn authenticate_issues_tokens_dropped_with_the_user() {
    let mut h = Harness::new();
    h.apply(user_add("root", false), None).unwrap();
    h.apply(grant_role("root", "root"), None).unwrap();
    h.apply(user_add("np", true), None).unwrap();
    let auth = |name: &str| {
        Request::Authenticate(AuthenticateProposal {
            name: name.into(),
            simple_token_prefix: "abcdefghijklmnop".into(),
        })
    };
    assert_eq!(h.apply(auth("root"), None), Err(EtcdError::AuthNotEnabled));
    assert_eq!(
        h.auth.check_password("root", "pw"),
        Err(EtcdError::AuthNotEnabled)
    );
    h.apply(Request::AuthEnable(AuthEnableRequest {}), None)
        .unwrap();
    assert_eq!(h.auth.check_password("root", "pw"), Ok(h.auth.revision()));
    assert_eq!(
        h.auth.check_password("root", "no"),
        Err(EtcdError::AuthFailed)
    );
    assert_eq!(
        h.auth.check_password("np", ""),
        Err(EtcdError::NoPasswordUser)
    );
    assert_eq!(
        h.auth.check_password("zz", "pw"),
        Err(EtcdError::AuthFailed)
    );
    assert_eq!(h.apply(auth("np"), None), Err(EtcdError::AuthFailed));
    let AuthApplied::Token(token) = h.apply(auth("root"), None).unwrap() else {
        panic!("no token");
    };
    assert_eq!(token, format!("abcdefghijklmnop.{}", h.index));
    let tokens = Arc::clone(&h.auth.tokens.read());
    assert!(matches!(
        tokens.lookup(&token, h.index),
        TokenLookup::Valid { .. }
    ));
    let root = h.root();
    h.apply(Request::AuthDisable(AuthDisableRequest {}), Some(&root))
        .unwrap();
    assert_eq!(tokens.lookup(&token, h.index), TokenLookup::Invalid);
}
