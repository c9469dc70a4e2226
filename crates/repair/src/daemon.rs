//! The daemon's process: one [`WorkerRegistry`] holding the repair pass worker, the write-lease
//! keeper (holder `repair <id>`) and the reporter that sends every worker's status to meta, one
//! byte-rate limiter for rebuilt data, and the bounded `/metrics` server.
//!
//! Invariant: the daemon starts only with a valid config and a readable fault hook, and its
//! metrics address is bound before any worker starts (a bad address fails the start); after
//! shutdown, `run` returns only once every worker it started has stopped.

use std::sync::Arc;

use tessera_client::lease::LeaseConfigError;
use tessera_client::meta::{FaultPlan, FaultSpecError};
use tessera_client::workers::{ProcessIdentity, WorkerReporter};
use tessera_client::{DataClient, LeaseConfig, LeaseKeeper, MetaClient};
use tessera_runtime::Shutdown;
use tessera_runtime::clock::now_ms;
use tessera_runtime::metrics_server::serve_metrics;
use tessera_runtime::rate::SharedRateLimiter;
use tessera_runtime::worker::{WorkerRegistry, spawn_worker};
use tracing::info;

use crate::config::{RepairConfig, RepairConfigError};
use crate::metrics::RepairStats;
use crate::worker::RepairWorker;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] RepairConfigError),
    /// The meta fault hook's environment value names an unknown command.
    #[error(transparent)]
    Fault(#[from] FaultSpecError),
    /// The write-lease pacing is inconsistent.
    #[error(transparent)]
    Lease(#[from] LeaseConfigError),
    /// The metrics listener could not start.
    #[error("metrics listener: {0}")]
    Metrics(std::io::Error),
    /// The mutual-TLS files are incomplete, unreadable or not the repair daemon's.
    #[error("tls: {0}")]
    Tls(#[from] tessera_runtime::tls::TlsError),
}

impl RepairError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RepairError::Config(e) => e.code(),
            RepairError::Fault(e) => e.code(),
            RepairError::Lease(e) => e.code(),
            RepairError::Metrics(_) => "repair_metrics_listener",
            RepairError::Tls(_) => "repair_tls",
        }
    }

    /// Whether starting again may succeed: only a listener whose address may free up.
    pub fn is_retryable(&self) -> bool {
        match self {
            RepairError::Config(_)
            | RepairError::Fault(_)
            | RepairError::Lease(_)
            | RepairError::Tls(_) => false,
            RepairError::Metrics(_) => true,
        }
    }
}

/// Runs the repair daemon until `shutdown`.
pub async fn run(config: RepairConfig, shutdown: Shutdown) -> Result<(), RepairError> {
    config.validate()?;
    let tls =
        tessera_client::tls::ClusterTls::optional(&config.tls, tessera_runtime::tls::Role::Repair)?;
    let meta = MetaClient::with_tls(config.meta_endpoints.clone(), tls.as_ref())
        .with_fault(FaultPlan::from_env()?);
    let data = DataClient::with_tls(tls);
    let keeper = LeaseKeeper::new(
        meta.clone(),
        LeaseConfig::new(format!("repair {}", config.id)),
    )?;
    let listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(RepairError::Metrics)?,
        ),
        None => None,
    };
    let metrics_addr = match &listener {
        Some(l) => l.local_addr().map_err(RepairError::Metrics)?.to_string(),
        None => String::new(),
    };

    let stats = RepairStats::default();
    let registry = WorkerRegistry::new();
    let (lease, keeper) = keeper.spawn(&registry, shutdown.clone());
    let process = ProcessIdentity {
        role: "repair".to_owned(),
        id: config.id.clone(),
        zone: String::new(),
        addr: metrics_addr.clone(),
    };
    let reporter = spawn_worker(
        WorkerReporter::new(meta.clone(), process, registry.clone()),
        &registry,
        shutdown.clone(),
    );
    let limiter = SharedRateLimiter::new(config.rate_bytes_per_sec);
    let id = config.id.clone();
    let repair = spawn_worker(
        RepairWorker::new(config, meta, data, lease, limiter, stats.clone()),
        &registry,
        shutdown.clone(),
    );
    let server = listener.map(|listener| {
        info!(addr = %metrics_addr, "metrics listening");
        let render = Arc::new(move || stats.prometheus(now_ms()));
        tokio::spawn(serve_metrics(listener, render, shutdown.clone()))
    });
    info!(id = %id, "repair daemon started");

    shutdown.wait().await;
    repair.stopped().await;
    reporter.stopped().await;
    keeper.stopped().await;
    if let Some(server) = server {
        let _ = server.await;
    }
    info!(id = %id, "repair daemon stopped");
    Ok(())
}

#[cfg(test)]
#[path = "daemon_test.rs"]
mod tests;
