//! Auth on a 3-member cluster (also run against Debian's etcd with `XLINE_TEST_SERVER=etcd`):
//! enabling auth reaches every member, a simple token issued through one member is accepted by
//! the others, permissions are enforced on followers as on the leader (KV, Lock and membership
//! changes forwarded to the leader), and deleting a user invalidates its tokens everywhere.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::expect_status;
use etcd_client::{Client, ConnectOptions, LockOptions, MemberAddOptions, Permission};
use tonic::Code;
use xline_proto::etcdserverpb::RangeRequest;
use xline_proto::etcdserverpb::kv_client::KvClient;

const USER_EMPTY: &str = "etcdserver: user name is empty";
const DENIED: &str = "etcdserver: permission denied";
const INVALID_TOKEN: &str = "etcdserver: invalid auth token";

/// How long a member is given to apply what another member committed.
const APPLY_WITHIN: Duration = Duration::from_secs(5);

async fn login(c: &Cluster, i: usize, user: &str, password: &str) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10))
        .with_user(user, password);
    Client::connect([c.endpoint(i)], Some(opts)).await.unwrap()
}

/// A Range of `key` on member `i`, with `token` (if any) in the metadata.
async fn raw_get(
    c: &Cluster,
    i: usize,
    token: Option<&str>,
    key: &str,
) -> Result<(), tonic::Status> {
    let mut kv = KvClient::connect(c.endpoint(i)).await.unwrap();
    let mut req = tonic::Request::new(RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    });
    if let Some(token) = token {
        req.metadata_mut().insert("token", token.parse().unwrap());
    }
    kv.range(req).await.map(|_| ())
}

/// Repeats `raw_get` on member `i` until it fails with `code` and `message` (members apply
/// asynchronously), or panics after [`APPLY_WITHIN`] with the last answer.
async fn wait_refused(c: &Cluster, i: usize, token: Option<&str>, code: Code, message: &str) {
    let deadline = tokio::time::Instant::now() + APPLY_WITHIN;
    loop {
        let answer = raw_get(c, i, token, "a").await;
        if let Err(status) = &answer
            && status.code() == code
            && status.message() == message
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "member {i} still answers {answer:?}, not {code:?} {message:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_enforced_on_every_member() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader_index(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // Set up and enable auth through a follower.
    let mut c = cluster.client(follower).await;
    c.user_add("root", "rootpw", None).await.unwrap();
    c.role_add("root").await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.user_add("u", "upw", None).await.unwrap();
    c.role_add("r").await.unwrap();
    c.role_grant_permission("r", Permission::read_write("a"))
        .await
        .unwrap();
    c.role_grant_permission("r", Permission::read_write("L/").with_prefix())
        .await
        .unwrap();
    c.user_grant_role("u", "r").await.unwrap();
    c.put("b", "x", None).await.unwrap();
    c.auth_enable().await.unwrap();

    // Every member refuses requests without a token.
    for i in 0..3 {
        wait_refused(&cluster, i, None, Code::InvalidArgument, USER_EMPTY).await;
    }

    // A simple token obtained from one member works on the others.
    let token = {
        let c = cluster.client(other).await;
        let resp = c
            .auth_client()
            .authenticate("u".into(), "upw".into())
            .await
            .unwrap();
        resp.token().to_owned()
    };
    for i in 0..3 {
        raw_get(&cluster, i, Some(&token), "a").await.unwrap();
        let denied = raw_get(&cluster, i, Some(&token), "b").await.unwrap_err();
        assert_eq!(
            (denied.code(), denied.message()),
            (Code::PermissionDenied, DENIED),
            "member {i}"
        );
    }

    // Permission checks on a follower: KV, Lock (made as the caller), membership (forwarded
    // to the leader with the caller's token).
    let mut u = login(&cluster, follower, "u", "upw").await;
    u.put("a", "mine", None).await.unwrap();
    expect_status(u.put("b", "y", None).await, Code::PermissionDenied, DENIED);
    expect_status(u.get("b", None).await, Code::PermissionDenied, DENIED);
    let lease = u.lease_grant(60, None).await.unwrap().id();
    let held = u
        .lock("L", Some(LockOptions::new().with_lease(lease)))
        .await
        .unwrap();
    expect_status(
        u.lock("M", Some(LockOptions::new().with_lease(lease)))
            .await,
        Code::Unknown,
        DENIED,
    );
    u.unlock(held.key()).await.unwrap();
    let learner = MemberAddOptions::new().with_is_learner();
    let urls = ["http://127.0.0.1:1"];
    expect_status(
        u.member_add(urls, Some(learner.clone())).await,
        Code::PermissionDenied,
        DENIED,
    );
    let mut root = login(&cluster, follower, "root", "rootpw").await;
    // A member adds only once it has been connected to every voter for a while (etcd's
    // strict reconfiguration check): the cluster just started.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let added = loop {
        match root.member_add(urls, Some(learner.clone())).await {
            Err(etcd_client::Error::GRpcStatus(status))
                if status.code() == Code::Unavailable && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other.unwrap(),
        }
    };
    let id = added.member().unwrap().id();
    expect_status(u.member_remove(id).await, Code::PermissionDenied, DENIED);
    root.member_remove(id).await.unwrap();
    assert_eq!(root.member_list().await.unwrap().members().len(), 3);

    // Deleting the user invalidates its token on every member.
    let mut root_other = login(&cluster, other, "root", "rootpw").await;
    root_other.user_delete("u").await.unwrap();
    for i in 0..3 {
        wait_refused(
            &cluster,
            i,
            Some(&token),
            Code::Unauthenticated,
            INVALID_TOKEN,
        )
        .await;
    }

    // Disabling auth reaches every member too.
    root_other.auth_disable().await.unwrap();
    for i in 0..3 {
        let deadline = tokio::time::Instant::now() + APPLY_WITHIN;
        while let Err(status) = raw_get(&cluster, i, None, "b").await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {i} still refuses: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
