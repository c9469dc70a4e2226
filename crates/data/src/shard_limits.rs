//! The limits of what this store writes, and the check that a header keeps to them.
//!
//! Invariant: every header the store writes passes [`check_geometry`], and so does every
//! header it serves: a stored header that breaks it was not written by this store.

use tessera_core::shard_file::{HASH_LEN, ShardFileHeader};

/// Largest chunk the store accepts. Writers use chunks of at most 1 MiB; we accept up to 4 MiB
/// so a chunk message stays well inside the 16 MiB gRPC message limit of client and server.
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;

/// Most chunks one shard may have: its hash table ([`HASH_LEN`] bytes a chunk, 8 MiB at this
/// limit) goes to readers in one message and is held by the writer until commit. At 1 MiB
/// chunks that is 256 GiB per shard.
pub const MAX_SHARD_CHUNKS: u64 = 8 * 1024 * 1024 / HASH_LEN;

/// Checks a header's geometry (the rules `ShardFileHeader::decode` applies, plus the store's
/// chunk-size limit); `Err(reason)` names the first rule it breaks.
pub fn check_geometry(header: &ShardFileHeader) -> Result<(), &'static str> {
    let layout = header
        .layout()
        .map_err(|_| "data_shards and parity_shards do not make a valid layout")?;
    if header.shard_index >= layout.total_shards() {
        return Err("shard_index must be below data_shards + parity_shards");
    }
    if header.chunk_size == 0 {
        return Err("chunk_size must be at least 1");
    }
    if header.chunk_size > MAX_CHUNK_SIZE {
        return Err("chunk_size exceeds the store's maximum");
    }
    if header.generation == 0 {
        return Err("generation must be nonzero");
    }
    Ok(())
}
