//! Exactly-once commands: every command kind committed twice applies once and answers its first
//! result; expired seqs are refused; results are trimmed as the client acknowledges them and
//! capped; idle sessions are swept by the meta clock at the sweep indexes.

use tessera_core::meta_error::MetaRuleError;
use tessera_core::names::VersionId;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::{command, command_result};

use super::{MAX_RESULTS_PER_SESSION, SESSION_TTL_MS};
use crate::apply::SWEEP_INTERVAL;
use crate::keys;
use crate::kv::KvReadExt;
use crate::test_support::*;

const CLIENT: [u8; 16] = [0xc1; 16];

/// `cmd` as client `client` sends it: seq `seq`, every answer below `first_unacked` received.
fn sent(
    sim: &Sim,
    client: [u8; 16],
    seq: u64,
    first_unacked: u64,
    cmd: command::Cmd,
) -> pb::Command {
    let mut c = sim.command(cmd);
    c.session = Some(pb::CommandSession {
        client_id: client.to_vec(),
        seq,
        first_unacked,
    });
    c
}

fn session(sim: &Sim, client: [u8; 16]) -> Option<pb::ClientSession> {
    sim.kv
        .get_pb(&keys::session(&client), "session")
        .expect("read")
}

fn stored_seqs(sim: &Sim, client: [u8; 16]) -> Vec<u64> {
    let prefix = keys::session_results(&client);
    sim.kv
        .scan_pb::<pb::CommandResult>(&prefix, "result")
        .expect("scan")
        .into_iter()
        .filter_map(|(k, _)| keys::parse_session_result(&prefix, &k))
        .collect()
}

/// A client that numbers its commands and acknowledges every answer at once.
struct Client {
    id: [u8; 16],
    next_seq: u64,
}

impl Client {
    fn new(id: [u8; 16]) -> Client {
        Client { id, next_seq: 1 }
    }

    /// Sends `cmd` once, then the same command again (a retry after a lost answer, committed a
    /// second time one second later); both answers must be the first result and the retry must
    /// change no record.
    fn twice(&mut self, sim: &mut Sim, cmd: command::Cmd) -> command_result::Result {
        let seq = self.next_seq;
        self.next_seq += 1;
        let first = sent(sim, self.id, seq, seq, cmd);
        let (_, answer) = sim.apply(&first);
        let after_first = sim.records();
        sim.advance(1_000);
        let mut retry = first.clone();
        retry.leader_time_ms = sim.now_ms;
        let (_, again) = sim.apply(&retry);
        assert_eq!(again, answer, "a retry answers the first result");
        assert_eq!(sim.records(), after_first, "a retry changes nothing");
        answer
    }

    fn twice_ok(&mut self, sim: &mut Sim, cmd: command::Cmd) -> command_result::Result {
        let answer = self.twice(sim, cmd);
        if let command_result::Result::Error(e) = &answer {
            panic!("command rejected: {e:?}");
        }
        answer
    }
}

