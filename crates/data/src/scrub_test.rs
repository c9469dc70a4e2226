//! Scrubber tests, driven step by step over a real store: every kind of damage is found and
//! quarantined (and no longer served), clean shards yield nothing, the cursor survives a
//! restart, requested passes reach the number they promised, and suspects jump the queue.

use super::*;
use crate::scrub_state::STATE_FILE;
use crate::shard_writer::WrittenShard;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::Path;
use tessera_core::names::DataId;
use tessera_core::shard_format::{ShardFileHeader, chunk_offset};
use tracing::info;

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

fn key(id: u8, shard_index: u32) -> ShardKey {
    ShardKey::of_header(&header(id, shard_index))
}

async fn write_shard(store: &ShardStore, header: ShardFileHeader, chunks: u64) -> WrittenShard {
    let mut writer = store.begin_write(header).await.unwrap();
    for i in 0..chunks {
        let data: Bytes = (0..header.chunk_size)
            .map(|b| (b as u64 ^ i.wrapping_mul(17)) as u8)
            .collect::<Vec<u8>>()
            .into();
        let hash = Bytes::copy_from_slice(blake3::hash(&data).as_bytes());
        writer = writer.write_chunk(i, data, hash).await.unwrap();
    }
    writer.commit(chunks).await.unwrap()
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

fn cut(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn unthrottled() -> ScrubConfig {
    ScrubConfig {
        rate_bytes_per_sec: 0,
        interval: Duration::from_secs(3600),
    }
}

/// Steps until the pass in progress (or about to start) ends; returns every step.
async fn run_pass(scrubber: &mut Scrubber) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..10_000 {
        let step = scrubber.step().await.unwrap();
        steps.push(step);
        if matches!(step, Step::PassFinished(_)) {
            return steps;
        }
        assert!(
            !matches!(step, Step::Idle(_)),
            "idle before the pass ended: {steps:?}"
        );
    }
    panic!("the pass never ended: {steps:?}");
}

fn findings(status: &ScrubStatus) -> BTreeSet<(String, &'static str, u64)> {
    status
        .recent_corrupt
        .iter()
        .map(|f| (f.key.file_name(), f.reason.as_str(), f.chunk))
        .collect()
}

fn quarantined_names(store: &ShardStore) -> BTreeSet<String> {
    match fs::read_dir(store.quarantine_dir()) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

#[tokio::test]
async fn a_clean_store_yields_no_findings() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let mut bytes = 0;
    for id in 1..=5u8 {
        bytes += write_shard(&store, header(id, 0), u64::from(id))
            .await
            .file_len;
    }
    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();

    info!("a fresh node starts its first pass at once and checks every shard");
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(steps.first(), Some(&Step::PassStarted(1)));
    assert_eq!(steps.last(), Some(&Step::PassFinished(1)));
    let status = handle.status();
    assert_eq!(status.passes_completed, 1);
    assert!(!status.running);
    assert_eq!(status.shards_checked, 5);
    assert_eq!(status.bytes_checked, bytes);
    assert_eq!(status.corrupt_shards_found, 0);
    assert!(status.recent_corrupt.is_empty());
    assert!(status.cursor.is_empty());
    assert!(status.last_pass_finished_ms >= status.last_pass_started_ms);
    assert!(quarantined_names(&store).is_empty());
    assert_eq!(store.list().await.unwrap().shards.len(), 5);

    info!("the next scheduled pass waits for the interval");
    assert!(
        matches!(scrubber.step().await.unwrap(), Step::Idle(wait) if wait > Duration::from_secs(3500))
    );
}

#[tokio::test]
async fn every_kind_of_damage_is_quarantined_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    for id in 1..=8u8 {
        write_shard(&store, header(id, 0), 4).await;
    }
    let path = |id: u8| store.shard_path(&key(id, 0));
    // 1 and 8 stay clean.
    flip_byte(&path(2), chunk_offset(CHUNK, 2) + 5);
    flip_byte(&path(3), chunk_offset(CHUNK, 3) + u64::from(CHUNK) + 31);
    let len = fs::metadata(path(4)).unwrap().len();
    cut(&path(4), len - 10);
    flip_byte(&path(5), 30);
    cut(&path(6), 20);
    // A valid shard file under another shard's name.
    fs::remove_file(path(7)).unwrap();
    fs::copy(path(1), path(7)).unwrap();
    let usage_before = store.usage();

    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();
    info!("one pass finds each damaged file with its reason");
    run_pass(&mut scrubber).await;
    let status = handle.status();
    let name = |id: u8| key(id, 0).file_name();
    let expected: BTreeSet<_> = [
        (name(2), "chunk_hash", 2),
        (name(3), "chunk_hash", 3),
        (name(4), "truncated", 0),
        (name(5), "header", 0),
        (name(6), "truncated", 0),
        (name(7), "header", 0),
    ]
    .into_iter()
    .collect();
    assert_eq!(findings(&status), expected);
    assert_eq!(status.corrupt_shards_found, 6);
    assert_eq!(status.shards_checked, 8);

    info!("damaged files sit in quarantine and are neither listed nor served");
    let quarantined = quarantined_names(&store);
    assert_eq!(quarantined.len(), 6);
    for id in 2..=7u8 {
        assert!(
            quarantined
                .iter()
                .any(|q| q.starts_with(&format!("{}.", name(id)))),
            "{id}: {quarantined:?}"
        );
        let err = store.open_read(key(id, 0)).await.unwrap_err();
        assert!(matches!(err, ShardStoreError::NotFound { .. }), "{err}");
    }
    let listing = store.list().await.unwrap();
    let listed: Vec<ShardKey> = listing.shards.iter().map(|s| s.key).collect();
    assert_eq!(listed, vec![key(1, 0), key(8, 0)]);
    assert!(listing.unreadable.is_empty());
    assert_eq!(store.usage().shards, usage_before.shards - 6);

    info!("the clean shards still read back whole");
    for id in [1u8, 8] {
        let reader = store.open_read(key(id, 0)).await.unwrap();
        assert_eq!(reader.count_corrupt_chunks().await.unwrap(), 0);
    }

    info!("a second pass finds nothing more");
    handle.request_pass();
    run_pass(&mut scrubber).await;
    assert_eq!(handle.status().corrupt_shards_found, 6);
}

