//! Key-encryption key versions in the state machine. A meta node proposes `CreateKek` with the
//! new KEK already wrapped under the root key, so no plaintext key is ever in a log entry, a
//! record or a snapshot; after a rotation the leader proposes `RewrapKeys` to move data keys to
//! the newest version. Invariants: the versions of one name are 1, 2, 3, … with no gap and
//! none ever replaced, so a data key wrapped by `name/version` can always find its KEK; a
//! re-wrap replaces a blob's wrapped key only where it is still the one the pass read, and only
//! by a key wrapped by a KEK that exists.

use std::collections::BTreeMap;

use tessera_core::sealing::kek::KekId;
use tessera_core::sealing::key_wrap::WRAPPED_KEY_LEN;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command_result;

use super::{Applier, Fail, invalid, ok};
use crate::keys;
use crate::kv::KvReadExt;
use crate::records;

impl Applier<'_> {
    /// Adds the next version of a KEK; any other version is refused (a concurrent creation
    /// already added it), and so is a malformed name or wrapped key.
    pub(super) fn create_kek(&mut self, c: &pb::CreateKek) -> Result<command_result::Result, Fail> {
        let id = KekId::new(&c.name, c.version).ok_or_else(|| {
            invalid(format!(
                "not a key-encryption key id: {:?} version {}",
                c.name, c.version
            ))
        })?;
        if c.wrapped.len() != WRAPPED_KEY_LEN {
            return Err(invalid(format!(
                "a wrapped key-encryption key is {WRAPPED_KEY_LEN} bytes, not {}",
                c.wrapped.len()
            )));
        }
        let newest = records::newest_kek(self.kv, &id.name)?.map_or(0, |k| k.version);
        if id.version != newest + 1 {
            return Err(invalid(format!(
                "key-encryption key {} cannot be added: the newest version is {newest}",
                id
            )));
        }
        let record = pb::KekRecord {
            name: id.name.clone(),
            version: id.version,
            wrapped: c.wrapped.clone(),
            created_ms: self.clock_ms,
        };
        self.writes.put_pb(keys::kek(&id.name, id.version), &record);
        Ok(ok())
    }
}

impl Applier<'_> {
    /// Replaces wrapped data keys where the blob still holds the old one. Entries are grouped
    /// by record, so several parts of one version change in one write.
    pub(super) fn rewrap_keys(
        &mut self,
        c: &pb::RewrapKeys,
    ) -> Result<command_result::Result, Fail> {
        let mut by_record: BTreeMap<&[u8], Vec<&pb::KeyRewrap>> = BTreeMap::new();
        for r in &c.rewraps {
            let id: KekId = r.new_kek_id.parse().map_err(|e| invalid(format!("{e}")))?;
            if records::kek(self.kv, &id.name, id.version)?.is_none() {
                return Err(invalid(format!("no key-encryption key {id}")));
            }
            if r.new_wrapped_key.len() != WRAPPED_KEY_LEN {
                return Err(invalid(format!(
                    "a wrapped data key is {WRAPPED_KEY_LEN} bytes, not {}",
                    r.new_wrapped_key.len()
                )));
            }
            by_record.entry(&r.record_key).or_default().push(r);
        }
        for (record_key, rewraps) in by_record {
            if record_key.starts_with(keys::OBJECT_PREFIX) {
                let Some(mut version) = self
                    .kv
                    .get_pb::<pb::ObjectVersion>(record_key, "object version")?
                else {
                    continue;
                };
                let blobs = version
                    .parts
                    .iter_mut()
                    .map(|p| (p.part_number, p.blob.as_mut()));
                if rewrap_blobs(blobs, &rewraps) {
                    self.writes.put_pb(record_key.to_vec(), &version);
                }
            } else if record_key.starts_with(keys::PART_PREFIX) {
                let Some(mut part) = self
                    .kv
                    .get_pb::<pb::UploadedPart>(record_key, "uploaded part")?
                else {
                    continue;
                };
                let blobs = std::iter::once((part.part_number, part.blob.as_mut()));
                if rewrap_blobs(blobs, &rewraps) {
                    self.writes.put_pb(record_key.to_vec(), &part);
                }
            } else {
                return Err(invalid(
                    "a re-wrapped key names a record that holds no blob",
                ));
            }
        }
        Ok(ok())
    }
}

/// Applies `rewraps` to the blobs (by part number) whose wrapped key is still the old one;
/// whether any changed.
fn rewrap_blobs<'b>(
    blobs: impl Iterator<Item = (u32, Option<&'b mut pb::Blob>)>,
    rewraps: &[&pb::KeyRewrap],
) -> bool {
    let mut changed = false;
    for (part_number, blob) in blobs {
        let Some(sealing) = blob.and_then(|b| b.sealing.as_mut()) else {
            continue;
        };
        for r in rewraps {
            if r.part_number == part_number && sealing.wrapped_key == r.old_wrapped_key {
                sealing.wrapped_key = r.new_wrapped_key.clone();
                sealing.key_id = r.new_kek_id.clone();
                changed = true;
            }
        }
    }
    changed
}
