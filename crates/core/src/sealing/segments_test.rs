//! Segment framing: geometry, round trips over every length near segment boundaries, random
//! ranges, and every way of tampering with what is stored.

use super::*;
use crate::sealing::aead::{Aes256GcmAead, KEY_LEN, SealKey};
use proptest::prelude::*;

const BINDING: Binding<'static> = Binding {
    bucket: "photos",
    key: "2026/cat.jpg",
    part_number: 0,
};

fn ciphers(layers: u8, first_key: u8) -> Vec<Box<dyn SegmentAead>> {
    (0..layers)
        .map(|l| {
            Box::new(Aes256GcmAead::new(&SealKey::from_bytes(
                [first_key + l; KEY_LEN],
            ))) as Box<dyn SegmentAead>
        })
        .collect()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Seals `plain` fed in pieces of `piece` bytes.
fn seal(geometry: SegmentGeometry, binding: &Binding<'_>, plain: &[u8], piece: usize) -> Vec<u8> {
    let mut sealer = SegmentSealer::new(geometry, binding, ciphers(geometry.layers(), 1)).unwrap();
    let mut out = Vec::new();
    for p in plain.chunks(piece.max(1)) {
        sealer.push(p, &mut out);
    }
    assert_eq!(sealer.finish(&mut out), plain.len() as u64);
    out
}

/// Opens `range` of a blob of `plain_len` bytes from `stored`, fed in pieces of `piece` bytes;
/// returns what was emitted and the outcome.
fn open_with(
    geometry: SegmentGeometry,
    binding: &Binding<'_>,
    layers: Vec<Box<dyn SegmentAead>>,
    stored: &[u8],
    range: Range<u64>,
    plain_len: u64,
    piece: usize,
) -> (Vec<u8>, Result<(), SealError>) {
    let mut opener = SegmentOpener::new(geometry, binding, layers, range, plain_len).unwrap();
    let mut out = Vec::new();
    for p in stored.chunks(piece.max(1)) {
        if let Err(e) = opener.push(p, &mut out) {
            return (out, Err(e));
        }
    }
    (out, opener.finish())
}

/// Opens the whole blob from `stored`.
fn open_all(
    geometry: SegmentGeometry,
    stored: &[u8],
    plain_len: u64,
) -> (Vec<u8>, Result<(), SealError>) {
    let layers = ciphers(geometry.layers(), 1);
    open_with(
        geometry,
        &BINDING,
        layers,
        stored,
        0..plain_len,
        plain_len,
        1000,
    )
}

fn geometry(segment_size: u32, layers: u8) -> SegmentGeometry {
    SegmentGeometry::new(segment_size, layers).unwrap()
}

#[test]
fn geometry_counts_segments_and_stored_bytes() {
    let g = geometry(16, 1);
    assert_eq!((g.segment_size(), g.layers(), g.overhead()), (16, 1, 16));
    for (plain, segments, stored) in [
        (0u64, 1u64, 16u64),
        (1, 1, 17),
        (16, 1, 32),
        (17, 2, 49),
        (32, 2, 64),
        (33, 3, 81),
    ] {
        assert_eq!(g.segment_count(plain), segments, "{plain}");
        assert_eq!(g.stored_len(plain), stored, "{plain}");
    }
    assert_eq!(geometry(16, 2).stored_len(33), 33 + 3 * 32);
    assert_eq!(
        geometry(DEFAULT_SEGMENT_SIZE, 1).stored_len(5 << 30),
        (5 << 30) + 81920 * 16
    );
    assert_eq!(
        [0, 1, 2, 3].map(|i| g.segment_plain_len(i, 40)),
        [16, 16, 8, 0]
    );
    for (size, layers) in [(0u32, 1u8), (MAX_SEGMENT_SIZE + 1, 1), (16, 0), (16, 3)] {
        assert_eq!(
            SegmentGeometry::new(size, layers),
            Err(SealError::InvalidGeometry {
                segment_size: size,
                layers
            })
        );
    }
    assert!(SegmentGeometry::new(MAX_SEGMENT_SIZE, 2).is_ok());
}

#[test]
fn ranges_map_to_whole_segments() {
    let g = geometry(16, 1);
    let r = |first_segment, segments, skip, stored: Range<u64>| SegmentRange {
        stored,
        first_segment,
        segments,
        skip,
    };
    assert_eq!(g.range(0..40, 40), Ok(r(0, 3, 0, 0..88)));
    assert_eq!(g.range(0..1, 40), Ok(r(0, 1, 0, 0..32)));
    assert_eq!(g.range(15..17, 40), Ok(r(0, 2, 15, 0..64)));
    assert_eq!(g.range(16..32, 40), Ok(r(1, 1, 0, 32..64)));
    assert_eq!(g.range(39..40, 40), Ok(r(2, 1, 7, 64..88)));
    assert_eq!(g.range(20..20, 40), Ok(r(1, 0, 0, 32..32)));
    assert_eq!(g.range(0..0, 0), Ok(r(0, 1, 0, 0..16)));
    for (start, end) in [(0u64, 41u64), (41, 41), (5, 4)] {
        assert_eq!(
            g.range(start..end, 40),
            Err(SealError::RangeOutOfBounds {
                start,
                end,
                plain_len: 40
            })
        );
    }
}

#[test]
fn every_length_around_segment_boundaries_round_trips_in_any_pieces() {
    for layers in [1, 2] {
        let g = geometry(16, layers);
        for len in 0..=16 * 4 + 1 {
            let plain = plaintext(len);
            let stored = seal(g, &BINDING, &plain, 16);
            assert_eq!(stored.len() as u64, g.stored_len(len as u64), "{len}");
            for piece in [1, 7, 16, 17, 1000] {
                assert_eq!(
                    seal(g, &BINDING, &plain, piece),
                    stored,
                    "{len} in {piece}s"
                );
                let layers = ciphers(g.layers(), 1);
                let (out, outcome) = open_with(
                    g,
                    &BINDING,
                    layers,
                    &stored,
                    0..len as u64,
                    len as u64,
                    piece,
                );
                assert_eq!((out, outcome), (plain.clone(), Ok(())), "{len} in {piece}s");
            }
        }
    }
}

#[test]
fn the_plaintext_never_appears_in_what_is_stored() {
    let plain = b"CANARY-0123456789".repeat(100);
    let stored = seal(geometry(64, 1), &BINDING, &plain, 100);
    assert!(!stored.windows(6).any(|w| w == b"CANARY"));
}

#[test]
fn every_flipped_byte_fails_at_its_own_segment_after_the_good_ones() {
    for layers in [1u8, 2] {
        let g = geometry(16, layers);
        let plain = plaintext(56);
        let stored = seal(g, &BINDING, &plain, 56);
        let stored_segment = 16 + g.overhead() as usize;
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x01;
            let segment = (i / stored_segment) as u64;
            let (out, outcome) = open_all(g, &bad, 56);
            assert_eq!(
                outcome,
                Err(SealError::Authentication {
                    segment,
                    layer: layers
                }),
                "byte {i}"
            );
            assert_eq!(
                out,
                plain[..segment as usize * 16],
                "only verified segments emitted"
            );
        }
    }
}

