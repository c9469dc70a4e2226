//! The one place where gateway errors become S3 errors: exhaustive matches, no catch-all arm,
//! so a new failure mode (of the gateway, the pipeline, the meta client or a meta rule) cannot
//! reach a client without a decision about its status and code. Lost quorum, unavailable meta,
//! expired leases and conflicts are 503 ServiceUnavailable; what we don't understand is 500
//! InternalError, logged with the request id. Every S3 error carries the request's id.
//!
//! Invariant: a command whose outcome is unknown (no meta node answered in time, or its session
//! result expired) is answered 503 and logged as possibly applied, never as "nothing stored".

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pipeline::{BodyRejection, PipelineError, SealError};
use s3s::{S3Error, S3ErrorCode, s3_error};
use tessera_client::{CommandError, LeaseError, MetaClientError};
use tessera_core::meta_error::MetaRuleError;
use tessera_core::sealing::customer_key::CustomerKeyError;

/// Converts a gateway error into the S3 error a client sees, with the request's id.
pub fn to_s3(err: GatewayError, ctx: &RequestContext) -> S3Error {
    let mut e = map(err, ctx);
    e.set_request_id(ctx.request_id.as_str());
    e
}

fn map(err: GatewayError, ctx: &RequestContext) -> S3Error {
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
        GatewayError::InvalidDigest { what } => {
            s3_error!(InvalidDigest, "The {what} you specified is not valid.")
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
        GatewayError::CustomerKey(err) => customer_key_to_s3(err, ctx),
        GatewayError::CustomerKeyOverHttp => s3_error!(
            InvalidRequest,
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
        ),
        GatewayError::CustomerKeyRequired => customer_key_required(),
        GatewayError::Meta(err) => meta_to_s3(err, ctx),
        GatewayError::Command(CommandError::Rule(rule)) => rule_to_s3(rule, ctx),
        GatewayError::Command(CommandError::Client(err)) => command_client_to_s3(err, ctx),
        GatewayError::Lease(err) => match err {
            LeaseError::NotGranted | LeaseError::Stale { .. } => {
                unavailable(ctx, err.code(), &err.to_string())
            }
        },
        GatewayError::Pipeline(err) => pipeline_to_s3(err, ctx),
        GatewayError::Internal { what } => internal(ctx, "gateway_internal", &what),
    }
}

/// A rule the meta state machine reported (nothing was changed).
fn rule_to_s3(rule: MetaRuleError, ctx: &RequestContext) -> S3Error {
    let code = rule.code();
    match rule {
        MetaRuleError::NoSuchBucket { bucket } => map(GatewayError::NoSuchBucket { bucket }, ctx),
        MetaRuleError::BucketAlreadyOwnedByYou { .. } => {
            map(GatewayError::BucketAlreadyOwnedByYou, ctx)
        }
        MetaRuleError::BucketAlreadyExists { .. } => map(GatewayError::BucketAlreadyExists, ctx),
        MetaRuleError::BucketNotEmpty { .. } => map(GatewayError::BucketNotEmpty, ctx),
        MetaRuleError::NoSuchKey { .. } => map(
            GatewayError::NoSuchKey {
                delete_marker_version: None,
            },
            ctx,
        ),
        MetaRuleError::NoSuchVersion { .. } => map(GatewayError::NoSuchVersion, ctx),
        MetaRuleError::NoSuchUpload { .. } => map(GatewayError::NoSuchUpload, ctx),
        MetaRuleError::PreconditionFailed { condition } => s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold ({condition})"
        ),
        MetaRuleError::InvalidPart { part_number, etag } => s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {part_number}, ETag {etag})"
        ),
        MetaRuleError::InvalidPartOrder => map(GatewayError::InvalidPartOrder, ctx),
        MetaRuleError::InvalidArgument { message } => {
            map(GatewayError::InvalidArgument { message }, ctx)
        }
        MetaRuleError::ConditionalRequestConflict => {
            map(GatewayError::ConditionalRequestConflict, ctx)
        }
        MetaRuleError::EntityTooSmall { part_number, size } => {
            map(GatewayError::EntityTooSmall { part_number, size }, ctx)
        }
        // A copy of the new blob was claimed by garbage collection, or a placement changed
        // meanwhile: nothing was changed; the client retries.
        MetaRuleError::Conflict { message } => unavailable(ctx, code, &message),
        // The write's lease ended before its commit: its shards may be collected, so the
        // version was refused; the client retries.
        MetaRuleError::LeaseExpired { lease_id } => {
            unavailable(ctx, code, &format!("write lease {lease_id} is not live"))
        }
        MetaRuleError::SessionExpired => outcome_unknown(ctx, code, "command session expired"),
    }
}

