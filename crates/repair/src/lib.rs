//! The repair daemon: scans every committed blob, compares its placement with what the data
//! nodes hold, rebuilds what is missing, corrupt, on dead or draining nodes, or off the full
//! zone spread, and collects garbage (shards of deleted versions and orphans of failed writes).
//!
//! One pass: (1) read the cluster view from meta, (2) list every live data node's shards,
//! (3) page through every committed blob in meta and plan each with
//! [`tessera_core::repair::plan`], (4) rebuild the blobs that need it, fewest spare shards
//! first, each committed through meta's compare-and-set on the placement, (5) collect garbage,
//! (6) publish a [`RepairReport`](tessera_proto::meta::v1::RepairReport) to meta and the same
//! figures as Prometheus metrics.
//!
//! Safety: a rebuild only ever writes shard copies that no committed placement references yet,
//! then swaps the placement with compare-and-set, so two daemons racing on one blob cannot
//! corrupt it (the loser's copies become orphans). Garbage collection claims a copy in meta
//! (which refuses if any placement references it, and afterwards refuses placements that use
//! it) before deleting it, so a referenced shard is never deleted.

mod config;
mod gc;
mod metrics;
mod rebuild;
mod scan;
mod view;
mod worker;

pub use config::{RepairConfig, RepairConfigError};
pub use metrics::RepairStats;
pub use worker::{RepairError, run};
