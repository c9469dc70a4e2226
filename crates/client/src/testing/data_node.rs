//! An in-memory data node that behaves as data.proto specifies: writes verify every chunk's
//! bound hash and the commit's count and digest, store nothing without a commit and never
//! replace a stored id; reads send the hash table first, then the chunks asked for, flagging a
//! chunk whose stored bytes no longer match its hash. Named faults make it lie or hang.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tessera_core::shard_file::{
    ChunkHash, ShardDigest, ShardDigester, chunk_hash, digests_equal, verify_chunk,
};
use tessera_proto::data::v1 as pb;
use tessera_proto::data::v1::data_service_server::{DataService, DataServiceServer};
use tessera_proto::data::v1::write_shard_request::Msg;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::data::ShardId;

/// One stored shard.
#[derive(Clone, Debug)]
pub(crate) struct StoredShard {
    pub(crate) header: pb::ShardHeader,
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) hashes: Vec<ChunkHash>,
}

impl StoredShard {
    /// A shard of `id` holding `chunks`, with their correct hashes.
    pub(crate) fn new(id: ShardId, chunk_size: u32, lease_id: u64, chunks: Vec<Bytes>) -> Self {
        let hashes = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| chunk_hash(&id.data_id, id.shard_index, i as u64, c))
            .collect();
        StoredShard {
            header: pb::ShardHeader {
                id: Some(id.to_pb()),
                data_shards: 2,
                parity_shards: 1,
                chunk_size,
                lease_id,
            },
            chunks,
            hashes,
        }
    }

    fn id(&self) -> ShardId {
        self.header
            .id
            .as_ref()
            .and_then(ShardId::from_pb)
            .expect("stored shards have valid ids")
    }

    /// The digest of its hash table.
    pub(crate) fn digest(&self) -> ShardDigest {
        let id = self.id();
        let mut digester = ShardDigester::new(&id.data_id, id.shard_index);
        for hash in &self.hashes {
            digester.push(hash);
        }
        digester.finish()
    }

    fn file_bytes(&self) -> u64 {
        let chunks = self.chunks.len() as u64;
        128 + chunks * u64::from(self.header.chunk_size) + chunks * 32 + 64
    }
}

/// How the node misbehaves on reads.
#[derive(Clone, Debug, Default)]
pub(crate) enum ReadFault {
    #[default]
    None,
    /// Serves another stored shard's table and chunks (a misfiled file).
    ServeOther(ShardId),
    /// Sends the table with two entries swapped.
    SwapTableEntries(usize, usize),
    /// Sends the bytes of two chunks swapped, claiming both intact.
    SwapChunks(usize, usize),
    /// Sends the table without its last entry.
    ShortTable,
    /// Sends the table, then nothing, keeping the stream open.
    StallAfterTable,
    /// Leaves one chunk out of the stream.
    SkipChunk(u64),
}

/// How the node misbehaves on writes.
#[derive(Clone, Debug, Default)]
pub(crate) enum WriteFault {
    #[default]
    None,
    /// Reads the header, then nothing more.
    StopReading,
    /// Takes the commit and never answers.
    HangOnCommit,
    /// Stores the shard but answers with this digest.
    AnswerDigest(ShardDigest),
    /// Stores the shard but answers with this chunk count.
    AnswerChunks(u64),
}

/// Everything the node holds and has seen.
#[derive(Debug, Default)]
pub(crate) struct NodeState {
    pub(crate) shards: BTreeMap<ShardId, StoredShard>,
    pub(crate) read_fault: ReadFault,
    pub(crate) write_fault: WriteFault,
    /// Write streams whose header arrived.
    pub(crate) opened: u64,
    /// Write streams that stored their shard.
    pub(crate) committed: u64,
    /// Write streams that ended any other way (refused, aborted, dropped).
    pub(crate) discarded: u64,
}

/// The node; clones share its state.
#[derive(Clone, Debug, Default)]
pub(crate) struct DataModel {
    state: Arc<Mutex<NodeState>>,
}

impl DataModel {
    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `shard` directly.
    pub(crate) fn put(&self, shard: StoredShard) {
        let id = shard.id();
        self.lock().shards.insert(id, shard);
    }

