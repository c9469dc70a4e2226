//! Bad input an SDK would never send, over raw TCP: malformed and oversized aws-chunked
//! bodies, announced trailers that never come, credential scopes of another region or service,
//! bodies without a length or past their cap, oversized POST forms, ranges on empty objects,
//! and connections that idle or crowd. Each gets the answer AWS S3 gives (status, `<Code>`,
//! extra elements and headers), and nothing is stored. The file runs past 800 lines on
//! purpose: its three tests share one raw-request vocabulary (send, parse the error, check
//! nothing was stored), and splitting them would spread it over modules for no gain.

#[path = "bad_input_raw.rs"]
mod raw;

use crate::harness::{TestCluster, error_code, error_status, pattern, phase, s3_client};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use raw::{RawResponse, Signer, StreamingPut, send, streaming_put_head, unsigned_payload_head};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

fn gateway_addr(tc: &TestCluster) -> String {
    tc.cluster
        .endpoint()
        .trim_start_matches("http://")
        .to_string()
}

fn signer(tc: &TestCluster) -> Signer {
    let (ak, sk) = tc.cluster.credentials();
    Signer::new(ak, sk, tc.cluster.region())
}

fn assert_refused(resp: &RawResponse, status: u16, code: &str) {
    assert_eq!(
        (resp.status, resp.code()),
        (status, Some(code)),
        "answer: {resp:?}"
    );
}

async fn assert_not_stored(tc: &TestCluster, bucket: &str, key: &str) {
    let e = tc
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect_err("nothing may be stored");
    assert_eq!(error_status(&e), 404, "{key} was stored");
}

/// Sends a streaming PUT whose body is built from the seed signature by `body`.
async fn streaming_put(
    tc: &TestCluster,
    signer: &Signer,
    key: &str,
    content_sha256: &str,
    decoded_length: u64,
    trailer: Option<&str>,
    body: impl FnOnce(&str) -> Vec<u8>,
) -> RawResponse {
    streaming_put_declaring(
        tc,
        signer,
        key,
        content_sha256,
        decoded_length,
        trailer,
        None,
        body,
    )
    .await
}

/// Like [`streaming_put`], but declares `content_length` (when given) while sending only the
/// body built: the gateway must answer without waiting for the rest.
#[allow(clippy::too_many_arguments)]
async fn streaming_put_declaring(
    tc: &TestCluster,
    signer: &Signer,
    key: &str,
    content_sha256: &str,
    decoded_length: u64,
    trailer: Option<&str>,
    content_length: Option<usize>,
    body: impl FnOnce(&str) -> Vec<u8>,
) -> RawResponse {
    let addr = gateway_addr(tc);
    let path = format!("/raw/{key}");
    let mut put = StreamingPut {
        host: &addr,
        path: &path,
        content_sha256,
        decoded_length,
        trailer,
        content_length: 0,
    };
    let (_, seed) = streaming_put_head(signer, &put);
    let body = body(&seed);
    put.content_length = content_length.unwrap_or(body.len());
    let (head, _) = streaming_put_head(signer, &put);
    let mut request = head.into_bytes();
    request.extend(body);
    send(&addr, &request, WAIT).await
}

const UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
const SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_aws_chunked_uploads_trailers_and_scopes_are_refused() {
    let tc = TestCluster::start_http(2, Vec::new()).await;
    tc.s3
        .create_bucket()
        .bucket("raw")
        .send()
        .await
        .expect("bucket");
    let s = signer(&tc);
    let region = tc.cluster.region().to_string();

    phase("a well-formed signed aws-chunked upload is stored (the raw client is right)");
    let (one, two) = (pattern(9000, 1), pattern(700, 2));
    let resp = streaming_put(&tc, &s, "good", SIGNED, 9700, None, |seed| {
        s.signed_chunks(seed, &[&one, &two])
    })
    .await;
    assert_eq!(resp.status, 200, "answer: {resp:?}");
    let got = tc
        .s3
        .get_object()
        .bucket("raw")
        .key("good")
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(got.to_vec(), [one.clone(), two.clone()].concat());

    phase(
        "a signed chunk declaring 16 MiB + 1 is refused at its header: 400 InvalidChunkSizeError",
    );
    // The whole body is declared, but only the chunk's header line is sent.
    let started = Instant::now();
    let resp = streaming_put_declaring(
        &tc,
        &s,
        "huge",
        SIGNED,
        16 * 1024 * 1024 + 1,
        None,
        Some(16 * 1024 * 1024 + 200),
        |_| format!("1000001;chunk-signature={}\r\n", "0".repeat(64)).into_bytes(),
    )
    .await;
    assert_refused(&resp, 400, "InvalidChunkSizeError");
    assert_eq!(resp.element("Chunk"), Some("1"));
    assert_eq!(resp.element("BadChunkSize"), Some("16777217"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the gateway waited for the chunk's data"
    );
    assert_not_stored(&tc, "raw", "huge").await;

    phase("an unsigned chunk declaring 4 GiB is refused the same way");
    let resp = streaming_put_declaring(
        &tc,
        &s,
        "huge-unsigned",
        UNSIGNED_TRAILER,
        0xffff_ffff,
        Some("x-amz-checksum-crc32"),
        Some(0xffff_ffff + 100),
        |_| b"ffffffff\r\n".to_vec(),
    )
    .await;
    assert_refused(&resp, 400, "InvalidChunkSizeError");
    assert_eq!(resp.element("BadChunkSize"), Some("4294967295"));
    assert_not_stored(&tc, "raw", "huge-unsigned").await;

    phase("malformed framing is 400 IncompleteBody and stores nothing");
    type BodyOf<'a> = Box<dyn Fn(&str) -> Vec<u8> + 'a>;
    let cases: Vec<(&str, BodyOf<'_>)> = vec![
        (
            "data-longer-than-declared",
            Box::new(|seed: &str| {
                let sig = s.chunk_signature(seed, b"hello");
                format!("5;chunk-signature={sig}\r\nhello!\r\n").into_bytes()
            }),
        ),
        (
            "size-not-hex",
            Box::new(|_: &str| {
                format!("zz;chunk-signature={}\r\nhello\r\n", "0".repeat(64)).into_bytes()
            }),
        ),
        (
            "ends-before-final-chunk",
            Box::new(|seed: &str| {
                let sig = s.chunk_signature(seed, b"hello");
                format!("5;chunk-signature={sig}\r\nhello\r\n").into_bytes()
            }),
        ),
        (
            "signed-chunk-without-signature",
            Box::new(|_: &str| b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ),
    ];
    for (key, body) in cases {
        let resp = streaming_put(&tc, &s, key, SIGNED, 5, None, body).await;
        assert_refused(&resp, 400, "IncompleteBody");
        assert_eq!(
            resp.element("Message"),
            Some("The request body terminated unexpectedly"),
            "{key}"
        );
        assert_not_stored(&tc, "raw", key).await;
    }

    phase("x-amz-trailer naming an unknown algorithm is 400 InvalidRequest");
    for (key, trailer) in [
        ("trailer-md5", "x-amz-checksum-md5"),
        ("trailer-garbage", "garbage"),
    ] {
        let resp = streaming_put(&tc, &s, key, UNSIGNED_TRAILER, 5, Some(trailer), |_| {
            format!("5\r\nhello\r\n0\r\n{trailer}:AAAAAA==\r\n\r\n").into_bytes()
        })
        .await;
        assert_refused(&resp, 400, "InvalidRequest");
        assert_eq!(
            resp.element("Message"),
            Some("The value specified in the x-amz-trailer header is not supported")
        );
        assert_not_stored(&tc, "raw", key).await;
    }

    phase(
        "an announced trailer that never arrives, or arrives misnamed, is 400 MalformedTrailerError",
    );
    let crc_of_hello = tessera_core::checksum::to_base64(&tessera_core::checksum::checksum_of(
        tessera_core::checksum::ChecksumAlgorithm::Crc32,
        b"hello",
    ));
    let sha1_of_hello = tessera_core::checksum::to_base64(&tessera_core::checksum::checksum_of(
        tessera_core::checksum::ChecksumAlgorithm::Sha1,
        b"hello",
    ));
    let missing = b"5\r\nhello\r\n0\r\n\r\n".to_vec();
    let misnamed =
        format!("5\r\nhello\r\n0\r\nx-amz-checksum-sha1:{sha1_of_hello}\r\n\r\n").into_bytes();
    for (key, body) in [("trailer-missing", missing), ("trailer-misnamed", misnamed)] {
        let resp = streaming_put(
            &tc,
            &s,
            key,
            UNSIGNED_TRAILER,
            5,
            Some("x-amz-checksum-crc32"),
            |_| body,
        )
        .await;
        assert_refused(&resp, 400, "MalformedTrailerError");
        assert_not_stored(&tc, "raw", key).await;
    }

    phase("a wrong trailing checksum is BadDigest; the right one is verified and stored");
    let resp = streaming_put(
        &tc,
        &s,
        "trailer-wrong",
        UNSIGNED_TRAILER,
        5,
        Some("x-amz-checksum-crc32"),
        |_| b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n".to_vec(),
    )
    .await;
    assert_refused(&resp, 400, "BadDigest");
    assert_not_stored(&tc, "raw", "trailer-wrong").await;
    let resp = streaming_put(
        &tc,
        &s,
        "trailer-ok",
        UNSIGNED_TRAILER,
        5,
        Some("x-amz-checksum-crc32"),
        |_| format!("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:{crc_of_hello}\r\n\r\n").into_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200, "answer: {resp:?}");
    assert_eq!(
        resp.header("x-amz-checksum-crc32"),
        Some(crc_of_hello.as_str())
    );

    phase("a credential scope of another region is 400 AuthorizationHeaderMalformed with <Region>");
    let addr = gateway_addr(&tc);
    let mut elsewhere = s.clone();
    elsewhere.region = "eu-west-3".into();
    let mut request = unsigned_payload_head(
        &elsewhere,
        "PUT",
        &addr,
        "/raw/wrong-region",
        "content-length: 5\r\n",
    )
    .into_bytes();
    request.extend_from_slice(b"hello");
    let resp = send(&addr, &request, WAIT).await;
    assert_refused(&resp, 400, "AuthorizationHeaderMalformed");
    assert_eq!(
        resp.element("Message"),
        Some(format!(
            "The authorization header is malformed; the region 'eu-west-3' is wrong; expecting '{region}'"
        ))
        .as_deref()
    );
    assert_eq!(resp.element("Region"), Some(region.as_str()));
    assert_eq!(resp.header("x-amz-bucket-region"), Some(region.as_str()));
    assert_not_stored(&tc, "raw", "wrong-region").await;

    phase("the seed of an aws-chunked upload in another region is refused before its body");
    let resp = streaming_put(
        &tc,
        &elsewhere,
        "wrong-region-chunked",
        SIGNED,
        5,
        None,
        |seed| elsewhere.signed_chunks(seed, &[b"hello"]),
    )
    .await;
    assert_refused(&resp, 400, "AuthorizationHeaderMalformed");
    assert_not_stored(&tc, "raw", "wrong-region-chunked").await;

    phase("an SDK configured for another region gets the same answer");
    let (ak, sk) = tc.cluster.credentials();
    let wrong = s3_client(
        &tc.cluster.endpoint(),
        ak,
        sk,
        "ap-southeast-2",
        tc.cluster.https_ca().as_deref(),
    );
    let e = wrong
        .put_object()
        .bucket("raw")
        .key("sdk-wrong-region")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("wrong region");
    assert_eq!(
        (error_status(&e), error_code(&e)),
        (400, "AuthorizationHeaderMalformed".to_string())
    );
    assert_not_stored(&tc, "raw", "sdk-wrong-region").await;

    phase("a presigned URL of another region is 400 AuthorizationQueryParametersError");
    let presigned = wrong
        .get_object()
        .bucket("raw")
        .key("good")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).expect("config"))
        .await
        .expect("presign");
    let uri: http::Uri = presigned.uri().parse().expect("uri");
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n",
        uri.path_and_query().expect("path").as_str()
    );
    let resp = send(&addr, request.as_bytes(), WAIT).await;
    assert_refused(&resp, 400, "AuthorizationQueryParametersError");
    assert_eq!(
        resp.element("Message"),
        Some(format!(
            "Error parsing the X-Amz-Credential parameter; the region 'ap-southeast-2' is wrong; expecting '{region}'"
        ))
        .as_deref()
    );
    assert_eq!(resp.element("Region"), Some(region.as_str()));

    phase("a scope for another service is 400 AuthorizationHeaderMalformed");
    let mut sts = s.clone();
    sts.service = "sts".into();
    let mut request = unsigned_payload_head(
        &sts,
        "PUT",
        &addr,
        "/raw/wrong-service",
        "content-length: 5\r\n",
    )
    .into_bytes();
    request.extend_from_slice(b"hello");
    let resp = send(&addr, &request, WAIT).await;
    assert_refused(&resp, 400, "AuthorizationHeaderMalformed");
    assert_eq!(
        resp.element("Message"),
        Some(
            "The authorization header is malformed; incorrect service \"sts\". This endpoint belongs to \"s3\"."
        )
    );
    assert_not_stored(&tc, "raw", "wrong-service").await;

    phase("nothing but the two good uploads was stored");
    let listed = tc
        .s3
        .list_objects_v2()
        .bucket("raw")
        .send()
        .await
        .expect("list");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["good", "trailer-ok"]);
}

