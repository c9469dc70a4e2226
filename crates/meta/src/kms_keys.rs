//! KMS key records as the applier and the key service read them: a record's state in
//! `tessera_core::kms` terms, and a key named by id, alias or ARN resolved to its record
//! through the `ka/` alias index.
//!
//! Invariant: an alias names at most one key and the key it names exists (both are written in
//! the same batch by `CreateKmsKey` and never removed apart).

use tessera_core::kms::{KeyAction, KeyRef, KeyState, KeyStatus};
use tessera_proto::meta::v1 as pb;

use crate::error::StoreError;
use crate::kv::KvRead;
use crate::records;

/// A record's state and deletion date; `None` for a state this build does not know.
pub(crate) fn status(record: &pb::KmsKeyRecord) -> Option<KeyStatus> {
    let state = match pb::KmsKeyState::try_from(record.state).ok()? {
        pb::KmsKeyState::KmsKeyEnabled => KeyState::Enabled,
        pb::KmsKeyState::KmsKeyDisabled => KeyState::Disabled,
        pb::KmsKeyState::KmsKeyPendingDeletion => KeyState::PendingDeletion,
        pb::KmsKeyState::Unspecified => return None,
    };
    Some(KeyStatus {
        state,
        deletion_ms: record.deletion_ms,
    })
}

/// The wire form of a state.
pub(crate) fn state_to_pb(state: KeyState) -> pb::KmsKeyState {
    match state {
        KeyState::Enabled => pb::KmsKeyState::KmsKeyEnabled,
        KeyState::Disabled => pb::KmsKeyState::KmsKeyDisabled,
        KeyState::PendingDeletion => pb::KmsKeyState::KmsKeyPendingDeletion,
    }
}

/// The action a wire request asks for (`days` 0: the default pending window); `None` for an
/// unspecified or unknown action.
pub(crate) fn action_from_pb(action: i32, days: u32) -> Option<KeyAction> {
    Some(match pb::KmsKeyAction::try_from(action).ok()? {
        pb::KmsKeyAction::Enable => KeyAction::Enable,
        pb::KmsKeyAction::Disable => KeyAction::Disable,
        pb::KmsKeyAction::ScheduleDeletion => KeyAction::ScheduleDeletion {
            days: if days == 0 {
                tessera_core::kms::DEFAULT_PENDING_WINDOW_DAYS
            } else {
                days
            },
        },
        pb::KmsKeyAction::CancelDeletion => KeyAction::CancelDeletion,
        pb::KmsKeyAction::Unspecified => return None,
    })
}

/// The record of the key `key` names, if it exists (deleted or not).
pub(crate) fn resolve(
    kv: &dyn KvRead,
    key: &KeyRef,
) -> Result<Option<pb::KmsKeyRecord>, StoreError> {
    let id = match key {
        KeyRef::Id(id) => id.clone(),
        KeyRef::Alias(alias) => match records::kms_alias(kv, alias)? {
            Some(id) => id,
            None => return Ok(None),
        },
    };
    records::kms_key(kv, &id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_actions_map_both_ways() {
        for state in [
            KeyState::Enabled,
            KeyState::Disabled,
            KeyState::PendingDeletion,
        ] {
            let record = pb::KmsKeyRecord {
                state: state_to_pb(state) as i32,
                deletion_ms: 7,
                ..Default::default()
            };
            assert_eq!(status(&record).map(|s| s.state), Some(state));
        }
        assert_eq!(status(&pb::KmsKeyRecord::default()), None);
        let schedule = pb::KmsKeyAction::ScheduleDeletion as i32;
        assert_eq!(
            action_from_pb(schedule, 0),
            Some(KeyAction::ScheduleDeletion {
                days: tessera_core::kms::DEFAULT_PENDING_WINDOW_DAYS
            })
        );
        assert_eq!(
            action_from_pb(schedule, 9),
            Some(KeyAction::ScheduleDeletion { days: 9 })
        );
        assert_eq!(action_from_pb(0, 0), None);
        assert_eq!(action_from_pb(99, 0), None);
    }
}