#[tokio::test]
async fn a_file_deleted_during_a_pass_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    // Three shards of one blob share a directory, which the walk reads at once.
    for index in 0..3 {
        write_shard(&store, header(1, index), 2).await;
    }
    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();
    assert_eq!(scrubber.step().await.unwrap(), Step::PassStarted(1));
    assert_eq!(scrubber.step().await.unwrap(), Step::Checked);
    // The walk has already read the directory's names; the second shard goes away now.
    assert!(store.delete(key(1, 1)).await.unwrap());
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(
        steps,
        vec![Step::Checked, Step::Checked, Step::PassFinished(1)]
    );
    let status = handle.status();
    assert_eq!(status.shards_checked, 2);
    assert_eq!(status.corrupt_shards_found, 0);
    assert!(quarantined_names(&store).is_empty());
}

#[tokio::test]
async fn the_cursor_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    for id in 1..=6u8 {
        write_shard(&store, header(id, 0), 2).await;
    }
    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();
    // Persist after every shard, as a crash may come at any moment.
    scrubber.persist_every = Duration::ZERO;

    info!("the first three shards are checked, then the process dies");
    assert_eq!(scrubber.step().await.unwrap(), Step::PassStarted(1));
    for _ in 0..3 {
        assert_eq!(scrubber.step().await.unwrap(), Step::Checked);
    }
    assert_eq!(handle.status().cursor, key(3, 0).file_name());
    drop(scrubber);
    drop(handle);
    let text = fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
    let saved = ScrubCursor::decode(&text).unwrap();
    assert_eq!(
        (saved.pass, saved.passes_completed, saved.cursor.as_str()),
        (1, 0, key(3, 0).file_name().as_str())
    );

    // Damage one shard the pass already checked and one it has not.
    flip_byte(&store.shard_path(&key(2, 0)), chunk_offset(CHUNK, 0) + 1);
    flip_byte(&store.shard_path(&key(5, 0)), chunk_offset(CHUNK, 1) + 1);

    info!("after the restart the pass resumes after the last checked name");
    let store = ShardStore::open(dir.path()).await.unwrap();
    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();
    let status = handle.status();
    assert!(status.running);
    assert_eq!(status.cursor, key(3, 0).file_name());
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(
        steps,
        vec![
            Step::Checked,
            Step::Checked,
            Step::Checked,
            Step::PassFinished(1)
        ]
    );
    let status = handle.status();
    assert_eq!(status.shards_checked, 3);
    let expected: BTreeSet<_> = [(key(5, 0).file_name(), "chunk_hash", 1)]
        .into_iter()
        .collect();
    assert_eq!(findings(&status), expected);
    // Shard 2 waits for the next pass.
    assert!(store.shard_path(&key(2, 0)).exists());
    let saved =
        ScrubCursor::decode(&fs::read_to_string(dir.path().join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!((saved.pass, saved.passes_completed), (1, 1));
    assert!(saved.cursor.is_empty());
}

#[tokio::test]
async fn a_requested_pass_starts_over_and_reaches_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    for id in 1..=4u8 {
        write_shard(&store, header(id, 0), 1).await;
    }
    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();

    info!("a request in the middle of a pass abandons it and starts over");
    assert_eq!(scrubber.step().await.unwrap(), Step::PassStarted(1));
    assert_eq!(scrubber.step().await.unwrap(), Step::Checked);
    assert_eq!(handle.request_pass(), 1);
    assert!(handle.status().running);
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(steps.first(), Some(&Step::PassStarted(1)));
    assert_eq!(steps.iter().filter(|s| **s == Step::Checked).count(), 4);
    assert_eq!(handle.status().passes_completed, 1);

    info!("a request after the last shard but before the end still starts over");
    assert_eq!(handle.request_pass(), 2);
    assert_eq!(scrubber.step().await.unwrap(), Step::PassStarted(2));
    for _ in 0..4 {
        assert_eq!(scrubber.step().await.unwrap(), Step::Checked);
    }
    assert_eq!(handle.request_pass(), 2);
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(steps.first(), Some(&Step::PassStarted(2)));
    assert_eq!(steps.last(), Some(&Step::PassFinished(2)));
    let status = handle.status();
    assert_eq!(status.passes_completed, 2);
    assert!(!status.running);
    assert_eq!(status.shards_checked, 1 + 4 + 4 + 4);

    info!("a request that comes while the walk ends makes that pass an abandoned one");
    assert_eq!(handle.request_pass(), 3);
    assert_eq!(scrubber.step().await.unwrap(), Step::PassStarted(3));
    for _ in 0..4 {
        assert_eq!(scrubber.step().await.unwrap(), Step::Checked);
    }
    // As if the request landed between this step's look at the queue and the walk's end.
    handle.shared.lock().requested = true;
    assert_eq!(scrubber.finish_pass().await.unwrap(), Step::Aborted);
    assert_eq!(handle.status().passes_completed, 2);
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(steps.last(), Some(&Step::PassFinished(3)));

    info!("a request while a shard is being checked abandons the check");
    assert_eq!(handle.request_pass(), 4);
    assert_eq!(scrubber.step().await.unwrap(), Step::PassStarted(4));
    handle.shared.lock().requested = true;
    assert_eq!(
        scrubber.check(key(1, 0), Pace::Requested).await,
        Verdict::Aborted
    );
    assert_eq!(
        scrubber.check(key(1, 0), Pace::Throttled).await,
        Verdict::Aborted
    );
}

