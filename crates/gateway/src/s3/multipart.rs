//! Multipart uploads: create, upload part (from a body or a copy source), abort and the two
//! listings (CompleteMultipartUpload is in `complete`). Each part is its own blob, written
//! under a write lease that is held until meta recorded the part.
//!
//! Invariant: times shown are meta's (the part's and the upload's records); the gateway never
//! writes its own clock into a record.

use super::Ops;
use super::body::{BodySpec, ChecksumHeaders};
use super::conditions::ReadConditions;
use super::convert::{self, ChecksumFields, timestamp_from_ms, timestamp_to_ms};
use super::copy;
use super::sse;
use super::store::{
    MAX_PUT_SIZE, StoredBody, check_key, checksum_record, log_commit_failure, store_body,
    visible_version_id,
};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pipeline::SealTarget;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use tessera_client::meta::ListUploads;
use tessera_core::checksum::{ChecksumAlgorithm, ChecksumType};
use tessera_core::etag::single_part_etag;
use tessera_core::multipart::{MultipartError, validate_part_number};
use tessera_core::names::{BucketName, new_upload_id};
use tessera_core::object::{self as core, ChecksumValue, UploadedPart};
use tessera_core::sealing::customer_key::CustomerKey;

type Res<T> = Result<S3Response<T>, GatewayError>;

impl From<MultipartError> for GatewayError {
    fn from(e: MultipartError) -> Self {
        match e {
            MultipartError::InvalidPartOrder => GatewayError::InvalidPartOrder,
            MultipartError::InvalidPart { part_number } => {
                GatewayError::InvalidPart { part_number }
            }
            MultipartError::EntityTooSmall { part_number, size } => {
                GatewayError::EntityTooSmall { part_number, size }
            }
            MultipartError::NoParts => GatewayError::MalformedXml {
                message: "CompleteMultipartUpload lists no parts".into(),
            },
            MultipartError::InvalidPartNumber { .. } => GatewayError::invalid_argument(
                "Part number must be an integer between 1 and 10000, inclusive",
            ),
        }
    }
}

/// The open upload, checked to belong to this bucket and key.
async fn upload_of(
    ops: &Ops,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<core::MultipartUpload, GatewayError> {
    let upload = ops
        .meta
        .get_upload(upload_id)
        .await?
        .upload
        .ok_or(GatewayError::NoSuchUpload)?;
    if upload.bucket.as_str() != bucket || upload.key.as_str() != key {
        return Err(GatewayError::NoSuchUpload);
    }
    Ok(upload)
}

/// CreateMultipartUpload.
pub async fn create_multipart_upload(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<CreateMultipartUploadInput>,
) -> Res<CreateMultipartUploadOutput> {
    let input = req.input;
    let bucket = BucketName::parse(&input.bucket).map_err(|_| GatewayError::NoSuchBucket {
        bucket: input.bucket.clone(),
    })?;
    let key = check_key(&input.key)?;
    let sse_request = sse::new_object_request!(input);

    let user_metadata = convert::user_metadata(input.metadata)?;
    let algorithm = input
        .checksum_algorithm
        .as_ref()
        .map(convert::checksum_algorithm)
        .transpose()?;
    let checksum_type = match input.checksum_type.as_ref().map(|t| t.as_str()) {
        None => match algorithm {
            Some(ChecksumAlgorithm::Crc64Nvme) | None => ChecksumType::FullObject,
            Some(_) => ChecksumType::Composite,
        },
        Some(name) => ChecksumType::from_s3_name(name)
            .filter(|_| matches!(name, "FULL_OBJECT" | "COMPOSITE"))
            .ok_or_else(|| {
                GatewayError::invalid_request(format!(
                    "Value for x-amz-checksum-type header is invalid: {name}"
                ))
            })?,
    };
    if let Some(alg) = algorithm {
        let full = checksum_type == ChecksumType::FullObject;
        if full && !alg.supports_full_object_multipart() {
            return Err(GatewayError::invalid_request(format!(
                "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
                alg.s3_name()
            )));
        }
        if !full && alg == ChecksumAlgorithm::Crc64Nvme {
            return Err(GatewayError::invalid_request(
                "The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm.",
            ));
        }
    }
    let sse::NewObjectSse { customer, kms } =
        sse::for_new_object(ops, bucket.as_str(), &sse_request, ctx).await?;
    // Every part is sealed under the key the upload starts with, even if an alias moves.
    let kms = match kms {
        Some(kms) => Some(sse::resolve_upload_kms(ops, kms).await?),
        None => None,
    };
    let upload_id = new_upload_id(rand::random());
    let upload = core::MultipartUpload {
        bucket,
        key,
        upload_id: upload_id.clone(),
        initiated_ms: 0,
        headers: convert::content_headers(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
        ),
        user_metadata,
        checksum_algorithm: algorithm,
        checksum_type,
        storage_class: input
            .storage_class
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        customer_key_check: customer
            .as_ref()
            .map(|k| k.key_check(rand::random()))
            .unwrap_or_default(),
        kms: kms.clone(),
    };
    ops.meta.create_upload(&upload).await?;
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        server_side_encryption: match (&customer, &kms) {
            (Some(_), _) => None,
            (None, Some(kms)) => Some(ServerSideEncryption::from(
                if kms.dsse {
                    ServerSideEncryption::AWS_KMS_DSSE
                } else {
                    ServerSideEncryption::AWS_KMS
                }
                .to_owned(),
            )),
            (None, None) => sse::sse_s3(),
        },
        ssekms_key_id: kms.as_ref().map(|k| k.key_id.clone()),
        bucket_key_enabled: kms.as_ref().and_then(|k| k.bucket_key.then_some(true)),
        ssekms_encryption_context: kms
            .as_ref()
            .and_then(|k| tessera_core::kms::context_header(&k.context)),
        sse_customer_algorithm,
        sse_customer_key_md5,
        checksum_algorithm: input.checksum_algorithm,
        checksum_type: algorithm.map(|_| convert::checksum_type(checksum_type)),
        ..Default::default()
    }))
}

