//! Reads and S3 listings over a state machine filled through real commands (the real applier
//! over an in-memory state).

use super::*;
use tessera_core::names::VersionId;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::{
    CreateBucket, CreateUpload, SetBucketVersioning, VersioningState, command,
};

use crate::test_support::{self, SPREAD, Sim, put_version, version_with};

struct Fixture {
    sim: Sim,
}

impl Fixture {
    fn new() -> Self {
        let mut f = Fixture { sim: Sim::new() };
        f.apply(vec![command::Cmd::CreateBucket(CreateBucket {
            bucket: Some(Bucket {
                name: "bkt".into(),
                owner: "o".into(),
                ..Bucket::default()
            }),
        })]);
        f
    }

    fn source(&self) -> &dyn KvSource {
        &self.sim.kv
    }

    /// Applies commands as consecutive entries; returns their indexes.
    fn apply(&mut self, cmds: Vec<command::Cmd>) -> Vec<u64> {
        cmds.into_iter()
            .map(|cmd| {
                let (index, result) = self.sim.run(cmd);
                if let pb::command_result::Result::Error(e) = result {
                    panic!("setup command rejected: {e:?}");
                }
                index
            })
            .collect()
    }

    fn put_keys(&mut self, keys: &[&str]) -> Vec<u64> {
        self.apply(keys.iter().map(|k| put(k)).collect())
    }

    fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: &str,
        max: u32,
    ) -> ListObjectsResponse {
        list_objects(
            self.source(),
            &ListObjectsRequest {
                bucket: "bkt".into(),
                prefix: prefix.into(),
                delimiter: delimiter.map(str::to_owned),
                start_after: start_after.into(),
                max_keys: max,
            },
        )
        .expect("list")
    }
}

fn put(key: &str) -> command::Cmd {
    put_version(
        ObjectVersion {
            bucket: "bkt".into(),
            key: key.into(),
            etag: "\"e\"".into(),
            ..ObjectVersion::default()
        },
        0,
    )
}

fn delete(key: &str, version_id: Option<&str>) -> command::Cmd {
    test_support::delete("bkt", key, version_id)
}

fn enable_versioning() -> command::Cmd {
    command::Cmd::SetBucketVersioning(SetBucketVersioning {
        bucket: "bkt".into(),
        state: VersioningState::VersioningEnabled as i32,
    })
}

fn names(resp: &ListObjectsResponse) -> Vec<&str> {
    resp.objects.iter().map(|o| o.key.as_str()).collect()
}

const TREE: &[&str] = &[
    "a.txt",
    "photos/2023/x.jpg",
    "photos/2024/a.jpg",
    "photos/2024/b.jpg",
    "photos/readme",
    "videos/v.mp4",
    "z",
];

#[test]
fn common_prefix_rolls_up_to_the_first_delimiter_after_the_prefix() {
    assert_eq!(common_prefix("a/b/c", "", "/"), Some("a/"));
    assert_eq!(common_prefix("a/b/c", "a/", "/"), Some("a/b/"));
    assert_eq!(common_prefix("a/b/c", "a/b/", "/"), None);
    assert_eq!(common_prefix("a/b/c", "x", "/"), None);
    assert_eq!(common_prefix("a--b--c", "a", "--"), Some("a--"));
}

#[test]
fn prefixes_and_delimiters_group_keys_like_s3() {
    let mut f = Fixture::new();
    f.put_keys(TREE);

    let all = f.list("", None, "", 0);
    assert_eq!(names(&all), TREE);
    assert!(!all.is_truncated);
    assert_eq!(all.next_marker, "z");

    let root = f.list("", Some("/"), "", 0);
    assert_eq!(names(&root), ["a.txt", "z"]);
    assert_eq!(root.common_prefixes, ["photos/", "videos/"]);

    let photos = f.list("photos/", Some("/"), "", 0);
    assert_eq!(names(&photos), ["photos/readme"]);
    assert_eq!(photos.common_prefixes, ["photos/2023/", "photos/2024/"]);

    let year = f.list("photos/2024/", Some("/"), "", 0);
    assert_eq!(names(&year), ["photos/2024/a.jpg", "photos/2024/b.jpg"]);
    assert!(year.common_prefixes.is_empty());

    let partial = f.list("photos/20", None, "", 0);
    assert_eq!(partial.objects.len(), 3);

    // An empty delimiter means no grouping.
    assert_eq!(f.list("", Some(""), "", 0).objects.len(), TREE.len());
    // Nothing matches a prefix past every key.
    assert!(f.list("zz", Some("/"), "", 0).objects.is_empty());
}

