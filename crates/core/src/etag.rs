//! ETags as S3 makes them, and the comparisons of conditional requests.
//!
//! Invariant: an ETag we hand out is always quoted (`"<32 hex>"` for a single PUT,
//! `"<32 hex>-N"` for a multipart upload of N parts); comparisons accept tags with or without
//! quotes and a `W/` prefix, because clients send all of these.

use md5::Digest as _;

/// A streaming MD5, for the ETag of a single PUT or of one part.
#[derive(Clone, Default)]
pub struct Md5Hasher(md5::Md5);

impl std::fmt::Debug for Md5Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Md5Hasher")
    }
}

impl Md5Hasher {
    /// A hasher that has seen no bytes yet.
    pub fn new() -> Md5Hasher {
        Md5Hasher(md5::Md5::new())
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The 16-byte digest.
    pub fn finalize(self) -> [u8; 16] {
        self.0.finalize().into()
    }
}

/// The MD5 of `data` in one call.
pub fn md5_of(data: &[u8]) -> [u8; 16] {
    let mut hasher = Md5Hasher::new();
    hasher.update(data);
    hasher.finalize()
}

/// The ETag of an object stored in one PUT: its quoted MD5 in lowercase hex.
pub fn single_part_etag(md5: &[u8; 16]) -> String {
    format!("\"{}\"", hex::encode(md5))
}

/// The ETag of a multipart object: the quoted MD5 of the concatenated part MD5s, `-N`.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut hasher = Md5Hasher::new();
    for md5 in part_md5s {
        hasher.update(md5);
    }
    format!("\"{}-{}\"", hex::encode(hasher.finalize()), part_md5s.len())
}

/// A tag without surrounding whitespace, `W/` prefix and quotes.
fn bare(tag: &str) -> &str {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag)
}

/// Whether an `If-Match` / `If-None-Match` header value matches `etag`: `*` matches any
/// current object; otherwise any entity tag of the comma-separated list that equals `etag`
/// once quotes and a `W/` prefix are removed (the weak comparison S3 effectively applies).
pub fn etag_matches(header: &str, etag: &str) -> bool {
    let want = bare(etag);
    header.split(',').map(str::trim).any(|item| {
        if item == "*" {
            return true;
        }
        !item.is_empty() && bare(item) == want
    })
}

/// Whether the ETag a client lists in CompleteMultipartUpload names the stored part's ETag
/// (quotes optional on either side).
pub fn part_etag_matches(given: &str, stored: &str) -> bool {
    bare(given) == bare(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn md5_vectors() {
        assert_eq!(hex::encode(md5_of(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            hex::encode(md5_of(b"hello world")),
            "5eb63bbbe01eeed093cb22bb8f5acdc3"
        );
        let mut h = Md5Hasher::default();
        h.update(b"hello ");
        let copy = h.clone();
        h.update(b"world");
        assert_eq!(h.finalize(), md5_of(b"hello world"));
        assert_eq!(copy.finalize(), md5_of(b"hello "));
        assert_eq!(format!("{:?}", Md5Hasher::new()), "Md5Hasher");
    }

    #[test]
    fn etag_formats() {
        assert_eq!(
            single_part_etag(&md5_of(b"")),
            "\"d41d8cd98f00b204e9800998ecf8427e\""
        );
        // Known S3 value: two parts whose MD5s are those of "a" and "b".
        let parts = [md5_of(b"a"), md5_of(b"b")];
        let mut concat = Vec::new();
        concat.extend_from_slice(&parts[0]);
        concat.extend_from_slice(&parts[1]);
        assert_eq!(
            multipart_etag(&parts),
            format!("\"{}-2\"", hex::encode(md5_of(&concat)))
        );
        assert!(multipart_etag(&[md5_of(b"x")]).ends_with("-1\""));
    }

    #[test]
    fn conditional_matching() {
        let etag = "\"abc\"";
        assert!(etag_matches("*", etag));
        assert!(etag_matches(" * ", etag));
        assert!(etag_matches("\"abc\"", etag));
        assert!(etag_matches("abc", etag));
        assert!(etag_matches("W/\"abc\"", etag));
        assert!(etag_matches("\"x\", \"abc\"", etag));
        assert!(etag_matches("\"x\",abc", etag));
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(!etag_matches("\"abd\"", etag));
        assert!(!etag_matches("", etag));
        assert!(!etag_matches(",,", etag));
        assert!(!etag_matches("\"ABC\"", etag));
        assert!(etag_matches("\"x\", *", etag));
        let multipart = "\"0123-3\"";
        assert!(etag_matches("0123-3", multipart));
        assert!(!etag_matches("0123", multipart));
    }

    #[test]
    fn part_etags() {
        assert!(part_etag_matches("\"abc\"", "\"abc\""));
        assert!(part_etag_matches("abc", "\"abc\""));
        assert!(part_etag_matches("\"abc\"", "abc"));
        assert!(!part_etag_matches("abd", "\"abc\""));
        assert!(!part_etag_matches("", "\"abc\""));
        assert!(!part_etag_matches("\"abc", "\"abc\""));
    }

    proptest! {
        #[test]
        fn own_etags_match_in_every_spelling(bytes in any::<[u8; 16]>()) {
            let etag = single_part_etag(&bytes);
            let hex = hex::encode(bytes);
            prop_assert!(etag_matches(&etag, &etag));
            prop_assert!(etag_matches(&hex, &etag));
            let weak = format!("W/{etag}");
            prop_assert!(etag_matches(&weak, &etag));
            prop_assert!(part_etag_matches(&hex, &etag));
        }

        #[test]
        fn streaming_md5_equals_one_shot(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            split in 0usize..2000,
        ) {
            let split = split.min(data.len());
            let mut h = Md5Hasher::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            prop_assert_eq!(h.finalize(), md5_of(&data));
        }
    }
}
