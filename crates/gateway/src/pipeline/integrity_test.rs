//! The pipeline's integrity against real data nodes: copies that are not what the manifest
//! says (another blob's table and bytes, a stale generation, swapped chunks, a rewrite whose
//! internal hashes match) are read around and never served; a body whose digest does not match
//! commits no shard anywhere; a whole-object read holds back its last piece until the stored
//! checksum matched; and a sealer other than the identity round-trips through the pipeline.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use tessera_client::shard::ShardWriteSpec;
use tessera_client::{ShardId, ShardWriter};
use tessera_core::blob::{Blob, BlobStorage, Generation};
use tessera_core::checksum::{ChecksumAlgorithm, ChecksumType, checksum_of, to_base64};
use tessera_core::etag::md5_of;
use tessera_core::names::{BucketName, ObjectKey};
use tessera_core::object::{ChecksumValue, ObjectPart, ObjectVersion};
use tessera_core::sealing::{Sealing, SealingScheme};

use super::test_cluster::*;
use super::*;

/// Writes a blob of `len` random bytes (several stripes) and returns it with its bytes.
async fn written(store: &BlobStore, len: usize) -> (Vec<u8>, Blob) {
    let data = random_bytes(len);
    let blob = store
        .write(body(&data, 9_000), opts(len))
        .await
        .expect("write")
        .blob;
    (data, blob)
}

/// Reads the whole blob through a store and checks every byte.
async fn reads_back(store: &BlobStore, blob: &Blob, data: &[u8]) {
    let back = read_all(store, blob, 0..data.len() as u64)
        .await
        .expect("read around the bad copy");
    assert!(back == data, "the bytes read back differ");
}

