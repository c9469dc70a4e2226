//! The rules a metadata command can break, as one typed error with the fields each case needs.
//! The state machine produces them, they cross the wire as `meta.v1.MetaError` (code plus
//! fields) and come back out of the meta client as the same value, so nobody ever parses a
//! message string to learn what went wrong.
//!
//! Invariant: a command that fails with a `MetaRuleError` changed nothing.

/// A rule a metadata command broke; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaRuleError {
    /// The bucket does not exist.
    #[error("bucket {bucket} does not exist")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
    },
    /// The caller already owns a bucket of that name.
    #[error("bucket {bucket} is already yours")]
    BucketAlreadyOwnedByYou {
        /// The bucket.
        bucket: String,
    },
    /// Someone else owns a bucket of that name.
    #[error("bucket {bucket} already exists")]
    BucketAlreadyExists {
        /// The bucket.
        bucket: String,
    },
    /// The bucket still holds objects or uploads.
    #[error("bucket {bucket} is not empty")]
    BucketNotEmpty {
        /// The bucket.
        bucket: String,
    },
    /// The key has no (live) version.
    #[error("key {key} does not exist in bucket {bucket}")]
    NoSuchKey {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The version does not exist.
    #[error("version {version_id} of {key} does not exist in bucket {bucket}")]
    NoSuchVersion {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The version asked for.
        version_id: String,
    },
    /// The multipart upload does not exist (never did, was aborted, or was completed with
    /// other parts).
    #[error("upload {upload_id} does not exist")]
    NoSuchUpload {
        /// The upload.
        upload_id: String,
    },
    /// If-Match / If-None-Match failed against the current version.
    #[error("precondition failed: {condition}")]
    PreconditionFailed {
        /// Which condition, for people.
        condition: String,
    },
    /// A part named by CompleteMultipartUpload is missing or has another ETag.
    #[error("part {part_number} with ETag {etag} was not uploaded")]
    InvalidPart {
        /// The part.
        part_number: u32,
        /// The ETag the request named.
        etag: String,
    },
    /// CompleteMultipartUpload's parts are not in ascending order.
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    /// A field of the command is malformed.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// Another conditional write changed the key meanwhile.
    #[error("conditional request conflicts with another write")]
    ConditionalRequestConflict,
    /// A part other than the last is smaller than S3's minimum.
    #[error("part {part_number} is {size} bytes, below the minimum part size")]
    EntityTooSmall {
        /// The part.
        part_number: u32,
        /// Its size.
        size: u64,
    },
    /// A compare-and-set lost: the record changed since it was read, or a copy is claimed for
    /// deletion.
    #[error("conflict: {message}")]
    Conflict {
        /// What changed.
        message: String,
    },
    /// The write lease the command names is not live: its shards may already be collected.
    #[error("write lease {lease_id} is not live")]
    LeaseExpired {
        /// The lease.
        lease_id: u64,
    },
    /// A retried command whose first result was already acknowledged or expired: it was not
    /// applied again and its first result is gone.
    #[error("command session expired; the command was not applied again")]
    SessionExpired,
}

impl MetaRuleError {
    /// A stable identifier for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            MetaRuleError::NoSuchBucket { .. } => "no_such_bucket",
            MetaRuleError::BucketAlreadyOwnedByYou { .. } => "bucket_already_owned_by_you",
            MetaRuleError::BucketAlreadyExists { .. } => "bucket_already_exists",
            MetaRuleError::BucketNotEmpty { .. } => "bucket_not_empty",
            MetaRuleError::NoSuchKey { .. } => "no_such_key",
            MetaRuleError::NoSuchVersion { .. } => "no_such_version",
            MetaRuleError::NoSuchUpload { .. } => "no_such_upload",
            MetaRuleError::PreconditionFailed { .. } => "precondition_failed",
            MetaRuleError::InvalidPart { .. } => "invalid_part",
            MetaRuleError::InvalidPartOrder => "invalid_part_order",
            MetaRuleError::InvalidArgument { .. } => "invalid_argument",
            MetaRuleError::ConditionalRequestConflict => "conditional_request_conflict",
            MetaRuleError::EntityTooSmall { .. } => "entity_too_small",
            MetaRuleError::Conflict { .. } => "conflict",
            MetaRuleError::LeaseExpired { .. } => "lease_expired",
            MetaRuleError::SessionExpired => "session_expired",
        }
    }

    /// Whether the same request may succeed if made again later (from scratch: a new write
    /// under a live lease, a fresh read of a changed record).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            MetaRuleError::Conflict { .. }
                | MetaRuleError::LeaseExpired { .. }
                | MetaRuleError::ConditionalRequestConflict
        )
    }

    /// One value of every variant, in declaration order, for the tests of codes, messages and
    /// wire conversions (core's and proto's) to share. A new variant is added here too.
    #[doc(hidden)]
    pub fn examples() -> Vec<MetaRuleError> {
        vec![
            MetaRuleError::NoSuchBucket { bucket: "b".into() },
            MetaRuleError::BucketAlreadyOwnedByYou { bucket: "b".into() },
            MetaRuleError::BucketAlreadyExists { bucket: "b".into() },
            MetaRuleError::BucketNotEmpty { bucket: "b".into() },
            MetaRuleError::NoSuchKey {
                bucket: "b".into(),
                key: "k".into(),
            },
            MetaRuleError::NoSuchVersion {
                bucket: "b".into(),
                key: "k".into(),
                version_id: "v".into(),
            },
            MetaRuleError::NoSuchUpload {
                upload_id: "u".into(),
            },
            MetaRuleError::PreconditionFailed {
                condition: "If-Match".into(),
            },
            MetaRuleError::InvalidPart {
                part_number: 2,
                etag: "\"e\"".into(),
            },
            MetaRuleError::InvalidPartOrder,
            MetaRuleError::invalid("x"),
            MetaRuleError::ConditionalRequestConflict,
            MetaRuleError::EntityTooSmall {
                part_number: 1,
                size: 5,
            },
            MetaRuleError::Conflict {
                message: "m".into(),
            },
            MetaRuleError::LeaseExpired { lease_id: 3 },
            MetaRuleError::SessionExpired,
        ]
    }

    /// An invalid-argument error.
    pub fn invalid(message: impl Into<String>) -> MetaRuleError {
        MetaRuleError::InvalidArgument {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_policy_is_explicit() {
        let all = MetaRuleError::examples();
        let codes: std::collections::BTreeSet<_> = all.iter().map(MetaRuleError::code).collect();
        assert_eq!(codes.len(), all.len());
        let retryable: Vec<_> = all
            .iter()
            .filter(|e| e.is_retryable())
            .map(MetaRuleError::code)
            .collect();
        assert_eq!(
            retryable,
            ["conditional_request_conflict", "conflict", "lease_expired"]
        );
        assert_eq!(
            all[8].to_string(),
            "part 2 with ETag \"e\" was not uploaded"
        );
    }
}
