//! Names of stored shard copies and the one spelling of their file names.
//!
//! Invariant: a stored copy is named by (data id, shard index, generation), and each such name
//! has exactly one file name, `<32 lowercase hex>.<decimal index>.<16 lowercase hex generation>`
//! (no sign, no leading zeros, generation nonzero), so comparing file names as strings compares
//! copies, and a file name is a complete resume cursor. Every other name (temp files, strays,
//! the generation-less names of format 1) names no copy.

use std::fmt;
use tessera_core::blob::Generation;
use tessera_core::names::DataId;
use tessera_core::shard_file::ShardFileHeader;

/// Hex digits of a generation in a file name.
const GENERATION_DIGITS: usize = 16;

/// Names one stored copy of one shard: the blob, the shard's index in the stripe, and the
/// generation (the write that made the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardKey {
    /// The blob.
    pub data_id: DataId,
    /// The shard's index (data shards first, then parity).
    pub shard_index: u32,
    /// The write that made the file.
    pub generation: Generation,
}

impl ShardKey {
    /// The copy `generation` of shard `shard_index` of blob `data_id`.
    pub fn new(data_id: DataId, shard_index: u32, generation: Generation) -> Self {
        Self {
            data_id,
            shard_index,
            generation,
        }
    }

    /// The copy a shard file header describes; `None` if its generation is 0.
    pub fn of_header(header: &ShardFileHeader) -> Option<Self> {
        Some(Self::new(
            header.data_id,
            header.shard_index,
            Generation::new(header.generation)?,
        ))
    }

    /// The copy's file name: `<data id hex>.<shard index>.<generation as 16 hex>`.
    pub fn file_name(&self) -> String {
        format!("{}.{}.{}", self.data_id, self.shard_index, self.generation)
    }

    /// The copy a canonical file name names; `None` for any other name.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let mut parts = name.split('.');
        let (hex, index, generation) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let data_id = DataId::from_hex(hex).ok()?;
        let shard_index = canonical_index(index)?;
        if generation.len() != GENERATION_DIGITS || !is_lower_hex(generation) {
            return None;
        }
        let generation = Generation::new(u64::from_str_radix(generation, 16).ok()?)?;
        Some(Self::new(data_id, shard_index, generation))
    }

    /// Whether `name` is a shard file name of format 1 (`<data id hex>.<index>`, without a
    /// generation): such a file was written by an earlier development build.
    pub fn is_format1_file_name(name: &str) -> bool {
        match name.split_once('.') {
            Some((hex, index)) => DataId::from_hex(hex).is_ok() && canonical_index(index).is_some(),
            None => false,
        }
    }
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// A shard index spelled canonically: decimal digits, no sign, no leading zero.
fn canonical_index(index: &str) -> Option<u32> {
    let canonical = !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
        && (index == "0" || !index.starts_with('0'));
    if canonical { index.parse().ok() } else { None }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(n: u64) -> Generation {
        Generation::new(n).unwrap()
    }

    #[test]
    fn file_names_have_one_spelling() {
        let key = ShardKey::new(DataId::from_bytes([0xab; 16]), 17, generation(0xfeed));
        let hex = "ab".repeat(16);
        assert_eq!(key.file_name(), format!("{hex}.17.000000000000feed"));
        assert_eq!(key.to_string(), key.file_name());
        assert_eq!(ShardKey::from_file_name(&key.file_name()), Some(key));
        let zero = ShardKey::new(DataId::from_bytes([0xab; 16]), 0, generation(u64::MAX));
        assert_eq!(zero.file_name(), format!("{hex}.0.ffffffffffffffff"));
        assert_eq!(ShardKey::from_file_name(&zero.file_name()), Some(zero));
        let g = "000000000000feed";
        for bad in [
            format!("{}.17.{g}", hex.to_uppercase()),
            format!("{hex}.017.{g}"),
            format!("{hex}.+17.{g}"),
            format!("{hex}..{g}"),
            format!("{hex}.99999999999.{g}"),
            format!("{hex}.17.000000000000FEED"),
            format!("{hex}.17.feed"),
            format!("{hex}.17.0000000000000feed"),
            format!("{hex}.17.0000000000000000"),
            format!("{hex}.17.{g}.partial"),
            format!("{hex}.17"),
            format!("{}.1.{g}", &hex[..30]),
            hex.clone(),
            format!(".1.{g}"),
        ] {
            assert_eq!(ShardKey::from_file_name(&bad), None, "{bad}");
        }
    }

    #[test]
    fn format1_names_are_recognised() {
        let hex = "ab".repeat(16);
        assert!(ShardKey::is_format1_file_name(&format!("{hex}.3")));
        assert!(ShardKey::is_format1_file_name(&format!("{hex}.0")));
        for other in [
            format!("{hex}.3.000000000000feed"),
            format!("{hex}.03"),
            format!("{hex}.3.partial"),
            "junk".to_owned(),
        ] {
            assert!(!ShardKey::is_format1_file_name(&other), "{other}");
        }
    }

    #[test]
    fn a_header_names_its_copy_unless_its_generation_is_zero() {
        let mut header = ShardFileHeader {
            data_id: DataId::from_bytes([1; 16]),
            shard_index: 2,
            data_shards: 3,
            parity_shards: 3,
            chunk_size: 512,
            generation: 9,
            lease_id: 4,
        };
        assert_eq!(
            ShardKey::of_header(&header),
            Some(ShardKey::new(DataId::from_bytes([1; 16]), 2, generation(9)))
        );
        header.generation = 0;
        assert_eq!(ShardKey::of_header(&header), None);
    }
}
