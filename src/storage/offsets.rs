//! Committed consumer-group offsets: an append-only file, compacted when it
//! is opened and whenever it grows well past what it holds.
//!
//! # File format
//! `consumer_offsets.txt` in the data directory, one line per commit:
//!
//! ```text
//! <topic> <group> <offset>
//! <topic>/<partition> <group> <offset>
//! ```
//!
//! The first form is partition 0. Topic and group names never contain
//! spaces or `/` (see [`crate::util::is_valid_name`]); numbers are
//! decimal. The last line for a `(topic, partition, group)` wins.
//!
//! # Writing
//! A journal like a partition log (see [`crate::storage::journal`]):
//! commits are staged, written with one `write` per flush, and synced on
//! helper threads; each commit has a sequence number that tells its
//! committer when it is written (or synced, with `durable_acks`). A commit
//! is visible to [`Offsets::get`] as soon as it is staged; a failed write
//! or sync puts back the values it replaced.
//!
//! Compaction writes the live entries to `consumer_offsets.txt.tmp`, syncs
//! it and renames it over the old file, on a helper thread. Meanwhile new
//! commits stay staged; once the rename is done they are appended to the
//! new file, and the directory is synced before any of them counts as
//! durable. A crash at any point leaves one complete file.
//!
//! Recovery follows the message log's rules: a torn last line is cut with
//! a warning; any other line that does not parse stops the open with an
//! error naming the file and line, leaving the file untouched.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{error, info, warn};

use super::journal::{Completion, Mark, SyncTarget, SyncTracker};
use super::log::{Failed, SyncResult};
use super::{FileJob, Location, LogFile, ReplaceResult, StorageError, replace_file, sync_dir};
use crate::util::fs::write_all;
use crate::util::{is_valid_name, parse_u64, push_u64};

/// The file name in the data directory.
pub const OFFSETS_FILE: &str = "consumer_offsets.txt";

/// Rewrite the file once it is this many times the size of its live
/// entries (and at least [`COMPACT_MIN_BYTES`]).
const COMPACT_RATIO: u64 = 4;
const COMPACT_MIN_BYTES: u64 = 1 << 20;

/// (topic, partition, group).
pub type Key = (Box<[u8]>, u32, Box<[u8]>);

/// The committed offsets of every consumer group, per partition.
#[derive(Debug)]
pub struct Offsets {
    path: PathBuf,
    dir: PathBuf,
    /// Outside the log files' budget (see [`super::files::RESERVED_FDS`]).
    file: Arc<LogFile>,
    generation: u64,
    /// Bytes of complete lines in the file.
    len: u64,
    map: HashMap<Key, u64>,
    /// Entries per group name (to bound the number of groups).
    groups: HashMap<Box<[u8]>, usize>,
    staged: Vec<u8>,
    staged_count: u64,
    /// Commits not yet durable, with the value each replaced, to put back
    /// if their write or sync fails.
    undo: VecDeque<(u64, Key, Option<u64>)>,
    next_seq: u64,
    written: Mark,
    sync: SyncTracker,
    durable_acks: bool,
    /// A compaction is being written by a helper (its report id), and the
    /// length of the file it writes.
    compacting: Option<u64>,
    snapshot_len_pending: Option<u64>,
    /// Entries were dropped while a compaction was under way: compact
    /// again after it.
    compact_again: bool,
    next_job_id: u64,
    dirty_tail: bool,
    /// Why the file takes no more commits: a sync failed without
    /// `durable_acks` (see [`SyncResult::ReadOnly`]).
    read_only: Option<String>,
    jobs: Vec<FileJob>,
}

