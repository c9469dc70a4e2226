//! SSE-C: the customer's own key, as S3 takes it in the three
//! `x-amz-server-side-encryption-customer-*` headers (algorithm `AES256`, the 256-bit key in
//! base64, the base64 MD5 of the key), and the key check stored in its place.
//!
//! The customer's key is never stored. What is stored is a key check:
//! `1 ‖ salt (16) ‖ blake3-keyed(customer key, domain ‖ salt)`, a MAC under the key itself, so a
//! later request's key can be checked (in constant time) without the stored bytes revealing
//! anything about the key; a fresh salt per object keeps equal keys from showing as equal
//! checks. A blob's data key is random and wrapped under the customer's key (see
//! [`key_wrap`](super::key_wrap), with KEK id [`CUSTOMER_KEK_ID`]), so every blob still has a
//! key of its own and a wrong key fails to unwrap even without the check.
//!
//! Invariant: `CustomerKey::parse` accepts exactly a request whose three headers are all present,
//! name AES256, carry a 32-byte key, and whose MD5 is that key's; every other combination is a
//! distinct error that the gateway maps to S3's answer. A key check verifies only for the key it
//! was made with.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::Digest as _;

use super::aead::{KEY_LEN, SealKey};

/// The only algorithm SSE-C takes.
pub const ALGORITHM: &str = "AES256";
/// The key-encryption-key id recorded for data keys wrapped by a customer's key.
pub const CUSTOMER_KEK_ID: &str = "sse-c";
/// Bytes of the salt in a key check.
pub const SALT_LEN: usize = 16;
/// Bytes of a key check.
pub const KEY_CHECK_LEN: usize = 1 + SALT_LEN + blake3::OUT_LEN;
/// The format byte of key checks this build writes.
const KEY_CHECK_FORMAT: u8 = 1;
/// Names the key check apart from every other use of a customer's key.
const DOMAIN: &[u8] = b"tessera sse-c key check v1\0";
/// Names the ETag digest apart from the key check.
const ETAG_DOMAIN: &[u8] = b"tessera sse-c etag v1\0";

/// The three customer-key headers of one request, as sent (the object's own, or the copy
/// source's `x-amz-copy-source-server-side-encryption-customer-*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CustomerKeyHeaders<'a> {
    /// `…-customer-algorithm`.
    pub algorithm: Option<&'a str>,
    /// `…-customer-key`: the key, base64.
    pub key: Option<&'a str>,
    /// `…-customer-key-MD5`: the key's MD5, base64.
    pub key_md5: Option<&'a str>,
}

impl CustomerKeyHeaders<'_> {
    /// Whether any of the three is present.
    pub fn any(&self) -> bool {
        self.algorithm.is_some() || self.key.is_some() || self.key_md5.is_some()
    }
}

/// Why customer-key headers or a key were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CustomerKeyError {
    /// A key or MD5 without the algorithm header.
    #[error(
        "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
    )]
    MissingAlgorithm,
    /// An algorithm other than AES256.
    #[error("The Encryption request you specified is not valid. Supported value: AES256.")]
    InvalidAlgorithm,
    /// The algorithm without the key.
    #[error(
        "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
    )]
    MissingKey,
    /// A key that is not base64 or not 256 bits.
    #[error("The secret key was invalid for the specified algorithm.")]
    InvalidKey,
    /// The key without its MD5.
    #[error(
        "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
    )]
    MissingKeyMd5,
    /// The MD5 sent is not the key's.
    #[error("The calculated MD5 hash of the key did not match the hash that was provided.")]
    KeyMd5Mismatch,
    /// The key is not the one the object was stored with.
    #[error("The provided customer key does not match the key the object was stored with.")]
    WrongKey,
    /// A stored key check of unknown format or length.
    #[error("stored SSE-C key check is malformed ({len} bytes)")]
    MalformedCheck {
        /// Its length.
        len: usize,
    },
}

/// A customer's key, checked against its MD5; zeroed when dropped and never printed.
#[derive(Clone)]
pub struct CustomerKey {
    key: SealKey,
    key_md5: String,
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerKey")
            .field("key", &"<redacted>")
            .field("key_md5", &self.key_md5)
            .finish()
    }
}

