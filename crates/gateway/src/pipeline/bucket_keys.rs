//! S3 Bucket Keys in the gateway: the bucket keys it made or unwrapped recently, and the data
//! keys of bucket-keyed blobs derived from them (`tessera_core::sealing::bucket_key`).
//!
//! A new SSE-KMS blob with a bucket key asks the KMS for a bucket key of (bucket, KMS key) at
//! most once per [`BUCKET_KEY_LIFETIME`]; reads unwrap a bucket key through the KMS at most once
//! per lifetime and derive each blob's key here. What the KMS is not asked for is still
//! checked and recorded: every use, new blob or read, first checks that the KMS key may be used
//! now (a linearizable read of its state, so disabling a key refuses its objects at once, as
//! without bucket keys), and every use is logged on the `tessera::audit` target as the KMS logs
//! its own.
//!
//! Invariant: a bucket key is held in the clear only in this process's memory, for at most its
//! lifetime, filed under everything it was made or unwrapped for; it is never used without the
//! KMS key's state checked for that use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tessera_client::meta::{DataKey, WrappingKey};
use tessera_core::kms;
use tessera_core::sealing::aead::SealKey;
use tessera_core::sealing::bucket_key::{
    SALT_LEN, bucket_binding, bucket_context, join, object_key, split,
};
use tessera_core::sealing::segments::Binding;
use tessera_core::sealing::{Sealing, SealingScheme};

use super::sealing::{KmsTarget, SealError};
use super::sse::{DataKeys, KeyCache};

/// How long a bucket key is used for new blobs, and an unwrapped one kept for reads.
pub const BUCKET_KEY_LIFETIME: Duration = Duration::from_secs(300);

/// Bucket keys kept at most (made and unwrapped, each).
const CAPACITY: usize = 1024;

/// The layer a bucket key serves (bucket keys are single-layer: S3 has none for DSSE-KMS).
const LAYER: u8 = 1;

/// The audit name of a blob's data key derived for a new blob.
const DERIVE_NEW: &str = "BucketKeyGenerateDataKey";
/// The audit name of a blob's data key derived for a read.
const DERIVE_READ: &str = "BucketKeyDecryptDataKey";

/// A bucket key made for new blobs.
#[derive(Debug)]
struct Made {
    key: SealKey,
    wrapped: Vec<u8>,
    kek_id: String,
    at: Instant,
}

/// The bucket keys of one gateway.
#[derive(Debug)]
pub struct BucketKeys {
    /// By (bucket, KMS key id).
    made: Mutex<HashMap<(String, String), Made>>,
    /// Unwrapped bucket keys, by KEK id, wrapped key and bucket.
    opened: KeyCache,
    lifetime: Duration,
}

impl Default for BucketKeys {
    fn default() -> Self {
        BucketKeys::new(BUCKET_KEY_LIFETIME)
    }
}

/// Records one use (or refused use) of a KMS key through a bucket key.
fn audit(kms_key: &str, op: &'static str, binding: &Binding<'_>, outcome: &str) {
    tracing::info!(
        target: "tessera::audit",
        kms_key = %kms_key,
        op,
        bucket = binding.bucket,
        key = binding.key,
        part = binding.part_number,
        bucket_key = true,
        outcome,
        "KMS key use"
    );
}

fn outcome(e: &SealError) -> String {
    match e {
        SealError::KmsRefused { code, .. } => code.clone(),
        other => other.code().to_owned(),
    }
}

impl BucketKeys {
    /// Bucket keys used for `lifetime` each.
    pub fn new(lifetime: Duration) -> BucketKeys {
        BucketKeys {
            made: Mutex::new(HashMap::new()),
            opened: KeyCache::new(CAPACITY, lifetime),
            lifetime,
        }
    }

