//! Server-side encryption as a client sees it: which `x-amz-server-side-encryption*` request
//! headers are accepted, and the header every answer about an encrypted object carries. Every
//! new object is encrypted with SSE-S3 (AES256), asked for or not, as S3 does since 2023.
//! SSE-KMS, DSSE-KMS and SSE-C are not built yet: a request for them is refused with
//! NotImplemented rather than silently stored under SSE-S3.

use s3s::dto::ServerSideEncryption;
use tessera_core::object::ObjectVersion;
use tessera_core::sealing::SealingScheme;

use crate::error::GatewayError;

/// The encryption headers of a request that creates an object (PUT, copy, multipart create).
#[derive(Clone, Copy, Debug, Default)]
pub struct SseRequest<'a> {
    /// `x-amz-server-side-encryption`.
    pub sse: Option<&'a ServerSideEncryption>,
    /// `x-amz-server-side-encryption-customer-algorithm`, `-key` or `-key-MD5` present.
    pub customer_key: bool,
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    pub kms_key_id: Option<&'a str>,
    /// `x-amz-server-side-encryption-context`.
    pub kms_context: Option<&'a str>,
}

/// Whether a request input carries any customer-key header (s3s gives each operation its own
/// input type, with the same fields).
macro_rules! customer_key {
    ($input:ident) => {
        $crate::s3::sse::any_customer_key(
            &$input.sse_customer_algorithm,
            &$input.sse_customer_key,
            &$input.sse_customer_key_md5,
        )
    };
}
pub(crate) use customer_key;

/// The [`SseRequest`] of an input that creates an object (PutObject, CopyObject,
/// CreateMultipartUpload).
macro_rules! new_object_request {
    ($input:ident) => {
        $crate::s3::sse::SseRequest {
            sse: $input.server_side_encryption.as_ref(),
            customer_key: $crate::s3::sse::customer_key!($input),
            kms_key_id: $input.ssekms_key_id.as_deref(),
            kms_context: $input.ssekms_encryption_context.as_deref(),
        }
    };
}
pub(crate) use new_object_request;

/// Checks the encryption a new object asks for: none (the default, SSE-S3) or AES256.
pub fn check_new_object(req: &SseRequest<'_>) -> Result<(), GatewayError> {
    if req.customer_key {
        return Err(GatewayError::NotImplementedHeader {
            header: "x-amz-server-side-encryption-customer-algorithm",
        });
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
    Ok(())
}

/// Refuses customer-key headers on a request about an object that was not encrypted with a
/// customer key (every object here), as S3 does.
pub fn check_no_customer_key(present: bool) -> Result<(), GatewayError> {
    if present {
        return Err(GatewayError::invalid_request(
            "The encryption parameters are not applicable to this object.",
        ));
    }
    Ok(())
}

/// Whether any of a request's customer-key headers is present.
pub fn any_customer_key<A, B, C>(
    algorithm: &Option<A>,
    key: &Option<B>,
    key_md5: &Option<C>,
) -> bool {
    algorithm.is_some() || key.is_some() || key_md5.is_some()
}

/// The `x-amz-server-side-encryption` answer for a blob sealed as `scheme`.
pub fn header_for(scheme: SealingScheme) -> Option<ServerSideEncryption> {
    match scheme {
        SealingScheme::None => None,
        SealingScheme::SseS3 => Some(ServerSideEncryption::from_static(
            ServerSideEncryption::AES256,
        )),
    }
}

/// The `x-amz-server-side-encryption` answer for a version: that of its parts (every part of
/// a version written by this build is sealed alike).
pub fn header_for_version(version: &ObjectVersion) -> Option<ServerSideEncryption> {
    version
        .parts
        .iter()
        .find_map(|p| header_for(p.blob.sealing.scheme))
}

/// The answer for a new object: SSE-S3.
pub fn sse_s3() -> Option<ServerSideEncryption> {
    header_for(SealingScheme::SseS3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(value: &'static str) -> ServerSideEncryption {
        ServerSideEncryption::from_static(value)
    }

    #[test]
    fn only_sse_s3_is_accepted_for_new_objects() {
        assert!(check_new_object(&SseRequest::default()).is_ok());
        let aes = sse("AES256");
        assert!(
            check_new_object(&SseRequest {
                sse: Some(&aes),
                ..SseRequest::default()
            })
            .is_ok()
        );
        for kms in ["aws:kms", "aws:kms:dsse"] {
            let value = sse(kms);
            let err = check_new_object(&SseRequest {
                sse: Some(&value),
                ..SseRequest::default()
            });
            assert!(
                matches!(err, Err(GatewayError::NotImplementedHeader { .. })),
                "{kms}: {err:?}"
            );
        }
        let bad = sse("AES128");
        assert!(matches!(
            check_new_object(&SseRequest {
                sse: Some(&bad),
                ..SseRequest::default()
            }),
            Err(GatewayError::InvalidArgument { .. })
        ));
        assert!(matches!(
            check_new_object(&SseRequest {
                customer_key: true,
                ..SseRequest::default()
            }),
            Err(GatewayError::NotImplementedHeader { .. })
        ));
        assert!(matches!(
            check_new_object(&SseRequest {
                sse: Some(&aes),
                kms_key_id: Some("key"),
                ..SseRequest::default()
            }),
            Err(GatewayError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn customer_keys_do_not_apply_to_objects_without_one() {
        assert!(check_no_customer_key(false).is_ok());
        assert!(matches!(
            check_no_customer_key(true),
            Err(GatewayError::InvalidRequest { .. })
        ));
        assert!(any_customer_key(
            &Some("AES256"),
            &None::<String>,
            &None::<String>
        ));
        assert!(!any_customer_key(
            &None::<String>,
            &None::<String>,
            &None::<String>
        ));
    }

    #[test]
    fn the_answer_names_aes256_for_sealed_blobs_only() {
        assert_eq!(header_for(SealingScheme::None), None);
        assert_eq!(
            header_for(SealingScheme::SseS3).map(|s| s.as_str().to_owned()),
            Some("AES256".to_owned())
        );
    }
}
