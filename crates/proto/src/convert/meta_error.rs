//! Rule errors of metadata commands on the wire (`meta.v1.MetaError`) to and from core's
//! [`MetaRuleError`].
//!
//! Invariant: every `MetaRuleError` round-trips with all its fields; the free-text message
//! carries only the text a variant holds (invalid argument, conflict, precondition), never a
//! field another side would have to parse; an unknown or unspecified code is an error, never
//! guessed.

use tessera_core::meta_error::MetaRuleError;

use super::meta::MetaConvertError;
use crate::meta::v1 as pb;

impl From<&MetaRuleError> for pb::MetaError {
    fn from(e: &MetaRuleError) -> Self {
        use pb::MetaErrorCode as C;
        // The message is for people; variants whose payload is text carry it there instead.
        let mut out = pb::MetaError {
            message: e.to_string(),
            ..pb::MetaError::default()
        };
        let code = match e {
            MetaRuleError::NoSuchBucket { bucket } => {
                out.bucket = bucket.clone();
                C::MetaErrorNoSuchBucket
            }
            MetaRuleError::BucketAlreadyOwnedByYou { bucket } => {
                out.bucket = bucket.clone();
                C::MetaErrorBucketAlreadyOwnedByYou
            }
            MetaRuleError::BucketAlreadyExists { bucket } => {
                out.bucket = bucket.clone();
                C::MetaErrorBucketAlreadyExists
            }
            MetaRuleError::BucketNotEmpty { bucket } => {
                out.bucket = bucket.clone();
                C::MetaErrorBucketNotEmpty
            }
            MetaRuleError::NoSuchKey { bucket, key } => {
                out.bucket = bucket.clone();
                out.key = key.clone();
                C::MetaErrorNoSuchKey
            }
            MetaRuleError::NoSuchVersion {
                bucket,
                key,
                version_id,
            } => {
                out.bucket = bucket.clone();
                out.key = key.clone();
                out.version_id = version_id.clone();
                C::MetaErrorNoSuchVersion
            }
            MetaRuleError::NoSuchUpload { upload_id } => {
                out.upload_id = upload_id.clone();
                C::MetaErrorNoSuchUpload
            }
            MetaRuleError::PreconditionFailed { condition } => {
                out.message = condition.clone();
                C::MetaErrorPreconditionFailed
            }
            MetaRuleError::InvalidPart { part_number, etag } => {
                out.part_number = *part_number;
                out.etag = etag.clone();
                C::MetaErrorInvalidPart
            }
            MetaRuleError::InvalidPartOrder => C::MetaErrorInvalidPartOrder,
            MetaRuleError::InvalidArgument { message } => {
                out.message = message.clone();
                C::MetaErrorInvalidArgument
            }
            MetaRuleError::ConditionalRequestConflict => C::MetaErrorConditionalRequestConflict,
            MetaRuleError::EntityTooSmall { part_number, size } => {
                out.part_number = *part_number;
                out.size = *size;
                C::MetaErrorEntityTooSmall
            }
            MetaRuleError::Conflict { message } => {
                out.message = message.clone();
                C::MetaErrorConflict
            }
            MetaRuleError::LeaseExpired { lease_id } => {
                out.lease_id = *lease_id;
                C::MetaErrorLeaseExpired
            }
            MetaRuleError::SessionExpired => C::MetaErrorSessionExpired,
        };
        out.code = code as i32;
        out
    }
}

impl TryFrom<&pb::MetaError> for MetaRuleError {
    type Error = MetaConvertError;
    /// The typed rule error; the free-text message survives only where it is the payload
    /// (invalid argument, conflict, precondition), never as a carrier of fields.
    fn try_from(e: &pb::MetaError) -> Result<Self, Self::Error> {
        use pb::MetaErrorCode as C;
        let code = C::try_from(e.code).map_err(|_| MetaConvertError::UnknownEnum {
            field: "meta error code",
            value: e.code,
        })?;
        Ok(match code {
            C::MetaErrorUnspecified => {
                return Err(MetaConvertError::UnknownEnum {
                    field: "meta error code",
                    value: e.code,
                });
            }
            C::MetaErrorNoSuchBucket => MetaRuleError::NoSuchBucket {
                bucket: e.bucket.clone(),
            },
            C::MetaErrorBucketAlreadyOwnedByYou => MetaRuleError::BucketAlreadyOwnedByYou {
                bucket: e.bucket.clone(),
            },
            C::MetaErrorBucketAlreadyExists => MetaRuleError::BucketAlreadyExists {
                bucket: e.bucket.clone(),
            },
            C::MetaErrorBucketNotEmpty => MetaRuleError::BucketNotEmpty {
                bucket: e.bucket.clone(),
            },
            C::MetaErrorNoSuchKey => MetaRuleError::NoSuchKey {
                bucket: e.bucket.clone(),
                key: e.key.clone(),
            },
            C::MetaErrorNoSuchVersion => MetaRuleError::NoSuchVersion {
                bucket: e.bucket.clone(),
                key: e.key.clone(),
                version_id: e.version_id.clone(),
            },
            C::MetaErrorNoSuchUpload => MetaRuleError::NoSuchUpload {
                upload_id: e.upload_id.clone(),
            },
            C::MetaErrorPreconditionFailed => MetaRuleError::PreconditionFailed {
                condition: e.message.clone(),
            },
            C::MetaErrorInvalidPart => MetaRuleError::InvalidPart {
                part_number: e.part_number,
                etag: e.etag.clone(),
            },
            C::MetaErrorInvalidPartOrder => MetaRuleError::InvalidPartOrder,
            C::MetaErrorInvalidArgument => MetaRuleError::InvalidArgument {
                message: e.message.clone(),
            },
            C::MetaErrorConditionalRequestConflict => MetaRuleError::ConditionalRequestConflict,
            C::MetaErrorEntityTooSmall => MetaRuleError::EntityTooSmall {
                part_number: e.part_number,
                size: e.size,
            },
            C::MetaErrorConflict => MetaRuleError::Conflict {
                message: e.message.clone(),
            },
            C::MetaErrorLeaseExpired => MetaRuleError::LeaseExpired {
                lease_id: e.lease_id,
            },
            C::MetaErrorSessionExpired => MetaRuleError::SessionExpired,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_error_round_trips_with_its_fields() {
        let all = MetaRuleError::examples();
        for e in all {
            let wire = pb::MetaError::from(&e);
            assert_eq!(MetaRuleError::try_from(&wire), Ok(e));
        }
        let unknown = pb::MetaError {
            code: 999,
            ..pb::MetaError::default()
        };
        assert!(matches!(
            MetaRuleError::try_from(&unknown),
            Err(MetaConvertError::UnknownEnum { value: 999, .. })
        ));
    }
}
