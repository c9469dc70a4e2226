//! Multipart uploads: create, upload part (from a body or a copy source), complete (part ETags
//! and checksums validated, md5-of-md5s ETag), abort and the two listings. Each part is its own
//! erasure-coded blob; Complete writes a manifest that lists them in order.

use super::Ops;
use super::body::{BodySpec, ChecksumHeaders};
use super::bucket::wall_clock_ms;
use super::conditions::ReadConditions;
use super::convert::{
    self, ChecksumFields, checksum_algorithm_pb, timestamp_from_ms, timestamp_to_ms,
};
use super::copy;
use super::object::{self, check_key, checksum_record, log_orphan, store_body, visible_version_id};
use crate::error::GatewayError;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use std::collections::BTreeMap;
use tessera_core::checksum::{
    ChecksumAlgorithm, combine_full_object_crc, composite_checksum, from_base64, to_base64,
};
use tessera_core::etag::{multipart_etag, part_etag_matches, single_part_etag};
use tessera_core::multipart::{MultipartError, validate_completion, validate_part_number};
use tessera_core::names::{BucketName, new_upload_id};
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command::Cmd;
use tessera_proto::meta::v1::command_result::Result as CmdResult;

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

/// The upload, checked to belong to this bucket and key.
async fn upload_of(
    ops: &Ops,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<pb::MultipartUpload, GatewayError> {
    let upload = ops
        .meta
        .get_upload(upload_id)
        .await?
        .ok_or(GatewayError::NoSuchUpload)?;
    if upload.bucket != bucket || upload.key != key {
        return Err(GatewayError::NoSuchUpload);
    }
    Ok(upload)
}

fn upload_algorithm(upload: &pb::MultipartUpload) -> Option<ChecksumAlgorithm> {
    pb::ChecksumAlgorithm::try_from(upload.checksum_algorithm)
        .ok()
        .and_then(convert::checksum_algorithm_from_pb)
}

/// CreateMultipartUpload.
pub async fn create_multipart_upload(
    ops: &Ops,
    req: S3Request<CreateMultipartUploadInput>,
) -> Res<CreateMultipartUploadOutput> {
    let input = req.input;
    let bucket = BucketName::parse(&input.bucket).map_err(|_| GatewayError::NoSuchBucket {
        bucket: input.bucket.clone(),
    })?;
    let key = check_key(&input.key)?;
    let user_metadata = convert::user_metadata(input.metadata)?;
    let algorithm = input
        .checksum_algorithm
        .as_ref()
        .map(convert::checksum_algorithm)
        .transpose()?;
    let checksum_type = match input.checksum_type.as_ref().map(|t| t.as_str()) {
        None => match algorithm {
            Some(ChecksumAlgorithm::Crc64Nvme) | None => pb::ChecksumType::FullObject,
            Some(_) => pb::ChecksumType::Composite,
        },
        Some("FULL_OBJECT") => pb::ChecksumType::FullObject,
        Some("COMPOSITE") => pb::ChecksumType::Composite,
        Some(other) => {
            return Err(GatewayError::invalid_request(format!(
                "Value for x-amz-checksum-type header is invalid: {other}"
            )));
        }
    };
    if let Some(alg) = algorithm {
        let full = checksum_type == pb::ChecksumType::FullObject;
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
    ops.bucket(bucket.as_str()).await?;
    let upload_id = new_upload_id(rand::random());
    let upload = pb::MultipartUpload {
        bucket: bucket.as_str().to_string(),
        key: key.as_str().to_string(),
        upload_id: upload_id.clone(),
        initiated_ms: wall_clock_ms(),
        headers: Some(convert::content_headers(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
        )),
        user_metadata,
        checksum_algorithm: algorithm
            .map(checksum_algorithm_pb)
            .unwrap_or(pb::ChecksumAlgorithm::None) as i32,
        checksum_type: checksum_type as i32,
        storage_class: input
            .storage_class
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    };
    ops.execute(Cmd::CreateUpload(pb::CreateUpload {
        upload: Some(upload),
    }))
    .await?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_algorithm: input.checksum_algorithm,
        checksum_type: algorithm
            .map(|_| ChecksumType::from(convert::checksum_type_name(checksum_type).to_string())),
        ..Default::default()
    }))
}