#[tokio::test]
async fn a_suspect_is_checked_before_the_pass_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    for id in 1..=3u8 {
        write_shard(&store, header(id, 0), 3).await;
    }
    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();
    assert_eq!(scrubber.step().await.unwrap(), Step::PassStarted(1));

    flip_byte(&store.shard_path(&key(3, 0)), chunk_offset(CHUNK, 1));
    handle.report_suspect(key(3, 0));
    // A clean suspect is checked and kept.
    handle.report_suspect(key(1, 0));
    assert_eq!(scrubber.step().await.unwrap(), Step::Suspect);
    assert_eq!(scrubber.step().await.unwrap(), Step::Suspect);
    let status = handle.status();
    let expected: BTreeSet<_> = [(key(3, 0).file_name(), "chunk_hash", 1)]
        .into_iter()
        .collect();
    assert_eq!(findings(&status), expected);
    // The pass had not moved.
    assert!(status.cursor.is_empty());
    assert!(store.shard_path(&key(1, 0)).exists());
    assert!(!store.shard_path(&key(3, 0)).exists());

    // A suspect already quarantined (or deleted) costs nothing.
    handle.report_suspect(key(3, 0));
    assert_eq!(scrubber.step().await.unwrap(), Step::Suspect);
    assert_eq!(handle.status().corrupt_shards_found, 1);
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(steps.len(), 3);
}

