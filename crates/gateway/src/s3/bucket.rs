//! Bucket operations: create (name rules enforced), head, delete (only when empty), list,
//! location and versioning.
//!
//! Invariant: a bucket's creation time is meta's clock, never the gateway's.

use super::Ops;
use super::convert::{owner, timestamp_from_ms};
use crate::context::RequestContext;
use crate::error::GatewayError;
use s3s::dto::*;
use s3s::{S3Request, S3Response};
use tessera_core::names::BucketName;
use tessera_core::object::VersioningState;

type Res<T> = Result<S3Response<T>, GatewayError>;

/// The bucket a request names; a name that is not a bucket name names none.
fn named(bucket: &str) -> Result<BucketName, GatewayError> {
    BucketName::parse(bucket).map_err(|_| GatewayError::NoSuchBucket {
        bucket: bucket.to_string(),
    })
}

/// CreateBucket.
pub async fn create_bucket(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<CreateBucketInput>,
) -> Res<CreateBucketOutput> {
    let input = req.input;
    let name = BucketName::parse(&input.bucket)?;
    if let Some(constraint) = input
        .create_bucket_configuration
        .as_ref()
        .and_then(|c| c.location_constraint.as_ref())
    {
        let given = constraint.as_str();
        let matches = given == ops.region || (given.is_empty() && ops.region == "us-east-1");
        if !matches {
            return Err(GatewayError::IllegalLocationConstraint {
                given: given.to_string(),
            });
        }
    }
    let bucket = tessera_core::object::Bucket {
        name: name.clone(),
        created_ms: 0,
        versioning: VersioningState::Unversioned,
        owner: ops.owner_id.clone(),
        region: ops.region.clone(),
        encryption: None,
    };
    ops.meta.create_bucket(&bucket).await?;
    tracing::info!(request_id = %ctx.request_id, bucket = %name, "bucket created");
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{name}")),
    }))
}

/// HeadBucket.
pub async fn head_bucket(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<HeadBucketInput>,
) -> Res<HeadBucketOutput> {
    let bucket = ops.bucket(&req.input.bucket).await?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(bucket.region),
        ..Default::default()
    }))
}

/// DeleteBucket.
pub async fn delete_bucket(
    ops: &Ops,
    ctx: &RequestContext,
    req: S3Request<DeleteBucketInput>,
) -> Res<DeleteBucketOutput> {
    let name = named(&req.input.bucket)?;
    ops.meta.delete_bucket(&name).await?;
    tracing::info!(request_id = %ctx.request_id, bucket = %name, "bucket deleted");
    Ok(S3Response::new(DeleteBucketOutput::default()))
}

/// ListBuckets, with the optional prefix and max-buckets paging.
pub async fn list_buckets(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<ListBucketsInput>,
) -> Res<ListBucketsOutput> {
    let input = req.input;
    let max = match input.max_buckets {
        Some(n) if !(1..=10_000).contains(&n) => {
            return Err(GatewayError::invalid_argument(
                "max-buckets must be between 1 and 10000",
            ));
        }
        Some(n) => usize::try_from(n).unwrap_or(10_000),
        None => 10_000,
    };
    let mut all = ops.meta.list_buckets().await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let prefix = input.prefix.clone().unwrap_or_default();
    let after = input.continuation_token.clone().unwrap_or_default();
    let mut selected: Vec<tessera_core::object::Bucket> = all
        .into_iter()
        .filter(|b| b.name.as_str().starts_with(&prefix) && b.name.as_str() > after.as_str())
        .collect();
    let truncated = selected.len() > max;
    selected.truncate(max);
    let next = if truncated {
        selected.last().map(|b| b.name.as_str().to_string())
    } else {
        None
    };
    let buckets = selected
        .into_iter()
        .map(|b| Bucket {
            bucket_region: Some(b.region),
            creation_date: Some(timestamp_from_ms(b.created_ms)),
            name: Some(b.name.as_str().to_string()),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        continuation_token: next,
        owner: Some(owner(&ops.owner_id, &ops.owner_name)),
        prefix: input.prefix,
    }))
}

/// GetBucketLocation: empty for us-east-1, as S3 answers.
pub async fn get_bucket_location(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<GetBucketLocationInput>,
) -> Res<GetBucketLocationOutput> {
    let bucket = ops.bucket(&req.input.bucket).await?;
    let constraint = if bucket.region == "us-east-1" {
        None
    } else {
        Some(BucketLocationConstraint::from(bucket.region))
    };
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint: constraint,
    }))
}

/// PutBucketVersioning: Enabled or Suspended.
pub async fn put_bucket_versioning(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<PutBucketVersioningInput>,
) -> Res<PutBucketVersioningOutput> {
    let input = req.input;
    let state = match input
        .versioning_configuration
        .status
        .as_ref()
        .map(|s| s.as_str())
    {
        Some("Enabled") => VersioningState::Enabled,
        Some("Suspended") => VersioningState::Suspended,
        _ => {
            return Err(GatewayError::MalformedXml {
                message: "Status must be Enabled or Suspended".into(),
            });
        }
    };
    let name = named(&input.bucket)?;
    ops.meta.set_bucket_versioning(&name, state).await?;
    Ok(S3Response::new(PutBucketVersioningOutput::default()))
}

/// GetBucketVersioning: no Status element until versioning was ever enabled.
pub async fn get_bucket_versioning(
    ops: &Ops,
    _ctx: &RequestContext,
    req: S3Request<GetBucketVersioningInput>,
) -> Res<GetBucketVersioningOutput> {
    let bucket = ops.bucket(&req.input.bucket).await?;
    let status = match bucket.versioning {
        VersioningState::Enabled => Some("Enabled"),
        VersioningState::Suspended => Some("Suspended"),
        VersioningState::Unversioned => None,
    };
    Ok(S3Response::new(GetBucketVersioningOutput {
        mfa_delete: None,
        status: status.map(|s| BucketVersioningStatus::from(s.to_string())),
    }))
}
