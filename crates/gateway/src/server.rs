//! The HTTP front: one hyper server whose every request first passes `guard` (the gaps s3s
//! 0.14.1 leaves: SigV2 is refused, presigned URLs live at most 7 days) and then the s3s
//! service with its auth and access hook always installed. Header size and header-read time are
//! bounded so a slow or hostile client cannot hold a connection's resources forever.

use crate::config::GatewayConfig;
use crate::nodes::NodeDirectory;
use crate::pipeline::{BlobStore, BlobStoreConfig};
use crate::s3::auth::{AccessHook, KeyStore};
use crate::s3::convert::canonical_id;
use crate::s3::{Ops, TesseraS3};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::service::{S3Service, S3ServiceBuilder};
use std::sync::Arc;
use std::time::Duration;
use tessera_client::{DataClient, MetaClient};
use tessera_runtime::Shutdown;
use tracing::Instrument;

/// The longest a presigned URL may be valid, as in S3.
pub const MAX_PRESIGNED_EXPIRY_SECS: u64 = 7 * 24 * 3600;

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
}

/// A request refused before it reaches s3s.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// S3 error code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

/// The largest body of a request that is not an object upload (XML configurations, batch
/// deletes, CompleteMultipartUpload with 10,000 parts).
pub const MAX_NON_OBJECT_BODY: u64 = 4 * 1024 * 1024;

/// Whether a request may carry an object-sized body: PutObject or UploadPart (also presigned).
fn is_object_upload(method: &http::Method, path: &str, query: Option<&str>) -> bool {
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let plain_query = form_pairs(query.unwrap_or("")).all(|(k, _)| {
        k == "partNumber" || k == "uploadId" || k == "x-id" || k.starts_with("X-Amz-")
    });
    method == http::Method::PUT && has_key && plain_query
}

/// Refuses bodies over [`MAX_NON_OBJECT_BODY`] for requests that are not object uploads,
/// before anything is read.
pub fn guard_body(
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Result<(), Refusal> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > MAX_NON_OBJECT_BODY && !is_object_upload(method, path, query) => {
            Err(Refusal {
                status: 400,
                code: "MaxMessageLengthExceeded",
                message: "Your request was too big.".into(),
            })
        }
        _ => Ok(()),
    }
}

/// Checks what s3s does not: signature version 2 and presigned expiry.
pub fn guard(headers: &http::HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
    let sigv2 = || {
        Refusal {
        status: 400,
        code: "InvalidRequest",
        message: "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.".into(),
    }
    };
    if let Some(auth) = headers.get(http::header::AUTHORIZATION)
        && auth.as_bytes().starts_with(b"AWS ")
    {
        return Err(sigv2());
    }
    let Some(query) = query else { return Ok(()) };
    let mut has_v2_key = false;
    let mut has_v2_sig = false;
    for (name, value) in form_pairs(query) {
        match name.as_str() {
            "AWSAccessKeyId" => has_v2_key = true,
            "Signature" => has_v2_sig = true,
            "X-Amz-Expires" => {
                let secs: u64 = value.parse().map_err(|_| Refusal {
                    status: 400,
                    code: "AuthorizationQueryParametersError",
                    message: "X-Amz-Expires should be a number".into(),
                })?;
                if secs > MAX_PRESIGNED_EXPIRY_SECS {
                    return Err(Refusal {
                        status: 400,
                        code: "AuthorizationQueryParametersError",
                        message:
                            "X-Amz-Expires must be less than a week (in seconds) that is 604800"
                                .into(),
                    });
                }
            }
            _ => {}
        }
    }
    if has_v2_key && has_v2_sig {
        return Err(sigv2());
    }
    Ok(())
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k), decode(v))
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn refusal_response(refusal: &Refusal, request_id: &str) -> s3s::HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
        refusal.code,
        xml_escape(&refusal.message),
        request_id
    );
    let mut resp = http::Response::new(s3s::Body::from(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(refusal.status).unwrap_or(http::StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    resp
}

fn new_request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 8]>())
}

async fn handle(
    service: S3Service,
    req: http::Request<Incoming>,
) -> Result<s3s::HttpResponse, s3s::HttpError> {
    let request_id = new_request_id();
    let span = tracing::info_span!("request", request_id = %request_id, method = %req.method(), path = %req.uri().path());
    async move {
        let checked = guard(req.headers(), req.uri().query()).and_then(|()| {
            guard_body(
                req.method(),
                req.uri().path(),
                req.headers(),
                req.uri().query(),
            )
        });
        let mut resp = match checked {
            Err(refusal) => {
                tracing::info!(code = refusal.code, "request refused");
                refusal_response(&refusal, &request_id)
            }
            Ok(()) => service.call(req.map(s3s::Body::from)).await?,
        };
        if let Ok(v) = http::HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amz-request-id", v.clone());
            resp.headers_mut().insert("x-amz-id-2", v);
        }
        tracing::debug!(status = resp.status().as_u16(), "request done");
        Ok(resp)
    }
    .instrument(span)
    .await
}

