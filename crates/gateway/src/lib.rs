//! The gateway: the S3 API over HTTP. It authenticates and authorizes every request, streams
//! bodies through erasure coding to data nodes and commits manifests through meta. It keeps no
//! state of its own beyond caches.

pub mod aws_chunked;
pub mod body_guard;
pub mod config;
pub mod conn;
pub mod error;
pub mod guard;
pub mod nodes;
pub mod pipeline;
pub mod post_form;
pub mod s3;
pub mod server;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use server::run;
