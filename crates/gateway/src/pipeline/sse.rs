//! SSE-S3 and SSE-C: every new blob is sealed with AES-256-GCM segments (see
//! `tessera_core::sealing::segments`) under a fresh data key, and only the wrapped key is stored
//! with the blob. For SSE-S3 the meta key service makes the key and wraps it under the cluster's
//! KEK; for SSE-C (the target carries the customer's key) the gateway draws the key and wraps it
//! under the customer's key, storing a key check of that key (never the key). Reads unwrap the
//! key for the blob's own target (through the key service, or with the customer's key after
//! its check passed), then decrypt only the segments the range touches. Blobs stored before
//! encryption existed (identity sealing) are still read.
//!
//! Invariant: no plaintext leaves the gateway sealed by anything weaker than the data key;
//! the data key and a customer's key exist in the clear only in this process's memory (zeroed
//! on drop).

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use tessera_client::MetaClient;
use tessera_client::meta::{DataKey, KMS_REFUSAL_PREFIX, MetaClientError, WrappingKey};
use tessera_core::kms;
use tessera_core::sealing::aead::{Aes256GcmAead, SealKey, SegmentAead};
use tessera_core::sealing::customer_key::{CUSTOMER_KEK_ID, CustomerKey, CustomerKeyError};
use tessera_core::sealing::kek::SSE_S3_KEK;
use tessera_core::sealing::key_wrap::{WRAPPED_KEY_LEN, WrapContext, unwrap_key, wrap_key};
use tessera_core::sealing::segments::{
    Binding, DEFAULT_SEGMENT_SIZE, SegmentGeometry, SegmentOpener, SegmentSealer,
};
use tessera_core::sealing::{Sealing, SealingScheme};
use tessera_proto::meta::v1 as pb;

use super::bucket_keys::BucketKeys;
use super::sealing::{
    KmsTarget, Opened, SealError, SealTarget, Sealer, Seals, Unsealer, open_identity,
};

/// The layer a single-layer scheme's data key serves.
const LAYER: u8 = 1;

/// Where data keys come from: the meta key service, or (in tests) a key of the test's own.
pub trait DataKeys: Send + Sync + fmt::Debug {
    /// A fresh data key for `binding` and encryption `context` (empty for none), wrapped by
    /// `wrapping` (a cluster KEK's newest version, or a KMS key).
    fn generate<'a>(
        &'a self,
        wrapping: WrappingKey<'a>,
        binding: Binding<'a>,
        layer: u8,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<DataKey, SealError>>;

    /// The data key in `wrapped`, wrapped by KEK `kek_id` for `binding` and `context`.
    fn decrypt<'a>(
        &'a self,
        kek_id: &'a str,
        wrapped: &'a [u8],
        binding: Binding<'a>,
        layer: u8,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<SealKey, SealError>>;

    /// The id of the KMS key `key` names (id, alias or ARN; the default key made first if
    /// `create_default`), if the KMS allows its use now (enabled, not pending deletion), read
    /// from the KMS's current state; the KMS's refusal otherwise.
    fn kms_key_usable<'a>(
        &'a self,
        key: &'a str,
        create_default: bool,
    ) -> BoxFuture<'a, Result<String, SealError>>;
}

/// The id of the KMS key `wanted` names (the default key made first if `create_default`), if
/// it may be used now: a linearizable read of its record through `meta`, refused with the KMS's
/// error code (`KMS.DisabledException`, `KMS.KMSInvalidStateException`, `KMS.NotFoundException`)
/// otherwise.
pub async fn usable_kms_key(
    meta: &MetaClient,
    wanted: &str,
    create_default: bool,
) -> Result<String, SealError> {
    let answer = meta
        .describe_kms_key(wanted, create_default)
        .await
        .map_err(key_error)?;
    let record = answer.key.unwrap_or_default();
    let state = match pb::KmsKeyState::try_from(record.state) {
        Ok(pb::KmsKeyState::KmsKeyEnabled) => kms::KeyState::Enabled,
        Ok(pb::KmsKeyState::KmsKeyDisabled) => kms::KeyState::Disabled,
        _ => kms::KeyState::PendingDeletion,
    };
    let status = kms::KeyStatus {
        state,
        deletion_ms: record.deletion_ms,
    };
    status
        .check_usable(&record.key_id, answer.now_ms)
        .map_err(|e| {
            let code = match e {
                kms::KmsError::Disabled(_) => "KMS.DisabledException",
                kms::KmsError::PendingDeletion(_) => "KMS.KMSInvalidStateException",
                _ => "KMS.NotFoundException",
            };
            SealError::KmsRefused {
                code: code.to_owned(),
                detail: e.to_string(),
            }
        })?;
    Ok(record.key_id)
}

/// Data keys unwrapped recently, so that reads of the same blob within `ttl` skip the key
/// service: bounded to `capacity` entries, each keyed by everything the unwrap was bound to
/// (KEK id, wrapped key, binding, layer), so a cached key is never handed out for another
/// object. Keys are zeroed when evicted.
#[derive(Debug)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<Vec<u8>, (SealKey, Instant)>>,
    capacity: usize,
    ttl: Duration,
}

