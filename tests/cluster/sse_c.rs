//! SSE-C seen from outside, with a real S3 client: objects of every shape (inline, erasure
//! coded, multipart, copied) are written and read only with the customer's key, the answers echo
//! the algorithm and the key's MD5, a missing key is 400 InvalidRequest and another key 403
//! AccessDenied before any byte is served, inconsistent key headers are refused and store
//! nothing, and neither the key nor the plaintext reaches any file the cluster writes. Over
//! plain HTTP a customer key is refused, as S3 does, unless the gateway's
//! `sse_c_over_http` setting allows it.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use tessera_core::checksum::to_base64;
use tessera_core::etag::md5_of;
use tessera_devcluster::NodeRole;

use crate::harness::{ClusterOptions, TestCluster, error_code, error_status, pattern, phase};

/// A customer key as the three headers carry it.
struct Key {
    raw: [u8; 32],
    b64: String,
    md5: String,
}

impl Key {
    fn new() -> Key {
        let raw: [u8; 32] = rand::random();
        Key {
            raw,
            b64: to_base64(&raw),
            md5: to_base64(&md5_of(&raw)),
        }
    }
}

/// Sets the three customer-key headers of a fluent builder.
macro_rules! with_key {
    ($builder:expr, $key:expr) => {
        $builder
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&$key.b64)
            .sse_customer_key_md5(&$key.md5)
    };
}

/// Sets the copy source's three customer-key headers of a fluent builder.
macro_rules! with_source_key {
    ($builder:expr, $key:expr) => {
        $builder
            .copy_source_sse_customer_algorithm("AES256")
            .copy_source_sse_customer_key(&$key.b64)
            .copy_source_sse_customer_key_md5(&$key.md5)
    };
}

