use super::*;
use crate::testing::data_node::{DataModel, StoredShard};

#[test]
fn statuses_from_the_node_are_classified_by_code() {
    let a = "10.0.0.1:7101";
    // (status, code, retryable, blames the node)
    let cases = [
        (Status::unavailable("down"), "data_unavailable", true, true),
        (
            Status::deadline_exceeded("slow"),
            "data_unavailable",
            true,
            true,
        ),
        (Status::cancelled("gone"), "data_unavailable", true, true),
        (
            Status::not_found("no shard"),
            "shard_not_found",
            false,
            false,
        ),
        (
            Status::data_loss("bad header"),
            "shard_corrupt",
            false,
            false,
        ),
        (
            Status::already_exists("stored"),
            "shard_already_exists",
            false,
            false,
        ),
        (
            Status::invalid_argument("order"),
            "data_invalid_argument",
            false,
            false,
        ),
        (
            Status::out_of_range("range"),
            "data_invalid_argument",
            false,
            false,
        ),
        (
            Status::failed_precondition("x"),
            "data_invalid_argument",
            false,
            false,
        ),
        (Status::internal("disk"), "data_node_failure", false, true),
        (
            Status::resource_exhausted("full"),
            "data_node_failure",
            false,
            true,
        ),
        (
            Status::unimplemented("old"),
            "data_node_failure",
            false,
            true,
        ),
        (
            Status::unknown("node said so"),
            "data_node_failure",
            false,
            true,
        ),
    ];
    for (status, code, retryable, blames) in cases {
        let err = DataClientError::from_status(a, &status);
        assert_eq!(err.code(), code, "{status:?}");
        assert_eq!(err.is_retryable(), retryable, "{status:?}");
        assert_eq!(err.blames_node(), blames, "{status:?}");
        assert_eq!(err.addr(), a);
    }
}

#[test]
fn a_local_transport_failure_is_unavailable() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    let status = Status::from_error(Box::new(io));
    let err = DataClientError::from_status("n:1", &status);
    assert!(
        matches!(err, DataClientError::Unavailable { .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[test]
fn addresses_with_or_without_a_scheme_are_accepted() {
    assert!(endpoint("127.0.0.1:7101", None).is_ok());
    assert!(endpoint("http://node-a:7101", None).is_ok());
    let err = endpoint("not a uri", None).expect_err("spaces make no uri");
    assert!(
        matches!(&err, DataClientError::InvalidAddress { addr, .. } if addr == "not a uri"),
        "{err:?}"
    );
}

#[test]
fn shard_ids_round_trip_and_refuse_malformed_wire_ids() {
    let id = ShardId::new(
        DataId::from_bytes([4; 16]),
        3,
        Generation::new(0xab).expect("nonzero"),
    );
    assert_eq!(ShardId::from_pb(&id.to_pb()), Some(id));
    assert_eq!(id.to_string(), format!("{}.3.00000000000000ab", id.data_id));
    let copy = id.copy_on(NodeId(9));
    assert_eq!(ShardId::of_copy(id.data_id, &copy), id);
    let mut zero = id.to_pb();
    zero.generation = 0;
    assert_eq!(ShardId::from_pb(&zero), None, "generation 0 names no file");
    let mut short = id.to_pb();
    short.data_id = bytes::Bytes::from_static(b"short");
    assert_eq!(ShardId::from_pb(&short), None);
}

#[tokio::test]
async fn a_closed_port_is_unavailable_within_the_ping_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let client = DataClient::new();
    let started = std::time::Instant::now();
    // Refused at connect, not timed out: tonic's transport says "tcp connect error" (the
    // error keeps no source, so the refusal itself is asserted in tessera-data's service test).
    let refused = |err: &DataClientError| {
        matches!(
            err,
            DataClientError::Unavailable { addr: a, message }
                if *a == addr && message == "tcp connect error"
        )
    };
    let err = client.ping(&addr).await.expect_err("closed");
    assert!(refused(&err), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The pooled channel is reused, and forgetting it is harmless.
    let again = client.ping(&addr).await.expect_err("still closed");
    assert!(refused(&again), "{again:?}");
    client.forget(&addr);
}

#[tokio::test]
async fn node_refusals_come_back_typed() {
    let model = DataModel::default();
    let addr = model.serve().await;
    let client = DataClient::new();
    let id = ShardId::new(
        DataId::from_bytes([4; 16]),
        0,
        Generation::new(1).expect("nonzero"),
    );
    let missing = client.stat_shard(&addr, &id).await.expect_err("none");
    assert!(
        matches!(
            &missing,
            DataClientError::NotFound { addr: a, message }
                if *a == addr && *message == format!("{id} not stored")
        ),
        "{missing:?}"
    );
    let scrub = client.start_scrub(&addr).await.expect_err("no scrubber");
    assert!(
        matches!(
            scrub,
            DataClientError::NodeFailure {
                code: Code::Unimplemented,
                ..
            }
        ),
        "{scrub:?}"
    );
    model.put(StoredShard::new(
        id,
        8,
        0,
        vec![bytes::Bytes::from_static(b"8 bytes!")],
    ));
    assert_eq!(client.ping(&addr).await.expect("ping").shards, 1);
    assert_eq!(client.list_shards(&addr).await.expect("list").len(), 1);
}
