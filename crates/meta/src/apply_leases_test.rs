//! Write leases: grant, renew, release, expiry by the meta clock, pruning, and the commits that
//! need a live one.

use tessera_core::lease::{LEASE_RETENTION_MS, MAX_LEASE_DURATION_MS, WriteLease};

use super::*;
use crate::apply::SWEEP_INTERVAL;

fn lease(sim: &Sim, id: u64) -> Option<WriteLease> {
    crate::records::lease(&sim.kv, id).expect("read")
}

fn renew(id: u64, duration_ms: u64) -> command::Cmd {
    command::Cmd::RenewLease(pb::RenewLease {
        lease_id: id,
        duration_ms,
    })
}

fn release_lease(id: u64) -> command::Cmd {
    command::Cmd::ReleaseLease(pb::ReleaseLease { lease_id: id })
}

fn expired(id: u64) -> MetaRuleError {
    MetaRuleError::LeaseExpired { lease_id: id }
}

#[test]
fn a_grant_is_named_by_its_log_index_and_capped() {
    let mut sim = Sim::new();
    sim.advance(3);
    let (index, result) = sim.run(command::Cmd::GrantLease(pb::GrantLease {
        holder: "gateway 127.0.0.1:9000".into(),
        duration_ms: 10 * MAX_LEASE_DURATION_MS,
    }));
    let granted = match result {
        command_result::Result::Lease(l) => l,
        other => panic!("not a lease: {other:?}"),
    };
    assert_eq!(granted.lease_id, index);
    assert_eq!(granted.granted_ms, T0 + 3);
    assert_eq!(
        granted.expires_ms,
        T0 + 3 + MAX_LEASE_DURATION_MS as i64,
        "capped"
    );
    assert_eq!(lease(&sim, index).map(|l| l.holder), Some(granted.holder));
    assert!(is_invalid(&sim.rejected(command::Cmd::GrantLease(
        pb::GrantLease {
            holder: "x".into(),
            duration_ms: 0
        }
    ))));
}

#[test]
fn renewal_extends_a_live_lease_and_never_revives_an_ended_one() {
    let mut sim = Sim::new();
    let id = sim.grant("repair", 10_000);
    sim.advance(9_000);
    let renewed = match sim.ok(renew(id, 10_000)) {
        command_result::Result::Lease(l) => l,
        other => panic!("not a lease: {other:?}"),
    };
    assert_eq!(renewed.expires_ms, T0 + 19_000);
    // A shorter renewal never shortens it.
    sim.ok(renew(id, 1));
    assert_eq!(lease(&sim, id).map(|l| l.expires_ms), Some(T0 + 19_000));
    // At its expiry it is no longer live: renewal fails and the record stays as it was.
    sim.now_ms = T0 + 19_000;
    assert_eq!(sim.rejected(renew(id, 10_000)), expired(id));
    assert_eq!(sim.rejected(renew(424_242, 10_000)), expired(424_242));
    assert!(is_invalid(&sim.rejected(renew(sim.lease_id, 0))));
}

#[test]
fn release_ends_a_lease_now_and_is_idempotent() {
    let mut sim = Sim::new();
    let id = sim.grant("gateway", 60_000);
    sim.advance(100);
    sim.ok(release_lease(id));
    let ended = lease(&sim, id).expect("kept");
    assert_eq!(ended.expires_ms, T0 + 100);
    assert!(!ended.is_live(sim.now_ms));
    assert_eq!(sim.rejected(renew(id, 1_000)), expired(id));
    // Releasing again, or an unknown lease, changes nothing.
    let before = sim.dump();
    sim.ok(release_lease(id));
    sim.ok(release_lease(777_777));
    assert_eq!(sim.dump(), before);
}

#[test]
fn commits_of_new_shards_are_refused_once_their_lease_ended() {
    let mut sim = Sim::new();
    let id = sim.grant("gateway", 60_000);
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(create_upload("bkt", "k", "u1"));
    sim.ok(put("bkt", "a", "\"a\"", 1, id));
    sim.ok(part("u1", 1, 5 * MIB, "\"p1\"", 2, id));
    sim.advance(60_000);
    assert_eq!(sim.rejected(put("bkt", "b", "\"b\"", 3, id)), expired(id));
    assert_eq!(
        sim.rejected(part("u1", 2, MIB, "\"p2\"", 4, id)),
        expired(id)
    );
    assert_eq!(sim.rejected(put("bkt", "b", "\"b\"", 3, 0)), expired(0));
    // Inline objects and completing an upload add no shard copies: no lease needed.
    sim.ok(put_inline("bkt", "c", "\"c\""));
    sim.ok(part_with("u1", 2, 3, "\"p2\"", inline(b"end"), 0));
    sim.ok(complete("u1", &[(1, "\"p1\""), (2, "\"p2\"")]));
}

/// A command that changes nothing but stamps the meta clock.
fn tick() -> command::Cmd {
    release_lease(0)
}

/// Applies blank entries up to and including the next sweep index.
fn through_next_sweep(sim: &mut Sim) {
    while !sim.next_index.is_multiple_of(SWEEP_INTERVAL) {
        sim.apply_blank();
    }
    sim.apply_blank();
}

#[test]
fn ended_leases_are_forgotten_by_the_sweep_after_the_retention() {
    let mut sim = Sim::new();
    let id = sim.grant("gateway", 1_000);
    let end = T0 + 1_000;
    // Just before the retention has passed, the sweep keeps the lease.
    sim.now_ms = end + LEASE_RETENTION_MS - 1;
    sim.ok(tick());
    through_next_sweep(&mut sim);
    assert!(lease(&sim, id).is_some());
    // Once it has, only the next sweep forgets it.
    sim.now_ms = end + LEASE_RETENTION_MS;
    sim.ok(tick());
    while !sim.next_index.is_multiple_of(SWEEP_INTERVAL) {
        sim.apply_blank();
    }
    assert!(lease(&sim, id).is_some(), "only the sweep forgets");
    sim.apply_blank();
    assert!(lease(&sim, id).is_none());
    // A forgotten lease counts as ended long ago: it cannot be renewed, and its orphans are
    // collectable.
    assert_eq!(sim.rejected(renew(id, 1_000)), expired(id));
    let orphan = shard_ref(5, (0, 1, 1), id);
    assert_eq!(
        claimed(sim.ok(claim(
            "gc",
            tessera_core::lease::MIN_GC_GRACE_MS,
            vec![orphan.clone()],
            &[]
        ))),
        [orphan]
    );
}
