//! Reading an object version across its parts, and re-checking what is read whole against the
//! checksums stored at write time: a GET of the whole object checks a single-part object's
//! FULL_OBJECT checksum (CRC64NVME by default), a multipart object's every part against the
//! part's own checksum, and a partNumber GET that part's.
//!
//! Invariant: for every part checked, the last piece of its bytes is held back until all of
//! them hashed to the stored checksum; on a mismatch that piece is never emitted and the
//! stream ends with [`PipelineError::ChecksumMismatch`], so a client can never receive a whole
//! object whose bytes differ from what was written. Parts read only in part (ranges) are not
//! checked.

use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tessera_core::blob::Blob;
use tessera_core::checksum::{ChecksumAlgorithm, ChecksumHasher, ChecksumType, from_base64};
use tessera_core::object::{ChecksumValue, ObjectVersion};
use tracing::warn;

use super::{BlobReadStream, BlobStore, PipelineError, SealTarget};
use tessera_core::sealing::customer_key::CustomerKey;

/// Whether a read re-checks stored checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadCheck {
    /// No check (ranged reads, copies of a range).
    None,
    /// Every part read whole is checked against its stored checksum.
    WholeParts,
}

/// A stored checksum a whole part's bytes must hash to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedChecksum {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The raw digest.
    pub digest: Vec<u8>,
}

/// One part's share of an object read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartSlice {
    /// The part number (1 for a single-part object).
    pub part_number: u32,
    /// The part's blob.
    pub blob: Blob,
    /// The bytes of the part to read.
    pub range: Range<u64>,
    /// The checksum to check the bytes against, when the part is read whole.
    pub expected: Option<ExpectedChecksum>,
}

/// The algorithms a streaming check prefers: the cheapest first.
const CHECK_ORDER: [ChecksumAlgorithm; 5] = [
    ChecksumAlgorithm::Crc64Nvme,
    ChecksumAlgorithm::Crc32c,
    ChecksumAlgorithm::Crc32,
    ChecksumAlgorithm::Sha1,
    ChecksumAlgorithm::Sha256,
];

/// The FULL_OBJECT checksum among `values` a streaming check should use; composite values
/// (checksums of checksums) cannot be checked against the bytes. A value that does not decode
/// is skipped (and logged).
fn checkable(values: &[ChecksumValue]) -> Option<ExpectedChecksum> {
    CHECK_ORDER.iter().find_map(|algorithm| {
        let value = values
            .iter()
            .find(|v| v.algorithm == *algorithm && v.kind == ChecksumType::FullObject)?;
        match from_base64(&value.value) {
            Ok(digest) if digest.len() == algorithm.digest_len() => Some(ExpectedChecksum {
                algorithm: *algorithm,
                digest,
            }),
            _ => {
                warn!(algorithm = %algorithm, "stored checksum is not a digest; not checked");
                None
            }
        }
    })
}

/// The parts a read of `range` of `version` touches, with the bytes to read of each and, under
/// [`ReadCheck::WholeParts`], the checksum of each part read whole: a single-part object's own
/// FULL_OBJECT checksum, a multipart object's parts' own checksums.
pub fn plan_object_read(
    version: &ObjectVersion,
    range: Range<u64>,
    check: ReadCheck,
) -> Vec<PartSlice> {
    let mut slices = Vec::new();
    let mut offset = 0_u64;
    for part in &version.parts {
        let (start, end) = (offset, offset + part.size);
        offset = end;
        if end <= range.start || start >= range.end {
            continue;
        }
        let from = range.start.max(start) - start;
        let to = range.end.min(end) - start;
        let whole = from == 0 && to == part.size;
        let expected = match check {
            ReadCheck::WholeParts if whole => {
                if version.multipart {
                    checkable(&part.checksums)
                } else {
                    checkable(&version.checksums).or_else(|| checkable(&part.checksums))
                }
            }
            ReadCheck::WholeParts | ReadCheck::None => None,
        };
        slices.push(PartSlice {
            part_number: part.part_number,
            blob: part.blob.clone(),
            range: from..to,
            expected,
        });
    }
    // A whole read of an empty object touches no byte but still checks its one part.
    if slices.is_empty()
        && range.is_empty()
        && check == ReadCheck::WholeParts
        && let [part] = version.parts.as_slice()
        && part.size == 0
    {
        let expected = checkable(&version.checksums).or_else(|| checkable(&part.checksums));
        slices.push(PartSlice {
            part_number: part.part_number,
            blob: part.blob.clone(),
            range: 0..0,
            expected,
        });
    }
    slices
}

