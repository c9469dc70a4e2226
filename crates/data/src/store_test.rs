//! Store tests: round trips, every kind of damage on disk, write-protocol violations, and
//! what survives (or does not) a restart.

use super::*;
use crate::shard_reader::ChunkRead;
use crate::shard_writer::WrittenShard;
use bytes::Bytes;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use tessera_core::shard_format::{HASH_LEN, chunk_offset};

const CHUNK: u32 = 1024;

fn header(id: u8, shard_index: u32) -> ShardFileHeader {
    ShardFileHeader {
        data_id: DataId::from_bytes([id; 16]),
        shard_index,
        data_shards: 4,
        parity_shards: 2,
        chunk_size: CHUNK,
    }
}

/// Deterministic, index-dependent chunk contents.
fn chunk_data(index: u64, len: u32) -> Bytes {
    (0..len)
        .map(|i| (u64::from(i).wrapping_mul(31) ^ index.wrapping_mul(7)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn hash_of(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(blake3::hash(data).as_bytes())
}

async fn write_shard(store: &ShardStore, header: ShardFileHeader, chunks: u64) -> WrittenShard {
    let mut writer = store.begin_write(header).await.unwrap();
    for i in 0..chunks {
        let data = chunk_data(i, header.chunk_size);
        let hash = hash_of(&data);
        writer = writer.write_chunk(i, data, hash).await.unwrap();
    }
    writer.commit(chunks).await.unwrap()
}

async fn read_all(reader: &ShardReader) -> Vec<ChunkRead> {
    let mut out = Vec::new();
    for i in reader.range(0, 0).unwrap() {
        out.push(reader.read_chunk(i).await.unwrap());
    }
    out
}

fn temp_entries(store: &ShardStore) -> usize {
    fs::read_dir(store.root().join(TMP_DIR)).unwrap().count()
}

fn flip_byte(path: &Path, offset: u64) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, offset).unwrap();
}

#[tokio::test]
async fn a_written_shard_reads_back_intact() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(1, 3);
    let written = write_shard(&store, h, 5).await;
    assert_eq!(written.chunks, 5);
    assert_eq!(written.data_bytes, 5 * u64::from(CHUNK));

    let key = ShardKey::of_header(&h);
    let reader = store.open_read(key).await.unwrap();
    assert_eq!(reader.header(), &h);
    assert_eq!(reader.chunk_count(), 5);
    for (i, chunk) in read_all(&reader).await.into_iter().enumerate() {
        let i = i as u64;
        let data = chunk_data(i, CHUNK);
        let hash = hash_of(&data);
        assert_eq!(
            chunk,
            ChunkRead::Intact {
                index: i,
                data,
                hash
            }
        );
    }

    let stat = store.stat(key).await.unwrap();
    assert_eq!(stat.chunks, 5);
    assert_eq!(stat.file_len, written.file_len);
    assert_eq!(
        store.usage(),
        StoreUsage {
            shards: 1,
            bytes: written.file_len
        }
    );
    assert!(
        store
            .shard_path(&key)
            .ends_with(format!("shards/01/{}.3", "01".repeat(16)))
    );
    assert_eq!(temp_entries(&store), 0);
}

#[tokio::test]
async fn ranges_are_checked_against_the_chunk_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(2, 0);
    write_shard(&store, h, 4).await;
    let reader = store.open_read(ShardKey::of_header(&h)).await.unwrap();
    assert_eq!(reader.range(0, 0).unwrap(), 0..4);
    assert_eq!(reader.range(1, 2).unwrap(), 1..3);
    assert_eq!(reader.range(4, 0).unwrap(), 4..4);
    for (first, count) in [(5, 0), (3, 2), (0, 5), (1, u64::MAX)] {
        let err = reader.range(first, count).unwrap_err();
        assert_eq!(err.code(), "chunk_range_out_of_bounds");
    }
    assert!(reader.read_chunk(4).await.is_err());
}

#[tokio::test]
async fn an_empty_shard_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(3, 1);
    let written = write_shard(&store, h, 0).await;
    assert_eq!(written.file_len, HEADER_LEN);
    let stat = store.stat(ShardKey::of_header(&h)).await.unwrap();
    assert_eq!(stat.chunks, 0);
}