    /// Serves the node on a fresh loopback port over mutual TLS with `tls`, behind the role
    /// guard, as a data node serves; its address.
    pub(crate) async fn serve_tls(&self, tls: &crate::tls::ClusterTls) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let service = DataServiceServer::new(self.clone());
        let server = tonic::transport::Server::builder()
            .tls_config(tls.server_config())
            .expect("tls config")
            .layer(crate::tls::RoleGuardLayer::new(Some(tls)))
            .add_service(service);
        tokio::spawn(server.serve_with_incoming(TcpListenerStream::new(listener)));
        addr
    }

    /// Serves the node on a fresh loopback port; its address.
    pub(crate) async fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let service = DataServiceServer::new(self.clone())
            .max_decoding_message_size(crate::data::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(crate::data::MAX_MESSAGE_SIZE);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        addr
    }

    async fn write(
        &self,
        stream: &mut Streaming<pb::WriteShardRequest>,
    ) -> Result<pb::WriteShardResponse, Status> {
        let header = match stream.message().await? {
            Some(pb::WriteShardRequest {
                msg: Some(Msg::Header(header)),
            }) => header,
            _ => return Err(Status::invalid_argument("first message must be a header")),
        };
        let id = header
            .id
            .as_ref()
            .and_then(ShardId::from_pb)
            .ok_or_else(|| Status::invalid_argument("bad shard id"))?;
        if header.chunk_size == 0 {
            return Err(Status::invalid_argument("chunk size 0"));
        }
        let fault = {
            let mut state = self.lock();
            state.opened += 1;
            if state.shards.contains_key(&id) {
                return Err(Status::already_exists(format!("{id} is stored")));
            }
            state.write_fault.clone()
        };
        if matches!(fault, WriteFault::StopReading) {
            std::future::pending::<()>().await;
        }
        let mut chunks = Vec::new();
        let mut hashes = Vec::new();
        let mut digester = ShardDigester::new(&id.data_id, id.shard_index);
        loop {
            match stream.message().await?.and_then(|m| m.msg) {
                Some(Msg::Chunk(chunk)) => {
                    let index = chunks.len() as u64;
                    if chunk.index != index {
                        return Err(Status::invalid_argument("chunk out of order"));
                    }
                    if chunk.data.len() != header.chunk_size as usize {
                        return Err(Status::invalid_argument("chunk size"));
                    }
                    let hash = ChunkHash::try_from(chunk.blake3.as_ref())
                        .map_err(|_| Status::invalid_argument("hash length"))?;
                    if !verify_chunk(&id.data_id, id.shard_index, index, &chunk.data, &hash) {
                        return Err(Status::invalid_argument("chunk hash mismatch"));
                    }
                    digester.push(&hash);
                    hashes.push(hash);
                    chunks.push(chunk.data);
                }
                Some(Msg::Commit(commit)) => {
                    if matches!(fault, WriteFault::HangOnCommit) {
                        std::future::pending::<()>().await;
                    }
                    if commit.chunks != chunks.len() as u64 {
                        return Err(Status::invalid_argument("chunk count"));
                    }
                    let digest = digester.finish();
                    if !digests_equal(&commit.digest, &digest) {
                        return Err(Status::invalid_argument("digest mismatch"));
                    }
                    let shard = StoredShard {
                        header,
                        chunks,
                        hashes,
                    };
                    let bytes = shard.file_bytes();
                    let count = shard.chunks.len() as u64;
                    let mut state = self.lock();
                    if state.shards.contains_key(&id) {
                        return Err(Status::already_exists(format!("{id} is stored")));
                    }
                    state.shards.insert(id, shard);
                    let (chunks, digest) = match fault {
                        WriteFault::AnswerDigest(other) => (count, other),
                        WriteFault::AnswerChunks(other) => (other, digest),
                        _ => (count, digest),
                    };
                    return Ok(pb::WriteShardResponse {
                        chunks,
                        bytes,
                        digest: Bytes::copy_from_slice(&digest),
                    });
                }
                Some(Msg::Header(_)) => return Err(Status::invalid_argument("second header")),
                None => return Err(Status::invalid_argument("ended without commit")),
            }
        }
    }
}

/// Counts a write stream as discarded unless it committed, however its handler ends (the
/// server drops the handler when the client resets the stream).
struct WriteOutcome {
    model: DataModel,
    committed: bool,
}

impl Drop for WriteOutcome {
    fn drop(&mut self) {
        let mut state = self.model.lock();
        if self.committed {
            state.committed += 1;
        } else {
            state.discarded += 1;
        }
    }
}

fn shard_id(id: Option<&pb::ShardId>) -> Result<ShardId, Status> {
    id.and_then(ShardId::from_pb)
        .ok_or_else(|| Status::invalid_argument("bad shard id"))
}

#[tonic::async_trait]
impl DataService for DataModel {
    async fn write_shard(
        &self,
        request: Request<Streaming<pb::WriteShardRequest>>,
    ) -> Result<Response<pb::WriteShardResponse>, Status> {
        let mut outcome = WriteOutcome {
            model: self.clone(),
            committed: false,
        };
        let mut stream = request.into_inner();
        let answer = self.write(&mut stream).await?;
        outcome.committed = true;
        Ok(Response::new(answer))
    }

    type ReadShardStream = ReceiverStream<Result<pb::ReadShardResponse, Status>>;

