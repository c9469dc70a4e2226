use super::*;
use proptest::prelude::*;

fn bucket_reason(name: &str) -> Option<&'static str> {
    match BucketName::parse(name) {
        Ok(_) => None,
        Err(NameError::InvalidBucketName { name: n, reason }) => {
            assert_eq!(n, name);
            Some(reason)
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn data_id_hex_round_trip() {
    let id = DataId::from_bytes([0xab; 16]);
    assert_eq!(id.to_string(), "ab".repeat(16));
    assert_eq!(DataId::from_hex(&id.to_string()), Ok(id));
    assert_eq!(format!("{id:?}"), format!("DataId({})", "ab".repeat(16)));
}

#[test]
fn data_id_from_hex_rejects_bad_input() {
    for bad in [
        "",
        "ab",
        &"ab".repeat(17),
        &"AB".repeat(16),
        &"gg".repeat(16),
        &format!("{}é", "a".repeat(30)),
    ] {
        assert_eq!(
            DataId::from_hex(bad),
            Err(NameError::InvalidDataId),
            "{bad}"
        );
    }
}

#[test]
fn valid_bucket_names() {
    for name in [
        "abc",
        "my-bucket",
        "my.bucket.name",
        "a1b2c3",
        "123",
        "1.2.3",
        "1.2.3.4.5",
        "1234.1.1.1",
        "192.168.5.4a",
        "xn-abc",
        "sthree",
        "amzn-s3-demo",
        "bucket-s3alia",
        "a-.b",
        &"a".repeat(63),
    ] {
        let parsed = BucketName::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.as_str(), name);
        assert_eq!(parsed.to_string(), name);
    }
}

#[test]
fn invalid_bucket_names_with_reasons() {
    let cases: &[(&str, &str)] = &[
        ("", "shorter than 3 characters"),
        ("ab", "shorter than 3 characters"),
        (&"a".repeat(64), "longer than 63 characters"),
        (
            "My-Bucket",
            "only lowercase letters, digits, '.' and '-' are allowed",
        ),
        (
            "my_bucket",
            "only lowercase letters, digits, '.' and '-' are allowed",
        ),
        (
            "my bucket",
            "only lowercase letters, digits, '.' and '-' are allowed",
        ),
        (
            "bück",
            "only lowercase letters, digits, '.' and '-' are allowed",
        ),
        ("-bucket", "must begin with a letter or digit"),
        (".bucket", "must begin with a letter or digit"),
        ("bucket-", "must end with a letter or digit"),
        ("bucket.", "must end with a letter or digit"),
        ("my..bucket", "must not contain two adjacent periods"),
        ("192.168.5.4", "must not be formatted as an IP address"),
        ("999.999.999.999", "must not be formatted as an IP address"),
        ("xn--bucket", "starts with a reserved prefix"),
        ("sthree-bucket", "starts with a reserved prefix"),
        ("sthree-configurator", "starts with a reserved prefix"),
        ("amzn-s3-demo-bucket", "starts with a reserved prefix"),
        ("bucket-s3alias", "ends with a reserved suffix"),
        ("bucket--ol-s3", "ends with a reserved suffix"),
        ("bucket.mrap", "ends with a reserved suffix"),
        ("bucket--x-s3", "ends with a reserved suffix"),
        ("bucket--table-s3", "ends with a reserved suffix"),
    ];
    for (name, reason) in cases {
        assert_eq!(bucket_reason(name), Some(*reason), "{name}");
    }
}

#[test]
fn object_keys() {
    assert_eq!(
        ObjectKey::parse("a").map(|k| k.as_str().to_owned()),
        Ok("a".into())
    );
    assert!(ObjectKey::parse("photos/2024/ünïcødé 🎉.jpg").is_ok());
    assert!(ObjectKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
    assert_eq!(
        ObjectKey::parse(&"k".repeat(MAX_KEY_LEN + 1)),
        Err(NameError::KeyTooLong { len: 1025 })
    );
    // 342 three-byte characters are 1026 bytes though only 342 chars.
    assert_eq!(
        ObjectKey::parse(&"€".repeat(342)),
        Err(NameError::KeyTooLong { len: 1026 })
    );
    assert_eq!(
        ObjectKey::parse(""),
        Err(NameError::InvalidKey { reason: "empty" })
    );
    assert_eq!(
        ObjectKey::parse("a\0b"),
        Err(NameError::InvalidKey {
            reason: "contains U+0000"
        })
    );
    assert_eq!(
        ObjectKey::parse("x/y").map(|k| k.to_string()),
        Ok("x/y".into())
    );
}

#[test]
fn node_and_zone_display() {
    assert_eq!(NodeId(42).to_string(), "42");
    assert!(NodeId(1) < NodeId(2));
    assert_eq!(ZoneName::from("eu-1a").to_string(), "eu-1a");
    assert_eq!(ZoneName::from("z").as_str(), "z");
}

#[test]
fn mix_is_inverted_by_unmix() {
    assert_eq!(MIX_A.wrapping_mul(MIX_A_INV), 1);
    assert_eq!(MIX_B.wrapping_mul(MIX_B_INV), 1);
    for seq in [0, 1, 2, 255, 1 << 32, u64::MAX - 1, u64::MAX] {
        assert_eq!(unmix(mix(seq)), seq);
    }
}

#[test]
fn version_ids() {
    let null = VersionId::null();
    assert!(null.is_null());
    assert_eq!(null.as_str(), "null");
    assert_eq!(null.seq(), None);
    assert_eq!(VersionId::parse("null"), Ok(null));

    let v = VersionId::from_seq(7);
    assert!(!v.is_null());
    assert_eq!(v.as_str().len(), VERSION_ID_LEN);
    assert_eq!(v.seq(), Some(7));
    assert_eq!(VersionId::parse(v.as_str()), Ok(v.clone()));
    assert_eq!(v, VersionId::from_seq(7));
    assert_ne!(v, VersionId::from_seq(8));
    // Consecutive ids share no visible prefix.
    assert_ne!(
        &VersionId::from_seq(7).as_str()[..4],
        &VersionId::from_seq(8).as_str()[..4]
    );
    assert_eq!(v.to_string(), v.as_str());
}

#[test]
fn version_id_parse_rejects_forgeries() {
    let good = VersionId::from_seq(12345).as_str().to_owned();
    let mut flipped = good.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap_or_default();
    for bad in [
        "",
        "NULL",
        "Null",
        "null ",
        "12345",
        &"A".repeat(VERSION_ID_LEN),
        &good[..VERSION_ID_LEN - 1],
        &format!("{good}A"),
        &flipped,
        &good.replace('-', "+").replace('_', "/"),
    ] {
        if bad == good {
            continue;
        }
        assert_eq!(
            VersionId::parse(bad),
            Err(NameError::InvalidVersionId),
            "{bad}"
        );
    }
}

#[test]
fn upload_ids() {
    let id = new_upload_id([0xff; 16]);
    assert_eq!(id.len(), UPLOAD_ID_LEN);
    assert!(is_valid_upload_id(&id));
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert!(!is_valid_upload_id(""));
    assert!(!is_valid_upload_id(&"A".repeat(21)));
    assert!(!is_valid_upload_id(&"A".repeat(23)));
    assert!(!is_valid_upload_id("AAAAAAAAAAAAAAAAAAAA+/"));
    // Non-canonical trailing bits: the last char of 16 bytes encodes only 2 bits.
    assert!(is_valid_upload_id("AAAAAAAAAAAAAAAAAAAAAA"));
    assert!(!is_valid_upload_id("AAAAAAAAAAAAAAAAAAAAAB"));
}

#[test]
fn error_codes_are_distinct() {
    let errors = [
        NameError::InvalidBucketName {
            name: "x".into(),
            reason: "r",
        },
        NameError::KeyTooLong { len: 2000 },
        NameError::InvalidKey { reason: "r" },
        NameError::InvalidDataId,
        NameError::InvalidVersionId,
    ];
    let codes: std::collections::BTreeSet<_> = errors.iter().map(NameError::code).collect();
    assert_eq!(codes.len(), errors.len());
    assert!(
        NameError::KeyTooLong { len: 2000 }
            .to_string()
            .contains("2000")
    );
}

proptest! {
    #[test]
    fn version_id_round_trips(seq in any::<u64>()) {
        let v = VersionId::from_seq(seq);
        prop_assert_eq!(v.as_str().len(), VERSION_ID_LEN);
        prop_assert!(v.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(v.seq(), Some(seq));
        prop_assert_eq!(VersionId::parse(v.as_str()), Ok(v));
    }

    #[test]
    fn version_ids_are_distinct(a in any::<u64>(), b in any::<u64>()) {
        prop_assume!(a != b);
        prop_assert_ne!(VersionId::from_seq(a), VersionId::from_seq(b));
    }

    #[test]
    fn random_strings_are_not_version_ids(s in "[A-Za-z0-9_-]{20}") {
        // 56 check bits: a random string passes with probability 2^-56.
        prop_assert_eq!(VersionId::parse(&s), Err(NameError::InvalidVersionId));
    }

    #[test]
    fn data_id_round_trips(bytes in any::<[u8; 16]>()) {
        let id = DataId::from_bytes(bytes);
        prop_assert_eq!(DataId::from_hex(&id.to_string()), Ok(id));
    }

    #[test]
    fn upload_id_round_trips(bytes in any::<[u8; 16]>()) {
        prop_assert!(is_valid_upload_id(&new_upload_id(bytes)));
    }

    #[test]
    fn generated_bucket_names_follow_the_rules(name in "[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]") {
        let ok = BucketName::parse(&name).is_ok();
        let expected = !name.contains("..")
            && !looks_like_ipv4(&name)
            && !RESERVED_BUCKET_PREFIXES.iter().any(|p| name.starts_with(p))
            && !RESERVED_BUCKET_SUFFIXES.iter().any(|s| name.ends_with(s));
        prop_assert_eq!(ok, expected);
    }

    #[test]
    fn any_string_bucket_parse_never_panics(name in ".{0,80}") {
        let _ = BucketName::parse(&name);
    }

    #[test]
    fn keys_accepted_iff_rules_hold(key in "\\PC{0,400}") {
        let ok = ObjectKey::parse(&key).is_ok();
        prop_assert_eq!(ok, !key.is_empty() && key.len() <= MAX_KEY_LEN && !key.contains('\0'));
    }
}