/// Reads `key` (or a range of it) with the customer key `with`; checks the echoed headers.
async fn get_with(tc: &TestCluster, key: &str, with: &Key, range: Option<String>) -> Vec<u8> {
    let out = with_key!(tc.s3.get_object().bucket("ssec").key(key), with)
        .set_range(range)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    assert_eq!(
        out.sse_customer_algorithm.as_deref(),
        Some("AES256"),
        "{key}"
    );
    assert_eq!(out.sse_customer_key_md5.as_deref(), Some(with.md5.as_str()));
    assert_eq!(out.server_side_encryption, None, "{key}: not SSE-S3");
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
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
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => out.push(entry.path()),
                _ => {}
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `len` bytes of noise with a marker every 4 KiB.
fn marked(marker: &[u8], len: usize, seed: u64) -> Vec<u8> {
    let mut data = pattern(len, seed);
    let mut at = 0;
    while at + marker.len() <= len {
        data[at..at + marker.len()].copy_from_slice(marker);
        at += 4096;
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customer_keys_seal_every_object_shape_and_are_never_stored() {
    let tc = TestCluster::start(1).await;
    let s3 = &tc.s3;
    s3.create_bucket()
        .bucket("ssec")
        .send()
        .await
        .expect("bucket");
    let a = Key::new();
    let b = Key::new();
    let marker = hex::encode(rand::random::<[u8; 16]>()).into_bytes();
    let small = marked(&marker, 3000, 1);
    let large = marked(&marker, 1_500_000, 2);

    phase("PUT with a customer key answers with its algorithm and MD5, not SSE-S3");
    for (name, data) in [("small", &small), ("large", &large)] {
        let put = with_key!(s3.put_object().bucket("ssec").key(name), a)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e:?}"));
        assert_eq!(put.sse_customer_algorithm.as_deref(), Some("AES256"));
        assert_eq!(put.sse_customer_key_md5.as_deref(), Some(a.md5.as_str()));
        assert_eq!(put.server_side_encryption, None);
        let etag = put.e_tag.expect("etag");
        assert_ne!(
            etag.trim_matches('"'),
            hex::encode(md5_of(data)),
            "an SSE-C ETag is not the MD5 of the plaintext"
        );
    }

    phase("GET and HEAD with the key: the bytes, whole and in ranges");
    assert_eq!(get_with(&tc, "small", &a, None).await, small);
    assert!(get_with(&tc, "large", &a, None).await == large);
    for (start, end) in [(0, 0), (70_000, 700_123), (1_499_999, 1_499_999)] {
        let got = get_with(&tc, "large", &a, Some(format!("bytes={start}-{end}"))).await;
        assert!(got == large[start..=end], "bytes {start}-{end}");
    }
    let head = with_key!(s3.head_object().bucket("ssec").key("large"), a)
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length, Some(large.len() as i64));
    assert_eq!(head.sse_customer_key_md5.as_deref(), Some(a.md5.as_str()));

    phase("without the key 400 InvalidRequest, with another key 403 AccessDenied");
    for name in ["small", "large"] {
        let e = s3
            .get_object()
            .bucket("ssec")
            .key(name)
            .send()
            .await
            .expect_err("no key");
        assert_eq!(
            (error_status(&e), error_code(&e).as_str()),
            (400, "InvalidRequest"),
            "{name}"
        );
        let e = with_key!(s3.get_object().bucket("ssec").key(name), b)
            .send()
            .await
            .expect_err("wrong key");
        assert_eq!(
            (error_status(&e), error_code(&e).as_str()),
            (403, "AccessDenied"),
            "{name}"
        );
        let e = s3
            .head_object()
            .bucket("ssec")
            .key(name)
            .send()
            .await
            .expect_err("head without key");
        assert_eq!(error_status(&e), 400, "{name}");
        let e = with_key!(s3.head_object().bucket("ssec").key(name), b)
            .send()
            .await
            .expect_err("head with another key");
        assert_eq!(error_status(&e), 403, "{name}");
    }

    phase("inconsistent key headers are refused and store nothing");
    let e = s3
        .put_object()
        .bucket("ssec")
        .key("refused")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&a.b64)
        .sse_customer_key_md5(&b.md5)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("md5 of another key");
    assert_eq!(
        (error_status(&e), error_code(&e).as_str()),
        (400, "InvalidArgument")
    );
    let e = s3
        .put_object()
        .bucket("ssec")
        .key("refused")
        .sse_customer_algorithm("AES512")
        .sse_customer_key(&a.b64)
        .sse_customer_key_md5(&a.md5)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("another algorithm");
    assert_eq!(
        (error_status(&e), error_code(&e).as_str()),
        (400, "InvalidEncryptionAlgorithmError")
    );
    let short = to_base64(&[1_u8; 16]);
    let e = s3
        .put_object()
        .bucket("ssec")
        .key("refused")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&short)
        .sse_customer_key_md5(to_base64(&md5_of(&[1_u8; 16])))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("a 128-bit key");
    assert_eq!(
        (error_status(&e), error_code(&e).as_str()),
        (400, "InvalidArgument")
    );
    let e = with_key!(s3.put_object().bucket("ssec").key("refused"), a)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("SSE-C and SSE-S3 at once");
    assert_eq!(
        (error_status(&e), error_code(&e).as_str()),
        (400, "InvalidArgument")
    );
    let e = s3
        .head_object()
        .bucket("ssec")
        .key("refused")
        .send()
        .await
        .expect_err("nothing stored");
    assert_eq!(error_status(&e), 404);

    phase("CopyObject: the source's key opens it, the copy takes its own encryption");
    let e = s3
        .copy_object()
        .bucket("ssec")
        .key("copy-plain")
        .copy_source("ssec/large")
        .send()
        .await
        .expect_err("source key missing");
    assert_eq!(
        (error_status(&e), error_code(&e).as_str()),
        (400, "InvalidRequest")
    );
    let e = with_source_key!(
        s3.copy_object()
            .bucket("ssec")
            .key("copy-plain")
            .copy_source("ssec/large"),
        b
    )
    .send()
    .await
    .expect_err("wrong source key");
    assert_eq!(
        (error_status(&e), error_code(&e).as_str()),
        (403, "AccessDenied")
    );
    with_source_key!(
        s3.copy_object()
            .bucket("ssec")
            .key("copy-plain")
            .copy_source("ssec/large"),
        a
    )
    .send()
    .await
    .expect("copy to SSE-S3");
    let plain = s3
        .get_object()
        .bucket("ssec")
        .key("copy-plain")
        .send()
        .await
        .expect("the copy is SSE-S3");
    assert_eq!(
        plain.server_side_encryption,
        Some(ServerSideEncryption::Aes256)
    );
    assert!(plain.body.collect().await.expect("body").into_bytes() == large);
    let copied = with_key!(
        with_source_key!(
            s3.copy_object()
                .bucket("ssec")
                .key("copy-b")
                .copy_source("ssec/small"),
            a
        ),
        b
    )
    .send()
    .await
    .expect("copy under another customer key");
    assert_eq!(copied.sse_customer_key_md5.as_deref(), Some(b.md5.as_str()));
    assert_eq!(get_with(&tc, "copy-b", &b, None).await, small);
    let e = with_key!(s3.get_object().bucket("ssec").key("copy-b"), a)
        .send()
        .await
        .expect_err("the source's key does not open the copy");
    assert_eq!(error_status(&e), 403);

    phase("a key is changed in place by copying an object onto itself");
    with_key!(
        with_source_key!(
            s3.copy_object()
                .bucket("ssec")
                .key("small")
                .copy_source("ssec/small"),
            a
        ),
        b
    )
    .send()
    .await
    .expect("re-key in place");
    assert_eq!(get_with(&tc, "small", &b, None).await, small);
    let e = with_key!(s3.get_object().bucket("ssec").key("small"), a)
        .send()
        .await
        .expect_err("the old key is gone");
    assert_eq!(error_status(&e), 403);

    phase("multipart: every part takes the upload's key; a part copy opens its source's");
    let create = with_key!(s3.create_multipart_upload().bucket("ssec").key("multi"), a)
        .send()
        .await
        .expect("create");
    assert_eq!(create.sse_customer_key_md5.as_deref(), Some(a.md5.as_str()));
    let upload = create.upload_id.expect("upload id");
    let part1 = marked(&marker, 5 * 1024 * 1024, 3);
    let e = s3
        .upload_part()
        .bucket("ssec")
        .key("multi")
        .upload_id(&upload)
        .part_number(1)
        .body(ByteStream::from(part1.clone()))
        .send()
        .await
        .expect_err("a part without the key");
    assert_eq!(
        (error_status(&e), error_code(&e).as_str()),
        (400, "InvalidRequest")
    );
    let e = with_key!(
        s3.upload_part()
            .bucket("ssec")
            .key("multi")
            .upload_id(&upload)
            .part_number(1),
        b
    )
    .body(ByteStream::from(part1.clone()))
    .send()
    .await
    .expect_err("a part with another key");
    assert_eq!(
        (error_status(&e), error_code(&e).as_str()),
        (403, "AccessDenied")
    );
    let p1 = with_key!(
        s3.upload_part()
            .bucket("ssec")
            .key("multi")
            .upload_id(&upload)
            .part_number(1),
        a
    )
    .body(ByteStream::from(part1.clone()))
    .send()
    .await
    .expect("part 1");
    assert_eq!(p1.sse_customer_key_md5.as_deref(), Some(a.md5.as_str()));
    let p2 = with_source_key!(
        with_key!(
            s3.upload_part_copy()
                .bucket("ssec")
                .key("multi")
                .upload_id(&upload)
                .part_number(2)
                .copy_source("ssec/copy-b"),
            a
        ),
        b
    )
    .send()
    .await
    .expect("part 2 copied from an object under another key");
    let done = s3
        .complete_multipart_upload()
        .bucket("ssec")
        .key("multi")
        .upload_id(&upload)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(p1.e_tag.expect("etag 1"))
                        .build(),
                )
                .parts(
                    CompletedPart::builder()
                        .part_number(2)
                        .e_tag(p2.copy_part_result.and_then(|r| r.e_tag).expect("etag 2"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("complete");
    assert!(done.e_tag.expect("etag").ends_with("-2\""));
    let whole: Vec<u8> = part1.iter().chain(small.iter()).copied().collect();
    assert!(get_with(&tc, "multi", &a, None).await == whole);
    let edge = part1.len();
    let got = get_with(
        &tc,
        "multi",
        &a,
        Some(format!("bytes={}-{}", edge - 10, edge + 9)),
    )
    .await;
    assert_eq!(got, whole[edge - 10..edge + 10], "a range across the parts");
    let e = with_key!(s3.get_object().bucket("ssec").key("multi"), b)
        .send()
        .await
        .expect_err("another key");
    assert_eq!(error_status(&e), 403);

    phase("listing shows SSE-C objects without needing their keys");
    let listed = s3
        .list_objects_v2()
        .bucket("ssec")
        .send()
        .await
        .expect("list");
    let names: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        names,
        ["copy-b", "copy-plain", "large", "multi", "small"],
        "listed"
    );

    phase("no file the cluster wrote holds a customer key or a byte of plaintext");
    let root = tc.root();
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("key a", a.raw.to_vec()),
        ("key b", b.raw.to_vec()),
        ("key a in base64", a.b64.clone().into_bytes()),
        ("key b in base64", b.b64.clone().into_bytes()),
        ("plaintext", marker.clone()),
    ];
    let files = files_under(&root);
    assert!(
        files.iter().any(|p| p.to_string_lossy().contains("/data-")),
        "data files were searched"
    );
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for (what, needle) in &needles {
            assert!(!contains(&bytes, needle), "{what} found in {file:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customer_keys_over_plain_http_are_refused_unless_allowed() {
    let key = Key::new();
    {
        let tc = TestCluster::start_http(1, Vec::new()).await;
        tc.s3
            .create_bucket()
            .bucket("plain")
            .send()
            .await
            .expect("bucket");
        phase("over plain HTTP a customer key is refused and nothing is stored");
        let e = with_key!(tc.s3.put_object().bucket("plain").key("k"), key)
            .body(ByteStream::from_static(b"secret"))
            .send()
            .await
            .expect_err("SSE-C over HTTP");
        assert_eq!(
            (error_status(&e), error_code(&e).as_str()),
            (400, "InvalidRequest")
        );
        let e = tc
            .s3
            .head_object()
            .bucket("plain")
            .key("k")
            .send()
            .await
            .expect_err("nothing stored");
        assert_eq!(error_status(&e), 404);
    }

    phase("with sse_c_over_http set on the gateway, SSE-C works over HTTP for local testing");
    let tc = TestCluster::start_opts(ClusterOptions {
        data_per_zone: 1,
        env: Vec::new(),
        node_env: vec![(NodeRole::Gateway, 1, "TESSERA_SSE_C_OVER_HTTP", "true")],
        http: true,
    })
    .await;
    tc.s3
        .create_bucket()
        .bucket("plain")
        .send()
        .await
        .expect("bucket");
    with_key!(tc.s3.put_object().bucket("plain").key("k"), key)
        .body(ByteStream::from_static(b"secret"))
        .send()
        .await
        .expect("SSE-C over HTTP, allowed");
    let got = with_key!(tc.s3.get_object().bucket("plain").key("k"), key)
        .send()
        .await
        .expect("get");
    assert_eq!(
        got.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .as_ref(),
        b"secret"
    );
}
