//! CopyObject and the copy-source half of UploadPartCopy: the source version is looked up with
//! S3's delete-marker rules, checked against the x-amz-copy-source-if-* conditions, and its
//! bytes are streamed through the blob pipeline into a new blob (never shared, so garbage
//! collection of one version can never remove another's data).
//!
//! Invariant: a copy of a whole source re-checks the source's stored checksum as it reads, so
//! bytes that no longer match are never committed as a new version; a failure to read the
//! source is reported as what it is (unavailable, internal), never as a bad request body.

use super::Ops;
use super::conditions::{self, ConditionMode, ReadConditions};
use super::convert::{self, ChecksumFields, timestamp_from_ms};
use super::read::{fetch_version, read_conditions};
use super::sse;
use super::store::{
    MAX_PUT_SIZE, StoredBody, VersionFields, check_key, checksum_record, commit_version,
    single_part_version, visible_version_id,
};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pipeline::{BodyError, PipelineError, ReadCheck, SealTarget, WriteOptions};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use std::ops::Range as ByteRange;
use tessera_core::checksum::ChecksumAlgorithm;
use tessera_core::names::BucketName;
use tessera_core::object::ObjectVersion;
use tessera_core::sealing::customer_key::CustomerKey;

type Res<T> = Result<S3Response<T>, GatewayError>;

/// The source of a copy, checked against its conditions.
pub async fn copy_source(
    ops: &Ops,
    source: &CopySource,
    conds: ReadConditions,
) -> Result<ObjectVersion, GatewayError> {
    let CopySource::Bucket {
        bucket,
        key,
        version_id,
    } = source
    else {
        return Err(GatewayError::invalid_argument(
            "x-amz-copy-source must name a bucket and key",
        ));
    };
    let version = match fetch_version(ops, bucket, key, version_id.as_deref()).await {
        Err(GatewayError::DeleteMarkerVersion { .. }) => {
            return Err(GatewayError::invalid_request(
                "The source of a copy request may not specifically refer to a delete marker by version id.",
            ));
        }
        other => other?,
    };
    conditions::evaluate(
        &conds,
        &version.etag,
        version.last_modified_ms,
        ConditionMode::CopySource,
    )?;
    Ok(version)
}

/// Copies a byte range of a source version (opened with `source_key` if it is SSE-C) into a
/// new blob sealed for `target`, under a write lease taken once the source is open.
pub async fn copy_bytes(
    ops: &Ops,
    source: &ObjectVersion,
    source_key: Option<&CustomerKey>,
    range: ByteRange<u64>,
    algorithm: ChecksumAlgorithm,
    target: SealTarget,
) -> Result<StoredBody, GatewayError> {
    let len = range.end - range.start;
    let check = if range == (0..source.size) {
        ReadCheck::WholeParts
    } else {
        ReadCheck::None
    };
    // Opened before the lease and the write: a source whose key is refused fails cleanly.
    let stream = ops
        .blobs
        .open_object(source, range, check, source_key)
        .await?
        .map(|r| r.map_err(|e| -> BodyError { Box::new(e) }));
    let lease = ops.write_lease(Some(len))?;
    let written = ops
        .blobs
        .write(
            Box::pin(stream),
            WriteOptions {
                expected_len: Some(len),
                max_len: MAX_PUT_SIZE,
                checksums: vec![algorithm],
                lease_id: lease.as_ref().map(tessera_client::LeaseGuard::lease_id),
                check: None,
                target,
            },
        )
        .await
        .map_err(source_failure)?;
    let digest = written
        .digests
        .checksum(algorithm)
        .ok_or_else(|| GatewayError::internal("pipeline did not compute the checksum"))?
        .to_vec();
    Ok(StoredBody {
        written,
        digest,
        lease,
    })
}

/// A write of copied bytes that failed reading its source fails as the source read did.
fn source_failure(e: PipelineError) -> PipelineError {
    match e {
        PipelineError::BodyRead { source } => match source.downcast::<PipelineError>() {
            Ok(read) => *read,
            Err(source) => PipelineError::BodyRead { source },
        },
        other => other,
    }
}

