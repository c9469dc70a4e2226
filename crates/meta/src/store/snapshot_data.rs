//! The snapshot data openraft moves around: an open snapshot file and its path. openraft reads
//! it in chunks when sending and writes received chunks into it, so a snapshot never has to fit
//! in memory.
//!
//! Invariant: a file made to receive a snapshot is removed when it is dropped unless the store
//! took it over for an install ([`SnapshotFile::keep`]), so abandoned transfers leave nothing
//! behind; a node's own snapshot file is never removed by a handle on it.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// An open snapshot file (`SnapshotData` of the meta group's type config).
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
    /// Whether dropping the handle removes the file (a transfer being received).
    remove_on_drop: bool,
}

impl SnapshotFile {
    /// A handle on the snapshot file at `path`, kept when dropped.
    pub(crate) fn existing(file: std::fs::File, path: PathBuf) -> Self {
        SnapshotFile {
            file: tokio::fs::File::from_std(file),
            path,
            remove_on_drop: false,
        }
    }

    /// A handle on a fresh file that receives a snapshot, removed when dropped unless kept.
    pub(crate) fn receiving(file: tokio::fs::File, path: PathBuf) -> Self {
        SnapshotFile {
            file,
            path,
            remove_on_drop: true,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes everything written durable, then hands the file over to the store: it is no
    /// longer removed on drop; returns its path.
    pub(crate) async fn keep(mut self) -> io::Result<PathBuf> {
        self.file.sync_all().await?;
        self.remove_on_drop = false;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    path = %self.path.display(),
                    error = %e,
                    "abandoned snapshot transfer not removed"
                ),
            }
        }
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}
