use super::*;
use proptest::prelude::*;

fn sample() -> ShardFileHeader {
    ShardFileHeader {
        data_id: DataId::from_bytes([7; 16]),
        shard_index: 4,
        data_shards: 3,
        parity_shards: 3,
        chunk_size: 256 * 1024,
    }
}

/// Re-seals a header whose bytes were edited, so field checks run past the checksum.
fn reseal(mut bytes: [u8; HEADER_LEN as usize]) -> [u8; HEADER_LEN as usize] {
    let checksum = header_checksum(&bytes);
    bytes[CHECKSUM_OFFSET..].copy_from_slice(&checksum);
    bytes
}

#[test]
fn header_round_trip() {
    let header = sample();
    let bytes = header.encode();
    assert_eq!(bytes.len() as u64, HEADER_LEN);
    assert_eq!(&bytes[..4], b"TSHD");
    assert_eq!(&bytes[4..6], &[1, 0]);
    assert_eq!(ShardFileHeader::decode(&bytes), Ok(header));
    // Trailing bytes (the first chunk) are ignored.
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[9; 100]);
    assert_eq!(ShardFileHeader::decode(&longer), Ok(header));
    assert_eq!(header.layout().map(|l| l.total_shards()), Ok(6));
}

#[test]
fn header_layout_is_little_endian() {
    let bytes = sample().encode();
    assert_eq!(&bytes[8..24], &[7; 16]);
    assert_eq!(&bytes[24..28], &4u32.to_le_bytes());
    assert_eq!(&bytes[28..32], &3u32.to_le_bytes());
    assert_eq!(&bytes[32..36], &3u32.to_le_bytes());
    assert_eq!(&bytes[36..40], &(256u32 * 1024).to_le_bytes());
    assert!(bytes[6..8].iter().chain(&bytes[40..56]).all(|&b| b == 0));
    assert_eq!(bytes[56..], blake3::hash(&bytes[..56]).as_bytes()[..8]);
}

