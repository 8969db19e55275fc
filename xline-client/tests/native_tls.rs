//! The native CURP path over TLS: a 3-member xline whose peer listeners run TLS with
//! `--peer-client-cert-auth` (certificates generated here with rcgen). A native client with a
//! certificate the peers trust writes (mostly on the fast path) and the writes are visible
//! through the etcd API; without a certificate, with one from another CA, or without the CA
//! bundle, connecting is refused with an error that says so. `from_client` carries the
//! client's TLS settings over to the `https://` peer URLs.
//! xline only: etcd has no CURP client service (skipped with `XLINE_TEST_SERVER=etcd`).

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::{CertFiles, issue, new_ca};
use common::{fresh_port, server_binary, server_kind};
use tempfile::TempDir;
use xline_client::native::{NativeClient, NativeOptions};
use xline_client::{
    Client, Compare, CompareOp, ConnectOptions, Error, GetOptions, TlsOptions, Txn, TxnOp,
};

/// How long a member may take to serve.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A CA with the members' certificate and the native client's, and a client certificate
/// signed by a CA nobody trusts.
struct Pki {
    _dir: TempDir,
    ca: PathBuf,
    member: CertFiles,
    client: CertFiles,
    rogue: CertFiles,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xline-native-tls-")
            .tempdir()
            .unwrap();
        let (issuer, ca) = new_ca(dir.path(), "ca", "test-ca");
        let member = issue(dir.path(), "member", "member", &issuer);
        let client = issue(dir.path(), "client", "native-client", &issuer);
        let (rogue_issuer, _) = new_ca(dir.path(), "rogue-ca", "rogue-ca");
        let rogue = issue(dir.path(), "rogue", "native-client", &rogue_issuer);
        Self {
            _dir: dir,
            ca,
            member,
            client,
            rogue,
        }
    }

    /// TLS options trusting the test CA, presenting `cert` if given.
    fn tls(&self, cert: Option<&CertFiles>) -> TlsOptions {
        TlsOptions::from_files(
            Some(&self.ca),
            cert.map(|c| c.cert.as_path()),
            cert.map(|c| c.key.as_path()),
        )
        .unwrap()
    }

    /// Mutual TLS on the peer listener.
    fn peer_flags(&self) -> Vec<String> {
        vec![
            format!("--peer-cert-file={}", self.member.cert.display()),
            format!("--peer-key-file={}", self.member.key.display()),
            format!("--peer-trusted-ca-file={}", self.ca.display()),
            "--peer-client-cert-auth".to_owned(),
        ]
    }
}

/// One member process, killed on drop (its log printed if the test failed).
struct Member {
    child: Child,
    log: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} -----\n{}\n-----",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three members: plain client URLs, TLS peer URLs with peer client-certificate auth.
struct TlsCluster {
    _dir: TempDir,
    _members: Vec<Member>,
    client_urls: Vec<String>,
    peer_urls: Vec<String>,
}

