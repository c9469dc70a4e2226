//! Scrubber tests, driven step by step over a real store (and once as a real worker): every
//! kind of damage a node can see alone is found and quarantined (and no longer served), the
//! one it cannot see (a whole, consistent file with other content) is served with its digest
//! visible, clean copies yield nothing, the cursor survives a restart, requested passes reach
//! the number they promised, suspects jump the queue, and the worker reports its progress and
//! throttling.

use super::*;
use crate::scrub_state::STATE_FILE;
use crate::scrub_throttle::MAX_LOAD_PAUSE;
use crate::test_support::*;
use std::collections::BTreeSet;
use tessera_core::shard_file::{HASH_LEN, chunk_offset};
use tessera_runtime::worker::WorkerState;
use tracing::info;

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
        let step = scrubber.advance().await.unwrap();
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

    info!("a fresh node starts its first pass at once and checks every copy");
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
    let progress = scrubber.progress();
    assert_eq!((progress.done, progress.total), (5, 5));
    assert!(
        progress
            .text
            .starts_with("pass 1 done: 5 shards checked, 0 corrupt"),
        "{progress:?}"
    );

    info!("the next scheduled pass waits for the interval");
    assert!(
        matches!(scrubber.advance().await.unwrap(), Step::Idle(wait) if wait > Duration::from_secs(3500))
    );
}

#[tokio::test]
async fn every_kind_of_damage_a_node_can_see_is_quarantined_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let chunks = 4;
    for id in 1..=12u8 {
        write_shard(&store, header(id, 0), chunks).await;
    }
    write_shard(&store, header(20, 1), chunks).await;
    let path = |id: u8| store.shard_path(&key(id, 0));
    let len = fs::metadata(path(1)).unwrap().len();
    // 1 and 12 stay clean.
    flip_byte(&path(2), chunk_offset(CHUNK, 2) + 5);
    cut(&path(3), len - 10);
    flip_byte(&path(4), 30);
    cut(&path(5), 20);
    flip_byte(&path(6), len - 30);
    flip_byte(&path(7), table_entry_offset(chunks, 1));
    swap_chunks(&path(8), &header(8, 0), chunks, 0, 3);
    transplant_chunk(
        &path(9),
        &header(9, 0),
        chunks,
        &store.shard_path(&key(20, 1)),
        2,
    );
    transplant_chunk(&path(10), &header(10, 0), chunks, &path(1), 1);
    // A valid file of another copy under this copy's name (renamed or copied over it).
    fs::remove_file(path(11)).unwrap();
    fs::copy(path(1), path(11)).unwrap();
    let usage_before = store.usage();

    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();
    info!("one pass finds each damaged file with its reason");
    run_pass(&mut scrubber).await;
    let status = handle.status();
    let name = |id: u8| key(id, 0).file_name();
    let expected: BTreeSet<_> = [
        (name(2), "chunk_hash", 2),
        (name(3), "truncated", 0),
        (name(4), "header", 0),
        (name(5), "truncated", 0),
        (name(6), "footer", 0),
        (name(7), "hash_table", 0),
        (name(8), "chunk_hash", 0),
        (name(9), "chunk_hash", 2),
        (name(10), "chunk_hash", 1),
        (name(11), "misplaced", 0),
    ]
    .into_iter()
    .collect();
    assert_eq!(findings(&status), expected);
    assert_eq!(status.corrupt_shards_found, 10);
    assert_eq!(status.shards_checked, 13);

    info!("damaged files sit in quarantine and are neither listed nor served");
    let quarantined = quarantined_names(&store);
    assert_eq!(quarantined.len(), 10);
    for id in 2..=11u8 {
        assert!(
            quarantined
                .iter()
                .any(|q| q.starts_with(&format!("{}.", name(id)))),
            "{id}: {quarantined:?}"
        );
        let err = store.open_read(key(id, 0)).await.unwrap_err();
        assert!(
            matches!(err, ShardStoreError::NotFound { shard } if shard == key(id, 0)),
            "{err}"
        );
    }
    let listing = store.list().await.unwrap();
    let listed: Vec<ShardKey> = listing.shards.iter().map(|s| s.key).collect();
    assert_eq!(listed, vec![key(1, 0), key(12, 0), key(20, 1)]);
    assert!(listing.unreadable.is_empty());
    assert_eq!(store.usage().shards, usage_before.shards - 10);

    info!("the clean copies still read back whole");
    for key in listed {
        let reader = store.open_read(key).await.unwrap();
        let table = reader.hash_table().await.unwrap();
        assert_eq!(reader.count_corrupt_chunks(&table).await.unwrap(), 0);
    }

    info!("a second pass finds nothing more");
    handle.request_pass();
    run_pass(&mut scrubber).await;
    assert_eq!(handle.status().corrupt_shards_found, 10);
}

