//! S3 Bucket Keys: one key from the KMS serves many objects of a bucket for a while, and each
//! blob's data key is derived from it and a salt of the blob's own, so the KMS is asked once
//! per bucket key instead of once per object.
//!
//! - The bucket key is a KMS data key like any other, made for the bucket-level binding
//!   ([`bucket_binding`]: the bucket, no object key, part 0, which no object has) and the
//!   encryption context S3 uses for bucket keys, the bucket's ARN ([`bucket_context`]). It is
//!   stored only wrapped, by the KMS key's KEK, beside every blob it served.
//! - A blob's data key is `blake3::derive_key(DOMAIN, bucket key ‖ salt ‖ binding ‖ context)`
//!   ([`object_key`]), with a fresh 256-bit salt per blob: two blobs never share a data key (the
//!   segment nonces are per-blob counters, so they must not), and a data key is bound to its
//!   object, part and the object's own encryption context.
//! - A blob records `wrapped bucket key ‖ salt` as its wrapped key ([`join`], [`split`]).
//!
//! Invariant: a blob's data key can be had only by unwrapping its bucket key through the KMS
//! (which refuses while the KMS key may not be used) and knowing the salt, binding and context
//! it was derived for; any other input gives an unrelated key, under which the segments fail
//! to authenticate.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::aead::{KEY_LEN, SealKey};
use super::key_wrap::WRAPPED_KEY_LEN;
use super::seal_error::SealError;
use super::segments::Binding;

/// Bytes of a blob's salt.
pub const SALT_LEN: usize = 32;

/// Bytes of a bucket-keyed blob's `wrapped_key`: the wrapped bucket key, then the salt.
pub const RECORD_LEN: usize = WRAPPED_KEY_LEN + SALT_LEN;

/// The key-derivation context: names this derivation apart from every other use of blake3.
const DOMAIN: &str = "tessera 2026-12-02 S3 Bucket Key: object data key v1";

/// The context key S3 puts the bucket's ARN under.
pub const ARN_CONTEXT_KEY: &str = "aws:s3:arn";

/// What a bucket key is bound to: the bucket itself (no object key, part 0: no object's
/// binding is ever this).
pub fn bucket_binding(bucket: &str) -> Binding<'_> {
    Binding {
        bucket,
        key: "",
        part_number: 0,
    }
}

/// Whether `binding` is a bucket key's (see [`bucket_binding`]).
pub fn is_bucket_binding(binding: &Binding<'_>) -> bool {
    binding.key.is_empty() && binding.part_number == 0
}

/// The encryption context a bucket key is made with, as S3 uses for bucket keys:
/// `{"aws:s3:arn":"arn:aws:s3:::BUCKET"}`, in the canonical form of
/// [`crate::kms::parse_context`].
pub fn bucket_context(bucket: &str) -> Vec<u8> {
    let pairs = BTreeMap::from([(ARN_CONTEXT_KEY, format!("arn:aws:s3:::{bucket}"))]);
    serde_json::to_vec(&pairs).expect("a map of strings serializes")
}

/// The data key of one blob: derived from the bucket key, the blob's salt, the object and part
/// it belongs to (`binding`) and the object's encryption context (canonical JSON, empty for
/// none).
pub fn object_key(
    bucket_key: &SealKey,
    salt: &[u8; SALT_LEN],
    binding: &Binding<'_>,
    context: &[u8],
) -> SealKey {
    let aad = binding.associated_data();
    let mut material = Zeroizing::new(Vec::with_capacity(
        KEY_LEN + SALT_LEN + 8 + aad.len() + context.len(),
    ));
    material.extend_from_slice(bucket_key.expose());
    material.extend_from_slice(salt);
    for field in [aad.as_slice(), context] {
        material.extend_from_slice(&(field.len() as u32).to_be_bytes());
        material.extend_from_slice(field);
    }
    SealKey::from_bytes(blake3::derive_key(DOMAIN, &material))
}

/// A bucket-keyed blob's `wrapped_key`: the wrapped bucket key, then the salt.
pub fn join(wrapped_bucket_key: &[u8], salt: &[u8; SALT_LEN]) -> Result<Vec<u8>, SealError> {
    if wrapped_bucket_key.len() != WRAPPED_KEY_LEN {
        return Err(SealError::WrappedKeyLength {
            len: wrapped_bucket_key.len(),
            expected: WRAPPED_KEY_LEN,
        });
    }
    let mut out = Vec::with_capacity(RECORD_LEN);
    out.extend_from_slice(wrapped_bucket_key);
    out.extend_from_slice(salt);
    Ok(out)
}