#[test]
fn every_command_kind_committed_twice_applies_once() {
    let mut sim = Sim::new();
    let mut c = Client::new(CLIENT);
    let lease = match c.twice_ok(
        &mut sim,
        command::Cmd::GrantLease(pb::GrantLease {
            holder: "gw".into(),
            duration_ms: 600_000,
        }),
    ) {
        command_result::Result::Lease(l) => l.lease_id,
        other => panic!("not a lease: {other:?}"),
    };
    c.twice_ok(
        &mut sim,
        command::Cmd::RenewLease(pb::RenewLease {
            lease_id: lease,
            duration_ms: 600_000,
        }),
    );
    c.twice_ok(&mut sim, create_bucket("bkt", "o"));
    c.twice_ok(
        &mut sim,
        versioning_cmd("bkt", pb::VersioningState::VersioningEnabled),
    );

    // Versioned PUT: one version.
    let v = stored(c.twice_ok(&mut sim, put("bkt", "k", "\"1\"", 1, lease)));
    assert_eq!(sim.versions("bkt", "k").len(), 1);
    assert_eq!(v.version_id, VersionId::from_seq(v.seq).as_str());
    // Versioned DELETE: one marker.
    let marker = deletion(c.twice_ok(&mut sim, delete("bkt", "k", None)));
    assert!(marker.delete_marker);
    assert_eq!(sim.versions("bkt", "k").len(), 2);
    c.twice_ok(&mut sim, delete("bkt", "k", Some(&marker.version_id)));

    // Multipart.
    c.twice_ok(&mut sim, create_upload("bkt", "m", "u1"));
    c.twice_ok(&mut sim, part("u1", 1, 5 * MIB, "\"p1\"", 2, lease));
    c.twice_ok(&mut sim, part("u1", 2, MIB, "\"p2\"", 3, lease));
    let made = stored(c.twice_ok(&mut sim, complete("u1", &[(1, "\"p1\""), (2, "\"p2\"")])));
    assert_eq!(sim.versions("bkt", "m").len(), 1);
    assert_eq!(made.upload_id, "u1");
    c.twice_ok(&mut sim, create_upload("bkt", "m", "u2"));
    c.twice_ok(&mut sim, abort("u2"));

    // Cluster and repair.
    c.twice_ok(
        &mut sim,
        command::Cmd::RegisterDataNode(pb::RegisterDataNode {
            node: Some(pb::DataNode {
                node_id: 4,
                zone: "z".into(),
                addr: "a:1".into(),
                ..pb::DataNode::default()
            }),
        }),
    );
    c.twice_ok(
        &mut sim,
        command::Cmd::SetDataNodeState(pb::SetDataNodeState {
            node_id: 4,
            state: pb::NodeState::Draining as i32,
        }),
    );
    c.twice_ok(
        &mut sim,
        update(1, SPREAD, &[(0, 1, 1), (1, 2, 1), (2, 4, 2)], false, lease),
    );
    let orphan = shard_ref(9, (0, 1, 1), 0);
    let granted = claimed(c.twice_ok(
        &mut sim,
        claim(
            "gc",
            tessera_core::lease::MIN_GC_GRACE_MS,
            vec![orphan.clone()],
            &[],
        ),
    ));
    assert_eq!(granted, vec![orphan.clone()]);
    c.twice_ok(&mut sim, release(&[orphan], Vec::new()));
    c.twice_ok(
        &mut sim,
        command::Cmd::PutRepairReport(pb::PutRepairReport {
            report: Some(pb::RepairReport {
                reporter: "r".into(),
                ..pb::RepairReport::default()
            }),
        }),
    );
    c.twice_ok(
        &mut sim,
        command::Cmd::ReleaseLease(pb::ReleaseLease { lease_id: lease }),
    );

    c.twice_ok(&mut sim, create_bucket("gone", "o"));
    c.twice_ok(
        &mut sim,
        command::Cmd::DeleteBucket(pb::DeleteBucket {
            name: "gone".into(),
        }),
    );
    assert!(
        crate::records::bucket(&sim.kv, "gone")
            .expect("read")
            .is_none()
    );
}

#[test]
fn a_rejected_commands_error_is_its_first_result() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    let cmd = sent(&sim, CLIENT, 1, 1, create_bucket("bkt", "o"));
    let (_, first) = sim.apply(&cmd);
    let refused = MetaRuleError::BucketAlreadyOwnedByYou {
        bucket: "bkt".into(),
    };
    assert_eq!(rule_error(first), refused);
    // Even once the rule would let it pass, the retry is not applied.
    sim.ok(command::Cmd::DeleteBucket(pb::DeleteBucket {
        name: "bkt".into(),
    }));
    let (_, again) = sim.apply(&cmd);
    assert_eq!(rule_error(again), refused);
    assert!(
        crate::records::bucket(&sim.kv, "bkt")
            .expect("read")
            .is_none()
    );
}

