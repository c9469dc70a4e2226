//! Data keys wrapped by a key-encryption key: how a blob's key is stored (only ever wrapped).
//!
//! Format v1: `1 ‖ nonce (12) ‖ encrypted key (32) ‖ tag (16)`, sealed with AES-256-GCM under
//! the key-encryption key with the associated data `domain ‖ kek id ‖ layer ‖ binding`. So a
//! wrapped key opens only under the key-encryption key it names, for the layer and the object it
//! was made for: moved to another object, part or layer it fails to unwrap.
//!
//! Invariant: `unwrap_key` returns the exact key `wrap_key` was given, or an error; never another
//! key.

use super::aead::{KEY_LEN, NONCE_LEN, SealKey, SegmentAead, TAG_LEN};
use super::seal_error::SealError;
use super::segments::Binding;

/// The format byte of wrapped keys this build writes.
pub const WRAPPED_KEY_FORMAT: u8 = 1;
/// Bytes of a wrapped key.
pub const WRAPPED_KEY_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;

/// Names key wrapping in the associated data, apart from every other use of a key.
const DOMAIN: &[u8] = b"tessera key wrap v1\0";

/// What a wrapped data key is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrapContext<'a> {
    /// The key-encryption key's id (its name and version).
    pub kek_id: &'a str,
    /// The sealing layer the data key serves (1, or 2 for DSSE's outer layer).
    pub layer: u8,
    /// The object and part.
    pub binding: Binding<'a>,
    /// SSE-KMS's encryption context (canonical JSON, see `crate::kms::parse_context`); empty
    /// for none, which leaves the associated data as it was before contexts existed.
    pub context: &'a [u8],
}

impl WrapContext<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(DOMAIN.len() + 8 + self.kek_id.len() + 64);
        aad.extend_from_slice(DOMAIN);
        aad.extend_from_slice(&(self.kek_id.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.kek_id.as_bytes());
        aad.push(self.layer);
        aad.extend_from_slice(&self.binding.associated_data());
        if !self.context.is_empty() {
            aad.extend_from_slice(b"context");
            aad.extend_from_slice(&(self.context.len() as u32).to_be_bytes());
            aad.extend_from_slice(self.context);
        }
        aad
    }
}

/// Wraps `key` under `kek` with `nonce` (fresh random bytes from the caller: never reuse one
/// under the same key-encryption key).
pub fn wrap_key(
    kek: &dyn SegmentAead,
    nonce: [u8; NONCE_LEN],
    context: &WrapContext<'_>,
    key: &SealKey,
) -> Vec<u8> {
    let mut sealed = key.expose().to_vec();
    kek.seal(&nonce, &context.associated_data(), &mut sealed);
    let mut wrapped = Vec::with_capacity(WRAPPED_KEY_LEN);
    wrapped.push(WRAPPED_KEY_FORMAT);
    wrapped.extend_from_slice(&nonce);
    wrapped.extend_from_slice(&sealed);
    zeroize::Zeroize::zeroize(&mut sealed);
    wrapped
}

