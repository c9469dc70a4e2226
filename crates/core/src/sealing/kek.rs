//! Key-encryption keys (KEKs) and the root key above them. A KEK is named and versioned
//! (`name/version`, e.g. `sse-s3/1`); meta stores each one only wrapped under the root key given
//! to meta nodes at start, and wraps and unwraps data keys with it. The root key never leaves a
//! meta process and is never stored; a meta node keeps a check value ([`root_check`]) so that a
//! restart with another root key is refused before anything is touched.
//!
//! Invariant: a KEK unwraps only under the root key it was wrapped with and only as the id it
//! was wrapped for; a check value verifies only under the root key that made it.

use std::fmt;
use std::str::FromStr;

use super::aead::{Aes256GcmAead, KEY_LEN, NONCE_LEN, SealKey};
use super::key_wrap::{WrapContext, unwrap_key, wrap_key};
use super::seal_error::SealError;
use super::segments::Binding;

/// The KEK that wraps every SSE-S3 data key (its versions rotate).
pub const SSE_S3_KEK: &str = "sse-s3";

/// The id wrapped keys name the root key by.
const ROOT_ID: &str = "root";
/// What the root check value wraps (a fixed key: the check only proves the root key).
const CHECK_NAME: &str = "root key check";

/// A KEK's name and version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KekId {
    /// The key's name: `[a-z0-9-]`, 1 to 64 characters.
    pub name: String,
    /// Its version, from 1.
    pub version: u32,
}

/// Why a KEK id or root key does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    /// Not `name/version` with a valid name and a version from 1.
    #[error("not a key-encryption key id (name/version): {0:?}")]
    KekId(String),
    /// A root key must be 64 hexadecimal digits (256 bits).
    #[error("a root key is 64 hexadecimal digits (256 bits); got {len} characters that are not")]
    RootKey {
        /// Characters given (after trimming white space).
        len: usize,
    },
}

impl KekId {
    /// A KEK id; `None` if the name is not `[a-z0-9-]{1,64}` or the version is 0.
    pub fn new(name: &str, version: u32) -> Option<KekId> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        (valid && version > 0).then(|| KekId {
            name: name.to_owned(),
            version,
        })
    }
}

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

impl FromStr for KekId {
    type Err = KeyTextError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || KeyTextError::KekId(s.to_owned());
        let (name, version) = s.split_once('/').ok_or_else(bad)?;
        if version.starts_with('0') || version.starts_with('+') {
            return Err(bad());
        }
        let version = version.parse::<u32>().map_err(|_| bad())?;
        KekId::new(name, version).ok_or_else(bad)
    }
}

/// A root key from its text: 64 hexadecimal digits, white space around them ignored.
pub fn parse_root_key(text: &str) -> Result<SealKey, KeyTextError> {
    let text = text.trim();
    let mut key = zeroize::Zeroizing::new([0u8; KEY_LEN]);
    if text.len() != 2 * KEY_LEN || hex::decode_to_slice(text, &mut key[..]).is_err() {
        return Err(KeyTextError::RootKey { len: text.len() });
    }
    Ok(SealKey::from_bytes(*key))
}

fn kek_context<'a>(subject: &'a str) -> WrapContext<'a> {
    WrapContext {
        kek_id: ROOT_ID,
        layer: 0,
        binding: Binding {
            bucket: "",
            key: subject,
            part_number: 0,
        },
        context: &[],
    }
}

/// Wraps KEK `kek` (id `id`) under `root`, with a fresh random `nonce` from the caller.
pub fn wrap_kek(root: &SealKey, nonce: [u8; NONCE_LEN], id: &KekId, kek: &SealKey) -> Vec<u8> {
    let subject = format!("kek {id}");
    wrap_key(
        &Aes256GcmAead::new(root),
        nonce,
        &kek_context(&subject),
        kek,
    )
}

