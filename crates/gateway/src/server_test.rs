//! Requests through the real front (a TCP listener, hyper, the guard, s3s with its auth and
//! access hook, the handlers): every answer names its request (header and error body alike),
//! the access hook records the route in the request's context, and every request is counted
//! in the metrics, refused ones included. Meta has no endpoint here, so a handler that reaches
//! it answers 503 at once.

use super::*;
use crate::pipeline::BlobStoreConfig;
use std::time::Duration;
use tessera_core::checksum::{ChecksumAlgorithm, checksum_of};
use tessera_runtime::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCESS_KEY: &str = "AKTESTGATEWAY";
const SECRET_KEY: &str = "test-secret-key-0123456789";
const REGION: &str = "us-east-1";

/// A gateway front on a loopback port, with its metrics.
struct Front {
    addr: SocketAddr,
    metrics: Arc<GatewayMetrics>,
    shutdown: Shutdown,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn front() -> Front {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = GatewayConfig::new(
        addr,
        vec!["unused:1".into()],
        ACCESS_KEY.into(),
        Secret::new(SECRET_KEY.into()),
    );
    let meta = MetaClient::new(Vec::new());
    let blobs = BlobStore::new(
        DataClient::new(),
        NodeDirectory::fixed(Vec::new()),
        BlobStoreConfig::default(),
    );
    let leases = LeaseKeeper::new(meta.clone(), LeaseConfig::new("test"))
        .expect("lease config")
        .handle();
    let metrics = GatewayMetrics::new(Arc::clone(blobs.metrics()));
    let service = build_service(&config, meta, blobs, leases, Arc::clone(&metrics));
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let served = Arc::clone(&metrics);
    tokio::spawn(async move { serve_s3(listener, &config, None, service, served, stop).await });
    Front {
        addr,
        metrics,
        shutdown,
    }
}

/// A response as read off the wire.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The text of the body's `<RequestId>` element.
    fn body_request_id(&self) -> Option<&str> {
        let start = self.body.find("<RequestId>")? + "<RequestId>".len();
        let end = self.body[start..].find("</RequestId>")? + start;
        Some(&self.body[start..end])
    }
}

/// Sends one HTTP/1.1 request (closing the connection after it) and reads the answer.
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(body).await.expect("body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        unchunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let sha256 = |data: &[u8]| checksum_of(ChecksumAlgorithm::Sha256, data);
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block
        .iter()
        .map(|b| b ^ 0x36)
        .chain(message.iter().copied())
        .collect();
    let outer: Vec<u8> = block
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(sha256(&inner))
        .collect();
    sha256(&outer)
}

/// The head of a request signed with SigV4 (header form) by the root key.
fn signed_head(method: &str, host: SocketAddr, path: &str, query: &str, body: &[u8]) -> String {
    let now = time::OffsetDateTime::now_utc();
    let date = now
        .format(time::macros::format_description!("[year][month][day]"))
        .expect("date");
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("stamp");
    let payload = hex::encode(checksum_of(ChecksumAlgorithm::Sha256, body));
    let canonical = format!(
        "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{stamp}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}"
    );
    let scope = format!("{date}/{REGION}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex::encode(checksum_of(ChecksumAlgorithm::Sha256, canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
    for part in [REGION, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    let target = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nx-amz-date: {stamp}\r\nx-amz-content-sha256: {payload}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
}

/// Waits until the metrics count a request of `operation` answered `status` (the count is
/// taken when the response body is done, which may trail the client's read by a moment).
async fn counted(metrics: &GatewayMetrics, operation: &str, status: u16) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = metrics.requests(operation, status);
        if n > 0 || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_anonymous_request_is_routed_denied_named_and_counted() {
    let front = front().await;
    let head = format!(
        "GET /bkt/some/key HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        front.addr
    );
    let answer = send(front.addr, &head, b"").await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body.contains("<Code>AccessDenied</Code>"),
        "{}",
        answer.body
    );
    let id = answer
        .header("x-amz-request-id")
        .expect("request id header");
    assert_eq!(id.len(), 16);
    assert_eq!(
        answer.body_request_id(),
        Some(id),
        "the body names the same request"
    );
    // The access hook named the operation in the context: the metrics carry it.
    assert_eq!(counted(&front.metrics, "GetObject", 403).await, 1);
    let text = front.metrics.render();
    assert!(
        text.contains("tessera_gateway_request_duration_seconds_count{operation=\"GetObject\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tessera_gateway_requests_in_flight 0"),
        "{text}"
    );
    assert!(front.metrics.bytes_out().get() >= answer.body.len() as u64);
}

#[tokio::test]
async fn a_signed_request_reaches_its_handler_with_its_context() {
    let front = front().await;
    let head = signed_head("GET", front.addr, "/bkt", "location=", b"");
    let answer = send(front.addr, &head, b"").await;
    // The handler asked meta, which has no node: 503, named by the handler's context.
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer.body.contains("<Code>ServiceUnavailable</Code>"),
        "{}",
        answer.body
    );
    let id = answer
        .header("x-amz-request-id")
        .expect("request id header");
    assert_eq!(answer.body_request_id(), Some(id));
    assert_eq!(counted(&front.metrics, "GetBucketLocation", 503).await, 1);

    tracing::info!("a command with a body: bytes in are counted, the outcome is unknown");
    let body = b"<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></VersioningConfiguration>";
    let head = signed_head("PUT", front.addr, "/bkt", "versioning=", body);
    let answer = send(front.addr, &head, body).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body_request_id(), answer.header("x-amz-request-id"));
    assert_eq!(counted(&front.metrics, "PutBucketVersioning", 503).await, 1);
    assert_eq!(front.metrics.bytes_in().get(), body.len() as u64);
}

#[tokio::test]
async fn a_request_refused_at_the_door_is_named_and_counted_unrouted() {
    let front = front().await;
    let head = format!(
        "GET /bkt/key?AWSAccessKeyId=a&Signature=b&Expires=1 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        front.addr
    );
    let answer = send(front.addr, &head, b"").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body_request_id(), answer.header("x-amz-request-id"));
    assert_eq!(
        counted(&front.metrics, crate::context::UNROUTED, 400).await,
        1
    );
}

#[tokio::test]
async fn only_bodies_that_may_go_to_data_nodes_need_a_write_lease() {
    let meta = MetaClient::new(Vec::new());
    let blobs = BlobStore::new(
        DataClient::new(),
        NodeDirectory::fixed(Vec::new()),
        BlobStoreConfig::default(),
    );
    let threshold = blobs.config().inline_threshold;
    let metrics = GatewayMetrics::new(Arc::clone(blobs.metrics()));
    let ops = Ops {
        leases: LeaseKeeper::new(meta.clone(), LeaseConfig::new("test"))
            .expect("lease config")
            .handle(),
        meta,
        blobs: Arc::new(blobs),
        metrics,
        region: REGION.into(),
        owner_id: "owner".into(),
        owner_name: "root".into(),
        sse_c_over_http: false,
    };
    assert!(matches!(ops.write_lease(Some(threshold)), Ok(None)));
    assert!(matches!(ops.write_lease(Some(0)), Ok(None)));
    for len in [Some(threshold + 1), None] {
        assert!(
            matches!(
                ops.write_lease(len),
                Err(crate::error::GatewayError::Lease(
                    tessera_client::LeaseError::NotGranted
                ))
            ),
            "{len:?}"
        );
    }
}
