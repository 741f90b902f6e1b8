//! The budget of open log files, and how the descriptor limit is split
//! between connections and files.
//!
//! Every descriptor a log opens on its segments is a [`LogFile`], counted
//! in its broker's [`Files`] while it is open (each broker has its own, so
//! several brokers in one process, as in tests, do not share one). A log
//! keeps none of them for itself between calls: it parks them here, keyed
//! by (log, [`Slot`]), and takes them back when it needs them. When a log
//! needs a new descriptor and the count is at the limit, *closable* parked
//! files are closed, least recently used first, across all logs. So
//! however many partitions there are, their open files stay within the
//! budget, and a partition nobody reads or writes holds none.
//!
//! # Durability: which files may be closed
//! Linux reports a writeback error to `fsync` once per open file
//! description, and keeps it with the inode (`errseq`): a description
//! opened later still reports an error nobody has seen yet, but once every
//! descriptor of a file is closed the inode may leave the cache with the
//! error (and on NFS `close` itself reports and consumes it; we would drop
//! that report). So a parked file is closable only if
//! - no one else holds it: no sync job (queued or running), no read in
//!   progress ([`Arc::strong_count`] is 1), and
//! - for the active segment's files ([`Slot::Append`], [`Slot::Sync`]):
//!   nothing written to the segment is unsynced (the log says so with
//!   [`Files::set_unsynced`] after every write and sync). A rolled
//!   segment's file is only ever written before the roll; the sync that
//!   seals it holds it until it succeeds.
//!
//! A closed file is reopened on next use; as it was closed with everything
//! synced and no sync running, the new description has missed no error
//! that any sync still has to report. Nothing is ever synced on the
//! reactor to make room: a log with unsynced data keeps its descriptor
//! until its sync (on a helper thread) succeeds.
//!
//! # Over the budget
//! When every parked file is busy or unsynced, a log that must write, cut
//! or read opens what it needs anyway, and the budget notes the shortage
//! ([`Files::take_short`]): the broker then begins the syncs of every log
//! with unsynced writes at once, instead of at the next interval, and
//! closes what they release as they finish ([`Files::trim`]). A dirty log
//! holds one descriptor (its sync runs on its append descriptor; see
//! `Log::sync_files`), plus, under `interval`, a rolled segment's until
//! the sync that seals it: the excess is the partitions written before
//! their syncs finish. It comes out of [`RESERVED_FDS`] but is not
//! bounded by it: a burst over hundreds of partitions can run the process
//! out of descriptors, and then opens fail with `EMFILE` (an append gets
//! `STORAGE_ERROR`; a directory sync is run again later, see
//! `JobResult::NotRun`) until the syncs release theirs.
//!
//! # Bounds
//! The table holds one entry per open file: at most [`Files::limit`] plus
//! that short-lived excess. The set of logs with unsynced writes holds at
//! most one entry per open log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use log::{info, warn};

/// Descriptors the broker needs besides connections and log files:
/// stdin/out/err (3), the listeners (2), epoll and its waker (2), the
/// signal pipe (2), the spare descriptor that turns clients away when the
/// process is out of them, `/dev/null`, the data directory's lock,
/// `consumer_offsets.txt`, and what helper threads open for a moment (a
/// file and a directory each), plus one-at-a-time opens (start-up scans,
/// index reads, checkpoint and metadata writes), and the short excess of
/// log files over their budget (see the module doc). A broker with no
/// clients and no log file open uses about 15.
pub const RESERVED_FDS: usize = 64;
/// The fewest log files the broker works with: a partition being written
/// (its append descriptor and two more sync descriptors under
/// `--fsync always`), a rolled segment being read, and room for a few
/// more.
pub const MIN_OPEN_FILES: usize = 16;

/// Which of a log's descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The active segment, opened to append and read; also the first
    /// sync slot's descriptor.
    Append,
    /// The active segment's further sync descriptors (`--fsync always`).
    Sync,
    /// A rolled segment (by its first offset), opened to read.
    Rolled(u64),
}

