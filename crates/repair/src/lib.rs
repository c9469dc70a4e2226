//! The repair daemon: scans every committed blob, compares its placement with what the data
//! nodes hold, rebuilds what is missing, corrupt, on dead or draining nodes, or off the full
//! zone spread, and collects garbage (copies of deleted versions and orphans of failed writes).
//!
//! One pass (the `repair` worker, see `worker`): (1) read meta's membership and applied log
//! index, then list every live data node's exact shard copies; (2) page through every committed
//! blob and judge each placed copy against the manifest (exact generation, manifest digest),
//! planning each blob with [`tessera_core::repair::plan`]; (3) rebuild the blobs that need it,
//! fewest spare shards first, each committed through meta's compare-and-set on the placement;
//! (4) collect garbage through exact claims that meta grants by its own clock; (5) publish a
//! [`RepairReport`](tessera_proto::meta::v1::RepairReport) to meta and the same figures as
//! Prometheus metrics.
//!
//! Safety: a rebuild reads only copies verified against the manifest and writes only new
//! generations, under a live write lease, then swaps the placement with compare-and-set on the
//! exact copies scanned, so two daemons racing on one blob cannot corrupt it (the loser's copies
//! become orphans). Garbage collection claims an exact copy in meta (which refuses if any
//! placement references it or its grace has not passed by the meta clock, and afterwards refuses
//! placements that use it) before deleting exactly that generation, so a referenced shard is
//! never deleted.

mod config;
mod daemon;
mod gc;
mod metrics;
mod rebuild;
mod scan;
mod view;
mod worker;

#[cfg(test)]
mod fixtures;

pub use config::{RepairConfig, RepairConfigError};
pub use daemon::{RepairError, run};
pub use metrics::RepairStats;
