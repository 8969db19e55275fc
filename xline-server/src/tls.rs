//! TLS on the client and peer listeners, and for the member's own outgoing connections
//! (rustls with the ring provider), with etcd's flags.
//!
//! - `--cert-file` / `--key-file` serve `https://` client URLs; `--trusted-ca-file` or
//!   `--client-cert-auth` make clients present a certificate signed by that CA (etcd requires
//!   and verifies client certificates as soon as a trusted CA is given). The `--peer-*` flags do
//!   the same for `https://` peer URLs.
//! - Outgoing connections to `https://` URLs (peer links, the join and membership checks,
//!   requests forwarded to the leader's client URL) trust the matching CA and present the
//!   member's own certificate of that side.
//! - With `--client-cert-auth` and auth enabled, a request without a token is made by the user
//!   named by the common name of the client's verified certificate (etcd's `AuthInfoFromTLS`):
//!   [`CertUserLayer`] records it in a metadata entry that [`cert_user`] reads; a client cannot
//!   set that entry itself.
//!
//! Listeners hand out [`Conn`]s: plain TCP or a server-side TLS stream whose handshake already
//! finished (handshakes run on their own tasks, so a slow client delays nobody).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore};
use tonic::codegen::{Service, http};
use tonic::metadata::MetadataMap;
use tonic::transport::server::Connected;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::{ListenAddr, ServerConfig};
use crate::error::ServerError;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Metadata entry carrying the verified client certificate's common name (binary, so any
/// UTF-8 name travels). Set only by [`CertUserLayer`].
const CERT_USER_KEY: &str = "xline-internal-cert-user-bin";

/// One side's TLS files: the member's certificate and key, and the CA it trusts.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles<'a> {
    /// PEM certificate chain (`--cert-file`, `--peer-cert-file`).
    pub cert: Option<&'a Path>,
    /// PEM private key (`--key-file`, `--peer-key-file`).
    pub key: Option<&'a Path>,
    /// PEM CA bundle (`--trusted-ca-file`, `--peer-trusted-ca-file`).
    pub ca: Option<&'a Path>,
    /// `--client-cert-auth`, `--peer-client-cert-auth`.
    pub client_cert_auth: bool,
}

/// TLS for one side (clients or peers), loaded once at start.
#[derive(Debug, Clone, Default)]
pub struct SideTls {
    /// Serves `https://` listeners of this side (`None` without a certificate).
    pub server: Option<Arc<rustls::ServerConfig>>,
    /// Dials `https://` URLs of this side.
    pub dial: Option<ClientTlsConfig>,
    /// Whether the listener requires verified client certificates.
    pub verify_clients: bool,
}

impl SideTls {
    /// Loads `files`; `what` names the side in errors (`client`, `peer`).
    pub fn load(files: &TlsFiles<'_>, what: &str) -> Result<Self, ServerError> {
        let verify_clients = files.client_cert_auth || files.ca.is_some();
        let server = match (files.cert, files.key) {
            (Some(cert), Some(key)) => Some(Arc::new(server_config(
                cert,
                key,
                files.ca,
                verify_clients,
            )?)),
            (None, None) => None,
            _ => {
                return Err(ServerError::Config(format!(
                    "{what} TLS needs both a certificate and a key file"
                )));
            }
        };
        if files.client_cert_auth && files.ca.is_none() {
            return Err(ServerError::Config(format!(
                "{what} certificate authentication needs a trusted CA file"
            )));
        }
        let mut dial = ClientTlsConfig::new();
        if let Some(ca) = files.ca {
            dial = dial.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (files.cert, files.key) {
            dial = dial.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Self {
            server,
            dial: (files.ca.is_some() || files.cert.is_some()).then_some(dial),
            verify_clients,
        })
    }

    /// An endpoint for `url`, with this side's TLS when the URL is `https://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, ServerError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ServerError::Config(format!("{url}: {e}")))?;
        if !url.starts_with("https://") {
            return Ok(endpoint);
        }
        endpoint
            .tls_config(self.dial.clone().unwrap_or_default())
            .map_err(|e| ServerError::Config(format!("{url}: {e}")))
    }
}