/// Records an uploaded part under the lease its blob was written with, released after meta
/// answered.
async fn record_part(
    ops: &Ops,
    ctx: &RequestContext,
    part: &UploadedPart,
    stored: StoredBody,
) -> Result<(), GatewayError> {
    let recorded = ops.meta.put_part(part, stored.lease_id()).await;
    drop(stored.lease);
    recorded.map_err(|e| {
        log_commit_failure(ctx, "part", &part.blob, &e);
        GatewayError::from(e)
    })
}

/// UploadPart.
pub async fn upload_part(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<UploadPartInput>,
) -> Res<UploadPartOutput> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let part_number = validate_part_number(input.part_number)?;
    let upload = upload_of(ops, &input.bucket, &input.key, &input.upload_id).await?;
    let customer = sse::request_key(&sse::customer_headers!(input), ctx, ops.sse_c_over_http)?;
    sse::check_upload_key(&upload.customer_key_check, customer.as_ref())?;
    let mut spec = BodySpec::from_request(
        &headers,
        input.content_length,
        input.content_md5.as_deref(),
        &ChecksumHeaders {
            algorithm: input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_string()),
            crc32: input.checksum_crc32,
            crc32c: input.checksum_crc32c,
            crc64nvme: input.checksum_crc64nvme,
            sha1: input.checksum_sha1,
            sha256: input.checksum_sha256,
        },
    )?;
    if let Some(alg) = upload.checksum_algorithm {
        if spec.requested && spec.algorithm != alg {
            return Err(GatewayError::invalid_request(format!(
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                alg.s3_name().to_lowercase(),
                spec.algorithm.s3_name().to_lowercase()
            )));
        }
        spec.algorithm = alg;
    }
    let also = upload
        .checksum_algorithm
        .is_none()
        .then_some(ChecksumAlgorithm::Crc64Nvme);
    let target = SealTarget::new(upload.bucket.as_str(), upload.key.as_str(), part_number)
        .with_customer_key(customer.clone())
        .with_kms(sse::upload_kms_target(&upload));
    let stored = store_body(ops, input.body, &spec, trailing_headers, also, target).await?;
    let checksum = checksum_record(spec.algorithm, &stored.digest);
    let checksums = stored
        .written
        .digests
        .checksums
        .iter()
        .map(|(alg, d)| checksum_record(*alg, d))
        .collect();
    let part = part_record(
        &upload.upload_id,
        part_number,
        &stored,
        checksums,
        customer.as_ref(),
    );
    let etag = part.etag.clone();
    let encryption = sse::header_for(stored.written.blob.sealing.scheme);
    let ssekms_key_id = sse::kms_key_for(&stored.written.blob.sealing);
    let bucket_key_enabled = sse::bucket_key_for(&stored.written.blob.sealing);
    record_part(ops, ctx, &part, stored).await?;
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    let mut out = UploadPartOutput {
        server_side_encryption: encryption,
        ssekms_key_id,
        bucket_key_enabled,
        sse_customer_algorithm,
        sse_customer_key_md5,
        e_tag: Some(convert::etag(&etag)),
        ..Default::default()
    };
    if spec.requested || upload.checksum_algorithm.is_some() {
        let f = ChecksumFields::from_stored(&[checksum]);
        out.checksum_crc32 = f.crc32;
        out.checksum_crc32c = f.crc32c;
        out.checksum_crc64nvme = f.crc64nvme;
        out.checksum_sha1 = f.sha1;
        out.checksum_sha256 = f.sha256;
    }
    Ok(S3Response::new(out))
}

