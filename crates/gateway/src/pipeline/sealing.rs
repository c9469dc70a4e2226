//! The seam where a blob's bytes are sealed on the way in and unsealed on the way out: the
//! pipeline runs every body through a [`Sealer`] between the client's bytes and what is stored
//! (inline or erasure coded), and every read through an [`Unsealer`] between the stored bytes
//! and the response. Only the identity exists today; encryption plugs in here.
//!
//! Invariant: a sealer records everything its reversal needs in the [`Sealing`] it reports
//! (stored with the blob), and stores exactly `stored_len(plaintext length)` bytes; an unsealer
//! made for a stored range from [`Seals::stored_range`] turns those stored bytes back into the
//! plaintext they hold, whose first `skip` bytes precede the range asked for. The pipeline's
//! digests (MD5, checksums) are always over the plaintext.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use tessera_core::sealing::{Sealing, StoredRange};

/// Why bytes could not be sealed or unsealed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The blob was sealed with a scheme this gateway cannot reverse.
    #[error("blob sealed with unsupported scheme {scheme}")]
    UnsupportedScheme {
        /// The scheme's name.
        scheme: &'static str,
    },
    /// Stored bytes that do not unseal (damaged, or sealed under other parameters).
    #[error("stored bytes do not unseal: {detail}")]
    Corrupt {
        /// What did not match.
        detail: String,
    },
}

impl SealError {
    /// A stable identifier for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SealError::UnsupportedScheme { .. } => "seal_unsupported_scheme",
            SealError::Corrupt { .. } => "seal_corrupt",
        }
    }
}

/// Seals one blob's plaintext, piece by piece, in order.
pub trait Sealer: Send {
    /// The sealing to record with the blob (call after [`finish`](Self::finish)).
    fn sealing(&self) -> Sealing;
    /// The stored length of a plaintext of `plain_len` bytes.
    fn stored_len(&self, plain_len: u64) -> u64;
    /// Seals the next plaintext piece; returns the stored bytes ready now (maybe none).
    fn seal(&mut self, plain: Bytes) -> Result<Bytes, SealError>;
    /// The plaintext ended: the stored bytes still held back.
    fn finish(&mut self) -> Result<Bytes, SealError>;
}

/// Unseals the stored bytes of one stored range, piece by piece, in order.
pub trait Unsealer: Send + Sync {
    /// Unseals the next stored piece; returns the plaintext ready now (maybe none).
    fn unseal(&mut self, stored: Bytes) -> Result<Bytes, SealError>;
    /// The stored range ended: the plaintext still held back.
    fn finish(&mut self) -> Result<Bytes, SealError>;
}

/// Makes the sealer of each new blob and the unsealers of reads; one per gateway.
pub trait Seals: Send + Sync + fmt::Debug {
    /// A sealer for one new blob.
    fn sealer(&self) -> Box<dyn Sealer>;
    /// The stored bytes that hold plaintext `plain` of a blob of `plain_len` bytes sealed as
    /// `sealing`, and where `plain` starts in what they unseal to.
    fn stored_range(&self, sealing: &Sealing, plain: Range<u64>, plain_len: u64) -> StoredRange {
        sealing.stored_range(plain, plain_len)
    }
    /// An unsealer for the stored bytes `stored` (a range from [`stored_range`]) of a blob
    /// sealed as `sealing`.
    ///
    /// [`stored_range`]: Self::stored_range
    fn unsealer(
        &self,
        sealing: &Sealing,
        stored: Range<u64>,
    ) -> Result<Box<dyn Unsealer>, SealError>;
}

/// Stores bytes exactly as sent: the only sealing today.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentitySeals;

/// The identity transform in both directions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl Sealer for Identity {
    fn sealing(&self) -> Sealing {
        Sealing::none()
    }

    fn stored_len(&self, plain_len: u64) -> u64 {
        plain_len
    }

    fn seal(&mut self, plain: Bytes) -> Result<Bytes, SealError> {
        Ok(plain)
    }

    fn finish(&mut self) -> Result<Bytes, SealError> {
        Ok(Bytes::new())
    }
}

impl Unsealer for Identity {
    fn unseal(&mut self, stored: Bytes) -> Result<Bytes, SealError> {
        Ok(stored)
    }

    fn finish(&mut self) -> Result<Bytes, SealError> {
        Ok(Bytes::new())
    }
}

impl Seals for IdentitySeals {
    fn sealer(&self) -> Box<dyn Sealer> {
        Box::new(Identity)
    }

    fn unsealer(
        &self,
        sealing: &Sealing,
        _stored: Range<u64>,
    ) -> Result<Box<dyn Unsealer>, SealError> {
        if sealing.is_identity() {
            Ok(Box::new(Identity))
        } else {
            Err(SealError::UnsupportedScheme {
                scheme: sealing.scheme.as_str(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_seals_nothing_and_maps_ranges_to_themselves() {
        let seals = IdentitySeals;
        let mut sealer = seals.sealer();
        let piece = Bytes::from_static(b"plain bytes");
        assert_eq!(sealer.seal(piece.clone()), Ok(piece.clone()));
        assert_eq!(sealer.finish(), Ok(Bytes::new()));
        assert_eq!(sealer.stored_len(11), 11);
        assert!(sealer.sealing().is_identity());
        let range = seals.stored_range(&Sealing::none(), 3..7, 11);
        assert_eq!(
            range,
            StoredRange {
                stored: 3..7,
                skip: 0
            }
        );
        let mut unsealer = seals
            .unsealer(&Sealing::none(), range.stored)
            .expect("identity unsealer");
        assert_eq!(unsealer.unseal(piece.clone()), Ok(piece));
        assert_eq!(unsealer.finish(), Ok(Bytes::new()));
    }
}
