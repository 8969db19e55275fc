//! TLS for the client connections: [`TlsOptions`] (CA bundle, client certificate, server name,
//! and etcdctl's `--insecure-skip-tls-verify`), turned into tonic's rustls configuration.
//!
//! Which endpoints use TLS (as etcd's clientv3): `https://` always; `http://` never; a bare
//! `host:port` when TLS options are given. Without a CA bundle the server is verified against the
//! system's trusted roots (the bundle `SSL_CERT_FILE` names, or the distribution's bundle).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};

/// Where Linux distributions and the BSDs keep the system's CA bundle (the first that exists
/// is used; `SSL_CERT_FILE` wins over all of them).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
];

/// TLS settings for the client's connections (etcdctl's `--cacert`, `--cert`, `--key`,
/// `--insecure-skip-tls-verify`); see [`ConnectOptions::with_tls`](crate::ConnectOptions::with_tls).
///
/// `Debug` shows which settings are present, never the key.
///
/// ```no_run
/// use std::path::Path;
/// use xline_client::{Client, ConnectOptions, TlsOptions};
///
/// # async fn run() -> xline_client::Result<()> {
/// let tls = TlsOptions::from_files(
///     Some(Path::new("ca.pem")),
///     Some(Path::new("client.pem")),
///     Some(Path::new("client-key.pem")),
/// )?;
/// let client =
///     Client::connect(["https://127.0.0.1:2379"], ConnectOptions::new().with_tls(tls)).await?;
/// client.kv().put("foo", "bar", None).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
    insecure_skip_verify: bool,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem_bytes", &self.ca_pem.as_ref().map(Vec::len))
            .field("client_identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// Reads a PEM file named by an option (`what`), with the path in the error.
fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Tls(format!("read {what} {}: {e}", path.display())))
}

impl TlsOptions {
    /// TLS verifying the server against the system's trusted roots, without a client
    /// certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificates of this PEM bundle (instead of the system's roots).
    #[must_use]
    pub fn with_ca_pem(mut self, ca_pem: Vec<u8>) -> Self {
        self.ca_pem = Some(ca_pem);
        self
    }

    /// Presents this client certificate (PEM, chain allowed) with its private key (PEM). With
    /// `--client-cert-auth` on the server, the certificate's common name is the auth user.
    #[must_use]
    pub fn with_identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.identity = Some((cert_pem, key_pem));
        self
    }

    /// The server name the certificate must be valid for (default: each endpoint's host).
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Accepts any server certificate, as etcdctl's `--insecure-skip-tls-verify`: the chain and
    /// the name are not checked (the CA bundle is then unused), while the handshake signatures
    /// still are, so the connection is encrypted to whoever holds the presented certificate's
    /// key. For tests and troubleshooting only.
    #[must_use]
    pub fn with_insecure_skip_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_verify = skip;
        self
    }

    /// Options from PEM files (etcdctl's `--cacert`, `--cert`, `--key`); a certificate needs its
    /// key and a key its certificate.
    pub fn from_files(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<Self> {
        let mut opts = Self::new();
        if let Some(ca) = ca {
            opts = opts.with_ca_pem(read_pem("CA file", ca)?);
        }
        match (cert, key) {
            (Some(cert), Some(key)) => {
                opts = opts.with_identity(
                    read_pem("certificate file", cert)?,
                    read_pem("key file", key)?,
                );
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::Tls(
                    "a client certificate needs its key file".to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::Tls(
                    "a client key needs its certificate file".to_owned(),
                ));
            }
        }
        opts.validate()?;
        Ok(opts)
    }

    /// Checks the PEM material: the CA bundle and the client certificate hold at least one
    /// certificate each, and the key file a private key.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(ca) = &self.ca_pem {
            certificates("CA bundle", ca)?;
        }
        if let Some((cert, key)) = &self.identity {
            certificates("client certificate", cert)?;
            PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| Error::Tls(format!("client key: no private key in PEM: {e}")))?;
        }
        Ok(())
    }

    /// Whether a client certificate is presented.
    pub(crate) fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// tonic's configuration without the roots: the server name and the client certificate.
    fn base_config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }

    /// tonic's configuration verifying servers against the CA bundle (or the system's roots),
    /// for transports that take a [`ClientTlsConfig`] only. Skipping verification cannot be
    /// expressed in it: [`Error::Unimplemented`] when asked for.
    pub(crate) fn client_config(&self) -> Result<ClientTlsConfig> {
        if self.insecure_skip_verify {
            return Err(Error::Unimplemented(
                "skipping TLS verification on the native CURP path (give the CA bundle)".to_owned(),
            ));
        }
        let roots = match &self.ca_pem {
            Some(ca) => ca.clone(),
            None => system_roots()?,
        };
        Ok(self
            .base_config()
            .ca_certificate(Certificate::from_pem(roots)))
    }

    /// Configures TLS on `endpoint` (whose URI is `https://`).
    pub(crate) fn apply(&self, endpoint: Endpoint) -> Result<Endpoint> {
        let result = if self.insecure_skip_verify {
            endpoint
                .tls_config_with_verifier(self.base_config(), Arc::new(SkipChainVerifier::new()))
        } else {
            endpoint.tls_config(self.client_config()?)
        };
        result.map_err(|e| Error::Tls(error_chain(&e)))
    }
}

/// The certificates of a PEM bundle; at least one.
fn certificates(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{what}: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{what}: no certificate in PEM")));
    }
    Ok(certs)
}

/// The system's CA bundle (PEM).
fn system_roots() -> Result<Vec<u8>> {
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        return read_pem("SSL_CERT_FILE", Path::new(&path));
    }
    SYSTEM_CA_BUNDLES
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or_else(|| {
            Error::Tls(
                "no CA bundle given and no system CA bundle found (set SSL_CERT_FILE)".to_owned(),
            )
        })
}

/// An error with its sources, `: `-separated (a source already quoted is not repeated).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out = format!("{out}: {msg}");
        }
        source = s.source();
    }
    out
}

/// `--insecure-skip-tls-verify`: any certificate chain and name are accepted, but the
/// handshake signatures are verified with the crypto provider's algorithms (so the peer must
/// hold the key of the certificate it presents).
#[derive(Debug)]
struct SkipChainVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl SkipChainVerifier {
    fn new() -> Self {
        let algorithms = CryptoProvider::get_default().map_or_else(
            || crypto::ring::default_provider().signature_verification_algorithms,
            |p| p.signature_verification_algorithms,
        );
        Self { algorithms }
    }
}

impl ServerCertVerifier for SkipChainVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let opts = TlsOptions::new().with_identity(b"CERT".to_vec(), b"SECRET-KEY".to_vec());
        let dbg = format!("{opts:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
        assert!(dbg.contains("client_identity: true"), "{dbg}");
    }

    #[test]
    fn bad_pem_is_a_tls_error() {
        let err = TlsOptions::new()
            .with_ca_pem(b"not a pem".to_vec())
            .validate()
            .unwrap_err();
        assert!(
            matches!(&err, Error::Tls(m) if m.contains("no certificate")),
            "{err:?}"
        );
    }

    #[test]
    fn certificate_and_key_go_together() {
        let p = Path::new("/nonexistent");
        assert!(matches!(
            TlsOptions::from_files(None, Some(p), None),
            Err(Error::Tls(_))
        ));
        assert!(matches!(
            TlsOptions::from_files(None, None, Some(p)),
            Err(Error::Tls(_))
        ));
        let err = TlsOptions::from_files(Some(p), None, None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent"), "{err}");
    }
}
