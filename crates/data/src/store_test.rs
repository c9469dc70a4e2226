//! Store tests over real files: round trips, generations side by side, every refusal of a
//! write, every kind of damage on disk, the folder's format and lock, and what survives (or
//! does not) a restart.

use super::*;
use crate::shard_limits::MAX_CHUNK_SIZE;
use crate::shard_reader::{ChunkRead, HashTable};
use crate::shard_writer::WrittenShard;
use crate::test_support::*;
use bytes::Bytes;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use tessera_core::names::DataId;
use tessera_core::shard_file::{
    FOOTER_LEN, HEADER_LEN, ShardDigester, ShardFileError, chunk_offset, file_len, shard_digest,
};
use tessera_runtime::dirlock::DirLockError;

fn temp_entries(store: &ShardStore) -> usize {
    fs::read_dir(store.root().join(TMP_DIR)).unwrap().count()
}

async fn open_table(store: &ShardStore, key: ShardKey) -> (ShardReader, HashTable) {
    let reader = store.open_read(key).await.unwrap();
    let table = reader.hash_table().await.unwrap();
    (reader, table)
}

async fn read_all(reader: &ShardReader, table: &HashTable) -> Vec<ChunkRead> {
    let mut out = Vec::new();
    for i in reader.range(0, 0).unwrap() {
        out.push(reader.read_chunk(table, i).await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_written_shard_reads_back_intact() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(1, 3);
    let written = write_shard(&store, h, 5).await;
    assert_eq!(written.chunks, 5);
    assert_eq!(written.data_bytes, 5 * u64::from(CHUNK));
    assert_eq!(written.file_len, file_len(CHUNK, 5));
    assert_eq!(written.digest, digest_of(&h, 5));

    let (reader, table) = open_table(&store, key_of(&h)).await;
    assert_eq!(reader.header(), &h);
    assert_eq!(reader.chunk_count(), 5);
    assert_eq!(table.chunks(), 5);
    for i in 0..5 {
        let data = chunk_data(&h, i);
        assert_eq!(table.hash(i), Some(&hash_at(&h, i, &data)[..]));
    }
    assert_eq!(
        shard_digest(&h.data_id, h.shard_index, table.bytes()),
        Some(written.digest)
    );
    for (i, chunk) in read_all(&reader, &table).await.into_iter().enumerate() {
        let index = i as u64;
        let data = chunk_data(&h, index);
        assert_eq!(chunk, ChunkRead::Intact { index, data });
    }

    let stat = store.stat(key_of(&h)).await.unwrap();
    assert_eq!((stat.chunks, stat.file_len), (5, written.file_len));
    assert_eq!((stat.header, stat.digest), (h, written.digest));
    assert_eq!(
        store.usage(),
        StoreUsage {
            shards: 1,
            bytes: written.file_len
        }
    );
    assert!(
        store
            .shard_path(&key_of(&h))
            .ends_with(format!("shards/01/{}.3.0000000000001001", "01".repeat(16)))
    );
    assert_eq!(temp_entries(&store), 0);
}

#[tokio::test]
async fn ranges_are_checked_against_the_chunk_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(2, 0);
    write_shard(&store, h, 4).await;
    let (reader, table) = open_table(&store, key_of(&h)).await;
    assert_eq!(reader.range(0, 0).unwrap(), 0..4);
    assert_eq!(reader.range(1, 2).unwrap(), 1..3);
    assert_eq!(reader.range(4, 0).unwrap(), 4..4);
    let shard = key_of(&h);
    for (first, count) in [(5, 0), (3, 2), (0, 5), (1, u64::MAX)] {
        let err = reader.range(first, count).unwrap_err();
        assert!(
            matches!(
                err,
                ShardStoreError::RangeOutOfBounds { shard: s, first: f, count: c, chunks: 4 }
                    if s == shard && f == first && c == count
            ),
            "{err}"
        );
        assert_eq!(err.code(), "chunk_range_out_of_bounds");
    }
    let err = reader.read_chunk(&table, 4).await.unwrap_err();
    assert!(
        matches!(
            err,
            ShardStoreError::RangeOutOfBounds { shard: s, first: 4, count: 1, chunks: 4 }
                if s == shard
        ),
        "{err}"
    );
    assert_eq!(err.code(), "chunk_range_out_of_bounds");
}

#[tokio::test]
async fn an_empty_shard_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(3, 1);
    let written = write_shard(&store, h, 0).await;
    assert_eq!(written.file_len, HEADER_LEN + FOOTER_LEN);
    let empty = ShardDigester::new(&h.data_id, h.shard_index).finish();
    assert_eq!(written.digest, empty);
    let (reader, table) = open_table(&store, key_of(&h)).await;
    assert_eq!((reader.chunk_count(), table.chunks()), (0, 0));
    assert_eq!(reader.digest(), empty);
}

