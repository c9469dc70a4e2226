//! The server side of `raft.v1.RaftService`: decodes each RPC, hands it to the local Raft node
//! and encodes the answer. A node that is shutting down answers `Unavailable`, which peers treat
//! as unreachable. `NodeStatus` answers a read index only after this node confirmed with a
//! quorum that it leads, so a peer can make its own reads linearizable against it.
//!
//! A node with an empty log (a new node, or a voter whose folder was wiped) grants no vote to
//! a candidate that has entries beyond the group's founding membership (index 0): having
//! forgotten what it accepted, it could otherwise help elect a candidate that misses committed
//! entries. It votes again once the leader has caught it up. The founding election of a new
//! group, whose candidate holds only index 0, is unaffected.

use std::time::Duration;

use openraft::ServerState;
use openraft::error::{InstallSnapshotError, RaftError};
use tessera_proto::raft::v1 as pb;
use tessera_proto::raft::v1::raft_service_server::RaftService;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::types::MetaRaft;

/// How long confirming leadership for a read index may take.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(1);

/// RaftService over one node's Raft.
pub struct RaftGrpc {
    raft: MetaRaft,
}

impl RaftGrpc {
    /// Serves `raft`.
    pub fn new(raft: MetaRaft) -> Self {
        RaftGrpc { raft }
    }
}

fn malformed(e: convert::ConvertError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn stopped<E: std::fmt::Display>(e: E) -> Status {
    Status::unavailable(format!("raft is not running: {e}"))
}

/// The role name used in status answers.
pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "unreachable",
    }
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let req = convert::append_request_from_pb(request.into_inner()).map_err(malformed)?;
        let resp = self.raft.append_entries(req).await.map_err(stopped)?;
        Ok(Response::new(convert::append_response_to_pb(&resp)))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = convert::vote_request_from_pb(request.into_inner()).map_err(malformed)?;
        let m = self.raft.metrics().borrow().clone();
        let forgot_everything =
            m.last_log_index.is_none() && m.snapshot.is_none() && m.purged.is_none();
        if forgot_everything && req.last_log_id.is_some_and(|id| id.index > 0) {
            tracing::info!(
                candidate = ?req.vote.leader_id().voted_for(),
                "vote refused: this node's log is empty until the leader catches it up"
            );
            return Ok(Response::new(pb::VoteResponse {
                vote: Some(convert::vote_to_pb(&m.vote)),
                vote_granted: false,
                last_log_id: None,
            }));
        }
        let resp = self.raft.vote(req).await.map_err(stopped)?;
        Ok(Response::new(convert::vote_response_to_pb(&resp)))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        let req =
            convert::install_snapshot_request_from_pb(request.into_inner()).map_err(malformed)?;
        match self.raft.install_snapshot(req).await {
            Ok(resp) => Ok(Response::new(convert::install_snapshot_response_to_pb(
                &resp,
            ))),
            Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))) => {
                Ok(Response::new(pb::InstallSnapshotResponse {
                    vote: None,
                    mismatch: Some(convert::snapshot_mismatch_to_pb(&m)),
                }))
            }
            Err(RaftError::Fatal(e)) => Err(stopped(e)),
        }
    }

    async fn node_status(
        &self,
        request: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        let read_index = if request.into_inner().read_index {
            match tokio::time::timeout(READ_INDEX_TIMEOUT, self.raft.ensure_linearizable()).await {
                Ok(Ok(read)) => Some(read.map_or(0, |id| id.index)),
                _ => None,
            }
        } else {
            None
        };
        let m = self.raft.metrics().borrow().clone();
        Ok(Response::new(pb::NodeStatusResponse {
            node_id: m.id,
            role: role_name(m.state).to_owned(),
            term: m.current_term,
            leader_id: m.current_leader,
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            read_index,
        }))
    }
}
