//! Bucket default encryption (Get/Put/DeleteBucketEncryption): what a new object that asks
//! for no encryption gets. Every bucket starts with SSE-S3, as S3 does since 2023; PUT may set
//! SSE-KMS or DSSE-KMS with a KMS key (id, alias or ARN, resolved to the key's id when set, so
//! an alias moved later does not change it; none: the default key `aws/s3`), and DELETE goes
//! back to SSE-S3. Malformed rules get MalformedXML, a key id without KMS InvalidArgument.

use s3s::dto::*;
use s3s::{S3Request, S3Response};
use tessera_core::kms;
use tessera_core::names::BucketName;
use tessera_core::object::BucketEncryption;

use super::Ops;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pipeline::{PipelineError, SealError};

type Res<T> = Result<S3Response<T>, GatewayError>;

/// The configuration a bucket answers: its default, or SSE-S3.
fn configuration(default: Option<&BucketEncryption>) -> ServerSideEncryptionConfiguration {
    let (algorithm, key, bucket_key) = match default {
        Some(d) => (
            d.algorithm.clone(),
            (!d.kms_key_id.is_empty()).then(|| d.kms_key_id.clone()),
            d.bucket_key_enabled,
        ),
        None => (ServerSideEncryption::AES256.to_owned(), None, false),
    };
    ServerSideEncryptionConfiguration {
        rules: vec![ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                sse_algorithm: ServerSideEncryption::from(algorithm),
                kms_master_key_id: key,
            }),
            bucket_key_enabled: Some(bucket_key),
        }],
    }
}

/// Checks a requested default: one rule naming AES256, aws:kms or aws:kms:dsse, a key only
/// with KMS. The key is as given (not yet resolved).
fn check_configuration(
    config: &ServerSideEncryptionConfiguration,
) -> Result<BucketEncryption, GatewayError> {
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
    let algorithm = default.sse_algorithm.as_str();
    let is_kms = match algorithm {
        ServerSideEncryption::AES256 => false,
        ServerSideEncryption::AWS_KMS | ServerSideEncryption::AWS_KMS_DSSE => true,
        _ => {
            return Err(GatewayError::MalformedXml {
                message: "SSEAlgorithm must be AES256, aws:kms or aws:kms:dsse".into(),
            });
        }
    };
    let key = default
        .kms_master_key_id
        .as_deref()
        .map(str::trim)
        .unwrap_or_default();
    if !key.is_empty() && !is_kms {
        return Err(GatewayError::invalid_argument(
            "a KMSMasterKeyID is only allowed with SSEAlgorithm aws:kms or aws:kms:dsse",
        ));
    }
    if !key.is_empty() {
        kms::KeyRef::parse(key).map_err(|e| GatewayError::invalid_argument(e.to_string()))?;
    }
    Ok(BucketEncryption {
        algorithm: algorithm.to_owned(),
        kms_key_id: key.to_owned(),
        bucket_key_enabled: is_kms && rule.bucket_key_enabled.unwrap_or(false),
    })
}

/// GetBucketEncryption.
pub async fn get_bucket_encryption(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<GetBucketEncryptionInput>,
) -> Res<GetBucketEncryptionOutput> {
    let bucket = ops.bucket(&req.input.bucket).await?;
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(configuration(bucket.encryption.as_ref())),
    }))
}

/// PutBucketEncryption: a KMS key named by alias or ARN is resolved to its id (it must
/// exist); the default key is left empty and made on first use.
pub async fn put_bucket_encryption(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<PutBucketEncryptionInput>,
) -> Res<PutBucketEncryptionOutput> {
    ops.bucket(&req.input.bucket).await?;
    let mut encryption = check_configuration(&req.input.server_side_encryption_configuration)?;
    if !encryption.kms_key_id.is_empty() {
        let answer = ops
            .meta
            .describe_kms_key(&encryption.kms_key_id, false)
            .await
            .map_err(|e| {
                GatewayError::Pipeline(PipelineError::Seal(crate::pipeline::sse::key_error(e)))
            })?;
        let record = answer.key.unwrap_or_default();
        if record.key_id.is_empty() {
            return Err(GatewayError::Pipeline(PipelineError::Seal(
                SealError::KmsRefused {
                    code: "KMS.NotFoundException".to_owned(),
                    detail: format!("Key '{}' does not exist", encryption.kms_key_id),
                },
            )));
        }
        encryption.kms_key_id = record.key_id;
    }
    let bucket = BucketName::parse(&req.input.bucket)?;
    let encryption = (encryption.algorithm != ServerSideEncryption::AES256).then_some(encryption);
    ops.meta
        .set_bucket_encryption(&bucket, encryption.as_ref())
        .await?;
    Ok(S3Response::new(PutBucketEncryptionOutput::default()))
}

/// DeleteBucketEncryption: the bucket goes back to SSE-S3, as in S3.
pub async fn delete_bucket_encryption(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> Res<DeleteBucketEncryptionOutput> {
    ops.bucket(&req.input.bucket).await?;
    let bucket = BucketName::parse(&req.input.bucket)?;
    ops.meta.set_bucket_encryption(&bucket, None).await?;
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
    fn sse_s3_and_kms_defaults_are_accepted_and_malformed_ones_refused() {
        let got = check_configuration(&configuration(None)).expect("SSE-S3");
        assert_eq!(got.algorithm, "AES256");
        assert!(check_configuration(&config("AES256", None)).is_ok());
        for algorithm in ["aws:kms", "aws:kms:dsse"] {
            let got = check_configuration(&config(algorithm, Some("alias/backups"))).expect("KMS");
            assert_eq!(got.algorithm, algorithm);
            assert_eq!(got.kms_key_id, "alias/backups");
            let default_key = check_configuration(&config(algorithm, None)).expect("aws/s3");
            assert_eq!(default_key.kms_key_id, "");
        }
        assert!(matches!(
            check_configuration(&config("aws:kms", Some("not a key"))),
            Err(GatewayError::InvalidArgument { .. })
        ));
        assert!(matches!(
            check_configuration(&config("AES128", None)),
            Err(GatewayError::MalformedXml { .. })
        ));
        assert!(matches!(
            check_configuration(&config("AES256", Some("key"))),
            Err(GatewayError::InvalidArgument { .. })
        ));
        let mut two = configuration(None);
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

    #[test]
    fn a_stored_default_is_answered_as_set() {
        let kms = BucketEncryption {
            algorithm: "aws:kms".to_owned(),
            kms_key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".to_owned(),
            bucket_key_enabled: true,
        };
        let answer = configuration(Some(&kms));
        let rule = &answer.rules[0];
        let default = rule
            .apply_server_side_encryption_by_default
            .as_ref()
            .expect("default");
        assert_eq!(default.sse_algorithm.as_str(), "aws:kms");
        assert_eq!(
            default.kms_master_key_id.as_deref(),
            Some(kms.kms_key_id.as_str())
        );
        assert_eq!(rule.bucket_key_enabled, Some(true));
        assert_eq!(check_configuration(&answer).expect("round trip"), kms);
    }
}
