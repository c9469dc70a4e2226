//! The HTTP front: one hyper server whose every request first passes the checks of `guard`
//! (the gaps s3s 0.14.1 leaves: SigV2 is refused, presigned URLs live at most 7 days, the
//! credential scope names this region and `s3`, declared body sizes fit their operation)
//! and then reaches the s3s service with its auth and access hook always installed. Bodies
//! reach s3s through `body_guard` (caps while streaming, aws-chunked framing) and, for browser
//! POST forms, after at most 20 KB of fields were read here. Header size, header-read time,
//! idle connections and the number of open connections are bounded (`conn`), so a slow or
//! hostile client cannot hold the gateway's resources.
//!
//! Every request gets its [`RequestContext`] here, first thing: its id names the response
//! (`x-amz-request-id`, the error body's `RequestId`) and every log line, and its metrics are
//! recorded when its response body is done. The gateway's background loops (node view refresh,
//! write lease, worker reports) run as workers of one registry.

use crate::aws_chunked::{AwsChunkedValidator, ChunkSigning};
use crate::body_guard::{BodyVerdict, GuardedBody, OverCap, PrefixedBody};
use crate::config::GatewayConfig;
use crate::conn::{ActivityClock, ConnectionSlots};
use crate::context::{RequestContext, new_request_id};
use crate::guard::{self, Refusal, refusal_response};
use crate::metrics::{CountedBody, GatewayMetrics};
use crate::nodes::{NodeDirectory, NodeRefresher};
use crate::pipeline::{BlobStore, BlobStoreConfig, MetaKeys, SseSeals};
use crate::post_form;
use crate::s3::auth::{AccessHook, KeyStore};
use crate::s3::convert::canonical_id;
use crate::s3::{Ops, TesseraS3};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::service::{S3Service, S3ServiceBuilder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tessera_client::lease::LeaseConfigError;
use tessera_client::tls::ClusterTls;
use tessera_client::workers::{ProcessIdentity, WorkerReporter};
use tessera_client::{DataClient, LeaseConfig, LeaseHandle, LeaseKeeper, MetaClient};
use tessera_runtime::Shutdown;
use tessera_runtime::metrics::Counter;
use tessera_runtime::tls::{ReloadingCert, Role};
use tessera_runtime::worker::{WorkerRegistry, spawn_worker};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

pub use crate::guard::{MAX_NON_OBJECT_BODY, MAX_PRESIGNED_EXPIRY_SECS};

/// Why the gateway could not serve.
#[derive(Debug, thiserror::Error)]
pub enum GatewayServeError {
    /// The config breaks a rule.
    #[error(transparent)]
    Config(#[from] tessera_runtime::config::ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The write lease keeper's pacing is invalid.
    #[error(transparent)]
    Lease(#[from] LeaseConfigError),
    /// The mutual-TLS files are incomplete, unreadable or not a gateway's.
    #[error("tls: {0}")]
    Tls(#[from] tessera_runtime::tls::TlsError),
    /// The S3 endpoint's certificate or key cannot be used.
    #[error("https: {0}")]
    Https(#[from] tessera_runtime::tls::ReloadError),
}

/// What every request's checks need from the config.
#[derive(Debug, Clone)]
pub struct RequestRules {
    /// The region SigV4 scopes must name.
    pub region: String,
    /// The largest aws-chunked chunk accepted.
    pub max_aws_chunk_size: u64,
    /// How long a client may stay silent while the gateway reads a form's fields.
    pub body_idle: Duration,
}

/// Checks a request's head and wraps its body (bytes counted into `bytes_in`); a refusal is
/// answered without calling s3s.
async fn admit_request(
    rules: &RequestRules,
    req: http::Request<Incoming>,
    verdict: &BodyVerdict,
    bytes_in: &Arc<Counter>,
) -> Result<http::Request<s3s::Body>, Refusal> {
    let (parts, mut body) = req.into_parts();
    let path = parts.uri.path();
    let query = parts.uri.query();
    guard::guard(&parts.headers, query)?;
    guard::check_scope(&parts.headers, query, path, &rules.region)?;
    guard::guard_body(parts.version, &parts.method, path, &parts.headers, query)?;
    let upload = guard::is_object_upload(&parts.method, path, query);
    let framing = parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .and_then(ChunkSigning::from_content_sha256)
        .map(|signing| AwsChunkedValidator::new(signing, rules.max_aws_chunk_size));
    let form_boundary = (parts.method == http::Method::POST)
        .then(|| parts.headers.get(http::header::CONTENT_TYPE))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(post_form::form_boundary);
    let prefix = match form_boundary {
        Some(boundary) => post_form::read_pre_data(&mut body, &boundary, rules.body_idle).await?,
        None => Vec::new(),
    };
    let guarded = GuardedBody::new(
        PrefixedBody::new(prefix, body),
        guard::body_cap(&parts.method, path, query),
        if upload {
            OverCap::EntityTooLarge
        } else {
            OverCap::MessageTooLong
        },
        framing,
        verdict.clone(),
    );
    Ok(http::Request::from_parts(
        parts,
        s3s::Body::http_body(CountedBody::new(guarded, Arc::clone(bytes_in))),
    ))
}

/// Names the request in an S3 error body that s3s wrote without it (its own authentication
/// and routing errors); bodies that already name it, or are not whole XML, stay as they are.
fn name_request_in_error(resp: &mut s3s::HttpResponse, request_id: &str) {
    if resp.status().as_u16() < 400 {
        return;
    }
    let Some(bytes) = resp.body().bytes() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return;
    };
    if !text.contains("<Error>") || text.contains("<RequestId>") {
        return;
    }
    let Some(end) = text.rfind("</Error>") else {
        return;
    };
    let named = format!(
        "{}<RequestId>{request_id}</RequestId>{}",
        &text[..end],
        &text[end..]
    );
    *resp.body_mut() = s3s::Body::from(Bytes::from(named));
}

/// Serves one request: its context first, then the front's checks, s3s, and the metrics.
async fn handle(
    service: S3Service,
    rules: Arc<RequestRules>,
    metrics: Arc<GatewayMetrics>,
    source: Option<SocketAddr>,
    tls: bool,
    mut req: http::Request<Incoming>,
) -> Result<s3s::HttpResponse, s3s::HttpError> {
    let ctx = RequestContext::with_sse(source, tls, RequestContext::sse_of(req.headers()));
    let mut record = metrics.start_request();
    req.extensions_mut().insert(Arc::clone(&ctx));
    let span = tracing::info_span!("request", request_id = %ctx.request_id, method = %req.method(), path = %req.uri().path());
    async move {
        let request_id = ctx.request_id.as_str();
        let verdict = BodyVerdict::new();
        let mut resp = match admit_request(&rules, req, &verdict, metrics.bytes_in()).await {
            Err(refusal) => {
                tracing::info!(code = refusal.code, "request refused");
                refusal_response(&refusal, request_id)
            }
            Ok(req) => {
                let resp = service.call(req).await?;
                // A body that broke a rule failed the handler with an I/O error; the client
                // gets the S3 error that stands for the rule.
                match verdict.refusal() {
                    Some(refusal) => refusal_response(refusal, request_id),
                    None => resp,
                }
            }
        };
        name_request_in_error(&mut resp, request_id);
        if let Ok(v) = http::HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("x-amz-request-id", v.clone());
            resp.headers_mut().insert("x-amz-id-2", v);
        }
        let status = resp.status().as_u16();
        tracing::debug!(status, operation = ctx.operation(), "request answered");
        record.answered(ctx.operation(), status);
        let (parts, body) = resp.into_parts();
        let body = CountedBody::new(body, Arc::clone(metrics.bytes_out())).with_record(record);
        Ok(http::Response::from_parts(
            parts,
            s3s::Body::http_body(body),
        ))
    }
    .instrument(span)
    .await
}

/// Builds the s3s service with auth and the access hook always installed.
pub fn build_service(
    config: &GatewayConfig,
    meta: MetaClient,
    blobs: BlobStore,
    leases: LeaseHandle,
    metrics: Arc<GatewayMetrics>,
) -> S3Service {
    let ops = Ops {
        meta,
        blobs: Arc::new(blobs),
        leases,
        metrics,
        region: config.region.clone(),
        owner_id: canonical_id(&config.root_access_key),
        owner_name: "root".to_string(),
        sse_c_over_http: config.sse_c_over_http,
    };
    let mut builder = S3ServiceBuilder::new(TesseraS3::new(ops));
    builder.set_auth(KeyStore::new(
        config.root_access_key.clone(),
        config.root_secret_key.clone(),
    ));
    builder.set_access(AccessHook);
    let mut s3_config = s3s::config::S3Config::default();
    // Bounded XML bodies: CompleteMultipartUpload with 10,000 parts fits in 4 MiB.
    s3_config.xml_max_body_size = 4 * 1024 * 1024;
    // POST forms reach s3s with at most 20 KB of fields in their first piece (`post_form`);
    // s3s's own buffer limit counts that piece whole, file bytes included, so it keeps room.
    s3_config.form_max_field_size = post_form::MAX_POST_PRE_DATA;
    s3_config.form_max_fields_size = 4 * post_form::MAX_POST_PRE_DATA;
    // s3s collects a POST form's file in memory before the access check (and PostObject is not
    // implemented): no more than any other non-upload body.
    s3_config.post_object_max_file_size = MAX_NON_OBJECT_BODY;
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        s3_config,
    ))));
    builder.build()
}

