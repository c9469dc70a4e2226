use std::time::Duration;

use bytes::Bytes;
use tessera_core::blob::{ErasureBlob, Generation, ShardCopy};
use tessera_core::layout::Layout;
use tessera_core::names::{DataId, NodeId};

use super::*;
use crate::data::{DataClient, ShardId};
use crate::testing::data_node::{DataModel, ReadFault, StoredShard};

const CHUNK: u32 = 512;
const CHUNKS: u64 = 4;

fn id(data: u8, generation: u64) -> ShardId {
    ShardId::new(
        DataId::from_bytes([data; 16]),
        1,
        Generation::new(generation).expect("nonzero"),
    )
}

fn chunks(seed: u8) -> Vec<Bytes> {
    (0..CHUNKS as u8)
        .map(|i| Bytes::from(vec![seed.wrapping_add(i); CHUNK as usize]))
        .collect()
}

/// A node holding shard `id(1, 5)` (and `id(2, 5)`, another blob's shard of the same size),
/// and the spec of a read of `id(1, 5)` against its true digest.
async fn node() -> (DataModel, String, ShardReadSpec) {
    let model = DataModel::default();
    let shard = StoredShard::new(id(1, 5), CHUNK, 0, chunks(10));
    let digest = shard.digest();
    model.put(shard);
    model.put(StoredShard::new(id(2, 5), CHUNK, 0, chunks(50)));
    let addr = model.serve().await;
    let spec = ShardReadSpec {
        id: id(1, 5),
        expected_digest: digest,
        chunks_per_shard: CHUNKS,
        chunk_size: CHUNK,
        first_chunk: 0,
        chunk_count: 0,
        message_timeout: Duration::from_secs(5),
    };
    (model, addr, spec)
}

async fn read_all(reader: &mut VerifiedShardReader) -> Result<Vec<VerifiedChunk>, ShardReadFault> {
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk().await? {
        out.push(chunk);
    }
    Ok(out)
}

async fn open_fault(fault: ReadFault) -> ShardReadFault {
    let (model, addr, spec) = node().await;
    model.lock().read_fault = fault;
    match VerifiedShardReader::open(&DataClient::new(), &addr, spec).await {
        Err(fault) => fault,
        Ok(mut reader) => read_all(&mut reader).await.expect_err("a faulty node"),
    }
}

#[tokio::test]
async fn an_intact_copy_reads_whole_or_by_range_in_order() {
    let (_model, addr, spec) = node().await;
    let data = DataClient::new();
    let mut reader = VerifiedShardReader::open(&data, &addr, spec.clone())
        .await
        .expect("open");
    assert_eq!((reader.next_index(), reader.end()), (0, CHUNKS));
    let all = read_all(&mut reader).await.expect("read");
    let indexes: Vec<u64> = all.iter().map(|c| c.index).collect();
    assert_eq!(indexes, [0, 1, 2, 3]);
    let bytes: Vec<Bytes> = all.into_iter().map(|c| c.data).collect();
    assert_eq!(bytes, chunks(10));
    assert_eq!(reader.next_chunk().await.expect("done"), None);

    let range = ShardReadSpec {
        first_chunk: 1,
        chunk_count: 2,
        ..spec
    };
    let mut reader = VerifiedShardReader::open(&data, &addr, range)
        .await
        .expect("open");
    let some = read_all(&mut reader).await.expect("read");
    assert_eq!(
        some.iter().map(|c| c.index).collect::<Vec<_>>(),
        [1, 2],
        "only the chunks asked for"
    );
    assert_eq!(some[0].data, chunks(10)[1]);
}

#[tokio::test]
async fn another_blobs_table_fails_the_manifest_digest() {
    let fault = open_fault(ReadFault::ServeOther(id(2, 5))).await;
    assert!(
        matches!(fault, ShardReadFault::DigestMismatch { .. }),
        "{fault:?}"
    );
    assert!(fault.is_copy_fault());
    assert!(!fault.blames_node());
    assert!(!fault.is_retryable());
}

#[tokio::test]
async fn a_table_with_two_entries_swapped_fails_the_manifest_digest() {
    let fault = open_fault(ReadFault::SwapTableEntries(0, 2)).await;
    assert_eq!(fault.code(), "shard_digest_mismatch");
}

#[tokio::test]
async fn swapped_chunk_data_fails_the_first_chunk_out_of_place() {
    let (model, addr, spec) = node().await;
    model.lock().read_fault = ReadFault::SwapChunks(1, 2);
    let mut reader = VerifiedShardReader::open(&DataClient::new(), &addr, spec)
        .await
        .expect("the table is right");
    let first = reader.next_chunk().await.expect("chunk 0 is in place");
    assert_eq!(first.map(|c| c.index), Some(0));
    let fault = reader
        .next_chunk()
        .await
        .expect_err("chunk 1 holds chunk 2's bytes");
    assert!(
        matches!(fault, ShardReadFault::ChunkMismatch { chunk: 1, .. }),
        "{fault:?}"
    );
    assert!(fault.is_copy_fault());
    // The reader stays failed, with the same fault.
    let again = reader.next_chunk().await.expect_err("failed");
    assert!(
        matches!(again, ShardReadFault::ChunkMismatch { chunk: 1, .. }),
        "{again:?}"
    );
    assert_eq!(again.code(), "shard_chunk_mismatch");
}

#[tokio::test]
async fn a_short_table_is_refused_before_any_chunk() {
    let fault = open_fault(ReadFault::ShortTable).await;
    assert!(
        matches!(
            fault,
            ShardReadFault::TableSize {
                expected: CHUNKS,
                got: 3,
                ..
            }
        ),
        "{fault:?}"
    );
    assert!(fault.is_copy_fault());
}

