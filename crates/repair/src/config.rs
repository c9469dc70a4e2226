//! The repair daemon's settings.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything `tessera repair` needs.
#[derive(Clone, Debug)]
pub struct RepairConfig {
    /// Name of this daemon in reports (unique per daemon).
    pub id: String,
    /// Meta nodes (`host:port`).
    pub meta_endpoints: Vec<String>,
    /// Where `/metrics` (Prometheus) is served; none = not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Pause between passes when the last pass found nothing to do.
    pub scan_interval: Duration,
    /// Shards of garbage and orphans younger than this are left alone.
    pub gc_grace: Duration,
    /// Blobs rebuilt at the same time.
    pub concurrency: usize,
    /// Cap on rebuilt bytes written per second; 0 = no cap.
    pub rate_bytes_per_sec: u64,
    /// Blobs visited per meta page.
    pub page_size: u32,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            id: "repair-1".to_owned(),
            meta_endpoints: vec!["127.0.0.1:7001".to_owned()],
            metrics_listen: None,
            scan_interval: Duration::from_secs(10),
            gc_grace: Duration::from_secs(3600),
            concurrency: 4,
            rate_bytes_per_sec: 0,
            page_size: 1000,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum RepairConfigError {
    /// Something is out of range.
    #[error("invalid repair config: {0}")]
    Invalid(String),
}

impl RepairConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RepairConfigError> {
        if self.id.is_empty() {
            return Err(RepairConfigError::Invalid("id must not be empty".into()));
        }
        if self.meta_endpoints.is_empty() {
            return Err(RepairConfigError::Invalid(
                "at least one meta endpoint is needed".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(RepairConfigError::Invalid(
                "concurrency must be at least 1".into(),
            ));
        }
        if self.page_size == 0 {
            return Err(RepairConfigError::Invalid(
                "page size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
