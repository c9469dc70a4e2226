//! The client of data nodes: shard write and read streams, delete, stat (and verify), ping,
//! shard listings and the scrubber's controls, over a pool of lazily connected gRPC channels,
//! one per node address.
//!
//! Invariant: every failure is classified once, here, into a [`DataClientError`] whose
//! `is_retryable()` says whether the node may answer differently later (unreachable, timed
//! out) or has answered for good (not found, corrupt, rejected). The client never commits a
//! write on the caller's behalf: the caller's stream carries the commit or nothing is stored.

use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
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

/// The chunks of a shard as the node streams them, in order; each carries its stored blake3
/// hash (for the caller to verify) or `corrupt = true` and no data.
pub type ShardChunkStream =
    Pin<Box<dyn Stream<Item = Result<pb::ReadShardResponse, DataClientError>> + Send + 'static>>;

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
    /// The node does not hold the shard.
    #[error("shard not found on data node {addr}: {message}")]
    NotFound {
        /// The node's address.
        addr: String,
        /// The node's explanation.
        message: String,
    },
    /// The node holds the shard but its header or layout is damaged.
    #[error("shard corrupt on data node {addr}: {message}")]
    Corrupt {
        /// The node's address.
        addr: String,
        /// The node's explanation.
        message: String,
    },
    /// The node refused the request (protocol violation, conflict, internal failure).
    #[error("data node {addr} rejected the request ({code:?}): {message}")]
    Rejected {
        /// The node's address.
        addr: String,
        /// The gRPC status code.
        code: Code,
        /// The node's explanation.
        message: String,
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
            | Self::Rejected { .. }
            | Self::InvalidAddress { .. } => false,
        }
    }

    /// A stable name for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "data_unavailable",
            Self::NotFound { .. } => "shard_not_found",
            Self::Corrupt { .. } => "shard_corrupt",
            Self::Rejected { .. } => "data_rejected",
            Self::InvalidAddress { .. } => "data_invalid_address",
        }
    }

    /// The address of the node the error came from.
    pub fn addr(&self) -> &str {
        match self {
            Self::Unavailable { addr, .. }
            | Self::NotFound { addr, .. }
            | Self::Corrupt { addr, .. }
            | Self::Rejected { addr, .. }
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
            code => Self::Rejected {
                addr,
                code,
                message,
            },
        }
    }
}

/// A pool of channels to data nodes; cheap to clone, all clones share the pool.
#[derive(Clone, Debug, Default)]
pub struct DataClient {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl DataClient {
    /// An empty pool; channels are made on first use of each address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Streams one shard to the node at `addr`: the caller's stream must send the header,
    /// the chunks in order and the commit. A stream that ends without a commit stores nothing
    /// and fails with `Rejected { code: InvalidArgument, .. }`.
    pub async fn write_shard(
        &self,
        addr: &str,
        messages: impl Stream<Item = pb::WriteShardRequest> + Send + 'static,
    ) -> Result<pb::WriteShardResponse, DataClientError> {
        let mut client = self.client(addr)?;
        client
            .write_shard(messages)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| DataClientError::from_status(addr, &s))
    }

    /// Streams chunks `[first_chunk, first_chunk + chunk_count)` of shard `id` from the node at
    /// `addr` (`chunk_count = 0`: to the end). A missing or damaged shard fails here, before
    /// the stream; a failure mid-stream ends the stream with that error.
    pub async fn read_shard(
        &self,
        addr: &str,
        id: pb::ShardId,
        first_chunk: u64,
        chunk_count: u64,
    ) -> Result<ShardChunkStream, DataClientError> {
        let mut client = self.client(addr)?;
        let request = pb::ReadShardRequest {
            id: Some(id),
            first_chunk,
            chunk_count,
        };
        let stream = client
            .read_shard(request)
            .await
            .map_err(|s| DataClientError::from_status(addr, &s))?
            .into_inner();
        let addr = addr.to_owned();
        Ok(Box::pin(stream.map(move |item| {
            item.map_err(|s| DataClientError::from_status(&addr, &s))
        })))
    }

