//! The leader's re-wrap pass: after a key-encryption key rotation, every data key still
//! wrapped by an older version of the SSE-S3 KEK is unwrapped and wrapped again by the newest,
//! and the records are updated through Raft (`RewrapKeys`), page by page, without reading or
//! rewriting any object data. The pass runs on the leader when a rotation wakes it and every
//! `PERIOD` (so a pass cut short by a leader change is finished by the next leader).
//!
//! Invariant: a re-wrap wraps the very data key it unwrapped, for the same binding (bucket,
//! key, part, layer), so every object reads exactly as before; the command replaces a wrapped
//! key only where it is still the one read here.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::sealing::aead::{Aes256GcmAead, SealKey};
use tessera_core::sealing::kek::{KekId, SSE_S3_KEK};
use tessera_core::sealing::key_wrap::{WrapContext, unwrap_key, wrap_key};
use tessera_core::sealing::segments::Binding;
use tessera_proto::meta::v1 as pb;
use tessera_runtime::Shutdown;
use tracing::{info, warn};

use crate::error::StoreError;
use crate::key_service::KeyService;
use crate::keys;
use crate::kv::{KvSource, decode};
use crate::records;
use crate::store::{MetaStore, blocking};
use crate::types::MetaRaft;

/// Records read per page (one `RewrapKeys` command at most per page).
const PAGE: usize = 256;
/// How often the leader looks for keys left behind, without a rotation waking it.
const PERIOD: Duration = Duration::from_secs(600);
/// How long one page's command may take to commit.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The layer of SSE-S3 data keys.
const LAYER: u8 = 1;

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RewrapError {
    /// The store could not be read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A KEK is missing or does not unwrap.
    #[error("keys: {0}")]
    Keys(String),
    /// The page's command did not commit (leadership lost, no quorum, timeout).
    #[error("raft: {0}")]
    Raft(String),
}

/// The re-wrap of one blob's data key, if it is wrapped by another version than `newest`.
fn rewrap_one(
    keys: &KeyService,
    newest: &(KekId, SealKey),
    record_key: &[u8],
    binding: Binding<'_>,
    sealing: &pb::Sealing,
) -> Result<Option<pb::KeyRewrap>, RewrapError> {
    let newest_id = newest.0.to_string();
    if sealing.scheme != pb::SealingScheme::SealingSseS3 as i32 || sealing.key_id == newest_id {
        return Ok(None);
    }
    let old: KekId = sealing
        .key_id
        .parse()
        .map_err(|e| RewrapError::Keys(format!("{e}")))?;
    if old.name != newest.0.name {
        return Ok(None);
    }
    let old_kek = keys
        .version(&old)
        .map_err(|s| RewrapError::Keys(s.message().to_owned()))?
        .ok_or_else(|| RewrapError::Keys(format!("no key-encryption key {old}")))?;
    let old_id = old.to_string();
    let data_key = unwrap_key(
        &Aes256GcmAead::new(&old_kek),
        &WrapContext {
            kek_id: &old_id,
            layer: LAYER,
            binding,
            context: &[],
        },
        &sealing.wrapped_key,
    )
    .map_err(|e| RewrapError::Keys(format!("{e}")))?;
    let new_wrapped = wrap_key(
        &Aes256GcmAead::new(&newest.1),
        rand::random(),
        &WrapContext {
            kek_id: &newest_id,
            layer: LAYER,
            binding,
            context: &[],
        },
        &data_key,
    );
    Ok(Some(pb::KeyRewrap {
        record_key: record_key.to_vec(),
        part_number: binding.part_number,
        old_wrapped_key: sealing.wrapped_key.clone(),
        new_wrapped_key: new_wrapped,
        new_kek_id: newest_id,
    }))
}

