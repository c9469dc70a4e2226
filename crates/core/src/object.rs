//! The metadata records of the S3 model as Tessera's own types: buckets, object versions (with
//! their parts and blobs), multipart uploads and their parts, data nodes. The state machine,
//! the gateway and repair speak these; protobuf forms exist only on the wire and on disk
//! (`tessera_proto::convert::meta`).
//!
//! Invariant: a value of these types is well formed: names and ids are valid, a checksum
//! names a real algorithm, every blob passes [`crate::blob::ErasureBlob::validate`]. Fields the
//! state machine assigns (a version's id, seq and time) are placeholders in commands and are
//! overwritten when the command applies.

use std::collections::BTreeMap;
use std::fmt;

use crate::blob::Blob;
use crate::checksum::{ChecksumAlgorithm, ChecksumType};
use crate::names::{BucketName, NodeId, ObjectKey, VersionId, ZoneName};

/// A bucket's versioning state. A bucket never returns to `Unversioned`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VersioningState {
    /// Never enabled: every key has at most the `null` version.
    #[default]
    Unversioned,
    /// Every write adds a version.
    Enabled,
    /// Writes replace the `null` version; older versions stay.
    Suspended,
}

/// A bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Its name.
    pub name: BucketName,
    /// When it was made (meta clock, ms).
    pub created_ms: i64,
    /// Its versioning state.
    pub versioning: VersioningState,
    /// Canonical id of its owner.
    pub owner: String,
    /// The region it lives in.
    pub region: String,
    /// Its default encryption (PutBucketEncryption); `None`: SSE-S3.
    pub encryption: Option<BucketEncryption>,
}

/// A bucket's default encryption for new objects that ask for none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketEncryption {
    /// `AES256`, `aws:kms` or `aws:kms:dsse`.
    pub algorithm: String,
    /// The KMS key's id (aliases are resolved when the default is set); empty: `aws/s3`.
    pub kms_key_id: String,
    /// Whether S3 Bucket Keys are on (answered as set).
    pub bucket_key_enabled: bool,
}

/// The content headers S3 stores with an object and returns on GET and HEAD.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentHeaders {
    /// Content-Type.
    pub content_type: Option<String>,
    /// Content-Encoding.
    pub content_encoding: Option<String>,
    /// Content-Disposition.
    pub content_disposition: Option<String>,
    /// Content-Language.
    pub content_language: Option<String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
    /// Expires, as the client sent it.
    pub expires: Option<String>,
}

/// A checksum as S3 shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChecksumValue {
    /// Which algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// Base64 of the digest, with `-N` appended for a composite one.
    pub value: String,
    /// Whole-object or composite.
    pub kind: ChecksumType,
}

/// One part of a version: the whole body of a single PUT, or one completed multipart part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectPart {
    /// 1 for a single PUT; the part number for multipart.
    pub part_number: u32,
    /// Bytes.
    pub size: u64,
    /// Quoted MD5 ETag of the part's bytes.
    pub etag: String,
    /// Where the bytes are.
    pub blob: Blob,
    /// The part's own checksums.
    pub checksums: Vec<ChecksumValue>,
}

/// One version of one object (or a delete marker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The bucket.
    pub bucket: BucketName,
    /// The key.
    pub key: ObjectKey,
    /// `null`, or made from `seq` in versioned buckets (assigned by the state machine).
    pub version_id: VersionId,
    /// Log index of the command that wrote it; orders the versions of a key.
    pub seq: u64,
    /// Whether this is a delete marker (no parts, no bytes).
    pub delete_marker: bool,
    /// Meta clock when it was written (ms since the epoch).
    pub last_modified_ms: i64,
    /// Bytes of the object.
    pub size: u64,
    /// Quoted ETag: `"md5"` or `"md5-of-md5s-N"`.
    pub etag: String,
    /// Content headers.
    pub headers: ContentHeaders,
    /// `x-amz-meta-*` pairs, by name.
    pub user_metadata: BTreeMap<String, String>,
    /// Whole-object checksums.
    pub checksums: Vec<ChecksumValue>,
    /// The parts, in order.
    pub parts: Vec<ObjectPart>,
    /// Whether it was made by CompleteMultipartUpload.
    pub multipart: bool,
    /// S3 storage class name.
    pub storage_class: String,
    /// The multipart upload that made it, if any.
    pub upload_id: Option<String>,
}

