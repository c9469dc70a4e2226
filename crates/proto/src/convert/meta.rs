//! Metadata records and rule errors on the wire (`meta.v1`) to and from core's domain types.
//!
//! Invariant: `core -> pb -> core` gives back the same value for every valid core value, and a
//! wire value converts only if it makes a valid core value (names, ids, layouts, digests and
//! generations are checked); a required field that is absent is an error, never a default.
//! Placeholders a command leaves for the state machine (an empty version id) map to the
//! placeholder of the core type (`VersionId::null()`).

use std::collections::BTreeMap;

use tessera_core::blob::{
    Blob, BlobError, BlobStorage, ErasureBlob, Generation, ShardCopy, ShardRef,
};
use tessera_core::checksum::{ChecksumAlgorithm, ChecksumType};
use tessera_core::layout::Layout;
use tessera_core::lease::WriteLease;
use tessera_core::names::{BucketName, DataId, NameError, NodeId, ObjectKey, VersionId, ZoneName};
use tessera_core::object::{
    Bucket, BucketEncryption, ChecksumValue, ContentHeaders, DataNode, MultipartUpload, NodeState,
    ObjectPart, ObjectVersion, UploadKms, UploadedPart, VersioningState, WritePrecondition,
};
use tessera_core::sealing::{Sealing, SealingScheme};
use tessera_core::shard_file::ShardDigest;

use crate::meta::v1 as pb;

/// A `meta.v1` value that does not make a valid core value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaConvertError {
    /// A required field is absent.
    #[error("missing field {field}")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A name or id is malformed.
    #[error("invalid {field}: {source}")]
    Name {
        /// The field.
        field: &'static str,
        /// Why.
        source: NameError,
    },
    /// A blob record breaks a rule.
    #[error("invalid blob: {0}")]
    Blob(#[from] BlobError),
    /// An enum value this build does not know.
    #[error("unknown {field} value {value}")]
    UnknownEnum {
        /// The field.
        field: &'static str,
        /// The value found.
        value: i32,
    },
}

impl MetaConvertError {
    /// A stable identifier for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            MetaConvertError::Missing { .. } => "convert_missing",
            MetaConvertError::Name { .. } => "convert_name",
            MetaConvertError::Blob(e) => e.code(),
            MetaConvertError::UnknownEnum { .. } => "convert_enum",
        }
    }
}

fn missing(field: &'static str) -> MetaConvertError {
    MetaConvertError::Missing { field }
}

fn bucket_name(field: &'static str, s: &str) -> Result<BucketName, MetaConvertError> {
    BucketName::parse(s).map_err(|source| MetaConvertError::Name { field, source })
}

fn object_key(field: &'static str, s: &str) -> Result<ObjectKey, MetaConvertError> {
    ObjectKey::parse(s).map_err(|source| MetaConvertError::Name { field, source })
}

fn data_id(bytes: &[u8]) -> Result<DataId, MetaConvertError> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| BlobError::DataId { len: bytes.len() })?;
    Ok(DataId::from_bytes(arr))
}

fn generation(value: u64) -> Result<Generation, MetaConvertError> {
    Generation::new(value).ok_or(MetaConvertError::Blob(BlobError::Generation))
}

// --- blobs ------------------------------------------------------------------------------------

impl TryFrom<&pb::ShardPlacement> for ShardCopy {
    type Error = MetaConvertError;
    fn try_from(p: &pb::ShardPlacement) -> Result<Self, Self::Error> {
        Ok(ShardCopy {
            shard_index: p.shard_index,
            node: NodeId(p.node_id),
            generation: generation(p.generation)?,
        })
    }
}

impl From<&ShardCopy> for pb::ShardPlacement {
    fn from(c: &ShardCopy) -> Self {
        pb::ShardPlacement {
            shard_index: c.shard_index,
            node_id: c.node.0,
            generation: c.generation.get(),
        }
    }
}

impl TryFrom<&pb::ShardRef> for ShardRef {
    type Error = MetaConvertError;
    fn try_from(r: &pb::ShardRef) -> Result<Self, Self::Error> {
        Ok(ShardRef {
            data_id: data_id(&r.data_id)?,
            copy: ShardCopy {
                shard_index: r.shard_index,
                node: NodeId(r.node_id),
                generation: generation(r.generation)?,
            },
            lease_id: r.lease_id,
        })
    }
}