impl CustomerKey {
    /// The key the headers carry: `None` when there are none, an error when they are
    /// incomplete or inconsistent.
    pub fn parse(
        headers: &CustomerKeyHeaders<'_>,
    ) -> Result<Option<CustomerKey>, CustomerKeyError> {
        if !headers.any() {
            return Ok(None);
        }
        let algorithm = headers
            .algorithm
            .ok_or(CustomerKeyError::MissingAlgorithm)?;
        if algorithm != ALGORITHM {
            return Err(CustomerKeyError::InvalidAlgorithm);
        }
        let encoded = headers.key.ok_or(CustomerKeyError::MissingKey)?;
        // Zeroed when dropped, as the key it holds.
        let decoded = zeroize::Zeroizing::new(
            STANDARD
                .decode(encoded.trim())
                .map_err(|_| CustomerKeyError::InvalidKey)?,
        );
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| CustomerKeyError::InvalidKey)?;
        let key = SealKey::from_bytes(bytes);
        let md5 = key_md5(&key);
        let sent = headers.key_md5.ok_or(CustomerKeyError::MissingKeyMd5)?;
        let sent = STANDARD
            .decode(sent.trim())
            .map_err(|_| CustomerKeyError::KeyMd5Mismatch)?;
        if sent != md5 {
            return Err(CustomerKeyError::KeyMd5Mismatch);
        }
        Ok(Some(CustomerKey {
            key,
            key_md5: STANDARD.encode(md5),
        }))
    }

    /// A key from its bytes (tests, and tools that make keys).
    pub fn from_key(key: SealKey) -> CustomerKey {
        let key_md5 = STANDARD.encode(key_md5(&key));
        CustomerKey { key, key_md5 }
    }

    /// The key, to wrap a blob's data key under.
    pub fn key(&self) -> &SealKey {
        &self.key
    }

    /// The base64 MD5 of the key, which S3 echoes in
    /// `x-amz-server-side-encryption-customer-key-MD5`.
    pub fn key_md5(&self) -> &str {
        &self.key_md5
    }

    /// A key check of this key with `salt` (fresh random bytes per object, from the caller).
    pub fn key_check(&self, salt: [u8; SALT_LEN]) -> Vec<u8> {
        let mut check = Vec::with_capacity(KEY_CHECK_LEN);
        check.push(KEY_CHECK_FORMAT);
        check.extend_from_slice(&salt);
        check.extend_from_slice(self.mac(&salt).as_bytes());
        check
    }

    /// Whether `check` was made with this key.
    pub fn verify(&self, check: &[u8]) -> Result<(), CustomerKeyError> {
        if check.len() != KEY_CHECK_LEN || check[0] != KEY_CHECK_FORMAT {
            return Err(CustomerKeyError::MalformedCheck { len: check.len() });
        }
        let (salt, mac) = check[1..].split_at(SALT_LEN);
        let mac: [u8; blake3::OUT_LEN] = mac
            .try_into()
            .map_err(|_| CustomerKeyError::MalformedCheck { len: check.len() })?;
        // blake3::Hash compares in constant time.
        if self.mac(salt) == blake3::Hash::from(mac) {
            Ok(())
        } else {
            Err(CustomerKeyError::WrongKey)
        }
    }

    /// The 16 bytes that stand for the MD5 of an SSE-C body in its ETag. As in S3, the ETag of
    /// an object encrypted with a customer key is not the MD5 of its data (which anyone allowed
    /// to list the bucket could see, and compare with guesses); it is a MAC of that MD5 under
    /// the customer's key: the same for the same bytes and key, telling nothing without the key.
    pub fn etag_digest(&self, md5: &[u8; 16]) -> [u8; 16] {
        let mut hasher = blake3::Hasher::new_keyed(self.key.expose());
        hasher.update(ETAG_DOMAIN);
        hasher.update(md5);
        let mut out = [0_u8; 16];
        out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        out
    }

    fn mac(&self, salt: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(self.key.expose());
        hasher.update(DOMAIN);
        hasher.update(salt);
        hasher.finalize()
    }
}

fn key_md5(key: &SealKey) -> [u8; 16] {
    md5::Md5::digest(key.expose()).into()
}

#[cfg(test)]
#[path = "customer_key_test.rs"]
mod tests;
