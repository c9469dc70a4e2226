//! The pipeline against six real in-process data nodes, two in each of three zones.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rand::RngCore;
use tessera_client::DataClient;
use tessera_core::checksum::{ChecksumAlgorithm, checksum_of};
use tessera_core::etag::md5_of;
use tessera_core::names::{NodeId, ZoneName};
use tessera_data::DataConfig;
use tessera_proto::meta::v1 as pb;
use tessera_runtime::Shutdown;

use super::*;
use crate::nodes::{DataNodeView, NodeDirectory};

const CHUNK: u32 = 8 * 1024;
/// RS(3,3) with 8 KiB chunks.
const STRIPE: u64 = 3 * CHUNK as u64;
const THRESHOLD: u64 = 16 * 1024;
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

struct TestNode {
    /// As the directory lists it: the address of its proxy.
    view: DataNodeView,
    dir: PathBuf,
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
struct Cluster {
    _root: tempfile::TempDir,
    nodes: Vec<TestNode>,
    directory: NodeDirectory,
    data: DataClient,
}

impl Cluster {
    async fn start() -> Cluster {
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

    fn store(&self) -> BlobStore {
        self.store_with(BlobStoreConfig {
            chunk_size: CHUNK,
            inline_threshold: THRESHOLD,
            ..BlobStoreConfig::default()
        })
    }

    fn store_with(&self, config: BlobStoreConfig) -> BlobStore {
        BlobStore::new(self.data.clone(), self.directory.clone(), config)
    }

    /// Severs every connection to node `id` (1-based) at once, mid-stream or not.
    fn cut(&self, id: u64) {
        self.nodes[(id - 1) as usize].proxy.cut();
    }

    /// Stops node `id` (1-based) and waits until it no longer answers.
    async fn kill(&mut self, id: u64) {
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
    fn set_down(&self, down: &[u64]) {
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

    fn shard_path(&self, blob: &pb::Blob, index: u32) -> PathBuf {
        let erasure = erasure_of(blob);
        let placement = erasure
            .shards
            .iter()
            .find(|s| s.shard_index == index)
            .expect("shard stored");
        let hex = hex::encode(&erasure.data_id);
        self.nodes[(placement.node_id - 1) as usize]
            .dir
            .join("shards")
            .join(&hex[..2])
            .join(format!("{hex}.{index}"))
    }

    fn delete_shard(&self, blob: &pb::Blob, index: u32) {
        std::fs::remove_file(self.shard_path(blob, index)).expect("delete shard file");
    }

    /// Flips one byte inside chunk `chunk` of a shard file (64-byte header, then records of
    /// chunk data plus a 32-byte hash).
    fn corrupt_shard(&self, blob: &pb::Blob, index: u32, chunk: u64) {
        let path = self.shard_path(blob, index);
        let mut bytes = std::fs::read(&path).expect("read shard file");
        let offset = 64 + chunk as usize * (CHUNK as usize + 32) + 100;
        bytes[offset] ^= 0x5a;
        std::fs::write(&path, bytes).expect("write shard file");
    }

    /// Committed shard files on all nodes.
    fn committed_files(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| count_files(&n.dir.join("shards")))
            .sum()
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

fn erasure_of(blob: &pb::Blob) -> &pb::ErasureBlob {
    match &blob.storage {
        Some(pb::blob::Storage::Erasure(e)) => e,
        other => panic!("not an erasure blob: {other:?}"),
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    data
}

/// The body as a stream of pieces of `piece` bytes (so pieces straddle stripe boundaries).
fn body(
    data: &[u8],
    piece: usize,
) -> impl futures::Stream<Item = Result<Bytes, BodyError>> + Send + Unpin + use<> {
    let pieces: Vec<Result<Bytes, BodyError>> = data
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces)
}

fn opts(len: usize) -> WriteOptions {
    WriteOptions {
        expected_len: Some(len as u64),
        checksums: vec![ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Sha256],
        ..WriteOptions::default()
    }
}

async fn read_all(
    store: &BlobStore,
    blob: &pb::Blob,
    range: Range<u64>,
) -> Result<Vec<u8>, PipelineError> {
    let mut stream = store.read(blob, range);
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

fn assert_sync<T: Send + Sync>(_: &T) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_every_size_round_trip() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let sizes = [
        0,
        1,
        THRESHOLD as usize,
        THRESHOLD as usize + 1,
        STRIPE as usize,
        3 * STRIPE as usize + 1,
        10 * 1024 * 1024 + 7,
    ];
    for size in sizes {
        tracing::info!(
            size,
            "a body of this size reads back byte for byte with its digests"
        );
        let data = random_bytes(size);
        let written = store
            .write(body(&data, 7_000), opts(size))
            .await
            .unwrap_or_else(|e| panic!("write of {size} bytes: {e}"));
        assert_eq!(written.size, size as u64);
        assert_eq!(written.blob.size, size as u64);
        assert_eq!(written.md5, md5_of(&data), "md5 of {size}");
        assert_eq!(
            written.checksums,
            vec![
                (
                    ChecksumAlgorithm::Crc32c,
                    checksum_of(ChecksumAlgorithm::Crc32c, &data)
                ),
                (
                    ChecksumAlgorithm::Sha256,
                    checksum_of(ChecksumAlgorithm::Sha256, &data)
                ),
            ]
        );
        if size as u64 <= THRESHOLD {
            assert_eq!(
                written.blob.storage,
                Some(pb::blob::Storage::InlineData(data.clone())),
                "{size} bytes are inline"
            );
        } else {
            let erasure = erasure_of(&written.blob);
            assert_eq!((erasure.data_shards, erasure.parity_shards), (3, 3));
            assert_eq!(erasure.chunk_size, CHUNK);
            assert_eq!(erasure.shards.len(), 6);
            assert!(!erasure.degraded);
            let mut nodes: Vec<u64> = erasure.shards.iter().map(|s| s.node_id).collect();
            nodes.sort_unstable();
            nodes.dedup();
            assert_eq!(nodes.len(), 6, "one shard per node");
        }
        let stream = store.read(&written.blob, 0..size as u64);
        assert_sync(&stream);
        let back = read_all(&store, &written.blob, 0..size as u64)
            .await
            .unwrap_or_else(|e| panic!("read of {size} bytes: {e}"));
        assert!(back == data, "{size} bytes read back differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_range_edge_reads_exact_bytes() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let size = 3 * STRIPE + 1;
    let data = random_bytes(size as usize);
    let written = store
        .write(body(&data, 5_000), opts(data.len()))
        .await
        .expect("write");
    let c = u64::from(CHUNK);
    let ranges = [
        0..1,
        size - 1..size,
        0..size,
        STRIPE - 1..STRIPE + 1,
        c - 1..c + 1,
        size / 2..size / 2 + 1,
        STRIPE..2 * STRIPE,
        3 * STRIPE..size,
        1000..2 * STRIPE + 5,
        5..c - 5,
        7..7,
    ];
    for range in ranges {
        let back = read_all(&store, &written.blob, range.clone())
            .await
            .unwrap_or_else(|e| panic!("read of {range:?}: {e}"));
        let (start, end) = (range.start as usize, range.end as usize);
        assert!(back == data[start..end], "range {range:?} differs");
    }

    let small = random_bytes(100);
    let inline = store
        .write(body(&small, 33), opts(100))
        .await
        .expect("write");
    for range in [0..1, 99..100, 10..60, 0..100] {
        let back = read_all(&store, &inline.blob, range.clone())
            .await
            .expect("read");
        assert_eq!(back, small[range.start as usize..range.end as usize]);
    }
    let beyond = read_all(&store, &inline.blob, 50..101).await;
    assert!(
        matches!(beyond, Err(PipelineError::Internal { .. })),
        "{beyond:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_rebuild_around_up_to_m_deleted_shards() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let data = random_bytes(5 * STRIPE as usize + 333);
    let written = store
        .write(body(&data, 10_000), opts(data.len()))
        .await
        .expect("write");
    let size = data.len() as u64;
    // Data shards first: they are the ones a read prefers, so losing them forces rebuilds.
    for (lost, shard) in [0u32, 2, 4].into_iter().enumerate() {
        tracing::info!(
            lost = lost + 1,
            "with up to m shard files deleted, reads are exact"
        );
        cluster.delete_shard(&written.blob, shard);
        let back = read_all(&store, &written.blob, 0..size)
            .await
            .expect("read");
        assert!(back == data, "whole blob after {} lost shards", lost + 1);
        let mid = STRIPE + 10..3 * STRIPE + 20;
        let back = read_all(&store, &written.blob, mid.clone())
            .await
            .expect("read");
        assert!(back == data[mid.start as usize..mid.end as usize]);
    }
    tracing::info!("with m + 1 shard files deleted, the read is unavailable");
    cluster.delete_shard(&written.blob, 1);
    let err = read_all(&store, &written.blob, 0..size).await;
    assert!(
        matches!(
            err,
            Err(PipelineError::ReadUnavailable {
                needed: 3,
                available: 2
            })
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_rebuild_around_up_to_m_corrupt_shards() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let data = random_bytes(5 * STRIPE as usize + 333);
    let written = store
        .write(body(&data, 10_000), opts(data.len()))
        .await
        .expect("write");
    let size = data.len() as u64;
    // Each shard rots in a different stripe, so sources fail in the middle of a read.
    for (lost, (shard, chunk)) in [(1u32, 2u64), (0, 0), (3, 4)].into_iter().enumerate() {
        tracing::info!(
            lost = lost + 1,
            "with up to m shards rotten, reads are exact"
        );
        cluster.corrupt_shard(&written.blob, shard, chunk);
        let back = read_all(&store, &written.blob, 0..size)
            .await
            .expect("read");
        assert!(back == data, "whole blob after {} corrupt shards", lost + 1);
    }
    // A range that avoids every rotten chunk never notices.
    let clean = STRIPE + 1..2 * STRIPE - 1;
    let back = read_all(&store, &written.blob, clean.clone())
        .await
        .expect("read");
    assert!(back == data[clean.start as usize..clean.end as usize]);

    tracing::info!("with m + 1 shards rotten, the read is unavailable");
    cluster.corrupt_shard(&written.blob, 5, 4);
    let err = read_all(&store, &written.blob, 0..size).await;
    assert!(
        matches!(err, Err(PipelineError::ReadUnavailable { needed: 3, .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_one_zone_down_is_degraded_and_reads_back() {
    let mut cluster = Cluster::start().await;
    tracing::info!("zone-c is down: the write goes 3 + 3 to zones a and b, marked degraded");
    cluster.kill(5).await;
    cluster.kill(6).await;
    cluster.set_down(&[5, 6]);
    let store = cluster.store();
    let data = random_bytes(4 * STRIPE as usize + 1);
    let written = store
        .write(body(&data, 9_000), opts(data.len()))
        .await
        .expect("write with a zone down");
    let erasure = erasure_of(&written.blob);
    assert!(erasure.degraded);
    assert_eq!(erasure.shards.len(), 6, "3+3 over four nodes");
    assert!(erasure.shards.iter().all(|s| s.node_id <= 4));
    let back = read_all(&store, &written.blob, 0..data.len() as u64)
        .await
        .expect("read");
    assert!(back == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_two_zones_down_finds_too_few_nodes() {
    let cluster = Cluster::start().await;
    cluster.set_down(&[3, 4, 5, 6]);
    let store = cluster.store();
    let data = random_bytes(2 * STRIPE as usize);
    let err = store.write(body(&data, 9_000), opts(data.len())).await;
    assert!(
        matches!(err, Err(PipelineError::InsufficientNodes { shards: 6, .. })),
        "{err:?}"
    );
    // Small bodies stay inline and need no data node at all.
    let small = random_bytes(10);
    assert!(store.write(body(&small, 10), opts(10)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_unnoticed_loses_its_shard_but_not_the_write() {
    let mut cluster = Cluster::start().await;
    cluster.kill(2).await;
    let store = cluster.store();
    let data = random_bytes(3 * STRIPE as usize + 5);
    let written = store
        .write(body(&data, 9_000), opts(data.len()))
        .await
        .expect("write with a dead node");
    let erasure = erasure_of(&written.blob);
    assert_eq!(erasure.shards.len(), 5);
    assert!(erasure.degraded);
    assert!(erasure.shards.iter().all(|s| s.node_id != 2));
    let node2 = cluster
        .directory
        .snapshot()
        .into_iter()
        .find(|n| n.id == NodeId(2))
        .expect("member");
    assert!(!node2.available, "the failure was reported");
    let back = read_all(&store, &written.blob, 0..data.len() as u64)
        .await
        .expect("read");
    assert!(back == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_bodies_commit_nothing() {
    let cluster = Cluster::start().await;
    let store = cluster.store_with(BlobStoreConfig {
        chunk_size: CHUNK,
        inline_threshold: THRESHOLD,
        body_idle_timeout: Duration::from_millis(300),
        ..BlobStoreConfig::default()
    });
    let data = random_bytes(3 * STRIPE as usize);

    tracing::info!("bodies that break, idle or miss their length fail and commit nothing");
    let short = store.write(body(&data, 9_000), opts(data.len() + 1)).await;
    assert!(
        matches!(short, Err(PipelineError::LengthMismatch { expected, got })
            if expected == data.len() as u64 + 1 && got == data.len() as u64),
        "{short:?}"
    );
    let long = store.write(body(&data, 9_000), opts(data.len() - 1)).await;
    assert!(
        matches!(long, Err(PipelineError::LengthMismatch { .. })),
        "{long:?}"
    );

    let broken = body(&data[..2 * STRIPE as usize], 9_000).chain(futures::stream::iter([Err::<
        Bytes,
        BodyError,
    >(
        "connection reset".into(),
    )]));
    let err = store.write(broken, opts(data.len())).await;
    assert!(
        matches!(err, Err(PipelineError::BodyRead { .. })),
        "{err:?}"
    );

    let stalled = body(&data[..STRIPE as usize * 2], 9_000).chain(futures::stream::pending());
    let err = store.write(stalled, opts(data.len())).await;
    assert!(
        matches!(err, Err(PipelineError::BodyIdle { .. })),
        "{err:?}"
    );

    let limited = WriteOptions {
        max_len: STRIPE,
        ..opts(data.len())
    };
    let err = store.write(body(&data, 9_000), limited).await;
    assert!(
        matches!(err, Err(PipelineError::EntityTooLarge { .. })),
        "{err:?}"
    );
    let unlimited_len = WriteOptions {
        expected_len: None,
        max_len: STRIPE,
        ..opts(0)
    };
    let err = store.write(body(&data, 9_000), unlimited_len).await;
    assert!(
        matches!(err, Err(PipelineError::EntityTooLarge { .. })),
        "{err:?}"
    );

    // Give the nodes a moment to see the streams end; nothing may have been committed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cluster.committed_files(), 0);

    let ok = store.write(body(&data, 9_000), opts(data.len())).await;
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(cluster.committed_files(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_mid_upload_is_dropped_and_the_write_completes() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let data = random_bytes(40 * STRIPE as usize + 11);
    let half = data.len() / 2;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BodyError>>(4);
    let writer = {
        let store = store.clone();
        let opts = opts(data.len());
        tokio::spawn(async move {
            store
                .write(tokio_stream::wrappers::ReceiverStream::new(rx), opts)
                .await
        })
    };
    for piece in data[..half].chunks(10_000) {
        tx.send(Ok(Bytes::copy_from_slice(piece)))
            .await
            .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    tracing::info!("node 3 is cut off mid-upload: the write goes on with five shards");
    cluster.cut(3);
    for piece in data[half..].chunks(10_000) {
        tx.send(Ok(Bytes::copy_from_slice(piece)))
            .await
            .expect("send");
    }
    drop(tx);
    let written = writer
        .await
        .expect("task")
        .expect("write survives one lost node");
    let erasure = erasure_of(&written.blob);
    assert_eq!(erasure.shards.len(), 5);
    assert!(erasure.degraded);
    assert!(erasure.shards.iter().all(|s| s.node_id != 3));
    let back = read_all(&store, &written.blob, 0..data.len() as u64)
        .await
        .expect("read");
    assert!(back == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_mid_read_is_replaced_by_a_spare() {
    let cluster = Cluster::start().await;
    // Shards larger than what the transport buffers ahead of the reader (a 4 MiB HTTP/2
    // stream window), so the cut is sure to land in the middle of the shard stream.
    let chunk = 64 * 1024;
    let store = cluster.store_with(BlobStoreConfig {
        chunk_size: chunk,
        inline_threshold: THRESHOLD,
        ..BlobStoreConfig::default()
    });
    let stripe = 3 * chunk as usize;
    let data = random_bytes(96 * stripe + 3);
    let written = store
        .write(body(&data, 256 * 1024), opts(data.len()))
        .await
        .expect("write");
    let shard0 = erasure_of(&written.blob)
        .shards
        .iter()
        .find(|s| s.shard_index == 0)
        .map(|s| s.node_id)
        .expect("shard 0");

    let mut stream = store.read(&written.blob, 0..data.len() as u64);
    let mut back = Vec::new();
    while back.len() < 2 * stripe {
        let piece = stream.next().await.expect("more bytes").expect("read");
        back.extend_from_slice(&piece);
    }
    tracing::info!("shard 0's node is cut off mid-read: a parity shard takes over");
    cluster.cut(shard0);
    while let Some(piece) = stream.next().await {
        back.extend_from_slice(&piece.expect("read continues from a spare"));
    }
    assert!(back == data);
    let cut = cluster
        .directory
        .snapshot()
        .into_iter()
        .find(|n| n.id == NodeId(shard0))
        .expect("member");
    assert!(!cut.available, "the failure was reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_zone_mid_upload_loses_the_quorum_and_commits_nothing() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let data = random_bytes(40 * STRIPE as usize);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BodyError>>(4);
    let writer = {
        let store = store.clone();
        let opts = opts(data.len());
        tokio::spawn(async move {
            store
                .write(tokio_stream::wrappers::ReceiverStream::new(rx), opts)
                .await
        })
    };
    let half = data.len() / 2;
    for piece in data[..half].chunks(10_000) {
        tx.send(Ok(Bytes::copy_from_slice(piece)))
            .await
            .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    tracing::info!("zone-a is cut off: four shards in two zones cannot survive a zone loss");
    cluster.cut(1);
    cluster.cut(2);
    for piece in data[half..].chunks(10_000) {
        // The write may give up before the body ends; then the channel closes.
        if tx.send(Ok(Bytes::copy_from_slice(piece))).await.is_err() {
            break;
        }
    }
    drop(tx);
    let result = writer.await.expect("task");
    assert!(
        matches!(
            result,
            Err(PipelineError::WriteQuorumLost {
                committed: 0,
                needed: 3
            })
        ),
        "{result:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cluster.committed_files(), 0);
}

#[test]
fn small_blobs_get_chunks_just_large_enough() {
    let layout = tessera_core::layout::Layout::new(3, 3).expect("layout");
    let full = 256 * 1024;
    assert_eq!(super::write::chunk_size_for(full, layout, None), full);
    // 64 KiB over 3 data chunks: 21,846 bytes each, rounded up to 24 KiB.
    assert_eq!(
        super::write::chunk_size_for(full, layout, Some(65_536)),
        24_576
    );
    assert_eq!(super::write::chunk_size_for(full, layout, Some(1)), 4096);
    // Larger than one stripe: the configured size.
    assert_eq!(
        super::write::chunk_size_for(full, layout, Some(10 << 20)),
        full
    );
    assert_eq!(
        super::write::chunk_size_for(full, layout, Some(3 * 256 * 1024)),
        full
    );
}
