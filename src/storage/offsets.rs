//! Committed consumer-group offsets: an append-only file, compacted when it
//! is opened and whenever it grows well past what it holds.
//!
//! # File format
//! `consumer_offsets.txt` in the data directory, one line per commit:
//!
//! ```text
//! <topic> <group> <offset>
//! ```
//!
//! Topic and group names never contain spaces (see
//! [`crate::util::is_valid_name`]); the offset is decimal. The last line
//! for a `(topic, group)` pair wins. Commits are staged and written with one
//! `write` per loop turn, like messages, and a `COMMITTED` reply waits for
//! that write. Compaction writes the live entries to
//! `consumer_offsets.txt.tmp`, syncs it, and renames it over the old file,
//! so a crash at any point leaves one complete file.
//!
//! Recovery follows the message log's rules: a torn last line is cut with a
//! warning; any other line that does not parse stops the open with an error
//! naming the file and line, leaving the file untouched.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{info, warn};

use super::{StorageError, sync_dir};
use crate::util::fs::write_all;
use crate::util::{is_valid_name, parse_u64, push_u64};

/// The file name in the data directory.
pub const OFFSETS_FILE: &str = "consumer_offsets.txt";

/// Rewrite the file once it is this many times the size of its live
/// entries (and at least [`COMPACT_MIN_BYTES`]).
const COMPACT_RATIO: u64 = 4;
const COMPACT_MIN_BYTES: u64 = 1 << 20;

type Key = (Box<[u8]>, Box<[u8]>);

/// The committed offsets of every consumer group, per topic.
#[derive(Debug)]
pub struct Offsets {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    map: HashMap<Key, u64>,
    batch: Vec<u8>,
    /// Staged commits with the value each replaced, to undo a failed write.
    undo: Vec<(Key, Option<u64>)>,
    /// Commits are numbered; `flushed` is one past the last one written.
    next: u64,
    flushed: u64,
    /// Commits covered by an `fdatasync`; one sync in flight at a time.
    synced: u64,
    sync_in_flight: bool,
    dirty_tail: bool,
}

