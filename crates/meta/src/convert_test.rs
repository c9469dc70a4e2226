//! Round trips of every Raft conversion.

use super::*;
use openraft::error::SnapshotMismatch;
use tessera_proto::meta::v1::{self as meta, command};

fn lid(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn membership() -> Membership {
    let nodes: BTreeMap<u64, MetaNode> = (1..=3)
        .map(|i| {
            (
                i,
                MetaNode {
                    addr: format!("10.0.0.{i}:7001"),
                    zone: format!("z{i}"),
                },
            )
        })
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn command() -> Command {
    Command {
        cmd: Some(command::Cmd::DeleteBucket(meta::DeleteBucket {
            name: "photos".into(),
        })),
        ..Command::default()
    }
}

#[test]
fn log_ids_and_votes_round_trip() {
    let id = lid(3, 2, 77);
    assert_eq!(log_id_from_pb(log_id_to_pb(&id)).expect("log id"), id);
    for vote in [Vote::new(4, 1), Vote::new_committed(9, 3)] {
        assert_eq!(vote_from_pb(vote_to_pb(&vote)).expect("vote"), vote);
    }
    assert_eq!(
        opt_log_id_from_pb(opt_log_id_to_pb(None)).expect("none"),
        None
    );
}

#[test]
fn memberships_round_trip() {
    let m = membership();
    assert_eq!(membership_from_pb(membership_to_pb(&m)), m);
    let joint = Membership::new(
        vec![BTreeSet::from([1, 2]), BTreeSet::from([2, 3])],
        membership()
            .nodes()
            .map(|(i, n)| (*i, n.clone()))
            .collect::<BTreeMap<_, _>>(),
    );
    assert_eq!(membership_from_pb(membership_to_pb(&joint)), joint);
    let stored = StoredMembership::new(Some(lid(1, 1, 0)), m);
    let back = stored_membership_from_pb(stored_membership_to_pb(&stored)).expect("stored");
    assert_eq!(back, stored);
}

#[test]
fn entries_of_every_kind_round_trip() {
    let entries = [
        LogEntry {
            log_id: lid(1, 1, 1),
            payload: EntryPayload::Blank,
        },
        LogEntry {
            log_id: lid(1, 1, 2),
            payload: EntryPayload::Normal(command()),
        },
        LogEntry {
            log_id: lid(2, 3, 3),
            payload: EntryPayload::Membership(membership()),
        },
    ];
    for e in entries {
        let encoded = entry_to_pb(&e).encode_to_vec();
        let decoded = pb::Entry::decode(&encoded[..]).expect("decode");
        assert_eq!(entry_from_pb(decoded).expect("entry"), e);
    }
}

#[test]
fn a_garbled_command_payload_is_an_error() {
    let e = pb::Entry {
        log_id: Some(log_id_to_pb(&lid(1, 1, 1))),
        payload: Some(pb::entry::Payload::Normal(vec![0xff, 0xff, 0xff])),
    };
    assert!(matches!(entry_from_pb(e), Err(ConvertError::Decode(_))));
    let e = pb::Entry {
        log_id: None,
        payload: None,
    };
    assert!(matches!(
        entry_from_pb(e),
        Err(ConvertError::MissingField("entry.log_id"))
    ));
}

#[test]
fn append_entries_round_trips() {
    let req = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(5, 1),
        prev_log_id: Some(lid(4, 1, 10)),
        entries: vec![LogEntry {
            log_id: lid(5, 1, 11),
            payload: EntryPayload::Normal(command()),
        }],
        leader_commit: Some(lid(4, 1, 9)),
    };
    let back = append_request_from_pb(append_request_to_pb(&req)).expect("request");
    assert_eq!(back.vote, req.vote);
    assert_eq!(back.prev_log_id, req.prev_log_id);
    assert_eq!(back.entries, req.entries);
    assert_eq!(back.leader_commit, req.leader_commit);

    for resp in [
        AppendEntriesResponse::Success,
        AppendEntriesResponse::PartialSuccess(Some(lid(1, 1, 3))),
        AppendEntriesResponse::PartialSuccess(None),
        AppendEntriesResponse::Conflict,
        AppendEntriesResponse::HigherVote(Vote::new(7, 2)),
    ] {
        assert_eq!(
            append_response_from_pb(append_response_to_pb(&resp)).expect("response"),
            resp
        );
    }
}

#[test]
fn votes_round_trip() {
    let req = VoteRequest::new(Vote::new(3, 2), Some(lid(2, 1, 40)));
    assert_eq!(
        vote_request_from_pb(vote_request_to_pb(&req)).expect("request"),
        req
    );
    let resp = VoteResponse {
        vote: Vote::new(3, 2),
        vote_granted: true,
        last_log_id: None,
    };
    assert_eq!(
        vote_response_from_pb(vote_response_to_pb(&resp)).expect("response"),
        resp
    );
}

#[test]
fn snapshot_messages_round_trip() {
    let meta = SnapshotMeta {
        last_log_id: Some(lid(2, 1, 100)),
        last_membership: StoredMembership::new(Some(lid(1, 1, 1)), membership()),
        snapshot_id: "2-1-100-7".into(),
    };
    let req = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        meta: meta.clone(),
        offset: 4096,
        data: vec![1, 2, 3],
        done: false,
    };
    let back =
        install_snapshot_request_from_pb(install_snapshot_request_to_pb(&req)).expect("request");
    assert_eq!(back, req);

    let resp = InstallSnapshotResponse {
        vote: Vote::new(2, 1),
    };
    let back = install_snapshot_response_from_pb(install_snapshot_response_to_pb(&resp))
        .expect("response");
    assert_eq!(back, Ok(resp));

    let mismatch = SnapshotMismatch {
        expect: SnapshotSegmentId {
            id: "a".into(),
            offset: 0,
        },
        got: SnapshotSegmentId {
            id: "a".into(),
            offset: 10,
        },
    };
    let wire = pb::InstallSnapshotResponse {
        vote: None,
        mismatch: Some(snapshot_mismatch_to_pb(&mismatch)),
    };
    assert_eq!(
        install_snapshot_response_from_pb(wire).expect("mismatch"),
        Err(mismatch)
    );
}