    fn made(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Made>> {
        self.made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh bucket key made for `bucket` under `key_id`: (key, wrapped, KEK id).
    fn fresh(&self, bucket: &str, key_id: &str) -> Option<(SealKey, Vec<u8>, String)> {
        let made = self.made();
        let m = made.get(&(bucket.to_owned(), key_id.to_owned()))?;
        (m.at.elapsed() < self.lifetime)
            .then(|| (m.key.clone(), m.wrapped.clone(), m.kek_id.clone()))
    }

    fn keep(&self, bucket: &str, key_id: &str, made: Made) {
        let mut all = self.made();
        if all.len() >= CAPACITY {
            let lifetime = self.lifetime;
            all.retain(|_, m| m.at.elapsed() < lifetime);
            if all.len() >= CAPACITY {
                all.clear();
            }
        }
        all.insert((bucket.to_owned(), key_id.to_owned()), made);
    }

    /// The data key and sealing of a new SSE-KMS blob of `binding` sealed with a bucket key of
    /// `kms`'s key: the key's state checked first, the bucket key made if none is fresh.
    pub async fn seal_new(
        &self,
        keys: &dyn DataKeys,
        kms: &KmsTarget,
        binding: Binding<'_>,
        segment_size: u32,
    ) -> Result<(SealKey, Sealing), SealError> {
        let wanted = if kms.key.is_empty() {
            kms::DEFAULT_ALIAS
        } else {
            kms.key.as_str()
        };
        let key_id = match keys
            .kms_key_usable(wanted, wanted == kms::DEFAULT_ALIAS)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                audit(wanted, DERIVE_NEW, &binding, &outcome(&e));
                return Err(e);
            }
        };
        let bucket = binding.bucket;
        let (bucket_key, wrapped, kek_id) = match self.fresh(bucket, &key_id) {
            Some(fresh) => fresh,
            None => {
                let context = bucket_context(bucket);
                let DataKey {
                    key,
                    wrapped,
                    kek_id,
                    ..
                } = keys
                    .generate(
                        WrappingKey::Kms(&key_id),
                        bucket_binding(bucket),
                        LAYER,
                        &context,
                    )
                    .await?;
                self.opened.put(
                    KeyCache::entry_key(&kek_id, &wrapped, &bucket_binding(bucket), LAYER),
                    key.clone(),
                );
                self.keep(
                    bucket,
                    &key_id,
                    Made {
                        key: key.clone(),
                        wrapped: wrapped.clone(),
                        kek_id: kek_id.clone(),
                        at: Instant::now(),
                    },
                );
                (key, wrapped, kek_id)
            }
        };
        let salt: [u8; SALT_LEN] = rand::random();
        let data_key = object_key(&bucket_key, &salt, &binding, &kms.context);
        let sealing = Sealing {
            scheme: SealingScheme::SseKmsBucketKey,
            segment_size,
            wrapped_key: join(&wrapped, &salt)?,
            key_id: kek_id,
            parameters: kms.context.clone(),
        };
        audit(&key_id, DERIVE_NEW, &binding, "ok");
        Ok((data_key, sealing))
    }

    /// The data key of a stored bucket-keyed blob of `binding`: the KMS key's state checked
    /// first, the bucket key unwrapped through the KMS unless it was recently.
    pub async fn open(
        &self,
        keys: &dyn DataKeys,
        sealing: &Sealing,
        binding: Binding<'_>,
    ) -> Result<SealKey, SealError> {
        let (wrapped, salt) = split(&sealing.wrapped_key)?;
        let key_id = sealing
            .key_id
            .split_once('/')
            .and_then(|(name, _)| kms::key_id_of_kek(name))
            .ok_or_else(|| SealError::Corrupt {
                detail: format!(
                    "a bucket-keyed blob names KEK {:?}, not a KMS key's",
                    sealing.key_id
                ),
            })?;
        if let Err(e) = keys.kms_key_usable(key_id, false).await {
            audit(key_id, DERIVE_READ, &binding, &outcome(&e));
            return Err(e);
        }
        let at_bucket = bucket_binding(binding.bucket);
        let entry = KeyCache::entry_key(&sealing.key_id, wrapped, &at_bucket, LAYER);
        let bucket_key = match self.opened.get(&entry) {
            Some(key) => key,
            None => {
                let context = bucket_context(binding.bucket);
                let key = keys
                    .decrypt(&sealing.key_id, wrapped, at_bucket, LAYER, &context)
                    .await?;
                self.opened.put(entry, key.clone());
                key
            }
        };
        audit(key_id, DERIVE_READ, &binding, "ok");
        Ok(object_key(
            &bucket_key,
            &salt,
            &binding,
            &sealing.parameters,
        ))
    }
}
