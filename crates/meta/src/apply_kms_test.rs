//! KMS keys: created once with their alias and KEK, changed only as the KMS rules allow, at
//! the meta clock; bucket default encryption set and removed.

use tessera_core::kms;
use tessera_core::meta_error::MetaRuleError;
use tessera_core::sealing::key_wrap::WRAPPED_KEY_LEN;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command;

use crate::keys;
use crate::test_support::*;

const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_ID: &str = "0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn create_kms(key_id: &str, alias: &str) -> command::Cmd {
    create_kms_with(key_id, alias, &kms::kek_name(key_id), 1)
}

fn create_kms_with(key_id: &str, alias: &str, kek_name: &str, version: u32) -> command::Cmd {
    command::Cmd::CreateKmsKey(pb::CreateKmsKey {
        key_id: key_id.into(),
        alias: alias.into(),
        description: "for tests".into(),
        kek: Some(pb::CreateKek {
            name: kek_name.into(),
            version,
            wrapped: vec![7; WRAPPED_KEY_LEN],
        }),
    })
}

fn update(key_id: &str, action: pb::KmsKeyAction, days: u32) -> command::Cmd {
    command::Cmd::UpdateKmsKey(pb::UpdateKmsKey {
        key_id: key_id.into(),
        action: action as i32,
        pending_window_days: days,
    })
}

fn record(sim: &Sim, key_id: &str) -> pb::KmsKeyRecord {
    crate::records::kms_key(&sim.kv, key_id)
        .expect("read")
        .expect("the key exists")
}

fn state(sim: &Sim, key_id: &str) -> pb::KmsKeyState {
    pb::KmsKeyState::try_from(record(sim, key_id).state).expect("known state")
}

fn is_invalid(e: &MetaRuleError) -> bool {
    matches!(e, MetaRuleError::InvalidArgument { .. })
}

fn is_conflict(e: &MetaRuleError) -> bool {
    matches!(e, MetaRuleError::Conflict { .. })
}

#[test]
fn a_key_is_created_with_its_alias_and_kek_in_one_command() {
    let mut sim = Sim::new();
    sim.advance(5);
    sim.ok(create_kms(ID, "photos"));
    let made = record(&sim, ID);
    assert_eq!(made.alias, "photos");
    assert_eq!(made.description, "for tests");
    assert_eq!(state(&sim, ID), pb::KmsKeyState::KmsKeyEnabled);
    assert_eq!(made.created_ms, sim.clock(), "stamped with the meta clock");
    assert_eq!(made.deletion_ms, 0);
    assert_eq!(
        crate::records::kms_alias(&sim.kv, "photos").expect("read"),
        Some(ID.to_owned())
    );
    let kek = crate::records::newest_kek(&sim.kv, &kms::kek_name(ID))
        .expect("read")
        .expect("the key's material");
    assert_eq!(kek.version, 1);
    let listed = crate::records::list_kms_keys(&sim.kv).expect("list");
    assert_eq!(listed, vec![made]);

    // A key without an alias; and the cluster's own default alias.
    sim.ok(create_kms(OTHER_ID, ""));
    assert!(sim.has(&keys::kms_key(OTHER_ID)));
    assert!(!sim.has(&keys::kms_alias("")));
    let default_id = "00000000-0000-4000-8000-000000000001";
    sim.ok(create_kms(default_id, kms::DEFAULT_ALIAS));
    assert_eq!(
        crate::records::kms_alias(&sim.kv, kms::DEFAULT_ALIAS).expect("read"),
        Some(default_id.to_owned())
    );
}

#[test]
fn a_taken_id_or_alias_is_a_conflict_and_malformed_ones_are_invalid() {
    let mut sim = Sim::new();
    sim.ok(create_kms(ID, "photos"));
    assert!(is_conflict(&sim.rejected(create_kms(ID, "other"))));
    assert!(is_conflict(&sim.rejected(create_kms(OTHER_ID, "photos"))));
    for cmd in [
        create_kms("not-an-id", "a"),
        create_kms(&ID.to_uppercase(), "a"),
        create_kms(OTHER_ID, "aws/mine"),
        create_kms(OTHER_ID, "bad alias"),
        create_kms_with(OTHER_ID, "a", "sse-s3", 1),
        create_kms_with(OTHER_ID, "a", &kms::kek_name(OTHER_ID), 2),
        command::Cmd::CreateKmsKey(pb::CreateKmsKey {
            key_id: OTHER_ID.into(),
            alias: "a".into(),
            description: "x".repeat(kms::MAX_DESCRIPTION_LEN + 1),
            kek: None,
        }),
        command::Cmd::CreateKmsKey(pb::CreateKmsKey {
            key_id: OTHER_ID.into(),
            alias: "a".into(),
            description: String::new(),
            kek: None,
        }),
    ] {
        let error = sim.rejected(cmd);
        assert!(is_invalid(&error), "{error:?}");
    }
}

