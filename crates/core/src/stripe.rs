//! Stripe geometry and the Reed-Solomon codec wrapper.
//!
//! Invariant: an object of `size` bytes is cut into stripes of k * chunk_size bytes (the last
//! one zero-padded); stripe s is chunk s of every shard, so every shard of an object holds
//! exactly `stripe_count(size)` chunks of exactly `chunk_size` bytes, and any k of the n chunks
//! of a stripe rebuild its data.

use std::ops::Range;

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::layout::Layout;

/// Chunk size new versions are written with: big enough to amortise per-chunk hashing and
/// network round trips, small enough that a range GET reads little more than it needs.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;

/// Why a stripe cannot be encoded, rebuilt or joined.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Fewer than k chunks of a stripe are present.
    #[error("{present} shards present, {needed} needed")]
    TooFewShards {
        /// Chunks present.
        present: usize,
        /// k.
        needed: usize,
    },
    /// The slice of shards does not have n entries.
    #[error("expected {expected} shards, got {got}")]
    WrongShardCount {
        /// n.
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// More stripe data than k * chunk_size, or more bytes asked of a stripe than it holds.
    #[error("{len} bytes do not fit a stripe of {capacity} bytes")]
    DataTooLarge {
        /// Bytes given or asked for.
        len: usize,
        /// k * chunk_size.
        capacity: usize,
    },
    /// Chunks of zero bytes cannot be coded.
    #[error("chunk size must be at least one byte")]
    ZeroChunkSize,
    /// The present chunks of a stripe differ in length.
    #[error("shard {index} is {len} bytes, expected {expected}")]
    ShardSizeMismatch {
        /// The odd shard.
        index: usize,
        /// Its length.
        len: usize,
        /// The length of the first present shard.
        expected: usize,
    },
    /// A data chunk needed to join the stripe is missing; reconstruct first.
    #[error("data shard {index} is missing")]
    MissingDataShard {
        /// The missing shard's index.
        index: usize,
    },
    /// The Reed-Solomon library refused (not expected once the checks above passed).
    #[error("reed-solomon: {0}")]
    ReedSolomon(#[from] reed_solomon_erasure::Error),
}

impl CodecError {
    /// A stable, short identifier of the error kind for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            CodecError::TooFewShards { .. } => "too_few_shards",
            CodecError::WrongShardCount { .. } => "wrong_shard_count",
            CodecError::DataTooLarge { .. } => "data_too_large",
            CodecError::ZeroChunkSize => "zero_chunk_size",
            CodecError::ShardSizeMismatch { .. } => "shard_size_mismatch",
            CodecError::MissingDataShard { .. } => "missing_data_shard",
            CodecError::ReedSolomon(_) => "reed_solomon",
        }
    }
}

/// How an object's bytes map onto stripes and chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StripeGeometry {
    layout: Layout,
    chunk_size: u32,
}

impl StripeGeometry {
    /// The geometry of `layout` with chunks of `chunk_size` bytes.
    ///
    /// # Panics
    /// If `chunk_size` is 0, a programming error; use [`StripeGeometry::try_new`] for values read
    /// from outside (manifests, shard headers).
    pub fn new(layout: Layout, chunk_size: u32) -> StripeGeometry {
        assert!(chunk_size > 0, "chunk size must be at least one byte");
        StripeGeometry { layout, chunk_size }
    }