async fn record_part(ops: &Ops, part: pb::UploadedPart) -> Result<(), GatewayError> {
    let blob = part.blob.clone().unwrap_or_default();
    if let Err(e) = ops
        .execute(Cmd::PutPart(pb::PutPart {
            part: Some(part),
            lease_id: 0,
        }))
        .await
    {
        log_orphan(&blob, "part not recorded");
        return Err(e);
    }
    Ok(())
}

/// UploadPart.
pub async fn upload_part(ops: &Ops, req: S3Request<UploadPartInput>) -> Res<UploadPartOutput> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let part_number = validate_part_number(input.part_number)?;
    let upload = upload_of(ops, &input.bucket, &input.key, &input.upload_id).await?;
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
    if let Some(alg) = upload_algorithm(&upload) {
        if spec.requested && spec.algorithm != alg {
            return Err(GatewayError::invalid_request(format!(
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                alg.s3_name().to_lowercase(),
                spec.algorithm.s3_name().to_lowercase()
            )));
        }
        spec.algorithm = alg;
    }
    let also = upload_algorithm(&upload)
        .is_none()
        .then_some(ChecksumAlgorithm::Crc64Nvme);
    let (written, digest) =
        store_body(ops, input.body, &spec, trailing_headers.as_ref(), also).await?;
    let etag = single_part_etag(&written.md5);
    let checksum = checksum_record(spec.algorithm, &digest);
    let stored_checksums: Vec<pb::ChecksumValue> = written
        .checksums
        .iter()
        .map(|(alg, d)| checksum_record(*alg, d))
        .collect();
    record_part(
        ops,
        pb::UploadedPart {
            upload_id: upload.upload_id.clone(),
            part_number,
            size: written.size,
            etag: etag.clone(),
            last_modified_ms: wall_clock_ms(),
            blob: Some(written.blob),
            checksums: stored_checksums,
        },
    )
    .await?;
    let mut out = UploadPartOutput {
        e_tag: Some(convert::etag(&etag)),
        ..Default::default()
    };
    if spec.requested || upload_algorithm(&upload).is_some() {
        let f = ChecksumFields::from_stored(&[checksum]);
        out.checksum_crc32 = f.crc32;
        out.checksum_crc32c = f.crc32c;
        out.checksum_crc64nvme = f.crc64nvme;
        out.checksum_sha1 = f.sha1;
        out.checksum_sha256 = f.sha256;
    }
    Ok(S3Response::new(out))
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
    req: S3Request<UploadPartCopyInput>,
) -> Res<UploadPartCopyOutput> {
    let input = req.input;
    let part_number = validate_part_number(input.part_number)?;
    let upload = upload_of(ops, &input.bucket, &input.key, &input.upload_id).await?;
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
    let range = match &input.copy_source_range {
        Some(r) => parse_copy_range(r, source.size)?,
        None => 0..source.size,
    };
    if range.end - range.start > object::MAX_PUT_SIZE {
        return Err(GatewayError::invalid_request(
            "The specified copy range is larger than the maximum part size of 5 GiB",
        ));
    }
    let algorithm = upload_algorithm(&upload).unwrap_or(ChecksumAlgorithm::Crc64Nvme);
    let written = copy::copy_bytes(ops, &source, range, algorithm).await?;
    let digest = written
        .checksums
        .first()
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    let etag = single_part_etag(&written.md5);
    let now = wall_clock_ms();
    let checksum = checksum_record(algorithm, &digest);
    record_part(
        ops,
        pb::UploadedPart {
            upload_id: upload.upload_id.clone(),
            part_number,
            size: written.size,
            etag: etag.clone(),
            last_modified_ms: now,
            blob: Some(written.blob),
            checksums: vec![checksum.clone()],
        },
    )
    .await?;
    let f = ChecksumFields::from_stored(&[checksum]);
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            checksum_crc32: f.crc32,
            checksum_crc32c: f.crc32c,
            checksum_crc64nvme: f.crc64nvme,
            checksum_sha1: f.sha1,
            checksum_sha256: f.sha256,
            e_tag: Some(convert::etag(&etag)),
            last_modified: Some(timestamp_from_ms(now)),
        }),
        copy_source_version_id: visible_version_id(&source.version_id),
        ..Default::default()
    }))
}

async fn all_parts(ops: &Ops, upload_id: &str) -> Result<Vec<pb::UploadedPart>, GatewayError> {
    let mut parts = Vec::new();
    let mut marker = 0;
    loop {
        let page = ops
            .meta
            .list_parts(pb::ListPartsRequest {
                upload_id: upload_id.to_string(),
                part_number_marker: marker,
                max_parts: 1000,
            })
            .await?;
        if page.no_such_upload {
            return Err(GatewayError::NoSuchUpload);
        }
        parts.extend(page.parts);
        if !page.is_truncated {
            return Ok(parts);
        }
        marker = page.next_part_number_marker;
    }
}

