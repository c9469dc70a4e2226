//! The gRPC face of the shard store: a thin adapter from `tessera.data.v1.DataService` to
//! [`ShardStore`].
//!
//! Invariant: a shard is acknowledged only after the store committed it (fsync'd and renamed),
//! a write stream that ends without a commit leaves nothing, and a corrupt chunk is streamed as
//! `corrupt = true` with no data. Each ReadShard stream buffers at most
//! [`READ_BUFFER_CHUNKS`] chunks ahead of the client.

use crate::shard_reader::ChunkRead;
use crate::store::{ShardKey, ShardStore};
use crate::store_error::ShardStoreError;
use bytes::Bytes;
use std::time::Duration;
use tessera_core::shard_format::ShardFileHeader;
use tessera_proto::convert::data::{data_id, shard_id};
use tessera_proto::data::v1 as pb;
use tessera_proto::data::v1::data_service_server::{DataService, DataServiceServer};
use tessera_proto::data::v1::write_shard_request::Msg;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

/// Chunks a read stream reads ahead of its client; bounds memory per stream.
pub const READ_BUFFER_CHUNKS: usize = 4;

/// Largest gRPC message the service accepts or sends: a 4 MiB chunk plus framing, with room.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// HTTP/2 flow-control window per stream: what one write stream may have in flight towards
/// us. h2's default (64 KiB) would cap a stream of 1 MiB chunks at 64 KiB per round trip;
/// this bounds memory per stream while letting a chunk or two be in flight.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;

/// HTTP/2 flow-control window per connection, shared by all streams on it.
pub const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// Implements `DataService` over a shard store.
#[derive(Clone, Debug)]
pub struct DataServiceImpl {
    store: ShardStore,
    node_id: u64,
    zone: String,
}

impl DataServiceImpl {
    /// A service for node `node_id` in `zone`, serving `store`.
    pub fn new(store: ShardStore, node_id: u64, zone: impl Into<String>) -> Self {
        Self {
            store,
            node_id,
            zone: zone.into(),
        }
    }

