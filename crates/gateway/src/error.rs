//! What an S3 operation can fail with, in the gateway's own terms. Each variant (and each
//! variant of the errors it wraps) maps to exactly one S3 error in `s3::errors`; nothing here
//! knows about HTTP.
//!
//! Invariant: errors keep their type and fields all the way to that mapping (a rule the meta
//! state machine reported stays a `MetaRuleError`, with its part number and ETag), so the S3
//! error is chosen from data, never from a message.

use crate::pipeline::PipelineError;
use tessera_client::{CommandError, LeaseError, MetaClientError};

/// Why an S3 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The bucket does not exist.
    #[error("bucket {bucket} does not exist")]
    NoSuchBucket {
        /// The bucket named.
        bucket: String,
    },
    /// The caller already owns a bucket of that name.
    #[error("bucket already owned by you")]
    BucketAlreadyOwnedByYou,
    /// Somebody else owns a bucket of that name.
    #[error("bucket name is taken")]
    BucketAlreadyExists,
    /// DeleteBucket on a bucket that still holds versions or uploads.
    #[error("bucket is not empty")]
    BucketNotEmpty,
    /// A bucket name that breaks S3's naming rules.
    #[error("invalid bucket name: {reason}")]
    InvalidBucketName {
        /// Which rule.
        reason: String,
    },
    /// An object key longer than 1024 bytes.
    #[error("key is {len} bytes; the limit is 1024")]
    KeyTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The key (or that version) does not exist; for a current delete marker, its version id.
    #[error("no such key")]
    NoSuchKey {
        /// Set when the current version is a delete marker.
        delete_marker_version: Option<String>,
    },
    /// The version id names no version of the key.
    #[error("no such version")]
    NoSuchVersion,
    /// GET or HEAD of a specific version that is a delete marker.
    #[error("the version is a delete marker")]
    DeleteMarkerVersion {
        /// The delete marker's version id.
        version_id: String,
    },
    /// The multipart upload does not exist (or was completed or aborted).
    #[error("no such upload")]
    NoSuchUpload,
    /// A part listed in CompleteMultipartUpload is missing or has another ETag or checksum.
    #[error("invalid part {part_number}")]
    InvalidPart {
        /// The part.
        part_number: u32,
    },
    /// Parts listed out of ascending order.
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    /// A part other than the last is smaller than 5 MiB.
    #[error("part {part_number} is {size} bytes, below the 5 MiB minimum")]
    EntityTooSmall {
        /// The part.
        part_number: u32,
        /// Its size.
        size: u64,
    },
    /// A body over the limit for the operation.
    #[error("body exceeds {max} bytes")]
    EntityTooLarge {
        /// The limit.
        max: u64,
    },
    /// partNumber that the object does not have.
    #[error("part number {part_number} is not satisfiable")]
    InvalidPartNumber {
        /// The part requested.
        part_number: i64,
    },
    /// If-Match, If-Unmodified-Since, If-None-Match on a write, or a copy-source condition.
    #[error("precondition failed: {condition}")]
    PreconditionFailed {
        /// The header whose condition failed.
        condition: &'static str,
    },
    /// If-None-Match or If-Modified-Since on a read: the client's copy is current.
    #[error("not modified")]
    NotModified,
    /// A range that does not overlap the object.
    #[error("range not satisfiable for an object of {size} bytes")]
    InvalidRange {
        /// The object's size.
        size: u64,
    },
    /// An argument S3 rejects with InvalidArgument.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// A request S3 rejects with InvalidRequest.
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
    },
    /// An XML body that is malformed or does not follow the schema.
    #[error("malformed XML: {message}")]
    MalformedXml {
        /// What is wrong.
        message: String,
    },
    /// Content-MD5 or a checksum header that is not valid base64 of the right length.
    #[error("invalid digest: {what}")]
    InvalidDigest {
        /// Which digest.
        what: String,
    },
    /// The body ended before Content-Length bytes (or went past it).
    #[error("body length {got} does not match the declared {expected}")]
    IncompleteBody {
        /// Declared.
        expected: u64,
        /// Received.
        got: u64,
    },
    /// User metadata over 2 KiB.
    #[error("metadata is {size} bytes; the limit is 2048")]
    MetadataTooLarge {
        /// Its size.
        size: usize,
    },
    /// A LocationConstraint that is not this endpoint's region.
    #[error("location constraint {given} is not this endpoint's region")]
    IllegalLocationConstraint {
        /// What the client asked for.
        given: String,
    },
    /// A header whose functionality S3 does not implement for this operation.
    #[error("header {header} is not implemented for this operation")]
    NotImplementedHeader {
        /// The header.
        header: &'static str,
    },
    /// A concurrent write changed the object between check and commit.
    #[error("conflicting conditional write")]
    ConditionalRequestConflict,
    /// Customer-key (SSE-C) headers that are incomplete or inconsistent, or a key that is not
    /// the object's.
    #[error("customer key: {0}")]
    CustomerKey(#[from] tessera_core::sealing::customer_key::CustomerKeyError),
    /// A customer key sent over plain HTTP, which S3 refuses (the key would travel in clear).
    #[error("customer key sent over plain HTTP")]
    CustomerKeyOverHttp,
    /// A read of an object encrypted with a customer key that came without the key.
    #[error("the object is encrypted with a customer key and none was given")]
    CustomerKeyRequired,
    /// A metadata query failed or no meta node answered.
    #[error("metadata service: {0}")]
    Meta(#[from] MetaClientError),
    /// A metadata command broke a rule, or its outcome is unknown (see
    /// `CommandError::is_outcome_unknown`).
    #[error("metadata command: {0}")]
    Command(#[from] CommandError),
    /// No write lease could be held for an erasure-coded write.
    #[error("write lease: {0}")]
    Lease(#[from] LeaseError),
    /// Storing or reading shards failed.
    #[error("data path: {0}")]
    Pipeline(#[from] PipelineError),
    /// A broken invariant: a record that cannot be understood.
    #[error("internal error: {what}")]
    Internal {
        /// What broke.
        what: String,
    },
}

impl GatewayError {
    /// An internal error with a description.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Internal { what: what.into() }
    }

    /// An InvalidArgument with a message.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            message: message.into(),
        }
    }

    /// An InvalidRequest with a message.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
        }
    }
}

impl From<tessera_core::names::NameError> for GatewayError {
    fn from(err: tessera_core::names::NameError) -> Self {
        use tessera_core::names::NameError;
        match err {
            NameError::InvalidBucketName { reason, .. } => Self::InvalidBucketName {
                reason: reason.to_string(),
            },
            NameError::KeyTooLong { len } => Self::KeyTooLong { len },
            NameError::InvalidKey { reason } => Self::invalid_argument(reason),
            NameError::InvalidDataId => Self::internal("invalid data id"),
            NameError::InvalidVersionId => Self::invalid_argument("Invalid version id specified"),
        }
    }
}