#[test]
fn reordered_duplicated_dropped_or_appended_segments_fail() {
    let g = geometry(16, 1);
    let plain = plaintext(64);
    let stored = seal(g, &BINDING, &plain, 64);
    let seg = |i: usize| stored[i * 32..(i + 1) * 32].to_vec();

    let swapped = [seg(1), seg(0), seg(2), seg(3)].concat();
    assert_eq!(
        open_all(g, &swapped, 64).1,
        Err(SealError::Authentication {
            segment: 0,
            layer: 1
        })
    );
    let duplicated = [seg(0), seg(0), seg(2), seg(3)].concat();
    let (out, outcome) = open_all(g, &duplicated, 64);
    assert_eq!(
        (out, outcome),
        (
            plain[..16].to_vec(),
            Err(SealError::Authentication {
                segment: 1,
                layer: 1
            })
        )
    );
    // The last segment dropped, the third passed off as the last: its final flag is wrong.
    let (out, outcome) = open_all(g, &[seg(0), seg(1), seg(2)].concat(), 48);
    assert_eq!(
        (out, outcome),
        (
            plain[..32].to_vec(),
            Err(SealError::Authentication {
                segment: 2,
                layer: 1
            })
        )
    );
    // The last segment missing while meta says 64 bytes: the reader knows a segment is due.
    let (out, outcome) = open_all(g, &[seg(0), seg(1), seg(2)].concat(), 64);
    assert_eq!(
        (out, outcome),
        (
            plain[..48].to_vec(),
            Err(SealError::Truncated { segment: 3 })
        )
    );
    let mut longer = stored.clone();
    longer.push(0);
    let (out, outcome) = open_all(g, &longer, 64);
    assert_eq!(
        (out, outcome),
        (plain.clone(), Err(SealError::TrailingBytes { segment: 3 }))
    );
}