#[tokio::test]
async fn a_consistent_file_with_other_content_is_the_one_thing_a_node_cannot_see() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(1, 0);
    let written = write_shard(&store, h, 3).await;
    let path = store.shard_path(&key_of(&h));

    info!("the file is rewritten whole for other content, with every hash right for its place");
    let other: Vec<_> = (0..3).map(|i| chunk_data(&header(2, 0), i)).collect();
    fs::write(&path, forge_file(&h, &other)).unwrap();
    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();
    run_pass(&mut scrubber).await;
    assert_eq!(handle.status().corrupt_shards_found, 0);
    assert!(quarantined_names(&store).is_empty());

    info!("the node serves it, and its stat and listing show a digest that is not the manifest's");
    let stat = store.stat(key_of(&h)).await.unwrap();
    assert_ne!(stat.digest, written.digest);
    let listed = store.list().await.unwrap().shards;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, stat.digest);
    let reader = store.open_read(key_of(&h)).await.unwrap();
    let table = reader.hash_table().await.unwrap();
    assert_eq!(reader.count_corrupt_chunks(&table).await.unwrap(), 0);
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
    assert_eq!(scrubber.advance().await.unwrap(), Step::PassStarted(1));
    assert_eq!(scrubber.advance().await.unwrap(), Step::Checked);
    // The walk has already read the directory's names; the second copy goes away now.
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
    // Persist after every copy, as a crash may come at any moment.
    scrubber.persist_every = Duration::ZERO;

    info!("the first three copies are checked, then the process dies");
    assert_eq!(scrubber.advance().await.unwrap(), Step::PassStarted(1));
    for _ in 0..3 {
        assert_eq!(scrubber.advance().await.unwrap(), Step::Checked);
    }
    assert_eq!(handle.status().cursor, key(3, 0).file_name());
    assert_eq!(scrubber.progress().cursor, key(3, 0).file_name());
    drop(scrubber);
    drop(handle);
    drop(store);
    let text = fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
    let saved = ScrubCursor::decode(&text).unwrap();
    assert_eq!(
        (saved.pass, saved.passes_completed, saved.cursor.as_str()),
        (1, 0, key(3, 0).file_name().as_str())
    );

    info!("after the restart the pass resumes after the last checked name");
    let store = ShardStore::open(dir.path()).await.unwrap();
    // Damage one copy the pass already checked and one it has not.
    flip_byte(&store.shard_path(&key(2, 0)), chunk_offset(CHUNK, 0) + 1);
    flip_byte(&store.shard_path(&key(5, 0)), chunk_offset(CHUNK, 1) + 1);
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
    // Copy 2 waits for the next pass.
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
    assert_eq!(scrubber.advance().await.unwrap(), Step::PassStarted(1));
    assert_eq!(scrubber.advance().await.unwrap(), Step::Checked);
    assert_eq!(handle.request_pass(), 1);
    assert!(handle.status().running);
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(steps.first(), Some(&Step::PassStarted(1)));
    assert_eq!(steps.iter().filter(|s| **s == Step::Checked).count(), 4);
    assert_eq!(handle.status().passes_completed, 1);

    info!("a request after the last copy but before the end still starts over");
    assert_eq!(handle.request_pass(), 2);
    assert_eq!(scrubber.advance().await.unwrap(), Step::PassStarted(2));
    assert!(scrubber.progress().text.contains("(requested)"));
    assert_eq!(scrubber.progress().rate_limit_bytes_per_sec, 0);
    for _ in 0..4 {
        assert_eq!(scrubber.advance().await.unwrap(), Step::Checked);
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
    assert_eq!(scrubber.advance().await.unwrap(), Step::PassStarted(3));
    for _ in 0..4 {
        assert_eq!(scrubber.advance().await.unwrap(), Step::Checked);
    }
    // As if the request landed between this step's look at the queue and the walk's end.
    handle.shared.lock().requested = true;
    assert_eq!(scrubber.finish_pass().await.unwrap(), Step::Aborted);
    assert_eq!(handle.status().passes_completed, 2);
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(steps.last(), Some(&Step::PassFinished(3)));

    info!("a request while a copy is being checked abandons the check");
    assert_eq!(handle.request_pass(), 4);
    assert_eq!(scrubber.advance().await.unwrap(), Step::PassStarted(4));
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
    assert_eq!(scrubber.advance().await.unwrap(), Step::PassStarted(1));

    flip_byte(&store.shard_path(&key(3, 0)), chunk_offset(CHUNK, 1));
    handle.report_suspect(key(3, 0));
    // A clean suspect is checked and kept.
    handle.report_suspect(key(1, 0));
    assert_eq!(scrubber.advance().await.unwrap(), Step::Suspect);
    assert_eq!(scrubber.advance().await.unwrap(), Step::Suspect);
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
    assert_eq!(scrubber.advance().await.unwrap(), Step::Suspect);
    assert_eq!(handle.status().corrupt_shards_found, 1);
    let steps = run_pass(&mut scrubber).await;
    assert_eq!(steps.len(), 3);
}

