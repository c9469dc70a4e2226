//! The read side of MetaService, answered from one consistent RocksDB snapshot of the state
//! machine. Listings follow S3: keys in byte order, only current versions that are not delete
//! markers, delimiter grouping where a common prefix counts as one entry (and is listed only if
//! some key under it is live) and everything under it is skipped by seeking past it, pages of
//! at most 1000 entries whose `is_truncated` is true only if another entry really follows.

use tessera_proto::meta::v1::{
    Bucket, DataNode, GetBucketRequest, GetBucketResponse, GetObjectRequest, GetObjectResponse,
    GetUploadRequest, GetUploadResponse, ListBucketsResponse, ListObjectsRequest,
    ListObjectsResponse, ListPartsRequest, ListPartsResponse, ListUploadsRequest,
    ListUploadsResponse, MultipartUpload, ObjectVersion, UploadedPart,
};

use crate::error::StoreError;
use crate::keys;
use crate::records;
use crate::store::{MetaStore, PrefixCursor, decode};

/// The most entries one page returns, and the page size when the request says 0.
pub const MAX_PAGE: u32 = 1000;

fn page_size(requested: u32) -> usize {
    if requested == 0 {
        MAX_PAGE as usize
    } else {
        requested.min(MAX_PAGE) as usize
    }
}

/// The common prefix `key` rolls up into: `prefix` plus everything up to and including the first
/// `delimiter` after it; `None` when `key` does not start with `prefix` or has no delimiter
/// after it.
pub fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: &str) -> Option<&'k str> {
    let rest = key.strip_prefix(prefix)?;
    let pos = rest.find(delimiter)?;
    Some(&key[..prefix.len() + pos + delimiter.len()])
}

/// A bucket by name.
pub fn get_bucket(
    store: &MetaStore,
    req: &GetBucketRequest,
) -> Result<GetBucketResponse, StoreError> {
    let view = store.snapshot_view()?;
    Ok(GetBucketResponse {
        bucket: records::bucket(&view, &req.name)?,
    })
}

/// Every bucket, by name.
pub fn list_buckets(store: &MetaStore) -> Result<ListBucketsResponse, StoreError> {
    let view = store.snapshot_view()?;
    let buckets = view
        .scan::<Bucket>(keys::BUCKET_PREFIX.to_vec(), "bucket")?
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    Ok(ListBucketsResponse { buckets })
}

/// The current version of a key (possibly a delete marker), or one version by id.
pub fn get_object(
    store: &MetaStore,
    req: &GetObjectRequest,
) -> Result<GetObjectResponse, StoreError> {
    let view = store.snapshot_view()?;
    if records::bucket(&view, &req.bucket)?.is_none() {
        return Ok(GetObjectResponse {
            version: None,
            no_such_bucket: true,
        });
    }
    let version = match &req.version_id {
        Some(id) => records::version_by_id(&view, &req.bucket, &req.key, id)?,
        None => records::current_version(&view, &req.bucket, &req.key)?,
    };
    Ok(GetObjectResponse {
        version,
        no_such_bucket: false,
    })
}

/// One page of current versions, with delimiter grouping.
pub fn list_objects(
    store: &MetaStore,
    req: &ListObjectsRequest,
) -> Result<ListObjectsResponse, StoreError> {
    let view = store.snapshot_view()?;
    let mut resp = ListObjectsResponse::default();
    if records::bucket(&view, &req.bucket)?.is_none() {
        resp.no_such_bucket = true;
        return Ok(resp);
    }
    let max = page_size(req.max_keys);
    let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());
    let bucket = req.bucket.as_str();
    let prefix = req.prefix.as_str();
    let bucket_prefix = keys::objects_of_bucket(bucket);
    let mut cursor = view.cursor(keys::object_name_start(bucket, prefix));
    if !req.start_after.is_empty() {
        let rolled_up = delimiter.and_then(|d| common_prefix(&req.start_after, prefix, d));
        let target = match rolled_up {
            Some(cp) => keys::prefix_successor(&keys::object_name_start(bucket, cp)),
            None => Some(keys::after_key(bucket, &req.start_after)),
        };
        match target {
            Some(t) => cursor.seek(&t),
            None => return Ok(resp),
        }
    }
    let mut emitted = 0usize;
    let mut last = String::new();
    while let Some((raw, value)) = cursor.next_raw()? {
        let (key, _) =
            keys::parse_object_version(&bucket_prefix, raw).ok_or(StoreError::MalformedKey {
                cf: crate::store::CF_SM,
            })?;
        let key = key.to_owned();
        // The first version met of a key is its newest; older ones are skipped in one seek.
        let version: ObjectVersion = decode(value, "object version")?;
        if let Some(cp) = delimiter.and_then(|d| common_prefix(&key, prefix, d)) {
            // A common prefix is listed only if some key under it is live.
            let cp = cp.to_owned();
            let live = !version.delete_marker
                || any_live_key_after(&mut cursor, bucket, &bucket_prefix, &key, &cp)?;
            if live {
                if emitted == max {
                    resp.is_truncated = true;
                    break;
                }
                emitted += 1;
                resp.common_prefixes.push(cp.clone());
            }
            let next = keys::prefix_successor(&keys::object_name_start(bucket, &cp));
            if live {
                last = cp;
            }
            match next {
                Some(next) => cursor.seek(&next),
                None => break,
            }
            continue;
        }
        cursor.seek(&keys::after_key(bucket, &key));
        if version.delete_marker {
            continue;
        }
        if emitted == max {
            resp.is_truncated = true;
            break;
        }
        emitted += 1;
        resp.objects.push(version);
        last = key;
    }
    resp.next_marker = last;
    Ok(resp)
}