/// Unwrapped data keys a gateway keeps.
const KEY_CACHE_ENTRIES: usize = 4096;
/// How long one is kept.
const KEY_CACHE_TTL: Duration = Duration::from_secs(60);

impl KeyCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> KeyCache {
        KeyCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
            ttl,
        }
    }

    /// What a cached key is filed under.
    pub(crate) fn entry_key(
        kek_id: &str,
        wrapped: &[u8],
        binding: &Binding<'_>,
        layer: u8,
    ) -> Vec<u8> {
        let aad = binding.associated_data();
        let mut key = Vec::with_capacity(kek_id.len() + wrapped.len() + aad.len() + 6);
        key.extend_from_slice(&(kek_id.len() as u32).to_be_bytes());
        key.extend_from_slice(kek_id.as_bytes());
        key.extend_from_slice(&(wrapped.len() as u32).to_be_bytes());
        key.extend_from_slice(wrapped);
        key.push(layer);
        key.extend_from_slice(&aad);
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, (SealKey, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<SealKey> {
        let entries = self.lock();
        let (sealed, at) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| sealed.clone())
    }

    pub(crate) fn put(&self, key: Vec<u8>, sealed: SealKey) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (sealed, Instant::now()));
    }
}

/// The meta key service, through the gateway's meta client, with recently unwrapped keys
/// kept for a minute.
#[derive(Clone, Debug)]
pub struct MetaKeys {
    meta: MetaClient,
    cache: Arc<KeyCache>,
}

impl MetaKeys {
    /// Keys from the meta group `meta` talks to.
    pub fn new(meta: MetaClient) -> MetaKeys {
        MetaKeys {
            meta,
            cache: Arc::new(KeyCache::new(KEY_CACHE_ENTRIES, KEY_CACHE_TTL)),
        }
    }
}

/// A key service failure as a sealing error: unreachable, a KMS refusal (with its code), or
/// another refusal.
pub fn key_error(e: MetaClientError) -> SealError {
    match e {
        MetaClientError::Unavailable { .. } => SealError::KeysUnavailable {
            detail: e.to_string(),
        },
        MetaClientError::Rejected { ref message, .. }
            if message.starts_with(KMS_REFUSAL_PREFIX) =>
        {
            let (code, detail) = message.split_once(':').unwrap_or((message, ""));
            SealError::KmsRefused {
                code: code.trim().to_owned(),
                detail: detail.trim().to_owned(),
            }
        }
        other => SealError::KeyRefused {
            detail: other.to_string(),
        },
    }
}

impl DataKeys for MetaKeys {
    fn generate<'a>(
        &'a self,
        wrapping: WrappingKey<'a>,
        binding: Binding<'a>,
        layer: u8,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<DataKey, SealError>> {
        Box::pin(async move {
            self.meta
                .generate_data_key(wrapping, &binding, layer, context)
                .await
                .map_err(key_error)
        })
    }

    fn decrypt<'a>(
        &'a self,
        kek_id: &'a str,
        wrapped: &'a [u8],
        binding: Binding<'a>,
        layer: u8,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<SealKey, SealError>> {
        Box::pin(async move {
            // A KMS key's data keys are never cached: disabling the key makes its objects
            // unreadable at once, and every use reaches the KMS's audit record.
            let is_kms = kek_id
                .split_once('/')
                .is_some_and(|(name, _)| kms::key_id_of_kek(name).is_some());
            if is_kms {
                return self
                    .meta
                    .decrypt_data_key(kek_id, wrapped, &binding, layer, context)
                    .await
                    .map_err(key_error);
            }
            let entry = KeyCache::entry_key(kek_id, wrapped, &binding, layer);
            if let Some(key) = self.cache.get(&entry) {
                return Ok(key);
            }
            let key = self
                .meta
                .decrypt_data_key(kek_id, wrapped, &binding, layer, context)
                .await
                .map_err(key_error)?;
            self.cache.put(entry, key.clone());
            Ok(key)
        })
    }

    fn kms_key_usable<'a>(
        &'a self,
        key: &'a str,
        create_default: bool,
    ) -> BoxFuture<'a, Result<String, SealError>> {
        Box::pin(usable_kms_key(&self.meta, key, create_default))
    }
}

/// Seals every new blob with SSE-S3, or SSE-C when its target carries a customer key, or
/// SSE-KMS or DSSE-KMS (with or without an S3 Bucket Key) when it carries a KMS key.
#[derive(Clone, Debug)]
pub struct SseSeals {
    keys: Arc<dyn DataKeys>,
    bucket_keys: Arc<BucketKeys>,
    geometry: SegmentGeometry,
}

impl SseSeals {
    /// SSE-S3 with data keys from `keys` (SSE-C with keys of the gateway's own), in segments of
    /// the default size.
    pub fn new(keys: Arc<dyn DataKeys>) -> SseSeals {
        SseSeals::with_bucket_keys(keys, BucketKeys::default())
    }

