//! Mutual TLS for every internal gRPC connection. A process holds one [`ClusterTls`] (the
//! cluster CA, its certificate and key); its servers require a client certificate from the
//! cluster CA, and [`RoleGuardLayer`] lets a request through only when the client's role may
//! call that method ([`allowed`]); its clients check that the server holds the role they meant
//! to reach (the role's name is the TLS server name).
//!
//! Invariant: with TLS on, no request reaches a service without a verified certificate whose
//! role the method's policy names; everything not listed is refused.

use std::sync::Arc;
use std::task::{Context, Poll};
use tessera_runtime::tls::{NodeIdentity, Role, TlsError, TlsPaths, role_of_cert};
use tonic::codegen::Service;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Code, Status};
use tracing::warn;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One process's cluster identity, cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    identity: Arc<NodeIdentity>,
}

impl ClusterTls {
    /// Loads and checks the CA, certificate and key files.
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsError> {
        Ok(Self::from_identity(NodeIdentity::load(paths)?))
    }

    /// Loads the files of `config` for a process running as `role`; mutual TLS is required.
    pub fn for_role(
        config: &tessera_runtime::tls::TlsConfig,
        role: Role,
    ) -> Result<Self, TlsError> {
        Ok(Self::from_identity(NodeIdentity::load_as(
            &config.required()?,
            role,
        )?))
    }

    /// The identity in `config` for a process running as `role`, or `None` when `config`
    /// names no file at all (in-process tests serve plain gRPC); only some files is an error.
    pub fn optional(
        config: &tessera_runtime::tls::TlsConfig,
        role: Role,
    ) -> Result<Option<Self>, TlsError> {
        config
            .paths()?
            .map(|paths| NodeIdentity::load_as(&paths, role).map(Self::from_identity))
            .transpose()
    }

    /// The identity already loaded.
    pub fn from_identity(identity: NodeIdentity) -> Self {
        Self {
            identity: Arc::new(identity),
        }
    }

    /// The role this process's certificate names.
    pub fn role(&self) -> Role {
        self.identity.role()
    }

    /// The server side: this node's certificate, client certificates required from the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.tonic_identity())
            .client_ca_root(Certificate::from_pem(self.identity.ca_pem()))
            .client_auth_optional(false)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The client side towards a process of role `peer`.
    pub fn client_config(&self, peer: Role) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.identity.ca_pem()))
            .identity(self.tonic_identity())
            .domain_name(peer.server_name())
            .assume_http2(true)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    fn tonic_identity(&self) -> Identity {
        Identity::from_pem(self.identity.cert_pem(), self.identity.key_pem().expose())
    }
}

/// The endpoint for `addr` ("host:port", optionally with a scheme): `https` with `tls` towards
/// a process of role `peer`, plain `http` without (in-process tests only).
pub fn endpoint(
    addr: &str,
    tls: Option<&ClusterTls>,
    peer: Role,
) -> Result<Endpoint, tonic::transport::Error> {
    let host = addr.split_once("://").map(|(_, rest)| rest).unwrap_or(addr);
    match tls {
        Some(tls) => {
            Endpoint::from_shared(format!("https://{host}"))?.tls_config(tls.client_config(peer))
        }
        None => Endpoint::from_shared(format!("http://{host}")),
    }
}

/// The role of the verified client that sent a request, put into the request's extensions by
/// [`RoleGuardLayer`]; absent on a server without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRole(pub Role);

/// The role of the client of `request`, when the server checked one.
pub fn peer_role<T>(request: &tonic::Request<T>) -> Option<Role> {
    request.extensions().get::<PeerRole>().map(|p| p.0)
}

