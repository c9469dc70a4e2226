//! What can go wrong sealing or unsealing a blob, with the fields each case needs.
//!
//! Invariant: every failure to authenticate is an error, never a shorter or different plaintext.

/// Sealing or unsealing failed; no unauthenticated plaintext was returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A segment size outside 1..=16 MiB or a layer count other than 1 or 2.
    #[error("invalid segment geometry: segment size {segment_size}, {layers} layers")]
    InvalidGeometry {
        /// Plaintext bytes per segment asked for.
        segment_size: u32,
        /// Layers asked for.
        layers: u8,
    },
    /// A sealer or opener was given another number of ciphers than its geometry has layers.
    #[error("{got} ciphers given for {expected} layers")]
    LayerCount {
        /// The geometry's layers.
        expected: u8,
        /// Ciphers given.
        got: usize,
    },
    /// A plaintext range outside the blob.
    #[error("range {start}..{end} is outside a blob of {plain_len} bytes")]
    RangeOutOfBounds {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The blob's plaintext length.
        plain_len: u64,
    },
    /// A segment's tag did not verify: it was altered, moved, reordered, cut, or sealed under
    /// another key or for another object.
    #[error("segment {segment} failed authentication at layer {layer}")]
    Authentication {
        /// The segment's index in the blob.
        segment: u64,
        /// The layer (1 inner, 2 outer) whose tag failed.
        layer: u8,
    },
    /// The stored bytes ended inside or before a segment the range needs.
    #[error("stored bytes end before segment {segment} is complete")]
    Truncated {
        /// The first incomplete segment.
        segment: u64,
    },
    /// More stored bytes arrived than the range's segments hold.
    #[error("stored bytes continue past segment {segment}, the last one asked for")]
    TrailingBytes {
        /// The last segment of the range.
        segment: u64,
    },
    /// A wrapped key of the wrong length.
    #[error("wrapped key is {len} bytes, expected {expected}")]
    WrappedKeyLength {
        /// Its length.
        len: usize,
        /// The length of the format.
        expected: usize,
    },
    /// A wrapped key of a format this build does not know.
    #[error("wrapped key format {version} is not supported")]
    WrappedKeyFormat {
        /// The format byte.
        version: u8,
    },
    /// The wrapped key did not unwrap: another key-encryption key, or another object's key.
    #[error("data key did not unwrap under key-encryption key {kek_id}")]
    KeyUnwrap {
        /// The key-encryption key tried.
        kek_id: String,
    },
}

impl SealError {
    /// A stable identifier for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SealError::InvalidGeometry { .. } => "invalid_geometry",
            SealError::LayerCount { .. } => "layer_count",
            SealError::RangeOutOfBounds { .. } => "range_out_of_bounds",
            SealError::Authentication { .. } => "authentication",
            SealError::Truncated { .. } => "truncated",
            SealError::TrailingBytes { .. } => "trailing_bytes",
            SealError::WrappedKeyLength { .. } => "wrapped_key_length",
            SealError::WrappedKeyFormat { .. } => "wrapped_key_format",
            SealError::KeyUnwrap { .. } => "key_unwrap",
        }
    }

    /// Whether trying again could help: never for the data itself (a reader that meets a bad
    /// segment reads other shards first, which happens below sealing).
    pub fn is_retryable(&self) -> bool {
        false
    }
}
