use super::*;
use crate::aws_chunked::ChunkSigning;
use http_body_util::{BodyExt, StreamBody};

type TestError = std::io::Error;

type TestBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, TestError>>>>;

fn pieces(parts: &[&[u8]]) -> TestBody {
    let frames: Vec<Result<Frame<Bytes>, TestError>> = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::copy_from_slice(p))))
        .collect();
    StreamBody::new(futures::stream::iter(frames))
}

/// Reads a body to its end; returns the bytes passed on and the error that stopped it.
async fn drain<B>(mut body: B) -> (Vec<u8>, Option<BodyGuardError>)
where
    B: Body<Data = Bytes, Error = BodyGuardError> + Unpin,
{
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => out.extend_from_slice(f.data_ref().expect("data")),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[tokio::test]
async fn a_chunked_body_past_the_non_upload_cap_fails_with_max_message_length() {
    let verdict = BodyVerdict::new();
    let body = GuardedBody::new(
        pieces(&[&[1; 600], &[2; 600], &[3; 600]]),
        1000,
        OverCap::MessageTooLong,
        None,
        verdict.clone(),
    );
    let (passed, err) = drain(body).await;
    assert_eq!(
        passed.len(),
        600,
        "the frame that crosses the cap is not passed on"
    );
    assert!(matches!(
        err,
        Some(BodyGuardError::Refused {
            code: "MaxMessageLengthExceeded",
            ..
        })
    ));
    let r = verdict.refusal().expect("verdict");
    assert_eq!((r.status, r.code), (400, "MaxMessageLengthExceeded"));
}

#[tokio::test]
async fn an_upload_past_its_cap_fails_with_entity_too_large() {
    let verdict = BodyVerdict::new();
    let body = GuardedBody::new(
        pieces(&[&[0; 10], &[0; 10]]),
        15,
        OverCap::EntityTooLarge,
        None,
        verdict.clone(),
    );
    let (_, err) = drain(body).await;
    assert!(err.is_some());
    let r = verdict.refusal().expect("verdict");
    assert_eq!((r.status, r.code), (400, "EntityTooLarge"));
    assert_eq!(
        r.elements,
        vec![("MaxSizeAllowed", crate::guard::MAX_UPLOAD_BODY.to_string())]
    );
}

#[tokio::test]
async fn a_body_within_its_cap_passes_unchanged() {
    let verdict = BodyVerdict::new();
    let body = GuardedBody::new(
        pieces(&[b"abc", b"def"]),
        6,
        OverCap::MessageTooLong,
        None,
        verdict.clone(),
    );
    let (passed, err) = drain(body).await;
    assert_eq!(passed, b"abcdef");
    assert!(err.is_none());
    assert_eq!(verdict.refusal(), None);
}

fn chunked(max_chunk: u64) -> Option<AwsChunkedValidator> {
    Some(AwsChunkedValidator::new(ChunkSigning::Unsigned, max_chunk))
}

#[tokio::test]
async fn an_oversized_aws_chunk_fails_at_its_header() {
    let verdict = BodyVerdict::new();
    let body = GuardedBody::new(
        pieces(&[b"4\r\nabcd\r\n", b"1000001\r\n", &[b'x'; 100]]),
        u64::MAX,
        OverCap::EntityTooLarge,
        chunked(16 * 1024 * 1024),
        verdict.clone(),
    );
    let (passed, err) = drain(body).await;
    assert_eq!(
        passed, b"4\r\nabcd\r\n",
        "nothing of the oversized chunk is passed on"
    );
    assert!(matches!(
        err,
        Some(BodyGuardError::Refused {
            code: "InvalidChunkSizeError",
            ..
        })
    ));
    let r = verdict.refusal().expect("verdict");
    assert_eq!((r.status, r.code), (400, "InvalidChunkSizeError"));
    assert_eq!(
        r.elements,
        vec![
            ("Chunk", "2".to_string()),
            ("BadChunkSize", (16 * 1024 * 1024 + 1).to_string())
        ]
    );
}

#[tokio::test]
async fn a_truncated_aws_chunked_body_is_incomplete_body() {
    let verdict = BodyVerdict::new();
    let body = GuardedBody::new(
        pieces(&[b"4\r\nabcd\r\n"]),
        u64::MAX,
        OverCap::EntityTooLarge,
        chunked(1024),
        verdict.clone(),
    );
    let (_, err) = drain(body).await;
    assert!(err.is_some());
    let r = verdict.refusal().expect("verdict");
    assert_eq!(
        (r.status, r.code, r.message.as_str()),
        (
            400,
            "IncompleteBody",
            "The request body terminated unexpectedly"
        )
    );
}

#[tokio::test]
async fn aws_chunked_bodies_count_decoded_bytes_against_the_cap() {
    // 8 payload bytes in 2 chunks: within a cap of 8 although the encoding is longer.
    let ok = GuardedBody::new(
        pieces(&[b"4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n"]),
        8,
        OverCap::EntityTooLarge,
        chunked(1024),
        BodyVerdict::new(),
    );
    assert!(drain(ok).await.1.is_none());
    let verdict = BodyVerdict::new();
    let over = GuardedBody::new(
        pieces(&[b"4\r\nabcd\r\n", b"5\r\nefghi\r\n0\r\n\r\n"]),
        8,
        OverCap::EntityTooLarge,
        chunked(1024),
        verdict.clone(),
    );
    assert!(drain(over).await.1.is_some());
    assert_eq!(verdict.refusal().map(|r| r.code), Some("EntityTooLarge"));
}

#[tokio::test]
async fn read_errors_pass_through_without_a_verdict() {
    let frames: Vec<Result<Frame<Bytes>, TestError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"ab"))),
        Err(std::io::Error::other("reset")),
    ];
    let verdict = BodyVerdict::new();
    let body = GuardedBody::new(
        StreamBody::new(futures::stream::iter(frames)),
        100,
        OverCap::MessageTooLong,
        None,
        verdict.clone(),
    );
    let (_, err) = drain(body).await;
    assert!(matches!(err, Some(BodyGuardError::Read(_))));
    assert_eq!(verdict.refusal(), None);
}

#[tokio::test]
async fn a_prefixed_body_serves_its_prefix_first() {
    let body = PrefixedBody::new(
        vec![Bytes::from_static(b"head"), Bytes::new()],
        pieces(&[b"-tail"]),
    );
    let all = body.collect().await.expect("collect").to_bytes();
    assert_eq!(&all[..], b"head-tail");
}
