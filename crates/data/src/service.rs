//! The gRPC face of the shard store: a thin adapter from `tessera.data.v1.DataService` to
//! [`ShardStore`].
//!
//! Invariant: a copy is acknowledged only after the store committed it (every chunk hash and
//! the writer's digest verified, fsync'd, linked into place without replacing anything); a
//! write stream that ends without a commit leaves nothing. A read stream sends the copy's
//! whole hash table first (checked against the footer's digest), then the chunks asked for,
//! each checked against its table entry; a chunk that fails is sent as `corrupt = true` with no
//! data, and the copy is reported to the scrubber, which quarantines it if the damage is real.
//! Every refusal carries the store's error code in the `x-tessera-error-code` metadata, so a
//! client never parses a message.
//!
//! Each ReadShard stream buffers at most [`READ_BUFFER_CHUNKS`] chunks ahead of the client,
//! and a listing at most [`LIST_BUFFER_BATCHES`] batches of [`LIST_BATCH`] entries. While any
//! ReadShard or WriteShard stream is open, a throttled scrub pass pauses.

use crate::scrub::{CorruptFinding, ScrubHandle};
use crate::shard_key::ShardKey;
use crate::shard_reader::ChunkRead;
use crate::store::{ListedFile, ShardStore};
use crate::store_error::ShardStoreError;
use bytes::Bytes;
use std::ops::ControlFlow;
use std::time::Duration;
use tessera_core::shard_file::ShardFileHeader;
use tessera_proto::convert::data::{data_id, generation, shard_id};
use tessera_proto::data::v1 as pb;
use tessera_proto::data::v1::data_service_server::{DataService, DataServiceServer};
use tessera_proto::data::v1::write_shard_request::Msg;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

/// Chunks a read stream reads ahead of its client; bounds memory per stream.
pub const READ_BUFFER_CHUNKS: usize = 4;

/// Shard entries per ListShards message (about 110 bytes each on the wire).
pub const LIST_BATCH: usize = 1000;

/// ListShards batches the directory walk may run ahead of its client.
pub const LIST_BUFFER_BATCHES: usize = 2;

/// Largest gRPC message the service accepts or sends: a 4 MiB chunk, or an 8 MiB hash table,
/// plus framing, with room.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// HTTP/2 flow-control window per stream: what one write stream may have in flight towards
/// us. h2's default (64 KiB) would cap a stream of 1 MiB chunks at 64 KiB per round trip;
/// this bounds memory per stream while letting a chunk or two be in flight.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;

/// HTTP/2 flow-control window per connection, shared by all streams on it.
pub const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// The status metadata key that carries the typed error code of every refusal.
pub const ERROR_CODE_KEY: &str = "x-tessera-error-code";

/// Implements `DataService` over a shard store.
#[derive(Clone, Debug)]
pub struct DataServiceImpl {
    store: ShardStore,
    scrub: ScrubHandle,
    node_id: u64,
    zone: String,
}

