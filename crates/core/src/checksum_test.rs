use super::*;
use proptest::prelude::*;

/// A bit-at-a-time reflected CRC with init and xorout all ones: an independent reference.
fn reference_crc(poly_reflected: u64, width: u32, data: &[u8]) -> u64 {
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut crc = mask;
    for &byte in data {
        crc ^= u64::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ poly_reflected
            } else {
                crc >> 1
            };
        }
    }
    crc ^ mask
}

fn reference(algorithm: ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
    let crc = match algorithm {
        ChecksumAlgorithm::Crc32 => reference_crc(0xEDB8_8320, 32, data),
        ChecksumAlgorithm::Crc32c => reference_crc(0x82F6_3B78, 32, data),
        ChecksumAlgorithm::Crc64Nvme => reference_crc(0x9A6C_9329_AC4B_C9B5, 64, data),
        other => panic!("{other} is not a CRC"),
    };
    crc_bytes(algorithm, crc)
}

fn hex_of(algorithm: ChecksumAlgorithm, data: &[u8]) -> String {
    hex::encode(checksum_of(algorithm, data))
}

#[test]
fn known_vectors() {
    use ChecksumAlgorithm::*;
    let cases: &[(ChecksumAlgorithm, &[u8], &str)] = &[
        (Crc32, b"", "00000000"),
        (Crc32, b"123456789", "cbf43926"),
        (Crc32, b"hello world", "0d4a1185"),
        (Crc32c, b"", "00000000"),
        (Crc32c, b"123456789", "e3069283"),
        (Crc32c, b"hello world", "c99465aa"),
        (Crc64Nvme, b"", "0000000000000000"),
        (Crc64Nvme, b"123456789", "ae8b14860a799888"),
        (Sha1, b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        (
            Sha1,
            b"123456789",
            "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
        ),
        (
            Sha1,
            b"hello world",
            "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed",
        ),
        (
            Sha256,
            b"",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            Sha256,
            b"123456789",
            "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
        ),
        (
            Sha256,
            b"hello world",
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        ),
    ];
    for (alg, data, expected) in cases {
        assert_eq!(hex_of(*alg, data), *expected, "{alg} of {data:?}");
    }
    // CRC64NVME of "hello world" against the bitwise reference (check value verified above).
    assert_eq!(
        checksum_of(Crc64Nvme, b"hello world"),
        reference(Crc64Nvme, b"hello world")
    );
    assert_eq!(
        reference(Crc64Nvme, b"123456789"),
        checksum_of(Crc64Nvme, b"123456789")
    );
    // As S3 shows them in headers.
    assert_eq!(to_base64(&checksum_of(Crc32, b"hello world")), "DUoRhQ==");
    assert_eq!(
        to_base64(&checksum_of(Sha256, b"")),
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
}

#[test]
fn names_and_lengths() {
    for alg in ChecksumAlgorithm::ALL {
        assert_eq!(ChecksumAlgorithm::from_s3_name(alg.s3_name()), Some(alg));
        assert_eq!(
            ChecksumAlgorithm::from_s3_name(&alg.s3_name().to_lowercase()),
            Some(alg)
        );
        assert_eq!(
            alg.header_name(),
            format!("x-amz-checksum-{}", alg.s3_name().to_lowercase())
        );
        assert_eq!(checksum_of(alg, b"x").len(), alg.digest_len());
        assert_eq!(alg.to_string(), alg.s3_name());
        assert!(alg.supports_full_object_multipart() || alg.supports_composite_multipart());
        let default = alg.default_multipart_type();
        assert!(match default {
            ChecksumType::Composite => alg.supports_composite_multipart(),
            ChecksumType::FullObject => alg.supports_full_object_multipart(),
        });
    }
    assert_eq!(
        ChecksumAlgorithm::from_s3_name("Crc32c"),
        Some(ChecksumAlgorithm::Crc32c)
    );
    assert_eq!(ChecksumAlgorithm::from_s3_name("MD5"), None);
    assert_eq!(ChecksumAlgorithm::from_s3_name(""), None);
    assert!(ChecksumAlgorithm::Crc32.supports_full_object_multipart());
    assert!(ChecksumAlgorithm::Crc64Nvme.supports_full_object_multipart());
    assert!(!ChecksumAlgorithm::Crc64Nvme.supports_composite_multipart());
    assert!(!ChecksumAlgorithm::Sha256.supports_full_object_multipart());
    assert_eq!(
        ChecksumAlgorithm::Crc64Nvme.default_multipart_type(),
        ChecksumType::FullObject
    );
    for t in [ChecksumType::Composite, ChecksumType::FullObject] {
        assert_eq!(ChecksumType::from_s3_name(t.s3_name()), Some(t));
        assert_eq!(
            ChecksumType::from_s3_name(&t.s3_name().to_lowercase()),
            Some(t)
        );
    }
    assert_eq!(ChecksumType::from_s3_name("FULL"), None);
}

#[test]
fn base64_and_parse() {
    assert_eq!(from_base64("DUoRhQ=="), Ok(vec![0x0d, 0x4a, 0x11, 0x85]));
    assert_eq!(from_base64("DUoRhQ"), Err(ChecksumError::InvalidBase64));
    assert_eq!(from_base64("!!!!"), Err(ChecksumError::InvalidBase64));
    assert_eq!(from_base64(""), Ok(vec![]));
    assert_eq!(
        parse_checksum(ChecksumAlgorithm::Crc32, "DUoRhQ=="),
        Ok(vec![0x0d, 0x4a, 0x11, 0x85])
    );
    assert_eq!(
        parse_checksum(ChecksumAlgorithm::Crc64Nvme, "DUoRhQ=="),
        Err(ChecksumError::WrongLength {
            algorithm: ChecksumAlgorithm::Crc64Nvme,
            expected: 8,
            got: 4
        })
    );
}

#[test]
fn streaming_equals_one_shot() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    for alg in ChecksumAlgorithm::ALL {
        let mut hasher = ChecksumHasher::new(alg);
        assert_eq!(hasher.algorithm(), alg);
        for piece in data.chunks(777) {
            hasher.update(piece);
        }
        let copy = hasher.clone();
        assert_eq!(hasher.finalize(), checksum_of(alg, &data));
        assert_eq!(copy.finalize(), checksum_of(alg, &data));
        assert!(format!("{:?}", ChecksumHasher::new(alg)).contains("ChecksumHasher"));
    }
}

#[test]
fn composite_checksum_matches_definition() {
    // Two parts' SHA-256 digests, hashed together, suffixed with the part count.
    let parts = [b"part one".as_slice(), b"part two".as_slice()];
    for alg in ChecksumAlgorithm::ALL {
        let digests: Vec<Vec<u8>> = parts.iter().map(|p| checksum_of(alg, p)).collect();
        let concat: Vec<u8> = digests.concat();
        let expected = format!("{}-2", to_base64(&checksum_of(alg, &concat)));
        assert_eq!(composite_checksum(alg, &digests), expected);
    }
    assert_eq!(
        composite_checksum(ChecksumAlgorithm::Crc32, &[]),
        "AAAAAA==-0"
    );
}

#[test]
fn full_object_crc_of_parts() {
    let parts: [&[u8]; 4] = [b"hello ", b"", b"world", b"!"];
    let whole: Vec<u8> = parts.concat();
    for alg in ChecksumAlgorithm::ALL {
        let digests: Vec<(Vec<u8>, u64)> = parts
            .iter()
            .map(|p| (checksum_of(alg, p), p.len() as u64))
            .collect();
        let result = combine_full_object_crc(alg, &digests);
        if alg.supports_full_object_multipart() {
            assert_eq!(result, Ok(checksum_of(alg, &whole)), "{alg}");
            assert_eq!(combine_full_object_crc(alg, &[]), Ok(checksum_of(alg, b"")));
        } else {
            assert_eq!(result, Err(ChecksumError::NotCombinable { algorithm: alg }));
        }
    }
    assert_eq!(
        combine_full_object_crc(ChecksumAlgorithm::Crc32, &[(vec![1, 2, 3], 3)]),
        Err(ChecksumError::WrongLength {
            algorithm: ChecksumAlgorithm::Crc32,
            expected: 4,
            got: 3
        })
    );
}

#[test]
fn error_codes_are_distinct() {
    let codes = [
        ChecksumError::InvalidBase64.code(),
        ChecksumError::WrongLength {
            algorithm: ChecksumAlgorithm::Sha1,
            expected: 20,
            got: 1,
        }
        .code(),
        ChecksumError::NotCombinable {
            algorithm: ChecksumAlgorithm::Sha1,
        }
        .code(),
    ];
    assert!(codes[0] != codes[1] && codes[1] != codes[2] && codes[0] != codes[2]);
}

fn arb_crc() -> impl Strategy<Value = ChecksumAlgorithm> {
    prop_oneof![
        Just(ChecksumAlgorithm::Crc32),
        Just(ChecksumAlgorithm::Crc32c),
        Just(ChecksumAlgorithm::Crc64Nvme),
    ]
}

proptest! {
    #[test]
    fn crcs_match_bitwise_reference(alg in arb_crc(), data in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert_eq!(checksum_of(alg, &data), reference(alg, &data));
    }

    #[test]
    fn combine_equals_hashing_the_concatenation(
        alg in arb_crc(),
        parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
    ) {
        let digests: Vec<(Vec<u8>, u64)> =
            parts.iter().map(|p| (checksum_of(alg, p), p.len() as u64)).collect();
        prop_assert_eq!(combine_full_object_crc(alg, &digests), Ok(checksum_of(alg, &parts.concat())));
    }

    #[test]
    fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(from_base64(&to_base64(&bytes)), Ok(bytes));
    }
}
