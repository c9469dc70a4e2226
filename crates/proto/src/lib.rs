//! Tessera's gRPC wire types, generated from proto/ (packages end in `.v1`, so formats can
//! evolve side by side). Generated types stay in this crate, the clients and the thin service
//! adapters; `convert` holds the conversions to core types.
#![allow(missing_docs, clippy::all)]

/// Data-node service and shard messages.
pub mod data {
    /// Version 1 of the data-node wire format.
    pub mod v1 {
        tonic::include_proto!("tessera.data.v1");
    }
}

/// Metadata service, records and Raft commands.
pub mod meta {
    /// Version 1 of the metadata wire and storage format.
    pub mod v1 {
        tonic::include_proto!("tessera.meta.v1");
    }
}

/// Raft RPCs between meta nodes and the on-disk form of log entries.
pub mod raft {
    /// Version 1 of the Raft wire and log format.
    pub mod v1 {
        tonic::include_proto!("tessera.raft.v1");
    }
}

pub mod convert;
