//! Tessera's data node: shard files on local disk, each chunk stored beside its blake3 hash,
//! served over gRPC (`tessera.data.v1.DataService`).
//!
//! Invariant: a shard is visible only once every chunk was verified and the file and its
//! directory were fsync'd; a chunk that no longer matches its hash is never served, and a
//! shard the scrubber finds damaged is quarantined so repair rebuilds it.

pub mod config;
pub mod node;
pub mod scrub;
pub mod scrub_state;
pub mod scrub_throttle;
pub mod service;
pub mod shard_reader;
mod shard_walk;
pub mod shard_writer;
pub mod store;
pub mod store_error;

pub use config::DataConfig;
pub use node::{DataNodeError, run, run_on};
pub use scrub::{CorruptFinding, CorruptReason, ScrubConfig, ScrubHandle, ScrubStatus, Scrubber};
pub use scrub_state::ScrubCursor;
pub use scrub_throttle::{ClientLoad, ClientLoadGuard, RateLimiter, pace_delay};
pub use service::DataServiceImpl;
pub use shard_reader::{ChunkRead, ShardReader};
pub use shard_writer::{ShardWriter, WrittenShard};
pub use store::{
    ListedFile, ListedShard, ShardKey, ShardListing, ShardStat, ShardStore, StoreUsage,
};
pub use store_error::ShardStoreError;
