//! The context of one S3 request: made once where the request enters (the server's `handle`),
//! carried in the request's extensions, and handed to every handler. Authorization, audit and
//! metrics attach to it; nothing re-derives what it holds.
//!
//! Invariant: a request has exactly one context and one request id, which its response's
//! `x-amz-request-id`, its error body's `RequestId` and every log line about it carry. The
//! route (principal, operation, bucket, key) is set at most once, by the access hook, after
//! s3s authenticated and routed the request; before that (a request refused at the door) it is
//! absent.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// What s3s authenticated and routed: who asks for what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRoute {
    /// The access key the request was signed with; `None` for an anonymous request.
    pub principal: Option<String>,
    /// The S3 operation's name (`GetObject`, `PutObject`, ...).
    pub operation: String,
    /// The bucket addressed, if any.
    pub bucket: Option<String>,
    /// The key addressed, if any.
    pub key: Option<String>,
}

/// One request's context; see the module invariant. Shared (`Arc`) between the server, the
/// access hook and the handlers.
#[derive(Debug)]
pub struct RequestContext {
    /// The request id, as S3 shows it (16 uppercase hex digits).
    pub request_id: String,
    /// The client's address, when the request came over a socket.
    pub source: Option<SocketAddr>,
    /// Whether the request came over TLS (`aws:SecureTransport` for policies).
    pub tls: bool,
    /// The server-side encryption the request asked for (`s3:x-amz-server-side-encryption`
    /// for policies): the `x-amz-server-side-encryption` header's value, or `SSE-C` when it
    /// carries a customer key; `None` when it asked for none.
    pub sse: Option<String>,
    /// When the request entered.
    pub started: Instant,
    route: OnceLock<RequestRoute>,
}

/// The operation label of a request that never reached routing.
pub const UNROUTED: &str = "unrouted";

impl RequestContext {
    /// A fresh context with a new random request id.
    pub fn new(source: Option<SocketAddr>, tls: bool) -> Arc<RequestContext> {
        Self::with_sse(source, tls, None)
    }

    /// A fresh context for a request that asked for server-side encryption `sse`.
    pub fn with_sse(
        source: Option<SocketAddr>,
        tls: bool,
        sse: Option<String>,
    ) -> Arc<RequestContext> {
        Arc::new(RequestContext {
            request_id: new_request_id(),
            source,
            tls,
            sse,
            started: Instant::now(),
            route: OnceLock::new(),
        })
    }

    /// The server-side encryption `headers` ask for; see [`RequestContext::sse`].
    pub fn sse_of(headers: &http::HeaderMap) -> Option<String> {
        if headers.contains_key("x-amz-server-side-encryption-customer-algorithm") {
            return Some("SSE-C".to_owned());
        }
        headers
            .get("x-amz-server-side-encryption")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The context in a request's extensions; a fresh one (logged) if the request did not come
    /// through the server's front, which always puts one there.
    pub fn of(extensions: &http::Extensions) -> Arc<RequestContext> {
        match extensions.get::<Arc<RequestContext>>() {
            Some(ctx) => Arc::clone(ctx),
            None => {
                let ctx = RequestContext::new(None, false);
                tracing::warn!(request_id = %ctx.request_id, "request without a context; made one");
                ctx
            }
        }
    }

    /// Records the route; only the first call counts (whether it did is returned).
    pub fn set_route(&self, route: RequestRoute) -> bool {
        self.route.set(route).is_ok()
    }

    /// The route, once the access hook set it.
    pub fn route(&self) -> Option<&RequestRoute> {
        self.route.get()
    }

    /// The operation's name, or [`UNROUTED`].
    pub fn operation(&self) -> &str {
        self.route().map_or(UNROUTED, |r| r.operation.as_str())
    }

    /// The principal (access key), if the request was signed.
    pub fn principal(&self) -> Option<&str> {
        self.route().and_then(|r| r.principal.as_deref())
    }
}

/// A new request id: 8 random bytes in uppercase hex, as S3's look.
pub fn new_request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encryption_asked_for_is_read_from_the_headers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(RequestContext::sse_of(&headers), None);
        headers.insert(
            "x-amz-server-side-encryption",
            "AES256".parse().expect("value"),
        );
        assert_eq!(RequestContext::sse_of(&headers).as_deref(), Some("AES256"));
        headers.insert(
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256".parse().expect("value"),
        );
        assert_eq!(RequestContext::sse_of(&headers).as_deref(), Some("SSE-C"));
        let ctx = RequestContext::with_sse(None, true, Some("aws:kms".into()));
        assert!(ctx.tls);
        assert_eq!(ctx.sse.as_deref(), Some("aws:kms"));
    }

    #[test]
    fn the_route_is_set_once_and_ids_are_fresh() {
        let ctx = RequestContext::new("127.0.0.1:5000".parse().ok(), false);
        assert_eq!(ctx.request_id.len(), 16);
        assert!(ctx.request_id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(ctx.request_id, RequestContext::new(None, false).request_id);
        assert_eq!(ctx.operation(), UNROUTED);
        let route = RequestRoute {
            principal: Some("AKID".into()),
            operation: "GetObject".into(),
            bucket: Some("b".into()),
            key: Some("k".into()),
        };
        assert!(ctx.set_route(route.clone()));
        assert!(!ctx.set_route(RequestRoute {
            operation: "PutObject".into(),
            ..route.clone()
        }));
        assert_eq!(ctx.route(), Some(&route));
        assert_eq!(ctx.operation(), "GetObject");
        assert_eq!(ctx.principal(), Some("AKID"));
    }

    #[test]
    fn the_context_travels_in_the_extensions() {
        let ctx = RequestContext::new(None, false);
        let mut extensions = http::Extensions::new();
        extensions.insert(Arc::clone(&ctx));
        assert!(Arc::ptr_eq(&RequestContext::of(&extensions), &ctx));
        let fresh = RequestContext::of(&http::Extensions::new());
        assert_ne!(fresh.request_id, ctx.request_id);
    }
}
