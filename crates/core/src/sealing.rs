//! Sealing: how a blob's bytes are transformed between the client's body and what is stored
//! (erasure coded or inline). Only the identity exists today; encryption adds segment-wise
//! schemes, and everything a scheme needs to reverse itself is recorded with the blob.
//!
//! Invariant: for every scheme, `stored_len` is a function of the plaintext length alone, and
//! `stored_range` maps a plaintext range to the smallest stored range (whole segments) from
//! which exactly that plaintext can be recovered, with the offset of the range's first byte in
//! the recovered plaintext. A reader never needs bytes outside that range.

pub mod aead;
pub mod key_wrap;
pub mod seal_error;
pub mod segments;

use std::ops::Range;

/// The transforms a blob may have been stored with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SealingScheme {
    /// Stored exactly as sent.
    #[default]
    None,
}

impl SealingScheme {
    /// A stable name for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            SealingScheme::None => "none",
        }
    }
}

/// The sealing of one blob and the parameters needed to reverse it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sealing {
    /// Which transform.
    pub scheme: SealingScheme,
    /// Plaintext bytes per sealed segment (0 when the scheme has no segments).
    pub segment_size: u32,
    /// The blob's data key, wrapped by a key-encryption key (empty when there is none).
    pub wrapped_key: Vec<u8>,
    /// Which key wrapped it.
    pub key_id: String,
    /// Scheme-specific parameters, encoded by the scheme.
    pub parameters: Vec<u8>,
}

/// Which stored bytes a plaintext range needs, and where the range starts in what they unseal
/// to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRange {
    /// The stored bytes to read.
    pub stored: Range<u64>,
    /// Offset of the plaintext range's first byte within the plaintext those bytes unseal to.
    pub skip: u64,
}

impl Sealing {
    /// No transform.
    pub fn none() -> Sealing {
        Sealing::default()
    }

    /// Whether the stored bytes are the client's bytes.
    pub fn is_identity(&self) -> bool {
        self.scheme == SealingScheme::None
    }

    /// Stored length of a plaintext of `plain_len` bytes.
    pub fn stored_len(&self, plain_len: u64) -> u64 {
        match self.scheme {
            SealingScheme::None => plain_len,
        }
    }

    /// The stored bytes that hold plaintext `plain` (which lies within `0..plain_len`).
    pub fn stored_range(&self, plain: Range<u64>, _plain_len: u64) -> StoredRange {
        match self.scheme {
            SealingScheme::None => StoredRange {
                stored: plain,
                skip: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_maps_every_range_to_itself() {
        let s = Sealing::none();
        assert!(s.is_identity());
        assert_eq!(s.scheme.as_str(), "none");
        for len in [0u64, 1, 4096, 1 << 40] {
            assert_eq!(s.stored_len(len), len);
        }
        assert_eq!(
            s.stored_range(10..20, 100),
            StoredRange {
                stored: 10..20,
                skip: 0
            }
        );
    }
}
