//! Typed clients for the meta and data services. The gateway and repair reach meta and data
//! only through this crate, so they never link openraft or RocksDB.
//!
//! - [`meta`]: one method per command and query, in core's domain types, with exactly-once
//!   command sessions and leader following.
//! - [`data`]: data-node calls on shard copies named with their generation.
//! - [`shard`]: the one shard writer and the one manifest-verifying shard reader.
//! - [`lease`]: the write-lease keeper every shard writer's process runs.
//! - [`workers`]: reporting a process's workers to meta.
//! - [`tls`]: mutual TLS between nodes and the role each gRPC method accepts.
//!
//! Invariant: wire types stop here: apart from the data node's scrub and ping answers, cluster
//! status, and repair and worker reports, every public signature speaks `tessera-core` types.

pub mod data;
pub mod lease;
pub mod meta;
pub mod shard;
pub mod tls;
pub mod workers;

#[cfg(test)]
mod testing;

pub use data::{DataClient, DataClientError, ShardId};
pub use lease::{LeaseConfig, LeaseError, LeaseGuard, LeaseHandle, LeaseKeeper};
pub use meta::{CommandError, MetaClient, MetaClientError};
pub use shard::{ShardReadFault, ShardWriteError, ShardWriter, VerifiedShardReader};

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Duration;

    use tessera_core::blob::Generation;
    use tessera_core::layout::Layout;
    use tessera_core::names::{BucketName, DataId};

    use super::*;

    fn send<T: Send + 'static>(_: &T) {}
    fn send_type<T: Send + Sync + 'static>() {}
    fn send_future<F: Future + Send>(_: F) {}

    /// The gateway spawns tasks and serves requests with futures that must be `Send`: every
    /// handle and call future of this crate is.
    #[tokio::test]
    async fn handles_and_call_futures_cross_tasks() {
        let meta = MetaClient::new(Vec::new());
        let data = DataClient::new();
        send(&meta);
        send(&data);
        let name = BucketName::parse("bkt").expect("name");
        send_future(meta.get_bucket(&name));
        send_future(meta.delete_bucket(&name));
        send_future(meta.grant_lease("h", Duration::from_secs(1)));
        let id = ShardId::new(
            DataId::from_bytes([1; 16]),
            0,
            Generation::new(1).expect("nonzero"),
        );
        let spec = shard::ShardWriteSpec::new(id, Layout::new(2, 1).expect("layout"), 8, 1);
        let mut writer = ShardWriter::open(&data, "127.0.0.1:1", spec).expect("open");
        send_future(writer.send_chunk(bytes::Bytes::from_static(b"12345678")));
        send(&writer);
        send_future(writer.commit());
        let read = shard::ShardReadSpec {
            id,
            expected_digest: [0; 32],
            chunks_per_shard: 1,
            chunk_size: 8,
            first_chunk: 0,
            chunk_count: 0,
            message_timeout: Duration::from_secs(1),
        };
        send_future(VerifiedShardReader::open(&data, "127.0.0.1:1", read));
        send_type::<LeaseHandle>();
        send_type::<LeaseGuard>();
        send_type::<VerifiedShardReader>();
        send_type::<ShardWriter>();
    }
}