impl TlsCluster {
    /// Starts and waits for the members; `None` when the server binary is absent.
    async fn start(pki: &Pki) -> Option<Self> {
        let binary = server_binary(server_kind())?;
        let dir = tempfile::Builder::new()
            .prefix("xline-native-tls-members-")
            .tempdir()
            .unwrap();
        let client_urls: Vec<String> = (0..3)
            .map(|_| format!("http://127.0.0.1:{}", fresh_port()))
            .collect();
        let peer_urls: Vec<String> = (0..3)
            .map(|_| format!("https://127.0.0.1:{}", fresh_port()))
            .collect();
        let initial = peer_urls
            .iter()
            .enumerate()
            .map(|(i, u)| format!("n{i}={u}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for i in 0..3 {
            let log = dir.path().join(format!("n{i}.log"));
            let out = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let child = Command::new(&binary)
                .arg(format!("--name=n{i}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.path().join(format!("n{i}")).display()
                ))
                .arg(format!("--listen-client-urls={}", client_urls[i]))
                .arg(format!("--advertise-client-urls={}", client_urls[i]))
                .arg(format!("--listen-peer-urls={}", peer_urls[i]))
                .arg(format!("--initial-advertise-peer-urls={}", peer_urls[i]))
                .arg(format!("--initial-cluster={initial}"))
                .arg("--initial-cluster-token=native-tls")
                .args(pki.peer_flags())
                .stdin(Stdio::null())
                .stdout(Stdio::from(out.try_clone().unwrap()))
                .stderr(Stdio::from(out))
                .spawn()
                .unwrap();
            members.push(Member { child, log });
        }
        for url in &client_urls {
            wait_ready(url).await;
        }
        Some(Self {
            _dir: dir,
            _members: members,
            client_urls,
            peer_urls,
        })
    }
}

/// Waits until the member at `url` answers a linearizable Range.
async fn wait_ready(url: &str) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let opts = ConnectOptions::new()
            .with_dial_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(2))
            .with_max_retries(1);
        match Client::connect([url], opts).await {
            Ok(c) => match c.kv().get("ready-probe", None).await {
                Ok(_) => return,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} not serving: {last}");
}

/// Native options with short timeouts.
fn native_options() -> NativeOptions {
    NativeOptions::new()
        .with_dial_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
}

