//! PutObject, DeleteObject and DeleteObjects (GET and HEAD are in `read`, CopyObject in
//! `copy`). A version becomes visible only when its manifest is committed through Raft, which
//! happens after the blob pipeline made its shards durable and checked the body's digests.
//!
//! Invariant: times shown in responses are the ones meta recorded; the gateway's own clock is
//! never written into a record.

use super::Ops;
use super::body::{BodySpec, ChecksumHeaders};
use super::convert::{self, ChecksumFields};
use super::sse;
use super::store::{
    VersionFields, check_key, checksum_record, commit_version, single_part_version, store_body,
    visible_version_id, write_precondition,
};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pipeline::SealTarget;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use tessera_client::meta::DeleteOutcome;
use tessera_core::names::{BucketName, VersionId};

type Res<T> = Result<S3Response<T>, GatewayError>;

/// PutObject.
pub async fn put_object(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<PutObjectInput>,
) -> Res<PutObjectOutput> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let bucket = BucketName::parse(&input.bucket).map_err(|_| GatewayError::NoSuchBucket {
        bucket: input.bucket.clone(),
    })?;
    let key = check_key(&input.key)?;
    let sse_request = sse::new_object_request!(input);
    let user_metadata = convert::user_metadata(input.metadata)?;
    let precondition = write_precondition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let spec = BodySpec::from_request(
        &headers,
        input.content_length,
        input.content_md5.as_deref(),
        &ChecksumHeaders {
            algorithm: input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_string()),
            crc32: input.checksum_crc32,
            crc32c: input.checksum_crc32c,
            crc64nvme: input.checksum_crc64nvme,
            sha1: input.checksum_sha1,
            sha256: input.checksum_sha256,
        },
    )?;
    // Fail fast, before reading a body that could never be stored.
    let sse::NewObjectSse { customer, kms } =
        sse::for_new_object(ops, bucket.as_str(), &sse_request, ctx).await?;

    let target = SealTarget::new(bucket.as_str(), key.as_str(), 1)
        .with_customer_key(customer.clone())
        .with_kms(kms);
    let stored = store_body(ops, input.body, &spec, trailing_headers, None, target).await?;
    let checksum = checksum_record(spec.algorithm, &stored.digest);
    let size = stored.written.blob.size;
    let version = single_part_version(
        VersionFields {
            bucket: bucket.clone(),
            key: key.clone(),
            headers: convert::content_headers(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
            ),
            user_metadata,
            storage_class: input
                .storage_class
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        },
        stored.written.blob.clone(),
        &sse::etag_md5(&stored.written.digests.md5, customer.as_ref()),
        checksum,
    );
    let sealing = &stored.written.blob.sealing;
    let encryption = sse::header_for(sealing.scheme);
    let ssekms_key_id = sse::kms_key_for(sealing);
    let ssekms_encryption_context = sse::kms_context_for(sealing);
    let bucket_key_enabled = sse::bucket_key_for(sealing);
    let (sse_customer_algorithm, sse_customer_key_md5) = sse::customer_answer(customer.as_ref());
    let committed = commit_version(ops, ctx, version, precondition, stored).await?;
    tracing::debug!(
        request_id = %ctx.request_id,
        bucket = %bucket,
        key = %key,
        version_id = %committed.version_id,
        size,
        "object stored"
    );

    let mut out = PutObjectOutput {
        server_side_encryption: encryption,
        ssekms_key_id,
        ssekms_encryption_context,
        bucket_key_enabled,
        sse_customer_algorithm,
        sse_customer_key_md5,
        e_tag: Some(convert::etag(&committed.etag)),
        version_id: visible_version_id(&committed.version_id),
        ..Default::default()
    };
    if spec.requested {
        let fields = ChecksumFields::from_stored(&committed.checksums);
        out.checksum_crc32 = fields.crc32;
        out.checksum_crc32c = fields.crc32c;
        out.checksum_crc64nvme = fields.crc64nvme;
        out.checksum_sha1 = fields.sha1;
        out.checksum_sha256 = fields.sha256;
        out.checksum_type = fields.checksum_type;
    }
    Ok(S3Response::new(out))
}

/// Deletes one key (or one version) and reports what S3 reports.
async fn delete_one(
    ops: &Ops,
    ctx: &RequestContext,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<DeleteOutcome, GatewayError> {
    let key = check_key(key)?;
    let version_id = version_id.map(VersionId::parse).transpose()?;
    let bucket = BucketName::parse(bucket).map_err(|_| GatewayError::NoSuchBucket {
        bucket: bucket.to_string(),
    })?;
    let outcome = ops
        .meta
        .delete_object(&bucket, &key, version_id.as_ref())
        .await;
    match outcome {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            if e.is_outcome_unknown() {
                tracing::warn!(request_id = %ctx.request_id, bucket = %bucket, key = %key, code = e.code(), "delete outcome unknown; it may have been applied");
            }
            Err(e.into())
        }
    }
}

/// The version id a delete reports: the one removed or the marker added, else the one asked
/// for.
fn deleted_version_id(outcome: &DeleteOutcome, asked: Option<&String>) -> Option<String> {
    outcome
        .version_id
        .as_ref()
        .map(|v| v.as_str().to_string())
        .or_else(|| asked.cloned())
}

/// DeleteObject.
pub async fn delete_object(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<DeleteObjectInput>,
) -> Res<DeleteObjectOutput> {
    let input = req.input;
    let r = delete_one(
        ops,
        ctx,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
    )
    .await?;
    let out = DeleteObjectOutput {
        delete_marker: r.delete_marker.then_some(true),
        version_id: if r.delete_marker || input.version_id.is_some() {
            deleted_version_id(&r, input.version_id.as_ref())
        } else {
            None
        },
        ..Default::default()
    };
    Ok(S3Response::new(out))
}

/// DeleteObjects: up to 1000 keys; in quiet mode only failures are listed.
pub async fn delete_objects(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<DeleteObjectsInput>,
) -> Res<DeleteObjectsOutput> {
    let input = req.input;
    let objects = input.delete.objects;
    if objects.is_empty() || objects.len() > 1000 {
        return Err(GatewayError::MalformedXml {
            message: "a Delete request names between 1 and 1000 objects".into(),
        });
    }
    ops.bucket(&input.bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for obj in objects {
        match delete_one(ops, ctx, &input.bucket, &obj.key, obj.version_id.as_deref()).await {
            Ok(r) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        delete_marker: r.delete_marker.then_some(true),
                        delete_marker_version_id: r
                            .delete_marker
                            .then(|| deleted_version_id(&r, None))
                            .flatten(),
                        key: Some(obj.key),
                        version_id: obj.version_id,
                    });
                }
            }
            Err(e) => {
                let s3 = super::errors::to_s3(e, ctx);
                errors.push(Error {
                    code: Some(s3.code().as_str().to_string()),
                    key: Some(obj.key),
                    message: s3.message().map(str::to_string),
                    version_id: obj.version_id,
                });
            }
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}
