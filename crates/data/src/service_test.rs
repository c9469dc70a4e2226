//! Service tests: a real tonic server on 127.0.0.1:0 over a real store, driven through the
//! real `DataClient`.

use super::*;
use crate::scrub::{ScrubConfig, Scrubber};
use crate::scrub_state::{ScrubCursor, save_blocking};
use crate::store::now_ms;
use futures::StreamExt;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::time::Instant;
use tessera_client::{DataClient, DataClientError};
use tessera_core::names::DataId;
use tessera_core::shard_format::chunk_offset;
use tessera_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

/// A data service serving a temp store until dropped. Its scrubber's worker runs only when
/// asked for ([`TestNode::start_scrubbing`]), so other tests see damage stay where they put it;
/// and its state says a pass just ended, so a running worker only checks suspects and
/// requested passes.
struct TestNode {
    addr: String,
    store: ShardStore,
    scrubber: Option<Scrubber>,
    scrub_stop: Shutdown,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ShardStore::open(dir.path()).await.unwrap();
        let just_scrubbed = ScrubCursor {
            pass: 1,
            passes_completed: 1,
            last_pass_started_ms: now_ms(),
            last_pass_finished_ms: now_ms(),
            cursor: String::new(),
        };
        save_blocking(dir.path(), &just_scrubbed).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let config = ScrubConfig {
            rate_bytes_per_sec: 0,
            interval: Duration::from_secs(3600),
        };
        let (scrubber, scrub) = Scrubber::open(store.clone(), config).await.unwrap();
        let service = DataServiceImpl::new(store.clone(), scrub, 7, "zone-a").into_server();
        let server = tokio::spawn(async move {
            server_builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr: addr.to_string(),
            store,
            scrubber: Some(scrubber),
            scrub_stop: Shutdown::new(),
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Runs the scrubber's worker until the node stops.
    fn start_scrubbing(&mut self) {
        let scrubber = self.scrubber.take().expect("scrubber already running");
        tokio::spawn(scrubber.run(self.scrub_stop.clone()));
    }

    async fn stop(mut self) {
        self.scrub_stop.trigger();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

fn data_id(n: u8) -> DataId {
    DataId::from_bytes([n; 16])
}

fn wire_header(id: DataId, shard_index: u32, chunk_size: u32) -> pb::ShardHeader {
    pb::ShardHeader {
        id: Some(shard_id(id, shard_index)),
        data_shards: 3,
        parity_shards: 3,
        chunk_size,
    }
}

fn chunk_data(index: u64, len: u32) -> Bytes {
    (0..len)
        .map(|i| (i as u64 ^ index.wrapping_mul(13)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn msg(m: Msg) -> pb::WriteShardRequest {
    pb::WriteShardRequest { msg: Some(m) }
}

fn chunk_msg(index: u64, data: Bytes) -> pb::WriteShardRequest {
    let blake3 = Bytes::copy_from_slice(blake3::hash(&data).as_bytes());
    msg(Msg::Chunk(pb::ShardChunk {
        index,
        data,
        blake3,
    }))
}

/// Header, `chunks` chunks and (if `commit`) a commit for shard `index` of `id`.
fn shard_messages(
    id: DataId,
    index: u32,
    chunk_size: u32,
    chunks: u64,
    commit: bool,
) -> Vec<pb::WriteShardRequest> {
    let mut out = vec![msg(Msg::Header(wire_header(id, index, chunk_size)))];
    out.extend((0..chunks).map(|i| chunk_msg(i, chunk_data(i, chunk_size))));
    if commit {
        out.push(msg(Msg::Commit(pb::ShardCommit { chunks })));
    }
    out
}

async fn read_all(
    client: &DataClient,
    addr: &str,
    id: pb::ShardId,
    first: u64,
    count: u64,
) -> Result<Vec<pb::ReadShardResponse>, DataClientError> {
    let mut stream = client.read_shard(addr, id, first, count).await?;
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item?);
    }
    Ok(out)
}

fn rejected_with(err: &DataClientError, expected: tonic::Code) -> bool {
    matches!(err, DataClientError::Rejected { code, .. } if *code == expected)
}

#[tokio::test]
async fn a_shard_round_trips_through_the_client() {
    let node = TestNode::start().await;
    let client = DataClient::new();
    let id = data_id(1);
    let messages = shard_messages(id, 2, 4096, 6, true);
    let written = client
        .write_shard(&node.addr, futures::stream::iter(messages))
        .await
        .unwrap();
    assert_eq!(written.chunks, 6);
    assert_eq!(written.bytes, 6 * 4096);

    let chunks = read_all(&client, &node.addr, shard_id(id, 2), 0, 0)
        .await
        .unwrap();
    assert_eq!(chunks.len(), 6);
    for (i, c) in chunks.iter().enumerate() {
        let i = i as u64;
        assert_eq!(c.index, i);
        assert!(!c.corrupt);
        assert_eq!(c.data, chunk_data(i, 4096));
        assert_eq!(c.blake3.as_ref(), blake3::hash(&c.data).as_bytes());
    }
    let middle = read_all(&client, &node.addr, shard_id(id, 2), 2, 3)
        .await
        .unwrap();
    let indexes: Vec<u64> = middle.iter().map(|c| c.index).collect();
    assert_eq!(indexes, vec![2, 3, 4]);

    let stat = client
        .stat_shard(&node.addr, shard_id(id, 2))
        .await
        .unwrap();
    assert_eq!(stat.chunks, 6);
    assert_eq!(stat.header, Some(wire_header(id, 2, 4096)));

    let ping = client.ping(&node.addr).await.unwrap();
    assert_eq!(
        (ping.node_id, ping.zone.as_str(), ping.shards),
        (7, "zone-a", 1)
    );
    assert_eq!(ping.used_bytes, node.store.usage().bytes);

    let deleted = client
        .delete_shard(&node.addr, shard_id(id, 2))
        .await
        .unwrap();
    assert!(deleted.existed);
    let again = client
        .delete_shard(&node.addr, shard_id(id, 2))
        .await
        .unwrap();
    assert!(!again.existed);
    let err = read_all(&client, &node.addr, shard_id(id, 2), 0, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, DataClientError::NotFound { .. }), "{err}");
    let err = client
        .stat_shard(&node.addr, shard_id(id, 2))
        .await
        .unwrap_err();
    assert!(matches!(err, DataClientError::NotFound { .. }), "{err}");
    node.stop().await;
}

#[tokio::test]
async fn megabyte_chunks_fit_the_message_limits() {
    let node = TestNode::start().await;
    let client = DataClient::new();
    let id = data_id(2);
    let mib = 1024 * 1024;
    let messages = shard_messages(id, 0, mib, 5, true);
    client
        .write_shard(&node.addr, futures::stream::iter(messages))
        .await
        .unwrap();
    let chunks = read_all(&client, &node.addr, shard_id(id, 0), 0, 0)
        .await
        .unwrap();
    assert_eq!(chunks.len(), 5);
    assert!(
        chunks
            .iter()
            .all(|c| c.data.len() == mib as usize && !c.corrupt)
    );
    node.stop().await;
}

#[tokio::test]
async fn a_stream_without_commit_stores_nothing() {
    let node = TestNode::start().await;
    let client = DataClient::new();
    let id = data_id(3);
    let messages = shard_messages(id, 0, 512, 3, false);
    let err = client
        .write_shard(&node.addr, futures::stream::iter(messages))
        .await
        .unwrap_err();
    assert!(rejected_with(&err, tonic::Code::InvalidArgument), "{err}");
    let err = client
        .stat_shard(&node.addr, shard_id(id, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, DataClientError::NotFound { .. }), "{err}");
    assert_eq!(node.store.usage().shards, 0);
    node.stop().await;
}

#[tokio::test]
async fn protocol_violations_are_invalid_arguments() {
    let node = TestNode::start().await;
    let client = DataClient::new();
    let id = data_id(4);

    // A chunk whose data does not match its hash.
    let mut bad_hash = shard_messages(id, 0, 512, 2, true);
    if let Some(Msg::Chunk(c)) = bad_hash[2].msg.as_mut() {
        c.blake3 = Bytes::copy_from_slice(blake3::hash(b"something else").as_bytes());
    }
    // Chunks out of order.
    let mut out_of_order = shard_messages(id, 0, 512, 2, true);
    out_of_order.swap(1, 2);
    // A commit that declares more chunks than were sent.
    let mut miscounted = shard_messages(id, 0, 512, 2, false);
    miscounted.push(msg(Msg::Commit(pb::ShardCommit { chunks: 3 })));
    // No header first.
    let headless = vec![chunk_msg(0, chunk_data(0, 512))];
    // A shard index outside the layout.
    let outside = vec![msg(Msg::Header(wire_header(id, 6, 512)))];
    // A data id that is not 16 bytes.
    let short_id = vec![msg(Msg::Header(pb::ShardHeader {
        id: Some(pb::ShardId {
            data_id: Bytes::from_static(b"short"),
            shard_index: 0,
        }),
        ..wire_header(id, 0, 512)
    }))];

    for (name, messages) in [
        ("bad hash", bad_hash),
        ("out of order", out_of_order),
        ("miscounted", miscounted),
        ("headless", headless),
        ("outside", outside),
        ("short id", short_id),
    ] {
        let err = client
            .write_shard(&node.addr, futures::stream::iter(messages))
            .await
            .unwrap_err();
        assert!(
            rejected_with(&err, tonic::Code::InvalidArgument),
            "{name}: {err}"
        );
        assert!(!err.is_retryable());
    }
    assert_eq!(node.store.usage().shards, 0);

    // A range past the end of a stored shard.
    let good = shard_messages(id, 1, 512, 2, true);
    client
        .write_shard(&node.addr, futures::stream::iter(good))
        .await
        .unwrap();
    let err = read_all(&client, &node.addr, shard_id(id, 1), 1, 5)
        .await
        .unwrap_err();
    assert!(rejected_with(&err, tonic::Code::InvalidArgument), "{err}");
    node.stop().await;
}

#[tokio::test]
async fn damage_on_disk_is_reported_never_served() {
    let node = TestNode::start().await;
    let client = DataClient::new();
    let id = data_id(5);
    client
        .write_shard(
            &node.addr,
            futures::stream::iter(shard_messages(id, 0, 512, 3, true)),
        )
        .await
        .unwrap();
    let path = node.store.shard_path(&ShardKey::new(id, 0));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"rot", chunk_offset(512, 1) + 7).unwrap();

    let chunks = read_all(&client, &node.addr, shard_id(id, 0), 0, 0)
        .await
        .unwrap();
    assert_eq!(chunks.len(), 3);
    assert!(!chunks[0].corrupt && !chunks[2].corrupt);
    assert!(chunks[1].corrupt);
    assert!(chunks[1].data.is_empty() && chunks[1].blake3.is_empty());

    // A damaged header: the whole shard is corrupt, for reads and stats alike.
    file.write_all_at(b"\xff\xff\xff\xff", 0).unwrap();
    let err = read_all(&client, &node.addr, shard_id(id, 0), 0, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, DataClientError::Corrupt { .. }), "{err}");
    let err = client
        .stat_shard(&node.addr, shard_id(id, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, DataClientError::Corrupt { .. }), "{err}");
    node.stop().await;
}

#[tokio::test]
async fn a_conflicting_header_is_refused() {
    let node = TestNode::start().await;
    let client = DataClient::new();
    let id = data_id(6);
    client
        .write_shard(
            &node.addr,
            futures::stream::iter(shard_messages(id, 0, 512, 1, true)),
        )
        .await
        .unwrap();
    // The same shard again: an idempotent retry.
    client
        .write_shard(
            &node.addr,
            futures::stream::iter(shard_messages(id, 0, 512, 1, true)),
        )
        .await
        .unwrap();
    let err = client
        .write_shard(
            &node.addr,
            futures::stream::iter(shard_messages(id, 0, 1024, 1, true)),
        )
        .await
        .unwrap_err();
    assert!(rejected_with(&err, tonic::Code::AlreadyExists), "{err}");
    node.stop().await;
}

#[tokio::test]
async fn a_stopped_node_is_unavailable() {
    let node = TestNode::start().await;
    let client = DataClient::new();
    client.ping(&node.addr).await.unwrap();
    let addr = node.addr.clone();
    node.stop().await;
    let err = client.ping(&addr).await.unwrap_err();
    assert!(matches!(err, DataClientError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
}

/// Polls the node's scrub status until `done` holds (deadline 10 s).
async fn scrub_status_until(
    client: &DataClient,
    addr: &str,
    what: &str,
    done: impl Fn(&pb::ScrubStatusResponse) -> bool,
) -> pb::ScrubStatusResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.scrub_status(addr).await.unwrap();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn write_via(client: &DataClient, addr: &str, id: DataId, index: u32, chunks: u64) {
    client
        .write_shard(
            addr,
            futures::stream::iter(shard_messages(id, index, 512, chunks, true)),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn list_shards_lists_exactly_the_stored_shards() {
    let mut node = TestNode::start().await;
    node.start_scrubbing();
    let client = DataClient::new();
    let before = now_ms();
    write_via(&client, &node.addr, data_id(10), 0, 3).await;
    write_via(&client, &node.addr, data_id(11), 2, 0).await;
    write_via(&client, &node.addr, data_id(12), 1, 5).await;
    write_via(&client, &node.addr, data_id(13), 0, 1).await;
    // Enough more shards for several batches, made directly on disk.
    let many = 2 * LIST_BATCH + 500;
    for i in 0..many {
        let mut bytes = [0xaa; 16];
        bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let header = ShardFileHeader {
            data_id: DataId::from_bytes(bytes),
            shard_index: 0,
            data_shards: 3,
            parity_shards: 3,
            chunk_size: 512,
        };
        let path = node.store.shard_path(&ShardKey::of_header(&header));
        std::fs::write(path, header.encode()).unwrap();
    }
    // One shard quarantined, one with a damaged header.
    node.store
        .quarantine(ShardKey::new(data_id(12), 1), "test")
        .await
        .unwrap()
        .unwrap();
    let damaged = node.store.shard_path(&ShardKey::new(data_id(13), 0));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&damaged)
        .unwrap()
        .write_all_at(b"XXXX", 0)
        .unwrap();

    let listed = client.list_shards(&node.addr).await.unwrap();
    assert_eq!(listed.len(), many + 2);
    let find = |id: DataId, index: u32| {
        listed
            .iter()
            .find(|e| e.id == Some(shard_id(id, index)))
            .cloned()
    };
    let a = find(data_id(10), 0).expect("shard 10.0 listed");
    assert_eq!(a.chunks, 3);
    assert_eq!(a.bytes, 64 + 3 * (512 + 32));
    assert!(a.modified_ms >= before - 1000 && a.modified_ms <= now_ms() + 1000);
    let b = find(data_id(11), 2).expect("shard 11.2 listed");
    assert_eq!((b.chunks, b.bytes), (0, 64));
    assert!(find(data_id(12), 1).is_none(), "quarantined shard listed");
    assert!(find(data_id(13), 0).is_none(), "damaged shard listed");

    // The damaged shard went to the scrubber, which quarantines it without a pass.
    let status = scrub_status_until(&client, &node.addr, "damaged header quarantined", |s| {
        s.corrupt_shards_found == 1
    })
    .await;
    assert_eq!(status.passes_completed, 1);
    let finding = &status.recent_corrupt[0];
    assert_eq!(finding.id, Some(shard_id(data_id(13), 0)));
    assert_eq!(finding.reason, "header");
    assert!(!damaged.exists());
    node.stop().await;
}

#[tokio::test]
async fn a_corrupt_read_gets_the_shard_quarantined_and_then_rewritten() {
    let mut node = TestNode::start().await;
    node.start_scrubbing();
    let client = DataClient::new();
    let id = data_id(20);
    write_via(&client, &node.addr, id, 0, 3).await;
    let path = node.store.shard_path(&ShardKey::new(id, 0));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(b"rot", chunk_offset(512, 1) + 9)
        .unwrap();

    let chunks = read_all(&client, &node.addr, shard_id(id, 0), 0, 0)
        .await
        .unwrap();
    assert!(chunks[1].corrupt);
    let status = scrub_status_until(&client, &node.addr, "rotten shard quarantined", |s| {
        s.corrupt_shards_found == 1
    })
    .await;
    assert_eq!(status.passes_completed, 1, "no pass was needed");
    let finding = &status.recent_corrupt[0];
    assert_eq!(finding.id, Some(shard_id(id, 0)));
    assert_eq!((finding.reason.as_str(), finding.chunk), ("chunk_hash", 1));
    assert!(finding.found_ms > 0);

    // Quarantined: missing for reads, stats and listings, as repair will see it.
    let err = read_all(&client, &node.addr, shard_id(id, 0), 0, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, DataClientError::NotFound { .. }), "{err}");
    let err = client
        .stat_shard(&node.addr, shard_id(id, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, DataClientError::NotFound { .. }), "{err}");
    assert!(client.list_shards(&node.addr).await.unwrap().is_empty());
    assert_eq!(node.store.usage().shards, 0);

    // Repair writes it again on the same node.
    write_via(&client, &node.addr, id, 0, 3).await;
    let chunks = read_all(&client, &node.addr, shard_id(id, 0), 0, 0)
        .await
        .unwrap();
    assert!(chunks.iter().all(|c| !c.corrupt));
    assert_eq!(chunks[1].data, chunk_data(1, 512));
    assert_eq!(client.list_shards(&node.addr).await.unwrap().len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn start_scrub_runs_a_pass_that_reaches_its_number() {
    let mut node = TestNode::start().await;
    node.start_scrubbing();
    let client = DataClient::new();
    for n in 30..33 {
        write_via(&client, &node.addr, data_id(n), 0, 2).await;
    }
    let path = node.store.shard_path(&ShardKey::new(data_id(31), 0));
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();

    let idle = client.scrub_status(&node.addr).await.unwrap();
    assert_eq!((idle.passes_completed, idle.running), (1, false));
    let started = client.start_scrub(&node.addr).await.unwrap();
    assert_eq!(started.pass, 2);
    let status = scrub_status_until(&client, &node.addr, "requested pass done", |s| {
        s.passes_completed >= started.pass
    })
    .await;
    assert_eq!(status.passes_completed, 2);
    assert!(!status.running);
    assert!(status.cursor.is_empty());
    assert_eq!(status.shards_checked, 3);
    assert!(status.last_pass_finished_ms >= status.last_pass_started_ms);
    let reasons: Vec<_> = status
        .recent_corrupt
        .iter()
        .map(|f| (f.id.clone(), f.reason.as_str()))
        .collect();
    assert_eq!(reasons, vec![(Some(shard_id(data_id(31), 0)), "truncated")]);
    node.stop().await;
}

#[tokio::test]
async fn verify_counts_corrupt_chunks_and_quarantines_nothing() {
    let node = TestNode::start().await;
    let client = DataClient::new();
    let id = data_id(40);
    write_via(&client, &node.addr, id, 1, 4).await;
    let path = node.store.shard_path(&ShardKey::new(id, 1));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"!", chunk_offset(512, 0)).unwrap();
    file.write_all_at(b"!", chunk_offset(512, 3) + 100).unwrap();

    let stat = client
        .stat_shard(&node.addr, shard_id(id, 1))
        .await
        .unwrap();
    assert_eq!((stat.chunks, stat.corrupt_chunks), (4, 0));
    assert_eq!(stat.path, path.display().to_string());
    let verified = client
        .verify_shard(&node.addr, shard_id(id, 1))
        .await
        .unwrap();
    assert_eq!((verified.chunks, verified.corrupt_chunks), (4, 2));
    assert_eq!(verified.path, stat.path);
    assert!(path.exists());
    assert_eq!(client.list_shards(&node.addr).await.unwrap().len(), 1);
    node.stop().await;
}