    /// The same, with `bucket_keys` kept for S3 Bucket Keys.
    pub fn with_bucket_keys(keys: Arc<dyn DataKeys>, bucket_keys: BucketKeys) -> SseSeals {
        SseSeals {
            keys,
            bucket_keys: Arc::new(bucket_keys),
            geometry: SegmentGeometry::new(DEFAULT_SEGMENT_SIZE, 1)
                .expect("the default segment size is valid"),
        }
    }
}

fn cipher(key: &SealKey) -> Vec<Box<dyn SegmentAead>> {
    vec![Box::new(Aes256GcmAead::new(key))]
}

/// The two layers of DSSE-KMS, inner first.
fn ciphers(keys: &[SealKey]) -> Vec<Box<dyn SegmentAead>> {
    keys.iter()
        .map(|key| Box::new(Aes256GcmAead::new(key)) as Box<dyn SegmentAead>)
        .collect()
}

/// The data keys of a new SSE-KMS (one layer) or DSSE-KMS (two) blob and its sealing.
async fn kms_data_keys(
    keys: &dyn DataKeys,
    kms: &KmsTarget,
    binding: Binding<'_>,
    segment_size: u32,
) -> Result<(Vec<SealKey>, Sealing), SealError> {
    let wanted = if kms.key.is_empty() {
        kms::DEFAULT_ALIAS
    } else {
        kms.key.as_str()
    };
    let first = keys
        .generate(WrappingKey::Kms(wanted), binding, 1, &kms.context)
        .await?;
    let mut wrapped = first.wrapped;
    let mut data_keys = vec![first.key];
    if kms.dsse {
        // The second layer's key from the key the first resolved to, never another one.
        let key_id = first
            .kms_key_id
            .clone()
            .unwrap_or_else(|| wanted.to_owned());
        let second = keys
            .generate(WrappingKey::Kms(&key_id), binding, 2, &kms.context)
            .await?;
        if second.kek_id != first.kek_id {
            return Err(SealError::KeysUnavailable {
                detail: "the KMS key changed between the two layers' data keys; retry".to_owned(),
            });
        }
        wrapped.extend_from_slice(&second.wrapped);
        data_keys.push(second.key);
    }
    let sealing = Sealing {
        scheme: if kms.dsse {
            SealingScheme::DsseKms
        } else {
            SealingScheme::SseKms
        },
        segment_size,
        wrapped_key: wrapped,
        key_id: first.kek_id,
        parameters: kms.context.clone(),
    };
    Ok((data_keys, sealing))
}

