use super::*;

const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

#[test]
fn keys_are_named_by_id_alias_or_arn() {
    let id = || KeyRef::Id(ID.to_owned());
    let alias = |a: &str| KeyRef::Alias(a.to_owned());
    assert_eq!(KeyRef::parse(ID), Ok(id()));
    assert_eq!(
        KeyRef::parse(&format!("arn:aws:kms:us-east-1:111122223333:key/{ID}")),
        Ok(id())
    );
    assert_eq!(KeyRef::parse("alias/backups"), Ok(alias("backups")));
    assert_eq!(KeyRef::parse("backups"), Ok(alias("backups")));
    assert_eq!(KeyRef::parse("alias/aws/s3"), Ok(alias("aws/s3")));
    assert_eq!(
        KeyRef::parse("arn:aws:kms:us-east-1:111122223333:alias/team/x_1"),
        Ok(alias("team/x_1"))
    );
    for bad in [
        "",
        "alias/",
        "has space",
        "arn:aws:s3:::bucket",
        "arn:aws:kms:us-east-1:1:key/not-an-id",
        "arn:aws:kms:us-east-1:1:other/x",
        "arn:aws:kms",
        &"a".repeat(MAX_ALIAS_LEN + 1),
    ] {
        assert!(
            matches!(KeyRef::parse(bad), Err(KmsError::BadKeyRef(_))),
            "{bad:?}"
        );
    }
    // An upper-case UUID is not an id, so it is read as an alias, never as another key's id.
    assert_eq!(
        KeyRef::parse(&ID.to_uppercase()),
        Ok(alias(&ID.to_uppercase()))
    );
}