#[tokio::test]
async fn two_generations_coexist_and_a_delete_removes_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let old = header_gen(4, 2, 0xaaaa);
    let new = header_gen(4, 2, 0xbbbb);
    let a = write_shard(&store, old, 2).await;
    let b = write_shard(&store, new, 3).await;
    assert_eq!(store.usage().shards, 2);
    assert_eq!(store.stat(key_of(&old)).await.unwrap().chunks, 2);
    assert_eq!(store.stat(key_of(&new)).await.unwrap().chunks, 3);
    let listed: Vec<_> = store
        .list()
        .await
        .unwrap()
        .shards
        .iter()
        .map(|s| (s.key, s.chunks))
        .collect();
    assert_eq!(listed, vec![(key_of(&old), 2), (key_of(&new), 3)]);

    // A generation never stored: absent, and deleting it touches nothing.
    let other = ShardKey::new(old.data_id, 2, generation(0xcccc));
    assert!(matches!(
        store.open_read(other).await,
        Err(ShardStoreError::NotFound { .. })
    ));
    assert!(!store.delete(other).await.unwrap());
    assert_eq!(store.usage().shards, 2);

    assert!(store.delete(key_of(&old)).await.unwrap());
    assert!(!store.delete(key_of(&old)).await.unwrap());
    assert!(matches!(
        store.open_read(key_of(&old)).await,
        Err(ShardStoreError::NotFound { .. })
    ));
    let (reader, table) = open_table(&store, key_of(&new)).await;
    assert_eq!(reader.count_corrupt_chunks(&table).await.unwrap(), 0);
    assert_eq!(
        store.usage(),
        StoreUsage {
            shards: 1,
            bytes: b.file_len
        }
    );
    assert_ne!(a.digest, b.digest);
}

#[tokio::test]
async fn a_stored_copy_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(5, 0);
    // Both writes start before either is stored: the second is refused at its commit.
    let late = store.begin_write(h).await.unwrap();
    let written = write_shard(&store, h, 2).await;
    let empty = Bytes::copy_from_slice(&digest_of(&h, 0));
    let err = late.commit(0, empty).await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::AlreadyExists { shard } if shard == key_of(&h)),
        "{err}"
    );
    // Once stored, the write is refused when it begins.
    let err = store.begin_write(h).await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::AlreadyExists { shard } if shard == key_of(&h)),
        "{err}"
    );
    assert_eq!(err.code(), "shard_already_exists");
    let stat = store.stat(key_of(&h)).await.unwrap();
    assert_eq!((stat.chunks, stat.digest), (2, written.digest));
    assert_eq!(temp_entries(&store), 0);
    assert_eq!(store.usage().shards, 1);
}

/// Begins a write of `h`, sends chunk 0 as given, and returns the error of that chunk.
async fn refused_chunk(
    store: &ShardStore,
    h: ShardFileHeader,
    index: u64,
    data: Bytes,
    hash: Bytes,
) -> ShardStoreError {
    let writer = store.begin_write(h).await.unwrap();
    writer.write_chunk(index, data, hash).await.unwrap_err()
}

