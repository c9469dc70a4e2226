use super::*;
use tessera_core::shard_file::DIGEST_LEN;

fn erasure() -> ErasureBlob {
    ErasureBlob {
        data_id: DataId::from_bytes([9; 16]),
        layout: Layout::new(3, 3).expect("layout"),
        chunk_size: 4096,
        chunks_per_shard: 2,
        shards: (0..6)
            .map(|i| ShardCopy {
                shard_index: i,
                node: NodeId(u64::from(i) + 1),
                generation: Generation::new(100 + u64::from(i)).expect("nonzero"),
            })
            .collect(),
        shard_digests: (0..6).map(|i| [i as u8; DIGEST_LEN]).collect(),
        degraded: true,
        placed_at_index: 77,
    }
}

fn version(parts: Vec<ObjectPart>) -> ObjectVersion {
    ObjectVersion {
        bucket: BucketName::parse("photos").expect("bucket"),
        key: ObjectKey::parse("2026/a.jpg").expect("key"),
        version_id: VersionId::from_seq(12),
        seq: 12,
        delete_marker: false,
        last_modified_ms: 1_700_000_000_000,
        size: 10,
        etag: "\"abc\"".into(),
        headers: ContentHeaders {
            content_type: Some("image/jpeg".into()),
            cache_control: Some("no-cache".into()),
            ..ContentHeaders::default()
        },
        user_metadata: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]),
        checksums: vec![ChecksumValue {
            algorithm: ChecksumAlgorithm::Crc64Nvme,
            value: "AAAAAAAAAAA=".into(),
            kind: ChecksumType::FullObject,
        }],
        parts,
        multipart: true,
        storage_class: "STANDARD".into(),
        upload_id: Some("up".into()),
    }
}

#[test]
fn versions_with_both_kinds_of_blob_round_trip() {
    let v = version(vec![
        ObjectPart {
            part_number: 1,
            size: 5,
            etag: "\"p1\"".into(),
            blob: Blob::inline(b"hello".to_vec()),
            checksums: vec![],
        },
        ObjectPart {
            part_number: 2,
            size: 5,
            etag: "\"p2\"".into(),
            blob: Blob {
                size: 5,
                stored_size: 5,
                sealing: Sealing::none(),
                storage: BlobStorage::Erasure(erasure()),
            },
            checksums: vec![ChecksumValue {
                algorithm: ChecksumAlgorithm::Sha256,
                value: "x".into(),
                kind: ChecksumType::Composite,
            }],
        },
    ]);
    let wire = pb::ObjectVersion::from(&v);
    assert_eq!(ObjectVersion::try_from(&wire), Ok(v));
}

#[test]
fn a_command_version_without_an_id_is_the_null_placeholder() {
    let mut wire = pb::ObjectVersion::from(&version(vec![]));
    wire.version_id.clear();
    wire.upload_id.clear();
    let v = ObjectVersion::try_from(&wire).expect("converts");
    assert!(v.version_id.is_null());
    assert_eq!(v.upload_id, None);
    wire.version_id = "not-a-version".into();
    assert!(matches!(
        ObjectVersion::try_from(&wire),
        Err(MetaConvertError::Name {
            field: "version_id",
            ..
        })
    ));
}

#[test]
fn broken_blobs_are_refused_with_the_rule_they_break() {
    let mut wire = pb::ErasureBlob::from(&erasure());
    wire.shards[0].generation = 0;
    assert_eq!(
        ErasureBlob::try_from(&wire),
        Err(MetaConvertError::Blob(BlobError::Generation))
    );
    let mut wire = pb::ErasureBlob::from(&erasure());
    wire.shard_digests.pop();
    assert_eq!(
        ErasureBlob::try_from(&wire),
        Err(MetaConvertError::Blob(BlobError::Digests { expected: 6 }))
    );
    let mut wire = pb::ErasureBlob::from(&erasure());
    wire.shard_digests[2] = vec![1; 31];
    assert_eq!(
        ErasureBlob::try_from(&wire),
        Err(MetaConvertError::Blob(BlobError::Digests { expected: 6 }))
    );
    let mut wire = pb::ErasureBlob::from(&erasure());
    wire.data_id = vec![1; 15];
    assert_eq!(
        ErasureBlob::try_from(&wire),
        Err(MetaConvertError::Blob(BlobError::DataId { len: 15 }))
    );
    let no_storage = pb::Blob {
        size: 1,
        ..pb::Blob::default()
    };
    assert_eq!(
        Blob::try_from(&no_storage),
        Err(MetaConvertError::Blob(BlobError::NoStorage))
    );
}

