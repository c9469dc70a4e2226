//! Metrics server tests over real 127.0.0.1 sockets with raw HTTP/1.1, so that what a scraper
//! and a misbehaving client see is checked byte for byte; timeouts are shortened through
//! `MetricsServerConfig`.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running server: its address, its shutdown, and how many times it rendered.
struct Server {
    addr: std::net::SocketAddr,
    shutdown: Shutdown,
    renders: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

const BODY: &str = "# HELP up Up.\n# TYPE up gauge\nup 1\n";

async fn start(config: MetricsServerConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let renders = Arc::new(AtomicUsize::new(0));
    let render: RenderMetrics = {
        let renders = Arc::clone(&renders);
        Arc::new(move || {
            renders.fetch_add(1, Ordering::Relaxed);
            BODY.to_owned()
        })
    };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve_metrics_with(
        listener,
        render,
        shutdown.clone(),
        config,
    ));
    Server {
        addr,
        shutdown,
        renders,
        task,
    }
}

/// Sends `request` on a fresh connection and reads until the server closes it.
async fn exchange(server: &Server, request: &str) -> String {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("the server closes the connection after one response")
        .unwrap();
    String::from_utf8(response).unwrap()
}

/// Waits up to `limit` for the server to close `stream`; how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {limit:?}"),
            Ok(Ok(0)) => return started.elapsed(),
            // A connection reset (the server dropped it with bytes unread) counts as closed too.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return started.elapsed();
            }
            Ok(Err(e)) => panic!("reading the connection failed otherwise than by a reset: {e}"),
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether `stream` is still open (nothing read, no close) after `wait`.
async fn still_open(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(wait, stream.read(&mut buf))
        .await
        .is_err()
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn short_timeouts() -> MetricsServerConfig {
    MetricsServerConfig {
        max_connections: 64,
        header_read_timeout: Duration::from_millis(200),
        connection_timeout: Duration::from_secs(2),
    }
}

#[test]
fn defaults_match_the_documented_bounds() {
    let config = MetricsServerConfig::default();
    assert_eq!(config.max_connections, 64);
    assert_eq!(config.header_read_timeout, Duration::from_secs(5));
    assert_eq!(config.connection_timeout, Duration::from_secs(10));
}

#[tokio::test]
async fn a_scrape_gets_the_rendered_metrics() {
    let server = start(short_timeouts()).await;
    let response = exchange(&server, "GET /metrics HTTP/1.1\r\nHost: node\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert_eq!(header(&response, "content-type"), Some(CONTENT_TYPE));
    assert_eq!(header(&response, "connection"), Some("close"));
    assert_eq!(body(&response), BODY);

    // A query string does not change the path; every scrape renders afresh.
    let response = exchange(&server, "GET /metrics?debug=1 HTTP/1.1\r\nHost: n\r\n\r\n").await;
    assert_eq!(body(&response), BODY);
    assert_eq!(server.renders.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn head_gets_the_headers_without_a_body() {
    let server = start(short_timeouts()).await;
    let response = exchange(&server, "HEAD /metrics HTTP/1.1\r\nHost: n\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert_eq!(header(&response, "content-type"), Some(CONTENT_TYPE));
    assert_eq!(body(&response), "");
}

#[tokio::test]
async fn other_paths_are_not_found() {
    let server = start(short_timeouts()).await;
    for path in ["/", "/metrics/", "/metricsx", "/debug/pprof"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: n\r\n\r\n");
        let response = exchange(&server, &request).await;
        assert!(
            response.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{path}: {response}"
        );
        assert_eq!(body(&response), "not found\n");
    }
    assert_eq!(server.renders.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn other_methods_are_not_allowed_and_their_bodies_are_not_read() {
    let server = start(short_timeouts()).await;
    for method in ["POST", "PUT", "DELETE"] {
        // The body announced is never sent: the server answers without waiting for it.
        let request =
            format!("{method} /metrics HTTP/1.1\r\nHost: n\r\nContent-Length: 1000000\r\n\r\n");
        let started = Instant::now();
        let response = exchange(&server, &request).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{method} waited for a body"
        );
        assert!(
            response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{method}: {response}"
        );
        assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
    }
    assert_eq!(server.renders.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_silent_client_is_disconnected_after_the_header_timeout() {
    let server = start(short_timeouts()).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let waited = closed_within(&mut silent, Duration::from_secs(1)).await;
    assert!(
        waited >= Duration::from_millis(150),
        "closed too early: {waited:?}"
    );

    // Half a request head is no better than none.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: n\r\n")
        .await
        .unwrap();
    closed_within(&mut slow, Duration::from_secs(1)).await;
    assert_eq!(server.renders.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn no_connection_outlives_the_connection_timeout() {
    let server = start(MetricsServerConfig {
        header_read_timeout: Duration::from_secs(30),
        connection_timeout: Duration::from_millis(300),
        ..short_timeouts()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let waited = closed_within(&mut silent, Duration::from_secs(2)).await;
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let server = start(MetricsServerConfig {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        connection_timeout: Duration::from_secs(30),
    })
    .await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let waited = closed_within(&mut third, Duration::from_secs(1)).await;
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    assert!(still_open(&mut first, Duration::from_millis(100)).await);
    assert!(still_open(&mut second, Duration::from_millis(100)).await);

    // Once one of them goes, a new scraper is served again.
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = exchange(&server, "GET /metrics HTTP/1.1\r\nHost: n\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
}

#[tokio::test]
async fn shutdown_stops_the_server_and_drops_open_connections() {
    let server = start(MetricsServerConfig {
        header_read_timeout: Duration::from_secs(30),
        connection_timeout: Duration::from_secs(30),
        ..short_timeouts()
    })
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert!(still_open(&mut idle, Duration::from_millis(100)).await);
    server.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(1), server.task)
        .await
        .expect("the server returns on shutdown")
        .unwrap();
    closed_within(&mut idle, Duration::from_secs(1)).await;
    // The listener went with the server: nobody accepts any more.
    let refused = TcpStream::connect(server.addr)
        .await
        .expect_err("nobody listens after shutdown");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}
