//! Test certificates made with rcgen: a CA and leaf certificates for `localhost` and
//! 127.0.0.1, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its key (PEM files).
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn leaf_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
}

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

/// Writes a self-signed CA named `cn` to `<name>.pem`; returns its issuer and path.
pub fn new_ca(dir: &Path, name: &str, cn: &str) -> (Issuer<'static, KeyPair>, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(cn).self_signed(&key).unwrap();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, cert.pem()).unwrap();
    (Issuer::new(ca_params(cn), key), path)
}

/// Issues a certificate for `cn` into `<name>.pem` and `<name>-key.pem`.
pub fn issue(dir: &Path, name: &str, cn: &str, issuer: &Issuer<'_, KeyPair>) -> CertFiles {
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