#[test]
fn pages_count_common_prefixes_as_one_entry_and_resume_after_the_marker() {
    let mut f = Fixture::new();
    f.put_keys(TREE);
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let page = f.list("", Some("/"), &marker, 1);
        assert_eq!(page.objects.len() + page.common_prefixes.len(), 1);
        seen.extend(page.objects.iter().map(|o| o.key.clone()));
        seen.extend(page.common_prefixes.iter().cloned());
        marker = page.next_marker.clone();
        if !page.is_truncated {
            break;
        }
    }
    assert_eq!(seen, ["a.txt", "photos/", "videos/", "z"]);

    // A start_after inside an already listed common prefix continues after that prefix.
    let resumed = f.list("", Some("/"), "photos/2023/x.jpg", 0);
    assert!(names(&resumed).iter().all(|k| !k.starts_with("photos/")));
    assert_eq!(resumed.common_prefixes, ["videos/"]);

    // Without a delimiter, start_after is exclusive and may name a missing key.
    assert_eq!(
        names(&f.list("", None, "photos/2024/a.jpg", 2)),
        ["photos/2024/b.jpg", "photos/readme"]
    );
    assert_eq!(
        names(&f.list("", None, "photos/2024/a", 1)),
        ["photos/2024/a.jpg"]
    );
    // A start_after before the prefix starts at the prefix.
    assert_eq!(names(&f.list("videos/", None, "a", 0)), ["videos/v.mp4"]);
    // A start_after past everything gives an empty, untruncated page.
    let end = f.list("", None, "zz", 0);
    assert!(end.objects.is_empty() && !end.is_truncated);
}

#[test]
fn delete_markers_hide_keys_and_older_versions_never_show() {
    let mut f = Fixture::new();
    f.apply(vec![enable_versioning()]);
    let written = f.put_keys(&["k1", "k2", "k2", "k3", "dir/gone", "dir2/gone", "dir2/live"]);
    f.apply(vec![
        delete("k1", None),
        delete("dir/gone", None),
        delete("dir2/gone", None),
    ]);
    let all = f.list("", None, "", 0);
    assert_eq!(names(&all), ["dir2/live", "k2", "k3"]);
    let k2 = &all.objects[1];
    assert_eq!(k2.seq, written[2], "the newest version of k2");

    // "dir/" holds only a deleted key, so it is no common prefix; "dir2/" has a live key.
    let grouped = f.list("", Some("/"), "", 0);
    assert_eq!(grouped.common_prefixes, ["dir2/"]);
    assert_eq!(names(&grouped), ["k2", "k3"]);

    // Pages resume after the marker and skip hidden keys on the way.
    let page = f.list("", None, "", 2);
    assert_eq!(names(&page), ["dir2/live", "k2"]);
    assert!(page.is_truncated);
    let last = f.list("", None, &page.next_marker, 2);
    assert_eq!(names(&last), ["k3"]);
    assert!(!last.is_truncated);
}

#[test]
fn a_page_ending_before_only_hidden_keys_is_not_truncated() {
    let mut f = Fixture::new();
    f.apply(vec![enable_versioning()]);
    f.put_keys(&["a", "bkt", "c"]);
    f.apply(vec![delete("bkt", None), delete("c", None)]);
    let page = f.list("", None, "", 1);
    assert_eq!(names(&page), ["a"]);
    assert!(!page.is_truncated);
}

