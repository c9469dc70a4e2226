//! Server-side encryption as a client sees it: which `x-amz-server-side-encryption*` request
//! headers are accepted, and the headers every answer about an encrypted object carries. Every
//! new object is encrypted: with SSE-S3 (AES256), asked for or not, as S3 does since 2023, or
//! with SSE-C when the request carries a customer key (the three
//! `x-amz-server-side-encryption-customer-*` headers; over HTTPS only, as S3 requires, unless
//! the gateway's `sse_c_over_http` allows it for local testing). An SSE-C object is read only
//! with its key: without it 400 InvalidRequest, with another key 403 AccessDenied, both before
//! any byte is sent. SSE-KMS and DSSE-KMS are not built yet: a request for them is refused with
//! NotImplemented rather than silently stored under SSE-S3.

use s3s::dto::ServerSideEncryption;
use tessera_core::object::ObjectVersion;
use tessera_core::sealing::SealingScheme;
use tessera_core::sealing::customer_key::{ALGORITHM, CustomerKey, CustomerKeyHeaders};

use crate::context::RequestContext;
use crate::error::GatewayError;

/// The encryption headers of a request that creates an object (PUT, copy, multipart create).
#[derive(Clone, Copy, Debug, Default)]
pub struct SseRequest<'a> {
    /// `x-amz-server-side-encryption`.
    pub sse: Option<&'a ServerSideEncryption>,
    /// The `x-amz-server-side-encryption-customer-*` headers.
    pub customer: CustomerKeyHeaders<'a>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    pub kms_key_id: Option<&'a str>,
    /// `x-amz-server-side-encryption-context`.
    pub kms_context: Option<&'a str>,
}

/// The customer-key headers of a request input (s3s gives each operation its own input type,
/// with the same fields).
macro_rules! customer_headers {
    ($input:ident) => {
        tessera_core::sealing::customer_key::CustomerKeyHeaders {
            algorithm: $input.sse_customer_algorithm.as_deref(),
            key: $input.sse_customer_key.as_deref(),
            key_md5: $input.sse_customer_key_md5.as_deref(),
        }
    };
}
pub(crate) use customer_headers;

/// The copy source's customer-key headers (`x-amz-copy-source-server-side-encryption-customer-*`)
/// of a CopyObject or UploadPartCopy input.
macro_rules! copy_source_headers {
    ($input:ident) => {
        tessera_core::sealing::customer_key::CustomerKeyHeaders {
            algorithm: $input.copy_source_sse_customer_algorithm.as_deref(),
            key: $input.copy_source_sse_customer_key.as_deref(),
            key_md5: $input.copy_source_sse_customer_key_md5.as_deref(),
        }
    };
}
pub(crate) use copy_source_headers;

/// The [`SseRequest`] of an input that creates an object (PutObject, CopyObject,
/// CreateMultipartUpload).
macro_rules! new_object_request {
    ($input:ident) => {
        $crate::s3::sse::SseRequest {
            sse: $input.server_side_encryption.as_ref(),
            customer: $crate::s3::sse::customer_headers!($input),
            kms_key_id: $input.ssekms_key_id.as_deref(),
            kms_context: $input.ssekms_encryption_context.as_deref(),
        }
    };
}
pub(crate) use new_object_request;

/// The customer key `headers` carry, if any: complete, consistent with its MD5, and sent over
/// TLS (or over plain HTTP when `over_http` allows it).
pub fn request_key(
    headers: &CustomerKeyHeaders<'_>,
    ctx: &RequestContext,
    over_http: bool,
) -> Result<Option<CustomerKey>, GatewayError> {
    let key = CustomerKey::parse(headers)?;
    if key.is_some() && !ctx.tls && !over_http {
        return Err(GatewayError::CustomerKeyOverHttp);
    }
    Ok(key)
}

