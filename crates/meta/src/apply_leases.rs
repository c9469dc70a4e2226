//! Write leases in the state machine: granted, renewed and released by commands, judged by the
//! meta clock. A lease's id is the log index of its grant, so ids are unique and never reused.
//! Invariants: no grant or renewal reaches more than `MAX_LEASE_DURATION_MS` past the clock; a
//! lease that ended never becomes live again (renewal of an ended or unknown lease fails with
//! LEASE_EXPIRED and release only moves the end earlier); an ended lease is forgotten only once
//! `WriteLease::is_forgettable`, after which it counts as "ended long ago", which it did.

use tessera_core::lease::{MAX_LEASE_DURATION_MS, WriteLease};
use tessera_core::meta_error::MetaRuleError;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command_result;

use super::{Applier, Fail, invalid, ok};
use crate::error::StoreError;
use crate::keys;
use crate::kv::{KvReadExt, Overlay};
use crate::records;

/// The end of a lease asked to last `duration_ms` from `clock_ms` (capped).
fn expiry(clock_ms: i64, duration_ms: u64) -> Result<i64, Fail> {
    if duration_ms == 0 {
        return Err(invalid("a lease duration must be at least 1 ms"));
    }
    let capped = duration_ms.min(MAX_LEASE_DURATION_MS);
    Ok(clock_ms.saturating_add(i64::try_from(capped).unwrap_or(i64::MAX)))
}

fn lease_result(lease: &WriteLease) -> command_result::Result {
    command_result::Result::Lease(lease.into())
}

impl Applier<'_> {
    /// Fails with LEASE_EXPIRED unless lease `lease_id` is live at the meta clock.
    pub(super) fn require_live_lease(&self, lease_id: u64) -> Result<(), Fail> {
        match records::lease(self.kv, lease_id)? {
            Some(lease) if lease.is_live(self.clock_ms) => Ok(()),
            _ => Err(Fail::Rule(MetaRuleError::LeaseExpired { lease_id })),
        }
    }

    fn put_lease(&mut self, lease: &WriteLease) {
        self.writes
            .put_pb(keys::lease(lease.lease_id), &pb::WriteLease::from(lease));
    }

    pub(super) fn grant_lease(
        &mut self,
        c: &pb::GrantLease,
    ) -> Result<command_result::Result, Fail> {
        let lease = WriteLease {
            lease_id: self.index,
            holder: c.holder.clone(),
            granted_ms: self.clock_ms,
            expires_ms: expiry(self.clock_ms, c.duration_ms)?,
        };
        self.put_lease(&lease);
        Ok(lease_result(&lease))
    }

    pub(super) fn renew_lease(
        &mut self,
        c: &pb::RenewLease,
    ) -> Result<command_result::Result, Fail> {
        let Some(mut lease) =
            records::lease(self.kv, c.lease_id)?.filter(|l| l.is_live(self.clock_ms))
        else {
            return Err(Fail::Rule(MetaRuleError::LeaseExpired {
                lease_id: c.lease_id,
            }));
        };
        lease.expires_ms = lease.expires_ms.max(expiry(self.clock_ms, c.duration_ms)?);
        self.put_lease(&lease);
        Ok(lease_result(&lease))
    }

    /// Ends the lease now; releasing an ended or unknown lease changes nothing.
    pub(super) fn release_lease(
        &mut self,
        c: &pb::ReleaseLease,
    ) -> Result<command_result::Result, Fail> {
        if let Some(mut lease) = records::lease(self.kv, c.lease_id)?
            && lease.is_live(self.clock_ms)
        {
            lease.expires_ms = self.clock_ms;
            self.put_lease(&lease);
        }
        Ok(ok())
    }
}

/// Forgets every lease `WriteLease::is_forgettable` at `clock_ms`; returns how many.
pub(super) fn prune_forgotten(
    overlay: &mut Overlay<'_>,
    clock_ms: i64,
) -> Result<usize, StoreError> {
    let forgotten: Vec<Vec<u8>> = overlay
        .scan_pb::<pb::WriteLease>(keys::LEASE_PREFIX, "write lease")?
        .into_iter()
        .filter(|(_, l)| WriteLease::from(l).is_forgettable(clock_ms))
        .map(|(key, _)| key)
        .collect();
    let count = forgotten.len();
    for key in forgotten {
        overlay.writes_mut().delete(key);
    }
    Ok(count)
}
