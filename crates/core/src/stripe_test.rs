use super::*;
use proptest::prelude::*;

fn rs(k: u32, m: u32) -> Layout {
    Layout::new(k, m).unwrap_or_else(|e| panic!("RS({k},{m}): {e}"))
}

fn codec(k: u32, m: u32) -> Codec {
    Codec::new(rs(k, m)).unwrap_or_else(|e| panic!("RS({k},{m}): {e}"))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// Every subset of `0..n` with at most `max` elements, as bit masks.
fn erasure_sets(n: usize, max: usize) -> impl Iterator<Item = u32> {
    (0u32..(1 << n)).filter(move |mask| mask.count_ones() as usize <= max)
}

fn erase(shards: &[Vec<u8>], mask: u32) -> Vec<Option<Vec<u8>>> {
    shards
        .iter()
        .enumerate()
        .map(|(i, s)| (mask & (1 << i) == 0).then(|| s.clone()))
        .collect()
}

#[test]
fn geometry_basics() {
    let g = StripeGeometry::new(rs(3, 3), 4);
    assert_eq!(g.layout(), rs(3, 3));
    assert_eq!(g.chunk_size(), 4);
    assert_eq!(g.stripe_data_size(), 12);
    assert_eq!(g.stripe_count(0), 0);
    assert_eq!(g.chunk_count(0), 0);
    assert_eq!(g.shard_data_len(0), 0);
    assert_eq!(g.stripe_count(1), 1);
    assert_eq!(g.stripe_count(12), 1);
    assert_eq!(g.stripe_count(13), 2);
    assert_eq!(g.chunk_count(13), 2);
    assert_eq!(g.shard_data_len(13), 8);
    assert_eq!(g.stripe_offset(0), 0);
    assert_eq!(g.stripe_offset(2), 24);
    assert_eq!(g.stripe_offset(u64::MAX), u64::MAX);
    assert_eq!(g.stripe_len(13, 0), 12);
    assert_eq!(g.stripe_len(13, 1), 1);
    assert_eq!(g.stripe_len(13, 2), 0);
    assert_eq!(g.stripe_len(0, 0), 0);
}

#[test]
fn geometry_ranges() {
    let g = StripeGeometry::new(rs(3, 3), 4);
    assert_eq!(g.stripes_for_range(0, 0), 0..1);
    assert_eq!(g.stripes_for_range(0, 11), 0..1);
    assert_eq!(g.stripes_for_range(11, 12), 0..2);
    assert_eq!(g.stripes_for_range(12, 12), 1..2);
    assert_eq!(g.stripes_for_range(5, 40), 0..4);
    assert!(g.stripes_for_range(13, 12).is_empty());
    assert_eq!(
        g.stripes_for_range(u64::MAX, u64::MAX),
        u64::MAX / 12..u64::MAX / 12 + 1
    );
}

#[test]
fn default_geometry() {
    let g = StripeGeometry::new(rs(5, 4), DEFAULT_CHUNK_SIZE);
    assert_eq!(g.stripe_data_size(), 5 * 256 * 1024);
    let five_tib = 5u64 << 40;
    assert_eq!(g.stripe_count(five_tib), five_tib.div_ceil(5 * 256 * 1024));
}

#[test]
fn zero_chunk_size() {
    assert!(matches!(
        StripeGeometry::try_new(rs(3, 3), 0),
        Err(CodecError::ZeroChunkSize)
    ));
    assert_eq!(
        StripeGeometry::try_new(rs(3, 3), 1)
            .map(|g| g.stripe_data_size())
            .ok(),
        Some(3)
    );
    assert!(matches!(
        codec(3, 3).encode_stripe(&[], 0),
        Err(CodecError::ZeroChunkSize)
    ));
    let panic = std::panic::catch_unwind(|| StripeGeometry::new(rs(3, 3), 0))
        .expect_err("a zero chunk size panics");
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    assert_eq!(message, Some("chunk size must be at least one byte"));
}

#[test]
fn encode_pads_and_splits() {
    let c = codec(3, 2);
    let shards = c.encode_stripe(b"abcdefg", 3).unwrap_or_default();
    assert_eq!(shards.len(), 5);
    assert!(shards.iter().all(|s| s.len() == 3));
    assert_eq!(shards[0], b"abc");
    assert_eq!(shards[1], b"def");
    assert_eq!(shards[2], b"g\0\0");
    let empty = c.encode_stripe(&[], 3).unwrap_or_default();
    assert!(empty.iter().all(|s| s == &[0, 0, 0]));
    assert!(matches!(
        c.encode_stripe(&[0; 10], 3),
        Err(CodecError::DataTooLarge {
            len: 10,
            capacity: 9
        })
    ));
}

#[test]
fn exhaustive_round_trips_for_architecture_layouts() {
    let layouts = [
        (1, 2),
        (2, 1),
        (3, 3),
        (4, 2),
        (5, 4),
        (6, 3),
        (9, 6),
        (10, 5),
    ];
    for (k, m) in layouts {
        let c = codec(k, m);
        let chunk = 16;
        let data = pattern(k as usize * chunk - 3, k as u8);
        let shards = c
            .encode_stripe(&data, chunk)
            .unwrap_or_else(|e| panic!("RS({k},{m}): {e}"));
        let n = (k + m) as usize;
        for mask in erasure_sets(n, m as usize) {
            let mut partial = erase(&shards, mask);
            c.reconstruct_data(&mut partial)
                .unwrap_or_else(|e| panic!("RS({k},{m}) mask {mask:b}: {e}"));
            let joined = c.join_data(&partial, data.len());
            assert_eq!(
                joined.ok().as_deref(),
                Some(&data[..]),
                "RS({k},{m}) {mask:b}"
            );
            // Full reconstruction restores parity too, byte for byte.
            let mut all = erase(&shards, mask);
            c.reconstruct(&mut all)
                .unwrap_or_else(|e| panic!("RS({k},{m}) mask {mask:b}: {e}"));
            let restored: Vec<Vec<u8>> = all.into_iter().flatten().collect();
            assert_eq!(restored, shards);
        }
    }
}

#[test]
fn too_many_erasures_fail() {
    let c = codec(3, 3);
    let shards = c.encode_stripe(b"hello world", 4).unwrap_or_default();
    for mask in erasure_sets(6, 6).filter(|m| m.count_ones() > 3) {
        let mut partial = erase(&shards, mask);
        let present = 6 - mask.count_ones() as usize;
        assert!(matches!(
            c.reconstruct_data(&mut partial),
            Err(CodecError::TooFewShards { present: p, needed: 3 }) if p == present
        ));
        assert!(matches!(
            c.reconstruct(&mut partial),
            Err(CodecError::TooFewShards { .. })
        ));
    }
}

#[test]
fn no_parity_layout() {
    let c = codec(3, 0);
    let shards = c.encode_stripe(b"abcdefgh", 3).unwrap_or_default();
    assert_eq!(shards.len(), 3);
    let mut all: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
    assert!(c.reconstruct_data(&mut all).is_ok());
    assert!(c.reconstruct(&mut all).is_ok());
    assert_eq!(c.join_data(&all, 8).ok(), Some(b"abcdefgh".to_vec()));
    all[1] = None;
    assert!(matches!(
        c.reconstruct_data(&mut all),
        Err(CodecError::TooFewShards {
            present: 2,
            needed: 3
        })
    ));
}

#[test]
fn malformed_shard_slices() {
    let c = codec(3, 3);
    let shards = c.encode_stripe(b"abcdef", 2).unwrap_or_default();
    let mut short: Vec<Option<Vec<u8>>> = shards[..5].iter().cloned().map(Some).collect();
    assert!(matches!(
        c.reconstruct_data(&mut short),
        Err(CodecError::WrongShardCount {
            expected: 6,
            got: 5
        })
    ));
    assert!(matches!(
        c.join_data(&short, 1),
        Err(CodecError::WrongShardCount { .. })
    ));
    let mut uneven = erase(&shards, 0b1);
    uneven[2] = Some(vec![0; 3]);
    assert!(matches!(
        c.reconstruct_data(&mut uneven),
        Err(CodecError::ShardSizeMismatch {
            index: 2,
            len: 3,
            expected: 2
        })
    ));
    let mut empty: Vec<Option<Vec<u8>>> = vec![Some(vec![]); 6];
    empty[0] = None;
    assert!(matches!(
        c.reconstruct_data(&mut empty),
        Err(CodecError::ZeroChunkSize)
    ));
    let missing = erase(&shards, 0b10);
    assert!(matches!(
        c.join_data(&missing, 6),
        Err(CodecError::MissingDataShard { index: 1 })
    ));
    // Bytes only from shard 0 do not need shard 1.
    assert_eq!(c.join_data(&missing, 2).ok(), Some(b"ab".to_vec()));
    let full = erase(&shards, 0);
    assert!(matches!(
        c.join_data(&full, 7),
        Err(CodecError::DataTooLarge {
            len: 7,
            capacity: 6
        })
    ));
    assert_eq!(c.join_data(&full, 0).ok(), Some(vec![]));
}

#[test]
fn error_codes_are_distinct() {
    let errors = [
        CodecError::TooFewShards {
            present: 1,
            needed: 2,
        },
        CodecError::WrongShardCount {
            expected: 1,
            got: 2,
        },
        CodecError::DataTooLarge {
            len: 1,
            capacity: 0,
        },
        CodecError::ZeroChunkSize,
        CodecError::ShardSizeMismatch {
            index: 0,
            len: 1,
            expected: 2,
        },
        CodecError::MissingDataShard { index: 0 },
        CodecError::ReedSolomon(reed_solomon_erasure::Error::TooFewShards),
    ];
    let codes: std::collections::BTreeSet<_> = errors.iter().map(CodecError::code).collect();
    assert_eq!(codes.len(), errors.len());
    assert_eq!(codec(2, 2).layout(), rs(2, 2));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_round_trip(
        k in 1u32..12,
        m in 0u32..6,
        chunk in 1usize..64,
        fill in 0.0f64..=1.0,
        seed in any::<u8>(),
        erasures in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
    ) {
        let c = codec(k, m);
        let n = (k + m) as usize;
        let len = ((k as usize * chunk) as f64 * fill) as usize;
        let data = pattern(len, seed);
        let shards = c.encode_stripe(&data, chunk).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut partial: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
        for e in erasures.iter().take(m as usize) {
            partial[e.index(n)] = None;
        }
        c.reconstruct_data(&mut partial).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(c.join_data(&partial, len).ok(), Some(data));
    }

    #[test]
    fn ranges_cover_exactly_the_touched_stripes(
        k in 1u32..8,
        chunk in 1u32..100,
        a in 0u64..10_000,
        b in 0u64..10_000,
    ) {
        let g = StripeGeometry::new(rs(k, 1), chunk);
        let (start, end) = (a.min(b), a.max(b));
        let r = g.stripes_for_range(start, end);
        prop_assert!(!r.is_empty());
        prop_assert!(g.stripe_offset(r.start) <= start);
        prop_assert!(start < g.stripe_offset(r.start + 1));
        prop_assert!(g.stripe_offset(r.end - 1) <= end);
        prop_assert!(end < g.stripe_offset(r.end));
    }

    #[test]
    fn stripes_partition_the_object(k in 1u32..8, chunk in 1u32..100, size in 0u64..50_000) {
        let g = StripeGeometry::new(rs(k, 2), chunk);
        let count = g.stripe_count(size);
        let total: u64 = (0..count).map(|s| g.stripe_len(size, s)).sum();
        prop_assert_eq!(total, size);
        if count > 0 {
            prop_assert!(g.stripe_len(size, count - 1) > 0);
        }
        prop_assert_eq!(g.stripe_len(size, count), 0);
        prop_assert_eq!(g.shard_data_len(size) * u64::from(k) >= size, true);
    }
}
