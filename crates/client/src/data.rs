//! The client of data nodes: delete, stat (and verify), ping, shard listings and the
//! scrubber's controls, over a pool of lazily connected gRPC channels, one per node address.
//! Shard streams are opened through [`crate::shard`] (the one writer and the one verifying
//! reader every caller uses).
//!
//! Invariant: every failure is classified once, here, into a [`DataClientError`] whose
//! `is_retryable()` says whether the node may answer differently later (unreachable, timed
//! out) and whose `blames_node()` says whether the node, rather than the shard asked for, is in
//! trouble. Every shard is named with its generation, so no call can reach another write of the
//! same shard. The client never commits a write on the caller's behalf.

use std::collections::HashMap;
use std::error::Error as _;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tessera_core::blob::{Generation, ShardCopy, ShardRef};
use tessera_core::names::{DataId, NodeId};
use tessera_core::shard_file::ShardDigest;
use tessera_proto::convert::data::{data_id, generation};
use tessera_proto::data::v1 as pb;
use tessera_proto::data::v1::data_service_client::DataServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::debug;

/// How long opening a connection to a data node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a ping may take before the node counts as unavailable.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a delete or stat may take before the node counts as unavailable.
pub const UNARY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a verifying stat may take: the node reads and hashes the whole shard.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a whole shard listing may take (a node may hold hundreds of thousands of shards).
pub const LIST_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest gRPC message sent or accepted; a chunk message must fit (chunks are at most 4 MiB).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// HTTP/2 flow-control windows: h2's default 64 KiB per stream would cap a stream of 1 MiB
/// chunks at 64 KiB per round trip; these bound the memory a read stream can hold in flight.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// HTTP/2 keepalive: how often an idle connection is pinged, and how long the answer may take.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One stored copy of one shard as a data node names it: shard `shard_index` of blob
/// `data_id`, written as `generation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId {
    /// The blob.
    pub data_id: DataId,
    /// Which of the blob's n shards.
    pub shard_index: u32,
    /// The write that made the file.
    pub generation: Generation,
}

impl ShardId {
    /// The id of a shard write.
    pub fn new(data_id: DataId, shard_index: u32, generation: Generation) -> ShardId {
        ShardId {
            data_id,
            shard_index,
            generation,
        }
    }

    /// The id of a placed copy of blob `data_id`.
    pub fn of_copy(data_id: DataId, copy: &ShardCopy) -> ShardId {
        ShardId::new(data_id, copy.shard_index, copy.generation)
    }

    /// The copy this id names on `node`.
    pub fn copy_on(&self, node: NodeId) -> ShardCopy {
        ShardCopy {
            shard_index: self.shard_index,
            node,
            generation: self.generation,
        }
    }

    /// The wire form.
    pub fn to_pb(&self) -> pb::ShardId {
        tessera_proto::convert::data::shard_id(self.data_id, self.shard_index, self.generation)
    }

    /// The id a wire shard id names; `None` for a malformed data id or a zero generation.
    pub fn from_pb(id: &pb::ShardId) -> Option<ShardId> {
        Some(ShardId {
            data_id: data_id(&id.data_id).ok()?,
            shard_index: id.shard_index,
            generation: generation(id).ok()?,
        })
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.data_id, self.shard_index, self.generation
        )
    }
}

/// One shard file a node lists, as its header and footer describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedShard {
    /// The copy.
    pub id: ShardId,
    /// The write lease its writer held (0: none).
    pub lease_id: u64,
    /// Chunks stored.
    pub chunks: u64,
    /// File size on disk.
    pub bytes: u64,
    /// The stored digest of its hash table.
    pub digest: ShardDigest,
}

impl ListedShard {
    /// The exact copy this file is on `node`, as garbage collection claims it.
    pub fn shard_ref(&self, node: NodeId) -> ShardRef {
        ShardRef {
            data_id: self.id.data_id,
            copy: self.id.copy_on(node),
            lease_id: self.lease_id,
        }
    }
}

/// What a node says of one stored shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStat {
    /// The copy asked for.
    pub id: ShardId,
    /// k of its blob's layout, from the header.
    pub data_shards: u32,
    /// m of its blob's layout.
    pub parity_shards: u32,
    /// Bytes of every chunk.
    pub chunk_size: u32,
    /// The write lease its writer held (0: none).
    pub lease_id: u64,
    /// Chunks stored.
    pub chunks: u64,
    /// The file's path on the node (for operators).
    pub path: String,
    /// With verification: chunks that failed their hash (0 without).
    pub corrupt_chunks: u64,
    /// The stored digest of its hash table (checked against the table when verifying).
    pub digest: ShardDigest,
}

