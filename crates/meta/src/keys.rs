//! Key layout of the state-machine column family. Every bucket-scoped record starts with a
//! one-letter family and the bucket name, so a bucket's keys form one contiguous range (buckets
//! could later be split over several Raft groups). Names, keys and upload ids never contain NUL
//! (the state machine rejects them), so NUL can separate components and the byte order of
//! encoded keys is the byte order of object keys; versions of a key sort newest first.
//!
//! | key | value |
//! | --- | --- |
//! | `b/<bucket>` | `Bucket` |
//! | `o/<bucket>\0<key>\0<u64::MAX - seq, BE>` | `ObjectVersion` |
//! | `u/<bucket>\0<key>\0<upload id>` | `MultipartUpload` |
//! | `ui/<upload id>` | the upload's `u/` key |
//! | `uc/<upload id>` | the `o/` key of the version completing that upload made |
//! | `p/<upload id>\0<part number, BE u32>` | `UploadedPart` |
//! | `n/<node id, BE>` | `DataNode` |
//! | `g/<log index, BE><i, BE u32>` | `Garbage` |
//! | `d/<data id, 16 bytes>` | `BlobOwner`: the record holding that erasure-coded blob |
//! | `x/<data id, 16><shard index, BE u32><node id, BE u64><generation, BE u64>` | `DeletionMark` |
//! | `r/<reporter>` | `RepairReport` |
//! | `l/<lease id, BE u64>` | `WriteLease` (the lease id is the log index of its grant) |
//! | `s/<client id, 16 bytes>` | `ClientSession` |
//! | `sr/<client id, 16 bytes><seq, BE u64>` | `CommandResult`: the first result of that command |
//! | `c/clock` | `MetaClock` |
//! | `kk/<name>\0<version, BE u32>` | `KekRecord` |
//! | `km/<KMS key id>` | `KmsKeyRecord` |
//! | `ka/<alias>` | the KMS key id the alias names (UTF-8) |
//!
//! Every erasure-coded blob of a version or an uploaded part has exactly one `d/` entry, written
//! and removed in the same batch as the record; inline blobs and garbage have none. A data id and
//! a client id are always 16 bytes, so `d/`, `x/`, `s/` and `sr/` keys have a fixed layout. A
//! `uc/` entry exists exactly as long as the version it names (whose `upload_id` points back).
//! Sessions idle for an hour of meta clock and leases forgotten by `WriteLease::is_forgettable`
//! are swept every 4096 log indexes.

/// Separates the components of a key; never part of a name.
pub const SEP: u8 = 0;

/// Prefix of bucket records.
pub const BUCKET_PREFIX: &[u8] = b"b/";
/// Prefix of object versions.
pub const OBJECT_PREFIX: &[u8] = b"o/";
/// Prefix of multipart uploads.
pub const UPLOAD_PREFIX: &[u8] = b"u/";
/// Prefix of the upload-id index.
pub const UPLOAD_INDEX_PREFIX: &[u8] = b"ui/";
/// Prefix of uploaded parts.
pub const PART_PREFIX: &[u8] = b"p/";
/// Prefix of data-node records.
pub const DATA_NODE_PREFIX: &[u8] = b"n/";
/// Prefix of garbage records.
pub const GARBAGE_PREFIX: &[u8] = b"g/";
/// Prefix of the data-id index.
pub const DATA_INDEX_PREFIX: &[u8] = b"d/";
/// Prefix of deletion marks.
pub const DELETION_MARK_PREFIX: &[u8] = b"x/";
/// Prefix of repair reports.
pub const REPAIR_REPORT_PREFIX: &[u8] = b"r/";
/// Prefix of the completed-upload index.
pub const COMPLETED_UPLOAD_PREFIX: &[u8] = b"uc/";
/// Prefix of write leases.
pub const LEASE_PREFIX: &[u8] = b"l/";
/// Prefix of client sessions.
pub const SESSION_PREFIX: &[u8] = b"s/";
/// Prefix of stored command results.
pub const SESSION_RESULT_PREFIX: &[u8] = b"sr/";
/// The meta clock.
pub const CLOCK: &[u8] = b"c/clock";
/// `kk/<name>\0<version BE4>`: key-encryption key versions, each wrapped under the root key.
pub const KEK_PREFIX: &[u8] = b"kk/";
/// `km/<key id>`: KMS key records.
pub const KMS_KEY_PREFIX: &[u8] = b"km/";
/// `ka/<alias>`: the KMS key an alias names.
pub const KMS_ALIAS_PREFIX: &[u8] = b"ka/";