/// The member's TLS settings, both sides.
#[derive(Debug, Clone, Default)]
pub struct TlsContext {
    /// Client URLs (`--cert-file`, ...).
    pub client: SideTls,
    /// Peer URLs (`--peer-cert-file`, ...).
    pub peer: SideTls,
}

impl TlsContext {
    /// Loads the files the configuration names and checks that every `https://` listener
    /// has a certificate.
    pub fn load(config: &ServerConfig) -> Result<Self, ServerError> {
        let client = SideTls::load(
            &TlsFiles {
                cert: config.cert_file.as_deref(),
                key: config.key_file.as_deref(),
                ca: config.trusted_ca_file.as_deref(),
                client_cert_auth: config.client_cert_auth,
            },
            "client",
        )?;
        let peer = SideTls::load(
            &TlsFiles {
                cert: config.peer_cert_file.as_deref(),
                key: config.peer_key_file.as_deref(),
                ca: config.peer_trusted_ca_file.as_deref(),
                client_cert_auth: config.peer_client_cert_auth,
            },
            "peer",
        )?;
        let missing = |urls: &[String], side: &SideTls, flags: &str, kind: &str| match urls
            .iter()
            .find(|u| u.starts_with("https://"))
        {
            Some(url) if side.server.is_none() => Err(ServerError::Config(format!(
                "TLS key/cert ({flags}) must be provided for {kind} url {url} with HTTPS scheme"
            ))),
            _ => Ok(()),
        };
        missing(
            &config.listen_client_urls,
            &client,
            "--cert-file, --key-file",
            "client",
        )?;
        missing(
            &config.listen_peer_urls,
            &peer,
            "--peer-cert-file, --peer-key-file",
            "peer",
        )?;
        Ok(Self { client, peer })
    }
}

/// Reads a file for TLS, naming it in the error.
fn read(path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
}

