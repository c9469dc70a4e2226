//! A server certificate read from two files and read again when either changes, so an operator
//! (or cert-manager) can replace the S3 endpoint's certificate without a restart. A change that
//! does not load (half-written files, a key that does not match) keeps the previous
//! certificate in use and is reported; new connections get the new certificate, open ones
//! keep theirs.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// Why a certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} holds no certificate in PEM form")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("{0} holds no private key in PEM form")]
    NoKey(PathBuf),
    /// The key is unusable or does not match the certificate.
    #[error("{path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: rustls::Error,
    },
}

/// The files' identity: a replaced or rewritten file changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    cert: Option<(SystemTime, u64, u64)>,
    key: Option<(SystemTime, u64, u64)>,
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamp: Stamp,
}

/// A certificate resolver for rustls whose certificate follows its files.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Current>,
}

impl ReloadingCert {
    /// Loads the certificate chain at `cert_path` and the key at `key_path` (both PEM).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, ReloadError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let stamp = Stamp {
            cert: stamp_of(cert_path),
            key: stamp_of(key_path),
        };
        let key = load_pair(cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: RwLock::new(Current { key, stamp }),
        })
    }

    /// Loads the files again if either changed since the last load: `Ok(true)` when a new
    /// certificate is now served, `Ok(false)` when nothing changed; on an error the previous
    /// certificate stays in use (and the same change is tried again next time).
    pub fn reload_if_changed(&self) -> Result<bool, ReloadError> {
        let stamp = Stamp {
            cert: stamp_of(&self.cert_path),
            key: stamp_of(&self.key_path),
        };
        if self.read().stamp == stamp {
            return Ok(false);
        }
        let key = load_pair(&self.cert_path, &self.key_path, &self.provider)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = Current { key, stamp };
        Ok(true)
    }

    /// The certificate chain served now (DER), for logs and tests.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.read().key.cert.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A rustls server configuration serving this certificate, offering HTTP/1.1 only by ALPN:
    /// S3 speaks HTTP/1.1 over TLS, and the gateway's connection limits, idle and slow-client
    /// cut-offs and `Expect: 100-continue` handling are built for one request at a time per
    /// connection. A client that offers h2 and http/1.1 (as the AWS SDKs do) gets HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read().key.clone())
    }
}

fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, ReloadError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ReloadError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(ReloadError::NoCertificate(cert_path.to_owned()));
    }
    let key_pem = zeroize::Zeroizing::new(read(key_path)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| ReloadError::NoKey(key_path.to_owned()))?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|source| ReloadError::Key {
            path: key_path.to_owned(),
            source,
        })?;
    Ok(Arc::new(certified))
}
