//! The built-in KMS seen from outside: keys made and managed with `tessera admin kms`, objects
//! written with SSE-KMS and DSSE-KMS (single PUTs, multipart, bucket defaults) through a real
//! S3 client, answers naming the key and context, a disabled or pending-deletion key making its
//! objects unreadable (S3's KMS error codes) until it is enabled again, while other objects stay
//! readable, and every use of a key in meta's audit log.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};

use crate::harness::{TestCluster, error_code, error_status, pattern, phase};

async fn get(tc: &TestCluster, key: &str, range: Option<String>) -> (Vec<u8>, Option<String>) {
    let out = tc
        .s3
        .get_object()
        .bucket("vault")
        .key(key)
        .set_range(range)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    let kms_key = out.ssekms_key_id.clone();
    let body = out
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec();
    (body, kms_key)
}

async fn get_refused(tc: &TestCluster, key: &str) -> (u16, String) {
    let e = tc
        .s3
        .get_object()
        .bucket("vault")
        .key(key)
        .send()
        .await
        .expect_err("refused");
    answer(&e)
}

/// The HTTP status and S3 error code of a failed call.
fn answer<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> (u16, String)
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
{
    (error_status(e), error_code(e))
}

/// What S3 answers for an object (or write) under a disabled KMS key.
fn disabled() -> (u16, String) {
    (400, "KMS.DisabledException".to_owned())
}

/// Uploads `parts` (numbered from 1) to upload `upload` of `vault/KEY` and completes it; the
/// parts' answers and the completion's, for the caller to check.
async fn upload_parts(
    tc: &TestCluster,
    key: &str,
    upload: &str,
    parts: &[&[u8]],
) -> (
    Vec<aws_sdk_s3::operation::upload_part::UploadPartOutput>,
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
) {
    let mut answers = Vec::new();
    let mut completed = Vec::new();
    for (n, data) in (1..).zip(parts) {
        let up = tc
            .s3
            .upload_part()
            .bucket("vault")
            .key(key)
            .upload_id(upload)
            .part_number(n)
            .body(ByteStream::from(data.to_vec()))
            .send()
            .await
            .expect("part");
        completed.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(up.e_tag.clone().expect("etag"))
                .build(),
        );
        answers.push(up);
    }
    let done = tc
        .s3
        .complete_multipart_upload()
        .bucket("vault")
        .key(key)
        .upload_id(upload)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    (answers, done)
}

