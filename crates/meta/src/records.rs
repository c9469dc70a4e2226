//! Typed reads of state-machine records, shared by the applier and the queries so both agree on
//! what "the current version" or "the null version" of a key is: the current version is the
//! newest (lowest encoded) version key of the object key; at most one version is "null". A
//! blob's owner is what the data-id index names, and only if that record still holds an
//! erasure-coded blob with that data id (a dangling entry counts as no owner).
//!
//! Invariant: every record is read through its `tessera_proto::convert::meta` conversion into a
//! core type, so a record that does not make a valid domain value is reported as a store
//! failure (`StoreError::InvalidRecord`), never used.

use prost::Message;
use tessera_core::blob::{Blob, ErasureBlob, ShardCopy};
use tessera_core::lease::WriteLease;
use tessera_core::names::{DataId, VersionId};
use tessera_core::object::{Bucket, DataNode, MultipartUpload, ObjectVersion, UploadedPart};
use tessera_proto::convert::meta::MetaConvertError;
use tessera_proto::meta::v1 as pb;

use crate::error::StoreError;
use crate::keys;
use crate::kv::{KvRead, KvReadExt, decode};

/// Converts a decoded wire record into its core type.
pub(crate) fn typed<'p, P, T>(record: &'p P, what: &'static str) -> Result<T, StoreError>
where
    T: TryFrom<&'p P, Error = MetaConvertError>,
{
    T::try_from(record).map_err(|source| StoreError::InvalidRecord { what, source })
}

