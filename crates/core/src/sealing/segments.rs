//! Segment framing: a blob's plaintext sealed as fixed-size segments, so a range read opens only
//! the segments it touches.
//!
//! Format (sealing v1). The plaintext is cut into segments of `segment_size` bytes; the last one
//! holds the rest (1..=`segment_size` bytes) and an empty plaintext is one empty segment. Each
//! segment is stored as its ciphertext followed by one tag per layer: one layer for SSE-S3,
//! SSE-KMS and SSE-C, two independent layers (the outer sealing the inner's output) for DSSE.
//! Segment `i` of layer `l` uses the nonce `i (u64, big-endian) ‖ final ‖ l ‖ 0 0` and the
//! associated data `binding ‖ i ‖ final ‖ l`, where `final` is 1 on the last segment only and the
//! binding is the bucket, the key and the part number, length-prefixed. Every blob has a fresh
//! data key (per layer), so a nonce never repeats under one key.
//!
//! Invariant: an opener yields plaintext only from segments sealed under its keys, for its
//! binding, at the index it expects them, with the final flag on exactly the last segment of the
//! blob's recorded length. A segment that is altered, reordered, dropped, duplicated, cut short,
//! moved to another blob or object, or followed by extra bytes fails; nothing unauthenticated is
//! ever emitted.

use std::ops::Range;

use super::aead::{NONCE_LEN, SegmentAead, TAG_LEN};
use super::seal_error::SealError;

/// Plaintext bytes per segment unless a blob records otherwise.
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;
/// The largest segment size a blob may record (bounds what a reader buffers).
pub const MAX_SEGMENT_SIZE: u32 = 16 * 1024 * 1024;

/// Names this framing in the associated data, so no other use of a key can collide with it.
const DOMAIN: &[u8] = b"tessera sealing v1\0";

/// What a blob's segments are bound to besides their index: the object they belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The bucket.
    pub bucket: &'a str,
    /// The object key.
    pub key: &'a str,
    /// The multipart part number, 0 for a single-part object.
    pub part_number: u32,
}

impl Binding<'_> {
    /// The associated-data prefix every segment of the blob shares.
    pub fn associated_data(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(DOMAIN.len() + 12 + self.bucket.len() + self.key.len());
        aad.extend_from_slice(DOMAIN);
        for field in [self.bucket.as_bytes(), self.key.as_bytes()] {
            aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad.extend_from_slice(&self.part_number.to_be_bytes());
        aad
    }
}

/// How a blob is cut into segments and how many tags each carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentGeometry {
    segment_size: u32,
    layers: u8,
}

/// The stored bytes a plaintext range needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRange {
    /// The stored bytes to read: whole segments.
    pub stored: Range<u64>,
    /// The index of the first of them.
    pub first_segment: u64,
    /// How many segments.
    pub segments: u64,
    /// Plaintext bytes to drop from the first segment before the range begins.
    pub skip: u64,
}

impl SegmentGeometry {
    /// Segments of `segment_size` plaintext bytes with `layers` tags each (1, or 2 for DSSE).
    pub fn new(segment_size: u32, layers: u8) -> Result<SegmentGeometry, SealError> {
        if segment_size == 0 || segment_size > MAX_SEGMENT_SIZE || !(1..=2).contains(&layers) {
            return Err(SealError::InvalidGeometry {
                segment_size,
                layers,
            });
        }
        Ok(SegmentGeometry {
            segment_size,
            layers,
        })
    }

    /// Plaintext bytes per segment.
    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// Tags per segment.
    pub fn layers(&self) -> u8 {
        self.layers
    }

    /// Bytes each stored segment adds to its plaintext.
    pub fn overhead(&self) -> u64 {
        TAG_LEN as u64 * u64::from(self.layers)
    }

    /// Segments of a blob of `plain_len` bytes (an empty blob has one, empty).
    pub fn segment_count(&self, plain_len: u64) -> u64 {
        plain_len.div_ceil(u64::from(self.segment_size)).max(1)
    }

