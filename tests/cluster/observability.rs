//! What an operator sees, through real processes: the gateway's Prometheus metrics (requests by
//! operation and status, latency histograms, bytes in and out, requests in flight) and
//! `tessera admin workers`, which lists every background worker of every process — data nodes'
//! scrubbers and heartbeats, the gateway's node refresh and write lease, the repair daemon's
//! pass — as reported to meta.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{TestCluster, error_status, pattern, phase};

/// The body of `GET /metrics` at `addr`.
async fn scrape(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("response");
    let text = String::from_utf8(raw).expect("utf-8");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").expect("body").1.to_owned()
}

/// The value of the sample whose line starts with `series` (name and labels), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_metrics_and_every_worker_of_every_process_are_visible() {
    let tc = TestCluster::start(2).await;
    let s3 = &tc.s3;
    let metrics_addr = tc
        .cluster
        .layout()
        .gateway()
        .and_then(|g| g.metrics_addr())
        .expect("the gateway serves metrics");

    phase("requests are counted by operation and status, timed, and their bytes summed");
    s3.create_bucket()
        .bucket("obs")
        .send()
        .await
        .expect("bucket");
    let body = pattern(1 << 20, 3);
    s3.put_object()
        .bucket("obs")
        .key("one")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put");
    let got = s3
        .get_object()
        .bucket("obs")
        .key("one")
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body");
    assert_eq!(got.into_bytes().len(), body.len());
    let missing = s3
        .get_object()
        .bucket("obs")
        .key("absent")
        .send()
        .await
        .expect_err("absent key");
    assert_eq!(error_status(&missing), 404);

    // A request is counted when its response body has been sent; give the last one a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = scrape(&metrics_addr).await;
        let done = sample(
            &m,
            "tessera_gateway_requests_total{operation=\"GetObject\",status=\"404\"}",
        )
        .is_some();
        if done || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (op, status) in [
        ("CreateBucket", "200"),
        ("PutObject", "200"),
        ("GetObject", "200"),
        ("GetObject", "404"),
    ] {
        let series =
            format!("tessera_gateway_requests_total{{operation=\"{op}\",status=\"{status}\"}}");
        assert!(
            sample(&metrics, &series).is_some_and(|v| v >= 1.0),
            "{series} missing in:\n{metrics}"
        );
    }
    assert!(
        sample(
            &metrics,
            "tessera_gateway_request_duration_seconds_count{operation=\"PutObject\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "tessera_gateway_request_duration_seconds_bucket{operation=\"GetObject\",le=\"+Inf\"}"
        ),
        "{metrics}"
    );
    let received = sample(&metrics, "tessera_gateway_received_bytes_total").unwrap_or(0.0);
    let sent = sample(&metrics, "tessera_gateway_sent_bytes_total").unwrap_or(0.0);
    assert!(received >= body.len() as f64, "received {received}");
    assert!(sent >= body.len() as f64, "sent {sent}");
    assert!(
        sample(&metrics, "tessera_gateway_requests_in_flight").is_some(),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "tessera_gateway_object_checksum_failures_total"),
        Some(0.0),
        "{metrics}"
    );

    phase("admin workers lists every worker of every process with its state");
    let expected: Vec<(&str, &str)> = [
        ("data", "scrub"),
        ("data", "heartbeat"),
        ("data", "worker-report"),
        ("gateway", "node-refresh"),
        ("gateway", "lease-keeper"),
        ("gateway", "worker-report"),
        ("repair", "repair"),
        ("repair", "lease-keeper"),
        ("repair", "worker-report"),
    ]
    .to_vec();
    let deadline = Instant::now() + Duration::from_secs(20);
    let table = loop {
        let table = tc.admin_ok(&["workers"]);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        let count = |role: &str, worker: &str| {
            rows.iter()
                .filter(|r| r.len() > 4 && r[0] == role && r[3] == worker)
                .count()
        };
        let data_nodes = tc.data_nodes().len();
        let complete = expected.iter().all(|(role, worker)| {
            let want = if *role == "data" { data_nodes } else { 1 };
            count(role, worker) == want
        });
        if complete || Instant::now() > deadline {
            break table;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (role, worker) in &expected {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(role) && l.split_whitespace().nth(3) == Some(worker)),
            "no {role} {worker} in:\n{table}"
        );
    }
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() > 4 && !line.contains("workers in") {
            assert!(
                ["active", "idle", "throttled", "starting"].contains(&cols[4]),
                "a worker in trouble: {line}"
            );
        }
    }
    assert!(table.contains("workers in"), "{table}");
}