/// The re-wraps of up to `PAGE` records under `prefix` from `from`, and where the next page
/// starts (`None`: the prefix is done).
fn collect_page(
    store: &MetaStore,
    keys: &KeyService,
    newest: &(KekId, SealKey),
    prefix: &[u8],
    from: &[u8],
) -> Result<(Vec<pb::KeyRewrap>, Option<Vec<u8>>), RewrapError> {
    let view = store.view()?;
    let mut cursor = view.cursor(prefix);
    cursor.seek(from);
    let mut out = Vec::new();
    let mut last = None;
    for _ in 0..PAGE {
        let Some((key, value)) = cursor.next_entry()? else {
            return Ok((out, None));
        };
        if prefix == keys::OBJECT_PREFIX {
            let version: pb::ObjectVersion = decode(&value, "object version")?;
            for part in &version.parts {
                let Some(sealing) = part.blob.as_ref().and_then(|b| b.sealing.as_ref()) else {
                    continue;
                };
                let binding = Binding {
                    bucket: &version.bucket,
                    key: &version.key,
                    part_number: part.part_number,
                };
                out.extend(rewrap_one(keys, newest, &key, binding, sealing)?);
            }
        } else {
            let part: pb::UploadedPart = decode(&value, "uploaded part")?;
            let Some(sealing) = part.blob.as_ref().and_then(|b| b.sealing.as_ref()) else {
                continue;
            };
            if let Some((_, upload)) = records::upload_by_id(view.as_ref(), &part.upload_id)? {
                let binding = Binding {
                    bucket: upload.bucket.as_str(),
                    key: upload.key.as_str(),
                    part_number: part.part_number,
                };
                out.extend(rewrap_one(keys, newest, &key, binding, sealing)?);
            }
        }
        last = Some(key);
    }
    Ok((out, last.map(|k| keys::successor(&k))))
}

/// The newest SSE-S3 KEK version, if one was made.
async fn newest(keys: &Arc<KeyService>) -> Result<Option<(KekId, SealKey)>, RewrapError> {
    let k = keys.clone();
    blocking(move || Ok(k.newest(SSE_S3_KEK)))
        .await?
        .map_err(|s| RewrapError::Keys(s.message().to_owned()))
}

/// One pass over every version and uploaded part, moving every key to `newest`; returns how
/// many keys it re-wrapped.
pub(crate) async fn pass(
    raft: &MetaRaft,
    store: &MetaStore,
    keys: &Arc<KeyService>,
    newest: (KekId, SealKey),
) -> Result<usize, RewrapError> {
    let newest = Arc::new(newest);
    let mut rewrapped = 0;
    for prefix in [keys::OBJECT_PREFIX, keys::PART_PREFIX] {
        let mut from = prefix.to_vec();
        loop {
            let (s, k, n) = (store.clone(), keys.clone(), newest.clone());
            let at = from.clone();
            let (rewraps, next) = blocking(move || {
                collect_page(&s, &k, &n, prefix, &at).map_err(|e| match e {
                    RewrapError::Store(e) => e,
                    other => StoreError::Task(other.to_string()),
                })
            })
            .await?;
            if !rewraps.is_empty() {
                let count = rewraps.len();
                let cmd = pb::Command {
                    cmd: Some(pb::command::Cmd::RewrapKeys(pb::RewrapKeys { rewraps })),
                    session: None,
                    leader_time_ms: tessera_runtime::clock::now_ms(),
                };
                match tokio::time::timeout(WRITE_TIMEOUT, raft.client_write(cmd)).await {
                    Ok(Ok(_)) => rewrapped += count,
                    Ok(Err(e)) => return Err(RewrapError::Raft(e.to_string())),
                    Err(_) => return Err(RewrapError::Raft("not committed in time".into())),
                }
            }
            match next {
                Some(next) => from = next,
                None => break,
            }
        }
    }
    Ok(rewrapped)
}

/// Runs passes on this node whenever it leads: when a rotation wakes it, and every `PERIOD`.
pub(crate) async fn run(
    node_id: u64,
    raft: MetaRaft,
    store: MetaStore,
    keys: Arc<KeyService>,
    shutdown: Shutdown,
) {
    // The newest version a whole pass (on this node, while leading) found nothing to move
    // to: periodic passes skip until the newest version changes. A rotation always runs one.
    let mut clean_for: Option<KekId> = None;
    loop {
        let rotated = tokio::select! {
            _ = keys.rotated.notified() => true,
            _ = tokio::time::sleep(PERIOD) => false,
            _ = shutdown.wait() => return,
        };
        if raft.metrics().borrow().current_leader != Some(node_id) {
            clean_for = None;
            continue;
        }
        let newest = match newest(&keys).await {
            // Never rotated: every key is wrapped by version 1.
            Ok(Some(n)) if n.0.version > 1 => n,
            Ok(_) => continue,
            Err(e) => {
                warn!(error = %e, "re-wrap pass could not read the newest key");
                continue;
            }
        };
        if !rotated && clean_for.as_ref() == Some(&newest.0) {
            continue;
        }
        let id = newest.0.clone();
        match pass(&raft, &store, &keys, newest).await {
            Ok(0) => clean_for = Some(id),
            Ok(n) => info!(
                rewrapped = n,
                kek = %id,
                "data keys re-wrapped by the newest KEK version"
            ),
            Err(e) => warn!(error = %e, "re-wrap pass stopped; the next pass resumes"),
        }
    }
}