#[tokio::test]
async fn every_refusal_of_a_write_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(6, 1);
    let data0 = chunk_data(&h, 0);
    let hash0 = hash_at(&h, 0, &data0);

    let cases = [
        // Not the hash of this data.
        (
            data0.clone(),
            hash_at(&h, 0, b"other bytes"),
            0,
            "chunk_hash_mismatch",
        ),
        // The right data's hash for another position, shard or blob: the hash is bound.
        (
            data0.clone(),
            hash_at(&h, 1, &data0),
            0,
            "chunk_hash_mismatch",
        ),
        (
            data0.clone(),
            hash_at(&header(6, 2), 0, &data0),
            0,
            "chunk_hash_mismatch",
        ),
        (
            data0.clone(),
            hash_at(&header(9, 1), 0, &data0),
            0,
            "chunk_hash_mismatch",
        ),
        // Plain blake3 of the data (format 1's hash) is not a chunk hash.
        (
            data0.clone(),
            Bytes::copy_from_slice(blake3::hash(&data0).as_bytes()),
            0,
            "chunk_hash_mismatch",
        ),
        (data0.clone(), hash0.clone(), 1, "chunk_out_of_order"),
        (
            data0.slice(..10),
            hash_at(&h, 0, &data0[..10]),
            0,
            "chunk_size_mismatch",
        ),
        (data0.clone(), hash0.slice(..8), 0, "chunk_hash_length"),
    ];
    for (data, hash, index, code) in cases {
        let err = refused_chunk(&store, h, index, data, hash).await;
        assert_eq!(err.code(), code, "{err}");
        assert!(!err.is_retryable());
    }

    // A commit that names another count, or a digest the chunks do not make.
    let one = || async {
        let w = store.begin_write(h).await.unwrap();
        w.write_chunk(0, data0.clone(), hash0.clone())
            .await
            .unwrap()
    };
    let good_digest = Bytes::copy_from_slice(&digest_of(&h, 1));
    let err = one()
        .await
        .commit(2, good_digest.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ShardStoreError::ChunkCount {
                declared: 2,
                received: 1,
                ..
            }
        ),
        "{err}"
    );
    let other_blob = Bytes::copy_from_slice(&digest_of(&header(9, 1), 1));
    let err = one().await.commit(1, other_blob).await.unwrap_err();
    assert_eq!(err.code(), "shard_digest_mismatch");
    let err = one().await.commit(0, Bytes::new()).await.unwrap_err();
    assert_eq!(err.code(), "chunk_count_mismatch");
    let err = one()
        .await
        .commit(1, good_digest.slice(..16))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "shard_digest_length");

    // Headers no copy may have.
    let bad_headers = [
        (
            ShardFileHeader { generation: 0, ..h },
            "shard_zero_generation",
        ),
        (
            ShardFileHeader { chunk_size: 0, ..h },
            "shard_invalid_header",
        ),
        (
            ShardFileHeader {
                chunk_size: MAX_CHUNK_SIZE + 1,
                ..h
            },
            "shard_invalid_header",
        ),
        (
            ShardFileHeader {
                shard_index: 6,
                ..h
            },
            "shard_invalid_header",
        ),
        (
            ShardFileHeader {
                data_shards: 0,
                ..h
            },
            "shard_invalid_header",
        ),
    ];
    for (bad, code) in bad_headers {
        let err = store.begin_write(bad).await.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    }

    let err = store.open_read(key_of(&h)).await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::NotFound { shard } if shard == key_of(&h)),
        "{err}"
    );
    assert_eq!(temp_entries(&store), 0);
    assert_eq!(store.usage(), StoreUsage::default());

    // After all that, the same copy is still written normally.
    write_shard(&store, h, 1).await;
}

#[tokio::test]
async fn a_flipped_data_byte_makes_only_its_chunk_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(7, 0);
    write_shard(&store, h, 4).await;
    let path = store.shard_path(&key_of(&h));
    flip_byte(&path, chunk_offset(CHUNK, 1) + 100);
    flip_byte(&path, chunk_offset(CHUNK, 3) + u64::from(CHUNK) - 1);

    let (reader, table) = open_table(&store, key_of(&h)).await;
    let chunks = read_all(&reader, &table).await;
    assert!(matches!(chunks[0], ChunkRead::Intact { index: 0, .. }));
    assert_eq!(chunks[1], ChunkRead::Corrupt { index: 1 });
    assert!(matches!(chunks[2], ChunkRead::Intact { index: 2, .. }));
    assert_eq!(chunks[3], ChunkRead::Corrupt { index: 3 });
    assert_eq!(reader.count_corrupt_chunks(&table).await.unwrap(), 2);
}

