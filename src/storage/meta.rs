//! The data directory's metadata file, `broker.meta`: which layout the
//! directory is in, so a broker never misreads files written by another
//! version of itself.
//!
//! ```text
//! # kafka-like-broker data directory; do not edit
//! layout=1
//! ```
//!
//! `key=value` lines; `#` starts a comment. Layouts:
//! - none (no file): written before layouts existed. Rolled segments may
//!   lack an index; one is built at start, and damage anywhere is refused.
//! - 1: a rolled segment's index is written only once its data is on disk,
//!   so after a crash the newest segments without one may be cut at their
//!   first damage (see `storage::log`).
//!
//! A directory with a layout newer than [`LAYOUT`] is refused with a
//! message saying so.

use std::fs;
use std::io;
use std::path::Path;

use super::{Location, StorageError, replace_file, sync_dir};

pub const META_FILE: &str = "broker.meta";
/// The layout this broker writes.
pub const LAYOUT: u32 = 1;

/// The directory's layout, `None` if it predates layouts (or is new).
pub fn read_layout(dir: &Path) -> Result<Option<u32>, StorageError> {
    let path = dir.join(META_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, "read", e)),
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(v) = line.strip_prefix("layout=") {
            let layout: u32 = v.parse().map_err(|_| {
                StorageError::corrupt(&path, Location::Line(i as u64 + 1), "bad layout number")
            })?;
            if layout > LAYOUT {
                return Err(StorageError::corrupt(
                    &path,
                    Location::Line(i as u64 + 1),
                    format!(
                        "the data directory has layout {layout}, written by a newer broker; \
                         this one reads layouts up to {LAYOUT}"
                    ),
                ));
            }
            return Ok(Some(layout));
        }
    }
    Err(StorageError::corrupt(
        &path,
        Location::File,
        "no layout= line",
    ))
}

/// Records that the directory is in layout [`LAYOUT`].
pub fn write_layout(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(META_FILE);
    let text = format!("# kafka-like-broker data directory; do not edit\nlayout={LAYOUT}\n");
    replace_file(&path, text.as_bytes()).map_err(|e| StorageError::io(&path, "write", e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_read_written_and_future_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_layout(dir.path()).unwrap(), None);
        write_layout(dir.path()).unwrap();
        assert_eq!(read_layout(dir.path()).unwrap(), Some(LAYOUT));
        fs::write(dir.path().join(META_FILE), "layout=99\n").unwrap();
        let err = read_layout(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("layout 99") && err.contains("newer broker"),
            "{err}"
        );
    }
}
