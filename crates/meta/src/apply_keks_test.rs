//! Key-encryption key versions: added one after the other, never replaced, never malformed.

use tessera_core::sealing::key_wrap::WRAPPED_KEY_LEN;

use super::*;

fn create(name: &str, version: u32, wrapped: Vec<u8>) -> command::Cmd {
    command::Cmd::CreateKek(pb::CreateKek {
        name: name.into(),
        version,
        wrapped,
    })
}

fn newest(sim: &Sim, name: &str) -> Option<pb::KekRecord> {
    crate::records::newest_kek(&sim.kv, name).expect("read")
}

#[test]
fn versions_are_added_one_after_the_other_and_never_replaced() {
    let mut sim = Sim::new();
    assert_eq!(newest(&sim, "sse-s3"), None);
    sim.ok(create("sse-s3", 1, vec![1; WRAPPED_KEY_LEN]));
    let first = newest(&sim, "sse-s3").expect("version 1");
    assert_eq!((first.version, first.wrapped[0]), (1, 1));
    assert!(first.created_ms > 0, "stamped with the meta clock");

    // A concurrent creation of the same version, or a gap, is refused and changes nothing.
    for version in [1, 3, 0] {
        let error = sim.rejected(create("sse-s3", version, vec![2; WRAPPED_KEY_LEN]));
        assert!(is_invalid(&error), "version {version}: {error:?}");
    }
    sim.ok(create("sse-s3", 2, vec![2; WRAPPED_KEY_LEN]));
    assert_eq!(newest(&sim, "sse-s3").map(|k| k.version), Some(2));
    let kept = crate::records::kek(&sim.kv, "sse-s3", 1).expect("read");
    assert_eq!(kept, Some(first), "older versions stay, unchanged");

    // Names are separate: another name starts at 1.
    sim.ok(create("photos-key", 1, vec![3; WRAPPED_KEY_LEN]));
    assert_eq!(newest(&sim, "sse-s3").map(|k| k.version), Some(2));
}

#[test]
fn malformed_names_and_wrapped_keys_are_refused() {
    let mut sim = Sim::new();
    for cmd in [
        create("", 1, vec![1; WRAPPED_KEY_LEN]),
        create("Upper", 1, vec![1; WRAPPED_KEY_LEN]),
        create("a/b", 1, vec![1; WRAPPED_KEY_LEN]),
        create("sse-s3", 1, vec![1; WRAPPED_KEY_LEN - 1]),
        create("sse-s3", 1, Vec::new()),
    ] {
        let error = sim.rejected(cmd);
        assert!(is_invalid(&error), "{error:?}");
    }
}

/// An inline blob sealed with SSE-S3 under `wrapped` (by KEK `kek_id`).
fn sealed(wrapped: u8, kek_id: &str) -> pb::Blob {
    pb::Blob {
        sealing: Some(pb::Sealing {
            scheme: pb::SealingScheme::SealingSseS3 as i32,
            segment_size: 65_536,
            wrapped_key: vec![wrapped; WRAPPED_KEY_LEN],
            key_id: kek_id.into(),
            parameters: Vec::new(),
        }),
        ..inline(b"ciphertext")
    }
}

fn rewrap(record_key: &[u8], part: u32, old: u8, new: u8, kek_id: &str) -> pb::KeyRewrap {
    pb::KeyRewrap {
        record_key: record_key.to_vec(),
        part_number: part,
        old_wrapped_key: vec![old; WRAPPED_KEY_LEN],
        new_wrapped_key: vec![new; WRAPPED_KEY_LEN],
        new_kek_id: kek_id.into(),
    }
}

fn sealing_of(version: &tessera_core::object::ObjectVersion) -> Vec<(u8, String)> {
    version
        .parts
        .iter()
        .map(|p| (p.blob.sealing.wrapped_key[0], p.blob.sealing.key_id.clone()))
        .collect()
}

#[test]
fn rewraps_replace_only_keys_still_as_read_and_only_by_existing_keks() {
    let mut sim = Sim::new();
    sim.ok(create("sse-s3", 1, vec![1; WRAPPED_KEY_LEN]));
    sim.ok(create_bucket("bkt", "owner"));
    let mut two_parts = version_with("bkt", "k", "\"e\"", sealed(10, "sse-s3/1"));
    two_parts.parts.push(pb::ObjectPart {
        part_number: 2,
        blob: Some(sealed(20, "sse-s3/1")),
        ..two_parts.parts[0].clone()
    });
    two_parts.multipart = true;
    sim.ok(put_version(two_parts, 0));
    let record_key = crate::keys::object_version("bkt", "k", sim.versions("bkt", "k")[0].seq);

    // The new version must exist before anything is wrapped by it.
    let error = sim.rejected(command::Cmd::RewrapKeys(pb::RewrapKeys {
        rewraps: vec![rewrap(&record_key, 1, 10, 11, "sse-s3/2")],
    }));
    assert!(is_invalid(&error), "{error:?}");
    sim.ok(create("sse-s3", 2, vec![2; WRAPPED_KEY_LEN]));

    // Both parts of one record change in one command; a stale entry (old key no longer
    // there) and a gone record are skipped.
    sim.ok(command::Cmd::RewrapKeys(pb::RewrapKeys {
        rewraps: vec![
            rewrap(&record_key, 1, 10, 11, "sse-s3/2"),
            rewrap(&record_key, 2, 20, 21, "sse-s3/2"),
            rewrap(&record_key, 2, 99, 98, "sse-s3/2"),
            rewrap(
                &crate::keys::object_version("bkt", "gone", 7),
                1,
                10,
                12,
                "sse-s3/2",
            ),
        ],
    }));
    let versions = sim.versions("bkt", "k");
    assert_eq!(
        sealing_of(&versions[0]),
        [(11, "sse-s3/2".to_owned()), (21, "sse-s3/2".to_owned())]
    );
    assert!(!sim.has(&crate::keys::object_version("bkt", "gone", 7)));

    // Repeated (the pass read before the first one applied): nothing changes.
    sim.ok(command::Cmd::RewrapKeys(pb::RewrapKeys {
        rewraps: vec![rewrap(&record_key, 1, 10, 13, "sse-s3/2")],
    }));
    assert_eq!(sealing_of(&sim.versions("bkt", "k")[0])[0].0, 11);

    // Records that hold no blob are refused.
    let error = sim.rejected(command::Cmd::RewrapKeys(pb::RewrapKeys {
        rewraps: vec![rewrap(&crate::keys::bucket("bkt"), 1, 10, 11, "sse-s3/2")],
    }));
    assert!(is_invalid(&error), "{error:?}");
}
