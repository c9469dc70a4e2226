//! The test-and-chaos hook that drops meta answers: with `TESSERA_FAULT_DROP_META_ANSWER` set
//! to a comma list of command kinds (`put_version,delete_object`) or `all`, the first answer to
//! every matching command is discarded as if the connection broke after the command committed,
//! and the client retries it with the same seq. A process run with it must show each command's
//! effect exactly once: that is what the session table of the state machine guarantees.
//!
//! Invariant: the hook discards at most one answer per command, and only an answer the state
//! machine gave (an outcome or a rule error, both committed); it never invents or alters one.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use tessera_proto::meta::v1 as pb;

/// The environment variable that turns the hook on.
pub const DROP_META_ANSWER_ENV: &str = "TESSERA_FAULT_DROP_META_ANSWER";

/// Every kind of meta command, named as the hook and logs spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandKind {
    /// `CreateBucket`.
    CreateBucket,
    /// `DeleteBucket`.
    DeleteBucket,
    /// `SetBucketVersioning`.
    SetBucketVersioning,
    /// `PutVersion`.
    PutVersion,
    /// `DeleteObject`.
    DeleteObject,
    /// `CreateUpload`.
    CreateUpload,
    /// `PutPart`.
    PutPart,
    /// `CompleteUpload`.
    CompleteUpload,
    /// `AbortUpload`.
    AbortUpload,
    /// `RegisterDataNode`.
    RegisterDataNode,
    /// `SetDataNodeState`.
    SetDataNodeState,
    /// `UpdatePlacement`.
    UpdatePlacement,
    /// `ClaimShards`.
    ClaimShards,
    /// `ReleaseShards`.
    ReleaseShards,
    /// `PutRepairReport`.
    PutRepairReport,
    /// `GrantLease`.
    GrantLease,
    /// `RenewLease`.
    RenewLease,
    /// `ReleaseLease`.
    ReleaseLease,
    /// `CreateKek` (proposed by meta nodes themselves, never by this client).
    CreateKek,
    /// `RewrapKeys` (proposed by meta nodes themselves, never by this client).
    RewrapKeys,
    /// `CreateKmsKey` (proposed by meta nodes themselves, never by this client).
    CreateKmsKey,
    /// `UpdateKmsKey` (proposed by meta nodes themselves, never by this client).
    UpdateKmsKey,
    /// `SetBucketEncryption`.
    SetBucketEncryption,
}

impl CommandKind {
    /// Every kind.
    pub const ALL: [CommandKind; 23] = [
        CommandKind::CreateBucket,
        CommandKind::DeleteBucket,
        CommandKind::SetBucketVersioning,
        CommandKind::PutVersion,
        CommandKind::DeleteObject,
        CommandKind::CreateUpload,
        CommandKind::PutPart,
        CommandKind::CompleteUpload,
        CommandKind::AbortUpload,
        CommandKind::RegisterDataNode,
        CommandKind::SetDataNodeState,
        CommandKind::UpdatePlacement,
        CommandKind::ClaimShards,
        CommandKind::ReleaseShards,
        CommandKind::PutRepairReport,
        CommandKind::GrantLease,
        CommandKind::RenewLease,
        CommandKind::ReleaseLease,
        CommandKind::CreateKek,
        CommandKind::RewrapKeys,
        CommandKind::CreateKmsKey,
        CommandKind::UpdateKmsKey,
        CommandKind::SetBucketEncryption,
    ];

