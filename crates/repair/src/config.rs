//! The repair daemon's typed config: a TOML file (see deploy/repair.toml), overridden by flags
//! and `TESSERA_*` variables. A config that passed `validate()` can run: in particular its
//! garbage-collection grace lies within the bounds meta enforces
//! ([`tessera_core::lease::validate_grace`]), so no claim is refused for its grace.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tessera_core::lease::{GraceError, validate_grace};

/// Everything `tessera repair` needs; unknown fields are rejected.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RepairConfig {
    /// Name of this daemon in reports, in its write lease and as the claimer of the shard copies
    /// it collects (unique per daemon, and kept across restarts so that it finds its own claims).
    pub id: String,
    /// Meta nodes (`host:port`).
    pub meta_endpoints: Vec<String>,
    /// Where `/metrics` (Prometheus) is served; none = not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Milliseconds between passes when the last pass found nothing to do.
    pub scan_interval_ms: u64,
    /// Garbage is collected once it has been garbage this many seconds, orphans once the write
    /// lease they were written under ended this many seconds ago, both by the meta clock. At
    /// least `MIN_GC_GRACE_MS` (30 s): a reader that fetched a manifest just before it became
    /// garbage has this long to finish.
    pub gc_grace_secs: u64,
    /// Blobs rebuilt at the same time.
    pub concurrency: usize,
    /// Cap on rebuilt bytes written per second; 0 = no cap.
    pub rate_bytes_per_sec: u64,
    /// Records visited per meta page.
    pub page_size: u32,
    /// Mutual TLS with meta and data nodes (`[tls]`): the cluster CA, this daemon's `repair`
    /// certificate and key. The `tessera repair` command requires it.
    pub tls: tessera_runtime::tls::TlsConfig,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            id: "repair-1".to_owned(),
            meta_endpoints: vec!["127.0.0.1:7001".to_owned()],
            metrics_listen: None,
            scan_interval_ms: 10_000,
            gc_grace_secs: 3600,
            concurrency: 16,
            rate_bytes_per_sec: 0,
            page_size: 1000,
            tls: Default::default(),
        }
    }
}

/// A setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RepairConfigError {
    /// The daemon has no name.
    #[error("invalid repair config: id must not be empty")]
    EmptyId,
    /// No meta node to talk to.
    #[error("invalid repair config: at least one meta endpoint is needed")]
    NoMetaEndpoints,
    /// `concurrency` is 0.
    #[error("invalid repair config: concurrency must be at least 1")]
    Concurrency,
    /// `page_size` is 0.
    #[error("invalid repair config: page size must be at least 1")]
    PageSize,
    /// `scan_interval_ms` is 0.
    #[error("invalid repair config: scan interval must be at least 1 ms")]
    ScanInterval,
    /// `gc_grace_secs` is outside the bounds meta accepts.
    #[error("invalid repair config: gc_grace_secs = {grace_secs}: {source}")]
    GcGrace {
        /// The grace configured, in seconds.
        grace_secs: u64,
        /// Which bound it breaks.
        source: GraceError,
    },
}

impl RepairConfigError {
    /// A stable identifier for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RepairConfigError::EmptyId => "repair_config_id",
            RepairConfigError::NoMetaEndpoints => "repair_config_meta_endpoints",
            RepairConfigError::Concurrency => "repair_config_concurrency",
            RepairConfigError::PageSize => "repair_config_page_size",
            RepairConfigError::ScanInterval => "repair_config_scan_interval",
            RepairConfigError::GcGrace { source, .. } => source.code(),
        }
    }

    /// Whether starting again could succeed: never, the settings do not change by themselves.
    pub fn is_retryable(&self) -> bool {
        match self {
            RepairConfigError::EmptyId
            | RepairConfigError::NoMetaEndpoints
            | RepairConfigError::Concurrency
            | RepairConfigError::PageSize
            | RepairConfigError::ScanInterval
            | RepairConfigError::GcGrace { .. } => false,
        }
    }
}

impl RepairConfig {
    /// Pause between idle passes.
    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_interval_ms)
    }

    /// The grace period claims carry, in milliseconds (saturating: an absurd value is refused by
    /// `validate` as too long rather than wrapping).
    pub fn gc_grace_ms(&self) -> u64 {
        self.gc_grace_secs.saturating_mul(1000)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RepairConfigError> {
        if self.id.is_empty() {
            return Err(RepairConfigError::EmptyId);
        }
        if self.meta_endpoints.is_empty() {
            return Err(RepairConfigError::NoMetaEndpoints);
        }
        if self.concurrency == 0 {
            return Err(RepairConfigError::Concurrency);
        }
        if self.page_size == 0 {
            return Err(RepairConfigError::PageSize);
        }
        if self.scan_interval_ms == 0 {
            return Err(RepairConfigError::ScanInterval);
        }
        validate_grace(self.gc_grace_ms()).map_err(|source| RepairConfigError::GcGrace {
            grace_secs: self.gc_grace_secs,
            source,
        })
    }
}

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
