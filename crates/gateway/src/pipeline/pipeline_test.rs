//! The pipeline against six real in-process data nodes, two in each of three zones: round
//! trips, ranges, lost and rotten shards, zones and nodes going down mid-stream, bodies that
//! fail, and the chunk sizes chosen.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tessera_core::blob::BlobStorage;
use tessera_core::checksum::{ChecksumAlgorithm, checksum_of};
use tessera_core::etag::md5_of;
use tessera_core::names::NodeId;

use super::test_cluster::*;
use super::*;

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
        assert_eq!(written.digests.size, size as u64);
        assert_eq!(written.blob.size, size as u64);
        assert_eq!(written.blob.stored_size, size as u64, "identity sealing");
        assert!(written.blob.sealing.is_identity());
        assert_eq!(written.digests.md5, md5_of(&data), "md5 of {size}");
        assert_eq!(
            written.digests.checksums,
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
                BlobStorage::Inline(data.clone()),
                "{size} bytes are inline"
            );
        } else {
            let erasure = erasure_of(&written.blob);
            let layout = erasure.layout;
            assert_eq!((layout.data_shards(), layout.parity_shards()), (3, 3));
            assert!(erasure.chunk_size <= CHUNK);
            assert_eq!(erasure.shards.len(), 6);
            assert!(!erasure.degraded);
            assert_eq!(erasure.placed_at_index, 0, "meta sets it");
            let mut nodes: Vec<NodeId> = erasure.shards.iter().map(|s| s.node).collect();
            nodes.sort_unstable();
            nodes.dedup();
            assert_eq!(nodes.len(), 6, "one shard per node");
            let stripe = 3 * u64::from(erasure.chunk_size);
            assert_eq!(erasure.chunks_per_shard, (size as u64).div_ceil(stripe));
            assert_eq!(
                erasure.shard_digests,
                expected_digests(&data, layout, erasure.chunk_size, erasure.data_id),
                "the manifest commits to every shard's chunk hashes"
            );
            // Every copy is the file the manifest names: its generation, the write's lease,
            // the manifest's digest.
            let listed = cluster.listed().await;
            for copy in &erasure.shards {
                let file = listed[&copy.node]
                    .iter()
                    .find(|l| {
                        l.id.data_id == erasure.data_id && l.id.shard_index == copy.shard_index
                    })
                    .expect("copy listed");
                assert_eq!(file.id.generation, copy.generation);
                assert_eq!(file.lease_id, LEASE);
                assert_eq!(file.chunks, erasure.chunks_per_shard);
                assert_eq!(Some(&file.digest), erasure.digest_of(copy.shard_index));
            }
            let generations: std::collections::BTreeSet<_> =
                erasure.shards.iter().map(|c| c.generation).collect();
            assert_eq!(generations.len(), 6, "a fresh generation per shard");
        }
        let stream = store.read(&written.blob, &target(), 0..size as u64);
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
    assert!(erasure.shards.iter().all(|s| s.node.0 <= 4));
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
    assert!(erasure.shards.iter().all(|s| s.node != NodeId(2)));
    assert_eq!(
        erasure.shard_digests,
        expected_digests(&data, erasure.layout, erasure.chunk_size, erasure.data_id),
        "the lost shard's digest is in the manifest too, so repair can rebuild it"
    );
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
    assert_eq!(cluster.listed_count().await, 0);

    let ok = store.write(body(&data, 9_000), opts(data.len())).await;
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(cluster.listed_count().await, 6);
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
    assert!(erasure.shards.iter().all(|s| s.node != NodeId(3)));
    assert_eq!(
        erasure.shard_digests,
        expected_digests(&data, erasure.layout, erasure.chunk_size, erasure.data_id),
        "the digest of the shard lost mid-stream is complete in the manifest"
    );
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
        .map(|s| s.node.0)
        .expect("shard 0");

    let mut stream = store.read(&written.blob, &target(), 0..data.len() as u64);
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
    // Zone-a's nodes are cut off from the gateway, not gone: list them directly.
    assert_eq!(cluster.listed_count().await, 0);
}

#[test]
fn small_blobs_get_chunks_just_large_enough() {
    let layout = tessera_core::layout::Layout::new(3, 3).expect("layout");
    let full = 256 * 1024;
    let max = MAX_BLOB_SIZE;
    let size = |expected| super::write::chunk_size_for(full, layout, expected, max);
    assert_eq!(size(None), full);
    // 64 KiB over 3 data chunks: 21,846 bytes each, rounded up to 24 KiB.
    assert_eq!(size(Some(65_536)), 24_576);
    assert_eq!(size(Some(1)), 4096);
    // Larger than one stripe: the configured size.
    assert_eq!(size(Some(10 << 20)), full);
    assert_eq!(size(Some(3 * 256 * 1024)), full);
}

#[test]
fn chunks_are_large_enough_for_the_data_nodes_limits() {
    let chunk_size = super::write::chunk_size_for;
    let limit = |chunk: u32, k: u64, len: u64| len.div_ceil(k * u64::from(chunk));
    for (k, m) in [(1, 2), (3, 3), (5, 4), (9, 6)] {
        let layout = tessera_core::layout::Layout::new(k, m).expect("layout");
        for configured in [4096, 64 * 1024, 256 * 1024] {
            // A declared 5 GiB body, and a body of unknown length that may reach 5 GiB.
            for expected in [Some(MAX_BLOB_SIZE), None] {
                let chunk = chunk_size(configured, layout, expected, MAX_BLOB_SIZE);
                assert!(chunk >= configured, "never below the configured size");
                assert!(chunk <= MAX_CHUNK_SIZE);
                assert_eq!(u64::from(chunk) % 4096, 0);
                assert!(
                    limit(chunk, u64::from(k), MAX_BLOB_SIZE) <= MAX_CHUNKS_PER_SHARD,
                    "RS({k},{m}) at {configured}: {chunk}-byte chunks"
                );
            }
        }
    }
    // 4 KiB chunks at k = 1 would need 1.3 million chunks for 5 GiB: 20 KiB ones are chosen.
    let one = tessera_core::layout::Layout::new(1, 2).expect("layout");
    assert_eq!(chunk_size(4096, one, None, MAX_BLOB_SIZE), 20_480);
    // The gateway's limits are the data node's.
    assert_eq!(MAX_CHUNK_SIZE, tessera_data::shard_limits::MAX_CHUNK_SIZE);
    assert_eq!(
        MAX_CHUNKS_PER_SHARD,
        tessera_data::shard_limits::MAX_SHARD_CHUNKS
    );
}