/// The KEK `id` inside `wrapped`, if it was wrapped under `root` as `id`.
pub fn unwrap_kek(root: &SealKey, id: &KekId, wrapped: &[u8]) -> Result<SealKey, SealError> {
    let subject = format!("kek {id}");
    unwrap_key(&Aes256GcmAead::new(root), &kek_context(&subject), wrapped)
}

/// A check value that verifies only under `root` (made with a fresh random `nonce`).
pub fn root_check(root: &SealKey, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let fixed = SealKey::from_bytes([0; KEY_LEN]);
    wrap_key(
        &Aes256GcmAead::new(root),
        nonce,
        &kek_context(CHECK_NAME),
        &fixed,
    )
}

/// Whether `check` was made by [`root_check`] under `root`.
pub fn verify_root_check(root: &SealKey, check: &[u8]) -> Result<(), SealError> {
    unwrap_key(&Aes256GcmAead::new(root), &kek_context(CHECK_NAME), check).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kek_ids_parse_and_print() {
        let id: KekId = "sse-s3/12".parse().expect("parses");
        assert_eq!(id, KekId::new(SSE_S3_KEK, 12).expect("valid"));
        assert_eq!(id.to_string(), "sse-s3/12");
        for bad in [
            "",
            "sse-s3",
            "sse-s3/",
            "/1",
            "sse-s3/0",
            "sse-s3/01",
            "sse-s3/+1",
            "SSE/1",
            "a b/1",
            "a/1/2",
            "a/-1",
            "a/4294967296",
        ] {
            assert_eq!(
                bad.parse::<KekId>(),
                Err(KeyTextError::KekId(bad.into())),
                "{bad:?}"
            );
        }
        assert!(KekId::new(&"a".repeat(64), 1).is_some());
        assert!(KekId::new(&"a".repeat(65), 1).is_none());
    }

    #[test]
    fn root_keys_are_64_hex_digits() {
        let text = format!("  {}\n", "ab".repeat(32));
        let key = parse_root_key(&text).expect("parses");
        assert_eq!(key.expose(), &[0xab; KEY_LEN]);
        for bad in ["", "ab", &"ab".repeat(33), &"zz".repeat(32)] {
            assert!(parse_root_key(bad).is_err(), "{bad:?}");
        }
        let err = parse_root_key("xyz").expect_err("refused");
        assert!(!err.to_string().contains("xyz"), "the text is never echoed");
    }

    #[test]
    fn a_kek_unwraps_only_under_its_root_and_id() {
        let root = SealKey::from_bytes([1; KEY_LEN]);
        let other_root = SealKey::from_bytes([2; KEY_LEN]);
        let id = KekId::new(SSE_S3_KEK, 1).expect("valid");
        let kek = SealKey::from_bytes([9; KEY_LEN]);
        let wrapped = wrap_kek(&root, [5; NONCE_LEN], &id, &kek);
        assert_eq!(
            unwrap_kek(&root, &id, &wrapped).expect("unwraps").expose(),
            kek.expose()
        );
        assert!(unwrap_kek(&other_root, &id, &wrapped).is_err());
        let next = KekId::new(SSE_S3_KEK, 2).expect("valid");
        assert!(unwrap_kek(&root, &next, &wrapped).is_err());
    }

    #[test]
    fn the_root_check_verifies_only_under_its_root() {
        let root = SealKey::from_bytes([1; KEY_LEN]);
        let check = root_check(&root, [7; NONCE_LEN]);
        assert_eq!(verify_root_check(&root, &check), Ok(()));
        assert!(verify_root_check(&SealKey::from_bytes([2; KEY_LEN]), &check).is_err());
        let mut bad = check.clone();
        bad[20] ^= 1;
        assert!(verify_root_check(&root, &bad).is_err());
        let id = KekId::new("root-key-check", 1).expect("valid");
        assert!(
            unwrap_kek(&root, &id, &check).is_err(),
            "a check value is no KEK"
        );
    }
}
