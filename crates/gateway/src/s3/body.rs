//! Request bodies on their way into the blob pipeline: the declared length, the Content-MD5
//! and the additional checksum (header or aws-chunked trailer) a client asks us to verify. A
//! body is accepted only when every digest the client sent matches what we computed; the check
//! runs inside the pipeline after the body ended and before any shard is committed.

use crate::error::GatewayError;
use crate::pipeline::{BodyCheck, BodyDigests, BodyError, BodyRejection};
use base64::Engine;
use bytes::Bytes;
use futures::Stream;
use http::HeaderMap;
use s3s::dto::StreamingBlob;
use std::pin::Pin;
use tessera_core::checksum::{ChecksumAlgorithm, to_base64};

/// A body stream as the pipeline takes it.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

/// Where the expected value of the additional checksum comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedChecksum {
    /// No value to verify: compute and store only.
    None,
    /// Sent in an x-amz-checksum-* header (decoded digest).
    Header(Vec<u8>),
    /// Announced in x-amz-trailer; arrives after the body.
    Trailer,
}

/// What the client declared about a body.
#[derive(Debug, Clone)]
pub struct BodySpec {
    /// Decoded length (x-amz-decoded-content-length for aws-chunked, else Content-Length).
    pub expected_len: Option<u64>,
    /// Content-MD5, decoded.
    pub content_md5: Option<[u8; 16]>,
    /// The additional checksum to compute over the body.
    pub algorithm: ChecksumAlgorithm,
    /// Whether and from where to verify it.
    pub expected: ExpectedChecksum,
    /// Whether the client asked for the checksum (so it is echoed in the response).
    pub requested: bool,
}

/// The checksum headers a request may carry, as s3s parsed them.
#[derive(Debug, Default, Clone)]
pub struct ChecksumHeaders {
    /// x-amz-sdk-checksum-algorithm
    pub algorithm: Option<String>,
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
}

impl BodySpec {
    /// Reads the declarations from the request headers and the parsed input fields.
    pub fn from_request(
        headers: &HeaderMap,
        content_length: Option<i64>,
        content_md5: Option<&str>,
        checksums: &ChecksumHeaders,
    ) -> Result<Self, GatewayError> {
        let decoded = headers
            .get("x-amz-decoded-content-length")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    GatewayError::invalid_argument("x-amz-decoded-content-length is not a number")
                })
            })
            .transpose()?;
        let expected_len = match decoded {
            Some(n) => Some(n),
            None => content_length.and_then(|n| u64::try_from(n).ok()),
        };
        let content_md5 = content_md5
            .map(|s| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|_| GatewayError::InvalidDigest {
                        what: "Content-MD5".into(),
                    })?;
                <[u8; 16]>::try_from(raw.as_slice()).map_err(|_| GatewayError::InvalidDigest {
                    what: "Content-MD5".into(),
                })
            })
            .transpose()?;

        let header_values = [
            (ChecksumAlgorithm::Crc32, &checksums.crc32),
            (ChecksumAlgorithm::Crc32c, &checksums.crc32c),
            (ChecksumAlgorithm::Crc64Nvme, &checksums.crc64nvme),
            (ChecksumAlgorithm::Sha1, &checksums.sha1),
            (ChecksumAlgorithm::Sha256, &checksums.sha256),
        ];
        let given: Vec<(ChecksumAlgorithm, &String)> = header_values
            .iter()
            .filter_map(|(alg, v)| v.as_ref().map(|v| (*alg, v)))
            .collect();
        if given.len() > 1 {
            return Err(GatewayError::invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
        let declared_alg = checksums
            .algorithm
            .as_deref()
            .map(|name| {
                ChecksumAlgorithm::from_s3_name(name).ok_or_else(|| {
                    GatewayError::invalid_argument(format!(
                        "Value for x-amz-sdk-checksum-algorithm header is invalid: {name}"
                    ))
                })
            })
            .transpose()?;
        let trailer_alg = headers
            .get("x-amz-trailer")
            .map(|v| trailer_algorithm(v.to_str().unwrap_or("")))
            .transpose()?;

        let (algorithm, expected, requested) = if let Some((alg, value)) = given.first() {
            let digest = tessera_core::checksum::from_base64(value)
                .ok()
                .filter(|d| d.len() == alg.digest_len())
                .ok_or_else(|| {
                    GatewayError::invalid_request(format!(
                        "Value for {} header is invalid.",
                        alg.header_name()
                    ))
                })?;
            if let Some(d) = declared_alg
                && d != *alg
            {
                return Err(GatewayError::invalid_request(
                    "x-amz-sdk-checksum-algorithm does not match the checksum header sent",
                ));
            }
            (*alg, ExpectedChecksum::Header(digest), true)
        } else if let Some(alg) = trailer_alg {
            (alg, ExpectedChecksum::Trailer, true)
        } else if let Some(alg) = declared_alg {
            (alg, ExpectedChecksum::None, true)
        } else {
            // S3 computes CRC64NVME for objects uploaded without a checksum.
            (ChecksumAlgorithm::Crc64Nvme, ExpectedChecksum::None, false)
        };
        Ok(Self {
            expected_len,
            content_md5,
            algorithm,
            expected,
            requested,
        })
    }

    /// The pipeline's check of this body: every digest the client declared (Content-MD5, the
    /// checksum header, or the checksum trailer, readable once the body ended) against what
    /// the pipeline computed.
    pub fn check(&self, trailers: Option<s3s::TrailingHeaders>) -> BodyCheck {
        let spec = self.clone();
        Box::new(move |digests: &BodyDigests| spec.verify(digests, trailers.as_ref()))
    }

    /// Checks every digest the client declared against `digests`.
    pub fn verify(
        &self,
        digests: &BodyDigests,
        trailers: Option<&s3s::TrailingHeaders>,
    ) -> Result<(), BodyRejection> {
        if let Some(md5) = self.content_md5
            && md5 != digests.md5
        {
            return Err(BodyRejection::BadDigest {
                what: "Content-MD5".into(),
            });
        }
        let expected = match &self.expected {
            ExpectedChecksum::None => None,
            ExpectedChecksum::Header(d) => Some(d.clone()),
            ExpectedChecksum::Trailer => {
                let value = trailers.and_then(|t| {
                    t.read(|h| {
                        h.get(self.algorithm.header_name())
                            .and_then(|v| v.to_str().ok().map(str::to_string))
                    })
                });
                Some(self.trailer_digest(value.flatten())?)
            }
        };
        let Some(expected) = expected else {
            return Ok(());
        };
        if digests.checksum(self.algorithm) != Some(expected.as_slice()) {
            return Err(BodyRejection::BadDigest {
                what: format!("{} checksum", self.algorithm.s3_name()),
            });
        }
        Ok(())
    }

    /// The digest a checksum trailer's value (if it was sent) carries.
    fn trailer_digest(&self, value: Option<String>) -> Result<Vec<u8>, BodyRejection> {
        let name = self.algorithm.header_name();
        let value = value.ok_or_else(|| BodyRejection::MalformedTrailer {
            detail: format!("the trailer {name} announced in x-amz-trailer was not sent"),
        })?;
        tessera_core::checksum::from_base64(&value)
            .ok()
            .filter(|d| d.len() == self.algorithm.digest_len())
            .ok_or_else(|| BodyRejection::MalformedTrailer {
                detail: format!("the value of the {name} trailer is not a valid digest"),
            })
    }
}