    /// Stored bytes of a blob of `plain_len` bytes.
    pub fn stored_len(&self, plain_len: u64) -> u64 {
        plain_len + self.segment_count(plain_len) * self.overhead()
    }

    /// Plaintext bytes of segment `index` of a blob of `plain_len` bytes.
    pub fn segment_plain_len(&self, index: u64, plain_len: u64) -> u64 {
        let size = u64::from(self.segment_size);
        plain_len.saturating_sub(index * size).min(size)
    }

    /// The whole segments that hold `plain` of a blob of `plain_len` bytes. An empty range reads
    /// nothing, except on an empty blob, where it reads (and so authenticates) its one segment.
    pub fn range(&self, plain: Range<u64>, plain_len: u64) -> Result<SegmentRange, SealError> {
        if plain.start > plain.end || plain.end > plain_len {
            return Err(SealError::RangeOutOfBounds {
                start: plain.start,
                end: plain.end,
                plain_len,
            });
        }
        let size = u64::from(self.segment_size);
        let stored_segment = size + self.overhead();
        if plain_len == 0 {
            return Ok(SegmentRange {
                stored: 0..self.overhead(),
                first_segment: 0,
                segments: 1,
                skip: 0,
            });
        }
        if plain.is_empty() {
            let at = (plain.start / size) * stored_segment;
            return Ok(SegmentRange {
                stored: at..at,
                first_segment: plain.start / size,
                segments: 0,
                skip: 0,
            });
        }
        let first = plain.start / size;
        let last = (plain.end - 1) / size;
        let end = ((last + 1) * stored_segment).min(self.stored_len(plain_len));
        Ok(SegmentRange {
            stored: first * stored_segment..end,
            first_segment: first,
            segments: last - first + 1,
            skip: plain.start - first * size,
        })
    }
}

/// The nonce of segment `index` at `layer`.
fn nonce(index: u64, last: bool, layer: u8) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[8] = u8::from(last);
    n[9] = layer;
    n
}

/// The associated data of segment `index` at `layer`: the blob's prefix, then where it is.
fn segment_aad(prefix: &[u8], index: u64, last: bool, layer: u8, aad: &mut Vec<u8>) {
    aad.clear();
    aad.extend_from_slice(prefix);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad.push(layer);
}

fn check_layers(
    geometry: &SegmentGeometry,
    layers: &[Box<dyn SegmentAead>],
) -> Result<(), SealError> {
    if layers.len() != usize::from(geometry.layers) {
        return Err(SealError::LayerCount {
            expected: geometry.layers,
            got: layers.len(),
        });
    }
    Ok(())
}

/// Seals a plaintext stream of unknown length, segment by segment.
pub struct SegmentSealer {
    layers: Vec<Box<dyn SegmentAead>>,
    segment_size: usize,
    prefix: Vec<u8>,
    aad: Vec<u8>,
    pending: Vec<u8>,
    next_index: u64,
    plain_len: u64,
}

impl SegmentSealer {
    /// A sealer for one blob; `layers` are its ciphers, inner first, one per geometry layer.
    pub fn new(
        geometry: SegmentGeometry,
        binding: &Binding<'_>,
        layers: Vec<Box<dyn SegmentAead>>,
    ) -> Result<SegmentSealer, SealError> {
        check_layers(&geometry, &layers)?;
        let segment_size = geometry.segment_size as usize;
        Ok(SegmentSealer {
            layers,
            segment_size,
            prefix: binding.associated_data(),
            aad: Vec::new(),
            pending: Vec::with_capacity(segment_size + TAG_LEN * usize::from(geometry.layers)),
            next_index: 0,
            plain_len: 0,
        })
    }

