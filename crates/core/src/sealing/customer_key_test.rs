use super::*;

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn md5_b64(bytes: &[u8]) -> String {
    b64(&md5::Md5::digest(bytes))
}

/// Headers as an SDK sends them for `key`.
fn headers<'a>(algorithm: &'a str, key: &'a str, key_md5: &'a str) -> CustomerKeyHeaders<'a> {
    CustomerKeyHeaders {
        algorithm: Some(algorithm),
        key: Some(key),
        key_md5: Some(key_md5),
    }
}

#[test]
fn no_headers_is_no_customer_key() {
    assert!(
        CustomerKey::parse(&CustomerKeyHeaders::default())
            .expect("none")
            .is_none()
    );
    assert!(!CustomerKeyHeaders::default().any());
}

#[test]
fn a_complete_request_gives_the_key_and_its_md5() {
    let raw = [7_u8; 32];
    let (key, md5) = (b64(&raw), md5_b64(&raw));
    let parsed = CustomerKey::parse(&headers("AES256", &key, &md5))
        .expect("valid")
        .expect("present");
    assert_eq!(parsed.key().expose(), &raw);
    assert_eq!(parsed.key_md5(), md5);
    let printed = format!("{parsed:?}");
    assert!(
        !printed.contains(&key),
        "the key is never printed: {printed}"
    );
}

#[test]
fn every_incomplete_or_inconsistent_request_gets_its_own_error() {
    let raw = [7_u8; 32];
    let (key, md5) = (b64(&raw), md5_b64(&raw));
    let short = b64(&[7_u8; 31]);
    let long = b64(&[7_u8; 33]);
    let other_md5 = md5_b64(&[8_u8; 32]);
    let cases: Vec<(CustomerKeyHeaders<'_>, CustomerKeyError)> = vec![
        (
            CustomerKeyHeaders {
                algorithm: None,
                key: Some(&key),
                key_md5: Some(&md5),
            },
            CustomerKeyError::MissingAlgorithm,
        ),
        (
            CustomerKeyHeaders {
                algorithm: None,
                key: None,
                key_md5: Some(&md5),
            },
            CustomerKeyError::MissingAlgorithm,
        ),
        (
            headers("aes256", &key, &md5),
            CustomerKeyError::InvalidAlgorithm,
        ),
        (
            headers("AES128", &key, &md5),
            CustomerKeyError::InvalidAlgorithm,
        ),
        (
            headers("aws:kms", &key, &md5),
            CustomerKeyError::InvalidAlgorithm,
        ),
        (
            CustomerKeyHeaders {
                algorithm: Some("AES256"),
                key: None,
                key_md5: Some(&md5),
            },
            CustomerKeyError::MissingKey,
        ),
        (
            headers("AES256", "not base64!", &md5),
            CustomerKeyError::InvalidKey,
        ),
        (
            headers("AES256", &short, &md5),
            CustomerKeyError::InvalidKey,
        ),
        (headers("AES256", &long, &md5), CustomerKeyError::InvalidKey),
        (headers("AES256", "", &md5), CustomerKeyError::InvalidKey),
        (
            CustomerKeyHeaders {
                algorithm: Some("AES256"),
                key: Some(&key),
                key_md5: None,
            },
            CustomerKeyError::MissingKeyMd5,
        ),
        (
            headers("AES256", &key, &other_md5),
            CustomerKeyError::KeyMd5Mismatch,
        ),
        (
            headers("AES256", &key, "%%%"),
            CustomerKeyError::KeyMd5Mismatch,
        ),
        (
            headers("AES256", &key, ""),
            CustomerKeyError::KeyMd5Mismatch,
        ),
    ];
    for (given, expected) in cases {
        assert_eq!(
            CustomerKey::parse(&given).expect_err("refused"),
            expected,
            "{given:?}"
        );
    }
}

#[test]
fn a_key_check_verifies_only_for_its_key_and_hides_it() {
    let key = CustomerKey::from_key(SealKey::from_bytes([1; 32]));
    let other = CustomerKey::from_key(SealKey::from_bytes([2; 32]));
    let check = key.key_check([9; SALT_LEN]);
    assert_eq!(check.len(), KEY_CHECK_LEN);
    assert_eq!(key.verify(&check), Ok(()));
    assert_eq!(other.verify(&check), Err(CustomerKeyError::WrongKey));
    assert!(
        !check.windows(32).any(|w| w == [1_u8; 32]),
        "the check does not hold the key"
    );
    // Another salt, another check: equal keys do not show as equal checks.
    let again = key.key_check([10; SALT_LEN]);
    assert_ne!(check, again);
    assert_eq!(key.verify(&again), Ok(()));
}

#[test]
fn every_single_bit_flip_of_a_key_check_is_refused() {
    let key = CustomerKey::from_key(SealKey::from_bytes([3; 32]));
    let check = key.key_check([4; SALT_LEN]);
    for byte in 0..check.len() {
        for bit in 0..8 {
            let mut flipped = check.clone();
            flipped[byte] ^= 1 << bit;
            assert!(key.verify(&flipped).is_err(), "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn malformed_checks_are_refused_not_misread() {
    let key = CustomerKey::from_key(SealKey::from_bytes([5; 32]));
    let check = key.key_check([6; SALT_LEN]);
    for bad in [
        Vec::new(),
        check[..KEY_CHECK_LEN - 1].to_vec(),
        [check.as_slice(), &[0]].concat(),
    ] {
        assert_eq!(
            key.verify(&bad),
            Err(CustomerKeyError::MalformedCheck { len: bad.len() })
        );
    }
}

#[test]
fn the_md5_is_base64_of_the_raw_keys_md5_as_sdks_send_it() {
    // Computed independently: base64(md5(b"0123456789abcdef0123456789abcdef")).
    let raw: [u8; 32] = *b"0123456789abcdef0123456789abcdef";
    let key = CustomerKey::from_key(SealKey::from_bytes(raw));
    assert_eq!(key.key_md5(), "hRasmdxgYDKV3nvbahU1MA==");
    let parsed = CustomerKey::parse(&headers(
        "AES256",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "hRasmdxgYDKV3nvbahU1MA==",
    ))
    .expect("valid")
    .expect("present");
    assert_eq!(parsed.key().expose(), &raw);
}

#[test]
fn the_etag_digest_depends_on_key_and_body_and_is_not_the_md5() {
    let key = CustomerKey::from_key(SealKey::from_bytes([1; 32]));
    let other = CustomerKey::from_key(SealKey::from_bytes([2; 32]));
    let md5: [u8; 16] = md5::Md5::digest(b"body").into();
    let digest = key.etag_digest(&md5);
    assert_ne!(digest, md5);
    assert_eq!(
        digest,
        key.etag_digest(&md5),
        "stable for the same body and key"
    );
    assert_ne!(digest, other.etag_digest(&md5));
    let md5_other: [u8; 16] = md5::Md5::digest(b"other body").into();
    assert_ne!(digest, key.etag_digest(&md5_other));
}