#[tokio::test]
async fn a_file_written_since_its_check_is_not_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let h = header(1, 0);
    write_shard(&store, h, 2).await;
    let path = store.shard_path(&key(1, 0));
    let stale = FileStamp::of(&fs::metadata(&path).unwrap());
    // The copy is deleted and written again after the scrubber looked at the old file.
    assert!(store.delete(key(1, 0)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
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

    info!("three chunks at one chunk per 250 ms take at least 500 ms");
    let rate = u64::from(CHUNK) * 4;
    let config = ScrubConfig {
        rate_bytes_per_sec: rate,
        interval: Duration::from_secs(3600),
    };
    let (mut scrubber, handle) = Scrubber::open(store.clone(), config).await.unwrap();
    // The rate window opens when the pass starts.
    let started = Instant::now();
    assert_eq!(scrubber.advance().await.unwrap(), Step::PassStarted(1));
    assert_eq!(scrubber.advance().await.unwrap(), Step::Checked);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(handle.status().rate_bytes_per_sec, rate);
    let progress = scrubber.progress();
    assert!(progress.throttled);
    assert_eq!(progress.rate_limit_bytes_per_sec, rate);
    drop(scrubber);
    drop(store);

    info!("while a client stream is open, a chunk waits up to the longest pause");
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    write_shard(&store, header(2, 0), 1).await;
    let (mut scrubber, handle) = Scrubber::open(store.clone(), unthrottled()).await.unwrap();
    let load = handle.client_stream();
    assert_eq!(scrubber.advance().await.unwrap(), Step::PassStarted(1));
    let started = Instant::now();
    assert_eq!(scrubber.advance().await.unwrap(), Step::Checked);
    assert!(started.elapsed() >= MAX_LOAD_PAUSE);
    assert!(scrubber.progress().throttled);
    drop(load);
    assert_eq!(handle.status().shards_checked, 1);
}

#[tokio::test]
async fn the_scrub_worker_reports_progress_and_throttling() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let chunks = 2;
    for id in 1..=10u8 {
        write_shard(&store, header(id, 0), chunks).await;
    }
    // About 20 chunks a second: the pass takes about a second, mostly waiting on the rate.
    let rate = (u64::from(CHUNK) + HASH_LEN) * 20;
    let config = ScrubConfig {
        rate_bytes_per_sec: rate,
        interval: Duration::from_secs(3600),
    };
    let (scrubber, handle) = Scrubber::open(store.clone(), config).await.unwrap();
    let registry = WorkerRegistry::new();
    let shutdown = Shutdown::new();
    let worker = scrubber.spawn(&registry, shutdown.clone());
    assert_eq!(worker.name(), WORKER_NAME);

    info!("mid-pass, the worker shows itself throttled with shards done out of the total");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mid = loop {
        let status = registry.get(WORKER_NAME).expect("registered");
        if status.state == WorkerState::Throttled && status.progress.done >= 1 {
            break status;
        }
        assert!(Instant::now() < deadline, "never throttled: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(mid.progress.throttled);
    assert_eq!(mid.progress.total, 10);
    assert!(mid.progress.done < 10, "{mid:?}");
    assert_eq!(mid.progress.rate_limit_bytes_per_sec, rate);
    assert!(mid.progress.text.starts_with("pass 1: "), "{mid:?}");
    assert!(!mid.progress.cursor.is_empty());

    info!("a pass requested through the handle wakes the worker once it is idle");
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle.status().passes_completed < 1 {
        assert!(Instant::now() < deadline, "{:?}", handle.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pass = handle.request_pass();
    assert_eq!(pass, 2);
    while handle.status().passes_completed < pass {
        assert!(Instant::now() < deadline, "{:?}", handle.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = loop {
        let status = registry.get(WORKER_NAME).unwrap();
        if status.state == WorkerState::Idle {
            break status;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((done.progress.done, done.progress.total), (10, 10));
    assert!(
        done.progress
            .text
            .starts_with("pass 2 done: 10 shards checked, 0 corrupt"),
        "{done:?}"
    );
    assert_eq!(done.errors, 0);

    shutdown.trigger();
    worker.stopped().await;
    assert_eq!(
        registry.get(WORKER_NAME).unwrap().state,
        WorkerState::Stopped
    );
}
