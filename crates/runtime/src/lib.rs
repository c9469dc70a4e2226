//! Process plumbing shared by every Tessera role: telemetry, shutdown, secrets and config
//! loading. No storage or protocol logic lives here.

pub mod config;
pub mod secret;
pub mod shutdown;
pub mod telemetry;

pub use secret::Secret;
pub use shutdown::Shutdown;
