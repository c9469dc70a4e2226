//! The pipeline's counters: shard copies a read had to read around, and shard streams a write
//! lost, by the fault's stable code.
//!
//! Invariant: every shard a read gives up on, and every shard stream a write drops, is counted
//! exactly once, under the code of the fault that made it give up.

use tessera_runtime::metrics::CounterVec;

/// The pipeline's counters (rendered with the gateway's other metrics).
#[derive(Debug)]
pub struct PipelineMetrics {
    /// Shard copies a read gave up on (missing, not matching the manifest, node down), by code.
    pub shard_read_faults: CounterVec,
    /// Shard streams a write dropped, by code.
    pub shard_write_failures: CounterVec,
}

impl PipelineMetrics {
    /// Counters at zero.
    pub fn new() -> Self {
        Self {
            shard_read_faults: CounterVec::new(
                "tessera_gateway_shard_read_faults_total",
                "Shard copies a read gave up on and read around, by fault.",
                &["code"],
            ),
            shard_write_failures: CounterVec::new(
                "tessera_gateway_shard_write_failures_total",
                "Shard streams a write dropped, by fault.",
                &["code"],
            ),
        }
    }

    /// How many read faults of `code` were counted.
    pub fn read_faults(&self, code: &str) -> u64 {
        self.shard_read_faults.with(&[code]).get()
    }

    /// Appends the exposition of every counter to `out`.
    pub fn render(&self, out: &mut String) {
        self.shard_read_faults.render(out);
        self.shard_write_failures.render(out);
    }
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        Self::new()
    }
}