#[test]
fn states_change_as_kms_allows_and_deletion_is_dated_by_the_meta_clock() {
    let mut sim = Sim::new();
    sim.ok(create_kms(ID, "photos"));
    sim.ok(update(ID, pb::KmsKeyAction::Disable, 0));
    assert_eq!(state(&sim, ID), pb::KmsKeyState::KmsKeyDisabled);
    sim.ok(update(ID, pb::KmsKeyAction::Enable, 0));
    assert_eq!(state(&sim, ID), pb::KmsKeyState::KmsKeyEnabled);

    // Cancelling a deletion that is not scheduled is refused.
    assert!(is_conflict(&sim.rejected(update(
        ID,
        pb::KmsKeyAction::CancelDeletion,
        0
    ))));
    // A pending window outside 7..=30 days is invalid.
    assert!(is_invalid(&sim.rejected(update(
        ID,
        pb::KmsKeyAction::ScheduleDeletion,
        3
    ))));

    sim.ok(update(ID, pb::KmsKeyAction::ScheduleDeletion, 7));
    let scheduled = record(&sim, ID);
    assert_eq!(state(&sim, ID), pb::KmsKeyState::KmsKeyPendingDeletion);
    assert_eq!(scheduled.deletion_ms, sim.clock() + 7 * DAY_MS);
    // Pending deletion: neither enabled nor disabled, only cancelled.
    assert!(is_conflict(&sim.rejected(update(
        ID,
        pb::KmsKeyAction::Enable,
        0
    ))));
    sim.ok(update(ID, pb::KmsKeyAction::CancelDeletion, 0));
    assert_eq!(state(&sim, ID), pb::KmsKeyState::KmsKeyDisabled);
    assert_eq!(record(&sim, ID).deletion_ms, 0);

    // The default window is 30 days; once past it the key is deleted and never changes.
    sim.ok(update(ID, pb::KmsKeyAction::ScheduleDeletion, 0));
    assert_eq!(record(&sim, ID).deletion_ms, sim.clock() + 30 * DAY_MS);
    sim.advance(31 * DAY_MS);
    let error = sim.rejected(update(ID, pb::KmsKeyAction::CancelDeletion, 0));
    assert!(is_invalid(&error), "{error:?}");
    assert!(error.to_string().contains("does not exist"), "{error}");

    // Unknown keys and actions.
    assert!(is_invalid(&sim.rejected(update(
        OTHER_ID,
        pb::KmsKeyAction::Disable,
        0
    ))));
    assert!(is_invalid(&sim.rejected(update(
        ID,
        pb::KmsKeyAction::Unspecified,
        0
    ))));
}

fn encryption_cmd(bucket: &str, algorithm: Option<&str>) -> command::Cmd {
    command::Cmd::SetBucketEncryption(pb::SetBucketEncryption {
        bucket: bucket.into(),
        encryption: algorithm.map(|a| pb::BucketEncryption {
            algorithm: a.into(),
            kms_key_id: ID.into(),
            bucket_key_enabled: true,
        }),
    })
}

#[test]
fn a_bucket_default_encryption_is_set_and_removed() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.rejected(encryption_cmd("photos", Some("aws:kms"))),
        MetaRuleError::NoSuchBucket {
            bucket: "photos".into()
        }
    );
    sim.ok(create_bucket("photos", "alice"));
    let bucket = |sim: &Sim| {
        crate::records::bucket(&sim.kv, "photos")
            .expect("read")
            .expect("bucket")
    };
    assert_eq!(bucket(&sim).encryption, None);
    for algorithm in ["aws:kms", "aws:kms:dsse", "AES256"] {
        sim.ok(encryption_cmd("photos", Some(algorithm)));
        let set = bucket(&sim).encryption.expect("set");
        assert_eq!(set.algorithm, algorithm);
        assert_eq!(set.kms_key_id, ID);
        assert!(set.bucket_key_enabled);
    }
    assert!(is_invalid(
        &sim.rejected(encryption_cmd("photos", Some("aws:fms")))
    ));
    sim.ok(encryption_cmd("photos", None));
    assert_eq!(bucket(&sim).encryption, None);
    assert_eq!(bucket(&sim).owner, "alice", "the rest of the bucket stays");
}