/// Checks the encryption a new object asks for: none (the default, SSE-S3), AES256, or a
/// customer key (SSE-C), which it returns.
pub fn new_object_key(
    req: &SseRequest<'_>,
    ctx: &RequestContext,
    over_http: bool,
) -> Result<Option<CustomerKey>, GatewayError> {
    let customer = request_key(&req.customer, ctx, over_http)?;
    if customer.is_some() && (req.sse.is_some() || req.kms_key_id.is_some()) {
        return Err(GatewayError::invalid_argument(
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
        ));
    }
    match req.sse.map(ServerSideEncryption::as_str) {
        None | Some(ServerSideEncryption::AES256) => {}
        Some(ServerSideEncryption::AWS_KMS | ServerSideEncryption::AWS_KMS_DSSE) => {
            return Err(GatewayError::NotImplementedHeader {
                header: "x-amz-server-side-encryption",
            });
        }
        Some(_) => {
            return Err(GatewayError::invalid_argument(
                "The encryption method specified is not supported",
            ));
        }
    }
    if req.kms_key_id.is_some() || req.kms_context.is_some() {
        return Err(GatewayError::invalid_argument(
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
        ));
    }
    Ok(customer)
}

/// Whether a version was encrypted with a customer key (every part of a version written by
/// this build is sealed alike).
pub fn is_customer_keyed(version: &ObjectVersion) -> bool {
    version
        .parts
        .iter()
        .any(|p| p.blob.sealing.scheme == SealingScheme::SseC)
}

/// Checks the customer key a read (GET, HEAD, or a copy's source) came with against the
/// version: an SSE-C version needs its own key (checked against every part's key check, before
/// any byte is read); any other version refuses a key, as S3 does.
pub fn check_read_key(
    version: &ObjectVersion,
    key: Option<&CustomerKey>,
) -> Result<(), GatewayError> {
    if !is_customer_keyed(version) {
        return check_no_customer_key(key.is_some());
    }
    let key = key.ok_or(GatewayError::CustomerKeyRequired)?;
    for part in &version.parts {
        if part.blob.sealing.scheme == SealingScheme::SseC {
            key.verify(&part.blob.sealing.parameters)?;
        }
    }
    Ok(())
}

/// Checks the customer key an UploadPart or UploadPartCopy came with against the upload's key
/// check (empty when the upload was not created with SSE-C).
pub fn check_upload_key(check: &[u8], key: Option<&CustomerKey>) -> Result<(), GatewayError> {
    if check.is_empty() {
        return check_no_customer_key(key.is_some());
    }
    let key = key.ok_or_else(|| {
        GatewayError::invalid_request(
            "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters.",
        )
    })?;
    key.verify(check)?;
    Ok(())
}

/// Refuses customer-key headers on a request about an object that was not encrypted with a
/// customer key, as S3 does.
pub fn check_no_customer_key(present: bool) -> Result<(), GatewayError> {
    if present {
        return Err(GatewayError::invalid_request(
            "The encryption parameters are not applicable to this object.",
        ));
    }
    Ok(())
}

/// The 16 bytes behind a new blob's ETag: the body's MD5, or for SSE-C a MAC of it under the
/// customer's key (S3's SSE-C ETags are not the MD5 of the data either).
pub fn etag_md5(md5: &[u8; 16], key: Option<&CustomerKey>) -> [u8; 16] {
    match key {
        Some(key) => key.etag_digest(md5),
        None => *md5,
    }
}

/// The `x-amz-server-side-encryption` answer for a blob sealed as `scheme` (SSE-C objects
/// answer with the customer-key headers instead).
pub fn header_for(scheme: SealingScheme) -> Option<ServerSideEncryption> {
    match scheme {
        SealingScheme::None | SealingScheme::SseC => None,
        SealingScheme::SseS3 => Some(ServerSideEncryption::from_static(
            ServerSideEncryption::AES256,
        )),
    }
}

/// The `x-amz-server-side-encryption` answer for a version: that of its parts.
pub fn header_for_version(version: &ObjectVersion) -> Option<ServerSideEncryption> {
    version
        .parts
        .iter()
        .find_map(|p| header_for(p.blob.sealing.scheme))
}

/// The answer for a new object without a customer key: SSE-S3.
pub fn sse_s3() -> Option<ServerSideEncryption> {
    header_for(SealingScheme::SseS3)
}

/// The `x-amz-server-side-encryption-customer-algorithm` and `-key-MD5` answers for a request
/// made with `key`.
pub fn customer_answer(key: Option<&CustomerKey>) -> (Option<String>, Option<String>) {
    match key {
        Some(key) => (Some(ALGORITHM.to_owned()), Some(key.key_md5().to_owned())),
        None => (None, None),
    }
}

#[cfg(test)]
#[path = "sse_test.rs"]
mod tests;
