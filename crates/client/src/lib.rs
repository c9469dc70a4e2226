//! Typed clients for the meta and data services. The gateway and repair reach meta and data
//! only through this crate, so they never link openraft or RocksDB.
//!
//! - [`meta`]: one method per command and query, in core's domain types, with exactly-once
//!   command sessions and leader following.
//! - [`data`]: data-node calls on shard copies named with their generation.
//! - [`shard`]: the one shard writer and the one manifest-verifying shard reader.
//! - [`lease`]: the write-lease keeper every shard writer's process runs.
//! - [`workers`]: reporting a process's workers to meta.
//!
//! Invariant: wire types stop here: apart from the data node's scrub and ping answers, cluster
//! status, and repair and worker reports, every public signature speaks `tessera-core` types.

pub mod data;
pub mod lease;
pub mod meta;
pub mod shard;
pub mod workers;

#[cfg(test)]
mod testing;

pub use data::{DataClient, DataClientError, ShardId};
pub use lease::{LeaseConfig, LeaseError, LeaseGuard, LeaseHandle, LeaseKeeper};
pub use meta::{CommandError, MetaClient, MetaClientError};
pub use shard::{ShardReadFault, ShardWriteError, ShardWriter, VerifiedShardReader};
