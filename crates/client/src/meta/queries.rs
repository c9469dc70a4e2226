//! One typed method per meta query (linearizable reads): records come back as core types.
//!
//! Invariant: a query's answer converts whole or the query fails with
//! [`MetaClientError::Convert`]: a record this build cannot read is never skipped silently (a
//! repair pass must not judge, or a collector delete, what it did not understand).

use tessera_core::blob::ErasureBlob;
use tessera_core::names::{BucketName, DataId, ObjectKey, VersionId};
use tessera_core::object::{Bucket, MultipartUpload, ObjectVersion, UploadedPart};
use tessera_proto::meta::v1 as pb;

use super::{MetaClient, MetaClientError};

/// The answer to a version lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectLookup {
    /// The version asked for (the current one, which may be a delete marker, when no id was
    /// given); `None` when the key or version does not exist.
    pub version: Option<ObjectVersion>,
    /// Set when the bucket does not exist.
    pub no_such_bucket: bool,
}

/// A page request of a bucket's current objects, with S3's delimiter grouping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListObjects {
    /// The bucket.
    pub bucket: BucketName,
    /// Only keys starting with this.
    pub prefix: String,
    /// Groups keys by the part after the prefix up to this.
    pub delimiter: Option<String>,
    /// Exclusive: listing starts after this key (or common prefix).
    pub start_after: String,
    /// At most this many keys and prefixes (0: the service's default).
    pub max_keys: u32,
}

impl ListObjects {
    /// A listing of the whole bucket from the start.
    pub fn new(bucket: BucketName) -> ListObjects {
        ListObjects {
            bucket,
            prefix: String::new(),
            delimiter: None,
            start_after: String::new(),
            max_keys: 0,
        }
    }
}

/// One page of a bucket's current objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectPage {
    /// Current versions, in key order (delete markers skipped).
    pub objects: Vec<ObjectVersion>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Whether more follow.
    pub is_truncated: bool,
    /// The last key or prefix returned; the next page starts after it.
    pub next_marker: String,
    /// Set when the bucket does not exist.
    pub no_such_bucket: bool,
}

/// The answer to an upload lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadLookup {
    /// The open upload.
    pub upload: Option<MultipartUpload>,
    /// When the upload is gone because it was completed and its version still exists: that
    /// version (a retried Complete answers it).
    pub completed: Option<ObjectVersion>,
}

/// One page of an upload's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartPage {
    /// Parts in part-number order.
    pub parts: Vec<UploadedPart>,
    /// Whether more follow.
    pub is_truncated: bool,
    /// The next page starts after this part number.
    pub next_part_number_marker: u32,
    /// Set when the upload does not exist.
    pub no_such_upload: bool,
}

/// A page request of a bucket's open uploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListUploads {
    /// The bucket.
    pub bucket: BucketName,
    /// Only keys starting with this.
    pub prefix: String,
    /// Groups keys by the part after the prefix up to this.
    pub delimiter: Option<String>,
    /// Resume after this key ...
    pub key_marker: String,
    /// ... and this upload id.
    pub upload_id_marker: String,
    /// At most this many (0: the service's default).
    pub max_uploads: u32,
}

impl ListUploads {
    /// A listing of all the bucket's uploads from the start.
    pub fn new(bucket: BucketName) -> ListUploads {
        ListUploads {
            bucket,
            prefix: String::new(),
            delimiter: None,
            key_marker: String::new(),
            upload_id_marker: String::new(),
            max_uploads: 0,
        }
    }
}

/// One page of a bucket's open uploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadPage {
    /// Uploads in (key, upload id) order.
    pub uploads: Vec<MultipartUpload>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Whether more follow.
    pub is_truncated: bool,
    /// Resume after this key ...
    pub next_key_marker: String,
    /// ... and this upload id.
    pub next_upload_id_marker: String,
    /// Set when the bucket does not exist.
    pub no_such_bucket: bool,
}