#[test]
fn every_truncation_is_detected() {
    let g = geometry(16, 1);
    let plain = plaintext(40);
    let stored = seal(g, &BINDING, &plain, 40);
    for cut in 0..stored.len() {
        let (out, outcome) = open_all(g, &stored[..cut], 40);
        let complete = cut / 32;
        assert_eq!(
            outcome,
            Err(SealError::Truncated {
                segment: complete as u64
            }),
            "cut at {cut}"
        );
        assert_eq!(out, plain[..complete * 16], "cut at {cut}");
    }
    // An empty blob's one segment is required too.
    let empty = seal(g, &BINDING, b"", 1);
    assert_eq!(empty.len(), 16);
    assert_eq!(open_all(g, &empty, 0), (Vec::new(), Ok(())));
    assert_eq!(
        open_all(g, b"", 0),
        (Vec::new(), Err(SealError::Truncated { segment: 0 }))
    );
    // A longer blob's first segment does not pass for a whole shorter blob.
    assert_eq!(
        open_all(g, &stored[..32], 16).1,
        Err(SealError::Authentication {
            segment: 0,
            layer: 1
        })
    );
}

#[test]
fn segments_opened_for_another_object_part_key_or_layer_order_fail() {
    let g = geometry(16, 1);
    let plain = plaintext(20);
    let stored = seal(g, &BINDING, &plain, 20);
    let auth0 = Err(SealError::Authentication {
        segment: 0,
        layer: 1,
    });
    for elsewhere in [
        Binding {
            bucket: "photos2",
            ..BINDING
        },
        Binding {
            key: "2026/dog.jpg",
            ..BINDING
        },
        Binding {
            part_number: 1,
            ..BINDING
        },
        // Length prefixes keep a bucket/key split from moving.
        Binding {
            bucket: "photos2026",
            key: "/cat.jpg",
            ..BINDING
        },
    ] {
        let (out, outcome) = open_with(g, &elsewhere, ciphers(1, 1), &stored, 0..20, 20, 100);
        assert_eq!((out, outcome), (Vec::new(), auth0.clone()), "{elsewhere:?}");
    }
    let (out, outcome) = open_with(g, &BINDING, ciphers(1, 9), &stored, 0..20, 20, 100);
    assert_eq!((out, outcome), (Vec::new(), auth0), "another data key");

    let dsse = geometry(16, 2);
    let stored = seal(dsse, &BINDING, &plain, 20);
    let mut swapped = ciphers(2, 1);
    swapped.reverse();
    assert_eq!(
        open_with(dsse, &BINDING, swapped, &stored, 0..20, 20, 100).1,
        Err(SealError::Authentication {
            segment: 0,
            layer: 2
        }),
        "DSSE layers in the wrong order"
    );
    // One layer's key alone opens nothing.
    let inner_only = geometry(16, 1);
    assert_eq!(
        open_with(
            inner_only,
            &BINDING,
            ciphers(1, 1),
            &stored[..52],
            0..20,
            20,
            100
        )
        .1,
        Err(SealError::Authentication {
            segment: 0,
            layer: 1
        })
    );
}

#[test]
fn cipher_counts_must_match_the_layers() {
    let g = geometry(16, 2);
    assert_eq!(
        SegmentSealer::new(g, &BINDING, ciphers(1, 1)).err(),
        Some(SealError::LayerCount {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        SegmentOpener::new(geometry(16, 1), &BINDING, ciphers(2, 1), 0..1, 1).err(),
        Some(SealError::LayerCount {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        SegmentOpener::new(g, &BINDING, ciphers(2, 1), 0..2, 1).err(),
        Some(SealError::RangeOutOfBounds {
            start: 0,
            end: 2,
            plain_len: 1
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Random sizes, segment sizes, layers and ranges: the range's stored bytes alone open to
    /// exactly the range.
    #[test]
    fn random_ranges_open_byte_exact(
        len in 0usize..3000,
        segment_size in 1u32..300,
        layers in 1u8..=2,
        a in any::<u64>(),
        b in any::<u64>(),
        piece in 1usize..700,
    ) {
        let g = geometry(segment_size, layers);
        let plain = plaintext(len);
        let stored = seal(g, &BINDING, &plain, piece);
        let len64 = len as u64;
        let (start, end) = if len64 == 0 {
            (0, 0)
        } else {
            let (x, y) = (a % (len64 + 1), b % (len64 + 1));
            (x.min(y), x.max(y))
        };
        let range = g.range(start..end, len64).unwrap();
        let slice = &stored[range.stored.start as usize..range.stored.end as usize];
        let (out, outcome) = open_with(
            g, &BINDING, ciphers(layers, 1), slice, start..end, len64, piece,
        );
        prop_assert_eq!(outcome, Ok(()));
        prop_assert_eq!(&out[..], &plain[start as usize..end as usize]);
    }
}