/// The error connecting (and, if that succeeds, putting) through `urls` with `options` ends in.
async fn refused(urls: &[String], options: NativeOptions) -> Error {
    match NativeClient::connect(urls, options).await {
        Err(e) => e,
        Ok(native) => native
            .put("refused", "x", None)
            .await
            .expect_err("a refused client wrote"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_writes_over_peer_tls_with_client_certificates() {
    if common::is_etcd() {
        println!("skipped: etcd has no CURP client service");
        return;
    }
    let pki = Pki::new();
    let Some(cluster) = TlsCluster::start(&pki).await else {
        return;
    };
    let etcd_api = Client::connect(&cluster.client_urls, common::test_options())
        .await
        .unwrap();

    // A certificate the peers trust: puts complete, mostly in one round trip.
    let native = NativeClient::connect(
        &cluster.peer_urls,
        native_options().with_tls(pki.tls(Some(&pki.client))),
    )
    .await
    .unwrap();
    const PUTS: usize = 20;
    let mut fast = 0;
    for i in 0..PUTS {
        let resp = native
            .put(format!("tls/{i:02}"), format!("v{i}"), None)
            .await
            .unwrap();
        if !resp.revision_final {
            assert_eq!(resp.revision(), 0, "{resp:?}");
            fast += 1;
        }
    }
    println!("[native-tls] {fast}/{PUTS} puts completed on the fast path");
    assert!(
        fast * 2 > PUTS,
        "commuting puts over TLS should mostly take the fast path: {fast}/{PUTS}"
    );
    assert_eq!(native.stats().fast, fast as u64);
    let got = etcd_api
        .kv()
        .get("tls/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(got.kvs.len(), PUTS);
    for (i, kv) in got.kvs.iter().enumerate() {
        assert_eq!(kv.key, format!("tls/{i:02}").into_bytes());
        assert_eq!(kv.value, format!("v{i}").into_bytes());
    }
    // A txn takes the ordered path over the same connections.
    let txn = native
        .txn(
            Txn::new()
                .when([Compare::value("tls/00", CompareOp::Equal, "v0")])
                .and_then([TxnOp::put("tls/00", "txn", None)]),
        )
        .await
        .unwrap();
    assert!(txn.revision_final && txn.response.succeeded, "{txn:?}");
    let got = etcd_api.kv().get("tls/00", None).await.unwrap();
    assert_eq!(got.kvs[0].value, b"txn");
    assert_eq!(got.kvs[0].mod_revision, txn.revision());

    // With TLS options, bare host:port peer URLs are dialled over TLS.
    let bare: Vec<String> = cluster
        .peer_urls
        .iter()
        .map(|u| u.trim_start_matches("https://").to_owned())
        .collect();
    let native =
        NativeClient::connect(&bare, native_options().with_tls(pki.tls(Some(&pki.client))))
            .await
            .unwrap();
    native.put("tls/bare", "b", None).await.unwrap();
    let got = etcd_api.kv().get("tls/bare", None).await.unwrap();
    assert_eq!(got.kvs[0].value, b"b");

    // No client certificate: the peers refuse the connection, and the error says why.
    let err = refused(&cluster.peer_urls, native_options().with_tls(pki.tls(None))).await;
    println!("[native-tls] without a certificate: {err}");
    assert!(
        matches!(&err, Error::Connect { reason, .. } if reason.contains("no client certificate")),
        "{err:?}"
    );
    // A certificate from a CA the peers do not trust: refused too.
    let rogue = pki.tls(None).with_identity(
        std::fs::read(&pki.rogue.cert).unwrap(),
        std::fs::read(&pki.rogue.key).unwrap(),
    );
    let err = refused(&cluster.peer_urls, native_options().with_tls(rogue)).await;
    println!("[native-tls] with an untrusted certificate: {err}");
    assert!(
        matches!(&err, Error::Connect { reason, .. } if reason.contains("did not sign")),
        "{err:?}"
    );
    // https:// without TLS options: verified against the system's roots, which do not know
    // the test CA.
    let err = refused(&cluster.peer_urls, native_options()).await;
    println!("[native-tls] without the CA: {err}");
    assert!(
        matches!(&err, Error::Connect { reason, .. } if reason.contains("UnknownIssuer")
            && !reason.contains("client certificate")),
        "{err:?}"
    );
    // Plaintext to the TLS peer listener gets no answer.
    let plain: Vec<String> = cluster
        .peer_urls
        .iter()
        .map(|u| u.replace("https://", "http://"))
        .collect();
    let err = refused(&plain, native_options()).await;
    assert!(matches!(&err, Error::Connect { .. }), "{err:?}");
    // Skipping verification cannot be expressed on this path.
    let skip = TlsOptions::new().with_insecure_skip_verify(true);
    let err = refused(&cluster.peer_urls, native_options().with_tls(skip)).await;
    assert!(matches!(&err, Error::Unimplemented(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_client_carries_the_tls_settings_to_https_peers() {
    if common::is_etcd() {
        println!("skipped: etcd has no CURP client service");
        return;
    }
    let pki = Pki::new();
    let Some(cluster) = TlsCluster::start(&pki).await else {
        return;
    };
    // The etcd API is plaintext here (http:// endpoints stay plain); the TLS settings given to
    // the client are used for the https:// peer URLs its member list gives.
    let with_tls = Client::connect(
        &cluster.client_urls,
        common::test_options().with_tls(pki.tls(Some(&pki.client))),
    )
    .await
    .unwrap();
    let native = NativeClient::from_client(&with_tls, native_options())
        .await
        .unwrap();
    native.put("from-client", "1", None).await.unwrap();
    let got = with_tls.kv().get("from-client", None).await.unwrap();
    assert_eq!(got.kvs[0].value, b"1");

    // Options given to the native client win over the client's: here a CA-only setting.
    let err = match NativeClient::from_client(&with_tls, native_options().with_tls(pki.tls(None)))
        .await
    {
        Err(e) => e,
        Ok(n) => n
            .put("x", "y", None)
            .await
            .expect_err("wrote without a certificate"),
    };
    assert!(
        matches!(&err, Error::Connect { reason, .. } if reason.contains("no client certificate")),
        "{err:?}"
    );

    // A client without TLS settings: the peers' certificates cannot be verified.
    let plain = Client::connect(&cluster.client_urls, common::test_options())
        .await
        .unwrap();
    let err = match NativeClient::from_client(&plain, native_options()).await {
        Err(e) => e,
        Ok(n) => n.put("x", "y", None).await.expect_err("wrote unverified"),
    };
    assert!(
        matches!(&err, Error::Connect { reason, .. } if reason.contains("UnknownIssuer")),
        "{err:?}"
    );
}
