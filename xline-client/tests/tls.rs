//! TLS in the client library against real TLS servers (xline, or Debian's etcd with
//! `XLINE_TEST_SERVER=etcd`): a CA-only client, client certificates (with `--client-cert-auth`
//! the certificate's CN is the auth user), a wrong CA, server-name checks,
//! `--insecure-skip-tls-verify`, and failover across the TLS endpoints of a 3-member cluster.
//! Certificates are generated here with rcgen.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::{CertFiles, issue, new_ca};
use common::{fresh_port, server_binary, server_kind};
use tempfile::TempDir;
use xline_client::{
    Client, ConnectOptions, Error, EtcdErrorKind, Permission, TlsOptions, UserAddOptions,
};

/// How long a member may take to serve.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A CA, a server certificate for `localhost` and 127.0.0.1, client certificates by common
/// name, and a certificate with a CA of its own (nobody trusts it).
struct Pki {
    dir: TempDir,
    ca: PathBuf,
    server: CertFiles,
    rogue: CertFiles,
    rogue_ca: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xline-client-tls-")
            .tempdir()
            .unwrap();
        let (issuer, ca) = new_ca(dir.path(), "ca", "test-ca");
        let server = issue(dir.path(), "server", "member", &issuer);
        for cn in ["root", "alice", "nobody"] {
            issue(dir.path(), cn, cn, &issuer);
        }
        let (rogue_issuer, rogue_ca) = new_ca(dir.path(), "rogue-ca", "rogue-ca");
        let rogue = issue(dir.path(), "rogue", "root", &rogue_issuer);
        Self {
            dir,
            ca,
            server,
            rogue,
            rogue_ca,
        }
    }

    /// The client certificate issued (by the trusted CA) for `cn`.
    fn client(&self, cn: &str) -> CertFiles {
        CertFiles {
            cert: self.dir.path().join(format!("{cn}.pem")),
            key: self.dir.path().join(format!("{cn}-key.pem")),
        }
    }

    /// TLS options trusting the test CA, presenting `cert` if given (read with `from_files`).
    fn tls(&self, cert: Option<&CertFiles>) -> TlsOptions {
        TlsOptions::from_files(
            Some(&self.ca),
            cert.map(|c| c.cert.as_path()),
            cert.map(|c| c.key.as_path()),
        )
        .unwrap()
    }

    /// Server flags: TLS on the client URLs, optionally requiring client certificates.
    fn server_flags(&self, client_cert_auth: bool) -> Vec<String> {
        let mut flags = vec![
            format!("--cert-file={}", self.server.cert.display()),
            format!("--key-file={}", self.server.key.display()),
        ];
        if client_cert_auth {
            flags.push(format!("--trusted-ca-file={}", self.ca.display()));
            flags.push("--client-cert-auth".to_owned());
        }
        flags
    }
}

/// One member serving `https://` clients; killed on drop.
struct Member {
    child: Option<Child>,
    log: PathBuf,
    host_port: String,
}

impl Member {
    fn url(&self) -> String {
        format!("https://{}", self.host_port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} -----\n{}\n-----",
                self.host_port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.kill();
    }
}

