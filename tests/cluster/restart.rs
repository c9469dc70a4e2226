//! A cluster stopped and started again from its folder keeps every object.

use crate::harness::{TestCluster, pattern, phase, restart_from};
use aws_sdk_s3::primitives::ByteStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_keeps_every_object() {
    let tc = TestCluster::start(2).await;
    tc.s3
        .create_bucket()
        .bucket("keep")
        .send()
        .await
        .expect("bucket");
    let objects: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("obj-{i}"),
                pattern(if i % 2 == 0 { 100 } else { 2_000_000 }, i),
            )
        })
        .collect();
    phase("objects (inline and erasure coded) are written");
    for (k, v) in &objects {
        tc.s3
            .put_object()
            .bucket("keep")
            .key(k)
            .body(ByteStream::from(v.clone()))
            .send()
            .await
            .expect("put");
    }
    phase("the whole cluster stops and starts again from its folder");
    let dir = tc.stop_keep().await;
    let tc = restart_from(dir).await;
    phase("every object reads back byte for byte");
    for (k, v) in &objects {
        let got = tc
            .s3
            .get_object()
            .bucket("keep")
            .key(k)
            .send()
            .await
            .expect("get");
        let body = got.body.collect().await.expect("body").into_bytes();
        assert!(body.as_ref() == v.as_slice(), "{k} differs after restart");
    }
}
