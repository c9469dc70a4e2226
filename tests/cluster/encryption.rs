//! SSE-S3 on every object, seen from outside: the S3 answers name AES256, objects of every
//! shape (inline, erasure coded, multipart, copied) read back byte for byte, whole and in
//! ranges, and no file the cluster writes (data node shards, meta RocksDB and Raft log, a meta
//! snapshot, process logs) holds a byte of plaintext. An unknown algorithm is refused, never
//! silently replaced, and so is a customer key on an SSE-S3 object (SSE-C is in `sse_c`, the
//! KMS in `kms`). The root key: a restart with it keeps everything
//! readable; a meta node given another root key refuses to start and changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};

use crate::harness::{
    ClusterOptions, TestCluster, error_code, error_status, pattern, phase, restart_from,
};
use sha2::Digest as _;
use tessera_core::checksum::to_base64;
use tessera_core::etag::md5_of;
use tessera_core::names::{BucketName, ObjectKey};
use tessera_devcluster::NodeRole;

/// A random 32-character marker no file can hold by chance.
fn canary() -> Vec<u8> {
    hex::encode(rand::random::<[u8; 16]>()).into_bytes()
}

/// `len` bytes of incompressible noise with `canary` written every 4 KiB (and at the start),
/// so compression in any layer cannot hide a plaintext copy.
fn body_with(canary: &[u8], len: usize, seed: u64) -> Vec<u8> {
    let mut data = pattern(len, seed);
    let mut at = 0;
    while at + canary.len() <= len {
        data[at..at + canary.len()].copy_from_slice(canary);
        at += 4096;
    }
    data
}

/// Every regular file under `root`.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn aes256() -> Option<ServerSideEncryption> {
    Some(ServerSideEncryption::Aes256)
}

