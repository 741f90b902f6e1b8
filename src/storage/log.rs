//! The message log of one topic: a series of append-only text segments,
//! read back through sparse indexes.
//!
//! # Files
//! The *active* segment keeps the topic's plain name (`kafka_log.txt` for
//! the default topic), so `tail -F kafka_log.txt` keeps working. When it
//! reaches the segment size it is *rolled*: synced, then renamed to
//! `<name>.<first offset, 20 digits>` (e.g.
//! `kafka_log.txt.00000000000001048576`), and a new active file is started.
//! Rolled segments are never written again; retention deletes them whole,
//! oldest first. `docs/STORAGE.md` documents the layout for users.
//!
//! # Line format
//! One line per message, exactly as the original project wrote it:
//!
//! ```text
//! offset:0 message:hello
//! offset:1 message:world
//! ```
//!
//! Offsets increase by one per line across segments. The message is every
//! byte between `message:` and the `\n`; it may hold any byte except `\n`.
//!
//! # Writing
//! Messages are first *staged* into an in-memory batch and get their
//! offsets at once; [`Log::flush`] writes the batch with one `write` call
//! (more only when the batch crosses a segment boundary). If a write fails
//! the file is cut back to its last good length and the staged offsets are
//! given back, so an error never consumes an offset and never leaves half a
//! line behind. Durability is tracked separately: [`Log::synced_offset`]
//! says what an `fdatasync` has covered; the caller decides whether readers
//! and acknowledgements wait for it.
//!
//! # Reading
//! Each segment keeps a sparse index, one `(offset, byte position)` entry
//! every [`INDEX_INTERVAL`] bytes. A read starts at the nearest entry at or
//! before the wanted offset (or where the previous read of that segment
//! stopped) and scans forward with `pread`. Rolled segments are opened and
//! indexed only when first read, and at most a few stay loaded, so memory
//! does not grow with the amount of data on disk.
//!
//! # Recovery
//! [`Log::open`] scans only the active segment: every line must be
//! `offset:<n> message:<bytes>` with `n` following the previous line. A last
//! line without its `\n` (a write torn by a crash) is cut off with a
//! warning; anything else that does not parse stops the open with an error
//! naming the file and line, and the file is left untouched. Rolled
//! segments are checked by their first and last lines (cheap), which must
//! chain without gaps; a rolled segment that fails is refused with its name,
//! or, with `skip_corrupt`, dropped together with everything older. A fault
//! in the middle of a rolled segment is found when it is first read, and
//! reads in it then fail with `file:line`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use log::{error, info, warn};
use memchr::memchr;

use super::StorageError;
use crate::util::fs::write_all;
use crate::util::{digits, parse_u64, push_u64};

/// Bytes of log between two sparse index entries.
pub const INDEX_INTERVAL: u64 = 4096;
/// Rolled segments kept open and indexed at once.
const MAX_LOADED_SEGMENTS: usize = 8;
/// Syncs of one log that may run at once. Each covers what was written
/// before it began, so a new message waits for one sync, not for the one
/// in progress and then its own; and concurrent `fdatasync` calls share
/// journal commits (measured here: 3,100 syncs/s one at a time, 5,000 with
/// three at once).
pub const SYNC_SLOTS: usize = 3;

const HEADER: &[u8] = b"offset:";
const SEPARATOR: &[u8] = b" message:";

/// How a log is laid out and checked.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// Roll the active segment once it would pass this size.
    pub segment_bytes: u64,
    /// Drop (do not refuse) rolled segments that fail their start checks.
    pub skip_corrupt: bool,
    /// Acknowledgements wait for syncs (`--fsync always`): a failed sync
    /// cuts off what it should have covered.
    pub cut_on_sync_failure: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            skip_corrupt: false,
            cut_on_sync_failure: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    offset: u64,
    pos: u64,
}

/// A segment's sparse index and where its last read stopped.
#[derive(Debug)]
struct Index {
    entries: Vec<IndexEntry>,
    /// Where the last read stopped, so sequential readers do not rescan.
    hint: IndexEntry,
}

impl Index {
    fn new(base: u64) -> Self {
        let start = IndexEntry {
            offset: base,
            pos: 0,
        };
        Index {
            entries: vec![start],
            hint: start,
        }
    }

