//! Multipart uploads: parts, completion (with its `uc/` record and idempotent repeats) and
//! abort.

use super::*;
use crate::query;

fn upload_gone(sim: &Sim, id: &str) -> bool {
    crate::records::upload_by_id(&sim.kv, id)
        .expect("read")
        .is_none()
        && crate::records::parts(&sim.kv, id).expect("read").is_empty()
}

fn no_such_upload(id: &str) -> MetaRuleError {
    MetaRuleError::NoSuchUpload {
        upload_id: id.into(),
    }
}

fn get_upload(sim: &Sim, id: &str) -> pb::GetUploadResponse {
    query::get_upload(
        &sim.kv,
        &pb::GetUploadRequest {
            upload_id: id.into(),
        },
    )
    .expect("get upload")
}

#[test]
fn parts_need_an_upload_and_replacing_one_discards_its_blob() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    assert_eq!(
        sim.rejected(create_upload("bkt", "k", "u1")),
        MetaRuleError::NoSuchBucket {
            bucket: "bkt".into()
        }
    );
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(create_upload("bkt", "k", "u1"));
    assert!(is_invalid(&sim.rejected(create_upload("bkt", "k", "u1"))));
    assert!(is_invalid(&sim.rejected(create_upload("bkt", "k", "a\0b"))));
    assert!(is_invalid(&sim.rejected(create_upload("bkt", "k", ""))));
    assert_eq!(
        sim.rejected(part("nope", 1, MIB, "\"p\"", 1, lease)),
        no_such_upload("nope")
    );
    assert!(is_invalid(
        &sim.rejected(part("u1", 0, MIB, "\"p\"", 1, lease))
    ));
    assert!(is_invalid(
        &sim.rejected(part("u1", 10_001, MIB, "\"p\"", 1, lease))
    ));
    let mut no_blob = part("u1", 1, MIB, "\"p\"", 1, lease);
    if let command::Cmd::PutPart(p) = &mut no_blob
        && let Some(part) = &mut p.part
    {
        part.blob = None;
    }
    assert!(is_invalid(&sim.rejected(no_blob)));
    let (index, _) = sim.run(part("u1", 1, MIB, "\"p1\"", 1, lease));
    let parts = crate::records::parts(&sim.kv, "u1").expect("parts");
    let placed = parts[0].1.blob.erasure().expect("erasure").placed_at_index;
    assert_eq!(placed, index);
    sim.ok(part("u1", 1, MIB, "\"p1b\"", 2, lease));
    assert_eq!(sim.garbage(), [1]);
}

#[test]
fn complete_checks_parts_then_writes_the_version_and_discards_unused_parts() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    assert_eq!(
        sim.rejected(complete("u1", &[(1, "\"p1\"")])),
        no_such_upload("u1")
    );
    sim.ok(put("bkt", "k", "\"old\"", 9, lease));
    sim.ok(create_upload("bkt", "k", "u1"));
    let (i1, _) = sim.run(part("u1", 1, 5 * MIB, "\"p1\"", 1, lease));
    sim.ok(part("u1", 2, 5 * MIB, "\"p2\"", 2, lease));
    sim.ok(part("u1", 3, MIB, "\"p3\"", 3, lease));
    sim.ok(part("u1", 4, MIB, "\"p4\"", 4, lease));

    assert_eq!(
        sim.rejected(complete("u1", &[(1, "\"wrong\"")])),
        MetaRuleError::InvalidPart {
            part_number: 1,
            etag: "\"wrong\"".into()
        }
    );
    assert_eq!(
        sim.rejected(complete("u1", &[(5, "\"p5\"")])),
        MetaRuleError::InvalidPart {
            part_number: 5,
            etag: "\"p5\"".into()
        }
    );
    assert_eq!(
        sim.rejected(complete("u1", &[(2, "\"p2\""), (1, "\"p1\"")])),
        MetaRuleError::InvalidPartOrder
    );
    assert_eq!(
        sim.rejected(complete("u1", &[(3, "\"p3\""), (4, "\"p4\"")])),
        MetaRuleError::EntityTooSmall {
            part_number: 3,
            size: MIB
        }
    );
    assert!(is_invalid(&sim.rejected(complete("u1", &[]))));
    let mut guarded = complete("u1", &[(1, "\"p1\"")]);
    if let command::Cmd::CompleteUpload(c) = &mut guarded {
        c.precondition = Some(pb::WritePrecondition {
            if_none_match_any: true,
            if_match: None,
        });
    }
    assert!(matches!(
        sim.rejected(guarded),
        MetaRuleError::PreconditionFailed { .. }
    ));

    // Parts 1, 2 and 4 make the object; part 3 is left out. The state machine builds the
    // version's parts from the stored ones, whatever the command carried.
    sim.advance(3);
    let (index, result) = sim.run(complete(
        "u1",
        &[(1, "\"p1\""), (2, "\"p2\""), (4, "\"p4\"")],
    ));
    let v = stored(result);
    assert_eq!((v.bucket.as_str(), v.key.as_str()), ("bkt", "k"));
    assert_eq!(v.version_id, "null");
    assert_eq!((v.seq, v.last_modified_ms), (index, T0 + 3));
    assert!(v.multipart);
    assert_eq!(v.upload_id, "u1");
    assert_eq!(v.size, 11 * MIB);
    let numbers: Vec<u32> = v.parts.iter().map(|p| p.part_number).collect();
    assert_eq!(numbers, [1, 2, 4]);
    // Blobs moved from parts keep the index that placed them.
    assert_eq!(erasure_of(v.parts[0].blob.as_ref()).placed_at_index, i1);
    let all = sim.versions("bkt", "k");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].etag, "\"multi-2\"");
    // The replaced old object and the unused part are garbage; used parts are not.
    let mut garbage = sim.garbage();
    garbage.sort();
    assert_eq!(garbage, [3, 9]);
    assert!(upload_gone(&sim, "u1"));
    assert!(!sim.has(&keys::upload_index("u1")));
    assert_eq!(
        crate::kv::KvRead::get(&sim.kv, &keys::completed_upload("u1")).expect("read"),
        Some(keys::object_version("bkt", "k", index))
    );
}

