//! Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects and
//! CopyObject. A version becomes visible only when its manifest is committed through Raft,
//! which happens after the blob pipeline has made its shards durable.

use super::Ops;
use super::body::{self, BodySpec, ChecksumHeaders};
use super::bucket::wall_clock_ms;
use super::conditions::{self, ConditionMode, ReadConditions};
use super::convert::{
    self, ChecksumFields, checksum_algorithm_pb, timestamp_from_ms, timestamp_to_ms,
};
use crate::error::GatewayError;
use crate::pipeline::{WriteOptions, WrittenBlob};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use std::ops::Range as ByteRange;
use tessera_core::checksum::ChecksumAlgorithm;
use tessera_core::etag::single_part_etag;
use tessera_core::names::{BucketName, ObjectKey, VersionId};
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command::Cmd;
use tessera_proto::meta::v1::command_result::Result as CmdResult;

type Res<T> = Result<S3Response<T>, GatewayError>;

/// The largest body a single PUT (or one part) may carry.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// S3's content type for objects stored without one.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Validates the key and returns it.
pub fn check_key(key: &str) -> Result<ObjectKey, GatewayError> {
    Ok(ObjectKey::parse(key)?)
}

/// Streams a request body into a blob and verifies every digest the client declared. `also`
/// names one more checksum to compute (a multipart upload without an algorithm needs every
/// part's CRC64NVME to build the object's full checksum).
pub async fn store_body(
    ops: &Ops,
    body: Option<StreamingBlob>,
    spec: &BodySpec,
    trailers: Option<&s3s::TrailingHeaders>,
    also: Option<ChecksumAlgorithm>,
) -> Result<(WrittenBlob, Vec<u8>), GatewayError> {
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
            },
        )
        .await?;
    match spec.verify(&written, trailers) {
        Ok(digest) => Ok((written, digest)),
        Err(e) => {
            log_orphan(&written.blob, "digest mismatch");
            Err(e)
        }
    }
}

/// Records, in the log, shards written for a version that will never be committed; garbage
/// collection finds them by comparing data nodes with committed manifests.
pub fn log_orphan(blob: &pb::Blob, reason: &'static str) {
    if let Some(pb::blob::Storage::Erasure(e)) = &blob.storage {
        tracing::warn!(data_id = %hex::encode(&e.data_id), reason, "blob left uncommitted");
    }
}

/// The checksum record of a single-part body.
pub fn checksum_record(alg: ChecksumAlgorithm, digest: &[u8]) -> pb::ChecksumValue {
    pb::ChecksumValue {
        algorithm: checksum_algorithm_pb(alg) as i32,
        value: body::encode_digest(digest),
        r#type: pb::ChecksumType::FullObject as i32,
    }
}

/// The record of a version stored from one body (PUT or copy): one part holding the blob,
/// an MD5 ETag and one full-object checksum.
pub fn single_part_version(
    bucket: &str,
    key: &str,
    written: &WrittenBlob,
    checksum: &pb::ChecksumValue,
    headers: pb::ContentHeaders,
    user_metadata: std::collections::HashMap<String, String>,
    storage_class: String,
) -> pb::ObjectVersion {
    let etag = single_part_etag(&written.md5);
    pb::ObjectVersion {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version_id: String::new(),
        seq: 0,
        delete_marker: false,
        last_modified_ms: wall_clock_ms(),
        size: written.size,
        etag: etag.clone(),
        headers: Some(headers),
        user_metadata,
        checksums: vec![checksum.clone()],
        parts: vec![pb::ObjectPart {
            part_number: 1,
            size: written.size,
            etag,
            blob: Some(written.blob.clone()),
            checksums: vec![checksum.clone()],
        }],
        multipart: false,
        storage_class,
        upload_id: String::new(),
    }
}

/// Precondition of a conditional write (If-Match / If-None-Match on PUT and Complete).
pub fn write_precondition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> Result<Option<pb::WritePrecondition>, GatewayError> {
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
    Ok(Some(pb::WritePrecondition {
        if_none_match_any,
        if_match,
    }))
}

