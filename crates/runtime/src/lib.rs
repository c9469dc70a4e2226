//! Process plumbing shared by every Tessera role: telemetry, shutdown, secrets, config
//! loading and the wall clock. No storage or protocol logic lives here.

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
pub mod worker;

pub use secret::Secret;
pub use shutdown::Shutdown;
