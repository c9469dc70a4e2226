//! Cluster identities for mutual TLS between nodes. Every node certificate is issued by the
//! cluster CA and names exactly one [`Role`] as a DNS subject alternative name
//! (`meta.tessera.internal`, …). A server learns its peer's role from the verified client
//! certificate; a client checks that the server it reached holds the role it meant to reach
//! (the role's name is the TLS server name), so a data node's certificate can neither pose as a
//! meta node nor be accepted where only meta nodes may call.
//!
//! Invariant: a certificate that names no role, or more than one (a wildcard), has no role and
//! is refused everywhere.

mod ca;
mod reload;

pub use ca::{CaError, ClusterCa, IssuedCert, Validity, write_issued};
pub use reload::{ReloadError, ReloadingCert};

use crate::Secret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The suffix of every role's certificate name.
pub const ROLE_DOMAIN: &str = "tessera.internal";

/// What a process is to the cluster; each service accepts only the roles that need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A meta node (Raft voter, key service).
    Meta,
    /// A data node (shard store).
    Data,
    /// An S3 gateway.
    Gateway,
    /// The repair daemon.
    Repair,
    /// An operator's tool (`tessera admin`, `tessera bench`).
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Meta,
        Role::Data,
        Role::Gateway,
        Role::Repair,
        Role::Admin,
    ];

    /// The role's short name, as `tessera admin ca issue --role` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Meta => "meta",
            Role::Data => "data",
            Role::Gateway => "gateway",
            Role::Repair => "repair",
            Role::Admin => "admin",
        }
    }

    /// The DNS name a certificate of this role carries, and the TLS server name a client
    /// expects when it calls a process of this role.
    pub fn server_name(self) -> &'static str {
        match self {
            Role::Meta => "meta.tessera.internal",
            Role::Data => "data.tessera.internal",
            Role::Gateway => "gateway.tessera.internal",
            Role::Repair => "repair.tessera.internal",
            Role::Admin => "admin.tessera.internal",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| TlsError::UnknownRole(s.to_owned()))
    }
}

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{path} holds no {what} in PEM form")]
    NoPem {
        /// The file.
        path: PathBuf,
        /// Certificate or private key.
        what: &'static str,
    },
    /// The node certificate names no role or several.
    #[error("{path}: {reason}")]
    Role {
        /// The certificate file.
        path: PathBuf,
        /// Why no single role was found.
        reason: PeerRoleError,
    },
    /// No TLS files at all.
    #[error(
        "mutual TLS between nodes is required: give the cluster CA, this node's certificate and \
         its key (--tls-ca, --tls-cert, --tls-key or the [tls] section; `tessera admin ca` makes them)"
    )]
    Missing,
    /// The certificate names another role than the process runs as.
    #[error("{path} is a {found} certificate; this process runs as {expected}")]
    WrongRole {
        /// The certificate file.
        path: PathBuf,
        /// The role the certificate names.
        found: Role,
        /// The role the process runs as.
        expected: Role,
    },
    /// A role name that is not one.
    #[error("unknown role {0:?} (meta, data, gateway, repair or admin)")]
    UnknownRole(String),
    /// Only some of the three TLS files were given.
    #[error("mutual TLS needs all three of the CA, certificate and key files; missing: {0}")]
    Incomplete(&'static str),
}

/// Why a certificate yields no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRoleError {
    /// The bytes are not a certificate.
    #[error("not a valid certificate")]
    Malformed,
    /// No role's name is in the certificate.
    #[error("the certificate names no Tessera role (a DNS name <role>.{ROLE_DOMAIN})")]
    NoRole,
    /// More than one role's name matches (e.g. a wildcard).
    #[error("the certificate names several roles ({0} and {1}); one certificate, one role")]
    SeveralRoles(Role, Role),
}