/// PutObject.
pub async fn put_object(ops: &Ops, req: S3Request<PutObjectInput>) -> Res<PutObjectOutput> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let bucket = BucketName::parse(&input.bucket).map_err(|_| GatewayError::NoSuchBucket {
        bucket: input.bucket.clone(),
    })?;
    let key = check_key(&input.key)?;
    let user_metadata = convert::user_metadata(input.metadata)?;
    let precondition = write_precondition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let spec = BodySpec::from_request(
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
    // Fail fast, before reading a body that could never be stored.
    ops.bucket(bucket.as_str()).await?;

    let (written, digest) =
        store_body(ops, input.body, &spec, trailing_headers.as_ref(), None).await?;
    let checksum = checksum_record(spec.algorithm, &digest);
    let version = single_part_version(
        bucket.as_str(),
        key.as_str(),
        &written,
        &checksum,
        convert::content_headers(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
        ),
        user_metadata,
        input
            .storage_class
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    );
    let committed = commit_version(ops, version, precondition, &written.blob).await?;
    tracing::debug!(bucket = %bucket, key = %key, size = written.size, "object stored");

    let mut out = PutObjectOutput {
        e_tag: Some(convert::etag(&committed.etag)),
        version_id: visible_version_id(&committed.version_id),
        ..Default::default()
    };
    if spec.requested {
        let fields = ChecksumFields::from_stored(&committed.checksums);
        out.checksum_crc32 = fields.crc32;
        out.checksum_crc32c = fields.crc32c;
        out.checksum_crc64nvme = fields.crc64nvme;
        out.checksum_sha1 = fields.sha1;
        out.checksum_sha256 = fields.sha256;
        out.checksum_type = fields.checksum_type;
    }
    Ok(S3Response::new(out))
}

/// Commits a version; if meta rejects it, its freshly written shards are orphans.
pub async fn commit_version(
    ops: &Ops,
    version: pb::ObjectVersion,
    precondition: Option<pb::WritePrecondition>,
    blob: &pb::Blob,
) -> Result<pb::ObjectVersion, GatewayError> {
    let result = ops
        .execute(Cmd::PutVersion(pb::PutVersion {
            version: Some(version),
            precondition,
            lease_id: 0,
        }))
        .await;
    match result {
        Ok(CmdResult::PutVersion(r)) => r
            .version
            .ok_or_else(|| GatewayError::internal("PutVersion returned no version")),
        Ok(_) => Err(GatewayError::internal("unexpected result for PutVersion")),
        Err(e) => {
            log_orphan(blob, "version not committed");
            Err(e)
        }
    }
}

/// The version id a response shows: none for the null version of an unversioned bucket.
pub fn visible_version_id(version_id: &str) -> Option<String> {
    if version_id.is_empty() || version_id == VersionId::null().as_str() {
        None
    } else {
        Some(version_id.to_string())
    }
}

/// Looks up the version a GET, HEAD or copy addresses, applying S3's delete-marker rules.
pub async fn fetch_version(
    ops: &Ops,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<pb::ObjectVersion, GatewayError> {
    if let Some(v) = version_id {
        VersionId::parse(v)?;
    }
    let resp = ops
        .meta
        .get_object(pb::GetObjectRequest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.map(str::to_string),
        })
        .await?;
    if resp.no_such_bucket {
        return Err(GatewayError::NoSuchBucket {
            bucket: bucket.to_string(),
        });
    }
    match (resp.version, version_id) {
        (None, None) => Err(GatewayError::NoSuchKey {
            delete_marker_version: None,
        }),
        (None, Some(_)) => Err(GatewayError::NoSuchVersion),
        (Some(v), None) if v.delete_marker => Err(GatewayError::NoSuchKey {
            delete_marker_version: Some(v.version_id),
        }),
        (Some(v), Some(_)) if v.delete_marker => Err(GatewayError::DeleteMarkerVersion {
            version_id: v.version_id,
        }),
        (Some(v), _) => Ok(v),
    }
}

/// The bytes [range) of a version as one stream across its parts.
pub fn object_body(ops: &Ops, version: &pb::ObjectVersion, range: ByteRange<u64>) -> StreamingBlob {
    let mut segments = Vec::new();
    let mut offset = 0_u64;
    for part in &version.parts {
        let (start, end) = (offset, offset + part.size);
        offset = end;
        if end <= range.start || start >= range.end {
            continue;
        }
        let Some(blob) = part.blob.clone() else {
            continue;
        };
        let from = range.start.max(start) - start;
        let to = range.end.min(end) - start;
        segments.push((blob, from..to));
    }
    let blobs = ops.blobs.clone();
    let stream = futures::stream::iter(segments)
        .map(move |(blob, r)| blobs.read(&blob, r))
        .flatten();
    StreamingBlob::wrap(stream)
}

