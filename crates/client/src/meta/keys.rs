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
}

fn key_binding(binding: &Binding<'_>, layer: u8) -> pb::KeyBinding {
    pb::KeyBinding {
        bucket: binding.bucket.to_owned(),
        key: binding.key.to_owned(),
        part_number: binding.part_number,
        layer: u32::from(layer),
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
    /// A fresh data key for `binding` at `layer`, wrapped by the newest version of KEK
    /// `kek_name`.
    pub async fn generate_data_key(
        &self,
        kek_name: &str,
        binding: &Binding<'_>,
        layer: u8,
    ) -> Result<DataKey, MetaClientError> {
        let req = pb::GenerateDataKeyRequest {
            kek_name: kek_name.to_owned(),
            binding: Some(key_binding(binding, layer)),
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
        })
    }

    /// The data key inside `wrapped`, wrapped by KEK `kek_id` for `binding` at `layer`.
    pub async fn decrypt_data_key(
        &self,
        kek_id: &str,
        wrapped: &[u8],
        binding: &Binding<'_>,
        layer: u8,
    ) -> Result<SealKey, MetaClientError> {
        let req = pb::DecryptDataKeyRequest {
            kek_id: kek_id.to_owned(),
            wrapped_key: wrapped.to_vec(),
            binding: Some(key_binding(binding, layer)),
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
}