fn presigned_request(
    method: &str,
    req: &aws_sdk_s3::presigning::PresignedRequest,
    addr: &str,
    extra: &str,
) -> String {
    let uri: http::Uri = req.uri().parse().expect("uri");
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nhost: {addr}\r\n",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
    );
    for (name, value) in req.headers() {
        if !name.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(extra);
    head.push_str("\r\n");
    head
}

/// `data` in HTTP/1.1 chunked transfer coding, in pieces of `piece` bytes, with or without
/// the terminating zero-size chunk.
fn transfer_chunked(data: &[u8], piece: usize, terminate: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for p in data.chunks(piece) {
        out.extend(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    if terminate {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

fn form(fields: &[(&str, String)], file: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    out.extend(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\n",
    );
    out.extend_from_slice(file);
    out.extend(b"\r\n--XyZ--\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn body_caps_missing_lengths_forms_and_empty_ranges() {
    let tc = TestCluster::start_http(2, Vec::new()).await;
    tc.s3
        .create_bucket()
        .bucket("limits")
        .send()
        .await
        .expect("bucket");
    let addr = gateway_addr(&tc);
    let s = signer(&tc);
    let presign = || PresigningConfig::expires_in(Duration::from_secs(300)).expect("config");

    phase(
        "an HTTP/1 PUT with neither Content-Length nor chunked coding is 411 MissingContentLength",
    );
    let request = unsigned_payload_head(&s, "PUT", &addr, "/limits/no-length", "");
    let resp = send(&addr, request.as_bytes(), WAIT).await;
    assert_refused(&resp, 411, "MissingContentLength");
    assert_eq!(
        resp.element("Message"),
        Some("You must provide the Content-Length HTTP header.")
    );
    assert_not_stored(&tc, "limits", "no-length").await;

    phase("an upload declaring more than 5 GiB is 400 EntityTooLarge before any body byte");
    let request = unsigned_payload_head(
        &s,
        "PUT",
        &addr,
        "/limits/too-large",
        "content-length: 5368709121\r\n",
    );
    let resp = send(&addr, request.as_bytes(), WAIT).await;
    assert_refused(&resp, 400, "EntityTooLarge");
    assert_eq!(resp.element("ProposedSize"), Some("5368709121"));
    assert_eq!(resp.element("MaxSizeAllowed"), Some("5368709120"));
    assert_not_stored(&tc, "limits", "too-large").await;

    phase("a chunked-coded presigned upload streams and is stored");
    let data = pattern(300_000, 3);
    let presigned = tc
        .s3
        .put_object()
        .bucket("limits")
        .key("chunked")
        .presigned(presign())
        .await
        .expect("presign put");
    let mut request = presigned_request(
        "PUT",
        &presigned,
        &addr,
        "transfer-encoding: chunked\r\nconnection: close\r\n",
    )
    .into_bytes();
    request.extend(transfer_chunked(&data, 64 * 1024, true));
    let resp = send(&addr, &request, WAIT).await;
    assert_eq!(resp.status, 200, "answer: {resp:?}");
    let got = tc
        .s3
        .get_object()
        .bucket("limits")
        .key("chunked")
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(got.to_vec(), data);

    phase("a chunked-coded body past 4 MiB on a non-upload is 400 MaxMessageLengthExceeded");
    // The SDK presigns no operation with an XML body; the raw signer presigns PutObjectTagging.
    let target = s.presign("PUT", &addr, "/limits/chunked", &[("tagging", "")]);
    let mut request = format!(
        "PUT {target} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    // 4 MiB + 64 KiB, unterminated: the gateway must stop at the cap, not wait for the end.
    request.extend(transfer_chunked(
        &vec![b'<'; 4 * 1024 * 1024 + 64 * 1024],
        64 * 1024,
        false,
    ));
    let started = Instant::now();
    let resp = send(&addr, &request, WAIT).await;
    assert_refused(&resp, 400, "MaxMessageLengthExceeded");
    // The gateway's counting cap answered (s3s's own limit has no such element).
    assert_eq!(resp.element("MaxMessageLengthBytes"), Some("4194304"));
    assert!(started.elapsed() < Duration::from_secs(15));

    phase(
        "a POST form with more than 20 KB before the file is 400 MaxPostPreDataLengthExceeded, before authentication",
    );
    let big = form(
        &[
            ("key", "posted".to_string()),
            ("x-amz-meta-big", "v".repeat(25 * 1024)),
        ],
        b"file content",
    );
    let request = [
        format!(
            "POST /limits HTTP/1.1\r\nhost: {addr}\r\ncontent-type: multipart/form-data; boundary=XyZ\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            big.len()
        )
        .into_bytes(),
        big,
    ]
    .concat();
    let resp = send(&addr, &request, WAIT).await;
    assert_refused(&resp, 400, "MaxPostPreDataLengthExceeded");
    assert_eq!(
        resp.element("Message"),
        Some("Your POST request fields preceeding the upload file was too large.")
    );
    assert_eq!(resp.element("MaxPostPreDataLengthBytes"), Some("20480"));
    assert_not_stored(&tc, "limits", "posted").await;

    phase("a small unsigned POST form is read and refused by authorization: 403 AccessDenied");
    let small = form(&[("key", "posted".to_string())], b"file content");
    let request = [
        format!(
            "POST /limits HTTP/1.1\r\nhost: {addr}\r\ncontent-type: multipart/form-data; boundary=XyZ\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            small.len()
        )
        .into_bytes(),
        small,
    ]
    .concat();
    let resp = send(&addr, &request, WAIT).await;
    assert_refused(&resp, 403, "AccessDenied");
    assert_not_stored(&tc, "limits", "posted").await;

    phase("ranges with a first byte on a 0-byte object are 416 InvalidRange");
    tc.s3
        .put_object()
        .bucket("limits")
        .key("empty")
        .body(ByteStream::from_static(b""))
        .send()
        .await
        .expect("put empty");
    for range in ["bytes=0-", "bytes=0-0"] {
        let e = tc
            .s3
            .get_object()
            .bucket("limits")
            .key("empty")
            .range(range)
            .send()
            .await
            .expect_err("unsatisfiable");
        assert_eq!(
            (error_status(&e), error_code(&e)),
            (416, "InvalidRange".to_string()),
            "{range}"
        );
        let content_range = match &e {
            aws_sdk_s3::error::SdkError::ServiceError(se) => {
                se.raw().headers().get("content-range").map(str::to_string)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(content_range.as_deref(), Some("bytes */0"), "{range}");
        let e = tc
            .s3
            .head_object()
            .bucket("limits")
            .key("empty")
            .range(range)
            .send()
            .await
            .expect_err("unsatisfiable");
        assert_eq!(error_status(&e), 416, "HEAD {range}");
    }

    phase("a suffix range on a 0-byte object is the whole empty object: 200, no Content-Range");
    let got = tc
        .s3
        .get_object()
        .bucket("limits")
        .key("empty")
        .range("bytes=-1")
        .send()
        .await
        .expect("suffix range");
    assert_eq!(got.content_length(), Some(0));
    assert_eq!(got.content_range(), None);
    assert!(
        got.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .is_empty()
    );
    let head = tc
        .s3
        .head_object()
        .bucket("limits")
        .key("empty")
        .range("bytes=-5")
        .send()
        .await
        .expect("suffix range head");
    assert_eq!(
        (head.content_length(), head.content_range()),
        (Some(0), None)
    );
    // The raw status, which the SDK hides: 200, not 206.
    let request = unsigned_payload_head(&s, "GET", &addr, "/limits/empty", "range: bytes=-1\r\n");
    let resp = send(&addr, request.as_bytes(), WAIT).await;
    assert_eq!(resp.status, 200, "answer: {resp:?}");

    phase("nothing refused was stored");
    let listed = tc
        .s3
        .list_objects_v2()
        .bucket("limits")
        .send()
        .await
        .expect("list");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["chunked", "empty"]);
}

/// Reads one HTTP/2 frame: (type, flags, stream, payload); `None` on close or `wait`.
async fn h2_frame(stream: &mut TcpStream, wait: Duration) -> Option<(u8, u8, u32, Vec<u8>)> {
    let read = async {
        let mut head = [0_u8; 9];
        stream.read_exact(&mut head).await.ok()?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0_u8; len];
        stream.read_exact(&mut payload).await.ok()?;
        Some((head[3], head[4], id, payload))
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

fn h2_frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const H2_SETTINGS: u8 = 0x4;
const H2_HEADERS: u8 = 0x1;
const H2_PING: u8 = 0x6;
const H2_GOAWAY: u8 = 0x7;

/// Opens an HTTP/2 connection (prior knowledge) and returns it with the server's settings.
async fn h2_connect(addr: &str) -> (TcpStream, Vec<(u16, u32)>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame_bytes(H2_SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.expect("preface");
    let (kind, _, _, payload) = h2_frame(&mut stream, WAIT).await.expect("server settings");
    assert_eq!(kind, H2_SETTINGS);
    let settings = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    stream
        .write_all(&h2_frame_bytes(H2_SETTINGS, 0x1, 0, &[]))
        .await
        .expect("settings ack");
    (stream, settings)
}

/// Sends `GET /` on stream 1 (an anonymous ListBuckets) and waits for its response headers.
async fn h2_request(stream: &mut TcpStream, authority: &str) {
    // HPACK: :method GET (2), :scheme http (6), :path / (4), :authority literal (name index 1).
    let mut block = vec![0x82, 0x86, 0x84, 0x41, authority.len() as u8];
    block.extend_from_slice(authority.as_bytes());
    stream
        .write_all(&h2_frame_bytes(H2_HEADERS, 0x5, 1, &block))
        .await
        .expect("headers");
    loop {
        let (kind, flags, id, payload) = h2_frame(stream, WAIT).await.expect("response");
        if kind == H2_PING && flags & 1 == 0 {
            stream
                .write_all(&h2_frame_bytes(H2_PING, 0x1, 0, &payload))
                .await
                .expect("pong");
        }
        if kind == H2_HEADERS && id == 1 {
            return;
        }
    }
}

/// Reads frames until the server closes or sends GOAWAY; answers pings when `pong`. Returns
/// how long that took and how many pings came.
async fn h2_until_closed(stream: &mut TcpStream, pong: bool) -> (Duration, usize) {
    let started = Instant::now();
    let mut pings = 0;
    while let Some((kind, flags, _, payload)) = h2_frame(stream, WAIT).await {
        if kind == H2_PING && flags & 1 == 0 {
            pings += 1;
            if pong {
                let _ = stream
                    .write_all(&h2_frame_bytes(H2_PING, 0x1, 0, &payload))
                    .await;
            }
        }
        if kind == H2_GOAWAY {
            break;
        }
    }
    (started.elapsed(), pings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_crowding_connections_are_bounded() {
    let tc = TestCluster::start_http(
        2,
        vec![
            ("TESSERA_MAX_CONNECTIONS", "3"),
            ("TESSERA_CONNECTION_QUEUE_MS", "100"),
            ("TESSERA_HTTP1_KEEP_ALIVE_IDLE_SECS", "2"),
            ("TESSERA_HTTP2_IDLE_TIMEOUT_SECS", "5"),
            ("TESSERA_HTTP2_KEEP_ALIVE_INTERVAL_SECS", "1"),
            ("TESSERA_HTTP2_KEEP_ALIVE_TIMEOUT_SECS", "1"),
            ("TESSERA_HTTP2_MAX_CONCURRENT_STREAMS", "7"),
        ],
    )
    .await;
    let addr = gateway_addr(&tc);
    // Let the readiness probe's connection go.
    tokio::time::sleep(Duration::from_secs(3)).await;

    phase("an idle HTTP/1 keep-alive connection is closed after 2 s");
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(format!("GET / HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let started = Instant::now();
    let resp = raw::read_response(&mut stream, WAIT).await;
    let held = started.elapsed();
    assert_refused(&resp, 403, "AccessDenied");
    assert!(
        held >= Duration::from_millis(1500) && held < Duration::from_secs(10),
        "kept open {held:?}"
    );

    phase("a connection over the limit of 3 is answered 503 SlowDown and closed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = send(
        &addr,
        format!("GET / HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_refused(&resp, 503, "SlowDown");
    assert_eq!(resp.header("connection"), Some("close"));
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = send(
        &addr,
        format!("GET / HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_refused(&resp, 403, "AccessDenied");

    phase("HTTP/2 announces 7 concurrent streams, pings every second and closes after 5 s idle");
    let (mut h2, settings) = h2_connect(&addr).await;
    assert!(
        settings.contains(&(0x3, 7)),
        "SETTINGS_MAX_CONCURRENT_STREAMS in {settings:?}"
    );
    h2_request(&mut h2, &addr).await;
    let (lasted, pings) = h2_until_closed(&mut h2, true).await;
    assert!(pings >= 2, "{pings} keep-alive pings");
    assert!(
        lasted >= Duration::from_secs(4) && lasted < Duration::from_secs(12),
        "idle HTTP/2 connection lasted {lasted:?}"
    );

    phase("an HTTP/2 client that stops answering pings is dropped after the ping timeout");
    let (mut h2, _) = h2_connect(&addr).await;
    h2_request(&mut h2, &addr).await;
    let (lasted, pings) = h2_until_closed(&mut h2, false).await;
    assert!(pings >= 1, "no keep-alive ping");
    assert!(
        lasted < Duration::from_millis(4500),
        "connection without pongs lasted {lasted:?} (idle close would be 5 s)"
    );
}