    /// Like [`StripeGeometry::new`], refusing a zero chunk size with an error.
    pub fn try_new(layout: Layout, chunk_size: u32) -> Result<StripeGeometry, CodecError> {
        if chunk_size == 0 {
            return Err(CodecError::ZeroChunkSize);
        }
        Ok(StripeGeometry { layout, chunk_size })
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Object bytes per stripe: k * chunk_size.
    pub fn stripe_data_size(&self) -> u64 {
        u64::from(self.layout.data_shards()) * u64::from(self.chunk_size)
    }

    /// Stripes of an object of `object_size` bytes (0 for an empty object).
    pub fn stripe_count(&self, object_size: u64) -> u64 {
        object_size.div_ceil(self.stripe_data_size())
    }

    /// Chunks in each shard of an object of `object_size` bytes (one per stripe).
    pub fn chunk_count(&self, object_size: u64) -> u64 {
        self.stripe_count(object_size)
    }

    /// Data bytes in each shard of the object (chunks times chunk size, padding included).
    pub fn shard_data_len(&self, object_size: u64) -> u64 {
        self.chunk_count(object_size) * u64::from(self.chunk_size)
    }

    /// Object offset of the first byte of `stripe`.
    pub fn stripe_offset(&self, stripe: u64) -> u64 {
        stripe.saturating_mul(self.stripe_data_size())
    }

    /// Object bytes in `stripe` (the last one may be short; 0 past the end).
    pub fn stripe_len(&self, object_size: u64, stripe: u64) -> u64 {
        let start = self.stripe_offset(stripe);
        object_size
            .saturating_sub(start)
            .min(self.stripe_data_size())
    }

    /// The stripes holding bytes `start..=end_inclusive`; empty when `start > end_inclusive`.
    /// Callers clamp the range to the object first.
    pub fn stripes_for_range(&self, start: u64, end_inclusive: u64) -> Range<u64> {
        let sds = self.stripe_data_size();
        let first = start / sds;
        if start > end_inclusive {
            return first..first;
        }
        first..end_inclusive / sds + 1
    }
}

/// Reed-Solomon over GF(2^8) for one layout. With m = 0 there is nothing to compute: the data
/// chunks are the shards.
#[derive(Debug)]
pub struct Codec {
    layout: Layout,
    rs: Option<ReedSolomon>,
}

impl Codec {
    /// The codec of `layout`.
    pub fn new(layout: Layout) -> Result<Codec, CodecError> {
        let rs = match layout.parity_shards() {
            0 => None,
            m => Some(ReedSolomon::new(layout.data_shards() as usize, m as usize)?),
        };
        Ok(Codec { layout, rs })
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn k(&self) -> usize {
        self.layout.data_shards() as usize
    }

    fn n(&self) -> usize {
        self.layout.total_shards() as usize
    }

    /// Encodes one stripe: `data` (at most k * chunk_size bytes, zero-padded) becomes k data
    /// chunks followed by m parity chunks, each exactly `chunk_size` bytes.
    pub fn encode_stripe(
        &self,
        data: &[u8],
        chunk_size: usize,
    ) -> Result<Vec<Vec<u8>>, CodecError> {
        if chunk_size == 0 {
            return Err(CodecError::ZeroChunkSize);
        }
        let capacity = self.k().saturating_mul(chunk_size);
        if data.len() > capacity {
            return Err(CodecError::DataTooLarge {
                len: data.len(),
                capacity,
            });
        }
        let mut shards: Vec<Vec<u8>> = (0..self.n())
            .map(|i| {
                let start = (i * chunk_size).min(data.len());
                let end = ((i + 1) * chunk_size).min(data.len());
                let mut chunk = Vec::with_capacity(chunk_size);
                if i < self.k() {
                    chunk.extend_from_slice(&data[start..end]);
                }
                chunk.resize(chunk_size, 0);
                chunk
            })
            .collect();
        if let Some(rs) = &self.rs {
            rs.encode(&mut shards)?;
        }
        Ok(shards)
    }

    /// Checks the shard slice: n entries, at least `needed` present, all present the same length.
    fn check_present(&self, shards: &[Option<Vec<u8>>], needed: usize) -> Result<(), CodecError> {
        if shards.len() != self.n() {
            return Err(CodecError::WrongShardCount {
                expected: self.n(),
                got: shards.len(),
            });
        }
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present < needed {
            return Err(CodecError::TooFewShards { present, needed });
        }
        let mut expected = None;
        for (index, shard) in shards.iter().enumerate() {
            if let Some(shard) = shard {
                let expected = *expected.get_or_insert(shard.len());
                if expected == 0 {
                    return Err(CodecError::ZeroChunkSize);
                }
                if shard.len() != expected {
                    return Err(CodecError::ShardSizeMismatch {
                        index,
                        len: shard.len(),
                        expected,
                    });
                }
            }
        }
        Ok(())
    }

    /// Fills in the missing data chunks of one stripe from any k present chunks (parity chunks
    /// stay missing). `shards` has n entries; `None` marks a missing chunk.
    pub fn reconstruct_data(&self, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        self.check_present(shards, self.k())?;
        if shards[..self.k()].iter().all(Option::is_some) {
            return Ok(());
        }
        match &self.rs {
            Some(rs) => Ok(rs.reconstruct_data(shards)?),
            // Unreachable in practice: with m = 0, k present means all data present.
            None => Err(CodecError::TooFewShards {
                present: shards.iter().filter(|s| s.is_some()).count(),
                needed: self.k(),
            }),
        }
    }

    /// Fills in every missing chunk of one stripe, parity included (what repair rebuilds).
    pub fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        self.check_present(shards, self.k())?;
        if shards.iter().all(Option::is_some) {
            return Ok(());
        }
        match &self.rs {
            Some(rs) => Ok(rs.reconstruct(shards)?),
            None => Err(CodecError::TooFewShards {
                present: shards.iter().filter(|s| s.is_some()).count(),
                needed: self.n(),
            }),
        }
    }

    /// The first `take` bytes of the stripe, from its k data chunks (call `reconstruct_data`
    /// first if one is missing). `take` is at most k * chunk_size.
    pub fn join_data(
        &self,
        shards: &[Option<Vec<u8>>],
        take: usize,
    ) -> Result<Vec<u8>, CodecError> {
        if shards.len() != self.n() {
            return Err(CodecError::WrongShardCount {
                expected: self.n(),
                got: shards.len(),
            });
        }
        let mut out = Vec::with_capacity(take);
        for (index, shard) in shards[..self.k()].iter().enumerate() {
            if out.len() == take {
                break;
            }
            let chunk = shard
                .as_deref()
                .ok_or(CodecError::MissingDataShard { index })?;
            let want = (take - out.len()).min(chunk.len());
            out.extend_from_slice(&chunk[..want]);
        }
        if out.len() < take {
            let capacity = out.len();
            return Err(CodecError::DataTooLarge {
                len: take,
                capacity,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "stripe_test.rs"]
mod tests;
