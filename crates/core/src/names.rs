//! Names and identifiers: buckets, object keys, versions, uploads, nodes, zones, stored blobs.
//!
//! Invariant: a value of a name type is always valid. Every constructor that takes outside input
//! (`parse`, `from_hex`) checks the whole rule set, so code holding a `BucketName`, `ObjectKey` or
//! `VersionId` never re-validates it, and every accepted string has exactly one spelling.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a name was rejected; each variant maps onto one S3 error code in the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The bucket name breaks S3's general-purpose bucket naming rules (`InvalidBucketName`).
    #[error("invalid bucket name {name:?}: {reason}")]
    InvalidBucketName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The key is longer than 1024 bytes of UTF-8 (`KeyTooLongError`).
    #[error("object key is {len} bytes long, the maximum is {MAX_KEY_LEN}")]
    KeyTooLong {
        /// Length of the rejected key in bytes.
        len: usize,
    },
    /// The key is empty or contains a character we cannot store (`InvalidArgument`).
    #[error("invalid object key: {reason}")]
    InvalidKey {
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Not the 32 lowercase hex digits of a `DataId`.
    #[error("invalid data id")]
    InvalidDataId,
    /// Neither `null` nor a version id this store issued (`InvalidArgument` / `NoSuchVersion`).
    #[error("invalid version id")]
    InvalidVersionId,
}

impl NameError {
    /// A stable, short identifier of the error kind for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            NameError::InvalidBucketName { .. } => "invalid_bucket_name",
            NameError::KeyTooLong { .. } => "key_too_long",
            NameError::InvalidKey { .. } => "invalid_key",
            NameError::InvalidDataId => "invalid_data_id",
            NameError::InvalidVersionId => "invalid_version_id",
        }
    }
}

/// Identifies one stored blob (a version's bytes, or one part of a multipart upload); shard
/// files are named by it. Random, chosen by the writer, never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataId([u8; 16]);

impl DataId {
    /// From its 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Its 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the `Display` form: exactly 32 lowercase hex digits. Uppercase is refused so that
    /// one id has one spelling (shard file names are compared as strings).
    pub fn from_hex(s: &str) -> Result<DataId, NameError> {
        if s.len() != 32
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(NameError::InvalidDataId);
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| NameError::InvalidDataId)?;
        Ok(DataId(bytes))
    }
}

impl fmt::Display for DataId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DataId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataId({self})")
    }
}

/// A bucket name that follows S3's rules for general-purpose buckets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketName(String);

/// Prefixes AWS reserves; a bucket name must not start with them.
const RESERVED_BUCKET_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
/// Suffixes AWS reserves (access point aliases, directory and table buckets, MRAPs).
const RESERVED_BUCKET_SUFFIXES: [&str; 5] =
    ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