impl Offsets {
    /// Opens (creating if needed) the offsets file in `dir`, recovers and
    /// compacts it.
    pub fn open(dir: &Path) -> Result<Offsets, StorageError> {
        let path = dir.join(OFFSETS_FILE);
        let io_err = |what: &str, e| StorageError::io(&path, what, e);
        let content = match fs::read(&path) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", e)),
        };
        let mut map = HashMap::new();
        let mut lines = 0u64;
        let complete = content
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Every complete line; the piece after the last newline is not one.
        let body = &content[..complete.saturating_sub(1)];
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            if complete == 0 {
                break;
            }
            let (key, offset) = parse_line(line).ok_or_else(|| StorageError::Corrupt {
                path: path.clone(),
                line: i as u64 + 1,
                reason: format!(
                    "expected \"<topic> <group> <offset>\", found {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(60)])
                ),
            })?;
            map.insert(key, offset);
            lines += 1;
        }
        if complete < content.len() {
            warn!(
                "offsets={} cutting a torn last line: {} bytes had no newline",
                path.display(),
                content.len() - complete
            );
        }
        let mut offsets = Offsets {
            file: Arc::new(open_append(&path)?),
            path,
            len: complete as u64,
            map,
            batch: Vec::new(),
            undo: Vec::new(),
            next: 0,
            flushed: 0,
            synced: 0,
            sync_in_flight: false,
            dirty_tail: complete < content.len(),
        };
        if lines as usize > offsets.map.len() || offsets.dirty_tail {
            offsets.compact()?;
        }
        info!(
            "offsets={} recovered groups={}",
            offsets.path.display(),
            offsets.map.len()
        );
        Ok(offsets)
    }

    /// The committed offset of `group` in `topic`.
    pub fn get(&self, topic: &[u8], group: &[u8]) -> Option<u64> {
        // A borrowed-key lookup without allocating needs a map keyed by a
        // type that borrows as a pair; commits are rare, so allocate.
        self.map.get(&(topic.into(), group.into())).copied()
    }

    /// Lowers any committed offset of `topic` above `end` to `end`: after a
    /// crash that lost the log's unsynced tail, a committed offset must not
    /// point past the log. Returns how many were lowered.
    pub fn clamp(&mut self, topic: &[u8], end: u64) -> Result<usize, StorageError> {
        let mut lowered = 0;
        let keys: Vec<Key> = self
            .map
            .iter()
            .filter(|((t, _), o)| &**t == topic && **o > end)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            warn!(
                "offsets={} group {} of topic {} pointed past the log end; lowered to {end}",
                self.path.display(),
                String::from_utf8_lossy(&key.1),
                String::from_utf8_lossy(topic)
            );
            self.stage(&key.0, &key.1, end);
            lowered += 1;
        }
        if lowered > 0 {
            self.flush()?;
        }
        Ok(lowered)
    }

    /// Every entry, for listing.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8], u64)> {
        self.map.iter().map(|((t, g), o)| (&**t, &**g, *o))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One past the last commit covered by an `fdatasync`.
    pub fn synced_seq(&self) -> u64 {
        self.synced
    }

    /// Whether a sync is under way on the sync thread.
    pub fn sync_in_flight(&self) -> bool {
        self.sync_in_flight
    }

    /// Whether written commits wait for a sync.
    pub fn has_unsynced(&self) -> bool {
        self.synced < self.flushed
    }

    /// The file and sequence number a sync should cover, marking one as
    /// under way; `None` if one is, or nothing is unsynced.
    pub fn begin_sync(&mut self) -> Option<(Arc<File>, u64)> {
        if self.sync_in_flight || self.synced >= self.flushed {
            return None;
        }
        self.sync_in_flight = true;
        Some((self.file.clone(), self.flushed))
    }

    pub fn sync_done(&mut self, seq: u64) {
        self.sync_in_flight = false;
        self.synced = self.synced.max(seq.min(self.flushed));
    }

    /// A sync failed: the commits since the last good one are reported as
    /// failed (they stay in the file; a client retries its commit). Returns
    /// the first such sequence number.
    pub fn sync_failed(&mut self) -> u64 {
        self.sync_in_flight = false;
        let from = self.synced;
        self.synced = self.flushed;
        from
    }

    /// The number assigned to the next staged commit.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// One past the number of the last commit written.
    pub fn flushed_seq(&self) -> u64 {
        self.flushed
    }

    pub fn has_staged(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Records a commit (visible to [`get`](Self::get) at once) and stages
    /// it for the next flush. Returns its sequence number.
    pub fn stage(&mut self, topic: &[u8], group: &[u8], offset: u64) -> u64 {
        let key: Key = (topic.into(), group.into());
        let previous = self.map.insert(key.clone(), offset);
        self.undo.push((key, previous));
        self.batch.extend_from_slice(topic);
        self.batch.push(b' ');
        self.batch.extend_from_slice(group);
        self.batch.push(b' ');
        push_u64(&mut self.batch, offset);
        self.batch.push(b'\n');
        self.next += 1;
        self.next - 1
    }

    /// Writes the staged commits with one `write`; on failure undoes them.
    /// Returns the sequence numbers written.
    pub fn flush(&mut self) -> Result<Range<u64>, StorageError> {
        let written = self.flushed..self.next;
        if self.batch.is_empty() {
            return Ok(written);
        }
        let result = self.cut_dirty_tail().and_then(|()| {
            write_all(&self.file, &self.batch).map_err(|e| {
                StorageError::io(&self.path, format!("append at byte {}", self.len), e)
            })
        });
        let batch_len = self.batch.len() as u64;
        self.batch.clear();
        match result {
            Ok(()) => {
                self.len += batch_len;
                self.flushed = self.next;
                self.undo.clear();
                if self.len > COMPACT_MIN_BYTES
                    && self.len > COMPACT_RATIO * self.live_bytes()
                    && let Err(e) = self.compact()
                {
                    warn!("{e}; will keep appending to the old file");
                }
                Ok(written)
            }
            Err(err) => {
                for (key, previous) in self.undo.drain(..).rev() {
                    match previous {
                        Some(v) => self.map.insert(key, v),
                        None => self.map.remove(&key),
                    };
                }
                self.next = self.flushed;
                self.dirty_tail = true;
                if let Err(cut) = self.cut_dirty_tail() {
                    log::error!("{cut}; will retry before the next append");
                }
                Err(err)
            }
        }
    }

    /// Forces written commits to stable storage.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(|e| StorageError::io(&self.path, "fdatasync", e))?;
        self.synced = self.flushed;
        Ok(())
    }

    fn live_bytes(&self) -> u64 {
        self.map
            .keys()
            .map(|(t, g)| (t.len() + g.len() + 23) as u64)
            .sum()
    }

    fn cut_dirty_tail(&mut self) -> Result<(), StorageError> {
        if self.dirty_tail {
            self.file.set_len(self.len).map_err(|e| {
                StorageError::io(&self.path, format!("truncate to {}", self.len), e)
            })?;
            self.dirty_tail = false;
        }
        Ok(())
    }

    /// Rewrites the file with only the live entries: write a temp file, sync
    /// it, rename it over the old one, sync the directory.
    fn compact(&mut self) -> Result<(), StorageError> {
        let tmp = self.path.with_extension("txt.tmp");
        let mut content = Vec::new();
        let mut entries: Vec<_> = self.map.iter().collect();
        entries.sort();
        for ((topic, group), offset) in entries {
            content.extend_from_slice(topic);
            content.push(b' ');
            content.extend_from_slice(group);
            content.push(b' ');
            push_u64(&mut content, *offset);
            content.push(b'\n');
        }
        let io_err = |what: &str, e| StorageError::io(&tmp, what, e);
        let mut file = File::create(&tmp).map_err(|e| io_err("create", e))?;
        file.write_all(&content).map_err(|e| io_err("write", e))?;
        file.sync_all().map_err(|e| io_err("fsync", e))?;
        fs::rename(&tmp, &self.path).map_err(|e| io_err("rename", e))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = Arc::new(open_append(&self.path)?);
        self.len = content.len() as u64;
        // The new file was synced before the rename.
        self.synced = self.flushed;
        self.dirty_tail = false;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| StorageError::io(path, "open", e))
}

