//! GetObject and HeadObject: the version a request addresses (with S3's delete-marker
//! rules), its conditions, its range or part, and its bytes streamed from the pipeline.
//!
//! Invariant: a GET of the whole object, or of one part, re-checks the stored checksum as the
//! bytes stream and never sends the last piece of bytes that do not match (the body ends with
//! an error, logged with the request id and counted); HEAD and ranged GETs read no bytes or
//! check none.

use super::Ops;
use super::conditions::{self, ConditionMode, ReadConditions};
use super::convert::{self, ChecksumFields, timestamp_from_ms, timestamp_to_ms};
use super::sse;
use super::store::visible_version_id;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pipeline::{PipelineError, ReadCheck};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use std::ops::Range as ByteRange;
use tessera_core::names::{BucketName, ObjectKey, VersionId};
use tessera_core::object::ObjectVersion;
use tessera_core::sealing::customer_key::CustomerKey;

type Res<T> = Result<S3Response<T>, GatewayError>;

/// S3's content type for objects stored without one.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Looks up the version a GET, HEAD or copy addresses, applying S3's delete-marker rules. A
/// bucket or key that is not a valid name names nothing.
pub async fn fetch_version(
    ops: &Ops,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<ObjectVersion, GatewayError> {
    let version_id = version_id.map(VersionId::parse).transpose()?;
    let no_such_bucket = || GatewayError::NoSuchBucket {
        bucket: bucket.to_string(),
    };
    let bucket_name = BucketName::parse(bucket).map_err(|_| no_such_bucket())?;
    let Ok(key) = ObjectKey::parse(key) else {
        return Err(match version_id {
            Some(_) => GatewayError::NoSuchVersion,
            None => GatewayError::NoSuchKey {
                delete_marker_version: None,
            },
        });
    };
    let lookup = ops
        .meta
        .get_object(&bucket_name, &key, version_id.as_ref())
        .await?;
    if lookup.no_such_bucket {
        return Err(no_such_bucket());
    }
    match (lookup.version, version_id) {
        (None, None) => Err(GatewayError::NoSuchKey {
            delete_marker_version: None,
        }),
        (None, Some(_)) => Err(GatewayError::NoSuchVersion),
        (Some(v), None) if v.delete_marker => Err(GatewayError::NoSuchKey {
            delete_marker_version: Some(v.version_id.as_str().to_string()),
        }),
        (Some(v), Some(_)) if v.delete_marker => Err(GatewayError::DeleteMarkerVersion {
            version_id: v.version_id.as_str().to_string(),
        }),
        (Some(v), _) => Ok(v),
    }
}

/// The bytes [range) of a version as one stream across its parts, checked as `check` says,
/// opened now: a data key refused (a KMS key disabled, say) or unreachable for the first part
/// is an S3 error before any byte. A failure mid-stream (the client sees a cut response) is
/// logged with the request id; a checksum mismatch is also counted.
pub async fn object_body(
    ops: &Ops,
    ctx: &RequestContext,
    version: &ObjectVersion,
    range: ByteRange<u64>,
    check: ReadCheck,
    customer_key: Option<&CustomerKey>,
) -> Result<StreamingBlob, GatewayError> {
    let request_id = ctx.request_id.clone();
    let bucket = version.bucket.as_str().to_owned();
    let key = version.key.as_str().to_owned();
    let version_id = version.version_id.as_str().to_owned();
    let metrics = ops.metrics.clone();
    let stream = ops
        .blobs
        .open_object(version, range, check, customer_key)
        .await?
        .inspect(move |item| match item {
            Ok(_) => {}
            Err(e @ PipelineError::ChecksumMismatch { part_number, .. }) => {
                metrics.checksum_failure();
                tracing::error!(
                    request_id = %request_id,
                    bucket = %bucket,
                    key = %key,
                    version_id = %version_id,
                    part_number,
                    error = %e,
                    "object bytes do not match the stored checksum; response cut before its last piece"
                );
            }
            Err(e) => tracing::error!(
                request_id = %request_id,
                bucket = %bucket,
                key = %key,
                version_id = %version_id,
                code = e.code(),
                error = %e,
                "object read failed mid-stream; response cut"
            ),
        });
    Ok(StreamingBlob::wrap(stream))
}

/// Where a GET or HEAD reads: the whole object, a Range, or one part.
struct ReadPlan {
    range: ByteRange<u64>,
    partial: bool,
    parts_count: Option<i32>,
    /// Whole objects and whole parts are checked against their stored checksums.
    check: ReadCheck,
}

fn plan_read(
    version: &ObjectVersion,
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
                    check: ReadCheck::WholeParts,
                });
            }
            let range = r
                .check(size)
                .map_err(|_| GatewayError::InvalidRange { size })?;
            Ok(ReadPlan {
                range,
                partial: true,
                parts_count: None,
                check: ReadCheck::None,
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
                        check: ReadCheck::WholeParts,
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
                        check: ReadCheck::WholeParts,
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
            check: ReadCheck::WholeParts,
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
    version: &ObjectVersion,
    overrides: [Option<String>; 5],
    expires_override: Option<Timestamp>,
) -> ObjectHeaders {
    let h = version.headers.clone();
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

fn storage_class(version: &ObjectVersion) -> Option<StorageClass> {
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
    version: ObjectVersion,
    plan: ReadPlan,
    headers: ObjectHeaders,
    checksums: ChecksumFields,
    content_range: Option<String>,
    /// `x-amz-server-side-encryption-customer-algorithm` and `-key-MD5` for an SSE-C object.
    customer: (Option<String>, Option<String>),
}

/// The shared part of GET and HEAD: lookup, the customer key (SSE-C), conditions, range or
/// part, response headers.
async fn prepare_read(
    ops: &Ops,
    r: ReadRequest<'_>,
    customer_key: Option<&CustomerKey>,
) -> Result<ReadAnswer, GatewayError> {
    let version = fetch_version(ops, r.bucket, r.key, r.version_id).await?;
    sse::check_read_key(&version, customer_key)?;
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
        customer: sse::customer_answer(customer_key),
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
            server_side_encryption: sse::header_for_version(&a.version),
            ssekms_key_id: sse::kms_key_for_version(&a.version),
            bucket_key_enabled: sse::bucket_key_for_version(&a.version),
            sse_customer_algorithm: a.customer.0,
            sse_customer_key_md5: a.customer.1,
            storage_class: storage_class(&a.version),
            version_id: visible_version_id(&a.version.version_id),
            $($extra)*
            ..Default::default()
        }
    }};
}

