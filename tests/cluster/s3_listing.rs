//! Listing 2,500 keys: pagination with continuation tokens, delimiters and common prefixes,
//! start-after, ListObjects v1 markers and encoding-type=url.

use crate::harness::{TestCluster, phase};
use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_2500_keys_with_pagination_and_delimiters() {
    let tc = TestCluster::start(2).await;
    let s3 = tc.s3.clone();
    s3.create_bucket()
        .bucket("list")
        .send()
        .await
        .expect("bucket");

    phase("2,500 keys are written (list-after-write must see all of them)");
    let keys: Vec<String> = (0..2500)
        .map(|i| format!("dir{}/sub{}/key{:05}", i % 5, i % 7, i))
        .collect();
    futures::stream::iter(keys.clone())
        .map(|k| {
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket("list")
                    .key(&k)
                    .body(ByteStream::from(k.clone().into_bytes()))
                    .send()
                    .await
                    .expect("put");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let expected: BTreeSet<String> = keys.iter().cloned().collect();

    phase("ListObjectsV2 pages of 1000 return every key once, in order");
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket("list")
            .max_keys(1000)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list");
        pages += 1;
        seen.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        if out.is_truncated() != Some(true) {
            break;
        }
        token = out.next_continuation_token().map(str::to_string);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 2500);
    assert_eq!(seen, expected.iter().cloned().collect::<Vec<_>>());

    phase("delimiters group keys into common prefixes");
    let top = s3
        .list_objects_v2()
        .bucket("list")
        .delimiter("/")
        .send()
        .await
        .expect("top");
    let prefixes: Vec<_> = top
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, vec!["dir0/", "dir1/", "dir2/", "dir3/", "dir4/"]);
    assert!(top.contents().is_empty());
    let sub = s3
        .list_objects_v2()
        .bucket("list")
        .prefix("dir1/")
        .delimiter("/")
        .send()
        .await
        .expect("sub");
    assert_eq!(sub.common_prefixes().len(), 7);
    let paged = s3
        .list_objects_v2()
        .bucket("list")
        .delimiter("/")
        .max_keys(2)
        .send()
        .await
        .expect("paged");
    assert_eq!(paged.common_prefixes().len(), 2);
    assert_eq!(paged.is_truncated(), Some(true));
    let next = s3
        .list_objects_v2()
        .bucket("list")
        .delimiter("/")
        .max_keys(10)
        .continuation_token(paged.next_continuation_token().expect("token"))
        .send()
        .await
        .expect("next");
    let rest: Vec<_> = next
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(rest, vec!["dir2/", "dir3/", "dir4/"]);

    phase("start-after and ListObjects v1 markers");
    let after = s3
        .list_objects_v2()
        .bucket("list")
        .start_after("dir4/sub6/")
        .send()
        .await
        .expect("after");
    let want: Vec<_> = expected
        .iter()
        .filter(|k| k.as_str() > "dir4/sub6/")
        .cloned()
        .collect();
    let got: Vec<_> = after
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(got, want);
    let v1 = s3
        .list_objects()
        .bucket("list")
        .prefix("dir2/")
        .max_keys(100)
        .send()
        .await
        .expect("v1");
    assert_eq!(v1.contents().len(), 100);
    assert_eq!(v1.is_truncated(), Some(true));
    let last = v1
        .contents()
        .last()
        .and_then(|o| o.key())
        .expect("last")
        .to_string();
    let v1b = s3
        .list_objects()
        .bucket("list")
        .prefix("dir2/")
        .marker(&last)
        .max_keys(1000)
        .send()
        .await
        .expect("v1 page 2");
    assert_eq!(v1b.contents().len(), 400);

    phase("encoding-type=url encodes keys in the response");
    s3.put_object()
        .bucket("list")
        .key("space key+é")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("put");
    let enc = s3
        .list_objects_v2()
        .bucket("list")
        .prefix("space")
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .send()
        .await
        .expect("encoded");
    assert_eq!(
        enc.contents().first().and_then(|o| o.key()),
        Some("space%20key%2B%C3%A9")
    );
    assert_eq!(enc.prefix(), Some("space"));
}