    /// The best known position at or before `offset`.
    fn seek(&self, offset: u64) -> IndexEntry {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        let entry = self.entries[i.saturating_sub(1)];
        if self.hint.offset <= offset && self.hint.offset > entry.offset {
            self.hint
        } else {
            entry
        }
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct Active {
    path: PathBuf,
    file: Arc<File>,
    /// Separate opens of the same file, one per sync slot. Linux reports a
    /// writeback error once per open file description, so with their own
    /// descriptions concurrent syncs, and the broker's own syncs on `file`,
    /// each see every error instead of one hiding it from the others.
    sync_files: Vec<Arc<File>>,
    base: u64,
    /// Bytes of complete lines in the file.
    len: u64,
    index: Index,
    /// Position of the last index entry.
    last_indexed: u64,
}

/// A rolled segment: read-only, opened and indexed on first read.
#[derive(Debug)]
struct Rolled {
    path: PathBuf,
    base: u64,
    /// One past its last offset.
    end: u64,
    size: u64,
    modified: SystemTime,
    loaded: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    file: File,
    index: Index,
    last_used: u64,
}

/// Where a staged message lands: which segment of the batch, and where.
#[derive(Debug, Clone, Copy)]
struct PendingIndex {
    /// 0 = the current active segment, k = the one after the k-th roll.
    segment: usize,
    entry: IndexEntry,
}

/// An append-only, segmented log of messages.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    /// The active segment's file name; rolled ones add `.<offset>`.
    name: String,
    options: LogOptions,
    active: Active,
    rolled: Vec<Rolled>,
    /// The offset the next staged message gets.
    next: u64,
    /// One past the last message written to the file.
    written: u64,
    /// One past the last message an `fdatasync` covered, and the active
    /// segment's length then.
    synced: u64,
    synced_len: u64,
    /// Which sync slots have a sync under way.
    slots_busy: [bool; SYNC_SLOTS],
    /// The highest offset a sync under way (or done) will cover.
    sync_begun: u64,
    /// Lines staged for the next flush.
    batch: Vec<u8>,
    /// Where the batch crosses into a new segment: (batch position, offset).
    rolls: Vec<(usize, u64)>,
    pending_index: Vec<PendingIndex>,
    /// Length of the segment the next staged line goes to, and of its last
    /// index entry, counting staged lines.
    staged_segment_len: u64,
    staged_last_indexed: u64,
    /// A failed append left bytes past the active length that could not be
    /// cut yet.
    dirty_tail: bool,
    /// Rolled segments to sync in the background (when acknowledgements do
    /// not wait for syncs, rolling does not wait either).
    background_syncs: Vec<Arc<File>>,
    uses: u64,
}

impl Log {
    /// Opens (creating if needed) the log whose active segment is
    /// `dir/name`, and recovers it.
    pub fn open(dir: &Path, name: &str, options: LogOptions) -> Result<Log, StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, "create directory", e))?;
        let mut rolled = find_rolled(dir, name)?;
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, "open", e))?;
        let scan = scan(&path, &mut file, None)?;
        if scan.torn > 0 {
            warn!(
                "log={} cutting a torn last line: {} bytes after byte {} had no newline",
                path.display(),
                scan.torn,
                scan.len
            );
            file.set_len(scan.len)
                .map_err(|e| StorageError::io(&path, format!("truncate to {}", scan.len), e))?;
        }
        check_rolled(&path, &mut rolled, scan.base, options.skip_corrupt)?;
        let base = match scan.base {
            Some(base) => base,
            None => rolled.last().map_or(0, |r| r.end),
        };
        let next = base + scan.count;
        let mut index = Index::new(base);
        index.entries = scan.index;
        if index.entries.is_empty() {
            index.entries.push(IndexEntry {
                offset: base,
                pos: 0,
            });
        }
        let last_indexed = index.entries.last().map_or(0, |e| e.pos);
        info!(
            "log={} recovered first_offset={} next_offset={next} active_bytes={} rolled_segments={}",
            path.display(),
            rolled.first().map_or(base, |r| r.base),
            scan.len,
            rolled.len()
        );
        Ok(Log {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            options,
            active: Active {
                sync_files: open_for_sync(&path)?,
                path,
                file: Arc::new(file),
                base,
                len: scan.len,
                index,
                last_indexed,
            },
            rolled,
            next,
            written: next,
            synced: next,
            synced_len: scan.len,
            slots_busy: [false; SYNC_SLOTS],
            sync_begun: next,
            batch: Vec::new(),
            rolls: Vec::new(),
            pending_index: Vec::new(),
            staged_segment_len: scan.len,
            staged_last_indexed: last_indexed,
            dirty_tail: false,
            background_syncs: Vec::new(),
            uses: 0,
        })
    }

    /// The active segment's path.
    pub fn path(&self) -> &Path {
        &self.active.path
    }

    /// The oldest offset still stored.
    pub fn first_offset(&self) -> u64 {
        self.rolled.first().map_or(self.active.base, |r| r.base)
    }

    /// The offset the next message will get (staged messages included).
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// One past the last message in the file.
    pub fn written_offset(&self) -> u64 {
        self.written
    }

    /// One past the last message known to be on stable storage.
    pub fn synced_offset(&self) -> u64 {
        self.synced
    }

    /// Bytes stored, all segments.
    pub fn len_bytes(&self) -> u64 {
        self.active.len + self.rolled.iter().map(|r| r.size).sum::<u64>()
    }

    /// Number of segments, the active one included.
    pub fn segments(&self) -> usize {
        self.rolled.len() + 1
    }

    /// Whether messages are staged but not yet written.
    pub fn has_staged(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Bytes staged for the next flush.
    pub fn staged_bytes(&self) -> usize {
        self.batch.len()
    }

    /// Stages `message` for the next [`flush`](Self::flush) and returns its
    /// offset. Nothing is in the file until the flush succeeds.
    pub fn stage(&mut self, message: &[u8]) -> u64 {
        let offset = self.next;
        let line_len = (HEADER.len() + SEPARATOR.len() + digits(offset) + message.len() + 1) as u64;
        if self.staged_segment_len > 0
            && self.staged_segment_len + line_len > self.options.segment_bytes
        {
            self.rolls.push((self.batch.len(), offset));
            self.staged_segment_len = 0;
            self.staged_last_indexed = 0;
        } else if self.staged_segment_len - self.staged_last_indexed >= INDEX_INTERVAL {
            self.pending_index.push(PendingIndex {
                segment: self.rolls.len(),
                entry: IndexEntry {
                    offset,
                    pos: self.staged_segment_len,
                },
            });
            self.staged_last_indexed = self.staged_segment_len;
        }
        self.batch.extend_from_slice(HEADER);
        push_u64(&mut self.batch, offset);
        self.batch.extend_from_slice(SEPARATOR);
        self.batch.extend_from_slice(message);
        self.batch.push(b'\n');
        self.staged_segment_len += line_len;
        self.next += 1;
        offset
    }

    /// Writes every staged message, rolling segments where the batch
    /// crosses the size limit, and returns the offsets written. On failure
    /// nothing more of the batch stays in the file, the offsets not written
    /// are given back, and `written_offset` says where the good part ends.
    pub fn flush(&mut self) -> Result<Range<u64>, StorageError> {
        let start_offset = self.written;
        if self.batch.is_empty() {
            return Ok(start_offset..start_offset);
        }
        let result = self.write_batch();
        self.batch.clear();
        if self.batch.capacity() > 8 << 20 {
            self.batch.shrink_to(1 << 20);
        }
        self.rolls.clear();
        self.pending_index.clear();
        if result.is_err() {
            self.next = self.written;
        }
        self.staged_segment_len = self.active.len;
        self.staged_last_indexed = self.active.last_indexed;
        result.map(|()| start_offset..self.written)
    }

    fn write_batch(&mut self) -> Result<(), StorageError> {
        self.cut_dirty_tail()?;
        let rolls = std::mem::take(&mut self.rolls);
        let mut chunk_start = 0;
        for (segment, &(pos, offset)) in rolls.iter().enumerate() {
            self.write_chunk(chunk_start, pos, offset, segment)?;
            self.roll()?;
            chunk_start = pos;
        }
        let end = self.batch.len();
        let next = self.next;
        self.write_chunk(chunk_start, end, next, rolls.len())
    }

    /// Writes `batch[from..to]` (the messages up to `end_offset`) to the
    /// active segment.
    fn write_chunk(
        &mut self,
        from: usize,
        to: usize,
        end_offset: u64,
        segment: usize,
    ) -> Result<(), StorageError> {
        if from < to {
            if let Err(e) = write_all(&self.active.file, &self.batch[from..to]) {
                self.dirty_tail = true;
                if let Err(cut) = self.cut_dirty_tail() {
                    error!("{cut}; will retry before the next append");
                }
                return Err(StorageError::io(
                    &self.active.path,
                    format!("append at byte {}", self.active.len),
                    e,
                ));
            }
            self.active.len += (to - from) as u64;
        }
        for p in self.pending_index.iter().filter(|p| p.segment == segment) {
            self.active.index.entries.push(p.entry);
            self.active.last_indexed = p.entry.pos;
        }
        self.written = end_offset;
        Ok(())
    }

    /// Closes the active segment and starts a new one at `written`: sync,
    /// rename to `<name>.<base>`, create the new file, sync the directory.
    fn roll(&mut self) -> Result<(), StorageError> {
        if self.active.len == 0 {
            return Ok(());
        }
        let path = self.active.path.clone();
        if self.options.cut_on_sync_failure {
            // Acknowledgements wait for syncs, so little is unsynced here
            // (what was written since the last sync began): sync it now, so
            // the synced mark never has to span two files.
            if let Err(e) = self.active.file.sync_data() {
                self.cut_unsynced();
                return Err(StorageError::io(&path, "fdatasync before rolling", e));
            }
            self.synced = self.written;
            self.synced_len = self.active.len;
            self.sync_begun = self.sync_begun.max(self.written);
        } else {
            // Up to a whole segment may be unsynced: the sync thread does
            // it, so the loop serving clients never waits for it.
            self.background_syncs
                .push(self.active.sync_files[0].clone());
        }
        let rolled_path = self.dir.join(rolled_name(&self.name, self.active.base));
        fs::rename(&path, &rolled_path).map_err(|e| {
            StorageError::io(&path, format!("rename to {}", rolled_path.display()), e)
        })?;
        let opened = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, "create new segment", e))
            .and_then(|file| Ok((file, open_for_sync(&path)?)));
        let (file, sync_files) = match opened {
            Ok(files) => files,
            Err(e) => {
                // Undo, so appends go on in the old segment.
                if let Err(back) = fs::rename(&rolled_path, &path) {
                    error!("{}: cannot rename back: {back}", rolled_path.display());
                }
                return Err(e);
            }
        };
        let new_base = self.written;
        let old = std::mem::replace(
            &mut self.active,
            Active {
                path,
                file: Arc::new(file),
                sync_files,
                base: new_base,
                len: 0,
                index: Index::new(new_base),
                last_indexed: 0,
            },
        );
        // Keep the old file open and indexed: it is the likeliest to be read.
        let loaded = Arc::try_unwrap(old.file).ok().map(|file| Loaded {
            file,
            index: old.index,
            last_used: self.uses,
        });
        self.rolled.push(Rolled {
            path: rolled_path,
            base: old.base,
            end: new_base,
            size: old.len,
            modified: SystemTime::now(),
            loaded,
        });
        self.evict_loaded();
        self.synced_len = 0;
        super::sync_dir(&self.dir)?;
        info!(
            "log={} rolled segment at offset {new_base}",
            self.active.path.display()
        );
        Ok(())
    }

    /// Cuts whatever a failed append left past the last good length.
    fn cut_dirty_tail(&mut self) -> Result<(), StorageError> {
        if self.dirty_tail {
            self.active.file.set_len(self.active.len).map_err(|e| {
                StorageError::io(
                    &self.active.path,
                    format!("truncate to {} after a failed append", self.active.len),
                    e,
                )
            })?;
            self.dirty_tail = false;
        }
        Ok(())
    }

    /// What to hand to a sync: a file and the offset and length the sync
    /// covers once it returns. `None` if nothing new was written since the
    /// last sync began, or [`SYNC_SLOTS`] syncs are under way.
    pub fn begin_sync(&mut self) -> Option<SyncPoint> {
        if self.sync_begun >= self.written {
            return None;
        }
        let slot = self.slots_busy.iter().position(|busy| !busy)?;
        self.slots_busy[slot] = true;
        self.sync_begun = self.written;
        Some(SyncPoint {
            file: self.active.sync_files[slot].clone(),
            offset: self.written,
            len: self.active.len,
            slot,
        })
    }

    /// Whether something written is covered by no sync begun yet.
    pub fn sync_wanted(&self) -> bool {
        self.sync_begun < self.written
    }

    /// After a failed [`sync`](Self::sync): with `cut_on_sync_failure`, cut
    /// off what was not synced and return the first offset given back.
    pub fn cut_unsynced_after_failure(&mut self) -> Option<u64> {
        (self.options.cut_on_sync_failure && self.synced < self.written)
            .then(|| self.cut_unsynced())
    }

    /// Rolled segments waiting for a background sync.
    pub fn take_background_syncs(&mut self) -> Vec<Arc<File>> {
        std::mem::take(&mut self.background_syncs)
    }

    /// A sync begun with [`begin_sync`](Self::begin_sync) succeeded.
    pub fn sync_done(&mut self, point: &SyncDone) {
        self.slots_busy[point.slot] = false;
        if point.offset > self.synced && point.offset <= self.written {
            self.synced = point.offset;
            self.synced_len = point.len;
        }
    }

    /// A sync failed. With `cut_on_sync_failure` (acknowledgements wait for
    /// syncs) the unsynced tail is cut off and its offsets given back, as
    /// nothing there may ever be acknowledged; returns the first offset
    /// lost. A failure for a sync already made moot (the segment was rolled,
    /// and synced, meanwhile) changes nothing.
    pub fn sync_failed(&mut self, point: &SyncDone) -> Option<u64> {
        self.slots_busy[point.slot] = false;
        if !self.options.cut_on_sync_failure
            || point.offset <= self.synced
            || self.synced >= self.written
        {
            return None;
        }
        Some(self.cut_unsynced())
    }

    /// Cuts the active segment back to what was synced; returns the first
    /// offset given back.
    fn cut_unsynced(&mut self) -> u64 {
        let from = self.synced;
        self.active.len = self.synced_len;
        self.dirty_tail = true;
        if let Err(e) = self.cut_dirty_tail() {
            error!("{e}; will retry before the next append");
        }
        self.written = self.synced;
        self.next = self.synced;
        self.sync_begun = self.synced;
        let len = self.active.len;
        self.active
            .index
            .entries
            .retain(|e| e.pos < len || e.pos == 0);
        self.active.last_indexed = self.active.index.entries.last().map_or(0, |e| e.pos);
        self.active.index.hint = IndexEntry {
            offset: self.active.base,
            pos: 0,
        };
        self.staged_segment_len = self.active.len;
        self.staged_last_indexed = self.active.last_indexed;
        from
    }

    /// Forces written data to stable storage now (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.active
            .file
            .sync_data()
            .map_err(|e| StorageError::io(&self.active.path, "fdatasync", e))?;
        self.synced = self.written;
        self.synced_len = self.active.len;
        self.sync_begun = self.sync_begun.max(self.written);
        Ok(())
    }

    /// Reads up to `max_count` messages from offset `from` (at least
    /// [`first_offset`](Self::first_offset)), but not at or past `end`,
    /// calling `emit(offset, message)` for each, and returns the offset
    /// after the last one emitted (`from` if none). Stops at the end of a
    /// segment, and before a message that would take the total past
    /// `max_bytes` (but always emits at least one if there is one). `buf`
    /// is scratch space, reused between calls.
    pub fn read(
        &mut self,
        from: u64,
        end: u64,
        max_count: usize,
        max_bytes: usize,
        buf: &mut Vec<u8>,
        emit: impl FnMut(u64, &[u8]),
    ) -> Result<u64, StorageError> {
        let end = end.min(self.written);
        if from >= end || max_count == 0 || from < self.first_offset() {
            return Ok(from);
        }
        self.uses += 1;
        let result = if from >= self.active.base {
            let seg = Segment {
                file: &self.active.file,
                path: &self.active.path,
                len: self.active.len,
                end,
            };
            seg.read(
                &mut self.active.index,
                from,
                max_count,
                max_bytes,
                buf,
                emit,
            )
        } else {
            let i = self.rolled.partition_point(|r| r.end <= from);
            self.load(i)?;
            let uses = self.uses;
            let r = &mut self.rolled[i];
            let Some(loaded) = &mut r.loaded else {
                return Ok(from);
            };
            loaded.last_used = uses;
            let seg = Segment {
                file: &loaded.file,
                path: &r.path,
                len: r.size,
                end: r.end.min(end),
            };
            seg.read(&mut loaded.index, from, max_count, max_bytes, buf, emit)
        };
        if buf.capacity() > 4 << 20 {
            buf.clear();
            buf.shrink_to(64 << 10);
        }
        result
    }

    /// Opens and indexes rolled segment `i` if it is not loaded.
    fn load(&mut self, i: usize) -> Result<(), StorageError> {
        if self.rolled[i].loaded.is_some() {
            return Ok(());
        }
        let r = &self.rolled[i];
        let mut file = File::open(&r.path).map_err(|e| StorageError::io(&r.path, "open", e))?;
        let scan = scan(&r.path, &mut file, Some(r.base))?;
        if scan.torn > 0 || r.base + scan.count != r.end {
            return Err(StorageError::Corrupt {
                path: r.path.clone(),
                line: scan.count + 1,
                reason: format!(
                    "rolled segment should end at offset {} but has {} messages and {} stray bytes",
                    r.end, scan.count, scan.torn
                ),
            });
        }
        let mut index = Index::new(r.base);
        index.entries = scan.index;
        self.rolled[i].loaded = Some(Loaded {
            file,
            index,
            last_used: self.uses,
        });
        self.evict_loaded();
        Ok(())
    }

    /// Keeps at most [`MAX_LOADED_SEGMENTS`] rolled segments open.
    fn evict_loaded(&mut self) {
        loop {
            let loaded: Vec<usize> = (0..self.rolled.len())
                .filter(|&i| self.rolled[i].loaded.is_some())
                .collect();
            if loaded.len() <= MAX_LOADED_SEGMENTS {
                return;
            }
            let oldest = loaded
                .into_iter()
                .min_by_key(|&i| self.rolled[i].loaded.as_ref().map_or(0, |l| l.last_used));
            if let Some(i) = oldest {
                self.rolled[i].loaded = None;
            }
        }
    }

    /// Drops the oldest rolled segments while the log is over `max_bytes`
    /// or they are older than `max_age`, and returns their paths for the
    /// caller to delete (off the serving thread). The active segment is
    /// never dropped.
    pub fn apply_retention(
        &mut self,
        max_bytes: Option<u64>,
        max_age: Option<Duration>,
        now: SystemTime,
    ) -> Vec<PathBuf> {
        let mut total = self.len_bytes();
        let mut dropped = Vec::new();
        while let Some(oldest) = self.rolled.first() {
            let over_size = max_bytes.is_some_and(|max| total > max);
            let too_old = max_age.is_some_and(|age| {
                now.duration_since(oldest.modified)
                    .is_ok_and(|elapsed| elapsed > age)
            });
            if !over_size && !too_old {
                break;
            }
            let r = self.rolled.remove(0);
            total -= r.size;
            info!(
                "retention: dropping {} (offsets {}..{}, {} bytes); first offset is now {}",
                r.path.display(),
                r.base,
                r.end,
                r.size,
                self.first_offset()
            );
            dropped.push(r.path);
        }
        dropped
    }
}

