//! Write leases and the rules garbage collection must obey, judged by the meta clock.
//!
//! A writer (gateway, repair daemon) holds a live lease while it writes shards that no manifest
//! references yet; every shard records the lease it was written under, and a command that
//! commits new shard copies must name a live lease. Garbage collection may delete an orphan
//! only once its lease ended at least a grace period ago. So, judged at one point of the Raft
//! log: either the commit came first (the copy is referenced and never collected), or the claim
//! came first (the lease had ended, so the commit is refused). Either way no acknowledged write
//! names a deleted shard.
//!
//! Invariant: a lease that ended never becomes live again; every decision here depends on the
//! meta clock only, never on a node's or daemon's clock.

/// The shortest grace period garbage collection may use. A reader that fetched a manifest
/// before its blob became garbage has at least this long to finish reading.
pub const MIN_GC_GRACE_MS: u64 = 30_000;
/// The longest grace period garbage collection may use.
pub const MAX_GC_GRACE_MS: u64 = 7 * 24 * 3600 * 1000;
/// Ended leases are forgotten this long after they end (longer than any grace, so a forgotten
/// lease always counts as ended long enough ago).
pub const LEASE_RETENTION_MS: i64 = 8 * 24 * 3600 * 1000;
/// The longest a grant or renewal may extend a lease.
pub const MAX_LEASE_DURATION_MS: u64 = 10 * 60 * 1000;

/// A write lease as the state machine records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteLease {
    /// Unique: the log index of its grant.
    pub lease_id: u64,
    /// Who holds it, for operators.
    pub holder: String,
    /// Meta clock at the grant.
    pub granted_ms: i64,
    /// Live while the meta clock is below this.
    pub expires_ms: i64,
}

impl WriteLease {
    /// Whether the lease is live at meta clock `clock_ms`.
    pub fn is_live(&self, clock_ms: i64) -> bool {
        clock_ms < self.expires_ms
    }

    /// Whether the state machine may forget the lease at `clock_ms`.
    pub fn is_forgettable(&self, clock_ms: i64) -> bool {
        clock_ms.saturating_sub(self.expires_ms) >= LEASE_RETENTION_MS
    }
}

/// Why a grace period is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GraceError {
    /// Shorter than [`MIN_GC_GRACE_MS`].
    #[error("grace period {grace_ms} ms is below the minimum of {MIN_GC_GRACE_MS} ms")]
    TooShort {
        /// The grace asked for.
        grace_ms: u64,
    },
    /// Longer than [`MAX_GC_GRACE_MS`].
    #[error("grace period {grace_ms} ms is above the maximum of {MAX_GC_GRACE_MS} ms")]
    TooLong {
        /// The grace asked for.
        grace_ms: u64,
    },
}

impl GraceError {
    /// A stable identifier for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            GraceError::TooShort { .. } => "grace_too_short",
            GraceError::TooLong { .. } => "grace_too_long",
        }
    }
}

/// Checks a garbage-collection grace period against the bounds.
pub fn validate_grace(grace_ms: u64) -> Result<(), GraceError> {
    if grace_ms < MIN_GC_GRACE_MS {
        Err(GraceError::TooShort { grace_ms })
    } else if grace_ms > MAX_GC_GRACE_MS {
        Err(GraceError::TooLong { grace_ms })
    } else {
        Ok(())
    }
}

/// Whether an unreferenced shard written under `lease` (`None`: unknown to meta, so ended long
/// ago) may be deleted at meta clock `clock_ms` with grace `grace_ms`.
pub fn orphan_collectable(lease: Option<&WriteLease>, clock_ms: i64, grace_ms: u64) -> bool {
    match lease {
        None => true,
        Some(l) if l.is_live(clock_ms) => false,
        Some(l) => ended_long_enough(l.expires_ms, clock_ms, grace_ms),
    }
}

/// Whether a garbage record made at meta clock `since_ms` may be collected at `clock_ms`.
pub fn garbage_collectable(since_ms: i64, clock_ms: i64, grace_ms: u64) -> bool {
    ended_long_enough(since_ms, clock_ms, grace_ms)
}

fn ended_long_enough(at_ms: i64, clock_ms: i64, grace_ms: u64) -> bool {
    let grace = i64::try_from(grace_ms).unwrap_or(i64::MAX);
    clock_ms.saturating_sub(at_ms) >= grace
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(expires_ms: i64) -> WriteLease {
        WriteLease {
            lease_id: 7,
            holder: "gateway".into(),
            granted_ms: 0,
            expires_ms,
        }
    }

    #[test]
    fn a_lease_is_live_strictly_before_its_expiry() {
        let l = lease(1_000);
        assert!(l.is_live(999));
        assert!(!l.is_live(1_000));
        assert!(!l.is_forgettable(1_000 + LEASE_RETENTION_MS - 1));
        assert!(l.is_forgettable(1_000 + LEASE_RETENTION_MS));
    }

    #[test]
    fn orphans_wait_for_their_lease_to_end_and_the_grace_to_pass() {
        let grace = MIN_GC_GRACE_MS;
        let l = lease(100_000);
        assert!(!orphan_collectable(Some(&l), 50_000, grace), "lease live");
        assert!(!orphan_collectable(Some(&l), 100_000, grace), "just ended");
        assert!(!orphan_collectable(Some(&l), 129_999, grace));
        assert!(orphan_collectable(Some(&l), 130_000, grace));
        assert!(orphan_collectable(None, 0, grace), "unknown lease");
        assert!(!orphan_collectable(Some(&l), i64::MIN, grace));
    }

    #[test]
    fn garbage_waits_for_the_grace_by_the_meta_clock() {
        assert!(!garbage_collectable(1_000, 30_999, 30_000));
        assert!(garbage_collectable(1_000, 31_000, 30_000));
        assert!(!garbage_collectable(i64::MAX, i64::MAX - 1, 0));
    }

    #[test]
    fn grace_bounds_are_enforced() {
        assert_eq!(validate_grace(0), Err(GraceError::TooShort { grace_ms: 0 }));
        assert_eq!(validate_grace(MIN_GC_GRACE_MS), Ok(()));
        assert_eq!(validate_grace(MAX_GC_GRACE_MS), Ok(()));
        assert_eq!(
            validate_grace(MAX_GC_GRACE_MS + 1).map_err(|e| e.code()),
            Err("grace_too_long")
        );
        assert!(LEASE_RETENTION_MS > i64::try_from(MAX_GC_GRACE_MS).unwrap_or(i64::MAX));
    }
}
