//! The scrubber's persisted cursor, `ROOT/scrub.state`: which pass it is in and the last shard
//! file it checked, so a restarted node resumes its pass instead of starting over.
//!
//! Invariant: the file is replaced atomically (through `tessera_runtime::worker::CursorFile`:
//! written to a temp name, fsync'd, renamed, directory fsync'd), so a crash leaves the old
//! state or the new one, never a mix. The first line names the format; a file this build cannot
//! read is set aside, never trusted.
//!
//! Format (one `key value` per line, after the format line):
//!
//! ```text
//! tessera-scrub 2
//! pass 7
//! passes_completed 6
//! last_pass_started_ms 1700000000000
//! last_pass_finished_ms 1699996400000
//! cursor 0a1b...ff.3.00000000deadbeef
//! ```

use crate::shard_key::ShardKey;
use crate::store_error::ShardStoreError;
use std::path::Path;
use tessera_runtime::worker::CursorFile;

/// The state file's name in the data directory.
pub const STATE_FILE: &str = "scrub.state";

/// First line of the state file. Format 1 named shard files without generations; such a
/// file is set aside like any other this build cannot read.
pub const STATE_FORMAT_LINE: &str = "tessera-scrub 2";

/// Where the scrubber is, as persisted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubCursor {
    /// The pass in progress, or the last one started; passes count from 1.
    pub pass: u64,
    /// Passes run to their end.
    pub passes_completed: u64,
    /// When the current (or last) pass started, ms since the epoch; 0 = never.
    pub last_pass_started_ms: i64,
    /// When the last completed pass ended, ms since the epoch; 0 = never.
    pub last_pass_finished_ms: i64,
    /// File name of the last shard checked in pass `pass`; empty at a pass start.
    pub cursor: String,
}

/// A state file this build cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrubStateError {
    /// The first line is not [`STATE_FORMAT_LINE`].
    #[error("unknown scrub state format {found:?}")]
    UnknownFormat {
        /// The first line found.
        found: String,
    },
    /// A line is not `key value` with a known key and a valid value.
    #[error("invalid scrub state line {line:?}")]
    InvalidLine {
        /// The line.
        line: String,
    },
}

impl ScrubStateError {
    /// A stable name for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownFormat { .. } => "scrub_state_unknown_format",
            Self::InvalidLine { .. } => "scrub_state_invalid_line",
        }
    }

    /// Never: reading the same bytes again gives the same answer.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl ScrubCursor {
    /// Whether a pass was started and has not ended.
    pub fn in_pass(&self) -> bool {
        self.pass > self.passes_completed
    }

    /// The file's text.
    pub fn encode(&self) -> String {
        format!(
            "{STATE_FORMAT_LINE}\npass {}\npasses_completed {}\nlast_pass_started_ms {}\n\
             last_pass_finished_ms {}\ncursor {}\n",
            self.pass,
            self.passes_completed,
            self.last_pass_started_ms,
            self.last_pass_finished_ms,
            self.cursor
        )
    }

    /// Parses the file's text; missing keys keep their defaults.
    pub fn decode(text: &str) -> Result<Self, ScrubStateError> {
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("").trim();
        if first != STATE_FORMAT_LINE {
            return Err(ScrubStateError::UnknownFormat {
                found: first.to_owned(),
            });
        }
        let mut state = Self::default();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let invalid = || ScrubStateError::InvalidLine {
                line: line.to_owned(),
            };
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "pass" => state.pass = value.parse().map_err(|_| invalid())?,
                "passes_completed" => {
                    state.passes_completed = value.parse().map_err(|_| invalid())?;
                }
                "last_pass_started_ms" => {
                    state.last_pass_started_ms = value.parse().map_err(|_| invalid())?;
                }
                "last_pass_finished_ms" => {
                    state.last_pass_finished_ms = value.parse().map_err(|_| invalid())?;
                }
                "cursor" => {
                    if !value.is_empty() && ShardKey::from_file_name(value).is_none() {
                        return Err(invalid());
                    }
                    value.clone_into(&mut state.cursor);
                }
                _ => return Err(invalid()),
            }
        }
        if state.pass < state.passes_completed {
            return Err(ScrubStateError::InvalidLine {
                line: format!("pass {}", state.pass),
            });
        }
        Ok(state)
    }
}

