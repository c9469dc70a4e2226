//! The pipeline tests' cluster: six real in-process data nodes, two in each of three zones,
//! each behind a TCP relay that can sever its connections, and a lying node (a gRPC relay in
//! front of a real node that alters what it serves, as a buggy or malicious node would).
//!
//! Invariant: every node, relay and temp dir belongs to one `Cluster` and goes with it; ports
//! come from binding :0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rand::RngCore;
use tessera_client::DataClient;
use tessera_client::data::ListedShard;
use tessera_core::blob::{Blob, BlobStorage, ErasureBlob, ShardCopy};
use tessera_core::checksum::ChecksumAlgorithm;
use tessera_core::layout::Layout;
use tessera_core::names::{DataId, NodeId, ZoneName};
use tessera_core::shard_file::{ShardDigest, ShardDigester, chunk_hash};
use tessera_core::stripe::Codec;
use tessera_data::DataConfig;
use tessera_proto::data::v1 as pb;
use tessera_proto::data::v1::data_service_client::DataServiceClient;
use tessera_proto::data::v1::data_service_server::{DataService, DataServiceServer};
use tessera_runtime::Shutdown;
use tonic::{Request, Response, Status, Streaming};

use super::*;
use crate::nodes::{DataNodeView, NodeDirectory};

pub(super) const CHUNK: u32 = 8 * 1024;
/// RS(3,3) with 8 KiB chunks.
pub(super) const STRIPE: u64 = 3 * CHUNK as u64;
pub(super) const THRESHOLD: u64 = 16 * 1024;
/// The lease id the tests' writes hold.
pub(super) const LEASE: u64 = 77;
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

pub(super) struct TestNode {
    /// As the directory lists it: the address of its relay.
    pub(super) view: DataNodeView,
    /// The node's own address (no relay).
    pub(super) direct: String,
    pub(super) dir: PathBuf,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
    proxy: Proxy,
}

/// A TCP relay in front of a data node, so a test can sever the node's connections at any
/// moment (mid-stream), as a crash or a network partition would.
struct Proxy {
    accept: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> (Proxy, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let tracked = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().expect("lock").push(relay.abort_handle());
            }
        });
        (
            Proxy {
                accept,
                connections,
            },
            addr,
        )
    }

    /// Stops accepting and drops every open connection.
    fn cut(&self) {
        self.accept.abort();
        for relay in self.connections.lock().expect("lock").drain(..) {
            relay.abort();
        }
    }
}

/// Six data nodes on ports from binding :0, each with its own directory under one temp dir.
pub(super) struct Cluster {
    _root: tempfile::TempDir,
    pub(super) nodes: Vec<TestNode>,
    pub(super) directory: NodeDirectory,
    pub(super) data: DataClient,
}

