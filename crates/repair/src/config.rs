//! The repair daemon's typed config: a TOML file (see deploy/repair.toml), overridden by flags
//! and `TESSERA_*` variables. A config that passed `validate()` can run.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Everything `tessera repair` needs; unknown fields are rejected.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RepairConfig {
    /// Name of this daemon in reports (unique per daemon).
    pub id: String,
    /// Meta nodes (`host:port`).
    pub meta_endpoints: Vec<String>,
    /// Where `/metrics` (Prometheus) is served; none = not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Milliseconds between passes when the last pass found nothing to do.
    pub scan_interval_ms: u64,
    /// Shards of garbage and orphans younger than this many seconds are left alone; longer
    /// than any write takes to commit its manifest.
    pub gc_grace_secs: u64,
    /// Blobs rebuilt at the same time.
    pub concurrency: usize,
    /// Cap on rebuilt bytes written per second; 0 = no cap.
    pub rate_bytes_per_sec: u64,
    /// Records visited per meta page.
    pub page_size: u32,
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
    /// Pause between idle passes.
    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_interval_ms)
    }

    /// Age below which garbage and orphans are kept.
    pub fn gc_grace(&self) -> Duration {
        Duration::from_secs(self.gc_grace_secs)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RepairConfigError> {
        let invalid = |m: &str| Err(RepairConfigError::Invalid(m.to_owned()));
        if self.id.is_empty() {
            return invalid("id must not be empty");
        }
        if self.meta_endpoints.is_empty() {
            return invalid("at least one meta endpoint is needed");
        }
        if self.concurrency == 0 {
            return invalid("concurrency must be at least 1");
        }
        if self.page_size == 0 {
            return invalid("page size must be at least 1");
        }
        if self.scan_interval_ms == 0 {
            return invalid("scan interval must be at least 1 ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        RepairConfig::default().validate().expect("defaults");
        for bad in [
            RepairConfig {
                id: String::new(),
                ..RepairConfig::default()
            },
            RepairConfig {
                meta_endpoints: Vec::new(),
                ..RepairConfig::default()
            },
            RepairConfig {
                concurrency: 0,
                ..RepairConfig::default()
            },
            RepairConfig {
                scan_interval_ms: 0,
                ..RepairConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