/// What reading the state file found.
#[derive(Debug)]
pub(crate) enum LoadedState {
    /// No state file: the scrubber never ran here.
    Absent,
    /// A state file this build can use.
    Found(ScrubCursor),
    /// A state file this build cannot use.
    Invalid(ScrubStateError),
}

/// Reads `root/scrub.state` (blocking).
pub(crate) fn load_blocking(root: &Path) -> Result<LoadedState, ShardStoreError> {
    let file = CursorFile::new(root.join(STATE_FILE));
    match file.load() {
        Ok(Some(bytes)) => Ok(match std::str::from_utf8(&bytes) {
            Ok(text) => match ScrubCursor::decode(text) {
                Ok(state) => LoadedState::Found(state),
                Err(e) => LoadedState::Invalid(e),
            },
            Err(_) => LoadedState::Invalid(ScrubStateError::UnknownFormat {
                found: "(not UTF-8)".to_owned(),
            }),
        }),
        Ok(None) => Ok(LoadedState::Absent),
        Err(e) => Err(ShardStoreError::io("read", file.path())(e)),
    }
}

/// Replaces `root/scrub.state` atomically with `state` (blocking).
pub(crate) fn save_blocking(root: &Path, state: &ScrubCursor) -> Result<(), ShardStoreError> {
    let file = CursorFile::new(root.join(STATE_FILE));
    file.save(state.encode().as_bytes())
        .map_err(ShardStoreError::io("write", file.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ScrubCursor {
        ScrubCursor {
            pass: 7,
            passes_completed: 6,
            last_pass_started_ms: 1_700_000_000_000,
            last_pass_finished_ms: 1_699_996_400_000,
            cursor: format!("{}.3.00000000deadbeef", "0a".repeat(16)),
        }
    }

    #[test]
    fn a_state_round_trips_through_its_text() {
        let state = sample();
        assert_eq!(ScrubCursor::decode(&state.encode()), Ok(state.clone()));
        assert!(state.in_pass());
        let idle = ScrubCursor {
            pass: 6,
            cursor: String::new(),
            ..state
        };
        assert_eq!(ScrubCursor::decode(&idle.encode()), Ok(idle.clone()));
        assert!(!idle.in_pass());
    }

    #[test]
    fn damaged_text_is_refused() {
        let good = sample().encode();
        let cursor = sample().cursor;
        let format = |found: &str| ScrubStateError::UnknownFormat {
            found: found.to_owned(),
        };
        let line = |line: &str| ScrubStateError::InvalidLine {
            line: line.to_owned(),
        };
        let no_generation = format!("{}.3", "0a".repeat(16));
        let cases = [
            (
                good.replace(STATE_FORMAT_LINE, "tessera-scrub 1"),
                format("tessera-scrub 1"),
            ),
            (
                good.replace(".3.00000000deadbeef", ".3"),
                line(&format!("cursor {no_generation}")),
            ),
            (good.replace("pass 7", "pass seven"), line("pass seven")),
            (
                good.replace("cursor 0a", "cursor ../0a"),
                line(&format!("cursor ../{cursor}")),
            ),
            // Fewer passes started than completed.
            (good.replace("pass 7", "pass 5"), line("pass 5")),
            (format!("{good}colour blue\n"), line("colour blue")),
            (String::new(), format("")),
        ];
        for (text, expected) in cases {
            assert_eq!(ScrubCursor::decode(&text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_blocking(dir.path()).unwrap(),
            LoadedState::Absent
        ));
        save_blocking(dir.path(), &sample()).unwrap();
        let mut next = sample();
        next.cursor = format!("{}.0.0000000000000001", "ff".repeat(16));
        save_blocking(dir.path(), &next).unwrap();
        match load_blocking(dir.path()).unwrap() {
            LoadedState::Found(state) => assert_eq!(state, next),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(dir.path().join(STATE_FILE), "junk").unwrap();
        assert!(matches!(
            load_blocking(dir.path()).unwrap(),
            LoadedState::Invalid(ScrubStateError::UnknownFormat { .. })
        ));
    }
}
