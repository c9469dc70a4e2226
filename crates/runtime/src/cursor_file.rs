//! A worker's cursor on disk: where it resumes after a restart.
//!
//! Invariant: the file is replaced atomically (written to a temporary name beside it, fsync'd,
//! renamed over it, its folder fsync'd), so a crash leaves the old cursor or the new one, never
//! a mix or an empty file. One worker owns one cursor file; the temporary name is fixed, so two
//! writers of one cursor would trample each other.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A cursor persisted in one file. Its calls block on the disk: async callers run them on
/// `tokio::task::spawn_blocking` (a cursor is small, so this is often skipped for one save per
/// step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    /// The cursor kept at `path` (its folder must exist when saving).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the cursor is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file a save writes before renaming it into place.
    fn temp_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map_or_else(OsString::new, ToOwned::to_owned);
        name.push(".tmp");
        self.path.with_file_name(name)
    }

    /// The folder holding the cursor (the current one for a bare file name).
    fn folder(&self) -> &Path {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    }

    /// The saved cursor, or `None` when none was ever saved.
    pub fn load(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the saved cursor with `cursor`, durably, before returning.
    pub fn save(&self, cursor: &[u8]) -> io::Result<()> {
        let temp = self.temp_path();
        let mut file = File::create(&temp)?;
        file.write_all(cursor)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &self.path)?;
        File::open(self.folder())?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_never_saved_loads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let cursor = CursorFile::new(dir.path().join("scrub.cursor"));
        assert_eq!(cursor.load().unwrap(), None);
    }

    #[test]
    fn a_save_replaces_the_cursor_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let cursor = CursorFile::new(dir.path().join("gc.cursor"));
        cursor.save(b"bucket-a/key-1").unwrap();
        assert_eq!(
            cursor.load().unwrap().as_deref(),
            Some(&b"bucket-a/key-1"[..])
        );
        cursor.save(b"b").unwrap();
        assert_eq!(cursor.load().unwrap().as_deref(), Some(&b"b"[..]));
        cursor.save(b"").unwrap();
        assert_eq!(cursor.load().unwrap().as_deref(), Some(&b""[..]));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("gc.cursor")]);
    }

    #[test]
    fn a_leftover_temporary_file_does_not_disturb_load_or_save() {
        let dir = tempfile::tempdir().unwrap();
        let cursor = CursorFile::new(dir.path().join("repair.cursor"));
        cursor.save(b"old").unwrap();
        // A crash between write and rename leaves the temporary file behind.
        fs::write(dir.path().join("repair.cursor.tmp"), b"half").unwrap();
        assert_eq!(cursor.load().unwrap().as_deref(), Some(&b"old"[..]));
        cursor.save(b"new").unwrap();
        assert_eq!(cursor.load().unwrap().as_deref(), Some(&b"new"[..]));
        assert!(!dir.path().join("repair.cursor.tmp").exists());
    }

    #[test]
    fn io_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be: reading it fails, and is not mistaken for absence.
        fs::create_dir(dir.path().join("cursor")).unwrap();
        let err = CursorFile::new(dir.path().join("cursor"))
            .load()
            .expect_err("a folder is no cursor");
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
        // A missing folder is not created.
        let orphan = CursorFile::new(dir.path().join("missing").join("cursor"));
        assert_eq!(
            orphan.save(b"x").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn the_temporary_file_sits_beside_the_cursor() {
        let cursor = CursorFile::new("/var/lib/tessera/scrub.cursor");
        assert_eq!(cursor.path(), Path::new("/var/lib/tessera/scrub.cursor"));
        assert_eq!(
            cursor.temp_path(),
            PathBuf::from("/var/lib/tessera/scrub.cursor.tmp")
        );
        assert_eq!(cursor.folder(), Path::new("/var/lib/tessera"));
        assert_eq!(CursorFile::new("scrub.cursor").folder(), Path::new("."));
    }
}