#[test]
fn thousands_of_keys_page_in_thousands() {
    let mut f = Fixture::new();
    let keys: Vec<String> = (0..2500).map(|i| format!("key-{i:05}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    f.put_keys(&refs);

    let mut listed = Vec::new();
    let mut marker = String::new();
    let mut pages = Vec::new();
    loop {
        let page = f.list("", None, &marker, 1000);
        pages.push((page.objects.len(), page.is_truncated));
        listed.extend(page.objects.iter().map(|o| o.key.clone()));
        marker = page.next_marker.clone();
        if !page.is_truncated {
            break;
        }
    }
    assert_eq!(pages, [(1000, true), (1000, true), (500, false)]);
    assert_eq!(listed, keys);
    // 0 means 1000, and more than 1000 is capped.
    assert_eq!(f.list("", None, "", 0).objects.len(), 1000);
    assert_eq!(f.list("", None, "", 5000).objects.len(), 1000);
}

#[test]
fn missing_buckets_and_uploads_are_flagged() {
    let f = Fixture::new();
    let objects = list_objects(
        f.source(),
        &ListObjectsRequest {
            bucket: "nope".into(),
            ..ListObjectsRequest::default()
        },
    )
    .expect("list");
    assert!(objects.no_such_bucket);
    let got = get_object(
        f.source(),
        &GetObjectRequest {
            bucket: "nope".into(),
            key: "k".into(),
            version_id: None,
        },
    )
    .expect("get");
    assert!(got.no_such_bucket);
    let uploads = list_uploads(
        f.source(),
        &ListUploadsRequest {
            bucket: "nope".into(),
            ..ListUploadsRequest::default()
        },
    )
    .expect("uploads");
    assert!(uploads.no_such_bucket);
    let parts = list_parts(
        f.source(),
        &ListPartsRequest {
            upload_id: "nope".into(),
            ..ListPartsRequest::default()
        },
    )
    .expect("parts");
    assert!(parts.no_such_upload);
    assert!(
        get_upload(
            f.source(),
            &GetUploadRequest {
                upload_id: "nope".into()
            }
        )
        .expect("upload")
        .upload
        .is_none()
    );
}

#[test]
fn get_object_finds_the_current_or_a_named_version() {
    let mut f = Fixture::new();
    f.put_keys(&["k"]); // null version from before versioning
    f.apply(vec![enable_versioning()]);
    let v2 = f.put_keys(&["k"])[0];
    let marker = f.apply(vec![delete("k", None)])[0];
    let get = |version_id: Option<String>| {
        get_object(
            f.source(),
            &GetObjectRequest {
                bucket: "bkt".into(),
                key: "k".into(),
                version_id,
            },
        )
        .expect("get")
        .version
    };
    let current = get(None).expect("current");
    assert!(current.delete_marker);
    assert_eq!(current.seq, marker);
    let named = get(Some(VersionId::from_seq(v2).as_str().to_owned())).expect("v2");
    assert_eq!(named.seq, v2);
    let null = get(Some("null".into())).expect("null");
    assert_eq!(null.version_id, "null");
    assert!(get(Some(VersionId::from_seq(999).as_str().to_owned())).is_none());
    assert!(get(Some("garbage".into())).is_none());
    // The null version's seq must not be reachable under a sequence-made id.
    assert!(get(Some(VersionId::from_seq(null.seq).as_str().to_owned())).is_none());
}

#[test]
fn every_version_of_a_key_is_listed_newest_first_with_its_markers() {
    let mut f = Fixture::new();
    f.put_keys(&["k", "other"]); // null version from before versioning
    f.apply(vec![enable_versioning()]);
    let v2 = f.put_keys(&["k"])[0];
    let marker = f.apply(vec![delete("k", None)])[0];
    let list = |bucket: &str| {
        list_versions(
            f.source(),
            &ListVersionsRequest {
                bucket: bucket.into(),
                key: "k".into(),
            },
        )
        .expect("list versions")
    };
    let resp = list("bkt");
    assert!(!resp.no_such_bucket);
    let seen: Vec<(u64, bool, &str)> = resp
        .versions
        .iter()
        .map(|v| (v.seq, v.delete_marker, v.version_id.as_str()))
        .collect();
    let (marker_id, v2_id) = (VersionId::from_seq(marker), VersionId::from_seq(v2));
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], (marker, true, marker_id.as_str()));
    assert_eq!(seen[1], (v2, false, v2_id.as_str()));
    assert_eq!(seen[2].2, "null");
    let missing = list("nope");
    assert!(missing.no_such_bucket && missing.versions.is_empty());
}