#[test]
fn new_key_ids_are_uuids_and_never_valid_aliases() {
    for seed in 0..=255_u8 {
        let id = new_key_id([seed; 16]);
        assert!(is_key_id(&id), "{id}");
        assert_eq!(&id[14..15], "4", "version 4: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );
        assert_eq!(KeyRef::parse(&id), Ok(KeyRef::Id(id.clone())));
        assert!(check_new_alias(&id).is_err(), "an id is no alias");
        assert_eq!(key_id_of_kek(&kek_name(&id)), Some(id.as_str()));
    }
    assert_eq!(key_id_of_kek("sse-s3"), None);
    assert_eq!(key_id_of_kek("kms-nope"), None);
}

#[test]
fn operators_choose_aliases_but_not_reserved_ones() {
    check_new_alias("backups").expect("plain");
    check_new_alias("team/backups_2-a").expect("with separators");
    for bad in ["", "aws/s3", "aws/mine", "a b", "ü", &"x".repeat(251)] {
        assert!(check_new_alias(bad).is_err(), "{bad:?}");
    }
    check_description(&"d".repeat(MAX_DESCRIPTION_LEN)).expect("at the limit");
    assert_eq!(
        check_description(&"d".repeat(MAX_DESCRIPTION_LEN + 1)),
        Err(KmsError::DescriptionTooLong)
    );
}

#[test]
fn every_state_change_follows_kms_rules() {
    use KeyAction::*;
    let now = 1_000_000;
    let disabled = KeyStatus {
        state: KeyState::Disabled,
        deletion_ms: 0,
    };
    let pending = KeyStatus {
        state: KeyState::PendingDeletion,
        deletion_ms: now + 7 * DAY_MS,
    };
    let actions = [
        Enable,
        Disable,
        ScheduleDeletion { days: 7 },
        ScheduleDeletion { days: 30 },
        CancelDeletion,
    ];
    for from in [KeyStatus::ENABLED, disabled, pending] {
        for action in actions {
            let got = from.after(ID, action, now);
            let want = match (from.state, action) {
                (KeyState::PendingDeletion, CancelDeletion) => Some(disabled),
                (KeyState::PendingDeletion, _) | (_, CancelDeletion) => None,
                (_, Enable) => Some(KeyStatus::ENABLED),
                (_, Disable) => Some(disabled),
                (_, ScheduleDeletion { days }) => Some(KeyStatus {
                    state: KeyState::PendingDeletion,
                    deletion_ms: now + i64::from(days) * DAY_MS,
                }),
            };
            match want {
                Some(want) => assert_eq!(got, Ok(want), "{from:?} {action:?}"),
                None => assert!(
                    matches!(got, Err(KmsError::InvalidState { .. })),
                    "{from:?} {action:?}: {got:?}"
                ),
            }
        }
    }
    for days in [0, 6, 31, 365] {
        assert_eq!(
            KeyStatus::ENABLED.after(ID, ScheduleDeletion { days }, now),
            Err(KmsError::BadPendingWindow(days))
        );
    }
}

#[test]
fn only_enabled_keys_are_usable_and_deleted_keys_are_gone_for_good() {
    let now = 5 * DAY_MS;
    assert_eq!(KeyStatus::ENABLED.check_usable(ID, now), Ok(()));
    let disabled = KeyStatus::ENABLED
        .after(ID, KeyAction::Disable, now)
        .expect("disable");
    assert_eq!(
        disabled.check_usable(ID, now),
        Err(KmsError::Disabled(ID.to_owned()))
    );
    let pending = disabled
        .after(ID, KeyAction::ScheduleDeletion { days: 7 }, now)
        .expect("schedule");
    assert_eq!(
        pending.check_usable(ID, now),
        Err(KmsError::PendingDeletion(ID.to_owned()))
    );
    let later = now + 7 * DAY_MS;
    assert!(!pending.is_deleted(later - 1));
    assert!(pending.is_deleted(later));
    assert_eq!(
        pending.check_usable(ID, later),
        Err(KmsError::NotFound(ID.to_owned()))
    );
    for action in [
        KeyAction::Enable,
        KeyAction::Disable,
        KeyAction::CancelDeletion,
        KeyAction::ScheduleDeletion { days: 7 },
    ] {
        assert_eq!(
            pending.after(ID, action, later),
            Err(KmsError::NotFound(ID.to_owned())),
            "{action:?} after deletion"
        );
    }
    let kept = pending
        .after(ID, KeyAction::CancelDeletion, later - 1)
        .expect("cancelled in time");
    assert_eq!(kept.state, KeyState::Disabled);
    assert_eq!(
        kept.after(ID, KeyAction::Enable, later + DAY_MS),
        Ok(KeyStatus::ENABLED),
        "a cancelled deletion never fires"
    );
}

#[test]
fn contexts_are_base64_json_string_pairs_in_canonical_form() {
    let b64 = |s: &str| STANDARD.encode(s);
    assert_eq!(parse_context(None), Ok(Vec::new()));
    assert_eq!(parse_context(Some(&b64("{}"))), Ok(Vec::new()));
    let a = parse_context(Some(&b64(r#"{"b":"2","a":"1"}"#))).expect("pairs");
    let b = parse_context(Some(&b64(r#"{ "a" : "1", "b":"2" }"#))).expect("pairs");
    assert_eq!(a, br#"{"a":"1","b":"2"}"#);
    assert_eq!(a, b, "the same pairs bind the same bytes");
    assert_eq!(
        context_header(&a).as_deref(),
        Some(b64(r#"{"a":"1","b":"2"}"#).as_str())
    );
    assert_eq!(context_header(&[]), None);
    for bad in [
        "not base64!".to_owned(),
        b64("not json"),
        b64(r#"["a"]"#),
        b64(r#"{"a":1}"#),
        b64(r#"{"a":{"b":"c"}}"#),
    ] {
        assert_eq!(
            parse_context(Some(&bad)),
            Err(KmsError::BadContext),
            "{bad}"
        );
    }
    let long = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_CONTEXT_LEN));
    assert_eq!(
        parse_context(Some(&b64(&long))),
        Err(KmsError::ContextTooLong)
    );
}