/// The digest of one part under `alg`; a part stored without it cannot be completed into an
/// object whose checksum needs it.
fn part_digest(part: &pb::UploadedPart, alg: ChecksumAlgorithm) -> Result<Vec<u8>, GatewayError> {
    let wanted = checksum_algorithm_pb(alg) as i32;
    let c = part
        .checksums
        .iter()
        .find(|c| c.algorithm == wanted)
        .ok_or(GatewayError::InvalidPart {
            part_number: part.part_number,
        })?;
    from_base64(&c.value).map_err(|_| GatewayError::internal("stored part checksum is not base64"))
}

/// The checksum a client sent for one part in the Complete XML, if any.
fn completed_part_checksum(p: &CompletedPart, alg: ChecksumAlgorithm) -> Option<&String> {
    match alg {
        ChecksumAlgorithm::Crc32 => p.checksum_crc32.as_ref(),
        ChecksumAlgorithm::Crc32c => p.checksum_crc32c.as_ref(),
        ChecksumAlgorithm::Crc64Nvme => p.checksum_crc64nvme.as_ref(),
        ChecksumAlgorithm::Sha1 => p.checksum_sha1.as_ref(),
        ChecksumAlgorithm::Sha256 => p.checksum_sha256.as_ref(),
    }
}

/// CompleteMultipartUpload.
pub async fn complete_multipart_upload(
    ops: &Ops,
    req: S3Request<CompleteMultipartUploadInput>,
) -> Res<CompleteMultipartUploadOutput> {
    let input = req.input;
    let upload = upload_of(ops, &input.bucket, &input.key, &input.upload_id).await?;
    let requested_parts = input
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.clone())
        .unwrap_or_default();
    let mut requested = Vec::with_capacity(requested_parts.len());
    for p in &requested_parts {
        let n = p.part_number.ok_or_else(|| GatewayError::MalformedXml {
            message: "every Part needs a PartNumber".into(),
        })?;
        let number = validate_part_number(n)?;
        let etag = p
            .e_tag
            .as_ref()
            .map(|t| t.value().to_string())
            .ok_or_else(|| GatewayError::MalformedXml {
                message: "every Part needs an ETag".into(),
            })?;
        requested.push((number, etag));
    }
    let stored = all_parts(ops, &upload.upload_id).await?;
    let by_number: BTreeMap<u32, &pb::UploadedPart> =
        stored.iter().map(|p| (p.part_number, p)).collect();
    let uploaded: BTreeMap<u32, (u64, String)> = stored
        .iter()
        .map(|p| (p.part_number, (p.size, p.etag.clone())))
        .collect();
    validate_completion(&requested, &uploaded)?;

    let alg = upload_algorithm(&upload);
    let effective_alg = alg.unwrap_or(ChecksumAlgorithm::Crc64Nvme);
    let mut parts = Vec::with_capacity(requested.len());
    let mut md5s = Vec::with_capacity(requested.len());
    let mut digests = Vec::with_capacity(requested.len());
    let mut total = 0_u64;
    for (i, (number, _)) in requested.iter().enumerate() {
        let part = by_number.get(number).ok_or(GatewayError::InvalidPart {
            part_number: *number,
        })?;
        if !part_etag_matches(&requested[i].1, &part.etag) {
            return Err(GatewayError::InvalidPart {
                part_number: *number,
            });
        }
        let md5: [u8; 16] = hex::decode(part.etag.trim_matches('"'))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| GatewayError::internal("stored part ETag is not an MD5"))?;
        let digest = part_digest(part, effective_alg)?;
        if let Some(given) = completed_part_checksum(&requested_parts[i], effective_alg)
            && from_base64(given).ok().as_deref() != Some(digest.as_slice())
        {
            return Err(GatewayError::InvalidPart {
                part_number: *number,
            });
        }
        md5s.push(md5);
        digests.push((digest, part.size));
        total += part.size;
        parts.push(pb::ObjectPart {
            part_number: *number,
            size: part.size,
            etag: part.etag.clone(),
            blob: part.blob.clone(),
            checksums: part.checksums.clone(),
        });
    }
    if let Some(expected) = input.mpu_object_size
        && u64::try_from(expected).ok() != Some(total)
    {
        return Err(GatewayError::invalid_request(format!(
            "The provided x-amz-mp-object-size {expected} does not match the object size {total}"
        )));
    }
    let checksum_type =
        pb::ChecksumType::try_from(upload.checksum_type).unwrap_or(pb::ChecksumType::FullObject);
    let checksum_value = if checksum_type == pb::ChecksumType::Composite {
        let raw: Vec<Vec<u8>> = digests.iter().map(|(d, _)| d.clone()).collect();
        composite_checksum(effective_alg, &raw)
    } else {
        let combined = combine_full_object_crc(effective_alg, &digests)
            .map_err(|e| GatewayError::internal(format!("checksum combine: {e}")))?;
        to_base64(&combined)
    };
    let etag = multipart_etag(&md5s);
    let version = pb::ObjectVersion {
        bucket: upload.bucket.clone(),
        key: upload.key.clone(),
        version_id: String::new(),
        seq: 0,
        delete_marker: false,
        last_modified_ms: wall_clock_ms(),
        size: total,
        etag: etag.clone(),
        headers: upload.headers.clone(),
        user_metadata: upload.user_metadata.clone(),
        checksums: vec![pb::ChecksumValue {
            algorithm: checksum_algorithm_pb(effective_alg) as i32,
            value: checksum_value,
            r#type: checksum_type as i32,
        }],
        parts,
        multipart: true,
        storage_class: upload.storage_class.clone(),
        upload_id: String::new(),
    };
    let precondition =
        object::write_precondition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let result = ops
        .execute(Cmd::CompleteUpload(pb::CompleteUpload {
            upload_id: upload.upload_id.clone(),
            parts: requested
                .iter()
                .map(|(n, e)| pb::CompletedPartRef {
                    part_number: *n,
                    etag: e.clone(),
                })
                .collect(),
            version: Some(version),
            precondition,
        }))
        .await?;
    let committed = match result {
        CmdResult::PutVersion(r) => r
            .version
            .ok_or_else(|| GatewayError::internal("CompleteUpload returned no version"))?,
        _ => {
            return Err(GatewayError::internal(
                "unexpected result for CompleteUpload",
            ));
        }
    };
    tracing::debug!(bucket = %committed.bucket, key = %committed.key, size = total, "multipart upload completed");
    let f = if alg.is_some() {
        ChecksumFields::from_stored(&committed.checksums)
    } else {
        ChecksumFields::default()
    };
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        e_tag: Some(convert::etag(&etag)),
        version_id: visible_version_id(&committed.version_id),
        checksum_crc32: f.crc32,
        checksum_crc32c: f.crc32c,
        checksum_crc64nvme: f.crc64nvme,
        checksum_sha1: f.sha1,
        checksum_sha256: f.sha256,
        checksum_type: f.checksum_type,
        ..Default::default()
    }))
}

