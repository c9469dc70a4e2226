//! The openraft type configuration of the meta group: node ids are `u64`, a node is known by its
//! address and zone, log payloads are `meta.v1.Command`s and their results `CommandResult`s.
//! Every one of these has a protobuf form (see `convert`), so nothing Rust-specific reaches disk.
//! Snapshot data is a file (`store::SnapshotFile`), streamed in chunks, never a buffer.

use std::fmt;

use tessera_proto::meta::v1::{Command, CommandResult};

use crate::store::SnapshotFile;

/// A meta node as Raft membership knows it; mirrors `raft.v1.MetaNode`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaNode {
    /// Address peers and clients reach it at ("host:port", no scheme).
    pub addr: String,
    /// Failure domain it runs in.
    pub zone: String,
}

impl fmt::Display for MetaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.addr, self.zone)
    }
}

openraft::declare_raft_types!(
    /// Types of the meta Raft group.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = MetaNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of a meta node.
pub type MetaRaft = openraft::Raft<TypeConfig>;
/// A log entry of the meta group.
pub type LogEntry = openraft::Entry<TypeConfig>;
/// A log id of the meta group.
pub type LogId = openraft::LogId<u64>;
/// A vote of the meta group.
pub type Vote = openraft::Vote<u64>;
/// A membership of the meta group.
pub type Membership = openraft::Membership<u64, MetaNode>;
/// A membership together with the log id that set it.
pub type StoredMembership = openraft::StoredMembership<u64, MetaNode>;
/// Metadata of a snapshot of the meta group.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, MetaNode>;
/// A storage error as openraft reports it.
pub type StorageError = openraft::StorageError<u64>;