#[test]
fn buckets_are_listed_by_name() {
    let mut f = Fixture::new();
    f.apply(
        ["zeta", "alpha"]
            .iter()
            .map(|n| {
                command::Cmd::CreateBucket(CreateBucket {
                    bucket: Some(Bucket {
                        name: (*n).into(),
                        ..Bucket::default()
                    }),
                })
            })
            .collect(),
    );
    let names: Vec<String> = list_buckets(f.source())
        .expect("list")
        .buckets
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["alpha", "bkt", "zeta"]);
    assert!(
        get_bucket(
            f.source(),
            &GetBucketRequest {
                name: "alpha".into()
            }
        )
        .expect("get")
        .bucket
        .is_some()
    );
}

fn create_upload(key: &str, id: &str) -> command::Cmd {
    command::Cmd::CreateUpload(CreateUpload {
        upload: Some(MultipartUpload {
            bucket: "bkt".into(),
            key: key.into(),
            upload_id: id.into(),
            ..MultipartUpload::default()
        }),
    })
}

fn uploads(
    f: &Fixture,
    delimiter: Option<&str>,
    key_marker: &str,
    id_marker: &str,
    max: u32,
) -> ListUploadsResponse {
    list_uploads(
        f.source(),
        &ListUploadsRequest {
            bucket: "bkt".into(),
            prefix: String::new(),
            delimiter: delimiter.map(str::to_owned),
            key_marker: key_marker.into(),
            upload_id_marker: id_marker.into(),
            max_uploads: max,
        },
    )
    .expect("list uploads")
}

fn pairs(resp: &ListUploadsResponse) -> Vec<(String, String)> {
    resp.uploads
        .iter()
        .map(|u| (u.key.clone(), u.upload_id.clone()))
        .collect()
}

#[test]
fn uploads_page_by_key_and_upload_id_markers() {
    let mut f = Fixture::new();
    f.apply(vec![
        create_upload("a", "u2"),
        create_upload("a", "u1"),
        create_upload("bkt", "u3"),
        create_upload("dir/x", "u4"),
        create_upload("dir/y", "u5"),
    ]);
    let p = |k: &str, u: &str| (k.to_owned(), u.to_owned());
    let all = uploads(&f, None, "", "", 0);
    assert_eq!(
        pairs(&all),
        [
            p("a", "u1"),
            p("a", "u2"),
            p("bkt", "u3"),
            p("dir/x", "u4"),
            p("dir/y", "u5")
        ]
    );
    let first = uploads(&f, None, "", "", 2);
    assert_eq!(pairs(&first), [p("a", "u1"), p("a", "u2")]);
    assert!(first.is_truncated);
    assert_eq!(
        (
            first.next_key_marker.as_str(),
            first.next_upload_id_marker.as_str()
        ),
        ("a", "u2")
    );
    // key marker + upload id marker: the rest of that key, then later keys.
    let rest = uploads(&f, None, "a", "u1", 2);
    assert_eq!(pairs(&rest), [p("a", "u2"), p("bkt", "u3")]);
    // key marker alone: strictly later keys.
    let later = uploads(&f, None, "a", "", 0);
    assert_eq!(pairs(&later)[0], p("bkt", "u3"));
    // Delimiter grouping.
    let grouped = uploads(&f, Some("/"), "", "", 0);
    assert_eq!(grouped.common_prefixes, ["dir/"]);
    assert_eq!(grouped.uploads.len(), 3);
    let after_dir = uploads(&f, Some("/"), "dir/", "", 0);
    assert!(after_dir.uploads.is_empty() && after_dir.common_prefixes.is_empty());
    let get = get_upload(
        f.source(),
        &GetUploadRequest {
            upload_id: "u4".into(),
        },
    )
    .expect("get");
    assert_eq!(get.upload.expect("u4").key, "dir/x");
}

#[test]
fn parts_page_after_the_part_number_marker() {
    let mut f = Fixture::new();
    f.apply(vec![create_upload("k", "u")]);
    f.apply(
        [1u32, 2, 3, 10, 11]
            .iter()
            .map(|n| {
                test_support::part_with(
                    "u",
                    *n,
                    1,
                    &format!("\"p{n}\""),
                    test_support::inline(b"p"),
                    0,
                )
            })
            .collect(),
    );
    let page = |marker: u32, max: u32| {
        list_parts(
            f.source(),
            &ListPartsRequest {
                upload_id: "u".into(),
                part_number_marker: marker,
                max_parts: max,
            },
        )
        .expect("parts")
    };
    let numbers = |r: &ListPartsResponse| r.parts.iter().map(|p| p.part_number).collect::<Vec<_>>();
    let first = page(0, 2);
    assert_eq!(numbers(&first), [1, 2]);
    assert!(first.is_truncated);
    assert_eq!(first.next_part_number_marker, 2);
    let second = page(2, 2);
    assert_eq!(numbers(&second), [3, 10]);
    let last = page(10, 0);
    assert_eq!(numbers(&last), [11]);
    assert!(!last.is_truncated);
    assert!(page(u32::MAX, 0).parts.is_empty());
}