/// The ring crypto provider.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration speaking HTTP/2, requiring client certificates signed by
/// `ca` when `verify_clients`.
fn server_config(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
    verify_clients: bool,
) -> Result<rustls::ServerConfig, ServerError> {
    let tls_err = |path: &Path, e: &dyn std::fmt::Display| {
        ServerError::Config(format!("{}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(cert, &e))?;
    if chain.is_empty() {
        return Err(tls_err(cert, &"no certificate found"));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| tls_err(key, &e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Config(e.to_string()))?;
    let builder = match ca.filter(|_| verify_clients) {
        Some(ca) => {
            let roots = root_store(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| tls_err(ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key_der)
        .map_err(|e| tls_err(cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The certificates of a PEM CA bundle.
fn root_store(ca: &Path) -> Result<RootCertStore, ServerError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
        let cert = cert.map_err(|e| ServerError::Config(format!("{}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| ServerError::Config(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(ServerError::Config(format!(
            "{}: no CA certificate found",
            ca.display()
        )));
    }
    Ok(roots)
}

// ----- listeners -----

/// An accepted connection: plain TCP, or TLS after a completed handshake.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP (`http://` URLs).
    Plain(TcpStream),
    /// TLS (`https://` URLs).
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// What the gRPC services can learn about a connection (in request extensions).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The client's verified certificate chain, leaf first (TLS with client verification).
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Conn::Plain(s) => ConnInfo {
                remote_addr: s.peer_addr().ok(),
                peer_certs: None,
            },
            Conn::Tls(s) => {
                let (tcp, session) = s.get_ref();
                ConnInfo {
                    remote_addr: tcp.peer_addr().ok(),
                    peer_certs: session
                        .peer_certificates()
                        .map(|certs| Arc::new(certs.to_vec())),
                }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Binds every address. `localhost` stands for 127.0.0.1 and ::1; on a machine without IPv6
/// the IPv6 half is skipped with a warning instead of failing.
pub async fn bind_all(addrs: &[ListenAddr]) -> Result<Vec<(TcpListener, ListenAddr)>, ServerError> {
    let mut listeners = Vec::new();
    for addr in addrs {
        match TcpListener::bind(addr.addr).await {
            Ok(l) => listeners.push((l, addr.clone())),
            Err(e) if addr.addr.is_ipv6() && addrs.len() > 1 => {
                tracing::warn!(address = %addr.addr, error = %e, "cannot listen on IPv6 address; skipping");
            }
            Err(e) => return Err(ServerError::Config(format!("listen on {}: {e}", addr.addr))),
        }
    }
    Ok(listeners)
}

/// The connections accepted on `listeners`, TLS handshakes done for `https://` ones with
/// `server` (which [`TlsContext::load`] guarantees when there is any). Accepting stops when
/// the stream is dropped.
pub fn incoming(
    listeners: Vec<(TcpListener, ListenAddr)>,
    server: Option<Arc<rustls::ServerConfig>>,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    let acceptor = server.map(TlsAcceptor::from);
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Conn>>(64);
    for (listener, addr) in listeners {
        let tls = if addr.url.starts_with("https://") {
            acceptor.clone()
        } else {
            None
        };
        tokio::spawn(accept_loop(listener, tls, tx.clone()));
    }
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Accepts on `listener` until `tx` closes.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    tx: tokio::sync::mpsc::Sender<io::Result<Conn>>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match &tls {
            None => {
                if tx.send(Ok(Conn::Plain(stream))).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let remote = stream.peer_addr().ok();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(Conn::Tls(Box::new(tls)))).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(?remote, error = %e, "rejected connection: TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::warn!(?remote, "rejected connection: TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
}

// ----- HTTP/1 next to gRPC on the client port -----

/// What serves an HTTP/1 connection found on a gRPC port ([`sniff_http1`]).
pub type Http1Handler =
    Arc<dyn Fn(Prefixed<Conn>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The client preface every HTTP/2 connection starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How many preface bytes tell HTTP/2 from HTTP/1 (no HTTP/1 method starts with `PRI `).
const H2_SNIFF_BYTES: usize = 4;

/// A connection whose first bytes were read already (to tell the protocol): reads give them
/// back first.
#[derive(Debug)]
pub struct Prefixed<C> {
    /// The bytes read ahead.
    prefix: Vec<u8>,
    /// How many of them were given back.
    pos: usize,
    /// The connection.
    inner: C,
}

impl<C: AsyncRead + Unpin> Prefixed<C> {
    /// Reads from `inner` until its first bytes say whether it speaks HTTP/2 (`true`); `None`
    /// when it closes or fails first.
    async fn sniff(mut inner: C) -> Option<(bool, Self)> {
        use tokio::io::AsyncReadExt;
        let mut prefix = Vec::with_capacity(H2_SNIFF_BYTES);
        let h2 = loop {
            let n = prefix.len();
            if prefix[..] != H2_PREFACE[..n] {
                break false;
            }
            if n >= H2_SNIFF_BYTES {
                break true;
            }
            let mut byte = [0u8; H2_SNIFF_BYTES];
            match inner.read(&mut byte[..H2_SNIFF_BYTES - n]).await {
                Ok(0) | Err(_) => return None,
                Ok(read) => prefix.extend_from_slice(&byte[..read]),
            }
        };
        Some((
            h2,
            Self {
                prefix,
                pos: 0,
                inner,
            },
        ))
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Prefixed<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Prefixed<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<C: Connected> Connected for Prefixed<C> {
    type ConnectInfo = C::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The HTTP/2 connections of `conns` (after TLS, if any); any other connection (HTTP/1, as
/// `curl http://host:2379/version` makes) goes to `http1`, as etcd's cmux does. Each
/// connection is sniffed on its own task, so a silent one delays nobody; one that says
/// nothing within the handshake timeout is dropped.
pub fn sniff_http1(
    conns: impl Stream<Item = io::Result<Conn>> + Send + 'static,
    http1: Http1Handler,
) -> impl Stream<Item = io::Result<Prefixed<Conn>>> + Send + 'static {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Prefixed<Conn>>>(64);
    tokio::spawn(async move {
        let mut conns = std::pin::pin!(conns);
        loop {
            let next = tokio::select! {
                next = conns.next() => next,
                () = tx.closed() => return,
            };
            let conn = match next {
                None => return,
                Some(Err(e)) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Some(Ok(conn)) => conn,
            };
            let tx = tx.clone();
            let http1 = Arc::clone(&http1);
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, Prefixed::sniff(conn)).await {
                    Ok(Some((true, conn))) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Some((false, conn))) => http1(conn).await,
                    Ok(None) | Err(_) => {}
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

// ----- the certificate's user -----

/// The user a request's verified client certificate names, as [`CertUserLayer`] recorded it
/// (only with `--client-cert-auth`).
pub fn cert_user(md: &MetadataMap) -> Option<String> {
    let value = md.get_bin(CERT_USER_KEY)?.to_bytes().ok()?;
    String::from_utf8(value.to_vec())
        .ok()
        .filter(|u| !u.is_empty())
}

/// Copies the certificate's user `from` carries (as [`CertUserLayer`] recorded it) into `to`,
/// for a request made in-process on the caller's behalf (Lock and Election).
pub fn copy_cert_user(from: &MetadataMap, to: &mut MetadataMap) {
    if let Some(value) = from.get_bin(CERT_USER_KEY) {
        to.insert_bin(CERT_USER_KEY, value.clone());
    }
}

/// Metadata entry in which a member that forwards a client's request to the leader's peer
/// listener asserts the user the client's certificate names (binary, like [`CERT_USER_KEY`]).
const FORWARDED_USER_KEY: &str = "xline-forwarded-user-bin";

/// Puts the caller's identity from `from` (a request this member received) onto `to` (the
/// request it forwards to the leader's peer listener): the auth token if there is one, which
/// the leader checks itself, or else the user the caller's certificate names, which the leader
/// takes on trust (see [`CertUserLayer::peer`] for why that is safe).
pub fn forward_identity(from: &MetadataMap, to: &mut MetadataMap) {
    crate::auth::AuthStore::copy_token(from, to);
    if crate::auth::AuthStore::token_of(from).is_none()
        && let Some(user) = cert_user(from)
    {
        to.insert_bin(
            FORWARDED_USER_KEY,
            tonic::metadata::BinaryMetadataValue::from_bytes(user.as_bytes()),
        );
    }
}

/// Where the caller's certificate user comes from on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserSource {
    /// A client listener: the connection's verified certificate, if certificates name users.
    Certificate {
        /// Whether certificates name users (`--client-cert-auth`).
        enabled: bool,
    },
    /// The peer listener: only what a forwarding member asserted.
    Forwarded,
}

/// Records the user a request is made by in every request's metadata (for [`cert_user`]), and
/// removes any such entry a client sent itself.
///
/// On a client listener ([`CertUserLayer::client`]) that is the common name of the
/// connection's verified client certificate (with `--client-cert-auth`), and an identity a
/// client asserts as forwarded is dropped. On the peer listener ([`CertUserLayer::peer`]) it is
/// the user a forwarding member asserted ([`forward_identity`]), never the connecting member's
/// own certificate name.
///
/// Trust rule: an asserted identity is believed only on the peer listener. Whoever can open a
/// request there is a member: with peer TLS and `--peer-client-cert-auth` it proved so with a
/// certificate of the peer CA; without them, the peer port is the trust boundary as it is for
/// etcd, since anything that reaches it can already send consensus messages (append entries,
/// votes) that no identity check could guard. A client listener never believes one.
#[derive(Debug, Clone, Copy)]
pub struct CertUserLayer {
    source: UserSource,
}

impl CertUserLayer {
    /// For a client listener; `enabled` is `--client-cert-auth`.
    pub fn client(enabled: bool) -> Self {
        Self {
            source: UserSource::Certificate { enabled },
        }
    }

    /// For the peer listener: forwarded identities are believed, certificates name nobody.
    pub fn peer() -> Self {
        Self {
            source: UserSource::Forwarded,
        }
    }
}

impl<S> tower_layer::Layer<S> for CertUserLayer {
    type Service = CertUser<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CertUser {
            inner,
            source: self.source,
        }
    }
}

/// The service [`CertUserLayer`] makes.
#[derive(Debug, Clone)]
pub struct CertUser<S> {
    /// The wrapped service.
    inner: S,
    /// Where the user comes from.
    source: UserSource,
}

impl<S, B> Service<http::Request<B>> for CertUser<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        req.headers_mut().remove(CERT_USER_KEY);
        let forwarded = req.headers_mut().remove(FORWARDED_USER_KEY);
        match self.source {
            UserSource::Certificate { enabled } => {
                let name = enabled
                    .then(|| req.extensions().get::<ConnInfo>())
                    .flatten()
                    .and_then(|info| info.peer_certs.as_ref()?.first().and_then(common_name));
                if let Some(name) = name {
                    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(name);
                    if let Ok(value) = http::HeaderValue::from_str(&encoded) {
                        req.headers_mut().insert(CERT_USER_KEY, value);
                    }
                }
            }
            UserSource::Forwarded => {
                if let Some(value) = forwarded {
                    req.headers_mut().insert(CERT_USER_KEY, value);
                }
            }
        }
        self.inner.call(req)
    }
}

/// The subject common name of a DER certificate (the first CN attribute), if any.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    //   serialNumber, signature, issuer, validity, subject, ... }, ... }
    let (_, cert_body, _) = der_read(cert.as_ref())?;
    let (_, mut tbs, _) = der_read(cert_body)?;
    let (tag, _, rest) = der_read(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    // serialNumber, signature, issuer, validity.
    for _ in 0..4 {
        tbs = der_read(tbs)?.2;
    }
    let (_, mut subject, _) = der_read(tbs)?;
    // Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue).
    while !subject.is_empty() {
        let (_, mut rdn, rest) = der_read(subject)?;
        subject = rest;
        while !rdn.is_empty() {
            let (_, atv, rest) = der_read(rdn)?;
            rdn = rest;
            let (oid_tag, oid, value) = der_read(atv)?;
            // id-at-commonName, 2.5.4.3.
            if oid_tag == 0x06 && oid == [0x55, 0x04, 0x03] {
                let (_, text, _) = der_read(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

/// One DER element of `input`: (tag, contents, the bytes after it).
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_of_generated_certificates() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "acme");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("alice"));

        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "acme");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), None);

        assert_eq!(
            common_name(&CertificateDer::from(vec![0x30, 0x05, 1])),
            None
        );
    }

    /// A service answering with the cert user its request carries.
    #[derive(Clone)]
    struct Echo;

    impl Service<http::Request<()>> for Echo {
        type Response = Option<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Option<String>, Self::Error>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            let md = MetadataMap::from_headers(req.headers().clone());
            std::future::ready(Ok(cert_user(&md)))
        }
    }

    /// Runs `req` through a client listener's layer (enabled or not) and returns the user the
    /// service saw.
    fn through_layer(enabled: bool, req: http::Request<()>) -> Option<String> {
        through(CertUserLayer::client(enabled), req)
    }

    /// Runs `req` through `layer` and returns the user the service saw.
    fn through(layer: CertUserLayer, req: http::Request<()>) -> Option<String> {
        use futures::FutureExt;
        use tower_layer::Layer;
        let mut svc = layer.layer(Echo);
        svc.call(req).now_or_never().unwrap().unwrap()
    }

    /// The headers a forwarding member puts on a request for a caller named `user`.
    fn forwarded_request(
        user: &str,
        certs: Option<Vec<CertificateDer<'static>>>,
    ) -> http::Request<()> {
        let mut from = MetadataMap::new();
        from.insert_bin(
            CERT_USER_KEY,
            tonic::metadata::MetadataValue::from_bytes(user.as_bytes()),
        );
        let mut to = MetadataMap::new();
        forward_identity(&from, &mut to);
        let mut req = http::Request::new(());
        *req.headers_mut() = to.into_headers();
        req.extensions_mut().insert(ConnInfo {
            remote_addr: None,
            peer_certs: certs.map(Arc::new),
        });
        req
    }

    #[test]
    fn forwarded_identity_is_believed_on_the_peer_listener_only() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "member");
        let member_cert = params.self_signed(&key).unwrap().der().clone();
        // Peer listener: the asserted user, not the forwarding member's certificate name.
        assert_eq!(
            through(
                CertUserLayer::peer(),
                forwarded_request("alice", Some(vec![member_cert.clone()]))
            )
            .as_deref(),
            Some("alice")
        );
        // A member's own request there (no assertion) is nobody's.
        let mut own = http::Request::new(());
        own.extensions_mut().insert(ConnInfo {
            remote_addr: None,
            peer_certs: Some(Arc::new(vec![member_cert.clone()])),
        });
        assert_eq!(through(CertUserLayer::peer(), own), None);
        // Client listener: a client asserting a forwarded user gets its own certificate's user
        // (or none), never the asserted one.
        assert_eq!(
            through_layer(true, forwarded_request("root", Some(vec![member_cert]))).as_deref(),
            Some("member")
        );
        assert_eq!(through_layer(true, forwarded_request("root", None)), None);
        assert_eq!(through_layer(false, forwarded_request("root", None)), None);
        // A token travels as a token, without an asserted user.
        let mut from = MetadataMap::new();
        from.insert("token", "tok".parse().unwrap());
        from.insert_bin(
            CERT_USER_KEY,
            tonic::metadata::MetadataValue::from_bytes(b"alice"),
        );
        let mut to = MetadataMap::new();
        forward_identity(&from, &mut to);
        assert_eq!(
            crate::auth::AuthStore::token_of(&to).as_deref(),
            Some("tok")
        );
        assert!(to.get_bin(FORWARDED_USER_KEY).is_none());
    }

    #[test]
    fn layer_sets_the_certificate_user_and_drops_forged_ones() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "carol");
        let cert = params.self_signed(&key).unwrap().der().clone();
        let request = |certs: Option<Vec<CertificateDer<'static>>>, forged: bool| {
            let mut req = http::Request::new(());
            req.extensions_mut().insert(ConnInfo {
                remote_addr: None,
                peer_certs: certs.map(Arc::new),
            });
            if forged {
                req.headers_mut().insert(
                    CERT_USER_KEY,
                    http::HeaderValue::from_static("cm9vdA"), // "root"
                );
            }
            req
        };
        assert_eq!(
            through_layer(true, request(Some(vec![cert.clone()]), false)).as_deref(),
            Some("carol")
        );
        assert_eq!(
            through_layer(true, request(Some(vec![cert.clone()]), true)).as_deref(),
            Some("carol")
        );
        assert_eq!(through_layer(true, request(None, true)), None);
        assert_eq!(through_layer(false, request(Some(vec![cert]), true)), None);
        // Without the layer, the forged entry would have named root.
        let md = MetadataMap::from_headers(request(None, true).headers().clone());
        assert_eq!(cert_user(&md).as_deref(), Some("root"));
    }

    #[tokio::test]
    async fn sniffing_tells_http2_from_http1_and_gives_the_bytes_back() {
        use tokio::io::AsyncReadExt;
        for (input, h2) in [
            (&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nrest"[..], true),
            (&b"GET /version HTTP/1.1\r\n\r\n"[..], false),
            (&b"PUT /x HTTP/1.1\r\n\r\n"[..], false),
            (&b"PRIX"[..], false),
        ] {
            // One byte at a time, as a slow client sends.
            let (mut client, server) = tokio::io::duplex(1);
            let writer = tokio::spawn({
                let input = input.to_vec();
                async move {
                    use tokio::io::AsyncWriteExt;
                    for b in input {
                        client.write_all(&[b]).await.unwrap();
                    }
                }
            });
            let (is_h2, mut conn) = Prefixed::sniff(server).await.unwrap();
            assert_eq!(is_h2, h2, "{input:?}");
            let mut all = Vec::new();
            conn.read_to_end(&mut all).await.unwrap();
            writer.await.unwrap();
            assert_eq!(all, input);
        }
        let (client, server) = tokio::io::duplex(8);
        drop(client);
        assert!(Prefixed::sniff(server).await.is_none());
    }

    #[test]
    fn cert_user_reads_only_what_the_layer_wrote() {
        let mut md = MetadataMap::new();
        assert_eq!(cert_user(&md), None);
        md.insert_bin(
            CERT_USER_KEY,
            tonic::metadata::MetadataValue::from_bytes(b"bob"),
        );
        assert_eq!(cert_user(&md).as_deref(), Some("bob"));
    }
}
