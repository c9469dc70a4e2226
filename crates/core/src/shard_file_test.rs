use super::*;
use proptest::prelude::*;

fn id(b: u8) -> DataId {
    DataId::from_bytes([b; 16])
}

fn header() -> ShardFileHeader {
    ShardFileHeader {
        data_id: id(7),
        shard_index: 4,
        data_shards: 3,
        parity_shards: 3,
        chunk_size: 4096,
        generation: 0xfeed,
        lease_id: 42,
    }
}

#[test]
fn header_round_trips_and_every_byte_is_covered() {
    let h = header();
    let bytes = h.encode();
    assert_eq!(ShardFileHeader::decode(&bytes), Ok(h));
    assert_eq!(announced_version(&bytes), Some(FORMAT_VERSION));
    for i in 0..HEADER_LEN as usize {
        let mut flipped = bytes;
        flipped[i] ^= 0x01;
        // The magic and version are checked first; the checksum covers everything else.
        let expected = match i {
            0..4 => ShardFileError::BadMagic,
            4..6 => ShardFileError::UnsupportedVersion(FORMAT_VERSION ^ (1 << (8 * (i - 4)))),
            _ => ShardFileError::HeaderChecksum,
        };
        assert_eq!(
            ShardFileHeader::decode(&flipped),
            Err(expected),
            "flip at byte {i}"
        );
    }
}

#[test]
fn header_errors_are_specific() {
    let bytes = header().encode();
    assert_eq!(
        ShardFileHeader::decode(&bytes[..10]),
        Err(ShardFileError::Truncated)
    );
    let mut magic = bytes;
    magic[0] = b'X';
    assert_eq!(
        ShardFileHeader::decode(&magic),
        Err(ShardFileError::BadMagic)
    );
    let mut v1 = bytes;
    v1[4] = 1;
    assert_eq!(
        ShardFileHeader::decode(&v1),
        Err(ShardFileError::UnsupportedVersion(1))
    );
    assert_eq!(announced_version(&v1), Some(1));
    let mut sum = bytes;
    sum[30] ^= 0xff;
    assert_eq!(
        ShardFileHeader::decode(&sum),
        Err(ShardFileError::HeaderChecksum)
    );
    let zero_gen = ShardFileHeader {
        generation: 0,
        ..header()
    };
    assert_eq!(
        ShardFileHeader::decode(&zero_gen.encode()),
        Err(ShardFileError::InvalidField {
            field: "generation"
        })
    );
    let bad_index = ShardFileHeader {
        shard_index: 6,
        ..header()
    };
    assert_eq!(
        ShardFileHeader::decode(&bad_index.encode()),
        Err(ShardFileError::InvalidField {
            field: "shard_index"
        })
    );
}

#[test]
fn footer_round_trips_and_detects_flips() {
    let f = ShardFileFooter {
        chunks: 9,
        digest: [3; DIGEST_LEN],
    };
    let bytes = f.encode();
    assert_eq!(ShardFileFooter::decode(&bytes), Ok(f));
    for i in 0..FOOTER_LEN as usize {
        let mut flipped = bytes;
        flipped[i] ^= 0x80;
        let expected = match i {
            0..4 => ShardFileError::BadMagic,
            _ => ShardFileError::FooterChecksum,
        };
        assert_eq!(ShardFileFooter::decode(&flipped), Err(expected), "byte {i}");
    }
    assert_eq!(
        ShardFileFooter::decode(&bytes[..63]),
        Err(ShardFileError::Truncated)
    );
}

#[test]
fn chunk_hashes_bind_blob_shard_and_position() {
    let data = b"the same bytes";
    let base = chunk_hash(&id(1), 2, 3, data);
    assert!(verify_chunk(&id(1), 2, 3, data, &base));
    assert_ne!(base, chunk_hash(&id(2), 2, 3, data), "another blob");
    assert_ne!(base, chunk_hash(&id(1), 1, 3, data), "another shard");
    assert_ne!(base, chunk_hash(&id(1), 2, 4, data), "another position");
    assert_ne!(
        base,
        chunk_hash(&id(1), 2, 3, b"other bytes"),
        "other bytes"
    );
    assert_ne!(
        base,
        *blake3::hash(data).as_bytes(),
        "not the plain hash of the bytes"
    );
    assert!(!verify_chunk(&id(1), 2, 3, data, &base[..31]));
    assert!(!verify_chunk(&id(1), 2, 4, data, &base));
}

