//! The message log of one partition: a series of append-only text
//! segments, read back through sparse, checksummed indexes.
//!
//! # Files
//! The *active* segment keeps the partition's plain name (`kafka_log.txt`
//! for the default topic), so `tail -F kafka_log.txt` keeps working. When
//! it reaches the segment size it is *rolled*: renamed to
//! `<name>.<first offset, 20 digits>` (e.g.
//! `kafka_log.txt.00000000000001048576`), a new active file is started,
//! and the segment's index is written beside it as `<rolled name>.index`
//! (see [`crate::storage::index`]). Rolled segments are never written
//! again; retention deletes them whole, oldest first. `docs/STORAGE.md`
//! documents the layout for users.
//!
//! A log keeps no descriptor of its own: its segments' descriptors are
//! parked in its broker's budget of open files between calls (see
//! [`crate::storage::files`], which also says when one may be closed),
//! and reopened when needed.
//!
//! # Appending
//! [`Log::append`] stages a record in memory and hands back a sequence
//! number (see [`crate::storage::journal`]) and an offset;
//! [`Log::flush`] writes everything staged with one `write` call per
//! segment touched. If a write fails, the file is cut back to its last
//! good length, the staged records fail together and their offsets are
//! given back (their sequence numbers are not: a later append never
//! reuses one). Durability is tracked apart from writing: syncs are begun
//! with [`Log::begin_sync`], run by the caller (on a helper thread), and
//! reported with [`Log::sync_completed`].
//!
//! With `durable_acks` (`--fsync always`) a segment rolls only once all of
//! it is synced, so a failed sync, which cuts off everything written since
//! the last good one, only ever cuts the active segment.
//!
//! # Reading
//! A read starts at the index entry at or before the wanted offset and
//! scans forward with `pread`. In a rolled segment every interval read is
//! checked against its CRC first, so damaged bytes are reported (as
//! `path:offset`, never the bytes) instead of being served.
//!
//! # Times
//! Each index interval keeps the wall-clock time of the last write into
//! it (see [`crate::storage::index`]), never earlier than the log's
//! previous one. Text records get it as their timestamp for Kafka readers
//! ([`Log::read_as_batches`]), and ListOffsets by time answers from it
//! ([`Log::offset_for_time`]). What the start-up scan rebuilds (the active
//! segment, unsealed or unindexed segments) and version 1 indexes get the
//! file's modification time: an upper bound, like the others.
//!
//! # Recovery
//! [`Log::open`] checks everything before changing anything: it scans the
//! active segment, checks each rolled segment against its index header
//! (rebuilding a missing index by scanning, once), checks that the
//! segments chain without gaps, and that the log reaches the offset the
//! recovery checkpoint says was synced. Only then does it cut a torn last
//! line. A refused start leaves every file as it was.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use log::{debug, error, info, warn};
use memchr::memchr;

use super::batch::{self, BatchBuilder, BatchHeader};
use super::files::{Files, LogFile, Slot};
use super::format::{Format, Parsed};
use super::index::{self, Entry, INDEX_INTERVAL, Index, MAX_SEGMENT_BYTES, Time};
use super::journal::{Completion, Mark, SEAL_SLOT, SyncTarget, SyncTracker};
use super::text;
use super::{FileJob, Location, StorageError, crc32c, crc32c_append};
use crate::util::fs::write_all;
use crate::util::parse_u64;

/// Rolled segments kept open and indexed at once.
const MAX_LOADED_SEGMENTS: usize = 8;
/// Syncs of one log that may run at once. Each covers what was written
/// before it began, so a new message waits for one sync, not for the one
/// in progress and then its own; and concurrent `fdatasync` calls share
/// journal commits (measured here: 3,100 syncs/s one at a time, 5,000 with
/// three at once).
pub const SYNC_SLOTS: usize = 3;
/// The highest offset given out: Kafka offsets are signed 64-bit.
pub const MAX_OFFSET: u64 = i64::MAX as u64;
/// Most bytes a compressed batch may decompress to when a text reader
/// reads it.
const MAX_DECOMPRESSED: usize = 64 << 20;
/// Most messages in one read for a Kafka reader of a text log.
const MAX_SYNTHESIZED: usize = 10_000;
/// Most bytes a record adds to its value in a batch built for a Kafka
/// reader of a text log (length, attributes, timestamp and offset deltas,
/// key and value lengths, header count).
const MAX_RECORD_OVERHEAD: usize = 5 + 1 + 1 + 5 + 1 + 5 + 1;
/// Bytes read at once when scanning.
const READ_CHUNK: usize = 64 << 10;

/// How a log is laid out and checked.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Roll the active segment once it would pass this size.
    pub segment_bytes: u64,
    /// Drop (do not refuse) rolled segments that fail their start checks,
    /// and accept a log that ends before the checkpoint.
    pub skip_corrupt: bool,
    /// Acknowledgements wait for syncs (`--fsync always`): a failed sync
    /// cuts off what it should have covered, and a segment rolls only
    /// once it is synced.
    pub durable_acks: bool,
    /// The data directory's layout seals segments (writes a rolled
    /// segment's index only once its data is on disk): newest segments
    /// without an index may be cut at their first damage after a crash.
    pub repair_unsealed: bool,
    /// How the records are stored.
    pub format: Format,
    /// The budget of open files the log's descriptors count in (its
    /// broker's).
    pub files: Arc<Files>,
    /// The active segment's descriptors stay open while it has unsynced
    /// writes (see [`super::files`]); false with `--fsync never`, where no
    /// sync runs whose error report closing could lose.
    pub unsynced_stay_open: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            skip_corrupt: false,
            durable_acks: false,
            repair_unsealed: true,
            format: Format::Text,
            files: Files::new(usize::MAX),
            unsynced_stay_open: true,
        }
    }
}

/// An append that was accepted: its ticket and its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub offset: u64,
}

/// Appends that failed: every sequence number in `seqs`.
#[derive(Debug)]
pub struct Failed {
    pub seqs: Range<u64>,
    pub error: StorageError,
}

/// Why a Kafka batch could not be appended.
#[derive(Debug)]
pub enum AppendBatchError {
    /// The batch cannot be stored here (Kafka's INVALID_RECORD).
    Invalid(String),
    Storage(StorageError),
}

/// Milliseconds since the Unix epoch (record timestamps).
pub fn now_ms() -> i64 {
    system_ms(SystemTime::now())
}

/// `t` in milliseconds since the Unix epoch; 0 for a time before it (Kafka
/// readers refuse negative timestamps).
pub fn system_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a finished sync did to the log.
#[derive(Debug)]
pub enum SyncResult {
    /// The synced mark moved forward.
    Advanced,
    /// Nothing changed yet (an older sync is still running, or this one
    /// was abandoned).
    Unchanged,
    /// It failed where acknowledgements did not wait for syncs: nothing
    /// is cut (readers may have seen those records), and the file takes
    /// no more writes, nor syncs, until the broker restarts (Linux reports
    /// a failed writeback once, so a retry could succeed over lost data).
    ReadOnly(StorageError),
    /// It failed: everything after the last good sync was cut off.
    Cut(Failed),
}

/// The segment being appended to. Its descriptors are parked in the
/// log's [`Files`] budget between calls (see [`Log::append_file`] and
/// [`Log::sync_files`]).
#[derive(Debug)]
struct Active {
    path: PathBuf,
    /// Generation: bumped at every roll.
    generation: u64,
    base: u64,
    /// Bytes of complete records in the file.
    len: u64,
    /// The last entry's CRC covers the bytes written after it so far.
    index: Index,
    /// Where the last read stopped: (offset, position).
    hint: (u64, u64),
}

/// A rolled segment: read-only, opened on first read (its descriptor
/// parked in the budget, see [`Log::rolled_file`]).
#[derive(Debug)]
struct Rolled {
    path: PathBuf,
    base: u64,
    /// One past its last offset.
    end: u64,
    size: u64,
    modified: SystemTime,
    /// The latest log-append time of its intervals (ms): from its index
    /// header, or its file's modification time for a version 1 index.
    max_time: i64,
    loaded: Option<Loaded>,
}

/// A rolled segment's index, in memory while the segment is read.
#[derive(Debug)]
struct Loaded {
    index: Index,
    last_used: u64,
}

/// An append-only, segmented log of messages.
#[derive(Debug)]
pub struct Log {
    /// Its id in the budget of open files.
    id: u64,
    dir: PathBuf,
    /// The active segment's file name; rolled ones add `.<offset>`.
    name: String,
    options: LogOptions,
    active: Active,
    rolled: VecDeque<Rolled>,
    /// Entries staged for the next flush, each one's length and the
    /// offsets it covers.
    staged: Vec<u8>,
    staged_lens: Vec<u32>,
    staged_counts: Vec<u32>,
    /// What the next append gets.
    next_seq: u64,
    next_offset: u64,
    /// Everything below this is in the file (or failed).
    written: Mark,
    sync: SyncTracker,
    /// `durable_acks`: the batch reached the segment size and waits for
    /// the segment to be synced before it rolls.
    roll_waiting: bool,
    /// Indexes of rolled segments, written once the sync of their data
    /// (by sync id) succeeds: an index on disk means the segment is sealed.
    sealing: Vec<(u64, FileJob)>,
    /// A failed append left bytes past the active length that could not
    /// be cut yet.
    dirty_tail: bool,
    /// Why the log takes no more writes: a sync failed without
    /// `durable_acks` (see [`SyncResult::ReadOnly`]).
    read_only: Option<String>,
    /// Work for helper threads.
    jobs: Vec<FileJob>,
    /// Idempotent producers' batches found in the active segment at open.
    recovered_producers: Vec<ProducerBatch>,
    uses: u64,
    /// The latest log-append time given to an interval (ms): new writes
    /// get at least this, so times never go back within a log even if the
    /// clock does.
    last_time: i64,
}

