//! Tessera's data node: shard files on local disk (shard file format 2 of
//! `tessera_core::shard_file`: header, chunks, a hash table whose entries bind each chunk to its
//! blob, shard and position, and a footer with the table's digest), served over gRPC
//! (`tessera.data.v1.DataService`), checked by a scrubber.
//!
//! Invariant: a copy is visible only once every chunk matched its chunk hash, the writer's
//! digest matched the hashes received, and the file and its directory were fsync'd; a stored
//! copy is never replaced; a chunk that no longer matches its table entry is never served, and
//! a copy the scrubber finds damaged is quarantined so repair rebuilds it. The node checks
//! everything it can check alone; whether a copy's digest is the one its blob's manifest
//! records is for readers and repair to check.
//!
//! Modules depend on each other in one direction only, each on those listed before it:
//! 1. [`shard_key`] (copy names and file names), [`shard_limits`];
//! 2. [`store_error`];
//! 3. `shard_dir` (folder layout, usage counter, publish/remove/quarantine under one lock);
//! 4. [`shard_reader`], [`shard_writer`], `shard_walk` (each uses `shard_dir` only: a writer
//!    publishes through it, never through the store);
//! 5. [`store`] (opens and locks the folder, hands out readers and writers);
//! 6. [`scrub_state`], [`scrub_throttle`], `scrub_check`, [`scrub`];
//! 7. [`service`], [`membership`];
//! 8. [`config`], [`node`].

pub mod config;
pub mod membership;
pub mod node;
pub mod scrub;
mod scrub_check;
pub mod scrub_state;
pub mod scrub_throttle;
pub mod service;
mod shard_dir;
pub mod shard_key;
pub mod shard_limits;
pub mod shard_reader;
mod shard_walk;
pub mod shard_writer;
pub mod store;
pub mod store_error;
#[cfg(test)]
mod test_support;

pub use config::DataConfig;
pub use node::{DataNodeError, run, run_on, run_with_registry};
pub use scrub::{CorruptFinding, CorruptReason, ScrubConfig, ScrubHandle, ScrubStatus, Scrubber};
pub use scrub_state::ScrubCursor;
pub use scrub_throttle::{ClientLoad, ClientLoadGuard};
pub use service::DataServiceImpl;
pub use shard_dir::StoreUsage;
pub use shard_key::ShardKey;
pub use shard_reader::{ChunkRead, HashTable, ShardReader, ShardStat};
pub use shard_writer::{ShardWriter, WrittenShard};
pub use store::{ListedFile, ListedShard, ShardListing, ShardStore};
pub use store_error::ShardStoreError;