/// What a sync must cover: the active file, and the offset and length it
/// reaches once `fdatasync` returns.
#[derive(Debug, Clone)]
pub struct SyncPoint {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
    /// Which of the log's sync slots it uses.
    pub slot: usize,
}

/// What a finished sync reports back.
#[derive(Debug, Clone, Copy)]
pub struct SyncDone {
    pub offset: u64,
    pub len: u64,
    pub slot: usize,
}

/// A view of one segment for reading.
struct Segment<'a> {
    file: &'a File,
    path: &'a Path,
    /// Bytes of complete lines.
    len: u64,
    /// Read nothing at or past this offset.
    end: u64,
}

impl Segment<'_> {
    fn read(
        &self,
        index: &mut Index,
        from: u64,
        max_count: usize,
        max_bytes: usize,
        buf: &mut Vec<u8>,
        mut emit: impl FnMut(u64, &[u8]),
    ) -> Result<u64, StorageError> {
        if from >= self.end {
            return Ok(from);
        }
        let start = index.seek(from);
        let (mut offset, mut pos) = (start.offset, start.pos);
        let (mut count, mut bytes) = (0usize, 0usize);
        // Small first read for single lookups; larger ones for batches.
        let mut chunk: usize = if max_count == 1 { 8 << 10 } else { 64 << 10 };
        'reading: while offset < self.end {
            let want = (chunk as u64).min(self.len - pos) as usize;
            if want == 0 {
                return Err(StorageError::Corrupt {
                    path: self.path.to_path_buf(),
                    line: 0,
                    reason: format!("file ends at byte {pos} before offset {offset}"),
                });
            }
            buf.resize(want, 0);
            self.file
                .read_exact_at(buf, pos)
                .map_err(|e| StorageError::io(self.path, format!("read at byte {pos}"), e))?;
            let mut used = 0;
            while let Some(i) = memchr(b'\n', &buf[used..]) {
                if offset >= from {
                    let line = &buf[used..used + i];
                    let message =
                        message_of(line, offset).ok_or_else(|| StorageError::Corrupt {
                            path: self.path.to_path_buf(),
                            line: 0,
                            reason: format!(
                                "expected a line for offset {offset} at byte {}",
                                pos + used as u64
                            ),
                        })?;
                    if count > 0 && bytes + message.len() > max_bytes {
                        pos += used as u64;
                        break 'reading;
                    }
                    emit(offset, message);
                    count += 1;
                    bytes += message.len();
                }
                offset += 1;
                used += i + 1;
                if count == max_count || offset == self.end {
                    break;
                }
            }
            pos += used as u64;
            if used == 0 {
                // A line longer than the chunk: read more at once.
                chunk = chunk.saturating_mul(4);
            } else {
                chunk = chunk.max(64 << 10);
            }
            if count == max_count {
                break;
            }
        }
        index.hint = IndexEntry { offset, pos };
        Ok(offset)
    }
}

