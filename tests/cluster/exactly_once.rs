//! Exactly-once metadata commands through real processes. Every process of the cluster runs
//! with the meta client's fault hook set to drop the first answer of every command it sends,
//! as if the connection broke right after the command committed; the client retries with the
//! same session sequence number and the state machine must answer with the first result. So
//! every S3 operation below is applied through a retry, and each must still have exactly one
//! effect and answer as if nothing had happened. An S3 client that itself repeats a
//! CompleteMultipartUpload after success gets the same answer again.

use crate::harness::{TestCluster, error_code, error_status, pattern, phase};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, VersioningConfiguration,
};
use tessera_core::names::{BucketName, ObjectKey};
use tessera_core::object::ObjectVersion;

/// Every version of `bucket/key`, newest first, as meta holds them.
async fn versions(tc: &TestCluster, bucket: &str, key: &str) -> Vec<ObjectVersion> {
    tc.meta()
        .list_versions(
            &BucketName::parse(bucket).expect("bucket"),
            &ObjectKey::parse(key).expect("key"),
        )
        .await
        .expect("list versions")
        .expect("bucket exists")
}

async fn read(tc: &TestCluster, bucket: &str, key: &str) -> Vec<u8> {
    tc.s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// How many times a process's log says the fault hook dropped an answer of `kind`.
fn drops_of(tc: &TestCluster, process_log_prefix: &str, kind: &str) -> usize {
    let logs = tc.root().join("logs");
    let mut count = 0;
    for entry in std::fs::read_dir(&logs).expect("logs dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(process_log_prefix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        count += text
            .lines()
            .filter(|l| {
                l.contains("fault hook dropped a meta answer")
                    && l.contains(&format!("kind={kind}"))
            })
            .count();
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_retried_after_commit_applies_once() {
    let tc = TestCluster::start_with(2, vec![("TESSERA_FAULT_DROP_META_ANSWER", "all")]).await;
    let s3 = &tc.s3;
    let b = "once";

    phase("CreateBucket whose answer was lost answers 200, not BucketAlreadyOwnedByYou");
    s3.create_bucket()
        .bucket(b)
        .send()
        .await
        .expect("create bucket");
    s3.put_bucket_versioning()
        .bucket(b)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");

    phase("each versioned PUT answers 200 and makes exactly one version");
    let mut ids = Vec::new();
    for i in 0..3u64 {
        let body = pattern(1000 + i as usize, i);
        let out = s3
            .put_object()
            .bucket(b)
            .key("v")
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("versioned put");
        ids.push(out.version_id().expect("version id").to_owned());
    }
    // One erasure-coded version too (shards, a lease, a placement).
    let big = pattern(3 * 1024 * 1024, 7);
    let out = s3
        .put_object()
        .bucket(b)
        .key("v")
        .body(ByteStream::from(big.clone()))
        .send()
        .await
        .expect("big versioned put");
    ids.push(out.version_id().expect("version id").to_owned());
    let stored = versions(&tc, b, "v").await;
    let stored_ids: Vec<&str> = stored.iter().map(|v| v.version_id.as_str()).collect();
    ids.reverse();
    assert_eq!(stored_ids, ids, "one version per PUT, newest first");
    assert!(read(&tc, b, "v").await == big);

    phase("a PUT with If-None-Match: * of a new key answers 200, not 412 against itself");
    s3.put_object()
        .bucket(b)
        .key("fresh")
        .if_none_match("*")
        .body(ByteStream::from_static(b"first"))
        .send()
        .await
        .expect("conditional put of a new key");
    assert_eq!(versions(&tc, b, "fresh").await.len(), 1);
    let again = s3
        .put_object()
        .bucket(b)
        .key("fresh")
        .if_none_match("*")
        .body(ByteStream::from_static(b"second"))
        .send()
        .await
        .expect_err("the key exists now");
    assert_eq!(
        (error_status(&again), error_code(&again).as_str()),
        (412, "PreconditionFailed")
    );

    phase("a versioned DELETE answers 204 and writes exactly one delete marker");
    let del = s3
        .delete_object()
        .bucket(b)
        .key("v")
        .send()
        .await
        .expect("delete");
    assert_eq!(del.delete_marker(), Some(true));
    let after = versions(&tc, b, "v").await;
    assert_eq!(after.len(), ids.len() + 1);
    assert_eq!(after.iter().filter(|v| v.delete_marker).count(), 1);
    assert_eq!(
        Some(after[0].version_id.as_str()),
        del.version_id(),
        "the marker the client was told about"
    );

    phase("CompleteMultipartUpload answers 200 once, and again when the client repeats it");
    let key = "multi";
    let up = s3
        .create_multipart_upload()
        .bucket(b)
        .key(key)
        .send()
        .await
        .expect("create upload");
    let upload_id = up.upload_id().expect("upload id").to_owned();
    let part1 = pattern(5 * 1024 * 1024, 21);
    let part2 = pattern(777_777, 22);
    let mut parts = Vec::new();
    for (n, body) in [(1, &part1), (2, &part2)] {
        let out = s3
            .upload_part()
            .bucket(b)
            .key(key)
            .upload_id(&upload_id)
            .part_number(n)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .expect("upload part");
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().expect("etag"))
                .build(),
        );
    }
    let listed = s3
        .list_parts()
        .bucket(b)
        .key(key)
        .upload_id(&upload_id)
        .send()
        .await
        .expect("list parts");
    assert_eq!(listed.parts().len(), 2, "each part recorded once");
    let done = CompletedMultipartUpload::builder()
        .set_parts(Some(parts.clone()))
        .build();
    let first = s3
        .complete_multipart_upload()
        .bucket(b)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(done.clone())
        .send()
        .await
        .expect("complete");
    let repeat = s3
        .complete_multipart_upload()
        .bucket(b)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(done)
        .send()
        .await
        .expect("a repeated complete answers 200");
    assert_eq!(repeat.e_tag(), first.e_tag());
    assert_eq!(repeat.version_id(), first.version_id());
    assert_eq!(repeat.location(), first.location());
    assert_eq!(repeat.key(), first.key());
    assert_eq!(versions(&tc, b, key).await.len(), 1, "one version");
    let mut whole = part1.clone();
    whole.extend_from_slice(&part2);
    assert!(read(&tc, b, key).await == whole);
    let other_parts = CompletedMultipartUpload::builder()
        .parts(parts[0].clone())
        .build();
    let wrong = s3
        .complete_multipart_upload()
        .bucket(b)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(other_parts)
        .send()
        .await
        .expect_err("another part list is not the completed upload");
    assert_eq!(
        (error_status(&wrong), error_code(&wrong).as_str()),
        (404, "NoSuchUpload")
    );

    phase("AbortMultipartUpload whose answer was lost answers 204, not NoSuchUpload");
    let up = s3
        .create_multipart_upload()
        .bucket(b)
        .key("aborted")
        .send()
        .await
        .expect("create upload");
    s3.abort_multipart_upload()
        .bucket(b)
        .key("aborted")
        .upload_id(up.upload_id().expect("id"))
        .send()
        .await
        .expect("abort");
    let uploads = s3
        .list_multipart_uploads()
        .bucket(b)
        .send()
        .await
        .expect("list uploads");
    assert!(uploads.uploads().is_empty(), "no upload left");

    phase("in an unversioned bucket PUT A then PUT B leaves exactly B");
    let plain = "once-plain";
    s3.create_bucket()
        .bucket(plain)
        .send()
        .await
        .expect("bucket");
    for body in [&b"alpha"[..], &b"bravo"[..]] {
        s3.put_object()
            .bucket(plain)
            .key("k")
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .expect("put");
    }
    assert_eq!(read(&tc, plain, "k").await, b"bravo");
    let only = versions(&tc, plain, "k").await;
    assert_eq!(only.len(), 1);
    assert!(only[0].version_id.is_null());

    phase("DeleteObject and DeleteBucket whose answers were lost answer 204");
    s3.delete_object()
        .bucket(plain)
        .key("k")
        .send()
        .await
        .expect("delete");
    assert!(versions(&tc, plain, "k").await.is_empty());
    s3.delete_bucket()
        .bucket(plain)
        .send()
        .await
        .expect("delete bucket, not NoSuchBucket");

    phase("the fault hook really fired for every command kind exercised");
    for kind in [
        "create_bucket",
        "set_bucket_versioning",
        "put_version",
        "delete_object",
        "create_upload",
        "put_part",
        "complete_upload",
        "abort_upload",
        "delete_bucket",
        "grant_lease",
    ] {
        assert!(
            drops_of(&tc, "gateway", kind) >= 1,
            "the gateway never dropped an answer of {kind}"
        );
    }
    assert!(
        drops_of(&tc, "data", "register_data_node") >= 1,
        "data nodes registered without a dropped answer"
    );
}