impl From<&ShardRef> for pb::ShardRef {
    fn from(r: &ShardRef) -> Self {
        pb::ShardRef {
            data_id: r.data_id.as_bytes().to_vec(),
            shard_index: r.copy.shard_index,
            node_id: r.copy.node.0,
            generation: r.copy.generation.get(),
            lease_id: r.lease_id,
        }
    }
}

impl TryFrom<&pb::ErasureBlob> for ErasureBlob {
    type Error = MetaConvertError;
    fn try_from(e: &pb::ErasureBlob) -> Result<Self, Self::Error> {
        let layout =
            Layout::new(e.data_shards, e.parity_shards).map_err(|_| BlobError::Layout {
                data_shards: e.data_shards,
                parity_shards: e.parity_shards,
            })?;
        let mut shard_digests: Vec<ShardDigest> = Vec::with_capacity(e.shard_digests.len());
        for d in &e.shard_digests {
            let digest: ShardDigest = d.as_slice().try_into().map_err(|_| BlobError::Digests {
                expected: layout.total_shards(),
            })?;
            shard_digests.push(digest);
        }
        let blob = ErasureBlob {
            data_id: data_id(&e.data_id)?,
            layout,
            chunk_size: e.chunk_size,
            chunks_per_shard: e.chunks_per_shard,
            shards: e
                .shards
                .iter()
                .map(ShardCopy::try_from)
                .collect::<Result<_, _>>()?,
            shard_digests,
            degraded: e.degraded,
            placed_at_index: e.placed_at_index,
        };
        blob.validate()?;
        Ok(blob)
    }
}

impl From<&ErasureBlob> for pb::ErasureBlob {
    fn from(e: &ErasureBlob) -> Self {
        pb::ErasureBlob {
            data_id: e.data_id.as_bytes().to_vec(),
            data_shards: e.layout.data_shards(),
            parity_shards: e.layout.parity_shards(),
            chunk_size: e.chunk_size,
            shards: e.shards.iter().map(pb::ShardPlacement::from).collect(),
            degraded: e.degraded,
            shard_digests: e.shard_digests.iter().map(|d| d.to_vec()).collect(),
            chunks_per_shard: e.chunks_per_shard,
            placed_at_index: e.placed_at_index,
        }
    }
}

impl TryFrom<&pb::Sealing> for Sealing {
    type Error = MetaConvertError;
    fn try_from(s: &pb::Sealing) -> Result<Self, Self::Error> {
        let scheme = match pb::SealingScheme::try_from(s.scheme) {
            Ok(pb::SealingScheme::SealingNone) => SealingScheme::None,
            Ok(pb::SealingScheme::SealingSseS3) => SealingScheme::SseS3,
            Ok(pb::SealingScheme::SealingSseC) => SealingScheme::SseC,
            Ok(pb::SealingScheme::SealingSseKms) => SealingScheme::SseKms,
            Ok(pb::SealingScheme::SealingDsseKms) => SealingScheme::DsseKms,
            Ok(pb::SealingScheme::SealingSseKmsBucketKey) => SealingScheme::SseKmsBucketKey,
            Err(_) => {
                return Err(MetaConvertError::UnknownEnum {
                    field: "sealing.scheme",
                    value: s.scheme,
                });
            }
        };
        Ok(Sealing {
            scheme,
            segment_size: s.segment_size,
            wrapped_key: s.wrapped_key.clone(),
            key_id: s.key_id.clone(),
            parameters: s.parameters.clone(),
        })
    }
}

impl From<&Sealing> for pb::Sealing {
    fn from(s: &Sealing) -> Self {
        pb::Sealing {
            scheme: match s.scheme {
                SealingScheme::None => pb::SealingScheme::SealingNone as i32,
                SealingScheme::SseS3 => pb::SealingScheme::SealingSseS3 as i32,
                SealingScheme::SseC => pb::SealingScheme::SealingSseC as i32,
                SealingScheme::SseKms => pb::SealingScheme::SealingSseKms as i32,
                SealingScheme::DsseKms => pb::SealingScheme::SealingDsseKms as i32,
                SealingScheme::SseKmsBucketKey => pb::SealingScheme::SealingSseKmsBucketKey as i32,
            },
            segment_size: s.segment_size,
            wrapped_key: s.wrapped_key.clone(),
            key_id: s.key_id.clone(),
            parameters: s.parameters.clone(),
        }
    }
}