    async fn read_shard(
        &self,
        request: Request<pb::ReadShardRequest>,
    ) -> Result<Response<Self::ReadShardStream>, Status> {
        let req = request.into_inner();
        let id = shard_id(req.id.as_ref())?;
        let (fault, shard, other) = {
            let state = self.lock();
            let fault = state.read_fault.clone();
            let other = match &fault {
                ReadFault::ServeOther(other) => state.shards.get(other).cloned(),
                _ => None,
            };
            (fault, state.shards.get(&id).cloned(), other)
        };
        let shard = shard.ok_or_else(|| Status::not_found(format!("{id} not stored")))?;
        // What the node believes it holds (and checks chunks against), and what it sends.
        let held = other.unwrap_or(shard);
        let held_id = held.id();
        let mut table = held.hashes.clone();
        let mut chunks = held.chunks.clone();
        let mut check = true;
        let mut stall = false;
        let mut skip = None;
        match fault {
            ReadFault::None | ReadFault::ServeOther(_) => {}
            ReadFault::SwapTableEntries(a, b) => table.swap(a, b),
            ReadFault::SwapChunks(a, b) => {
                chunks.swap(a, b);
                check = false;
            }
            ReadFault::ShortTable => {
                table.pop();
            }
            ReadFault::StallAfterTable => stall = true,
            ReadFault::SkipChunk(index) => skip = Some(index),
        }
        let total = held.chunks.len() as u64;
        let end = if req.chunk_count == 0 {
            total
        } else {
            req.first_chunk.saturating_add(req.chunk_count)
        };
        if req.first_chunk > end || end > total {
            return Err(Status::invalid_argument("range beyond the shard"));
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let hashes = pb::ShardHashes {
                chunks: table.len() as u64,
                hashes: Bytes::from(table.concat()),
            };
            let first = pb::ReadShardResponse {
                hashes: Some(hashes),
                ..pb::ReadShardResponse::default()
            };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            if stall {
                tx.closed().await;
                return;
            }
            for index in req.first_chunk..end {
                if skip == Some(index) {
                    continue;
                }
                let data = chunks[index as usize].clone();
                let stored = &held.hashes[index as usize];
                let corrupt = check
                    && !verify_chunk(&held_id.data_id, held_id.shard_index, index, &data, stored);
                let message = pb::ReadShardResponse {
                    index,
                    data: if corrupt { Bytes::new() } else { data },
                    corrupt,
                    hashes: None,
                };
                if tx.send(Ok(message)).await.is_err() {
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
        let id = shard_id(request.into_inner().id.as_ref())?;
        let existed = self.lock().shards.remove(&id).is_some();
        Ok(Response::new(pb::DeleteShardResponse { existed }))
    }

    async fn stat_shard(
        &self,
        request: Request<pb::StatShardRequest>,
    ) -> Result<Response<pb::StatShardResponse>, Status> {
        let req = request.into_inner();
        let id = shard_id(req.id.as_ref())?;
        let shard = self
            .lock()
            .shards
            .get(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("{id} not stored")))?;
        let corrupt_chunks = if req.verify {
            shard
                .chunks
                .iter()
                .zip(&shard.hashes)
                .enumerate()
                .filter(|(i, (c, h))| !verify_chunk(&id.data_id, id.shard_index, *i as u64, c, *h))
                .count() as u64
        } else {
            0
        };
        Ok(Response::new(pb::StatShardResponse {
            header: Some(shard.header.clone()),
            chunks: shard.chunks.len() as u64,
            path: format!("model/{id}"),
            corrupt_chunks,
            digest: Bytes::copy_from_slice(&shard.digest()),
        }))
    }

    async fn ping(
        &self,
        _request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {
            node_id: 1,
            zone: "zone-a".into(),
            shards: self.lock().shards.len() as u64,
            used_bytes: 0,
        }))
    }

    type ListShardsStream = ReceiverStream<Result<pb::ListShardsResponse, Status>>;

    async fn list_shards(
        &self,
        _request: Request<pb::ListShardsRequest>,
    ) -> Result<Response<Self::ListShardsStream>, Status> {
        let entries: Vec<pb::ShardEntry> = self
            .lock()
            .shards
            .values()
            .map(|s| pb::ShardEntry {
                id: s.header.id.clone(),
                chunks: s.chunks.len() as u64,
                bytes: s.file_bytes(),
                lease_id: s.header.lease_id,
                digest: Bytes::copy_from_slice(&s.digest()),
            })
            .collect();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            // Batches of two, so listings of several shards span several messages.
            for batch in entries.chunks(2) {
                let message = pb::ListShardsResponse {
                    shards: batch.to_vec(),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn start_scrub(
        &self,
        _request: Request<pb::StartScrubRequest>,
    ) -> Result<Response<pb::StartScrubResponse>, Status> {
        Err(Status::unimplemented("the model has no scrubber"))
    }

    async fn scrub_status(
        &self,
        _request: Request<pb::ScrubStatusRequest>,
    ) -> Result<Response<pb::ScrubStatusResponse>, Status> {
        Err(Status::unimplemented("the model has no scrubber"))
    }
}