/// A data-node call that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DataClientError {
    /// The node could not be reached, timed out, or the call was cut off; it may answer later.
    #[error("data node {addr} unavailable: {message}")]
    Unavailable {
        /// The node's address.
        addr: String,
        /// What happened.
        message: String,
    },
    /// The node does not hold the shard (NOT_FOUND).
    #[error("shard not found on data node {addr}: {message}")]
    NotFound {
        /// The node's address.
        addr: String,
        /// The node's explanation.
        message: String,
    },
    /// The node holds the shard but its file is damaged (DATA_LOSS).
    #[error("shard corrupt on data node {addr}: {message}")]
    Corrupt {
        /// The node's address.
        addr: String,
        /// The node's explanation.
        message: String,
    },
    /// The shard id (generation included) is already stored (ALREADY_EXISTS): a write never
    /// replaces a file.
    #[error("shard already stored on data node {addr}: {message}")]
    AlreadyExists {
        /// The node's address.
        addr: String,
        /// The node's explanation.
        message: String,
    },
    /// The node refused the request as malformed or inconsistent (INVALID_ARGUMENT,
    /// OUT_OF_RANGE, FAILED_PRECONDITION): chunks out of order, a hash or digest that does not
    /// match, a range beyond the shard.
    #[error("data node {addr} refused the request ({code:?}): {message}")]
    InvalidArgument {
        /// The node's address.
        addr: String,
        /// The gRPC status code.
        code: Code,
        /// The node's explanation.
        message: String,
    },
    /// The node failed on its side (INTERNAL, RESOURCE_EXHAUSTED, UNIMPLEMENTED, ...): a disk
    /// error, a full disk, an older node.
    #[error("data node {addr} failed ({code:?}): {message}")]
    NodeFailure {
        /// The node's address.
        addr: String,
        /// The gRPC status code.
        code: Code,
        /// The node's explanation.
        message: String,
    },
    /// The node's answer lacks a field or carries a malformed one.
    #[error("malformed answer from data node {addr}: {field}")]
    Malformed {
        /// The node's address.
        addr: String,
        /// The field.
        field: &'static str,
    },
    /// The address is not a valid `host:port`.
    #[error("invalid data node address {addr:?}: {message}")]
    InvalidAddress {
        /// The address given.
        addr: String,
        /// Why it is invalid.
        message: String,
    },
}

impl DataClientError {
    /// Whether the same call to the same node may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::NotFound { .. }
            | Self::Corrupt { .. }
            | Self::AlreadyExists { .. }
            | Self::InvalidArgument { .. }
            | Self::NodeFailure { .. }
            | Self::Malformed { .. }
            | Self::InvalidAddress { .. } => false,
        }
    }

    /// Whether the node, rather than the one shard asked for, is in trouble: unreachable,
    /// failing on its side, answering nonsense, or unaddressable.
    pub fn blames_node(&self) -> bool {
        match self {
            Self::Unavailable { .. }
            | Self::NodeFailure { .. }
            | Self::Malformed { .. }
            | Self::InvalidAddress { .. } => true,
            Self::NotFound { .. }
            | Self::Corrupt { .. }
            | Self::AlreadyExists { .. }
            | Self::InvalidArgument { .. } => false,
        }
    }

    /// A stable name for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "data_unavailable",
            Self::NotFound { .. } => "shard_not_found",
            Self::Corrupt { .. } => "shard_corrupt",
            Self::AlreadyExists { .. } => "shard_already_exists",
            Self::InvalidArgument { .. } => "data_invalid_argument",
            Self::NodeFailure { .. } => "data_node_failure",
            Self::Malformed { .. } => "data_malformed_answer",
            Self::InvalidAddress { .. } => "data_invalid_address",
        }
    }

    /// The address of the node the error came from.
    pub fn addr(&self) -> &str {
        match self {
            Self::Unavailable { addr, .. }
            | Self::NotFound { addr, .. }
            | Self::Corrupt { addr, .. }
            | Self::AlreadyExists { addr, .. }
            | Self::InvalidArgument { addr, .. }
            | Self::NodeFailure { addr, .. }
            | Self::Malformed { addr, .. }
            | Self::InvalidAddress { addr, .. } => addr,
        }
    }

    /// Classifies a gRPC status received from (or on the way to) the node at `addr`.
    pub fn from_status(addr: &str, status: &Status) -> Self {
        let addr = addr.to_owned();
        let message = status.message().to_owned();
        // A status with a source error was made locally from a transport failure (a reset
        // stream, a dropped connection); one decoded from the node's trailers has none.
        let local_transport_failure =
            status.source().is_some() && matches!(status.code(), Code::Internal | Code::Unknown);
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                Self::Unavailable { addr, message }
            }
            _ if local_transport_failure => Self::Unavailable { addr, message },
            Code::NotFound => Self::NotFound { addr, message },
            Code::DataLoss => Self::Corrupt { addr, message },
            Code::AlreadyExists => Self::AlreadyExists { addr, message },
            code @ (Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition) => {
                Self::InvalidArgument {
                    addr,
                    code,
                    message,
                }
            }
            code @ (Code::Ok
            | Code::Unknown
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Unimplemented
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Aborted) => Self::NodeFailure {
                addr,
                code,
                message,
            },
        }
    }

    fn malformed(addr: &str, field: &'static str) -> Self {
        Self::Malformed {
            addr: addr.to_owned(),
            field,
        }
    }
}