#[test]
fn uploads_parts_buckets_nodes_and_leases_round_trip() {
    let upload = MultipartUpload {
        bucket: BucketName::parse("bkt").expect("bucket"),
        key: ObjectKey::parse("k").expect("key"),
        upload_id: "u1".into(),
        initiated_ms: 5,
        headers: ContentHeaders::default(),
        user_metadata: BTreeMap::new(),
        checksum_algorithm: Some(ChecksumAlgorithm::Crc32c),
        checksum_type: ChecksumType::Composite,
        storage_class: "STANDARD".into(),
        customer_key_check: vec![1; 49],
        kms: Some(tessera_core::object::UploadKms {
            key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".to_owned(),
            context: br#"{"a":"1"}"#.to_vec(),
            dsse: false,
            bucket_key: true,
        }),
    };
    assert_eq!(
        MultipartUpload::try_from(&pb::MultipartUpload::from(&upload)),
        Ok(upload)
    );
    let part = UploadedPart {
        upload_id: "u1".into(),
        part_number: 3,
        size: 9,
        etag: "\"e\"".into(),
        last_modified_ms: 6,
        blob: Blob::inline(vec![1, 2, 3]),
        checksums: vec![],
    };
    assert_eq!(
        UploadedPart::try_from(&pb::UploadedPart::from(&part)),
        Ok(part)
    );
    let bucket = Bucket {
        name: BucketName::parse("bkt").expect("bucket"),
        created_ms: 1,
        versioning: VersioningState::Suspended,
        owner: "o".into(),
        region: "r".into(),
        encryption: Some(tessera_core::object::BucketEncryption {
            algorithm: "aws:kms".into(),
            kms_key_id: "k".into(),
            bucket_key_enabled: true,
        }),
    };
    assert_eq!(Bucket::try_from(&pb::Bucket::from(&bucket)), Ok(bucket));
    let node = DataNode {
        id: NodeId(4),
        zone: ZoneName("zone-b".into()),
        addr: "127.0.0.1:1".into(),
        registered_ms: 2,
        state: NodeState::Draining,
    };
    assert_eq!(DataNode::try_from(&pb::DataNode::from(&node)), Ok(node));
    let lease = WriteLease {
        lease_id: 8,
        holder: "gateway".into(),
        granted_ms: 1,
        expires_ms: 2,
    };
    assert_eq!(WriteLease::from(&pb::WriteLease::from(&lease)), lease);
    let r = ShardRef {
        data_id: DataId::from_bytes([3; 16]),
        copy: ShardCopy {
            shard_index: 2,
            node: NodeId(5),
            generation: Generation::new(6).expect("nonzero"),
        },
        lease_id: 7,
    };
    assert_eq!(ShardRef::try_from(&pb::ShardRef::from(&r)), Ok(r));
}

#[test]
fn every_sealing_scheme_round_trips_and_an_unknown_one_is_refused() {
    for scheme in SealingScheme::ALL {
        let sealing = Sealing {
            scheme,
            segment_size: 65_536,
            wrapped_key: vec![1; 61],
            key_id: "sse-c".into(),
            parameters: vec![2; 49],
        };
        assert_eq!(
            Sealing::try_from(&pb::Sealing::from(&sealing)),
            Ok(sealing.clone()),
            "{scheme:?}"
        );
    }
    let unknown = pb::Sealing {
        scheme: 99,
        ..pb::Sealing::default()
    };
    assert_eq!(
        Sealing::try_from(&unknown),
        Err(MetaConvertError::UnknownEnum {
            field: "sealing.scheme",
            value: 99
        })
    );
}