#[test]
fn every_header_bit_flip_is_detected() {
    let bytes = sample().encode();
    for byte in 0..HEADER_LEN as usize {
        for bit in 0..8 {
            let mut corrupt = bytes;
            corrupt[byte] ^= 1 << bit;
            let result = ShardFileHeader::decode(&corrupt);
            let expected = match byte {
                0..=3 => Some(ShardFormatError::BadMagic),
                4..=5 => Some(ShardFormatError::UnsupportedVersion(u16::from_le_bytes([
                    corrupt[4], corrupt[5],
                ]))),
                _ => Some(ShardFormatError::HeaderChecksum),
            };
            assert_eq!(result.err(), expected, "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn truncated_headers() {
    let bytes = sample().encode();
    for len in 0..HEADER_LEN as usize {
        assert_eq!(
            ShardFileHeader::decode(&bytes[..len]),
            Err(ShardFormatError::Truncated)
        );
    }
}

#[test]
fn future_version_is_refused_before_its_checksum() {
    let mut bytes = sample().encode();
    bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(
        ShardFileHeader::decode(&bytes),
        Err(ShardFormatError::UnsupportedVersion(2))
    );
}

#[test]
fn invalid_fields_behind_a_valid_checksum() {
    let cases: [(usize, [u8; 4], &str); 5] = [
        (24, 6u32.to_le_bytes(), "shard_index"),
        (28, 0u32.to_le_bytes(), "data_shards"),
        (32, 300u32.to_le_bytes(), "data_shards"),
        (36, 0u32.to_le_bytes(), "chunk_size"),
        (40, [1, 0, 0, 0], "reserved"),
    ];
    for (offset, value, field) in cases {
        let mut bytes = sample().encode();
        bytes[offset..offset + 4].copy_from_slice(&value);
        assert_eq!(
            ShardFileHeader::decode(&reseal(bytes)),
            Err(ShardFormatError::InvalidField { field }),
            "offset {offset}"
        );
    }
    let mut bytes = sample().encode();
    bytes[6] = 1;
    assert_eq!(
        ShardFileHeader::decode(&reseal(bytes)),
        Err(ShardFormatError::InvalidField { field: "reserved" })
    );
}

#[test]
fn record_arithmetic() {
    assert_eq!(chunk_record_len(100), 132);
    assert_eq!(chunk_offset(100, 0), 64);
    assert_eq!(chunk_offset(100, 3), 64 + 3 * 132);
    assert_eq!(chunk_offset(u32::MAX, u64::MAX), u64::MAX);
    assert_eq!(file_len(100, 2), 64 + 264);
    assert_eq!(chunk_count_from_file_len(100, 64), Ok(0));
    assert_eq!(chunk_count_from_file_len(100, 64 + 264), Ok(2));
    assert_eq!(
        chunk_count_from_file_len(100, 63),
        Err(ShardFormatError::Truncated)
    );
    assert_eq!(
        chunk_count_from_file_len(100, 64 + 263),
        Err(ShardFormatError::Truncated)
    );
    assert_eq!(
        chunk_count_from_file_len(100, 64 + 265),
        Err(ShardFormatError::Truncated)
    );
    assert_eq!(
        chunk_count_from_file_len(0, 64),
        Err(ShardFormatError::InvalidField {
            field: "chunk_size"
        })
    );
}

#[test]
fn chunk_hashes() {
    let data = b"chunk data";
    let record = encode_chunk_record(data);
    assert_eq!(record.len() as u64, data.len() as u64 + HASH_LEN);
    assert!(verify_chunk(data, &record[data.len()..]));
    assert_eq!(verify_chunk_record(&record), Some(&data[..]));
    assert!(!verify_chunk(data, &record[data.len() + 1..]));
    assert!(!verify_chunk(b"chunk datA", &record[data.len()..]));
    assert_eq!(verify_chunk_record(&record[..31]), None);
    for byte in 0..record.len() {
        let mut corrupt = record.clone();
        corrupt[byte] ^= 0x40;
        assert_eq!(verify_chunk_record(&corrupt), None, "byte {byte}");
    }
    assert_eq!(chunk_hash(b""), *blake3::hash(b"").as_bytes());
}

#[test]
fn error_codes_are_distinct() {
    let errors = [
        ShardFormatError::BadMagic,
        ShardFormatError::UnsupportedVersion(2),
        ShardFormatError::HeaderChecksum,
        ShardFormatError::Truncated,
        ShardFormatError::InvalidField { field: "x" },
    ];
    let codes: std::collections::BTreeSet<_> = errors.iter().map(ShardFormatError::code).collect();
    assert_eq!(codes.len(), errors.len());
}

fn arb_header() -> impl Strategy<Value = ShardFileHeader> {
    (
        any::<[u8; 16]>(),
        1u32..=200,
        0u32..=55,
        1u32..=u32::MAX,
        any::<u32>(),
    )
        .prop_map(|(id, k, m, chunk_size, index)| ShardFileHeader {
            data_id: DataId::from_bytes(id),
            shard_index: index % (k + m),
            data_shards: k,
            parity_shards: m,
            chunk_size,
        })
}

proptest! {
    #[test]
    fn any_valid_header_round_trips(header in arb_header()) {
        prop_assert_eq!(ShardFileHeader::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn any_corruption_is_detected(header in arb_header(), byte in 0usize..64, flip in 1u8..=255) {
        let mut bytes = header.encode();
        bytes[byte] ^= flip;
        prop_assert!(ShardFileHeader::decode(&bytes).is_err());
    }

    #[test]
    fn record_counts_invert_file_len(chunk_size in 1u32..1_000_000, count in 0u64..100_000) {
        let len = file_len(chunk_size, count);
        prop_assert_eq!(chunk_count_from_file_len(chunk_size, len), Ok(count));
        prop_assert!(chunk_count_from_file_len(chunk_size, len + 1).is_err());
    }
}