/// Decodes and converts one stored record.
pub(crate) fn decode_typed<P, T>(bytes: &[u8], what: &'static str) -> Result<T, StoreError>
where
    P: Message + Default,
    T: for<'p> TryFrom<&'p P, Error = MetaConvertError>,
{
    let record: P = decode(bytes, what)?;
    typed(&record, what)
}

fn get_typed<P, T>(kv: &dyn KvRead, key: &[u8], what: &'static str) -> Result<Option<T>, StoreError>
where
    P: Message + Default,
    T: for<'p> TryFrom<&'p P, Error = MetaConvertError>,
{
    match kv.get(key)? {
        None => Ok(None),
        Some(bytes) => decode_typed::<P, T>(&bytes, what).map(Some),
    }
}

/// A stored object version.
pub(crate) fn decode_version(bytes: &[u8]) -> Result<ObjectVersion, StoreError> {
    decode_typed::<pb::ObjectVersion, ObjectVersion>(bytes, "object version")
}

/// The bucket record, if the bucket exists.
pub(crate) fn bucket(kv: &dyn KvRead, name: &str) -> Result<Option<Bucket>, StoreError> {
    get_typed::<pb::Bucket, Bucket>(kv, &keys::bucket(name), "bucket")
}

/// The version stored at `key`.
pub(crate) fn version_at(kv: &dyn KvRead, key: &[u8]) -> Result<Option<ObjectVersion>, StoreError> {
    get_typed::<pb::ObjectVersion, ObjectVersion>(kv, key, "object version")
}

/// The newest version of `key` (possibly a delete marker).
pub(crate) fn current_version(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectVersion>, StoreError> {
    match kv
        .cursor(&keys::versions_of_key(bucket, key))
        .next_entry()?
    {
        None => Ok(None),
        Some((_, value)) => decode_version(&value).map(Some),
    }
}

/// Every version of `key`, newest first.
pub(crate) fn versions(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
) -> Result<Vec<ObjectVersion>, StoreError> {
    let mut cursor = kv.cursor(&keys::versions_of_key(bucket, key));
    let mut out = Vec::new();
    while let Some((_, value)) = cursor.next_entry()? {
        out.push(decode_version(&value)?);
    }
    Ok(out)
}

/// The `null` version of `key`, if there is one.
pub(crate) fn null_version(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectVersion>, StoreError> {
    Ok(versions(kv, bucket, key)?
        .into_iter()
        .find(|v| v.version_id.is_null()))
}

/// The version of `key` with id `version_id`; `None` when it does not exist or the id is not a
/// valid version id.
pub(crate) fn version_by_id(
    kv: &dyn KvRead,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<Option<ObjectVersion>, StoreError> {
    let Ok(id) = VersionId::parse(version_id) else {
        return Ok(None);
    };
    match id.seq() {
        // A sequence-made id names the version written by that log entry, if it still exists
        // and was written under that id (a null version written at the same seq is not it).
        Some(seq) => {
            Ok(version_at(kv, &keys::object_version(bucket, key, seq))?
                .filter(|v| v.version_id == id))
        }
        None => null_version(kv, bucket, key),
    }
}

/// An open upload by id, with the key of its `u/` record.
pub(crate) fn upload_by_id(
    kv: &dyn KvRead,
    upload_id: &str,
) -> Result<Option<(Vec<u8>, MultipartUpload)>, StoreError> {
    let Some(upload_key) = kv.get(&keys::upload_index(upload_id))? else {
        return Ok(None);
    };
    let upload =
        get_typed::<pb::MultipartUpload, MultipartUpload>(kv, &upload_key, "multipart upload")?;
    Ok(upload.map(|u| (upload_key, u)))
}

/// The version a completed upload made, with its key, while that version exists.
pub(crate) fn completed_upload(
    kv: &dyn KvRead,
    upload_id: &str,
) -> Result<Option<(Vec<u8>, ObjectVersion)>, StoreError> {
    let Some(version_key) = kv.get(&keys::completed_upload(upload_id))? else {
        return Ok(None);
    };
    let version =
        version_at(kv, &version_key)?.filter(|v| v.upload_id.as_deref() == Some(upload_id));
    Ok(version.map(|v| (version_key, v)))
}

/// Every uploaded part of an upload, by part number, with its key.
pub(crate) fn parts(
    kv: &dyn KvRead,
    upload_id: &str,
) -> Result<Vec<(Vec<u8>, UploadedPart)>, StoreError> {
    let mut cursor = kv.cursor(&keys::parts_of_upload(upload_id));
    let mut out = Vec::new();
    while let Some((key, value)) = cursor.next_entry()? {
        let part = decode_typed::<pb::UploadedPart, UploadedPart>(&value, "uploaded part")?;
        out.push((key, part));
    }
    Ok(out)
}

/// The uploaded part stored at `key`.
pub(crate) fn part_at(kv: &dyn KvRead, key: &[u8]) -> Result<Option<UploadedPart>, StoreError> {
    get_typed::<pb::UploadedPart, UploadedPart>(kv, key, "uploaded part")
}

/// A registered data node.
pub(crate) fn data_node(kv: &dyn KvRead, node_id: u64) -> Result<Option<DataNode>, StoreError> {
    get_typed::<pb::DataNode, DataNode>(kv, &keys::data_node(node_id), "data node")
}

/// A write lease the state machine still remembers.
pub(crate) fn lease(kv: &dyn KvRead, lease_id: u64) -> Result<Option<WriteLease>, StoreError> {
    Ok(kv
        .get_pb::<pb::WriteLease>(&keys::lease(lease_id), "write lease")?
        .map(|l| WriteLease::from(&l)))
}

/// The newest version of key-encryption key `name`, if it has any.
pub(crate) fn newest_kek(kv: &dyn KvRead, name: &str) -> Result<Option<pb::KekRecord>, StoreError> {
    Ok(kv
        .scan_pb::<pb::KekRecord>(&keys::kek_versions(name), "key-encryption key")?
        .into_iter()
        .map(|(_, k)| k)
        .next_back())
}

/// Every key-encryption key version, by name then version (without key material).
pub(crate) fn list_keks(kv: &dyn KvRead) -> Result<Vec<pb::KekInfo>, StoreError> {
    Ok(kv
        .scan_pb::<pb::KekRecord>(keys::KEK_PREFIX, "key-encryption key")?
        .into_iter()
        .map(|(_, k)| pb::KekInfo {
            name: k.name,
            version: k.version,
            created_ms: k.created_ms,
        })
        .collect())
}

/// Version `version` of key-encryption key `name`.
pub(crate) fn kek(
    kv: &dyn KvRead,
    name: &str,
    version: u32,
) -> Result<Option<pb::KekRecord>, StoreError> {
    kv.get_pb(&keys::kek(name, version), "key-encryption key")
}

/// KMS key `key_id`'s record, if the key exists.
pub(crate) fn kms_key(
    kv: &dyn KvRead,
    key_id: &str,
) -> Result<Option<pb::KmsKeyRecord>, StoreError> {
    kv.get_pb(&keys::kms_key(key_id), "KMS key")
}

/// The id of the KMS key `alias` names, if any.
pub(crate) fn kms_alias(kv: &dyn KvRead, alias: &str) -> Result<Option<String>, StoreError> {
    match kv.get(&keys::kms_alias(alias))? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| StoreError::InvalidRecord {
                what: "KMS alias",
                source: MetaConvertError::Missing {
                    field: "kms alias key id (not UTF-8)",
                },
            }),
    }
}

/// Every KMS key, by id.
pub(crate) fn list_kms_keys(kv: &dyn KvRead) -> Result<Vec<pb::KmsKeyRecord>, StoreError> {
    Ok(kv
        .scan_pb::<pb::KmsKeyRecord>(keys::KMS_KEY_PREFIX, "KMS key")?
        .into_iter()
        .map(|(_, k)| k)
        .collect())
}

/// A garbage record: a blob no record references, and since when (meta clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GarbageRecord {
    /// The blob; its copies are the ones to delete.
    pub(crate) blob: Blob,
    /// Meta clock when it became garbage.
    pub(crate) since_ms: i64,
}

/// The garbage record at `key`.
pub(crate) fn garbage(kv: &dyn KvRead, key: &[u8]) -> Result<Option<GarbageRecord>, StoreError> {
    let Some(record) = kv.get_pb::<pb::Garbage>(key, "garbage")? else {
        return Ok(None);
    };
    let blob = record.blob.as_ref().ok_or(StoreError::InvalidRecord {
        what: "garbage",
        source: MetaConvertError::Missing {
            field: "garbage.blob",
        },
    })?;
    Ok(Some(GarbageRecord {
        blob: typed(blob, "garbage")?,
        since_ms: record.since_ms,
    }))
}

/// Who claimed the copy for deletion, if anyone did.
pub(crate) fn deletion_mark(
    kv: &dyn KvRead,
    data_id: &DataId,
    copy: &ShardCopy,
) -> Result<Option<String>, StoreError> {
    let key = keys::deletion_mark(
        data_id.as_bytes(),
        copy.shard_index,
        copy.node.0,
        copy.generation.get(),
    );
    Ok(kv
        .get_pb::<pb::DeletionMark>(&key, "deletion mark")?
        .map(|m| m.claimer))
}

/// The record that holds an erasure-coded blob, as the data-id index finds it.
#[derive(Debug, Clone)]
pub(crate) struct OwnedBlob {
    /// The record's state-machine key.
    pub(crate) record_key: Vec<u8>,
    /// The index into the version's parts; 0 for an uploaded part.
    pub(crate) part_index: u32,
    /// The record itself.
    pub(crate) record: BlobRecord,
}

/// A record that can own a blob (boxed: both are big).
#[derive(Debug, Clone)]
pub(crate) enum BlobRecord {
    /// A committed object version (one of its parts holds the blob).
    Version(Box<ObjectVersion>),
    /// A part of an open multipart upload.
    Part(Box<UploadedPart>),
}

impl OwnedBlob {
    /// The owned blob.
    pub(crate) fn blob(&self) -> Option<&Blob> {
        match &self.record {
            BlobRecord::Version(v) => v.parts.get(self.part_index as usize).map(|p| &p.blob),
            BlobRecord::Part(p) => Some(&p.blob),
        }
    }

    /// The owned blob, for an update of its placement.
    pub(crate) fn blob_mut(&mut self) -> Option<&mut Blob> {
        match &mut self.record {
            BlobRecord::Version(v) => v
                .parts
                .get_mut(self.part_index as usize)
                .map(|p| &mut p.blob),
            BlobRecord::Part(p) => Some(&mut p.blob),
        }
    }

    /// The owned blob's shards and layout.
    pub(crate) fn erasure(&self) -> Option<&ErasureBlob> {
        self.blob().and_then(Blob::erasure)
    }

    /// Whether the owner's placement names exactly this copy.
    pub(crate) fn references(&self, copy: &ShardCopy) -> bool {
        self.erasure().is_some_and(|e| e.shards.contains(copy))
    }
}

/// What the data-id index says about `data_id`, without checking the record.
pub(crate) fn blob_owner(
    kv: &dyn KvRead,
    data_id: &DataId,
) -> Result<Option<pb::BlobOwner>, StoreError> {
    kv.get_pb(&keys::data_index(data_id.as_bytes()), "blob owner")
}

/// The record that owns the blob `data_id`, loaded; `None` when no record does.
pub(crate) fn owned_blob(
    kv: &dyn KvRead,
    data_id: &DataId,
) -> Result<Option<OwnedBlob>, StoreError> {
    let Some(owner) = blob_owner(kv, data_id)? else {
        return Ok(None);
    };
    let key = owner.record_key;
    let record = if key.starts_with(keys::OBJECT_PREFIX) {
        version_at(kv, &key)?.map(|v| BlobRecord::Version(Box::new(v)))
    } else if key.starts_with(keys::PART_PREFIX) {
        part_at(kv, &key)?.map(|p| BlobRecord::Part(Box::new(p)))
    } else {
        None
    };
    let Some(record) = record else {
        return Ok(None);
    };
    let owned = OwnedBlob {
        record_key: key,
        part_index: owner.part_index,
        record,
    };
    let matches = owned.erasure().is_some_and(|e| e.data_id == *data_id);
    Ok(matches.then_some(owned))
}
