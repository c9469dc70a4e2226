//! Typed reads of state-machine records shared by the applier and the queries, so both agree on
//! what "the current version" or "the null version" of a key is: the current version is the
//! newest (lowest encoded) version key of the object key; at most one version is "null". A
//! blob's owner is what the data-id index names, and only if that record still holds an
//! erasure-coded blob with that data id (a dangling entry counts as no owner).

use tessera_core::names::VersionId;
use tessera_proto::meta::v1::{
    Blob, BlobOwner, Bucket, ErasureBlob, MultipartUpload, ObjectVersion, UploadedPart, blob,
};

use crate::error::StoreError;
use crate::keys;
use crate::store::View;

/// The bucket record, if the bucket exists.
pub(crate) fn bucket(view: &View<'_>, name: &str) -> Result<Option<Bucket>, StoreError> {
    view.get_pb(&keys::bucket(name), "bucket")
}

/// The newest version of `key` (possibly a delete marker).
pub(crate) fn current_version(
    view: &View<'_>,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectVersion>, StoreError> {
    let mut cursor = view.cursor(keys::versions_of_key(bucket, key));
    match cursor.next_raw()? {
        None => Ok(None),
        Some((_, value)) => crate::store::decode(value, "object version").map(Some),
    }
}

/// Every version of `key`, newest first.
pub(crate) fn versions(
    view: &View<'_>,
    bucket: &str,
    key: &str,
) -> Result<Vec<ObjectVersion>, StoreError> {
    Ok(view
        .scan::<ObjectVersion>(keys::versions_of_key(bucket, key), "object version")?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// The version of `key` with id `version_id`; `None` when it does not exist or the id is not a
/// valid version id.
pub(crate) fn version_by_id(
    view: &View<'_>,
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
            let found: Option<ObjectVersion> =
                view.get_pb(&keys::object_version(bucket, key, seq), "object version")?;
            Ok(found.filter(|v| v.version_id == version_id))
        }
        None => Ok(versions(view, bucket, key)?
            .into_iter()
            .find(|v| v.version_id == id.as_str())),
    }
}

/// An upload by id, with the key of its `u/` record.
pub(crate) fn upload_by_id(
    view: &View<'_>,
    upload_id: &str,
) -> Result<Option<(Vec<u8>, MultipartUpload)>, StoreError> {
    let Some(upload_key) = view.get(&keys::upload_index(upload_id))? else {
        return Ok(None);
    };
    let upload: Option<MultipartUpload> = view.get_pb(&upload_key, "multipart upload")?;
    Ok(upload.map(|u| (upload_key, u)))
}

/// Every uploaded part of an upload, by part number.
pub(crate) fn parts(
    view: &View<'_>,
    upload_id: &str,
) -> Result<Vec<(Vec<u8>, UploadedPart)>, StoreError> {
    view.scan(keys::parts_of_upload(upload_id), "uploaded part")
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

/// A record that can own a blob.
#[derive(Debug, Clone)]
pub(crate) enum BlobRecord {
    /// A committed object version (one of its parts holds the blob); boxed, versions are big.
    Version(Box<ObjectVersion>),
    /// A part of an open multipart upload.
    Part(UploadedPart),
}

impl OwnedBlob {
    /// The owned blob.
    pub(crate) fn blob(&self) -> Option<&Blob> {
        match &self.record {
            BlobRecord::Version(v) => v
                .parts
                .get(self.part_index as usize)
                .and_then(|p| p.blob.as_ref()),
            BlobRecord::Part(p) => p.blob.as_ref(),
        }
    }

    /// The owned blob, for an update of its placement.
    pub(crate) fn blob_mut(&mut self) -> Option<&mut Blob> {
        match &mut self.record {
            BlobRecord::Version(v) => v
                .parts
                .get_mut(self.part_index as usize)
                .and_then(|p| p.blob.as_mut()),
            BlobRecord::Part(p) => p.blob.as_mut(),
        }
    }

    /// The owned blob's shards and layout.
    pub(crate) fn erasure(&self) -> Option<&ErasureBlob> {
        erasure_of(self.blob())
    }
}

/// The erasure-coded form of a blob, if it is one.
pub(crate) fn erasure_of(blob: Option<&Blob>) -> Option<&ErasureBlob> {
    match blob.and_then(|b| b.storage.as_ref()) {
        Some(blob::Storage::Erasure(e)) => Some(e),
        _ => None,
    }
}

/// What the data-id index says about `data_id`, without checking the record.
pub(crate) fn blob_owner(view: &View<'_>, data_id: &[u8]) -> Result<Option<BlobOwner>, StoreError> {
    view.get_pb(&keys::data_index(data_id), "blob owner")
}

/// The record that owns the blob `data_id`, loaded; `None` when no record does.
pub(crate) fn owned_blob(view: &View<'_>, data_id: &[u8]) -> Result<Option<OwnedBlob>, StoreError> {
    let Some(owner) = blob_owner(view, data_id)? else {
        return Ok(None);
    };
    let key = owner.record_key;
    let record = if key.starts_with(keys::OBJECT_PREFIX) {
        view.get_pb::<ObjectVersion>(&key, "object version")?
            .map(|v| BlobRecord::Version(Box::new(v)))
    } else if key.starts_with(keys::PART_PREFIX) {
        view.get_pb::<UploadedPart>(&key, "uploaded part")?
            .map(BlobRecord::Part)
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
    let matches = owned.erasure().is_some_and(|e| e.data_id == data_id);
    Ok(matches.then_some(owned))
}