/// Reads `range` of `version`; see [`BlobStore::read_object`].
pub(super) fn read_object(
    store: &BlobStore,
    version: &ObjectVersion,
    range: Range<u64>,
    check: ReadCheck,
    customer_key: Option<CustomerKey>,
) -> BlobReadStream {
    let slices = plan_object_read(version, range, check);
    later_slices(store, version, slices, customer_key)
}

/// Opens a read of `range` of `version` now; see [`BlobStore::open_object`].
pub(super) async fn open_object(
    store: &BlobStore,
    version: &ObjectVersion,
    range: Range<u64>,
    check: ReadCheck,
    customer_key: Option<CustomerKey>,
) -> Result<BlobReadStream, PipelineError> {
    let mut slices = plan_object_read(version, range, check);
    if slices.is_empty() {
        return Ok(Box::pin(futures::stream::empty()));
    }
    let first = slices.remove(0);
    let target = SealTarget::new(
        version.bucket.as_str(),
        version.key.as_str(),
        first.part_number,
    )
    .with_customer_key(customer_key.clone());
    let bytes = if first.range.is_empty() {
        // A whole read of an empty object: no byte to read, but its key is fetched all the
        // same, so a key that may not be used refuses an empty object as any other.
        if !first.blob.sealing.is_identity() {
            store
                .seals
                .opener(&first.blob.sealing, &target, 0..0, first.blob.size)
                .await?;
        }
        Box::pin(futures::stream::empty()) as BlobReadStream
    } else {
        super::read::open_blob(store, &first.blob, &target, first.range.clone()).await?
    };
    let first = checked(bytes, first.expected, first.part_number);
    let rest = later_slices(store, version, slices, customer_key);
    Ok(Box::pin(first.chain(rest)))
}

/// The bytes of `slices` of `version`, each part opened when the stream reaches it.
fn later_slices(
    store: &BlobStore,
    version: &ObjectVersion,
    slices: Vec<PartSlice>,
    customer_key: Option<CustomerKey>,
) -> BlobReadStream {
    let store = store.clone();
    let (bucket, key) = (version.bucket.clone(), version.key.clone());
    let stream = futures::stream::iter(slices)
        .map(move |slice| {
            let target = SealTarget::new(bucket.as_str(), key.as_str(), slice.part_number)
                .with_customer_key(customer_key.clone());
            let bytes = store.read(&slice.blob, &target, slice.range.clone());
            checked(bytes, slice.expected, slice.part_number)
        })
        .flatten();
    Box::pin(stream)
}

/// `bytes` of part `part_number`, checked against `expected` if the part is read whole.
fn checked(
    bytes: BlobReadStream,
    expected: Option<ExpectedChecksum>,
    part_number: u32,
) -> BlobReadStream {
    match expected {
        Some(expected) => Box::pin(CheckedPart {
            inner: bytes,
            hasher: Some(ChecksumHasher::new(expected.algorithm)),
            expected,
            part_number,
            held: None,
            done: false,
        }),
        None => bytes,
    }
}

/// The bytes of one part read whole, hashed as they pass, the last piece held back until the
/// hash matched.
struct CheckedPart {
    inner: BlobReadStream,
    /// `None` once finalized.
    hasher: Option<ChecksumHasher>,
    expected: ExpectedChecksum,
    part_number: u32,
    held: Option<Bytes>,
    done: bool,
}