/// The data keys of a stored SSE-KMS or DSSE-KMS blob, inner layer first.
async fn open_kms_data_keys(
    keys: &dyn DataKeys,
    sealing: &Sealing,
    binding: Binding<'_>,
) -> Result<Vec<SealKey>, SealError> {
    let layers: u8 = if sealing.scheme == SealingScheme::DsseKms {
        2
    } else {
        1
    };
    if sealing.wrapped_key.len() != WRAPPED_KEY_LEN * usize::from(layers) {
        return Err(SealError::Corrupt {
            detail: format!(
                "a {} blob's wrapped keys are {} bytes",
                sealing.scheme.as_str(),
                sealing.wrapped_key.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(usize::from(layers));
    for (layer, wrapped) in (1u8..).zip(sealing.wrapped_key.chunks(WRAPPED_KEY_LEN)) {
        out.push(
            keys.decrypt(
                &sealing.key_id,
                wrapped,
                binding,
                layer,
                &sealing.parameters,
            )
            .await?,
        );
    }
    Ok(out)
}

/// A blob's sealer: the framing plus the record of how to reverse it.
struct SegmentSealing {
    sealer: Option<SegmentSealer>,
    geometry: SegmentGeometry,
    sealing: Sealing,
    out: Vec<u8>,
}

impl Sealer for SegmentSealing {
    fn sealing(&self) -> Sealing {
        self.sealing.clone()
    }

    fn stored_len(&self, plain_len: u64) -> u64 {
        self.geometry.stored_len(plain_len)
    }

    fn seal(&mut self, plain: Bytes) -> Result<Bytes, SealError> {
        let sealer = self.sealer.as_mut().ok_or_else(|| SealError::Corrupt {
            detail: "sealed after finish".to_owned(),
        })?;
        sealer.push(&plain, &mut self.out);
        Ok(Bytes::from(std::mem::take(&mut self.out)))
    }

    fn finish(&mut self) -> Result<Bytes, SealError> {
        let sealer = self.sealer.take().ok_or_else(|| SealError::Corrupt {
            detail: "finished twice".to_owned(),
        })?;
        sealer.finish(&mut self.out);
        Ok(Bytes::from(std::mem::take(&mut self.out)))
    }
}

/// A read's unsealer: the framing's opener.
struct SegmentUnsealing {
    opener: Option<SegmentOpener>,
    out: Vec<u8>,
}

impl Unsealer for SegmentUnsealing {
    fn unseal(&mut self, stored: Bytes) -> Result<Bytes, SealError> {
        let opener = self.opener.as_mut().ok_or_else(|| SealError::Corrupt {
            detail: "unsealed after finish".to_owned(),
        })?;
        opener.push(&stored, &mut self.out)?;
        Ok(Bytes::from(std::mem::take(&mut self.out)))
    }

    fn finish(&mut self) -> Result<Bytes, SealError> {
        let opener = self.opener.take().ok_or_else(|| SealError::Corrupt {
            detail: "finished twice".to_owned(),
        })?;
        opener.finish()?;
        Ok(Bytes::new())
    }
}

/// The data key of a new SSE-C blob: random, wrapped under the customer's key for `binding`;
/// the sealing records the wrapped key and a key check of the customer's key.
fn customer_data_key(
    customer: &CustomerKey,
    binding: Binding<'_>,
    segment_size: u32,
) -> (SealKey, Sealing) {
    let key = SealKey::from_bytes(rand::random());
    let context = WrapContext {
        kek_id: CUSTOMER_KEK_ID,
        layer: LAYER,
        binding,
        context: &[],
    };
    let wrapped = wrap_key(
        &Aes256GcmAead::new(customer.key()),
        rand::random(),
        &context,
        &key,
    );
    let sealing = Sealing {
        scheme: SealingScheme::SseC,
        segment_size,
        wrapped_key: wrapped,
        key_id: CUSTOMER_KEK_ID.to_owned(),
        parameters: customer.key_check(rand::random()),
    };
    (key, sealing)
}

/// The data key of an SSE-C blob, unwrapped with the customer's key once its check passed.
pub(crate) fn open_customer_data_key(
    sealing: &Sealing,
    customer: Option<&CustomerKey>,
    binding: Binding<'_>,
) -> Result<SealKey, SealError> {
    let customer = customer.ok_or(SealError::CustomerKeyMissing)?;
    customer.verify(&sealing.parameters).map_err(|e| match e {
        CustomerKeyError::WrongKey => SealError::CustomerKeyMismatch,
        other => SealError::Corrupt {
            detail: other.to_string(),
        },
    })?;
    let context = WrapContext {
        kek_id: CUSTOMER_KEK_ID,
        layer: LAYER,
        binding,
        context: &[],
    };
    unwrap_key(
        &Aes256GcmAead::new(customer.key()),
        &context,
        &sealing.wrapped_key,
    )
    .map_err(|e| SealError::Corrupt {
        detail: format!("SSE-C data key: {e}"),
    })
}

impl Seals for SseSeals {
    fn sealer<'a>(
        &'a self,
        target: &'a SealTarget,
    ) -> BoxFuture<'a, Result<Box<dyn Sealer>, SealError>> {
        Box::pin(async move {
            let binding = target.binding();
            let segment_size = self.geometry.segment_size();
            if let Some(kms) = &target.kms {
                let (keys, sealing) = if kms.bucket_key && !kms.dsse {
                    let (key, sealing) = self
                        .bucket_keys
                        .seal_new(self.keys.as_ref(), kms, binding, segment_size)
                        .await?;
                    (vec![key], sealing)
                } else {
                    kms_data_keys(self.keys.as_ref(), kms, binding, segment_size).await?
                };
                let geometry = SegmentGeometry::new(segment_size, sealing.geometry_layers())?;
                let sealer = SegmentSealer::new(geometry, &binding, ciphers(&keys))?;
                return Ok(Box::new(SegmentSealing {
                    sealer: Some(sealer),
                    geometry,
                    sealing,
                    out: Vec::new(),
                }) as Box<dyn Sealer>);
            }
            let (key, sealing) = match &target.customer_key {
                Some(customer) => customer_data_key(customer, binding, segment_size),
                None => {
                    let DataKey {
                        key,
                        wrapped,
                        kek_id,
                        ..
                    } = self
                        .keys
                        .generate(WrappingKey::Kek(SSE_S3_KEK), binding, LAYER, &[])
                        .await?;
                    let sealing = Sealing {
                        scheme: SealingScheme::SseS3,
                        segment_size: self.geometry.segment_size(),
                        wrapped_key: wrapped,
                        key_id: kek_id,
                        parameters: Vec::new(),
                    };
                    (key, sealing)
                }
            };
            let sealer = SegmentSealer::new(self.geometry, &binding, cipher(&key))?;
            Ok(Box::new(SegmentSealing {
                sealer: Some(sealer),
                geometry: self.geometry,
                sealing,
                out: Vec::new(),
            }) as Box<dyn Sealer>)
        })
    }

    fn opener<'a>(
        &'a self,
        sealing: &'a Sealing,
        target: &'a SealTarget,
        plain: Range<u64>,
        plain_len: u64,
    ) -> BoxFuture<'a, Result<Opened, SealError>> {
        Box::pin(async move {
            let binding = target.binding();
            let keys = match sealing.scheme {
                SealingScheme::None => return open_identity(sealing, plain),
                SealingScheme::SseS3 => vec![
                    self.keys
                        .decrypt(&sealing.key_id, &sealing.wrapped_key, binding, LAYER, &[])
                        .await?,
                ],
                SealingScheme::SseC => vec![open_customer_data_key(
                    sealing,
                    target.customer_key.as_ref(),
                    binding,
                )?],
                SealingScheme::SseKms | SealingScheme::DsseKms => {
                    open_kms_data_keys(self.keys.as_ref(), sealing, binding).await?
                }
                SealingScheme::SseKmsBucketKey => vec![
                    self.bucket_keys
                        .open(self.keys.as_ref(), sealing, binding)
                        .await?,
                ],
            };
            let geometry = SegmentGeometry::new(sealing.segment_size, sealing.geometry_layers())?;
            let opener = SegmentOpener::new(geometry, &binding, ciphers(&keys), plain, plain_len)?;
            Ok(Opened {
                stored: opener.range().stored.clone(),
                // The opener yields exactly the range asked for.
                skip: 0,
                unsealer: Box::new(SegmentUnsealing {
                    opener: Some(opener),
                    out: Vec::new(),
                }),
            })
        })
    }
}

