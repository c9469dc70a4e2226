//! The one implementation of shard streams, used by the gateway's pipelines and by repair:
//! [`ShardWriter`] writes one copy of one shard, [`VerifiedShardReader`] reads chunks of one
//! copy and checks them against the blob's manifest.
//!
//! Invariant: bytes are trusted only against the manifest. The writer computes every chunk's
//! bound hash and the shard digest from the bytes it sends and accepts the node's answer only
//! if it names the same chunk count and digest; the reader accepts a node's hash table only if
//! its digest is the manifest's, and a chunk only if it matches its table entry at its own
//! index. No call waits on a node longer than its stall timeout.

mod reader;
mod writer;

#[cfg(test)]
#[path = "reader_test.rs"]
mod reader_test;
#[cfg(test)]
#[path = "writer_test.rs"]
mod writer_test;

pub use reader::{
    READ_MESSAGE_TIMEOUT, ShardReadFault, ShardReadSpec, VerifiedChunk, VerifiedShardReader,
};
pub use writer::{
    SHARD_QUEUE_CHUNKS, ShardWriteError, ShardWriteSpec, ShardWriter, WRITE_STALL_TIMEOUT,
    WrittenShard,
};