impl ObjectVersion {
    /// The `null` version of `key` with nothing in it: no bytes, headers, checksums or parts,
    /// seq and times 0. Records are built from it by struct update, naming only what they set.
    pub fn new(bucket: BucketName, key: ObjectKey) -> ObjectVersion {
        ObjectVersion {
            bucket,
            key,
            version_id: VersionId::null(),
            seq: 0,
            delete_marker: false,
            last_modified_ms: 0,
            size: 0,
            etag: String::new(),
            headers: ContentHeaders::default(),
            user_metadata: BTreeMap::new(),
            checksums: Vec::new(),
            parts: Vec::new(),
            multipart: false,
            storage_class: String::new(),
            upload_id: None,
        }
    }

    /// The same version without any inline object bytes (see
    /// [`Blob::without_inline_bytes`]).
    pub fn without_inline_bytes(&self) -> ObjectVersion {
        let mut v = self.clone();
        for part in &mut v.parts {
            part.blob = part.blob.without_inline_bytes();
        }
        v
    }
}

/// An open multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultipartUpload {
    /// The bucket.
    pub bucket: BucketName,
    /// The key the object will get.
    pub key: ObjectKey,
    /// The upload's id.
    pub upload_id: String,
    /// When it was created (ms).
    pub initiated_ms: i64,
    /// Content headers the object will get.
    pub headers: ContentHeaders,
    /// User metadata the object will get.
    pub user_metadata: BTreeMap<String, String>,
    /// The checksum algorithm asked for at creation, if any.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// How the object's checksum is formed.
    pub checksum_type: ChecksumType,
    /// Storage class the object will get.
    pub storage_class: String,
    /// For an upload created with SSE-C, the key check of the customer's key (every part must
    /// come with that key); empty otherwise.
    pub customer_key_check: Vec<u8>,
    /// For an upload created with SSE-KMS or DSSE-KMS, the key and context of every part.
    pub kms: Option<UploadKms>,
}

/// The KMS sealing of every part of an upload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadKms {
    /// The KMS key's id (resolved when the upload was created).
    pub key_id: String,
    /// The encryption context, canonical JSON (empty for none).
    pub context: Vec<u8>,
    /// Two layers (DSSE-KMS).
    pub dsse: bool,
    /// Sealed with an S3 Bucket Key (SSE-KMS only).
    pub bucket_key: bool,
}

/// A part uploaded to an open multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedPart {
    /// The upload.
    pub upload_id: String,
    /// 1..=10000.
    pub part_number: u32,
    /// Bytes.
    pub size: u64,
    /// Quoted MD5 ETag.
    pub etag: String,
    /// When it was uploaded (ms).
    pub last_modified_ms: i64,
    /// Where the bytes are.
    pub blob: Blob,
    /// The part's checksums.
    pub checksums: Vec<ChecksumValue>,
}

/// The conditions of a conditional write, checked when the command applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WritePrecondition {
    /// `If-None-Match: *`: fail if a live current version exists.
    pub if_none_match_any: bool,
    /// `If-Match`: fail unless the live current version has this (quoted) ETag; `*` matches any.
    pub if_match: Option<String>,
}

/// What an operator set a data node to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Holds shards and takes new writes.
    #[default]
    Active,
    /// Leaving: no new writes; repair moves every shard off it.
    Draining,
}

/// A registered data node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataNode {
    /// Its id.
    pub id: NodeId,
    /// Its failure domain.
    pub zone: ZoneName,
    /// Where it serves ("host:port").
    pub addr: String,
    /// When it last registered (ms).
    pub registered_ms: i64,
    /// Active or draining.
    pub state: NodeState,
}

impl fmt::Display for VersioningState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VersioningState::Unversioned => "Unversioned",
            VersioningState::Enabled => "Enabled",
            VersioningState::Suspended => "Suspended",
        })
    }
}
