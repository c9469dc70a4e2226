//! Buckets and single-part objects: the happy paths and S3's documented answers.

use crate::harness::{TestCluster, error_code, error_status, pattern, phase};
use aws_sdk_s3::primitives::ByteStream;
use md5::{Digest, Md5};

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buckets_objects_ranges_conditionals_and_copies() {
    let tc = TestCluster::start(2).await;
    let s3 = &tc.s3;

    phase("bucket names are validated and buckets can be created, listed, located");
    let bad = s3
        .create_bucket()
        .bucket("Bad_Name")
        .send()
        .await
        .expect_err("invalid");
    assert_eq!(error_code(&bad), "InvalidBucketName");
    s3.create_bucket()
        .bucket("photos")
        .send()
        .await
        .expect("create");
    let again = s3
        .create_bucket()
        .bucket("photos")
        .send()
        .await
        .expect_err("exists");
    assert_eq!(error_code(&again), "BucketAlreadyOwnedByYou");
    s3.head_bucket()
        .bucket("photos")
        .send()
        .await
        .expect("head");
    let missing = s3
        .head_bucket()
        .bucket("nope-bucket")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(error_status(&missing), 404);
    let list = s3.list_buckets().send().await.expect("list");
    let names: Vec<_> = list.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, vec!["photos"]);
    let loc = s3
        .get_bucket_location()
        .bucket("photos")
        .send()
        .await
        .expect("location");
    // us-east-1 answers an empty LocationConstraint.
    assert_eq!(
        loc.location_constraint().map(|c| c.as_str()).unwrap_or(""),
        ""
    );

    phase("a small object round-trips with metadata and an MD5 ETag");
    let small = pattern(1000, 1);
    let put = s3
        .put_object()
        .bucket("photos")
        .key("small/a.txt")
        .content_type("text/plain")
        .metadata("color", "blue")
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .expect("put small");
    assert_eq!(
        put.e_tag(),
        Some(format!("\"{}\"", md5_hex(&small)).as_str())
    );
    let got = s3
        .get_object()
        .bucket("photos")
        .key("small/a.txt")
        .send()
        .await
        .expect("get");
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("color"))
            .map(String::as_str),
        Some("blue")
    );
    assert_eq!(got.content_length(), Some(1000));
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(body.as_ref(), small.as_slice());

    phase("a 64 MiB multi-stripe object reads back byte for byte");
    let big = pattern(64 * 1024 * 1024 + 4321, 2);
    let put = s3
        .put_object()
        .bucket("photos")
        .key("big.bin")
        .body(ByteStream::from(big.clone()))
        .send()
        .await
        .expect("put big");
    assert_eq!(put.e_tag(), Some(format!("\"{}\"", md5_hex(&big)).as_str()));
    let got = s3
        .get_object()
        .bucket("photos")
        .key("big.bin")
        .send()
        .await
        .expect("get big");
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(body.len(), big.len());
    assert!(body.as_ref() == big.as_slice(), "64 MiB object differs");

    phase("ranges, including across stripe boundaries, return exactly those bytes");
    let stripe = 3 * 256 * 1024_usize;
    let n = big.len();
    for (first, last) in [
        (0, 0),
        (stripe - 10, stripe + 10),
        (2 * stripe - 1, 2 * stripe),
        (12345, 12345 + 3 * stripe),
        (n - 1, n - 1),
    ] {
        let got = s3
            .get_object()
            .bucket("photos")
            .key("big.bin")
            .range(format!("bytes={first}-{last}"))
            .send()
            .await
            .expect("range");
        assert_eq!(
            got.content_range(),
            Some(format!("bytes {first}-{last}/{n}").as_str())
        );
        let body = got.body.collect().await.expect("body").into_bytes();
        assert_eq!(body.as_ref(), &big[first..=last], "range {first}-{last}");
    }
    let suffix = s3
        .get_object()
        .bucket("photos")
        .key("big.bin")
        .range("bytes=-100")
        .send()
        .await
        .expect("suffix");
    assert_eq!(
        suffix
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .as_ref(),
        &big[n - 100..]
    );
    let oob = s3
        .get_object()
        .bucket("photos")
        .key("big.bin")
        .range(format!("bytes={n}-"))
        .send()
        .await
        .expect_err("out of range");
    assert_eq!(error_code(&oob), "InvalidRange");
    assert_eq!(error_status(&oob), 416);

    phase("HEAD, conditional requests and response overrides follow S3");
    let head = s3
        .head_object()
        .bucket("photos")
        .key("small/a.txt")
        .send()
        .await
        .expect("head");
    let etag = head.e_tag().expect("etag").to_string();
    assert_eq!(head.content_length(), Some(1000));
    let nm = s3
        .get_object()
        .bucket("photos")
        .key("small/a.txt")
        .if_none_match(&etag)
        .send()
        .await
        .expect_err("304");
    assert_eq!(error_status(&nm), 304);
    let pf = s3
        .get_object()
        .bucket("photos")
        .key("small/a.txt")
        .if_match("\"0000\"")
        .send()
        .await
        .expect_err("412");
    assert_eq!(error_status(&pf), 412);
    s3.get_object()
        .bucket("photos")
        .key("small/a.txt")
        .if_match(&etag)
        .send()
        .await
        .expect("if-match ok");
    let future = aws_sdk_s3::primitives::DateTime::from_secs(4_102_444_800);
    let ims = s3
        .get_object()
        .bucket("photos")
        .key("small/a.txt")
        .if_modified_since(future)
        .send()
        .await
        .expect_err("304");
    assert_eq!(error_status(&ims), 304);
    let past = aws_sdk_s3::primitives::DateTime::from_secs(1_000_000_000);
    let ius = s3
        .get_object()
        .bucket("photos")
        .key("small/a.txt")
        .if_unmodified_since(past)
        .send()
        .await
        .expect_err("412");
    assert_eq!(error_status(&ius), 412);
    let over = s3
        .get_object()
        .bucket("photos")
        .key("small/a.txt")
        .response_content_type("application/x-test")
        .response_cache_control("no-store")
        .send()
        .await
        .expect("overrides");
    assert_eq!(over.content_type(), Some("application/x-test"));
    assert_eq!(over.cache_control(), Some("no-store"));
    let part1 = s3
        .get_object()
        .bucket("photos")
        .key("small/a.txt")
        .part_number(1)
        .send()
        .await
        .expect("part 1");
    assert_eq!(part1.content_length(), Some(1000));
    let part2 = s3
        .get_object()
        .bucket("photos")
        .key("small/a.txt")
        .part_number(2)
        .send()
        .await
        .expect_err("part 2");
    assert_eq!(error_code(&part2), "InvalidPartNumber");

    phase("conditional PUT: If-None-Match: * refuses to overwrite");
    let exists = s3
        .put_object()
        .bucket("photos")
        .key("small/a.txt")
        .if_none_match("*")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("exists");
    assert_eq!(error_status(&exists), 412);
    s3.put_object()
        .bucket("photos")
        .key("small/new.txt")
        .if_none_match("*")
        .body(ByteStream::from_static(b"fresh"))
        .send()
        .await
        .expect("create-only put");

    phase("conditional PUT: If-Match must name the current ETag of an existing key");
    let stale = s3
        .put_object()
        .bucket("photos")
        .key("small/new.txt")
        .if_match("\"00000000000000000000000000000000\"")
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .expect_err("stale etag");
    assert_eq!(error_status(&stale), 412);
    let current = s3
        .head_object()
        .bucket("photos")
        .key("small/new.txt")
        .send()
        .await
        .expect("head");
    s3.put_object()
        .bucket("photos")
        .key("small/new.txt")
        .if_match(current.e_tag().expect("etag"))
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .expect("if-match put");
    let missing = s3
        .put_object()
        .bucket("photos")
        .key("small/never.txt")
        .if_match("\"00000000000000000000000000000000\"")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("missing key");
    assert_eq!(error_code(&missing), "NoSuchKey");
    let head_nm = s3
        .head_object()
        .bucket("photos")
        .key("small/a.txt")
        .if_none_match(&etag)
        .send()
        .await
        .expect_err("head 304");
    assert_eq!(error_status(&head_nm), 304);

    phase("CopyObject copies data and metadata (COPY) or replaces metadata (REPLACE)");
    let copied = s3
        .copy_object()
        .bucket("photos")
        .key("copy/big.bin")
        .copy_source("photos/big.bin")
        .send()
        .await
        .expect("copy big");
    assert_eq!(
        copied.copy_object_result().and_then(|r| r.e_tag()),
        Some(format!("\"{}\"", md5_hex(&big)).as_str())
    );
    let got = s3
        .get_object()
        .bucket("photos")
        .key("copy/big.bin")
        .send()
        .await
        .expect("get copy");
    assert!(
        got.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .as_ref()
            == big.as_slice()
    );
    s3.copy_object()
        .bucket("photos")
        .key("copy/a.txt")
        .copy_source("photos/small/a.txt")
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .metadata("color", "red")
        .send()
        .await
        .expect("copy replace");
    let h = s3
        .head_object()
        .bucket("photos")
        .key("copy/a.txt")
        .send()
        .await
        .expect("head copy");
    assert_eq!(
        h.metadata()
            .and_then(|m| m.get("color"))
            .map(String::as_str),
        Some("red")
    );
    let cond = s3
        .copy_object()
        .bucket("photos")
        .key("copy/b.txt")
        .copy_source("photos/small/a.txt")
        .copy_source_if_match("\"nope\"")
        .send()
        .await
        .expect_err("copy precondition");
    assert_eq!(error_status(&cond), 412);
    let selfcopy = s3
        .copy_object()
        .bucket("photos")
        .key("small/a.txt")
        .copy_source("photos/small/a.txt")
        .send()
        .await
        .expect_err("self copy");
    assert_eq!(error_code(&selfcopy), "InvalidRequest");

    phase("DeleteObject and DeleteObjects (quiet and verbose) remove keys");
    let not_empty = s3
        .delete_bucket()
        .bucket("photos")
        .send()
        .await
        .expect_err("not empty");
    assert_eq!(error_code(&not_empty), "BucketNotEmpty");
    s3.delete_object()
        .bucket("photos")
        .key("small/new.txt")
        .send()
        .await
        .expect("delete");
    s3.delete_object()
        .bucket("photos")
        .key("small/new.txt")
        .send()
        .await
        .expect("delete twice is fine");
    let gone = s3
        .get_object()
        .bucket("photos")
        .key("small/new.txt")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(error_code(&gone), "NoSuchKey");
    let ids = |keys: &[&str]| {
        keys.iter()
            .map(|k| {
                aws_sdk_s3::types::ObjectIdentifier::builder()
                    .key(*k)
                    .build()
                    .expect("id")
            })
            .collect::<Vec<_>>()
    };
    let verbose = s3
        .delete_objects()
        .bucket("photos")
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(ids(&["small/a.txt", "copy/a.txt"])))
                .build()
                .expect("delete"),
        )
        .send()
        .await
        .expect("delete objects");
    assert_eq!(verbose.deleted().len(), 2);
    let quiet = s3
        .delete_objects()
        .bucket("photos")
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(ids(&["big.bin", "copy/big.bin"])))
                .quiet(true)
                .build()
                .expect("delete"),
        )
        .send()
        .await
        .expect("quiet delete");
    assert!(quiet.deleted().is_empty());
    assert!(quiet.errors().is_empty());
    let listed = s3
        .list_objects_v2()
        .bucket("photos")
        .send()
        .await
        .expect("list");
    assert_eq!(listed.key_count(), Some(0));
    s3.delete_bucket()
        .bucket("photos")
        .send()
        .await
        .expect("delete bucket");
    let gone = s3
        .list_objects_v2()
        .bucket("photos")
        .send()
        .await
        .expect_err("no bucket");
    assert_eq!(error_code(&gone), "NoSuchBucket");
}