/// A command that got no answer it understands: if no node answered, it may have applied.
fn command_client_to_s3(err: MetaClientError, ctx: &RequestContext) -> S3Error {
    match err {
        MetaClientError::Unavailable { .. } => outcome_unknown(ctx, err.code(), &err.to_string()),
        MetaClientError::Rejected { .. }
        | MetaClientError::Missing { .. }
        | MetaClientError::Convert { .. }
        | MetaClientError::UnexpectedOutcome { .. } => internal(ctx, err.code(), &err.to_string()),
    }
}

/// A query that failed: it changed nothing.
fn meta_to_s3(err: MetaClientError, ctx: &RequestContext) -> S3Error {
    match err {
        MetaClientError::Unavailable { .. } => unavailable(ctx, err.code(), &err.to_string()),
        MetaClientError::Rejected { .. }
        | MetaClientError::Missing { .. }
        | MetaClientError::Convert { .. }
        | MetaClientError::UnexpectedOutcome { .. } => internal(ctx, err.code(), &err.to_string()),
    }
}

fn pipeline_to_s3(err: PipelineError, ctx: &RequestContext) -> S3Error {
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
            map(GatewayError::IncompleteBody { expected, got }, ctx)
        }
        PipelineError::EntityTooLarge { max } => map(GatewayError::EntityTooLarge { max }, ctx),
        PipelineError::BodyRejected(BodyRejection::BadDigest { what }) => s3_error!(
            BadDigest,
            "The {what} you specified did not match the calculated checksum."
        ),
        PipelineError::BodyRejected(BodyRejection::MalformedTrailer { detail }) => {
            tracing::info!(request_id = %ctx.request_id, detail, "aws-chunked trailer refused");
            // s3s has no code for it; S3 answers 400 MalformedTrailerError.
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("MalformedTrailerError".into()),
                "The request contained trailing data that was not well-formed or did not conform to our published schema.",
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            e
        }
        PipelineError::InsufficientNodes { .. }
        | PipelineError::WriteQuorumLost { .. }
        | PipelineError::ReadUnavailable { .. }
        | PipelineError::Seal(SealError::KeysUnavailable { .. }) => {
            unavailable(ctx, err.code(), &err.to_string())
        }
        PipelineError::Seal(SealError::CustomerKeyMissing) => customer_key_required(),
        PipelineError::Seal(SealError::CustomerKeyMismatch) => {
            customer_key_to_s3(CustomerKeyError::WrongKey, ctx)
        }
        // S3 passes the KMS's refusal on with its code (KMS.DisabledException,
        // KMS.KMSInvalidStateException, KMS.NotFoundException) and 400.
        PipelineError::Seal(SealError::KmsRefused { code, detail }) => {
            tracing::info!(request_id = %ctx.request_id, %code, %detail, "KMS refused the key");
            let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), detail);
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            e
        }
        PipelineError::Seal(_)
        | PipelineError::ChecksumMismatch { .. }
        | PipelineError::Internal { .. } => internal(ctx, err.code(), &err.to_string()),
    }
}

/// A customer-key refusal as S3 answers it: 400 for headers that are incomplete or
/// inconsistent, 403 for a key that is not the object's.
fn customer_key_to_s3(err: CustomerKeyError, ctx: &RequestContext) -> S3Error {
    match err {
        CustomerKeyError::MissingAlgorithm
        | CustomerKeyError::MissingKey
        | CustomerKeyError::InvalidKey
        | CustomerKeyError::MissingKeyMd5
        | CustomerKeyError::KeyMd5Mismatch => {
            S3Error::with_message(S3ErrorCode::InvalidArgument, err.to_string())
        }
        CustomerKeyError::InvalidAlgorithm => {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("InvalidEncryptionAlgorithmError".into()),
                err.to_string(),
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            e
        }
        CustomerKeyError::WrongKey => s3_error!(AccessDenied, "Access Denied"),
        CustomerKeyError::MalformedCheck { .. } => {
            internal(ctx, "customer_key_check", &err.to_string())
        }
    }
}

fn customer_key_required() -> S3Error {
    s3_error!(
        InvalidRequest,
        "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
    )
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

fn service_unavailable() -> S3Error {
    s3_error!(
        ServiceUnavailable,
        "Service is unable to handle request; please retry."
    )
}

fn unavailable(ctx: &RequestContext, code: &str, detail: &str) -> S3Error {
    tracing::warn!(request_id = %ctx.request_id, code, detail, "request failed: service unavailable");
    service_unavailable()
}

/// 503 for a command that may have applied: the client retries, and the log says so.
fn outcome_unknown(ctx: &RequestContext, code: &str, detail: &str) -> S3Error {
    tracing::warn!(
        request_id = %ctx.request_id,
        code,
        detail,
        "request failed: the meta command's outcome is unknown; it may have been applied"
    );
    service_unavailable()
}

fn internal(ctx: &RequestContext, code: &str, detail: &str) -> S3Error {
    tracing::error!(request_id = %ctx.request_id, code, detail, "request failed: internal error");
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
#[path = "errors_test.rs"]
mod tests;
