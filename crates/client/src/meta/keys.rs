//! The meta key service seen from a gateway: fresh data keys (in the clear and wrapped), and
//! the data key inside a wrapped one. The data key in the clear exists only in the caller's
//! memory, as a [`SealKey`] that zeroes itself.

use tessera_core::sealing::aead::{KEY_LEN, SealKey};
use tessera_core::sealing::segments::Binding;
use tessera_proto::meta::v1 as pb;

use super::{MetaClient, MetaClientError};

/// A fresh data key.
#[derive(Debug)]
pub struct DataKey {
    /// The key itself.
    pub key: SealKey,
    /// The key wrapped by the KEK: what is stored.
    pub wrapped: Vec<u8>,
    /// The KEK that wrapped it (`name/version`).
    pub kek_id: String,
    /// The KMS key's id, when a KMS key was asked for.
    pub kms_key_id: Option<String>,
}

/// Which key wraps a new data key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrappingKey<'a> {
    /// The newest version of a cluster KEK (`sse-s3`).
    Kek(&'a str),
    /// A KMS key, by id, alias or ARN (it must be enabled); `aws/s3` is made on first use.
    Kms(&'a str),
}

/// The answer meta gives, as the message of a refused key-service call, when a KMS key may not
/// be used: `KMS.DisabledException`, `KMS.KMSInvalidStateException` (pending deletion) or
/// `KMS.NotFoundException`, then a colon and the reason.
pub const KMS_REFUSAL_PREFIX: &str = "KMS.";

fn key_binding(binding: &Binding<'_>, layer: u8, context: &[u8]) -> pb::KeyBinding {
    pb::KeyBinding {
        bucket: binding.bucket.to_owned(),
        key: binding.key.to_owned(),
        part_number: binding.part_number,
        layer: u32::from(layer),
        encryption_context: context.to_vec(),
    }
}

fn seal_key(op: &'static str, mut bytes: Vec<u8>) -> Result<SealKey, MetaClientError> {
    let key: Result<[u8; KEY_LEN], _> = bytes.as_slice().try_into();
    zeroize::Zeroize::zeroize(&mut bytes);
    match key {
        Ok(mut key) => {
            let sealed = SealKey::from_bytes(key);
            zeroize::Zeroize::zeroize(&mut key);
            Ok(sealed)
        }
        Err(_) => Err(MetaClientError::Missing {
            op,
            field: "plaintext_key (32 bytes)",
        }),
    }
}

impl MetaClient {
    /// A fresh data key for `binding` at `layer` (and SSE-KMS encryption `context`, empty
    /// for none), wrapped by `wrapping`.
    pub async fn generate_data_key(
        &self,
        wrapping: WrappingKey<'_>,
        binding: &Binding<'_>,
        layer: u8,
        context: &[u8],
    ) -> Result<DataKey, MetaClientError> {
        let (kek_name, kms_key) = match wrapping {
            WrappingKey::Kek(name) => (name.to_owned(), String::new()),
            WrappingKey::Kms(key) => (String::new(), key.to_owned()),
        };
        let req = pb::GenerateDataKeyRequest {
            kek_name,
            binding: Some(key_binding(binding, layer, context)),
            kms_key,
        };
        let resp = self
            .call("generate_data_key", |mut c| {
                let req = req.clone();
                async move { c.generate_data_key(req).await }
            })
            .await?;
        Ok(DataKey {
            key: seal_key("generate_data_key", resp.plaintext_key)?,
            wrapped: resp.wrapped_key,
            kek_id: resp.kek_id,
            kms_key_id: (!resp.kms_key_id.is_empty()).then_some(resp.kms_key_id),
        })
    }

    /// The data key inside `wrapped`, wrapped by KEK `kek_id` for `binding` at `layer` and
    /// encryption `context` (a KMS key's KEK unwraps only while the key is enabled).
    pub async fn decrypt_data_key(
        &self,
        kek_id: &str,
        wrapped: &[u8],
        binding: &Binding<'_>,
        layer: u8,
        context: &[u8],
    ) -> Result<SealKey, MetaClientError> {
        let req = pb::DecryptDataKeyRequest {
            kek_id: kek_id.to_owned(),
            wrapped_key: wrapped.to_vec(),
            binding: Some(key_binding(binding, layer, context)),
        };
        let resp = self
            .call("decrypt_data_key", |mut c| {
                let req = req.clone();
                async move { c.decrypt_data_key(req).await }
            })
            .await?;
        seal_key("decrypt_data_key", resp.plaintext_key)
    }

    /// Adds a new version of KEK `kek_name`; returns its id (`name/version`).
    pub async fn rotate_kek(&self, kek_name: &str) -> Result<String, MetaClientError> {
        let req = pb::RotateKekRequest {
            kek_name: kek_name.to_owned(),
        };
        let resp = self
            .call("rotate_kek", |mut c| {
                let req = req.clone();
                async move { c.rotate_kek(req).await }
            })
            .await?;
        Ok(resp.kek_id)
    }

    /// Every KEK version (no key material).
    pub async fn list_keks(&self) -> Result<Vec<pb::KekInfo>, MetaClientError> {
        let resp = self
            .call("list_keks", |mut c| async move {
                c.list_keks(pb::ListKeksRequest {}).await
            })
            .await?;
        Ok(resp.keks)
    }

    // KMS key administration and bucket default encryption: added below by the KMS work.

    /// Creates a KMS key (enabled) with `alias` (without `alias/`; empty for none) and
    /// `description`; answers its record.
    pub async fn create_kms_key(
        &self,
        alias: &str,
        description: &str,
    ) -> Result<pb::KmsKeyResponse, MetaClientError> {
        let req = pb::CreateKmsKeyRequest {
            alias: alias.to_owned(),
            description: description.to_owned(),
        };
        self.call("create_kms_key", |mut c| {
            let req = req.clone();
            async move { c.create_kms_key(req).await }
        })
        .await
    }

    /// The KMS key `key` names (id, alias, `alias/NAME` or ARN); with `create_default`, the
    /// default key `aws/s3` is made if `key` names it and it does not exist yet.
    pub async fn describe_kms_key(
        &self,
        key: &str,
        create_default: bool,
    ) -> Result<pb::KmsKeyResponse, MetaClientError> {
        let req = pb::DescribeKmsKeyRequest {
            key: key.to_owned(),
            create_default,
        };
        self.call("describe_kms_key", |mut c| {
            let req = req.clone();
            async move { c.describe_kms_key(req).await }
        })
        .await
    }

    /// Every KMS key, by id.
    pub async fn list_kms_keys(&self) -> Result<Vec<pb::KmsKeyRecord>, MetaClientError> {
        let resp = self
            .call("list_kms_keys", |mut c| async move {
                c.list_kms_keys(pb::ListKmsKeysRequest {}).await
            })
            .await?;
        Ok(resp.keys)
    }

    /// Enables, disables, schedules the deletion of (after `pending_window_days`, 0 for the
    /// default 30) or cancels the deletion of the KMS key `key` names; answers its new record.
    pub async fn update_kms_key(
        &self,
        key: &str,
        action: pb::KmsKeyAction,
        pending_window_days: u32,
    ) -> Result<pb::KmsKeyResponse, MetaClientError> {
        let req = pb::UpdateKmsKeyRequest {
            key: key.to_owned(),
            action: action as i32,
            pending_window_days,
        };
        self.call("update_kms_key", |mut c| {
            let req = req.clone();
            async move { c.update_kms_key(req).await }
        })
        .await
    }
}