/// Where a GET or HEAD reads: the whole object, a Range, or one part.
struct ReadPlan {
    range: ByteRange<u64>,
    partial: bool,
    parts_count: Option<i32>,
}

fn plan_read(
    version: &pb::ObjectVersion,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> Result<ReadPlan, GatewayError> {
    let size = version.size;
    match (range, part_number) {
        (Some(_), Some(_)) => Err(GatewayError::invalid_request(
            "Cannot specify both Range header and partNumber query parameter",
        )),
        (Some(r), None) => {
            // On a 0-byte object a suffix range (`bytes=-N`, N > 0) selects the whole empty
            // object, which S3 answers 200 with no Content-Range; a range with a first byte
            // (`bytes=0-`, `bytes=0-0`) overlaps nothing and is 416 InvalidRange (below).
            if size == 0 && matches!(r, Range::Suffix { length } if *length > 0) {
                return Ok(ReadPlan {
                    range: 0..0,
                    partial: false,
                    parts_count: None,
                });
            }
            let range = r
                .check(size)
                .map_err(|_| GatewayError::InvalidRange { size })?;
            Ok(ReadPlan {
                range,
                partial: true,
                parts_count: None,
            })
        }
        (None, Some(n)) => {
            if !(1..=10_000).contains(&n) {
                return Err(GatewayError::invalid_argument(
                    "Part number must be an integer between 1 and 10000, inclusive",
                ));
            }
            if !version.multipart {
                if n == 1 {
                    return Ok(ReadPlan {
                        range: 0..size,
                        partial: false,
                        parts_count: None,
                    });
                }
                return Err(GatewayError::InvalidPartNumber {
                    part_number: i64::from(n),
                });
            }
            let mut offset = 0;
            for (i, part) in version.parts.iter().enumerate() {
                if i + 1 == usize::try_from(n).unwrap_or(0) {
                    return Ok(ReadPlan {
                        range: offset..offset + part.size,
                        partial: true,
                        parts_count: i32::try_from(version.parts.len()).ok(),
                    });
                }
                offset += part.size;
            }
            Err(GatewayError::InvalidPartNumber {
                part_number: i64::from(n),
            })
        }
        (None, None) => Ok(ReadPlan {
            range: 0..size,
            partial: false,
            parts_count: None,
        }),
    }
}

pub(super) fn read_conditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> ReadConditions {
    let tag = |c: &ETagCondition| c.as_etag().map(|t| t.value().to_string());
    ReadConditions {
        if_match: if_match.map(tag),
        if_none_match: if_none_match.map(tag),
        if_modified_since_ms: if_modified_since.map(timestamp_to_ms),
        if_unmodified_since_ms: if_unmodified_since.map(timestamp_to_ms),
    }
}

/// The response headers every GET and HEAD carries.
struct ObjectHeaders {
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
}

fn object_headers(
    version: &pb::ObjectVersion,
    overrides: [Option<String>; 5],
    expires_override: Option<Timestamp>,
) -> ObjectHeaders {
    let h = version.headers.clone().unwrap_or_default();
    let [ct, ce, cd, cl, cc] = overrides;
    ObjectHeaders {
        content_type: ct
            .or(h.content_type)
            .or(Some(DEFAULT_CONTENT_TYPE.to_string())),
        content_encoding: ce.or(h.content_encoding),
        content_disposition: cd.or(h.content_disposition),
        content_language: cl.or(h.content_language),
        cache_control: cc.or(h.cache_control),
        expires: expires_override
            .or_else(|| h.expires.as_deref().and_then(convert::parse_http_date)),
    }
}

fn storage_class(version: &pb::ObjectVersion) -> Option<StorageClass> {
    let sc = convert::storage_class_name(&version.storage_class);
    (sc != "STANDARD").then(|| StorageClass::from(sc.to_string()))
}

/// What a GET or HEAD addresses, as S3's request fields name it.
struct ReadRequest<'a> {
    bucket: &'a str,
    key: &'a str,
    version_id: Option<&'a str>,
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
    range: Option<&'a Range>,
    part_number: Option<i32>,
    checksum_mode: bool,
    /// response-content-type, -encoding, -disposition, -language, response-cache-control.
    overrides: [Option<String>; 5],
    response_expires: Option<Timestamp>,
}

