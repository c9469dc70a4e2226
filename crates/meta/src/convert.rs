//! Conversions between openraft's types and their `raft.v1` protobuf forms, used both on the
//! wire and on disk. Every conversion round-trips exactly (`to_pb` then `from_pb` gives the
//! original value); a missing required field is an error, never a default.
//!
//! Both sides are foreign types, so these are functions rather than `TryFrom` impls.

use std::collections::{BTreeMap, BTreeSet};

use openraft::entry::EntryPayload;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, SnapshotSegmentId};
use prost::Message;
use tessera_proto::meta::v1::Command;
use tessera_proto::raft::v1 as pb;

use crate::types::{
    LogEntry, LogId, Membership, MetaNode, SnapshotMeta, StoredMembership, TypeConfig, Vote,
};

/// A protobuf message that does not describe a valid Raft value.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A field Raft needs is absent.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A command payload is not a valid `meta.v1.Command`.
    #[error("command payload does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

impl ConvertError {
    /// A malformed message stays malformed; retrying never helps.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ConvertError::MissingField(_) => "convert_missing_field",
            ConvertError::Decode(_) => "convert_decode",
        }
    }
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ConvertError> {
    value.ok_or(ConvertError::MissingField(field))
}

/// A log id to its protobuf form.
pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        leader_id: Some(pb::LeaderId {
            term: id.leader_id.term,
            node_id: id.leader_id.node_id,
        }),
        index: id.index,
    }
}

/// A log id from its protobuf form.
pub fn log_id_from_pb(id: pb::LogId) -> Result<LogId, ConvertError> {
    let leader = required(id.leader_id, "log_id.leader_id")?;
    Ok(LogId::new(
        CommittedLeaderId::new(leader.term, leader.node_id),
        id.index,
    ))
}

/// An optional log id to its protobuf form.
pub fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

/// An optional log id from its protobuf form.
pub fn opt_log_id_from_pb(id: Option<pb::LogId>) -> Result<Option<LogId>, ConvertError> {
    id.map(log_id_from_pb).transpose()
}

/// A vote to its protobuf form.
pub fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote {
        leader_id: Some(pb::LeaderId {
            term: vote.leader_id.term,
            node_id: vote.leader_id.node_id,
        }),
        committed: vote.committed,
    }
}

/// A vote from its protobuf form.
pub fn vote_from_pb(vote: pb::Vote) -> Result<Vote, ConvertError> {
    let leader = required(vote.leader_id, "vote.leader_id")?;
    Ok(if vote.committed {
        Vote::new_committed(leader.term, leader.node_id)
    } else {
        Vote::new(leader.term, leader.node_id)
    })
}

/// A membership to its protobuf form.
pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|ids| pb::NodeIdSet {
                ids: ids.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, n)| {
                (
                    *id,
                    pb::MetaNode {
                        addr: n.addr.clone(),
                        zone: n.zone.clone(),
                    },
                )
            })
            .collect(),
    }
}

/// A membership from its protobuf form.
pub fn membership_from_pb(m: pb::Membership) -> Membership {
    let configs: Vec<BTreeSet<u64>> = m
        .configs
        .into_iter()
        .map(|set| set.ids.into_iter().collect())
        .collect();
    let nodes: BTreeMap<u64, MetaNode> = m
        .nodes
        .into_iter()
        .map(|(id, n)| {
            (
                id,
                MetaNode {
                    addr: n.addr,
                    zone: n.zone,
                },
            )
        })
        .collect();
    Membership::new(configs, nodes)
}

/// A stored membership to its protobuf form.
pub fn stored_membership_to_pb(m: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: opt_log_id_to_pb(m.log_id().as_ref()),
        membership: Some(membership_to_pb(m.membership())),
    }
}

/// A stored membership from its protobuf form.
pub fn stored_membership_from_pb(
    m: pb::StoredMembership,
) -> Result<StoredMembership, ConvertError> {
    Ok(StoredMembership::new(
        opt_log_id_from_pb(m.log_id)?,
        membership_from_pb(required(m.membership, "stored_membership.membership")?),
    ))
}