#[tokio::test]
async fn a_stalled_stream_fails_within_the_message_timeout() {
    let (model, addr, mut spec) = node().await;
    model.lock().read_fault = ReadFault::StallAfterTable;
    spec.message_timeout = Duration::from_millis(200);
    let mut reader = VerifiedShardReader::open(&DataClient::new(), &addr, spec)
        .await
        .expect("the table arrives");
    let started = std::time::Instant::now();
    let fault = reader.next_chunk().await.expect_err("nothing follows");
    assert!(
        matches!(fault, ShardReadFault::Stalled { waited, .. } if waited == Duration::from_millis(200)),
        "{fault:?}"
    );
    assert!(fault.blames_node());
    assert!(fault.is_retryable());
    assert!(!fault.is_copy_fault());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_skipped_chunk_is_a_wrong_chunk() {
    let fault = open_fault(ReadFault::SkipChunk(2)).await;
    assert!(
        matches!(
            fault,
            ShardReadFault::WrongChunk {
                expected: 2,
                got: 3,
                ..
            }
        ),
        "{fault:?}"
    );
    assert!(fault.blames_node());
}

#[tokio::test]
async fn a_chunk_the_node_finds_rotten_is_corrupt_on_node() {
    let (model, addr, spec) = node().await;
    {
        let mut state = model.lock();
        let shard = state.shards.get_mut(&id(1, 5)).expect("stored");
        let mut rotten = shard.chunks[2].to_vec();
        rotten[7] ^= 1;
        shard.chunks[2] = Bytes::from(rotten);
    }
    let data = DataClient::new();
    let verified = data.verify_shard(&addr, &id(1, 5)).await.expect("verify");
    assert_eq!(
        verified.corrupt_chunks, 1,
        "the node's own check finds it too"
    );
    let mut reader = VerifiedShardReader::open(&data, &addr, spec)
        .await
        .expect("open");
    assert!(reader.next_chunk().await.expect("0").is_some());
    assert!(reader.next_chunk().await.expect("1").is_some());
    let fault = reader.next_chunk().await.expect_err("2 is rotten");
    assert!(
        matches!(fault, ShardReadFault::CorruptOnNode { chunk: Some(2), .. }),
        "{fault:?}"
    );
    assert!(fault.is_copy_fault());
}

#[tokio::test]
async fn a_missing_copy_or_generation_is_not_found() {
    let (_model, addr, spec) = node().await;
    let other_generation = ShardReadSpec {
        id: id(1, 6),
        ..spec.clone()
    };
    let fault = VerifiedShardReader::open(&DataClient::new(), &addr, other_generation)
        .await
        .expect_err("generation 6 was never written");
    assert!(
        matches!(&fault, ShardReadFault::NotFound { addr: a, shard } if *a == addr && *shard == id(1, 6)),
        "{fault:?}"
    );
    assert!(fault.is_copy_fault());
    assert!(!fault.blames_node());
}

#[tokio::test]
async fn a_manifest_naming_other_bytes_refuses_the_copy() {
    let (_model, addr, mut spec) = node().await;
    spec.expected_digest[0] ^= 1;
    let fault = VerifiedShardReader::open(&DataClient::new(), &addr, spec)
        .await
        .expect_err("digest differs");
    assert!(
        matches!(&fault, ShardReadFault::DigestMismatch { addr: a, shard } if *a == addr && *shard == id(1, 5)),
        "{fault:?}"
    );
    assert_eq!(fault.code(), "shard_digest_mismatch");
}

#[tokio::test]
async fn ranges_outside_the_shard_are_refused_locally() {
    let (_model, addr, spec) = node().await;
    for (first, count) in [(4, 0), (3, 2), (u64::MAX, 2)] {
        let bad = ShardReadSpec {
            first_chunk: first,
            chunk_count: count,
            ..spec.clone()
        };
        let fault = VerifiedShardReader::open(&DataClient::new(), &addr, bad)
            .await
            .expect_err("outside");
        assert!(
            matches!(
                fault,
                ShardReadFault::InvalidRange { shard, first: f, count: c, chunks: CHUNKS }
                    if shard == id(1, 5) && f == first && c == count
            ),
            "{fault:?}"
        );
    }
}

#[test]
fn a_spec_from_the_manifest_names_the_copy_and_its_digest() {
    let copy = ShardCopy {
        shard_index: 1,
        node: NodeId(3),
        generation: Generation::new(5).expect("nonzero"),
    };
    let blob = ErasureBlob {
        data_id: DataId::from_bytes([1; 16]),
        layout: Layout::new(2, 1).expect("layout"),
        chunk_size: CHUNK,
        chunks_per_shard: CHUNKS,
        shards: vec![copy],
        shard_digests: vec![[1; 32], [2; 32], [3; 32]],
        degraded: false,
        placed_at_index: 9,
    };
    let spec = ShardReadSpec::from_manifest(&blob, &copy, 1..3).expect("index 1 exists");
    assert_eq!(spec.id, id(1, 5));
    assert_eq!(spec.expected_digest, [2; 32]);
    assert_eq!((spec.first_chunk, spec.chunk_count), (1, 2));
    assert_eq!((spec.chunks_per_shard, spec.chunk_size), (CHUNKS, CHUNK));
    let beyond = ShardCopy {
        shard_index: 3,
        ..copy
    };
    assert!(ShardReadSpec::from_manifest(&blob, &beyond, 0..1).is_none());
}