/// Everything a GET and a HEAD answer with, before the body.
struct ReadAnswer {
    version: pb::ObjectVersion,
    plan: ReadPlan,
    headers: ObjectHeaders,
    checksums: ChecksumFields,
    content_range: Option<String>,
}

/// The shared part of GET and HEAD: lookup, conditions, range or part, response headers.
async fn prepare_read(ops: &Ops, r: ReadRequest<'_>) -> Result<ReadAnswer, GatewayError> {
    let version = fetch_version(ops, r.bucket, r.key, r.version_id).await?;
    conditions::evaluate(
        &read_conditions(
            r.if_match,
            r.if_none_match,
            r.if_modified_since,
            r.if_unmodified_since,
        ),
        &version.etag,
        version.last_modified_ms,
        ConditionMode::Read,
    )?;
    let plan = plan_read(&version, r.range, r.part_number)?;
    let headers = object_headers(&version, r.overrides, r.response_expires);
    let checksums = if r.checksum_mode && !plan.partial {
        ChecksumFields::from_stored(&version.checksums)
    } else {
        ChecksumFields::default()
    };
    let content_range = plan.partial.then(|| {
        format!(
            "bytes {}-{}/{}",
            plan.range.start,
            plan.range.end.saturating_sub(1),
            version.size
        )
    });
    Ok(ReadAnswer {
        version,
        plan,
        headers,
        checksums,
        content_range,
    })
}

/// Fills the response fields GET and HEAD share; their outputs are distinct s3s types with
/// the same field names, so a macro is the one way to write the list once.
macro_rules! object_read_output {
    ($ty:ident, $a:expr, $len:expr, { $($extra:tt)* }) => {{
        let a: ReadAnswer = $a;
        $ty {
            accept_ranges: Some("bytes".to_string()),
            cache_control: a.headers.cache_control,
            checksum_crc32: a.checksums.crc32,
            checksum_crc32c: a.checksums.crc32c,
            checksum_crc64nvme: a.checksums.crc64nvme,
            checksum_sha1: a.checksums.sha1,
            checksum_sha256: a.checksums.sha256,
            checksum_type: a.checksums.checksum_type,
            content_disposition: a.headers.content_disposition,
            content_encoding: a.headers.content_encoding,
            content_language: a.headers.content_language,
            content_length: i64::try_from($len).ok(),
            content_range: a.content_range,
            content_type: a.headers.content_type,
            e_tag: Some(convert::etag(&a.version.etag)),
            expires: a.headers.expires,
            last_modified: Some(timestamp_from_ms(a.version.last_modified_ms)),
            metadata: (!a.version.user_metadata.is_empty())
                .then(|| a.version.user_metadata.clone().into_iter().collect()),
            parts_count: a.plan.parts_count,
            storage_class: storage_class(&a.version),
            version_id: visible_version_id(&a.version.version_id),
            $($extra)*
            ..Default::default()
        }
    }};
}

/// GetObject.
pub async fn get_object(ops: &Ops, req: S3Request<GetObjectInput>) -> Res<GetObjectOutput> {
    let input = req.input;
    let a = prepare_read(
        ops,
        ReadRequest {
            bucket: &input.bucket,
            key: &input.key,
            version_id: input.version_id.as_deref(),
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
            range: input.range.as_ref(),
            part_number: input.part_number,
            checksum_mode: input.checksum_mode.is_some(),
            overrides: [
                input.response_content_type,
                input.response_content_encoding,
                input.response_content_disposition,
                input.response_content_language,
                input.response_cache_control,
            ],
            response_expires: input.response_expires,
        },
    )
    .await?;
    let len = a.plan.range.end - a.plan.range.start;
    let body = object_body(ops, &a.version, a.plan.range.clone());
    Ok(S3Response::new(
        object_read_output!(GetObjectOutput, a, len, {
            body: Some(body),
        }),
    ))
}

