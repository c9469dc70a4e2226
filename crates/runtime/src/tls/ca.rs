//! The cluster CA: made once (at bootstrap, or by `tessera dev`), it issues one certificate per
//! node naming the node's role, and server certificates for the S3 endpoint. Keys are ECDSA
//! P-256; the CA key is written only to a 0600 file.

use super::Role;
use crate::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Why a certificate could not be made or a CA not loaded.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The certificate library refused the parameters or the input.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A name is neither a DNS name nor an IP address.
    #[error("{0:?} is not a DNS name or an IP address")]
    BadName(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// When a certificate is valid: from `not_before` for `lifetime`.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// The first instant it is valid.
    pub not_before: SystemTime,
    /// How long it is valid.
    pub lifetime: Duration,
}

impl Validity {
    /// Valid from an hour ago (clocks of peers differ a little) for `days`.
    pub fn days_from_now(days: u64) -> Self {
        Self {
            not_before: SystemTime::now() - Duration::from_secs(3600),
            lifetime: Duration::from_secs(3600 + days * 86_400),
        }
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = self.not_before.into();
        params.not_after = (self.not_before + self.lifetime).into();
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: Secret<String>,
}

/// A certificate authority that can issue certificates.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: Secret<String>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new self-signed CA named `common_name`.
    pub fn generate(common_name: &str, validity: Validity) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = named(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity.apply(&mut params);
        let cert = params.self_signed(&key)?;
        let key_pem = Secret::new(key.serialize_pem());
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA in `cert_pem` with its key `key_pem`.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: Secret::new(key_pem.to_owned()),
        })
    }

    /// The CA certificate (PEM): what peers and clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PEM).
    pub fn key_pem(&self) -> &Secret<String> {
        &self.key_pem
    }

    /// A certificate for one node of `role`, named `node_name` (its subject's common name), for
    /// both ends of mutual TLS.
    pub fn issue_node(
        &self,
        role: Role,
        node_name: &str,
        validity: Validity,
    ) -> Result<IssuedCert, CaError> {
        self.issue_with_names(&[role.server_name().to_owned()], node_name, validity)
    }

    /// A server certificate for `names` (DNS names or IP addresses), e.g. the S3 endpoint's.
    pub fn issue_server(
        &self,
        names: &[String],
        common_name: &str,
        validity: Validity,
    ) -> Result<IssuedCert, CaError> {
        self.issue_with_names(names, common_name, validity)
    }

    /// A certificate with exactly `names` as its subject alternative names; tests use it to
    /// make certificates that name no role, or several.
    pub fn issue_with_names(
        &self,
        names: &[String],
        common_name: &str,
        validity: Validity,
    ) -> Result<IssuedCert, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(|_| CaError::BadName(name.clone()))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params.distinguished_name = named(common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity.apply(&mut params);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: Secret::new(key.serialize_pem()),
        })
    }
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Tessera");
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `NAME.pem` (0644) and `NAME.key` (0600, made fresh) into `dir`.
pub fn write_issued(dir: &Path, name: &str, issued: &IssuedCert) -> Result<(), CaError> {
    write_file(
        &dir.join(format!("{name}.pem")),
        issued.cert_pem.as_bytes(),
        0o644,
    )?;
    write_file(
        &dir.join(format!("{name}.key")),
        issued.key_pem.expose().as_bytes(),
        0o600,
    )
}

/// Writes `bytes` to `path` with `mode`, replacing it atomically (a reloading reader never sees
/// half a file).
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let err = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

impl ClusterCa {
    /// Writes the CA into `dir` as `ca.pem` and `ca.key` (0600).
    pub fn write(&self, dir: &Path) -> Result<(), CaError> {
        write_file(&dir.join("ca.pem"), self.cert_pem.as_bytes(), 0o644)?;
        write_file(&dir.join("ca.key"), self.key_pem.expose().as_bytes(), 0o600)
    }

    /// The CA written by [`ClusterCa::write`] in `dir`.
    pub fn read(dir: &Path) -> Result<Self, CaError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| CaError::Io { path, source })
        };
        Self::from_pem(&read("ca.pem")?, &read("ca.key")?)
    }
}
