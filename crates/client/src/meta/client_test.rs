//! The meta client against the in-test meta model: sessions, retries, the fault hook, typed
//! outcomes, rule errors and queries. Slightly past 800 lines: one suite over one model, whose
//! helpers a split would duplicate.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::blob::{BlobError, Generation, ShardCopy, ShardRef};
use tessera_core::meta_error::MetaRuleError;
use tessera_core::names::{BucketName, DataId, NodeId, ObjectKey, VersionId};
use tessera_core::object::{Bucket, ObjectVersion, VersioningState, WritePrecondition};
use tessera_proto::convert::meta::MetaConvertError;
use tessera_proto::meta::v1 as pb;
use tokio::sync::Notify;

use super::*;
use crate::testing::eventually;
use crate::testing::meta_node::{AfterApply, MetaModel};

fn bucket_name(name: &str) -> BucketName {
    BucketName::parse(name).expect("bucket name")
}

fn bucket(name: &str) -> Bucket {
    Bucket {
        name: bucket_name(name),
        created_ms: 0,
        versioning: VersioningState::Unversioned,
        owner: "owner".into(),
        region: "local".into(),
        encryption: None,
    }
}

fn version(bucket: &str, key: &str) -> ObjectVersion {
    ObjectVersion {
        size: 3,
        etag: "\"abc\"".into(),
        parts: vec![tessera_core::object::ObjectPart {
            part_number: 1,
            size: 3,
            etag: "\"abc\"".into(),
            blob: tessera_core::blob::Blob::inline(b"abc".to_vec()),
            checksums: Vec::new(),
        }],
        storage_class: "STANDARD".into(),
        ..ObjectVersion::new(bucket_name(bucket), ObjectKey::parse(key).expect("key"))
    }
}

fn put(bucket: &str, key: &str) -> PutVersion {
    PutVersion {
        version: version(bucket, key),
        precondition: None,
        lease_id: 0,
    }
}

async fn client(model: &MetaModel) -> MetaClient {
    MetaClient::new(vec![model.serve().await]).with_fault(FaultPlan::none())
}

#[tokio::test]
async fn commands_carry_one_client_id_and_seqs_from_one_shared_by_clones() {
    let model = MetaModel::default();
    let meta = client(&model).await;
    let clone = meta.clone();
    meta.create_bucket(&bucket("one")).await.expect("create");
    clone.create_bucket(&bucket("two")).await.expect("create");
    meta.delete_bucket(&bucket_name("two"))
        .await
        .expect("delete");
    let (sessions, stored) = {
        let state = model.lock();
        let sessions: Vec<_> = state.received.iter().map(|r| r.session.clone()).collect();
        (sessions, state.stored_results(&meta.client_id()))
    };
    let seqs: Vec<u64> = sessions.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    for s in &sessions {
        assert_eq!(s.client_id, meta.client_id().to_vec());
        assert_eq!(s.first_unacked, s.seq, "nothing else in flight");
    }
    assert_eq!(stored, [3].into());
    let other = client(&model).await;
    assert_ne!(
        other.client_id(),
        meta.client_id(),
        "a fresh client, a fresh id"
    );
}

#[tokio::test]
async fn first_unacked_stays_at_the_oldest_command_in_flight() {
    let model = MetaModel::default();
    let gate = Arc::new(Notify::new());
    model.lock().gate = Some(("slow".into(), Arc::clone(&gate)));
    let meta = client(&model).await;
    let slow = {
        let meta = meta.clone();
        tokio::spawn(async move { meta.create_bucket(&bucket("slow")).await })
    };
    assert!(eventually(Duration::from_secs(5), || model.lock().received.len() == 1).await);
    meta.create_bucket(&bucket("bk2")).await.expect("create");
    meta.create_bucket(&bucket("bk3")).await.expect("create");
    gate.notify_one();
    slow.await.expect("join").expect("create slow");
    meta.create_bucket(&bucket("bk4")).await.expect("create");
    let state = model.lock();
    let seen: Vec<(u64, u64)> = state
        .received
        .iter()
        .map(|r| (r.session.seq, r.session.first_unacked))
        .collect();
    assert_eq!(seen, [(1, 1), (2, 1), (3, 1), (4, 4)]);
    assert_eq!(
        state.stored_results(&meta.client_id()),
        [4].into(),
        "results below first_unacked are forgotten"
    );
}