impl TryFrom<&pb::Blob> for Blob {
    type Error = MetaConvertError;
    fn try_from(b: &pb::Blob) -> Result<Self, Self::Error> {
        let storage = match &b.storage {
            Some(pb::blob::Storage::InlineData(data)) => BlobStorage::Inline(data.clone()),
            Some(pb::blob::Storage::Erasure(e)) => BlobStorage::Erasure(ErasureBlob::try_from(e)?),
            None => return Err(MetaConvertError::Blob(BlobError::NoStorage)),
        };
        let sealing = match &b.sealing {
            Some(s) => Sealing::try_from(s)?,
            None => Sealing::none(),
        };
        // An unsealed blob stores exactly its bytes; older records leave stored_size 0.
        let stored_size = if sealing.is_identity() {
            b.size
        } else {
            b.stored_size
        };
        Ok(Blob {
            size: b.size,
            stored_size,
            sealing,
            storage,
        })
    }
}

impl From<&Blob> for pb::Blob {
    fn from(b: &Blob) -> Self {
        pb::Blob {
            size: b.size,
            storage: Some(match &b.storage {
                BlobStorage::Inline(data) => pb::blob::Storage::InlineData(data.clone()),
                BlobStorage::Erasure(e) => pb::blob::Storage::Erasure(e.into()),
            }),
            sealing: Some((&b.sealing).into()),
            stored_size: b.stored_size,
        }
    }
}

// --- checksums and headers --------------------------------------------------------------------

/// A wire checksum algorithm to core's; `None` for NONE.
pub fn checksum_algorithm_from_pb(
    value: i32,
) -> Result<Option<ChecksumAlgorithm>, MetaConvertError> {
    use pb::ChecksumAlgorithm as A;
    Ok(match A::try_from(value) {
        Ok(A::None) => None,
        Ok(A::Crc32) => Some(ChecksumAlgorithm::Crc32),
        Ok(A::Crc32c) => Some(ChecksumAlgorithm::Crc32c),
        Ok(A::Crc64nvme) => Some(ChecksumAlgorithm::Crc64Nvme),
        Ok(A::Sha1) => Some(ChecksumAlgorithm::Sha1),
        Ok(A::Sha256) => Some(ChecksumAlgorithm::Sha256),
        Err(_) => {
            return Err(MetaConvertError::UnknownEnum {
                field: "checksum algorithm",
                value,
            });
        }
    })
}

/// Core's checksum algorithm on the wire (`None` is NONE).
pub fn checksum_algorithm_to_pb(alg: Option<ChecksumAlgorithm>) -> pb::ChecksumAlgorithm {
    match alg {
        None => pb::ChecksumAlgorithm::None,
        Some(ChecksumAlgorithm::Crc32) => pb::ChecksumAlgorithm::Crc32,
        Some(ChecksumAlgorithm::Crc32c) => pb::ChecksumAlgorithm::Crc32c,
        Some(ChecksumAlgorithm::Crc64Nvme) => pb::ChecksumAlgorithm::Crc64nvme,
        Some(ChecksumAlgorithm::Sha1) => pb::ChecksumAlgorithm::Sha1,
        Some(ChecksumAlgorithm::Sha256) => pb::ChecksumAlgorithm::Sha256,
    }
}

fn checksum_type_from_pb(value: i32) -> Result<ChecksumType, MetaConvertError> {
    match pb::ChecksumType::try_from(value) {
        Ok(pb::ChecksumType::FullObject) => Ok(ChecksumType::FullObject),
        Ok(pb::ChecksumType::Composite) => Ok(ChecksumType::Composite),
        Err(_) => Err(MetaConvertError::UnknownEnum {
            field: "checksum type",
            value,
        }),
    }
}

fn checksum_type_to_pb(t: ChecksumType) -> pb::ChecksumType {
    match t {
        ChecksumType::FullObject => pb::ChecksumType::FullObject,
        ChecksumType::Composite => pb::ChecksumType::Composite,
    }
}

