//! KMS keys and bucket default encryption in the state machine. A meta node proposes
//! `CreateKmsKey` with version 1 of the key's KEK (`kms-<key id>`) already wrapped under the
//! root key, so the key, its alias and its material appear together or not at all.
//!
//! Invariants: a key id and an alias are taken at most once, and never freed (a deleted key
//! keeps its record, so a wrapped data key never names a key that could come back as
//! another); a key's state changes only as `tessera_core::kms::KeyStatus::after` allows, at
//! the meta clock; a bucket's default encryption names a known algorithm.

use tessera_core::kms::{self, KmsError};
use tessera_core::meta_error::MetaRuleError;
use tessera_core::object::BucketEncryption;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command_result;

use super::{Applier, Fail, invalid, ok, required};
use crate::keys;
use crate::kms_keys;
use crate::records;

/// The default-encryption algorithms a bucket may name.
const BUCKET_ALGORITHMS: [&str; 3] = ["AES256", "aws:kms", "aws:kms:dsse"];

fn conflict(message: impl Into<String>) -> Fail {
    Fail::Rule(MetaRuleError::Conflict {
        message: message.into(),
    })
}

/// A refused state change: a change the state does not allow is a conflict, anything else
/// (a bad pending window, a deleted key) an invalid argument.
fn refused(e: KmsError) -> Fail {
    match e {
        KmsError::InvalidState { .. } => conflict(e.to_string()),
        _ => invalid(e.to_string()),
    }
}

impl Applier<'_> {
    /// Creates a KMS key, its alias and version 1 of its KEK; an id or alias already taken is
    /// a conflict, a malformed one invalid.
    pub(super) fn create_kms_key(
        &mut self,
        c: &pb::CreateKmsKey,
    ) -> Result<command_result::Result, Fail> {
        if !kms::is_key_id(&c.key_id) {
            return Err(invalid(format!("not a KMS key id: {:?}", c.key_id)));
        }
        // The reserved default alias is only ever made by the cluster itself (proposals never
        // come from clients), so it is the one reserved alias let through here.
        if !c.alias.is_empty() && c.alias != kms::DEFAULT_ALIAS {
            kms::check_new_alias(&c.alias).map_err(|e| invalid(e.to_string()))?;
        }
        kms::check_description(&c.description).map_err(|e| invalid(e.to_string()))?;
        let kek = required(c.kek.as_ref(), "kek")?;
        let kek_name = kms::kek_name(&c.key_id);
        if kek.name != kek_name || kek.version != 1 {
            return Err(invalid(format!(
                "a KMS key's material is version 1 of {kek_name}, not {} version {}",
                kek.name, kek.version
            )));
        }
        if records::kms_key(self.kv, &c.key_id)?.is_some() {
            return Err(conflict(format!("KMS key {} already exists", c.key_id)));
        }
        if !c.alias.is_empty()
            && let Some(holder) = records::kms_alias(self.kv, &c.alias)?
        {
            return Err(conflict(format!(
                "alias {} already names KMS key {holder}",
                c.alias
            )));
        }
        // The KEK's own checks (wrapped length, no version yet); its writes join this batch.
        self.create_kek(kek)?;
        let record = pb::KmsKeyRecord {
            key_id: c.key_id.clone(),
            alias: c.alias.clone(),
            description: c.description.clone(),
            state: pb::KmsKeyState::KmsKeyEnabled as i32,
            created_ms: self.clock_ms,
            deletion_ms: 0,
        };
        self.writes.put_pb(keys::kms_key(&c.key_id), &record);
        if !c.alias.is_empty() {
            self.writes
                .put(keys::kms_alias(&c.alias), c.key_id.as_bytes().to_vec());
        }
        Ok(ok())
    }

    /// Enables, disables, schedules or cancels the deletion of a KMS key, at the meta clock.
    pub(super) fn update_kms_key(
        &mut self,
        c: &pb::UpdateKmsKey,
    ) -> Result<command_result::Result, Fail> {
        let mut record = records::kms_key(self.kv, &c.key_id)?
            .ok_or_else(|| invalid(KmsError::NotFound(c.key_id.clone()).to_string()))?;
        let action = kms_keys::action_from_pb(c.action, c.pending_window_days)
            .ok_or_else(|| invalid(format!("unknown KMS key action {}", c.action)))?;
        let status = kms_keys::status(&record)
            .ok_or_else(|| invalid(format!("KMS key {} has an unknown state", c.key_id)))?;
        let next = status
            .after(&c.key_id, action, self.clock_ms)
            .map_err(refused)?;
        record.state = kms_keys::state_to_pb(next.state) as i32;
        record.deletion_ms = next.deletion_ms;
        self.writes.put_pb(keys::kms_key(&c.key_id), &record);
        Ok(ok())
    }

    /// Sets or removes a bucket's default encryption.
    pub(super) fn set_bucket_encryption(
        &mut self,
        c: &pb::SetBucketEncryption,
    ) -> Result<command_result::Result, Fail> {
        let mut bucket = self.existing_bucket(&c.bucket)?;
        if let Some(e) = &c.encryption
            && !BUCKET_ALGORITHMS.contains(&e.algorithm.as_str())
        {
            return Err(invalid(format!(
                "a bucket's default encryption is AES256, aws:kms or aws:kms:dsse, not {:?}",
                e.algorithm
            )));
        }
        bucket.encryption = c.encryption.as_ref().map(|e| BucketEncryption {
            algorithm: e.algorithm.clone(),
            kms_key_id: e.kms_key_id.clone(),
            bucket_key_enabled: e.bucket_key_enabled,
        });
        self.writes
            .put_pb(keys::bucket(&c.bucket), &pb::Bucket::from(&bucket));
        Ok(ok())
    }
}