async fn get(tc: &TestCluster, bucket: &str, key: &str, range: Option<String>) -> Vec<u8> {
    let out = tc
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range)
        .send()
        .await
        .expect("get");
    assert_eq!(
        out.server_side_encryption,
        aes256(),
        "{key}: GET names SSE-S3"
    );
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_object_is_sealed_and_no_plaintext_reaches_a_disk() {
    // Snapshots every 64 entries, so a meta snapshot is on disk when the files are searched.
    let tc = TestCluster::start_opts(ClusterOptions {
        data_per_zone: 2,
        env: vec![("TESSERA_META_SNAPSHOT_EVERY", "64")],
        node_env: Vec::new(),
        http: false,
    })
    .await;
    let marker = canary();
    tc.s3
        .create_bucket()
        .bucket("sealed")
        .send()
        .await
        .expect("bucket");

    phase("the bucket's default encryption is SSE-S3, set or deleted (KMS defaults: kms.rs)");
    let default_algorithm =
        |out: aws_sdk_s3::operation::get_bucket_encryption::GetBucketEncryptionOutput| {
            out.server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| d.sse_algorithm().clone())
        };
    let got = tc
        .s3
        .get_bucket_encryption()
        .bucket("sealed")
        .send()
        .await
        .expect("get bucket encryption");
    assert_eq!(default_algorithm(got), aes256());
    let rule = |algorithm: ServerSideEncryption| {
        ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(
                        ServerSideEncryptionByDefault::builder()
                            .sse_algorithm(algorithm)
                            .build()
                            .expect("default"),
                    )
                    .build(),
            )
            .build()
            .expect("configuration")
    };
    tc.s3
        .put_bucket_encryption()
        .bucket("sealed")
        .server_side_encryption_configuration(rule(ServerSideEncryption::Aes256))
        .send()
        .await
        .expect("SSE-S3 default accepted");
    tc.s3
        .delete_bucket_encryption()
        .bucket("sealed")
        .send()
        .await
        .expect("delete bucket encryption");
    let got = tc
        .s3
        .get_bucket_encryption()
        .bucket("sealed")
        .send()
        .await
        .expect("get after delete");
    assert_eq!(default_algorithm(got), aes256(), "SSE-S3 stays in force");
    let err = tc
        .s3
        .get_bucket_encryption()
        .bucket("no-such-bucket-here")
        .send()
        .await
        .expect_err("missing bucket");
    assert_eq!(error_code(&err), "NoSuchBucket");

    phase("single PUTs, inline and erasure coded, answer AES256");
    let shapes = [
        ("inline", 200usize),
        ("segment", 65_537),
        ("coded", 3_000_000),
    ];
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, (name, len)) in shapes.iter().enumerate() {
        let data = body_with(&marker, *len, i as u64 + 1);
        let put = tc
            .s3
            .put_object()
            .bucket("sealed")
            .key(*name)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .expect("put");
        assert_eq!(put.server_side_encryption, aes256(), "{name}: PUT answer");
        objects.push(((*name).to_owned(), data));
    }
    let asked = tc
        .s3
        .put_object()
        .bucket("sealed")
        .key("asked")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(body_with(&marker, 5_000, 9)))
        .send()
        .await
        .expect("put asking for AES256");
    assert_eq!(asked.server_side_encryption, aes256());

    phase("a multipart upload: every answer names AES256");
    let create = tc
        .s3
        .create_multipart_upload()
        .bucket("sealed")
        .key("multi")
        .send()
        .await
        .expect("create upload");
    assert_eq!(create.server_side_encryption, aes256(), "create answer");
    let upload_id = create.upload_id().expect("upload id").to_owned();
    let parts = [
        body_with(&marker, 5 * 1024 * 1024, 21),
        body_with(&marker, 700_000, 22),
    ];
    let mut completed = Vec::new();
    for (n, data) in (1i32..).zip(&parts) {
        let up = tc
            .s3
            .upload_part()
            .bucket("sealed")
            .key("multi")
            .upload_id(&upload_id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .expect("upload part");
        assert_eq!(up.server_side_encryption, aes256(), "part {n} answer");
        completed.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(up.e_tag().expect("etag"))
                .build(),
        );
    }
    let done = tc
        .s3
        .complete_multipart_upload()
        .bucket("sealed")
        .key("multi")
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    assert_eq!(done.server_side_encryption, aes256(), "complete answer");
    objects.push(("multi".to_owned(), parts.concat()));

    phase("a copy is sealed anew for its own key");
    let copy = tc
        .s3
        .copy_object()
        .bucket("sealed")
        .key("copied")
        .copy_source("sealed/coded")
        .send()
        .await
        .expect("copy");
    assert_eq!(copy.server_side_encryption, aes256(), "copy answer");
    let coded = objects[2].1.clone();
    objects.push(("copied".to_owned(), coded));

    phase("every object reads back whole and in ranges; HEAD names AES256");
    for (key, data) in &objects {
        assert!(get(&tc, "sealed", key, None).await == *data, "{key} whole");
        let head = tc
            .s3
            .head_object()
            .bucket("sealed")
            .key(key)
            .send()
            .await
            .expect("head");
        assert_eq!(head.server_side_encryption, aes256(), "{key}: HEAD answer");
        let len = data.len();
        for (start, end) in [(0, 0), (len / 3, len / 3 + 70_000), (len - 1, len - 1)] {
            let end = end.min(len - 1);
            let got = get(&tc, "sealed", key, Some(format!("bytes={start}-{end}"))).await;
            assert!(got == data[start..=end], "{key} bytes {start}-{end}");
        }
    }

    phase("an encryption S3 does not know is refused, not silently replaced");
    for (value, code, status) in [(ServerSideEncryption::from("AES512"), "InvalidArgument", 400)] {
        let err = tc
            .s3
            .put_object()
            .bucket("sealed")
            .key("refused")
            .server_side_encryption(value.clone())
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .expect_err("refused");
        assert_eq!(error_code(&err), code, "{value:?}");
        assert_eq!(error_status(&err), status, "{value:?}");
    }
    let customer_key = to_base64(&[7u8; 32]);
    let customer_md5 = to_base64(&md5_of(&[7u8; 32]));
    let err = tc
        .s3
        .get_object()
        .bucket("sealed")
        .key("inline")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&customer_key)
        .sse_customer_key_md5(&customer_md5)
        .send()
        .await
        .expect_err("customer key on an SSE-S3 object");
    assert_eq!(
        (error_code(&err).as_str(), error_status(&err)),
        ("InvalidRequest", 400)
    );
    let refused = tc
        .s3
        .head_object()
        .bucket("sealed")
        .key("refused")
        .send()
        .await;
    assert!(refused.is_err(), "no refused request stored anything");

    phase("enough commands for a meta snapshot, then every file is searched");
    for i in 0..40 {
        tc.s3
            .put_object()
            .bucket("sealed")
            .key(format!("filler-{i}"))
            .body(ByteStream::from(body_with(&marker, 64, 100 + i)))
            .send()
            .await
            .expect("filler");
    }
    let root = tc.root();
    let snapshot_deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !files_under(&root)
        .iter()
        .any(|p| p.to_string_lossy().ends_with("snapshot/current"))
    {
        assert!(
            std::time::Instant::now() < snapshot_deadline,
            "no meta snapshot was written"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dir = tc.stop_keep().await;
    let files = files_under(dir.path());
    let shard_files = files
        .iter()
        .filter(|p| p.to_string_lossy().contains("/data-"))
        .count();
    assert!(shard_files > 0, "data nodes wrote files");
    let mut searched = 0u64;
    // The control: object keys are metadata, stored in the clear, so the search must find one
    // in meta's files (it reads what RocksDB, the Raft log and the snapshot hold).
    let mut key_seen_in_meta = false;
    for file in &files {
        let bytes = std::fs::read(file).expect("read file");
        searched += bytes.len() as u64;
        assert!(
            !contains(&bytes, &marker),
            "plaintext found in {}",
            file.display()
        );
        key_seen_in_meta |=
            file.to_string_lossy().contains("/meta-") && contains(&bytes, b"filler-37");
    }
    assert!(
        key_seen_in_meta,
        "the search finds what meta stores in the clear"
    );
    phase(&format!(
        "{} files, {searched} bytes: no plaintext",
        files.len()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_keks_and_the_root_key_open_everything_after_a_restart_and_a_wrong_root_key_changes_nothing()
 {
    let tc = TestCluster::start(2).await;
    tc.s3
        .create_bucket()
        .bucket("keys")
        .send()
        .await
        .expect("bucket");
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for (round, kek) in ["sse-s3/1", "sse-s3/2"].iter().enumerate() {
        for (i, len) in [100usize, 2_000_000].iter().enumerate() {
            let key = format!("under-{}-{i}", kek.replace('/', "-"));
            let data = pattern(*len, (round * 10 + i) as u64 + 40);
            tc.s3
                .put_object()
                .bucket("keys")
                .key(&key)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .expect("put");
            objects.push((key, data));
        }
        if round == 0 {
            phase("the KEK is rotated: new data keys are wrapped by version 2");
            let rotated = tc.admin_ok(&["kms", "rotate"]);
            assert_eq!(rotated.trim(), "sse-s3/2");
        }
    }
    phase("the leader re-wraps the older data keys by version 2, rewriting no object data");
    let coded_before = tc
        .erasure_blob("keys", "under-sse-s3-1-1")
        .await
        .expect("coded");
    let meta = tc.meta();
    let bucket = BucketName::parse("keys").expect("bucket");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut kek_ids = Vec::new();
        for (key, _) in &objects {
            let key = ObjectKey::parse(key).expect("key");
            let version = meta
                .get_object(&bucket, &key, None)
                .await
                .expect("lookup")
                .version
                .expect("version");
            kek_ids.extend(version.parts.iter().map(|p| p.blob.sealing.key_id.clone()));
        }
        if kek_ids.iter().all(|id| id == "sse-s3/2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "data keys still wrapped by older versions: {kek_ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let coded_after = tc
        .erasure_blob("keys", "under-sse-s3-1-1")
        .await
        .expect("coded");
    assert_eq!(
        coded_after, coded_before,
        "the same shards, untouched: only the wrapped key changed"
    );
    let listed = tc.admin_ok(&["kms", "list"]);
    let versions: Vec<&str> = listed
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(versions, ["1", "2"], "both versions are kept: {listed}");
    for (key, data) in &objects {
        assert!(
            get(&tc, "keys", key, None).await == *data,
            "{key} after rotation"
        );
    }

    phase("the whole cluster restarts with its root key: everything reads back");
    let dir = tc.stop_keep().await;
    let mut tc = restart_from(dir).await;
    for (key, data) in &objects {
        assert!(get(&tc, "keys", key, None).await == *data, "{key}");
    }

    phase("meta 1 is stopped and started by hand with another root key");
    tc.kill(NodeRole::Meta, 1).await;
    let root = tc.root();
    let layout = tc.cluster_layout();
    let spec = layout
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Meta && n.node_id == 1)
        .expect("meta 1")
        .clone();
    let meta_dir = spec.data_dir.clone();
    let before = dir_fingerprint(&meta_dir);
    let wrong = root.join("wrong.key");
    std::fs::write(&wrong, "ab".repeat(32)).expect("write the wrong key");
    let mut args = tessera_devcluster::process::command_args(&spec, &layout);
    let at = args
        .iter()
        .position(|a| a == "--root-key-file")
        .expect("meta gets a root key file");
    args[at + 1] = wrong.display().to_string();
    let out = run_bounded(&args, Duration::from_secs(30));
    assert!(!out.status.success(), "a wrong root key must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("root key") && stderr.contains("nothing was changed"),
        "the refusal says why: {stderr}"
    );
    assert!(
        !stderr.contains(&"ab".repeat(32)),
        "the key is never printed"
    );
    assert_eq!(
        dir_fingerprint(&meta_dir),
        before,
        "the refused start changed no file"
    );

    phase("started with its own key again, meta 1 rejoins and nothing was lost");
    tc.restart(NodeRole::Meta, 1).await;
    tc.wait_ready().await;
    for (key, data) in &objects {
        assert!(get(&tc, "keys", key, None).await == *data, "{key}");
    }
}

/// Every file under `dir` with its length and content hash.
fn dir_fingerprint(dir: &Path) -> Vec<(PathBuf, u64, [u8; 32])> {
    let mut out: Vec<_> = files_under(dir)
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with("/LOCK"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            let hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
            (p, bytes.len() as u64, hash)
        })
        .collect();
    out.sort();
    out
}

/// Runs the tessera binary with `args` for at most `limit` (killed after it).
fn run_bounded(args: &[String], limit: Duration) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tessera");
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
