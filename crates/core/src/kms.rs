//! The built-in KMS's rules, without I/O: how a KMS key is named (id, alias, ARN), which state
//! changes are allowed (enable, disable, schedule and cancel deletion), when a key may wrap or
//! unwrap data keys, and what an SSE-KMS encryption context may be.
//!
//! A KMS key's material is a key-encryption key named [`kek_name`]`(key id)`, kept in meta like
//! the SSE-S3 KEK; the key's record holds only its alias, description and state.
//!
//! Invariants: a key id is a lowercase UUID (8-4-4-4-12 hex digits), so no alias is ever read
//! as an id; only an enabled key that is not past its deletion date may be used; a deleted key
//! (pending deletion, its date reached) never changes state again.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The alias of the key SSE-KMS uses when a request names none (S3's AWS-managed key).
pub const DEFAULT_ALIAS: &str = "aws/s3";
/// Aliases under this prefix are reserved for keys the cluster makes itself.
pub const RESERVED_PREFIX: &str = "aws/";
/// The prefix of a KMS key's KEK name.
const KEK_PREFIX: &str = "kms-";
/// The longest alias (without `alias/`), as AWS KMS allows.
pub const MAX_ALIAS_LEN: usize = 250;
/// The longest description.
pub const MAX_DESCRIPTION_LEN: usize = 8192;
/// Shortest and longest pending windows of a scheduled deletion, in days (as AWS KMS).
pub const PENDING_WINDOW_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
/// The pending window when none is given.
pub const DEFAULT_PENDING_WINDOW_DAYS: u32 = 30;
/// The largest encryption context, in bytes of JSON.
pub const MAX_CONTEXT_LEN: usize = 8192;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Why a KMS request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// Not a key id, alias or key ARN.
    #[error("not a KMS key id, alias or ARN: {0:?}")]
    BadKeyRef(String),
    /// An alias with characters or a length KMS does not allow.
    #[error("an alias is 1 to 250 letters, digits, '/', '_' or '-', and not under aws/: {0:?}")]
    BadAlias(String),
    /// A description over the limit.
    #[error("a key description is at most {MAX_DESCRIPTION_LEN} bytes")]
    DescriptionTooLong,
    /// A pending window outside 7..=30 days.
    #[error("the pending window is 7 to 30 days, not {0}")]
    BadPendingWindow(u32),
    /// The key is disabled.
    #[error("KMS key {0} is disabled")]
    Disabled(String),
    /// The key is pending deletion.
    #[error("KMS key {0} is pending deletion")]
    PendingDeletion(String),
    /// The key does not exist, or was deleted.
    #[error("KMS key {0} does not exist")]
    NotFound(String),
    /// A state change the key's state does not allow.
    #[error("KMS key {key} is {state}: it cannot be {action}")]
    InvalidState {
        /// The key.
        key: String,
        /// Its state.
        state: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// An encryption context that is not base64 of a JSON object of strings.
    #[error("the encryption context is not base64-encoded JSON of string pairs")]
    BadContext,
    /// An encryption context over the limit.
    #[error("the encryption context is over {MAX_CONTEXT_LEN} bytes")]
    ContextTooLong,
}

/// How a request names a KMS key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// By its id.
    Id(String),
    /// By its alias (without `alias/`).
    Alias(String),
}

impl KeyRef {
    /// A key id, `alias/NAME`, a bare alias, or an ARN naming either
    /// (`arn:aws:kms:REGION:ACCOUNT:key/ID`, `…:alias/NAME`).
    pub fn parse(text: &str) -> Result<KeyRef, KmsError> {
        let bad = || KmsError::BadKeyRef(text.to_owned());
        let text = text.trim();
        let resource = match text.strip_prefix("arn:") {
            Some(rest) => {
                let parts: Vec<&str> = rest.splitn(5, ':').collect();
                if parts.len() != 5 || parts[1] != "kms" {
                    return Err(bad());
                }
                let resource = parts[4];
                if let Some(id) = resource.strip_prefix("key/") {
                    return if is_key_id(id) {
                        Ok(KeyRef::Id(id.to_owned()))
                    } else {
                        Err(bad())
                    };
                }
                if !resource.starts_with("alias/") {
                    return Err(bad());
                }
                resource
            }
            None => text,
        };
        if let Some(alias) = resource.strip_prefix("alias/") {
            return valid_alias_text(alias)
                .then(|| KeyRef::Alias(alias.to_owned()))
                .ok_or_else(bad);
        }
        if is_key_id(resource) {
            return Ok(KeyRef::Id(resource.to_owned()));
        }
        if valid_alias_text(resource) {
            return Ok(KeyRef::Alias(resource.to_owned()));
        }
        Err(bad())
    }
}

/// Whether `text` is a key id: a lowercase UUID.
pub fn is_key_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// A key id from 16 random bytes (a version 4 UUID).
pub fn new_key_id(mut random: [u8; 16]) -> String {
    random[6] = (random[6] & 0x0f) | 0x40;
    random[8] = (random[8] & 0x3f) | 0x80;
    let hex = hex::encode(random);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn valid_alias_text(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= MAX_ALIAS_LEN
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
        && !is_key_id(alias)
}

/// Checks an alias an operator gives a new key: well formed, not reserved.
pub fn check_new_alias(alias: &str) -> Result<(), KmsError> {
    if !valid_alias_text(alias) || alias.starts_with(RESERVED_PREFIX) {
        return Err(KmsError::BadAlias(alias.to_owned()));
    }
    Ok(())
}

/// Checks a new key's description.
pub fn check_description(description: &str) -> Result<(), KmsError> {
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err(KmsError::DescriptionTooLong);
    }
    Ok(())
}