/// Read-only opens of a segment, one per sync slot, for `fdatasync` from
/// the sync threads.
fn open_for_sync(path: &Path) -> Result<Vec<Arc<File>>, StorageError> {
    (0..SYNC_SLOTS)
        .map(|_| {
            File::open(path)
                .map(Arc::new)
                .map_err(|e| StorageError::io(path, "open", e))
        })
        .collect()
}

/// `<name>.<offset as 20 digits>`: sorts by offset, says what it came from.
fn rolled_name(name: &str, base: u64) -> String {
    format!("{name}.{base:020}")
}

/// Rolled segments of `dir/name`, by name, oldest first (not yet checked).
fn find_rolled(dir: &Path, name: &str) -> Result<Vec<Rolled>, StorageError> {
    let prefix = format!("{name}.");
    let mut rolled = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io(dir, "list", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, "list", e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(digits) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        if digits.len() != 20 {
            continue;
        }
        let Some(base) = parse_u64(digits.as_bytes()) else {
            continue;
        };
        let meta = entry
            .metadata()
            .map_err(|e| StorageError::io(&entry.path(), "stat", e))?;
        rolled.push(Rolled {
            path: entry.path(),
            base,
            end: base,
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            loaded: None,
        });
    }
    rolled.sort_by_key(|r| r.base);
    Ok(rolled)
}

