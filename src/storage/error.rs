//! The one error type of the storage layer: which file, where, what failed.
//! Messages name files and positions, never the stored bytes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where in a file a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A line number, 1-based (text files read at start).
    Line(u64),
    /// A record offset.
    Offset(u64),
    /// A byte position.
    Byte(u64),
    /// The file as a whole.
    File,
}

/// An error from a journal, with the file it concerns.
#[derive(Debug)]
pub enum StorageError {
    /// An I/O call failed.
    Io {
        path: PathBuf,
        what: String,
        source: io::Error,
    },
    /// The file holds something other than what was written there.
    Corrupt {
        path: PathBuf,
        at: Location,
        reason: String,
    },
    /// The log reached the highest offset this broker gives out.
    OffsetLimit { path: PathBuf, limit: u64 },
    /// A sync of the file failed earlier: what was written since the last
    /// good sync may not be on disk, and Linux reports such a failure only
    /// once, so a later sync cannot vouch for it. The file takes no more
    /// writes until the broker restarts and recovers it.
    ReadOnly { path: PathBuf, cause: String },
}

impl StorageError {
    pub fn io(path: &Path, what: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            what: what.into(),
            source,
        }
    }

    pub fn corrupt(path: &Path, at: Location, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            at,
            reason: reason.into(),
        }
    }

    /// A short reason for a client, without the server's paths.
    pub fn client_reason(&self) -> String {
        match self {
            StorageError::Io { what, source, .. } => format!("{what}: {source}"),
            StorageError::Corrupt { .. } => {
                "stored data is damaged; see the broker's log".to_string()
            }
            StorageError::OffsetLimit { limit, .. } => {
                format!("the log reached the highest offset ({limit})")
            }
            StorageError::ReadOnly { .. } => {
                "a sync of this log failed; it takes no writes until the broker restarts"
                    .to_string()
            }
        }
    }

    /// Whether the disk is full (or a file size limit was hit).
    pub fn is_no_space(&self) -> bool {
        matches!(self, StorageError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT)))
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
            StorageError::Corrupt { path, at, reason } => match at {
                Location::Line(n) => write!(f, "{}:{n}: {reason}", path.display()),
                Location::Offset(n) => write!(f, "{}:offset {n}: {reason}", path.display()),
                Location::Byte(n) => write!(f, "{}:byte {n}: {reason}", path.display()),
                Location::File => write!(f, "{}: {reason}", path.display()),
            },
            StorageError::OffsetLimit { path, limit } => write!(
                f,
                "{}: the log reached offset {limit}, the highest this broker gives out",
                path.display()
            ),
            StorageError::ReadOnly { path, cause } => write!(
                f,
                "{}: takes no writes since a sync failed ({cause}); what was written after the \
                 last good sync may not be on disk; restart the broker to recover the file",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
