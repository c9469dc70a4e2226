//! Blobs: the bytes of one object version or one multipart part, stored inline in metadata or
//! as Reed-Solomon shards on data nodes, as the manifest records them.
//!
//! Invariant: an [`ErasureBlob`] that exists has a valid layout, a nonzero chunk size, one
//! shard digest per shard index, and copies whose indices lie below n, each naming exactly one
//! stored file (node and generation); no two copies are the same (index, node) pair. A reader
//! trusts a node's bytes only after checking them against these digests.

use std::collections::BTreeSet;
use std::fmt;

use crate::layout::Layout;
use crate::names::{DataId, NodeId};
use crate::sealing::Sealing;
use crate::shard_file::{DIGEST_LEN, ShardDigest};

/// One write of one shard copy. Every write picks a fresh random nonzero generation, so a
/// rewrite of a shard on the same node is a different file: reads, deletions and claims name
/// exactly one file and can never hit a newer one by mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(u64);

impl Generation {
    /// A generation from its number; `None` for 0, which never names a file.
    pub fn new(value: u64) -> Option<Generation> {
        (value != 0).then_some(Generation(value))
    }

    /// A fresh generation from 8 random bytes (callers bring the randomness; core has none).
    pub fn from_random(random: u64) -> Generation {
        Generation(random.max(1))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One stored copy of one shard: shard `shard_index` on node `node`, written as `generation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardCopy {
    /// Which of the n shards (data shards first).
    pub shard_index: u32,
    /// The data node holding it.
    pub node: NodeId,
    /// The write that made the file.
    pub generation: Generation,
}

impl fmt::Display for ShardCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shard {}@node {} gen {}",
            self.shard_index, self.node, self.generation
        )
    }
}

/// One exact shard file on one node: what a listing finds and what garbage collection claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardRef {
    /// The blob.
    pub data_id: DataId,
    /// Which copy (index, node, generation).
    pub copy: ShardCopy,
    /// The write lease its writer held, from the file's header (0: none).
    pub lease_id: u64,
}

/// Why a blob record is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// k and m do not make a layout.
    #[error("invalid layout RS({data_shards},{parity_shards})")]
    Layout {
        /// k.
        data_shards: u32,
        /// m.
        parity_shards: u32,
    },
    /// The chunk size is 0.
    #[error("chunk size must be at least 1")]
    ChunkSize,
    /// A copy's index is not below n.
    #[error("shard index {index} is outside the blob's {total} shards")]
    ShardIndex {
        /// The index.
        index: u32,
        /// n.
        total: u32,
    },
    /// Two copies of one index on one node.
    #[error("shard {index} is placed twice on node {node}")]
    DuplicateCopy {
        /// The index.
        index: u32,
        /// The node.
        node: NodeId,
    },
    /// The digests do not cover exactly the n shards, or one is not 32 bytes.
    #[error("expected {expected} shard digests of {DIGEST_LEN} bytes")]
    Digests {
        /// n.
        expected: u32,
    },
    /// A generation of 0.
    #[error("a shard copy's generation must be nonzero")]
    Generation,
    /// A data id that is not 16 bytes.
    #[error("a data id is 16 bytes, got {len}")]
    DataId {
        /// The length found.
        len: usize,
    },
    /// The blob has neither inline bytes nor shards.
    #[error("blob has no storage")]
    NoStorage,
}

impl BlobError {
    /// A stable identifier for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            BlobError::Layout { .. } => "blob_layout",
            BlobError::ChunkSize => "blob_chunk_size",
            BlobError::ShardIndex { .. } => "blob_shard_index",
            BlobError::DuplicateCopy { .. } => "blob_duplicate_copy",
            BlobError::Digests { .. } => "blob_digests",
            BlobError::Generation => "blob_generation",
            BlobError::DataId { .. } => "blob_data_id",
            BlobError::NoStorage => "blob_no_storage",
        }
    }
}

/// A blob stored as k + m shards on data nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureBlob {
    /// Names the blob on every data node.
    pub data_id: DataId,
    /// RS(k, m).
    pub layout: Layout,
    /// Bytes per chunk of every shard.
    pub chunk_size: u32,
    /// Chunks in every shard (the blob's stripe count).
    pub chunks_per_shard: u64,
    /// Where the copies are, ascending by (index, node).
    pub shards: Vec<ShardCopy>,
    /// One digest per shard index, committing to every chunk hash of that shard.
    pub shard_digests: Vec<ShardDigest>,
    /// Written while a zone was down: meets the write rule but not the full spread.
    pub degraded: bool,
    /// Log index of the command that last set `shards` (0 in a command: the state machine
    /// sets it).
    pub placed_at_index: u64,
}

impl ErasureBlob {
    /// Checks the invariants of the module doc.
    pub fn validate(&self) -> Result<(), BlobError> {
        let total = self.layout.total_shards();
        if self.chunk_size == 0 {
            return Err(BlobError::ChunkSize);
        }
        if self.shard_digests.len() != total as usize {
            return Err(BlobError::Digests { expected: total });
        }
        let mut seen = BTreeSet::new();
        for copy in &self.shards {
            if copy.shard_index >= total {
                return Err(BlobError::ShardIndex {
                    index: copy.shard_index,
                    total,
                });
            }
            if !seen.insert((copy.shard_index, copy.node)) {
                return Err(BlobError::DuplicateCopy {
                    index: copy.shard_index,
                    node: copy.node,
                });
            }
        }
        Ok(())
    }

    /// The digest the manifest records for shard `index`.
    pub fn digest_of(&self, index: u32) -> Option<&ShardDigest> {
        self.shard_digests.get(index as usize)
    }

    /// The copies of shard `index`.
    pub fn copies_of(&self, index: u32) -> impl Iterator<Item = &ShardCopy> {
        self.shards.iter().filter(move |c| c.shard_index == index)
    }
}

/// Where a blob's stored bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobStorage {
    /// Small blobs: the stored (sealed) bytes live in the manifest, replicated by Raft.
    Inline(Vec<u8>),
    /// Larger blobs: shards on data nodes.
    Erasure(ErasureBlob),
}

/// The bytes of one object version or one part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// Length as the client sees it.
    pub size: u64,
    /// Length as stored (after sealing); equals `size` when nothing is sealed.
    pub stored_size: u64,
    /// How the stored bytes were transformed from the client's.
    pub sealing: Sealing,
    /// Where the stored bytes are.
    pub storage: BlobStorage,
}

impl Blob {
    /// An unsealed inline blob holding `data`.
    pub fn inline(data: Vec<u8>) -> Blob {
        let size = data.len() as u64;
        Blob {
            size,
            stored_size: size,
            sealing: Sealing::none(),
            storage: BlobStorage::Inline(data),
        }
    }

    /// The erasure-coded storage, if the blob has it.
    pub fn erasure(&self) -> Option<&ErasureBlob> {
        match &self.storage {
            BlobStorage::Erasure(e) => Some(e),
            BlobStorage::Inline(_) => None,
        }
    }

    /// The erasure-coded storage, mutably.
    pub fn erasure_mut(&mut self) -> Option<&mut ErasureBlob> {
        match &mut self.storage {
            BlobStorage::Erasure(e) => Some(e),
            BlobStorage::Inline(_) => None,
        }
    }

    /// The data id, for an erasure-coded blob.
    pub fn data_id(&self) -> Option<DataId> {
        self.erasure().map(|e| e.data_id)
    }

    /// The same blob without its inline bytes (kept: size and everything else). Command results
    /// and logs carry this form, so object bytes never travel back or linger in result tables.
    pub fn without_inline_bytes(&self) -> Blob {
        match &self.storage {
            BlobStorage::Inline(_) => Blob {
                storage: BlobStorage::Inline(Vec::new()),
                ..self.clone()
            },
            BlobStorage::Erasure(_) => self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(shards: Vec<ShardCopy>, digests: usize) -> ErasureBlob {
        ErasureBlob {
            data_id: DataId::from_bytes([1; 16]),
            layout: Layout::new(3, 3).expect("layout"),
            chunk_size: 4096,
            chunks_per_shard: 1,
            shards,
            shard_digests: vec![[0; DIGEST_LEN]; digests],
            degraded: false,
            placed_at_index: 0,
        }
    }

    fn copy(index: u32, node: u64, generation: u64) -> ShardCopy {
        ShardCopy {
            shard_index: index,
            node: NodeId(node),
            generation: Generation::new(generation).expect("nonzero"),
        }
    }

    #[test]
    fn generation_zero_names_no_file() {
        assert_eq!(Generation::new(0), None);
        assert_eq!(Generation::from_random(0).get(), 1);
        assert_eq!(Generation::from_random(7).get(), 7);
        assert_eq!(
            Generation::new(0xab).expect("gen").to_string(),
            "00000000000000ab"
        );
    }

    #[test]
    fn a_valid_blob_passes_and_each_broken_rule_is_named() {
        let good = blob((0..6).map(|i| copy(i, u64::from(i) + 1, 9)).collect(), 6);
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(good.copies_of(2).count(), 1);
        assert!(good.digest_of(5).is_some() && good.digest_of(6).is_none());

        let out_of_range = blob(vec![copy(6, 1, 1)], 6);
        assert_eq!(
            out_of_range.validate(),
            Err(BlobError::ShardIndex { index: 6, total: 6 })
        );
        let twice = blob(vec![copy(1, 1, 1), copy(1, 1, 2)], 6);
        assert_eq!(
            twice.validate(),
            Err(BlobError::DuplicateCopy {
                index: 1,
                node: NodeId(1)
            })
        );
        assert_eq!(
            blob(vec![], 5).validate(),
            Err(BlobError::Digests { expected: 6 })
        );
        let mut zero_chunk = blob(vec![], 6);
        zero_chunk.chunk_size = 0;
        assert_eq!(zero_chunk.validate(), Err(BlobError::ChunkSize));
    }

    #[test]
    fn results_never_carry_inline_bytes() {
        let b = Blob::inline(b"secret body".to_vec());
        assert_eq!(b.size, 11);
        let stripped = b.without_inline_bytes();
        assert_eq!(stripped.size, 11);
        assert_eq!(stripped.storage, BlobStorage::Inline(Vec::new()));
        let e = Blob {
            size: 1,
            stored_size: 1,
            sealing: Sealing::none(),
            storage: BlobStorage::Erasure(blob(vec![], 6)),
        };
        assert_eq!(e.without_inline_bytes(), e);
        assert_eq!(e.data_id(), Some(DataId::from_bytes([1; 16])));
    }
}