/// Checks each rolled segment's first and last lines and that they chain
/// into the active segment (whose first offset is `active_base`, if it has
/// lines). Fills in each segment's end. A segment that fails is refused,
/// or with `skip` dropped together with all older ones.
fn check_rolled(
    active: &Path,
    rolled: &mut Vec<Rolled>,
    active_base: Option<u64>,
    skip: bool,
) -> Result<(), StorageError> {
    let mut problem: Option<(usize, StorageError)> = None;
    for i in 0..rolled.len() {
        match segment_end(&rolled[i]) {
            Ok(end) => rolled[i].end = end,
            Err(e) => problem = Some((i, e)),
        }
        let next_base = rolled.get(i + 1).map(|r| r.base).or(active_base);
        if problem.is_none()
            && let Some(next_base) = next_base
            && next_base != rolled[i].end
        {
            let next_path = rolled.get(i + 1).map_or(active, |r| &r.path);
            problem = Some((
                i,
                StorageError::Corrupt {
                    path: next_path.to_path_buf(),
                    line: 1,
                    reason: format!(
                        "starts at offset {next_base} but {} ends at {}",
                        rolled[i].path.display(),
                        rolled[i].end
                    ),
                },
            ));
        }
        if let Some((bad, err)) = problem.take() {
            if !skip {
                return Err(err);
            }
            let dropped: Vec<String> = rolled
                .drain(..=bad)
                .map(|r| r.path.display().to_string())
                .collect();
            warn!(
                "{err}; skipping (--skip-corrupt-segments) {}",
                dropped.join(", ")
            );
            return check_rolled(active, rolled, active_base, skip);
        }
    }
    Ok(())
}

