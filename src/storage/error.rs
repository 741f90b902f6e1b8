//! The one error type of the storage layer: which file, what failed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An error from the log, with the file it concerns.
#[derive(Debug)]
pub enum StorageError {
    /// An I/O call failed.
    Io {
        path: PathBuf,
        what: String,
        source: io::Error,
    },
    /// The file holds something that is not a log line where one should be.
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

impl StorageError {
    pub fn io(path: &Path, what: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            what: what.into(),
            source,
        }
    }

    /// A short reason for a client, without the server's paths.
    pub fn client_reason(&self) -> String {
        match self {
            StorageError::Io { what, source, .. } => format!("{what}: {source}"),
            StorageError::Corrupt { .. } => {
                "log segment is corrupt; see the broker's log".to_string()
            }
        }
    }
}

/// `fsync` of a directory, so that a rename or a new file in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    crate::util::fs::sync_dir(dir).map_err(|e| StorageError::io(dir, "fsync directory", e))
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, what, source } => {
                write!(f, "{}: {what}: {source}", path.display())
            }
            StorageError::Corrupt { path, line, reason } => {
                write!(f, "{}:{line}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            StorageError::Corrupt { .. } => None,
        }
    }
}