/// Data keys wrapped by a key-encryption key held in this process: the same wrapping the meta
/// key service does, for pipeline tests that run without meta.
/// The one KMS key [`LocalKeys`] has: every KMS key reference names it.
#[cfg(test)]
pub(crate) const LOCAL_KMS_KEY: &str = "00000000-0000-4000-8000-000000000001";

#[cfg(test)]
#[derive(Debug)]
pub(crate) struct LocalKeys {
    kek: SealKey,
    /// While set, the KMS key is refused with this code (as a disabled key is).
    pub(crate) refusal: Mutex<Option<&'static str>>,
    /// Calls made: (generate, decrypt, kms_key_usable).
    pub(crate) calls: Mutex<(usize, usize, usize)>,
}

#[cfg(test)]
impl LocalKeys {
    pub(crate) fn new() -> LocalKeys {
        LocalKeys {
            kek: SealKey::from_bytes(rand::random()),
            refusal: Mutex::new(None),
            calls: Mutex::new((0, 0, 0)),
        }
    }

    fn refused(&self) -> Result<(), SealError> {
        match *self.refusal.lock().expect("lock") {
            Some(code) => Err(SealError::KmsRefused {
                code: code.to_owned(),
                detail: "refused by the test".to_owned(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
impl DataKeys for LocalKeys {
    fn generate<'a>(
        &'a self,
        wrapping: WrappingKey<'a>,
        binding: Binding<'a>,
        layer: u8,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<DataKey, SealError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").0 += 1;
            let (kek_id, kms_key_id) = match wrapping {
                WrappingKey::Kek(name) => (format!("{name}/1"), None),
                WrappingKey::Kms(_) => {
                    self.refused()?;
                    let id = LOCAL_KMS_KEY.to_owned();
                    (format!("{}/1", kms::kek_name(&id)), Some(id))
                }
            };
            let key = SealKey::from_bytes(rand::random());
            let context = WrapContext {
                kek_id: &kek_id,
                layer,
                binding,
                context,
            };
            let wrapped = wrap_key(
                &Aes256GcmAead::new(&self.kek),
                rand::random(),
                &context,
                &key,
            );
            Ok(DataKey {
                key,
                wrapped,
                kek_id,
                kms_key_id,
            })
        })
    }

    fn decrypt<'a>(
        &'a self,
        kek_id: &'a str,
        wrapped: &'a [u8],
        binding: Binding<'a>,
        layer: u8,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<SealKey, SealError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").1 += 1;
            if kek_id.starts_with("kms-") {
                self.refused()?;
            }
            let context = WrapContext {
                kek_id,
                layer,
                binding,
                context,
            };
            unwrap_key(&Aes256GcmAead::new(&self.kek), &context, wrapped).map_err(|e| {
                SealError::KeyRefused {
                    detail: e.to_string(),
                }
            })
        })
    }

