//! The errors of meta calls: the client's own ([`MetaClientError`]: no node answered, a node
//! refused the call, an answer that does not decode) and, for commands, the rule the state
//! machine said the command broke ([`CommandError::Rule`]).
//!
//! Invariant: a rule error is built from the `MetaError` code and fields only
//! (`MetaRuleError::try_from`), never from its message; an answer this build cannot read is a
//! client error, never a guessed rule.

use tessera_core::meta_error::MetaRuleError;
use tessera_proto::convert::meta::MetaConvertError;
use tonic::Code;

use super::fault::CommandKind;

/// A meta call that failed before or after reaching the state machine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaClientError {
    /// No node answered before the deadline (down, no leader, no quorum). The gateway maps
    /// this to 503 Service Unavailable. For a command, it may or may not have applied.
    #[error("meta service unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Calls made.
        attempts: u32,
        /// The last failure seen.
        last: String,
    },
    /// A node answered with a status retrying cannot change.
    #[error("meta service rejected {op} ({code:?}): {message}")]
    Rejected {
        /// The call.
        op: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The node's explanation.
        message: String,
    },
    /// An answer lacks a field the call needs.
    #[error("malformed meta answer to {op}: {field} is missing")]
    Missing {
        /// The call.
        op: &'static str,
        /// The field.
        field: &'static str,
    },
    /// An answer carries a value that does not make a valid record (or an unknown error code).
    #[error("malformed meta answer to {op}: {source}")]
    Convert {
        /// The call.
        op: &'static str,
        /// Why it does not convert.
        source: MetaConvertError,
    },
    /// A command was answered with the outcome of another kind of command.
    #[error("meta answered {kind} with a {got} outcome")]
    UnexpectedOutcome {
        /// The command.
        kind: CommandKind,
        /// The outcome received.
        got: &'static str,
    },
}

impl MetaClientError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            MetaClientError::Unavailable { .. } => true,
            MetaClientError::Rejected { .. }
            | MetaClientError::Missing { .. }
            | MetaClientError::Convert { .. }
            | MetaClientError::UnexpectedOutcome { .. } => false,
        }
    }

    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            MetaClientError::Unavailable { .. } => "meta_unavailable",
            MetaClientError::Rejected { .. } => "meta_rejected",
            MetaClientError::Missing { .. } => "meta_missing_field",
            MetaClientError::Convert { .. } => "meta_malformed_answer",
            MetaClientError::UnexpectedOutcome { .. } => "meta_unexpected_outcome",
        }
    }

    pub(crate) fn convert(op: &'static str) -> impl FnOnce(MetaConvertError) -> MetaClientError {
        move |source| MetaClientError::Convert { op, source }
    }

    pub(crate) fn missing(op: &'static str, field: &'static str) -> MetaClientError {
        MetaClientError::Missing { op, field }
    }
}

/// A command that failed: the state machine refused it by a rule (nothing changed), or the
/// client could not get an answer it understands.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// A rule the command broke; nothing was changed.
    #[error(transparent)]
    Rule(#[from] MetaRuleError),
    /// The call failed (see [`CommandError::is_outcome_unknown`]).
    #[error(transparent)]
    Client(#[from] MetaClientError),
}

impl CommandError {
    /// A stable code for logs and metrics (the rule's or the client error's).
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Rule(e) => e.code(),
            CommandError::Client(e) => e.code(),
        }
    }

    /// Whether making the request again, from scratch, may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CommandError::Rule(e) => e.is_retryable(),
            CommandError::Client(e) => e.is_retryable(),
        }
    }

    /// Whether the command may have applied although no outcome came back: no node answered
    /// before the deadline, or the state machine no longer holds the first result of a retry.
    /// A caller must not report such a command as failed-with-nothing-changed.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            CommandError::Client(MetaClientError::Unavailable { .. })
                | CommandError::Rule(MetaRuleError::SessionExpired)
        )
    }

    /// The rule broken, if that is what failed.
    pub fn rule(&self) -> Option<&MetaRuleError> {
        match self {
            CommandError::Rule(e) => Some(e),
            CommandError::Client(_) => None,
        }
    }
}