fn kms_rule(
    algorithm: ServerSideEncryption,
    key: Option<&str>,
    bucket_key: Option<bool>,
) -> ServerSideEncryptionConfiguration {
    ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(algorithm)
                        .set_kms_master_key_id(key.map(str::to_owned))
                        .build()
                        .expect("default"),
                )
                .set_bucket_key_enabled(bucket_key)
                .build(),
        )
        .build()
        .expect("configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kms_keys_seal_objects_and_a_disabled_key_locks_them_until_enabled() {
    let tc = TestCluster::start(1).await;
    let s3 = &tc.s3;
    s3.create_bucket()
        .bucket("vault")
        .send()
        .await
        .expect("bucket");

    phase("an operator makes a key with an alias; its id is printed");
    let key_id = tc
        .admin_ok(&[
            "kms",
            "create-key",
            "--alias",
            "backups",
            "--description",
            "cluster test",
        ])
        .trim()
        .to_owned();
    assert_eq!(key_id.len(), 36, "a key id: {key_id:?}");
    let described = tc.admin_ok(&["kms", "describe-key", "alias/backups"]);
    assert!(
        described.contains(&key_id) && described.contains("Enabled"),
        "{described}"
    );
    let refused = tc.admin_output(&["kms", "create-key", "--alias", "backups"]);
    assert!(!refused.status.success(), "a taken alias is refused");

    phase("SSE-KMS PUTs answer aws:kms, the key id and the context; GETs read them back");
    let small = pattern(3000, 1);
    let large = pattern(1_500_000, 2);
    let context = tessera_core::checksum::to_base64(br#"{"team":"ops"}"#);
    for (name, data) in [("small", &small), ("large", &large)] {
        let put = s3
            .put_object()
            .bucket("vault")
            .key(name)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id("alias/backups")
            .ssekms_encryption_context(&context)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e:?}"));
        assert_eq!(
            put.server_side_encryption,
            Some(ServerSideEncryption::AwsKms)
        );
        assert_eq!(put.ssekms_key_id.as_deref(), Some(key_id.as_str()));
        assert_eq!(
            put.ssekms_encryption_context.as_deref(),
            Some(context.as_str())
        );
        let (body, kms_key) = get(&tc, name, None).await;
        assert!(body == *data, "{name}");
        assert_eq!(kms_key.as_deref(), Some(key_id.as_str()));
    }
    let (part, _) = get(&tc, "large", Some("bytes=70000-700123".into())).await;
    assert!(part == large[70_000..=700_123]);
    let head = s3
        .head_object()
        .bucket("vault")
        .key("large")
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.server_side_encryption,
        Some(ServerSideEncryption::AwsKms)
    );
    assert_eq!(head.ssekms_key_id.as_deref(), Some(key_id.as_str()));

    phase("DSSE-KMS: two layers, read back whole and in ranges");
    let put = s3
        .put_object()
        .bucket("vault")
        .key("dsse")
        .server_side_encryption(ServerSideEncryption::AwsKmsDsse)
        .ssekms_key_id(&key_id)
        .body(ByteStream::from(large.clone()))
        .send()
        .await
        .expect("dsse put");
    assert_eq!(
        put.server_side_encryption,
        Some(ServerSideEncryption::AwsKmsDsse)
    );
    assert!(get(&tc, "dsse", None).await.0 == large);
    let (part, _) = get(&tc, "dsse", Some("bytes=65530-200000".into())).await;
    assert!(part == large[65_530..=200_000]);

    phase("aws:kms without a key id uses the default key aws/s3, made on first use");
    let put = s3
        .put_object()
        .bucket("vault")
        .key("default-key")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .expect("default key put");
    let default_id = put.ssekms_key_id.expect("a key id");
    assert_ne!(default_id, key_id);
    let listed = tc.admin_ok(&["kms", "list-keys"]);
    assert!(
        listed.contains("aws/s3") && listed.contains(&default_id),
        "{listed}"
    );

    phase("multipart under a KMS key: every part sealed under it");
    let create = s3
        .create_multipart_upload()
        .bucket("vault")
        .key("multi")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("backups")
        .send()
        .await
        .expect("create");
    assert_eq!(create.ssekms_key_id.as_deref(), Some(key_id.as_str()));
    let upload = create.upload_id.expect("upload id");
    let part1 = pattern(5 * 1024 * 1024, 3);
    let (answers, _) = upload_parts(&tc, "multi", &upload, &[&part1, &small]).await;
    for up in answers {
        assert_eq!(up.ssekms_key_id.as_deref(), Some(key_id.as_str()));
    }
    let whole: Vec<u8> = part1.iter().chain(small.iter()).copied().collect();
    let (body, kms_key) = get(&tc, "multi", None).await;
    assert!(body == whole);
    assert_eq!(kms_key.as_deref(), Some(key_id.as_str()));

    phase("a bucket default of SSE-KMS with a key seals PUTs that ask for nothing");
    s3.put_bucket_encryption()
        .bucket("vault")
        .server_side_encryption_configuration(kms_rule(
            ServerSideEncryption::AwsKms,
            Some("alias/backups"),
            None,
        ))
        .send()
        .await
        .expect("put bucket encryption");
    let got = s3
        .get_bucket_encryption()
        .bucket("vault")
        .send()
        .await
        .expect("get bucket encryption");
    let default = got
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .expect("a default")
        .clone();
    assert_eq!(default.sse_algorithm(), &ServerSideEncryption::AwsKms);
    assert_eq!(default.kms_master_key_id(), Some(key_id.as_str()));
    let put = s3
        .put_object()
        .bucket("vault")
        .key("by-default")
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .expect("put with the bucket default");
    assert_eq!(
        put.server_side_encryption,
        Some(ServerSideEncryption::AwsKms)
    );
    assert_eq!(put.ssekms_key_id.as_deref(), Some(key_id.as_str()));
    let e = s3
        .put_bucket_encryption()
        .bucket("vault")
        .server_side_encryption_configuration(kms_rule(
            ServerSideEncryption::AwsKms,
            Some("alias/no-such-key"),
            None,
        ))
        .send()
        .await
        .expect_err("an unknown key");
    assert_eq!(error_status(&e), 400);
    s3.delete_bucket_encryption()
        .bucket("vault")
        .send()
        .await
        .expect("delete bucket encryption");
    let put = s3
        .put_object()
        .bucket("vault")
        .key("plain-s3")
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .expect("put after delete");
    assert_eq!(
        put.server_side_encryption,
        Some(ServerSideEncryption::Aes256)
    );

    phase("a disabled key locks its objects (and new writes) until enabled again");
    tc.admin_ok(&["kms", "disable-key", "alias/backups"]);
    for name in ["small", "large", "dsse", "multi", "by-default"] {
        assert_eq!(get_refused(&tc, name).await, disabled(), "{name}");
    }
    let e = s3
        .put_object()
        .bucket("vault")
        .key("refused")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key_id)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("a write under a disabled key");
    assert_eq!(answer(&e), disabled());
    let e = s3
        .copy_object()
        .bucket("vault")
        .key("copied")
        .copy_source("vault/small")
        .send()
        .await
        .expect_err("a copy from a disabled key's object");
    assert_eq!(answer(&e), disabled());
    assert!(get(&tc, "default-key", None).await.0 == small, "other keys");
    assert!(get(&tc, "plain-s3", None).await.0 == small, "SSE-S3");
    tc.admin_ok(&["kms", "enable-key", &key_id]);
    assert!(get(&tc, "large", None).await.0 == large, "enabled again");

    phase("a key pending deletion is unusable; cancelling leaves it disabled");
    let scheduled = tc.admin_ok(&[
        "kms",
        "schedule-key-deletion",
        "backups",
        "--pending-window-days",
        "7",
    ]);
    assert!(!scheduled.trim().is_empty(), "the deletion date is printed");
    assert_eq!(
        get_refused(&tc, "small").await,
        (400, "KMS.KMSInvalidStateException".to_owned())
    );
    let refused = tc.admin_output(&["kms", "enable-key", "backups"]);
    assert!(
        !refused.status.success(),
        "a key pending deletion cannot be enabled"
    );
    tc.admin_ok(&["kms", "cancel-key-deletion", "backups"]);
    assert_eq!(get_refused(&tc, "small").await, disabled());
    tc.admin_ok(&["kms", "enable-key", "backups"]);
    assert!(get(&tc, "small", None).await.0 == small);

    phase("an unknown key is KMS.NotFoundException and stores nothing");
    let e = s3
        .put_object()
        .bucket("vault")
        .key("unknown")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("alias/nobody")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("unknown key");
    assert_eq!(answer(&e), (400, "KMS.NotFoundException".to_owned()));
    let e = s3
        .head_object()
        .bucket("vault")
        .key("unknown")
        .send()
        .await
        .expect_err("nothing stored");
    assert_eq!(error_status(&e), 404);

    phase("every use of a key is in meta's audit log");
    let audit = logs_of(&tc, "meta");
    for needle in [
        key_id.as_str(),
        "GenerateDataKey",
        "DecryptDataKey",
        "tessera::audit",
    ] {
        assert!(audit.contains(needle), "the meta logs name {needle}");
    }
}

