//! TLS on the client and peer listeners (issue 7): certificates generated here with rcgen,
//! driven with etcdctl (`--cacert --cert --key`) and etcd-client's TLS options. Runs against
//! xline, or against Debian's etcd with `XLINE_TEST_SERVER=etcd`, with the same expectations.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ServerKind, server_kind};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tempfile::TempDir;

/// How long a member may take to serve.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// A test PKI: a CA, a server certificate (for 127.0.0.1 and localhost, also used as the
/// members' client certificate), client certificates by common name, and a certificate from
/// another CA that nobody trusts.
struct Pki {
    dir: TempDir,
    ca: PathBuf,
    server: CertFiles,
    rogue: CertFiles,
}

/// Parameters of a leaf certificate named `cn`.
fn leaf_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
}

/// Parameters of a CA named `cn`.
fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xline-tls-")
            .tempdir()
            .unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params("test-ca").self_signed(&ca_key).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca_params("test-ca"), ca_key);
        let server = Self::issue(dir.path(), "server", "member", &issuer);

        let rogue_key = KeyPair::generate().unwrap();
        let rogue_issuer = Issuer::new(ca_params("rogue-ca"), rogue_key);
        let rogue = Self::issue(dir.path(), "rogue", "root", &rogue_issuer);
        let pki = Self {
            dir,
            ca,
            server,
            rogue,
        };
        // Client certificates by user name (the CN), signed by the trusted CA.
        for cn in ["root", "alice", "mallory"] {
            Self::issue(pki.dir.path(), cn, cn, &issuer);
        }
        pki
    }

    /// Issues a certificate for `cn` into `<name>.pem` and `<name>-key.pem`.
    fn issue(dir: &Path, name: &str, cn: &str, issuer: &Issuer<'_, KeyPair>) -> CertFiles {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(cn).signed_by(&key, issuer).unwrap();
        let files = CertFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// The client certificate issued for user `cn`.
    fn client(&self, cn: &str) -> CertFiles {
        CertFiles {
            cert: self.dir.path().join(format!("{cn}.pem")),
            key: self.dir.path().join(format!("{cn}-key.pem")),
        }
    }

    /// Client flags: TLS with a trusted CA, optionally requiring client certificates.
    fn client_flags(&self, client_cert_auth: bool) -> Vec<String> {
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

    /// Peer flags: mutual TLS between members.
    fn peer_flags(&self) -> Vec<String> {
        vec![
            format!("--peer-cert-file={}", self.server.cert.display()),
            format!("--peer-key-file={}", self.server.key.display()),
            format!("--peer-trusted-ca-file={}", self.ca.display()),
            "--peer-client-cert-auth".to_owned(),
        ]
    }
}

/// Free loopback ports, all bound at once so they differ.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One server process, killed on drop.
struct Member {
    child: Child,
    log: PathBuf,
    client_url: String,
    _dir: TempDir,
}

impl Member {
    /// Starts a member (xline or etcd by the environment) with `args` after the data dir.
    fn spawn(name: &str, args: &[String]) -> (Self, String) {
        let dir = tempfile::Builder::new()
            .prefix("xline-tls-member-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("server.log");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let program = match server_kind() {
            ServerKind::Xline => PathBuf::from(env!("CARGO_BIN_EXE_xline")),
            ServerKind::Etcd => PathBuf::from("/usr/bin/etcd"),
        };
        let child = Command::new(program)
            .arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        let client_url = args
            .iter()
            .find_map(|a| a.strip_prefix("--advertise-client-urls="))
            .unwrap()
            .to_owned();
        (
            Self {
                child,
                log,
                client_url: client_url.clone(),
                _dir: dir,
            },
            client_url,
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} -----\n{}\n-----",
                self.client_url,
                self.log()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flags for a member named `name` with the given URLs and initial cluster.
fn member_args(client_url: &str, peer_url: &str, initial_cluster: &str) -> Vec<String> {
    vec![
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster={initial_cluster}"),
    ]
}

/// A single member serving `https://` clients with `extra` flags; returns it and its URL.
fn single(pki: &Pki, client_cert_auth: bool) -> (Member, String) {
    let ports = free_ports(2);
    let client_url = format!("https://127.0.0.1:{}", ports[0]);
    let peer_url = format!("http://127.0.0.1:{}", ports[1]);
    let mut args = member_args(&client_url, &peer_url, &format!("n1={peer_url}"));
    args.extend(pki.client_flags(client_cert_auth));
    Member::spawn("n1", &args)
}

/// etcd-client options trusting the CA and presenting `cert` if given.
fn tls_options(pki: &Pki, cert: Option<&CertFiles>) -> ConnectOptions {
    let mut tls =
        TlsOptions::new().ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()));
    if let Some(c) = cert {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&c.cert).unwrap(),
            std::fs::read(&c.key).unwrap(),
        ));
    }
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_tls(tls)
}