impl Offsets {
    /// Opens (creating if needed) the offsets file in `dir`, recovers and
    /// compacts it.
    pub fn open(dir: &Path, durable_acks: bool) -> Result<Offsets, StorageError> {
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
        if complete > 0 {
            for (i, line) in content[..complete - 1].split(|&b| b == b'\n').enumerate() {
                let (key, offset) = parse_line(line).ok_or_else(|| {
                    StorageError::corrupt(
                        &path,
                        Location::Line(i as u64 + 1),
                        format!(
                            "expected \"<topic>[/<partition>] <group> <offset>\", found {:?}",
                            String::from_utf8_lossy(&line[..line.len().min(60)])
                        ),
                    )
                })?;
                map.insert(key, offset);
                lines += 1;
            }
        }
        if complete < content.len() {
            warn!(
                "offsets={} cutting a torn last line: {} bytes had no newline",
                path.display(),
                content.len() - complete
            );
        }
        let mark = Mark {
            seq: 0,
            offset: 0,
            file: 0,
            len: complete as u64,
        };
        let created = !path.exists();
        let file = open_append(&path)?;
        if created {
            // Called before serving: make the new name durable here.
            sync_dir(dir)?;
        }
        let mut offsets = Offsets {
            file: Arc::new(LogFile::uncounted(file)),
            dir: dir.to_path_buf(),
            path,
            generation: 0,
            len: complete as u64,
            groups: group_counts(&map),
            map,
            staged: Vec::new(),
            staged_count: 0,
            undo: VecDeque::new(),
            next_seq: 0,
            written: mark,
            sync: SyncTracker::new(mark),
            durable_acks,
            compacting: None,
            snapshot_len_pending: None,
            compact_again: false,
            next_job_id: 0,
            dirty_tail: complete < content.len(),
            read_only: None,
            jobs: Vec::new(),
        };
        if lines as usize > offsets.map.len() || offsets.dirty_tail {
            // At start the loop serves nobody yet: compact here.
            let bytes = offsets.snapshot();
            replace_file(&offsets.path, &bytes)
                .map_err(|e| StorageError::io(&offsets.path, "compact", e))?;
            sync_dir(dir)?;
            offsets.switch_file(bytes.len() as u64)?;
            offsets.sync.abandon(offsets.written);
        }
        info!(
            "offsets={} recovered entries={}",
            offsets.path.display(),
            offsets.map.len()
        );
        Ok(offsets)
    }

    /// The committed offset of `group` in a partition.
    pub fn get(&self, topic: &[u8], partition: u32, group: &[u8]) -> Option<u64> {
        // A borrowed-key lookup without allocating needs a map keyed by a
        // type that borrows as a tuple; lookups are rare, so allocate.
        self.map
            .get(&(topic.into(), partition, group.into()))
            .copied()
    }