#[tokio::test]
async fn a_cut_connection_after_commit_is_retried_with_the_same_seq_and_applied_once() {
    let model = MetaModel::default();
    model
        .lock()
        .after_apply
        .insert(CommandKind::PutVersion, AfterApply::Cut);
    let addr = model.serve_behind_proxy().await;
    let meta = MetaClient::new(vec![addr]).with_fault(FaultPlan::none());
    meta.create_bucket(&bucket("bkt")).await.expect("create");
    let stored = meta.put_version(&put("bkt", "k")).await.expect("put");
    let state = model.lock();
    let sends = state.received_of(CommandKind::PutVersion);
    assert_eq!(sends.len(), 2, "sent, cut, sent again");
    assert_eq!(sends[0].seq, sends[1].seq);
    assert_eq!(state.applied_of(CommandKind::PutVersion), 1);
    assert_eq!(stored.seq, 2, "the first application's result");
    assert_eq!(state.versions.len(), 1);
}

#[tokio::test]
async fn a_timed_out_command_is_retried_with_the_same_seq_and_answered_its_first_result() {
    let model = MetaModel::default();
    model
        .lock()
        .after_apply
        .insert(CommandKind::CreateBucket, AfterApply::Hang);
    let meta = client(&model)
        .await
        .with_request_timeout(Duration::from_millis(200));
    // Applied twice, the second would be BucketAlreadyOwnedByYou: the retry gets the first.
    meta.create_bucket(&bucket("bkt"))
        .await
        .expect("first result");
    let state = model.lock();
    let sends = state.received_of(CommandKind::CreateBucket);
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].seq, sends[1].seq);
    assert_eq!(state.applied_of(CommandKind::CreateBucket), 1);
}

#[tokio::test]
async fn an_unavailable_answer_moves_on_to_the_next_node_with_the_same_seq() {
    let model = MetaModel::default();
    model
        .lock()
        .after_apply
        .insert(CommandKind::DeleteBucket, AfterApply::Unavailable);
    model
        .lock()
        .buckets
        .insert("bkt".into(), (&bucket("bkt")).into());
    let (first, second) = (model.serve().await, model.serve().await);
    let meta = MetaClient::new(vec![first, second]).with_fault(FaultPlan::none());
    meta.delete_bucket(&bucket_name("bkt"))
        .await
        .expect("deleted once");
    let state = model.lock();
    let sends = state.received_of(CommandKind::DeleteBucket);
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].seq, sends[1].seq);
    assert_eq!(state.applied_of(CommandKind::DeleteBucket), 1);
}

#[tokio::test]
async fn an_abandoned_command_leaves_flight_so_later_commands_release_its_result() {
    let model = MetaModel::default();
    model
        .lock()
        .after_apply
        .insert(CommandKind::CreateBucket, AfterApply::Hang);
    let meta = client(&model)
        .await
        .with_request_timeout(Duration::from_millis(100));
    let hanging = meta
        .clone()
        .with_deadline(Duration::from_millis(50))
        .create_bucket(&bucket("bkt"))
        .await;
    // One attempt hangs; the deadline passes before the retry.
    let err = hanging.expect_err("no answer");
    assert!(
        matches!(
            &err,
            CommandError::Client(MetaClientError::Unavailable { attempts: 1, last })
                if last.contains(": no answer within ")
        ),
        "{err:?}"
    );
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(meta.session.in_flight(), 0);
    meta.delete_bucket(&bucket_name("bkt"))
        .await
        .expect("delete");
    let state = model.lock();
    let last = state.received.last().expect("received").session.clone();
    assert_eq!((last.seq, last.first_unacked), (2, 2));
}

