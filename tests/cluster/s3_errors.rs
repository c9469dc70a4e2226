//! Bad input gets the S3 error AWS returns, and nothing is stored.

use crate::harness::{TestCluster, error_code, error_status, phase, s3_client};
use aws_sdk_s3::primitives::ByteStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_s3_errors_and_stores_nothing() {
    let tc = TestCluster::start(2).await;
    let s3 = &tc.s3;
    s3.create_bucket()
        .bucket("errs")
        .send()
        .await
        .expect("bucket");

    phase("a key over 1024 bytes is KeyTooLongError");
    let long = "k".repeat(1025);
    let e = s3
        .put_object()
        .bucket("errs")
        .key(&long)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("long");
    assert_eq!(
        (error_status(&e), error_code(&e)),
        (400, "KeyTooLongError".to_string())
    );

    phase("a wrong Content-MD5 is BadDigest and the object is not stored");
    let e = s3
        .put_object()
        .bucket("errs")
        .key("md5")
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(ByteStream::from_static(b"not empty"))
        .send()
        .await
        .expect_err("bad md5");
    assert_eq!(
        (error_status(&e), error_code(&e)),
        (400, "BadDigest".to_string())
    );
    let e = s3
        .head_object()
        .bucket("errs")
        .key("md5")
        .send()
        .await
        .expect_err("not stored");
    assert_eq!(error_status(&e), 404);

    phase("a wrong x-amz-checksum-crc32 is BadDigest and the object is not stored");
    let e = s3
        .put_object()
        .bucket("errs")
        .key("crc")
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from(vec![7_u8; 40_000]))
        .send()
        .await
        .expect_err("bad crc");
    assert_eq!(
        (error_status(&e), error_code(&e)),
        (400, "BadDigest".to_string())
    );
    let e = s3
        .head_object()
        .bucket("errs")
        .key("crc")
        .send()
        .await
        .expect_err("not stored");
    assert_eq!(error_status(&e), 404);

    phase("a correct checksum is verified, stored and returned on request");
    let put = s3
        .put_object()
        .bucket("errs")
        .key("crc-ok")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(vec![9_u8; 100_000]))
        .send()
        .await
        .expect("sha256 put");
    let sent = put.checksum_sha256().expect("echoed").to_string();
    let head = s3
        .head_object()
        .bucket("errs")
        .key("crc-ok")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("head");
    assert_eq!(head.checksum_sha256(), Some(sent.as_str()));

    phase("missing buckets, keys and uploads");
    let e = s3
        .get_object()
        .bucket("no-such-bucket-x")
        .key("k")
        .send()
        .await
        .expect_err("bucket");
    assert_eq!(
        (error_status(&e), error_code(&e)),
        (404, "NoSuchBucket".to_string())
    );
    let e = s3
        .get_object()
        .bucket("errs")
        .key("nothing")
        .send()
        .await
        .expect_err("key");
    assert_eq!(
        (error_status(&e), error_code(&e)),
        (404, "NoSuchKey".to_string())
    );
    let e = s3
        .upload_part()
        .bucket("errs")
        .key("k")
        .upload_id("0123456789abcdef0123456789abcdef")
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("upload");
    assert_eq!(
        (error_status(&e), error_code(&e)),
        (404, "NoSuchUpload".to_string())
    );

    phase("bad signatures and unknown keys are refused");
    let (ak, _) = tc.cluster.credentials();
    let wrong_secret = s3_client(
        &tc.cluster.endpoint(),
        ak,
        "wrong-secret-key-000",
        tc.cluster.region(),
        tc.cluster.https_ca().as_deref(),
    );
    let e = wrong_secret
        .list_buckets()
        .send()
        .await
        .expect_err("bad signature");
    assert_eq!(error_code(&e), "SignatureDoesNotMatch");
    assert_eq!(error_status(&e), 403);
    let unknown = s3_client(
        &tc.cluster.endpoint(),
        "AKIAUNKNOWN",
        "whatever-secret",
        tc.cluster.region(),
        tc.cluster.https_ca().as_deref(),
    );
    let e = unknown
        .list_buckets()
        .send()
        .await
        .expect_err("unknown key");
    assert_eq!(
        (error_status(&e), error_code(&e)),
        (403, "InvalidAccessKeyId".to_string())
    );

    phase("nothing was stored by any refused request");
    let listed = s3
        .list_objects_v2()
        .bucket("errs")
        .send()
        .await
        .expect("list");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["crc-ok"]);
}