/// The record of part `part_number` whose bytes `stored` holds: its ETag is the MD5 of those
/// bytes (for SSE-C, a MAC of it under the customer's key), its time is meta's to assign.
fn part_record(
    upload_id: &str,
    part_number: u32,
    stored: &StoredBody,
    checksums: Vec<ChecksumValue>,
    customer: Option<&CustomerKey>,
) -> UploadedPart {
    UploadedPart {
        upload_id: upload_id.to_owned(),
        part_number,
        size: stored.written.blob.size,
        etag: single_part_etag(&sse::etag_md5(&stored.written.digests.md5, customer)),
        last_modified_ms: 0,
        blob: stored.written.blob.clone(),
        checksums,
    }
}

/// Parses `bytes=first-last` of x-amz-copy-source-range against the source size.
pub fn parse_copy_range(range: &str, size: u64) -> Result<std::ops::Range<u64>, GatewayError> {
    let bad = || {
        GatewayError::invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )
    };
    let spec = range.strip_prefix("bytes=").ok_or_else(bad)?;
    let (first, last) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    if last >= size {
        return Err(GatewayError::InvalidRange { size });
    }
    Ok(first..last + 1)
}

/// UploadPartCopy.
pub async fn upload_part_copy(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<UploadPartCopyInput>,
) -> Res<UploadPartCopyOutput> {
    let input = req.input;
    let part_number = validate_part_number(input.part_number)?;
    let upload = upload_of(ops, &input.bucket, &input.key, &input.upload_id).await?;
    let customer = sse::request_key(&sse::customer_headers!(input), ctx, ops.sse_c_over_http)?;
    sse::check_upload_key(&upload.customer_key_check, customer.as_ref())?;
    let source_key = sse::request_key(&sse::copy_source_headers!(input), ctx, ops.sse_c_over_http)?;
    let tag = |c: &ETagCondition| c.as_etag().map(|t| t.value().to_string());
    let conds = ReadConditions {
        if_match: input.copy_source_if_match.as_ref().map(tag),
        if_none_match: input.copy_source_if_none_match.as_ref().map(tag),
        if_modified_since_ms: input
            .copy_source_if_modified_since
            .as_ref()
            .map(timestamp_to_ms),
        if_unmodified_since_ms: input
            .copy_source_if_unmodified_since
            .as_ref()
            .map(timestamp_to_ms),
    };
    let source = copy::copy_source(ops, &input.copy_source, conds).await?;
    sse::check_read_key(&source, source_key.as_ref())?;
    let range = match &input.copy_source_range {
        Some(r) => parse_copy_range(r, source.size)?,
        None => 0..source.size,
    };
    if range.end - range.start > MAX_PUT_SIZE {
        return Err(GatewayError::invalid_request(
            "The specified copy range is larger than the maximum part size of 5 GiB",
        ));
    }
    let algorithm = upload
        .checksum_algorithm
        .unwrap_or(ChecksumAlgorithm::Crc64Nvme);
    let target = SealTarget::new(upload.bucket.as_str(), upload.key.as_str(), part_number)
        .with_customer_key(customer.clone())
        .with_kms(sse::upload_kms_target(&upload));
    let stored =
        copy::copy_bytes(ops, &source, source_key.as_ref(), range, algorithm, target).await?;
    let checksum = checksum_record(algorithm, &stored.digest);
    let part = part_record(
        &upload.upload_id,
        part_number,
        &stored,
        vec![checksum.clone()],
        customer.as_ref(),
    );
    let etag = part.etag.clone();
    let encryption = sse::header_for(stored.written.blob.sealing.scheme);
    let ssekms_key_id = sse::kms_key_for(&stored.written.blob.sealing);
    let bucket_key_enabled = sse::bucket_key_for(&stored.written.blob.sealing);
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    record_part(ops, ctx, &part, stored).await?;
    // The part's time is meta's: read it back (None if the upload ended meanwhile).
    let recorded = ops
        .meta
        .list_parts(&upload.upload_id, part_number - 1, 1)
        .await?
        .parts
        .into_iter()
        .find(|p| p.part_number == part_number && p.etag == etag);
    let f = ChecksumFields::from_stored(&[checksum]);
    Ok(S3Response::new(UploadPartCopyOutput {
        server_side_encryption: encryption,
        ssekms_key_id,
        bucket_key_enabled,
        sse_customer_algorithm,
        sse_customer_key_md5,
        copy_part_result: Some(CopyPartResult {
            checksum_crc32: f.crc32,
            checksum_crc32c: f.crc32c,
            checksum_crc64nvme: f.crc64nvme,
            checksum_sha1: f.sha1,
            checksum_sha256: f.sha256,
            e_tag: Some(convert::etag(&etag)),
            last_modified: recorded.map(|p| timestamp_from_ms(p.last_modified_ms)),
        }),
        copy_source_version_id: visible_version_id(&source.version_id),
        ..Default::default()
    }))
}