/// Serves the S3 API until shutdown. `TESSERA_*` variables of
/// [`crate::config::ENV_OVERRIDES`] override the config's limits.
pub async fn run(mut config: GatewayConfig, shutdown: Shutdown) -> Result<(), GatewayServeError> {
    config.apply_env(|name| std::env::var(name).ok())?;
    config.validate()?;
    let tls = ClusterTls::optional(&config.tls, Role::Gateway)?;
    let https = match &config.https {
        Some(files) => Some(Arc::new(ReloadingCert::load(&files.cert, &files.key)?)),
        None => None,
    };
    let meta = MetaClient::with_tls(config.meta_endpoints.clone(), tls.as_ref());
    let nodes = NodeDirectory::new(meta.clone());
    // One view before serving, so the first writes find the data nodes; if meta is not up
    // yet, the refresh worker keeps trying.
    match tokio::time::timeout(Duration::from_secs(5), nodes.refresh()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "no data-node view yet; serving anyway"),
        Err(_) => tracing::warn!("meta did not answer within 5 s; serving anyway"),
    }
    let registry = WorkerRegistry::new();
    spawn_worker(
        NodeRefresher::new(nodes.clone()),
        &registry,
        shutdown.clone(),
    );
    let keeper = LeaseKeeper::new(
        meta.clone(),
        LeaseConfig::new(format!("gateway {}", config.listen)),
    )?;
    let (leases, _keeper) = keeper.spawn(&registry, shutdown.clone());
    // The keeper grants at once; give it a moment so the first uploads find a lease (without
    // one, erasure-coded writes answer 503 until it is granted).
    if !wait_for_lease(&leases, Duration::from_secs(5)).await {
        tracing::warn!("no write lease yet; serving anyway");
    }
    let process = ProcessIdentity {
        role: "gateway".to_owned(),
        id: config.listen.to_string(),
        zone: String::new(),
        addr: config.listen.to_string(),
    };
    spawn_worker(
        WorkerReporter::new(meta.clone(), process, registry.clone()),
        &registry,
        shutdown.clone(),
    );
    // Every new blob is sealed with SSE-S3 under a data key from the meta key service.
    let seals = SseSeals::new(Arc::new(MetaKeys::new(meta.clone())));
    let blobs = BlobStore::with_seals(
        DataClient::with_tls(tls),
        nodes,
        BlobStoreConfig {
            chunk_size: config.chunk_size,
            inline_threshold: config.inline_threshold,
            layout: None,
            body_idle_timeout: Duration::from_secs(config.body_idle_timeout_secs),
        },
        Arc::new(seals),
    );
    let metrics = GatewayMetrics::new(Arc::clone(blobs.metrics()));
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayServeError::Bind { addr, source })?;
        let render = {
            let metrics = Arc::clone(&metrics);
            Arc::new(move || metrics.render())
        };
        tracing::info!(addr = %addr, "gateway metrics serving");
        tokio::spawn(tessera_runtime::metrics_server::serve_metrics(
            listener,
            render,
            shutdown.clone(),
        ));
    }
    let service = build_service(&config, meta, blobs, leases, Arc::clone(&metrics));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayServeError::Bind {
            addr: config.listen,
            source,
        })?;
    tracing::info!(
        addr = %config.listen,
        region = %config.region,
        https = https.is_some(),
        max_connections = config.http.max_connections,
        "gateway serving"
    );
    if let Some(cert) = &https {
        tokio::spawn(watch_certificate(Arc::clone(cert), shutdown.clone()));
    }
    serve_s3(listener, &config, https, service, metrics, shutdown).await;
    Ok(())
}

