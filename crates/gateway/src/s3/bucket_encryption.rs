//! Bucket default encryption (Get/Put/DeleteBucketEncryption). Every bucket encrypts every new
//! object with SSE-S3, as S3 does since 2023, and that is the only default this cluster offers
//! yet: GET answers it, PUT accepts exactly it (SSE-KMS and DSSE-KMS defaults are refused with
//! NotImplemented, malformed rules with MalformedXML), and DELETE leaves it in force, as in S3.

use s3s::dto::*;
use s3s::{S3Request, S3Response};

use super::Ops;
use crate::context::RequestContext;
use crate::error::GatewayError;

type Res<T> = Result<S3Response<T>, GatewayError>;

/// The configuration every bucket has: SSE-S3 by default, no bucket key (that is SSE-KMS's).
fn sse_s3_default() -> ServerSideEncryptionConfiguration {
    ServerSideEncryptionConfiguration {
        rules: vec![ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                sse_algorithm: ServerSideEncryption::from_static(ServerSideEncryption::AES256),
                kms_master_key_id: None,
            }),
            bucket_key_enabled: Some(false),
        }],
    }
}

/// Checks a requested default: one rule, SSE-S3.
fn check_configuration(config: &ServerSideEncryptionConfiguration) -> Result<(), GatewayError> {
    let [rule] = config.rules.as_slice() else {
        return Err(GatewayError::MalformedXml {
            message: "a server-side encryption configuration holds exactly one rule".into(),
        });
    };
    let Some(default) = &rule.apply_server_side_encryption_by_default else {
        return Err(GatewayError::MalformedXml {
            message: "the rule needs ApplyServerSideEncryptionByDefault".into(),
        });
    };
    match default.sse_algorithm.as_str() {
        ServerSideEncryption::AES256 => {}
        ServerSideEncryption::AWS_KMS | ServerSideEncryption::AWS_KMS_DSSE => {
            return Err(GatewayError::NotImplementedHeader {
                header: "SSEAlgorithm (aws:kms, aws:kms:dsse)",
            });
        }
        _ => {
            return Err(GatewayError::MalformedXml {
                message: "SSEAlgorithm must be AES256, aws:kms or aws:kms:dsse".into(),
            });
        }
    }
    if default.kms_master_key_id.is_some() {
        return Err(GatewayError::invalid_argument(
            "a KMSMasterKeyID is only allowed with SSEAlgorithm aws:kms or aws:kms:dsse",
        ));
    }
    Ok(())
}

/// GetBucketEncryption.
pub async fn get_bucket_encryption(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<GetBucketEncryptionInput>,
) -> Res<GetBucketEncryptionOutput> {
    ops.bucket(&req.input.bucket).await?;
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(sse_s3_default()),
    }))
}

/// PutBucketEncryption: only the SSE-S3 default, which every bucket already has.
pub async fn put_bucket_encryption(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<PutBucketEncryptionInput>,
) -> Res<PutBucketEncryptionOutput> {
    ops.bucket(&req.input.bucket).await?;
    check_configuration(&req.input.server_side_encryption_configuration)?;
    Ok(S3Response::new(PutBucketEncryptionOutput::default()))
}

/// DeleteBucketEncryption: the bucket keeps encrypting with SSE-S3, as in S3.
pub async fn delete_bucket_encryption(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> Res<DeleteBucketEncryptionOutput> {
    ops.bucket(&req.input.bucket).await?;
    Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(algorithm: &'static str, key: Option<&str>) -> ServerSideEncryptionConfiguration {
        ServerSideEncryptionConfiguration {
            rules: vec![ServerSideEncryptionRule {
                apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                    sse_algorithm: ServerSideEncryption::from_static(algorithm),
                    kms_master_key_id: key.map(str::to_owned),
                }),
                bucket_key_enabled: None,
            }],
        }
    }

    #[test]
    fn only_the_sse_s3_default_is_accepted() {
        assert!(check_configuration(&sse_s3_default()).is_ok());
        assert!(check_configuration(&config("AES256", None)).is_ok());
        for kms in ["aws:kms", "aws:kms:dsse"] {
            assert!(matches!(
                check_configuration(&config(kms, None)),
                Err(GatewayError::NotImplementedHeader { .. })
            ));
        }
        assert!(matches!(
            check_configuration(&config("AES128", None)),
            Err(GatewayError::MalformedXml { .. })
        ));
        assert!(matches!(
            check_configuration(&config("AES256", Some("key"))),
            Err(GatewayError::InvalidArgument { .. })
        ));
        let mut two = sse_s3_default();
        two.rules.push(two.rules[0].clone());
        assert!(matches!(
            check_configuration(&two),
            Err(GatewayError::MalformedXml { .. })
        ));
        let none = ServerSideEncryptionConfiguration { rules: Vec::new() };
        assert!(matches!(
            check_configuration(&none),
            Err(GatewayError::MalformedXml { .. })
        ));
    }
}