    /// Takes more plaintext and appends every segment it completes to `out`. A full segment
    /// waits until a byte past it arrives, because only then is it known not to be the last.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        self.plain_len += data.len() as u64;
        while !data.is_empty() {
            if self.pending.len() == self.segment_size {
                self.seal_pending(false, out);
            }
            let take = (self.segment_size - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
    }

    /// Seals the last segment into `out`; returns the plaintext length sealed.
    pub fn finish(mut self, out: &mut Vec<u8>) -> u64 {
        self.seal_pending(true, out);
        self.plain_len
    }

    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) {
        let index = self.next_index;
        for (layer, aead) in (1u8..).zip(&self.layers) {
            segment_aad(&self.prefix, index, last, layer, &mut self.aad);
            aead.seal(&nonce(index, last, layer), &self.aad, &mut self.pending);
        }
        out.extend_from_slice(&self.pending);
        self.pending.clear();
        self.next_index += 1;
    }
}

/// Opens the stored segments of one plaintext range of a blob whose length meta recorded.
pub struct SegmentOpener {
    layers: Vec<Box<dyn SegmentAead>>,
    geometry: SegmentGeometry,
    prefix: Vec<u8>,
    aad: Vec<u8>,
    plain_len: u64,
    range: SegmentRange,
    next_index: u64,
    pending: Vec<u8>,
    skip: u64,
    remaining: u64,
}

impl SegmentOpener {
    /// An opener of `plain` within a blob of `plain_len` bytes; read the stored bytes
    /// `self.range().stored` and push them in order.
    pub fn new(
        geometry: SegmentGeometry,
        binding: &Binding<'_>,
        layers: Vec<Box<dyn SegmentAead>>,
        plain: Range<u64>,
        plain_len: u64,
    ) -> Result<SegmentOpener, SealError> {
        check_layers(&geometry, &layers)?;
        let range = geometry.range(plain.clone(), plain_len)?;
        Ok(SegmentOpener {
            layers,
            geometry,
            prefix: binding.associated_data(),
            aad: Vec::new(),
            plain_len,
            next_index: range.first_segment,
            skip: range.skip,
            remaining: plain.end - plain.start,
            pending: Vec::new(),
            range,
        })
    }

    /// The segments this opener expects.
    pub fn range(&self) -> &SegmentRange {
        &self.range
    }

    fn end_index(&self) -> u64 {
        self.range.first_segment + self.range.segments
    }

    /// Takes more stored bytes and appends the plaintext of the range that every segment they
    /// complete holds to `out`.
    pub fn push(&mut self, mut stored: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        while !stored.is_empty() {
            if self.next_index == self.end_index() {
                return Err(SealError::TrailingBytes {
                    segment: self.end_index().saturating_sub(1),
                });
            }
            let want = (self
                .geometry
                .segment_plain_len(self.next_index, self.plain_len)
                + self.geometry.overhead()) as usize;
            let take = (want - self.pending.len()).min(stored.len());
            self.pending.extend_from_slice(&stored[..take]);
            stored = &stored[take..];
            if self.pending.len() == want {
                self.open_pending(out)?;
            }
        }
        Ok(())
    }

    /// Checks that every segment of the range arrived.
    pub fn finish(self) -> Result<(), SealError> {
        if self.next_index != self.end_index() {
            return Err(SealError::Truncated {
                segment: self.next_index,
            });
        }
        Ok(())
    }

    fn open_pending(&mut self, out: &mut Vec<u8>) -> Result<(), SealError> {
        let index = self.next_index;
        let last = index + 1 == self.geometry.segment_count(self.plain_len);
        for (layer, aead) in (1..=self.geometry.layers).zip(&self.layers).rev() {
            segment_aad(&self.prefix, index, last, layer, &mut self.aad);
            aead.open(&nonce(index, last, layer), &self.aad, &mut self.pending)
                .map_err(|_| SealError::Authentication {
                    segment: index,
                    layer,
                })?;
        }
        let start = (self.skip as usize).min(self.pending.len());
        let end = start + (self.remaining as usize).min(self.pending.len() - start);
        out.extend_from_slice(&self.pending[start..end]);
        self.remaining -= (end - start) as u64;
        self.skip = 0;
        self.pending.clear();
        self.next_index += 1;
        Ok(())
    }
}

#[cfg(test)]
#[path = "segments_test.rs"]
mod tests;