/// Builds the s3s service with auth and the access hook always installed.
pub fn build_service(config: &GatewayConfig, meta: MetaClient, blobs: BlobStore) -> S3Service {
    let ops = Ops {
        meta,
        blobs: Arc::new(blobs),
        region: config.region.clone(),
        owner_id: canonical_id(&config.root_access_key),
        owner_name: "root".to_string(),
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
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        s3_config,
    ))));
    builder.build()
}

/// Serves the S3 API until shutdown.
pub async fn run(config: GatewayConfig, shutdown: Shutdown) -> Result<(), GatewayServeError> {
    config.validate()?;
    let meta = MetaClient::new(config.meta_endpoints.clone());
    let nodes = NodeDirectory::new(meta.clone());
    // One view before serving, so the first writes find the data nodes; if meta is not up
    // yet, the background refresh keeps trying.
    match tokio::time::timeout(Duration::from_secs(5), nodes.refresh()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "no data-node view yet; serving anyway"),
        Err(_) => tracing::warn!("meta did not answer within 5 s; serving anyway"),
    }
    nodes.spawn_refresh(shutdown.clone());
    let blobs = BlobStore::new(
        DataClient::new(),
        nodes,
        BlobStoreConfig {
            chunk_size: config.chunk_size,
            inline_threshold: config.inline_threshold,
            layout: None,
            body_idle_timeout: Duration::from_secs(config.body_idle_timeout_secs),
        },
    );
    let service = build_service(&config, meta, blobs);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayServeError::Bind {
            addr: config.listen,
            source,
        })?;
    tracing::info!(addr = %config.listen, region = %config.region, "gateway serving");

    let mut conn_builder = ConnBuilder::new(TokioExecutor::new());
    conn_builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_read_timeout_secs))
        .max_buf_size(64 * 1024);
    conn_builder.http2().max_header_list_size(64 * 1024);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let svc = hyper::service::service_fn(move |req| handle(service.clone(), req));
                let conn = conn_builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = shutdown.wait() => break,
        }
    }
    drop(listener);
    tracing::info!("gateway draining connections");
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().expect("header"));
        }
        h
    }

    #[test]
    fn sigv2_header_and_query_are_refused() {
        assert_eq!(
            guard(&headers(Some("AWS AKID:sig")), None).map_err(|r| r.code),
            Err("InvalidRequest")
        );
        assert!(
            guard(
                &headers(None),
                Some("AWSAccessKeyId=a&Signature=b&Expires=1")
            )
            .is_err()
        );
        assert!(guard(&headers(Some("AWS4-HMAC-SHA256 Credential=x")), None).is_ok());
    }

    #[test]
    fn only_object_uploads_may_carry_large_bodies() {
        let mut h = headers(None);
        h.insert(
            http::header::CONTENT_LENGTH,
            "5000000".parse().expect("len"),
        );
        let put = http::Method::PUT;
        let post = http::Method::POST;
        assert!(guard_body(&put, "/b/k", &h, None).is_ok());
        assert!(guard_body(&put, "/b/k", &h, Some("partNumber=1&uploadId=x")).is_ok());
        assert!(guard_body(&put, "/b/k", &h, Some("X-Amz-Expires=60&X-Amz-Signature=s")).is_ok());
        assert!(guard_body(&post, "/b", &h, Some("delete")).is_err());
        assert!(guard_body(&put, "/b", &h, Some("versioning")).is_err());
        assert!(guard_body(&put, "/b/k", &h, Some("tagging")).is_err());
        assert!(guard_body(&post, "/b/k", &h, Some("uploadId=x")).is_err());
        h.insert(http::header::CONTENT_LENGTH, "1000".parse().expect("len"));
        assert!(guard_body(&post, "/b", &h, Some("delete")).is_ok());
    }

    #[test]
    fn presigned_expiry_is_capped_at_seven_days() {
        assert!(guard(&headers(None), Some("X-Amz-Expires=604800")).is_ok());
        let r = guard(&headers(None), Some("X-Amz-Expires=604801")).expect_err("refused");
        assert_eq!(r.code, "AuthorizationQueryParametersError");
        assert!(guard(&headers(None), Some("X-Amz-Expires=abc")).is_err());
    }
}
