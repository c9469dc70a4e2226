//! Sealing: how a blob's bytes are transformed between the client's body and what is stored
//! (erasure coded or inline): the identity (blobs written before encryption existed) or
//! SSE-S3 or SSE-C, AES-256-GCM over segments (see [`segments`]) under a fresh data key that is
//! stored only wrapped, by a key-encryption key of the cluster (see [`key_wrap`]) or by the
//! customer's own key (see [`customer_key`]). Everything a scheme needs to
//! reverse itself is recorded with the blob.
//!
//! Invariant: for every scheme, `stored_len` is a function of the plaintext length alone, and
//! `stored_range` maps a plaintext range to the smallest stored range (whole segments) from
//! which exactly that plaintext can be recovered, with the offset of the range's first byte in
//! the recovered plaintext. A reader never needs bytes outside that range.

pub mod aead;
pub mod bucket_key;
pub mod customer_key;
pub mod kek;
pub mod key_wrap;
pub mod seal_error;
pub mod segments;

use std::ops::Range;

use segments::SegmentGeometry;

/// The transforms a blob may have been stored with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SealingScheme {
    /// Stored exactly as sent.
    #[default]
    None,
    /// SSE-S3: one layer of AES-256-GCM segments under a data key wrapped by a key-encryption
    /// key of the cluster's own.
    SseS3,
    /// SSE-C: the same segments under a data key wrapped by the customer's own key, which is
    /// never stored; `parameters` holds the key check (see [`customer_key`]).
    SseC,
    /// SSE-KMS: one layer of segments under a data key wrapped by a KMS key's KEK
    /// (`kms-<key id>`); `parameters` holds the encryption context (canonical JSON, bound into
    /// the wrapped key).
    SseKms,
    /// DSSE-KMS: two independent layers of segments under two data keys of one KMS key;
    /// `wrapped_key` is the inner layer's wrapped key followed by the outer's.
    DsseKms,
    /// SSE-KMS with an S3 Bucket Key: one layer of segments under a data key derived from a
    /// bucket key and a salt of the blob's own (see [`bucket_key`]); `wrapped_key` is the
    /// bucket key wrapped by the KMS key's KEK, followed by the salt; `parameters` holds the
    /// encryption context, as for [`SealingScheme::SseKms`].
    SseKmsBucketKey,
}

impl SealingScheme {
    /// Every scheme, for code and tests that must cover each.
    pub const ALL: [SealingScheme; 6] = [
        SealingScheme::None,
        SealingScheme::SseS3,
        SealingScheme::SseC,
        SealingScheme::SseKms,
        SealingScheme::DsseKms,
        SealingScheme::SseKmsBucketKey,
    ];

    /// A stable name for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            SealingScheme::None => "none",
            SealingScheme::SseS3 => "sse-s3",
            SealingScheme::SseC => "sse-c",
            SealingScheme::SseKms => "sse-kms",
            SealingScheme::DsseKms => "dsse-kms",
            SealingScheme::SseKmsBucketKey => "sse-kms-bucket-key",
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
    /// Which key-encryption key wrapped it (its name and version, `name/version`).
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

    /// Layers of segments the scheme seals with: 2 for DSSE-KMS, 1 otherwise.
    pub fn geometry_layers(&self) -> u8 {
        if self.scheme == SealingScheme::DsseKms {
            2
        } else {
            1
        }
    }

    /// Whether the stored bytes are the client's bytes.
    pub fn is_identity(&self) -> bool {
        self.scheme == SealingScheme::None
    }

    /// The segment geometry of a segmented scheme; `None` for the identity. A record whose
    /// segment size is out of bounds is refused.
    pub fn geometry(&self) -> Result<Option<SegmentGeometry>, seal_error::SealError> {
        match self.scheme {
            SealingScheme::None => Ok(None),
            _ => SegmentGeometry::new(self.segment_size, self.geometry_layers()).map(Some),
        }
    }

    /// Stored length of a plaintext of `plain_len` bytes.
    pub fn stored_len(&self, plain_len: u64) -> Result<u64, seal_error::SealError> {
        Ok(match self.geometry()? {
            None => plain_len,
            Some(geometry) => geometry.stored_len(plain_len),
        })
    }

    /// The stored bytes that hold plaintext `plain` (which lies within `0..plain_len`).
    pub fn stored_range(
        &self,
        plain: Range<u64>,
        plain_len: u64,
    ) -> Result<StoredRange, seal_error::SealError> {
        Ok(match self.geometry()? {
            None => StoredRange {
                stored: plain,
                skip: 0,
            },
            Some(geometry) => {
                let range = geometry.range(plain, plain_len)?;
                StoredRange {
                    stored: range.stored,
                    skip: range.skip,
                }
            }
        })
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
            assert_eq!(s.stored_len(len), Ok(len));
        }
        assert_eq!(
            s.stored_range(10..20, 100),
            Ok(StoredRange {
                stored: 10..20,
                skip: 0
            })
        );
    }

    #[test]
    fn sse_s3_maps_ranges_to_whole_segments() {
        let s = Sealing {
            scheme: SealingScheme::SseS3,
            segment_size: 100,
            ..Sealing::default()
        };
        assert!(!s.is_identity());
        assert_eq!(s.scheme.as_str(), "sse-s3");
        assert_eq!(s.stored_len(0), Ok(16));
        assert_eq!(s.stored_len(250), Ok(250 + 3 * 16));
        assert_eq!(
            s.stored_range(150..210, 250),
            Ok(StoredRange {
                stored: 116..298,
                skip: 50
            })
        );
        let broken = Sealing {
            segment_size: 0,
            ..s.clone()
        };
        assert!(broken.stored_len(10).is_err());
        assert!(s.stored_range(10..300, 250).is_err());
    }
}
