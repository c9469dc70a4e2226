//! The mapping's decisions, variant by variant: status, code, request id.

use super::*;
use std::sync::Arc;

fn ctx() -> Arc<RequestContext> {
    RequestContext::new(None, false)
}

fn s3(err: GatewayError) -> (u16, String, S3Error) {
    let ctx = ctx();
    let e = to_s3(err, &ctx);
    assert_eq!(
        e.request_id(),
        Some(ctx.request_id.as_str()),
        "every error names its request"
    );
    let status = e.status_code().map(|s| s.as_u16()).unwrap_or(0);
    (status, e.code().as_str().to_owned(), e)
}

#[test]
fn status_codes_follow_s3() {
    let cases: Vec<(GatewayError, u16, &str)> = vec![
        (
            GatewayError::NoSuchBucket { bucket: "b".into() },
            404,
            "NoSuchBucket",
        ),
        (GatewayError::BucketNotEmpty, 409, "BucketNotEmpty"),
        (
            GatewayError::BucketAlreadyOwnedByYou,
            409,
            "BucketAlreadyOwnedByYou",
        ),
        (
            GatewayError::KeyTooLong { len: 1025 },
            400,
            "KeyTooLongError",
        ),
        (
            GatewayError::NoSuchKey {
                delete_marker_version: None,
            },
            404,
            "NoSuchKey",
        ),
        (GatewayError::NoSuchUpload, 404, "NoSuchUpload"),
        (
            GatewayError::InvalidPart { part_number: 2 },
            400,
            "InvalidPart",
        ),
        (GatewayError::InvalidPartOrder, 400, "InvalidPartOrder"),
        (
            GatewayError::EntityTooSmall {
                part_number: 1,
                size: 1,
            },
            400,
            "EntityTooSmall",
        ),
        (
            GatewayError::PreconditionFailed {
                condition: "If-Match",
            },
            412,
            "PreconditionFailed",
        ),
        (GatewayError::NotModified, 304, "NotModified"),
        (GatewayError::InvalidRange { size: 3 }, 416, "InvalidRange"),
        (
            GatewayError::Pipeline(PipelineError::BodyRejected(BodyRejection::BadDigest {
                what: "Content-MD5".into(),
            })),
            400,
            "BadDigest",
        ),
        (
            GatewayError::DeleteMarkerVersion {
                version_id: "v".into(),
            },
            405,
            "MethodNotAllowed",
        ),
        (
            GatewayError::Pipeline(PipelineError::BodyRejected(
                BodyRejection::MalformedTrailer { detail: "x".into() },
            )),
            400,
            "MalformedTrailerError",
        ),
        (GatewayError::internal("x"), 500, "InternalError"),
        (
            GatewayError::Lease(LeaseError::NotGranted),
            503,
            "ServiceUnavailable",
        ),
        (
            GatewayError::Pipeline(PipelineError::WriteQuorumLost {
                committed: 2,
                needed: 3,
            }),
            503,
            "ServiceUnavailable",
        ),
        (
            GatewayError::Pipeline(PipelineError::ChecksumMismatch {
                part_number: 1,
                algorithm: tessera_core::checksum::ChecksumAlgorithm::Crc64Nvme,
            }),
            500,
            "InternalError",
        ),
        // The key service unreachable: retry later. A key it refuses: the record is wrong.
        (
            GatewayError::Pipeline(PipelineError::Seal(SealError::KeysUnavailable {
                detail: "no meta node answered".into(),
            })),
            503,
            "ServiceUnavailable",
        ),
        (
            GatewayError::Pipeline(PipelineError::Seal(SealError::KeyRefused {
                detail: "does not unwrap".into(),
            })),
            500,
            "InternalError",
        ),
        (
            GatewayError::NotImplementedHeader {
                header: "x-amz-server-side-encryption",
            },
            501,
            "NotImplemented",
        ),
        // A KMS refusal keeps the KMS's code, as S3 passes it on.
        (
            GatewayError::Pipeline(PipelineError::Seal(SealError::KmsRefused {
                code: "KMS.DisabledException".into(),
                detail: "KMS key x is disabled".into(),
            })),
            400,
            "KMS.DisabledException",
        ),
    ];
    for (err, status, code) in cases {
        let (got_status, got_code, _) = s3(err);
        assert_eq!(got_code, code);
        assert_eq!(got_status, status, "status of {code}");
    }
}

#[test]
fn meta_rules_map_by_their_fields_not_their_messages() {
    let rule = |r: MetaRuleError| s3(GatewayError::Command(CommandError::Rule(r)));
    let (status, code, e) = rule(MetaRuleError::InvalidPart {
        part_number: 7,
        etag: "\"abc\"".into(),
    });
    assert_eq!((status, code.as_str()), (400, "InvalidPart"));
    let message = e.message().unwrap_or_default().to_owned();
    assert!(
        message.contains("part 7") && message.contains("\"abc\""),
        "{message}"
    );
    let (status, code, e) = rule(MetaRuleError::EntityTooSmall {
        part_number: 3,
        size: 42,
    });
    assert_eq!((status, code.as_str()), (400, "EntityTooSmall"));
    assert!(
        e.message()
            .is_some_and(|m| m.contains("part 3 is 42 bytes"))
    );
    let cases = [
        (
            MetaRuleError::NoSuchBucket { bucket: "b".into() },
            404,
            "NoSuchBucket",
        ),
        (
            MetaRuleError::BucketAlreadyExists { bucket: "b".into() },
            409,
            "BucketAlreadyExists",
        ),
        (
            MetaRuleError::NoSuchUpload {
                upload_id: "u".into(),
            },
            404,
            "NoSuchUpload",
        ),
        (
            MetaRuleError::PreconditionFailed {
                condition: "If-Match".into(),
            },
            412,
            "PreconditionFailed",
        ),
        (
            MetaRuleError::ConditionalRequestConflict,
            409,
            "ConditionalRequestConflict",
        ),
        (MetaRuleError::invalid("bad"), 400, "InvalidArgument"),
        (
            MetaRuleError::Conflict {
                message: "claimed".into(),
            },
            503,
            "ServiceUnavailable",
        ),
        (
            MetaRuleError::LeaseExpired { lease_id: 9 },
            503,
            "ServiceUnavailable",
        ),
        (MetaRuleError::SessionExpired, 503, "ServiceUnavailable"),
    ];
    for (r, status, code) in cases {
        let (got_status, got_code, _) = rule(r);
        assert_eq!((got_status, got_code.as_str()), (status, code));
    }
}

#[test]
fn unknown_outcomes_and_unreadable_answers() {
    let unavailable = MetaClientError::Unavailable {
        attempts: 3,
        last: "down".into(),
    };
    let (status, code, _) = s3(GatewayError::Command(CommandError::Client(
        unavailable.clone(),
    )));
    assert_eq!((status, code.as_str()), (503, "ServiceUnavailable"));
    let (status, code, _) = s3(GatewayError::Meta(unavailable));
    assert_eq!((status, code.as_str()), (503, "ServiceUnavailable"));
    let (status, code, _) = s3(GatewayError::Meta(MetaClientError::Missing {
        op: "get_object",
        field: "version",
    }));
    assert_eq!((status, code.as_str()), (500, "InternalError"));
}

#[test]
fn delete_marker_errors_carry_headers() {
    let (_, _, e) = s3(GatewayError::NoSuchKey {
        delete_marker_version: Some("v1".into()),
    });
    let headers = e.headers().expect("headers");
    assert_eq!(headers["x-amz-delete-marker"], "true");
    assert_eq!(headers["x-amz-version-id"], "v1");
}