impl BucketName {
    /// Validates `name` against the general-purpose bucket naming rules: 3 to 63 characters of
    /// `a-z`, `0-9`, `.` and `-`; starting and ending with a letter or digit; no `..`; not shaped
    /// like an IPv4 address; none of the reserved prefixes and suffixes.
    pub fn parse(name: &str) -> Result<BucketName, NameError> {
        match bucket_name_violation(name) {
            None => Ok(BucketName(name.to_owned())),
            Some(reason) => Err(NameError::InvalidBucketName {
                name: name.to_owned(),
                reason,
            }),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The first rule `name` breaks, if any.
fn bucket_name_violation(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.len() < 3 {
        return Some("shorter than 3 characters");
    }
    if bytes.len() > 63 {
        return Some("longer than 63 characters");
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-';
    if !bytes.iter().all(|&b| allowed(b)) {
        return Some("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) {
        return Some("must begin with a letter or digit");
    }
    if !alnum(bytes[bytes.len() - 1]) {
        return Some("must end with a letter or digit");
    }
    if name.contains("..") {
        return Some("must not contain two adjacent periods");
    }
    if looks_like_ipv4(name) {
        return Some("must not be formatted as an IP address");
    }
    if RESERVED_BUCKET_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Some("starts with a reserved prefix");
    }
    if RESERVED_BUCKET_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Some("ends with a reserved suffix");
    }
    None
}

/// Four dot-separated groups of one to three digits, like `192.168.5.4`. Out-of-range groups
/// (`999.1.1.1`) are still refused: the rule is about the shape, which confuses virtual-host
/// addressing either way.
fn looks_like_ipv4(name: &str) -> bool {
    let groups: Vec<&str> = name.split('.').collect();
    groups.len() == 4
        && groups
            .iter()
            .all(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest object key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

/// An object key: 1 to 1024 bytes of UTF-8 without U+0000 (the metadata index separates
/// bucket, key and version with NUL bytes, so a NUL inside a key would break its ordering).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`.
    pub fn parse(key: &str) -> Result<ObjectKey, NameError> {
        if key.is_empty() {
            return Err(NameError::InvalidKey { reason: "empty" });
        }
        if key.len() > MAX_KEY_LEN {
            return Err(NameError::KeyTooLong { len: key.len() });
        }
        if key.contains('\0') {
            return Err(NameError::InvalidKey {
                reason: "contains U+0000",
            });
        }
        Ok(ObjectKey(key.to_owned()))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A data or meta node's cluster-wide id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The name of a failure domain (an availability zone, a rack, a site).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ZoneName(pub String);

impl ZoneName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ZoneName {
    fn from(name: &str) -> Self {
        ZoneName(name.to_owned())
    }
}

impl fmt::Display for ZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one version of an object: `null` (the version of unversioned buckets and of
/// versioning-suspended writes), or an opaque 20-character URL-safe string made from the
/// version's sequence number by [`VersionId::from_seq`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionId(String);

/// Spelling of the null version id.
const NULL_VERSION: &str = "null";
/// Length of a sequence-made version id in characters (15 bytes in unpadded base64url).
pub const VERSION_ID_LEN: usize = 20;
/// Domain separation for the version id's check bytes.
const VERSION_CHECK_CONTEXT: &[u8] = b"tessera version id v1";

/// Odd multipliers of the invertible mixing function; any odd constant is invertible mod 2^64.
const MIX_A: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX_B: u64 = 0xBF58_476D_1CE4_E5B9;
const MIX_XOR: u64 = 0x94D0_49BB_1331_11EB;

/// The inverse of odd `a` modulo 2^64, by Newton's iteration (each step doubles the correct bits).
const fn mod_inverse(a: u64) -> u64 {
    let mut x = a; // correct to 3 bits for odd a
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

const MIX_A_INV: u64 = mod_inverse(MIX_A);
const MIX_B_INV: u64 = mod_inverse(MIX_B);

/// A bijection on u64 that hides the sequence number's structure (ids of consecutive versions
/// share no visible prefix). `x ^= x >> 32` is its own inverse, multiplication by an odd number
/// is invertible, so [`unmix`] undoes it step by step.
fn mix(seq: u64) -> u64 {
    let mut x = (seq ^ MIX_XOR).wrapping_mul(MIX_A);
    x ^= x >> 32;
    x = x.wrapping_mul(MIX_B);
    x ^ (x >> 32)
}

/// The inverse of [`mix`].
fn unmix(mixed: u64) -> u64 {
    let mut x = mixed ^ (mixed >> 32);
    x = x.wrapping_mul(MIX_B_INV);
    x ^= x >> 32;
    x.wrapping_mul(MIX_A_INV) ^ MIX_XOR
}

/// Seven check bytes over the mixed sequence, so that made-up ids are refused by `parse`.
fn version_check(mixed: &[u8; 8]) -> [u8; 7] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(VERSION_CHECK_CONTEXT);
    hasher.update(mixed);
    let hash = hasher.finalize();
    let mut check = [0u8; 7];
    check.copy_from_slice(&hash.as_bytes()[..7]);
    check
}

impl VersionId {
    /// The `null` version id.
    pub fn null() -> VersionId {
        VersionId(NULL_VERSION.to_owned())
    }

    /// The version id of sequence number `seq`: deterministic, distinct for every `seq`, 20
    /// characters of `A-Z a-z 0-9 - _`.
    pub fn from_seq(seq: u64) -> VersionId {
        let mixed = mix(seq).to_be_bytes();
        let mut raw = [0u8; 15];
        raw[..8].copy_from_slice(&mixed);
        raw[8..].copy_from_slice(&version_check(&mixed));
        VersionId(URL_SAFE_NO_PAD.encode(raw))
    }

    /// The sequence number this id was made from; `None` for `null`.
    pub fn seq(&self) -> Option<u64> {
        decode_version_seq(&self.0)
    }

    /// Accepts `null` or an id made by [`VersionId::from_seq`].
    pub fn parse(s: &str) -> Result<VersionId, NameError> {
        if s == NULL_VERSION || decode_version_seq(s).is_some() {
            Ok(VersionId(s.to_owned()))
        } else {
            Err(NameError::InvalidVersionId)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the `null` version id.
    pub fn is_null(&self) -> bool {
        self.0 == NULL_VERSION
    }
}

/// The sequence number inside a valid sequence-made id. The base64 engine refuses
/// non-canonical trailing bits, so each sequence number has exactly one accepted spelling.
fn decode_version_seq(s: &str) -> Option<u64> {
    if s.len() != VERSION_ID_LEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(s).ok()?;
    if raw.len() != 15 {
        return None;
    }
    let mut mixed = [0u8; 8];
    mixed.copy_from_slice(&raw[..8]);
    if raw[8..] != version_check(&mixed) {
        return None;
    }
    Some(unmix(u64::from_be_bytes(mixed)))
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Length of an upload id in characters (16 random bytes in unpadded base64url).
pub const UPLOAD_ID_LEN: usize = 22;

/// A multipart upload id made from 16 random bytes the caller draws: 22 URL-safe characters.
pub fn new_upload_id(random: [u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// Whether `id` could have come from [`new_upload_id`] (only the canonical spelling passes).
pub fn is_valid_upload_id(id: &str) -> bool {
    if id.len() != UPLOAD_ID_LEN {
        return false;
    }
    URL_SAFE_NO_PAD.decode(id).is_ok_and(|raw| raw.len() == 16)
}

#[cfg(test)]
#[path = "names_test.rs"]
mod tests;