impl TryFrom<&pb::ChecksumValue> for ChecksumValue {
    type Error = MetaConvertError;
    fn try_from(c: &pb::ChecksumValue) -> Result<Self, Self::Error> {
        Ok(ChecksumValue {
            algorithm: checksum_algorithm_from_pb(c.algorithm)?
                .ok_or_else(|| missing("checksum.algorithm"))?,
            value: c.value.clone(),
            kind: checksum_type_from_pb(c.r#type)?,
        })
    }
}

impl From<&ChecksumValue> for pb::ChecksumValue {
    fn from(c: &ChecksumValue) -> Self {
        pb::ChecksumValue {
            algorithm: checksum_algorithm_to_pb(Some(c.algorithm)) as i32,
            value: c.value.clone(),
            r#type: checksum_type_to_pb(c.kind) as i32,
        }
    }
}

fn checksums(values: &[pb::ChecksumValue]) -> Result<Vec<ChecksumValue>, MetaConvertError> {
    values.iter().map(ChecksumValue::try_from).collect()
}

impl From<&pb::ContentHeaders> for ContentHeaders {
    fn from(h: &pb::ContentHeaders) -> Self {
        ContentHeaders {
            content_type: h.content_type.clone(),
            content_encoding: h.content_encoding.clone(),
            content_disposition: h.content_disposition.clone(),
            content_language: h.content_language.clone(),
            cache_control: h.cache_control.clone(),
            expires: h.expires.clone(),
        }
    }
}

impl From<&ContentHeaders> for pb::ContentHeaders {
    fn from(h: &ContentHeaders) -> Self {
        pb::ContentHeaders {
            content_type: h.content_type.clone(),
            content_encoding: h.content_encoding.clone(),
            content_disposition: h.content_disposition.clone(),
            content_language: h.content_language.clone(),
            cache_control: h.cache_control.clone(),
            expires: h.expires.clone(),
        }
    }
}

fn metadata_from_pb(m: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn metadata_to_pb(m: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

// --- versions, uploads, parts ---------------------------------------------------------------------

impl TryFrom<&pb::ObjectPart> for ObjectPart {
    type Error = MetaConvertError;
    fn try_from(p: &pb::ObjectPart) -> Result<Self, Self::Error> {
        Ok(ObjectPart {
            part_number: p.part_number,
            size: p.size,
            etag: p.etag.clone(),
            blob: Blob::try_from(p.blob.as_ref().ok_or_else(|| missing("part.blob"))?)?,
            checksums: checksums(&p.checksums)?,
        })
    }
}

impl From<&ObjectPart> for pb::ObjectPart {
    fn from(p: &ObjectPart) -> Self {
        pb::ObjectPart {
            part_number: p.part_number,
            size: p.size,
            etag: p.etag.clone(),
            blob: Some((&p.blob).into()),
            checksums: p.checksums.iter().map(pb::ChecksumValue::from).collect(),
        }
    }
}

/// A wire version id: empty (a command's placeholder) is `null`.
fn version_id(s: &str) -> Result<VersionId, MetaConvertError> {
    if s.is_empty() {
        return Ok(VersionId::null());
    }
    VersionId::parse(s).map_err(|source| MetaConvertError::Name {
        field: "version_id",
        source,
    })
}

impl TryFrom<&pb::ObjectVersion> for ObjectVersion {
    type Error = MetaConvertError;
    fn try_from(v: &pb::ObjectVersion) -> Result<Self, Self::Error> {
        Ok(ObjectVersion {
            bucket: bucket_name("version.bucket", &v.bucket)?,
            key: object_key("version.key", &v.key)?,
            version_id: version_id(&v.version_id)?,
            seq: v.seq,
            delete_marker: v.delete_marker,
            last_modified_ms: v.last_modified_ms,
            size: v.size,
            etag: v.etag.clone(),
            headers: v
                .headers
                .as_ref()
                .map(ContentHeaders::from)
                .unwrap_or_default(),
            user_metadata: metadata_from_pb(&v.user_metadata),
            checksums: checksums(&v.checksums)?,
            parts: v
                .parts
                .iter()
                .map(ObjectPart::try_from)
                .collect::<Result<_, _>>()?,
            multipart: v.multipart,
            storage_class: v.storage_class.clone(),
            upload_id: (!v.upload_id.is_empty()).then(|| v.upload_id.clone()),
        })
    }
}

impl From<&ObjectVersion> for pb::ObjectVersion {
    fn from(v: &ObjectVersion) -> Self {
        pb::ObjectVersion {
            bucket: v.bucket.as_str().to_owned(),
            key: v.key.as_str().to_owned(),
            version_id: v.version_id.as_str().to_owned(),
            seq: v.seq,
            delete_marker: v.delete_marker,
            last_modified_ms: v.last_modified_ms,
            size: v.size,
            etag: v.etag.clone(),
            headers: Some((&v.headers).into()),
            user_metadata: metadata_to_pb(&v.user_metadata),
            checksums: v.checksums.iter().map(pb::ChecksumValue::from).collect(),
            parts: v.parts.iter().map(pb::ObjectPart::from).collect(),
            multipart: v.multipart,
            storage_class: v.storage_class.clone(),
            upload_id: v.upload_id.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<&pb::MultipartUpload> for MultipartUpload {
    type Error = MetaConvertError;
    fn try_from(u: &pb::MultipartUpload) -> Result<Self, Self::Error> {
        Ok(MultipartUpload {
            bucket: bucket_name("upload.bucket", &u.bucket)?,
            key: object_key("upload.key", &u.key)?,
            upload_id: u.upload_id.clone(),
            initiated_ms: u.initiated_ms,
            headers: u
                .headers
                .as_ref()
                .map(ContentHeaders::from)
                .unwrap_or_default(),
            user_metadata: metadata_from_pb(&u.user_metadata),
            checksum_algorithm: checksum_algorithm_from_pb(u.checksum_algorithm)?,
            checksum_type: checksum_type_from_pb(u.checksum_type)?,
            storage_class: u.storage_class.clone(),
            customer_key_check: u.customer_key_check.clone(),
            kms: u.kms.as_ref().map(|k| UploadKms {
                key_id: k.key_id.clone(),
                context: k.context.clone(),
                dsse: k.dsse,
                bucket_key: k.bucket_key,
            }),
        })
    }
}

impl From<&MultipartUpload> for pb::MultipartUpload {
    fn from(u: &MultipartUpload) -> Self {
        pb::MultipartUpload {
            bucket: u.bucket.as_str().to_owned(),
            key: u.key.as_str().to_owned(),
            upload_id: u.upload_id.clone(),
            initiated_ms: u.initiated_ms,
            headers: Some((&u.headers).into()),
            user_metadata: metadata_to_pb(&u.user_metadata),
            checksum_algorithm: checksum_algorithm_to_pb(u.checksum_algorithm) as i32,
            checksum_type: checksum_type_to_pb(u.checksum_type) as i32,
            storage_class: u.storage_class.clone(),
            customer_key_check: u.customer_key_check.clone(),
            kms: u.kms.as_ref().map(|k| pb::UploadKms {
                key_id: k.key_id.clone(),
                context: k.context.clone(),
                dsse: k.dsse,
                bucket_key: k.bucket_key,
            }),
        }
    }
}

impl TryFrom<&pb::UploadedPart> for UploadedPart {
    type Error = MetaConvertError;
    fn try_from(p: &pb::UploadedPart) -> Result<Self, Self::Error> {
        Ok(UploadedPart {
            upload_id: p.upload_id.clone(),
            part_number: p.part_number,
            size: p.size,
            etag: p.etag.clone(),
            last_modified_ms: p.last_modified_ms,
            blob: Blob::try_from(p.blob.as_ref().ok_or_else(|| missing("part.blob"))?)?,
            checksums: checksums(&p.checksums)?,
        })
    }
}

impl From<&UploadedPart> for pb::UploadedPart {
    fn from(p: &UploadedPart) -> Self {
        pb::UploadedPart {
            upload_id: p.upload_id.clone(),
            part_number: p.part_number,
            size: p.size,
            etag: p.etag.clone(),
            last_modified_ms: p.last_modified_ms,
            blob: Some((&p.blob).into()),
            checksums: p.checksums.iter().map(pb::ChecksumValue::from).collect(),
        }
    }
}

// --- buckets, nodes, preconditions, leases --------------------------------------------------

/// A wire versioning state to core's.
pub fn versioning_from_pb(value: i32) -> Result<VersioningState, MetaConvertError> {
    match pb::VersioningState::try_from(value) {
        Ok(pb::VersioningState::VersioningUnversioned) => Ok(VersioningState::Unversioned),
        Ok(pb::VersioningState::VersioningEnabled) => Ok(VersioningState::Enabled),
        Ok(pb::VersioningState::VersioningSuspended) => Ok(VersioningState::Suspended),
        Err(_) => Err(MetaConvertError::UnknownEnum {
            field: "versioning",
            value,
        }),
    }
}

/// Core's versioning state on the wire.
pub fn versioning_to_pb(state: VersioningState) -> pb::VersioningState {
    match state {
        VersioningState::Unversioned => pb::VersioningState::VersioningUnversioned,
        VersioningState::Enabled => pb::VersioningState::VersioningEnabled,
        VersioningState::Suspended => pb::VersioningState::VersioningSuspended,
    }
}

impl TryFrom<&pb::Bucket> for Bucket {
    type Error = MetaConvertError;
    fn try_from(b: &pb::Bucket) -> Result<Self, Self::Error> {
        Ok(Bucket {
            name: bucket_name("bucket.name", &b.name)?,
            created_ms: b.created_ms,
            versioning: versioning_from_pb(b.versioning)?,
            owner: b.owner.clone(),
            region: b.region.clone(),
            encryption: b.encryption.as_ref().map(|e| BucketEncryption {
                algorithm: e.algorithm.clone(),
                kms_key_id: e.kms_key_id.clone(),
                bucket_key_enabled: e.bucket_key_enabled,
            }),
        })
    }
}

impl From<&Bucket> for pb::Bucket {
    fn from(b: &Bucket) -> Self {
        pb::Bucket {
            name: b.name.as_str().to_owned(),
            created_ms: b.created_ms,
            versioning: versioning_to_pb(b.versioning) as i32,
            owner: b.owner.clone(),
            region: b.region.clone(),
            encryption: b.encryption.as_ref().map(|e| pb::BucketEncryption {
                algorithm: e.algorithm.clone(),
                kms_key_id: e.kms_key_id.clone(),
                bucket_key_enabled: e.bucket_key_enabled,
            }),
        }
    }
}

impl TryFrom<&pb::DataNode> for DataNode {
    type Error = MetaConvertError;
    fn try_from(n: &pb::DataNode) -> Result<Self, Self::Error> {
        let state = match pb::NodeState::try_from(n.state) {
            Ok(pb::NodeState::Active) => NodeState::Active,
            Ok(pb::NodeState::Draining) => NodeState::Draining,
            Err(_) => {
                return Err(MetaConvertError::UnknownEnum {
                    field: "node.state",
                    value: n.state,
                });
            }
        };
        Ok(DataNode {
            id: NodeId(n.node_id),
            zone: ZoneName(n.zone.clone()),
            addr: n.addr.clone(),
            registered_ms: n.registered_ms,
            state,
        })
    }
}

impl From<&DataNode> for pb::DataNode {
    fn from(n: &DataNode) -> Self {
        pb::DataNode {
            node_id: n.id.0,
            zone: n.zone.0.clone(),
            addr: n.addr.clone(),
            registered_ms: n.registered_ms,
            state: match n.state {
                NodeState::Active => pb::NodeState::Active as i32,
                NodeState::Draining => pb::NodeState::Draining as i32,
            },
        }
    }
}

impl From<&pb::WritePrecondition> for WritePrecondition {
    fn from(p: &pb::WritePrecondition) -> Self {
        WritePrecondition {
            if_none_match_any: p.if_none_match_any,
            if_match: p.if_match.clone(),
        }
    }
}

impl From<&WritePrecondition> for pb::WritePrecondition {
    fn from(p: &WritePrecondition) -> Self {
        pb::WritePrecondition {
            if_none_match_any: p.if_none_match_any,
            if_match: p.if_match.clone(),
        }
    }
}

impl From<&pb::WriteLease> for WriteLease {
    fn from(l: &pb::WriteLease) -> Self {
        WriteLease {
            lease_id: l.lease_id,
            holder: l.holder.clone(),
            granted_ms: l.granted_ms,
            expires_ms: l.expires_ms,
        }
    }
}

impl From<&WriteLease> for pb::WriteLease {
    fn from(l: &WriteLease) -> Self {
        pb::WriteLease {
            lease_id: l.lease_id,
            holder: l.holder.clone(),
            granted_ms: l.granted_ms,
            expires_ms: l.expires_ms,
        }
    }
}

#[cfg(test)]
#[path = "meta_test.rs"]
mod tests;