/// How often the S3 endpoint's certificate files are checked for a change.
const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Reloads the S3 endpoint's certificate whenever its files change, until shutdown; a change
/// that does not load is reported once and the previous certificate kept.
async fn watch_certificate(cert: Arc<ReloadingCert>, shutdown: Shutdown) {
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(CERT_CHECK_INTERVAL) => {}
            () = shutdown.wait() => return,
        }
        match cert.reload_if_changed() {
            Ok(true) => {
                last_error = None;
                tracing::info!("https certificate reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                let message = e.to_string();
                if last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(error = %message, "https certificate change not loaded; the previous one stays in use");
                    last_error = Some(message);
                }
            }
        }
    }
}

/// Waits until `leases` holds a lease, at most `limit`; whether it does.
async fn wait_for_lease(leases: &LeaseHandle, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while leases.current_lease_id().is_none() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Serves `service` on `listener` with the config's HTTP limits until `shutdown`, then waits
/// (up to 10 s) for open connections to finish.
pub async fn serve_s3(
    listener: tokio::net::TcpListener,
    config: &GatewayConfig,
    https: Option<Arc<ReloadingCert>>,
    service: S3Service,
    metrics: Arc<GatewayMetrics>,
    shutdown: Shutdown,
) {
    let limits = config.http.clone();

    let mut conn_builder = ConnBuilder::new(TokioExecutor::new());
    conn_builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_read_timeout_secs))
        .max_buf_size(64 * 1024);
    let ping_interval = (limits.http2_keep_alive_interval_secs > 0)
        .then(|| Duration::from_secs(limits.http2_keep_alive_interval_secs));
    conn_builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(64 * 1024)
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .keep_alive_interval(ping_interval)
        .keep_alive_timeout(Duration::from_secs(limits.http2_keep_alive_timeout_secs));
    let conn = Arc::new(ConnectionContext {
        builder: conn_builder,
        service,
        metrics,
        rules: Arc::new(RequestRules {
            region: config.region.clone(),
            max_aws_chunk_size: config.max_aws_chunk_size,
            body_idle: Duration::from_secs(config.body_idle_timeout_secs),
        }),
        slots: ConnectionSlots::new(
            limits.max_connections,
            Duration::from_millis(limits.connection_queue_ms),
        ),
        http1_idle: Duration::from_secs(limits.http1_keep_alive_idle_secs),
        http2_idle: Duration::from_secs(limits.http2_idle_timeout_secs),
        shutdown: shutdown.clone(),
        tls: https.map(|cert| TlsAcceptor::from(Arc::new(cert.server_config()))),
        handshake_timeout: Duration::from_secs(config.header_read_timeout_secs),
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                tokio::spawn(Arc::clone(&conn).serve(stream, Some(peer)));
            }
            () = shutdown.wait() => break,
        }
    }
    drop(listener);
    tracing::info!(open = conn.slots.open(), "gateway draining connections");
    if !conn.slots.drained(Duration::from_secs(10)).await {
        tracing::warn!(
            open = conn.slots.open(),
            "connections still open after 10 s"
        );
    }
}