#[tokio::test]
async fn the_fault_hook_drops_the_first_answer_of_matching_commands_only() {
    let model = MetaModel::default();
    let meta = client(&model).await.with_fault(FaultPlan::kinds([
        CommandKind::PutVersion,
        CommandKind::DeleteObject,
    ]));
    meta.create_bucket(&bucket("bkt")).await.expect("create");
    let first = meta.put_version(&put("bkt", "k")).await.expect("put");
    let second = meta.put_version(&put("bkt", "k2")).await.expect("put");
    let deleted = meta
        .delete_object(
            &bucket_name("bkt"),
            &ObjectKey::parse("k").expect("key"),
            None,
        )
        .await
        .expect("delete");
    assert_eq!(deleted.version_id, Some(VersionId::null()));
    assert_eq!(
        meta.faults_fired(),
        3,
        "one dropped answer per matching command"
    );
    let state = model.lock();
    assert_eq!(state.received_of(CommandKind::CreateBucket).len(), 1);
    for kind in [CommandKind::PutVersion, CommandKind::DeleteObject] {
        let sends = state.received_of(kind);
        let seqs: Vec<u64> = sends.iter().map(|s| s.seq).collect();
        assert_eq!(sends.len(), 2 * state.applied_of(kind), "{kind}: {seqs:?}");
        for pair in sends.chunks(2) {
            assert_eq!(pair[0].seq, pair[1].seq, "{kind}: the retry keeps its seq");
        }
    }
    assert_eq!(state.applied_of(CommandKind::PutVersion), 2);
    assert_eq!((first.seq, second.seq), (2, 3), "each applied once");
}

#[tokio::test]
async fn the_fault_hook_on_all_commands_still_gives_every_first_result() {
    let model = MetaModel::default();
    let meta = client(&model).await.with_fault(FaultPlan::all());
    meta.create_bucket(&bucket("bkt")).await.expect("create");
    // A rule error is a committed result too: its answer is dropped and the retry gets it.
    let again = meta
        .create_bucket(&bucket("bkt"))
        .await
        .expect_err("exists");
    assert_eq!(
        again.rule(),
        Some(&MetaRuleError::BucketAlreadyOwnedByYou {
            bucket: "bkt".into()
        })
    );
    let lease = meta
        .grant_lease("gw", Duration::from_secs(60))
        .await
        .expect("grant");
    meta.renew_lease(lease.lease_id, Duration::from_secs(60))
        .await
        .expect("renew");
    meta.release_lease(lease.lease_id).await.expect("release");
    assert_eq!(meta.faults_fired(), 5);
    let state = model.lock();
    assert_eq!(state.received.len(), 10);
    assert_eq!(state.applied.len(), 5);
    assert_eq!(state.leases.len(), 1, "one grant despite two sends");
}