/// A log entry to its protobuf (and on-disk) form; commands are encoded `meta.v1.Command`s.
pub fn entry_to_pb(entry: &LogEntry) -> pb::Entry {
    let payload = match &entry.payload {
        EntryPayload::Blank => pb::entry::Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(cmd) => pb::entry::Payload::Normal(cmd.encode_to_vec()),
        EntryPayload::Membership(m) => pb::entry::Payload::Membership(membership_to_pb(m)),
    };
    pb::Entry {
        log_id: Some(log_id_to_pb(&entry.log_id)),
        payload: Some(payload),
    }
}

/// A log entry from its protobuf form.
pub fn entry_from_pb(entry: pb::Entry) -> Result<LogEntry, ConvertError> {
    let log_id = log_id_from_pb(required(entry.log_id, "entry.log_id")?)?;
    let payload = match required(entry.payload, "entry.payload")? {
        pb::entry::Payload::Blank(_) => EntryPayload::Blank,
        pb::entry::Payload::Normal(bytes) => EntryPayload::Normal(Command::decode(&bytes[..])?),
        pb::entry::Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(m)),
    };
    Ok(LogEntry { log_id, payload })
}

/// An AppendEntries request to its protobuf form.
pub fn append_request_to_pb(req: &AppendEntriesRequest<TypeConfig>) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_pb(&req.vote)),
        prev_log_id: opt_log_id_to_pb(req.prev_log_id.as_ref()),
        entries: req.entries.iter().map(entry_to_pb).collect(),
        leader_commit: opt_log_id_to_pb(req.leader_commit.as_ref()),
    }
}

/// An AppendEntries request from its protobuf form.
pub fn append_request_from_pb(
    req: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, ConvertError> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(required(req.vote, "append_entries.vote")?)?,
        prev_log_id: opt_log_id_from_pb(req.prev_log_id)?,
        entries: req
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_from_pb(req.leader_commit)?,
    })
}

/// An AppendEntries response to its protobuf form.
pub fn append_response_to_pb(resp: &AppendEntriesResponse<u64>) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match resp {
        AppendEntriesResponse::Success => R::Success(pb::Blank {}),
        AppendEntriesResponse::PartialSuccess(matching) => R::PartialSuccess(pb::PartialSuccess {
            matching: opt_log_id_to_pb(matching.as_ref()),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Blank {}),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_to_pb(v)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

/// An AppendEntries response from its protobuf form.
pub fn append_response_from_pb(
    resp: pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<u64>, ConvertError> {
    use pb::append_entries_response::Result as R;
    Ok(
        match required(resp.result, "append_entries_response.result")? {
            R::Success(_) => AppendEntriesResponse::Success,
            R::PartialSuccess(p) => {
                AppendEntriesResponse::PartialSuccess(opt_log_id_from_pb(p.matching)?)
            }
            R::Conflict(_) => AppendEntriesResponse::Conflict,
            R::HigherVote(v) => AppendEntriesResponse::HigherVote(vote_from_pb(v)?),
        },
    )
}

/// A Vote request to its protobuf form.
pub fn vote_request_to_pb(req: &VoteRequest<u64>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&req.vote)),
        last_log_id: opt_log_id_to_pb(req.last_log_id.as_ref()),
    }
}

/// A Vote request from its protobuf form.
pub fn vote_request_from_pb(req: pb::VoteRequest) -> Result<VoteRequest<u64>, ConvertError> {
    Ok(VoteRequest::new(
        vote_from_pb(required(req.vote, "vote_request.vote")?)?,
        opt_log_id_from_pb(req.last_log_id)?,
    ))
}

/// A Vote response to its protobuf form.
pub fn vote_response_to_pb(resp: &VoteResponse<u64>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_to_pb(resp.last_log_id.as_ref()),
    }
}

/// A Vote response from its protobuf form.
pub fn vote_response_from_pb(resp: pb::VoteResponse) -> Result<VoteResponse<u64>, ConvertError> {
    Ok(VoteResponse {
        vote: vote_from_pb(required(resp.vote, "vote_response.vote")?)?,
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_from_pb(resp.last_log_id)?,
    })
}