impl Stream for CheckedPart {
    type Item = Result<Bytes, PipelineError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(this.held.take().map(Ok));
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.held = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(piece))) => {
                    if piece.is_empty() {
                        continue;
                    }
                    if let Some(hasher) = &mut this.hasher {
                        hasher.update(&piece);
                    }
                    if let Some(previous) = this.held.replace(piece) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let digest = this.hasher.take().map(ChecksumHasher::finalize);
                    if digest.as_deref() != Some(this.expected.digest.as_slice()) {
                        this.held = None;
                        return Poll::Ready(Some(Err(PipelineError::ChecksumMismatch {
                            part_number: this.part_number,
                            algorithm: this.expected.algorithm,
                        })));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::checksum::{checksum_of, to_base64};
    use tessera_core::names::{BucketName, ObjectKey};
    use tessera_core::object::ObjectPart;

    fn value(algorithm: ChecksumAlgorithm, data: &[u8], kind: ChecksumType) -> ChecksumValue {
        ChecksumValue {
            algorithm,
            value: to_base64(&checksum_of(algorithm, data)),
            kind,
        }
    }

    fn version(parts: &[&[u8]], multipart: bool) -> ObjectVersion {
        let all: Vec<u8> = parts.concat();
        ObjectVersion {
            seq: 1,
            size: all.len() as u64,
            etag: "\"e\"".into(),
            checksums: vec![value(
                ChecksumAlgorithm::Crc64Nvme,
                &all,
                ChecksumType::FullObject,
            )],
            parts: (1u32..)
                .zip(parts)
                .map(|(n, data)| ObjectPart {
                    part_number: n,
                    size: data.len() as u64,
                    etag: "\"p\"".into(),
                    blob: Blob::inline(data.to_vec()),
                    checksums: vec![
                        value(ChecksumAlgorithm::Sha256, data, ChecksumType::FullObject),
                        value(ChecksumAlgorithm::Crc32c, data, ChecksumType::FullObject),
                    ],
                })
                .collect(),
            multipart,
            ..ObjectVersion::new(
                BucketName::parse("bkt").expect("bucket"),
                ObjectKey::parse("k").expect("key"),
            )
        }
    }

    #[test]
    fn whole_reads_check_the_cheapest_full_object_checksum_of_each_whole_part() {
        let single = version(&[b"hello world"], false);
        let plan = plan_object_read(&single, 0..11, ReadCheck::WholeParts);
        assert_eq!(plan.len(), 1);
        let expected = plan[0].expected.as_ref().expect("checked");
        assert_eq!(expected.algorithm, ChecksumAlgorithm::Crc64Nvme);
        assert_eq!(
            expected.digest,
            checksum_of(ChecksumAlgorithm::Crc64Nvme, b"hello world")
        );

        let multi = version(&[b"abc", b"defg", b"hi"], true);
        let plan = plan_object_read(&multi, 0..9, ReadCheck::WholeParts);
        let checks: Vec<_> = plan
            .iter()
            .map(|s| (s.part_number, s.range.clone(), s.expected.clone()))
            .collect();
        assert_eq!(checks.len(), 3);
        for (slice, data) in plan.iter().zip([&b"abc"[..], b"defg", b"hi"]) {
            let expected = slice.expected.as_ref().expect("each part checked");
            assert_eq!(expected.algorithm, ChecksumAlgorithm::Crc32c);
            assert_eq!(
                expected.digest,
                checksum_of(ChecksumAlgorithm::Crc32c, data)
            );
        }
        // A partNumber read is a whole-part read of that part only.
        let part2 = plan_object_read(&multi, 3..7, ReadCheck::WholeParts);
        assert_eq!(part2.len(), 1);
        assert_eq!(part2[0].part_number, 2);
        assert!(part2[0].expected.is_some());
        // Ranges check nothing, and parts cut by the range are not checked.
        assert!(
            plan_object_read(&multi, 0..9, ReadCheck::None)
                .iter()
                .all(|s| s.expected.is_none())
        );
        let cut = plan_object_read(&multi, 1..7, ReadCheck::WholeParts);
        let checked: Vec<bool> = cut.iter().map(|s| s.expected.is_some()).collect();
        assert_eq!(checked, [false, true]);
    }

    #[test]
    fn composite_and_undecodable_checksums_are_not_checked() {
        let mut v = version(&[b"abc"], false);
        v.checksums = vec![ChecksumValue {
            algorithm: ChecksumAlgorithm::Crc32,
            value: "AAAA-2".into(),
            kind: ChecksumType::Composite,
        }];
        v.parts[0].checksums = vec![ChecksumValue {
            algorithm: ChecksumAlgorithm::Crc64Nvme,
            value: "not base64!".into(),
            kind: ChecksumType::FullObject,
        }];
        let plan = plan_object_read(&v, 0..3, ReadCheck::WholeParts);
        assert_eq!(plan[0].expected, None);
    }

    #[tokio::test]
    async fn an_empty_object_is_still_checked() {
        let mut empty = version(&[b""], false);
        let plan = plan_object_read(&empty, 0..0, ReadCheck::WholeParts);
        assert_eq!(plan.len(), 1);
        assert!(plan[0].expected.is_some());
        empty.checksums[0].value = to_base64(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let store = BlobStore::new(
            tessera_client::DataClient::new(),
            crate::nodes::NodeDirectory::fixed(Vec::new()),
            super::super::BlobStoreConfig::default(),
        );
        let mut stream = store.read_object(&empty, 0..0, ReadCheck::WholeParts, None);
        let first = stream.next().await.expect("an item");
        assert!(
            matches!(
                first,
                Err(PipelineError::ChecksumMismatch {
                    part_number: 1,
                    algorithm: ChecksumAlgorithm::Crc64Nvme
                })
            ),
            "{first:?}"
        );
    }

    #[tokio::test]
    async fn open_object_fetches_the_first_parts_key_before_any_byte() {
        use super::super::sse::{LocalKeys, SseSeals};
        use super::super::{BlobStoreConfig, KmsTarget, SealError, WriteOptions};
        use std::sync::Arc;

        let keys = Arc::new(LocalKeys::new());
        let store = BlobStore::with_seals(
            tessera_client::DataClient::new(),
            crate::nodes::NodeDirectory::fixed(Vec::new()),
            BlobStoreConfig::default(),
            Arc::new(SseSeals::new(keys.clone())),
        );
        let mut objects = Vec::new();
        for data in [&b"hello"[..], b""] {
            let target = SealTarget::new("bkt", "k", 1).with_kms(Some(KmsTarget {
                key: String::new(),
                context: Vec::new(),
                dsse: false,
                bucket_key: true,
            }));
            let body = futures::stream::iter([Ok::<_, super::super::BodyError>(
                Bytes::copy_from_slice(data),
            )]);
            let written = store
                .write(
                    Box::pin(body),
                    WriteOptions {
                        expected_len: Some(data.len() as u64),
                        target,
                        ..WriteOptions::default()
                    },
                )
                .await
                .expect("stored inline");
            let mut v = version(&[data], false);
            v.parts[0].blob = written.blob;
            objects.push((v, data.len() as u64, data));
        }
        for (v, len, data) in &objects {
            let stream = store
                .open_object(v, 0..*len, ReadCheck::WholeParts, None)
                .await
                .expect("opens");
            let read: Vec<Bytes> = stream.map(|r| r.expect("reads")).collect().await;
            assert_eq!(read.concat(), *data);
        }
        *keys.refusal.lock().expect("lock") = Some("KMS.DisabledException");
        for (v, len, _) in &objects {
            let refused = store
                .open_object(v, 0..*len, ReadCheck::WholeParts, None)
                .await
                .err();
            assert!(
                matches!(
                    &refused,
                    Some(PipelineError::Seal(SealError::KmsRefused { code, .. }))
                        if code == "KMS.DisabledException"
                ),
                "refused before any byte, empty objects too: {refused:?}"
            );
        }
        // The lazy read meets the same refusal only once polled.
        let (v, len, _) = &objects[0];
        let first = store
            .read_object(v, 0..*len, ReadCheck::WholeParts, None)
            .next()
            .await;
        assert!(
            matches!(
                first,
                Some(Err(PipelineError::Seal(SealError::KmsRefused { .. })))
            ),
            "{first:?}"
        );
    }
}