type Key = (u64, Slot);

/// An open file, counted in its [`Files`] budget until dropped.
pub struct LogFile {
    file: File,
    count: Option<Arc<AtomicUsize>>,
}

impl LogFile {
    /// A file outside any budget (`consumer_offsets.txt`, counted in
    /// [`RESERVED_FDS`]).
    pub fn uncounted(file: File) -> LogFile {
        LogFile { file, count: None }
    }
}

impl Deref for LogFile {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

impl fmt::Debug for LogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.file.fmt(f)
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        if let Some(count) = &self.count {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Parked files, least recently used first.
#[derive(Default)]
struct Cache {
    tick: u64,
    entries: HashMap<Key, Parked>,
    /// tick -> key, for every entry.
    lru: BTreeMap<u64, Key>,
    /// Logs whose active segment has unsynced writes.
    unsynced: HashSet<u64>,
}

struct Parked {
    files: Vec<Arc<LogFile>>,
    tick: u64,
}

impl Cache {
    fn touch(&mut self, key: Key) -> Option<&Parked> {
        let entry = self.entries.get_mut(&key)?;
        self.lru.remove(&entry.tick);
        self.tick += 1;
        entry.tick = self.tick;
        self.lru.insert(self.tick, key);
        Some(entry)
    }

    fn remove(&mut self, key: Key) -> Option<Parked> {
        let entry = self.entries.remove(&key)?;
        self.lru.remove(&entry.tick);
        Some(entry)
    }
}

/// A broker's budget of open log files (shared by its logs).
pub struct Files {
    limit: usize,
    /// [`LogFile`]s alive, parked or not (shared with them: the last
    /// holder of one may be a helper thread).
    open: Arc<AtomicUsize>,
    /// Files closed to stay within the limit, ever.
    closed: AtomicU64,
    /// A file was opened over the limit since [`take_short`](Self::take_short).
    short: AtomicBool,
    next_log: AtomicU64,
    cache: Mutex<Cache>,
}

impl fmt::Debug for Files {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Files")
            .field("limit", &self.limit)
            .field("open", &self.open_count())
            .finish()
    }
}

impl Files {
    /// A budget of `limit` open files.
    pub fn new(limit: usize) -> Arc<Files> {
        Arc::new(Files {
            limit,
            open: Arc::new(AtomicUsize::new(0)),
            closed: AtomicU64::new(0),
            short: AtomicBool::new(false),
            next_log: AtomicU64::new(0),
            cache: Mutex::new(Cache::default()),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Log files open now (parked, in use, or held by a sync job).
    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Files closed to stay within the limit, ever.
    pub fn closed_count(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Whether a file had to be opened over the limit since the last call
    /// (the caller should begin the syncs that release descriptors).
    pub fn take_short(&self) -> bool {
        self.short.swap(false, Ordering::Relaxed)
    }

    /// A new log's id.
    pub(crate) fn register(&self) -> u64 {
        self.next_log.fetch_add(1, Ordering::Relaxed)
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic elsewhere could break.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The files parked at `(log, slot)` (they stay parked: these are
    /// clones), marking them used.
    pub(crate) fn get(&self, log: u64, slot: Slot) -> Option<Vec<Arc<LogFile>>> {
        self.cache().touch((log, slot)).map(|e| e.files.clone())
    }

    /// Parks `files` at `(log, slot)` (replacing what was there), as just
    /// used.
    pub(crate) fn put(&self, log: u64, slot: Slot, files: Vec<Arc<LogFile>>) {
        let mut c = self.cache();
        c.remove((log, slot));
        c.tick += 1;
        let tick = c.tick;
        c.entries.insert((log, slot), Parked { files, tick });
        c.lru.insert(tick, (log, slot));
    }

    /// Takes the files parked at `(log, slot)` out (they close when the
    /// last holder drops them).
    pub(crate) fn take(&self, log: u64, slot: Slot) -> Option<Vec<Arc<LogFile>>> {
        self.cache().remove((log, slot)).map(|e| e.files)
    }

    /// Whether `log`'s active segment has writes no sync covers yet: if
    /// so, its active files must stay open (see the module doc).
    pub(crate) fn set_unsynced(&self, log: u64, unsynced: bool) {
        let mut c = self.cache();
        if unsynced {
            c.unsynced.insert(log);
        } else {
            c.unsynced.remove(&log);
        }
    }

    /// Drops every file of `log` (a log closed or deleted).
    pub(crate) fn forget_log(&self, log: u64) {
        let mut c = self.cache();
        let keys: Vec<Key> = c.entries.keys().filter(|k| k.0 == log).copied().collect();
        for key in keys {
            c.remove(key);
        }
        c.unsynced.remove(&log);
    }

    /// Closes closable parked files, least recently used first, until
    /// `want` more files fit within the limit, or none is closable.
    /// Returns how many of `want` fit; if not all, the shortage is noted
    /// (see [`take_short`](Self::take_short)).
    pub(crate) fn make_room(&self, want: usize) -> usize {
        let limit = self.limit;
        let fits = |open: usize| limit.saturating_sub(open).min(want);
        if self.open_count() + want <= limit {
            return want;
        }
        let mut c = self.cache();
        let c = &mut *c;
        let mut victims = Vec::new();
        let mut freed = 0;
        for (&tick, key) in &c.lru {
            if self.open_count().saturating_sub(freed) + want <= limit {
                break;
            }
            let Some(entry) = c.entries.get(key) else {
                continue;
            };
            let active = matches!(key.1, Slot::Append | Slot::Sync);
            if active && c.unsynced.contains(&key.0) {
                continue;
            }
            if entry.files.iter().all(|f| Arc::strong_count(f) == 1) {
                freed += entry.files.len();
                victims.push((tick, *key));
            }
        }
        for (tick, key) in victims {
            c.lru.remove(&tick);
            if let Some(entry) = c.entries.remove(&key) {
                self.closed
                    .fetch_add(entry.files.len() as u64, Ordering::Relaxed);
            }
        }
        let fit = fits(self.open_count());
        if fit < want {
            self.short.store(true, Ordering::Relaxed);
        }
        fit
    }

    /// Closes closable files while more are open than the limit (after
    /// syncs released some).
    pub fn trim(&self) {
        if self.open_count() > self.limit {
            // make_room(0) never notes a shortage, and one noted since
            // the last take_short must stay noted.
            self.make_room(0);
        }
    }

    /// Opens `path`, counted in the budget (room is made by the caller:
    /// see [`make_room`](Self::make_room)).
    pub(crate) fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<LogFile> {
        let file = options.open(path)?;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(LogFile {
            file,
            count: Some(self.open.clone()),
        })
    }
}

/// How the process's descriptors are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The open file limit (soft) after raising it.
    pub limit: u64,
    /// Clients that can be connected at once.
    pub connections: usize,
    /// Log files that may be open at once.
    pub files: usize,
}

/// Splits `limit` descriptors: [`RESERVED_FDS`] for the broker itself,
/// then `connections` for clients and `files` for log files if both fit.
/// If not, neither side starves the other: log files keep at least a
/// quarter of what is left (and at least [`MIN_OPEN_FILES`], never more
/// than `files`), clients get what files leave (at least one), and files
/// whatever clients then leave. A limit too low even for that still gets
/// a plan (one client, [`MIN_OPEN_FILES`]): descriptors then run out
/// before either bound, which the server survives (it turns clients away,
/// a log that cannot open a file fails that request).
pub fn split(limit: u64, connections: usize, files: usize) -> Plan {
    let limit_us = usize::try_from(limit).unwrap_or(usize::MAX);
    let room = limit_us.saturating_sub(RESERVED_FDS);
    let floor = files.min(MIN_OPEN_FILES.max(room / 4));
    let files_got = room.saturating_sub(connections).clamp(floor, files);
    Plan {
        limit,
        connections: room.saturating_sub(files_got).clamp(1, connections),
        files: files_got,
    }
}

/// Raises the soft limit on open files towards what `connections` clients
/// and `files` log files need besides [`RESERVED_FDS`] (within the hard
/// limit), and splits what it gets (see [`split`]). Logs the split, and
/// warns when the limit cuts either side short (each side keeps its
/// minimum: 1 client, [`MIN_OPEN_FILES`] files).
pub fn plan_descriptors(connections: usize, files: usize) -> Plan {
    let wanted = (connections + files + RESERVED_FDS) as u64;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct we pass.
    let limit = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            warn!("cannot read the open file limit; assuming {wanted}");
            wanted
        } else if lim.rlim_cur >= wanted {
            lim.rlim_cur
        } else {
            let target = wanted.min(lim.rlim_max);
            if target > lim.rlim_cur {
                let old = lim.rlim_cur;
                lim.rlim_cur = target;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    warn!("could not raise the open file limit to {target}");
                    lim.rlim_cur = old;
                }
            }
            lim.rlim_cur
        }
    };
    let plan = split(limit, connections, files);
    info!(
        "descriptors limit={} connections={} files={} reserved={RESERVED_FDS}",
        plan.limit, plan.connections, plan.files
    );
    if plan.connections < connections || plan.files < files {
        warn!(
            "the open file limit is {limit} descriptors, {wanted} wanted: serving {} clients \
             (--max-connections {connections}) and keeping {} log files open (--max-open-files \
             {files}); raise the limit (ulimit -n, LimitNOFILE=) or lower these",
            plan.connections, plan.files
        );
    }
    if limit < (RESERVED_FDS + MIN_OPEN_FILES + 1) as u64 {
        warn!(
            "the open file limit ({limit}) is below the {} the broker plans for: clients \
             and requests will be refused when descriptors run out",
            RESERVED_FDS + MIN_OPEN_FILES + 1
        );
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(files: &Files) -> Arc<LogFile> {
        Arc::new(
            files
                .open(Path::new("/dev/null"), OpenOptions::new().read(true))
                .unwrap(),
        )
    }

    #[test]
    fn idle_files_close_least_recently_used_first_and_busy_ones_stay() {
        let files = Files::new(3);
        let (a, b) = (files.register(), files.register());
        files.put(a, Slot::Append, vec![file(&files)]);
        files.put(b, Slot::Append, vec![file(&files)]);
        files.put(a, Slot::Rolled(0), vec![file(&files)]);
        assert_eq!(files.open_count(), 3);
        // b's file used last; a's append file held by a sync job.
        let held = files.get(a, Slot::Append).unwrap();
        files.get(b, Slot::Append).unwrap();
        assert_eq!(files.make_room(1), 1);
        assert!(!files.take_short());
        assert_eq!(files.open_count(), 2);
        assert!(files.get(a, Slot::Rolled(0)).is_none(), "idle and oldest");
        assert!(files.get(a, Slot::Append).is_some(), "busy");
        assert_eq!(files.make_room(2), 2, "b's idle one goes too");
        assert!(files.get(b, Slot::Append).is_none());
        assert_eq!(files.make_room(3), 2, "a's is still busy");
        assert!(files.take_short(), "the shortage is noted");
        assert!(!files.take_short(), "once");
        drop(held);
        assert_eq!(files.make_room(3), 3);
        assert_eq!(files.open_count(), 0);
        assert_eq!(files.closed_count(), 3);
    }

    #[test]
    fn using_a_file_makes_it_the_last_to_close() {
        let files = Files::new(2);
        let (a, b) = (files.register(), files.register());
        files.put(a, Slot::Append, vec![file(&files)]);
        files.put(b, Slot::Append, vec![file(&files)]);
        files.get(a, Slot::Append).unwrap();
        assert_eq!(files.make_room(1), 1);
        assert!(
            files.get(b, Slot::Append).is_none(),
            "b was used longest ago"
        );
        assert!(files.get(a, Slot::Append).is_some());
    }

    #[test]
    fn unsynced_active_files_stay_open_until_synced() {
        let files = Files::new(3);
        let log = files.register();
        files.put(log, Slot::Append, vec![file(&files)]);
        files.put(log, Slot::Sync, vec![file(&files)]);
        files.put(log, Slot::Rolled(0), vec![file(&files)]);
        files.set_unsynced(log, true);
        assert_eq!(files.make_room(3), 1, "only the rolled segment may close");
        assert!(files.get(log, Slot::Rolled(0)).is_none());
        assert_eq!(files.open_count(), 2);
        // Over the limit: trimming closes what it may, oldest first.
        files.put(log, Slot::Rolled(9), vec![file(&files)]);
        files.put(log + 1, Slot::Append, vec![file(&files)]);
        assert_eq!(files.open_count(), 4);
        files.trim();
        assert_eq!(files.open_count(), 3, "down to the limit, no further");
        assert!(files.get(log, Slot::Rolled(9)).is_none());
        assert!(files.get(log + 1, Slot::Append).is_some());
        files.set_unsynced(log, false);
        assert_eq!(files.make_room(3), 3);
        assert_eq!(files.open_count(), 0);
    }

    #[test]
    fn a_sync_set_closes_only_when_none_of_it_is_held() {
        let files = Files::new(2);
        let log = files.register();
        files.put(log, Slot::Sync, vec![file(&files), file(&files)]);
        let one = files.get(log, Slot::Sync).unwrap()[1].clone();
        assert_eq!(files.make_room(1), 0);
        drop(one);
        assert_eq!(files.make_room(2), 2);
    }

    #[test]
    fn a_file_held_elsewhere_is_counted_until_its_last_holder_drops_it() {
        let files = Files::new(1);
        let log = files.register();
        files.put(log, Slot::Append, vec![file(&files)]);
        let job = files.take(log, Slot::Append).unwrap();
        assert_eq!(files.open_count(), 1);
        std::thread::spawn(move || drop(job)).join().unwrap();
        assert_eq!(files.open_count(), 0);
    }

    #[test]
    fn forgetting_a_log_closes_its_files() {
        let files = Files::new(usize::MAX);
        let (a, b) = (files.register(), files.register());
        files.put(a, Slot::Append, vec![file(&files)]);
        files.put(a, Slot::Rolled(7), vec![file(&files)]);
        files.put(b, Slot::Append, vec![file(&files)]);
        files.set_unsynced(a, true);
        files.forget_log(a);
        assert_eq!(files.open_count(), 1);
        assert!(files.take(b, Slot::Append).is_some());
        assert_eq!(files.open_count(), 0);
    }

    #[test]
    fn neither_connections_nor_files_starve() {
        // Enough for both.
        assert_eq!(
            split(10_000, 4096, 1024),
            Plan {
                limit: 10_000,
                connections: 4096,
                files: 1024
            }
        );
        let both = |limit, c, f| {
            let p = split(limit, c, f);
            (p.connections, p.files)
        };
        // Short: clients first, files get what they leave...
        assert_eq!(both(400, 250, 1024), (250, 400 - 64 - 250));
        assert_eq!(both(128, 16, 1024), (16, 48));
        // ... but never less than a quarter of the room.
        assert_eq!(both(1024, 4096, 1024), (720, 240));
        assert_eq!(both(100, 4096, 1024), (20, MIN_OPEN_FILES));
        // Never more than asked.
        assert_eq!(both(u64::MAX, 10, 20), (10, 20));
        assert_eq!(both(u64::MAX, 10, 1), (10, 1));
        // Too few even for that: one client, the minimum of files.
        assert_eq!(both(24, 4096, 1024), (1, MIN_OPEN_FILES));
    }
}
