//! Integrity bound to the manifest, through real processes: a data node that returns wrong
//! bytes for a shard — another object's shard, an older version's shard, its own chunks in the
//! wrong order, or a shard rewritten with internally consistent hashes — is never believed.
//! GET reads around it and returns the exact object; repair finds it (by the node's own checks
//! or by comparing the node's digest with the manifest's) and rebuilds the shard as a new
//! generation; afterwards every shard verifies against the manifest.

use crate::harness::{FAST_REPAIR, Tamper, TestCluster, pattern, phase};
use aws_sdk_s3::primitives::ByteStream;
use std::time::Duration;

const SIZE: usize = 2 * 1024 * 1024 + 12_345;

async fn put(tc: &TestCluster, bucket: &str, key: &str, seed: u64) -> Vec<u8> {
    let body = pattern(SIZE, seed);
    tc.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    body
}

async fn get(tc: &TestCluster, bucket: &str, key: &str, range: Option<&str>) -> Vec<u8> {
    let mut req = tc.s3.get_object().bucket(bucket).key(key);
    if let Some(r) = range {
        req = req.range(r);
    }
    let out = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    out.body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("body of {key}: {e:?}"))
        .into_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_shards_are_never_served_and_are_rebuilt() {
    let tc = TestCluster::start_with(2, FAST_REPAIR.to_vec()).await;
    let b = "integrity";
    tc.s3
        .create_bucket()
        .bucket(b)
        .send()
        .await
        .expect("bucket");
    tc.s3
        .put_bucket_versioning()
        .bucket(b)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");

    phase("objects are written: four victims, a donor, and a key with two versions");
    let mut bodies = std::collections::BTreeMap::new();
    for (i, key) in ["other", "old", "swap", "rewrite"].iter().enumerate() {
        bodies.insert(*key, put(&tc, b, key, 10 + i as u64).await);
    }
    put(&tc, b, "donor", 99).await;
    // "old" gets a second version: its first version's shards are the stale ones.
    bodies.insert("old", put(&tc, b, "old", 77).await);

    let victim = |key: &'static str| {
        let tc = &tc;
        async move {
            let blob = tc.erasure_blob(b, key).await.expect("erasure coded");
            let copy = *blob.copies_of(0).next().expect("shard 0 placed");
            (blob, copy)
        }
    };
    let (other, other_copy) = victim("other").await;
    let (old, old_copy) = victim("old").await;
    let (swap, swap_copy) = victim("swap").await;
    let (rewrite, rewrite_copy) = victim("rewrite").await;
    assert!(swap.chunks_per_shard >= 2, "the swap needs two chunks");

    phase("shard 0 of each victim is damaged on its node");
    let donor = tc.erasure_blob(b, "donor").await.expect("donor");
    let donor_copy = donor.copies_of(0).next().expect("donor shard 0");
    tc.tamper(
        &other.data_id,
        &other_copy,
        &Tamper::ReplaceWith(tc.shard_path(&donor.data_id, donor_copy)),
    );
    let versions = tc.version_blobs(b, "old").await;
    assert_eq!(versions.len(), 2, "two versions of old");
    let stale = &versions[1];
    let stale_copy = stale.copies_of(0).next().expect("old version shard 0");
    tc.tamper(
        &old.data_id,
        &old_copy,
        &Tamper::ReplaceWith(tc.shard_path(&stale.data_id, stale_copy)),
    );
    tc.tamper(&swap.data_id, &swap_copy, &Tamper::SwapFirstTwoChunks);
    tc.tamper(
        &rewrite.data_id,
        &rewrite_copy,
        &Tamper::RewriteConsistent { seed: 4242 },
    );

    phase("every GET returns the exact object: the damaged shard is read around, never served");
    for (key, body) in &bodies {
        assert!(get(&tc, b, key, None).await == *body, "{key}: whole GET");
        let ranged = get(&tc, b, key, Some("bytes=1000-300000")).await;
        assert!(ranged == body[1000..=300_000], "{key}: ranged GET");
    }

    phase("repair finds every damaged shard and rebuilds it as a new generation");
    tc.scrub_all().await;
    tc.wait_full_redundancy(Duration::from_secs(120)).await;
    for (key, before) in [
        ("other", other_copy),
        ("old", old_copy),
        ("swap", swap_copy),
        ("rewrite", rewrite_copy),
    ] {
        assert_eq!(tc.verify_shards(b, key).await, 6, "{key}: six shards");
        let blob = tc.erasure_blob(b, key).await.expect("still erasure coded");
        let now = blob.copies_of(0).next().expect("shard 0 placed");
        assert_ne!(
            now.generation, before.generation,
            "{key}: shard 0 was not rebuilt"
        );
    }

    phase("after repair every object still reads back exactly");
    for (key, body) in &bodies {
        assert!(get(&tc, b, key, None).await == *body, "{key} after repair");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_that_fails_its_stored_checksum_is_never_served_whole() {
    use tessera_client::meta::PutVersion;
    use tessera_core::blob::Blob;
    use tessera_core::checksum::{ChecksumAlgorithm, ChecksumType, checksum_of, to_base64};
    use tessera_core::names::{BucketName, ObjectKey};
    use tessera_core::object::{ChecksumValue, ObjectPart, ObjectVersion};

    let tc = TestCluster::start(2).await;
    let b = "whole";
    tc.s3
        .create_bucket()
        .bucket(b)
        .send()
        .await
        .expect("bucket");

    phase("a version is recorded whose stored CRC64NVME is not the checksum of its bytes");
    let body = b"the bytes a reader gets".to_vec();
    let wrong = ChecksumValue {
        algorithm: ChecksumAlgorithm::Crc64Nvme,
        value: to_base64(&checksum_of(ChecksumAlgorithm::Crc64Nvme, b"other bytes")),
        kind: ChecksumType::FullObject,
    };
    let etag = format!("\"{}\"", hex::encode(tessera_core::etag::md5_of(&body)));
    let version = ObjectVersion {
        size: body.len() as u64,
        etag: etag.clone(),
        checksums: vec![wrong.clone()],
        parts: vec![ObjectPart {
            part_number: 1,
            size: body.len() as u64,
            etag,
            blob: Blob::inline(body.clone()),
            checksums: vec![wrong],
        }],
        storage_class: "STANDARD".into(),
        ..ObjectVersion::new(
            BucketName::parse(b).expect("bucket"),
            ObjectKey::parse("k").expect("key"),
        )
    };
    tc.meta()
        .put_version(&PutVersion {
            version,
            precondition: None,
            lease_id: 0,
        })
        .await
        .expect("record the version");

    phase("a whole-object GET never delivers the body; HEAD and ranges still answer");
    let head = tc
        .s3
        .head_object()
        .bucket(b)
        .key("k")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length(), Some(body.len() as i64));
    // The response breaks off (the headers may already be out): the client gets an error or a
    // short body, never the whole body.
    let delivered = match tc.s3.get_object().bucket(b).key("k").send().await {
        Ok(out) => out.body.collect().await.ok().map(|d| d.into_bytes().len()),
        Err(_) => None,
    };
    assert!(
        delivered.is_none_or(|len| len < body.len()),
        "a body that fails its stored checksum was served whole"
    );
    let ranged = get(&tc, b, "k", Some("bytes=4-8")).await;
    assert_eq!(ranged, body[4..=8]);
}