/// The text of the cluster's log files whose names start with `prefix`.
fn logs_of(tc: &TestCluster, prefix: &str) -> String {
    std::fs::read_dir(tc.root().join("logs"))
        .expect("logs")
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with(prefix))
        .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
        .collect()
}

/// Lines of `text` that hold every one of `needles`.
fn lines_with(text: &str, needles: &[&str]) -> usize {
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bucket_keys_serve_many_objects_with_one_kms_key_per_bucket() {
    let tc = TestCluster::start(1).await;
    let s3 = &tc.s3;
    s3.create_bucket()
        .bucket("vault")
        .send()
        .await
        .expect("bucket");
    let key_id = tc
        .admin_ok(&["kms", "create-key", "--alias", "bk"])
        .trim()
        .to_owned();

    phase("PUTs asking for a bucket key answer bucket-key-enabled and read back");
    let small = pattern(3000, 11);
    let large = pattern(1_500_000, 12);
    let context = tessera_core::checksum::to_base64(br#"{"team":"ops"}"#);
    let mut names = Vec::new();
    for i in 0..12 {
        let name = format!("obj-{i}");
        let data = if i == 0 { &large } else { &small };
        let put = s3
            .put_object()
            .bucket("vault")
            .key(&name)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id("alias/bk")
            .ssekms_encryption_context(&context)
            .bucket_key_enabled(true)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e:?}"));
        assert_eq!(put.bucket_key_enabled, Some(true), "{name}");
        assert_eq!(put.ssekms_key_id.as_deref(), Some(key_id.as_str()));
        assert_eq!(
            put.ssekms_encryption_context.as_deref(),
            Some(context.as_str())
        );
        names.push((name, data.clone()));
    }
    for (name, data) in &names {
        let out = s3
            .get_object()
            .bucket("vault")
            .key(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e:?}"));
        assert_eq!(out.bucket_key_enabled, Some(true), "{name}");
        assert_eq!(
            out.server_side_encryption,
            Some(ServerSideEncryption::AwsKms)
        );
        let body = out.body.collect().await.expect("body").into_bytes();
        assert!(body.as_ref() == data.as_slice(), "{name}");
    }
    let (part, _) = get(&tc, "obj-0", Some("bytes=65530-900000".into())).await;
    assert!(part == large[65_530..=900_000]);
    let head = s3
        .head_object()
        .bucket("vault")
        .key("obj-0")
        .send()
        .await
        .expect("head");
    assert_eq!(head.bucket_key_enabled, Some(true));
    assert_eq!(head.ssekms_key_id.as_deref(), Some(key_id.as_str()));

    phase("the KMS made one bucket key for the bucket; the gateway audited every object");
    let meta_logs = logs_of(&tc, "meta");
    let made = lines_with(
        &meta_logs,
        &["tessera::audit", key_id.as_str(), "GenerateDataKey", "ok"],
    );
    assert_eq!(made, 1, "one bucket key for twelve objects");
    let gateway_logs = logs_of(&tc, "gateway");
    assert!(
        lines_with(
            &gateway_logs,
            &[
                "tessera::audit",
                key_id.as_str(),
                "BucketKeyGenerateDataKey",
                "ok"
            ]
        ) >= 12,
        "every new object's key use is audited"
    );
    assert!(
        lines_with(
            &gateway_logs,
            &[
                "tessera::audit",
                key_id.as_str(),
                "BucketKeyDecryptDataKey",
                "ok"
            ]
        ) >= 13,
        "every read's key use is audited"
    );

    phase("without the header an object gets no bucket key; DSSE-KMS never does");
    let put = s3
        .put_object()
        .bucket("vault")
        .key("no-bucket-key")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key_id)
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .expect("put");
    assert_eq!(put.bucket_key_enabled, None);
    let put = s3
        .put_object()
        .bucket("vault")
        .key("dsse")
        .server_side_encryption(ServerSideEncryption::AwsKmsDsse)
        .ssekms_key_id(&key_id)
        .bucket_key_enabled(true)
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .expect("dsse put");
    assert_eq!(
        put.server_side_encryption,
        Some(ServerSideEncryption::AwsKmsDsse)
    );
    assert_eq!(put.bucket_key_enabled, None);
    assert!(get(&tc, "dsse", None).await.0 == small);

    phase("a bucket default with BucketKeyEnabled applies unless the request says otherwise");
    s3.put_bucket_encryption()
        .bucket("vault")
        .server_side_encryption_configuration(kms_rule(
            ServerSideEncryption::AwsKms,
            Some("alias/bk"),
            Some(true),
        ))
        .send()
        .await
        .expect("put bucket encryption");
    let got = s3
        .get_bucket_encryption()
        .bucket("vault")
        .send()
        .await
        .expect("get bucket encryption");
    let rule = got
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .expect("a rule")
        .clone();
    assert_eq!(rule.bucket_key_enabled(), Some(true));
    let put = s3
        .put_object()
        .bucket("vault")
        .key("by-default")
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .expect("put by default");
    assert_eq!(put.bucket_key_enabled, Some(true));
    assert_eq!(put.ssekms_key_id.as_deref(), Some(key_id.as_str()));
    let put = s3
        .put_object()
        .bucket("vault")
        .key("opted-out")
        .bucket_key_enabled(false)
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .expect("put opting out");
    assert_eq!(put.bucket_key_enabled, None);
    assert_eq!(
        put.server_side_encryption,
        Some(ServerSideEncryption::AwsKms)
    );

    phase("multipart uploads and copies take the setting of the request (or the default)");
    let create = s3
        .create_multipart_upload()
        .bucket("vault")
        .key("multi")
        .send()
        .await
        .expect("create");
    assert_eq!(create.bucket_key_enabled, Some(true));
    let upload = create.upload_id.expect("upload id");
    let part1 = pattern(5 * 1024 * 1024, 13);
    let (answers, done) = upload_parts(&tc, "multi", &upload, &[&part1, &small]).await;
    for up in answers {
        assert_eq!(up.bucket_key_enabled, Some(true));
    }
    assert_eq!(done.bucket_key_enabled, Some(true));
    let whole: Vec<u8> = part1.iter().chain(small.iter()).copied().collect();
    assert!(get(&tc, "multi", None).await.0 == whole);
    let copied = s3
        .copy_object()
        .bucket("vault")
        .key("copy-without")
        .copy_source("vault/obj-1")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key_id)
        .bucket_key_enabled(false)
        .send()
        .await
        .expect("copy without a bucket key");
    assert_eq!(copied.bucket_key_enabled, None);
    let copied = s3
        .copy_object()
        .bucket("vault")
        .key("copy-with")
        .copy_source("vault/no-bucket-key")
        .send()
        .await
        .expect("copy under the default");
    assert_eq!(copied.bucket_key_enabled, Some(true));
    for name in ["copy-without", "copy-with"] {
        assert!(get(&tc, name, None).await.0 == small, "{name}");
    }

    phase("disabling the key refuses bucket-keyed objects at once, despite the cached key");
    tc.admin_ok(&["kms", "disable-key", "bk"]);
    for name in ["obj-0", "obj-5", "by-default", "multi", "copy-with"] {
        assert_eq!(get_refused(&tc, name).await, disabled(), "{name}");
    }
    let e = s3
        .put_object()
        .bucket("vault")
        .key("refused")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("a write under a disabled key");
    assert_eq!(answer(&e), disabled());
    let e = s3
        .copy_object()
        .bucket("vault")
        .key("refused-copy")
        .copy_source("vault/obj-1")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .expect_err("a copy from a disabled key's object");
    assert_eq!(answer(&e), disabled());
    tc.admin_ok(&["kms", "enable-key", "bk"]);
    assert!(get(&tc, "obj-0", None).await.0 == large, "enabled again");
}
