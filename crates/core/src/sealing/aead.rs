//! The one AEAD interface that sealing uses, and AES-256-GCM behind it, so that another
//! implementation can be measured against it without touching the framing.
//!
//! Invariant: `open` yields plaintext only when the tag verifies for exactly this key, nonce,
//! associated data and ciphertext; on any failure the buffer is cleared, so no unauthenticated
//! byte can reach a caller.

use aes_gcm::aead::{AeadInOut, KeyInit};
use zeroize::Zeroizing;

/// Bytes of a sealing key (AES-256).
pub const KEY_LEN: usize = 32;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes an AEAD adds to what it seals (the GCM tag).
pub const TAG_LEN: usize = 16;

/// A 256-bit key: zeroed when dropped, never printed, never compared (no `PartialEq`, so no
/// code path can compare secrets in variable time).
#[derive(Clone)]
pub struct SealKey(Zeroizing<[u8; KEY_LEN]>);

impl SealKey {
    /// A key from its bytes (the caller draws them from a secure random source: core has none).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SealKey {
        SealKey(Zeroizing::new(bytes))
    }

    /// The key's bytes, for wrapping it.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

/// The tag did not verify: the ciphertext, nonce, associated data or key is not the one sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AuthError;

/// An authenticated cipher over one message at a time.
pub trait SegmentAead: Send + Sync {
    /// The algorithm's name, for logs and benchmarks.
    fn name(&self) -> &'static str;

    /// Encrypts `buf` in place and appends the tag (`TAG_LEN` bytes).
    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>);

    /// Checks and strips the tag at the end of `buf` and decrypts the rest in place; on failure
    /// `buf` is cleared.
    fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>)
    -> Result<(), AuthError>;
}

/// AES-256-GCM (the `aes-gcm` crate, with AES-NI and CLMUL where the CPU has them).
pub struct Aes256GcmAead {
    cipher: aes_gcm::Aes256Gcm,
}

impl Aes256GcmAead {
    /// A cipher under `key`.
    pub fn new(key: &SealKey) -> Aes256GcmAead {
        // Borrowed, not copied: no second copy of the key is left to zero.
        Aes256GcmAead {
            cipher: aes_gcm::Aes256Gcm::new(key.expose().into()),
        }
    }
}

impl SegmentAead for Aes256GcmAead {
    fn name(&self) -> &'static str {
        "aes-256-gcm"
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
        let nonce = aes_gcm::Nonce::from(*nonce);
        // GCM refuses only messages over 2^36 bytes; every caller seals a segment or a key.
        self.cipher
            .encrypt_in_place(&nonce, aad, buf)
            .expect("a segment is far below AES-GCM's message limit");
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), AuthError> {
        let nonce = aes_gcm::Nonce::from(*nonce);
        self.cipher.decrypt_in_place(&nonce, aad, buf).map_err(|_| {
            buf.clear();
            AuthError
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(byte: u8) -> Aes256GcmAead {
        Aes256GcmAead::new(&SealKey::from_bytes([byte; KEY_LEN]))
    }

    #[test]
    fn seal_then_open_round_trips_and_adds_one_tag() {
        let aead = cipher(1);
        for len in [0usize, 1, 15, 16, 17, 4096] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = plain.clone();
            aead.seal(&[7; NONCE_LEN], b"aad", &mut buf);
            assert_eq!(buf.len(), len + TAG_LEN);
            if len > 0 {
                assert_ne!(&buf[..len], &plain[..]);
            }
            aead.open(&[7; NONCE_LEN], b"aad", &mut buf).expect("opens");
            assert_eq!(buf, plain);
        }
    }

    #[test]
    fn any_change_fails_and_clears_the_buffer() {
        let aead = cipher(1);
        let mut sealed = b"attack at dawn".to_vec();
        aead.seal(&[7; NONCE_LEN], b"aad", &mut sealed);
        for i in 0..sealed.len() {
            let mut buf = sealed.clone();
            buf[i] ^= 0x01;
            assert_eq!(aead.open(&[7; NONCE_LEN], b"aad", &mut buf), Err(AuthError));
            assert!(buf.is_empty(), "byte {i}");
        }
        let mut buf = sealed.clone();
        assert_eq!(aead.open(&[8; NONCE_LEN], b"aad", &mut buf), Err(AuthError));
        let mut buf = sealed.clone();
        assert_eq!(aead.open(&[7; NONCE_LEN], b"aae", &mut buf), Err(AuthError));
        let mut buf = sealed.clone();
        assert_eq!(
            cipher(2).open(&[7; NONCE_LEN], b"aad", &mut buf),
            Err(AuthError)
        );
        let mut short = sealed[..TAG_LEN - 1].to_vec();
        assert_eq!(
            aead.open(&[7; NONCE_LEN], b"aad", &mut short),
            Err(AuthError)
        );
        assert!(short.is_empty());
    }

    #[test]
    fn a_known_answer_matches_the_gcm_specification() {
        // The GCM specification's test case 13: AES-256, zero key, zero nonce, empty message:
        // the tag alone.
        let aead = Aes256GcmAead::new(&SealKey::from_bytes([0; KEY_LEN]));
        let mut buf = Vec::new();
        aead.seal(&[0; NONCE_LEN], b"", &mut buf);
        assert_eq!(hex::encode(&buf), "530f8afbc74536b9a963b4f1c4cb738b");
        assert_eq!(aead.name(), "aes-256-gcm");
        assert_eq!(
            format!("{:?}", SealKey::from_bytes([9; KEY_LEN])),
            "SealKey(<redacted>)"
        );
    }
}