#[tokio::test]
async fn damage_to_header_footer_table_or_length_refuses_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let chunks = 3;
    let h = header(8, 0);
    let written = write_shard(&store, h, chunks).await;
    let key = key_of(&h);
    let path = store.shard_path(&key);
    let pristine = fs::read(&path).unwrap();
    let restore = || fs::write(&path, &pristine).unwrap();

    flip_byte(&path, 30);
    let err = store.open_read(key).await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::CorruptHeader { shard, .. } if shard == key),
        "{err}"
    );
    assert!(err.is_corruption() && !err.is_retryable());
    restore();

    flip_byte(&path, written.file_len - 20);
    let err = store.open_read(key).await.unwrap_err();
    assert!(
        matches!(
            err,
            ShardStoreError::CorruptFooter {
                shard,
                source: ShardFileError::FooterChecksum,
            } if shard == key
        ),
        "{err}"
    );
    restore();

    // A flipped table entry: the header and footer are fine, the table is not.
    flip_byte(&path, table_entry_offset(chunks, 1) + 3);
    let reader = store.open_read(key).await.unwrap();
    let err = reader.hash_table().await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::HashTableMismatch { shard } if shard == key),
        "{err}"
    );
    assert!(err.is_corruption());
    restore();

    // Cut short, padded, cut inside the header.
    // A length that is no whole number of records leaves no footer to trust: expected is 0.
    let cut_short = |err: &ShardStoreError| {
        matches!(
            err,
            ShardStoreError::Truncated { shard, file_len, expected: 0 }
                if *shard == key && *file_len == written.file_len - 10
        )
    };
    cut(&path, written.file_len - 10);
    let err = store.open_read(key).await.unwrap_err();
    assert!(cut_short(&err), "{err}");
    let err = store.stat(key).await.unwrap_err();
    assert!(cut_short(&err), "{err}");
    restore();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all_at(&[0; 7], written.file_len)
        .unwrap();
    let err = store.open_read(key).await.unwrap_err();
    assert!(
        matches!(
            err,
            ShardStoreError::Truncated { shard, file_len, expected: 0 }
                if shard == key && file_len == written.file_len + 7
        ),
        "{err}"
    );
    cut(&path, HEADER_LEN - 1);
    let err = store.open_read(key).await.unwrap_err();
    assert!(
        matches!(
            err,
            ShardStoreError::CorruptHeader {
                shard,
                source: ShardFileError::Truncated,
            } if shard == key
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_under_another_copys_name_is_misplaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(9, 0);
    write_shard(&store, h, 1).await;
    let source = store.shard_path(&key_of(&h));
    let names = [
        ShardKey::new(DataId::from_bytes([10; 16]), 0, key_of(&h).generation),
        ShardKey::new(h.data_id, 1, key_of(&h).generation),
        ShardKey::new(h.data_id, 0, generation(0x9999)),
    ];
    for renamed in names {
        fs::copy(&source, store.shard_path(&renamed)).unwrap();
        let err = store.open_read(renamed).await.unwrap_err();
        assert!(
            matches!(err, ShardStoreError::Misplaced { shard, found } if shard == renamed && found == key_of(&h)),
            "{err}"
        );
    }
}

#[tokio::test]
async fn swapped_or_transplanted_chunks_fail_their_bound_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(11, 0);
    write_shard(&store, h, 4).await;
    let key = key_of(&h);
    let path = store.shard_path(&key);

    // Data and table entries swapped together, and the footer made to match the new table:
    // header, footer and table all check out, and each chunk matches plain-blake3-wise.
    swap_chunks(&path, &h, 4, 1, 2);
    let (reader, table) = open_table(&store, key).await;
    let chunks = read_all(&reader, &table).await;
    assert!(matches!(chunks[0], ChunkRead::Intact { .. }));
    assert_eq!(chunks[1], ChunkRead::Corrupt { index: 1 });
    assert_eq!(chunks[2], ChunkRead::Corrupt { index: 2 });
    assert!(matches!(chunks[3], ChunkRead::Intact { .. }));

    // A chunk (with its table entry) copied in from another shard, and from another blob.
    for (n, other) in [header(11, 1), header(12, 0)].into_iter().enumerate() {
        write_shard(&store, other, 4).await;
        let victim = header_gen(13, 0, 0x100 + n as u64);
        write_shard(&store, victim, 4).await;
        let victim_path = store.shard_path(&key_of(&victim));
        transplant_chunk(
            &victim_path,
            &victim,
            4,
            &store.shard_path(&key_of(&other)),
            3,
        );
        let (reader, table) = open_table(&store, key_of(&victim)).await;
        let chunks = read_all(&reader, &table).await;
        assert_eq!(chunks[3], ChunkRead::Corrupt { index: 3 }, "{n}");
        assert_eq!(reader.count_corrupt_chunks(&table).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn an_aborted_or_dropped_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(14, 0);
    let data = chunk_data(&h, 0);
    let hash = hash_at(&h, 0, &data);

    let w = store.begin_write(h).await.unwrap();
    let w = w.write_chunk(0, data.clone(), hash.clone()).await.unwrap();
    assert_eq!(temp_entries(&store), 1);
    w.abort().await.unwrap();
    assert_eq!(temp_entries(&store), 0);

    let w = store.begin_write(h).await.unwrap();
    let w = w.write_chunk(0, data, hash).await.unwrap();
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
    let err = store.open_read(key_of(&h)).await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::NotFound { shard } if shard == key_of(&h)),
        "{err}"
    );
    assert_eq!(store.usage(), StoreUsage::default());
}