#[test]
fn a_repeated_completion_answers_the_version_it_made_while_that_version_exists() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(create_upload("bkt", "k", "u1"));
    sim.ok(part("u1", 1, 5 * MIB, "\"p1\"", 1, lease));
    sim.ok(part_with("u1", 2, 3, "\"p2\"", inline(b"end"), lease));
    let asked = [(1, "\"p1\""), (2, "\"p2\"")];
    let made = stored(sim.ok(complete("u1", &asked)));
    assert_eq!(
        made.parts[1].blob.as_ref().and_then(|b| b.storage.clone()),
        Some(pb::blob::Storage::InlineData(Vec::new())),
        "results carry no inline bytes"
    );

    // The S3 client retries its CompleteMultipartUpload: same answer, nothing written. ETags
    // compare as S3 does (quotes optional).
    let before = sim.dump();
    assert_eq!(stored(sim.ok(complete("u1", &asked))), made);
    assert_eq!(
        stored(sim.ok(complete("u1", &[(1, "p1"), (2, "p2")]))),
        made
    );
    assert_eq!(sim.dump(), before);
    // Another part list is not that completion.
    assert_eq!(
        sim.rejected(complete("u1", &[(1, "\"p1\"")])),
        no_such_upload("u1")
    );
    assert_eq!(
        sim.rejected(complete("u1", &[(1, "\"p1\""), (2, "\"px\"")])),
        no_such_upload("u1")
    );
    // GetUpload tells a completed upload from an unknown one.
    let got = get_upload(&sim, "u1");
    assert!(got.upload.is_none());
    let completed = got.completed.expect("completed");
    assert_eq!(completed, made);
    let unknown = get_upload(&sim, "u9");
    assert!(unknown.upload.is_none() && unknown.completed.is_none());
    // The id stays taken while the completion is remembered.
    assert!(is_invalid(&sim.rejected(create_upload("bkt", "k", "u1"))));

    // Overwriting the version forgets the completion.
    sim.ok(put_inline("bkt", "k", "\"new\""));
    assert!(!sim.has(&keys::completed_upload("u1")));
    assert_eq!(sim.rejected(complete("u1", &asked)), no_such_upload("u1"));
    assert!(get_upload(&sim, "u1").completed.is_none());
}

#[test]
fn deleting_a_completed_version_forgets_its_completion_but_an_older_one_keeps_it() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));
    sim.ok(create_upload("bkt", "k", "u1"));
    sim.ok(part("u1", 1, MIB, "\"p1\"", 1, lease));
    let made = stored(sim.ok(complete("u1", &[(1, "\"p1\"")])));
    // A newer version and a delete marker leave the completed version in place.
    sim.ok(put_inline("bkt", "k", "\"later\""));
    sim.ok(delete("bkt", "k", None));
    assert_eq!(stored(sim.ok(complete("u1", &[(1, "\"p1\"")]))), made);
    // Deleting that version by id removes `uc/` in the same entry.
    sim.ok(delete("bkt", "k", Some(&made.version_id)));
    assert!(!sim.has(&keys::completed_upload("u1")));
    assert_eq!(sim.garbage(), [1]);
    assert_eq!(
        sim.rejected(complete("u1", &[(1, "\"p1\"")])),
        no_such_upload("u1")
    );
}

#[test]
fn an_unversioned_delete_of_a_completed_object_forgets_its_completion() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(create_upload("bkt", "k", "u1"));
    sim.ok(part("u1", 1, MIB, "\"p1\"", 1, lease));
    sim.ok(complete("u1", &[(1, "\"p1\"")]));
    sim.ok(delete("bkt", "k", None));
    assert!(!sim.has(&keys::completed_upload("u1")));
    assert!(sim.versions("bkt", "k").is_empty());
}

#[test]
fn abort_discards_every_part() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    assert_eq!(sim.rejected(abort("u1")), no_such_upload("u1"));
    sim.ok(create_upload("bkt", "k", "u1"));
    sim.ok(part("u1", 1, MIB, "\"p1\"", 1, lease));
    sim.ok(part("u1", 2, MIB, "\"p2\"", 2, lease));
    sim.ok(abort("u1"));
    assert_eq!(sim.garbage(), [1, 2]);
    assert!(upload_gone(&sim, "u1"));
    assert!(!sim.has(&keys::upload_index("u1")));
}