    /// Removes shard `id` from the node at `addr`; `existed` says whether it was stored.
    pub async fn delete_shard(
        &self,
        addr: &str,
        id: pb::ShardId,
    ) -> Result<pb::DeleteShardResponse, DataClientError> {
        let mut client = self.client(addr)?;
        let request = pb::DeleteShardRequest { id: Some(id) };
        with_timeout(addr, UNARY_TIMEOUT, client.delete_shard(request)).await
    }

    /// The header, chunk count and file path of shard `id` on the node at `addr`, without
    /// reading its chunks.
    pub async fn stat_shard(
        &self,
        addr: &str,
        id: pb::ShardId,
    ) -> Result<pb::StatShardResponse, DataClientError> {
        self.stat(addr, id, false, UNARY_TIMEOUT).await
    }

    /// As [`stat_shard`](Self::stat_shard), and the node also reads every chunk of the shard
    /// and counts those that fail their hash in `corrupt_chunks` (it quarantines nothing).
    pub async fn verify_shard(
        &self,
        addr: &str,
        id: pb::ShardId,
    ) -> Result<pb::StatShardResponse, DataClientError> {
        self.stat(addr, id, true, VERIFY_TIMEOUT).await
    }

    async fn stat(
        &self,
        addr: &str,
        id: pb::ShardId,
        verify: bool,
        limit: Duration,
    ) -> Result<pb::StatShardResponse, DataClientError> {
        let mut client = self.client(addr)?;
        let request = pb::StatShardRequest {
            id: Some(id),
            verify,
        };
        with_timeout(addr, limit, client.stat_shard(request)).await
    }

    /// Every shard the node at `addr` stores (quarantined ones excluded), collected from its
    /// batched stream; the whole listing must arrive within [`LIST_TIMEOUT`].
    pub async fn list_shards(&self, addr: &str) -> Result<Vec<pb::ShardEntry>, DataClientError> {
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
        match tokio::time::timeout(LIST_TIMEOUT, collect).await {
            Ok(Ok(shards)) => Ok(shards),
            Ok(Err(status)) => Err(DataClientError::from_status(addr, &status)),
            Err(_) => Err(timed_out(addr, LIST_TIMEOUT)),
        }
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

    fn client(&self, addr: &str) -> Result<DataServiceClient<Channel>, DataClientError> {
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
        let channel = endpoint(addr)?.connect_lazy();
        debug!(addr, "data node channel created");
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// The endpoint settings for one data node.
fn endpoint(addr: &str) -> Result<Endpoint, DataClientError> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri)
        .map(|e| {
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
fn timed_out(addr: &str, limit: Duration) -> DataClientError {
    DataClientError::Unavailable {
        addr: addr.to_owned(),
        message: format!("no answer within {} ms", limit.as_millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_from_the_node_are_classified_by_code() {
        let a = "10.0.0.1:7101";
        let cases = [
            (Status::unavailable("down"), "data_unavailable", true),
            (Status::deadline_exceeded("slow"), "data_unavailable", true),
            (Status::cancelled("gone"), "data_unavailable", true),
            (Status::not_found("no shard"), "shard_not_found", false),
            (Status::data_loss("bad header"), "shard_corrupt", false),
            (Status::invalid_argument("order"), "data_rejected", false),
            (Status::already_exists("conflict"), "data_rejected", false),
            (Status::internal("disk"), "data_rejected", false),
        ];
        for (status, code, retryable) in cases {
            let err = DataClientError::from_status(a, &status);
            assert_eq!(err.code(), code, "{status:?}");
            assert_eq!(err.is_retryable(), retryable, "{status:?}");
            assert_eq!(err.addr(), a);
        }
    }

    #[test]
    fn a_local_transport_failure_is_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let status = Status::from_error(Box::new(io));
        let err = DataClientError::from_status("n:1", &status);
        assert!(err.is_retryable(), "{err:?}");
    }

    #[test]
    fn addresses_with_or_without_a_scheme_are_accepted() {
        assert!(endpoint("127.0.0.1:7101").is_ok());
        assert!(endpoint("http://node-a:7101").is_ok());
        assert!(matches!(
            endpoint("not a uri"),
            Err(DataClientError::InvalidAddress { .. })
        ));
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable_within_the_ping_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let client = DataClient::new();
        let started = std::time::Instant::now();
        let err = client.ping(&addr).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        // The pooled channel is reused, and forgetting it is harmless.
        assert!(client.ping(&addr).await.is_err());
        client.forget(&addr);
    }
}