/// Reads a rolled segment's first and last lines; returns one past its last
/// offset.
fn segment_end(r: &Rolled) -> Result<u64, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: r.path.clone(),
        line: 1,
        reason,
    };
    let file = File::open(&r.path).map_err(|e| StorageError::io(&r.path, "open", e))?;
    if r.size == 0 {
        return Err(corrupt("rolled segment is empty".into()));
    }
    let mut head = vec![0u8; r.size.min(64 << 10) as usize];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| StorageError::io(&r.path, "read", e))?;
    let first = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    if message_of(first, r.base).is_none() && memchr(b'\n', &head).is_some() {
        return Err(corrupt(format!(
            "expected \"offset:{} message:...\" (the offset in its name)",
            r.base
        )));
    }
    // Read backwards until the last line is whole.
    let mut tail_len = r.size.min(4096);
    loop {
        let mut tail = vec![0u8; tail_len as usize];
        file.read_exact_at(&mut tail, r.size - tail_len)
            .map_err(|e| StorageError::io(&r.path, "read", e))?;
        if tail.last() != Some(&b'\n') {
            return Err(StorageError::Corrupt {
                path: r.path.clone(),
                line: 0,
                reason: format!(
                    "rolled segment does not end with a newline (byte {})",
                    r.size
                ),
            });
        }
        let body = &tail[..tail.len() - 1];
        let line_start = body.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
        if line_start.is_none() && tail_len < r.size {
            tail_len = (tail_len * 4).min(r.size);
            continue;
        }
        let line = &body[line_start.unwrap_or(0)..];
        let offset = line
            .strip_prefix(HEADER)
            .and_then(|rest| {
                let end = rest.iter().position(|b| !b.is_ascii_digit())?;
                rest[end..]
                    .starts_with(SEPARATOR)
                    .then(|| parse_u64(&rest[..end]))?
            })
            .filter(|&o| o >= r.base)
            .ok_or_else(|| StorageError::Corrupt {
                path: r.path.clone(),
                line: 0,
                reason: format!(
                    "last line is not a log line: {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(60)])
                ),
            })?;
        return Ok(offset + 1);
    }
}

/// The message in `line` if it is the log line for `offset`.
fn message_of(line: &[u8], offset: u64) -> Option<&[u8]> {
    let rest = line.strip_prefix(HEADER)?;
    let digits_end = rest.iter().position(|b| !b.is_ascii_digit())?;
    let (digits, rest) = rest.split_at(digits_end);
    if parse_u64(digits)? != offset || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    rest.strip_prefix(SEPARATOR)
}

/// What a scan of a segment found.
struct Scan {
    /// The first line's offset, if there is a line.
    base: Option<u64>,
    /// Complete lines.
    count: u64,
    /// Bytes of complete lines.
    len: u64,
    index: Vec<IndexEntry>,
    /// Bytes after the last newline.
    torn: u64,
}

