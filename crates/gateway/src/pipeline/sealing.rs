//! The seam where a blob's bytes are sealed on the way in and unsealed on the way out: the
//! pipeline runs every body through a [`Sealer`] between the client's bytes and what is stored
//! (inline or erasure coded), and every read through an [`Unsealer`] between the stored bytes
//! and the response. [`IdentitySeals`] stores bytes as sent (tests of the data path);
//! [`SseSeals`](super::sse::SseSeals) encrypts (every gateway).
//!
//! Invariant: a sealer records everything its reversal needs in the [`Sealing`] it reports
//! (stored with the blob), and stores exactly `stored_len(plaintext length)` bytes; an opened
//! read ([`Opened`]) names the stored bytes it needs, and its unsealer turns exactly those
//! bytes into the plaintext they hold, whose first `skip` bytes precede the range asked for.
//! A sealed blob opens only for the [`SealTarget`] it was sealed for. The pipeline's digests
//! (MD5, checksums) are always over the plaintext.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use futures::future::BoxFuture;
use tessera_core::sealing::Sealing;
use tessera_core::sealing::customer_key::CustomerKey;
use tessera_core::sealing::segments::Binding;

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
    /// The key service could not be reached in time: nothing was sealed or unsealed.
    #[error("key service unavailable: {detail}")]
    KeysUnavailable {
        /// The last failure.
        detail: String,
    },
    /// The key service refused: the wrapped key does not unwrap, or its KEK is unknown.
    #[error("key service refused: {detail}")]
    KeyRefused {
        /// Its explanation.
        detail: String,
    },
    /// The blob is sealed with a customer's key (SSE-C) and the read came without one.
    #[error("the blob is sealed with a customer key and none was given")]
    CustomerKeyMissing,
    /// The customer's key given is not the one the blob was sealed with.
    #[error("the customer key given is not the one the blob was sealed with")]
    CustomerKeyMismatch,
    /// The KMS refused the key (disabled, pending deletion, unknown): S3 answers with the
    /// KMS's own error code (`KMS.DisabledException`, …).
    #[error("{code}: {detail}")]
    KmsRefused {
        /// The KMS error code.
        code: String,
        /// Its explanation.
        detail: String,
    },
}

impl SealError {
    /// A stable identifier for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SealError::UnsupportedScheme { .. } => "seal_unsupported_scheme",
            SealError::Corrupt { .. } => "seal_corrupt",
            SealError::KeysUnavailable { .. } => "seal_keys_unavailable",
            SealError::KeyRefused { .. } => "seal_key_refused",
            SealError::CustomerKeyMissing => "seal_customer_key_missing",
            SealError::CustomerKeyMismatch => "seal_customer_key_mismatch",
            SealError::KmsRefused { .. } => "seal_kms_refused",
        }
    }
}

impl From<tessera_core::sealing::seal_error::SealError> for SealError {
    fn from(e: tessera_core::sealing::seal_error::SealError) -> Self {
        SealError::Corrupt {
            detail: e.to_string(),
        }
    }
}

/// What a blob is sealed for: the object (and part) its bytes belong to, and the customer's
/// key when the request carries one (SSE-C). A sealed blob opens only for the same object and
/// part, so bytes moved to another object do not decrypt.
#[derive(Clone, Debug, Default)]
pub struct SealTarget {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The multipart part number (1 for a single PUT or a copy).
    pub part_number: u32,
    /// The customer's key: a new blob is sealed with SSE-C under it; a read of an SSE-C blob
    /// needs it.
    pub customer_key: Option<CustomerKey>,
    /// SSE-KMS or DSSE-KMS for a new blob: the KMS key and encryption context.
    pub kms: Option<KmsTarget>,
}

/// How a new blob is sealed under a KMS key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KmsTarget {
    /// The KMS key: id, alias or ARN; empty for the default key (`aws/s3`).
    pub key: String,
    /// The encryption context, canonical JSON (empty for none).
    pub context: Vec<u8>,
    /// Two layers (DSSE-KMS) instead of one.
    pub dsse: bool,
    /// An S3 Bucket Key derives the blob's data key (SSE-KMS only: S3 has no bucket keys for
    /// DSSE-KMS, so a DSSE target ignores it).
    pub bucket_key: bool,
}

impl SealTarget {
    /// The target `bucket`/`key`, part `part_number`.
    pub fn new(bucket: &str, key: &str, part_number: u32) -> SealTarget {
        SealTarget {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            part_number,
            customer_key: None,
            kms: None,
        }
    }

    /// The same target sealed under a KMS key (SSE-KMS or DSSE-KMS), or not.
    pub fn with_kms(mut self, kms: Option<KmsTarget>) -> SealTarget {
        self.kms = kms;
        self
    }