/// The length of every data id.
pub const DATA_ID_LEN: usize = 16;
/// The length of every client id.
pub const CLIENT_ID_LEN: usize = 16;

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// `b/<bucket>`
pub fn bucket(name: &str) -> Vec<u8> {
    join(&[BUCKET_PREFIX, name.as_bytes()])
}

/// `o/<bucket>\0`: every version of every key of the bucket.
pub fn objects_of_bucket(bucket: &str) -> Vec<u8> {
    join(&[OBJECT_PREFIX, bucket.as_bytes(), &[SEP]])
}

/// `o/<bucket>\0<key>\0`: every version of one key, newest first.
pub fn versions_of_key(bucket: &str, key: &str) -> Vec<u8> {
    join(&[
        OBJECT_PREFIX,
        bucket.as_bytes(),
        &[SEP],
        key.as_bytes(),
        &[SEP],
    ])
}

/// `o/<bucket>\0<key>\0<u64::MAX - seq>`: one version.
pub fn object_version(bucket: &str, key: &str, seq: u64) -> Vec<u8> {
    let mut k = versions_of_key(bucket, key);
    k.extend_from_slice(&(u64::MAX - seq).to_be_bytes());
    k
}

/// The first position after every version of `key` and before the next key of the bucket.
/// Keys never contain NUL, so any longer key continues with a byte of at least 1.
pub fn after_key(bucket: &str, key: &str) -> Vec<u8> {
    join(&[
        OBJECT_PREFIX,
        bucket.as_bytes(),
        &[SEP],
        key.as_bytes(),
        &[1],
    ])
}

/// `o/<bucket>\0<name>`: where keys starting with `name` begin (a prefix, not a whole key).
pub fn object_name_start(bucket: &str, name: &str) -> Vec<u8> {
    join(&[OBJECT_PREFIX, bucket.as_bytes(), &[SEP], name.as_bytes()])
}

/// Splits an object-version key within `o/<bucket>\0` into the object key and seq.
pub fn parse_object_version<'a>(bucket_prefix: &[u8], raw: &'a [u8]) -> Option<(&'a str, u64)> {
    let rest = raw.strip_prefix(bucket_prefix)?;
    if rest.len() < 9 || rest[rest.len() - 9] != SEP {
        return None;
    }
    let (key, tail) = rest.split_at(rest.len() - 9);
    let inverted = u64::from_be_bytes(tail[1..].try_into().ok()?);
    Some((std::str::from_utf8(key).ok()?, u64::MAX - inverted))
}

/// `u/<bucket>\0`: every upload of the bucket.
pub fn uploads_of_bucket(bucket: &str) -> Vec<u8> {
    join(&[UPLOAD_PREFIX, bucket.as_bytes(), &[SEP]])
}

/// `u/<bucket>\0<key>\0<upload id>`
pub fn upload(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    join(&[
        UPLOAD_PREFIX,
        bucket.as_bytes(),
        &[SEP],
        key.as_bytes(),
        &[SEP],
        upload_id.as_bytes(),
    ])
}

/// `u/<bucket>\0<name>`: where uploads of keys starting with `name` begin.
pub fn upload_name_start(bucket: &str, name: &str) -> Vec<u8> {
    join(&[UPLOAD_PREFIX, bucket.as_bytes(), &[SEP], name.as_bytes()])
}

/// The first position after every upload of `key`.
pub fn after_upload_key(bucket: &str, key: &str) -> Vec<u8> {
    join(&[
        UPLOAD_PREFIX,
        bucket.as_bytes(),
        &[SEP],
        key.as_bytes(),
        &[1],
    ])
}

/// Splits an upload key within `u/<bucket>\0` into the object key and upload id.
pub fn parse_upload<'a>(bucket_prefix: &[u8], raw: &'a [u8]) -> Option<(&'a str, &'a str)> {
    let rest = raw.strip_prefix(bucket_prefix)?;
    let pos = rest.iter().position(|b| *b == SEP)?;
    let key = std::str::from_utf8(&rest[..pos]).ok()?;
    let upload_id = std::str::from_utf8(&rest[pos + 1..]).ok()?;
    Some((key, upload_id))
}

/// `ui/<upload id>`
pub fn upload_index(upload_id: &str) -> Vec<u8> {
    join(&[UPLOAD_INDEX_PREFIX, upload_id.as_bytes()])
}

/// `p/<upload id>\0`: every part of one upload, by part number.
pub fn parts_of_upload(upload_id: &str) -> Vec<u8> {
    join(&[PART_PREFIX, upload_id.as_bytes(), &[SEP]])
}

/// `p/<upload id>\0<part number>`
pub fn part(upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut k = parts_of_upload(upload_id);
    k.extend_from_slice(&part_number.to_be_bytes());
    k
}

