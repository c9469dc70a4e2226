//! The snapshot file format: the magic `TSNAPv1\n`, then length-delimited `raft.v1.SnapshotRecord`s
//! (a varint length, then the record): one header (file format, store format, snapshot meta),
//! one pair per state-machine key in key order, one trailer (pair count and the BLAKE3 of every
//! byte before the trailer). The same bytes travel between nodes in chunks.
//!
//! Invariant: the writer and the reader stream. Neither holds more than one record (bounded by
//! [`MAX_RECORD_BYTES`]) plus its I/O buffer, whatever the file's size, and the reader yields
//! nothing past a record it could not verify: a file is accepted only once its trailer matches
//! the count and checksum of everything before it and nothing follows the trailer. Truncation,
//! corruption, a foreign file or another format are errors, never a shorter state.

use std::io::{self, Read, Write};

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use tessera_proto::raft::v1 as pb;

use crate::convert::{self, ConvertError};
use crate::types::SnapshotMeta;

/// The first bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"TSNAPv1\n";
/// The framing this build writes and reads.
pub const FILE_FORMAT: u32 = 1;
/// The largest record a reader accepts: far above any state-machine value (an object version
/// with 10,000 parts stays under a few MiB), low enough that a corrupt length cannot make the
/// reader allocate without bound.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

const CHECKSUM_BYTES: usize = 32;
/// Field numbers of `SnapshotRecord` and `SnapshotPair`.
const RECORD_PAIR_FIELD: u32 = 2;
const PAIR_KEY_FIELD: u32 = 1;
const PAIR_VALUE_FIELD: u32 = 2;

/// Why a snapshot file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// Reading or writing the file failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with the snapshot magic: not a snapshot file (or one written by
    /// a development build before the streaming format).
    #[error("not a snapshot file (bad magic)")]
    BadMagic,
    /// The file's framing is not the one this build reads.
    #[error("snapshot file format {found} is not supported (this build reads {supported})")]
    FileFormat {
        /// The framing on disk.
        found: u32,
        /// The framing this build reads.
        supported: u32,
    },
    /// The file carries state-machine records of another store format.
    #[error("snapshot holds store format {found} records, this node's store is format {expected}")]
    StoreFormat {
        /// The format of the records in the file.
        found: u32,
        /// The format of this node's store.
        expected: u32,
    },
    /// The file ends before its trailer.
    #[error("snapshot file truncated at byte {offset}")]
    Truncated {
        /// Where the file ended.
        offset: u64,
    },
    /// A record's length is above [`MAX_RECORD_BYTES`].
    #[error("record at byte {offset} claims {len} bytes (at most {max})")]
    RecordTooLarge {
        /// Where the record starts.
        offset: u64,
        /// Its claimed length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A record is not valid protobuf.
    #[error("record at byte {offset} does not decode: {source}")]
    Decode {
        /// Where the record starts.
        offset: u64,
        /// Why.
        source: prost::DecodeError,
    },
    /// A record of the wrong kind where another was required (a pair before the header, a
    /// second header, an empty record).
    #[error("unexpected {found} record at byte {offset}")]
    UnexpectedRecord {
        /// Where the record starts.
        offset: u64,
        /// What was found.
        found: &'static str,
    },
    /// The header's snapshot meta does not convert.
    #[error("snapshot header meta is invalid: {0}")]
    Meta(ConvertError),
    /// The trailer counts another number of pairs than the file holds.
    #[error("trailer counts {trailer} pairs, the file holds {counted}")]
    CountMismatch {
        /// The trailer's count.
        trailer: u64,
        /// Pairs read.
        counted: u64,
    },
    /// The trailer's checksum does not match the bytes before it.
    #[error("snapshot checksum mismatch")]
    ChecksumMismatch,
    /// Bytes follow the trailer.
    #[error("bytes after the trailer at byte {offset}")]
    TrailingBytes {
        /// Where the trailer ended.
        offset: u64,
    },
}

impl SnapshotFileError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io(_) => "snapshot_io",
            Self::BadMagic => "snapshot_bad_magic",
            Self::FileFormat { .. } => "snapshot_file_format",
            Self::StoreFormat { .. } => "snapshot_store_format",
            Self::Truncated { .. } => "snapshot_truncated",
            Self::RecordTooLarge { .. } => "snapshot_record_too_large",
            Self::Decode { .. } => "snapshot_decode",
            Self::UnexpectedRecord { .. } => "snapshot_unexpected_record",
            Self::Meta(_) => "snapshot_meta",
            Self::CountMismatch { .. } => "snapshot_count_mismatch",
            Self::ChecksumMismatch => "snapshot_checksum_mismatch",
            Self::TrailingBytes { .. } => "snapshot_trailing_bytes",
        }
    }

    /// Whether reading the same file again can succeed: never, the file is what it is (a
    /// transfer that failed is restarted by the leader with a fresh file).
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Writes a snapshot file to `W` as a stream.
pub struct SnapshotFileWriter<W: Write> {
    out: W,
    hasher: blake3::Hasher,
    pairs: u64,
    bytes: u64,
    record: Vec<u8>,
}

