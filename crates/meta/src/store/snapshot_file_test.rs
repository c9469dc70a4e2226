use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, BufWriter, Cursor};

use openraft::{CommittedLeaderId, Membership};

use super::*;
use crate::types::{LogId, MetaNode, StoredMembership};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn meta() -> SnapshotMeta {
    let nodes = BTreeMap::from([(
        1,
        MetaNode {
            addr: "a:1".into(),
            zone: "z".into(),
        },
    )]);
    SnapshotMeta {
        last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 77)),
        last_membership: StoredMembership::new(
            Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
            Membership::new(vec![BTreeSet::from([1])], nodes),
        ),
        snapshot_id: "3-1-77-123".into(),
    }
}

fn pairs() -> Pairs {
    vec![
        (b"b/alpha".to_vec(), b"bucket".to_vec()),
        (b"c/clock".to_vec(), Vec::new()),
        (b"o/alpha\0k\0".to_vec(), vec![7u8; 300_000]),
        (Vec::new(), b"empty key".to_vec()),
    ]
}

fn file_bytes(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut writer = SnapshotFileWriter::new(Vec::new(), &meta(), 3).expect("header");
    for (k, v) in pairs {
        writer.push(k, v).expect("push");
    }
    let (bytes, count, size) = writer.finish().expect("finish");
    assert_eq!(count, pairs.len() as u64);
    assert_eq!(size, bytes.len() as u64);
    bytes
}

fn read_all(bytes: &[u8]) -> Result<(SnapshotMeta, Pairs), SnapshotFileError> {
    let mut reader = SnapshotFileReader::open(Cursor::new(bytes), 3)?;
    let meta = reader.meta().clone();
    let mut out = Vec::new();
    while let Some(pair) = reader.next_pair()? {
        out.push((pair.key, pair.value));
    }
    assert_eq!(reader.next_pair()?, None, "the end stays the end");
    Ok((meta, out))
}

#[test]
fn a_file_round_trips_its_meta_and_pairs() {
    let bytes = file_bytes(&pairs());
    assert!(bytes.starts_with(MAGIC));
    let (read_meta, read_pairs) = read_all(&bytes).expect("read");
    assert_eq!(read_meta, meta());
    assert_eq!(read_pairs, pairs());

    let empty = file_bytes(&[]);
    let (_, none) = read_all(&empty).expect("an empty state is a valid snapshot");
    assert!(none.is_empty());
}

#[test]
fn pair_records_decode_as_protobuf() {
    // The hand-written pair encoding must be exactly what prost reads.
    let bytes = file_bytes(&pairs());
    let mut rest = &bytes[MAGIC.len()..];
    let mut kinds = Vec::new();
    while !rest.is_empty() {
        let record = pb::SnapshotRecord::decode_length_delimited(&mut rest).expect("record");
        kinds.push(match record.record.expect("kind") {
            pb::snapshot_record::Record::Header(_) => "header",
            pb::snapshot_record::Record::Pair(p) => {
                assert!(pairs().contains(&(p.key, p.value)));
                "pair"
            }
            pb::snapshot_record::Record::Trailer(t) => {
                assert_eq!(t.pairs, 4);
                "trailer"
            }
        });
    }
    assert_eq!(kinds, ["header", "pair", "pair", "pair", "pair", "trailer"]);
}

#[test]
fn every_truncation_is_detected() {
    let bytes = file_bytes(&pairs()[..2]);
    for len in 0..bytes.len() {
        match read_all(&bytes[..len]) {
            Err(SnapshotFileError::BadMagic) => assert!(len < MAGIC.len(), "cut at {len}"),
            Err(SnapshotFileError::Truncated { offset }) => {
                assert!(offset <= len as u64, "cut at {len}, reported {offset}")
            }
            Err(e) => panic!("cut at {len}: unexpected error {e}"),
            Ok(_) => panic!("a file cut at {len} of {} bytes was accepted", bytes.len()),
        }
    }
    // The big pair too: cut in the middle of its value.
    let big = file_bytes(&pairs());
    assert!(matches!(
        read_all(&big[..big.len() / 2]),
        Err(SnapshotFileError::Truncated { .. })
    ));
}

