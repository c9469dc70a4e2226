//! Exactly-once commands (Raft dissertation 6.3). A command may carry a session: the client's
//! 16-byte id, the command's seq (1, 2, 3, ... per client) and `first_unacked`, below which the
//! client holds (or gave up) every answer. The state machine keeps the client's `ClientSession`
//! under `s/<client id>` and each command's first result under `sr/<client id><seq>`:
//!
//! - a command whose result is stored is answered with it and applied no second time;
//! - a command below the session's `first_unacked` is refused with SESSION_EXPIRED (its result
//!   is gone, so applying it again could do it twice);
//! - any other command is applied, its result (rule errors included) stored, `first_unacked`
//!   raised and every stored result below it deleted.
//!
//! Bounds: a session keeps results only for its last `MAX_RESULTS_PER_SESSION` seqs (a command
//! raises `first_unacked` to at least `seq - MAX_RESULTS_PER_SESSION + 1`, which only a client
//! with that many commands in flight notices), and sessions idle for more than
//! `SESSION_TTL_MS` of meta clock are dropped by the periodic sweep. Results carry no inline
//! object bytes, so the table stays small.
//!
//! Invariant: a command with a session changes the records at most once, however many times it
//! is committed; every stored result of a session has a seq at or above the session's
//! `first_unacked` and within `MAX_RESULTS_PER_SESSION` of the highest seq applied, so a session
//! never holds more than `MAX_RESULTS_PER_SESSION` results.

use tessera_core::meta_error::MetaRuleError;
use tessera_proto::meta::v1 as pb;

use crate::error::StoreError;
use crate::keys;
use crate::kv::{KvRead, KvReadExt, Overlay};

/// Sessions idle for longer than this (meta clock) are dropped: one hour.
pub const SESSION_TTL_MS: i64 = 3_600_000;
/// The most results one session keeps.
pub const MAX_RESULTS_PER_SESSION: u64 = 10_000;

/// A command's valid session, with what the state machine knew of it before.
pub(crate) struct SessionCommand {
    client_id: Vec<u8>,
    seq: u64,
    first_unacked: u64,
    known: Option<pb::ClientSession>,
}

/// What to do with a command, by its session.
pub(crate) enum SessionCheck {
    /// Apply it (and record its result if it has a session).
    Apply(Option<SessionCommand>),
    /// It was applied before: this is its first result.
    Repeat(Box<pb::CommandResult>),
    /// Do not apply it.
    Refused(MetaRuleError),
}

/// Decides whether the command with `session` is new, a repeat, or expired.
pub(crate) fn check(
    kv: &dyn KvRead,
    session: Option<&pb::CommandSession>,
) -> Result<SessionCheck, StoreError> {
    let Some(s) = session else {
        return Ok(SessionCheck::Apply(None));
    };
    if s.client_id.len() != keys::CLIENT_ID_LEN {
        return Ok(SessionCheck::Refused(MetaRuleError::invalid(format!(
            "a client id is {} bytes, not {}",
            keys::CLIENT_ID_LEN,
            s.client_id.len()
        ))));
    }
    if s.seq == 0 {
        return Ok(SessionCheck::Refused(MetaRuleError::invalid(
            "command seqs start at 1",
        )));
    }
    let stored: Option<pb::CommandResult> =
        kv.get_pb(&keys::session_result(&s.client_id, s.seq), "command result")?;
    if let Some(first) = stored {
        return Ok(SessionCheck::Repeat(Box::new(first)));
    }
    let known: Option<pb::ClientSession> =
        kv.get_pb(&keys::session(&s.client_id), "client session")?;
    if known.as_ref().is_some_and(|k| s.seq < k.first_unacked) {
        return Ok(SessionCheck::Refused(MetaRuleError::SessionExpired));
    }
    Ok(SessionCheck::Apply(Some(SessionCommand {
        client_id: s.client_id.clone(),
        seq: s.seq,
        first_unacked: s.first_unacked,
        known,
    })))
}

/// Stores the first result of an applied command and moves its session on.
pub(crate) fn record(
    overlay: &mut Overlay<'_>,
    cmd: &SessionCommand,
    index: u64,
    clock_ms: i64,
    result: &pb::CommandResult,
) -> Result<(), StoreError> {
    let before = cmd.known.as_ref().map_or(0, |k| k.first_unacked);
    // The client's word never covers the command in hand: its result must stay until acked.
    let acked = cmd.first_unacked.min(cmd.seq);
    let window = cmd.seq.saturating_sub(MAX_RESULTS_PER_SESSION - 1);
    let first_unacked = before.max(acked).max(window);

    let results = keys::session_results(&cmd.client_id);
    let mut stale = Vec::new();
    if first_unacked > before {
        // Every result below `before` is deleted already: start there, never at the prefix's
        // start, where the tombstones of those deletions pile up until compaction (walking
        // them on every command made the state machine crawl).
        let mut cursor = overlay.cursor(&results);
        cursor.seek(&keys::session_result(&cmd.client_id, before));
        while let Some((key, _)) = cursor.next_entry()? {
            match keys::parse_session_result(&results, &key) {
                Some(seq) if seq < first_unacked => stale.push(key),
                _ => break,
            }
        }
    }
    let writes = overlay.writes_mut();
    for key in stale {
        writes.delete(key);
    }
    writes.put_pb(keys::session_result(&cmd.client_id, cmd.seq), result);
    writes.put_pb(
        keys::session(&cmd.client_id),
        &pb::ClientSession {
            first_unacked,
            last_active_ms: clock_ms,
            last_index: index,
        },
    );
    Ok(())
}

/// Drops every session idle for longer than `SESSION_TTL_MS` at `clock_ms`, with its results;
/// returns how many.
pub(crate) fn sweep_idle(overlay: &mut Overlay<'_>, clock_ms: i64) -> Result<usize, StoreError> {
    let idle: Vec<Vec<u8>> = overlay
        .scan_pb::<pb::ClientSession>(keys::SESSION_PREFIX, "client session")?
        .into_iter()
        .filter(|(_, s)| clock_ms.saturating_sub(s.last_active_ms) > SESSION_TTL_MS)
        .filter_map(|(key, _)| keys::parse_session(&key).map(<[u8]>::to_vec))
        .collect();
    for client_id in &idle {
        let results: Vec<Vec<u8>> = {
            let mut cursor = overlay.cursor(&keys::session_results(client_id));
            let mut keys = Vec::new();
            while let Some((key, _)) = cursor.next_entry()? {
                keys.push(key);
            }
            keys
        };
        let writes = overlay.writes_mut();
        for key in results {
            writes.delete(key);
        }
        writes.delete(keys::session(client_id));
    }
    Ok(idle.len())
}

#[cfg(test)]
#[path = "session_test.rs"]
mod tests;