#[tokio::test]
async fn a_restart_cleans_temp_files_and_recounts_shards() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    write_shard(&store, header(15, 0), 2).await;
    write_shard(&store, header(16, 1), 3).await;
    let usage = store.usage();
    // What a process that died mid-write leaves: a partial temp file (here the header and one
    // chunk of a copy), plus leftovers of an older crash.
    let h = header(17, 0);
    let mut partial = h.encode().to_vec();
    partial.extend_from_slice(&chunk_data(&h, 0));
    fs::write(
        dir.path()
            .join(TMP_DIR)
            .join(format!("{}.0.partial", key_of(&h))),
        partial,
    )
    .unwrap();
    fs::write(dir.path().join(TMP_DIR).join("stray.partial"), b"x").unwrap();
    fs::create_dir(dir.path().join(TMP_DIR).join("stray-dir")).unwrap();
    assert_eq!(temp_entries(&store), 3);
    // A stray under shards/ is neither counted nor listed.
    fs::write(store.shards_dir().join("0f").join("0f-notes.txt"), b"x").unwrap();
    drop(store);

    let store = ShardStore::open(dir.path()).await.unwrap();
    assert_eq!(temp_entries(&store), 0);
    assert_eq!(store.usage(), usage);
    assert_eq!(usage.shards, 2);
    assert_eq!(store.list().await.unwrap().shards.len(), 2);
    let err = store.open_read(key_of(&h)).await.unwrap_err();
    assert!(
        matches!(err, ShardStoreError::NotFound { shard } if shard == key_of(&h)),
        "{err}"
    );
}

#[tokio::test]
async fn the_format_file_is_written_once_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    drop(ShardStore::open(dir.path()).await.unwrap());
    let format = dir.path().join(FORMAT_FILE);
    assert_eq!(fs::read_to_string(&format).unwrap(), "tessera-data 2\n");
    drop(ShardStore::open(dir.path()).await.unwrap());

    fs::write(&format, "tessera-data 1\n").unwrap();
    let err = ShardStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ShardStoreError::EarlierFormat { path, found }
                if *path == format && found == "format line \"tessera-data 1\""
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("earlier development build") && message.contains("empty data folder"),
        "{message}"
    );
    assert!(!err.is_retryable());

    fs::write(&format, "tessera-data 3\n").unwrap();
    let err = ShardStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ShardStoreError::UnknownFormat { path, found }
                if *path == format && found == "tessera-data 3"
        ),
        "{err}"
    );

    fs::remove_file(&format).unwrap();
    let err = ShardStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(&err, ShardStoreError::MissingFormat { path } if path == dir.path()),
        "{err}"
    );
}

