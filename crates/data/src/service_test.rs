//! Service tests: a real tonic server on 127.0.0.1:0 over a real store, driven through the
//! real `DataClient`.

use super::*;
use futures::StreamExt;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use tessera_client::{DataClient, DataClientError};
use tessera_core::names::DataId;
use tessera_core::shard_format::chunk_offset;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

/// A data service serving a temp store until dropped.
struct TestNode {
    addr: String,
    store: ShardStore,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ShardStore::open(dir.path()).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = DataServiceImpl::new(store.clone(), 7, "zone-a").into_server();
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
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
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