/// The checksum an `x-amz-trailer` header announces. S3 takes exactly one trailer, an
/// `x-amz-checksum-*` of an algorithm it knows; anything else is refused up front rather than
/// left unchecked.
fn trailer_algorithm(value: &str) -> Result<ChecksumAlgorithm, GatewayError> {
    value
        .trim()
        .strip_prefix("x-amz-checksum-")
        .and_then(ChecksumAlgorithm::from_s3_name)
        .ok_or_else(|| {
            GatewayError::invalid_request(
                "The value specified in the x-amz-trailer header is not supported",
            )
        })
}

/// The base64 form of a computed digest, as S3 returns it.
pub fn encode_digest(digest: &[u8]) -> String {
    to_base64(digest)
}

/// A request body as the pipeline's stream (an absent body is empty).
pub fn into_stream(body: Option<StreamingBlob>) -> BodyStream {
    match body {
        Some(blob) => Box::pin(blob),
        None => Box::pin(futures::stream::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_checksum_is_crc64nvme_and_not_echoed() {
        let spec = BodySpec::from_request(
            &HeaderMap::new(),
            Some(5),
            None,
            &ChecksumHeaders::default(),
        )
        .expect("spec");
        assert_eq!(spec.algorithm, ChecksumAlgorithm::Crc64Nvme);
        assert!(!spec.requested);
        assert_eq!(spec.expected_len, Some(5));
    }

    #[test]
    fn decoded_length_wins_over_content_length() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-decoded-content-length", "10".parse().expect("hv"));
        h.insert("x-amz-trailer", "x-amz-checksum-crc32".parse().expect("hv"));
        let spec =
            BodySpec::from_request(&h, Some(99), None, &ChecksumHeaders::default()).expect("spec");
        assert_eq!(spec.expected_len, Some(10));
        assert_eq!(spec.algorithm, ChecksumAlgorithm::Crc32);
        assert_eq!(spec.expected, ExpectedChecksum::Trailer);
    }

    #[test]
    fn bad_md5_and_bad_checksum_header_are_rejected() {
        let h = HeaderMap::new();
        assert!(matches!(
            BodySpec::from_request(&h, None, Some("not-base64!"), &ChecksumHeaders::default()),
            Err(GatewayError::InvalidDigest { .. })
        ));
        let c = ChecksumHeaders {
            crc32: Some("AAAA".into()),
            ..Default::default()
        };
        assert!(matches!(
            BodySpec::from_request(&h, None, None, &c),
            Err(GatewayError::InvalidRequest { message }) if message == "Value for x-amz-checksum-crc32 header is invalid."
        ));
        let two = ChecksumHeaders {
            crc32: Some("AAAAAA==".into()),
            sha1: Some("AAAAAA==".into()),
            ..Default::default()
        };
        assert!(matches!(
            BodySpec::from_request(&h, None, None, &two),
            Err(GatewayError::InvalidRequest { message }) if message == "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        ));
    }

    fn with_trailer(value: &str) -> Result<BodySpec, GatewayError> {
        let mut h = HeaderMap::new();
        h.insert("x-amz-trailer", value.parse().expect("hv"));
        BodySpec::from_request(&h, Some(10), None, &ChecksumHeaders::default())
    }

    #[test]
    fn trailers_of_unknown_algorithms_are_refused() {
        for value in [
            "x-amz-checksum-md5",
            "x-amz-checksum-",
            "garbage",
            "content-md5",
            "x-amz-checksum-crc32, x-amz-checksum-sha1",
            "",
        ] {
            assert!(
                matches!(
                    with_trailer(value),
                    Err(GatewayError::InvalidRequest { ref message })
                        if message == "The value specified in the x-amz-trailer header is not supported"
                ),
                "{value:?}"
            );
        }
        let spec = with_trailer(" x-amz-checksum-sha256 ").expect("known");
        assert_eq!(
            (spec.algorithm, spec.expected),
            (ChecksumAlgorithm::Sha256, ExpectedChecksum::Trailer)
        );
        // Algorithm names are matched as S3 spells them, in any case.
        assert_eq!(
            with_trailer("x-amz-checksum-CRC64NVME")
                .expect("known")
                .algorithm,
            ChecksumAlgorithm::Crc64Nvme
        );
    }

    fn digests(data: &[u8]) -> BodyDigests {
        BodyDigests {
            size: data.len() as u64,
            md5: tessera_core::etag::md5_of(data),
            checksums: vec![(
                ChecksumAlgorithm::Crc32,
                tessera_core::checksum::checksum_of(ChecksumAlgorithm::Crc32, data),
            )],
        }
    }

    #[test]
    fn an_announced_trailer_that_never_arrives_is_malformed_trailer() {
        let spec = with_trailer("x-amz-checksum-crc32").expect("spec");
        let body = digests(b"hello");
        // No trailers at all (the stream ended with `0\r\n\r\n`).
        assert!(matches!(
            spec.verify(&body, None),
            Err(BodyRejection::MalformedTrailer { .. })
        ));
        assert!(matches!(
            spec.trailer_digest(Some("not base64!".into())),
            Err(BodyRejection::MalformedTrailer { .. })
        ));
        assert!(matches!(
            spec.trailer_digest(Some(to_base64(&[1, 2]))),
            Err(BodyRejection::MalformedTrailer { .. })
        ));
        assert!(spec.trailer_digest(Some(to_base64(&[1, 2, 3, 4]))).is_ok());
        // (s3s's TrailingHeaders cannot be built outside s3s: a trailer of another name, or
        // one whose value is no digest, is covered by the cluster test bad_input.)
    }

    #[test]
    fn declared_digests_are_checked_against_the_body() {
        let body = digests(b"hello");
        let mut h = HeaderMap::new();
        h.insert("x-amz-decoded-content-length", "5".parse().expect("hv"));
        let right_md5 = base64::engine::general_purpose::STANDARD.encode(body.md5);
        let wrong_md5 = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        let crc = ChecksumHeaders {
            crc32: Some(to_base64(&body.checksums[0].1)),
            ..ChecksumHeaders::default()
        };
        let spec = BodySpec::from_request(&h, None, Some(&right_md5), &crc).expect("spec");
        assert_eq!(spec.verify(&body, None), Ok(()));
        assert_eq!((spec.check(None))(&body), Ok(()));
        let spec = BodySpec::from_request(&h, None, Some(&wrong_md5), &crc).expect("spec");
        assert_eq!(
            spec.verify(&body, None),
            Err(BodyRejection::BadDigest {
                what: "Content-MD5".into()
            })
        );
        let other = ChecksumHeaders {
            crc32: Some(to_base64(&[9, 9, 9, 9])),
            ..ChecksumHeaders::default()
        };
        let spec = BodySpec::from_request(&h, None, None, &other).expect("spec");
        assert_eq!(
            (spec.check(None))(&body),
            Err(BodyRejection::BadDigest {
                what: "CRC32 checksum".into()
            })
        );
    }
}