/// The one role `cert` (DER) names; the chain is not checked here (the TLS handshake did).
pub fn role_of_cert(cert: &CertificateDer<'_>) -> Result<Role, PeerRoleError> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|_| PeerRoleError::Malformed)?;
    let mut found: Option<Role> = None;
    for role in Role::ALL {
        let name =
            ServerName::try_from(role.server_name()).map_err(|_| PeerRoleError::Malformed)?;
        if parsed.verify_is_valid_for_subject_name(&name).is_ok() {
            if let Some(first) = found {
                return Err(PeerRoleError::SeveralRoles(first, role));
            }
            found = Some(role);
        }
    }
    found.ok_or(PeerRoleError::NoRole)
}

/// The `[tls]` section of every role's config file: the three files of mutual TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA certificate.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// This node's certificate.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// This node's private key.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// The files, `None` when none is set, an error when only some are.
    pub fn paths(&self) -> Result<Option<TlsPaths>, TlsError> {
        TlsPaths::from_parts(self.ca.clone(), self.cert.clone(), self.key.clone())
    }

    /// The files, required: a process of the cluster refuses to start without mutual TLS.
    pub fn required(&self) -> Result<TlsPaths, TlsError> {
        self.paths()?.ok_or(TlsError::Missing)
    }

    /// This section with each of `ca`, `cert`, `key` replaced when given (flags and
    /// `TESSERA_TLS_*` override the file).
    pub fn overridden(
        mut self,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Self {
        self.ca = ca.or(self.ca);
        self.cert = cert.or(self.cert);
        self.key = key.or(self.key);
        self
    }
}

/// Where a node's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The cluster CA certificate (PEM); peers must present a certificate it issued.
    pub ca: PathBuf,
    /// This node's certificate (PEM), issued by the cluster CA.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

impl TlsPaths {
    /// The three files, or `None` when none is given; an error when only some are.
    pub fn from_parts(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<Self>, TlsError> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(Self { ca, cert, key })),
            (ca, cert, _) => Err(TlsError::Incomplete(if ca.is_none() {
                "CA file"
            } else if cert.is_none() {
                "certificate file"
            } else {
                "key file"
            })),
        }
    }

    /// The files of `name` in a folder laid out by [`write_issued`]: `ca.pem`, `NAME.pem`,
    /// `NAME.key`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }
}

/// A node's verified TLS material: the cluster CA, its own certificate chain and key, its role.
#[derive(Clone)]
pub struct NodeIdentity {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Secret<Vec<u8>>,
    role: Role,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Reads and checks the three files: each holds what it should, and the certificate names
    /// exactly one role.
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let ca_pem = read(&paths.ca)?;
        let cert_pem = read(&paths.cert)?;
        let key_pem = Secret::new(read(&paths.key)?);
        first_cert(&ca_pem, &paths.ca)?;
        let leaf = first_cert(&cert_pem, &paths.cert)?;
        PrivateKeyDer::from_pem_slice(key_pem.expose()).map_err(|_| TlsError::NoPem {
            path: paths.key.clone(),
            what: "private key",
        })?;
        let role = role_of_cert(&leaf).map_err(|reason| TlsError::Role {
            path: paths.cert.clone(),
            reason,
        })?;
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
            role,
        })
    }

    /// [`NodeIdentity::load`], refusing a certificate of another role than `expected`.
    pub fn load_as(paths: &TlsPaths, expected: Role) -> Result<Self, TlsError> {
        let identity = Self::load(paths)?;
        if identity.role != expected {
            return Err(TlsError::WrongRole {
                path: paths.cert.clone(),
                found: identity.role,
                expected,
            });
        }
        Ok(identity)
    }

    /// The role this node's certificate names.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// This node's certificate chain (PEM).
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// This node's private key (PEM).
    pub fn key_pem(&self) -> &Secret<Vec<u8>> {
        &self.key_pem
    }
}

fn first_cert(pem: &[u8], path: &Path) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| TlsError::NoPem {
            path: path.to_owned(),
            what: "certificate",
        })
}

#[cfg(test)]
mod tests;