fn parse_line(line: &[u8]) -> Option<(Key, u64)> {
    let mut parts = line.split(|&b| b == b' ');
    let (topic, group, offset) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_valid_name(topic) || !is_valid_name(group) {
        return None;
    }
    Some(((topic.into(), group.into()), parse_u64(offset)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_reopen_and_the_file_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Offsets::open(dir.path()).unwrap();
            assert_eq!(o.get(b"t", b"g"), None);
            for i in 0..100 {
                o.stage(b"t", b"g", i);
            }
            o.stage(b"default", b"g", 5);
            o.flush().unwrap();
            assert_eq!(o.get(b"t", b"g"), Some(99));
        }
        let o = Offsets::open(dir.path()).unwrap();
        assert_eq!(o.get(b"t", b"g"), Some(99));
        assert_eq!(o.get(b"default", b"g"), Some(5));
        assert_eq!(
            fs::read_to_string(dir.path().join(OFFSETS_FILE)).unwrap(),
            "default g 5\nt g 99\n"
        );
    }

    #[test]
    fn torn_tail_cut_and_corrupt_line_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OFFSETS_FILE);
        fs::write(&path, "t g 1\nt g 2\nt g 3").unwrap();
        let o = Offsets::open(dir.path()).unwrap();
        assert_eq!(o.get(b"t", b"g"), Some(2));
        assert_eq!(fs::read_to_string(&path).unwrap(), "t g 2\n");

        let bad = "t g 1\nt ../x 2\n";
        fs::write(&path, bad).unwrap();
        let err = Offsets::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains(&format!("{}:2:", path.display())),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), bad);
    }

    #[test]
    fn clamp_lowers_offsets_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Offsets::open(dir.path()).unwrap();
        o.stage(b"t", b"a", 10);
        o.stage(b"t", b"b", 3);
        o.flush().unwrap();
        assert_eq!(o.clamp(b"t", 5).unwrap(), 1);
        assert_eq!((o.get(b"t", b"a"), o.get(b"t", b"b")), (Some(5), Some(3)));
        drop(o);
        assert_eq!(Offsets::open(dir.path()).unwrap().get(b"t", b"a"), Some(5));
    }

    #[test]
    fn failed_write_undoes_the_staged_commits() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Offsets::open(dir.path()).unwrap();
        o.stage(b"t", b"g", 1);
        o.flush().unwrap();
        o.file = Arc::new(OpenOptions::new().append(true).open("/dev/full").unwrap());
        o.stage(b"t", b"g", 2);
        o.stage(b"t", b"new", 2);
        assert!(o.flush().is_err());
        assert_eq!(o.get(b"t", b"g"), Some(1));
        assert_eq!(o.get(b"t", b"new"), None);
        assert_eq!(o.next_seq(), o.flushed_seq());
    }
}