impl Cluster {
    pub(super) async fn start() -> Cluster {
        // Logs go to the test's captured output, shown only when it fails.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "tessera_gateway=debug,warn".into()),
            )
            .try_init();
        // tmpfs when there is one: six stores of 256 directories each are slow to remove
        // from some disks, and these tests do not need durable files.
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let mut nodes = Vec::new();
        for i in 0..6u64 {
            let zone = ZONES[(i / 2) as usize];
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let dir = root.path().join(format!("node-{}", i + 1));
            let config = DataConfig {
                node_id: i + 1,
                zone: zone.to_owned(),
                listen: addr,
                data_dir: dir.clone(),
                // Nothing listens there: registration retries in the background while the
                // node serves, which is all these tests need.
                meta_endpoints: vec!["127.0.0.1:9".to_owned()],
                advertise: None,
                ..DataConfig::default()
            };
            let (proxy, proxy_addr) = Proxy::start(addr).await;
            let shutdown = Shutdown::new();
            let stop = shutdown.clone();
            let task = tokio::spawn(async move {
                if let Err(e) = tessera_data::run_on(config, listener, stop).await {
                    panic!("data node failed: {e}");
                }
            });
            nodes.push(TestNode {
                view: DataNodeView {
                    id: NodeId(i + 1),
                    zone: ZoneName(zone.to_owned()),
                    addr: proxy_addr,
                    available: true,
                },
                direct: addr.to_string(),
                dir,
                shutdown,
                task,
                proxy,
            });
        }
        let data = DataClient::new();
        for node in &nodes {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while data.ping(&node.view.addr).await.is_err() {
                assert!(tokio::time::Instant::now() < deadline, "node not ready");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let directory = NodeDirectory::fixed(nodes.iter().map(|n| n.view.clone()).collect());
        Cluster {
            _root: root,
            nodes,
            directory,
            data,
        }
    }

    pub(super) fn store(&self) -> BlobStore {
        self.store_with(BlobStoreConfig {
            chunk_size: CHUNK,
            inline_threshold: THRESHOLD,
            ..BlobStoreConfig::default()
        })
    }

    pub(super) fn store_with(&self, config: BlobStoreConfig) -> BlobStore {
        BlobStore::new(self.data.clone(), self.directory.clone(), config)
    }

    /// The node `id` (1-based).
    pub(super) fn node(&self, id: NodeId) -> &TestNode {
        &self.nodes[(id.0 - 1) as usize]
    }

    /// Severs every connection to node `id` (1-based) at once, mid-stream or not.
    pub(super) fn cut(&self, id: u64) {
        self.nodes[(id - 1) as usize].proxy.cut();
    }

    /// Stops node `id` (1-based) and waits until it no longer answers.
    pub(super) async fn kill(&mut self, id: u64) {
        let node = &mut self.nodes[(id - 1) as usize];
        node.proxy.cut();
        node.shutdown.trigger();
        if tokio::time::timeout(Duration::from_secs(5), &mut node.task)
            .await
            .is_err()
        {
            node.task.abort();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.data.ping(&node.view.addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "node still answers");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Tells the directory (as meta would) which nodes are healthy.
    pub(super) fn set_down(&self, down: &[u64]) {
        let views = self
            .nodes
            .iter()
            .map(|n| DataNodeView {
                available: !down.contains(&n.view.id.0),
                ..n.view.clone()
            })
            .collect();
        self.directory.set_members(views);
    }

    /// Lists node `id` at `addr` instead of its relay (a lying node in front of it, say).
    pub(super) fn reroute(&self, id: NodeId, addr: &str) {
        let views = self
            .nodes
            .iter()
            .map(|n| DataNodeView {
                addr: if n.view.id == id {
                    addr.to_owned()
                } else {
                    n.view.addr.clone()
                },
                ..n.view.clone()
            })
            .collect();
        self.directory.set_members(views);
    }

    /// The placed copy of shard `index` of `blob`.
    pub(super) fn copy_of(blob: &Blob, index: u32) -> ShardCopy {
        *erasure_of(blob)
            .copies_of(index)
            .next()
            .expect("shard placed")
    }

    pub(super) fn shard_path(&self, blob: &Blob, index: u32) -> PathBuf {
        let erasure = erasure_of(blob);
        let copy = Self::copy_of(blob, index);
        let name = format!("{}.{}.{}", erasure.data_id, index, copy.generation);
        self.node(copy.node)
            .dir
            .join("shards")
            .join(&name[..2])
            .join(name)
    }

    pub(super) fn delete_shard(&self, blob: &Blob, index: u32) {
        std::fs::remove_file(self.shard_path(blob, index)).expect("delete shard file");
    }

    /// Flips one byte inside chunk `chunk` of a shard file (128-byte header, then the chunks).
    pub(super) fn corrupt_shard(&self, blob: &Blob, index: u32, chunk: u64) {
        let path = self.shard_path(blob, index);
        let mut bytes = std::fs::read(&path).expect("read shard file");
        let chunk_size = erasure_of(blob).chunk_size as usize;
        let offset = 128 + chunk as usize * chunk_size + 100;
        bytes[offset] ^= 0x5a;
        std::fs::write(&path, bytes).expect("write shard file");
    }

    /// Every shard every node lists, by node.
    pub(super) async fn listed(&self) -> BTreeMap<NodeId, Vec<ListedShard>> {
        let mut all = BTreeMap::new();
        for node in &self.nodes {
            let listed = self
                .data
                .list_shards(&node.direct)
                .await
                .expect("list shards");
            all.insert(node.view.id, listed);
        }
        all
    }

    /// How many shards the nodes list in all.
    pub(super) async fn listed_count(&self) -> usize {
        self.listed().await.values().map(Vec::len).sum()
    }
}

pub(super) fn erasure_of(blob: &Blob) -> &ErasureBlob {
    match &blob.storage {
        BlobStorage::Erasure(e) => e,
        BlobStorage::Inline(_) => panic!("not an erasure blob"),
    }
}

pub(super) fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    data
}

/// The body as a stream of pieces of `piece` bytes (so pieces straddle stripe boundaries).
pub(super) fn body(
    data: &[u8],
    piece: usize,
) -> impl futures::Stream<Item = Result<Bytes, BodyError>> + Send + Unpin + use<> {
    let pieces: Vec<Result<Bytes, BodyError>> = data
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces)
}

pub(super) fn opts(len: usize) -> WriteOptions {
    WriteOptions {
        expected_len: Some(len as u64),
        checksums: vec![ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Sha256],
        lease_id: Some(LEASE),
        target: target(),
        ..WriteOptions::default()
    }
}

/// The object every test blob is written for.
pub(super) fn target() -> SealTarget {
    SealTarget::new("bkt", "key", 1)
}

/// Every byte of a stream, or its first error.
pub(super) async fn collect(mut stream: BlobReadStream) -> Result<Vec<u8>, PipelineError> {
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

pub(super) async fn read_all(
    store: &BlobStore,
    blob: &Blob,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, PipelineError> {
    collect(store.read(blob, &target(), range)).await
}

/// The digests every shard of a blob of `data` (stored as is) must have, coded as the writer
/// codes it.
pub(super) fn expected_digests(
    data: &[u8],
    layout: Layout,
    chunk_size: u32,
    data_id: DataId,
) -> Vec<ShardDigest> {
    let codec = Codec::new(layout).expect("codec");
    let stripe = layout.data_shards() as usize * chunk_size as usize;
    let mut digesters: Vec<ShardDigester> = (0..layout.total_shards())
        .map(|i| ShardDigester::new(&data_id, i))
        .collect();
    for (s, piece) in data.chunks(stripe).enumerate() {
        let chunks = codec
            .encode_stripe(piece, chunk_size as usize)
            .expect("encode");
        for (i, chunk) in chunks.iter().enumerate() {
            let hash = chunk_hash(&data_id, i as u32, s as u64, chunk);
            digesters[i].push(&hash);
        }
    }
    digesters.into_iter().map(ShardDigester::finish).collect()
}

/// What a lying node does to the reads of one copy.
#[derive(Clone, Debug)]
pub(super) enum Lie {
    /// Serves this other copy (another blob's, another generation's) in its place: its
    /// table and its chunks.
    ServeOther(pb::ShardId),
    /// Swaps the bytes of chunks `n` and `n + 1` (each keeps its index).
    SwapChunks(u64),
}

/// A data node that lies: a gRPC relay in front of a real node that forwards every call, but
/// serves the reads of chosen copies altered. It stands for a buggy or malicious node, which
/// no honest node's own checks can simulate.
#[derive(Clone)]
pub(super) struct LyingNode {
    upstream: String,
    lies: Arc<Mutex<Vec<(pb::ShardId, Lie)>>>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn same_copy(a: &pb::ShardId, b: &pb::ShardId) -> bool {
    a.data_id == b.data_id && a.shard_index == b.shard_index && a.generation == b.generation
}

impl LyingNode {
    /// Serves a lying relay to the node at `upstream` on a fresh port; its address.
    pub(super) async fn start(upstream: &str) -> (LyingNode, String) {
        let node = LyingNode {
            upstream: upstream.to_owned(),
            lies: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let service = DataServiceServer::new(node.clone())
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (node, addr)
    }

    /// From now on, reads of `copy` are served with `lie`.
    pub(super) fn lie_about(&self, copy: pb::ShardId, lie: Lie) {
        self.lies.lock().expect("lock").push((copy, lie));
    }

    async fn client(&self) -> Result<DataServiceClient<tonic::transport::Channel>, Status> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.upstream))
            .map_err(|e| Status::internal(e.to_string()))?
            .connect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(DataServiceClient::new(channel)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20))
    }

    fn lie_for(&self, id: Option<&pb::ShardId>) -> Option<Lie> {
        let id = id?;
        let lies = self.lies.lock().expect("lock");
        lies.iter()
            .find(|(copy, _)| same_copy(copy, id))
            .map(|(_, lie)| lie.clone())
    }
}

#[tonic::async_trait]
impl DataService for LyingNode {
    async fn write_shard(
        &self,
        request: Request<Streaming<pb::WriteShardRequest>>,
    ) -> Result<Response<pb::WriteShardResponse>, Status> {
        let inbound = request
            .into_inner()
            .take_while(|m| futures::future::ready(m.is_ok()))
            .filter_map(|m| futures::future::ready(m.ok()));
        self.client().await?.write_shard(inbound).await
    }