/// Whether a client of `role` may call the gRPC method at `path`
/// (`/package.Service/Method`). Anything not listed is refused.
pub fn allowed(path: &str, role: Role) -> bool {
    use Role::*;
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return false;
    };
    let roles: &[Role] = match (service, method) {
        // Only voters talk Raft: a vote, an append or a snapshot from anyone else would let
        // them replace the metadata.
        ("tessera.raft.v1.RaftService", _) => &[Meta],
        ("tessera.meta.v1.MetaService", method) => match method {
            // Commands: each role may send only its own kinds (checked by the meta service).
            "Execute" => &[Meta, Gateway, Repair, Data, Admin],
            "GetBucket" | "ListBuckets" | "GetObject" | "ListVersions" | "ListObjects"
            | "GetUpload" | "ListParts" | "ListUploads" => &[Meta, Gateway, Admin],
            "ClusterStatus" | "ReportWorkers" => &[Meta, Gateway, Repair, Data, Admin],
            "Heartbeat" => &[Meta, Data],
            "ScanBlobs" | "GetBlob" => &[Meta, Repair, Admin],
            "ListWorkers" => &[Meta, Admin],
            // Plaintext data keys go to gateways only (and between meta nodes).
            "GenerateDataKey" | "DecryptDataKey" => &[Meta, Gateway],
            "RotateKek" | "ListKeks" => &[Meta, Admin],
            // KMS keys: operators manage them; gateways look one up (an alias's id, its state).
            "CreateKmsKey" | "ListKmsKeys" | "UpdateKmsKey" => &[Meta, Admin],
            "DescribeKmsKey" => &[Meta, Admin, Gateway],
            _ => &[],
        },
        ("tessera.data.v1.DataService", method) => match method {
            // Only writers of objects change shards; operators may read and inspect them.
            "WriteShard" | "DeleteShard" => &[Gateway, Repair],
            "ReadShard" | "StatShard" | "ListShards" => &[Gateway, Repair, Admin],
            "Ping" | "StartScrub" | "ScrubStatus" => &[Gateway, Repair, Admin, Meta],
            _ => &[],
        },
        _ => &[],
    };
    roles.contains(&role)
}

/// A tower layer for a tonic server: with TLS, checks each request's client role against
/// [`allowed`] and records it as [`PeerRole`]; without (in-process tests), lets all through.
#[derive(Debug, Clone, Copy)]
pub struct RoleGuardLayer {
    enforce: bool,
}

impl RoleGuardLayer {
    /// The guard for a server that uses `tls` (enforcing) or none (open).
    pub fn new(tls: Option<&ClusterTls>) -> Self {
        Self {
            enforce: tls.is_some(),
        }
    }
}

impl<S> tower_layer::Layer<S> for RoleGuardLayer {
    type Service = RoleGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RoleGuard {
            inner,
            enforce: self.enforce,
        }
    }
}

/// The service made by [`RoleGuardLayer`].
#[derive(Debug, Clone)]
pub struct RoleGuard<S> {
    inner: S,
    enforce: bool,
}

/// Why a request was refused: the gRPC status sent back.
fn refusal<B>(req: &http::Request<B>) -> Result<Role, Status> {
    let path = req.uri().path();
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs());
    let remote = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.get_ref().remote_addr());
    let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
        warn!(
            path,
            ?remote,
            "request without a client certificate refused"
        );
        return Err(Status::new(
            Code::Unauthenticated,
            "a client certificate from the cluster CA is required",
        ));
    };
    let role = match role_of_cert(leaf) {
        Ok(role) => role,
        Err(reason) => {
            warn!(path, ?remote, %reason, "client certificate without a role refused");
            return Err(Status::permission_denied(format!(
                "client certificate refused: {reason}"
            )));
        }
    };
    if !allowed(path, role) {
        warn!(path, ?remote, %role, "call refused for the client's role");
        return Err(Status::permission_denied(format!(
            "a {role} may not call {path}"
        )));
    }
    Ok(role)
}

impl<S, B> Service<http::Request<B>> for RoleGuard<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        std::future::Ready<Result<http::Response<tonic::body::Body>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if !self.enforce {
            return futures::future::Either::Left(self.inner.call(req));
        }
        match refusal(&req) {
            Ok(role) => {
                req.extensions_mut().insert(PeerRole(role));
                futures::future::Either::Left(self.inner.call(req))
            }
            Err(status) => {
                futures::future::Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
#[path = "tls_test.rs"]
mod tls_test;
