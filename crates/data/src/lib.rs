//! Tessera's data node: shard files on local disk, each chunk stored beside its blake3 hash,
//! served over gRPC (`tessera.data.v1.DataService`).
//!
//! Invariant: a shard is visible only once every chunk was verified and the file and its
//! directory were fsync'd; a chunk that no longer matches its hash is never served.

pub mod config;
pub mod node;
pub mod service;
pub mod shard_reader;
pub mod shard_writer;
pub mod store;
pub mod store_error;

pub use config::DataConfig;
pub use node::{DataNodeError, run, run_on};
pub use service::DataServiceImpl;
pub use shard_reader::{ChunkRead, ShardReader};
pub use shard_writer::{ShardWriter, WrittenShard};
pub use store::{ShardKey, ShardStat, ShardStore, StoreUsage};
pub use store_error::ShardStoreError;
