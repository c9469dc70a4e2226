//! The meta clock: the state machine's own time. The leader stamps every command with its wall
//! clock (`Command.leader_time_ms`) before proposing it; applying a command moves the clock to
//! the largest stamp seen. Every time the state machine records (versions, parts, uploads,
//! buckets, garbage, leases, sessions) is this clock, never a time a command carries, so every
//! replica records the same times and leases and grace periods are judged on one timeline.
//!
//! Invariant: the clock never goes back: a stamp below it (a new leader whose wall clock is
//! behind) leaves it where it is. It lives under `c/clock` in `sm`, so snapshots carry it.

use tessera_proto::meta::v1::MetaClock;

use crate::error::StoreError;
use crate::keys;
use crate::kv::{KvRead, KvReadExt, Overlay};

/// Where the state machine stands: its last applied log index and its meta clock, read
/// together from one state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppliedClock {
    /// The last applied log index (0 before the first entry).
    pub applied_index: u64,
    /// The meta clock in ms since the Unix epoch (0 before the first stamped command).
    pub clock_ms: i64,
}

/// The meta clock in `kv` (0 before any stamped command).
pub(crate) fn read(kv: &dyn KvRead) -> Result<i64, StoreError> {
    Ok(kv
        .get_pb::<MetaClock>(keys::CLOCK, "meta clock")?
        .map_or(0, |c| c.clock_ms))
}

/// Moves the clock to `leader_time_ms` if that is later; returns the clock the command applies
/// at.
pub(crate) fn advance(overlay: &mut Overlay<'_>, leader_time_ms: i64) -> Result<i64, StoreError> {
    let current = read(overlay)?;
    if leader_time_ms <= current {
        return Ok(current);
    }
    overlay.writes_mut().put_pb(
        keys::CLOCK.to_vec(),
        &MetaClock {
            clock_ms: leader_time_ms,
        },
    );
    Ok(leader_time_ms)
}
