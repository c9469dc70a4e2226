//! Storing a body and committing the version or part it makes, shared by PutObject,
//! CopyObject, UploadPart and UploadPartCopy.
//!
//! Invariant: an erasure-coded body is written under a write lease taken before its body is
//! read (no lease: 503, nothing read); the lease's guard is held until meta answered the
//! commit that names it; the body's declared digests are checked inside the pipeline before
//! any shard is committed. A commit whose outcome is unknown is logged as possibly applied.

use super::Ops;
use super::body::{self, BodySpec};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pipeline::{SealTarget, WriteOptions, WrittenBlob};
use s3s::dto::{ETagCondition, StreamingBlob};
use std::collections::BTreeMap;
use tessera_client::meta::PutVersion;
use tessera_client::{CommandError, LeaseGuard};
use tessera_core::blob::Blob;
use tessera_core::checksum::{ChecksumAlgorithm, ChecksumType, to_base64};
use tessera_core::etag::single_part_etag;
use tessera_core::names::{BucketName, ObjectKey, VersionId};
use tessera_core::object::{
    ChecksumValue, ContentHeaders, ObjectPart, ObjectVersion, WritePrecondition,
};

/// The largest body a single PUT (or one part) may carry.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Validates the key and returns it.
pub fn check_key(key: &str) -> Result<ObjectKey, GatewayError> {
    Ok(ObjectKey::parse(key)?)
}

/// A body stored, with the lease its shards were written under (held until the commit).
pub struct StoredBody {
    /// The blob and the body's digests.
    pub written: WrittenBlob,
    /// The digest of the body under the spec's algorithm.
    pub digest: Vec<u8>,
    /// The write lease, for an erasure-coded body.
    pub lease: Option<LeaseGuard>,
}

impl StoredBody {
    /// The lease id a commit of this body names (0 for an inline body).
    pub fn lease_id(&self) -> u64 {
        self.lease.as_ref().map_or(0, LeaseGuard::lease_id)
    }
}

/// Streams a request body into a blob under a write lease, verifying every digest the client
/// declared before any shard is committed. `also` names one more checksum to compute (a
/// multipart upload without an algorithm needs every part's CRC64NVME to build the object's
/// full checksum).
pub async fn store_body(
    ops: &Ops,
    body: Option<StreamingBlob>,
    spec: &BodySpec,
    trailers: Option<s3s::TrailingHeaders>,
    also: Option<ChecksumAlgorithm>,
    target: SealTarget,
) -> Result<StoredBody, GatewayError> {
    let lease = ops.write_lease(spec.expected_len)?;
    let mut checksums = vec![spec.algorithm];
    if let Some(extra) = also
        && extra != spec.algorithm
    {
        checksums.push(extra);
    }
    let written = ops
        .blobs
        .write(
            body::into_stream(body),
            WriteOptions {
                expected_len: spec.expected_len,
                max_len: MAX_PUT_SIZE,
                checksums,
                lease_id: lease.as_ref().map(LeaseGuard::lease_id),
                check: Some(spec.check(trailers)),
                target,
            },
        )
        .await?;
    let digest = written
        .digests
        .checksum(spec.algorithm)
        .ok_or_else(|| GatewayError::internal("pipeline did not compute the checksum"))?
        .to_vec();
    Ok(StoredBody {
        written,
        digest,
        lease,
    })
}

/// The whole-body checksum record of a body (or part).
pub fn checksum_record(algorithm: ChecksumAlgorithm, digest: &[u8]) -> ChecksumValue {
    ChecksumValue {
        algorithm,
        value: to_base64(digest),
        kind: ChecksumType::FullObject,
    }
}

/// What a version stored from one body (PUT or copy) is made of besides its bytes.
pub struct VersionFields {
    /// Its bucket.
    pub bucket: BucketName,
    /// Its key.
    pub key: ObjectKey,
    /// Content headers.
    pub headers: ContentHeaders,
    /// `x-amz-meta-*`.
    pub user_metadata: BTreeMap<String, String>,
    /// S3 storage class name (empty: STANDARD).
    pub storage_class: String,
}

/// The record of a version stored from one body: one part holding the blob, an MD5 ETag and
/// one full-object checksum. Id, seq and time are placeholders the state machine assigns.
pub fn single_part_version(
    fields: VersionFields,
    blob: Blob,
    md5: &[u8; 16],
    checksum: ChecksumValue,
) -> ObjectVersion {
    let etag = single_part_etag(md5);
    let size = blob.size;
    ObjectVersion {
        size,
        etag: etag.clone(),
        headers: fields.headers,
        user_metadata: fields.user_metadata,
        checksums: vec![checksum.clone()],
        parts: vec![ObjectPart {
            part_number: 1,
            size,
            etag,
            blob,
            checksums: vec![checksum],
        }],
        storage_class: fields.storage_class,
        ..ObjectVersion::new(fields.bucket, fields.key)
    }
}

/// Precondition of a conditional write (If-Match / If-None-Match on PUT and Complete).
pub fn write_precondition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> Result<Option<WritePrecondition>, GatewayError> {
    let if_none_match_any = match if_none_match {
        None => false,
        Some(c) if c.is_any() => true,
        Some(_) => {
            return Err(GatewayError::NotImplementedHeader {
                header: "If-None-Match",
            });
        }
    };
    let if_match = match if_match {
        None => None,
        Some(c) if c.is_any() => Some("*".to_string()),
        Some(c) => c.as_etag().map(|t| format!("\"{}\"", t.value())),
    };
    if !if_none_match_any && if_match.is_none() {
        return Ok(None);
    }
    Ok(Some(WritePrecondition {
        if_none_match_any,
        if_match,
    }))
}

/// Logs a commit that failed: refused by a rule (its shards, if any, are left for garbage
/// collection once the lease ended), or with an unknown outcome (it may be stored).
pub fn log_commit_failure(ctx: &RequestContext, what: &'static str, blob: &Blob, e: &CommandError) {
    let data_id = blob.data_id().map(|id| id.to_string()).unwrap_or_default();
    if e.is_outcome_unknown() {
        tracing::warn!(request_id = %ctx.request_id, what, data_id, code = e.code(), "commit outcome unknown; it may have been applied");
    } else {
        tracing::info!(request_id = %ctx.request_id, what, data_id, code = e.code(), "commit refused; shards written for it are left to garbage collection");
    }
}

/// Commits a version stored from `body` under the body's lease, which is released after
/// meta answered.
pub async fn commit_version(
    ops: &Ops,
    ctx: &RequestContext,
    version: ObjectVersion,
    precondition: Option<WritePrecondition>,
    body: StoredBody,
) -> Result<ObjectVersion, GatewayError> {
    let put = PutVersion {
        version,
        precondition,
        lease_id: body.lease_id(),
    };
    let committed = ops.meta.put_version(&put).await;
    drop(body.lease);
    committed.map_err(|e| {
        if let Some(part) = put.version.parts.first() {
            log_commit_failure(ctx, "version", &part.blob, &e);
        }
        GatewayError::from(e)
    })
}

/// The version id a response shows: none for the null version of an unversioned bucket.
pub fn visible_version_id(version_id: &VersionId) -> Option<String> {
    (!version_id.is_null()).then(|| version_id.as_str().to_string())
}
