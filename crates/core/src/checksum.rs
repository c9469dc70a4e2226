//! S3 additional checksums (`x-amz-checksum-*`): streaming hashers, the multipart COMPOSITE
//! checksum and the FULL_OBJECT CRC combined from the parts' CRCs.
//!
//! Invariant: digests are raw bytes exactly as S3 encodes them before base64: CRCs big-endian
//! in their natural width (4 or 8 bytes), SHA digests as they come; so `to_base64(digest)` is the
//! header value and two checksums compare equal iff their raw bytes do.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crc_fast::CrcAlgorithm;
use sha1::Digest as _;

/// An S3 additional checksum algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChecksumAlgorithm {
    /// CRC-32/ISO-HDLC, the zlib CRC.
    Crc32,
    /// CRC-32C (Castagnoli, iSCSI).
    Crc32c,
    /// CRC-64/NVME.
    Crc64Nvme,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

/// How the checksum of a multipart object is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumType {
    /// The checksum of the concatenated part checksums, suffixed `-N` (all algorithms but
    /// CRC64NVME).
    Composite,
    /// The checksum of the whole object's bytes, as if uploaded in one piece (CRCs only).
    FullObject,
}

impl ChecksumType {
    /// From the `x-amz-checksum-type` value (`COMPOSITE`, `FULL_OBJECT`), case-insensitive.
    pub fn from_s3_name(name: &str) -> Option<ChecksumType> {
        if name.eq_ignore_ascii_case("COMPOSITE") {
            Some(ChecksumType::Composite)
        } else if name.eq_ignore_ascii_case("FULL_OBJECT") {
            Some(ChecksumType::FullObject)
        } else {
            None
        }
    }

    /// The `x-amz-checksum-type` value.
    pub fn s3_name(&self) -> &'static str {
        match self {
            ChecksumType::Composite => "COMPOSITE",
            ChecksumType::FullObject => "FULL_OBJECT",
        }
    }
}

impl ChecksumAlgorithm {
    /// Every algorithm, in S3's documentation order.
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// From the S3 name (`CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`), case-insensitive.
    pub fn from_s3_name(name: &str) -> Option<ChecksumAlgorithm> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.s3_name().eq_ignore_ascii_case(name))
    }

    /// The S3 name, as in `x-amz-checksum-algorithm`.
    pub fn s3_name(&self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// The header carrying a checksum of this algorithm (lowercase).
    pub fn header_name(&self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// Whether a multipart upload can carry a FULL_OBJECT checksum of this algorithm (the
    /// CRCs: they can be combined from the parts' CRCs and lengths).
    pub fn supports_full_object_multipart(&self) -> bool {
        self.crc().is_some()
    }

    /// Whether a multipart upload can carry a COMPOSITE checksum of this algorithm (all but
    /// CRC64NVME, which S3 supports as FULL_OBJECT only).
    pub fn supports_composite_multipart(&self) -> bool {
        *self != ChecksumAlgorithm::Crc64Nvme
    }

    /// The checksum type S3 uses for a multipart upload when the client names none.
    pub fn default_multipart_type(&self) -> ChecksumType {
        if self.supports_composite_multipart() {
            ChecksumType::Composite
        } else {
            ChecksumType::FullObject
        }
    }

    /// Length of the raw digest in bytes.
    pub fn digest_len(&self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// The crc-fast algorithm behind a CRC; `None` for the SHAs.
    fn crc(&self) -> Option<CrcAlgorithm> {
        match self {
            ChecksumAlgorithm::Crc32 => Some(CrcAlgorithm::Crc32IsoHdlc),
            ChecksumAlgorithm::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
            ChecksumAlgorithm::Crc64Nvme => Some(CrcAlgorithm::Crc64Nvme),
            ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => None,
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.s3_name())
    }
}

/// Why a checksum value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    /// The header value is not standard padded base64 (`InvalidRequest` in S3).
    #[error("checksum is not valid base64")]
    InvalidBase64,
    /// The decoded digest has the wrong length for its algorithm.
    #[error("{algorithm} checksum must be {expected} bytes, got {got}")]
    WrongLength {
        /// The algorithm.
        algorithm: ChecksumAlgorithm,
        /// Its digest length.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// FULL_OBJECT checksums exist only for CRCs.
    #[error("{algorithm} checksums cannot be combined into a full-object checksum")]
    NotCombinable {
        /// The algorithm.
        algorithm: ChecksumAlgorithm,
    },
}

impl ChecksumError {
    /// A stable, short identifier of the error kind for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ChecksumError::InvalidBase64 => "invalid_base64",
            ChecksumError::WrongLength { .. } => "wrong_checksum_length",
            ChecksumError::NotCombinable { .. } => "not_combinable",
        }
    }
}

