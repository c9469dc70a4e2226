//! The key service a meta node runs for gateways: key-encryption keys (KEKs) live in the state
//! machine only wrapped under the root key this process was given at start; the service
//! unwraps them in memory to wrap fresh data keys and to unwrap stored ones. Neither the root
//! key nor a KEK ever leaves this process, and neither is logged.
//!
//! Invariants: a node whose root key does not verify against the check value it stored at its
//! first start (`DIR/root-key.check`) refuses to start ([`check_root_key`]) before its store is
//! even opened, so a wrong key changes no file; a data key is handed out only for the binding
//! (bucket, key, part, layer) it was wrapped for.

use std::path::Path;

use tessera_core::sealing::aead::{Aes256GcmAead, KEY_LEN, NONCE_LEN, SealKey};
use tessera_core::sealing::bucket_key;
use tessera_core::sealing::kek::{
    KekId, parse_root_key, root_check, unwrap_kek, verify_root_check, wrap_kek,
};
use tessera_core::sealing::key_wrap::{WrapContext, unwrap_key, wrap_key};
use tessera_core::sealing::segments::Binding;
use tessera_proto::meta::v1 as pb;
use tonic::Status;

use crate::error::{MetaNodeError, StoreError};
use crate::kv::KvSource;
use crate::records;
use crate::store::MetaStore;

/// The environment variable that may hold the root key (64 hex digits) when no file is named.
pub const ROOT_KEY_ENV: &str = "TESSERA_ROOT_KEY";

/// The root key from `file` if one is named, else from `TESSERA_ROOT_KEY`.
pub fn load_root_key(file: Option<&Path>) -> Result<SealKey, MetaNodeError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| {
                MetaNodeError::RootKey(format!(
                    "cannot read the root key file {}: {e}",
                    path.display()
                ))
            })?,
        None => match std::env::var(ROOT_KEY_ENV) {
            Ok(text) => zeroize::Zeroizing::new(text),
            Err(_) => {
                return Err(MetaNodeError::RootKey(format!(
                    "no root key: name a file with --root-key-file (root_key_file) or set {ROOT_KEY_ENV}"
                )));
            }
        },
    };
    let from = file.map_or_else(|| ROOT_KEY_ENV.to_owned(), |p| p.display().to_string());
    parse_root_key(&text).map_err(|e| MetaNodeError::RootKey(format!("{from}: {e}")))
}

/// The file in a meta folder holding the root key check value.
pub const ROOT_CHECK_FILE: &str = "root-key.check";