/// `n` members with TLS client URLs (plain peer URLs), serving; `None` when the server binary
/// is absent.
async fn start(pki: &Pki, n: usize, client_cert_auth: bool) -> Option<(TempDir, Vec<Member>)> {
    let binary = server_binary(server_kind())?;
    let dir = tempfile::Builder::new()
        .prefix("xline-client-tls-members-")
        .tempdir()
        .unwrap();
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (fresh_port(), fresh_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("t{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let log = dir.path().join(format!("t{i}.log"));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(&binary)
            .arg(format!("--name=t{i}"))
            .arg(format!(
                "--data-dir={}",
                dir.path().join(format!("t{i}")).display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-token=client-tls")
            .args(pki.server_flags(client_cert_auth))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        members.push(Member {
            child: Some(child),
            log,
            host_port: format!("127.0.0.1:{client}"),
        });
    }
    let root = pki.client("root");
    for m in &members {
        wait_ready(m, pki.tls(Some(&root))).await;
    }
    Some((dir, members))
}

/// Waits until `member` answers a Range over TLS.
async fn wait_ready(member: &Member, tls: TlsOptions) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let opts = ConnectOptions::new()
            .with_dial_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(2))
            .with_max_retries(1)
            .with_tls(tls.clone());
        match Client::connect([member.url()], opts).await {
            Ok(c) => match c.kv().get("ready-probe", None).await {
                Ok(_) => return,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} not serving over TLS: {last}", member.url());
}

/// Client options with short timeouts, at most two attempts per call, and `tls`.
fn options(tls: TlsOptions) -> ConnectOptions {
    ConnectOptions::new()
        .with_dial_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_max_retries(2)
        .with_tls(tls)
}

/// A put then a get of `key` through a client of `endpoint` with `tls`.
async fn put_get(endpoint: &str, tls: TlsOptions, key: &str) -> xline_client::Result<Vec<u8>> {
    let c = Client::connect([endpoint], options(tls)).await?;
    c.kv().put(key, "v", None).await?;
    let got = c.kv().get(key, None).await?;
    Ok(got
        .kvs
        .first()
        .map(|kv| kv.value.clone())
        .unwrap_or_default())
}

/// The error a get through `endpoint` with `opts` fails with.
async fn get_err(endpoint: &str, opts: ConnectOptions) -> Error {
    let c = Client::connect([endpoint], opts).await.unwrap();
    c.kv().get("k", None).await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_verification_without_client_certificates() {
    let pki = Pki::new();
    let Some((_dir, members)) = start(&pki, 1, false).await else {
        return;
    };
    let m = &members[0];

    // CA only: https:// and bare host:port (TLS because options are given) both work.
    assert_eq!(put_get(&m.url(), pki.tls(None), "a").await.unwrap(), b"v");
    assert_eq!(
        put_get(&m.host_port, pki.tls(None), "b").await.unwrap(),
        b"v"
    );
    // The server name is checked: the certificate is for localhost and 127.0.0.1.
    let localhost = m.url().replace("127.0.0.1", "localhost");
    assert_eq!(put_get(&localhost, pki.tls(None), "c").await.unwrap(), b"v");
    let tls = pki.tls(None).with_domain("localhost");
    assert_eq!(put_get(&m.url(), tls, "d").await.unwrap(), b"v");
    let err = get_err(
        &m.url(),
        options(pki.tls(None).with_domain("other.example")),
    )
    .await;
    assert!(
        matches!(&err, Error::Connect { reason, .. } if reason.contains("not valid for name \"other.example\"")),
        "{err:?}"
    );

    // A CA that did not sign the server's certificate: refused at the handshake.
    let wrong = TlsOptions::from_files(Some(&pki.rogue_ca), None, None).unwrap();
    let err = get_err(&m.url(), options(wrong)).await;
    match &err {
        Error::Connect { endpoint, reason } => {
            assert_eq!(endpoint, &m.url());
            assert!(reason.contains("invalid peer certificate"), "{reason}");
            assert!(reason.contains("UnknownIssuer"), "{reason}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    // Without a CA bundle the system roots are used: they do not know the test CA either.
    let err = get_err(&m.url(), options(TlsOptions::new())).await;
    assert!(
        matches!(&err, Error::Connect { reason, .. } if reason.contains("UnknownIssuer")),
        "{err:?}"
    );
    // https:// without options: the same (system roots).
    let plain_opts = ConnectOptions::new()
        .with_dial_timeout(Duration::from_secs(2))
        .with_max_retries(1);
    let err = get_err(&m.url(), plain_opts.clone()).await;
    assert!(
        matches!(&err, Error::Connect { reason, .. } if reason.contains("UnknownIssuer")),
        "{err:?}"
    );
    // Skipping verification accepts the server (whatever the name), the CA unused.
    let skip = TlsOptions::new()
        .with_insecure_skip_verify(true)
        .with_domain("other.example");
    assert_eq!(put_get(&m.url(), skip, "e").await.unwrap(), b"v");

    // Bad PEM material is refused when the client is built, before anything is dialled.
    let bad = [
        TlsOptions::new().with_ca_pem(b"not a certificate".to_vec()),
        pki.tls(None).with_identity(
            std::fs::read(&pki.client("alice").cert).unwrap(),
            b"not a key".to_vec(),
        ),
    ];
    for tls in bad {
        let err = Client::connect([m.url()], options(tls)).await.unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err:?}");
    }

    // Plaintext to the TLS port (http://, or a bare host:port without TLS options): no answer.
    for ep in [m.url().replace("https://", "http://"), m.host_port.clone()] {
        let opts = plain_opts.clone().with_timeout(Duration::from_secs(3));
        let c = Client::connect([ep.as_str()], opts).await.unwrap();
        let r = c.kv().get("a", None).await;
        assert!(r.is_err(), "{ep}: plaintext answered {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_common_name_users() {
    let pki = Pki::new();
    let Some((_dir, members)) = start(&pki, 1, true).await else {
        return;
    };
    let url = members[0].url();
    let (root, alice, nobody) = (
        pki.client("root"),
        pki.client("alice"),
        pki.client("nobody"),
    );

    // A client certificate signed by the trusted CA: accepted.
    assert_eq!(
        put_get(&url, pki.tls(Some(&root)), "k").await.unwrap(),
        b"v"
    );
    // No certificate, or one from another CA: refused by the server.
    // (TLS 1.3: the server closes the connection after the handshake, so the call fails with a
    // transport status made on this side, not with a server's answer.)
    let transport_failure = |e: &Error| {
        matches!(e, Error::Status(s) if std::error::Error::source(s).is_some())
            || matches!(e, Error::Connect { .. })
    };
    let refused = put_get(&url, pki.tls(None), "k").await.unwrap_err();
    assert!(transport_failure(&refused), "no certificate: {refused:?}");
    let rogue = pki.tls(None).with_identity(
        std::fs::read(&pki.rogue.cert).unwrap(),
        std::fs::read(&pki.rogue.key).unwrap(),
    );
    let refused = put_get(&url, rogue, "k").await.unwrap_err();
    assert!(
        transport_failure(&refused),
        "untrusted certificate: {refused:?}"
    );

    // Users root and alice (read-write on [a, b)), then auth on: the CN is the user.
    let admin = Client::connect([url.as_str()], options(pki.tls(Some(&root))))
        .await
        .unwrap();
    let auth = admin.auth();
    auth.user_add("root", "rootpw", None::<UserAddOptions>)
        .await
        .unwrap();
    auth.user_grant_role("root", "root").await.unwrap();
    auth.user_add("alice", "alicepw", None::<UserAddOptions>)
        .await
        .unwrap();
    auth.role_add("a-writer").await.unwrap();
    auth.role_grant_permission("a-writer", Permission::read_write("a").with_range_end("b"))
        .await
        .unwrap();
    auth.user_grant_role("alice", "a-writer").await.unwrap();
    auth.auth_enable().await.unwrap();

    let as_alice = Client::connect([url.as_str()], options(pki.tls(Some(&alice))))
        .await
        .unwrap();
    as_alice.kv().put("a1", "x", None).await.unwrap();
    assert_eq!(
        as_alice.kv().get("a1", None).await.unwrap().kvs[0].value,
        b"x"
    );
    let denied = as_alice.kv().put("c1", "x", None).await.unwrap_err();
    assert_eq!(
        denied.etcd_kind(),
        Some(EtcdErrorKind::PermissionDenied),
        "{denied:?}"
    );
    // root's certificate is root: admin calls work without a password.
    admin.kv().put("c1", "y", None).await.unwrap();
    let users = admin.auth().user_list().await.unwrap().users;
    assert!(users.contains(&"alice".to_owned()), "{users:?}");
    // A CN that names no user gets nothing.
    let as_nobody = Client::connect([url.as_str()], options(pki.tls(Some(&nobody))))
        .await
        .unwrap();
    let denied = as_nobody.kv().get("a1", None).await.unwrap_err();
    assert_eq!(
        denied.etcd_kind(),
        Some(EtcdErrorKind::PermissionDenied),
        "{denied:?}"
    );
    // A password login still wins over the certificate (alice's token on root's certificate).
    let token_wins = Client::connect(
        [url.as_str()],
        options(pki.tls(Some(&root))).with_user("alice", "alicepw"),
    )
    .await
    .unwrap();
    let denied = token_wins.kv().put("c2", "x", None).await.unwrap_err();
    assert_eq!(
        denied.etcd_kind(),
        Some(EtcdErrorKind::PermissionDenied),
        "{denied:?}"
    );
    admin.auth().auth_disable().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_across_tls_endpoints() {
    let pki = Pki::new();
    let Some((_dir, mut members)) = start(&pki, 3, true).await else {
        return;
    };
    let root = pki.client("root");
    // Calls go round-robin from member 0: after three calls each member has a connection and
    // the next call goes to member 0, which is then killed.
    let urls: Vec<String> = members.iter().map(Member::url).collect();
    let opts = ConnectOptions::new()
        .with_dial_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(10))
        .with_tls(pki.tls(Some(&root)));
    let client = Client::connect(&urls, opts).await.unwrap();
    client.kv().put("f/0", "0", None).await.unwrap();
    for _ in 0..2 {
        let got = client.kv().get("f/0", None).await.unwrap();
        assert_eq!(got.kvs[0].value, b"0");
    }
    members[0].kill();
    // Reads are retried on the other TLS endpoints; writes fail over when the dead member
    // cannot be dialled (a write lost with the member or a leader change is tried again here).
    for i in 1..20 {
        let key = format!("f/{i}");
        let mut tries = 0;
        while let Err(e) = client.kv().put(key.as_str(), i.to_string(), None).await {
            tries += 1;
            assert!(tries < 50, "put {key} keeps failing: {e:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = client.kv().get(key.as_str(), None).await.unwrap();
        assert_eq!(got.kvs[0].value, i.to_string().as_bytes());
    }
    let all = client
        .kv()
        .get("f/", Some(xline_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.count, 20);
}
