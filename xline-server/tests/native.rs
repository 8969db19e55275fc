//! The native CURP client (`curp::client::CurpClient`) against real `xline` processes: the
//! CURP client service is served on the peer listener, plain puts complete on the fast path
//! with a speculative response (no revision), and are then visible through the etcd API on
//! every member. xline only: etcd has no such service (skipped with `XLINE_TEST_SERVER=etcd`).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster::Cluster;
use common::is_etcd;
use curp::client::{ClientConfig, CurpClient};
use curp::transport::client_service::GrpcClientTransport;
use etcd_client::GetOptions;
use xline_proto::etcdserverpb::PutRequest;
use xline_server::command::{Command, Request};
use xline_server::error::EtcdError;
use xline_server::mvcc::store::{ApplyOutput, CommandResponse};
use xline_server::native::{NativeCodec, is_speculative};

type Native = CurpClient<Command, ApplyOutput, NativeCodec, GrpcClientTransport>;

fn put(key: &str, value: &str) -> Command {
    Command::new(Request::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }))
}

async fn native_client(cluster: &Cluster) -> Native {
    let transport = Arc::new(GrpcClientTransport::new(Duration::from_secs(2), 16 << 20));
    let seeds = (0..cluster.len()).map(|i| cluster.peer_url(i)).collect();
    CurpClient::connect(transport, seeds, ClientConfig::default())
        .await
        .expect("the native client connects through the peer URLs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_fast_path_puts_are_visible_through_the_etcd_api_on_every_member() {
    if is_etcd() {
        println!("skipped: etcd has no CURP client service");
        return;
    }
    let mut cluster = Cluster::start(3).await;
    cluster.leader(Duration::from_secs(10)).await;
    let client = native_client(&cluster).await;
    let view = client.view();
    assert_eq!(view.voters.len(), 3);
    assert_eq!(view.addresses.len(), 3, "every member's peer URL: {view:?}");

    const PUTS: usize = 30;
    let mut speculative = 0;
    for i in 0..PUTS {
        let resp = client
            .propose(&put(&format!("native/{i}"), &format!("v{i}")))
            .await
            .expect("put");
        let fast = resp.is_speculative();
        let output = resp.output.expect("the put succeeds");
        assert!(matches!(output, CommandResponse::Put(_)), "{output:?}");
        // A speculative response carries no revision; an ordered one does.
        assert_eq!(fast, is_speculative(&output), "{output:?}");
        if fast {
            speculative += 1;
        }
    }
    println!("[native] {speculative}/{PUTS} puts completed on the fast path");
    assert!(
        speculative * 2 > PUTS,
        "plain commuting puts should mostly complete on the fast path: {speculative}/{PUTS}"
    );

    // An ordered put carries its revision; an etcd error comes back as itself.
    let ordered = client
        .propose_ordered(&put("native/ordered", "x"))
        .await
        .expect("ordered put");
    match ordered.output {
        Ok(CommandResponse::Put(r)) => assert!(r.header.expect("header").revision > 0),
        other => panic!("{other:?}"),
    }
    let lease_missing = Command::new(Request::Put(PutRequest {
        key: b"native/leased".to_vec(),
        value: b"x".to_vec(),
        lease: 0x1234,
        ..Default::default()
    }));
    let refused = client.propose(&lease_missing).await.expect("answered");
    assert_eq!(refused.output, Err(EtcdError::LeaseNotFound));
    assert!(
        !refused.is_speculative(),
        "a leased put is never speculated"
    );

    // Linearizable reads through the etcd API on every member see every acknowledged put.
    for m in 0..cluster.len() {
        let mut etcd = cluster.client(m).await;
        let got = etcd
            .get("native/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("range");
        assert_eq!(got.kvs().len(), PUTS + 1, "member {m}");
        for i in 0..PUTS {
            let key = format!("native/{i}");
            let kv = got
                .kvs()
                .iter()
                .find(|kv| kv.key() == key.as_bytes())
                .unwrap_or_else(|| panic!("member {m}: {key} missing"));
            assert_eq!(kv.value(), format!("v{i}").as_bytes());
            assert!(kv.mod_revision() > 1);
        }
        // The etcd front end never answers speculatively: its puts carry a revision.
        let r = etcd.put("etcd/put", "y", None).await.expect("etcd put");
        assert!(r.header().expect("header").revision() > 1);
    }
}

/// The CURP client service admits only what a client may propose (`native::admit`): no
/// asserted identity, no member-internal commands, the etcd front end's request checks, and
/// nothing at all while auth is enabled (the native path carries no credentials). A refused
/// command is answered with the etcd error and leaves nothing behind: no log entry, and no
/// witness record (the same key is fast again right after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_admission_refuses_asserted_identities_internal_commands_and_auth() {
    use xline_server::auth::{AuthHeader, AuthenticateProposal};
    if is_etcd() {
        println!("skipped: etcd has no CURP client service");
        return;
    }
    let mut cluster = Cluster::start(3).await;
    cluster.leader(Duration::from_secs(10)).await;
    let client = native_client(&cluster).await;
    let mut etcd = cluster.client(0).await;

    // A client claiming to be root.
    let claimed = Command::with_auth(
        Request::Put(PutRequest {
            key: b"adm/claimed".to_vec(),
            value: b"x".to_vec(),
            ..Default::default()
        }),
        Some(AuthHeader {
            username: "root".into(),
            revision: 1,
        }),
    );
    let resp = client.propose(&claimed).await.expect("answered");
    assert_eq!(resp.output, Err(EtcdError::PermissionDenied));
    assert!(!resp.is_speculative());
    // The members' own commands.
    let token = Command::new(Request::Authenticate(AuthenticateProposal {
        name: "root".into(),
        simple_token_prefix: "forged".into(),
    }));
    let resp = client.propose(&token).await.expect("answered");
    assert_eq!(resp.output, Err(EtcdError::PermissionDenied));
    // The front end's checks.
    let resp = client.propose(&put("", "x")).await.expect("answered");
    assert_eq!(resp.output, Err(EtcdError::EmptyKey));
    let big = "v".repeat(2 << 20);
    let resp = client
        .propose(&put("adm/big", &big))
        .await
        .expect("answered");
    assert_eq!(resp.output, Err(EtcdError::RequestTooLarge));

    // Nothing was applied, and the refused key's fast path is free (no orphan record).
    let got = etcd
        .get("adm/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("range");
    assert!(got.kvs().is_empty(), "{:?}", got.kvs());
    let again = client.propose(&put("adm/claimed", "y")).await.expect("put");
    assert!(again.output.is_ok(), "{:?}", again.output);

    // Auth enabled: every native command is refused, none is applied as the member's own.
    etcd.user_add("root", "rootpw", None)
        .await
        .expect("user add");
    etcd.role_add("root").await.expect("role add");
    etcd.user_grant_role("root", "root").await.expect("grant");
    etcd.auth_enable().await.expect("auth enable");
    let resp = client
        .propose(&put("adm/while-auth", "x"))
        .await
        .expect("answered");
    assert_eq!(resp.output, Err(EtcdError::UserEmpty));
    let mut root = etcd_client::Client::connect(
        [cluster.endpoint(0)],
        Some(etcd_client::ConnectOptions::new().with_user("root", "rootpw")),
    )
    .await
    .expect("root login");
    let got = root
        .get("adm/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("range");
    let keys: Vec<_> = got.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    assert_eq!(keys, vec![b"adm/claimed".to_vec()], "only the admitted put");
}