impl DataServiceImpl {
    /// A service for node `node_id` in `zone`, serving `store`, whose scrubber `scrub` hears
    /// of client load and of damage found by reads.
    pub fn new(
        store: ShardStore,
        scrub: ScrubHandle,
        node_id: u64,
        zone: impl Into<String>,
    ) -> Self {
        Self {
            store,
            scrub,
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

/// `status` with `code` in its [`ERROR_CODE_KEY`] metadata.
fn with_code(mut status: Status, code: &'static str) -> Status {
    status
        .metadata_mut()
        .insert(ERROR_CODE_KEY, MetadataValue::from_static(code));
    status
}

/// ENOSPC and EDQUOT on Linux: the disk (or the user's quota) is full.
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// Maps a store error to the gRPC status the protocol promises for it, its code attached.
pub fn status_of(err: &ShardStoreError) -> Status {
    let message = err.to_string();
    let status = match err {
        ShardStoreError::NotFound { .. } => Status::not_found(message),
        ShardStoreError::CorruptHeader { .. }
        | ShardStoreError::ImpossibleHeader { .. }
        | ShardStoreError::Misplaced { .. }
        | ShardStoreError::CorruptFooter { .. }
        | ShardStoreError::Truncated { .. }
        | ShardStoreError::HashTableMismatch { .. } => Status::data_loss(message),
        ShardStoreError::ZeroGeneration { .. }
        | ShardStoreError::InvalidHeader { .. }
        | ShardStoreError::ChunkOutOfOrder { .. }
        | ShardStoreError::ChunkSize { .. }
        | ShardStoreError::HashLength { .. }
        | ShardStoreError::HashMismatch { .. }
        | ShardStoreError::TooManyChunks { .. }
        | ShardStoreError::ChunkCount { .. }
        | ShardStoreError::DigestLength { .. }
        | ShardStoreError::DigestMismatch { .. }
        | ShardStoreError::RangeOutOfBounds { .. } => Status::invalid_argument(message),
        ShardStoreError::AlreadyExists { .. } => Status::already_exists(message),
        ShardStoreError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(ENOSPC | EDQUOT)) =>
        {
            Status::resource_exhausted(message)
        }
        ShardStoreError::EarlierFormat { .. }
        | ShardStoreError::UnknownFormat { .. }
        | ShardStoreError::MissingFormat { .. }
        | ShardStoreError::Locked { .. }
        | ShardStoreError::Io { .. }
        | ShardStoreError::TaskFailed { .. } => Status::internal(message),
    };
    with_code(status, err.code())
}

fn store_status(op: &'static str, err: ShardStoreError) -> Status {
    if err.is_corruption() {
        warn!(op, code = err.code(), error = %err, "stored shard is damaged");
    } else if err.is_retryable() {
        warn!(op, code = err.code(), error = %err, "shard store failure");
    } else {
        debug!(op, code = err.code(), error = %err, "shard request refused");
    }
    status_of(&err)
}

/// A request that breaks the protocol before the store sees it.
fn bad_request(code: &'static str, message: impl Into<String>) -> Status {
    with_code(Status::invalid_argument(message), code)
}

/// Parses a wire shard id into a store key (generation required).
fn shard_key(id: Option<pb::ShardId>) -> Result<ShardKey, Status> {
    let id = id.ok_or_else(|| bad_request("missing_shard_id", "missing shard id"))?;
    let data = data_id(&id.data_id).map_err(|e| bad_request("invalid_data_id", e.to_string()))?;
    let generation =
        generation(&id).map_err(|e| bad_request("shard_zero_generation", e.to_string()))?;
    Ok(ShardKey::new(data, id.shard_index, generation))
}

/// Parses a wire shard header into the file header to write.
fn file_header(header: pb::ShardHeader) -> Result<ShardFileHeader, Status> {
    let key = shard_key(header.id)?;
    Ok(ShardFileHeader {
        data_id: key.data_id,
        shard_index: key.shard_index,
        data_shards: header.data_shards,
        parity_shards: header.parity_shards,
        chunk_size: header.chunk_size,
        generation: key.generation.get(),
        lease_id: header.lease_id,
    })
}

/// The wire id of a stored copy.
fn wire_id(key: &ShardKey) -> pb::ShardId {
    shard_id(key.data_id, key.shard_index, key.generation)
}

/// The wire form of a stored header.
fn wire_header(key: &ShardKey, header: &ShardFileHeader) -> pb::ShardHeader {
    pb::ShardHeader {
        id: Some(wire_id(key)),
        data_shards: header.data_shards,
        parity_shards: header.parity_shards,
        chunk_size: header.chunk_size,
        lease_id: header.lease_id,
    }
}

/// The wire form of a scrubber finding.
fn wire_finding(finding: &CorruptFinding) -> pb::CorruptShard {
    pb::CorruptShard {
        id: Some(wire_id(&finding.key)),
        reason: finding.reason.as_str().to_owned(),
        chunk: finding.chunk,
        found_ms: finding.found_ms,
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
            Some(_) => {
                return Err(bad_request(
                    "write_stream_order",
                    "first message must be a header",
                ));
            }
            None => return Err(bad_request("write_stream_order", "empty write stream")),
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
                        .commit(commit.chunks, commit.digest)
                        .await
                        .map_err(|e| store_status("write", e))?;
                    debug!(shard = %key, chunks = written.chunks, "shard stored");
                    return Ok(pb::WriteShardResponse {
                        chunks: written.chunks,
                        bytes: written.data_bytes,
                        digest: Bytes::copy_from_slice(&written.digest),
                    });
                }
                Some(Msg::Header(_)) => {
                    writer.abort().await.map_err(|e| store_status("write", e))?;
                    return Err(bad_request(
                        "write_stream_order",
                        "second header in write stream",
                    ));
                }
                None => {
                    let key = writer.key();
                    writer.abort().await.map_err(|e| store_status("write", e))?;
                    debug!(shard = %key, "write stream ended without commit");
                    return Err(bad_request(
                        "write_without_commit",
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
        let _load = self.scrub.client_stream();
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
        let load = self.scrub.client_stream();
        let opened = match self.store.open_read(key).await {
            Ok(reader) => reader.hash_table().await.map(|table| (reader, table)),
            Err(e) => Err(e),
        };
        let (reader, table) = opened.map_err(|e| {
            if e.is_corruption() {
                self.scrub.report_suspect(key);
            }
            store_status("read", e)
        })?;
        let range = reader
            .range(req.first_chunk, req.chunk_count)
            .map_err(|e| store_status("read", e))?;
        let (tx, rx) = mpsc::channel(READ_BUFFER_CHUNKS);
        let scrub = self.scrub.clone();
        tokio::spawn(async move {
            // The stream counts as client load until its last chunk is read.
            let _load = load;
            let hashes = pb::ReadShardResponse {
                hashes: Some(pb::ShardHashes {
                    chunks: table.chunks(),
                    hashes: table.bytes().clone(),
                }),
                ..pb::ReadShardResponse::default()
            };
            if tx.send(Ok(hashes)).await.is_err() {
                return;
            }
            let mut reported = false;
            for index in range {
                let item = match reader.read_chunk(&table, index).await {
                    Ok(ChunkRead::Intact { index, data }) => Ok(pb::ReadShardResponse {
                        index,
                        data,
                        corrupt: false,
                        hashes: None,
                    }),
                    Ok(ChunkRead::Corrupt { index }) => {
                        info!(shard = %key, index, "corrupt chunk reported to reader");
                        if !std::mem::replace(&mut reported, true) {
                            scrub.report_suspect(key);
                        }
                        Ok(pb::ReadShardResponse {
                            index,
                            data: Bytes::new(),
                            corrupt: true,
                            hashes: None,
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
        let req = request.into_inner();
        let key = shard_key(req.id)?;
        let reader = self
            .store
            .open_read(key)
            .await
            .map_err(|e| store_status("stat", e))?;
        // Verifying only counts damage: quarantine is the scrubber's decision alone.
        let corrupt_chunks = if req.verify {
            let table = reader
                .hash_table()
                .await
                .map_err(|e| store_status("verify", e))?;
            reader
                .count_corrupt_chunks(&table)
                .await
                .map_err(|e| store_status("verify", e))?
        } else {
            0
        };
        let stat = reader.stat();
        Ok(Response::new(pb::StatShardResponse {
            header: Some(wire_header(&key, &stat.header)),
            chunks: stat.chunks,
            path: self.store.shard_path(&key).display().to_string(),
            corrupt_chunks,
            digest: Bytes::copy_from_slice(&stat.digest),
        }))
    }

    type ListShardsStream = ReceiverStream<Result<pb::ListShardsResponse, Status>>;

    async fn list_shards(
        &self,
        _request: Request<pb::ListShardsRequest>,
    ) -> Result<Response<Self::ListShardsStream>, Status> {
        let (tx, rx) = mpsc::channel(LIST_BUFFER_BATCHES);
        let (store, scrub) = (self.store.clone(), self.scrub.clone());
        // The walk opens every shard file: blocking work, run off the runtime, sending each
        // batch as it fills (and stopping if the client went away).
        tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(LIST_BATCH);
            let mut listed: u64 = 0;
            let walked = store.list_blocking(|file| {
                match file {
                    ListedFile::Shard(shard) => batch.push(pb::ShardEntry {
                        id: Some(wire_id(&shard.key)),
                        chunks: shard.chunks,
                        bytes: shard.file_len,
                        lease_id: shard.lease_id,
                        digest: Bytes::copy_from_slice(&shard.digest),
                    }),
                    ListedFile::Unreadable { key, error } => {
                        debug!(shard = %key, code = error.code(), "unlisted damaged shard sent to scrubber");
                        scrub.report_suspect(key);
                    }
                }
                if batch.len() < LIST_BATCH {
                    return ControlFlow::Continue(());
                }
                listed += batch.len() as u64;
                let shards = std::mem::replace(&mut batch, Vec::with_capacity(LIST_BATCH));
                match tx.blocking_send(Ok(pb::ListShardsResponse { shards })) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            });
            let last = match walked {
                Ok(()) if batch.is_empty() => None,
                Ok(()) => {
                    listed += batch.len() as u64;
                    Some(Ok(pb::ListShardsResponse { shards: batch }))
                }
                Err(e) => Some(Err(store_status("list", e))),
            };
            if let Some(last) = last {
                // The client may have gone away; there is no one left to tell.
                let _ = tx.blocking_send(last);
            }
            debug!(shards = listed, "shards listed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn start_scrub(
        &self,
        _request: Request<pb::StartScrubRequest>,
    ) -> Result<Response<pb::StartScrubResponse>, Status> {
        let pass = self.scrub.request_pass();
        Ok(Response::new(pb::StartScrubResponse { pass }))
    }

    async fn scrub_status(
        &self,
        _request: Request<pb::ScrubStatusRequest>,
    ) -> Result<Response<pb::ScrubStatusResponse>, Status> {
        let status = self.scrub.status();
        Ok(Response::new(pb::ScrubStatusResponse {
            passes_completed: status.passes_completed,
            running: status.running,
            last_pass_started_ms: status.last_pass_started_ms,
            last_pass_finished_ms: status.last_pass_finished_ms,
            shards_checked: status.shards_checked,
            bytes_checked: status.bytes_checked,
            corrupt_shards_found: status.corrupt_shards_found,
            recent_corrupt: status.recent_corrupt.iter().map(wire_finding).collect(),
            cursor: status.cursor,
            rate_bytes_per_sec: status.rate_bytes_per_sec,
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