/// The read request of a GetObject or HeadObject input (s3s gives each operation its own
/// input type, with the same fields).
macro_rules! read_request {
    ($input:ident) => {
        ReadRequest {
            bucket: &$input.bucket,
            key: &$input.key,
            version_id: $input.version_id.as_deref(),
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
            range: $input.range.as_ref(),
            part_number: $input.part_number,
            checksum_mode: $input.checksum_mode.is_some(),
            overrides: [
                $input.response_content_type,
                $input.response_content_encoding,
                $input.response_content_disposition,
                $input.response_content_language,
                $input.response_cache_control,
            ],
            response_expires: $input.response_expires,
        }
    };
}

/// GetObject.
pub async fn get_object(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<GetObjectInput>,
) -> Res<GetObjectOutput> {
    let input = req.input;
    let customer = sse::request_key(&sse::customer_headers!(input), ctx, ops.sse_c_over_http)?;
    let a = prepare_read(ops, read_request!(input), customer.as_ref()).await?;
    let len = a.plan.range.end - a.plan.range.start;
    let body = object_body(
        ops,
        ctx,
        &a.version,
        a.plan.range.clone(),
        a.plan.check,
        customer.as_ref(),
    )
    .await?;
    Ok(S3Response::new(
        object_read_output!(GetObjectOutput, a, len, {
            body: Some(body),
        }),
    ))
}

/// HeadObject.
pub async fn head_object(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<HeadObjectInput>,
) -> Res<HeadObjectOutput> {
    let input = req.input;
    let customer = sse::request_key(&sse::customer_headers!(input), ctx, ops.sse_c_over_http)?;
    let a = prepare_read(ops, read_request!(input), customer.as_ref()).await?;
    let len = a.plan.range.end - a.plan.range.start;
    Ok(S3Response::new(object_read_output!(
        HeadObjectOutput,
        a,
        len,
        {}
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(size: u64) -> ObjectVersion {
        ObjectVersion {
            seq: 1,
            size,
            etag: "\"e\"".into(),
            ..ObjectVersion::new(
                BucketName::parse("bkt").expect("bucket"),
                ObjectKey::parse("k").expect("key"),
            )
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
