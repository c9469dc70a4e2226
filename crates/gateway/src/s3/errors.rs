//! The one place where gateway errors become S3 errors: an exhaustive match, no catch-all arm,
//! so a new failure mode cannot reach a client without a decision about its status and code.
//! Timeouts and lost quorum are 503 ServiceUnavailable; what we don't understand is 500
//! InternalError, logged with the request id.

use crate::error::GatewayError;
use crate::pipeline::PipelineError;
use s3s::{S3Error, S3ErrorCode, s3_error};
use tessera_client::MetaClientError;

/// Converts a gateway error into the S3 error a client sees.
pub fn to_s3(err: GatewayError) -> S3Error {
    match err {
        GatewayError::NoSuchBucket { bucket } => {
            s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist: {bucket}"
            )
        }
        GatewayError::BucketAlreadyOwnedByYou => s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        ),
        GatewayError::BucketAlreadyExists => s3_error!(
            BucketAlreadyExists,
            "The requested bucket name is not available. Please select a different name and try again."
        ),
        GatewayError::BucketNotEmpty => {
            s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            )
        }
        GatewayError::InvalidBucketName { reason } => {
            s3_error!(
                InvalidBucketName,
                "The specified bucket is not valid: {reason}"
            )
        }
        GatewayError::KeyTooLong { len } => s3_error!(
            KeyTooLongError,
            "Your key is too long: {len} bytes; the maximum is 1024"
        ),
        GatewayError::NoSuchKey {
            delete_marker_version,
        } => {
            let mut e = s3_error!(NoSuchKey, "The specified key does not exist.");
            if let Some(version) = delete_marker_version {
                add_header(&mut e, "x-amz-delete-marker", "true");
                add_header(&mut e, "x-amz-version-id", &version);
            }
            e
        }
        GatewayError::NoSuchVersion => {
            s3_error!(NoSuchVersion, "The specified version does not exist.")
        }
        GatewayError::DeleteMarkerVersion { version_id } => {
            let mut e = s3_error!(
                MethodNotAllowed,
                "The specified method is not allowed against this resource."
            );
            add_header(&mut e, "x-amz-delete-marker", "true");
            add_header(&mut e, "x-amz-version-id", &version_id);
            add_header(&mut e, "allow", "DELETE");
            e
        }
        GatewayError::NoSuchUpload => s3_error!(
            NoSuchUpload,
            "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        ),
        GatewayError::InvalidPart { part_number } => s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {part_number})"
        ),
        GatewayError::InvalidPartOrder => s3_error!(
            InvalidPartOrder,
            "The list of parts was not in ascending order. The parts list must be specified in order by part number."
        ),
        GatewayError::EntityTooSmall { part_number, size } => s3_error!(
            EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size. (part {part_number} is {size} bytes)"
        ),
        GatewayError::EntityTooLarge { max } => s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size of {max} bytes."
        ),
        GatewayError::InvalidPartNumber { part_number } => {
            // s3s has no code for it; S3 answers 416 InvalidPartNumber.
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("InvalidPartNumber".into()),
                format!("The requested partnumber is not satisfiable: {part_number}"),
            );
            e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
            e
        }
        GatewayError::PreconditionFailed { condition } => s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold ({condition})"
        ),
        GatewayError::NotModified => s3_error!(NotModified, "Not Modified"),
        GatewayError::InvalidRange { size } => {
            let mut e = s3_error!(InvalidRange, "The requested range is not satisfiable");
            add_header(&mut e, "content-range", &format!("bytes */{size}"));
            e
        }
        GatewayError::InvalidArgument { message } => s3_error!(InvalidArgument, "{message}"),
        GatewayError::InvalidRequest { message } => s3_error!(InvalidRequest, "{message}"),
        GatewayError::MalformedXml { message } => s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema: {message}"
        ),
        GatewayError::BadDigest { what } => s3_error!(
            BadDigest,
            "The {what} you specified did not match the calculated checksum."
        ),
        GatewayError::InvalidDigest { what } => {
            s3_error!(InvalidDigest, "The {what} you specified is not valid.")
        }
        GatewayError::MalformedTrailer { detail } => {
            tracing::info!(detail, "aws-chunked trailer refused");
            // s3s has no code for it; S3 answers 400 MalformedTrailerError.
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("MalformedTrailerError".into()),
                "The request contained trailing data that was not well-formed or did not conform to our published schema.",
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            e
        }
        GatewayError::IncompleteBody { expected, got } => s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header: expected {expected}, got {got}"
        ),
        GatewayError::MetadataTooLarge { size } => s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size: {size} bytes of 2048"
        ),
        GatewayError::IllegalLocationConstraint { given } => s3_error!(
            IllegalLocationConstraintException,
            "The {given} location constraint is incompatible for the region specific endpoint this request was sent to."
        ),
        GatewayError::NotImplementedHeader { header } => s3_error!(
            NotImplemented,
            "A header you provided implies functionality that is not implemented: {header}"
        ),
        GatewayError::ConditionalRequestConflict => s3_error!(
            ConditionalRequestConflict,
            "A conflicting conditional operation is currently in progress against this resource. Please try again."
        ),
        GatewayError::Meta(err) => meta_to_s3(err),
        GatewayError::Pipeline(err) => pipeline_to_s3(err),
        GatewayError::Internal { what } => internal(&what),
    }
}