impl Log {
    /// Opens (creating if needed) the log whose active segment is
    /// `dir/name`, and recovers it. `checkpoint` is the offset the last
    /// recovery checkpoint says was synced: a log that ends before it lost
    /// acknowledged data and is refused.
    pub fn open(
        dir: &Path,
        name: &str,
        options: LogOptions,
        checkpoint: Option<u64>,
    ) -> Result<Log, StorageError> {
        assert!(options.segment_bytes > 0 && options.segment_bytes <= MAX_SEGMENT_BYTES);
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, "create directory", e))?;
        let found = find_files(dir, name)?;
        let path = dir.join(name);

        // 1. Read everything; change nothing.
        let headers: Vec<Result<index::Header, String>> =
            found.segments.iter().map(read_index_header).collect();
        // The newest rolled segments without a valid index were never
        // sealed (their data may not have reached the disk before a crash):
        // with `repair_unsealed` they may be cut at the first damage.
        let strict_until = if options.repair_unsealed {
            headers.iter().rposition(|h| h.is_ok()).map_or(0, |i| i + 1)
        } else {
            found.segments.len()
        };
        let mut rebuilt = Vec::new();
        let mut rolled = VecDeque::new();
        // Segments dropped by --skip-corrupt-segments: set aside before
        // serving, so that no later start reads them as something else
        // (a segment without an index, after the layout's migration, would
        // be taken for an unsealed one and everything after it set aside).
        let mut skipped: Vec<PathBuf> = Vec::new();
        for (seg, header) in found.segments[..strict_until].iter().zip(&headers) {
            match check_segment(options.format, seg, header.clone(), &mut rebuilt) {
                Ok(r) => rolled.push_back(r),
                Err(e) if options.skip_corrupt => {
                    let older: Vec<PathBuf> = rolled.drain(..).map(|r: Rolled| r.path).collect();
                    skipped.extend(older.iter().cloned());
                    skipped.push(seg.path.clone());
                    let older: Vec<String> =
                        older.iter().map(|p| p.display().to_string()).collect();
                    warn!(
                        "{e}; skipping (--skip-corrupt-segments) it and {} older segments{}{}",
                        older.len(),
                        if older.is_empty() { "" } else { ": " },
                        older.join(", ")
                    );
                    rebuilt.retain(|(base, _, _)| *base > seg.base);
                }
                Err(e) => return Err(e),
            }
        }
        let mut set_aside: Vec<PathBuf> = Vec::new();
        let mut cut_rolled: Option<(PathBuf, u64)> = None;
        for seg in &found.segments[strict_until..] {
            if cut_rolled.is_some() || !set_aside.is_empty() {
                set_aside.push(seg.path.clone());
                continue;
            }
            if rolled.back().is_some_and(|r: &Rolled| r.end != seg.base) {
                set_aside.push(seg.path.clone());
                continue;
            }
            let file = File::open(&seg.path).map_err(|e| StorageError::io(&seg.path, "open", e))?;
            let scan = scan(options.format, &seg.path, &file, Some(seg.base), true)?;
            if scan.count == 0 {
                set_aside.push(seg.path.clone());
                continue;
            }
            let end = seg.base + scan.count;
            let index = Index {
                base: seg.base,
                entries: scan.entries,
            };
            rebuilt.push((seg.base, index_path(&seg.path), index.encode(end, scan.len)));
            if scan.damaged || scan.torn > 0 {
                cut_rolled = Some((seg.path.clone(), scan.len));
            }
            rolled.push_back(Rolled {
                path: seg.path.clone(),
                base: seg.base,
                end,
                size: scan.len,
                modified: seg.modified,
                max_time: index.max_time(),
                loaded: None,
            });
        }
        // After a cut, the active segment's data follows lost data: set aside.
        let drop_active = (cut_rolled.is_some() || !set_aside.is_empty()) && path.exists();
        let active_scan = if drop_active {
            None
        } else {
            match File::open(&path) {
                Ok(file) => Some(scan(options.format, &path, &file, None, false)?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(StorageError::io(&path, "open", e)),
            }
        };
        let active_base = active_scan.as_ref().and_then(|s| s.base);
        check_chain(
            &path,
            &mut rolled,
            active_base,
            options.skip_corrupt,
            &mut skipped,
        )?;
        let base = active_base.unwrap_or_else(|| rolled.back().map_or(0, |r| r.end));
        let count = active_scan.as_ref().map_or(0, |s| s.count);
        let next = base + count;
        if let Some(expected) = checkpoint
            && next < expected
        {
            let err = StorageError::corrupt(
                &path,
                Location::Offset(next),
                format!(
                    "the log ends at offset {next} but the recovery checkpoint says offsets \
                     up to {expected} were synced: acknowledged messages are missing (was a \
                     file truncated, replaced or deleted?); restore the files, or start with \
                     --skip-corrupt-segments to accept the loss"
                ),
            );
            if !options.skip_corrupt {
                return Err(err);
            }
            warn!("{err}; starting anyway (--skip-corrupt-segments)");
        }

        // 2. Repair: cut unsealed segments at their damage and set aside
        // what followed, cut a torn tail, create a missing active segment.
        if let Some((seg, len)) = &cut_rolled {
            warn!(
                "{}: unsealed segment (its data was not known to be on disk at a crash) cut at its first damage, byte {len}",
                seg.display()
            );
            OpenOptions::new()
                .write(true)
                .open(seg)
                .and_then(|f| f.set_len(*len))
                .map_err(|e| StorageError::io(seg, format!("truncate to {len}"), e))?;
        }
        if drop_active {
            set_aside.push(path.clone());
        }
        for file in &set_aside {
            let aside = aside_path(file);
            warn!(
                "{}: follows data lost in a crash; moved to {}",
                file.display(),
                aside.display()
            );
            fs::rename(file, &aside)
                .map_err(|e| StorageError::io(file, format!("rename to {}", aside.display()), e))?;
            let _ = fs::remove_file(index_path(file));
        }
        for file in &skipped {
            for file in [file.clone(), index_path(file)] {
                if !file.exists() {
                    continue;
                }
                let aside = aside_path(&file);
                warn!(
                    "{}: skipped (--skip-corrupt-segments); moved to {}",
                    file.display(),
                    aside.display()
                );
                fs::rename(&file, &aside).map_err(|e| {
                    StorageError::io(&file, format!("rename to {}", aside.display()), e)
                })?;
            }
        }
        let created = active_scan.is_none();
        let mut scan = active_scan.unwrap_or_default();
        options.files.make_room(1);
        let file = options
            .files
            .open(
                &path,
                OpenOptions::new().read(true).append(true).create(true),
            )
            .map_err(|e| StorageError::io(&path, "open", e))?;
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
        for (base, ipath, bytes) in rebuilt {
            // Before serving: readers find every index in place. A segment
            // is sealed only once its data is on disk.
            if let Some(r) = rolled.iter().find(|r| r.base == base) {
                File::open(&r.path)
                    .and_then(|f| f.sync_data())
                    .map_err(|e| StorageError::io(&r.path, "fdatasync", e))?;
            }
            super::replace_file(&ipath, &bytes)
                .map_err(|e| StorageError::io(&ipath, "write rebuilt index", e))?;
        }
        let mut jobs: Vec<FileJob> = Vec::new();
        for orphan in found.orphan_indexes {
            jobs.push(FileJob::Delete(orphan));
        }
        let mut index = Index {
            base,
            entries: scan.entries,
        };
        if index.entries.is_empty() {
            index = Index::new(base);
        }
        let last_time = rolled
            .iter()
            .map(|r| r.max_time)
            .chain([index.max_time()])
            .max()
            .unwrap_or(0);
        info!(
            "log={} recovered first_offset={} next_offset={next} active_bytes={} rolled_segments={}{}",
            path.display(),
            rolled.front().map_or(base, |r| r.base),
            scan.len,
            rolled.len(),
            if !skipped.is_empty() {
                format!(" skipped_segments={}", skipped.len())
            } else {
                String::new()
            }
        );
        let mark = Mark {
            seq: 0,
            offset: next,
            file: 0,
            len: scan.len,
        };
        let id = options.files.register();
        options.files.put(id, Slot::Append, vec![Arc::new(file)]);
        let mut log = Log {
            id,
            dir: dir.to_path_buf(),
            name: name.to_string(),
            options,
            active: Active {
                path,
                generation: 0,
                base,
                len: scan.len,
                index,
                hint: (base, 0),
            },
            rolled,
            staged: Vec::new(),
            staged_lens: Vec::new(),
            staged_counts: Vec::new(),
            next_seq: 0,
            next_offset: next,
            written: mark,
            sync: SyncTracker::new(mark),
            roll_waiting: false,
            sealing: Vec::new(),
            dirty_tail: false,
            read_only: None,
            jobs,
            recovered_producers: std::mem::take(&mut scan.producers),
            uses: 0,
            last_time,
        };
        if created {
            // A new file's name is durable only once its directory is.
            log.begin_dir_sync();
        }
        Ok(log)
    }

    /// The active segment's path.
    pub fn path(&self) -> &Path {
        &self.active.path
    }

    /// The oldest offset still stored.
    pub fn first_offset(&self) -> u64 {
        self.rolled.front().map_or(self.active.base, |r| r.base)
    }

    /// The offset the next append gets (staged records included).
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Everything below this mark is in the file, or failed.
    pub fn written(&self) -> Mark {
        self.written
    }

    /// Everything below this mark is on stable storage, or failed.
    pub fn synced(&self) -> Mark {
        self.sync.synced()
    }

    /// The mark acknowledgements and readers wait for: synced with
    /// `durable_acks`, written otherwise.
    pub fn durable(&self) -> Mark {
        if self.options.durable_acks {
            self.sync.synced()
        } else {
            self.written
        }
    }

    /// Bytes stored, all segments.
    pub fn len_bytes(&self) -> u64 {
        self.active.len + self.rolled.iter().map(|r| r.size).sum::<u64>()
    }

    /// Number of segments, the active one included.
    pub fn segments(&self) -> usize {
        self.rolled.len() + 1
    }

    /// Whether records are staged but not yet written.
    pub fn has_staged(&self) -> bool {
        !self.staged_lens.is_empty()
    }

    /// Bytes staged for the next flush.
    pub fn staged_bytes(&self) -> usize {
        self.staged.len()
    }

    /// Work for helper threads (syncs of rolled segments and directories,
    /// index writes, deletions), in the order it must be done.
    pub fn take_jobs(&mut self) -> Vec<FileJob> {
        std::mem::take(&mut self.jobs)
    }

    /// The batches of idempotent producers found at open (in the active
    /// segment), once.
    pub fn take_recovered_producers(&mut self) -> Vec<ProducerBatch> {
        std::mem::take(&mut self.recovered_producers)
    }

    /// How this log stores its records.
    pub fn format(&self) -> Format {
        self.options.format
    }

    /// Stages `message` for the next [`flush`](Self::flush). Nothing is in
    /// the file until the flush succeeds. In a batch log it becomes a
    /// batch of one record (no key, the current time).
    pub fn append(&mut self, message: &[u8]) -> Result<Appended, StorageError> {
        self.check_writable()?;
        self.check_room(1)?;
        let offset = self.next_offset;
        let before = self.staged.len();
        match self.options.format {
            Format::Text => text::push_line(&mut self.staged, offset, message),
            Format::Batch => {
                let mut b = BatchBuilder::new(&mut self.staged, offset as i64, 0);
                b.push(now_ms(), None, Some(message), &[]);
                b.finish();
            }
        }
        Ok(self.staged_entry(before, 1))
    }

    /// Stages a Kafka record batch (validated by the caller). A batch log
    /// stores it as received with its base offset set; a text log stores
    /// one line per record value, which must be there and hold no
    /// newline, and refuses records with keys or headers (it could not
    /// keep them). Timestamps are not kept: a text log reads back with
    /// the log-append time of the record's index interval.
    pub fn append_batch(
        &mut self,
        bytes: &[u8],
        header: &BatchHeader,
        max_decompressed: usize,
    ) -> Result<Appended, AppendBatchError> {
        let count = u32::try_from(header.record_count)
            .ok()
            .filter(|&c| c > 0)
            .ok_or(AppendBatchError::Invalid("a batch without records".into()))?;
        self.check_writable()
            .and_then(|()| self.check_room(u64::from(count)))
            .map_err(AppendBatchError::Storage)?;
        let offset = self.next_offset;
        let before = self.staged.len();
        match self.options.format {
            Format::Batch => {
                self.staged.extend_from_slice(bytes);
                let stored = &mut self.staged[before..];
                batch::set_base_offset(stored, offset as i64);
                batch::set_partition_leader_epoch(stored, 0);
            }
            Format::Text => {
                let mut scratch = Vec::new();
                let mut n = 0u64;
                let records = batch::records(bytes, max_decompressed, &mut scratch)
                    .map_err(|e| AppendBatchError::Invalid(e.to_string()));
                let result = records.and_then(|records| {
                    for record in records {
                        let record =
                            record.map_err(|e| AppendBatchError::Invalid(e.to_string()))?;
                        // A text line holds a value only: a key or
                        // headers would be acknowledged and then lost.
                        if record.key.is_some() || !record.headers.is_empty() {
                            return Err(AppendBatchError::Invalid(
                                "a text topic stores values only; this record has a key or headers"
                                    .into(),
                            ));
                        }
                        let value = record.value.ok_or(AppendBatchError::Invalid(
                            "a text topic stores values; this record has none".into(),
                        ))?;
                        if memchr(b'\n', value).is_some() {
                            return Err(AppendBatchError::Invalid(
                                "a text topic cannot store a value holding a newline".into(),
                            ));
                        }
                        text::push_line(&mut self.staged, offset + n, value);
                        n += 1;
                    }
                    if n == u64::from(count) {
                        Ok(())
                    } else {
                        Err(AppendBatchError::Invalid("record count mismatch".into()))
                    }
                });
                if let Err(e) = result {
                    self.staged.truncate(before);
                    return Err(e);
                }
            }
        }
        Ok(self.staged_entry(before, count))
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        match &self.read_only {
            Some(cause) => Err(StorageError::ReadOnly {
                path: self.active.path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether a failed sync made the log read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only.is_some()
    }

    fn check_room(&self, count: u64) -> Result<(), StorageError> {
        if self.next_offset.saturating_add(count) > MAX_OFFSET {
            return Err(StorageError::OffsetLimit {
                path: self.active.path.clone(),
                limit: MAX_OFFSET,
            });
        }
        Ok(())
    }

    /// Records what was just pushed onto `staged` from byte `before` as
    /// one entry covering `count` offsets.
    fn staged_entry(&mut self, before: usize, count: u32) -> Appended {
        let len = self.staged.len() - before;
        self.staged_lens.push(len as u32);
        self.staged_counts.push(count);
        let offset = self.next_offset;
        self.next_offset += u64::from(count);
        let seq = self.next_seq;
        self.next_seq += 1;
        Appended { seq, offset }
    }

    /// Writes every staged record, rolling segments where they reach the
    /// size limit. Returns the appends that failed, if any: on failure
    /// nothing of them stays in the file and their offsets are given back.
    /// With `durable_acks`, records past a segment boundary stay staged
    /// until the segment is synced (call again after a sync advances).
    pub fn flush(&mut self) -> Option<Failed> {
        if self.staged_lens.is_empty() {
            return None;
        }
        if let Err(error) = self.check_writable().and_then(|()| self.cut_dirty_tail()) {
            return Some(self.fail_staged(error));
        }
        let mut i = 0; // staged records done
        let mut pos = 0; // staged bytes done
        while i < self.staged_lens.len() {
            if self.roll_waiting {
                if self.sync.synced().seq < self.written.seq {
                    break;
                }
                self.roll_waiting = false;
                if let Err(error) = self.roll() {
                    return Some(self.fail_staged(error));
                }
            }
            // One chunk: the records that fit in the active segment.
            let (start_i, start_pos) = (i, pos);
            let mut offset = self.written.offset;
            let mut seg_len = self.active.len;
            let mut entries: Vec<Entry> = Vec::new();
            let mut last = *self
                .active
                .index
                .entries
                .last()
                .expect("index has an entry");
            let mut crc = last.crc;
            // Every interval written to now gets this time.
            let now = now_ms().max(self.last_time);
            while i < self.staged_lens.len() {
                let len = u64::from(self.staged_lens[i]);
                if seg_len > 0 && seg_len + len > self.options.segment_bytes {
                    break;
                }
                if seg_len - u64::from(last.pos) >= INDEX_INTERVAL {
                    let done = Entry { crc, ..last };
                    entries.push(done);
                    last = Entry::new((offset - self.active.base) as u32, seg_len as u32, 0, now);
                    crc = 0;
                }
                last.time = Time::from_ms(now);
                crc = crc32c_append(crc, &self.staged[pos..pos + len as usize]);
                seg_len += len;
                pos += len as usize;
                offset += u64::from(self.staged_counts[i]);
                i += 1;
            }
            if i > start_i {
                let file = match self.append_file() {
                    Ok(file) => file,
                    Err(error) => return Some(self.fail_staged(error)),
                };
                if let Err(e) = write_all(&file, &self.staged[start_pos..pos]) {
                    self.dirty_tail = true;
                    if let Err(cut) = self.cut_dirty_tail() {
                        error!("{cut}; will retry before the next append");
                    }
                    let error = StorageError::io(
                        &self.active.path,
                        format!("append at byte {}", self.active.len),
                        e,
                    );
                    return Some(self.fail_staged(error));
                }
                let index = &mut self.active.index;
                if let Some((first, rest)) = entries.split_first() {
                    *index.entries.last_mut().expect("index has an entry") = *first;
                    index.entries.extend_from_slice(rest);
                    index.entries.push(last);
                }
                *index.entries.last_mut().expect("index has an entry") = Entry { crc, ..last };
                self.active.len = seg_len;
                self.note_unsynced();
                self.last_time = now;
                self.written = Mark {
                    seq: self.written.seq + (i - start_i) as u64,
                    offset,
                    file: self.active.generation,
                    len: seg_len,
                };
            }
            if i < self.staged_lens.len() {
                // The next record starts a new segment.
                if self.options.durable_acks && self.sync.synced().seq < self.written.seq {
                    // Everything must be settled by syncs first, so a later
                    // cut never reaches into a rolled segment.
                    self.roll_waiting = true;
                    break;
                }
                if let Err(error) = self.roll() {
                    return Some(self.fail_staged(error));
                }
            }
        }
        self.staged.drain(..pos);
        self.staged_lens.drain(..i);
        self.staged_counts.drain(..i);
        if self.staged.capacity() > 8 << 20 && self.staged.len() < 1 << 20 {
            self.staged.shrink_to(1 << 20);
        }
        assert_eq!(
            self.written.seq + self.staged_lens.len() as u64,
            self.next_seq,
            "staged records follow what was written"
        );
        None
    }

    /// Fails every record still staged (those before it in this flush were
    /// written and counted), gives their offsets back and forgets them.
    fn fail_staged(&mut self, error: StorageError) -> Failed {
        let first_failed = self.written.seq;
        self.staged.clear();
        self.staged_lens.clear();
        self.staged_counts.clear();
        self.roll_waiting = false;
        self.next_offset = self.written.offset;
        self.written.seq = self.next_seq;
        self.sync_skip_failed();
        Failed {
            seqs: first_failed..self.next_seq,
            error,
        }
    }

    /// After failed appends: nothing new is in the file, so if no sync is
    /// needed for it, the synced mark may pass the failed numbers too.
    fn sync_skip_failed(&mut self) {
        let synced = self.sync.synced();
        if self.sync.in_flight() == 0
            && synced.offset == self.written.offset
            && synced.file == self.written.file
            && synced.len == self.written.len
        {
            self.sync.synced_directly(self.written);
        }
    }

    /// Closes the active segment and starts a new one at the written
    /// offset: rename to `<name>.<base>`, create the new file, then (on
    /// helper threads) sync the directory and write the old segment's
    /// index.
    fn roll(&mut self) -> Result<(), StorageError> {
        if self.active.len == 0 {
            return Ok(());
        }
        assert!(
            !self.options.durable_acks || self.sync.synced().seq >= self.written.seq,
            "with durable acks a segment rolls only once synced"
        );
        let path = self.active.path.clone();
        let rolled_path = self.dir.join(rolled_name(&self.name, self.active.base));
        fs::rename(&path, &rolled_path).map_err(|e| {
            StorageError::io(&path, format!("rename to {}", rolled_path.display()), e)
        })?;
        let files = self.options.files.clone();
        // The old segment's descriptors (still open on it after the
        // rename), taken out first so that making room cannot close them
        // (they may cover unsynced writes): its append one serves its
        // reads and its sealing sync; its sync ones are done with (syncs
        // in flight hold their own).
        let old_file = files.take(self.id, Slot::Append).and_then(|mut v| v.pop());
        let old_sync = files.take(self.id, Slot::Sync);
        files.make_room(1);
        let file = match files.open(
            &path,
            OpenOptions::new().read(true).append(true).create(true),
        ) {
            Ok(file) => file,
            Err(e) => {
                // Undo, so appends go on in the old segment.
                if let Err(back) = fs::rename(&rolled_path, &path) {
                    error!("{}: cannot rename back: {back}", rolled_path.display());
                }
                if let Some(file) = old_file {
                    files.put(self.id, Slot::Append, vec![file]);
                }
                if let Some(set) = old_sync {
                    files.put(self.id, Slot::Sync, set);
                }
                return Err(StorageError::io(&path, "create new segment", e));
            }
        };
        drop(old_sync);
        files.put(self.id, Slot::Append, vec![Arc::new(file)]);
        let new_base = self.written.offset;
        let old_generation = self.active.generation;
        let old = std::mem::replace(
            &mut self.active,
            Active {
                path,
                generation: old_generation + 1,
                base: new_base,
                len: 0,
                index: Index::new(new_base),
                hint: (new_base, 0),
            },
        );
        let index_job = FileJob::Replace {
            path: index_path(&rolled_path),
            bytes: old.index.encode(new_base, old.len),
            report: None,
        };
        if self.sync.file_synced(old_generation) >= old.len {
            // Already on disk (always with durable acks): seal it now.
            self.jobs.push(index_job);
        } else {
            // A helper syncs the old segment (up to a whole segment may be
            // unsynced); its index, the seal, is written only after that.
            let sync_file = match &old_file {
                Some(f) => f.clone(),
                None => {
                    files.make_room(1);
                    let f = files
                        .open(&rolled_path, OpenOptions::new().read(true))
                        .map_err(|e| StorageError::io(&rolled_path, "open", e));
                    match f {
                        Ok(f) => Arc::new(f),
                        Err(e) => {
                            // The segment stays unsealed: the next start
                            // checks it line by line (and seals it).
                            error!("{e}; cannot seal it");
                            self.finish_roll(rolled_path, old, new_base, None);
                            return Ok(());
                        }
                    }
                }
            };
            let id = self.sync.begin(
                SyncTarget::File {
                    file: old_generation,
                    slot: SEAL_SLOT,
                },
                self.written,
            );
            self.jobs.push(FileJob::Sync {
                sync_id: id,
                file: sync_file,
            });
            self.sealing.push((id, index_job));
        }
        self.finish_roll(rolled_path, old, new_base, old_file);
        Ok(())
    }

    /// The end of a roll: the written mark moves to the new segment, the
    /// directory is synced, the old segment joins the rolled ones (indexed,
    /// and with `file` parked for its reads).
    fn finish_roll(
        &mut self,
        rolled_path: PathBuf,
        old: Active,
        new_base: u64,
        file: Option<Arc<LogFile>>,
    ) {
        self.written.file = self.active.generation;
        self.written.len = 0;
        self.begin_dir_sync();
        if let Some(file) = file {
            self.options
                .files
                .put(self.id, Slot::Rolled(old.base), vec![file]);
        }
        self.rolled.push_back(Rolled {
            path: rolled_path,
            base: old.base,
            end: new_base,
            size: old.len,
            modified: SystemTime::now(),
            max_time: old.index.max_time(),
            loaded: Some(Loaded {
                index: old.index,
                last_used: self.uses,
            }),
        });
        self.evict_loaded();
        self.note_unsynced();
        info!(
            "log={} rolled segment at offset {new_base}",
            self.active.path.display()
        );
    }

    /// The active segment's append descriptor: parked in the budget, or
    /// opened again (it may have been closed while the log was idle and
    /// synced).
    fn append_file(&mut self) -> Result<Arc<LogFile>, StorageError> {
        let files = &self.options.files;
        if let Some(file) = files.get(self.id, Slot::Append).and_then(|mut v| v.pop()) {
            return Ok(file);
        }
        files.make_room(1);
        let path = &self.active.path;
        let file = files
            .open(path, OpenOptions::new().read(true).append(true))
            .map(Arc::new)
            .map_err(|e| StorageError::io(path, "open", e))?;
        files.put(self.id, Slot::Append, vec![file.clone()]);
        Ok(file)
    }

    /// Rolled segment `i`'s read descriptor: parked, or opened again.
    fn rolled_file(&mut self, i: usize) -> Result<Arc<LogFile>, StorageError> {
        let files = &self.options.files;
        let r = &self.rolled[i];
        let slot = Slot::Rolled(r.base);
        if let Some(file) = files.get(self.id, slot).and_then(|mut v| v.pop()) {
            return Ok(file);
        }
        files.make_room(1);
        let file = files
            .open(&r.path, OpenOptions::new().read(true))
            .map(Arc::new)
            .map_err(|e| StorageError::io(&r.path, "open", e))?;
        files.put(self.id, slot, vec![file.clone()]);
        Ok(file)
    }

    /// The active segment's sync descriptors, one per sync slot, each its
    /// own open file description: Linux reports a writeback error once per
    /// description, so concurrent syncs each see every error. Slot 0 is
    /// the append descriptor (writes do not consume error reports), so a
    /// log with unsynced writes holds one descriptor, not two. With
    /// `durable_acks`, [`SYNC_SLOTS`] - 1 more are opened together
    /// (acknowledgements wait for syncs, and concurrent syncs batch them)
    /// if the budget has room, parked in it between syncs, and closed with
    /// the segment or, while none of them is syncing and everything
    /// written is synced, when the budget needs room. They are opened only
    /// while no sync of the segment is running: a description opened
    /// after a running sync has taken an error report would not see it,
    /// and its success, settling the older sync, would vouch for the lost
    /// writes. Opened with none running, they see every error from then
    /// on, and one not yet reported to anyone. If they cannot be opened,
    /// the syncs use the append descriptor alone.
    fn sync_files(&mut self) -> Result<Vec<Arc<LogFile>>, StorageError> {
        let mut set = vec![self.append_file()?];
        if !self.options.durable_acks {
            return Ok(set);
        }
        let files = &self.options.files;
        if let Some(extra) = files.get(self.id, Slot::Sync) {
            set.extend(extra);
            return Ok(set);
        }
        if self.sync.running_on(self.active.generation) {
            return Ok(set);
        }
        let n = files.make_room(SYNC_SLOTS - 1);
        let path = &self.active.path;
        let mut extra = Vec::new();
        for _ in 0..n {
            match files.open(path, OpenOptions::new().read(true)) {
                Ok(file) => extra.push(Arc::new(file)),
                Err(e) => {
                    debug!("{}: no extra sync descriptor ({e})", path.display());
                    break;
                }
            }
        }
        if !extra.is_empty() {
            files.put(self.id, Slot::Sync, extra.clone());
            set.extend(extra);
        }
        Ok(set)
    }

    /// Tells the budget whether the active segment has writes no
    /// finished sync covers: its descriptors must stay open until one
    /// does (see [`super::files`]). Called after every write, cut, roll
    /// and sync.
    fn note_unsynced(&self) {
        let unsynced = self.options.unsynced_stay_open
            && self.sync.file_synced(self.active.generation) < self.active.len;
        self.options.files.set_unsynced(self.id, unsynced);
    }

    /// Queues a sync of the log's directory covering what is written now
    /// (a new or renamed segment is durable only once its directory is).
    fn begin_dir_sync(&mut self) {
        let dir = self.dir.clone();
        self.begin_sync_of_dir(dir);
    }

    fn begin_sync_of_dir(&mut self, dir: PathBuf) {
        let id = self.sync.begin(SyncTarget::Dir, self.written);
        self.jobs.push(FileJob::SyncDir { sync_id: id, dir });
    }

    /// Nothing in this log counts as durable before `dirs` are synced (the
    /// directory entries of a new log).
    pub fn sync_dirs_first(&mut self, dirs: &[PathBuf]) {
        for dir in dirs {
            self.begin_sync_of_dir(dir.clone());
        }
    }

    /// Cuts whatever a failed append left past the last good length.
    fn cut_dirty_tail(&mut self) -> Result<(), StorageError> {
        if self.dirty_tail {
            let file = self.append_file()?;
            file.set_len(self.active.len).map_err(|e| {
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

    /// Whether something written is covered by no sync begun yet.
    pub fn sync_wanted(&self) -> bool {
        self.read_only.is_none() && self.sync.begun().seq < self.written.seq
    }

    /// A sync of the active segment covering everything written, if one
    /// is wanted and a sync slot is free. Run each job, then report it with
    /// [`sync_completed`](Self::sync_completed).
    pub fn begin_sync(&mut self) -> Vec<FileJob> {
        let mut jobs = Vec::new();
        if !self.sync_wanted() {
            return jobs;
        }
        let set = match self.sync_files() {
            Ok(set) => set,
            Err(e) => {
                // Tried again at the next sync (under `always`, the next
                // turn): say so at most once a second, not every turn.
                static LAST: std::sync::Mutex<Option<std::time::Instant>> =
                    std::sync::Mutex::new(None);
                let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                    *last = Some(std::time::Instant::now());
                    error!("{e}; the sync waits");
                }
                return jobs;
            }
        };
        if let Some(slot) =
            (0..set.len()).find(|&s| !self.sync.slot_busy(self.active.generation, s))
        {
            let id = self.sync.begin(
                SyncTarget::File {
                    file: self.active.generation,
                    slot,
                },
                self.written,
            );
            let file = set[slot].clone();
            jobs.push(FileJob::Sync { sync_id: id, file });
        }
        jobs
    }

    /// Records the end of a sync begun by this log.
    pub fn sync_completed(&mut self, sync_id: u64, result: io::Result<()>) -> SyncResult {
        let r = self.record_sync(sync_id, result);
        self.note_unsynced();
        r
    }

    fn record_sync(&mut self, sync_id: u64, result: io::Result<()>) -> SyncResult {
        if self.read_only.is_some() {
            // Nothing vouches for this file any more: the synced mark
            // (and so the recovery checkpoint) stays where it was.
            return SyncResult::Unchanged;
        }
        let what = if self.sync.is_dir_sync(sync_id) {
            "fsync of its directory"
        } else {
            "fdatasync"
        };
        let completion = self.sync.complete(sync_id, result.is_ok());
        if result.is_ok()
            && let Some(i) = self.sealing.iter().position(|(id, _)| *id == sync_id)
        {
            let (_, job) = self.sealing.remove(i);
            self.jobs.push(job);
        }
        match (completion, result) {
            (Completion::Advanced, _) => SyncResult::Advanced,
            (Completion::Failed, Err(e)) => {
                let error = StorageError::io(&self.active.path, what, e);
                if self.options.durable_acks {
                    SyncResult::Cut(self.cut_unsynced(error))
                } else {
                    let cause = error.client_reason();
                    self.read_only = Some(cause.clone());
                    self.sealing.clear();
                    SyncResult::ReadOnly(StorageError::ReadOnly {
                        path: self.active.path.clone(),
                        cause,
                    })
                }
            }
            _ => SyncResult::Unchanged,
        }
    }

    /// After a failed sync with `durable_acks`: cuts the active segment
    /// back to what was synced, fails everything after it (staged records
    /// too) and gives their offsets back.
    fn cut_unsynced(&mut self, error: StorageError) -> Failed {
        let synced = self.sync.synced();
        let keep = if synced.file == self.active.generation {
            synced.len
        } else {
            0
        };
        assert!(
            synced.offset >= self.active.base,
            "with durable acks only the active segment is ever unsynced"
        );
        let first_failed = synced.seq;
        self.active.len = keep;
        self.dirty_tail = true;
        if let Err(e) = self.cut_dirty_tail() {
            error!("{e}; will retry before the next append");
        }
        self.staged.clear();
        self.staged_lens.clear();
        self.staged_counts.clear();
        self.roll_waiting = false;
        self.next_offset = synced.offset;
        let index = &mut self.active.index;
        index
            .entries
            .retain(|e| u64::from(e.pos) < keep || e.pos == 0);
        let last_pos = u64::from(index.entries.last().expect("index has an entry").pos);
        let crc = self
            .append_file()
            .and_then(|file| {
                read_crc(&file, last_pos, keep).map_err(|e| {
                    StorageError::io(
                        &self.active.path,
                        format!("re-read bytes {last_pos}..{keep} after a cut"),
                        e,
                    )
                })
            })
            .unwrap_or_else(|e| {
                error!("{e}");
                0
            });
        let index = &mut self.active.index;
        index.entries.last_mut().expect("index has an entry").crc = crc;
        self.active.hint = (self.active.base, 0);
        self.written = Mark {
            seq: self.next_seq,
            offset: synced.offset,
            file: self.active.generation,
            len: keep,
        };
        self.sync.abandon(Mark {
            file: synced.file,
            len: synced.len,
            ..self.written
        });
        if synced.file != self.active.generation {
            // The new segment's directory entry is not known to be durable.
            self.begin_dir_sync();
        }
        Failed {
            seqs: first_failed..self.next_seq,
            error,
        }
    }

    /// Forces what was written to stable storage now, on this thread (at
    /// shutdown, or when the caller has nothing else to do). Rolled
    /// segments and directories still syncing on helper threads are not
    /// waited for.
    pub fn sync_now(&mut self) -> SyncResult {
        let mut last = SyncResult::Unchanged;
        // Syncs queued for helpers but not taken yet run here too.
        let (queued, other): (Vec<FileJob>, Vec<FileJob>) = std::mem::take(&mut self.jobs)
            .into_iter()
            .partition(|j| matches!(j, FileJob::Sync { .. } | FileJob::SyncDir { .. }));
        self.jobs = other;
        let begun = self.begin_sync();
        for job in queued.into_iter().chain(begun) {
            let (sync_id, result) = match job.run() {
                Some(super::JobResult::Synced {
                    sync_id, result, ..
                }) => (sync_id, result),
                // Out of descriptors: a helper runs it later.
                Some(super::JobResult::NotRun(job)) => {
                    self.jobs.push(job);
                    continue;
                }
                _ => continue,
            };
            match self.sync_completed(sync_id, result) {
                SyncResult::Unchanged => {}
                r @ SyncResult::Cut(_) => return r,
                r => last = r,
            }
        }
        last
    }

    /// Reads up to `max_count` messages from offset `from` (at least
    /// [`first_offset`](Self::first_offset)), but not at or past `end`,
    /// calling `emit(offset, value)` for each, and returns the offset
    /// after the last one emitted (`from` if none). Stops at the end of a
    /// segment, and before a message that would take the total past
    /// `max_bytes` (but always emits at least one if there is one), or
    /// when `emit` returns false (that message was not taken). `buf`
    /// is scratch space, reused between calls. In a batch log, each record
    /// is one message (its value; a null value is empty); compressed
    /// batches are decompressed, control batches skipped.
    pub fn read(
        &mut self,
        from: u64,
        end: u64,
        max_count: usize,
        max_bytes: usize,
        buf: &mut Vec<u8>,
        mut emit: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<u64, StorageError> {
        let format = self.options.format;
        let (mut next, mut count, mut bytes) = (from, 0usize, 0usize);
        let mut scratch = Vec::new();
        let path = self.active.path.clone();
        self.walk(from, end, buf, |first, n, entry| {
            if first + n <= from {
                return Ok(true);
            }
            if count == max_count {
                return Ok(false);
            }
            match format {
                Format::Text => {
                    // The walk checked the line, or its interval's CRC: the
                    // message follows its header. A line shorter than its
                    // header passed a CRC only if the segment and its index
                    // were both replaced: damaged, never a panic.
                    let Some(message) = entry.get(text::header_len(first)..entry.len() - 1) else {
                        return Err(StorageError::corrupt(
                            &path,
                            Location::Offset(first),
                            "a line shorter than its header".to_string(),
                        ));
                    };
                    if count > 0 && bytes + message.len() > max_bytes {
                        return Ok(false);
                    }
                    if !emit(first, message) {
                        return Ok(false);
                    }
                    count += 1;
                    bytes += message.len();
                    next = first + 1;
                    Ok(true)
                }
                Format::Batch => {
                    let header = batch::parse_header(entry).map_err(|e| {
                        StorageError::corrupt(&path, Location::Offset(first), e.to_string())
                    })?;
                    if header.is_control() {
                        next = first + n;
                        return Ok(true);
                    }
                    let records =
                        batch::records(entry, MAX_DECOMPRESSED, &mut scratch).map_err(|e| {
                            StorageError::corrupt(&path, Location::Offset(first), e.to_string())
                        })?;
                    for record in records {
                        let record = record.map_err(|e| {
                            StorageError::corrupt(&path, Location::Offset(first), e.to_string())
                        })?;
                        let offset = record.offset(&header) as u64;
                        if offset < from || offset >= end {
                            continue;
                        }
                        let value = record.value.unwrap_or_default();
                        if count == max_count || (count > 0 && bytes + value.len() > max_bytes) {
                            return Ok(false);
                        }
                        if !emit(offset, value) {
                            return Ok(false);
                        }
                        count += 1;
                        bytes += value.len();
                        next = offset + 1;
                    }
                    next = next.max(first + n).min(end);
                    Ok(true)
                }
            }
        })?;
        Ok(next)
    }

    /// Copies whole stored batches to `out`: the one holding `from`, then
    /// the next ones, while the total stays within `max_bytes` (the first
    /// is always copied) and they end before `end`. Returns the offset
    /// after the last batch copied (`from` if none). Batch logs only.
    pub fn read_raw(
        &mut self,
        from: u64,
        end: u64,
        max_bytes: usize,
        buf: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<u64, StorageError> {
        assert_eq!(self.options.format, Format::Batch, "raw reads copy batches");
        let start = out.len();
        let mut next = from;
        self.walk(from, end, buf, |first, n, entry| {
            if first + n <= from {
                return Ok(true);
            }
            if first + n > end || (out.len() > start && out.len() - start + entry.len() > max_bytes)
            {
                return Ok(false);
            }
            out.extend_from_slice(entry);
            next = first + n;
            Ok(true)
        })?;
        Ok(next)
    }

    /// For Kafka readers of a text log: builds uncompressed batches of the
    /// messages from `from` (values; no key) into `out`, at most
    /// `max_bytes` of them, batch and record headers counted (but at least
    /// one message). Returns the offset after the last one.
    ///
    /// One batch per index interval, marked LogAppendTime with the
    /// interval's log-append time (see [`index`]): the time is the
    /// broker's, not a producer's, and LogAppendTime says so to readers
    /// (as a Kafka topic with `message.timestamp.type=LogAppendTime`
    /// does); every record of a batch then has the batch's time, which is
    /// exactly what the index knows, so a batch never spans two intervals.
    pub fn read_as_batches(
        &mut self,
        from: u64,
        end: u64,
        max_bytes: usize,
        buf: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<u64, StorageError> {
        // One read: a segment's worth at most. The messages are copied
        // out of `buf` into one buffer, `spans` their (offset, end).
        let mut data: Vec<u8> = Vec::new();
        let mut spans: Vec<(u64, usize)> = Vec::new();
        let next = self.read(from, end, MAX_SYNTHESIZED, max_bytes, buf, |o, m| {
            data.extend_from_slice(m);
            spans.push((o, data.len()));
            true
        })?;
        let Some(&(first, _)) = spans.first() else {
            return Ok(next);
        };
        let index = self.index_for(first)?;
        let time_of = |o: u64| index.entries[index.interval_of(o)].time.ms();
        let mut done = 0usize; // bytes of finished batches
        let mut taken = from;
        let mut at = 0usize; // start of the message in `data`
        let mut i = 0;
        'batches: while i < spans.len() {
            let time = time_of(spans[i].0);
            let mut b = BatchBuilder::new(out, spans[i].0 as i64, 0);
            b.log_append_time();
            while i < spans.len() && time_of(spans[i].0) == time {
                let (offset, stop) = spans[i];
                let value = &data[at..stop];
                let header = if b.is_empty() { batch::HEADER_LEN } else { 0 };
                if offset > first
                    && done + b.len() + header + value.len() + MAX_RECORD_OVERHEAD > max_bytes
                {
                    b.finish();
                    break 'batches;
                }
                b.push(time, None, Some(value), &[]);
                taken = offset + 1;
                at = stop;
                i += 1;
            }
            done += b.finish();
        }
        Ok(taken)
    }

    /// The index of the segment holding `offset` (loading it if needed).
    fn index_for(&mut self, offset: u64) -> Result<&Index, StorageError> {
        if offset >= self.active.base {
            return Ok(&self.active.index);
        }
        let i = self.rolled.partition_point(|r| r.end <= offset);
        self.load(i)?;
        let r = &self.rolled[i];
        match &r.loaded {
            Some(loaded) => Ok(&loaded.index),
            None => Err(StorageError::corrupt(
                &r.path,
                Location::Offset(offset),
                "the segment's index is not loaded".to_string(),
            )),
        }
    }

    /// The first offset whose record's timestamp is at or after `ts`, and
    /// that timestamp; `None` if there is none.
    ///
    /// A text log answers from its indexes: the first interval whose
    /// log-append time (an upper bound of its records') is at or after
    /// `ts`, so the offset may be up to an interval early, never late.
    /// A batch log reads batch headers from the oldest segment on,
    /// skipping whole batches by their max timestamp.
    pub fn offset_for_time(
        &mut self,
        ts: i64,
        buf: &mut Vec<u8>,
    ) -> Result<Option<(u64, i64)>, StorageError> {
        let end = self.durable().offset;
        if self.options.format == Format::Text {
            return self.text_offset_for_time(ts, end);
        }
        let mut at = self.first_offset();
        let mut found = None;
        let path = self.active.path.clone();
        let mut scratch = Vec::new();
        while at < end && found.is_none() {
            let before = at;
            self.walk(at, end, buf, |first, n, entry| {
                at = first + n;
                let h = batch::parse_header(entry).map_err(|e| {
                    StorageError::corrupt(&path, Location::Offset(first), e.to_string())
                })?;
                if h.max_timestamp < ts || h.is_control() {
                    return Ok(true);
                }
                let records =
                    batch::records(entry, MAX_DECOMPRESSED, &mut scratch).map_err(|e| {
                        StorageError::corrupt(&path, Location::Offset(first), e.to_string())
                    })?;
                for r in records {
                    let r = r.map_err(|e| {
                        StorageError::corrupt(&path, Location::Offset(first), e.to_string())
                    })?;
                    let t = r.timestamp(&h);
                    if t >= ts {
                        found = Some((r.offset(&h) as u64, t));
                        return Ok(false);
                    }
                }
                Ok(true)
            })?;
            if at == before {
                break;
            }
        }
        Ok(found)
    }

    /// [`offset_for_time`](Self::offset_for_time) of a text log, below
    /// `end`: rolled segments whose latest time is before `ts` are skipped
    /// without reading their index.
    fn text_offset_for_time(
        &mut self,
        ts: i64,
        end: u64,
    ) -> Result<Option<(u64, i64)>, StorageError> {
        let first_match = |index: &Index| {
            index
                .entries
                .iter()
                .find(|e| e.time.ms() >= ts)
                .map(|e| (index.base + u64::from(e.rel), e.time.ms()))
        };
        for i in 0..self.rolled.len() {
            if self.rolled[i].base >= end {
                return Ok(None);
            }
            if self.rolled[i].max_time < ts {
                continue;
            }
            let base = self.rolled[i].base;
            if let Some(found) = first_match(self.index_for(base)?) {
                return Ok(Some(found).filter(|(o, _)| *o < end));
            }
        }
        Ok(first_match(&self.active.index).filter(|(o, _)| *o < end))
    }

    /// Walks the entries of the segment holding `from`, starting at the
    /// index entry at or before it, calling `f(first offset, offsets, bytes)`
    /// for each entry that starts below `end`, until `f` says no (`false`:
    /// that entry is not taken) or the segment ends. Rolled segments check
    /// the CRC of every index interval before handing out its entries.
    fn walk(
        &mut self,
        from: u64,
        end: u64,
        buf: &mut Vec<u8>,
        f: impl FnMut(u64, u64, &[u8]) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        let end = end.min(self.written.offset);
        if from >= end || from < self.first_offset() {
            return Ok(());
        }
        self.uses += 1;
        let format = self.options.format;
        let result = if from >= self.active.base {
            let file = self.append_file()?;
            let a = &mut self.active;
            let (i, o, p) = a.index.seek(from);
            let start = if a.hint.0 <= from && a.hint.0 > o {
                (a.hint.0, a.hint.1, i)
            } else {
                (o, p, i)
            };
            let seg = SegmentView {
                format,
                file: &file,
                path: &a.path,
                index: &a.index,
                len: a.len,
                end,
                verify: false,
            };
            let r = seg.walk(start, buf, f);
            if let Ok((next, pos)) = r {
                a.hint = (next, pos);
            }
            r.map(drop)
        } else {
            let i = self.rolled.partition_point(|r| r.end <= from);
            self.load(i)?;
            let file = self.rolled_file(i)?;
            let uses = self.uses;
            let r = &mut self.rolled[i];
            let Some(loaded) = &mut r.loaded else {
                return Ok(());
            };
            loaded.last_used = uses;
            let start = loaded.index.seek(from);
            let seg = SegmentView {
                format,
                file: &file,
                path: &r.path,
                index: &loaded.index,
                len: r.size,
                end: r.end.min(end),
                verify: true,
            };
            seg.walk((start.1, start.2, start.0), buf, f).map(drop)
        };
        if buf.capacity() > 4 << 20 {
            buf.clear();
            buf.shrink_to(64 << 10);
        }
        result
    }

    /// Opens rolled segment `i` and reads its index if it is not loaded.
    fn load(&mut self, i: usize) -> Result<(), StorageError> {
        if self.rolled[i].loaded.is_some() {
            return Ok(());
        }
        let r = &self.rolled[i];
        let ipath = index_path(&r.path);
        let index = match fs::read(&ipath) {
            Ok(bytes) => {
                let (header, index) = index::decode(&bytes, system_ms(r.modified))
                    .map_err(|why| StorageError::corrupt(&ipath, Location::File, why))?;
                if header.base != r.base || header.end != r.end || header.len != r.size {
                    return Err(StorageError::corrupt(
                        &ipath,
                        Location::File,
                        format!(
                            "index covers offsets {}..{} in {} bytes, the segment {}..{} in {} bytes",
                            header.base, header.end, header.len, r.base, r.end, r.size
                        ),
                    ));
                }
                index
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Only between a roll and the helper writing the index, for
                // a segment evicted meanwhile: scan it once (rare).
                warn!("{}: not written yet; scanning the segment", ipath.display());
                let file = self.rolled_file(i)?;
                let r = &self.rolled[i];
                let scan = scan(self.options.format, &r.path, &file, Some(r.base), false)?;
                if scan.torn > 0 || r.base + scan.count != r.end {
                    return Err(StorageError::corrupt(
                        &r.path,
                        Location::Offset(r.base + scan.count),
                        format!("the segment should end at offset {}", r.end),
                    ));
                }
                Index {
                    base: r.base,
                    entries: scan.entries,
                }
            }
            Err(e) => return Err(StorageError::io(&ipath, "read", e)),
        };
        self.rolled[i].loaded = Some(Loaded {
            index,
            last_used: self.uses,
        });
        self.evict_loaded();
        Ok(())
    }

    /// Keeps at most [`MAX_LOADED_SEGMENTS`] rolled segments' indexes in
    /// memory; an unloaded segment's descriptor closes too.
    fn evict_loaded(&mut self) {
        let loaded = self.rolled.iter().filter(|r| r.loaded.is_some()).count();
        for _ in MAX_LOADED_SEGMENTS..loaded {
            let oldest = (0..self.rolled.len())
                .filter(|&i| self.rolled[i].loaded.is_some())
                .min_by_key(|&i| self.rolled[i].loaded.as_ref().map_or(0, |l| l.last_used));
            if let Some(i) = oldest {
                self.rolled[i].loaded = None;
                let slot = Slot::Rolled(self.rolled[i].base);
                self.options.files.take(self.id, slot);
            }
        }
    }

    /// Drops the oldest rolled segments while the log is over `max_bytes`
    /// or they are older than `max_age`; their files are deleted by a
    /// helper thread, oldest first (see [`take_jobs`](Self::take_jobs)).
    /// The active segment is never dropped. Returns how many were dropped.
    pub fn apply_retention(
        &mut self,
        max_bytes: Option<u64>,
        max_age: Option<Duration>,
        now: SystemTime,
    ) -> usize {
        let mut total = self.len_bytes();
        let mut dropped = 0;
        while let Some(oldest) = self.rolled.front() {
            let over_size = max_bytes.is_some_and(|max| total > max);
            let too_old = max_age.is_some_and(|age| {
                now.duration_since(oldest.modified)
                    .is_ok_and(|elapsed| elapsed > age)
            });
            if !over_size && !too_old {
                break;
            }
            let Some(r) = self.rolled.pop_front() else {
                break;
            };
            total -= r.size;
            dropped += 1;
            self.options.files.take(self.id, Slot::Rolled(r.base));
            // The segment first: a crash between the two leaves an orphan
            // index, which the next start deletes; never a hole.
            self.jobs.push(FileJob::Delete(r.path.clone()));
            self.jobs.push(FileJob::Delete(index_path(&r.path)));
        }
        if dropped > 0 {
            info!(
                "log={} retention: dropped {dropped} segments; first offset is now {}",
                self.active.path.display(),
                self.first_offset()
            );
        }
        dropped
    }
}

impl Drop for Log {
    /// Its parked descriptors close (sync jobs still running keep theirs
    /// until they finish).
    fn drop(&mut self) {
        self.options.files.forget_log(self.id);
    }
}

/// One segment, for walking its entries.
struct SegmentView<'a> {
    format: Format,
    file: &'a File,
    path: &'a Path,
    index: &'a Index,
    /// Bytes of complete entries.
    len: u64,
    /// Hand out no entry starting at or past this offset.
    end: u64,
    /// Check each index interval's CRC before using it.
    verify: bool,
}

impl SegmentView<'_> {
    /// Walks entries from `start` (offset, byte position, index interval;
    /// with `verify` the position must be the interval's start). Returns
    /// the offset and position after the last entry taken. With `verify`,
    /// each interval is checked just before its entries are used, so
    /// damage further on does not stop a read that ends before it.
    fn walk(
        &self,
        start: (u64, u64, usize),
        buf: &mut Vec<u8>,
        mut f: impl FnMut(u64, u64, &[u8]) -> Result<bool, StorageError>,
    ) -> Result<(u64, u64), StorageError> {
        let (mut offset, mut pos, mut i) = start;
        let mut chunk = READ_CHUNK;
        while offset < self.end && pos < self.len {
            // What to read: whole intervals when checking them (about
            // READ_CHUNK bytes, at least one), else a chunk.
            let stop = if self.verify {
                let mut j = i;
                let mut stop = self.index.interval_end(i, self.len);
                while j + 1 < self.index.entries.len()
                    && self.index.interval_end(j + 1, self.len) - pos <= READ_CHUNK as u64
                {
                    j += 1;
                    stop = self.index.interval_end(j, self.len);
                }
                stop
            } else {
                (pos + chunk as u64).min(self.len)
            };
            let want = (stop - pos) as usize;
            buf.resize(want, 0);
            self.file
                .read_exact_at(buf, pos)
                .map_err(|e| StorageError::io(self.path, format!("read at byte {pos}"), e))?;
            let mut used = 0;
            let mut need = None;
            // Bytes of `buf` checked (all of it when not verifying).
            let mut checked = if self.verify { 0 } else { want };
            while offset < self.end && used < want {
                if used >= checked {
                    let e = self.index.entries[i];
                    let a = (u64::from(e.pos) - pos) as usize;
                    let b = (self.index.interval_end(i, self.len) - pos) as usize;
                    if crc32c(&buf[a..b]) != e.crc {
                        return Err(StorageError::corrupt(
                            self.path,
                            Location::Offset(self.index.base + u64::from(e.rel)),
                            format!(
                                "checksum mismatch in bytes {}..{} (the segment was changed after it was written)",
                                e.pos,
                                u64::from(e.pos) + (b - a) as u64
                            ),
                        ));
                    }
                    checked = b;
                    i += 1;
                }
                let bytes = &buf[used..checked];
                let parsed = if self.verify {
                    self.format.parse_trusted(bytes, offset)
                } else {
                    self.format.parse(bytes, Some(offset), false)
                };
                match parsed {
                    Parsed::Entry { len, first, count } => {
                        if !f(first, count, &buf[used..used + len])? {
                            return Ok((offset, pos + used as u64));
                        }
                        offset = first + count;
                        used += len;
                    }
                    Parsed::Incomplete { need: n } => {
                        if self.verify {
                            return Err(StorageError::corrupt(
                                self.path,
                                Location::Offset(offset),
                                format!(
                                    "an entry crosses the index interval ending at byte {}",
                                    pos + checked as u64
                                ),
                            ));
                        }
                        need = n;
                        break;
                    }
                    Parsed::Bad(why) => {
                        return Err(StorageError::corrupt(
                            self.path,
                            Location::Offset(offset),
                            format!("{why} at byte {}", pos + used as u64),
                        ));
                    }
                }
            }
            if used == 0 && !self.verify {
                if stop == self.len {
                    return Err(StorageError::corrupt(
                        self.path,
                        Location::Offset(offset),
                        format!("the file ends inside the entry at byte {pos}"),
                    ));
                }
                // An entry longer than the chunk: read it whole next time.
                chunk = need.unwrap_or(chunk * 4).max(chunk * 2);
                continue;
            }
            pos += used as u64;
            if self.verify && used < want {
                // Stopped at `end` inside the chunk.
                break;
            }
        }
        Ok((offset, pos))
    }
}

/// CRC-32C of `file` bytes `from..to`.
fn read_crc(file: &File, from: u64, to: u64) -> io::Result<u32> {
    let mut buf = vec![0u8; (to - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    Ok(crc32c(&buf))
}

/// Where a file set aside at recovery goes: `<file>.aside-<unix seconds>`
/// (never a name the log reads).
fn aside_path(file: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut s = file.as_os_str().to_owned();
    s.push(format!(".aside-{secs}"));
    PathBuf::from(s)
}

/// `<name>.<offset as 20 digits>`: sorts by offset, says what it came from.
fn rolled_name(name: &str, base: u64) -> String {
    format!("{name}.{base:020}")
}

/// A rolled segment's index file.
pub fn index_path(segment: &Path) -> PathBuf {
    let mut s = segment.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

/// A rolled segment found on disk.
struct FoundSegment {
    path: PathBuf,
    base: u64,
    size: u64,
    modified: SystemTime,
    /// Its index file exists.
    has_index: bool,
}

#[derive(Default)]
struct Found {
    /// Oldest first.
    segments: Vec<FoundSegment>,
    /// Index files without a segment (left by a crash mid-retention).
    orphan_indexes: Vec<PathBuf>,
}

/// Rolled segments of `dir/name` and their index files.
fn find_files(dir: &Path, name: &str) -> Result<Found, StorageError> {
    let prefix = format!("{name}.");
    let mut segments = Vec::new();
    let mut indexes = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io(dir, "list", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, "list", e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let (digits, is_index) = match rest.strip_suffix(".index") {
            Some(d) => (d, true),
            None => (rest, false),
        };
        if digits.len() != 20 {
            continue;
        }
        let Some(base) = parse_u64(digits.as_bytes()) else {
            continue;
        };
        if is_index {
            indexes.push((base, entry.path()));
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| StorageError::io(&entry.path(), "stat", e))?;
        segments.push(FoundSegment {
            path: entry.path(),
            base,
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            has_index: false,
        });
    }
    segments.sort_by_key(|s| s.base);
    let mut orphan_indexes = Vec::new();
    for (base, path) in indexes {
        match segments.binary_search_by_key(&base, |s| s.base) {
            Ok(i) => segments[i].has_index = true,
            Err(_) => orphan_indexes.push(path),
        }
    }
    Ok(Found {
        segments,
        orphan_indexes,
    })
}

/// Checks a rolled segment against its index header, or scans it (and
/// queues a new index) if the index is missing or unreadable.
/// An index to write: (segment base, path, bytes).
type Rebuilt = (u64, PathBuf, Vec<u8>);

/// Reads and checks a rolled segment's index header against the segment.
fn read_index_header(seg: &FoundSegment) -> Result<index::Header, String> {
    if !seg.has_index {
        return Err("missing".to_string());
    }
    let ipath = index_path(&seg.path);
    let mut head = [0u8; index::HEADER_BYTES];
    let meta = File::open(&ipath)
        .and_then(|f| {
            f.read_exact_at(&mut head, 0)?;
            f.metadata()
        })
        .map_err(|e| e.to_string())?;
    let h = index::decode_header(&head)?;
    if meta.len() != h.file_len() {
        return Err(format!(
            "the index is {} bytes, its header says {}",
            meta.len(),
            h.file_len()
        ));
    }
    Ok(h)
}

fn check_segment(
    format: Format,
    seg: &FoundSegment,
    header: Result<index::Header, String>,
    rebuilt: &mut Vec<Rebuilt>,
) -> Result<Rolled, StorageError> {
    let ipath = index_path(&seg.path);
    let rolled = |end, max_time| Rolled {
        path: seg.path.clone(),
        base: seg.base,
        end,
        size: seg.size,
        modified: seg.modified,
        max_time,
        loaded: None,
    };
    match header {
        Ok(h) => {
            if h.base != seg.base || h.len != seg.size {
                return Err(StorageError::corrupt(
                    &seg.path,
                    Location::File,
                    format!(
                        "the segment has {} bytes from offset {}, its index says {} bytes from offset {} \
                         (was the segment truncated or replaced?)",
                        seg.size, seg.base, h.len, h.base
                    ),
                ));
            }
            if h.end > MAX_OFFSET {
                return Err(StorageError::corrupt(
                    &ipath,
                    Location::File,
                    format!("offset {} is past the highest this broker supports", h.end),
                ));
            }
            // A version 1 index has no times: the file's modification
            // time bounds them all.
            Ok(rolled(h.end, h.max_time.unwrap_or(system_ms(seg.modified))))
        }
        Err(why) => {
            if seg.has_index {
                warn!("{}: {why}; rebuilding it", ipath.display());
            } else {
                info!(
                    "{}: no index (written by an older version, or a crash right after a roll); building it",
                    seg.path.display()
                );
            }
            let file = File::open(&seg.path).map_err(|e| StorageError::io(&seg.path, "open", e))?;
            let scan = scan(format, &seg.path, &file, Some(seg.base), false)?;
            if scan.torn > 0 || scan.count == 0 {
                return Err(StorageError::corrupt(
                    &seg.path,
                    Location::Byte(scan.len),
                    if scan.count == 0 {
                        "the rolled segment holds no complete line".to_string()
                    } else {
                        "the rolled segment does not end with a newline".to_string()
                    },
                ));
            }
            let end = seg.base + scan.count;
            let index = Index {
                base: seg.base,
                entries: scan.entries,
            };
            rebuilt.push((seg.base, ipath, index.encode(end, scan.len)));
            let mut r = rolled(end, index.max_time());
            r.size = scan.len;
            Ok(r)
        }
    }
}

/// Checks that rolled segments chain into each other and into the active
/// segment (whose first offset is `active_base`, if it has lines). A break
/// is refused, or with `skip` the segments before it are dropped from the
/// log and their paths added to `skipped`.
fn check_chain(
    active: &Path,
    rolled: &mut VecDeque<Rolled>,
    active_base: Option<u64>,
    skip: bool,
    skipped: &mut Vec<PathBuf>,
) -> Result<(), StorageError> {
    let mut i = 0;
    while i < rolled.len() {
        let next_base = rolled.get(i + 1).map(|r| r.base).or(active_base);
        if let Some(next_base) = next_base
            && next_base != rolled[i].end
        {
            let next_path = rolled.get(i + 1).map_or(active, |r| &r.path);
            let err = StorageError::corrupt(
                next_path,
                Location::Line(1),
                format!(
                    "starts at offset {next_base} but {} ends at {}",
                    rolled[i].path.display(),
                    rolled[i].end
                ),
            );
            if !skip {
                return Err(err);
            }
            let dropped: Vec<PathBuf> = rolled.drain(..=i).map(|r| r.path).collect();
            skipped.extend(dropped.iter().cloned());
            let dropped: Vec<String> = dropped.iter().map(|p| p.display().to_string()).collect();
            warn!(
                "{err}; skipping (--skip-corrupt-segments) {}",
                dropped.join(", ")
            );
            i = 0;
            continue;
        }
        i += 1;
    }
    Ok(())
}

/// What a scan of a segment found.
#[derive(Default)]
struct Scan {
    /// The first line's offset, if there is a line.
    base: Option<u64>,
    /// Complete lines.
    count: u64,
    /// Bytes of complete lines.
    len: u64,
    /// Index entries with the CRCs of their intervals.
    entries: Vec<Entry>,
    /// Bytes after the last newline.
    torn: u64,
    /// (lenient scans) a line that does not fit ended the scan.
    damaged: bool,
    /// Batches of idempotent producers found.
    producers: Vec<ProducerBatch>,
}

/// A stored batch of an idempotent producer, as found at recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: u64,
}

/// Reads a segment once, checking every line and building its index. The
/// first line must carry `expect_base` if given (else any offset starts
/// the sequence).
/// With `lenient`, a line that does not fit ends the scan (`damaged`)
/// instead of failing it. The intervals get the file's modification time
/// as their log-append time: the only time known for them, and an upper
/// bound of each record's.
fn scan(
    format: Format,
    path: &Path,
    file: &File,
    expect_base: Option<u64>,
    lenient: bool,
) -> Result<Scan, StorageError> {
    let time = file
        .metadata()
        .and_then(|m| m.modified())
        .map(system_ms)
        .map_err(|e| StorageError::io(path, "stat", e))?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut crc = 0u32;
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0usize;
    let mut pos = 0u64; // file position of buf[0]
    let mut base = expect_base;
    let mut count = 0u64; // offsets
    let mut number = 0u64; // entries
    let mut producers: Vec<ProducerBatch> = Vec::new();
    let finish = |entries: &mut Vec<Entry>,
                  producers: &mut Vec<ProducerBatch>,
                  crc,
                  count,
                  len,
                  torn,
                  damaged,
                  base| {
        if let Some(last) = entries.last_mut() {
            last.crc = crc;
        }
        Scan {
            base: if count > 0 { base } else { expect_base },
            count,
            len,
            entries: std::mem::take(entries),
            torn,
            damaged,
            producers: std::mem::take(producers),
        }
    };
    loop {
        if filled == buf.len() {
            let bigger = buf.len() * 2;
            buf.resize(bigger, 0);
        }
        let n = match file.read_at(&mut buf[filled..], pos + filled as u64) {
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
            return Ok(finish(
                &mut entries,
                &mut producers,
                crc,
                count,
                pos,
                filled as u64,
                false,
                base,
            ));
        }
        filled += n;
        let mut used = 0;
        loop {
            let at = pos + used as u64;
            // Where the problem is: line numbers for text, bytes for batches.
            let location = match format {
                Format::Text => Location::Line(number + 1),
                Format::Batch => Location::Byte(at),
            };
            let expected = base.map(|b| b + count);
            let (len, first, n) = match format.parse(&buf[used..filled], expected, true) {
                Parsed::Entry { len, first, count } => (len, first, count),
                Parsed::Incomplete { .. } => break,
                Parsed::Bad(why) => {
                    if lenient && base.is_some() {
                        return Ok(finish(
                            &mut entries,
                            &mut producers,
                            crc,
                            count,
                            at,
                            0,
                            true,
                            base,
                        ));
                    }
                    return Err(StorageError::corrupt(path, location, why));
                }
            };
            if first.checked_add(n).is_none_or(|end| end > MAX_OFFSET) {
                return Err(StorageError::corrupt(
                    path,
                    location,
                    format!("offsets past {MAX_OFFSET} are not supported"),
                ));
            }
            let b = *base.get_or_insert(first);
            let start_new = match entries.last() {
                None => true,
                Some(e) => at - u64::from(e.pos) >= INDEX_INTERVAL,
            };
            if start_new {
                if at > MAX_SEGMENT_BYTES {
                    return Err(StorageError::corrupt(
                        path,
                        location,
                        format!("segments over {MAX_SEGMENT_BYTES} bytes are not supported"),
                    ));
                }
                if let Some(last) = entries.last_mut() {
                    last.crc = crc;
                }
                crc = 0;
                entries.push(Entry::new((first - b) as u32, at as u32, 0, time));
            }
            crc = crc32c_append(crc, &buf[used..used + len]);
            if format == Format::Batch
                && let Ok(h) = batch::parse_header(&buf[used..used + len])
                && h.has_producer_id()
            {
                producers.push(ProducerBatch {
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                    first_seq: h.base_sequence,
                    last_seq: h.last_sequence(),
                    base_offset: first,
                });
            }
            count += n;
            number += 1;
            used += len;
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
mod tests;