/// AbortMultipartUpload.
pub async fn abort_multipart_upload(
    ops: &Ops,
    req: S3Request<AbortMultipartUploadInput>,
) -> Res<AbortMultipartUploadOutput> {
    let input = req.input;
    upload_of(ops, &input.bucket, &input.key, &input.upload_id).await?;
    ops.execute(Cmd::AbortUpload(pb::AbortUpload {
        upload_id: input.upload_id,
    }))
    .await?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

/// ListParts.
pub async fn list_parts(ops: &Ops, req: S3Request<ListPartsInput>) -> Res<ListPartsOutput> {
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
    let page = ops
        .meta
        .list_parts(pb::ListPartsRequest {
            upload_id: upload.upload_id.clone(),
            part_number_marker: marker,
            max_parts: max,
        })
        .await?;
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
        checksum_algorithm: upload_algorithm(&upload)
            .map(|a| s3s::dto::ChecksumAlgorithm::from(a.s3_name().to_string())),
        ..Default::default()
    }))
}

/// ListMultipartUploads.
pub async fn list_multipart_uploads(
    ops: &Ops,
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
    let page = ops
        .meta
        .list_uploads(pb::ListUploadsRequest {
            bucket: input.bucket.clone(),
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
            checksum_algorithm: upload_algorithm(u)
                .map(|a| s3s::dto::ChecksumAlgorithm::from(a.s3_name().to_string())),
            initiated: Some(timestamp_from_ms(u.initiated_ms)),
            initiator: Some(Initiator {
                display_name: owner.display_name.clone(),
                id: owner.id.clone(),
            }),
            key: Some(u.key.clone()),
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
