//! The dev cluster's TLS material, made on first start and kept in its folder: a cluster CA
//! (`tls/ca.pem`, `tls/ca.key`) that issues one certificate per process naming its role
//! (`tls/<process>.pem`, `.key`) and one for the operator (`tls/admin.*`), and a separate local
//! CA for the S3 endpoint (`ca.pem`, the file S3 clients trust; its key `tls/https-ca.key`)
//! that issues the gateway's HTTPS certificate for `localhost` and `127.0.0.1` (`tls/s3.*`).
//! Keeping the two CAs apart means trusting the S3 endpoint never lets a client pose as a node.

use crate::layout::{NodeRole, NodeSpec};
use std::path::{Path, PathBuf};
use tessera_runtime::tls::{CaError, ClusterCa, Role, TlsPaths, Validity, write_issued};

/// Days the dev CAs are valid.
const CA_DAYS: u64 = 3650;
/// Days a dev certificate is valid (made again when missing, so a long-lived dev folder can
/// have its certificates renewed by deleting them).
const CERT_DAYS: u64 = 825;

/// The folder of the cluster's TLS material.
pub fn tls_dir(root: &Path) -> PathBuf {
    root.join("tls")
}

/// The local CA S3 clients trust for the HTTPS endpoint (`AWS_CA_BUNDLE`).
pub fn https_ca_path(root: &Path) -> PathBuf {
    root.join("ca.pem")
}

/// The HTTPS certificate and key of the S3 endpoint.
pub fn https_cert_paths(root: &Path) -> (PathBuf, PathBuf) {
    let dir = tls_dir(root);
    (dir.join("s3.pem"), dir.join("s3.key"))
}

/// The operator's (`admin` role) TLS files.
pub fn admin_paths(root: &Path) -> TlsPaths {
    TlsPaths::in_dir(&tls_dir(root), "admin")
}

/// A process's TLS files.
pub fn node_paths(root: &Path, spec: &NodeSpec) -> TlsPaths {
    TlsPaths::in_dir(&tls_dir(root), &spec.name())
}

/// The role a process's certificate names.
pub fn role_of(role: NodeRole) -> Role {
    match role {
        NodeRole::Meta => Role::Meta,
        NodeRole::Data => Role::Data,
        NodeRole::Gateway => Role::Gateway,
        NodeRole::Repair => Role::Repair,
    }
}

/// Makes whatever is missing: both CAs, the operator's certificate, the S3 endpoint's, and
/// one for each of `nodes`.
pub fn ensure(root: &Path, nodes: &[NodeSpec]) -> Result<(), CaError> {
    let dir = tls_dir(root);
    std::fs::create_dir_all(&dir).map_err(|source| CaError::Io {
        path: dir.clone(),
        source,
    })?;
    let cluster_ca = if dir.join("ca.key").exists() {
        ClusterCa::read(&dir)?
    } else {
        let ca = ClusterCa::generate("Tessera dev cluster CA", Validity::days_from_now(CA_DAYS))?;
        ca.write(&dir)?;
        ca
    };
    let admin = admin_paths(root);
    if !admin.cert.exists() || !admin.key.exists() {
        let issued =
            cluster_ca.issue_node(Role::Admin, "admin", Validity::days_from_now(CERT_DAYS))?;
        write_issued(&dir, "admin", &issued)?;
    }
    for spec in nodes {
        ensure_node(&cluster_ca, root, spec)?;
    }
    let (s3_cert, s3_key) = https_cert_paths(root);
    if !s3_cert.exists() || !s3_key.exists() || !https_ca_path(root).exists() {
        let https_ca = https_ca(root)?;
        let issued = https_ca.issue_server(
            &["localhost".to_owned(), "127.0.0.1".to_owned()],
            "localhost",
            Validity::days_from_now(CERT_DAYS),
        )?;
        write_issued(&dir, "s3", &issued)?;
    }
    Ok(())
}

/// Issues `spec`'s certificate from the cluster CA in `root` unless it has one.
pub fn ensure_node_cert(root: &Path, spec: &NodeSpec) -> Result<(), CaError> {
    let paths = node_paths(root, spec);
    if paths.cert.exists() && paths.key.exists() {
        return Ok(());
    }
    ensure(root, std::slice::from_ref(spec))
}

fn ensure_node(ca: &ClusterCa, root: &Path, spec: &NodeSpec) -> Result<(), CaError> {
    let paths = node_paths(root, spec);
    if paths.cert.exists() && paths.key.exists() {
        return Ok(());
    }
    let issued = ca.issue_node(
        role_of(spec.role),
        &spec.name(),
        Validity::days_from_now(CERT_DAYS),
    )?;
    write_issued(&tls_dir(root), &spec.name(), &issued)
}

/// The local HTTPS CA, made (and its certificate written to `ca.pem`) if missing.
fn https_ca(root: &Path) -> Result<ClusterCa, CaError> {
    let cert = https_ca_path(root);
    let key = tls_dir(root).join("https-ca.key");
    if cert.exists() && key.exists() {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CaError::Io {
                path: path.to_owned(),
                source,
            })
        };
        return ClusterCa::from_pem(&read(&cert)?, &read(&key)?);
    }
    let ca = ClusterCa::generate(
        "Tessera dev S3 endpoint CA",
        Validity::days_from_now(CA_DAYS),
    )?;
    // The key first: a `ca.pem` without its key would be made again, and every client that
    // trusts the old one would stop trusting the endpoint.
    crate::layout::write_private(&key, ca.key_pem().expose().as_bytes())
        .map_err(|source| CaError::Io { path: key, source })?;
    std::fs::write(&cert, ca.cert_pem()).map_err(|source| CaError::Io { path: cert, source })?;
    Ok(ca)
}