/// AbortMultipartUpload.
pub async fn abort_multipart_upload(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<AbortMultipartUploadInput>,
) -> Res<AbortMultipartUploadOutput> {
    let input = req.input;
    upload_of(ops, &input.bucket, &input.key, &input.upload_id).await?;
    ops.meta.abort_upload(&input.upload_id).await?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

/// ListParts.
pub async fn list_parts(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<ListPartsInput>,
) -> Res<ListPartsOutput> {
    let input = req.input;
    let upload = upload_of(ops, &input.bucket, &input.key, &input.upload_id).await?;
    let max = match input.max_parts {
        Some(n) if n < 0 => {
            return Err(GatewayError::invalid_argument(
                "max-parts must be non-negative",
            ));
        }
        Some(n) => u32::try_from(n).unwrap_or(1000).min(1000),
        None => 1000,
    };
    let marker = match &input.part_number_marker {
        Some(m) => u32::try_from(*m).map_err(|_| {
            GatewayError::invalid_argument("part-number-marker must be non-negative")
        })?,
        None => 0,
    };
    let page = ops.meta.list_parts(&upload.upload_id, marker, max).await?;
    if page.no_such_upload {
        return Err(GatewayError::NoSuchUpload);
    }
    let parts = page
        .parts
        .iter()
        .map(|p| {
            let f = ChecksumFields::from_stored(&p.checksums);
            Part {
                checksum_crc32: f.crc32,
                checksum_crc32c: f.crc32c,
                checksum_crc64nvme: f.crc64nvme,
                checksum_sha1: f.sha1,
                checksum_sha256: f.sha256,
                e_tag: Some(convert::etag(&p.etag)),
                last_modified: Some(timestamp_from_ms(p.last_modified_ms)),
                part_number: i32::try_from(p.part_number).ok(),
                size: i64::try_from(p.size).ok(),
            }
        })
        .collect();
    let owner = convert::owner(&ops.owner_id, &ops.owner_name);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload.upload_id.clone()),
        initiator: Some(Initiator {
            display_name: owner.display_name.clone(),
            id: owner.id.clone(),
        }),
        owner: Some(owner),
        is_truncated: Some(page.is_truncated),
        max_parts: i32::try_from(max).ok(),
        next_part_number_marker: page
            .is_truncated
            .then(|| i32::try_from(page.next_part_number_marker).ok())
            .flatten(),
        part_number_marker: input.part_number_marker,
        parts: Some(parts),
        storage_class: Some(StorageClass::from(
            convert::storage_class_name(&upload.storage_class).to_string(),
        )),
        checksum_algorithm: upload
            .checksum_algorithm
            .map(convert::checksum_algorithm_dto),
        ..Default::default()
    }))
}