/// A family of records holding erasure-coded blobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlobFamily {
    /// Parts of committed object versions.
    Versions,
    /// Parts uploaded to open multipart uploads.
    UploadParts,
    /// Garbage records.
    Garbage,
}

impl BlobFamily {
    fn to_pb(self) -> pb::BlobFamily {
        match self {
            BlobFamily::Versions => pb::BlobFamily::Versions,
            BlobFamily::UploadParts => pb::BlobFamily::UploadParts,
            BlobFamily::Garbage => pb::BlobFamily::Garbage,
        }
    }

    fn from_pb(value: i32) -> Result<BlobFamily, MetaClientError> {
        match pb::BlobFamily::try_from(value) {
            Ok(pb::BlobFamily::Versions) => Ok(BlobFamily::Versions),
            Ok(pb::BlobFamily::UploadParts) => Ok(BlobFamily::UploadParts),
            Ok(pb::BlobFamily::Garbage) => Ok(BlobFamily::Garbage),
            Err(_) => Err(MetaClientError::Convert {
                op: "scan_blobs",
                source: tessera_proto::convert::meta::MetaConvertError::UnknownEnum {
                    field: "blob family",
                    value,
                },
            }),
        }
    }
}

/// One erasure-coded blob and the record that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    /// The record's family.
    pub family: BlobFamily,
    /// The record's state-machine key (a garbage key for [`BlobFamily::Garbage`]).
    pub record_key: Vec<u8>,
    /// For versions: the index into the version's parts.
    pub part_index: u32,
    /// The object's bucket, where the record names one (for people and logs).
    pub bucket: String,
    /// The object's key, where the record names one.
    pub key: String,
    /// The version's id, where the record names one.
    pub version_id: String,
    /// The upload's id, for upload parts.
    pub upload_id: String,
    /// The part number, for upload parts.
    pub part_number: u32,
    /// Bytes of the object or part.
    pub size: u64,
    /// The manifest: layout, placement, shard digests.
    pub blob: ErasureBlob,
    /// Versions and parts: last modified; garbage: since when (meta clock, ms).
    pub time_ms: i64,
}

impl BlobRef {
    fn from_pb(op: &'static str, b: &pb::BlobRef) -> Result<BlobRef, MetaClientError> {
        let blob = b
            .blob
            .as_ref()
            .ok_or_else(|| MetaClientError::missing(op, "blob"))?;
        Ok(BlobRef {
            family: BlobFamily::from_pb(b.family)?,
            record_key: b.record_key.clone(),
            part_index: b.part_index,
            bucket: b.bucket.clone(),
            key: b.key.clone(),
            version_id: b.version_id.clone(),
            upload_id: b.upload_id.clone(),
            part_number: b.part_number,
            size: b.size,
            blob: ErasureBlob::try_from(blob).map_err(MetaClientError::convert(op))?,
            time_ms: b.time_ms,
        })
    }
}

/// One page of a blob scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobPage {
    /// The blobs of the records visited.
    pub blobs: Vec<BlobRef>,
    /// Resume after this key.
    pub next_after: Vec<u8>,
    /// Whether the scan reached the end of the family.
    pub done: bool,
}

fn versions(
    op: &'static str,
    list: &[pb::ObjectVersion],
) -> Result<Vec<ObjectVersion>, MetaClientError> {
    list.iter()
        .map(ObjectVersion::try_from)
        .collect::<Result<_, _>>()
        .map_err(MetaClientError::convert(op))
}

impl MetaClient {
    /// A bucket by name.
    pub async fn get_bucket(&self, name: &BucketName) -> Result<Option<Bucket>, MetaClientError> {
        let req = pb::GetBucketRequest {
            name: name.as_str().to_owned(),
        };
        let resp = self
            .call("get_bucket", |mut c| {
                let req = req.clone();
                async move { c.get_bucket(req).await }
            })
            .await?;
        resp.bucket
            .as_ref()
            .map(Bucket::try_from)
            .transpose()
            .map_err(MetaClientError::convert("get_bucket"))
    }