/// CopyObject: metadata COPY or REPLACE, conditional on the copy-source headers.
pub async fn copy_object(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<CopyObjectInput>,
) -> Res<CopyObjectOutput> {
    let input = req.input;
    let key = check_key(&input.key)?;
    let source_key = sse::request_key(&sse::copy_source_headers!(input), ctx, ops.sse_c_over_http)?;
    let sse::NewObjectSse { customer, kms } =
        sse::for_new_object(ops, &input.bucket, &sse::new_object_request!(input), ctx).await?;
    let bucket = BucketName::parse(&input.bucket)?;
    let directive = input
        .metadata_directive
        .as_ref()
        .map(|d| d.as_str().to_string())
        .unwrap_or_else(|| "COPY".to_string());
    if directive != "COPY" && directive != "REPLACE" {
        return Err(GatewayError::invalid_argument(
            "Unknown metadata directive; use COPY or REPLACE",
        ));
    }
    let conds = read_conditions(
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
    );
    let source = copy_source(ops, &input.copy_source, conds).await?;
    sse::check_read_key(&source, source_key.as_ref())?;
    let same_object = source.bucket == bucket && source.key == key;
    let changes_encryption =
        customer.is_some() || source_key.is_some() || input.server_side_encryption.is_some();
    if same_object && directive == "COPY" && input.storage_class.is_none() && !changes_encryption {
        return Err(GatewayError::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    if source.size > MAX_PUT_SIZE {
        return Err(GatewayError::invalid_request(format!(
            "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_PUT_SIZE}"
        )));
    }
    let algorithm = match &input.checksum_algorithm {
        Some(a) => convert::checksum_algorithm(a)?,
        None => source
            .checksums
            .first()
            .map(|c| c.algorithm)
            .filter(|_| !source.multipart)
            .unwrap_or(ChecksumAlgorithm::Crc64Nvme),
    };
    let target = SealTarget::new(bucket.as_str(), key.as_str(), 1)
        .with_customer_key(customer.clone())
        .with_kms(kms);
    let stored = copy_bytes(
        ops,
        &source,
        source_key.as_ref(),
        0..source.size,
        algorithm,
        target,
    )
    .await?;
    let (headers, user_metadata) = if directive == "REPLACE" {
        (
            convert::content_headers(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
            ),
            convert::user_metadata(input.metadata)?,
        )
    } else {
        (source.headers.clone(), source.user_metadata.clone())
    };
    let checksum = checksum_record(algorithm, &stored.digest);
    let version = single_part_version(
        VersionFields {
            bucket,
            key,
            headers,
            user_metadata,
            storage_class: input
                .storage_class
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| source.storage_class.clone()),
        },
        stored.written.blob.clone(),
        &sse::etag_md5(&stored.written.digests.md5, customer.as_ref()),
        checksum,
    );
    let sealing = &stored.written.blob.sealing;
    let encryption = sse::header_for(sealing.scheme);
    let ssekms_key_id = sse::kms_key_for(sealing);
    let ssekms_encryption_context = sse::kms_context_for(sealing);
    let bucket_key_enabled = sse::bucket_key_for(sealing);
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    let committed = commit_version(ops, ctx, version, None, stored).await?;
    let fields = ChecksumFields::from_stored(&committed.checksums);
    Ok(S3Response::new(CopyObjectOutput {
        server_side_encryption: encryption,
        ssekms_key_id,
        ssekms_encryption_context,
        bucket_key_enabled,
        sse_customer_algorithm,
        sse_customer_key_md5,
        copy_object_result: Some(CopyObjectResult {
            checksum_crc32: fields.crc32,
            checksum_crc32c: fields.crc32c,
            checksum_crc64nvme: fields.crc64nvme,
            checksum_sha1: fields.sha1,
            checksum_sha256: fields.sha256,
            checksum_type: fields.checksum_type,
            e_tag: Some(convert::etag(&committed.etag)),
            last_modified: Some(timestamp_from_ms(committed.last_modified_ms)),
        }),
        copy_source_version_id: visible_version_id(&source.version_id),
        version_id: visible_version_id(&committed.version_id),
        ..Default::default()
    }))
}