fn meta_to_s3(err: MetaClientError) -> S3Error {
    match err {
        MetaClientError::Unavailable { .. } => unavailable(&err.to_string()),
        MetaClientError::Rejected { .. } | MetaClientError::Decode { .. } => {
            internal(&err.to_string())
        }
    }
}

fn pipeline_to_s3(err: PipelineError) -> S3Error {
    match err {
        PipelineError::BodyRead { ref source } if chunk_signature_mismatch(source.as_ref()) => {
            s3_error!(
                SignatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided. (aws-chunked chunk signature)"
            )
        }
        PipelineError::BodyRead { .. } => s3_error!(
            IncompleteBody,
            "The request body could not be read to its end: {err}"
        ),
        PipelineError::BodyIdle { .. } => s3_error!(
            RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period."
        ),
        PipelineError::LengthMismatch { expected, got } => {
            to_s3(GatewayError::IncompleteBody { expected, got })
        }
        PipelineError::EntityTooLarge { max } => to_s3(GatewayError::EntityTooLarge { max }),
        PipelineError::InsufficientNodes { .. }
        | PipelineError::WriteQuorumLost { .. }
        | PipelineError::ReadUnavailable { .. } => unavailable(&err.to_string()),
        PipelineError::Internal { .. } => internal(&err.to_string()),
    }
}

/// Whether a body error is s3s's aws-chunked signature mismatch. s3s keeps that error type
/// private, so it is recognised by its message anywhere in the source chain.
fn chunk_signature_mismatch(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.to_string()
            .contains("AwsChunkedStreamError: SignatureMismatch")
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn unavailable(detail: &str) -> S3Error {
    tracing::warn!(detail, "request failed: service unavailable");
    s3_error!(
        ServiceUnavailable,
        "Service is unable to handle request; please retry."
    )
}

fn internal(detail: &str) -> S3Error {
    tracing::error!(detail, "request failed: internal error");
    s3_error!(
        InternalError,
        "We encountered an internal error. Please try again."
    )
}

fn add_header(err: &mut S3Error, name: &'static str, value: &str) {
    if let Ok(value) = http::HeaderValue::from_str(value) {
        let mut headers = err.headers().cloned().unwrap_or_default();
        headers.insert(http::HeaderName::from_static(name), value);
        err.set_headers(headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                GatewayError::BadDigest {
                    what: "Content-MD5".into(),
                },
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
                GatewayError::MalformedTrailer { detail: "x".into() },
                400,
                "MalformedTrailerError",
            ),
            (GatewayError::internal("x"), 500, "InternalError"),
        ];
        for (err, status, code) in cases {
            let s3 = to_s3(err);
            assert_eq!(s3.code().as_str(), code);
            assert_eq!(
                s3.status_code().map(|s| s.as_u16()),
                Some(status),
                "status of {code}"
            );
        }
    }

    #[test]
    fn delete_marker_errors_carry_headers() {
        let s3 = to_s3(GatewayError::NoSuchKey {
            delete_marker_version: Some("v1".into()),
        });
        let headers = s3.headers().expect("headers");
        assert_eq!(headers["x-amz-delete-marker"], "true");
        assert_eq!(headers["x-amz-version-id"], "v1");
    }
}
