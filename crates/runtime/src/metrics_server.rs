//! The `/metrics` endpoint every role serves to Prometheus: a tiny HTTP/1 server that answers
//! `GET /metrics` and nothing else.
//!
//! Invariant: the server's cost is bounded whatever clients do. At most
//! [`MetricsServerConfig::max_connections`] connections are open at once (more are closed as
//! soon as they are accepted); a client gets [`MetricsServerConfig::header_read_timeout`] to
//! send its request head and [`MetricsServerConfig::connection_timeout`] for the whole
//! exchange; each connection carries one request (no keep-alive), request bodies are never
//! read, and request heads are capped at [`MAX_REQUEST_HEAD`] bytes. On shutdown the server
//! stops accepting and drops every open connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::shutdown::Shutdown;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The path scrapes are answered on.
pub const METRICS_PATH: &str = "/metrics";

/// The most bytes of request head a connection buffers (hyper's minimum buffer): a scrape
/// request is a few hundred bytes.
pub const MAX_REQUEST_HEAD: usize = 8192;

/// How long the server pauses after a failed accept (out of file descriptors, say), so that
/// it does not spin on an error that persists.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Renders the exposition text of every metric of the process.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The server's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsServerConfig {
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Time a client has to send its request head.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open in all.
    pub connection_timeout: Duration,
}

impl Default for MetricsServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `GET /metrics` on `listener`, with the default bounds, until `shutdown` trips.
pub async fn serve_metrics(listener: TcpListener, render: RenderMetrics, shutdown: Shutdown) {
    serve_metrics_with(listener, render, shutdown, MetricsServerConfig::default()).await;
}

/// Serves `GET /metrics` on `listener`, within `config`'s bounds, until `shutdown` trips.
pub async fn serve_metrics_with(
    listener: TcpListener,
    render: RenderMetrics,
    shutdown: Shutdown,
    config: MetricsServerConfig,
) {
    // Dropping the set when the server returns aborts every connection still open.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.wait() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                }
            }
        };
        // Connections that ended since the last accept no longer count against the limit.
        while connections.try_join_next().is_some() {}
        if connections.len() >= config.max_connections {
            debug!(peer = %peer, limit = config.max_connections, "metrics connection refused");
            drop(stream);
            continue;
        }
        connections.spawn(serve_connection(
            stream,
            Arc::clone(&render),
            config.clone(),
        ));
    }
    debug!(open = connections.len(), "metrics server stopped");
}

/// Answers the one request of a connection, within the connection's bounds.
async fn serve_connection(stream: TcpStream, render: RenderMetrics, config: MetricsServerConfig) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = respond(request.method(), request.uri().path(), &*render);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(config.connection_timeout, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "metrics connection failed"),
        Err(_) => debug!(
            timeout_ms = config.connection_timeout.as_millis(),
            "metrics connection timed out"
        ),
    }
}

/// The response to `method path`: the metrics, 404 off the metrics path, or 405 for methods
/// other than GET and HEAD (hyper leaves out the body of a HEAD response).
fn respond(
    method: &Method,
    path: &str,
    render: &(dyn Fn() -> String + Send + Sync),
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if path != METRICS_PATH {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        )
    } else if method != Method::GET && method != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"method not allowed\n"),
        )
    } else {
        (StatusCode::OK, CONTENT_TYPE, Bytes::from(render()))
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    }
    response
}

#[cfg(test)]
#[path = "metrics_server_test.rs"]
mod tests;
