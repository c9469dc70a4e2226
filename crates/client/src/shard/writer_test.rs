use std::time::Duration;

use bytes::Bytes;
use tessera_core::blob::Generation;
use tessera_core::layout::Layout;
use tessera_core::names::{DataId, NodeId};
use tessera_core::shard_file::{ShardDigester, chunk_hash};

use super::*;
use crate::data::{DataClient, DataClientError, ShardId};
use crate::testing::data_node::{DataModel, StoredShard, WriteFault};
use crate::testing::eventually;

const CHUNK: u32 = 1024;

fn id(generation: u64) -> ShardId {
    ShardId::new(
        DataId::from_bytes([9; 16]),
        2,
        Generation::new(generation).expect("nonzero"),
    )
}

fn spec(id: ShardId) -> ShardWriteSpec {
    ShardWriteSpec::new(id, Layout::new(2, 1).expect("layout"), CHUNK, 77)
}

fn chunk(fill: u8) -> Bytes {
    Bytes::from(vec![fill; CHUNK as usize])
}

/// The digest of `chunks` written as shard `id`, computed independently of the writer.
fn expected_digest(id: ShardId, chunks: &[Bytes]) -> [u8; 32] {
    let mut digester = ShardDigester::new(&id.data_id, id.shard_index);
    for (i, c) in chunks.iter().enumerate() {
        digester.push(&chunk_hash(&id.data_id, id.shard_index, i as u64, c));
    }
    digester.finish()
}

async fn write_all(data: &DataClient, addr: &str, id: ShardId, chunks: &[Bytes]) -> WrittenShard {
    let mut writer = ShardWriter::open(data, addr, spec(id)).expect("open");
    for c in chunks {
        writer.send_chunk(c.clone()).await.expect("send");
    }
    writer.commit().await.expect("commit")
}