/// Checks `root` against the check value in `dir` (the node's meta folder) if there is one;
/// call before opening the store, so that a wrong key touches nothing.
pub fn check_root_key(dir: &Path, root: &SealKey) -> Result<(), MetaNodeError> {
    let path = dir.join(ROOT_CHECK_FILE);
    let check = match std::fs::read(&path) {
        Ok(check) => check,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(MetaNodeError::RootKey(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    verify_root_check(root, &check).map_err(|_| {
        MetaNodeError::RootKey(format!(
            "the root key given is not the one {} was first started with; start it with that \
             key (nothing was changed)",
            dir.display()
        ))
    })
}

/// Records the check value of `root` in `dir` unless one is there (a node's first start with a
/// root key); call with the store open, so the folder lock is held.
pub fn record_root_key(dir: &Path, root: &SealKey) -> Result<(), MetaNodeError> {
    let path = dir.join(ROOT_CHECK_FILE);
    if path.exists() {
        return Ok(());
    }
    let failed =
        |e: std::io::Error| MetaNodeError::RootKey(format!("cannot write {}: {e}", path.display()));
    let tmp = dir.join(format!("{ROOT_CHECK_FILE}.tmp"));
    std::fs::write(&tmp, root_check(root, rand::random())).map_err(failed)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(failed)?;
    std::fs::rename(&tmp, &path).map_err(failed)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

/// What a data key is bound to, as a request names it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyBinding<'r> {
    /// The object (and part) the key seals.
    pub(crate) binding: Binding<'r>,
    /// 1, or 2 for DSSE's second layer.
    pub(crate) layer: u8,
    /// SSE-KMS's encryption context (empty for none), bound into the wrapped key.
    pub(crate) context: &'r [u8],
}

/// The binding a request names: a bucket and an object key (any part), or a bucket alone
/// with part 0 (an S3 Bucket Key's, see `tessera_core::sealing::bucket_key`).
pub(crate) fn binding(b: Option<&pb::KeyBinding>) -> Result<KeyBinding<'_>, Status> {
    let b = b.ok_or_else(|| Status::invalid_argument("a key binding is required"))?;
    let binding = Binding {
        bucket: &b.bucket,
        key: &b.key,
        part_number: b.part_number,
    };
    if b.bucket.is_empty() || (b.key.is_empty() && !bucket_key::is_bucket_binding(&binding)) {
        return Err(Status::invalid_argument(
            "a key binding names a bucket and a key, or a bucket alone with part 0",
        ));
    }
    let layer = match b.layer {
        1 | 2 => b.layer as u8,
        other => {
            return Err(Status::invalid_argument(format!(
                "a key binding's layer is 1 or 2, not {other}"
            )));
        }
    };
    if b.encryption_context.len() > tessera_core::kms::MAX_CONTEXT_LEN {
        return Err(Status::invalid_argument(format!(
            "an encryption context is at most {} bytes",
            tessera_core::kms::MAX_CONTEXT_LEN
        )));
    }
    Ok(KeyBinding {
        binding,
        layer,
        context: &b.encryption_context,
    })
}

/// How long the newest KEK version found is served from memory before the store is read
/// again (a rotation proposed by another node reaches this one within this; one made here
/// is seen at once).
const NEWEST_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Wraps and unwraps data keys under the KEKs in one node's store.
pub(crate) struct KeyService {
    root: SealKey,
    store: MetaStore,
    /// Woken when a KEK version is added here, so the re-wrap pass starts.
    pub(crate) rotated: tokio::sync::Notify,
    /// KEK versions unwrapped so far (a version never changes once stored).
    versions: std::sync::Mutex<std::collections::HashMap<KekId, SealKey>>,
    /// The newest version of each name, and when it was read.
    newest:
        std::sync::Mutex<std::collections::HashMap<String, (KekId, SealKey, std::time::Instant)>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn store_failure(e: StoreError) -> Status {
    tracing::error!(error = %e, code = e.code(), "key service could not read the store");
    Status::internal(format!("meta store: {e}"))
}

impl KeyService {
    pub(crate) fn new(root: SealKey, store: MetaStore) -> KeyService {
        KeyService {
            root,
            store,
            rotated: tokio::sync::Notify::new(),
            versions: std::sync::Mutex::new(std::collections::HashMap::new()),
            newest: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn open(&self, record: &pb::KekRecord) -> Result<(KekId, SealKey), Status> {
        let id = KekId::new(&record.name, record.version)
            .ok_or_else(|| Status::internal("a stored key-encryption key has a malformed id"))?;
        // A node started with another root key than the group's (an operator's mistake) cannot
        // serve keys; it answers Unavailable, so clients go on to a node that can.
        let kek = unwrap_kek(&self.root, &id, &record.wrapped).map_err(|_| {
            tracing::error!(kek = %id, "a key-encryption key does not unwrap under this node's root key: every meta node needs the same root key");
            Status::unavailable(format!(
                "key-encryption key {id} does not unwrap under this node's root key"
            ))
        })?;
        Ok((id, kek))
    }

    /// The newest version of KEK `name`, if there is one here (read from the store).
    pub(crate) fn newest(&self, name: &str) -> Result<Option<(KekId, SealKey)>, Status> {
        let view = self.store.view().map_err(store_failure)?;
        match records::newest_kek(view.as_ref(), name).map_err(store_failure)? {
            Some(record) => {
                let (id, kek) = self.open(&record)?;
                lock(&self.newest).insert(
                    name.to_owned(),
                    (id.clone(), kek.clone(), std::time::Instant::now()),
                );
                Ok(Some((id, kek)))
            }
            None => Ok(None),
        }
    }

    /// The newest version of KEK `name` as read less than `NEWEST_FRESH` ago, if so.
    pub(crate) fn cached_newest(&self, name: &str) -> Option<(KekId, SealKey)> {
        let newest = lock(&self.newest);
        let (id, kek, at) = newest.get(name)?;
        (at.elapsed() < NEWEST_FRESH).then(|| (id.clone(), kek.clone()))
    }

    /// Forgets the newest versions read (a version was just added here).
    pub(crate) fn forget_newest(&self) {
        lock(&self.newest).clear();
    }

    /// KEK `id`, if this node has it.
    pub(crate) fn version(&self, id: &KekId) -> Result<Option<SealKey>, Status> {
        if let Some(kek) = self.cached_version(id) {
            return Ok(Some(kek));
        }
        let view = self.store.view().map_err(store_failure)?;
        match records::kek(view.as_ref(), &id.name, id.version).map_err(store_failure)? {
            Some(record) => {
                let (_, kek) = self.open(&record)?;
                lock(&self.versions).insert(id.clone(), kek.clone());
                Ok(Some(kek))
            }
            None => Ok(None),
        }
    }

    /// KEK `id` if it was unwrapped here before.
    pub(crate) fn cached_version(&self, id: &KekId) -> Option<SealKey> {
        lock(&self.versions).get(id).cloned()
    }

    /// The command that adds version `version` of KEK `name`, a fresh random key, wrapped.
    pub(crate) fn new_kek(&self, id: &KekId) -> pb::CreateKek {
        let kek = SealKey::from_bytes(rand::random::<[u8; KEY_LEN]>());
        pb::CreateKek {
            name: id.name.clone(),
            version: id.version,
            wrapped: wrap_kek(&self.root, rand::random(), id, &kek),
        }
    }
}

/// A fresh data key for `bound`, in the clear and wrapped by `kek` (`id`).
pub(crate) fn generate(
    id: &KekId,
    kek: &SealKey,
    bound: &KeyBinding<'_>,
) -> pb::GenerateDataKeyResponse {
    let data_key = SealKey::from_bytes(rand::random::<[u8; KEY_LEN]>());
    let kek_id = id.to_string();
    let context = WrapContext {
        kek_id: &kek_id,
        layer: bound.layer,
        binding: bound.binding,
        context: bound.context,
    };
    let nonce: [u8; NONCE_LEN] = rand::random();
    let wrapped_key = wrap_key(&Aes256GcmAead::new(kek), nonce, &context, &data_key);
    pb::GenerateDataKeyResponse {
        plaintext_key: data_key.expose().to_vec(),
        wrapped_key,
        kek_id,
        kms_key_id: String::new(),
    }
}

/// The data key in `wrapped`, wrapped by `kek` (`id`) for `bound`.
pub(crate) fn decrypt(
    id: &KekId,
    kek: &SealKey,
    bound: &KeyBinding<'_>,
    wrapped: &[u8],
) -> Result<pb::DecryptDataKeyResponse, Status> {
    let kek_id = id.to_string();
    let binding = bound.binding;
    let context = WrapContext {
        kek_id: &kek_id,
        layer: bound.layer,
        binding,
        context: bound.context,
    };
    let key = unwrap_key(&Aes256GcmAead::new(kek), &context, wrapped).map_err(|e| {
        tracing::warn!(kek = %id, bucket = binding.bucket, key = binding.key, error = %e, "a wrapped data key did not unwrap");
        Status::failed_precondition(format!("the wrapped data key does not unwrap: {e}"))
    })?;
    Ok(pb::DecryptDataKeyResponse {
        plaintext_key: key.expose().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_key_comes_from_its_file_and_a_bad_one_is_named_not_echoed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("root.key");
        std::fs::write(&path, format!("{}\n", "0a".repeat(32))).expect("write");
        let key = load_root_key(Some(&path)).expect("loads");
        assert_eq!(key.expose(), &[0x0a; KEY_LEN]);

        std::fs::write(&path, "not-a-key").expect("write");
        let err = load_root_key(Some(&path)).expect_err("refused").to_string();
        assert!(err.contains("64 hexadecimal digits"), "{err}");
        assert!(
            !err.contains("not-a-key"),
            "the file's text is never echoed: {err}"
        );
        let missing = dir.path().join("missing.key");
        let err = load_root_key(Some(&missing))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("cannot read the root key file"), "{err}");
    }

    #[test]
    fn a_node_refuses_another_root_key_than_its_first_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = SealKey::from_bytes([1; KEY_LEN]);
        let other = SealKey::from_bytes([2; KEY_LEN]);
        check_root_key(dir.path(), &other).expect("no check yet: any key is the first");
        record_root_key(dir.path(), &first).expect("first start records the check");
        let check = std::fs::read(dir.path().join(ROOT_CHECK_FILE)).expect("check file");
        record_root_key(dir.path(), &other).expect("a recorded check is kept");
        let err = check_root_key(dir.path(), &other).expect_err("another key is refused");
        assert!(matches!(err, MetaNodeError::RootKey(_)), "{err}");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        let kept = std::fs::read(dir.path().join(ROOT_CHECK_FILE)).expect("check file");
        assert_eq!(kept, check, "the check is unchanged");
        check_root_key(dir.path(), &first).expect("the first key still opens");
    }

    #[test]
    fn keks_unwrap_only_under_the_root_they_were_wrapped_with() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetaStore::open(dir.path()).expect("open");
        let service = KeyService::new(SealKey::from_bytes([1; KEY_LEN]), store.clone());
        let id = KekId::new("sse-s3", 1).expect("id");
        let cmd = service.new_kek(&id);
        let record = pb::KekRecord {
            name: cmd.name,
            version: cmd.version,
            wrapped: cmd.wrapped,
            created_ms: 1,
        };
        let (opened, kek) = service.open(&record).expect("opens");
        assert_eq!(opened, id);
        let binding = Binding {
            bucket: "b",
            key: "k",
            part_number: 1,
        };
        let bound = KeyBinding {
            binding,
            layer: 1,
            context: &[],
        };
        let made = generate(&id, &kek, &bound);
        assert_eq!(made.kek_id, "sse-s3/1");
        let back = decrypt(&id, &kek, &bound, &made.wrapped_key).expect("unwraps");
        assert_eq!(back.plaintext_key, made.plaintext_key);
        let moved = KeyBinding {
            binding: Binding {
                key: "other",
                ..binding
            },
            ..bound
        };
        let refused = decrypt(&id, &kek, &moved, &made.wrapped_key).expect_err("moved");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

        // An encryption context is bound in: the key unwraps only with the same one.
        let with_context = KeyBinding {
            context: br#"{"dept":"a"}"#,
            ..bound
        };
        let made = generate(&id, &kek, &with_context);
        let back = decrypt(&id, &kek, &with_context, &made.wrapped_key).expect("unwraps");
        assert_eq!(back.plaintext_key, made.plaintext_key);
        let refused = decrypt(&id, &kek, &bound, &made.wrapped_key).expect_err("no context");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        let other = KeyBinding {
            context: br#"{"dept":"b"}"#,
            ..bound
        };
        decrypt(&id, &kek, &other, &made.wrapped_key).expect_err("another context");

        // A node with another root key sends clients on to another node.
        let stranger = KeyService::new(SealKey::from_bytes([2; KEY_LEN]), store);
        let refused = stranger.open(&record).expect_err("another root");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn bindings_name_an_object_or_a_bucket_alone_with_part_zero() {
        let b = |bucket: &str, key: &str, part_number: u32, layer: u32| pb::KeyBinding {
            bucket: bucket.into(),
            key: key.into(),
            part_number,
            layer,
            encryption_context: Vec::new(),
        };
        for ok in [b("b", "k", 1, 1), b("b", "k", 0, 2), b("b", "", 0, 1)] {
            binding(Some(&ok)).expect("accepted");
        }
        for bad in [
            b("", "k", 1, 1),
            b("b", "", 1, 1),
            b("b", "k", 1, 0),
            b("b", "k", 1, 3),
        ] {
            let e = binding(Some(&bad)).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        assert!(binding(None).is_err());
    }
}
