//! Files only: the segmented message logs, their indexes, the
//! committed-offsets store and the recovery checkpoint. Nothing here knows
//! about sockets or wire protocols, and nothing here blocks on a sync: the
//! slow calls are handed out as [`FileJob`]s for helper threads.

pub mod batch;
pub mod checkpoint;
mod error;
pub mod files;
pub mod format;
pub mod index;
pub mod journal;
pub mod log;
pub mod meta;
pub mod offsets;
pub mod text;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{Location, StorageError, sync_dir};
pub use files::LogFile;
pub use format::Format;
pub use journal::Mark;
pub use log::{
    AppendBatchError, Appended, Failed, Log, LogOptions, MAX_OFFSET, SYNC_SLOTS, SyncResult,
};
pub use offsets::Offsets;

/// Slow file work a journal asks a helper thread to do. Jobs of one
/// journal that do not report back run in the order given.
#[derive(Debug)]
pub enum FileJob {
    /// `fdatasync` the file; report `sync_id` back to the journal.
    Sync { sync_id: u64, file: Arc<LogFile> },
    /// `fsync` the directory; report `sync_id` back.
    SyncDir { sync_id: u64, dir: PathBuf },
    /// Replace `path` with `bytes`: write `<path>.tmp`, `fsync` it, rename
    /// it over `path`. With `report`, tell the journal how it went.
    Replace {
        path: PathBuf,
        bytes: Vec<u8>,
        report: Option<u64>,
    },
    /// Delete a file that is no longer part of any journal.
    Delete(PathBuf),
    /// Delete a directory and everything in it (a deleted topic).
    DeleteDir(PathBuf),
}

/// What became of a job that reports back.
#[derive(Debug)]
pub enum JobResult {
    Synced {
        sync_id: u64,
        /// A directory, not file data.
        dir: bool,
        result: io::Result<()>,
    },
    Replaced {
        id: u64,
        result: ReplaceResult,
    },
    /// A directory sync that could not open its directory for want of a
    /// descriptor: it did not run, so (unlike a failed `fsync`, which is
    /// final) it is safe to run again. The job comes back to be queued.
    NotRun(FileJob),
}

/// How a [`FileJob::Replace`] ended.
#[derive(Debug)]
pub enum ReplaceResult {
    /// Renamed into place (the directory is not synced yet).
    Done,
    /// Failed before the rename: `path` is untouched.
    NotReplaced(io::Error),
}

impl FileJob {
    /// Does the work on the calling thread. Returns what to report, if
    /// anything.
    pub fn run(self) -> Option<JobResult> {
        match self {
            FileJob::Sync { sync_id, file } => Some(JobResult::Synced {
                sync_id,
                dir: false,
                result: file.sync_data(),
            }),
            FileJob::SyncDir { sync_id, dir } => match File::open(&dir) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    ::log::debug!("{}: cannot open to sync ({e}); again later", dir.display());
                    Some(JobResult::NotRun(FileJob::SyncDir { sync_id, dir }))
                }
                opened => Some(JobResult::Synced {
                    sync_id,
                    dir: true,
                    result: opened.and_then(|d| d.sync_all()),
                }),
            },
            FileJob::Replace {
                path,
                bytes,
                report,
            } => {
                let result = match replace_file(&path, &bytes) {
                    Ok(()) => ReplaceResult::Done,
                    Err(e) => {
                        ::log::error!("cannot write {}: {e}", path.display());
                        ReplaceResult::NotReplaced(e)
                    }
                };
                report.map(|id| JobResult::Replaced { id, result })
            }
            FileJob::DeleteDir(path) => {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => ::log::debug!("deleted {}", path.display()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => ::log::error!("cannot delete {}: {e}", path.display()),
                }
                None
            }
            FileJob::Delete(path) => {
                match std::fs::remove_file(&path) {
                    Ok(()) => ::log::debug!("deleted {}", path.display()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => ::log::error!("cannot delete {}: {e}", path.display()),
                }
                None
            }
        }
    }
}

/// Writes `<path>.tmp`, syncs it and renames it over `path`.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = File::create(&tmp)?;
    crate::util::fs::write_all(&file, bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// CRC-32C (Castagnoli), as Kafka record batches and our index files use.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Continues a CRC-32C over more bytes.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}