fn wire_id(blob: &Blob, index: u32, generation: Generation) -> tessera_proto::data::v1::ShardId {
    ShardId::new(erasure_of(blob).data_id, index, generation).to_pb()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_serving_another_blobs_table_and_bytes_is_read_around() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let (data, blob) = written(&store, 4 * STRIPE as usize).await;
    let (_, other) = written(&store, 4 * STRIPE as usize).await;
    let copy = Cluster::copy_of(&blob, 0);
    // The other blob's shard 0, wherever it lives: same length, same chunk count.
    let other_copy = Cluster::copy_of(&other, 0);
    // The liar answers for shard 0's node, relaying to the node that holds the other copy
    // (a read of this blob asks shard 0's node for shard 0 only).
    let (liar, addr) = LyingNode::start(&cluster.node(other_copy.node).direct).await;
    liar.lie_about(
        wire_id(&blob, 0, copy.generation),
        Lie::ServeOther(wire_id(&other, 0, other_copy.generation)),
    );
    cluster.reroute(copy.node, &addr);
    tracing::info!("shard 0's node serves another blob's table and chunks: it is read around");
    reads_back(&store, &blob, &data).await;
    assert_eq!(store.metrics().read_faults("shard_digest_mismatch"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_generation_is_never_served() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let (data, blob) = written(&store, 3 * STRIPE as usize + 17).await;
    let erasure = erasure_of(&blob).clone();
    let copy = Cluster::copy_of(&blob, 1);
    let node = cluster.node(copy.node);

    tracing::info!("another write of shard 1 sits beside it on the same node, other bytes");
    let stale = Generation::new(copy.generation.get() ^ 0x5555).expect("nonzero");
    let id = ShardId::new(erasure.data_id, 1, stale);
    let spec = ShardWriteSpec::new(id, erasure.layout, erasure.chunk_size, LEASE);
    let mut writer = ShardWriter::open(&cluster.data, &node.direct, spec).expect("open");
    for _ in 0..erasure.chunks_per_shard {
        let chunk = random_bytes(erasure.chunk_size as usize);
        writer.send_chunk(Bytes::from(chunk)).await.expect("chunk");
    }
    writer.commit().await.expect("stale copy stored");

    tracing::info!("a node that ignores generations serves the stale copy: read around");
    let (liar, addr) = LyingNode::start(&node.direct).await;
    liar.lie_about(
        wire_id(&blob, 1, copy.generation),
        Lie::ServeOther(wire_id(&blob, 1, stale)),
    );
    cluster.reroute(copy.node, &addr);
    reads_back(&store, &blob, &data).await;
    assert_eq!(store.metrics().read_faults("shard_digest_mismatch"), 1);

    tracing::info!("an honest node without the manifest's generation answers not found");
    cluster.reroute(copy.node, &node.view.addr);
    cluster.delete_shard(&blob, 1);
    reads_back(&store, &blob, &data).await;
    assert_eq!(store.metrics().read_faults("shard_not_found"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_chunks_are_read_around() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let (data, blob) = written(&store, 5 * STRIPE as usize).await;
    let copy = Cluster::copy_of(&blob, 2);
    let (liar, addr) = LyingNode::start(&cluster.node(copy.node).direct).await;
    liar.lie_about(wire_id(&blob, 2, copy.generation), Lie::SwapChunks(1));
    cluster.reroute(copy.node, &addr);
    tracing::info!("shard 2's node swaps chunks 1 and 2: the read turns to a spare mid-stream");
    reads_back(&store, &blob, &data).await;
    assert_eq!(store.metrics().read_faults("shard_chunk_mismatch"), 1);
    // A range before the swap never notices.
    let early = 0..STRIPE;
    let back = read_all(&store, &blob, early.clone()).await.expect("read");
    assert!(back == data[..STRIPE as usize]);
    assert_eq!(store.metrics().read_faults("shard_chunk_mismatch"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_with_matching_internal_hashes_is_read_around() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let (data, blob) = written(&store, 4 * STRIPE as usize + 3).await;
    let erasure = erasure_of(&blob).clone();
    let copy = Cluster::copy_of(&blob, 0);
    tracing::info!("shard 0 is rewritten in place with other bytes, hashes and digest to match");
    cluster.delete_shard(&blob, 0);
    let id = ShardId::new(erasure.data_id, 0, copy.generation);
    let spec = ShardWriteSpec::new(id, erasure.layout, erasure.chunk_size, LEASE);
    let mut writer =
        ShardWriter::open(&cluster.data, &cluster.node(copy.node).direct, spec).expect("open");
    for _ in 0..erasure.chunks_per_shard {
        let chunk = random_bytes(erasure.chunk_size as usize);
        writer.send_chunk(Bytes::from(chunk)).await.expect("chunk");
    }
    let rewritten = writer
        .commit()
        .await
        .expect("the node accepts a consistent file");
    assert_ne!(Some(&rewritten.digest), erasure.digest_of(0));
    reads_back(&store, &blob, &data).await;
    assert_eq!(store.metrics().read_faults("shard_digest_mismatch"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_whose_digest_does_not_match_commits_no_shard_anywhere() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let data = random_bytes(6 * STRIPE as usize + 1);

    tracing::info!("a Content-MD5 of other bytes: refused after the body, before any commit");
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let declared = md5_of(b"other bytes");
    let check: BodyCheck = Box::new(move |digests: &BodyDigests| {
        *record.lock().expect("lock") = Some(digests.clone());
        if digests.md5 == declared {
            Ok(())
        } else {
            Err(BodyRejection::BadDigest {
                what: "Content-MD5".into(),
            })
        }
    });
    let err = store
        .write(
            body(&data, 9_000),
            WriteOptions {
                check: Some(check),
                ..opts(data.len())
            },
        )
        .await;
    assert!(
        matches!(&err, Err(PipelineError::BodyRejected(BodyRejection::BadDigest { what })) if what == "Content-MD5"),
        "{err:?}"
    );
    let seen = seen.lock().expect("lock").clone().expect("the check ran");
    assert_eq!(
        seen.md5,
        md5_of(&data),
        "the check saw the whole body's digest"
    );
    assert_eq!(cluster.listed_count().await, 0, "no node keeps a shard");

    tracing::info!("a trailer checksum that only arrives with the body's end, wrong");
    // The trailer is written by the body stream itself once its last piece went out, as
    // s3s's aws-chunked decoder fills its trailing headers.
    let trailer: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let sent = Arc::clone(&trailer);
    let pieces: Vec<Result<Bytes, BodyError>> = data
        .chunks(9_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let with_trailer = futures::stream::iter(pieces).chain(futures::stream::once(async move {
        *sent.lock().expect("lock") = Some(vec![0xde, 0xad, 0xbe, 0xef]);
        Ok(Bytes::new())
    }));
    let read_trailer = Arc::clone(&trailer);
    let check: BodyCheck = Box::new(move |digests: &BodyDigests| {
        let declared = read_trailer.lock().expect("lock").clone().ok_or_else(|| {
            BodyRejection::MalformedTrailer {
                detail: "not sent".into(),
            }
        })?;
        if digests.checksum(ChecksumAlgorithm::Crc32c) == Some(declared.as_slice()) {
            Ok(())
        } else {
            Err(BodyRejection::BadDigest {
                what: "CRC32C checksum".into(),
            })
        }
    });
    let err = store
        .write(
            Box::pin(with_trailer),
            WriteOptions {
                check: Some(check),
                ..opts(data.len())
            },
        )
        .await;
    assert!(
        matches!(
            &err,
            Err(PipelineError::BodyRejected(BodyRejection::BadDigest { .. }))
        ),
        "{err:?}"
    );
    assert_eq!(cluster.listed_count().await, 0, "no node keeps a shard");

    tracing::info!("the same body with its right digest commits all six shards");
    let crc = checksum_of(ChecksumAlgorithm::Crc32c, &data);
    let check: BodyCheck = Box::new(move |digests: &BodyDigests| {
        if digests.checksum(ChecksumAlgorithm::Crc32c) == Some(crc.as_slice()) {
            Ok(())
        } else {
            Err(BodyRejection::BadDigest {
                what: "CRC32C checksum".into(),
            })
        }
    });
    store
        .write(
            body(&data, 9_000),
            WriteOptions {
                check: Some(check),
                ..opts(data.len())
            },
        )
        .await
        .expect("write");
    assert_eq!(cluster.listed_count().await, 6);

    tracing::info!("an inline body is checked too");
    let small = random_bytes(100);
    let check: BodyCheck = Box::new(|_: &BodyDigests| {
        Err(BodyRejection::BadDigest {
            what: "Content-MD5".into(),
        })
    });
    let err = store
        .write(
            body(&small, 30),
            WriteOptions {
                check: Some(check),
                ..opts(100)
            },
        )
        .await;
    assert!(
        matches!(err, Err(PipelineError::BodyRejected(_))),
        "{err:?}"
    );
}

fn checksum_value(algorithm: ChecksumAlgorithm, data: &[u8]) -> ChecksumValue {
    ChecksumValue {
        algorithm,
        value: to_base64(&checksum_of(algorithm, data)),
        kind: ChecksumType::FullObject,
    }
}

/// A version record of `parts` (each a blob with its bytes), as meta would return it.
fn version_of(parts: &[(&Blob, &[u8])], multipart: bool) -> ObjectVersion {
    let all: Vec<u8> = parts.iter().flat_map(|(_, d)| d.iter().copied()).collect();
    ObjectVersion {
        seq: 9,
        last_modified_ms: 1,
        size: all.len() as u64,
        etag: "\"etag\"".into(),
        checksums: vec![checksum_value(ChecksumAlgorithm::Crc64Nvme, &all)],
        parts: (1u32..)
            .zip(parts)
            .map(|(n, (blob, data))| ObjectPart {
                part_number: n,
                size: data.len() as u64,
                etag: "\"part\"".into(),
                blob: (*blob).clone(),
                checksums: vec![checksum_value(ChecksumAlgorithm::Crc64Nvme, data)],
            })
            .collect(),
        multipart,
        ..ObjectVersion::new(
            BucketName::parse("bkt").expect("bucket"),
            ObjectKey::parse("key").expect("key"),
        )
    }
}

/// The bytes a stream yields before it ends, and how it ends.
async fn drain(mut stream: BlobReadStream) -> (Vec<u8>, Option<PipelineError>) {
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(piece) => out.extend_from_slice(&piece),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_object_read_holds_back_its_last_piece_until_the_checksum_matched() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let (data, blob) = written(&store, 4 * STRIPE as usize + 123).await;
    let size = data.len() as u64;

    tracing::info!("a version with the right checksum reads whole");
    let good = version_of(&[(&blob, &data)], false);
    let (back, end) = drain(store.read_object(&good, 0..size, ReadCheck::WholeParts, None)).await;
    assert!(end.is_none(), "{end:?}");
    assert!(back == data);

    tracing::info!("the stored checksum differs: everything but the last piece, then an error");
    let mut bad = good.clone();
    bad.checksums = vec![checksum_value(ChecksumAlgorithm::Crc64Nvme, b"other")];
    let (back, end) = drain(store.read_object(&bad, 0..size, ReadCheck::WholeParts, None)).await;
    assert!(
        matches!(
            end,
            Some(PipelineError::ChecksumMismatch {
                part_number: 1,
                algorithm: ChecksumAlgorithm::Crc64Nvme
            })
        ),
        "{end:?}"
    );
    assert!(back.len() < data.len(), "the last piece was never sent");
    assert!(
        back.len() as u64 >= size - u64::from(CHUNK),
        "only the last piece was held back"
    );
    assert!(back == data[..back.len()]);

    tracing::info!("ranged reads do not check, so they are not held back");
    let (back, end) = drain(store.read_object(&bad, 0..size, ReadCheck::None, None)).await;
    assert!(end.is_none() && back == data);
    let (back, end) = drain(store.read_object(&bad, 10..size, ReadCheck::WholeParts, None)).await;
    assert!(end.is_none() && back == data[10..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_read_checks_each_part_as_its_bytes_finish() {
    let cluster = Cluster::start().await;
    let store = cluster.store();
    let (one, first) = written(&store, 2 * STRIPE as usize + 5).await;
    let (two, second) = written(&store, 3 * STRIPE as usize + 7).await;
    let small = random_bytes(300);
    let third = store
        .write(body(&small, 100), opts(300))
        .await
        .expect("inline part")
        .blob;
    let parts: [(&Blob, &[u8]); 3] = [(&first, &one), (&second, &two), (&third, &small)];
    let all: Vec<u8> = [&one[..], &two, &small].concat();
    let size = all.len() as u64;
    let good = version_of(&parts, true);
    let (back, end) = drain(store.read_object(&good, 0..size, ReadCheck::WholeParts, None)).await;
    assert!(end.is_none(), "{end:?}");
    assert!(back == all);

    tracing::info!("part 2's stored checksum differs: part 1 whole, part 2 short of its end");
    let mut bad = good.clone();
    bad.parts[1].checksums = vec![checksum_value(ChecksumAlgorithm::Crc64Nvme, b"x")];
    let (back, end) = drain(store.read_object(&bad, 0..size, ReadCheck::WholeParts, None)).await;
    assert!(
        matches!(
            end,
            Some(PipelineError::ChecksumMismatch { part_number: 2, .. })
        ),
        "{end:?}"
    );
    assert!(back.len() >= one.len() && back.len() < one.len() + two.len());
    assert!(back == all[..back.len()]);

    tracing::info!("a partNumber read of part 2 checks that part alone");
    let part2 = one.len() as u64..(one.len() + two.len()) as u64;
    let (back, end) =
        drain(store.read_object(&bad, part2.clone(), ReadCheck::WholeParts, None)).await;
    assert!(matches!(end, Some(PipelineError::ChecksumMismatch { .. })));
    assert!(back.len() < two.len());
    let (back, end) = drain(store.read_object(&good, part2, ReadCheck::WholeParts, None)).await;
    assert!(end.is_none() && back == two);
}

/// A recognisable plaintext: `CANARY` over and over (cut at `len`).
fn canary_bytes(len: usize) -> Vec<u8> {
    CANARY.iter().copied().cycle().take(len).collect()
}

const CANARY: &[u8] = b"tessera-canary-3f9c1d";

/// SSE-S3 through the whole pipeline (inline and erasure-coded blobs, segment boundaries),
/// with data keys wrapped by a key-encryption key of the test's own: every range reads back
/// byte-exact, what is stored holds no plaintext, and a blob opened for another object fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_s3_round_trips_through_the_pipeline_and_stores_no_plaintext() {
    let cluster = Cluster::start().await;
    let config = BlobStoreConfig {
        chunk_size: CHUNK,
        inline_threshold: THRESHOLD,
        ..BlobStoreConfig::default()
    };
    let sealed = BlobStore::with_seals(
        cluster.data.clone(),
        cluster.directory.clone(),
        config.clone(),
        Arc::new(SseSeals::new(Arc::new(super::sse::LocalKeys::new()))),
    );
    let raw = BlobStore::with_seals(
        cluster.data.clone(),
        cluster.directory.clone(),
        config,
        Arc::new(IdentitySeals),
    );
    let segment = tessera_core::sealing::segments::DEFAULT_SEGMENT_SIZE as usize;
    for len in [
        0usize,
        1,
        999,
        segment,
        segment + 1,
        4 * STRIPE as usize + 777,
    ] {
        tracing::info!(len, "sealed on the way in, unsealed on the way out");
        let data = canary_bytes(len);
        let w = sealed
            .write(body(&data, 4_321), opts(len))
            .await
            .expect("sealed write");
        assert_eq!(
            w.digests.md5,
            md5_of(&data),
            "digests are over the plaintext"
        );
        assert_eq!(w.blob.size, len as u64);
        assert_eq!(w.blob.sealing.scheme, SealingScheme::SseS3);
        assert_eq!(
            w.blob.sealing.stored_len(len as u64),
            Ok(w.blob.stored_size)
        );
        assert!(
            w.blob.stored_size > len as u64,
            "every segment carries a tag"
        );
        if let BlobStorage::Inline(stored) = &w.blob.storage {
            assert_eq!(stored.len() as u64, w.blob.stored_size);
        }
        let back = read_all(&sealed, &w.blob, 0..len as u64)
            .await
            .expect("unsealed read");
        assert!(back == data, "{len} bytes round trip");

        // What is stored, read as it is: no trace of the plaintext.
        let as_stored = Blob {
            size: w.blob.stored_size,
            sealing: Sealing::none(),
            ..w.blob.clone()
        };
        let stored = read_all(&raw, &as_stored, 0..w.blob.stored_size)
            .await
            .expect("raw read");
        assert_eq!(stored.len() as u64, w.blob.stored_size);
        assert!(
            !stored.windows(CANARY.len()).any(|w| w == CANARY),
            "{len} bytes: the canary is stored in the clear"
        );

        for range in [
            0..1,
            1..len.min(2_500),
            len / 2..len,
            segment - 1..len.min(segment + 3),
            len.saturating_sub(17)..len,
        ] {
            if range.start >= range.end || range.end > len {
                continue;
            }
            let r = range.start as u64..range.end as u64;
            let back = read_all(&sealed, &w.blob, r).await.expect("range");
            assert!(back == data[range.clone()], "range {range:?} of {len}");
        }
        if len > 0 {
            let elsewhere = SealTarget::new("bkt", "another-key", 1);
            let moved = collect(sealed.read(&w.blob, &elsewhere, 0..len as u64)).await;
            assert!(
                matches!(
                    moved,
                    Err(PipelineError::Seal(SealError::KeyRefused { .. }))
                ),
                "{len} bytes opened for another object: {moved:?}"
            );
        }
    }
}

/// A sealed inline blob whose stored bytes or wrapped key were altered, reordered or cut (as a
/// meta record could be) is never read back as plaintext: every alteration fails the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_sealed_bytes_and_wrapped_keys_never_read_back() {
    let cluster = Cluster::start().await;
    let sealed = BlobStore::with_seals(
        cluster.data.clone(),
        cluster.directory.clone(),
        BlobStoreConfig {
            chunk_size: CHUNK,
            inline_threshold: 1024 * 1024,
            ..BlobStoreConfig::default()
        },
        Arc::new(SseSeals::new(Arc::new(super::sse::LocalKeys::new()))),
    );
    let segment = tessera_core::sealing::segments::DEFAULT_SEGMENT_SIZE as usize;
    let len = 2 * segment + 100;
    let data = canary_bytes(len);
    let w = sealed
        .write(body(&data, 7_000), opts(len))
        .await
        .expect("sealed write");
    let BlobStorage::Inline(stored) = &w.blob.storage else {
        panic!("stored inline");
    };
    let stored_segment = segment + 16;
    let with_stored = |bytes: Vec<u8>| Blob {
        stored_size: bytes.len() as u64,
        storage: BlobStorage::Inline(bytes),
        ..w.blob.clone()
    };
    let mut cases: Vec<(String, Blob)> = Vec::new();
    for at in [0, 5, segment - 1, segment + 3, stored.len() - 1] {
        let mut bad = stored.clone();
        bad[at] ^= 0x01;
        cases.push((format!("byte {at} flipped"), with_stored(bad)));
    }
    let mut swapped = stored.clone();
    swapped[..2 * stored_segment].rotate_left(stored_segment);
    cases.push(("first two segments swapped".into(), with_stored(swapped)));
    let mut last_first = stored[2 * stored_segment..].to_vec();
    last_first.extend_from_slice(&stored[..2 * stored_segment]);
    cases.push(("segments reordered".into(), with_stored(last_first)));
    let mut bad_key = w.blob.clone();
    bad_key.sealing.wrapped_key[20] ^= 0x01;
    cases.push(("wrapped key altered".into(), bad_key));
    let mut other_kek = w.blob.clone();
    other_kek.sealing.key_id = "sse-s3/2".into();
    cases.push(("another KEK named".into(), other_kek));
    for (what, blob) in cases {
        let whole = collect(sealed.read(&blob, &target(), 0..len as u64)).await;
        assert!(whole.is_err(), "{what}: the whole object read back");
        // A range reads only its own segments: it fails, or (when the damage lies in other
        // segments) returns exactly the bytes written, never others.
        for start in [0, segment - 5, segment + 50, 2 * segment] {
            let range = start as u64..(start + 60).min(len) as u64;
            if let Ok(bytes) = collect(sealed.read(&blob, &target(), range.clone())).await {
                assert!(
                    bytes == data[start..(start + 60).min(len)],
                    "{what}, {range:?}: wrong plaintext"
                );
            }
        }
    }
    // Cut short (the record's sizes no longer agree with the bytes): refused too.
    let mut cut = w.blob.clone();
    cut.storage = BlobStorage::Inline(stored[..stored.len() - 16].to_vec());
    assert!(
        collect(sealed.read(&cut, &target(), 0..len as u64))
            .await
            .is_err()
    );
    // Untouched, it reads back.
    let back = collect(sealed.read(&w.blob, &target(), 0..len as u64))
        .await
        .expect("intact");
    assert!(back == data);
}