/// The wrapped bucket key and the salt in a bucket-keyed blob's `wrapped_key`.
pub fn split(record: &[u8]) -> Result<(&[u8], [u8; SALT_LEN]), SealError> {
    if record.len() != RECORD_LEN {
        return Err(SealError::WrappedKeyLength {
            len: record.len(),
            expected: RECORD_LEN,
        });
    }
    let (wrapped, salt) = record.split_at(WRAPPED_KEY_LEN);
    let salt: [u8; SALT_LEN] = salt.try_into().expect("split at a fixed length");
    Ok((wrapped, salt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::parse_context;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    fn binding<'a>(bucket: &'a str, key: &'a str, part_number: u32) -> Binding<'a> {
        Binding {
            bucket,
            key,
            part_number,
        }
    }

    #[test]
    fn the_bucket_binding_is_no_objects_binding() {
        let b = bucket_binding("photos");
        assert!(is_bucket_binding(&b));
        assert!(!is_bucket_binding(&binding("photos", "k", 1)));
        assert!(!is_bucket_binding(&binding("photos", "", 1)));
        assert!(!is_bucket_binding(&binding("photos", "k", 0)));
        assert_ne!(
            b.associated_data(),
            binding("photos", "k", 0).associated_data()
        );
    }

    #[test]
    fn the_bucket_context_is_the_buckets_arn_in_canonical_form() {
        let context = bucket_context("photos");
        assert_eq!(context, br#"{"aws:s3:arn":"arn:aws:s3:::photos"}"#);
        // The same bytes a client sending that context as a header would bind.
        let header = STANDARD.encode(&context);
        assert_eq!(parse_context(Some(&header)).expect("parses"), context);
    }

    #[test]
    fn derived_keys_are_deterministic_and_depend_on_every_input() {
        let bucket_key = SealKey::from_bytes([7; 32]);
        let salt = [1; SALT_LEN];
        let here = binding("b", "k", 1);
        let key = object_key(&bucket_key, &salt, &here, b"{}");
        assert_eq!(
            key.expose(),
            object_key(&bucket_key, &salt, &here, b"{}").expose()
        );
        assert_ne!(key.expose(), bucket_key.expose(), "never the bucket key");
        let others = [
            object_key(&SealKey::from_bytes([8; 32]), &salt, &here, b"{}"),
            object_key(&bucket_key, &[2; SALT_LEN], &here, b"{}"),
            object_key(&bucket_key, &salt, &binding("b", "k2", 1), b"{}"),
            object_key(&bucket_key, &salt, &binding("b", "k", 2), b"{}"),
            object_key(&bucket_key, &salt, &binding("c", "k", 1), b"{}"),
            object_key(&bucket_key, &salt, &here, b""),
            object_key(&bucket_key, &salt, &here, br#"{"a":"1"}"#),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(key.expose(), other.expose(), "input {i} changes the key");
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        // The binding and the context are length-prefixed: moving bytes from one to the other
        // does not give the same key.
        let bucket_key = SealKey::from_bytes([3; 32]);
        let salt = [4; SALT_LEN];
        let a = object_key(&bucket_key, &salt, &binding("b", "ab", 1), b"c");
        let b = object_key(&bucket_key, &salt, &binding("b", "a", 1), b"bc");
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn records_join_and_split_exactly() {
        let wrapped = vec![9u8; WRAPPED_KEY_LEN];
        let salt = [5u8; SALT_LEN];
        let record = join(&wrapped, &salt).expect("joins");
        assert_eq!(record.len(), RECORD_LEN);
        let (w, s) = split(&record).expect("splits");
        assert_eq!((w, s), (wrapped.as_slice(), salt));
        assert!(join(&wrapped[1..], &salt).is_err());
        for len in [
            0,
            WRAPPED_KEY_LEN,
            RECORD_LEN - 1,
            RECORD_LEN + 1,
            2 * WRAPPED_KEY_LEN,
        ] {
            assert!(split(&vec![0; len]).is_err(), "{len}");
        }
    }
}