#[tokio::test]
async fn a_flipped_byte_makes_only_its_chunk_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(4, 0);
    write_shard(&store, h, 4).await;
    let key = ShardKey::of_header(&h);
    let path = store.shard_path(&key);
    // One byte inside chunk 1's data, one inside chunk 3's stored hash.
    flip_byte(&path, chunk_offset(CHUNK, 1) + 100);
    flip_byte(
        &path,
        chunk_offset(CHUNK, 3) + u64::from(CHUNK) + HASH_LEN - 1,
    );

    let reader = store.open_read(key).await.unwrap();
    let chunks = read_all(&reader).await;
    assert!(matches!(chunks[0], ChunkRead::Intact { index: 0, .. }));
    assert_eq!(chunks[1], ChunkRead::Corrupt { index: 1 });
    assert!(matches!(chunks[2], ChunkRead::Intact { index: 2, .. }));
    assert_eq!(chunks[3], ChunkRead::Corrupt { index: 3 });
}

#[tokio::test]
async fn a_truncated_file_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(5, 0);
    let written = write_shard(&store, h, 3).await;
    let key = ShardKey::of_header(&h);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(store.shard_path(&key))
        .unwrap();
    file.set_len(written.file_len - 10).unwrap();

    let err = store.open_read(key).await.unwrap_err();
    assert!(matches!(err, ShardStoreError::Truncated { .. }), "{err}");
    assert!(err.is_corruption());
    assert!(store.stat(key).await.is_err());

    // Cut inside the header: the header itself is unreadable.
    file.set_len(HEADER_LEN - 1).unwrap();
    let err = store.open_read(key).await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::CorruptHeader { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_damaged_header_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(6, 0);
    write_shard(&store, h, 2).await;
    let key = ShardKey::of_header(&h);
    flip_byte(&store.shard_path(&key), 0);
    let err = store.open_read(key).await.unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_file_under_another_shards_name_is_misplaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let a = header(7, 0);
    write_shard(&store, a, 1).await;
    let b = ShardKey::new(a.data_id, 1);
    fs::copy(
        store.shard_path(&ShardKey::of_header(&a)),
        store.shard_path(&b),
    )
    .unwrap();
    let err = store.open_read(b).await.unwrap_err();
    assert!(matches!(err, ShardStoreError::Misplaced { .. }), "{err}");
}

#[tokio::test]
async fn a_missing_shard_is_not_found_and_deleting_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let key = ShardKey::new(DataId::from_bytes([8; 16]), 0);
    let err = store.open_read(key).await.unwrap_err();
    assert!(matches!(err, ShardStoreError::NotFound { .. }));
    assert!(!store.delete(key).await.unwrap());

    write_shard(&store, header(8, 0), 2).await;
    assert_eq!(store.usage().shards, 1);
    assert!(store.delete(key).await.unwrap());
    assert_eq!(store.usage(), StoreUsage::default());
    assert!(store.open_read(key).await.is_err());
}

#[tokio::test]
async fn writing_the_same_shard_again_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(9, 2);
    write_shard(&store, h, 2).await;
    let written = write_shard(&store, h, 3).await;
    assert_eq!(
        store.usage(),
        StoreUsage {
            shards: 1,
            bytes: written.file_len
        }
    );
    let stat = store.stat(ShardKey::of_header(&h)).await.unwrap();
    assert_eq!(stat.chunks, 3);
}

#[tokio::test]
async fn a_different_header_under_the_same_name_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(10, 0);
    let other = ShardFileHeader {
        chunk_size: CHUNK * 2,
        ..h
    };
    // Both writes start before either is stored: the conflict is found at commit.
    let late = store.begin_write(other).await.unwrap();
    write_shard(&store, h, 1).await;
    let err = late.commit(0).await.unwrap_err();
    assert!(matches!(err, ShardStoreError::Conflict { .. }), "{err}");
    // Once stored, the conflict is found when the write begins.
    let err = store.begin_write(other).await.unwrap_err();
    assert!(matches!(err, ShardStoreError::Conflict { .. }), "{err}");
    assert_eq!(store.stat(ShardKey::of_header(&h)).await.unwrap().header, h);
    assert_eq!(temp_entries(&store), 0);
}

#[tokio::test]
async fn a_write_replaces_a_shard_whose_header_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(11, 0);
    write_shard(&store, h, 2).await;
    let key = ShardKey::of_header(&h);
    flip_byte(&store.shard_path(&key), 0);
    assert!(store.open_read(key).await.is_err());
    write_shard(&store, h, 2).await;
    let reader = store.open_read(key).await.unwrap();
    assert!(
        read_all(&reader)
            .await
            .iter()
            .all(|c| matches!(c, ChunkRead::Intact { .. }))
    );
    assert_eq!(store.usage().shards, 1);
}