    /// Every entry: (topic, partition, group, offset).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], u32, &[u8], u64)> {
        self.map.iter().map(|((t, p, g), o)| (&**t, *p, &**g, *o))
    }

    /// Whether any commit of `group` is stored.
    pub fn has_group(&self, group: &[u8]) -> bool {
        self.groups.contains_key(group)
    }

    /// Distinct group names with commits.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Distinct group names with commits.
    pub fn group_names(&self) -> impl Iterator<Item = &[u8]> {
        self.groups.keys().map(|g| &**g)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lowers any committed offset of a partition above `end` to `end`:
    /// after a crash that lost a log's unsynced tail, a committed offset
    /// must not point past the log. Writes at once (call before serving).
    /// Returns how many were lowered.
    pub fn clamp(&mut self, topic: &[u8], partition: u32, end: u64) -> Result<usize, StorageError> {
        let keys: Vec<Key> = self
            .map
            .iter()
            .filter(|((t, p, _), o)| &**t == topic && *p == partition && **o > end)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            warn!(
                "offsets={} group {} of {}/{partition} pointed past the log end; lowered to {end}",
                self.path.display(),
                String::from_utf8_lossy(&key.2),
                String::from_utf8_lossy(topic)
            );
            self.stage(&key.0, key.1, &key.2, end);
        }
        if let Some(failed) = self.flush() {
            return Err(failed.error);
        }
        Ok(keys.len())
    }

    /// Forgets every commit of `topic` (deleted), and rewrites the file
    /// without them on a helper thread (so a topic made again by that name
    /// does not find them after a restart).
    pub fn forget_topic(&mut self, topic: &[u8]) {
        let before = self.map.len();
        self.map.retain(|(t, _, _), _| &**t != topic);
        self.undo.retain(|(_, (t, _, _), _)| &**t != topic);
        if self.map.len() != before {
            self.groups = group_counts(&self.map);
            self.compact_now();
        }
    }

    /// Keeps only the entries whose topic `keep` accepts, and rewrites the
    /// file at once if any went (call before serving: at start, to drop
    /// the commits of topics that no longer exist).
    pub fn retain_topics(&mut self, keep: impl Fn(&[u8]) -> bool) -> Result<(), StorageError> {
        let before = self.map.len();
        self.map.retain(|(t, _, _), _| keep(t));
        if self.map.len() == before {
            return Ok(());
        }
        self.groups = group_counts(&self.map);
        let bytes = self.snapshot();
        replace_file(&self.path, &bytes).map_err(|e| StorageError::io(&self.path, "compact", e))?;
        sync_dir(&self.dir)?;
        self.switch_file(bytes.len() as u64)?;
        self.sync.abandon(self.written);
        Ok(())
    }

    /// The number the next staged commit gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn written(&self) -> Mark {
        self.written
    }

    pub fn synced(&self) -> Mark {
        self.sync.synced()
    }

    /// What commits wait for: synced with `durable_acks`, else written.
    pub fn durable(&self) -> Mark {
        if self.durable_acks {
            self.sync.synced()
        } else {
            self.written
        }
    }

    pub fn has_staged(&self) -> bool {
        self.staged_count > 0
    }

    /// Work for helper threads.
    pub fn take_jobs(&mut self) -> Vec<FileJob> {
        std::mem::take(&mut self.jobs)
    }

    /// Records a commit (visible to [`get`](Self::get) at once) and stages
    /// it for the next flush. Returns its sequence number.
    pub fn stage(&mut self, topic: &[u8], partition: u32, group: &[u8], offset: u64) -> u64 {
        let key: Key = (topic.into(), partition, group.into());
        let previous = self.map.insert(key.clone(), offset);
        if previous.is_none() {
            *self.groups.entry(group.into()).or_default() += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.undo.push_back((seq, key, previous));
        push_line(&mut self.staged, topic, partition, group, offset);
        self.staged_count += 1;
        seq
    }

    /// Writes the staged commits with one `write`; on failure puts back
    /// what they replaced and returns them. Does nothing while a compaction
    /// is being written.
    pub fn flush(&mut self) -> Option<Failed> {
        if self.staged_count == 0 || self.compacting.is_some() {
            return None;
        }
        let result = self
            .check_writable()
            .and_then(|()| self.cut_dirty_tail())
            .and_then(|()| {
                write_all(&self.file, &self.staged).map_err(|e| {
                    StorageError::io(&self.path, format!("append at byte {}", self.len), e)
                })
            });
        let bytes = self.staged.len() as u64;
        let count = self.staged_count;
        self.staged.clear();
        self.staged_count = 0;
        if self.staged.capacity() > 1 << 20 {
            self.staged.shrink_to(64 << 10);
        }
        match result {
            Ok(()) => {
                self.len += bytes;
                self.written = Mark {
                    seq: self.written.seq + count,
                    offset: 0,
                    file: self.generation,
                    len: self.len,
                };
                if !self.durable_acks {
                    self.trim_undo();
                }
                self.maybe_compact();
                None
            }
            Err(error) => {
                self.dirty_tail = true;
                if let Err(cut) = self.cut_dirty_tail() {
                    error!("{cut}; will retry before the next append");
                }
                let from = self.written.seq;
                self.undo_from(from);
                self.written.seq = self.next_seq;
                Some(Failed {
                    seqs: from..self.next_seq,
                    error,
                })
            }
        }
    }

    /// Whether written commits wait for a sync.
    pub fn sync_wanted(&self) -> bool {
        self.read_only.is_none()
            && self.sync.begun().seq < self.written.seq
            && self.compacting.is_none()
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        match &self.read_only {
            Some(cause) => Err(StorageError::ReadOnly {
                path: self.path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A sync covering everything written, if wanted and none is running.
    pub fn begin_sync(&mut self) -> Vec<FileJob> {
        let mut jobs = Vec::new();
        if self.sync_wanted() && !self.sync.slot_busy(self.generation, 0) {
            let id = self.sync.begin(
                SyncTarget::File {
                    file: self.generation,
                    slot: 0,
                },
                self.written,
            );
            jobs.push(FileJob::Sync {
                sync_id: id,
                file: self.file.clone(),
            });
        }
        jobs
    }

    /// Records the end of a sync.
    pub fn sync_completed(&mut self, sync_id: u64, result: io::Result<()>) -> SyncResult {
        if self.read_only.is_some() {
            // Nothing vouches for this file any more.
            return SyncResult::Unchanged;
        }
        let what = if self.sync.is_dir_sync(sync_id) {
            "fsync of its directory"
        } else {
            "fdatasync"
        };
        let completion = self.sync.complete(sync_id, result.is_ok());
        match (completion, result) {
            (Completion::Advanced, _) => {
                self.trim_undo();
                SyncResult::Advanced
            }
            (Completion::Failed, Err(e)) => {
                let error = StorageError::io(&self.path, what, e);
                if !self.durable_acks {
                    // Commits were answered when written and may have
                    // been read since: keep them, take no more.
                    let cause = error.client_reason();
                    self.read_only = Some(cause.clone());
                    return SyncResult::ReadOnly(StorageError::ReadOnly {
                        path: self.path.clone(),
                        cause,
                    });
                }
                // Cut back to what was synced; those commits never counted.
                let synced = self.sync.synced();
                let keep = if synced.file == self.generation {
                    synced.len
                } else {
                    0
                };
                let from = synced.seq;
                self.len = keep;
                self.dirty_tail = true;
                if let Err(cut) = self.cut_dirty_tail() {
                    error!("{cut}; will retry before the next append");
                }
                self.undo_from(from);
                self.staged.clear();
                self.staged_count = 0;
                self.written = Mark {
                    seq: self.next_seq,
                    offset: 0,
                    file: self.generation,
                    len: keep,
                };
                self.sync.abandon(Mark {
                    file: synced.file,
                    len: synced.len,
                    ..self.written
                });
                if synced.file != self.generation {
                    let id = self.sync.begin(SyncTarget::Dir, self.written);
                    self.jobs.push(FileJob::SyncDir {
                        sync_id: id,
                        dir: self.dir.clone(),
                    });
                }
                SyncResult::Cut(Failed {
                    seqs: from..self.next_seq,
                    error,
                })
            }
            _ => SyncResult::Unchanged,
        }
    }

    /// A compaction written by a helper is in place (or failed): staged
    /// commits can be flushed again.
    pub fn replaced(&mut self, id: u64, result: ReplaceResult) {
        if self.compacting != Some(id) {
            return;
        }
        self.compacting = None;
        match result {
            ReplaceResult::Done => {
                let len = self.snapshot_len_pending.take().unwrap_or(0);
                if let Err(e) = self.switch_file(len) {
                    // The new file is in place but cannot be opened: appends
                    // fail until it can.
                    error!("{e}");
                    self.dirty_tail = true;
                    return;
                }
                // Everything written so far is in the new, synced file; its
                // name is durable once the directory is synced.
                let synced = self.sync.synced();
                self.sync.abandon(Mark {
                    file: synced.file,
                    len: synced.len,
                    ..self.written
                });
                let id = self.sync.begin(SyncTarget::Dir, self.written);
                self.jobs.push(FileJob::SyncDir {
                    sync_id: id,
                    dir: self.dir.clone(),
                });
                info!(
                    "offsets={} compacted to {} entries",
                    self.path.display(),
                    self.map.len()
                );
            }
            ReplaceResult::NotReplaced(e) => {
                warn!(
                    "offsets={} compaction failed ({e}); appending to the old file",
                    self.path.display()
                );
                self.snapshot_len_pending = None;
            }
        }
    }

    /// Forces written commits to stable storage now, on this thread.
    pub fn sync_now(&mut self) -> SyncResult {
        let mut last = SyncResult::Unchanged;
        for job in self.begin_sync() {
            match job.run() {
                Some(super::JobResult::Synced {
                    sync_id, result, ..
                }) => match self.sync_completed(sync_id, result) {
                    SyncResult::Unchanged => {}
                    r @ SyncResult::Cut(_) => return r,
                    r => last = r,
                },
                // Out of descriptors: a helper runs it later.
                Some(super::JobResult::NotRun(job)) => self.jobs.push(job),
                _ => {}
            }
        }
        last
    }

    fn forget_group_entry(&mut self, group: &[u8]) {
        if let Some(n) = self.groups.get_mut(group) {
            *n -= 1;
            if *n == 0 {
                self.groups.remove(group);
            }
        }
    }

    fn trim_undo(&mut self) {
        let durable = self.durable().seq;
        while self.undo.front().is_some_and(|(seq, _, _)| *seq < durable) {
            self.undo.pop_front();
        }
    }

    /// Puts back the values commits from `seq` on replaced.
    fn undo_from(&mut self, seq: u64) {
        while self.undo.back().is_some_and(|(s, _, _)| *s >= seq) {
            if let Some((_, key, previous)) = self.undo.pop_back() {
                match previous {
                    Some(v) => {
                        self.map.insert(key, v);
                    }
                    None => {
                        self.map.remove(&key);
                        self.forget_group_entry(&key.2);
                    }
                }
            }
        }
    }

    fn live_bytes(&self) -> u64 {
        self.map
            .keys()
            .map(|(t, _, g)| (t.len() + g.len() + 34) as u64)
            .sum()
    }

    fn maybe_compact(&mut self) {
        if self.compact_again && self.compacting.is_none() {
            self.compact_again = false;
            self.compact_now();
            return;
        }
        if self.compacting.is_some()
            || self.len <= COMPACT_MIN_BYTES
            || self.len <= COMPACT_RATIO * self.live_bytes()
        {
            return;
        }
        self.compact_now();
    }

    /// Starts a compaction now (or right after the one under way).
    fn compact_now(&mut self) {
        if self.compacting.is_some() {
            self.compact_again = true;
            return;
        }
        let bytes = self.snapshot();
        let id = self.next_job_id;
        self.next_job_id += 1;
        self.compacting = Some(id);
        self.snapshot_len_pending = Some(bytes.len() as u64);
        self.jobs.push(FileJob::Replace {
            path: self.path.clone(),
            bytes,
            report: Some(id),
        });
    }

    /// The live entries as file lines, sorted.
    fn snapshot(&self) -> Vec<u8> {
        let mut entries: Vec<_> = self.map.iter().collect();
        entries.sort();
        let mut content = Vec::new();
        for ((topic, partition, group), offset) in entries {
            push_line(&mut content, topic, *partition, group, *offset);
        }
        content
    }

    /// Appends go to the file now at `path` (just replaced), `len` bytes.
    fn switch_file(&mut self, len: u64) -> Result<(), StorageError> {
        self.file = Arc::new(LogFile::uncounted(open_append(&self.path)?));
        self.generation += 1;
        self.len = len;
        self.dirty_tail = false;
        self.written = Mark {
            seq: self.written.seq,
            offset: 0,
            file: self.generation,
            len,
        };
        Ok(())
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
}

fn group_counts(map: &HashMap<Key, u64>) -> HashMap<Box<[u8]>, usize> {
    let mut groups: HashMap<Box<[u8]>, usize> = HashMap::new();
    for (_, _, g) in map.keys() {
        *groups.entry(g.clone()).or_default() += 1;
    }
    groups
}

fn open_append(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| StorageError::io(path, "open", e))
}

fn push_line(out: &mut Vec<u8>, topic: &[u8], partition: u32, group: &[u8], offset: u64) {
    out.extend_from_slice(topic);
    if partition != 0 {
        out.push(b'/');
        push_u64(out, u64::from(partition));
    }
    out.push(b' ');
    out.extend_from_slice(group);
    out.push(b' ');
    push_u64(out, offset);
    out.push(b'\n');
}

fn parse_line(line: &[u8]) -> Option<(Key, u64)> {
    let mut parts = line.split(|&b| b == b' ');
    let (topic, group, offset) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_valid_name(group) {
        return None;
    }
    let (topic, partition) = match topic.iter().position(|&b| b == b'/') {
        Some(i) => {
            let p = parse_u64(&topic[i + 1..]).filter(|&p| p > 0 && p <= u64::from(u32::MAX))?;
            (&topic[..i], p as u32)
        }
        None => (topic, 0),
    };
    if !is_valid_name(topic) {
        return None;
    }
    Some(((topic.into(), partition, group.into()), parse_u64(offset)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_jobs(o: &mut Offsets) {
        for job in o.take_jobs() {
            match job.run() {
                Some(super::super::JobResult::Replaced { id, result }) => o.replaced(id, result),
                Some(super::super::JobResult::Synced {
                    sync_id, result, ..
                }) => {
                    o.sync_completed(sync_id, result);
                }
                Some(super::super::JobResult::NotRun(job)) => panic!("not run: {job:?}"),
                None => {}
            }
        }
    }

    #[test]
    fn commits_survive_reopen_and_the_file_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Offsets::open(dir.path(), false).unwrap();
            assert_eq!(o.get(b"t", 0, b"g"), None);
            for i in 0..100 {
                o.stage(b"t", 0, b"g", i);
            }
            o.stage(b"default", 0, b"g", 5);
            o.stage(b"t", 3, b"g", 7);
            assert!(o.flush().is_none());
            assert_eq!(o.get(b"t", 0, b"g"), Some(99));
        }
        let o = Offsets::open(dir.path(), false).unwrap();
        assert_eq!(o.get(b"t", 0, b"g"), Some(99));
        assert_eq!(o.get(b"t", 3, b"g"), Some(7));
        assert_eq!(o.get(b"default", 0, b"g"), Some(5));
        assert_eq!(
            fs::read_to_string(dir.path().join(OFFSETS_FILE)).unwrap(),
            "default g 5\nt g 99\nt/3 g 7\n"
        );
    }

    #[test]
    fn torn_tail_cut_and_corrupt_line_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OFFSETS_FILE);
        fs::write(&path, "t g 1\nt g 2\nt g 3").unwrap();
        let o = Offsets::open(dir.path(), false).unwrap();
        assert_eq!(o.get(b"t", 0, b"g"), Some(2));
        assert_eq!(fs::read_to_string(&path).unwrap(), "t g 2\n");

        for bad in ["t g 1\nt ../x 2\n", "t g 1\nt/0 g 2\n", "t g 1\nt/x g 2\n"] {
            fs::write(&path, bad).unwrap();
            let err = Offsets::open(dir.path(), false).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{}:2:", path.display())),
                "{err}"
            );
            assert_eq!(fs::read_to_string(&path).unwrap(), bad);
        }
    }

    #[test]
    fn clamp_lowers_offsets_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Offsets::open(dir.path(), false).unwrap();
        o.stage(b"t", 0, b"a", 10);
        o.stage(b"t", 0, b"b", 3);
        o.stage(b"t", 1, b"a", 10);
        assert!(o.flush().is_none());
        assert_eq!(o.clamp(b"t", 0, 5).unwrap(), 1);
        assert_eq!(
            (
                o.get(b"t", 0, b"a"),
                o.get(b"t", 0, b"b"),
                o.get(b"t", 1, b"a")
            ),
            (Some(5), Some(3), Some(10))
        );
        drop(o);
        let o = Offsets::open(dir.path(), false).unwrap();
        assert_eq!(o.get(b"t", 0, b"a"), Some(5));
    }

    #[test]
    fn failed_write_puts_back_what_the_commits_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Offsets::open(dir.path(), false).unwrap();
        o.stage(b"t", 0, b"g", 1);
        assert!(o.flush().is_none());
        o.file = Arc::new(LogFile::uncounted(
            OpenOptions::new().append(true).open("/dev/full").unwrap(),
        ));
        let a = o.stage(b"t", 0, b"g", 2);
        let b = o.stage(b"t", 0, b"new", 2);
        let failed = o.flush().unwrap();
        assert_eq!(failed.seqs, a..b + 1);
        assert_eq!(o.get(b"t", 0, b"g"), Some(1));
        assert_eq!(o.get(b"t", 0, b"new"), None);
        assert_eq!(o.written().seq, o.next_seq());
    }

    #[test]
    fn failed_sync_with_durable_acks_cuts_and_puts_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Offsets::open(dir.path(), true).unwrap();
        o.stage(b"t", 0, b"g", 1);
        assert!(o.flush().is_none());
        assert!(matches!(o.sync_now(), SyncResult::Advanced));
        assert_eq!(o.durable().seq, 1);
        o.stage(b"t", 0, b"g", 2);
        assert!(o.flush().is_none());
        assert_eq!(o.get(b"t", 0, b"g"), Some(2));
        let jobs = o.begin_sync();
        let FileJob::Sync { sync_id, .. } = &jobs[0] else {
            panic!("{jobs:?}")
        };
        let r = o.sync_completed(*sync_id, Err(io::Error::other("injected")));
        let SyncResult::Cut(failed) = r else {
            panic!("{r:?}")
        };
        assert_eq!(failed.seqs, 1..2);
        assert_eq!(o.get(b"t", 0, b"g"), Some(1), "the failed commit is undone");
        assert_eq!(
            fs::read_to_string(dir.path().join(OFFSETS_FILE)).unwrap(),
            "t g 1\n"
        );
    }

    #[test]
    fn failed_sync_without_durable_acks_keeps_the_commits_and_takes_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Offsets::open(dir.path(), false).unwrap();
        o.stage(b"t", 0, b"g", 1);
        assert!(o.flush().is_none());
        let jobs = o.begin_sync();
        let FileJob::Sync { sync_id, .. } = &jobs[0] else {
            panic!("{jobs:?}")
        };
        let r = o.sync_completed(*sync_id, Err(io::Error::other("injected")));
        let SyncResult::ReadOnly(e) = r else {
            panic!("{r:?}")
        };
        assert!(e.to_string().contains("injected"), "{e}");
        // Answered when written (and maybe read since): kept.
        assert_eq!(o.get(b"t", 0, b"g"), Some(1));
        // No retry, and no further commit.
        assert!(!o.sync_wanted());
        assert!(o.begin_sync().is_empty());
        o.stage(b"t", 0, b"g", 2);
        let failed = o.flush().expect("a commit to a read-only file fails");
        assert!(
            matches!(failed.error, StorageError::ReadOnly { .. }),
            "{}",
            failed.error
        );
        assert_eq!(
            o.get(b"t", 0, b"g"),
            Some(1),
            "the refused commit is undone"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(OFFSETS_FILE)).unwrap(),
            "t g 1\n"
        );
        // A restart recovers the file and takes commits again.
        drop(o);
        let mut o = Offsets::open(dir.path(), false).unwrap();
        assert_eq!(o.get(b"t", 0, b"g"), Some(1));
        o.stage(b"t", 0, b"g", 3);
        assert!(o.flush().is_none());
    }

    #[test]
    fn compaction_on_a_helper_keeps_commits_made_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Offsets::open(dir.path(), true).unwrap();
        // Enough rewrites of one key to pass the compaction threshold.
        let mut n = 0;
        while o.compacting.is_none() {
            for _ in 0..1000 {
                o.stage(b"topic", 0, b"group-with-a-long-name", n);
                n += 1;
            }
            assert!(o.flush().is_none());
        }
        // Commits made while the helper writes stay staged.
        let seq = o.stage(b"topic", 0, b"other", 42);
        assert!(o.flush().is_none());
        assert!(o.has_staged());
        run_jobs(&mut o);
        assert!(o.flush().is_none());
        while o.durable().seq <= seq {
            o.sync_now();
            run_jobs(&mut o);
        }
        drop(o);
        let content = fs::read_to_string(dir.path().join(OFFSETS_FILE)).unwrap();
        assert_eq!(
            content,
            format!("topic group-with-a-long-name {}\ntopic other 42\n", n - 1)
        );
    }
}