#[tokio::test]
async fn a_shard_rewritten_since_its_check_is_not_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(1, 0);
    write_shard(&store, h, 2).await;
    let path = store.shard_path(&key(1, 0));
    let stale = FileStamp::of(&fs::metadata(&path).unwrap());
    // Repair writes the shard again after the scrubber looked at the old file.
    write_shard(&store, h, 2).await;
    let outcome = store
        .quarantine_blocking(key(1, 0), "chunk_hash", Some(stale))
        .unwrap();
    assert_eq!(outcome, Quarantine::Replaced);
    assert!(path.exists());
    let fresh = FileStamp::of(&fs::metadata(&path).unwrap());
    let outcome = store
        .quarantine_blocking(key(1, 0), "chunk_hash", Some(fresh))
        .unwrap();
    assert!(matches!(outcome, Quarantine::Moved(_)));
    assert_eq!(
        store
            .quarantine_blocking(key(1, 0), "chunk_hash", None)
            .unwrap(),
        Quarantine::Absent
    );
}

#[tokio::test]
async fn a_throttled_pass_keeps_to_its_rate_and_pauses_for_clients() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    write_shard(&store, header(1, 0), 3).await;
    let record = u64::from(CHUNK) + 32;

    info!("three chunk records at one record per 250 ms take at least 500 ms");
    let config = ScrubConfig {
        rate_bytes_per_sec: record * 4,
        interval: Duration::from_secs(3600),
    };
    let (mut scrubber, handle) = Scrubber::open(store.clone(), config).await.unwrap();
    // The rate window opens when the pass starts.
    let started = Instant::now();
    assert_eq!(scrubber.step().await.unwrap(), Step::PassStarted(1));
    assert_eq!(scrubber.step().await.unwrap(), Step::Checked);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(handle.status().rate_bytes_per_sec, record * 4);

    info!("while a client stream is open, a chunk waits up to the longest pause");
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    write_shard(&store, header(2, 0), 1).await;
    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();
    let load = handle.client_stream();
    assert_eq!(scrubber.step().await.unwrap(), Step::PassStarted(1));
    let started = Instant::now();
    assert_eq!(scrubber.step().await.unwrap(), Step::Checked);
    assert!(started.elapsed() >= MAX_LOAD_PAUSE);
    drop(load);
    assert_eq!(handle.status().shards_checked, 1);
}