/// ListMultipartUploads.
pub async fn list_multipart_uploads(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<ListMultipartUploadsInput>,
) -> Res<ListMultipartUploadsOutput> {
    let input = req.input;
    let max = match input.max_uploads {
        Some(n) if n < 0 => {
            return Err(GatewayError::invalid_argument(
                "max-uploads must be non-negative",
            ));
        }
        Some(n) => u32::try_from(n).unwrap_or(1000).min(1000),
        None => 1000,
    };
    let bucket = BucketName::parse(&input.bucket).map_err(|_| GatewayError::NoSuchBucket {
        bucket: input.bucket.clone(),
    })?;
    let page = ops
        .meta
        .list_uploads(&ListUploads {
            bucket,
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone().unwrap_or_default(),
            upload_id_marker: input.upload_id_marker.clone().unwrap_or_default(),
            max_uploads: max,
        })
        .await?;
    if page.no_such_bucket {
        return Err(GatewayError::NoSuchBucket {
            bucket: input.bucket,
        });
    }
    let owner = convert::owner(&ops.owner_id, &ops.owner_name);
    let uploads = page
        .uploads
        .iter()
        .map(|u| MultipartUpload {
            checksum_algorithm: u.checksum_algorithm.map(convert::checksum_algorithm_dto),
            initiated: Some(timestamp_from_ms(u.initiated_ms)),
            initiator: Some(Initiator {
                display_name: owner.display_name.clone(),
                id: owner.id.clone(),
            }),
            key: Some(u.key.as_str().to_string()),
            owner: Some(owner.clone()),
            storage_class: Some(StorageClass::from(
                convert::storage_class_name(&u.storage_class).to_string(),
            )),
            upload_id: Some(u.upload_id.clone()),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        common_prefixes: Some(
            page.common_prefixes
                .iter()
                .map(|p| CommonPrefix {
                    prefix: Some(p.clone()),
                })
                .collect(),
        ),
        delimiter: input.delimiter,
        encoding_type: input.encoding_type,
        is_truncated: Some(page.is_truncated),
        key_marker: input.key_marker,
        max_uploads: i32::try_from(max).ok(),
        next_key_marker: page.is_truncated.then(|| page.next_key_marker.clone()),
        next_upload_id_marker: page
            .is_truncated
            .then(|| page.next_upload_id_marker.clone()),
        prefix: input.prefix,
        upload_id_marker: input.upload_id_marker,
        uploads: Some(uploads),
        request_charged: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).expect("ok"), 0..10);
        assert_eq!(parse_copy_range("bytes=5-5", 10).expect("ok"), 5..6);
        assert!(matches!(
            parse_copy_range("bytes=0-10", 10),
            Err(GatewayError::InvalidRange { .. })
        ));
        for malformed in ["bytes=5-4", "0-4", "bytes=-4"] {
            assert!(
                matches!(
                    parse_copy_range(malformed, 10),
                    Err(GatewayError::InvalidArgument { ref message })
                        if message.starts_with("The x-amz-copy-source-range value must be of the form bytes=first-last")
                ),
                "{malformed}"
            );
        }
    }
}
