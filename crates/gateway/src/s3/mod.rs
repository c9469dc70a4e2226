//! The S3 API on top of s3s. s3s types stop here: each handler turns its input into our
//! records and commands, calls meta and the blob pipeline, and maps errors in `errors`.

pub mod auth;
pub mod body;
pub mod bucket;
pub mod conditions;
pub mod convert;
pub mod copy;
pub mod errors;
pub mod list;
pub mod multipart;
pub mod object;

use crate::error::GatewayError;
use crate::pipeline::BlobStore;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use std::sync::Arc;
use tessera_client::MetaClient;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command::Cmd;
use tessera_proto::meta::v1::command_result::Result as CmdResult;

/// What every handler needs: meta, the blob pipeline and this endpoint's identity.
pub struct Ops {
    /// Metadata service.
    pub meta: MetaClient,
    /// Erasure-coded blob storage.
    pub blobs: Arc<BlobStore>,
    /// The region this endpoint serves.
    pub region: String,
    /// Canonical id of the root user (bucket owner).
    pub owner_id: String,
    /// Display name of the root user.
    pub owner_name: String,
}

impl Ops {
    /// Applies a command through Raft; a rule the command broke becomes a gateway error.
    pub async fn execute(&self, cmd: Cmd) -> Result<CmdResult, GatewayError> {
        let result = self
            .meta
            .execute(pb::Command {
                cmd: Some(cmd),
                ..pb::Command::default()
            })
            .await?;
        match result.result {
            Some(CmdResult::Error(e)) => Err(meta_error(e)),
            Some(other) => Ok(other),
            None => Err(GatewayError::internal(
                "meta returned an empty command result",
            )),
        }
    }

    /// The bucket's record, or NoSuchBucket.
    pub async fn bucket(&self, name: &str) -> Result<pb::Bucket, GatewayError> {
        self.meta
            .get_bucket(name)
            .await?
            .ok_or_else(|| GatewayError::NoSuchBucket {
                bucket: name.to_string(),
            })
    }
}

/// Maps a state-machine rejection to the S3 error it stands for.
fn meta_error(e: pb::MetaError) -> GatewayError {
    use pb::MetaErrorCode as C;
    let code = C::try_from(e.code).unwrap_or(C::MetaErrorUnspecified);
    match code {
        C::MetaErrorNoSuchBucket => GatewayError::NoSuchBucket { bucket: e.message },
        C::MetaErrorBucketAlreadyOwnedByYou => GatewayError::BucketAlreadyOwnedByYou,
        C::MetaErrorBucketAlreadyExists => GatewayError::BucketAlreadyExists,
        C::MetaErrorBucketNotEmpty => GatewayError::BucketNotEmpty,
        C::MetaErrorNoSuchKey => GatewayError::NoSuchKey {
            delete_marker_version: None,
        },
        C::MetaErrorNoSuchVersion => GatewayError::NoSuchVersion,
        C::MetaErrorNoSuchUpload => GatewayError::NoSuchUpload,
        C::MetaErrorPreconditionFailed => GatewayError::PreconditionFailed {
            condition: "If-Match or If-None-Match",
        },
        C::MetaErrorInvalidPart => GatewayError::InvalidPart {
            part_number: e
                .message
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        },
        C::MetaErrorInvalidPartOrder => GatewayError::InvalidPartOrder,
        C::MetaErrorInvalidArgument => GatewayError::InvalidArgument { message: e.message },
        C::MetaErrorConditionalRequestConflict => GatewayError::ConditionalRequestConflict,
        C::MetaErrorEntityTooSmall => GatewayError::EntityTooSmall {
            part_number: 0,
            size: 0,
        },
        // A shard of the new blob was claimed by garbage collection while the write was
        // slow to commit: nothing was stored; the client retries (503).
        C::MetaErrorConflict => GatewayError::Meta(tessera_client::MetaClientError::Unavailable {
            attempts: 1,
            last: e.message,
        }),
        C::MetaErrorLeaseExpired | C::MetaErrorSessionExpired => {
            GatewayError::Meta(tessera_client::MetaClientError::Unavailable {
                attempts: 1,
                last: e.message,
            })
        }
        C::MetaErrorUnspecified => GatewayError::internal(format!("meta error: {}", e.message)),
    }
}

/// The s3s service implementation.
#[derive(Clone)]
pub struct TesseraS3 {
    ops: Arc<Ops>,
}

impl TesseraS3 {
    /// Wraps the handlers' shared state.
    pub fn new(ops: Ops) -> Self {
        Self { ops: Arc::new(ops) }
    }
}

fn done<T>(r: Result<S3Response<T>, GatewayError>) -> S3Result<S3Response<T>> {
    r.map_err(errors::to_s3)
}

#[async_trait::async_trait]
impl S3 for TesseraS3 {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        done(bucket::create_bucket(&self.ops, req).await)
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        done(bucket::head_bucket(&self.ops, req).await)
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        done(bucket::delete_bucket(&self.ops, req).await)
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        done(bucket::list_buckets(&self.ops, req).await)
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        done(bucket::get_bucket_location(&self.ops, req).await)
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        done(bucket::put_bucket_versioning(&self.ops, req).await)
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        done(bucket::get_bucket_versioning(&self.ops, req).await)
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        done(object::put_object(&self.ops, req).await)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        done(object::get_object(&self.ops, req).await)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        done(object::head_object(&self.ops, req).await)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        done(object::delete_object(&self.ops, req).await)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        done(object::delete_objects(&self.ops, req).await)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        done(copy::copy_object(&self.ops, req).await)
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        done(list::list_objects_v2(&self.ops, req).await)
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        done(list::list_objects(&self.ops, req).await)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        done(multipart::create_multipart_upload(&self.ops, req).await)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        done(multipart::upload_part(&self.ops, req).await)
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        done(multipart::upload_part_copy(&self.ops, req).await)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        done(multipart::complete_multipart_upload(&self.ops, req).await)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        done(multipart::abort_multipart_upload(&self.ops, req).await)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        done(multipart::list_parts(&self.ops, req).await)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        done(multipart::list_multipart_uploads(&self.ops, req).await)
    }
}
