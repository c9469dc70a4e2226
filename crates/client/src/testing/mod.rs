//! Faithful small models of the data and meta services for this crate's tests, served over
//! real gRPC on 127.0.0.1 ports from binding :0, and a TCP proxy that can cut connections.
//!
//! Invariant: a model behaves as its proto contract specifies unless a test turns on one of
//! its named faults; the real services are tested in their own crates and end to end.

pub(crate) mod data_node;
pub(crate) mod meta_node;
pub(crate) mod proxy;

use std::time::Duration;

/// Polls `check` every few milliseconds until it holds or `limit` passes; whether it held.
pub(crate) async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