    fn kms_key_usable<'a>(
        &'a self,
        _key: &'a str,
        _create_default: bool,
    ) -> BoxFuture<'a, Result<String, SealError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").2 += 1;
            self.refused()?;
            Ok(LOCAL_KMS_KEY.to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::sealing::bucket_key;

    fn binding(key: &str) -> Binding<'_> {
        Binding {
            bucket: "b",
            key,
            part_number: 1,
        }
    }

    #[test]
    fn cached_keys_are_filed_under_everything_they_were_unwrapped_for() {
        let cache = KeyCache::new(8, Duration::from_secs(60));
        let here = KeyCache::entry_key("sse-s3/1", &[1; 61], &binding("k"), 1);
        cache.put(here.clone(), SealKey::from_bytes([9; 32]));
        assert_eq!(cache.get(&here).map(|k| *k.expose()), Some([9; 32]));
        for elsewhere in [
            KeyCache::entry_key("sse-s3/1", &[1; 61], &binding("other"), 1),
            KeyCache::entry_key("sse-s3/2", &[1; 61], &binding("k"), 1),
            KeyCache::entry_key("sse-s3/1", &[2; 61], &binding("k"), 1),
            KeyCache::entry_key("sse-s3/1", &[1; 61], &binding("k"), 2),
        ] {
            assert!(cache.get(&elsewhere).is_none());
        }
    }

    #[test]
    fn the_cache_stays_bounded_and_forgets_after_its_ttl() {
        let cache = KeyCache::new(4, Duration::from_secs(60));
        for i in 0..100u8 {
            cache.put(vec![i], SealKey::from_bytes([i; 32]));
            assert!(cache.lock().len() <= 4);
        }
        assert!(cache.get(&[99]).is_some(), "the newest entry is kept");
        let short = KeyCache::new(4, Duration::ZERO);
        short.put(vec![1], SealKey::from_bytes([1; 32]));
        assert!(short.get(&[1]).is_none(), "expired");
    }

    fn customer(byte: u8) -> CustomerKey {
        CustomerKey::from_key(SealKey::from_bytes([byte; 32]))
    }

    /// Seals `plain` for `target`; returns the sealing and the stored bytes.
    async fn seal_all(seals: &SseSeals, target: &SealTarget, plain: &[u8]) -> (Sealing, Vec<u8>) {
        let mut sealer = seals.sealer(target).await.expect("sealer");
        let mut stored = Vec::new();
        for piece in plain.chunks(7000) {
            stored.extend_from_slice(&sealer.seal(Bytes::copy_from_slice(piece)).expect("seal"));
        }
        stored.extend_from_slice(&sealer.finish().expect("finish"));
        assert_eq!(stored.len() as u64, sealer.stored_len(plain.len() as u64));
        (sealer.sealing(), stored)
    }

    /// Opens `range` of a sealed blob for `target`.
    async fn open_range(
        seals: &SseSeals,
        sealing: &Sealing,
        target: &SealTarget,
        stored: &[u8],
        range: Range<u64>,
        plain_len: u64,
    ) -> Result<Vec<u8>, SealError> {
        let opened = seals.opener(sealing, target, range, plain_len).await?;
        let bytes = &stored[opened.stored.start as usize..opened.stored.end as usize];
        let mut unsealer = opened.unsealer;
        let mut out = unsealer.unseal(Bytes::copy_from_slice(bytes))?.to_vec();
        out.extend_from_slice(&unsealer.finish()?);
        Ok(out[opened.skip as usize..].to_vec())
    }

    #[tokio::test]
    async fn sse_c_blobs_open_only_with_the_customers_key_and_store_no_key() {
        let seals = SseSeals::new(Arc::new(LocalKeys::new()));
        let plain: Vec<u8> = (0..200_000_u32).map(|i| (i % 251) as u8).collect();
        let target = SealTarget::new("b", "k", 1).with_customer_key(Some(customer(1)));
        let (sealing, stored) = seal_all(&seals, &target, &plain).await;
        assert_eq!(sealing.scheme, SealingScheme::SseC);
        assert_eq!(sealing.key_id, CUSTOMER_KEK_ID);
        for record in [&sealing.wrapped_key, &sealing.parameters, &stored] {
            assert!(
                !record.windows(32).any(|w| w == [1_u8; 32]),
                "the customer's key is stored nowhere"
            );
        }
        let len = plain.len() as u64;
        assert_eq!(
            open_range(&seals, &sealing, &target, &stored, 0..len, len)
                .await
                .expect("whole"),
            plain
        );
        assert_eq!(
            open_range(&seals, &sealing, &target, &stored, 65_000..140_001, len)
                .await
                .expect("range"),
            plain[65_000..140_001]
        );
        let wrong = SealTarget::new("b", "k", 1).with_customer_key(Some(customer(2)));
        assert_eq!(
            open_range(&seals, &sealing, &wrong, &stored, 0..len, len)
                .await
                .err(),
            Some(SealError::CustomerKeyMismatch)
        );
        let without = SealTarget::new("b", "k", 1);
        assert_eq!(
            open_range(&seals, &sealing, &without, &stored, 0..len, len)
                .await
                .err(),
            Some(SealError::CustomerKeyMissing)
        );
        // The same key for another object: the wrapped data key does not unwrap.
        let moved = SealTarget::new("b", "other", 1).with_customer_key(Some(customer(1)));
        assert!(matches!(
            open_range(&seals, &sealing, &moved, &stored, 0..len, len).await,
            Err(SealError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn two_sse_c_blobs_under_one_key_get_distinct_data_keys_and_checks() {
        let seals = SseSeals::new(Arc::new(LocalKeys::new()));
        let target = SealTarget::new("b", "k", 1).with_customer_key(Some(customer(3)));
        let (a, stored_a) = seal_all(&seals, &target, b"same bytes").await;
        let (b, stored_b) = seal_all(&seals, &target, b"same bytes").await;
        assert_ne!(a.wrapped_key, b.wrapped_key);
        assert_ne!(a.parameters, b.parameters);
        assert_ne!(stored_a, stored_b);
    }

    #[tokio::test]
    async fn without_a_customer_key_new_blobs_are_sse_s3() {
        let seals = SseSeals::new(Arc::new(LocalKeys::new()));
        let target = SealTarget::new("b", "k", 1);
        let (sealing, stored) = seal_all(&seals, &target, b"plain").await;
        assert_eq!(sealing.scheme, SealingScheme::SseS3);
        assert!(sealing.parameters.is_empty());
        assert_eq!(
            open_range(&seals, &sealing, &target, &stored, 0..5, 5)
                .await
                .expect("open"),
            b"plain"
        );
    }

    fn kms_target(dsse: bool, context: &[u8]) -> SealTarget {
        SealTarget::new("b", "k", 1).with_kms(Some(KmsTarget {
            key: "alias/backups".to_owned(),
            context: context.to_vec(),
            dsse,
            bucket_key: false,
        }))
    }

    #[tokio::test]
    async fn sse_kms_and_dsse_blobs_round_trip_in_ranges_under_their_kms_key() {
        let seals = SseSeals::new(Arc::new(LocalKeys::new()));
        let plain: Vec<u8> = (0..300_000_u32).map(|i| (i % 253) as u8).collect();
        let len = plain.len() as u64;
        for (dsse, scheme, tags) in [
            (false, SealingScheme::SseKms, 1_u64),
            (true, SealingScheme::DsseKms, 2),
        ] {
            let target = kms_target(dsse, br#"{"a":"1"}"#);
            let (sealing, stored) = seal_all(&seals, &target, &plain).await;
            assert_eq!(sealing.scheme, scheme);
            assert_eq!(
                sealing.wrapped_key.len(),
                WRAPPED_KEY_LEN * tags as usize,
                "one wrapped key per layer"
            );
            assert_eq!(sealing.parameters, br#"{"a":"1"}"#);
            let segments = len.div_ceil(u64::from(DEFAULT_SEGMENT_SIZE));
            assert_eq!(stored.len() as u64, len + segments * 16 * tags);
            assert_eq!(
                crate::s3::sse::kms_key_for(&sealing).as_deref(),
                Some(LOCAL_KMS_KEY)
            );
            // Reads need no KMS target: the sealing names the key, layers and context.
            let reader = SealTarget::new("b", "k", 1);
            for range in [0..len, 65_530..200_001, len - 1..len] {
                assert_eq!(
                    open_range(&seals, &sealing, &reader, &stored, range.clone(), len)
                        .await
                        .expect("opens"),
                    plain[range.start as usize..range.end as usize],
                    "{scheme:?} {range:?}"
                );
            }
            // Another context, or the layers' keys swapped, does not open.
            let mut other = sealing.clone();
            other.parameters = br#"{"a":"2"}"#.to_vec();
            assert!(
                open_range(&seals, &other, &reader, &stored, 0..len, len)
                    .await
                    .is_err()
            );
            if dsse {
                let mut swapped = sealing.clone();
                swapped.wrapped_key.rotate_left(WRAPPED_KEY_LEN);
                assert!(
                    open_range(&seals, &swapped, &reader, &stored, 0..len, len)
                        .await
                        .is_err(),
                    "layer keys are bound to their layer"
                );
            }
            let mut truncated = sealing.clone();
            truncated.wrapped_key.pop();
            assert!(matches!(
                open_range(&seals, &truncated, &reader, &stored, 0..len, len).await,
                Err(SealError::Corrupt { .. })
            ));
        }
    }

    fn bucket_key_target(key: &str, context: &[u8]) -> SealTarget {
        SealTarget::new("b", key, 1).with_kms(Some(KmsTarget {
            key: String::new(),
            context: context.to_vec(),
            dsse: false,
            bucket_key: true,
        }))
    }

    fn calls(keys: &LocalKeys) -> (usize, usize, usize) {
        *keys.calls.lock().expect("lock")
    }

    #[tokio::test]
    async fn a_bucket_key_serves_many_blobs_each_with_a_data_key_of_its_own() {
        let keys = Arc::new(LocalKeys::new());
        let seals = SseSeals::new(keys.clone());
        let plain: Vec<u8> = (0..150_000_u32).map(|i| (i % 249) as u8).collect();
        let len = plain.len() as u64;
        let mut blobs = Vec::new();
        for i in 0..5 {
            let target = bucket_key_target(&format!("k{i}"), br#"{"a":"1"}"#);
            let (sealing, stored) = seal_all(&seals, &target, &plain).await;
            assert_eq!(sealing.scheme, SealingScheme::SseKmsBucketKey);
            assert_eq!(sealing.wrapped_key.len(), bucket_key::RECORD_LEN);
            assert_eq!(sealing.parameters, br#"{"a":"1"}"#);
            assert_eq!(
                crate::s3::sse::kms_key_for(&sealing).as_deref(),
                Some(LOCAL_KMS_KEY)
            );
            blobs.push((target, sealing, stored));
        }
        // One bucket key from the KMS for all five; the key's state checked for each.
        assert_eq!(calls(&keys), (1, 0, 5));
        let first_bucket_key = &blobs[0].1.wrapped_key[..WRAPPED_KEY_LEN];
        for (_, sealing, stored) in &blobs[1..] {
            assert_eq!(&sealing.wrapped_key[..WRAPPED_KEY_LEN], first_bucket_key);
            assert_ne!(sealing.wrapped_key, blobs[0].1.wrapped_key, "salts differ");
            assert_ne!(stored, &blobs[0].2, "so do data keys and ciphertexts");
        }
        for (target, sealing, stored) in &blobs {
            for range in [0..len, 65_530..100_001, len - 1..len] {
                assert_eq!(
                    open_range(&seals, sealing, target, stored, range.clone(), len)
                        .await
                        .expect("opens"),
                    plain[range.start as usize..range.end as usize]
                );
            }
        }
        // Reads used the bucket key this gateway made: no unwrap, but a state check each.
        assert_eq!(calls(&keys), (1, 0, 20));

        // Another gateway unwraps the bucket key once, then derives.
        let other = SseSeals::new(keys.clone());
        for (target, sealing, stored) in &blobs {
            open_range(&other, sealing, target, stored, 0..len, len)
                .await
                .expect("opens elsewhere");
        }
        assert_eq!(calls(&keys), (1, 1, 25));

        // A blob moved to another object, or read with another context, does not open.
        let (target, sealing, stored) = &blobs[0];
        let moved = bucket_key_target("elsewhere", br#"{"a":"1"}"#);
        assert!(
            open_range(&seals, sealing, &moved, stored, 0..len, len)
                .await
                .is_err()
        );
        let mut recontexted = sealing.clone();
        recontexted.parameters = br#"{"a":"2"}"#.to_vec();
        assert!(
            open_range(&seals, &recontexted, target, stored, 0..len, len)
                .await
                .is_err()
        );
        let mut resalted = sealing.clone();
        let last = resalted.wrapped_key.len() - 1;
        resalted.wrapped_key[last] ^= 1;
        assert!(
            open_range(&seals, &resalted, target, stored, 0..len, len)
                .await
                .is_err()
        );
        let mut cut = sealing.clone();
        cut.wrapped_key.pop();
        assert!(matches!(
            open_range(&seals, &cut, target, stored, 0..len, len).await,
            Err(SealError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn a_refused_kms_key_refuses_bucket_keyed_blobs_at_once_despite_cached_keys() {
        let keys = Arc::new(LocalKeys::new());
        let seals = SseSeals::new(keys.clone());
        let target = bucket_key_target("k", b"");
        let (sealing, stored) = seal_all(&seals, &target, b"secret").await;
        *keys.refusal.lock().expect("lock") = Some("KMS.DisabledException");
        let refused = open_range(&seals, &sealing, &target, &stored, 0..6, 6).await;
        assert!(
            matches!(&refused, Err(SealError::KmsRefused { code, .. }) if code == "KMS.DisabledException"),
            "{refused:?}"
        );
        assert!(matches!(
            seals.sealer(&target).await.err(),
            Some(SealError::KmsRefused { .. })
        ));
        *keys.refusal.lock().expect("lock") = None;
        assert_eq!(
            open_range(&seals, &sealing, &target, &stored, 0..6, 6)
                .await
                .expect("re-enabled"),
            b"secret"
        );
    }

    #[tokio::test]
    async fn bucket_keys_are_made_again_after_their_lifetime_and_never_for_dsse() {
        let keys = Arc::new(LocalKeys::new());
        let seals = SseSeals::with_bucket_keys(keys.clone(), BucketKeys::new(Duration::ZERO));
        for i in 0..3 {
            seal_all(&seals, &bucket_key_target(&format!("k{i}"), b""), b"x").await;
        }
        assert_eq!(calls(&keys).0, 3, "each expired at once");
        let seals = SseSeals::new(keys.clone());
        let mut dsse = bucket_key_target("k", b"");
        if let Some(kms) = dsse.kms.as_mut() {
            kms.dsse = true;
        }
        let (sealing, _) = seal_all(&seals, &dsse, b"x").await;
        assert_eq!(sealing.scheme, SealingScheme::DsseKms);
    }

    #[test]
    fn kms_refusals_from_meta_keep_their_kms_code() {
        let refused = key_error(MetaClientError::Rejected {
            op: "decrypt_data_key",
            code: tonic::Code::FailedPrecondition,
            message: "KMS.DisabledException: KMS key x is disabled".to_owned(),
        });
        assert_eq!(
            refused,
            SealError::KmsRefused {
                code: "KMS.DisabledException".to_owned(),
                detail: "KMS key x is disabled".to_owned(),
            }
        );
        let other = key_error(MetaClientError::Rejected {
            op: "decrypt_data_key",
            code: tonic::Code::FailedPrecondition,
            message: "the wrapped data key does not unwrap".to_owned(),
        });
        assert!(matches!(other, SealError::KeyRefused { .. }));
    }
}