#[tokio::test]
async fn a_shard_file_of_format_1_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(ShardStore::open(dir.path()).await.unwrap());
    // A format-1 file (named without a generation) copied into a format-2 folder.
    let hex = "ab".repeat(16);
    let stale = dir
        .path()
        .join("shards")
        .join("ab")
        .join(format!("{hex}.2"));
    fs::write(&stale, b"TSHD\x01\x00").unwrap();
    let err = ShardStore::open(dir.path()).await.unwrap_err();
    match &err {
        ShardStoreError::EarlierFormat { path, .. } => assert_eq!(path, &stale),
        other => panic!("expected EarlierFormat, got {other:?}"),
    }
    assert_eq!(err.code(), "store_earlier_format");
    assert!(
        err.to_string()
            .contains("start the node with an empty data folder")
    );
}

#[tokio::test]
async fn one_folder_has_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    // Held by this process's store, which took the lock for the data role.
    let held_here = |err: &ShardStoreError| {
        matches!(
            err,
            ShardStoreError::Locked {
                source: DirLockError::Held { dir: held, holder },
            } if held == dir.path() && *holder == format!("{} data", std::process::id())
        )
    };
    let err = ShardStore::open(dir.path()).await.unwrap_err();
    assert!(held_here(&err), "{err}");
    assert_eq!(err.code(), "store_locked");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{} data", std::process::id())),
        "{message}"
    );
    // The lock lives as long as any handle: a writer outlives the store it came from.
    let writer = store.begin_write(header(18, 0)).await.unwrap();
    drop(store);
    let err = ShardStore::open(dir.path()).await.unwrap_err();
    assert!(held_here(&err), "{err}");
    writer.abort().await.unwrap();
    drop(ShardStore::open(dir.path()).await.unwrap());
}

#[tokio::test]
async fn a_quarantined_shard_is_gone_until_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(19, 2);
    let key = key_of(&h);
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

    // Repair writes the shard again (here the same generation; normally a fresh one).
    write_shard(&store, h, 3).await;
    let (reader, table) = open_table(&store, key).await;
    assert_eq!(reader.count_corrupt_chunks(&table).await.unwrap(), 0);
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
async fn a_listing_reads_names_headers_and_footers() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let a = write_shard(&store, header(1, 0), 2).await;
    let b = write_shard(&store, header(1, 3), 0).await;
    let b2 = write_shard(&store, header_gen(1, 3, 0xffff), 1).await;
    let c = write_shard(&store, header(2, 1), 1).await;
    // A damaged footer under a copy's name, and files that are not copies at all.
    let damaged = key(3, 0);
    let d = write_shard(&store, header(3, 0), 1).await;
    flip_byte(&store.shard_path(&damaged), d.file_len - 1);
    let prefix = store.shards_dir().join("01");
    let hex = format!("01{}", "ab".repeat(15));
    for stray in [
        "junk".to_owned(),
        format!("{}.0.0000000000000001", hex.to_uppercase()),
        format!("{hex}.00.0000000000000001"),
        format!("{hex}.1.0000000000000001.partial"),
    ] {
        fs::write(prefix.join(stray), b"x").unwrap();
    }

    let listing = store.list().await.unwrap();
    let entry = |h: ShardFileHeader, written: &WrittenShard| ListedShard {
        key: key_of(&h),
        chunks: written.chunks,
        file_len: written.file_len,
        lease_id: LEASE,
        digest: written.digest,
    };
    assert_eq!(
        listing.shards,
        vec![
            entry(header(1, 0), &a),
            entry(header(1, 3), &b),
            entry(header_gen(1, 3, 0xffff), &b2),
            entry(header(2, 1), &c),
        ]
    );
    assert_eq!(listing.unreadable, vec![damaged]);
}