    type ReadShardStream = BoxStream<pb::ReadShardResponse>;

    async fn read_shard(
        &self,
        request: Request<pb::ReadShardRequest>,
    ) -> Result<Response<Self::ReadShardStream>, Status> {
        let mut req = request.into_inner();
        let lie = self.lie_for(req.id.as_ref());
        if let Some(Lie::ServeOther(other)) = &lie {
            req.id = Some(other.clone());
        }
        let upstream = self.client().await?.read_shard(req).await?.into_inner();
        let stream: Self::ReadShardStream = match lie {
            Some(Lie::SwapChunks(n)) => Box::pin(async_stream::stream! {
                let mut upstream = upstream;
                let mut held: Option<pb::ReadShardResponse> = None;
                while let Some(message) = upstream.next().await {
                    let mut message = match message {
                        Ok(message) => message,
                        Err(status) => {
                            yield Err(status);
                            return;
                        }
                    };
                    if message.hashes.is_none() && message.index == n {
                        held = Some(message);
                        continue;
                    }
                    if let Some(mut first) = held.take() {
                        std::mem::swap(&mut first.data, &mut message.data);
                        yield Ok(first);
                    }
                    yield Ok(message);
                }
                if let Some(first) = held {
                    yield Ok(first);
                }
            }),
            Some(Lie::ServeOther(_)) | None => Box::pin(upstream),
        };
        Ok(Response::new(stream))
    }