/// Reads a segment once, checking every line. The first line must carry
/// `expect_base` if given (else any offset starts the sequence).
fn scan(path: &Path, file: &mut File, expect_base: Option<u64>) -> Result<Scan, StorageError> {
    let mut index = Vec::new();
    let mut last_indexed = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0usize;
    let mut pos = 0u64; // file position of buf[0]
    let mut base = expect_base;
    let mut count = 0u64;
    loop {
        if filled == buf.len() {
            let bigger = buf.len() * 2;
            buf.resize(bigger, 0);
        }
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(StorageError::io(
                    path,
                    format!("read at byte {}", pos + filled as u64),
                    e,
                ));
            }
        };
        if n == 0 {
            return Ok(Scan {
                base: if count > 0 { base } else { expect_base },
                count,
                len: pos,
                index,
                torn: filled as u64,
            });
        }
        filled += n;
        let mut used = 0;
        while let Some(i) = memchr(b'\n', &buf[used..filled]) {
            let line = &buf[used..used + i];
            let expected = match base {
                Some(b) => b + count,
                None => {
                    // The active segment starts wherever its first line says.
                    let first = line.strip_prefix(HEADER).and_then(|r| {
                        parse_u64(
                            &r[..r
                                .iter()
                                .position(|b| !b.is_ascii_digit())
                                .unwrap_or(r.len())],
                        )
                    });
                    base = first;
                    first.unwrap_or(0)
                }
            };
            if message_of(line, expected).is_none() {
                return Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    line: count + 1,
                    reason: format!(
                        "expected \"offset:{expected} message:...\", found {:?}",
                        String::from_utf8_lossy(&line[..line.len().min(60)])
                    ),
                });
            }
            let line_pos = pos + used as u64;
            if index.is_empty() || line_pos - last_indexed >= INDEX_INTERVAL {
                index.push(IndexEntry {
                    offset: expected,
                    pos: line_pos,
                });
                last_indexed = line_pos;
            }
            count += 1;
            used += i + 1;
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        pos += used as u64;
        if buf.len() > 1 << 20 && filled < 1 << 19 {
            buf.truncate(1 << 20);
            buf.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Log {
        Log::open(dir, "log", LogOptions::default()).unwrap()
    }

    fn open_small(dir: &Path, segment_bytes: u64) -> Log {
        Log::open(
            dir,
            "log",
            LogOptions {
                segment_bytes,
                ..LogOptions::default()
            },
        )
        .unwrap()
    }

    fn read_all(log: &mut Log, from: u64, max: usize) -> Vec<(u64, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut at = from;
        while out.len() < max {
            let next = log
                .read(
                    at,
                    u64::MAX,
                    max - out.len(),
                    usize::MAX,
                    &mut buf,
                    |o, m| out.push((o, m.to_vec())),
                )
                .unwrap();
            if next == at {
                break;
            }
            at = next;
        }
        out
    }

    #[test]
    fn append_read_and_exact_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        assert_eq!(log.stage(b"hello"), 0);
        assert_eq!(log.stage(b"world"), 1);
        assert_eq!(read_all(&mut log, 0, 10), vec![], "staged is not readable");
        assert_eq!(log.flush().unwrap(), 0..2);
        assert_eq!(
            fs::read(dir.path().join("log")).unwrap(),
            b"offset:0 message:hello\noffset:1 message:world\n"
        );
        assert_eq!(read_all(&mut log, 1, 10), vec![(1, b"world".to_vec())]);
        assert_eq!(read_all(&mut log, 2, 10), vec![]);
        let mut buf = Vec::new();
        let mut n = 0;
        assert_eq!(
            log.read(0, 1, 10, usize::MAX, &mut buf, |_, _| n += 1)
                .unwrap(),
            1,
            "end bound"
        );
        assert_eq!(n, 1);
    }

    #[test]
    fn reopen_continues_offsets_and_reads_everything() {
        let dir = tempfile::tempdir().unwrap();
        let messages: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| format!("message {i} {}", "x".repeat((i % 50) as usize)).into_bytes())
            .collect();
        {
            let mut log = open(dir.path());
            for chunk in messages.chunks(777) {
                for m in chunk {
                    log.stage(m);
                }
                log.flush().unwrap();
            }
        }
        let mut log = open(dir.path());
        assert_eq!(log.next_offset(), 20_000);
        assert!(
            log.active.index.entries.len() > 10,
            "index is sparse but present"
        );
        assert!(
            log.active.index.entries.len() < 20_000 / 10,
            "index is sparse"
        );
        for o in [0u64, 1, 99, 4095, 12_345, 19_999] {
            assert_eq!(
                read_all(&mut log, o, 1),
                vec![(o, messages[o as usize].clone())]
            );
        }
        let all = read_all(&mut log, 0, usize::MAX);
        assert_eq!(all.len(), 20_000);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, (o, m))| *o == i as u64 && *m == messages[i])
        );
        assert_eq!(log.stage(b"next"), 20_000);
        log.flush().unwrap();
        assert_eq!(
            read_all(&mut log, 20_000, 5),
            vec![(20_000, b"next".to_vec())]
        );
    }

    #[test]
    fn read_respects_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        for _ in 0..10 {
            log.stage(b"0123456789");
        }
        log.flush().unwrap();
        let mut buf = Vec::new();
        let mut n = 0;
        assert_eq!(
            log.read(2, u64::MAX, 3, usize::MAX, &mut buf, |_, _| n += 1)
                .unwrap(),
            5
        );
        assert_eq!(n, 3);
        n = 0;
        assert_eq!(
            log.read(0, u64::MAX, 100, 25, &mut buf, |_, _| n += 1)
                .unwrap(),
            2
        );
        assert_eq!(n, 2);
        n = 0;
        assert_eq!(
            log.read(0, u64::MAX, 100, 1, &mut buf, |_, _| n += 1)
                .unwrap(),
            1,
            "at least one"
        );
        assert_eq!(n, 1);
    }

    #[test]
    fn long_messages_cross_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let big = vec![b'a'; 300_000];
        log.stage(b"small");
        log.stage(&big);
        log.stage(b"after");
        log.flush().unwrap();
        assert_eq!(read_all(&mut log, 1, 1), vec![(1, big.clone())]);
        assert_eq!(read_all(&mut log, 2, 1), vec![(2, b"after".to_vec())]);
        let mut log = open(dir.path());
        assert_eq!(log.next_offset(), 3);
        assert_eq!(read_all(&mut log, 0, 3).len(), 3);
    }

    #[test]
    fn torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(
            &path,
            b"offset:0 message:a\noffset:1 message:b\noffset:2 mess",
        )
        .unwrap();
        let mut log = open(dir.path());
        assert_eq!(log.next_offset(), 2);
        assert_eq!(
            fs::read(&path).unwrap(),
            b"offset:0 message:a\noffset:1 message:b\n"
        );
        assert_eq!(log.stage(b"c"), 2);
        log.flush().unwrap();
        assert_eq!(read_all(&mut log, 2, 1), vec![(2, b"c".to_vec())]);
    }

    #[test]
    fn corrupt_middle_is_refused_and_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        for (content, line) in [
            (&b"offset:0 message:a\ngarbage\noffset:2 message:c\n"[..], 2),
            (b"offset:0 message:a\noffset:2 message:c\n", 2),
            (b"offset:0 message:a\n\noffset:1 message:b\n", 2),
            (b"offset:0 message:a\noffset:01 message:b\n", 2),
            (b"offset:0 message:a\noffset:1message:b\n", 2),
            (b"garbage\n", 1),
        ] {
            fs::write(&path, content).unwrap();
            let err = Log::open(dir.path(), "log", LogOptions::default()).unwrap_err();
            match &err {
                StorageError::Corrupt { line: l, .. } => assert_eq!(*l, line, "{err}"),
                other => panic!("expected corrupt, got {other}"),
            }
            assert!(
                err.to_string()
                    .starts_with(&format!("{}:{line}: ", path.display()))
            );
            assert_eq!(fs::read(&path).unwrap(), content, "file left untouched");
        }
    }

    #[test]
    fn failed_append_gives_offsets_back_and_leaves_no_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = open(dir.path());
        log.stage(b"kept");
        log.flush().unwrap();
        // Swap the file for /dev/full: every write fails with ENOSPC.
        let good = std::mem::replace(
            &mut log.active.file,
            Arc::new(OpenOptions::new().append(true).open("/dev/full").unwrap()),
        );
        assert_eq!(log.stage(b"lost"), 1);
        let err = log.flush().unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        assert_eq!(log.next_offset(), 1, "offset given back");
        log.active.file = good;
        log.dirty_tail = false;
        assert_eq!(log.stage(b"again"), 1);
        log.flush().unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            b"offset:0 message:kept\noffset:1 message:again\n"
        );
    }

    #[test]
    fn segments_roll_and_read_across_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open_small(dir.path(), 100);
        // 20-byte lines: five fit in 100 bytes.
        for i in 0..12 {
            log.stage(format!("m{i}").as_bytes());
        }
        log.flush().unwrap();
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "log",
                "log.00000000000000000000",
                "log.00000000000000000005"
            ]
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("log.00000000000000000005")).unwrap(),
            "offset:5 message:m5\noffset:6 message:m6\noffset:7 message:m7\noffset:8 message:m8\noffset:9 message:m9\n"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("log")).unwrap(),
            "offset:10 message:m10\noffset:11 message:m11\n"
        );
        let all = read_all(&mut log, 0, 100);
        assert_eq!(all.len(), 12);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, (o, m))| *o == i as u64 && *m == format!("m{i}").as_bytes())
        );
        // One flush at a time across many turns rolls the same way.
        for i in 12..30 {
            log.stage(format!("m{i}").as_bytes());
            log.flush().unwrap();
        }
        drop(log);
        let mut log = open_small(dir.path(), 100);
        assert_eq!((log.first_offset(), log.next_offset()), (0, 30));
        assert!(log.segments() >= 7);
        let all = read_all(&mut log, 0, 100);
        assert_eq!(all.len(), 30);
        assert_eq!(read_all(&mut log, 13, 1), vec![(13, b"m13".to_vec())]);
    }

    #[test]
    fn empty_active_after_roll_continues_from_the_last_segment() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = open_small(dir.path(), 50);
            for i in 0..5 {
                log.stage(format!("m{i}").as_bytes());
            }
            log.flush().unwrap();
        }
        // As if the broker died between renaming the active segment and
        // creating the next one.
        fs::remove_file(dir.path().join("log")).unwrap();
        let mut log = open_small(dir.path(), 50);
        assert_eq!(
            log.next_offset(),
            4,
            "continues after log.00000000000000000002"
        );
        assert_eq!(log.stage(b"x"), 4);
        log.flush().unwrap();
        assert_eq!(read_all(&mut log, 0, 10).len(), 5);
    }

    #[test]
    fn retention_drops_oldest_whole_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open_small(dir.path(), 100);
        for i in 0..20 {
            log.stage(format!("m{i}").as_bytes());
            log.flush().unwrap();
        }
        let before = log.segments();
        let dropped = log.apply_retention(Some(150), None, SystemTime::now());
        assert!(!dropped.is_empty());
        assert!(log.len_bytes() <= 150 || log.segments() == 1);
        assert_eq!(log.segments(), before - dropped.len());
        assert!(log.first_offset() > 0);
        let first = log.first_offset();
        let mut buf = Vec::new();
        assert_eq!(
            log.read(0, u64::MAX, 1, usize::MAX, &mut buf, |_, _| {})
                .unwrap(),
            0,
            "below first: nothing"
        );
        assert_eq!(read_all(&mut log, first, 1)[0].0, first);
        // By age: everything rolled is older than zero seconds from later.
        let later = SystemTime::now() + Duration::from_secs(3600);
        log.apply_retention(None, Some(Duration::from_secs(60)), later);
        assert_eq!(log.segments(), 1, "never the active segment");
        for path in dropped {
            fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn corrupt_rolled_segment_refused_or_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = open_small(dir.path(), 50);
            for i in 0..6 {
                log.stage(format!("m{i}").as_bytes());
            }
            log.flush().unwrap();
        }
        let seg = dir.path().join("log.00000000000000000002");
        let content = fs::read(&seg).unwrap();
        fs::write(&seg, &content[..content.len() - 3]).unwrap();
        let err = Log::open(
            dir.path(),
            "log",
            LogOptions {
                segment_bytes: 50,
                ..LogOptions::default()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("log.00000000000000000002"),
            "{err}"
        );
        let mut log = Log::open(
            dir.path(),
            "log",
            LogOptions {
                segment_bytes: 50,
                skip_corrupt: true,
                ..LogOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            log.first_offset(),
            4,
            "the bad segment and older ones are skipped"
        );
        assert_eq!(read_all(&mut log, 4, 10).len(), 2);
        assert!(seg.exists(), "skipped files are left on disk");
    }

    #[test]
    fn sync_failure_cuts_the_unsynced_tail() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions {
            cut_on_sync_failure: true,
            ..LogOptions::default()
        };
        let mut log = Log::open(dir.path(), "log", options).unwrap();
        log.stage(b"a");
        log.flush().unwrap();
        log.sync().unwrap();
        log.stage(b"b");
        log.stage(b"c");
        log.flush().unwrap();
        let point = log.begin_sync().unwrap();
        assert_eq!(point.offset, 3);
        assert!(log.begin_sync().is_none(), "nothing new since");
        let done = SyncDone {
            offset: point.offset,
            len: point.len,
            slot: point.slot,
        };
        assert_eq!(log.sync_failed(&done), Some(1));
        assert_eq!(log.next_offset(), 1);
        assert_eq!(
            fs::read(dir.path().join("log")).unwrap(),
            b"offset:0 message:a\n"
        );
        assert_eq!(log.stage(b"d"), 1);
        log.flush().unwrap();
        let first = log.begin_sync().unwrap();
        log.stage(b"e");
        log.flush().unwrap();
        // A second sync may start while the first runs, and finish first.
        let second = log.begin_sync().unwrap();
        assert_ne!(first.slot, second.slot);
        let done = |p: &SyncPoint| SyncDone {
            offset: p.offset,
            len: p.len,
            slot: p.slot,
        };
        log.sync_done(&done(&second));
        assert_eq!(log.synced_offset(), 3);
        log.sync_done(&done(&first));
        assert_eq!(
            log.synced_offset(),
            3,
            "an older sync does not move it back"
        );
    }
}
