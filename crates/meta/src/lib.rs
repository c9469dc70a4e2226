//! Tessera's meta node: buckets, object versions, multipart uploads and cluster membership in a
//! Raft-replicated state machine (openraft over gRPC, RocksDB on disk). Every change is one
//! Raft entry applied deterministically; every read is linearizable through the leader. Only
//! this crate links openraft and RocksDB; everyone else reaches it through
//! `tessera_client::MetaClient`.
//!
//! Modules: `types` (Raft type config), `convert` (openraft ⇄ protobuf), `store` (RocksDB log,
//! state machine, snapshots), `kv` (the key-value view rules and queries read), `keys`
//! (state-machine key layout), `apply` (command rules), `session` (exactly-once commands),
//! `meta_clock` (the state machine's clock), `records` (typed reads), `query` (reads, S3
//! listings, blob scans), `liveness` (data-node liveness from heartbeats),
//! `network` / `raft_service` (Raft over gRPC),
//! `meta_service` (MetaService with leader forwarding), `worker_reports` (processes' worker
//! reports in memory), `node` (start and stop).

mod apply;
mod channels;
mod command_policy;
pub mod config;
pub mod convert;
pub mod error;
pub mod key_service;
pub mod keys;
mod kms_keys;
pub mod kv;
pub mod liveness;
pub mod meta_clock;
mod meta_service;
mod network;
pub mod node;
pub mod query;
mod raft_service;
mod records;
mod rewrap;
pub mod session;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod types;
pub mod worker_reports;

pub use config::{MetaConfig, MetaConfigError, MetaPeer};
pub use error::{MetaNodeError, StoreError};
pub use liveness::LivenessTimeouts;
pub use node::{run, serve, serve_with_raft_config};
pub use store::MetaStore;
pub use types::{MetaNode, MetaRaft, TypeConfig};
