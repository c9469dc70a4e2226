//! Server-side encryption as a client sees it: which `x-amz-server-side-encryption*` request
//! headers are accepted, and the headers every answer about an encrypted object carries. Every
//! new object is encrypted: with SSE-S3 (AES256), asked for or not, as S3 does since 2023, or
//! with SSE-C when the request carries a customer key (the three
//! `x-amz-server-side-encryption-customer-*` headers; over HTTPS only, as S3 requires, unless
//! the gateway's `sse_c_over_http` allows it for local testing). An SSE-C object is read only
//! with its key: without it 400 InvalidRequest, with another key 403 AccessDenied, both before
//! any byte is sent. SSE-KMS (`aws:kms`, with or without an S3 Bucket Key) and DSSE-KMS
//! (`aws:kms:dsse`) seal under a key of the built-in KMS; a read of such an object is refused
//! with the KMS's error while the key may not be used.

use s3s::dto::ServerSideEncryption;
use tessera_core::kms;
use tessera_core::object::{BucketEncryption, MultipartUpload, ObjectVersion, UploadKms};
use tessera_core::sealing::customer_key::{ALGORITHM, CustomerKey, CustomerKeyHeaders};
use tessera_core::sealing::{Sealing, SealingScheme};

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pipeline::{KmsTarget, PipelineError, SealError};

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
    /// `x-amz-server-side-encryption-bucket-key-enabled`.
    pub bucket_key: Option<bool>,
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
            bucket_key: $input.bucket_key_enabled,
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

/// The encryption a new object gets: a customer key (SSE-C), a KMS key (SSE-KMS, DSSE-KMS),
/// or neither (SSE-S3).
#[derive(Clone, Debug, Default)]
pub struct NewObjectSse {
    /// SSE-C's key.
    pub customer: Option<CustomerKey>,
    /// SSE-KMS's or DSSE-KMS's key and context.
    pub kms: Option<KmsTarget>,
}

/// The encryption of a new object in `bucket` (see [`new_object_sse`]), with the bucket's
/// default read from meta; a missing bucket is NoSuchBucket.
pub async fn for_new_object(
    ops: &super::Ops,
    bucket: &str,
    req: &SseRequest<'_>,
    ctx: &RequestContext,
) -> Result<NewObjectSse, GatewayError> {
    let record = ops.bucket(bucket).await?;
    new_object_sse(req, ctx, ops.sse_c_over_http, record.encryption.as_ref())
}

/// Checks the encryption a new object asks for: AES256 (SSE-S3), aws:kms (SSE-KMS),
/// aws:kms:dsse (DSSE-KMS) or a customer key (SSE-C); a request that asks for none gets its
/// bucket's default encryption (`bucket_default`), or SSE-S3. An SSE-KMS object uses an S3
/// Bucket Key if the request's `x-amz-server-side-encryption-bucket-key-enabled` says so, or,
/// without that header, if the bucket's default encryption does (as S3 decides; DSSE-KMS
/// never does).
pub fn new_object_sse(
    req: &SseRequest<'_>,
    ctx: &RequestContext,
    over_http: bool,
    bucket_default: Option<&BucketEncryption>,
) -> Result<NewObjectSse, GatewayError> {
    let customer = request_key(&req.customer, ctx, over_http)?;
    if customer.is_some() && (req.sse.is_some() || req.kms_key_id.is_some()) {
        return Err(GatewayError::invalid_argument(
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
        ));
    }
    let bucket_key = req
        .bucket_key
        .unwrap_or_else(|| bucket_default.is_some_and(|d| d.bucket_key_enabled));
    let kms_target = |dsse: bool| -> Result<KmsTarget, GatewayError> {
        let key = req.kms_key_id.unwrap_or_default().trim().to_owned();
        if !key.is_empty() {
            kms::KeyRef::parse(&key).map_err(|e| {
                GatewayError::Pipeline(PipelineError::Seal(SealError::KmsRefused {
                    code: "KMS.NotFoundException".to_owned(),
                    detail: e.to_string(),
                }))
            })?;
        }
        let context = kms::parse_context(req.kms_context).map_err(|e| {
            GatewayError::invalid_argument(format!(
                "The x-amz-server-side-encryption-context header is not valid: {e}"
            ))
        })?;
        Ok(KmsTarget {
            key,
            context,
            dsse,
            bucket_key,
        })
    };
    let kms = match req.sse.map(ServerSideEncryption::as_str) {
        None if customer.is_none() => match bucket_default {
            Some(default) if default.algorithm != ServerSideEncryption::AES256 => {
                if req.kms_key_id.is_some() || req.kms_context.is_some() {
                    return Err(kms_without_header());
                }
                Some(KmsTarget {
                    key: default.kms_key_id.clone(),
                    context: Vec::new(),
                    dsse: default.algorithm == ServerSideEncryption::AWS_KMS_DSSE,
                    bucket_key,
                })
            }
            _ => None,
        },
        None | Some(ServerSideEncryption::AES256) => None,
        Some(ServerSideEncryption::AWS_KMS) => Some(kms_target(false)?),
        Some(ServerSideEncryption::AWS_KMS_DSSE) => Some(kms_target(true)?),
        Some(_) => {
            return Err(GatewayError::invalid_argument(
                "The encryption method specified is not supported",
            ));
        }
    };
    if kms.is_none() && (req.kms_key_id.is_some() || req.kms_context.is_some()) {
        return Err(kms_without_header());
    }
    Ok(NewObjectSse { customer, kms })
}

