//! CompleteMultipartUpload: part ETags and checksums validated, the md5-of-md5s ETag and the
//! object's checksum (composite or full-object) computed, and the version committed by meta
//! from the stored parts; and S3's answer to a Complete repeated after it succeeded.
//!
//! Invariant: a Complete repeated with the same part list (numbers and ETags) after the upload
//! was completed answers 200 with the ETag, location, bucket, key and version id of the version
//! it made, as long as that version exists; any other request for a gone upload is
//! NoSuchUpload. Meta answers a repeated CompleteUpload command the same way (two concurrent
//! completes), so both paths agree.

use super::Ops;
use super::convert::{self, ChecksumFields};
use super::sse;
use super::store::{visible_version_id, write_precondition};
use crate::context::RequestContext;
use crate::error::GatewayError;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use std::collections::BTreeMap;
use tessera_core::checksum::{
    ChecksumAlgorithm, ChecksumType, combine_full_object_crc, composite_checksum, from_base64,
    to_base64,
};
use tessera_core::etag::{multipart_etag, part_etag_matches};
use tessera_core::multipart::{validate_completion, validate_part_number};
use tessera_core::object::{self as core, ChecksumValue, ObjectVersion, UploadedPart};

type Res<T> = Result<S3Response<T>, GatewayError>;