/// `n/<node id>`
pub fn data_node(node_id: u64) -> Vec<u8> {
    join(&[DATA_NODE_PREFIX, &node_id.to_be_bytes()])
}

/// `g/<seq><i>`: the `i`-th blob that entry `seq` turned into garbage.
pub fn garbage(seq: u64, i: u32) -> Vec<u8> {
    join(&[GARBAGE_PREFIX, &seq.to_be_bytes(), &i.to_be_bytes()])
}

/// `d/<data id>`: which record owns the blob.
pub fn data_index(data_id: &[u8]) -> Vec<u8> {
    join(&[DATA_INDEX_PREFIX, data_id])
}

/// `x/<data id><shard index><node id><generation>`: that exact copy is claimed for deletion.
pub fn deletion_mark(data_id: &[u8], shard_index: u32, node_id: u64, generation: u64) -> Vec<u8> {
    join(&[
        DELETION_MARK_PREFIX,
        data_id,
        &shard_index.to_be_bytes(),
        &node_id.to_be_bytes(),
        &generation.to_be_bytes(),
    ])
}

/// `uc/<upload id>`: the version that completing the upload made.
pub fn completed_upload(upload_id: &str) -> Vec<u8> {
    join(&[COMPLETED_UPLOAD_PREFIX, upload_id.as_bytes()])
}

/// `l/<lease id>`
pub fn lease(lease_id: u64) -> Vec<u8> {
    join(&[LEASE_PREFIX, &lease_id.to_be_bytes()])
}

/// `s/<client id>`
pub fn session(client_id: &[u8]) -> Vec<u8> {
    join(&[SESSION_PREFIX, client_id])
}

/// `sr/<client id>`: every stored result of one client, by seq.
pub fn session_results(client_id: &[u8]) -> Vec<u8> {
    join(&[SESSION_RESULT_PREFIX, client_id])
}