    async fn delete_shard(
        &self,
        request: Request<pb::DeleteShardRequest>,
    ) -> Result<Response<pb::DeleteShardResponse>, Status> {
        self.client()
            .await?
            .delete_shard(request.into_inner())
            .await
    }

    async fn stat_shard(
        &self,
        request: Request<pb::StatShardRequest>,
    ) -> Result<Response<pb::StatShardResponse>, Status> {
        self.client().await?.stat_shard(request.into_inner()).await
    }

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        self.client().await?.ping(request.into_inner()).await
    }

    type ListShardsStream = BoxStream<pb::ListShardsResponse>;

    async fn list_shards(
        &self,
        request: Request<pb::ListShardsRequest>,
    ) -> Result<Response<Self::ListShardsStream>, Status> {
        let upstream = self
            .client()
            .await?
            .list_shards(request.into_inner())
            .await?;
        Ok(Response::new(
            Box::pin(upstream.into_inner()) as Self::ListShardsStream
        ))
    }

    async fn start_scrub(
        &self,
        request: Request<pb::StartScrubRequest>,
    ) -> Result<Response<pb::StartScrubResponse>, Status> {
        self.client().await?.start_scrub(request.into_inner()).await
    }

    async fn scrub_status(
        &self,
        request: Request<pb::ScrubStatusRequest>,
    ) -> Result<Response<pb::ScrubStatusResponse>, Status> {
        self.client()
            .await?
            .scrub_status(request.into_inner())
            .await
    }
}