    /// The tonic server for this service, with message limits large enough for any chunk.
    pub fn into_server(self) -> DataServiceServer<Self> {
        DataServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

/// The tonic server settings every data node uses: bounded flow-control windows, HTTP/2
/// keepalive (a dead peer's streams end within seconds instead of hanging), no Nagle delay.
pub fn server_builder() -> Server {
    Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
}

/// Maps a store error to the gRPC status the protocol promises for it.
pub fn status_of(err: &ShardStoreError) -> Status {
    let message = err.to_string();
    match err {
        ShardStoreError::NotFound { .. } => Status::not_found(message),
        ShardStoreError::CorruptHeader { .. }
        | ShardStoreError::ImpossibleHeader { .. }
        | ShardStoreError::Misplaced { .. }
        | ShardStoreError::Truncated { .. } => Status::data_loss(message),
        ShardStoreError::InvalidHeader { .. }
        | ShardStoreError::ChunkOutOfOrder { .. }
        | ShardStoreError::ChunkSize { .. }
        | ShardStoreError::HashLength { .. }
        | ShardStoreError::HashMismatch { .. }
        | ShardStoreError::ChunkCount { .. }
        | ShardStoreError::RangeOutOfBounds { .. } => Status::invalid_argument(message),
        ShardStoreError::Conflict { .. } => Status::already_exists(message),
        ShardStoreError::UnknownFormat { .. }
        | ShardStoreError::MissingFormat { .. }
        | ShardStoreError::Io { .. }
        | ShardStoreError::TaskFailed { .. } => Status::internal(message),
    }
}

fn store_status(op: &'static str, err: ShardStoreError) -> Status {
    if err.is_corruption() {
        warn!(op, code = err.code(), error = %err, "stored shard is damaged");
    } else if matches!(
        err,
        ShardStoreError::Io { .. } | ShardStoreError::TaskFailed { .. }
    ) {
        warn!(op, code = err.code(), error = %err, "shard store failure");
    } else {
        debug!(op, code = err.code(), error = %err, "shard request refused");
    }
    status_of(&err)
}

/// Parses a wire shard id into a store key.
fn shard_key(id: Option<pb::ShardId>) -> Result<ShardKey, Status> {
    let id = id.ok_or_else(|| Status::invalid_argument("missing shard id"))?;
    let data_id = data_id(&id.data_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(ShardKey::new(data_id, id.shard_index))
}

/// Parses a wire shard header into a store header.
fn file_header(header: pb::ShardHeader) -> Result<ShardFileHeader, Status> {
    let key = shard_key(header.id)?;
    Ok(ShardFileHeader {
        data_id: key.data_id,
        shard_index: key.shard_index,
        data_shards: header.data_shards,
        parity_shards: header.parity_shards,
        chunk_size: header.chunk_size,
    })
}

/// The wire form of a stored header.
fn wire_header(header: &ShardFileHeader) -> pb::ShardHeader {
    pb::ShardHeader {
        id: Some(shard_id(header.data_id, header.shard_index)),
        data_shards: header.data_shards,
        parity_shards: header.parity_shards,
        chunk_size: header.chunk_size,
    }
}

impl DataServiceImpl {
    /// Runs one write stream to its commit; see the module invariant.
    async fn write_stream(
        &self,
        mut stream: Streaming<pb::WriteShardRequest>,
    ) -> Result<pb::WriteShardResponse, Status> {
        let header = match stream.message().await? {
            Some(pb::WriteShardRequest {
                msg: Some(Msg::Header(header)),
            }) => file_header(header)?,
            Some(_) => return Err(Status::invalid_argument("first message must be a header")),
            None => return Err(Status::invalid_argument("empty write stream")),
        };
        let mut writer = self
            .store
            .begin_write(header)
            .await
            .map_err(|e| store_status("write", e))?;
        loop {
            // Any early return drops the writer, which removes its temp file.
            let message = stream.message().await?;
            match message.and_then(|m| m.msg) {
                Some(Msg::Chunk(chunk)) => {
                    writer = writer
                        .write_chunk(chunk.index, chunk.data, chunk.blake3)
                        .await
                        .map_err(|e| store_status("write", e))?;
                }
                Some(Msg::Commit(commit)) => {
                    let key = writer.key();
                    let written = writer
                        .commit(commit.chunks)
                        .await
                        .map_err(|e| store_status("write", e))?;
                    debug!(shard = %key, chunks = written.chunks, "shard stored");
                    return Ok(pb::WriteShardResponse {
                        chunks: written.chunks,
                        bytes: written.data_bytes,
                    });
                }
                Some(Msg::Header(_)) => {
                    writer.abort().await.map_err(|e| store_status("write", e))?;
                    return Err(Status::invalid_argument("second header in write stream"));
                }
                None => {
                    let key = writer.key();
                    writer.abort().await.map_err(|e| store_status("write", e))?;
                    debug!(shard = %key, "write stream ended without commit");
                    return Err(Status::invalid_argument(
                        "write stream ended without commit; nothing stored",
                    ));
                }
            }
        }
    }
}

#[tonic::async_trait]
impl DataService for DataServiceImpl {
    async fn write_shard(
        &self,
        request: Request<Streaming<pb::WriteShardRequest>>,
    ) -> Result<Response<pb::WriteShardResponse>, Status> {
        self.write_stream(request.into_inner())
            .await
            .map(Response::new)
    }

    type ReadShardStream = ReceiverStream<Result<pb::ReadShardResponse, Status>>;

    async fn read_shard(
        &self,
        request: Request<pb::ReadShardRequest>,
    ) -> Result<Response<Self::ReadShardStream>, Status> {
        let req = request.into_inner();
        let key = shard_key(req.id)?;
        let reader = self
            .store
            .open_read(key)
            .await
            .map_err(|e| store_status("read", e))?;
        let range = reader
            .range(req.first_chunk, req.chunk_count)
            .map_err(|e| store_status("read", e))?;
        let (tx, rx) = mpsc::channel(READ_BUFFER_CHUNKS);
        tokio::spawn(async move {
            for index in range {
                let item = match reader.read_chunk(index).await {
                    Ok(ChunkRead::Intact { index, data, hash }) => Ok(pb::ReadShardResponse {
                        index,
                        data,
                        blake3: hash,
                        corrupt: false,
                    }),
                    Ok(ChunkRead::Corrupt { index }) => {
                        info!(shard = %key, index, "corrupt chunk reported to reader");
                        Ok(pb::ReadShardResponse {
                            index,
                            data: Bytes::new(),
                            blake3: Bytes::new(),
                            corrupt: true,
                        })
                    }
                    Err(e) => Err(store_status("read", e)),
                };
                let failed = item.is_err();
                // A closed channel means the client went away: stop reading.
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delete_shard(
        &self,
        request: Request<pb::DeleteShardRequest>,
    ) -> Result<Response<pb::DeleteShardResponse>, Status> {
        let key = shard_key(request.into_inner().id)?;
        let existed = self
            .store
            .delete(key)
            .await
            .map_err(|e| store_status("delete", e))?;
        debug!(shard = %key, existed, "shard deleted");
        Ok(Response::new(pb::DeleteShardResponse { existed }))
    }

    async fn stat_shard(
        &self,
        request: Request<pb::StatShardRequest>,
    ) -> Result<Response<pb::StatShardResponse>, Status> {
        let key = shard_key(request.into_inner().id)?;
        let stat = self
            .store
            .stat(key)
            .await
            .map_err(|e| store_status("stat", e))?;
        Ok(Response::new(pb::StatShardResponse {
            header: Some(wire_header(&stat.header)),
            chunks: stat.chunks,
        }))
    }

    async fn ping(
        &self,
        _request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        let usage = self.store.usage();
        Ok(Response::new(pb::PingResponse {
            node_id: self.node_id,
            zone: self.zone.clone(),
            shards: usage.shards,
            used_bytes: usage.bytes,
        }))
    }
}

#[cfg(test)]
#[path = "service_test.rs"]
mod tests;