    /// Every bucket, by name.
    pub async fn list_buckets(&self) -> Result<Vec<Bucket>, MetaClientError> {
        let resp = self
            .call("list_buckets", |mut c| async move {
                c.list_buckets(pb::ListBucketsRequest {}).await
            })
            .await?;
        resp.buckets
            .iter()
            .map(Bucket::try_from)
            .collect::<Result<_, _>>()
            .map_err(MetaClientError::convert("list_buckets"))
    }

    /// The current version of a key (which may be a delete marker), or one version by id.
    pub async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&VersionId>,
    ) -> Result<ObjectLookup, MetaClientError> {
        let req = pb::GetObjectRequest {
            bucket: bucket.as_str().to_owned(),
            key: key.as_str().to_owned(),
            version_id: version_id.map(|v| v.as_str().to_owned()),
        };
        let resp = self
            .call("get_object", |mut c| {
                let req = req.clone();
                async move { c.get_object(req).await }
            })
            .await?;
        Ok(ObjectLookup {
            version: resp
                .version
                .as_ref()
                .map(ObjectVersion::try_from)
                .transpose()
                .map_err(MetaClientError::convert("get_object"))?,
            no_such_bucket: resp.no_such_bucket,
        })
    }

    /// Every version of one key, newest first (delete markers included), without inline
    /// object bytes; `None` when the bucket does not exist.
    pub async fn list_versions(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Option<Vec<ObjectVersion>>, MetaClientError> {
        let req = pb::ListVersionsRequest {
            bucket: bucket.as_str().to_owned(),
            key: key.as_str().to_owned(),
        };
        let resp = self
            .call("list_versions", |mut c| {
                let req = req.clone();
                async move { c.list_versions(req).await }
            })
            .await?;
        if resp.no_such_bucket {
            return Ok(None);
        }
        resp.versions
            .iter()
            .map(ObjectVersion::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(MetaClientError::convert("list_versions"))
    }

    /// One page of a bucket's current objects.
    pub async fn list_objects(&self, list: &ListObjects) -> Result<ObjectPage, MetaClientError> {
        let req = pb::ListObjectsRequest {
            bucket: list.bucket.as_str().to_owned(),
            prefix: list.prefix.clone(),
            delimiter: list.delimiter.clone(),
            start_after: list.start_after.clone(),
            max_keys: list.max_keys,
        };
        let resp = self
            .call("list_objects", |mut c| {
                let req = req.clone();
                async move { c.list_objects(req).await }
            })
            .await?;
        Ok(ObjectPage {
            objects: versions("list_objects", &resp.objects)?,
            common_prefixes: resp.common_prefixes,
            is_truncated: resp.is_truncated,
            next_marker: resp.next_marker,
            no_such_bucket: resp.no_such_bucket,
        })
    }

    /// A multipart upload by id, or the version it made if it was completed.
    pub async fn get_upload(&self, upload_id: &str) -> Result<UploadLookup, MetaClientError> {
        let req = pb::GetUploadRequest {
            upload_id: upload_id.to_owned(),
        };
        let resp = self
            .call("get_upload", |mut c| {
                let req = req.clone();
                async move { c.get_upload(req).await }
            })
            .await?;
        let convert = MetaClientError::convert;
        Ok(UploadLookup {
            upload: resp
                .upload
                .as_ref()
                .map(MultipartUpload::try_from)
                .transpose()
                .map_err(convert("get_upload"))?,
            completed: resp
                .completed
                .as_ref()
                .map(ObjectVersion::try_from)
                .transpose()
                .map_err(convert("get_upload"))?,
        })
    }

    /// One page of an upload's parts: at most `max_parts` (0: the service's default) after
    /// part number `part_number_marker`.
    pub async fn list_parts(
        &self,
        upload_id: &str,
        part_number_marker: u32,
        max_parts: u32,
    ) -> Result<PartPage, MetaClientError> {
        let req = pb::ListPartsRequest {
            upload_id: upload_id.to_owned(),
            part_number_marker,
            max_parts,
        };
        let resp = self
            .call("list_parts", |mut c| {
                let req = req.clone();
                async move { c.list_parts(req).await }
            })
            .await?;
        Ok(PartPage {
            parts: resp
                .parts
                .iter()
                .map(UploadedPart::try_from)
                .collect::<Result<_, _>>()
                .map_err(MetaClientError::convert("list_parts"))?,
            is_truncated: resp.is_truncated,
            next_part_number_marker: resp.next_part_number_marker,
            no_such_upload: resp.no_such_upload,
        })
    }

    /// One page of a bucket's open uploads.
    pub async fn list_uploads(&self, list: &ListUploads) -> Result<UploadPage, MetaClientError> {
        let req = pb::ListUploadsRequest {
            bucket: list.bucket.as_str().to_owned(),
            prefix: list.prefix.clone(),
            delimiter: list.delimiter.clone(),
            key_marker: list.key_marker.clone(),
            upload_id_marker: list.upload_id_marker.clone(),
            max_uploads: list.max_uploads,
        };
        let resp = self
            .call("list_uploads", |mut c| {
                let req = req.clone();
                async move { c.list_uploads(req).await }
            })
            .await?;
        Ok(UploadPage {
            uploads: resp
                .uploads
                .iter()
                .map(MultipartUpload::try_from)
                .collect::<Result<_, _>>()
                .map_err(MetaClientError::convert("list_uploads"))?,
            common_prefixes: resp.common_prefixes,
            is_truncated: resp.is_truncated,
            next_key_marker: resp.next_key_marker,
            next_upload_id_marker: resp.next_upload_id_marker,
            no_such_bucket: resp.no_such_bucket,
        })
    }

    /// One page of the erasure-coded blobs of a record family: at most `limit` records (0 means
    /// 1000) strictly after the state-machine key `after` (empty: from the start). Resume with
    /// the page's `next_after` until `done`.
    pub async fn scan_blobs(
        &self,
        family: BlobFamily,
        after: &[u8],
        limit: u32,
    ) -> Result<BlobPage, MetaClientError> {
        let req = pb::ScanBlobsRequest {
            family: family.to_pb() as i32,
            after: after.to_vec(),
            limit,
        };
        let resp = self
            .call("scan_blobs", |mut c| {
                let req = req.clone();
                async move { c.scan_blobs(req).await }
            })
            .await?;
        Ok(BlobPage {
            blobs: resp
                .blobs
                .iter()
                .map(|b| BlobRef::from_pb("scan_blobs", b))
                .collect::<Result<_, _>>()?,
            next_after: resp.next_after,
            done: resp.done,
        })
    }

    /// The record that owns the blob `data_id` now, with its current placement; `None` when no
    /// record references it.
    pub async fn get_blob(&self, data_id: &DataId) -> Result<Option<BlobRef>, MetaClientError> {
        let req = pb::GetBlobRequest {
            data_id: data_id.as_bytes().to_vec(),
        };
        let resp = self
            .call("get_blob", |mut c| {
                let req = req.clone();
                async move { c.get_blob(req).await }
            })
            .await?;
        resp.blob
            .as_ref()
            .map(|b| BlobRef::from_pb("get_blob", b))
            .transpose()
    }

    /// The cluster as the answering meta node sees it, with its state machine's applied index
    /// and meta clock (`applied_index`, `meta_time_ms`) read after a linearizable barrier.
    pub async fn cluster_status(&self) -> Result<pb::ClusterStatusResponse, MetaClientError> {
        self.call("cluster_status", |mut c| async move {
            c.cluster_status(pb::ClusterStatusRequest {}).await
        })
        .await
    }

    /// The state machine's applied log index: every command committed before this call is at
    /// or below it (repair reads it before listing data nodes).
    pub async fn applied_index(&self) -> Result<u64, MetaClientError> {
        Ok(self.cluster_status().await?.applied_index)
    }
}