/// The KEK name that holds a KMS key's material.
pub fn kek_name(key_id: &str) -> String {
    format!("{KEK_PREFIX}{key_id}")
}

/// The KMS key whose material a KEK name is, if it is one.
pub fn key_id_of_kek(kek_name: &str) -> Option<&str> {
    kek_name.strip_prefix(KEK_PREFIX).filter(|id| is_key_id(id))
}

/// A KMS key's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Kept, but unusable until enabled again.
    Disabled,
    /// Unusable; deleted at its deletion date unless cancelled before.
    PendingDeletion,
}

impl KeyState {
    /// The name KMS shows.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// A change an operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// Make a disabled key usable.
    Enable,
    /// Make an enabled key unusable.
    Disable,
    /// Delete the key after `days` (7 to 30).
    ScheduleDeletion {
        /// The pending window.
        days: u32,
    },
    /// Keep a key pending deletion; it becomes disabled.
    CancelDeletion,
}

impl KeyAction {
    fn as_str(self) -> &'static str {
        match self {
            KeyAction::Enable => "enabled",
            KeyAction::Disable => "disabled",
            KeyAction::ScheduleDeletion { .. } => "scheduled for deletion",
            KeyAction::CancelDeletion => "kept from deletion",
        }
    }
}

/// A key's state and deletion date (0 unless pending deletion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    /// The state.
    pub state: KeyState,
    /// When a key pending deletion is deleted (ms since the epoch); 0 otherwise.
    pub deletion_ms: i64,
}

impl KeyStatus {
    /// An enabled key.
    pub const ENABLED: KeyStatus = KeyStatus {
        state: KeyState::Enabled,
        deletion_ms: 0,
    };

    /// Whether the key is deleted at `now_ms`.
    pub fn is_deleted(&self, now_ms: i64) -> bool {
        self.state == KeyState::PendingDeletion && now_ms >= self.deletion_ms
    }

    /// Whether key `key_id` may wrap or unwrap data keys at `now_ms`, and if not, why.
    pub fn check_usable(&self, key_id: &str, now_ms: i64) -> Result<(), KmsError> {
        if self.is_deleted(now_ms) {
            return Err(KmsError::NotFound(key_id.to_owned()));
        }
        match self.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(key_id.to_owned())),
            KeyState::PendingDeletion => Err(KmsError::PendingDeletion(key_id.to_owned())),
        }
    }

    /// The status after `action` at `now_ms`, as AWS KMS allows: enable and disable only
    /// outside a pending deletion (asking for the state a key is in changes nothing), schedule
    /// a deletion from enabled or disabled, cancel one not yet done (the key is then disabled);
    /// nothing after deletion.
    pub fn after(
        &self,
        key_id: &str,
        action: KeyAction,
        now_ms: i64,
    ) -> Result<KeyStatus, KmsError> {
        if self.is_deleted(now_ms) {
            return Err(KmsError::NotFound(key_id.to_owned()));
        }
        let refused = || KmsError::InvalidState {
            key: key_id.to_owned(),
            state: self.state.as_str(),
            action: action.as_str(),
        };
        let state = match (self.state, action) {
            (KeyState::PendingDeletion, KeyAction::CancelDeletion) => KeyState::Disabled,
            (KeyState::PendingDeletion, _) | (_, KeyAction::CancelDeletion) => {
                return Err(refused());
            }
            (_, KeyAction::Enable) => KeyState::Enabled,
            (_, KeyAction::Disable) => KeyState::Disabled,
            (_, KeyAction::ScheduleDeletion { days }) => {
                if !PENDING_WINDOW_DAYS.contains(&days) {
                    return Err(KmsError::BadPendingWindow(days));
                }
                return Ok(KeyStatus {
                    state: KeyState::PendingDeletion,
                    deletion_ms: now_ms.saturating_add(i64::from(days) * DAY_MS),
                });
            }
        };
        Ok(KeyStatus {
            state,
            deletion_ms: 0,
        })
    }
}

/// An SSE-KMS encryption context as `x-amz-server-side-encryption-context` carries it (base64
/// of a JSON object whose values are strings), in canonical form: JSON with its keys sorted, so
/// the same pairs always bind the same bytes. Empty when the header is absent.
pub fn parse_context(header: Option<&str>) -> Result<Vec<u8>, KmsError> {
    let Some(header) = header else {
        return Ok(Vec::new());
    };
    let json = STANDARD
        .decode(header.trim())
        .map_err(|_| KmsError::BadContext)?;
    if json.len() > MAX_CONTEXT_LEN {
        return Err(KmsError::ContextTooLong);
    }
    let pairs: BTreeMap<String, String> =
        serde_json::from_slice(&json).map_err(|_| KmsError::BadContext)?;
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::to_vec(&pairs).map_err(|_| KmsError::BadContext)
}

/// The header value that answers for a stored context (base64 of its JSON); `None` for none.
pub fn context_header(context: &[u8]) -> Option<String> {
    (!context.is_empty()).then(|| STANDARD.encode(context))
}

#[cfg(test)]
#[path = "kms_test.rs"]
mod tests;