// --- blob scans ----------------------------------------------------------------------------

/// Erasure-coded blob `id` on nodes 1..=3.
fn blob(id: u8) -> pb::Blob {
    let mut b = test_support::erasure(id, SPREAD);
    b.size = 1000 + u64::from(id);
    b.stored_size = b.size;
    b
}

/// A version of `key` with one part per blob id (0: an inline part).
fn put_blobs(lease: u64, key: &str, ids: &[u8]) -> command::Cmd {
    let parts = ids
        .iter()
        .map(|id| pb::ObjectPart {
            part_number: 1,
            blob: Some(if *id == 0 {
                test_support::inline(&[1])
            } else {
                blob(*id)
            }),
            ..pb::ObjectPart::default()
        })
        .collect();
    let mut version = version_with("bkt", key, "\"e\"", test_support::inline(&[1]));
    version.parts = parts;
    put_version(version, lease)
}

fn part_blob(lease: u64, upload_id: &str, number: u32, id: u8) -> command::Cmd {
    test_support::part_with(upload_id, number, 1, "\"p\"", blob(id), lease)
}

impl Fixture {
    /// Pages through a family `limit` records at a time; returns the blob ids met and the
    /// number of pages.
    fn scan_all(&self, family: BlobFamily, limit: u32) -> (Vec<BlobRef>, usize) {
        let mut after = Vec::new();
        let mut blobs = Vec::new();
        let mut pages = 0;
        loop {
            let page = scan_blobs(
                self.source(),
                &ScanBlobsRequest {
                    family: family as i32,
                    after: after.clone(),
                    limit,
                },
            )
            .expect("scan");
            pages += 1;
            assert!(pages < 100, "scan does not end");
            blobs.extend(page.blobs);
            if page.done {
                return (blobs, pages);
            }
            assert!(page.next_after > after, "pages move forward");
            after = page.next_after;
        }
    }
}

fn ids_of(blobs: &[BlobRef]) -> Vec<u8> {
    blobs
        .iter()
        .map(|b| b.blob.as_ref().expect("erasure").data_id[0])
        .collect()
}

#[test]
fn version_scans_page_by_records_and_skip_markers_and_inline_parts() {
    let mut f = Fixture::new();
    let lease = f.sim.lease_id;
    f.apply(vec![enable_versioning()]);
    f.apply(vec![
        put_blobs(lease, "a", &[1]),
        put_blobs(lease, "b", &[2, 0, 3]),
        put_blobs(lease, "c", &[4]),
        delete("c", None),
        put_blobs(lease, "d", &[0]),
        put_blobs(lease, "e", &[5]),
    ]);
    // Records in key order: a, b, c (marker, then 4), d, e: six records.
    let (all, pages) = f.scan_all(BlobFamily::Versions, 2);
    assert_eq!(ids_of(&all), [1, 2, 3, 4, 5]);
    assert_eq!(pages, 3);
    let b = &all[2];
    assert_eq!(
        (b.bucket.as_str(), b.key.as_str(), b.part_index),
        ("bkt", "b", 2)
    );
    assert_eq!(b.family, BlobFamily::Versions as i32);
    assert_eq!((b.size, b.time_ms), (1003, test_support::T0));
    assert!(!b.version_id.is_empty());
    assert_eq!(
        b.record_key,
        keys::object_version(
            "bkt",
            "b",
            VersionId::parse(&b.version_id)
                .expect("id")
                .seq()
                .expect("seq")
        )
    );
    // One big page; the default limit; a page that ends exactly at the last record is done
    // only once nothing follows.
    assert_eq!(f.scan_all(BlobFamily::Versions, 0), (all.clone(), 1));
    let (_, pages) = f.scan_all(BlobFamily::Versions, 6);
    assert_eq!(pages, 1);
    let (_, pages) = f.scan_all(BlobFamily::Versions, 3);
    assert_eq!(pages, 2);
    // Resuming after the last record, or after a key past the family, ends the scan; a key
    // before the family starts it from the beginning.
    let from = |after: Vec<u8>| {
        scan_blobs(
            f.source(),
            &ScanBlobsRequest {
                family: BlobFamily::Versions as i32,
                after,
                limit: 10,
            },
        )
        .expect("scan")
    };
    let last = from(all[4].record_key.clone());
    assert!(last.done && last.blobs.is_empty());
    assert_eq!(last.next_after, all[4].record_key);
    assert!(from(keys::PART_PREFIX.to_vec()).blobs.is_empty());
    assert_eq!(
        ids_of(&from(keys::GARBAGE_PREFIX.to_vec()).blobs),
        [1, 2, 3, 4, 5]
    );
}