/// A pool of channels to data nodes; cheap to clone, all clones share the pool.
#[derive(Clone, Debug, Default)]
pub struct DataClient {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Option<crate::tls::ClusterTls>,
}

fn digest_of(addr: &str, bytes: &[u8]) -> Result<ShardDigest, DataClientError> {
    ShardDigest::try_from(bytes).map_err(|_| DataClientError::malformed(addr, "digest"))
}

impl DataClient {
    /// An empty pool; channels are made on first use of each address.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty pool whose channels use mutual TLS with `tls` when given (every process of a
    /// cluster does), plain HTTP/2 when not (in-process tests).
    pub fn with_tls(tls: Option<crate::tls::ClusterTls>) -> Self {
        Self {
            channels: Arc::default(),
            tls,
        }
    }

    /// Removes exactly the copy `id` from the node at `addr`; whether it was stored.
    pub async fn delete_shard(&self, addr: &str, id: &ShardId) -> Result<bool, DataClientError> {
        let mut client = self.client(addr)?;
        let request = pb::DeleteShardRequest {
            id: Some(id.to_pb()),
        };
        let resp = with_timeout(addr, UNARY_TIMEOUT, client.delete_shard(request)).await?;
        Ok(resp.existed)
    }

    /// The header, chunk count and digest of the copy `id` on the node at `addr`, without
    /// reading its chunks.
    pub async fn stat_shard(&self, addr: &str, id: &ShardId) -> Result<ShardStat, DataClientError> {
        self.stat(addr, id, false, UNARY_TIMEOUT).await
    }

    /// As [`stat_shard`](Self::stat_shard), and the node also reads every chunk and checks the
    /// stored table against its digest, counting chunks that fail their hash in
    /// `corrupt_chunks` (it quarantines nothing).
    pub async fn verify_shard(
        &self,
        addr: &str,
        id: &ShardId,
    ) -> Result<ShardStat, DataClientError> {
        self.stat(addr, id, true, VERIFY_TIMEOUT).await
    }

    async fn stat(
        &self,
        addr: &str,
        id: &ShardId,
        verify: bool,
        limit: Duration,
    ) -> Result<ShardStat, DataClientError> {
        let mut client = self.client(addr)?;
        let request = pb::StatShardRequest {
            id: Some(id.to_pb()),
            verify,
        };
        let resp = with_timeout(addr, limit, client.stat_shard(request)).await?;
        let header = resp
            .header
            .ok_or_else(|| DataClientError::malformed(addr, "header"))?;
        Ok(ShardStat {
            id: *id,
            data_shards: header.data_shards,
            parity_shards: header.parity_shards,
            chunk_size: header.chunk_size,
            lease_id: header.lease_id,
            chunks: resp.chunks,
            path: resp.path,
            corrupt_chunks: resp.corrupt_chunks,
            digest: digest_of(addr, &resp.digest)?,
        })
    }