/// What serving one connection needs.
struct ConnectionContext {
    builder: ConnBuilder<TokioExecutor>,
    service: S3Service,
    metrics: Arc<GatewayMetrics>,
    rules: Arc<RequestRules>,
    slots: ConnectionSlots,
    http1_idle: Duration,
    http2_idle: Duration,
    shutdown: Shutdown,
    /// The TLS side of the S3 endpoint, when it serves HTTPS.
    tls: Option<TlsAcceptor>,
    /// How long a client has to finish the TLS handshake.
    handshake_timeout: Duration,
}

impl ConnectionContext {
    /// Serves one client connection if a slot is free (soon), until it closes, idles out or the
    /// gateway shuts down.
    async fn serve(self: Arc<Self>, stream: tokio::net::TcpStream, peer: Option<SocketAddr>) {
        let _ = stream.set_nodelay(true);
        let slot = self.slots.admit().await;
        let Some(acceptor) = self.tls.clone() else {
            return self.serve_io(stream, peer, slot, false).await;
        };
        // The handshake counts against the connection's slot; a client that never finishes
        // it is dropped after the header-read timeout.
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => self.serve_io(tls, peer, slot, true).await,
            Ok(Err(e)) => tracing::debug!(error = %e, peer = ?peer, "tls handshake failed"),
            Err(_) => tracing::debug!(peer = ?peer, "tls handshake timed out"),
        }
    }

    /// Serves one connection (plain or TLS) once its slot is known: without one, answers
    /// 503 SlowDown and closes.
    async fn serve_io<I>(
        self: Arc<Self>,
        stream: I,
        peer: Option<SocketAddr>,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
        tls: bool,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Some(slot) = slot else {
            let request_id = new_request_id();
            tracing::warn!(
                open = self.slots.open(),
                request_id = %request_id,
                "connection refused: too many open connections"
            );
            crate::conn::refuse(stream, &request_id).await;
            return;
        };
        let clock = ActivityClock::new();
        let svc = {
            let clock = Arc::clone(&clock);
            let service = self.service.clone();
            let rules = Arc::clone(&self.rules);
            let metrics = Arc::clone(&self.metrics);
            hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let activity = clock.begin(req.version() == http::Version::HTTP_2);
                let call = handle(
                    service.clone(),
                    Arc::clone(&rules),
                    Arc::clone(&metrics),
                    peer,
                    tls,
                    req,
                );
                async move {
                    let resp = call.await;
                    drop(activity);
                    resp
                }
            })
        };
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = self.shutdown.wait(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = clock.wait_idle(self.http1_idle, self.http2_idle), if !closing => {
                    tracing::debug!("idle connection closed");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
        drop(slot);
    }
}

#[cfg(test)]
#[path = "server_test.rs"]
mod tests;
