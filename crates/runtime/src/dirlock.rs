//! One process per data folder: a role takes an exclusive lock on `FOLDER/LOCK` before it
//! touches anything else in the folder, and holds it for its whole life.
//!
//! Invariant: while a [`DirLock`] exists, no other `DirLock` on the same folder can be taken,
//! by another process or by this one (the lock is an `flock` on an open file description, so a
//! second open of the file conflicts even within one process). The kernel releases the lock
//! when the holder exits, however it exits, so a crash never leaves a stale lock behind. The
//! file's content ("pid role") only tells the operator who holds it; it is never trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file's name inside the folder it guards.
pub const LOCK_FILE: &str = "LOCK";

/// A folder lock that could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
    /// Another process (or another lock in this one) holds the folder.
    #[error(
        "folder {} is locked by another process ({holder}): two processes must never share one \
         folder; stop the other process or give this one a folder of its own",
        dir.display()
    )]
    Held {
        /// The folder.
        dir: PathBuf,
        /// What the holder wrote into the lock file ("pid role"), or "unknown".
        holder: String,
    },
    /// The folder or its lock file could not be created, opened, locked or written.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create folder", "open", "lock", "write").
        op: &'static str,
        /// The folder or file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl DirLockError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Held { .. } => "dir_lock_held",
            Self::Io { .. } => "dir_lock_io",
        }
    }

    /// Whether trying again could succeed without an operator: never. A held lock means two
    /// processes were configured onto one folder (retrying would only hide that), and the I/O
    /// failures here are permissions, missing mounts or full disks.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Held { .. } | Self::Io { .. } => false,
        }
    }
}

/// An exclusive lock on a folder, released when dropped (or when the process exits). The lock
/// file itself is left in place: removing it would let a newcomer lock a fresh file while an
/// old holder still locks the unlinked one.
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl DirLock {
    /// Creates `dir` if missing and locks it for this process, recording `role` ("meta",
    /// "data") and the process id in the lock file for diagnostics; fails at once with
    /// [`DirLockError::Held`] if the folder is already locked.
    pub fn acquire(dir: &Path, role: &str) -> Result<DirLock, DirLockError> {
        let io_error = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| DirLockError::Io { op, path, source }
        };
        fs::create_dir_all(dir).map_err(io_error("create folder", dir))?;
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: until the lock is ours, the content is the holder's.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("open", &path))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                return Err(DirLockError::Held {
                    dir: dir.to_path_buf(),
                    holder: read_holder(&mut file),
                });
            }
            Err((_, errno)) => return Err(io_error("lock", &path)(io::Error::from(errno))),
        };
        let holder = format!("{} {}\n", std::process::id(), role);
        lock.set_len(0)
            .and_then(|()| lock.seek(SeekFrom::Start(0)))
            .and_then(|_| lock.write_all(holder.as_bytes()))
            .map_err(io_error("write", &path))?;
        Ok(DirLock {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The holder's note from a lock file, for the error message (bounded: the file is not ours).
fn read_holder(file: &mut File) -> String {
    let mut note = String::new();
    let read = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(256).read_to_string(&mut note));
    match read {
        Ok(_) if !note.trim().is_empty() => note.trim().to_owned(),
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_held_folder_fails_until_the_first_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("meta-1");
        let first = DirLock::acquire(&dir, "meta").unwrap();
        assert_eq!(first.dir(), dir);

        let err = DirLock::acquire(&dir, "data").unwrap_err();
        let DirLockError::Held { dir: held, holder } = &err else {
            panic!("expected Held, got {err:?}");
        };
        assert_eq!(held, &dir);
        assert_eq!(holder, &format!("{} meta", std::process::id()));
        assert_eq!(err.code(), "dir_lock_held");
        assert!(!err.is_retryable());
        let message = err.to_string();
        assert!(
            message.contains("two processes must never share one folder"),
            "{message}"
        );
        assert!(message.contains(&dir.display().to_string()), "{message}");

        drop(first);
        let second = DirLock::acquire(&dir, "data").unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(LOCK_FILE)).unwrap(),
            format!("{} data\n", std::process::id())
        );
        drop(second);
        assert!(dir.join(LOCK_FILE).exists(), "the lock file stays in place");
    }

    #[test]
    fn a_longer_note_from_an_earlier_holder_is_replaced_entirely() {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join(LOCK_FILE),
            "4000000 a-very-long-role-name\n",
        )
        .unwrap();
        let _lock = DirLock::acquire(root.path(), "gw").unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join(LOCK_FILE)).unwrap(),
            format!("{} gw\n", std::process::id())
        );
    }

    #[test]
    fn an_empty_lock_file_names_an_unknown_holder() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join(LOCK_FILE);
        // Another holder that wrote nothing (or an older build).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _held = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
        match DirLock::acquire(root.path(), "data") {
            Err(DirLockError::Held { holder, .. }) => assert_eq!(holder, "unknown"),
            other => panic!("expected Held, got {other:?}"),
        }
    }

    #[test]
    fn a_folder_that_cannot_be_created_is_an_io_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-folder");
        fs::write(&file, b"").unwrap();
        let err = DirLock::acquire(&file.join("sub"), "meta").unwrap_err();
        assert!(
            matches!(
                &err,
                DirLockError::Io {
                    op: "create folder",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "dir_lock_io");
        assert!(!err.is_retryable());
    }
}