    /// Every shard the node at `addr` stores (quarantined ones excluded), collected from its
    /// batched stream; the whole listing must arrive within [`LIST_TIMEOUT`]. A malformed entry
    /// fails the whole listing: a collector must not judge a node it cannot read.
    pub async fn list_shards(&self, addr: &str) -> Result<Vec<ListedShard>, DataClientError> {
        let mut client = self.client(addr)?;
        let collect = async {
            let mut stream = client
                .list_shards(pb::ListShardsRequest {})
                .await?
                .into_inner();
            let mut shards = Vec::new();
            while let Some(batch) = stream.message().await? {
                shards.extend(batch.shards);
            }
            Ok::<_, Status>(shards)
        };
        let entries = match tokio::time::timeout(LIST_TIMEOUT, collect).await {
            Ok(Ok(entries)) => entries,
            Ok(Err(status)) => return Err(DataClientError::from_status(addr, &status)),
            Err(_) => return Err(timed_out(addr, LIST_TIMEOUT)),
        };
        entries
            .iter()
            .map(|e| {
                let id =
                    e.id.as_ref()
                        .and_then(ShardId::from_pb)
                        .ok_or_else(|| DataClientError::malformed(addr, "shard id"))?;
                Ok(ListedShard {
                    id,
                    lease_id: e.lease_id,
                    chunks: e.chunks,
                    bytes: e.bytes,
                    digest: digest_of(addr, &e.digest)?,
                })
            })
            .collect()
    }

    /// Asks the node's scrubber for a full pass now (aborting the one in progress, if any);
    /// `pass` is the value `passes_completed` reaches when the requested pass is done.
    pub async fn start_scrub(&self, addr: &str) -> Result<pb::StartScrubResponse, DataClientError> {
        let mut client = self.client(addr)?;
        with_timeout(
            addr,
            UNARY_TIMEOUT,
            client.start_scrub(pb::StartScrubRequest {}),
        )
        .await
    }

    /// The scrubber's progress and recent findings on the node at `addr`.
    pub async fn scrub_status(
        &self,
        addr: &str,
    ) -> Result<pb::ScrubStatusResponse, DataClientError> {
        let mut client = self.client(addr)?;
        with_timeout(
            addr,
            UNARY_TIMEOUT,
            client.scrub_status(pb::ScrubStatusRequest {}),
        )
        .await
    }

    /// The node's identity and usage; unavailable if it does not answer within [`PING_TIMEOUT`].
    pub async fn ping(&self, addr: &str) -> Result<pb::PingResponse, DataClientError> {
        let mut client = self.client(addr)?;
        with_timeout(addr, PING_TIMEOUT, client.ping(pb::PingRequest {})).await
    }

    /// Drops the pooled channel to `addr` (e.g. a node that left the cluster).
    pub fn forget(&self, addr: &str) {
        self.lock().remove(addr);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        // The map only ever holds complete entries, so a panic elsewhere cannot corrupt it.
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A gRPC client of the node at `addr` on the pooled channel.
    pub(crate) fn client(&self, addr: &str) -> Result<DataServiceClient<Channel>, DataClientError> {
        Ok(DataServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    /// The pooled channel to `addr`, made (without connecting) on first use.
    fn channel(&self, addr: &str) -> Result<Channel, DataClientError> {
        let mut channels = self.lock();
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = endpoint(addr, self.tls.as_ref())?.connect_lazy();
        debug!(addr, "data node channel created");
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// The endpoint settings for one data node.
fn endpoint(addr: &str, tls: Option<&crate::tls::ClusterTls>) -> Result<Endpoint, DataClientError> {
    crate::tls::endpoint(addr, tls, tessera_runtime::tls::Role::Data)
        .map(|e: Endpoint| {
            e.connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
        })
        .map_err(|e| DataClientError::InvalidAddress {
            addr: addr.to_owned(),
            message: e.to_string(),
        })
}

/// Awaits a unary call for at most `limit`; running out of time counts as unavailable.
async fn with_timeout<T>(
    addr: &str,
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, DataClientError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(DataClientError::from_status(addr, &status)),
        Err(_) => Err(timed_out(addr, limit)),
    }
}

/// The error of a call that ran out of time: the node may answer later.
pub(crate) fn timed_out(addr: &str, limit: Duration) -> DataClientError {
    DataClientError::Unavailable {
        addr: addr.to_owned(),
        message: format!("no answer within {} ms", limit.as_millis()),
    }
}

#[cfg(test)]
#[path = "data_test.rs"]
mod tests;