/// Whether some key after `key` under the common prefix `cp` has a live current version (not
/// a delete marker). Moves the cursor; the caller seeks past `cp` afterwards.
fn any_live_key_after(
    cursor: &mut PrefixCursor<'_>,
    bucket: &str,
    bucket_prefix: &[u8],
    key: &str,
    cp: &str,
) -> Result<bool, StoreError> {
    let mut after = keys::after_key(bucket, key);
    loop {
        cursor.seek(&after);
        let Some((raw, value)) = cursor.next_raw()? else {
            return Ok(false);
        };
        let (next_key, _) =
            keys::parse_object_version(bucket_prefix, raw).ok_or(StoreError::MalformedKey {
                cf: crate::store::CF_SM,
            })?;
        if !next_key.starts_with(cp) {
            return Ok(false);
        }
        let current: ObjectVersion = decode(value, "object version")?;
        if !current.delete_marker {
            return Ok(true);
        }
        after = keys::after_key(bucket, next_key);
    }
}

/// An upload by id.
pub fn get_upload(
    store: &MetaStore,
    req: &GetUploadRequest,
) -> Result<GetUploadResponse, StoreError> {
    let view = store.snapshot_view()?;
    Ok(GetUploadResponse {
        upload: records::upload_by_id(&view, &req.upload_id)?.map(|(_, u)| u),
    })
}

/// One page of an upload's parts after `part_number_marker`.
pub fn list_parts(
    store: &MetaStore,
    req: &ListPartsRequest,
) -> Result<ListPartsResponse, StoreError> {
    let view = store.snapshot_view()?;
    let mut resp = ListPartsResponse::default();
    if records::upload_by_id(&view, &req.upload_id)?.is_none() {
        resp.no_such_upload = true;
        return Ok(resp);
    }
    let max = page_size(req.max_parts);
    let mut cursor = view.cursor(keys::parts_of_upload(&req.upload_id));
    if req.part_number_marker > 0 {
        let Some(first) = req.part_number_marker.checked_add(1) else {
            return Ok(resp);
        };
        cursor.seek(&keys::part(&req.upload_id, first));
    }
    while let Some((_, value)) = cursor.next_raw()? {
        if resp.parts.len() == max {
            resp.is_truncated = true;
            break;
        }
        let part: UploadedPart = decode(value, "uploaded part")?;
        resp.next_part_number_marker = part.part_number;
        resp.parts.push(part);
    }
    Ok(resp)
}

/// One page of in-progress uploads of a bucket, by key then upload id, with delimiter
/// grouping and S3's key-marker / upload-id-marker semantics.
pub fn list_uploads(
    store: &MetaStore,
    req: &ListUploadsRequest,
) -> Result<ListUploadsResponse, StoreError> {
    let view = store.snapshot_view()?;
    let mut resp = ListUploadsResponse::default();
    if records::bucket(&view, &req.bucket)?.is_none() {
        resp.no_such_bucket = true;
        return Ok(resp);
    }
    let max = page_size(req.max_uploads);
    let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());
    let bucket = req.bucket.as_str();
    let prefix = req.prefix.as_str();
    let bucket_prefix = keys::uploads_of_bucket(bucket);
    let mut cursor = view.cursor(keys::upload_name_start(bucket, prefix));
    if !req.key_marker.is_empty() {
        let marker = req.key_marker.as_str();
        let target = match delimiter.and_then(|d| common_prefix(marker, prefix, d)) {
            Some(cp) => keys::prefix_successor(&keys::upload_name_start(bucket, cp)),
            // Uploads of the marker key itself after this upload id, then later keys.
            None if !req.upload_id_marker.is_empty() => {
                let mut k = keys::upload(bucket, marker, &req.upload_id_marker);
                k.push(0);
                Some(k)
            }
            None => Some(keys::after_upload_key(bucket, marker)),
        };
        match target {
            Some(t) => cursor.seek(&t),
            None => return Ok(resp),
        }
    }
    let mut emitted = 0usize;
    let mut last = (String::new(), String::new());
    while let Some((raw, value)) = cursor.next_raw()? {
        let (key, _) = keys::parse_upload(&bucket_prefix, raw).ok_or(StoreError::MalformedKey {
            cf: crate::store::CF_SM,
        })?;
        let key = key.to_owned();
        if emitted == max {
            resp.is_truncated = true;
            break;
        }
        emitted += 1;
        if let Some(cp) = delimiter.and_then(|d| common_prefix(&key, prefix, d)) {
            let cp = cp.to_owned();
            resp.common_prefixes.push(cp.clone());
            last = (cp.clone(), String::new());
            match keys::prefix_successor(&keys::upload_name_start(bucket, &cp)) {
                Some(next) => cursor.seek(&next),
                None => break,
            }
            continue;
        }
        let upload: MultipartUpload = decode(value, "multipart upload")?;
        last = (key, upload.upload_id.clone());
        resp.uploads.push(upload);
    }
    (resp.next_key_marker, resp.next_upload_id_marker) = last;
    Ok(resp)
}

/// Every registered data node, by id.
pub fn data_nodes(store: &MetaStore) -> Result<Vec<DataNode>, StoreError> {
    let view = store.snapshot_view()?;
    Ok(view
        .scan::<DataNode>(keys::DATA_NODE_PREFIX.to_vec(), "data node")?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

#[cfg(test)]
#[path = "query_test.rs"]
mod tests;
