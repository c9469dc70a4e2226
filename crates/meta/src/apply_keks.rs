//! Key-encryption key versions in the state machine. A meta node proposes `CreateKek` with the
//! new KEK already wrapped under the root key, so no plaintext key is ever in a log entry, a
//! record or a snapshot. Invariant: the versions of one name are 1, 2, 3, … with no gap and
//! none ever replaced, so a data key wrapped by `name/version` can always find its KEK.

use tessera_core::sealing::kek::KekId;
use tessera_core::sealing::key_wrap::WRAPPED_KEY_LEN;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command_result;

use super::{Applier, Fail, invalid, ok};
use crate::keys;
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
