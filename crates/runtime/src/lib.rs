//! Process plumbing shared by every Tessera role: TLS identities and the cluster CA, telemetry, shutdown, secrets, config
//! loading, the wall clock (with its skew hook for tests), background workers and their
//! registry, byte-rate limiting, data-folder locks, and Prometheus metrics with the small
//! server that exposes them.
//!
//! Invariant: no storage or protocol logic lives here, and this crate depends on no other
//! Tessera crate (scripts/check-deps enforces it): every role builds on it, it builds on none.

pub mod clock;
pub mod config;
mod cursor_file;
pub mod dirlock;
pub mod metrics;
pub mod metrics_server;
pub mod rate;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod worker;

pub use secret::Secret;
pub use shutdown::Shutdown;