#[tokio::test]
async fn write_protocol_violations_keep_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(12, 0);
    let key = ShardKey::of_header(&h);
    let good = chunk_data(0, CHUNK);
    let good_hash = hash_of(&good);

    let w = store.begin_write(h).await.unwrap();
    let err = w
        .write_chunk(0, good.clone(), hash_of(b"other"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "chunk_hash_mismatch");

    let w = store.begin_write(h).await.unwrap();
    let err = w
        .write_chunk(1, good.clone(), good_hash.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "chunk_out_of_order");

    let w = store.begin_write(h).await.unwrap();
    let short = good.slice(..10);
    let err = w
        .write_chunk(0, short.clone(), hash_of(&short))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "chunk_size_mismatch");

    let w = store.begin_write(h).await.unwrap();
    let err = w
        .write_chunk(0, good.clone(), good_hash.slice(..8))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "chunk_hash_length");

    let w = store.begin_write(h).await.unwrap();
    let w = w
        .write_chunk(0, good.clone(), good_hash.clone())
        .await
        .unwrap();
    let err = w.commit(2).await.unwrap_err();
    assert_eq!(err.code(), "chunk_count_mismatch");

    assert!(matches!(
        store.open_read(key).await,
        Err(ShardStoreError::NotFound { .. })
    ));
    assert_eq!(temp_entries(&store), 0);
    assert_eq!(store.usage(), StoreUsage::default());
}

#[tokio::test]
async fn impossible_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(13, 0);
    let bad = [
        ShardFileHeader { chunk_size: 0, ..h },
        ShardFileHeader {
            chunk_size: MAX_CHUNK_SIZE + 1,
            ..h
        },
        ShardFileHeader {
            shard_index: 6,
            ..h
        },
        ShardFileHeader {
            data_shards: 0,
            ..h
        },
    ];
    for header in bad {
        let err = store.begin_write(header).await.unwrap_err();
        assert_eq!(err.code(), "shard_invalid_header");
    }
    assert_eq!(temp_entries(&store), 0);
}

#[tokio::test]
async fn an_aborted_or_dropped_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(14, 0);
    let key = ShardKey::of_header(&h);
    let data = chunk_data(0, CHUNK);

    let w = store.begin_write(h).await.unwrap();
    let w = w
        .write_chunk(0, data.clone(), hash_of(&data))
        .await
        .unwrap();
    assert_eq!(temp_entries(&store), 1);
    w.abort().await.unwrap();
    assert_eq!(temp_entries(&store), 0);

    let w = store.begin_write(h).await.unwrap();
    let w = w
        .write_chunk(0, data.clone(), hash_of(&data))
        .await
        .unwrap();
    drop(w);
    // Drop hands the removal to the blocking pool; wait for it with a deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    while temp_entries(&store) != 0 {
        assert!(
            Instant::now() < deadline,
            "temp file outlived its dropped writer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.open_read(key).await.is_err());
    assert_eq!(store.usage(), StoreUsage::default());
}