impl<W: Write> SnapshotFileWriter<W> {
    /// Starts a file: writes the magic and the header for `meta`, whose pairs are records of
    /// store format `store_format`.
    pub fn new(out: W, meta: &SnapshotMeta, store_format: u32) -> io::Result<Self> {
        let mut writer = SnapshotFileWriter {
            out,
            hasher: blake3::Hasher::new(),
            pairs: 0,
            bytes: 0,
            record: Vec::with_capacity(4096),
        };
        writer.write_hashed(MAGIC)?;
        let header = pb::SnapshotRecord {
            record: Some(pb::snapshot_record::Record::Header(pb::SnapshotHeader {
                file_format: FILE_FORMAT,
                store_format,
                meta: Some(convert::snapshot_meta_to_pb(meta)),
            })),
        };
        writer.record.clear();
        header
            .encode_length_delimited(&mut writer.record)
            .map_err(io::Error::other)?;
        let record = std::mem::take(&mut writer.record);
        writer.write_hashed(&record)?;
        writer.record = record;
        Ok(writer)
    }

    /// Appends one key and its value (callers give keys in ascending order).
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let field_len = |tag: u32, len: usize| {
            if len == 0 {
                0
            } else {
                prost::encoding::key_len(tag) + encoded_len_varint(len as u64) + len
            }
        };
        let pair_len =
            field_len(PAIR_KEY_FIELD, key.len()) + field_len(PAIR_VALUE_FIELD, value.len());
        let record_len = prost::encoding::key_len(RECORD_PAIR_FIELD)
            + encoded_len_varint(pair_len as u64)
            + pair_len;
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        encode_varint(record_len as u64, &mut record);
        encode_key(RECORD_PAIR_FIELD, WireType::LengthDelimited, &mut record);
        encode_varint(pair_len as u64, &mut record);
        for (tag, bytes) in [(PAIR_KEY_FIELD, key), (PAIR_VALUE_FIELD, value)] {
            if !bytes.is_empty() {
                encode_key(tag, WireType::LengthDelimited, &mut record);
                encode_varint(bytes.len() as u64, &mut record);
                record.extend_from_slice(bytes);
            }
        }
        let written = self.write_hashed(&record);
        // Large values would leave a large buffer behind; keep the steady-state buffer small.
        if record.capacity() > 1024 * 1024 {
            record = Vec::with_capacity(4096);
        }
        self.record = record;
        written?;
        self.pairs += 1;
        Ok(())
    }

    /// Pairs written so far.
    pub fn pairs(&self) -> u64 {
        self.pairs
    }

    /// Writes the trailer and flushes; returns the output, the pair count and the file's size.
    pub fn finish(mut self) -> io::Result<(W, u64, u64)> {
        let checksum = self.hasher.finalize();
        let trailer = pb::SnapshotRecord {
            record: Some(pb::snapshot_record::Record::Trailer(pb::SnapshotTrailer {
                pairs: self.pairs,
                checksum: checksum.as_bytes().to_vec(),
            })),
        };
        let bytes = trailer.encode_length_delimited_to_vec();
        self.out.write_all(&bytes)?;
        self.out.flush()?;
        Ok((self.out, self.pairs, self.bytes + bytes.len() as u64))
    }

    fn write_hashed(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

/// Reads a snapshot file from `R` as a stream, verifying it as it goes (wrap files in a
/// `BufReader`: the reader asks for a few bytes at a time).
pub struct SnapshotFileReader<R: Read> {
    input: R,
    meta: SnapshotMeta,
    hasher: blake3::Hasher,
    offset: u64,
    pairs: u64,
    record: Vec<u8>,
    largest_record: usize,
    finished: bool,
}

impl<R: Read> SnapshotFileReader<R> {
    /// Opens a file: checks the magic and the header, which must carry `store_format` records.
    pub fn open(mut input: R, store_format: u32) -> Result<Self, SnapshotFileError> {
        let mut magic = [0u8; 8];
        match input.read_exact(&mut magic) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(SnapshotFileError::BadMagic);
            }
            Err(e) => return Err(e.into()),
        }
        if &magic != MAGIC {
            return Err(SnapshotFileError::BadMagic);
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&magic);
        let mut reader = SnapshotFileReader {
            input,
            meta: SnapshotMeta::default(),
            hasher,
            offset: MAGIC.len() as u64,
            pairs: 0,
            record: Vec::new(),
            largest_record: 0,
            finished: false,
        };
        let start = reader.offset;
        let header = match reader.next_record()? {
            Some(pb::snapshot_record::Record::Header(h)) => h,
            Some(other) => {
                return Err(SnapshotFileError::UnexpectedRecord {
                    offset: start,
                    found: kind(&other),
                });
            }
            None => return Err(SnapshotFileError::Truncated { offset: start }),
        };
        if header.file_format != FILE_FORMAT {
            return Err(SnapshotFileError::FileFormat {
                found: header.file_format,
                supported: FILE_FORMAT,
            });
        }
        if header.store_format != store_format {
            return Err(SnapshotFileError::StoreFormat {
                found: header.store_format,
                expected: store_format,
            });
        }
        let meta = header
            .meta
            .ok_or(SnapshotFileError::Meta(ConvertError::MissingField(
                "snapshot_header.meta",
            )))?;
        reader.meta = convert::snapshot_meta_from_pb(meta).map_err(SnapshotFileError::Meta)?;
        reader.hash_record();
        Ok(reader)
    }

    /// The snapshot's meta, from the header.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The next pair, or `None` once the trailer has been read and verified (count, checksum,
    /// nothing after it).
    pub fn next_pair(&mut self) -> Result<Option<pb::SnapshotPair>, SnapshotFileError> {
        if self.finished {
            return Ok(None);
        }
        let start = self.offset;
        match self.next_record()? {
            None => Err(SnapshotFileError::Truncated { offset: start }),
            Some(pb::snapshot_record::Record::Pair(pair)) => {
                self.hash_record();
                self.pairs += 1;
                Ok(Some(pair))
            }
            Some(pb::snapshot_record::Record::Trailer(trailer)) => {
                if trailer.pairs != self.pairs {
                    return Err(SnapshotFileError::CountMismatch {
                        trailer: trailer.pairs,
                        counted: self.pairs,
                    });
                }
                let computed = self.hasher.finalize();
                if trailer.checksum.len() != CHECKSUM_BYTES
                    || trailer.checksum.as_slice() != computed.as_bytes()
                {
                    return Err(SnapshotFileError::ChecksumMismatch);
                }
                let mut extra = [0u8; 1];
                if read_some(&mut self.input, &mut extra)? != 0 {
                    return Err(SnapshotFileError::TrailingBytes {
                        offset: self.offset,
                    });
                }
                self.finished = true;
                Ok(None)
            }
            Some(other) => Err(SnapshotFileError::UnexpectedRecord {
                offset: start,
                found: kind(&other),
            }),
        }
    }

    /// Reads the rest of the file, verifying it; returns the number of pairs.
    pub fn verify_to_end(mut self) -> Result<u64, SnapshotFileError> {
        while self.next_pair()?.is_some() {}
        Ok(self.pairs)
    }

    /// Pairs read so far.
    pub fn pairs(&self) -> u64 {
        self.pairs
    }

    /// The largest record read so far, in bytes: the reader never buffers more than this.
    pub fn largest_record(&self) -> usize {
        self.largest_record
    }

    /// Reads one length-delimited record into `self.record` (its length prefix included, as
    /// read); `None` at a clean end of file.
    fn next_record(&mut self) -> Result<Option<pb::snapshot_record::Record>, SnapshotFileError> {
        // A large record would leave a large buffer behind; keep the steady state small.
        if self.record.capacity() > 1024 * 1024 {
            self.record = Vec::new();
        }
        let start = self.offset;
        self.record.clear();
        let Some(len) = self.read_length()? else {
            return Ok(None);
        };
        if len > MAX_RECORD_BYTES as u64 {
            return Err(SnapshotFileError::RecordTooLarge {
                offset: start,
                len,
                max: MAX_RECORD_BYTES,
            });
        }
        let prefix = self.record.len();
        self.record.resize(prefix + len as usize, 0);
        match self.input.read_exact(&mut self.record[prefix..]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(SnapshotFileError::Truncated {
                    offset: self.offset,
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.offset += len;
        self.largest_record = self.largest_record.max(self.record.len());
        let record = pb::SnapshotRecord::decode(&self.record[prefix..]).map_err(|source| {
            SnapshotFileError::Decode {
                offset: start,
                source,
            }
        })?;
        let record = record.record.ok_or(SnapshotFileError::UnexpectedRecord {
            offset: start,
            found: "empty",
        })?;
        Ok(Some(record))
    }

    /// Hashes the record just read (length prefix included); the trailer is never hashed.
    fn hash_record(&mut self) {
        self.hasher.update(&self.record);
    }

    /// A varint record length, its bytes appended to `self.record`; `None` at end of file
    /// before its first byte.
    fn read_length(&mut self) -> Result<Option<u64>, SnapshotFileError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let mut byte = [0u8; 1];
            if read_some(&mut self.input, &mut byte)? == 0 {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(SnapshotFileError::Truncated {
                        offset: self.offset,
                    })
                };
            }
            self.offset += 1;
            self.record.push(byte[0]);
            value |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(SnapshotFileError::RecordTooLarge {
            offset: self.offset,
            len: u64::MAX,
            max: MAX_RECORD_BYTES,
        })
    }
}

/// One `read` call that retries on interruption.
fn read_some<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn kind(record: &pb::snapshot_record::Record) -> &'static str {
    match record {
        pb::snapshot_record::Record::Header(_) => "header",
        pb::snapshot_record::Record::Pair(_) => "pair",
        pb::snapshot_record::Record::Trailer(_) => "trailer",
    }
}

#[cfg(test)]
#[path = "snapshot_file_test.rs"]
mod tests;