/// Every code of `pb::MetaErrorCode` with the fields its rule needs, and the typed error the
/// client must give back.
fn rule_cases() -> Vec<(pb::MetaError, MetaRuleError)> {
    use pb::MetaErrorCode as C;
    let e = |code: C, f: &dyn Fn(&mut pb::MetaError)| {
        let mut error = pb::MetaError {
            code: code as i32,
            message: "for people only".into(),
            ..Default::default()
        };
        f(&mut error);
        error
    };
    vec![
        (
            e(C::MetaErrorNoSuchBucket, &|e| e.bucket = "b".into()),
            MetaRuleError::NoSuchBucket { bucket: "b".into() },
        ),
        (
            e(C::MetaErrorBucketAlreadyOwnedByYou, &|e| {
                e.bucket = "b".into()
            }),
            MetaRuleError::BucketAlreadyOwnedByYou { bucket: "b".into() },
        ),
        (
            e(C::MetaErrorBucketAlreadyExists, &|e| e.bucket = "b".into()),
            MetaRuleError::BucketAlreadyExists { bucket: "b".into() },
        ),
        (
            e(C::MetaErrorBucketNotEmpty, &|e| e.bucket = "b".into()),
            MetaRuleError::BucketNotEmpty { bucket: "b".into() },
        ),
        (
            e(C::MetaErrorNoSuchKey, &|e| {
                e.bucket = "b".into();
                e.key = "k".into();
            }),
            MetaRuleError::NoSuchKey {
                bucket: "b".into(),
                key: "k".into(),
            },
        ),
        (
            e(C::MetaErrorNoSuchVersion, &|e| {
                e.bucket = "b".into();
                e.key = "k".into();
                e.version_id = "v".into();
            }),
            MetaRuleError::NoSuchVersion {
                bucket: "b".into(),
                key: "k".into(),
                version_id: "v".into(),
            },
        ),
        (
            e(C::MetaErrorNoSuchUpload, &|e| e.upload_id = "u".into()),
            MetaRuleError::NoSuchUpload {
                upload_id: "u".into(),
            },
        ),
        (
            e(C::MetaErrorPreconditionFailed, &|e| {
                e.message = "If-Match".into()
            }),
            MetaRuleError::PreconditionFailed {
                condition: "If-Match".into(),
            },
        ),
        (
            e(C::MetaErrorInvalidPart, &|e| {
                e.part_number = 3;
                e.etag = "\"e\"".into();
            }),
            MetaRuleError::InvalidPart {
                part_number: 3,
                etag: "\"e\"".into(),
            },
        ),
        (
            e(C::MetaErrorInvalidPartOrder, &|_| {}),
            MetaRuleError::InvalidPartOrder,
        ),
        (
            e(C::MetaErrorInvalidArgument, &|e| e.message = "bad".into()),
            MetaRuleError::InvalidArgument {
                message: "bad".into(),
            },
        ),
        (
            e(C::MetaErrorConditionalRequestConflict, &|_| {}),
            MetaRuleError::ConditionalRequestConflict,
        ),
        (
            e(C::MetaErrorEntityTooSmall, &|e| {
                e.part_number = 1;
                e.size = 5;
            }),
            MetaRuleError::EntityTooSmall {
                part_number: 1,
                size: 5,
            },
        ),
        (
            e(C::MetaErrorConflict, &|e| e.message = "moved".into()),
            MetaRuleError::Conflict {
                message: "moved".into(),
            },
        ),
        (
            e(C::MetaErrorLeaseExpired, &|e| e.lease_id = 12),
            MetaRuleError::LeaseExpired { lease_id: 12 },
        ),
        (
            e(C::MetaErrorSessionExpired, &|_| {}),
            MetaRuleError::SessionExpired,
        ),
    ]
}