/// The data key inside `wrapped`, if it was wrapped under `kek` for `context`.
pub fn unwrap_key(
    kek: &dyn SegmentAead,
    context: &WrapContext<'_>,
    wrapped: &[u8],
) -> Result<SealKey, SealError> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(SealError::WrappedKeyLength {
            len: wrapped.len(),
            expected: WRAPPED_KEY_LEN,
        });
    }
    if wrapped[0] != WRAPPED_KEY_FORMAT {
        return Err(SealError::WrappedKeyFormat {
            version: wrapped[0],
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&wrapped[1..1 + NONCE_LEN]);
    let mut buf = zeroize::Zeroizing::new(wrapped[1 + NONCE_LEN..].to_vec());
    kek.open(&nonce, &context.associated_data(), &mut buf)
        .map_err(|_| SealError::KeyUnwrap {
            kek_id: context.kek_id.to_owned(),
        })?;
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&buf);
    let sealed = SealKey::from_bytes(key);
    zeroize::Zeroize::zeroize(&mut key);
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealing::aead::Aes256GcmAead;

    fn kek(byte: u8) -> Aes256GcmAead {
        Aes256GcmAead::new(&SealKey::from_bytes([byte; KEY_LEN]))
    }

    /// Why `wrapped` does not unwrap (keys are never compared, so a success is a failure here).
    fn refusal(kek: &Aes256GcmAead, context: &WrapContext<'_>, wrapped: &[u8]) -> SealError {
        match unwrap_key(kek, context, wrapped) {
            Ok(_) => panic!("unwrapped where it must not"),
            Err(e) => e,
        }
    }

    fn context<'a>(kek_id: &'a str, layer: u8, key: &'a str, part: u32) -> WrapContext<'a> {
        WrapContext {
            kek_id,
            layer,
            binding: Binding {
                bucket: "photos",
                key,
                part_number: part,
            },
            context: &[],
        }
    }

    #[test]
    fn a_wrapped_key_unwraps_only_where_it_was_made_for() {
        let data_key = SealKey::from_bytes([42; KEY_LEN]);
        let here = context("kek-1", 1, "cat.jpg", 0);
        let wrapped = wrap_key(&kek(1), [3; NONCE_LEN], &here, &data_key);
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        assert_eq!(wrapped[0], WRAPPED_KEY_FORMAT);
        assert!(
            !wrapped.windows(KEY_LEN).any(|w| w == data_key.expose()),
            "the key never appears in the clear"
        );
        let unwrapped = unwrap_key(&kek(1), &here, &wrapped).expect("unwraps where it was made");
        assert_eq!(unwrapped.expose(), data_key.expose());

        let refused = SealError::KeyUnwrap {
            kek_id: "kek-1".into(),
        };
        for elsewhere in [
            context("kek-1", 2, "cat.jpg", 0),
            context("kek-1", 1, "dog.jpg", 0),
            context("kek-1", 1, "cat.jpg", 1),
        ] {
            assert_eq!(
                refusal(&kek(1), &elsewhere, &wrapped),
                refused.clone(),
                "{elsewhere:?}"
            );
        }
        assert_eq!(
            refusal(&kek(2), &here, &wrapped),
            refused.clone(),
            "another key-encryption key"
        );
        assert_eq!(
            refusal(&kek(1), &context("kek-2", 1, "cat.jpg", 0), &wrapped),
            SealError::KeyUnwrap {
                kek_id: "kek-2".into()
            },
            "another key-encryption key id"
        );
    }

    #[test]
    fn every_altered_byte_and_length_is_refused() {
        let here = context("kek-1", 1, "k", 0);
        let wrapped = wrap_key(
            &kek(1),
            [3; NONCE_LEN],
            &here,
            &SealKey::from_bytes([7; KEY_LEN]),
        );
        for i in 1..wrapped.len() {
            let mut bad = wrapped.clone();
            bad[i] ^= 0x80;
            assert_eq!(
                refusal(&kek(1), &here, &bad),
                SealError::KeyUnwrap {
                    kek_id: "kek-1".into()
                },
                "byte {i}"
            );
        }
        let mut other_format = wrapped.clone();
        other_format[0] = 2;
        assert_eq!(
            refusal(&kek(1), &here, &other_format),
            SealError::WrappedKeyFormat { version: 2 }
        );
        for len in [0, 1, WRAPPED_KEY_LEN - 1, WRAPPED_KEY_LEN + 1] {
            let mut resized = wrapped.clone();
            resized.resize(len, 0);
            assert_eq!(
                refusal(&kek(1), &here, &resized),
                SealError::WrappedKeyLength {
                    len,
                    expected: WRAPPED_KEY_LEN
                }
            );
        }
    }

    #[test]
    fn an_encryption_context_binds_and_only_the_same_context_unwraps() {
        let data_key = SealKey::from_bytes([5; KEY_LEN]);
        let plain = context("kms-1/1", 1, "k", 0);
        let with = WrapContext {
            context: br#"{"a":"1"}"#,
            ..plain
        };
        let wrapped = wrap_key(&kek(1), [4; NONCE_LEN], &with, &data_key);
        unwrap_key(&kek(1), &with, &wrapped).expect("same context");
        for other in [
            plain,
            WrapContext {
                context: br#"{"a":"2"}"#,
                ..plain
            },
        ] {
            assert!(matches!(
                refusal(&kek(1), &other, &wrapped),
                SealError::KeyUnwrap { .. }
            ));
        }
        // Without a context the associated data is what it was before contexts existed.
        let old = wrap_key(&kek(1), [4; NONCE_LEN], &plain, &data_key);
        unwrap_key(&kek(1), &plain, &old).expect("no context");
    }
}
