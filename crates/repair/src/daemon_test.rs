use std::time::Duration;

use tessera_core::lease::GraceError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[tokio::test]
async fn an_invalid_grace_stops_the_daemon_before_it_starts() {
    let config = RepairConfig {
        gc_grace_secs: 0,
        ..RepairConfig::default()
    };
    let result = run(config, Shutdown::new()).await;
    assert!(
        matches!(
            result,
            Err(RepairError::Config(RepairConfigError::GcGrace {
                grace_secs: 0,
                source: GraceError::TooShort { grace_ms: 0 },
            }))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_taken_metrics_address_stops_the_daemon_before_it_starts() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = RepairConfig {
        metrics_listen: Some(taken.local_addr().expect("addr")),
        ..RepairConfig::default()
    };
    let result = run(config, Shutdown::new()).await;
    assert!(
        matches!(
            &result,
            Err(RepairError::Metrics(e)) if e.kind() == std::io::ErrorKind::AddrInUse
        ),
        "{result:?}"
    );
    assert_eq!(
        result.err().map(|e| e.code()),
        Some("repair_metrics_listener")
    );
}

async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// The daemon serves its metrics while meta is unreachable (passes fail and back off), and
/// returns once shutdown has stopped every worker.
#[tokio::test]
async fn the_daemon_serves_metrics_and_stops_on_shutdown() {
    // A free port: bound on :0, then released for the daemon.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let config = RepairConfig {
        meta_endpoints: vec!["127.0.0.1:1".to_owned()],
        metrics_listen: Some(addr),
        ..RepairConfig::default()
    };
    let shutdown = Shutdown::new();
    let daemon = tokio::spawn(run(config, shutdown.clone()));
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(text) = get(addr, "/metrics").await {
            body = text;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("tessera_repair_backlog 0\n"), "{body}");
    assert!(body.contains("tessera_repair_scans_total 0\n"), "{body}");
    let missing = get(addr, "/other").await.expect("404 answer");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    shutdown.trigger();
    let stopped = tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("stopped within 10 s")
        .expect("joined");
    assert!(stopped.is_ok(), "{stopped:?}");
    let refused = get(addr, "/metrics")
        .await
        .expect_err("still serving after shutdown");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}
