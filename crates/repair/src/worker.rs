//! The daemon's loop: pass after pass until shutdown; a pass that rebuilt something is followed
//! at once by another (to confirm and report the result), an idle one by `scan_interval`.

use std::time::Instant;

use futures::StreamExt;
use tessera_client::{DataClient, MetaClient, MetaClientError};
use tessera_proto::meta::v1 as pb;
use tessera_runtime::Shutdown;
use tracing::{info, warn};

use crate::config::{RepairConfig, RepairConfigError};
use crate::gc;
use crate::metrics::{self, RepairStats};
use crate::rebuild::{RebuildCtx, RebuildOutcome, Throttle, rebuild};
use crate::scan;
use crate::view::ClusterView;
use tessera_runtime::clock::now_ms;

/// Why the daemon stopped or a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] RepairConfigError),
    /// Meta did not answer.
    #[error("meta: {0}")]
    Meta(#[from] MetaClientError),
    /// The metrics listener could not start.
    #[error("metrics listener: {0}")]
    Metrics(std::io::Error),
}

/// Runs the repair daemon until `shutdown`.
pub async fn run(config: RepairConfig, shutdown: Shutdown) -> Result<(), RepairError> {
    config.validate()?;
    let meta = MetaClient::new(config.meta_endpoints.clone());
    let data = DataClient::new();
    let stats = RepairStats::default();
    if let Some(addr) = config.metrics_listen {
        let listener = metrics::bind(addr).await.map_err(RepairError::Metrics)?;
        tokio::spawn(metrics::serve(listener, stats.clone(), shutdown.clone()));
    }
    let throttle = Throttle::new(config.rate_bytes_per_sec);
    info!(id = %config.id, "repair daemon started");
    while !shutdown.is_triggered() {
        let pause = match pass(&config, &meta, &data, &stats, &throttle, &shutdown).await {
            Ok(true) => std::time::Duration::from_millis(200),
            Ok(false) => config.scan_interval(),
            Err(e) => {
                warn!(error = %e, "repair pass failed; retrying after the scan interval");
                config.scan_interval()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.wait() => {}
        }
    }
    info!("repair daemon stopped");
    Ok(())
}

/// One pass; true if it rebuilt or moved anything.
async fn pass(
    config: &RepairConfig,
    meta: &MetaClient,
    data: &DataClient,
    stats: &RepairStats,
    throttle: &Throttle,
    shutdown: &Shutdown,
) -> Result<bool, RepairError> {
    stats.scan_started(now_ms());
    let mut view = ClusterView::load_nodes(meta).await?;
    let listed_at = now_ms();
    view.list_shards(data).await;
    let outcome = scan::scan(meta, &view, listed_at, config.page_size).await?;
    stats.scanned(&outcome.stats);
    publish(meta, stats, &config.id).await;
    if !outcome.work.is_empty() {
        info!(
            blobs = outcome.stats.blobs,
            work = outcome.work.len(),
            below_full = outcome.stats.below_full,
            unreadable = outcome.stats.unreadable,
            "repair work found"
        );
    }

    let started = Instant::now();
    let ctx = RebuildCtx {
        meta,
        data,
        view: &view,
        throttle,
    };
    let (mut shards, mut bytes, mut failures, mut superseded) = (0u64, 0u64, 0u64, 0u64);
    let mut committed = 0u64;
    {
        // Most at risk first: the work list is sorted by spare shards, and buffered streams
        // start futures in order.
        let mut results = futures::stream::iter(outcome.work.iter())
            .map(|w| {
                let ctx = &ctx;
                async move { (w, rebuild(ctx, w).await) }
            })
            .buffer_unordered(config.concurrency);
        while let Some((w, result)) = results.next().await {
            match result {
                Ok(RebuildOutcome::Committed {
                    shards: s,
                    bytes: b,
                }) => {
                    shards += s;
                    bytes += b;
                    committed += 1;
                }
                Ok(RebuildOutcome::Superseded) => superseded += 1,
                Err(e) => {
                    failures += 1;
                    warn!(data_id = %w.data_id, error = %e, "rebuild failed; retried next pass");
                }
            }
            if shutdown.is_triggered() {
                break;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    stats.rebuilt(shards, bytes, failures, superseded, seconds);
    if committed > 0 {
        info!(
            blobs = committed,
            shards,
            bytes,
            failures,
            superseded,
            seconds = format!("{seconds:.1}"),
            "repair work done"
        );
    }

    match gc::collect(
        meta,
        data,
        &view,
        &outcome,
        listed_at,
        config.gc_grace(),
        config.page_size,
    )
    .await
    {
        Ok(gc) => stats.collected(gc),
        Err(e) => warn!(error = %e, "garbage collection failed; retried next pass"),
    }
    stats.scan_finished(now_ms());
    publish(meta, stats, &config.id).await;
    Ok(committed > 0 || superseded > 0)
}

/// Stores the latest report in meta; a failure is only logged (the next pass retries).
async fn publish(meta: &MetaClient, stats: &RepairStats, id: &str) {
    let report = stats.report(id, now_ms());
    let cmd = pb::Command {
        cmd: Some(pb::command::Cmd::PutRepairReport(pb::PutRepairReport {
            report: Some(report),
        })),
        ..pb::Command::default()
    };
    if let Err(e) = meta.execute(cmd).await {
        warn!(error = %e, "publishing the repair report failed");
    }
}