/// HeadObject.
pub async fn head_object(ops: &Ops, req: S3Request<HeadObjectInput>) -> Res<HeadObjectOutput> {
    let input = req.input;
    let a = prepare_read(
        ops,
        ReadRequest {
            bucket: &input.bucket,
            key: &input.key,
            version_id: input.version_id.as_deref(),
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
            range: input.range.as_ref(),
            part_number: input.part_number,
            checksum_mode: input.checksum_mode.is_some(),
            overrides: [
                input.response_content_type,
                input.response_content_encoding,
                input.response_content_disposition,
                input.response_content_language,
                input.response_cache_control,
            ],
            response_expires: input.response_expires,
        },
    )
    .await?;
    let len = a.plan.range.end - a.plan.range.start;
    Ok(S3Response::new(object_read_output!(
        HeadObjectOutput,
        a,
        len,
        {}
    )))
}

/// Deletes one key (or one version) and reports what S3 reports.
async fn delete_one(
    ops: &Ops,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<pb::DeleteObjectResult, GatewayError> {
    check_key(key)?;
    if let Some(v) = version_id {
        VersionId::parse(v)?;
    }
    match ops
        .execute(Cmd::DeleteObject(pb::DeleteObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.map(str::to_string),
        }))
        .await?
    {
        CmdResult::DeleteObject(r) => Ok(r),
        _ => Err(GatewayError::internal("unexpected result for DeleteObject")),
    }
}

/// DeleteObject.
pub async fn delete_object(
    ops: &Ops,
    req: S3Request<DeleteObjectInput>,
) -> Res<DeleteObjectOutput> {
    let input = req.input;
    let r = delete_one(ops, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let out = DeleteObjectOutput {
        delete_marker: r.delete_marker.then_some(true),
        version_id: if r.delete_marker || input.version_id.is_some() {
            Some(r.version_id)
        } else {
            None
        },
        ..Default::default()
    };
    Ok(S3Response::new(out))
}

/// DeleteObjects: up to 1000 keys; in quiet mode only failures are listed.
pub async fn delete_objects(
    ops: &Ops,
    req: S3Request<DeleteObjectsInput>,
) -> Res<DeleteObjectsOutput> {
    let input = req.input;
    let objects = input.delete.objects;
    if objects.is_empty() || objects.len() > 1000 {
        return Err(GatewayError::MalformedXml {
            message: "a Delete request names between 1 and 1000 objects".into(),
        });
    }
    ops.bucket(&input.bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for obj in objects {
        match delete_one(ops, &input.bucket, &obj.key, obj.version_id.as_deref()).await {
            Ok(r) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        delete_marker: r.delete_marker.then_some(true),
                        delete_marker_version_id: r.delete_marker.then(|| r.version_id.clone()),
                        key: Some(obj.key),
                        version_id: obj.version_id,
                    });
                }
            }
            Err(e) => {
                let s3 = super::errors::to_s3(e);
                errors.push(Error {
                    code: Some(s3.code().as_str().to_string()),
                    key: Some(obj.key),
                    message: s3.message().map(str::to_string),
                    version_id: obj.version_id,
                });
            }
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(size: u64) -> pb::ObjectVersion {
        pb::ObjectVersion {
            size,
            ..Default::default()
        }
    }

    fn plan(size: u64, range: &str) -> Result<(ByteRange<u64>, bool), GatewayError> {
        let r = Range::parse(range).expect("range");
        plan_read(&object(size), Some(&r), None).map(|p| (p.range, p.partial))
    }

    #[test]
    fn ranges_on_an_empty_object_follow_s3() {
        for first_byte in ["bytes=0-", "bytes=0-0", "bytes=1-2"] {
            assert!(
                matches!(
                    plan(0, first_byte),
                    Err(GatewayError::InvalidRange { size: 0 })
                ),
                "{first_byte}"
            );
        }
        // The whole empty object, not partial content.
        assert_eq!(plan(0, "bytes=-1").expect("suffix"), (0..0, false));
        assert_eq!(plan(0, "bytes=-100").expect("suffix"), (0..0, false));
        assert!(matches!(
            plan(0, "bytes=-0"),
            Err(GatewayError::InvalidRange { size: 0 })
        ));
    }

    #[test]
    fn ranges_on_a_non_empty_object_are_unchanged() {
        assert_eq!(plan(10, "bytes=0-").expect("all"), (0..10, true));
        assert_eq!(plan(10, "bytes=-3").expect("tail"), (7..10, true));
        assert_eq!(plan(10, "bytes=-30").expect("tail"), (0..10, true));
        assert!(matches!(
            plan(10, "bytes=10-"),
            Err(GatewayError::InvalidRange { size: 10 })
        ));
    }
}