/// The running state of one algorithm.
#[derive(Clone)]
enum HasherState {
    Crc(crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

/// A streaming hasher for one [`ChecksumAlgorithm`].
#[derive(Clone)]
pub struct ChecksumHasher {
    algorithm: ChecksumAlgorithm,
    state: HasherState,
}

impl fmt::Debug for ChecksumHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChecksumHasher")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl ChecksumHasher {
    /// A hasher that has seen no bytes yet.
    pub fn new(algorithm: ChecksumAlgorithm) -> ChecksumHasher {
        let state = match (algorithm, algorithm.crc()) {
            (_, Some(crc)) => HasherState::Crc(crc_fast::Digest::new(crc)),
            (ChecksumAlgorithm::Sha1, None) => HasherState::Sha1(sha1::Sha1::new()),
            (_, None) => HasherState::Sha256(sha2::Sha256::new()),
        };
        ChecksumHasher { algorithm, state }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            HasherState::Crc(digest) => digest.update(data),
            HasherState::Sha1(hasher) => hasher.update(data),
            HasherState::Sha256(hasher) => hasher.update(data),
        }
    }

    /// The raw digest (`digest_len()` bytes; CRCs big-endian).
    pub fn finalize(self) -> Vec<u8> {
        match self.state {
            HasherState::Crc(digest) => crc_bytes(self.algorithm, digest.finalize()),
            HasherState::Sha1(hasher) => hasher.finalize().to_vec(),
            HasherState::Sha256(hasher) => hasher.finalize().to_vec(),
        }
    }
}

/// The raw digest of `data` in one call.
pub fn checksum_of(algorithm: ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
    let mut hasher = ChecksumHasher::new(algorithm);
    hasher.update(data);
    hasher.finalize()
}

/// A CRC value as S3's big-endian bytes of the algorithm's width.
fn crc_bytes(algorithm: ChecksumAlgorithm, crc: u64) -> Vec<u8> {
    let be = crc.to_be_bytes();
    be[be.len() - algorithm.digest_len()..].to_vec()
}

/// A CRC digest of the algorithm's width back to its value.
fn crc_value(algorithm: ChecksumAlgorithm, digest: &[u8]) -> Result<u64, ChecksumError> {
    check_len(algorithm, digest)?;
    Ok(digest
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn check_len(algorithm: ChecksumAlgorithm, digest: &[u8]) -> Result<(), ChecksumError> {
    if digest.len() != algorithm.digest_len() {
        return Err(ChecksumError::WrongLength {
            algorithm,
            expected: algorithm.digest_len(),
            got: digest.len(),
        });
    }
    Ok(())
}

/// Standard padded base64, the encoding of `x-amz-checksum-*` values.
pub fn to_base64(digest: &[u8]) -> String {
    STANDARD.encode(digest)
}

/// Decodes standard padded base64.
pub fn from_base64(value: &str) -> Result<Vec<u8>, ChecksumError> {
    STANDARD
        .decode(value)
        .map_err(|_| ChecksumError::InvalidBase64)
}

/// Decodes a header value of `algorithm` and checks its length.
pub fn parse_checksum(algorithm: ChecksumAlgorithm, value: &str) -> Result<Vec<u8>, ChecksumError> {
    let digest = from_base64(value)?;
    check_len(algorithm, &digest)?;
    Ok(digest)
}

/// S3's COMPOSITE checksum of a multipart upload: `base64(alg(concat(part digests)))-N`.
pub fn composite_checksum(algorithm: ChecksumAlgorithm, part_digests: &[Vec<u8>]) -> String {
    let mut hasher = ChecksumHasher::new(algorithm);
    for digest in part_digests {
        hasher.update(digest);
    }
    format!("{}-{}", to_base64(&hasher.finalize()), part_digests.len())
}

/// S3's FULL_OBJECT checksum of a multipart upload: the CRC of the concatenated parts, computed
/// from each part's raw CRC digest and length without rereading any data.
pub fn combine_full_object_crc(
    algorithm: ChecksumAlgorithm,
    parts: &[(Vec<u8>, u64)],
) -> Result<Vec<u8>, ChecksumError> {
    let crc = algorithm
        .crc()
        .ok_or(ChecksumError::NotCombinable { algorithm })?;
    let mut combined = crc_fast::checksum(crc, b"");
    for (digest, len) in parts {
        let part = crc_value(algorithm, digest)?;
        combined = crc_fast::checksum_combine(crc, combined, part, *len);
    }
    Ok(crc_bytes(algorithm, combined))
}

#[cfg(test)]
#[path = "checksum_test.rs"]
mod tests;
