//! openraft's network over gRPC: one `PeerClient` per target, speaking `raft.v1.RaftService` on
//! the shared channel pool. Every call is bounded by openraft's time-to-live; a peer that cannot
//! be reached is reported as `Unreachable` so openraft backs off instead of spinning, and
//! snapshots travel in chunks (openraft's chunked transport over `install_snapshot`).

use std::future::Future;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tessera_proto::raft::v1::raft_service_client::RaftServiceClient;
use tonic::transport::Channel;

use crate::channels::{ChannelPool, MAX_MESSAGE_BYTES};
use crate::convert;
use crate::types::{MetaNode, TypeConfig};

/// How long openraft waits before retrying a peer it could not reach.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(250);

/// Makes a `PeerClient` per target node.
#[derive(Clone)]
pub struct NetworkFactory {
    pool: ChannelPool,
}

impl NetworkFactory {
    /// A factory over the shared channel pool.
    pub fn new(pool: ChannelPool) -> Self {
        NetworkFactory { pool }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &MetaNode) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            pool: self.pool.clone(),
        }
    }
}

/// The Raft RPC client of one peer.
pub struct PeerClient {
    target: u64,
    node: MetaNode,
    pool: ChannelPool,
}

/// Why one RPC to a peer failed, before it is mapped to openraft's error types.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("rpc failed: {0}")]
    Failed(String),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<u64, MetaNode, E> {
        match &self {
            CallError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&self)),
            CallError::Failed(_) => RPCError::Network(NetworkError::new(&self)),
        }
    }
}

impl PeerClient {
    fn client(&self) -> Result<RaftServiceClient<Channel>, CallError> {
        let channel = self
            .pool
            .get(&self.node.addr)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        Ok(RaftServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    async fn call<T, F, Fut>(&self, ttl: Duration, f: F) -> Result<T, CallError>
    where
        F: FnOnce(RaftServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client()?;
        match tokio::time::timeout(ttl, f(client)).await {
            Err(_) => Err(CallError::Failed(format!(
                "no answer from node {} within {ttl:?}",
                self.target
            ))),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                Err(CallError::Unreachable(status.message().to_owned()))
            }
            Ok(Err(status)) => Err(CallError::Failed(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }
}

fn bad_reply(e: convert::ConvertError) -> CallError {
    CallError::Failed(format!("malformed reply: {e}"))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MetaNode, RaftError<u64>>> {
        let req = convert::append_request_to_pb(&rpc);
        let resp = self
            .call(option.hard_ttl(), |mut c| async move {
                c.append_entries(req).await
            })
            .await
            .map_err(CallError::into_rpc)?;
        convert::append_response_from_pb(resp).map_err(|e| bad_reply(e).into_rpc())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, MetaNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let req = convert::install_snapshot_request_to_pb(&rpc);
        let resp = self
            .call(option.hard_ttl(), |mut c| async move {
                c.install_snapshot(req).await
            })
            .await
            .map_err(CallError::into_rpc)?;
        match convert::install_snapshot_response_from_pb(resp) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(mismatch)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)),
            ))),
            Err(e) => Err(bad_reply(e).into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MetaNode, RaftError<u64>>> {
        let req = convert::vote_request_to_pb(&rpc);
        let resp = self
            .call(option.hard_ttl(), |mut c| async move { c.vote(req).await })
            .await
            .map_err(CallError::into_rpc)?;
        convert::vote_response_from_pb(resp).map_err(|e| bad_reply(e).into_rpc())
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