/// `sr/<client id><seq>`
pub fn session_result(client_id: &[u8], seq: u64) -> Vec<u8> {
    let mut k = session_results(client_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The seq of a stored-result key within `sr/<client id>`.
pub fn parse_session_result(results_prefix: &[u8], raw: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = raw.strip_prefix(results_prefix)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The client id of a session key.
pub fn parse_session(raw: &[u8]) -> Option<&[u8]> {
    raw.strip_prefix(SESSION_PREFIX)
        .filter(|id| id.len() == CLIENT_ID_LEN)
}

/// `kk/<name>\0`: every version of one key-encryption key, oldest first.
pub fn kek_versions(name: &str) -> Vec<u8> {
    join(&[KEK_PREFIX, name.as_bytes(), &[SEP]])
}

/// `kk/<name>\0<version>`
pub fn kek(name: &str, version: u32) -> Vec<u8> {
    let mut k = kek_versions(name);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// `km/<key id>`
pub fn kms_key(key_id: &str) -> Vec<u8> {
    join(&[KMS_KEY_PREFIX, key_id.as_bytes()])
}

/// `ka/<alias>`
pub fn kms_alias(alias: &str) -> Vec<u8> {
    join(&[KMS_ALIAS_PREFIX, alias.as_bytes()])
}

/// `r/<reporter>`: the latest report of one repair daemon.
pub fn repair_report(reporter: &str) -> Vec<u8> {
    join(&[REPAIR_REPORT_PREFIX, reporter.as_bytes()])
}

/// The first key strictly after `key`.
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// The smallest byte string greater than every string starting with `prefix`, or `None` when
/// there is none (`prefix` is all 0xff).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < u8::MAX {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_a_key_sort_newest_first() {
        let old = object_version("b", "k", 5);
        let new = object_version("b", "k", 9);
        assert!(new < old);
        let prefix = objects_of_bucket("b");
        assert_eq!(parse_object_version(&prefix, &old), Some(("k", 5)));
        assert_eq!(parse_object_version(&prefix, &new), Some(("k", 9)));
        assert!(old.starts_with(&versions_of_key("b", "k")));
    }

    #[test]
    fn keys_sort_in_byte_order_whatever_their_versions() {
        // "a" < "a!" < "a/b" < "b" as S3 keys; every version of "a" comes before "a!".
        let names = ["a", "a!", "a/b", "b", "\u{e9}"];
        let mut encoded: Vec<Vec<u8>> = Vec::new();
        for n in names {
            encoded.push(object_version("bk", n, 0));
            encoded.push(object_version("bk", n, u64::MAX));
        }
        let mut sorted = encoded.clone();
        sorted.sort();
        let prefix = objects_of_bucket("bk");
        let order: Vec<&str> = sorted
            .iter()
            .filter_map(|k| parse_object_version(&prefix, k).map(|(n, _)| n))
            .collect();
        assert_eq!(
            order,
            [
                "a", "a", "a!", "a!", "a/b", "a/b", "b", "b", "\u{e9}", "\u{e9}"
            ]
        );
    }

    #[test]
    fn after_key_skips_exactly_the_versions_of_a_key() {
        let after = after_key("b", "a");
        assert!(object_version("b", "a", 0) < after);
        assert!(object_version("b", "a", u64::MAX) < after);
        assert!(object_version("b", "a!", 1) > after);
        assert!(object_version("b", "a\u{1}", 1) > after);
    }

    #[test]
    fn buckets_do_not_overlap() {
        // Bucket "a" must not see the keys of bucket "ab".
        let prefix = objects_of_bucket("a");
        assert!(!object_version("ab", "k", 1).starts_with(&prefix));
        assert!(!upload("ab", "k", "u").starts_with(&uploads_of_bucket("a")));
        assert!(!upload_index("u").starts_with(UPLOAD_PREFIX));
    }

    #[test]
    fn uploads_and_parts_round_trip() {
        let prefix = uploads_of_bucket("b");
        let raw = upload("b", "dir/key", "up-1");
        assert_eq!(parse_upload(&prefix, &raw), Some(("dir/key", "up-1")));
        assert!(part("u", 2) < part("u", 10));
        assert!(part("u", 1).starts_with(&parts_of_upload("u")));
        assert!(!part("uv", 1).starts_with(&parts_of_upload("u")));
        assert!(after_upload_key("b", "dir/key") > raw);
    }

    #[test]
    fn garbage_and_nodes_sort_numerically() {
        assert!(garbage(1, 7) < garbage(2, 0));
        assert!(garbage(2, 0) < garbage(2, 1));
        assert!(data_node(255) < data_node(256));
    }

    #[test]
    fn index_and_marks_have_a_fixed_layout() {
        let id = [7u8; DATA_ID_LEN];
        assert_eq!(data_index(&id).len(), 2 + DATA_ID_LEN);
        let mark = deletion_mark(&id, 2, 9, 5);
        assert_eq!(mark.len(), 2 + DATA_ID_LEN + 4 + 8 + 8);
        assert!(deletion_mark(&id, 1, u64::MAX, u64::MAX) < deletion_mark(&id, 2, 0, 0));
        assert_ne!(deletion_mark(&id, 2, 9, 5), deletion_mark(&id, 2, 9, 6));
        assert!(successor(b"g/a") > b"g/a".to_vec());
        assert!(successor(b"g/a") < b"g/a\0\0".to_vec());
        // No family is a prefix of another.
        let families = [
            BUCKET_PREFIX,
            OBJECT_PREFIX,
            UPLOAD_PREFIX,
            UPLOAD_INDEX_PREFIX,
            PART_PREFIX,
            DATA_NODE_PREFIX,
            GARBAGE_PREFIX,
            DATA_INDEX_PREFIX,
            DELETION_MARK_PREFIX,
            REPAIR_REPORT_PREFIX,
            COMPLETED_UPLOAD_PREFIX,
            LEASE_PREFIX,
            SESSION_PREFIX,
            SESSION_RESULT_PREFIX,
            KEK_PREFIX,
            KMS_KEY_PREFIX,
            KMS_ALIAS_PREFIX,
            b"c/",
        ];
        for a in families {
            for b in families {
                assert!(a == b || !a.starts_with(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn session_results_sort_by_seq_and_parse_back() {
        let client = [3u8; CLIENT_ID_LEN];
        let prefix = session_results(&client);
        assert!(session_result(&client, 255) < session_result(&client, 256));
        assert_eq!(
            parse_session_result(&prefix, &session_result(&client, 77)),
            Some(77)
        );
        assert_eq!(parse_session_result(&prefix, &session(&client)), None);
        assert_eq!(parse_session(&session(&client)), Some(&client[..]));
        assert_eq!(parse_session(b"s/short"), None);
        assert!(!session_result(&client, 1).starts_with(&session(&client)));
        assert!(lease(255) < lease(256));
        assert!(CLOCK.starts_with(b"c/"));
        assert!(!completed_upload("u").starts_with(UPLOAD_PREFIX));
    }

    #[test]
    fn prefix_successor_is_the_tightest_bound() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn malformed_version_keys_do_not_parse() {
        let prefix = objects_of_bucket("b");
        assert_eq!(parse_object_version(&prefix, b"o/b\0short"), None);
        assert_eq!(
            parse_object_version(&prefix, b"o/c\0k\0\0\0\0\0\0\0\0\0"),
            None
        );
    }
}
