//! The gateway: the S3 API over HTTP. It authenticates and authorizes every request, streams
//! bodies through sealing and erasure coding to data nodes under a write lease, and commits
//! manifests through meta. It keeps no state of its own beyond caches.
//!
//! Invariant: s3s types stay in `s3` and the HTTP front (`server`, `guard`, `body_guard`,
//! `post_form`, `conn`); the pipeline and meta speak core types only.

pub mod aws_chunked;
pub mod body_guard;
pub mod config;
pub mod conn;
pub mod context;
pub mod error;
pub mod guard;
pub mod metrics;
pub mod nodes;
pub mod pipeline;
pub mod post_form;
pub mod s3;
pub mod server;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use server::run;
