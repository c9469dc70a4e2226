//! A validator of aws-chunked framing that runs in front of s3s's decoder. s3s 0.14.1 reads a
//! whole declared chunk (hex size up to 4 GiB) into memory before it checks the chunk's
//! signature; this validator sees the same bytes first and fails a chunk whose declared size
//! is over the cap as soon as its header line is complete, before s3s buffers any of its data.
//! It also fails any framing s3s would reject or silently accept (a body that ends before the
//! final zero-size chunk, data longer than declared, a header line that is not
//! `HEX[;chunk-signature=SIG]\r\n`). It never changes the bytes; it only watches them.
//! Pure: no I/O, fed piece by piece.

/// The longest chunk header line accepted: 16 hex digits, `;chunk-signature=`, 64 hex digits
/// and CRLF fit in 99 bytes.
const MAX_HEADER_LINE: usize = 256;

/// The most trailer bytes after the final chunk (s3s's own limit).
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

const SIGNATURE_EXT: &[u8] = b";chunk-signature=";

/// How the chunks of a streaming payload are signed (from `x-amz-content-sha256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSigning {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: every chunk carries a signature.
    Signed,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: chunks carry no signature.
    Unsigned,
}

impl ChunkSigning {
    /// The signing mode named by an `x-amz-content-sha256` value; `None` for payloads that are
    /// not aws-chunked streams this gateway decodes.
    pub fn from_content_sha256(value: &str) -> Option<Self> {
        match value {
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => {
                Some(Self::Signed)
            }
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Some(Self::Unsigned),
            _ => None,
        }
    }
}

/// Why an aws-chunked body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A chunk declared more bytes than the cap.
    #[error("chunk {chunk} declares {size} bytes; the largest accepted is {max}")]
    ChunkTooLarge {
        /// 1-based index of the chunk.
        chunk: u64,
        /// Its declared size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The bytes do not follow the aws-chunked format.
    #[error("malformed aws-chunked body: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The body ended before its final zero-size chunk.
    #[error("aws-chunked body ended before its final chunk")]
    Incomplete,
    /// More trailer bytes than allowed after the final chunk.
    #[error("aws-chunked trailer exceeds {MAX_TRAILER_BYTES} bytes")]
    TrailerTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk header line into `line`.
    Header,
    /// Inside a chunk's data.
    Data { remaining: u64 },
    /// Expecting the CR after a chunk's data.
    DataCr,
    /// Expecting the LF after a chunk's data.
    DataLf,
    /// After the final chunk's header: trailers (checked in detail by s3s) and the last CRLF.
    Trailer { bytes: usize },
    /// A refusal was reported; nothing more is accepted.
    Failed,
}

/// Watches an aws-chunked body and reports the payload bytes it carries.
#[derive(Debug)]
pub struct AwsChunkedValidator {
    signing: ChunkSigning,
    max_chunk: u64,
    state: State,
    line: Vec<u8>,
    chunks: u64,
}

impl AwsChunkedValidator {
    /// A validator for a body signed as `signing` whose chunks may declare at most `max_chunk`
    /// bytes.
    pub fn new(signing: ChunkSigning, max_chunk: u64) -> Self {
        Self {
            signing,
            max_chunk,
            state: State::Header,
            line: Vec::new(),
            chunks: 0,
        }
    }

