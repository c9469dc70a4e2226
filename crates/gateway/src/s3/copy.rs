//! CopyObject and the copy-source half of UploadPartCopy: the source version is looked up with
//! S3's delete-marker rules, checked against the x-amz-copy-source-if-* conditions, and its
//! bytes are streamed through the blob pipeline into a new blob (never shared, so garbage
//! collection of one version can never remove another's data).

use super::Ops;
use super::conditions::{self, ConditionMode, ReadConditions};
use super::convert::{self, ChecksumFields, timestamp_from_ms};
use super::object::{
    MAX_PUT_SIZE, check_key, checksum_record, commit_version, fetch_version, object_body,
    read_conditions, single_part_version, visible_version_id,
};
use crate::error::GatewayError;
use crate::pipeline::{BodyError, WriteOptions, WrittenBlob};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use std::ops::Range as ByteRange;
use tessera_core::checksum::ChecksumAlgorithm;
use tessera_proto::meta::v1 as pb;

type Res<T> = Result<S3Response<T>, GatewayError>;

/// The source of a copy, checked against its conditions.
pub async fn copy_source(
    ops: &Ops,
    source: &CopySource,
    conds: ReadConditions,
) -> Result<pb::ObjectVersion, GatewayError> {
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

/// Copies a byte range of a source version into a new blob.
pub async fn copy_bytes(
    ops: &Ops,
    source: &pb::ObjectVersion,
    range: ByteRange<u64>,
    algorithm: ChecksumAlgorithm,
) -> Result<WrittenBlob, GatewayError> {
    let len = range.end - range.start;
    let stream = object_body(ops, source, range).map(|r| r.map_err(|e| -> BodyError { e }));
    Ok(ops
        .blobs
        .write(
            Box::pin(stream),
            WriteOptions {
                expected_len: Some(len),
                max_len: MAX_PUT_SIZE,
                checksums: vec![algorithm],
            },
        )
        .await?)
}

/// CopyObject: metadata COPY or REPLACE, conditional on the copy-source headers.
pub async fn copy_object(ops: &Ops, req: S3Request<CopyObjectInput>) -> Res<CopyObjectOutput> {
    let input = req.input;
    let key = check_key(&input.key)?;
    ops.bucket(&input.bucket).await?;
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
    let same_object = source.bucket == input.bucket && source.key == key.as_str();
    if same_object && directive == "COPY" && input.storage_class.is_none() {
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
            .and_then(|c| pb::ChecksumAlgorithm::try_from(c.algorithm).ok())
            .and_then(convert::checksum_algorithm_from_pb)
            .filter(|_| !source.multipart)
            .unwrap_or(ChecksumAlgorithm::Crc64Nvme),
    };
    let written = copy_bytes(ops, &source, 0..source.size, algorithm).await?;
    let digest = written
        .checksums
        .first()
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
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
        (
            source.headers.clone().unwrap_or_default(),
            source.user_metadata.clone(),
        )
    };
    let checksum = checksum_record(algorithm, &digest);
    let version = single_part_version(
        &input.bucket,
        key.as_str(),
        &written,
        &checksum,
        headers,
        user_metadata,
        input
            .storage_class
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| source.storage_class.clone()),
    );
    let committed = commit_version(ops, version, None, &written.blob).await?;
    let fields = ChecksumFields::from_stored(&committed.checksums);
    Ok(S3Response::new(CopyObjectOutput {
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