#[test]
fn part_and_garbage_scans_and_get_blob() {
    let mut f = Fixture::new();
    let lease = f.sim.lease_id;
    f.apply(vec![create_upload("dir/k", "u1"), create_upload("z", "u2")]);
    f.apply(vec![
        part_blob(lease, "u1", 1, 1),
        part_blob(lease, "u1", 2, 2),
        part_blob(lease, "u2", 1, 3),
    ]);
    let (parts, pages) = f.scan_all(BlobFamily::UploadParts, 1);
    assert_eq!(ids_of(&parts), [1, 2, 3]);
    assert_eq!(pages, 3);
    let p = &parts[1];
    assert_eq!(
        (
            p.bucket.as_str(),
            p.key.as_str(),
            p.upload_id.as_str(),
            p.part_number
        ),
        ("bkt", "dir/k", "u1", 2)
    );
    assert_eq!(
        (p.record_key.clone(), p.time_ms),
        (keys::part("u1", 2), test_support::T0)
    );
    assert_eq!(parts[2].key, "z");

    // Replacing part 1 and overwriting a version make garbage.
    let put_v6 = f.apply(vec![
        part_blob(lease, "u1", 1, 4),
        put_blobs(lease, "v", &[5]),
        put_blobs(lease, "v", &[6]),
    ])[2];
    let (garbage, _) = f.scan_all(BlobFamily::Garbage, 1);
    assert_eq!(ids_of(&garbage), [1, 5]);
    assert!(
        garbage
            .iter()
            .all(|g| g.family == BlobFamily::Garbage as i32)
    );
    assert!(garbage[0].record_key.starts_with(keys::GARBAGE_PREFIX));

    // get_blob follows the index to the owning record.
    let get = |id: u8| {
        get_blob(
            f.source(),
            &GetBlobRequest {
                data_id: vec![id; 16],
            },
        )
        .expect("get")
        .blob
    };
    let part = get(4).expect("part 1");
    assert_eq!(
        (part.family, part.part_number),
        (BlobFamily::UploadParts as i32, 1)
    );
    assert_eq!(part.key, "dir/k");
    let version = get(6).expect("version");
    assert_eq!(
        (version.family, version.key.as_str()),
        (BlobFamily::Versions as i32, "v")
    );
    // Blobs come back as stored: exact copies with generations, digests, placement index.
    let e = version.blob.expect("erasure");
    let copies: Vec<(u32, u64, u64)> = e
        .shards
        .iter()
        .map(|s| (s.shard_index, s.node_id, s.generation))
        .collect();
    assert_eq!(copies, SPREAD);
    assert_eq!(
        e.shard_digests,
        test_support::erasure_of(Some(&blob(6))).shard_digests
    );
    assert_eq!(e.placed_at_index, put_v6);
    assert!(get(1).is_none() && get(5).is_none() && get(99).is_none());
}

#[test]
fn repair_reports_are_read_back_by_reporter() {
    use tessera_proto::meta::v1::{PutRepairReport, RepairReport};
    let mut f = Fixture::new();
    let report = |reporter: &str| {
        command::Cmd::PutRepairReport(PutRepairReport {
            report: Some(RepairReport {
                reporter: reporter.into(),
                ..RepairReport::default()
            }),
        })
    };
    f.apply(vec![report("r2"), report("r1")]);
    let reporters: Vec<String> = repair_reports(f.source())
        .expect("reports")
        .into_iter()
        .map(|r| r.reporter)
        .collect();
    assert_eq!(reporters, ["r1", "r2"]);
}