#[tokio::test]
async fn every_meta_error_code_comes_back_as_its_typed_rule() {
    let cases = rule_cases();
    // Every code the wire defines (except UNSPECIFIED) is covered.
    let covered: std::collections::BTreeSet<i32> = cases.iter().map(|(e, _)| e.code).collect();
    let defined: std::collections::BTreeSet<i32> = (1..=1000)
        .filter(|c| pb::MetaErrorCode::try_from(*c).is_ok())
        .collect();
    assert_eq!(covered, defined);

    let model = MetaModel::default();
    let meta = client(&model).await;
    for (wire, expected) in cases {
        model.lock().reply_error = Some(wire);
        let err = meta
            .abort_upload("u")
            .await
            .expect_err("the model answers the error");
        assert_eq!(err.rule(), Some(&expected));
        assert_eq!(err.code(), expected.code());
        assert_eq!(err.is_retryable(), expected.is_retryable());
        assert_eq!(
            err.is_outcome_unknown(),
            expected == MetaRuleError::SessionExpired
        );
    }
    for code in [pb::MetaErrorCode::MetaErrorUnspecified as i32, 999] {
        model.lock().reply_error = Some(pb::MetaError {
            code,
            message: "NoSuchBucket".into(),
            ..Default::default()
        });
        let err = meta.abort_upload("u").await.expect_err("unknown code");
        assert!(
            matches!(
                &err,
                CommandError::Client(MetaClientError::Convert {
                    op: "abort_upload",
                    source: MetaConvertError::UnknownEnum {
                        field: "meta error code",
                        value,
                    },
                }) if *value == code
            ),
            "never guessed from the message: {err:?}"
        );
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn an_outcome_of_another_command_is_an_error() {
    let model = MetaModel::default();
    model.lock().reply_outcome = Some(pb::command_result::Result::Ok(pb::Empty {}));
    let meta = client(&model).await;
    let err = meta
        .put_version(&put("bkt", "k"))
        .await
        .expect_err("ok is not a version");
    assert!(
        matches!(
            err,
            CommandError::Client(MetaClientError::UnexpectedOutcome {
                kind: CommandKind::PutVersion,
                got: "ok"
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "meta_unexpected_outcome");
}

#[tokio::test]
async fn a_refusal_by_status_is_not_retried() {
    let model = MetaModel::default();
    model.lock().status_error = Some(tonic::Code::InvalidArgument);
    let meta = client(&model).await;
    let err = meta
        .create_bucket(&bucket("bkt"))
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            CommandError::Client(MetaClientError::Rejected {
                op: "create_bucket",
                code: tonic::Code::InvalidArgument,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(!err.is_outcome_unknown());
    assert_eq!(model.lock().received.len(), 1);
}

#[tokio::test]
async fn commands_return_core_types() {
    let model = MetaModel::default();
    let meta = client(&model).await;
    let name = bucket_name("bkt");
    meta.create_bucket(&bucket("bkt")).await.expect("create");
    meta.set_bucket_versioning(&name, VersioningState::Enabled)
        .await
        .expect("versioning");
    let encryption = tessera_core::object::BucketEncryption {
        algorithm: "aws:kms".into(),
        kms_key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        bucket_key_enabled: true,
    };
    meta.set_bucket_encryption(&name, Some(&encryption))
        .await
        .expect("encryption");
    let stored = meta.get_bucket(&name).await.expect("get").expect("bucket");
    assert_eq!(stored.encryption, Some(encryption));
    meta.set_bucket_encryption(&name, None)
        .await
        .expect("no encryption");
    let stored = meta.get_bucket(&name).await.expect("get").expect("bucket");
    assert_eq!(stored.encryption, None);
    let missing = meta
        .set_bucket_encryption(&bucket_name("nope"), None)
        .await
        .expect_err("no such bucket");
    assert_eq!(
        missing.rule(),
        Some(&MetaRuleError::NoSuchBucket {
            bucket: "nope".into()
        })
    );
    let lease = meta
        .grant_lease("gateway", Duration::from_secs(30))
        .await
        .expect("grant");
    assert_eq!(lease.holder, "gateway");
    assert_eq!(lease.expires_ms - lease.granted_ms, 30_000);
    let mut versioned = put("bkt", "k");
    versioned.lease_id = lease.lease_id;
    versioned.precondition = Some(WritePrecondition {
        if_none_match_any: true,
        if_match: None,
    });
    let stored = meta.put_version(&versioned).await.expect("put");
    assert_eq!(stored.version_id, VersionId::from_seq(stored.seq));
    assert_eq!(
        stored.parts[0].blob.size, 3,
        "the result names the blob without its bytes"
    );
    let refused = meta.put_version(&versioned).await.expect_err("exists");
    assert_eq!(
        refused.rule(),
        Some(&MetaRuleError::PreconditionFailed {
            condition: "If-None-Match".into()
        })
    );
    assert_eq!(refused.code(), "precondition_failed");

    let renewed = meta
        .renew_lease(lease.lease_id, Duration::from_secs(60))
        .await
        .expect("renew");
    assert_eq!(renewed.lease_id, lease.lease_id);
    meta.release_lease(lease.lease_id).await.expect("release");
    let expired = meta
        .renew_lease(lease.lease_id, Duration::from_secs(60))
        .await
        .expect_err("released");
    assert_eq!(
        expired.rule(),
        Some(&MetaRuleError::LeaseExpired {
            lease_id: lease.lease_id
        })
    );

    let orphan = ShardRef {
        data_id: DataId::from_bytes([3; 16]),
        copy: ShardCopy {
            shard_index: 2,
            node: NodeId(4),
            generation: Generation::new(99).expect("nonzero"),
        },
        lease_id: 7,
    };
    let claimed = meta
        .claim_shards(&ShardClaim {
            claimer: "repair-1".into(),
            grace_ms: 30_000,
            orphans: vec![orphan],
            garbage: vec![GarbageClaim {
                garbage_key: b"g/1".to_vec(),
                shards: vec![orphan],
            }],
        })
        .await
        .expect("claim");
    assert_eq!(claimed, vec![orphan, orphan]);
    meta.release_shards(&claimed, &[b"g/1".to_vec()])
        .await
        .expect("release");
    meta.update_placement(&PlacementChange {
        data_id: orphan.data_id,
        expected: vec![orphan.copy],
        shards: Vec::new(),
        degraded: false,
        lease_id: 7,
    })
    .await
    .expect("placement");

    let deleted = meta
        .delete_object(&name, &ObjectKey::parse("k").expect("key"), None)
        .await
        .expect("delete");
    assert_eq!(deleted.version_id, Some(stored.version_id));
    let nothing = meta
        .delete_object(&name, &ObjectKey::parse("k").expect("key"), None)
        .await
        .expect("delete");
    assert_eq!(nothing.version_id, None);

    let completed = meta
        .complete_upload(
            "upload-1",
            &[(1, "\"abc\"".into())],
            &version("bkt", "mp"),
            None,
        )
        .await
        .expect("complete");
    assert_eq!(completed.upload_id.as_deref(), Some("upload-1"));

    let gone = meta
        .delete_bucket(&bucket_name("nope"))
        .await
        .expect_err("none");
    assert_eq!(
        gone.rule(),
        Some(&MetaRuleError::NoSuchBucket {
            bucket: "nope".into()
        })
    );
}

#[tokio::test]
async fn queries_return_core_types() {
    let model = MetaModel::default();
    let meta = client(&model).await;
    let name = bucket_name("bkt");
    assert_eq!(meta.get_bucket(&name).await.expect("get"), None);
    meta.create_bucket(&bucket("bkt")).await.expect("create");
    assert_eq!(
        meta.get_bucket(&name).await.expect("get").map(|b| b.name),
        Some(name.clone())
    );
    assert_eq!(meta.list_buckets().await.expect("list").len(), 1);
    let stored = meta.put_version(&put("bkt", "k")).await.expect("put");

    let key = ObjectKey::parse("k").expect("key");
    let found = meta.get_object(&name, &key, None).await.expect("get");
    assert_eq!(found.version.map(|v| v.seq), Some(stored.seq));
    assert!(!found.no_such_bucket);
    let missing = meta
        .get_object(&bucket_name("nope"), &key, None)
        .await
        .expect("get");
    assert!(missing.no_such_bucket && missing.version.is_none());

    let page = meta
        .list_objects(&ListObjects::new(name.clone()))
        .await
        .expect("list");
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.next_marker, "k");

    let blob = pb::ErasureBlob {
        data_id: vec![5; 16],
        data_shards: 2,
        parity_shards: 1,
        chunk_size: 4096,
        shards: vec![pb::ShardPlacement {
            shard_index: 0,
            node_id: 1,
            generation: 8,
        }],
        degraded: false,
        shard_digests: vec![vec![0; 32]; 3],
        chunks_per_shard: 2,
        placed_at_index: 4,
    };
    let blob_ref = pb::BlobRef {
        family: pb::BlobFamily::Garbage as i32,
        record_key: b"g/1".to_vec(),
        size: 8000,
        blob: Some(blob.clone()),
        time_ms: 77,
        ..Default::default()
    };
    model.lock().blobs = pb::ScanBlobsResponse {
        blobs: vec![blob_ref.clone()],
        next_after: b"g/1".to_vec(),
        done: true,
    };
    model.lock().blob = pb::GetBlobResponse {
        blob: Some(blob_ref.clone()),
    };
    let scanned = meta
        .scan_blobs(BlobFamily::Garbage, b"", 0)
        .await
        .expect("scan");
    assert!(scanned.done);
    assert_eq!(scanned.next_after, b"g/1");
    let first = &scanned.blobs[0];
    assert_eq!(first.family, BlobFamily::Garbage);
    assert_eq!(first.blob.data_id, DataId::from_bytes([5; 16]));
    assert_eq!(first.blob.shards[0].generation.get(), 8);
    assert_eq!((first.blob.placed_at_index, first.time_ms), (4, 77));
    let got = meta
        .get_blob(&DataId::from_bytes([5; 16]))
        .await
        .expect("get blob");
    assert_eq!(got.as_ref(), Some(first));

    // A record this build cannot read fails the page instead of vanishing from it.
    let mut broken = blob_ref;
    broken.blob = Some(pb::ErasureBlob {
        shard_digests: vec![vec![0; 32]; 2],
        ..blob
    });
    model.lock().blobs.blobs.push(broken);
    let err = meta
        .scan_blobs(BlobFamily::Garbage, b"", 0)
        .await
        .expect_err("malformed");
    assert!(
        matches!(
            err,
            MetaClientError::Convert {
                op: "scan_blobs",
                source: MetaConvertError::Blob(BlobError::Digests { expected: 3 }),
            }
        ),
        "{err:?}"
    );

    model.lock().upload = pb::GetUploadResponse {
        upload: None,
        completed: Some((&stored).into()),
    };
    let lookup = meta.get_upload("u").await.expect("upload");
    assert_eq!(lookup.completed.map(|v| v.seq), Some(stored.seq));
    assert!(lookup.upload.is_none());
    assert_eq!(meta.applied_index().await.expect("index"), 2);
    let parts = meta.list_parts("u", 0, 0).await.expect("parts");
    assert!(parts.parts.is_empty() && !parts.no_such_upload);
    let uploads = meta
        .list_uploads(&ListUploads::new(name))
        .await
        .expect("uploads");
    assert!(uploads.uploads.is_empty());
}

#[test]
fn transport_failures_are_retryable_and_answers_are_not() {
    assert!(is_retryable_status(&Status::unavailable("down")));
    assert!(is_retryable_status(&Status::deadline_exceeded("slow")));
    assert!(is_retryable_status(&Status::cancelled("timeout expired")));
    assert!(!is_retryable_status(&Status::invalid_argument("bad")));
    assert!(!is_retryable_status(&Status::internal("server bug")));
    assert!(!is_retryable_status(&Status::unknown("server said so")));
}

#[tokio::test]
async fn no_endpoint_means_unavailable() {
    let client = MetaClient::new(Vec::new());
    let err = client.list_buckets().await.expect_err("no endpoints");
    assert!(
        matches!(
            &err,
            MetaClientError::Unavailable { attempts: 0, last }
                if last == "no meta endpoints configured"
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.code(), "meta_unavailable");
}

#[tokio::test]
async fn unreachable_nodes_are_tried_in_turn_until_the_deadline() {
    // One address is not a URI, the other refuses connections (port 1 on loopback).
    let client = MetaClient::new(vec!["bad host:1:2".to_owned(), "127.0.0.1:1".to_owned()])
        .with_deadline(Duration::from_millis(300));
    let started = Instant::now();
    let err = client
        .get_bucket(&bucket_name("bkt"))
        .await
        .expect_err("unreachable");
    match err {
        MetaClientError::Unavailable { attempts, last } => {
            assert!(attempts >= 2, "{attempts}");
            // The last failure is one of the two nodes': no URI, or refused at connect.
            assert!(
                last.starts_with("invalid address bad host:1:2: ")
                    || last == "127.0.0.1:1: Unavailable: tcp connect error",
                "{last}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn heartbeats_to_dead_nodes_return_promptly() {
    let client = MetaClient::new(vec!["127.0.0.1:1".to_owned()]);
    let started = Instant::now();
    client
        .heartbeat_all(pb::HeartbeatRequest {
            node: Some(pb::DataNode::default()),
            shards: 0,
            used_bytes: 0,
        })
        .await;
    assert!(started.elapsed() <= HEARTBEAT_TIMEOUT + Duration::from_millis(500));
}