#[tokio::test]
async fn a_restart_cleans_temp_files_and_recounts_shards() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    write_shard(&store, header(15, 0), 2).await;
    write_shard(&store, header(16, 1), 3).await;
    let usage = store.usage();
    // A write in progress when the process "dies", plus leftovers of an older crash.
    let data = chunk_data(0, CHUNK);
    let w = store.begin_write(header(17, 0)).await.unwrap();
    let w = w
        .write_chunk(0, data.clone(), hash_of(&data))
        .await
        .unwrap();
    std::mem::forget(w);
    fs::write(dir.path().join(TMP_DIR).join("stray.partial"), b"x").unwrap();
    fs::create_dir(dir.path().join(TMP_DIR).join("stray-dir")).unwrap();
    assert_eq!(temp_entries(&store), 3);
    drop(store);

    let store = ShardStore::open(dir.path()).await.unwrap();
    assert_eq!(temp_entries(&store), 0);
    assert_eq!(store.usage(), usage);
    assert_eq!(usage.shards, 2);
    let key = ShardKey::of_header(&header(17, 0));
    assert!(matches!(
        store.open_read(key).await,
        Err(ShardStoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_format_file_is_written_once_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    drop(ShardStore::open(dir.path()).await.unwrap());
    let format = dir.path().join(FORMAT_FILE);
    assert_eq!(fs::read_to_string(&format).unwrap().trim(), FORMAT_LINE);
    drop(ShardStore::open(dir.path()).await.unwrap());

    fs::write(&format, "tessera-data 2\n").unwrap();
    let err = ShardStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::UnknownFormat { .. }),
        "{err}"
    );

    fs::remove_file(&format).unwrap();
    let err = ShardStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::MissingFormat { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_quarantined_shard_is_gone_until_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(18, 2);
    let key = ShardKey::of_header(&h);
    write_shard(&store, h, 3).await;

    let first = store.quarantine(key, "test").await.unwrap().unwrap();
    assert_eq!(first.parent(), Some(store.quarantine_dir()));
    let name = first.file_name().unwrap().to_str().unwrap().to_owned();
    let stamp = name.strip_prefix(&format!("{}.", key.file_name())).unwrap();
    assert!(stamp.parse::<i64>().unwrap() > 0, "{name}");
    assert!(matches!(
        store.open_read(key).await,
        Err(ShardStoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.stat(key).await,
        Err(ShardStoreError::NotFound { .. })
    ));
    assert_eq!(store.list().await.unwrap(), ShardListing::default());
    assert_eq!(store.usage(), StoreUsage::default());
    assert_eq!(store.quarantine(key, "test").await.unwrap(), None);

    // Repair writes the shard again on the same node.
    write_shard(&store, h, 3).await;
    let reader = store.open_read(key).await.unwrap();
    assert_eq!(reader.count_corrupt_chunks().await.unwrap(), 0);
    assert_eq!(store.usage().shards, 1);
    let second = store.quarantine(key, "test").await.unwrap().unwrap();
    assert_ne!(first, second);
    assert!(first.exists() && second.exists());
    // The quarantine survives a restart and is not counted as stored.
    drop(store);
    let store = ShardStore::open(dir.path()).await.unwrap();
    assert_eq!(store.usage(), StoreUsage::default());
    assert!(first.exists());
}

#[tokio::test]
async fn a_listing_reads_names_headers_and_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let a = write_shard(&store, header(1, 0), 2).await;
    let b = write_shard(&store, header(1, 3), 0).await;
    let c = write_shard(&store, header(2, 1), 1).await;
    // A damaged header under a shard's name, and files that are not shards at all.
    let damaged = ShardKey::of_header(&header(3, 0));
    write_shard(&store, header(3, 0), 1).await;
    flip_byte(&store.shard_path(&damaged), 2);
    let prefix = store.shards_dir().join("01");
    let hex = format!("01{}", "ab".repeat(15));
    for stray in [
        "junk".to_owned(),
        format!("{}.0", hex.to_uppercase()),
        format!("{hex}.00"),
        format!("{hex}.1.partial"),
    ] {
        fs::write(prefix.join(stray), b"x").unwrap();
    }

    let listing = store.list().await.unwrap();
    let got: Vec<(ShardKey, u64, u64)> = listing
        .shards
        .iter()
        .map(|s| (s.key, s.chunks, s.file_len))
        .collect();
    let key = |id, index| ShardKey::of_header(&header(id, index));
    assert_eq!(
        got,
        vec![
            (key(1, 0), 2, a.file_len),
            (key(1, 3), 0, b.file_len),
            (key(2, 1), 1, c.file_len),
        ]
    );
    assert!(listing.shards.iter().all(|s| s.modified_ms > 0));
    assert_eq!(listing.unreadable, vec![damaged]);
}

#[test]
fn shard_file_names_have_one_spelling() {
    let key = ShardKey::new(DataId::from_bytes([0xab; 16]), 17);
    assert_eq!(key.file_name(), format!("{}.17", "ab".repeat(16)));
    assert_eq!(ShardKey::from_file_name(&key.file_name()), Some(key));
    let zero = ShardKey::new(DataId::from_bytes([0xab; 16]), 0);
    assert_eq!(ShardKey::from_file_name(&zero.file_name()), Some(zero));
    let hex = "ab".repeat(16);
    for bad in [
        format!("{}.17", hex.to_uppercase()),
        format!("{hex}.017"),
        format!("{hex}.+17"),
        format!("{hex}."),
        format!("{hex}.99999999999"),
        format!("{hex}.1.partial"),
        format!("{}.1", &hex[..30]),
        hex.clone(),
        ".1".to_owned(),
    ] {
        assert_eq!(ShardKey::from_file_name(&bad), None, "{bad}");
    }
}