#[test]
fn corruption_is_detected_by_checksum_count_or_structure() {
    let bytes = file_bytes(&pairs());
    // A flipped byte inside the big value keeps the structure: only the checksum catches it.
    let mut flipped = bytes.clone();
    let middle = MAGIC.len() + 200_000;
    flipped[middle] ^= 0x01;
    assert!(matches!(
        read_all(&flipped),
        Err(SnapshotFileError::ChecksumMismatch)
    ));

    // A flipped byte in the trailer's checksum.
    let mut bad_sum = bytes.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0xff;
    assert!(matches!(
        read_all(&bad_sum),
        Err(SnapshotFileError::ChecksumMismatch)
    ));

    // A dropped pair: the trailer counts one more than the file holds.
    let mut writer = SnapshotFileWriter::new(Vec::new(), &meta(), 3).expect("header");
    writer.push(b"a", b"1").expect("push");
    let (mut partial, _, _) = writer.finish().expect("finish");
    let trailer_start = {
        let mut rest = &partial[MAGIC.len()..];
        pb::SnapshotRecord::decode_length_delimited(&mut rest).expect("header");
        pb::SnapshotRecord::decode_length_delimited(&mut rest).expect("pair");
        partial.len() - rest.len()
    };
    let trailer = pb::SnapshotRecord {
        record: Some(pb::snapshot_record::Record::Trailer(pb::SnapshotTrailer {
            pairs: 2,
            checksum: vec![0; 32],
        })),
    };
    partial.truncate(trailer_start);
    trailer
        .encode_length_delimited(&mut partial)
        .expect("encode");
    assert!(matches!(
        read_all(&partial),
        Err(SnapshotFileError::CountMismatch {
            trailer: 2,
            counted: 1
        })
    ));

    // Bytes after the trailer.
    let mut extended = bytes.clone();
    extended.push(0);
    assert!(matches!(
        read_all(&extended),
        Err(SnapshotFileError::TrailingBytes { .. })
    ));

    // A length prefix claiming an absurd record.
    let mut huge = MAGIC.to_vec();
    encode_varint((MAX_RECORD_BYTES + 1) as u64, &mut huge);
    assert!(matches!(
        read_all(&huge),
        Err(SnapshotFileError::RecordTooLarge { .. })
    ));

    // Garbage where a record should be.
    let mut garbage = MAGIC.to_vec();
    garbage.extend_from_slice(&[4, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        read_all(&garbage),
        Err(SnapshotFileError::Decode { .. })
    ));
}

#[test]
fn foreign_files_and_other_formats_are_refused() {
    let bytes = file_bytes(&pairs());
    let mut foreign = bytes.clone();
    foreign[0] = b'X';
    assert!(matches!(
        read_all(&foreign),
        Err(SnapshotFileError::BadMagic)
    ));
    match SnapshotFileReader::open(Cursor::new(&bytes), 2) {
        Err(e @ SnapshotFileError::StoreFormat { .. }) => {
            assert_eq!(e.code(), "snapshot_store_format");
            assert!(e.to_string().contains("format 3"), "{e}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a snapshot of store format 3 was accepted as format 2"),
    }
    // A header written with another file format.
    let mut other = MAGIC.to_vec();
    pb::SnapshotRecord {
        record: Some(pb::snapshot_record::Record::Header(pb::SnapshotHeader {
            file_format: 9,
            store_format: 3,
            meta: Some(convert::snapshot_meta_to_pb(&meta())),
        })),
    }
    .encode_length_delimited(&mut other)
    .expect("encode");
    assert!(matches!(
        read_all(&other),
        Err(SnapshotFileError::FileFormat {
            found: 9,
            supported: FILE_FORMAT
        })
    ));
    // A pair before any header.
    let mut headless = MAGIC.to_vec();
    pb::SnapshotRecord {
        record: Some(pb::snapshot_record::Record::Pair(pb::SnapshotPair {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        })),
    }
    .encode_length_delimited(&mut headless)
    .expect("encode");
    assert!(matches!(
        read_all(&headless),
        Err(SnapshotFileError::UnexpectedRecord { found: "pair", .. })
    ));
}

/// 100,000 pairs go through a real file and back; neither side holds more than one record
/// (plus its I/O buffer) at a time.
#[test]
fn a_hundred_thousand_pairs_stream_through_a_file_without_being_held() {
    const PAIRS: u64 = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snap");
    let value = |i: u64| vec![(i % 251) as u8; 64 + (i % 512) as usize];
    let key = |i: u64| format!("o/bucket\0key-{i:08}\0").into_bytes();
    let out = BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut writer = SnapshotFileWriter::new(out, &meta(), 3).expect("header");
    for i in 0..PAIRS {
        writer.push(&key(i), &value(i)).expect("push");
        assert!(writer.record.capacity() < 64 * 1024, "writer buffer grew");
    }
    let (_, count, size) = writer.finish().expect("finish");
    assert_eq!(count, PAIRS);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), size);
    assert!(
        size > 30_000_000,
        "the file is far larger than any buffer: {size}"
    );

    let file = std::fs::File::open(&path).expect("open");
    let mut reader = SnapshotFileReader::open(BufReader::new(file), 3).expect("open");
    let mut i = 0u64;
    while let Some(pair) = reader.next_pair().expect("pair") {
        assert_eq!(pair.key, key(i));
        assert_eq!(pair.value, value(i));
        i += 1;
    }
    assert_eq!(i, PAIRS);
    assert!(
        reader.largest_record() < 1024,
        "reader buffered {} bytes at most",
        reader.largest_record()
    );
    assert!(reader.record.capacity() < 64 * 1024, "reader buffer grew");
}
