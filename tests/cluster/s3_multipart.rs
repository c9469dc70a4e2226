//! Multipart uploads through a real client: parts, checksums, ETags, listing, copy, abort, and
//! every validation error of CompleteMultipartUpload.

use crate::harness::{TestCluster, error_code, error_status, pattern, phase};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use md5::{Digest, Md5};

const MIB: usize = 1024 * 1024;

fn completed(parts: &[(i32, String)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(e).build())
                .collect(),
        ))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multipart_upload_round_trip_and_validation() {
    let tc = TestCluster::start(2).await;
    let s3 = &tc.s3;
    s3.create_bucket()
        .bucket("mpu")
        .send()
        .await
        .expect("bucket");

    phase("a 3-part upload completes with an md5-of-md5s-3 ETag and reads back exactly");
    let parts_data = [
        pattern(5 * MIB, 10),
        pattern(5 * MIB, 11),
        pattern(MIB + 7, 12),
    ];
    let create = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("video.bin")
        .content_type("video/mp4")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .expect("create");
    let upload_id = create.upload_id().expect("upload id").to_string();
    let mut etags = Vec::new();
    for (i, data) in parts_data.iter().enumerate() {
        let out = s3
            .upload_part()
            .bucket("mpu")
            .key("video.bin")
            .upload_id(&upload_id)
            .part_number(i as i32 + 1)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .expect("upload part");
        assert!(out.checksum_crc32().is_some(), "part checksum echoed");
        etags.push((i as i32 + 1, out.e_tag().expect("etag").to_string()));
    }
    let listed = s3
        .list_parts()
        .bucket("mpu")
        .key("video.bin")
        .upload_id(&upload_id)
        .send()
        .await
        .expect("list parts");
    assert_eq!(listed.parts().len(), 3);
    assert_eq!(listed.parts()[2].size(), Some((MIB + 7) as i64));
    let uploads = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .expect("list uploads");
    assert_eq!(uploads.uploads().len(), 1);

    phase("Complete rejects a wrong ETag, a wrong order and a too-small part");
    let mut wrong = etags.clone();
    wrong[1].1 = "\"00000000000000000000000000000000\"".into();
    let e = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("video.bin")
        .upload_id(&upload_id)
        .multipart_upload(completed(&wrong))
        .send()
        .await
        .expect_err("invalid part");
    assert_eq!(error_code(&e), "InvalidPart");
    let reordered = vec![etags[1].clone(), etags[0].clone(), etags[2].clone()];
    let e = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("video.bin")
        .upload_id(&upload_id)
        .multipart_upload(completed(&reordered))
        .send()
        .await
        .expect_err("order");
    assert_eq!(error_code(&e), "InvalidPartOrder");

    let done = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("video.bin")
        .upload_id(&upload_id)
        .multipart_upload(completed(&etags))
        .send()
        .await
        .expect("complete");
    let mut md5s = Vec::new();
    for d in &parts_data {
        md5s.extend_from_slice(&Md5::digest(d));
    }
    let expected_etag = format!("\"{}-3\"", hex::encode(Md5::digest(&md5s)));
    assert_eq!(done.e_tag(), Some(expected_etag.as_str()));
    let all: Vec<u8> = parts_data.concat();
    let got = s3
        .get_object()
        .bucket("mpu")
        .key("video.bin")
        .send()
        .await
        .expect("get");
    assert_eq!(got.content_type(), Some("video/mp4"));
    assert_eq!(got.e_tag(), Some(expected_etag.as_str()));
    assert!(
        got.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .as_ref()
            == all.as_slice()
    );

    phase("GET partNumber=2 returns exactly part 2 and the parts count");
    let p2 = s3
        .get_object()
        .bucket("mpu")
        .key("video.bin")
        .part_number(2)
        .send()
        .await
        .expect("part 2");
    assert_eq!(p2.parts_count(), Some(3));
    assert!(
        p2.body.collect().await.expect("body").into_bytes().as_ref() == parts_data[1].as_slice()
    );
    let gone = s3
        .list_parts()
        .bucket("mpu")
        .key("video.bin")
        .upload_id(&upload_id)
        .send()
        .await
        .expect_err("completed");
    assert_eq!(error_code(&gone), "NoSuchUpload");

    phase("parts below 5 MiB (except the last) fail with EntityTooSmall");
    let up = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("tiny")
        .send()
        .await
        .expect("create");
    let id = up.upload_id().expect("id").to_string();
    let mut tiny = Vec::new();
    for n in 1..=2 {
        let out = s3
            .upload_part()
            .bucket("mpu")
            .key("tiny")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(pattern(1000, n as u64)))
            .send()
            .await
            .expect("part");
        tiny.push((n, out.e_tag().expect("etag").to_string()));
    }
    let e = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("tiny")
        .upload_id(&id)
        .multipart_upload(completed(&tiny))
        .send()
        .await
        .expect_err("too small");
    assert_eq!(error_code(&e), "EntityTooSmall");

    phase("UploadPartCopy copies a range of an object into a part");
    let copy = s3
        .upload_part_copy()
        .bucket("mpu")
        .key("tiny")
        .upload_id(&id)
        .part_number(1)
        .copy_source("mpu/video.bin")
        .copy_source_range("bytes=0-5242879")
        .send()
        .await
        .expect("part copy");
    let copy_etag = copy
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .expect("etag")
        .to_string();
    assert_eq!(
        copy_etag,
        format!("\"{}\"", hex::encode(Md5::digest(&parts_data[0])))
    );
    let fixed = vec![(1, copy_etag), tiny[1].clone()];
    s3.complete_multipart_upload()
        .bucket("mpu")
        .key("tiny")
        .upload_id(&id)
        .multipart_upload(completed(&fixed))
        .send()
        .await
        .expect("complete with copy");
    let got = s3
        .get_object()
        .bucket("mpu")
        .key("tiny")
        .send()
        .await
        .expect("get");
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(&body[..5 * MIB], parts_data[0].as_slice());
    assert_eq!(&body[5 * MIB..], pattern(1000, 2).as_slice());

    phase("conditional Complete: If-None-Match: * and a stale If-Match are refused with 412");
    let up = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("video.bin")
        .send()
        .await
        .expect("create");
    let id = up.upload_id().expect("id").to_string();
    let part = s3
        .upload_part()
        .bucket("mpu")
        .key("video.bin")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(pattern(100, 4)))
        .send()
        .await
        .expect("part");
    let only = vec![(1, part.e_tag().expect("etag").to_string())];
    let e = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("video.bin")
        .upload_id(&id)
        .if_none_match("*")
        .multipart_upload(completed(&only))
        .send()
        .await
        .expect_err("exists");
    assert_eq!(error_status(&e), 412);
    let e = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("video.bin")
        .upload_id(&id)
        .if_match("\"00000000000000000000000000000000-1\"")
        .multipart_upload(completed(&only))
        .send()
        .await
        .expect_err("stale");
    assert_eq!(error_status(&e), 412);
    s3.complete_multipart_upload()
        .bucket("mpu")
        .key("video.bin")
        .upload_id(&id)
        .if_match(&expected_etag)
        .multipart_upload(completed(&only))
        .send()
        .await
        .expect("if-match complete");
    let got = s3
        .get_object()
        .bucket("mpu")
        .key("video.bin")
        .send()
        .await
        .expect("get");
    assert!(
        got.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .as_ref()
            == pattern(100, 4).as_slice()
    );

    phase("abort removes an upload; an unknown upload id is NoSuchUpload");
    let up = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("aborted")
        .send()
        .await
        .expect("create");
    let id = up.upload_id().expect("id").to_string();
    s3.upload_part()
        .bucket("mpu")
        .key("aborted")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(pattern(100, 3)))
        .send()
        .await
        .expect("part");
    s3.abort_multipart_upload()
        .bucket("mpu")
        .key("aborted")
        .upload_id(&id)
        .send()
        .await
        .expect("abort");
    let e = s3
        .upload_part()
        .bucket("mpu")
        .key("aborted")
        .upload_id(&id)
        .part_number(2)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect_err("aborted");
    assert_eq!(error_code(&e), "NoSuchUpload");
    let e = s3
        .abort_multipart_upload()
        .bucket("mpu")
        .key("aborted")
        .upload_id("bogus-upload-id")
        .send()
        .await
        .expect_err("unknown");
    assert_eq!(error_code(&e), "NoSuchUpload");
}
