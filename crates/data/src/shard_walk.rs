//! The ordered walk over `ROOT/shards/`.
//!
//! Invariant: the walk visits every file whose name is a canonical shard file name (see
//! [`ShardKey::file_name`], inside the prefix directory its first two hex digits name) exactly
//! once, in ascending name order. Since a file's prefix directory is the start of
//! its name, "sorted by directory, then by name" is the same order as "sorted by name", so one
//! file name is a complete cursor: a walk resumed after it visits exactly the names above it.

use crate::shard_dir::blocking;
use crate::shard_key::ShardKey;
use crate::store_error::ShardStoreError;
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Number of prefix directories under `shards/` (one per value of a data id's first byte).
const PREFIXES: u16 = 256;

/// The shard files of one prefix directory, sorted by name, keeping only names above `after`.
/// A missing directory is empty (it is created at open, but an operator may remove it).
pub(crate) fn sorted_shard_files(
    dir: &Path,
    prefix: &str,
    after: Option<&str>,
) -> Result<Vec<(String, ShardKey)>, ShardStoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ShardStoreError::io("list", dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(ShardStoreError::io("list", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with(prefix) || after.is_some_and(|after| name.as_str() <= after) {
            continue;
        }
        if let Some(key) = ShardKey::from_file_name(&name) {
            files.push((name, key));
        }
    }
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// A resumable walk over every shard file in name order; reads one prefix directory at a
/// time, so memory is bounded by the largest directory, not the store.
#[derive(Debug)]
pub(crate) struct ShardWalk {
    shards_dir: PathBuf,
    /// The next prefix directory to read.
    next_prefix: u16,
    /// Names of the current directory not yet handed out.
    pending: VecDeque<(String, ShardKey)>,
    /// Only names above this one are handed out.
    after: Option<String>,
}

impl ShardWalk {
    /// A walk from the first shard file.
    pub(crate) fn new(shards_dir: PathBuf) -> Self {
        Self {
            shards_dir,
            next_prefix: 0,
            pending: VecDeque::new(),
            after: None,
        }
    }

    /// Restarts the walk just after `cursor` (from the beginning when `cursor` is empty).
    pub(crate) fn restart_after(&mut self, cursor: &str) {
        self.pending.clear();
        if cursor.is_empty() {
            self.next_prefix = 0;
            self.after = None;
            return;
        }
        // The cursor's first two hex digits name its directory; directories before it hold
        // only smaller names.
        self.next_prefix = cursor
            .get(..2)
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .map_or(0, u16::from);
        self.after = Some(cursor.to_owned());
    }

    /// The next shard file (its name and key), or `None` once every directory was read.
    pub(crate) async fn next(&mut self) -> Result<Option<(String, ShardKey)>, ShardStoreError> {
        loop {
            if let Some(next) = self.pending.pop_front() {
                return Ok(Some(next));
            }
            if self.next_prefix >= PREFIXES {
                return Ok(None);
            }
            let prefix = hex::encode([self.next_prefix as u8]);
            self.next_prefix += 1;
            let dir = self.shards_dir.join(&prefix);
            let after = self.after.clone();
            let files =
                blocking(move || sorted_shard_files(&dir, &prefix, after.as_deref())).await?;
            self.pending = files.into();
        }
    }
}

/// Every prefix directory of `shards_dir` in order, with its two-digit name.
pub(crate) fn prefix_dirs(shards_dir: &Path) -> impl Iterator<Item = (String, PathBuf)> + '_ {
    (0..PREFIXES).map(move |p| {
        let prefix = hex::encode([p as u8]);
        let dir = shards_dir.join(&prefix);
        (prefix, dir)
    })
}