/// An etcd-client for `url` with TLS.
async fn tls_client(pki: &Pki, url: &str, cert: Option<&CertFiles>) -> Result<Client, String> {
    Client::connect([url], Some(tls_options(pki, cert)))
        .await
        .map_err(|e| e.to_string())
}

/// Waits until `url` answers a Range over TLS with `cert`.
async fn wait_ready(pki: &Pki, url: &str, cert: Option<&CertFiles>, member: &Member) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let probe = async {
            let mut c = tls_client(pki, url, cert).await?;
            c.get("probe", None).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => last = e,
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} not ready: {last}\n----- log -----\n{}", member.log());
}

/// Runs etcdctl (API v3) against `url` with `--cacert` and, if given, `--cert --key`.
fn etcdctl(pki: &Pki, url: &str, cert: Option<&CertFiles>, args: &[&str]) -> Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={url}"))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=5s")
        .arg(format!("--cacert={}", pki.ca.display()));
    if let Some(c) = cert {
        cmd.arg(format!("--cert={}", c.cert.display()))
            .arg(format!("--key={}", c.key.display()));
    }
    cmd.args(args).output().unwrap()
}

/// etcdctl's stdout, asserting success.
#[track_caller]
fn etcdctl_ok(pki: &Pki, url: &str, cert: Option<&CertFiles>, args: &[&str]) -> String {
    let out = etcdctl(pki, url, cert, args);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// etcdctl's stderr, asserting failure.
#[track_caller]
fn etcdctl_err(pki: &Pki, url: &str, cert: Option<&CertFiles>, args: &[&str]) -> String {
    let out = etcdctl(pki, url, cert, args);
    assert!(
        !out.status.success(),
        "etcdctl {args:?} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_with_client_cert_auth() {
    let pki = Pki::new();
    let root = pki.client("root");
    let (member, url) = single(&pki, true);
    wait_ready(&pki, &url, Some(&root), &member).await;

    // etcdctl with the CA and a client certificate.
    assert_eq!(
        etcdctl_ok(&pki, &url, Some(&root), &["put", "k", "v"]),
        "OK\n"
    );
    assert_eq!(etcdctl_ok(&pki, &url, Some(&root), &["get", "k"]), "k\nv\n");
    // Maintenance calls go through the :authority fix inside TLS.
    let status = etcdctl_ok(
        &pki,
        &url,
        Some(&root),
        &["endpoint", "status", "-w", "simple"],
    );
    assert!(status.starts_with(&format!("{url}, ")), "{status}");

    // etcd-client with TLS options.
    let mut c = tls_client(&pki, &url, Some(&root)).await.unwrap();
    c.put("k2", "v2", None).await.unwrap();
    let got = c.get("k", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v");

    // HTTP/1.1 shares the port inside TLS too, as etcd's: `curl https://.../version`.
    let curl = Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert"])
        .arg(&pki.ca)
        .arg("--cert")
        .arg(&root.cert)
        .arg("--key")
        .arg(&root.key)
        .arg(format!("{url}/version"))
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&curl.stdout);
    assert!(version.starts_with("{\"etcdserver\":\"3."), "{version}");
    // Without a certificate the handshake fails before any HTTP.
    let refused = Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert"])
        .arg(&pki.ca)
        .arg(format!("{url}/version"))
        .output()
        .unwrap();
    assert!(!refused.status.success());

    // Without a client certificate, or with one from an unknown CA: refused.
    etcdctl_err(&pki, &url, None, &["get", "k"]);
    etcdctl_err(&pki, &url, Some(&pki.rogue), &["get", "k"]);
    let no_cert = async {
        let mut c = tls_client(&pki, &url, None).await?;
        c.get("k", None).await.map_err(|e| e.to_string())
    };
    assert!(no_cert.await.is_err());
    let rogue = async {
        let mut c = tls_client(&pki, &url, Some(&pki.rogue)).await?;
        c.get("k", None).await.map_err(|e| e.to_string())
    };
    assert!(rogue.await.is_err());
    // Plain HTTP/2 on the TLS port: refused.
    let plain_url = url.replace("https://", "http://");
    let plain = async {
        let mut c = Client::connect(
            [plain_url.as_str()],
            Some(ConnectOptions::new().with_timeout(Duration::from_secs(3))),
        )
        .await
        .map_err(|e| e.to_string())?;
        c.get("k", None).await.map_err(|e| e.to_string())
    };
    assert!(plain.await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_without_client_certificates() {
    let pki = Pki::new();
    let (member, url) = single(&pki, false);
    wait_ready(&pki, &url, None, &member).await;
    assert_eq!(etcdctl_ok(&pki, &url, None, &["put", "a", "1"]), "OK\n");
    assert_eq!(etcdctl_ok(&pki, &url, None, &["get", "a"]), "a\n1\n");
    // A client that does not trust the server's CA refuses it.
    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(&pki.rogue.cert, other.path()).unwrap();
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={url}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=3s")
        .arg(format!("--cacert={}", other.path().display()))
        .args(["get", "a"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_common_name_is_the_auth_user() {
    let pki = Pki::new();
    let (root, alice, mallory) = (
        pki.client("root"),
        pki.client("alice"),
        pki.client("mallory"),
    );
    let (member, url) = single(&pki, true);
    wait_ready(&pki, &url, Some(&root), &member).await;
    let ctl = |cert: &CertFiles, args: &[&str]| etcdctl_ok(&pki, &url, Some(cert), args);
    ctl(
        &root,
        &["user", "add", "root", "--new-user-password=rootpw"],
    );
    ctl(&root, &["user", "grant-role", "root", "root"]);
    ctl(
        &root,
        &["user", "add", "alice", "--new-user-password=alicepw"],
    );
    ctl(&root, &["role", "add", "a-writer"]);
    ctl(
        &root,
        &[
            "role",
            "grant-permission",
            "a-writer",
            "readwrite",
            "a",
            "b",
        ],
    );
    ctl(&root, &["user", "grant-role", "alice", "a-writer"]);
    assert_eq!(ctl(&root, &["auth", "enable"]), "Authentication Enabled\n");

    // No token: the certificate's CN is the user.
    assert_eq!(ctl(&alice, &["put", "a1", "x"]), "OK\n");
    assert_eq!(ctl(&alice, &["get", "a1"]), "a1\nx\n");
    let denied = etcdctl_err(&pki, &url, Some(&alice), &["put", "c1", "x"]);
    assert!(denied.contains("etcdserver: permission denied"), "{denied}");
    // root's certificate is root: admin calls work without a password.
    assert_eq!(ctl(&root, &["put", "c1", "y"]), "OK\n");
    assert!(ctl(&root, &["user", "list"]).contains("alice"));
    // A CN naming no user gets nothing.
    let unknown = etcdctl_err(&pki, &url, Some(&mallory), &["get", "a1"]);
    assert!(
        unknown.contains("code = PermissionDenied desc = etcdserver: permission denied"),
        "{unknown}"
    );
    // A token still wins over the certificate.
    let as_alice = etcdctl_err(
        &pki,
        &url,
        Some(&root),
        &["--user=alice:alicepw", "put", "c2", "x"],
    );
    assert!(
        as_alice.contains("etcdserver: permission denied"),
        "{as_alice}"
    );
    ctl(&root, &["auth", "disable"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_with_peer_tls_form_and_replicate() {
    let pki = Pki::new();
    let root = pki.client("root");
    let names = ["m1", "m2", "m3"];
    let (_members, client_urls, peer_urls) = tls_cluster(&pki).await;
    // A write through one member is read (linearizably) through the others.
    assert_eq!(
        etcdctl_ok(&pki, &client_urls[0], Some(&root), &["put", "rk", "rv"]),
        "OK\n"
    );
    for url in &client_urls[1..] {
        assert_eq!(
            etcdctl_ok(&pki, url, Some(&root), &["get", "rk"]),
            "rk\nrv\n"
        );
    }
    let list = etcdctl_ok(&pki, &client_urls[2], Some(&root), &["member", "list"]);
    for (name, peer) in names.iter().zip(&peer_urls) {
        assert!(
            list.contains(&format!(", started, {name}, {peer}, ")),
            "{list}"
        );
    }
    // Leases kept alive and read through every member (a follower asks the leader).
    let grant = etcdctl_ok(
        &pki,
        &client_urls[1],
        Some(&root),
        &["lease", "grant", "60"],
    );
    let id = grant.split_whitespace().nth(1).unwrap().to_owned();
    for url in &client_urls {
        let alive = etcdctl_ok(
            &pki,
            url,
            Some(&root),
            &["lease", "keep-alive", "--once", &id],
        );
        assert!(alive.contains(&format!("lease {id} keepalived")), "{alive}");
        let ttl = etcdctl_ok(&pki, url, Some(&root), &["lease", "timetolive", &id]);
        assert!(ttl.contains("granted with TTL(60s)"), "{ttl}");
    }
    // Mutual peer TLS: a peer connection without a certificate is refused (xline serves the
    // member list there, to members that join; etcd serves it over HTTP).
    let out = etcdctl(&pki, &peer_urls[0], None, &["member", "list"]);
    assert!(!out.status.success());
    if server_kind() == ServerKind::Xline {
        let list = etcdctl_ok(&pki, &peer_urls[0], Some(&pki.server), &["member", "list"]);
        assert_eq!(list.lines().count(), 3, "{list}");
    }
}

/// Adds root (role root) and alice (readwrite on `[a, b)`) and enables auth, through `url`
/// with root's certificate (no passwords used: the certificates name the users).
fn enable_auth_with_alice(pki: &Pki, url: &str) {
    let root = pki.client("root");
    let ctl = |args: &[&str]| etcdctl_ok(pki, url, Some(&root), args);
    ctl(&["user", "add", "root", "--new-user-password=rootpw"]);
    ctl(&["user", "grant-role", "root", "root"]);
    ctl(&["user", "add", "alice", "--new-user-password=alicepw"]);
    ctl(&["role", "add", "a-writer"]);
    ctl(&[
        "role",
        "grant-permission",
        "a-writer",
        "readwrite",
        "a",
        "b",
    ]);
    ctl(&["user", "grant-role", "alice", "a-writer"]);
    assert_eq!(ctl(&["auth", "enable"]), "Authentication Enabled\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_user_watches_and_locks() {
    let pki = Pki::new();
    let (root, alice) = (pki.client("root"), pki.client("alice"));
    let (member, url) = single(&pki, true);
    wait_ready(&pki, &url, Some(&root), &member).await;
    enable_auth_with_alice(&pki, &url);

    // alice has no token: her certificate names her, on Watch as on KV.
    let mut c = tls_client(&pki, &url, Some(&alice)).await.unwrap();
    let mut allowed = c.watch("a1", None).await.unwrap();
    let created = allowed.message().await.unwrap().unwrap();
    assert!(created.created() && !created.canceled(), "{created:?}");
    c.put("a1", "v", None).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), allowed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.events().len(), 1, "{event:?}");
    assert_eq!(event.events()[0].kv().unwrap().key(), b"a1");
    let mut denied = c.watch("c1", None).await.unwrap();
    let refused = denied.message().await.unwrap().unwrap();
    assert!(refused.created() && refused.canceled(), "{refused:?}");
    assert_eq!(
        refused.cancel_reason(),
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );

    // Lock and Election requests are made as the caller (the certificate's user) too.
    let lock = etcdctl_ok(
        &pki,
        &url,
        Some(&alice),
        &["lock", "a-lock", "echo", "held"],
    );
    assert!(lock.ends_with("held\n"), "{lock}");
    let refused = etcdctl_err(
        &pki,
        &url,
        Some(&alice),
        &["lock", "c-lock", "echo", "held"],
    );
    assert!(
        refused.contains("etcdserver: permission denied"),
        "{refused}"
    );
    etcdctl_ok(&pki, &url, Some(&root), &["auth", "disable"]);
}

/// Three members with client-cert auth on both sides; returns them with their client and peer
/// URLs. The members' own certificate names user `member`, who does not exist.
async fn tls_cluster(pki: &Pki) -> (Vec<Member>, Vec<String>, Vec<String>) {
    let root = pki.client("root");
    let ports = free_ports(6);
    let names = ["m1", "m2", "m3"];
    let peer_urls: Vec<String> = (0..3)
        .map(|i| format!("https://127.0.0.1:{}", ports[2 * i + 1]))
        .collect();
    let client_urls: Vec<String> = (0..3)
        .map(|i| format!("https://127.0.0.1:{}", ports[2 * i]))
        .collect();
    let initial: String = names
        .iter()
        .zip(&peer_urls)
        .map(|(n, u)| format!("{n}={u}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    for i in 0..3 {
        let mut args = member_args(&client_urls[i], &peer_urls[i], &initial);
        args.extend(pki.client_flags(true));
        args.extend(pki.peer_flags());
        args.push("--initial-cluster-token=tls-cluster".to_owned());
        members.push(Member::spawn(names[i], &args).0);
    }
    for (i, m) in members.iter().enumerate() {
        wait_ready(pki, &client_urls[i], Some(&root), m).await;
    }
    (members, client_urls, peer_urls)
}

/// The client URL of a member that does not lead.
async fn follower_url(pki: &Pki, urls: &[String]) -> String {
    let root = pki.client("root");
    for url in urls {
        let mut c = tls_client(pki, url, Some(&root)).await.unwrap();
        let status = c.status().await.unwrap();
        if status.header().unwrap().member_id() != status.leader() {
            return url.clone();
        }
    }
    panic!("no follower among {urls:?}");
}

/// The lease id `etcdctl lease grant` printed.
fn lease_id(grant: &str) -> String {
    grant.split_whitespace().nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_are_checked_as_the_original_caller() {
    let pki = Pki::new();
    let (root, alice) = (pki.client("root"), pki.client("alice"));
    let (_members, client_urls, _) = tls_cluster(&pki).await;
    enable_auth_with_alice(&pki, &client_urls[0]);
    let follower = follower_url(&pki, &client_urls).await;
    let ctl = |cert: &CertFiles, args: &[&str]| etcdctl_ok(&pki, &follower, Some(cert), args);

    // alice's lease on her own key: its time-to-live (answered by the leader) is hers to read.
    let mine = lease_id(&ctl(&alice, &["lease", "grant", "60"]));
    assert_eq!(ctl(&alice, &["put", "a1", "x", "--lease", &mine]), "OK\n");
    let ttl = ctl(&alice, &["lease", "timetolive", &mine, "--keys"]);
    assert!(ttl.contains("attached keys([a1])"), "{ttl}");
    let alive = ctl(&alice, &["lease", "keep-alive", "--once", &mine]);
    assert!(
        alive.contains(&format!("lease {mine} keepalived")),
        "{alive}"
    );
    // root's lease on a key outside alice's range: not hers.
    let theirs = lease_id(&ctl(&root, &["lease", "grant", "60"]));
    assert_eq!(ctl(&root, &["put", "c1", "y", "--lease", &theirs]), "OK\n");
    let ttl = ctl(&root, &["lease", "timetolive", &theirs, "--keys"]);
    assert!(ttl.contains("attached keys([c1])"), "{ttl}");
    // Checked since etcd 3.5.9 (Debian's 3.4.23 predates the fix and shows the keys).
    if server_kind() == ServerKind::Xline {
        let denied = etcdctl_err(
            &pki,
            &follower,
            Some(&alice),
            &["lease", "timetolive", &theirs, "--keys"],
        );
        assert!(denied.contains("etcdserver: permission denied"), "{denied}");
    }

    // Membership changes need an admin: root's certificate through a follower is enough (the
    // leader checks root, not the follower's own certificate), alice's is not.
    let spare = format!("https://127.0.0.1:{}", free_ports(1)[0]);
    // (Strict reconfiguration: the members must have been connected for a few seconds.)
    let add = [
        "member",
        "add",
        "spare",
        "--learner",
        &format!("--peer-urls={spare}"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let added = loop {
        let out = etcdctl(&pki, &follower, Some(&root), &add);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(
            stderr.contains("unhealthy cluster") && Instant::now() < deadline,
            "{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let id = added
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_hexdigit())
        .to_owned();
    assert!(added.contains("added to cluster"), "{added}");
    let denied = etcdctl_err(&pki, &follower, Some(&alice), &["member", "remove", &id]);
    assert!(denied.contains("etcdserver: permission denied"), "{denied}");
    let removed = ctl(&root, &["member", "remove", &id]);
    assert!(removed.contains("removed from cluster"), "{removed}");
    etcdctl_ok(&pki, &client_urls[0], Some(&root), &["auth", "disable"]);
}
