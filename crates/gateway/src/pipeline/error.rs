//! Why a blob could not be written or read.
//!
//! Invariant: every failure of the pipeline is one of these variants, each with a stable
//! `code()`; lost quorum and missing nodes are retryable (503), a bad body is the client's.

use std::time::Duration;

use tessera_core::checksum::ChecksumAlgorithm;

use super::BodyError;
use super::sealing::SealError;

/// Why the writer's own check of a whole body refused it (see `WriteOptions::check`); the
/// write committed no shard.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyRejection {
    /// A digest the client declared (Content-MD5, `x-amz-checksum-*`) differs from the body's.
    #[error("{what} did not match the body")]
    BadDigest {
        /// Which digest.
        what: String,
    },
    /// A checksum trailer announced in `x-amz-trailer` is missing or not a digest.
    #[error("malformed trailer: {detail}")]
    MalformedTrailer {
        /// What is wrong.
        detail: String,
    },
}

/// A failure of the blob pipeline; the S3 layer maps each variant to one S3 error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The request body failed before its end (client disconnect, bad chunk signature).
    #[error("request body could not be read: {source}")]
    BodyRead {
        /// What the body stream reported.
        #[source]
        source: BodyError,
    },
    /// The client sent nothing for longer than the idle timeout.
    #[error("request body idle for more than {} s", idle.as_secs())]
    BodyIdle {
        /// The idle timeout that passed.
        idle: Duration,
    },
    /// The body's length differs from the declared Content-Length.
    #[error("request body has {got} bytes, {expected} declared")]
    LengthMismatch {
        /// Declared length.
        expected: u64,
        /// Bytes received (at least; reading stops as soon as the body is known to be too long).
        got: u64,
    },
    /// The body is longer than the largest blob accepted.
    #[error("request body exceeds the maximum of {max} bytes")]
    EntityTooLarge {
        /// The limit.
        max: u64,
    },
    /// Too few data nodes are available to place the shards of a new blob.
    #[error(
        "cannot place {shards} shards on {available_nodes} available data nodes in {usable_zones} zones"
    )]
    InsufficientNodes {
        /// Shards the layout needs (0 when no layout could be chosen at all).
        shards: u32,
        /// Data nodes available now.
        available_nodes: u32,
        /// Zones with at least one available node.
        usable_zones: u32,
    },
    /// Too few shards became durable for the blob to survive the loss of a zone.
    #[error(
        "only {committed} shards committed; the write rule needs at least {needed} outside any one zone"
    )]
    WriteQuorumLost {
        /// Shards that committed (now orphans).
        committed: u32,
        /// k: shards that must remain after the loss of any one zone.
        needed: u32,
    },
    /// The body's own check refused it after it ended; no shard was committed.
    #[error("body refused: {0}")]
    BodyRejected(#[from] BodyRejection),
    /// The stored bytes could not be sealed or unsealed.
    #[error("sealing: {0}")]
    Seal(#[from] SealError),
    /// A whole part (or object) read back does not match its stored checksum: the bytes read
    /// are not the bytes written, and the last piece was never sent.
    #[error("part {part_number} does not match its stored {algorithm} checksum")]
    ChecksumMismatch {
        /// The part (1 for a single-part object).
        part_number: u32,
        /// The checksum checked.
        algorithm: ChecksumAlgorithm,
    },
    /// Fewer than k shards of a stripe could be read intact.
    #[error("only {available} of the {needed} shards needed could be read")]
    ReadUnavailable {
        /// k.
        needed: u32,
        /// Shards that could be read intact.
        available: u32,
    },
    /// A bug or an impossible record (a malformed blob, a failed codec call, a lost task).
    #[error("internal pipeline error in {context}: {detail}")]
    Internal {
        /// Where it happened.
        context: &'static str,
        /// What happened.
        detail: String,
    },
}

impl PipelineError {
    /// Whether the same request may succeed later without a change on the client's side.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::InsufficientNodes { .. }
            | Self::WriteQuorumLost { .. }
            | Self::ReadUnavailable { .. }
            | Self::Seal(SealError::KeysUnavailable { .. }) => true,
            Self::BodyRead { .. }
            | Self::BodyIdle { .. }
            | Self::LengthMismatch { .. }
            | Self::EntityTooLarge { .. }
            | Self::BodyRejected(_)
            | Self::Seal(_)
            | Self::ChecksumMismatch { .. }
            | Self::Internal { .. } => false,
        }
    }

    /// A stable, short identifier of the error kind for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BodyRead { .. } => "body_read",
            Self::BodyIdle { .. } => "body_idle",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::EntityTooLarge { .. } => "entity_too_large",
            Self::InsufficientNodes { .. } => "insufficient_nodes",
            Self::WriteQuorumLost { .. } => "write_quorum_lost",
            Self::ReadUnavailable { .. } => "read_unavailable",
            Self::BodyRejected(BodyRejection::BadDigest { .. }) => "bad_digest",
            Self::BodyRejected(BodyRejection::MalformedTrailer { .. }) => "malformed_trailer",
            Self::Seal(e) => e.code(),
            Self::ChecksumMismatch { .. } => "object_checksum_mismatch",
            Self::Internal { .. } => "pipeline_internal",
        }
    }

    /// An internal error at `context`.
    pub(crate) fn internal(context: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Internal {
            context,
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_failures_are_retryable_and_client_faults_are_not() {
        let unavailable = [
            PipelineError::InsufficientNodes {
                shards: 6,
                available_nodes: 2,
                usable_zones: 1,
            },
            PipelineError::WriteQuorumLost {
                committed: 2,
                needed: 3,
            },
            PipelineError::ReadUnavailable {
                needed: 3,
                available: 2,
            },
        ];
        for err in &unavailable {
            assert!(err.is_retryable(), "{err}");
        }
        let final_ = [
            PipelineError::BodyIdle {
                idle: Duration::from_secs(60),
            },
            PipelineError::LengthMismatch {
                expected: 5,
                got: 4,
            },
            PipelineError::EntityTooLarge { max: 10 },
            PipelineError::internal("test", "boom"),
        ];
        for err in &final_ {
            assert!(!err.is_retryable(), "{err}");
        }
        assert_eq!(final_[1].code(), "length_mismatch");
        assert_eq!(unavailable[1].code(), "write_quorum_lost");
    }
}
