//! Clients that stall cannot hold the gateway's resources, and expired presigned URLs are
//! refused. The cluster runs with 2-second timeouts so the test stays short.

use crate::harness::{TestCluster, error_status, phase};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn gateway_addr(tc: &TestCluster) -> String {
    tc.cluster
        .endpoint()
        .trim_start_matches("http://")
        .to_string()
}

/// Sends raw bytes and returns whatever the server answers within `wait` (empty on close).
async fn exchange(addr: &str, request: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    out
}

fn raw_request(
    method: &str,
    req: &aws_sdk_s3::presigning::PresignedRequest,
    extra: &str,
) -> String {
    let uri: http::Uri = req.uri().parse().expect("uri");
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        uri.authority().map(|a| a.as_str()).unwrap_or("")
    );
    for (name, value) in req.headers() {
        if !name.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(extra);
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_clients_are_cut_off_and_expired_urls_refused() {
    let tc = TestCluster::start_http(
        2,
        vec![
            ("TESSERA_BODY_IDLE_TIMEOUT_SECS", "2"),
            ("TESSERA_HEADER_READ_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    tc.s3
        .create_bucket()
        .bucket("slow")
        .send()
        .await
        .expect("bucket");
    let addr = gateway_addr(&tc);

    phase("a client that stops sending its body gets RequestTimeout and nothing is stored");
    let presigned = tc
        .s3
        .put_object()
        .bucket("slow")
        .key("stalled")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).expect("config"))
        .await
        .expect("presign put");
    let mut request =
        raw_request("PUT", &presigned, "Content-Length: 1000000\r\n\r\n").into_bytes();
    request.extend(vec![b'x'; 100_000]);
    let started = Instant::now();
    let answer = exchange(&addr, &request, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "answer: {text}");
    assert!(
        text.contains("<Code>RequestTimeout</Code>"),
        "answer: {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let e = tc
        .s3
        .head_object()
        .bucket("slow")
        .key("stalled")
        .send()
        .await
        .expect_err("a stalled upload was stored");
    assert_eq!(error_status(&e), 404, "a stalled upload was stored");

    phase("a client that never finishes its headers is disconnected");
    let started = Instant::now();
    let answer = exchange(
        &addr,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        Duration::from_secs(20),
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "answer: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "connection held for {:?}",
        started.elapsed()
    );

    phase("an expired presigned URL is refused with 403");
    tc.s3
        .put_object()
        .bucket("slow")
        .key("doc")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .expect("put");
    let presigned = tc
        .s3
        .get_object()
        .bucket("slow")
        .key("doc")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(1)).expect("config"))
        .await
        .expect("presign get");
    let fresh = exchange(
        &addr,
        raw_request("GET", &presigned, "Connection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&fresh).starts_with("HTTP/1.1 200"),
        "fresh URL refused"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let expired = exchange(
        &addr,
        raw_request("GET", &presigned, "Connection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    let text = String::from_utf8_lossy(&expired);
    assert!(text.starts_with("HTTP/1.1 403"), "answer: {text}");
    assert!(text.contains("<Code>AccessDenied</Code>"), "answer: {text}");
}