#[test]
fn a_conditional_put_retried_answers_success_not_precondition_failed() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    let mut c = Client::new(CLIENT);
    let mut guarded = version_with("bkt", "k", "\"e\"", inline(b"abc"));
    guarded.size = 3;
    let cmd = command::Cmd::PutVersion(pb::PutVersion {
        version: Some(guarded),
        precondition: Some(pb::WritePrecondition {
            if_none_match_any: true,
            if_match: None,
        }),
        lease_id: 0,
    });
    let answer = c.twice(&mut sim, cmd.clone());
    assert!(matches!(answer, command_result::Result::PutVersion(_)));
    // A new request (new seq) with the same condition now fails, as it must.
    let (_, fresh) = sim.apply(&sent(&sim, CLIENT, 10, 10, cmd));
    assert!(matches!(
        rule_error(fresh),
        MetaRuleError::PreconditionFailed { .. }
    ));
}

#[test]
fn a_late_retry_of_an_overwritten_put_does_not_bring_it_back() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    let put_a = sent(&sim, CLIENT, 1, 1, put_inline("bkt", "k", "\"A\""));
    let (_, first) = sim.apply(&put_a);
    let put_b = sent(&sim, CLIENT, 2, 1, put_inline("bkt", "k", "\"B\""));
    sim.apply(&put_b);
    let (_, again) = sim.apply(&put_a);
    assert_eq!(again, first);
    let current = sim.versions("bkt", "k");
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].etag, "\"B\"");
}

#[test]
fn a_seq_below_first_unacked_is_refused_as_expired_and_not_applied() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    for seq in 1..=3 {
        sim.apply(&sent(
            &sim,
            CLIENT,
            seq,
            seq,
            put_inline("bkt", &format!("k{seq}"), "\"e\""),
        ));
    }
    // The client acked 1 and 2 (first_unacked 3): their results are gone.
    assert_eq!(stored_seqs(&sim, CLIENT), [3]);
    let before = sim.records();
    let (_, result) = sim.apply(&sent(&sim, CLIENT, 1, 3, put_inline("bkt", "k9", "\"e\"")));
    assert_eq!(rule_error(result), MetaRuleError::SessionExpired);
    assert_eq!(sim.records(), before, "nothing applied, nothing stored");
    // Seq 3's result is still there for a retry.
    let (_, retried) = sim.apply(&sent(&sim, CLIENT, 3, 3, put_inline("bkt", "zz", "\"e\"")));
    assert!(
        matches!(retried, command_result::Result::PutVersion(v) if v.version.as_ref().is_some_and(|v| v.key == "k3"))
    );
}

#[test]
fn results_are_kept_while_unacknowledged_and_dropped_as_acks_arrive() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    // Seqs 1..=5 in flight together: first_unacked stays 1.
    for seq in 1..=5 {
        sim.apply(&sent(&sim, CLIENT, seq, 1, put_inline("bkt", "k", "\"e\"")));
    }
    assert_eq!(stored_seqs(&sim, CLIENT), [1, 2, 3, 4, 5]);
    // Answers 1..=3 arrived: the next command says so.
    sim.apply(&sent(&sim, CLIENT, 6, 4, put_inline("bkt", "k", "\"e\"")));
    assert_eq!(stored_seqs(&sim, CLIENT), [4, 5, 6]);
    let s = session(&sim, CLIENT).expect("session");
    assert_eq!(s.first_unacked, 4);
    assert_eq!(s.last_active_ms, sim.clock());
    // A client's word never covers the command in hand, nor lowers what it said before.
    sim.apply(&sent(&sim, CLIENT, 7, 100, put_inline("bkt", "k", "\"e\"")));
    assert_eq!(stored_seqs(&sim, CLIENT), [7]);
    sim.apply(&sent(&sim, CLIENT, 8, 1, put_inline("bkt", "k", "\"e\"")));
    assert_eq!(session(&sim, CLIENT).expect("session").first_unacked, 7);
    // Sessions of other clients are their own.
    sim.apply(&sent(&sim, [7; 16], 1, 1, put_inline("bkt", "k", "\"e\"")));
    assert_eq!(stored_seqs(&sim, [7; 16]), [1]);
    assert_eq!(stored_seqs(&sim, CLIENT), [7, 8]);
}