fn kms_without_header() -> GatewayError {
    GatewayError::invalid_argument(
        "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
    )
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
        SealingScheme::SseKms | SealingScheme::SseKmsBucketKey => Some(
            ServerSideEncryption::from_static(ServerSideEncryption::AWS_KMS),
        ),
        SealingScheme::DsseKms => Some(ServerSideEncryption::from_static(
            ServerSideEncryption::AWS_KMS_DSSE,
        )),
    }
}

/// The KMS key a blob was sealed under (`x-amz-server-side-encryption-aws-kms-key-id`), if it
/// was.
pub fn kms_key_for(sealing: &Sealing) -> Option<String> {
    if !matches!(
        sealing.scheme,
        SealingScheme::SseKms | SealingScheme::DsseKms | SealingScheme::SseKmsBucketKey
    ) {
        return None;
    }
    let (name, _) = sealing.key_id.split_once('/')?;
    kms::key_id_of_kek(name).map(str::to_owned)
}

/// The KMS key of a version (that of its parts).
pub fn kms_key_for_version(version: &ObjectVersion) -> Option<String> {
    version
        .parts
        .iter()
        .find_map(|p| kms_key_for(&p.blob.sealing))
}

/// The `x-amz-server-side-encryption-context` answer for a blob sealed with a context.
pub fn kms_context_for(sealing: &Sealing) -> Option<String> {
    match sealing.scheme {
        SealingScheme::SseKms | SealingScheme::DsseKms | SealingScheme::SseKmsBucketKey => {
            kms::context_header(&sealing.parameters)
        }
        _ => None,
    }
}

/// The `x-amz-server-side-encryption-bucket-key-enabled` answer for a blob: `true` when an S3
/// Bucket Key sealed it, absent otherwise (as S3 answers).
pub fn bucket_key_for(sealing: &Sealing) -> Option<bool> {
    (sealing.scheme == SealingScheme::SseKmsBucketKey).then_some(true)
}

/// The `x-amz-server-side-encryption-bucket-key-enabled` answer for a version (that of its
/// parts).
pub fn bucket_key_for_version(version: &ObjectVersion) -> Option<bool> {
    version
        .parts
        .iter()
        .find_map(|p| bucket_key_for(&p.blob.sealing))
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

/// Resolves the KMS key a new multipart upload asks for to its id (the default key is made on
/// first use), refusing a key that may not be used now, as S3 does at CreateMultipartUpload.
pub async fn resolve_upload_kms(
    ops: &super::Ops,
    kms: KmsTarget,
) -> Result<UploadKms, GatewayError> {
    let wanted = if kms.key.is_empty() {
        kms::DEFAULT_ALIAS
    } else {
        kms.key.as_str()
    };
    let key_id = usable_kms_key(ops, wanted, wanted == kms::DEFAULT_ALIAS).await?;
    Ok(UploadKms {
        key_id,
        context: kms.context,
        dsse: kms.dsse,
        bucket_key: kms.bucket_key && !kms.dsse,
    })
}

/// The id of the KMS key `wanted` names (the default key made first if `create_default`),
/// refused with S3's KMS error if the key may not be used now.
async fn usable_kms_key(
    ops: &super::Ops,
    wanted: &str,
    create_default: bool,
) -> Result<String, GatewayError> {
    crate::pipeline::sse::usable_kms_key(&ops.meta, wanted, create_default)
        .await
        .map_err(|e| GatewayError::Pipeline(PipelineError::Seal(e)))
}

/// The KMS sealing of an upload's parts, if it has one.
pub fn upload_kms_target(upload: &MultipartUpload) -> Option<KmsTarget> {
    upload.kms.as_ref().map(|k| KmsTarget {
        key: k.key_id.clone(),
        context: k.context.clone(),
        dsse: k.dsse,
        bucket_key: k.bucket_key,
    })
}

#[cfg(test)]
#[path = "sse_test.rs"]
mod tests;