#[tokio::test]
async fn a_committed_shard_is_stored_with_its_digest_and_listed_by_generation() {
    let model = DataModel::default();
    let addr = model.serve().await;
    let data = DataClient::new();
    let chunks = [chunk(1), chunk(2), chunk(3)];
    let written = write_all(&data, &addr, id(5), &chunks).await;
    assert_eq!(written.id, id(5));
    assert_eq!(written.chunks, 3);
    assert_eq!(written.digest, expected_digest(id(5), &chunks));
    {
        let state = model.lock();
        let stored = state.shards.get(&id(5)).expect("stored");
        assert_eq!(stored.chunks, chunks.to_vec());
        assert_eq!(stored.header.lease_id, 77, "the lease goes into the header");
        assert_eq!((state.committed, state.discarded), (1, 0));
    }

    let stat = data.stat_shard(&addr, &id(5)).await.expect("stat");
    assert_eq!(
        (stat.chunks, stat.digest, stat.lease_id),
        (3, written.digest, 77)
    );
    assert_eq!(
        (stat.data_shards, stat.parity_shards, stat.chunk_size),
        (2, 1, CHUNK)
    );
    let verified = data.verify_shard(&addr, &id(5)).await.expect("verify");
    assert_eq!(verified.corrupt_chunks, 0);

    // A second generation of the same shard is another file.
    write_all(&data, &addr, id(6), &chunks[..1]).await;
    model.put(StoredShard::new(id(7), CHUNK, 3, vec![chunk(4)]));
    let listed = data.list_shards(&addr).await.expect("list");
    let mut generations: Vec<_> = listed.iter().map(|s| s.id.generation.get()).collect();
    generations.sort_unstable();
    assert_eq!(generations, [5, 6, 7], "batched listing, every entry typed");
    let five = listed.iter().find(|s| s.id == id(5)).expect("listed");
    assert_eq!(
        (five.chunks, five.lease_id, five.digest),
        (3, 77, written.digest)
    );
    let shard_ref = five.shard_ref(NodeId(4));
    assert_eq!(
        (
            shard_ref.copy.node,
            shard_ref.copy.generation,
            shard_ref.lease_id
        ),
        (NodeId(4), id(5).generation, 77)
    );

    // Deletes name exactly one generation.
    assert!(!data.delete_shard(&addr, &id(8)).await.expect("delete"));
    assert!(data.delete_shard(&addr, &id(6)).await.expect("delete"));
    assert!(model.lock().shards.contains_key(&id(5)));
    let err = data.stat_shard(&addr, &id(6)).await.expect_err("deleted");
    assert!(
        matches!(
            &err,
            DataClientError::NotFound { addr: a, message }
                if *a == addr && *message == format!("{} not stored", id(6))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_existing_id_is_refused_and_kept() {
    let model = DataModel::default();
    let addr = model.serve().await;
    let data = DataClient::new();
    model.put(StoredShard::new(id(5), CHUNK, 1, vec![chunk(1)]));
    let mut writer = ShardWriter::open(&data, &addr, spec(id(5))).expect("open");
    // The node refuses at the header; the refusal surfaces on a send or at the commit.
    let failure = match writer.send_chunk(chunk(2)).await {
        Err(e) => e,
        Ok(()) => writer.commit().await.expect_err("existing id"),
    };
    assert!(
        matches!(
            &failure,
            ShardWriteError::Node {
                shard,
                source: DataClientError::AlreadyExists { addr: a, .. },
            } if *shard == id(5) && *a == addr
        ),
        "{failure:?}"
    );
    assert_eq!(failure.code(), "shard_already_exists");
    assert!(!failure.blames_node());
    assert_eq!(model.lock().shards[&id(5)].chunks, vec![chunk(1)]);
}

#[tokio::test]
async fn a_dropped_writer_aborts_its_stream_and_the_node_keeps_nothing() {
    let model = DataModel::default();
    let addr = model.serve().await;
    let data = DataClient::new();
    let mut writer = ShardWriter::open(&data, &addr, spec(id(5))).expect("open");
    writer.send_chunk(chunk(1)).await.expect("send");
    writer.send_chunk(chunk(2)).await.expect("send");
    assert_eq!(writer.chunks_sent(), 2);
    assert!(eventually(Duration::from_secs(5), || model.lock().opened == 1).await);
    drop(writer);
    assert!(
        eventually(Duration::from_secs(5), || model.lock().discarded == 1).await,
        "the node saw the stream end without a commit"
    );
    let state = model.lock();
    assert!(state.shards.is_empty());
    assert_eq!(state.committed, 0);
}

#[tokio::test]
async fn a_chunk_of_the_wrong_size_fails_the_writer_and_stores_nothing() {
    let model = DataModel::default();
    let addr = model.serve().await;
    let data = DataClient::new();
    let mut writer = ShardWriter::open(&data, &addr, spec(id(5))).expect("open");
    writer.send_chunk(chunk(1)).await.expect("send");
    assert!(eventually(Duration::from_secs(5), || model.lock().opened == 1).await);
    let err = writer
        .send_chunk(Bytes::from_static(b"short"))
        .await
        .expect_err("short chunk");
    assert!(
        matches!(
            err,
            ShardWriteError::ChunkSize {
                expected: CHUNK,
                got: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.blames_node());
    assert_eq!(err.code(), "shard_write_chunk_size");
    // Every later call reports the same failure.
    let again = writer
        .send_chunk(chunk(2))
        .await
        .expect_err("failed writer");
    let same = |err: &ShardWriteError| {
        matches!(
            err,
            ShardWriteError::ChunkSize { shard, expected: CHUNK, got: 5 } if *shard == id(5)
        )
    };
    assert!(same(&again), "{again:?}");
    assert_eq!(again.code(), "shard_write_chunk_size");
    let commit = writer.commit().await.expect_err("failed writer");
    assert!(same(&commit), "{commit:?}");
    assert_eq!(commit.code(), "shard_write_chunk_size");
    assert!(eventually(Duration::from_secs(5), || model.lock().discarded == 1).await);
    assert!(model.lock().shards.is_empty());
}

#[tokio::test]
async fn a_node_that_stops_reading_stalls_the_writer_within_its_timeout() {
    let model = DataModel::default();
    model.lock().write_fault = WriteFault::StopReading;
    let addr = model.serve().await;
    let data = DataClient::new();
    let mut spec = spec(id(5));
    spec.chunk_size = 64 * 1024;
    spec.stall_timeout = Duration::from_millis(300);
    let mut writer = ShardWriter::open(&data, &addr, spec).expect("open");
    let started = std::time::Instant::now();
    let mut failure = None;
    // Flow control lets a few chunks through before the queue stays full.
    for _ in 0..512 {
        if let Err(e) = writer.send_chunk(Bytes::from(vec![7; 64 * 1024])).await {
            failure = Some(e);
            break;
        }
    }
    let failure = failure.expect("the writer stalls before 32 MiB pass an unread stream");
    assert!(
        matches!(failure, ShardWriteError::Stalled { waited, .. } if waited == Duration::from_millis(300)),
        "{failure:?}"
    );
    assert!(failure.blames_node());
    assert!(failure.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_node_that_never_answers_the_commit_stalls_the_commit() {
    let model = DataModel::default();
    model.lock().write_fault = WriteFault::HangOnCommit;
    let addr = model.serve().await;
    let data = DataClient::new();
    let mut spec = spec(id(5));
    spec.stall_timeout = Duration::from_millis(200);
    let mut writer = ShardWriter::open(&data, &addr, spec).expect("open");
    writer.send_chunk(chunk(1)).await.expect("send");
    let err = writer.commit().await.expect_err("no answer");
    assert!(
        matches!(
            &err,
            ShardWriteError::Stalled { addr: a, shard, waited }
                if *a == addr && *shard == id(5) && *waited == Duration::from_millis(200)
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "shard_write_stalled");
    assert!(err.blames_node());
}

#[tokio::test]
async fn a_commit_answer_naming_other_bytes_is_not_accepted() {
    let data = DataClient::new();
    for (fault, code) in [
        (
            WriteFault::AnswerDigest([0xab; 32]),
            "shard_write_digest_mismatch",
        ),
        (WriteFault::AnswerChunks(2), "shard_write_count_mismatch"),
    ] {
        let model = DataModel::default();
        model.lock().write_fault = fault;
        let addr = model.serve().await;
        let mut writer = ShardWriter::open(&data, &addr, spec(id(5))).expect("open");
        writer.send_chunk(chunk(1)).await.expect("send");
        let err = writer.commit().await.expect_err("mismatched answer");
        assert_eq!(err.code(), code, "{err:?}");
        // One chunk was sent; AnswerChunks(2) says two were stored.
        assert!(
            matches!(
                &err,
                ShardWriteError::DigestMismatch { addr: a, shard }
                    | ShardWriteError::CountMismatch { addr: a, shard, sent: 1, stored: 2 }
                    if *a == addr && *shard == id(5)
            ),
            "{err:?}"
        );
        assert!(err.blames_node());
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn an_unreachable_node_fails_the_write_as_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let data = DataClient::new();
    let mut writer = ShardWriter::open(&data, &addr, spec(id(5))).expect("open");
    let failure = match writer.send_chunk(chunk(1)).await {
        Err(e) => e,
        Ok(()) => writer.commit().await.expect_err("nobody listens"),
    };
    assert!(
        matches!(
            &failure,
            ShardWriteError::Node {
                shard,
                source: DataClientError::Unavailable { addr: a, message },
            } if *shard == id(5) && *a == addr && message == "tcp connect error"
        ),
        "{failure:?}"
    );
    assert!(failure.blames_node());
    assert!(failure.is_retryable());

    let bad = ShardWriter::open(&data, "not an address", spec(id(5))).expect_err("bad addr");
    assert!(
        matches!(
            &bad,
            ShardWriteError::Node {
                shard,
                source: DataClientError::InvalidAddress { addr, .. },
            } if *shard == id(5) && addr == "not an address"
        ),
        "{bad:?}"
    );
    assert_eq!(bad.code(), "data_invalid_address");
}
