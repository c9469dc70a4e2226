//! The S3 API on top of s3s. s3s types stop here: each handler receives the request's
//! [`RequestContext`], turns its input into core records and typed meta commands, calls meta
//! and the blob pipeline, and maps errors in `errors`.
//!
//! Invariant: every handler runs with the context the server made for its request, and every
//! error it returns leaves through `errors::to_s3` with that context's request id.

pub mod auth;
pub mod body;
pub mod bucket;
pub mod bucket_encryption;
pub mod complete;
pub mod conditions;
pub mod convert;
pub mod copy;
pub mod errors;
pub mod list;
pub mod multipart;
pub mod object;
pub mod read;
pub mod sse;
pub mod store;

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::metrics::GatewayMetrics;
use crate::pipeline::BlobStore;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use std::sync::Arc;
use tessera_client::{LeaseGuard, LeaseHandle, MetaClient};
use tessera_core::names::BucketName;

/// What every handler needs: meta, the blob pipeline, write leases, metrics and this
/// endpoint's identity.
pub struct Ops {
    /// Metadata service.
    pub meta: MetaClient,
    /// Erasure-coded blob storage.
    pub blobs: Arc<BlobStore>,
    /// The write leases erasure-coded writes hold.
    pub leases: LeaseHandle,
    /// The gateway's metrics.
    pub metrics: Arc<GatewayMetrics>,
    /// The region this endpoint serves.
    pub region: String,
    /// Canonical id of the root user (bucket owner).
    pub owner_id: String,
    /// Display name of the root user.
    pub owner_name: String,
    /// Take customer keys (SSE-C) over plain HTTP too (local testing only; S3 refuses them).
    pub sse_c_over_http: bool,
}

impl Ops {
    /// The bucket's record, or NoSuchBucket (a name that is not a bucket name names none).
    pub async fn bucket(&self, name: &str) -> Result<tessera_core::object::Bucket, GatewayError> {
        let no_such_bucket = || GatewayError::NoSuchBucket {
            bucket: name.to_string(),
        };
        let parsed = BucketName::parse(name).map_err(|_| no_such_bucket())?;
        self.meta
            .get_bucket(&parsed)
            .await?
            .ok_or_else(no_such_bucket)
    }

    /// The write lease a body of `expected_len` bytes needs, taken before its body is read:
    /// none for a body that will be stored inline; an error (503) when no lease is held.
    pub fn write_lease(
        &self,
        expected_len: Option<u64>,
    ) -> Result<Option<LeaseGuard>, GatewayError> {
        if expected_len.is_some_and(|len| len <= self.blobs.config().inline_threshold) {
            return Ok(None);
        }
        Ok(Some(self.leases.acquire()?))
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

fn done<T>(
    ctx: &RequestContext,
    r: Result<S3Response<T>, GatewayError>,
) -> S3Result<S3Response<T>> {
    r.map_err(|e| errors::to_s3(e, ctx))
}

/// Implements S3 trait methods by handing each request, with its context, to its handler.
macro_rules! handlers {
    ($($method:ident: $input:ident => $output:ident = $handler:path;)*) => {
        #[async_trait::async_trait]
        impl S3 for TesseraS3 {
            $(
                async fn $method(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    let ctx = RequestContext::of(&req.extensions);
                    done(&ctx, $handler(&self.ops, &ctx, req).await)
                }
            )*
        }
    };
}

handlers! {
    create_bucket: CreateBucketInput => CreateBucketOutput = bucket::create_bucket;
    head_bucket: HeadBucketInput => HeadBucketOutput = bucket::head_bucket;
    delete_bucket: DeleteBucketInput => DeleteBucketOutput = bucket::delete_bucket;
    list_buckets: ListBucketsInput => ListBucketsOutput = bucket::list_buckets;
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput = bucket::get_bucket_location;
    put_bucket_versioning: PutBucketVersioningInput => PutBucketVersioningOutput = bucket::put_bucket_versioning;
    get_bucket_versioning: GetBucketVersioningInput => GetBucketVersioningOutput = bucket::get_bucket_versioning;
    get_bucket_encryption: GetBucketEncryptionInput => GetBucketEncryptionOutput = bucket_encryption::get_bucket_encryption;
    put_bucket_encryption: PutBucketEncryptionInput => PutBucketEncryptionOutput = bucket_encryption::put_bucket_encryption;
    delete_bucket_encryption: DeleteBucketEncryptionInput => DeleteBucketEncryptionOutput = bucket_encryption::delete_bucket_encryption;
    put_object: PutObjectInput => PutObjectOutput = object::put_object;
    get_object: GetObjectInput => GetObjectOutput = read::get_object;
    head_object: HeadObjectInput => HeadObjectOutput = read::head_object;
    delete_object: DeleteObjectInput => DeleteObjectOutput = object::delete_object;
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput = object::delete_objects;
    copy_object: CopyObjectInput => CopyObjectOutput = copy::copy_object;
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output = list::list_objects_v2;
    list_objects: ListObjectsInput => ListObjectsOutput = list::list_objects;
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput = multipart::create_multipart_upload;
    upload_part: UploadPartInput => UploadPartOutput = multipart::upload_part;
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput = multipart::upload_part_copy;
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput = complete::complete_multipart_upload;
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput = multipart::abort_multipart_upload;
    list_parts: ListPartsInput => ListPartsOutput = multipart::list_parts;
    list_multipart_uploads: ListMultipartUploadsInput => ListMultipartUploadsOutput = multipart::list_multipart_uploads;
}