#[test]
fn a_session_keeps_at_most_its_last_ten_thousand_results() {
    let mut sim = Sim::new();
    let cap = MAX_RESULTS_PER_SESSION;
    // A client that never acknowledges anything.
    for seq in 1..=cap + 2 {
        let cmd = command::Cmd::ReleaseLease(pb::ReleaseLease { lease_id: seq });
        sim.apply(&sent(&sim, CLIENT, seq, 1, cmd));
    }
    let kept = stored_seqs(&sim, CLIENT);
    assert_eq!(kept.len() as u64, cap);
    assert_eq!(kept.first(), Some(&3));
    assert_eq!(kept.last(), Some(&(cap + 2)));
    // The dropped results' seqs are refused, never applied again.
    let (_, result) = sim.apply(&sent(&sim, CLIENT, 2, 1, create_bucket("bkt", "o")));
    assert_eq!(rule_error(result), MetaRuleError::SessionExpired);
    assert!(
        crate::records::bucket(&sim.kv, "bkt")
            .expect("read")
            .is_none()
    );
}

#[test]
fn malformed_sessions_are_refused_and_leave_no_trace() {
    let mut sim = Sim::new();
    let before = sim.records();
    let mut short = sent(&sim, CLIENT, 1, 1, create_bucket("bkt", "o"));
    if let Some(s) = &mut short.session {
        s.client_id.truncate(8);
    }
    assert!(matches!(
        rule_error(sim.apply(&short).1),
        MetaRuleError::InvalidArgument { .. }
    ));
    let zero = sent(&sim, CLIENT, 0, 0, create_bucket("bkt", "o"));
    assert!(matches!(
        rule_error(sim.apply(&zero).1),
        MetaRuleError::InvalidArgument { .. }
    ));
    assert_eq!(sim.records(), before);
}

#[test]
fn idle_sessions_are_swept_at_the_sweep_index_by_the_meta_clock() {
    let mut sim = Sim::new();
    let idle = [1u8; 16];
    let active = [2u8; 16];
    sim.apply(&sent(&sim, idle, 1, 1, create_bucket("bkt", "o")));
    let idle_since = sim.now_ms;
    // An hour of meta clock later, to the millisecond, the session is not idle *for more
    // than* an hour: the sweep keeps it.
    sim.now_ms = idle_since + SESSION_TTL_MS;
    while !(sim.next_index + 1).is_multiple_of(SWEEP_INTERVAL) {
        sim.apply_blank();
    }
    sim.apply(&sent(&sim, active, 1, 1, put_inline("bkt", "a", "\"e\"")));
    assert!(sim.next_index.is_multiple_of(SWEEP_INTERVAL));
    sim.apply_blank(); // the sweep index
    assert!(session(&sim, idle).is_some());
    assert_eq!(stored_seqs(&sim, idle), [1]);

    // One millisecond more, stamped by the active client's command; the sweep runs only at the
    // next multiple of the interval, and then drops the idle session and its results.
    sim.now_ms += 1;
    sim.apply(&sent(&sim, active, 2, 2, put_inline("bkt", "b", "\"e\"")));
    while !sim.next_index.is_multiple_of(SWEEP_INTERVAL) {
        sim.apply_blank();
    }
    assert!(session(&sim, idle).is_some(), "only the sweep drops");
    // The entry at the sweep index is a command: it applies, then the sweep runs.
    sim.apply(&sent(&sim, active, 3, 3, put_inline("bkt", "c", "\"e\"")));
    assert!(session(&sim, idle).is_none());
    assert!(stored_seqs(&sim, idle).is_empty());
    assert!(session(&sim, active).is_some());
    // A forgotten client's retry is applied as new: the one-hour horizon of the design.
    let (_, result) = sim.apply(&sent(&sim, idle, 1, 1, create_bucket("bkt", "o")));
    assert_eq!(
        rule_error(result),
        MetaRuleError::BucketAlreadyOwnedByYou {
            bucket: "bkt".into()
        }
    );
}