/// Snapshot metadata to its protobuf form.
pub fn snapshot_meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last_log_id: opt_log_id_to_pb(meta.last_log_id.as_ref()),
        last_membership: Some(stored_membership_to_pb(&meta.last_membership)),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

/// Snapshot metadata from its protobuf form.
pub fn snapshot_meta_from_pb(meta: pb::SnapshotMeta) -> Result<SnapshotMeta, ConvertError> {
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from_pb(meta.last_log_id)?,
        last_membership: stored_membership_from_pb(required(
            meta.last_membership,
            "snapshot_meta.last_membership",
        )?)?,
        snapshot_id: meta.snapshot_id,
    })
}

/// An InstallSnapshot chunk to its protobuf form.
pub fn install_snapshot_request_to_pb(
    req: &InstallSnapshotRequest<TypeConfig>,
) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(vote_to_pb(&req.vote)),
        meta: Some(snapshot_meta_to_pb(&req.meta)),
        offset: req.offset,
        data: req.data.clone(),
        done: req.done,
    }
}

/// An InstallSnapshot chunk from its protobuf form.
pub fn install_snapshot_request_from_pb(
    req: pb::InstallSnapshotRequest,
) -> Result<InstallSnapshotRequest<TypeConfig>, ConvertError> {
    Ok(InstallSnapshotRequest {
        vote: vote_from_pb(required(req.vote, "install_snapshot.vote")?)?,
        meta: snapshot_meta_from_pb(required(req.meta, "install_snapshot.meta")?)?,
        offset: req.offset,
        data: req.data,
        done: req.done,
    })
}

/// An InstallSnapshot response to its protobuf form.
pub fn install_snapshot_response_to_pb(
    resp: &InstallSnapshotResponse<u64>,
) -> pb::InstallSnapshotResponse {
    pb::InstallSnapshotResponse {
        vote: Some(vote_to_pb(&resp.vote)),
        mismatch: None,
    }
}

/// An InstallSnapshot response from its protobuf form: the receiver's vote, or the mismatch
/// that made it refuse the chunk.
pub fn install_snapshot_response_from_pb(
    resp: pb::InstallSnapshotResponse,
) -> Result<Result<InstallSnapshotResponse<u64>, openraft::error::SnapshotMismatch>, ConvertError> {
    if let Some(m) = resp.mismatch {
        return Ok(Err(snapshot_mismatch_from_pb(m)?));
    }
    Ok(Ok(InstallSnapshotResponse {
        vote: vote_from_pb(required(resp.vote, "install_snapshot_response.vote")?)?,
    }))
}

fn segment_to_pb(s: &SnapshotSegmentId) -> pb::SnapshotSegmentId {
    pb::SnapshotSegmentId {
        snapshot_id: s.id.clone(),
        offset: s.offset,
    }
}

fn segment_from_pb(s: pb::SnapshotSegmentId) -> SnapshotSegmentId {
    SnapshotSegmentId {
        id: s.snapshot_id,
        offset: s.offset,
    }
}

/// A snapshot mismatch to its protobuf form.
pub fn snapshot_mismatch_to_pb(m: &openraft::error::SnapshotMismatch) -> pb::SnapshotMismatch {
    pb::SnapshotMismatch {
        expect: Some(segment_to_pb(&m.expect)),
        got: Some(segment_to_pb(&m.got)),
    }
}

/// A snapshot mismatch from its protobuf form.
pub fn snapshot_mismatch_from_pb(
    m: pb::SnapshotMismatch,
) -> Result<openraft::error::SnapshotMismatch, ConvertError> {
    Ok(openraft::error::SnapshotMismatch {
        expect: segment_from_pb(required(m.expect, "snapshot_mismatch.expect")?),
        got: segment_from_pb(required(m.got, "snapshot_mismatch.got")?),
    })
}

#[cfg(test)]
#[path = "convert_test.rs"]
mod tests;
