//! Conversions between s3s DTO values and our records (`tessera_core::object`): times, ETags,
//! checksums, content headers, owners. Pure functions, no I/O.
//!
//! Invariant: s3s types stop here and in the handlers; what goes to meta is core types only.

use std::collections::BTreeMap;

use crate::error::GatewayError;
use s3s::dto::{self, Timestamp, TimestampFormat};
use tessera_core::checksum::ChecksumAlgorithm;
use tessera_core::object::{ChecksumValue, ContentHeaders};

/// Milliseconds since the epoch to an S3 timestamp.
pub fn timestamp_from_ms(ms: i64) -> Timestamp {
    let nanos = i128::from(ms) * 1_000_000;
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(dt)
}

/// An S3 timestamp to milliseconds since the epoch.
pub fn timestamp_to_ms(ts: &Timestamp) -> i64 {
    let dt: time::OffsetDateTime = ts.clone().into();
    i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Formats a timestamp as an HTTP date (for storing Expires as the client sent it).
pub fn http_date(ts: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    ts.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

/// Parses a stored HTTP date back.
pub fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// Our stored, quoted ETag as an s3s ETag.
pub fn etag(stored: &str) -> dto::ETag {
    dto::ETag::Strong(stored.trim_matches('"').to_string())
}

/// The unquoted value of an s3s ETag for comparisons.
pub fn etag_value(tag: &dto::ETag) -> &str {
    tag.value()
}

/// Our checksum algorithm for an s3s one.
pub fn checksum_algorithm(alg: &dto::ChecksumAlgorithm) -> Result<ChecksumAlgorithm, GatewayError> {
    ChecksumAlgorithm::from_s3_name(alg.as_str()).ok_or_else(|| {
        GatewayError::invalid_argument(format!(
            "Checksum algorithm {} is not supported",
            alg.as_str()
        ))
    })
}

/// An s3s checksum type for ours.
pub fn checksum_type(kind: tessera_core::checksum::ChecksumType) -> dto::ChecksumType {
    dto::ChecksumType::from(kind.s3_name().to_string())
}

/// An s3s checksum algorithm for ours.
pub fn checksum_algorithm_dto(alg: ChecksumAlgorithm) -> dto::ChecksumAlgorithm {
    dto::ChecksumAlgorithm::from(alg.s3_name().to_string())
}

/// The checksum fields of a GET/HEAD/PUT response.
#[derive(Debug, Default, Clone)]
pub struct ChecksumFields {
    /// x-amz-checksum-crc32
    pub crc32: Option<String>,
    /// x-amz-checksum-crc32c
    pub crc32c: Option<String>,
    /// x-amz-checksum-crc64nvme
    pub crc64nvme: Option<String>,
    /// x-amz-checksum-sha1
    pub sha1: Option<String>,
    /// x-amz-checksum-sha256
    pub sha256: Option<String>,
    /// x-amz-checksum-type
    pub checksum_type: Option<dto::ChecksumType>,
}

impl ChecksumFields {
    /// Collects stored checksums into response fields.
    pub fn from_stored(values: &[ChecksumValue]) -> Self {
        let mut out = Self::default();
        for v in values {
            let value = Some(v.value.clone());
            match v.algorithm {
                ChecksumAlgorithm::Crc32 => out.crc32 = value,
                ChecksumAlgorithm::Crc32c => out.crc32c = value,
                ChecksumAlgorithm::Crc64Nvme => out.crc64nvme = value,
                ChecksumAlgorithm::Sha1 => out.sha1 = value,
                ChecksumAlgorithm::Sha256 => out.sha256 = value,
            }
            out.checksum_type = Some(checksum_type(v.kind));
        }
        out
    }
}

/// Content headers of a PUT or CreateMultipartUpload, as stored.
pub fn content_headers(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
) -> ContentHeaders {
    ContentHeaders {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires: expires.and_then(http_date),
    }
}

/// User metadata, checked against S3's 2 KiB limit (keys and values, UTF-8 bytes).
pub fn user_metadata(
    metadata: Option<dto::Metadata>,
) -> Result<BTreeMap<String, String>, GatewayError> {
    let map: BTreeMap<String, String> = metadata
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect()
        })
        .unwrap_or_default();
    let size: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > 2048 {
        return Err(GatewayError::MetadataTooLarge { size });
    }
    Ok(map)
}

/// Our canonical user id for an access key: stable, and reveals nothing of the key.
pub fn canonical_id(access_key: &str) -> String {
    hex::encode(blake3::hash(format!("tessera-user:{access_key}").as_bytes()).as_bytes())
}

/// The owner element of listings.
pub fn owner(id: &str, display_name: &str) -> dto::Owner {
    dto::Owner {
        display_name: Some(display_name.to_string()),
        id: Some(id.to_string()),
    }
}

/// Storage class as listings show it.
pub fn storage_class_name(stored: &str) -> &str {
    if stored.is_empty() {
        "STANDARD"
    } else {
        stored
    }
}

/// URL-encodes a key the way S3 does for `encoding-type=url`.
pub fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        for ms in [0_i64, 1, 1_700_000_000_123, 4_102_444_800_000] {
            assert_eq!(timestamp_to_ms(&timestamp_from_ms(ms)), ms);
        }
    }

    #[test]
    fn http_dates_round_trip() {
        let ts = timestamp_from_ms(1_700_000_000_000);
        let s = http_date(&ts).expect("format");
        assert_eq!(s, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(
            timestamp_to_ms(&parse_http_date(&s).expect("parse")),
            1_700_000_000_000
        );
    }

    #[test]
    fn metadata_over_two_kib_is_rejected() {
        let mut m = dto::Metadata::new();
        m.insert("k".into(), "v".repeat(2047));
        assert!(user_metadata(Some(m.clone())).is_ok());
        m.insert("k2".into(), "v".into());
        assert!(matches!(
            user_metadata(Some(m)),
            Err(GatewayError::MetadataTooLarge { .. })
        ));
    }

    #[test]
    fn url_encoding_matches_s3() {
        assert_eq!(url_encode("a b/c+d"), "a%20b/c%2Bd");
        assert_eq!(url_encode("é"), "%C3%A9");
    }
}