    /// The same target with the customer's key `customer_key` (SSE-C), or none.
    pub fn with_customer_key(mut self, customer_key: Option<CustomerKey>) -> SealTarget {
        self.customer_key = customer_key;
        self
    }

    /// As the sealing framing binds it.
    pub fn binding(&self) -> Binding<'_> {
        Binding {
            bucket: &self.bucket,
            key: &self.key,
            part_number: self.part_number,
        }
    }
}

/// Seals one blob's plaintext, piece by piece, in order.
pub trait Sealer: Send {
    /// The sealing to record with the blob.
    fn sealing(&self) -> Sealing;
    /// The stored length of a plaintext of `plain_len` bytes.
    fn stored_len(&self, plain_len: u64) -> u64;
    /// Seals the next plaintext piece; returns the stored bytes ready now (maybe none).
    fn seal(&mut self, plain: Bytes) -> Result<Bytes, SealError>;
    /// The plaintext ended: the stored bytes still held back.
    fn finish(&mut self) -> Result<Bytes, SealError>;
}

/// Unseals the stored bytes of one opened read, piece by piece, in order.
pub trait Unsealer: Send + Sync {
    /// Unseals the next stored piece; returns the plaintext ready now (maybe none).
    fn unseal(&mut self, stored: Bytes) -> Result<Bytes, SealError>;
    /// The stored range ended: the plaintext still held back.
    fn finish(&mut self) -> Result<Bytes, SealError>;
}

/// A read of a plaintext range, opened: which stored bytes to fetch and how to unseal them.
pub struct Opened {
    /// The stored bytes to read.
    pub stored: Range<u64>,
    /// Plaintext bytes the unsealer yields before the range asked for.
    pub skip: u64,
    /// Turns the stored bytes into plaintext.
    pub unsealer: Box<dyn Unsealer>,
}

/// Makes the sealer of each new blob and opens reads; one per gateway.
pub trait Seals: Send + Sync + fmt::Debug {
    /// A sealer for one new blob of `target`.
    fn sealer<'a>(
        &'a self,
        target: &'a SealTarget,
    ) -> BoxFuture<'a, Result<Box<dyn Sealer>, SealError>>;

    /// Opens plaintext `plain` (within `0..plain_len`) of a blob of `target` sealed as
    /// `sealing`.
    fn opener<'a>(
        &'a self,
        sealing: &'a Sealing,
        target: &'a SealTarget,
        plain: Range<u64>,
        plain_len: u64,
    ) -> BoxFuture<'a, Result<Opened, SealError>>;
}

/// Stores bytes exactly as sent, and reads blobs so stored.
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

/// Opens a blob stored as sent; any other sealing is refused.
pub fn open_identity(sealing: &Sealing, plain: Range<u64>) -> Result<Opened, SealError> {
    if !sealing.is_identity() {
        return Err(SealError::UnsupportedScheme {
            scheme: sealing.scheme.as_str(),
        });
    }
    Ok(Opened {
        stored: plain,
        skip: 0,
        unsealer: Box::new(Identity),
    })
}

impl Seals for IdentitySeals {
    fn sealer<'a>(
        &'a self,
        _target: &'a SealTarget,
    ) -> BoxFuture<'a, Result<Box<dyn Sealer>, SealError>> {
        Box::pin(async { Ok(Box::new(Identity) as Box<dyn Sealer>) })
    }

    fn opener<'a>(
        &'a self,
        sealing: &'a Sealing,
        _target: &'a SealTarget,
        plain: Range<u64>,
        _plain_len: u64,
    ) -> BoxFuture<'a, Result<Opened, SealError>> {
        Box::pin(async move { open_identity(sealing, plain) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identity_seals_nothing_and_maps_ranges_to_themselves() {
        let seals = IdentitySeals;
        let target = SealTarget::new("b", "k", 1);
        let mut sealer = seals.sealer(&target).await.expect("sealer");
        let piece = Bytes::from_static(b"plain bytes");
        assert_eq!(sealer.seal(piece.clone()), Ok(piece.clone()));
        assert_eq!(sealer.finish(), Ok(Bytes::new()));
        assert_eq!(sealer.stored_len(11), 11);
        assert!(sealer.sealing().is_identity());
        let mut opened = seals
            .opener(&Sealing::none(), &target, 3..7, 11)
            .await
            .expect("identity opens");
        assert_eq!((opened.stored, opened.skip), (3..7, 0));
        assert_eq!(opened.unsealer.unseal(piece.clone()), Ok(piece));
        assert_eq!(opened.unsealer.finish(), Ok(Bytes::new()));
        let sealed = Sealing {
            scheme: tessera_core::sealing::SealingScheme::SseS3,
            ..Sealing::none()
        };
        assert!(matches!(
            seals.opener(&sealed, &target, 0..1, 11).await,
            Err(SealError::UnsupportedScheme { scheme: "sse-s3" })
        ));
    }
}