async fn all_parts(ops: &Ops, upload_id: &str) -> Result<Vec<UploadedPart>, GatewayError> {
    let mut parts = Vec::new();
    let mut marker = 0;
    loop {
        let page = ops.meta.list_parts(upload_id, marker, 1000).await?;
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
fn part_digest(part: &UploadedPart, alg: ChecksumAlgorithm) -> Result<Vec<u8>, GatewayError> {
    let c =
        part.checksums
            .iter()
            .find(|c| c.algorithm == alg)
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

/// The part list of a Complete request: (number, unquoted ETag) in request order.
fn parse_requested(parts: &[CompletedPart]) -> Result<Vec<(u32, String)>, GatewayError> {
    let mut requested = Vec::with_capacity(parts.len());
    for p in parts {
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
    Ok(requested)
}

/// Whether a completed version is the one `requested` (numbers and ETags, in order) made.
pub fn made_from(version: &ObjectVersion, requested: &[(u32, String)]) -> bool {
    version.parts.len() == requested.len()
        && version
            .parts
            .iter()
            .zip(requested)
            .all(|(part, (number, etag))| {
                part.part_number == *number && part_etag_matches(etag, &part.etag)
            })
}

/// The checksum fields a Complete answer shows: the object's checksum, unless it is the one
/// computed for an upload that asked for none (S3 then shows none).
fn answer_checksums(version: &ObjectVersion, asked: bool) -> ChecksumFields {
    let implicit = |c: &ChecksumValue| {
        c.algorithm == ChecksumAlgorithm::Crc64Nvme && c.kind == ChecksumType::FullObject
    };
    if asked || !version.checksums.iter().all(implicit) {
        ChecksumFields::from_stored(&version.checksums)
    } else {
        ChecksumFields::default()
    }
}

/// The answer to a Complete that made (or had made) `version`.
fn completed(
    input: &CompleteMultipartUploadInput,
    version: &ObjectVersion,
    checksums: ChecksumFields,
) -> CompleteMultipartUploadOutput {
    CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        server_side_encryption: sse::header_for_version(version),
        ssekms_key_id: sse::kms_key_for_version(version),
        bucket_key_enabled: sse::bucket_key_for_version(version),
        e_tag: Some(convert::etag(&version.etag)),
        version_id: visible_version_id(&version.version_id),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_type: checksums.checksum_type,
        ..Default::default()
    }
}

/// The open upload a Complete names, or the version an earlier Complete of it made with the
/// same parts (`Err(version)`).
async fn upload_or_completed(
    ops: &Ops,
    input: &CompleteMultipartUploadInput,
    requested: &[(u32, String)],
) -> Result<Result<core::MultipartUpload, ObjectVersion>, GatewayError> {
    let lookup = ops.meta.get_upload(&input.upload_id).await?;
    if let Some(upload) = lookup.upload {
        if upload.bucket.as_str() != input.bucket || upload.key.as_str() != input.key {
            return Err(GatewayError::NoSuchUpload);
        }
        return Ok(Ok(upload));
    }
    match lookup.completed {
        Some(version)
            if version.bucket.as_str() == input.bucket
                && version.key.as_str() == input.key
                && made_from(&version, requested) =>
        {
            Ok(Err(version))
        }
        Some(_) | None => Err(GatewayError::NoSuchUpload),
    }
}

/// CompleteMultipartUpload.
pub async fn complete_multipart_upload(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<CompleteMultipartUploadInput>,
) -> Res<CompleteMultipartUploadOutput> {
    let input = req.input;
    let requested_parts = input
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.clone())
        .unwrap_or_default();
    let requested = parse_requested(&requested_parts)?;
    let upload = match upload_or_completed(ops, &input, &requested).await? {
        Ok(upload) => upload,
        Err(version) => {
            tracing::info!(
                request_id = %ctx.request_id,
                upload_id = %input.upload_id,
                version_id = %version.version_id,
                "multipart upload completed before; answering with the version it made"
            );
            let checksums = answer_checksums(&version, false);
            return Ok(S3Response::new(completed(&input, &version, checksums)));
        }
    };
    let stored = all_parts(ops, &upload.upload_id).await?;
    let by_number: BTreeMap<u32, &UploadedPart> =
        stored.iter().map(|p| (p.part_number, p)).collect();
    let uploaded: BTreeMap<u32, (u64, String)> = stored
        .iter()
        .map(|p| (p.part_number, (p.size, p.etag.clone())))
        .collect();
    validate_completion(&requested, &uploaded)?;

    let alg = upload.checksum_algorithm;
    let effective_alg = alg.unwrap_or(ChecksumAlgorithm::Crc64Nvme);
    let mut md5s = Vec::with_capacity(requested.len());
    let mut digests = Vec::with_capacity(requested.len());
    let mut total = 0_u64;
    for (i, (number, etag)) in requested.iter().enumerate() {
        let part = by_number.get(number).ok_or(GatewayError::InvalidPart {
            part_number: *number,
        })?;
        if !part_etag_matches(etag, &part.etag) {
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
    }
    if let Some(expected) = input.mpu_object_size
        && u64::try_from(expected).ok() != Some(total)
    {
        return Err(GatewayError::invalid_request(format!(
            "The provided x-amz-mp-object-size {expected} does not match the object size {total}"
        )));
    }
    let checksum_value = match upload.checksum_type {
        ChecksumType::Composite => {
            let raw: Vec<Vec<u8>> = digests.iter().map(|(d, _)| d.clone()).collect();
            composite_checksum(effective_alg, &raw)
        }
        ChecksumType::FullObject => {
            let combined = combine_full_object_crc(effective_alg, &digests)
                .map_err(|e| GatewayError::internal(format!("checksum combine: {e}")))?;
            to_base64(&combined)
        }
    };
    // Meta builds the parts (and the size) from the stored parts the request names; the
    // version's id, seq and time are its to assign.
    let version = ObjectVersion {
        size: total,
        etag: multipart_etag(&md5s),
        headers: upload.headers.clone(),
        user_metadata: upload.user_metadata.clone(),
        checksums: vec![ChecksumValue {
            algorithm: effective_alg,
            value: checksum_value,
            kind: upload.checksum_type,
        }],
        multipart: true,
        storage_class: upload.storage_class.clone(),
        upload_id: Some(upload.upload_id.clone()),
        ..ObjectVersion::new(upload.bucket.clone(), upload.key.clone())
    };
    let precondition = write_precondition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let quoted: Vec<(u32, String)> = requested
        .iter()
        .map(|(n, e)| (*n, format!("\"{}\"", e.trim_matches('"'))))
        .collect();
    let committed = ops
        .meta
        .complete_upload(&upload.upload_id, &quoted, &version, precondition.as_ref())
        .await
        .inspect_err(|e| {
            if e.is_outcome_unknown() {
                tracing::warn!(request_id = %ctx.request_id, upload_id = %upload.upload_id, code = e.code(), "complete outcome unknown; it may have been applied");
            }
        })?;
    tracing::debug!(
        request_id = %ctx.request_id,
        bucket = %committed.bucket,
        key = %committed.key,
        version_id = %committed.version_id,
        size = committed.size,
        "multipart upload completed"
    );
    let checksums = answer_checksums(&committed, alg.is_some());
    Ok(S3Response::new(completed(&input, &committed, checksums)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::blob::Blob;
    use tessera_core::names::VersionId;
    use tessera_core::names::{BucketName, ObjectKey};
    use tessera_core::object::ObjectPart;

    fn version(parts: &[(u32, &str)]) -> ObjectVersion {
        ObjectVersion {
            version_id: VersionId::from_seq(7),
            seq: 7,
            last_modified_ms: 1,
            size: 2,
            etag: "\"x-2\"".into(),
            parts: parts
                .iter()
                .map(|(n, etag)| ObjectPart {
                    part_number: *n,
                    size: 1,
                    etag: format!("\"{etag}\""),
                    blob: Blob::inline(vec![0]),
                    checksums: Vec::new(),
                })
                .collect(),
            multipart: true,
            upload_id: Some("u".into()),
            ..ObjectVersion::new(
                BucketName::parse("bkt").expect("bucket"),
                ObjectKey::parse("k").expect("key"),
            )
        }
    }

    #[test]
    fn a_retried_complete_must_name_exactly_the_parts_the_version_was_made_of() {
        let v = version(&[(1, "aa"), (3, "bb")]);
        let ask = |list: &[(u32, &str)]| {
            let list: Vec<(u32, String)> =
                list.iter().map(|(n, e)| (*n, (*e).to_string())).collect();
            made_from(&v, &list)
        };
        assert!(ask(&[(1, "aa"), (3, "bb")]));
        assert!(ask(&[(1, "\"aa\""), (3, "bb")]), "quotes do not matter");
        assert!(!ask(&[(1, "aa")]), "fewer parts");
        assert!(!ask(&[(1, "aa"), (3, "bb"), (4, "cc")]), "more parts");
        assert!(!ask(&[(1, "aa"), (3, "cc")]), "another ETag");
        assert!(!ask(&[(1, "aa"), (2, "bb")]), "another number");
    }

    #[test]
    fn an_implicit_checksum_is_not_shown_unless_asked_for() {
        let mut v = version(&[(1, "aa")]);
        v.checksums = vec![ChecksumValue {
            algorithm: ChecksumAlgorithm::Crc64Nvme,
            value: "AAAAAAAAAAA=".into(),
            kind: ChecksumType::FullObject,
        }];
        assert!(answer_checksums(&v, false).crc64nvme.is_none());
        assert!(answer_checksums(&v, true).crc64nvme.is_some());
        v.checksums[0] = ChecksumValue {
            algorithm: ChecksumAlgorithm::Sha256,
            value: "abc-1".into(),
            kind: ChecksumType::Composite,
        };
        assert_eq!(answer_checksums(&v, false).sha256.as_deref(), Some("abc-1"));
    }
}