#[test]
fn digests_commit_to_order_count_and_place() {
    let hashes: Vec<ChunkHash> = (0..4)
        .map(|i| chunk_hash(&id(1), 0, i, &[i as u8]))
        .collect();
    let table: Vec<u8> = hashes.concat();
    let digest = shard_digest(&id(1), 0, &table).expect("whole hashes");
    let mut streamed = ShardDigester::new(&id(1), 0);
    for h in &hashes {
        streamed.push(h);
    }
    assert_eq!(streamed.chunks(), 4);
    assert_eq!(streamed.finish(), digest);
    assert!(digests_equal(&digest, &digest));

    let mut swapped = hashes.clone();
    swapped.swap(1, 2);
    assert_ne!(shard_digest(&id(1), 0, &swapped.concat()), Some(digest));
    assert_ne!(shard_digest(&id(1), 0, &table[..96]), Some(digest));
    assert_ne!(shard_digest(&id(1), 1, &table), Some(digest));
    assert_ne!(shard_digest(&id(2), 0, &table), Some(digest));
    assert_eq!(shard_digest(&id(1), 0, &table[..33]), None);
    assert!(!digests_equal(&digest[..31], &digest));
    // An empty shard still has a digest of its own.
    assert_ne!(shard_digest(&id(1), 0, &[]), shard_digest(&id(1), 1, &[]));
}

#[test]
fn file_geometry_is_exact() {
    assert_eq!(chunk_offset(4096, 0), HEADER_LEN);
    assert_eq!(chunk_offset(4096, 2), HEADER_LEN + 8192);
    assert_eq!(hash_table_offset(4096, 2), HEADER_LEN + 8192);
    let len = file_len(4096, 2);
    assert_eq!(len, HEADER_LEN + 2 * 4096 + 2 * HASH_LEN + FOOTER_LEN);
    assert_eq!(chunk_count_from_file_len(4096, len), Ok(2));
    assert_eq!(
        chunk_count_from_file_len(4096, len - 1),
        Err(ShardFileError::Truncated)
    );
    assert_eq!(
        chunk_count_from_file_len(4096, HEADER_LEN),
        Err(ShardFileError::Truncated)
    );
    assert_eq!(
        chunk_count_from_file_len(4096, HEADER_LEN + FOOTER_LEN),
        Ok(0)
    );
    assert_eq!(
        chunk_count_from_file_len(0, len),
        Err(ShardFileError::InvalidField {
            field: "chunk_size"
        })
    );
    assert_eq!(chunk_offset(u32::MAX, u64::MAX), u64::MAX);
}

proptest! {
    #[test]
    fn any_header_round_trips(
        data_id in any::<[u8; 16]>(),
        k in 1u32..20,
        m in 0u32..20,
        index_seed in any::<u32>(),
        chunk_size in 1u32..=(4 << 20),
        generation in 1u64..,
        lease_id in any::<u64>(),
    ) {
        let h = ShardFileHeader {
            data_id: DataId::from_bytes(data_id),
            shard_index: index_seed % (k + m),
            data_shards: k,
            parity_shards: m,
            chunk_size,
            generation,
            lease_id,
        };
        prop_assume!(h.layout().is_ok());
        prop_assert_eq!(ShardFileHeader::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn file_len_and_chunk_count_agree(chunk_size in 1u32..=(1 << 20), chunks in 0u64..10_000) {
        prop_assert_eq!(
            chunk_count_from_file_len(chunk_size, file_len(chunk_size, chunks)),
            Ok(chunks)
        );
    }
}
