//! Authentication and the access hook. Every request passes the hook (it is always installed):
//! it completes the request's context with what s3s authenticated and routed (principal,
//! operation, bucket, key), and a request without valid SigV4 credentials is denied: nothing
//! is public by default.

use std::sync::Arc;

use s3s::S3Result;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::s3_error;
use tessera_runtime::Secret;

use crate::context::{RequestContext, RequestRoute};

/// Resolves access keys to secret keys. Today the root user is the only identity; users and
/// keys kept in meta come with the IAM work.
pub struct KeyStore {
    root_access_key: String,
    root_secret_key: Secret<String>,
}

impl KeyStore {
    /// A key store holding the root credentials.
    pub fn new(root_access_key: String, root_secret_key: Secret<String>) -> Self {
        Self {
            root_access_key,
            root_secret_key,
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyStore {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.root_access_key {
            return Ok(SecretKey::from(self.root_secret_key.expose().as_str()));
        }
        Err(s3_error!(
            InvalidAccessKeyId,
            "The AWS Access Key Id you provided does not exist in our records."
        ))
    }
}

/// Deny by default: anonymous requests are refused; an authenticated root may do anything.
/// Policies and public-access rules plug in here, reading the request's context.
pub struct AccessHook;

/// The route s3s resolved for a request.
pub fn route_of(cx: &S3AccessContext<'_>) -> RequestRoute {
    let (bucket, key) = match cx.s3_path() {
        S3Path::Root => (None, None),
        S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
        S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
    };
    RequestRoute {
        principal: cx.credentials().map(|c| c.access_key.clone()),
        operation: cx.s3_op().name().to_owned(),
        bucket,
        key,
    }
}

#[async_trait::async_trait]
impl S3Access for AccessHook {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let route = route_of(cx);
        let ctx = cx
            .extensions_mut()
            .get::<Arc<RequestContext>>()
            .cloned()
            .unwrap_or_else(|| RequestContext::new(None, false));
        ctx.set_route(route);
        match cx.credentials() {
            Some(_) => Ok(()),
            None => {
                let mut e = s3_error!(AccessDenied, "Access Denied");
                e.set_request_id(ctx.request_id.as_str());
                Err(e)
            }
        }
    }
}
