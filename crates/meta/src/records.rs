//! Typed reads of state-machine records shared by the applier and the queries, so both agree on
//! what "the current version" or "the null version" of a key is: the current version is the
//! newest (lowest encoded) version key of the object key; at most one version is "null".

use tessera_core::names::VersionId;
use tessera_proto::meta::v1::{Bucket, MultipartUpload, ObjectVersion, UploadedPart};

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