    /// Takes the next piece of the encoded body; returns how many payload (decoded) bytes it
    /// holds.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<u64, FramingError> {
        let mut payload = 0_u64;
        while !input.is_empty() {
            match self.state {
                State::Failed => {
                    return Err(FramingError::Malformed {
                        reason: "after error",
                    });
                }
                State::Header => match input.iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        self.push_line(&input[..=at])?;
                        input = &input[at + 1..];
                        self.end_header()?;
                    }
                    None => {
                        self.push_line(input)?;
                        input = &[];
                    }
                },
                State::Data { remaining } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    payload += take as u64;
                    input = &input[take..];
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                }
                State::DataCr | State::DataLf => {
                    let expected = if self.state == State::DataCr {
                        b'\r'
                    } else {
                        b'\n'
                    };
                    if input[0] != expected {
                        return self.fail(FramingError::Malformed {
                            reason: "chunk data is not followed by CRLF (longer than declared?)",
                        });
                    }
                    input = &input[1..];
                    self.state = if expected == b'\r' {
                        State::DataLf
                    } else {
                        State::Header
                    };
                }
                State::Trailer { bytes } => {
                    let total = bytes.saturating_add(input.len());
                    if total > MAX_TRAILER_BYTES {
                        return self.fail(FramingError::TrailerTooLarge);
                    }
                    self.state = State::Trailer { bytes: total };
                    input = &[];
                }
            }
        }
        Ok(payload)
    }

    /// Declares the end of the body: it must have reached its final chunk.
    pub fn finish(&mut self) -> Result<(), FramingError> {
        match self.state {
            State::Trailer { .. } => Ok(()),
            State::Failed => Err(FramingError::Malformed {
                reason: "after error",
            }),
            _ => self.fail(FramingError::Incomplete),
        }
    }

    fn fail<T>(&mut self, err: FramingError) -> Result<T, FramingError> {
        self.state = State::Failed;
        Err(err)
    }

    fn push_line(&mut self, piece: &[u8]) -> Result<(), FramingError> {
        if self.line.len() + piece.len() > MAX_HEADER_LINE {
            return self.fail(FramingError::Malformed {
                reason: "chunk header line is too long",
            });
        }
        self.line.extend_from_slice(piece);
        Ok(())
    }

    /// Parses the complete header line in `line` (it ends with LF).
    fn end_header(&mut self) -> Result<(), FramingError> {
        let line = std::mem::take(&mut self.line);
        let Some(content) = line.strip_suffix(b"\r\n") else {
            return self.fail(FramingError::Malformed {
                reason: "chunk header line does not end with CRLF",
            });
        };
        let (hex, ext) = match content.iter().position(|&b| b == b';') {
            Some(at) => content.split_at(at),
            None => (content, &[][..]),
        };
        if hex.is_empty() || hex.len() > 16 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return self.fail(FramingError::Malformed {
                reason: "chunk size is not a hexadecimal number",
            });
        }
        let size = hex.iter().fold(0_u64, |acc, &d| {
            (acc << 4) | u64::from(char::from(d).to_digit(16).unwrap_or(0))
        });
        self.chunks += 1;
        if size > self.max_chunk {
            return self.fail(FramingError::ChunkTooLarge {
                chunk: self.chunks,
                size,
                max: self.max_chunk,
            });
        }
        if ext.is_empty() {
            if self.signing == ChunkSigning::Signed {
                return self.fail(FramingError::Malformed {
                    reason: "signed chunk without chunk-signature",
                });
            }
        } else {
            let signature = ext.strip_prefix(SIGNATURE_EXT).unwrap_or(&[]);
            if signature.len() != 64 || !signature.iter().all(u8::is_ascii_hexdigit) {
                return self.fail(FramingError::Malformed {
                    reason: "chunk extension is not chunk-signature=<64 hex digits>",
                });
            }
        }
        self.state = if size == 0 {
            State::Trailer { bytes: 0 }
        } else {
            State::Data { remaining: size }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
    const MIB16: u64 = 16 * 1024 * 1024;

    fn signed(size: usize, data: &[u8]) -> Vec<u8> {
        let mut out = format!("{size:x};chunk-signature={SIG}\r\n").into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn run(signing: ChunkSigning, body: &[u8], piece: usize) -> Result<u64, FramingError> {
        let mut v = AwsChunkedValidator::new(signing, MIB16);
        let mut total = 0;
        for p in body.chunks(piece.max(1)) {
            total += v.feed(p)?;
        }
        v.finish()?;
        Ok(total)
    }

    #[test]
    fn well_formed_signed_and_unsigned_bodies_pass_in_any_split() {
        let mut body = signed(5, b"hello");
        body.extend(signed(3, b"abc"));
        body.extend(format!("0;chunk-signature={SIG}\r\n\r\n").as_bytes());
        for piece in [1, 2, 7, 64, 10_000] {
            assert_eq!(
                run(ChunkSigning::Signed, &body, piece),
                Ok(8),
                "piece {piece}"
            );
        }
        let unsigned = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";
        for piece in [1, 3, 100] {
            assert_eq!(run(ChunkSigning::Unsigned, unsigned, piece), Ok(5));
        }
        let trailer_signed = format!(
            "3;chunk-signature={SIG}\r\nabc\r\n0;chunk-signature={SIG}\r\nx-amz-checksum-crc32c:AAAAAA==\r\nx-amz-trailer-signature:{SIG}\r\n\r\n"
        );
        assert_eq!(
            run(ChunkSigning::Signed, trailer_signed.as_bytes(), 5),
            Ok(3)
        );
        // Upper-case hex sizes are hex too.
        assert_eq!(
            run(ChunkSigning::Unsigned, b"A\r\n0123456789\r\n0\r\n\r\n", 4),
            Ok(10)
        );
    }

    #[test]
    fn a_chunk_over_the_cap_fails_at_its_header_before_any_data() {
        let mut v = AwsChunkedValidator::new(ChunkSigning::Signed, MIB16);
        assert_eq!(v.feed(&signed(10, b"0123456789")), Ok(10));
        let header = format!("1000001;chunk-signature={SIG}\r\n");
        assert_eq!(
            v.feed(header.as_bytes()),
            Err(FramingError::ChunkTooLarge {
                chunk: 2,
                size: 16 * 1024 * 1024 + 1,
                max: MIB16
            })
        );
        // Exactly the cap is fine; the largest s3s would accept (ffffffff) is not.
        let mut v = AwsChunkedValidator::new(ChunkSigning::Unsigned, MIB16);
        assert_eq!(v.feed(b"1000000\r\nabc"), Ok(3));
        let mut v = AwsChunkedValidator::new(ChunkSigning::Unsigned, MIB16);
        assert_eq!(
            v.feed(b"ffffffff\r\n"),
            Err(FramingError::ChunkTooLarge {
                chunk: 1,
                size: 0xffff_ffff,
                max: MIB16
            })
        );
        // The size is known before the line ends only when its digits end; the line itself is
        // bounded, so a never-ending size line fails too.
        let mut v = AwsChunkedValidator::new(ChunkSigning::Unsigned, MIB16);
        assert_eq!(
            v.feed(&[b'f'; 300]),
            Err(FramingError::Malformed {
                reason: "chunk header line is too long"
            })
        );
    }

    fn malformed(signing: ChunkSigning, body: &[u8]) -> FramingError {
        run(signing, body, 3).expect_err("malformed")
    }

    #[test]
    fn malformed_framing_is_refused() {
        let bad = |reason| FramingError::Malformed { reason };
        assert_eq!(
            malformed(ChunkSigning::Unsigned, b"zz\r\nhello\r\n0\r\n\r\n"),
            bad("chunk size is not a hexadecimal number")
        );
        assert_eq!(
            malformed(ChunkSigning::Unsigned, b"\r\n"),
            bad("chunk size is not a hexadecimal number")
        );
        assert_eq!(
            malformed(ChunkSigning::Unsigned, b"3\nabc\r\n0\r\n\r\n"),
            bad("chunk header line does not end with CRLF")
        );
        assert_eq!(
            malformed(ChunkSigning::Unsigned, b"3\r\nabcd\r\n0\r\n\r\n"),
            bad("chunk data is not followed by CRLF (longer than declared?)")
        );
        assert_eq!(
            malformed(ChunkSigning::Signed, b"3\r\nabc\r\n0\r\n\r\n"),
            bad("signed chunk without chunk-signature")
        );
        assert_eq!(
            malformed(ChunkSigning::Signed, b"3;chunk-signature=abc\r\nabc\r\n"),
            bad("chunk extension is not chunk-signature=<64 hex digits>")
        );
        assert_eq!(
            malformed(ChunkSigning::Unsigned, b"3;foo=bar\r\nabc\r\n0\r\n\r\n"),
            bad("chunk extension is not chunk-signature=<64 hex digits>")
        );
        assert_eq!(
            malformed(ChunkSigning::Unsigned, b"11111111111111111\r\n"),
            bad("chunk size is not a hexadecimal number")
        );
    }

    #[test]
    fn a_body_that_stops_before_its_final_chunk_is_incomplete() {
        for body in [
            &b""[..],
            b"5\r\nhel",
            b"5\r\nhello\r\n",
            b"5\r\nhello\r",
            b"5\r\nhello\r\n0",
        ] {
            assert_eq!(
                run(ChunkSigning::Unsigned, body, 2),
                Err(FramingError::Incomplete),
                "{body:?}"
            );
        }
    }

    #[test]
    fn trailers_are_bounded() {
        let mut v = AwsChunkedValidator::new(ChunkSigning::Unsigned, MIB16);
        assert_eq!(v.feed(b"0\r\n"), Ok(0));
        assert_eq!(v.feed(&[b'a'; MAX_TRAILER_BYTES]), Ok(0));
        assert_eq!(v.feed(b"a"), Err(FramingError::TrailerTooLarge));
        assert!(matches!(v.feed(b"a"), Err(FramingError::Malformed { .. })));
    }

    #[test]
    fn signing_modes_follow_the_content_sha256_header() {
        assert_eq!(
            ChunkSigning::from_content_sha256("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            Some(ChunkSigning::Signed)
        );
        assert_eq!(
            ChunkSigning::from_content_sha256("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
            Some(ChunkSigning::Signed)
        );
        assert_eq!(
            ChunkSigning::from_content_sha256("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            Some(ChunkSigning::Unsigned)
        );
        assert_eq!(ChunkSigning::from_content_sha256("UNSIGNED-PAYLOAD"), None);
    }
}
