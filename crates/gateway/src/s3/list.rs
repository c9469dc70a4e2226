//! ListObjectsV2 and ListObjects (v1): prefix, delimiter, max-keys, continuation token,
//! start-after, marker and encoding-type=url. Meta does the scan; this file shapes S3's answer.

use super::Ops;
use super::convert::{self, timestamp_from_ms, url_encode};
use crate::context::RequestContext;
use crate::error::GatewayError;
use base64::Engine;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use tessera_client::meta::{ListObjects, ObjectPage};
use tessera_core::names::BucketName;
use tessera_core::object::ObjectVersion;

type Res<T> = Result<S3Response<T>, GatewayError>;

const TOKEN: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn max_keys(given: Option<i32>) -> Result<u32, GatewayError> {
    match given {
        None => Ok(1000),
        Some(n) if n < 0 => Err(GatewayError::invalid_argument(
            "max-keys must be a non-negative integer",
        )),
        Some(n) => Ok(u32::try_from(n).unwrap_or(1000).min(1000)),
    }
}

fn url_encoding(given: Option<&EncodingType>) -> Result<bool, GatewayError> {
    match given.map(|e| e.as_str()) {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(other) => Err(GatewayError::invalid_argument(format!(
            "Invalid Encoding Method specified in Request: {other}"
        ))),
    }
}

/// A continuation token: the opaque form of the last key or prefix returned.
pub fn encode_token(marker: &str) -> String {
    TOKEN.encode(marker.as_bytes())
}

/// The marker inside a continuation token.
pub fn decode_token(token: &str) -> Result<String, GatewayError> {
    TOKEN
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            GatewayError::invalid_argument("The continuation token provided is incorrect")
        })
}

async fn scan(
    ops: &Ops,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: &str,
    max: u32,
) -> Result<ObjectPage, GatewayError> {
    if max == 0 {
        ops.bucket(bucket).await?;
        return Ok(ObjectPage {
            objects: Vec::new(),
            common_prefixes: Vec::new(),
            is_truncated: false,
            next_marker: String::new(),
            no_such_bucket: false,
        });
    }
    let name = BucketName::parse(bucket).map_err(|_| GatewayError::NoSuchBucket {
        bucket: bucket.to_string(),
    })?;
    let resp = ops
        .meta
        .list_objects(&ListObjects {
            bucket: name,
            prefix: prefix.to_string(),
            delimiter: delimiter.filter(|d| !d.is_empty()).map(str::to_string),
            start_after: start_after.to_string(),
            max_keys: max,
        })
        .await?;
    if resp.no_such_bucket {
        return Err(GatewayError::NoSuchBucket {
            bucket: bucket.to_string(),
        });
    }
    Ok(resp)
}

fn contents(ops: &Ops, objects: &[ObjectVersion], encode: bool, with_owner: bool) -> Vec<Object> {
    objects
        .iter()
        .map(|v| Object {
            checksum_algorithm: v
                .checksums
                .first()
                .map(|c| vec![convert::checksum_algorithm_dto(c.algorithm)]),
            checksum_type: v.checksums.first().map(|c| convert::checksum_type(c.kind)),
            e_tag: Some(convert::etag(&v.etag)),
            key: Some(if encode {
                url_encode(v.key.as_str())
            } else {
                v.key.as_str().to_string()
            }),
            last_modified: Some(timestamp_from_ms(v.last_modified_ms)),
            owner: with_owner.then(|| convert::owner(&ops.owner_id, &ops.owner_name)),
            size: i64::try_from(v.size).ok(),
            storage_class: Some(ObjectStorageClass::from(
                convert::storage_class_name(&v.storage_class).to_string(),
            )),
            ..Default::default()
        })
        .collect()
}

fn prefixes(list: &[String], encode: bool) -> Vec<CommonPrefix> {
    list.iter()
        .map(|p| CommonPrefix {
            prefix: Some(if encode { url_encode(p) } else { p.clone() }),
        })
        .collect()
}

fn maybe_encode(s: Option<String>, encode: bool) -> Option<String> {
    s.map(|s| if encode { url_encode(&s) } else { s })
}

/// ListObjectsV2.
pub async fn list_objects_v2(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<ListObjectsV2Input>,
) -> Res<ListObjectsV2Output> {
    let input = req.input;
    let max = max_keys(input.max_keys)?;
    let encode = url_encoding(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let start = match &input.continuation_token {
        Some(t) => decode_token(t)?,
        None => input.start_after.clone().unwrap_or_default(),
    };
    let resp = scan(
        ops,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        &start,
        max,
    )
    .await?;
    let key_count = resp.objects.len() + resp.common_prefixes.len();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: maybe_encode(input.prefix, encode),
        max_keys: i32::try_from(max).ok(),
        key_count: i32::try_from(key_count).ok(),
        continuation_token: input.continuation_token,
        is_truncated: Some(resp.is_truncated),
        next_continuation_token: resp.is_truncated.then(|| encode_token(&resp.next_marker)),
        contents: Some(contents(
            ops,
            &resp.objects,
            encode,
            input.fetch_owner.unwrap_or(false),
        )),
        common_prefixes: Some(prefixes(&resp.common_prefixes, encode)),
        delimiter: maybe_encode(input.delimiter, encode),
        encoding_type: input.encoding_type,
        start_after: maybe_encode(input.start_after, encode),
        ..Default::default()
    }))
}

/// ListObjects (v1): NextMarker only when a delimiter is given, as S3 does.
pub async fn list_objects(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<ListObjectsInput>,
) -> Res<ListObjectsOutput> {
    let input = req.input;
    let max = max_keys(input.max_keys)?;
    let encode = url_encoding(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let marker = input.marker.clone().unwrap_or_default();
    let resp = scan(
        ops,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        &marker,
        max,
    )
    .await?;
    let has_delimiter = input.delimiter.as_deref().is_some_and(|d| !d.is_empty());
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: maybe_encode(input.prefix, encode),
        marker: Some(maybe_encode(input.marker, encode).unwrap_or_default()),
        max_keys: i32::try_from(max).ok(),
        is_truncated: Some(resp.is_truncated),
        contents: Some(contents(ops, &resp.objects, encode, true)),
        common_prefixes: Some(prefixes(&resp.common_prefixes, encode)),
        delimiter: maybe_encode(input.delimiter, encode),
        next_marker: (resp.is_truncated && has_delimiter)
            .then(|| maybe_encode(Some(resp.next_marker.clone()), encode))
            .flatten(),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        for m in ["", "a", "dir/é/ü", "x\u{1}y"] {
            assert_eq!(decode_token(&encode_token(m)).expect("decode"), m);
        }
        assert!(matches!(
            decode_token("%%%"),
            Err(GatewayError::InvalidArgument { message }) if message == "The continuation token provided is incorrect"
        ));
    }

    #[test]
    fn max_keys_rules() {
        assert_eq!(max_keys(None).expect("default"), 1000);
        assert_eq!(max_keys(Some(5000)).expect("capped"), 1000);
        assert_eq!(max_keys(Some(0)).expect("zero"), 0);
        assert!(matches!(
            max_keys(Some(-1)),
            Err(GatewayError::InvalidArgument { message }) if message == "max-keys must be a non-negative integer"
        ));
    }
}