    /// The kind's snake-case name (`put_version`).
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::CreateBucket => "create_bucket",
            CommandKind::DeleteBucket => "delete_bucket",
            CommandKind::SetBucketVersioning => "set_bucket_versioning",
            CommandKind::PutVersion => "put_version",
            CommandKind::DeleteObject => "delete_object",
            CommandKind::CreateUpload => "create_upload",
            CommandKind::PutPart => "put_part",
            CommandKind::CompleteUpload => "complete_upload",
            CommandKind::AbortUpload => "abort_upload",
            CommandKind::RegisterDataNode => "register_data_node",
            CommandKind::SetDataNodeState => "set_data_node_state",
            CommandKind::UpdatePlacement => "update_placement",
            CommandKind::ClaimShards => "claim_shards",
            CommandKind::ReleaseShards => "release_shards",
            CommandKind::PutRepairReport => "put_repair_report",
            CommandKind::GrantLease => "grant_lease",
            CommandKind::RenewLease => "renew_lease",
            CommandKind::ReleaseLease => "release_lease",
            CommandKind::CreateKek => "create_kek",
            CommandKind::RewrapKeys => "rewrap_keys",
            CommandKind::CreateKmsKey => "create_kms_key",
            CommandKind::UpdateKmsKey => "update_kms_key",
            CommandKind::SetBucketEncryption => "set_bucket_encryption",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<CommandKind> {
        CommandKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind of a wire command.
    pub fn of(cmd: &pb::command::Cmd) -> CommandKind {
        use pb::command::Cmd;
        match cmd {
            Cmd::CreateBucket(_) => CommandKind::CreateBucket,
            Cmd::DeleteBucket(_) => CommandKind::DeleteBucket,
            Cmd::SetBucketVersioning(_) => CommandKind::SetBucketVersioning,
            Cmd::PutVersion(_) => CommandKind::PutVersion,
            Cmd::DeleteObject(_) => CommandKind::DeleteObject,
            Cmd::CreateUpload(_) => CommandKind::CreateUpload,
            Cmd::PutPart(_) => CommandKind::PutPart,
            Cmd::CompleteUpload(_) => CommandKind::CompleteUpload,
            Cmd::AbortUpload(_) => CommandKind::AbortUpload,
            Cmd::RegisterDataNode(_) => CommandKind::RegisterDataNode,
            Cmd::SetDataNodeState(_) => CommandKind::SetDataNodeState,
            Cmd::UpdatePlacement(_) => CommandKind::UpdatePlacement,
            Cmd::ClaimShards(_) => CommandKind::ClaimShards,
            Cmd::ReleaseShards(_) => CommandKind::ReleaseShards,
            Cmd::PutRepairReport(_) => CommandKind::PutRepairReport,
            Cmd::GrantLease(_) => CommandKind::GrantLease,
            Cmd::RenewLease(_) => CommandKind::RenewLease,
            Cmd::ReleaseLease(_) => CommandKind::ReleaseLease,
            Cmd::CreateKek(_) => CommandKind::CreateKek,
            Cmd::RewrapKeys(_) => CommandKind::RewrapKeys,
            Cmd::CreateKmsKey(_) => CommandKind::CreateKmsKey,
            Cmd::UpdateKmsKey(_) => CommandKind::UpdateKmsKey,
            Cmd::SetBucketEncryption(_) => CommandKind::SetBucketEncryption,
        }
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value of [`DROP_META_ANSWER_ENV`] that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// A name that is neither `all` nor a command kind.
    #[error("{DROP_META_ANSWER_ENV}: {name:?} is not a command kind (nor \"all\")")]
    UnknownKind {
        /// The name found.
        name: String,
    },
}

impl FaultSpecError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            FaultSpecError::UnknownKind { .. } => "fault_unknown_kind",
        }
    }

    /// Whether trying again could succeed: never, the value does not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            FaultSpecError::UnknownKind { .. } => false,
        }
    }
}

/// Which commands lose their first answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    kinds: BTreeSet<CommandKind>,
}

impl FaultPlan {
    /// No command loses an answer.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    /// Every command loses its first answer.
    pub fn all() -> FaultPlan {
        FaultPlan {
            kinds: CommandKind::ALL.into_iter().collect(),
        }
    }

    /// Commands of these kinds lose their first answer.
    pub fn kinds(kinds: impl IntoIterator<Item = CommandKind>) -> FaultPlan {
        FaultPlan {
            kinds: kinds.into_iter().collect(),
        }
    }

    /// Parses the hook's value: `all`, or kinds separated by commas (blanks ignored).
    pub fn parse(spec: &str) -> Result<FaultPlan, FaultSpecError> {
        let mut kinds = BTreeSet::new();
        for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                return Ok(FaultPlan::all());
            }
            let kind = CommandKind::parse(name).ok_or_else(|| FaultSpecError::UnknownKind {
                name: name.to_owned(),
            })?;
            kinds.insert(kind);
        }
        Ok(FaultPlan { kinds })
    }

    /// The plan [`DROP_META_ANSWER_ENV`] asks for (none when unset). Roles may call this at
    /// start to refuse a misspelt value; `MetaClient::new` logs it and drops the bad names.
    pub fn from_env() -> Result<FaultPlan, FaultSpecError> {
        match std::env::var(DROP_META_ANSWER_ENV) {
            Ok(spec) => FaultPlan::parse(&spec),
            Err(_) => Ok(FaultPlan::none()),
        }
    }

    /// The plan of the environment, keeping the valid names of a partly misspelt value.
    pub(crate) fn from_env_lenient() -> FaultPlan {
        let Ok(spec) = std::env::var(DROP_META_ANSWER_ENV) else {
            return FaultPlan::none();
        };
        let mut kinds = BTreeSet::new();
        for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match FaultPlan::parse(name) {
                Ok(plan) => kinds.extend(plan.kinds),
                Err(e) => tracing::error!(error = %e, "fault hook value ignored"),
            }
        }
        FaultPlan { kinds }
    }

    /// Whether commands of `kind` lose their first answer.
    pub fn matches(&self, kind: CommandKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// Whether no command is affected.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

/// A plan with the count of answers it dropped; shared by a client's clones.
#[derive(Debug, Default)]
pub(crate) struct FaultHook {
    pub(crate) plan: FaultPlan,
    fired: AtomicU64,
}

impl FaultHook {
    pub(crate) fn new(plan: FaultPlan) -> FaultHook {
        FaultHook {
            plan,
            fired: AtomicU64::new(0),
        }
    }

    /// Records that one answer was dropped.
    pub(crate) fn fire(&self) {
        self.fired.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers dropped so far.
    pub(crate) fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[path = "fault_test.rs"]
mod tests;
