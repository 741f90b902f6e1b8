//! LazyFs: a FUSE filesystem for crash-consistency tests that models power
//! loss (after the idea of LazyFS): it passes files through to a *backing*
//! directory but keeps every change that was not made durable with
//! `fsync`/`fdatasync` in memory, and [`LazyFs::power_cut`] throws those
//! changes away. A plain `kill -9` leaves the kernel's page cache in place,
//! so it cannot show a missing sync; a power cut here can.
//!
//! ```no_run
//! let fs = LazyFs::mount(&backing, &mountpoint)?;   // serve on a thread of this process
//! // ... run the program under test on `mountpoint`, kill it ...
//! fs.power_cut()?;   // `backing` now holds exactly what was durable
//! ```
//!
//! # The model
//! Every request is served under one lock, in the order the kernel sends
//! them, and the kernel caches nothing: each open gets `FOPEN_DIRECT_IO`
//! (reads and writes come here, no page cache, no writeback cache), and
//! entries and attributes are given with a time-to-live of 0, so sizes and
//! names are always asked for afresh.
//!
//! **File data.** A file's content is its *durable* content (in a backing
//! file) plus an in-memory *overlay* of what happened since its last sync:
//! the writes (byte ranges) and truncations, and its current size. Reads see
//! the overlay. `fsync` or `fdatasync` on *any* descriptor of the file
//! applies the whole overlay (every descriptor's writes: the page cache is
//! per file, not per descriptor) to the backing file, which is then its
//! durable content. A truncation that is not synced is undone by a power
//! cut like a write; bytes cut off and then exposed again by growing the
//! file read as zeros, as on a real filesystem.
//!
//! **Names.** Each directory has its current entries (name -> inode) and
//! its durable entries. Creating a file, `mkdir`, `unlink`, `rmdir` and
//! `rename` change the current entries only; an `fsync`/`fdatasync` of a
//! descriptor opened on the directory makes *all* its current entries its
//! durable ones. So, after a power cut:
//! - a file created but whose directory was never synced is gone, even if
//!   the file itself was synced (syncing a file does not sync its name);
//! - a file whose name was synced but whose data never was is empty;
//! - a rename, unlink or create not followed by a sync of the directory is
//!   undone (the old name has the old content again);
//! - a directory made durable (by syncing its parent) holds the entries it
//!   had at its own last sync, and a directory whose name is not durable is
//!   gone with everything in it.
//!
//! Renaming across directories is refused with `EXDEV` (it would touch two
//! directories' durable states at once; nothing here needs it). Hard links,
//! symlinks, special files, extended attributes and `fallocate` are not
//! supported. Permissions, owners and times are kept in memory and are not
//! part of the durable state (after a power cut a file's mtime is that of
//! its backing file, i.e. its last sync).
//!
//! What the model does not do: a sync is atomic and a power cut never
//! lands inside one; unsynced changes are lost *whole* (it never keeps a
//! random subset of them, tears a write, or reorders them), so it shows
//! lost data but not the garbage a torn write may leave. The backing file
//! is written on a sync but not itself `fsync`ed: the host does not lose
//! power, only the simulated disk does, and a real sync would only slow the
//! tests.
//!
//! **Locks.** `flock` and `fcntl` locks are left to the kernel, which then
//! handles them locally on the mount (the filesystem does not ask for
//! `FUSE_FLOCK_LOCKS` or POSIX lock requests), which is what one machine
//! needs: two `flock(LOCK_EX|LOCK_NB)` on two opens of a file conflict.
//!
//! # How the backing directory is used
//! At mount, every file in `backing` gets a hard link in
//! `backing/.lazyfs-blobs/<inode>`; files created through the mount get a new
//! empty file there. Those *blobs* hold durable content. The names in
//! `backing` are not touched while mounted; at a power cut or an unmount
//! they are rebuilt from the durable entries (hard links to the blobs,
//! directories made anew), and the blob directory is removed. After a power
//! cut `backing` therefore holds exactly what was durable, and a program can
//! be started directly on it, or a new `LazyFs` mounted over it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// Where blobs live inside the backing directory (hidden from the mount).
const BLOBS: &str = ".lazyfs-blobs";
/// The kernel may cache nothing: entries and attributes expire at once.
const TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;

/// How many syncs the filesystem has seen, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// `fsync` on a file.
    pub fsync: u64,
    /// `fdatasync` on a file.
    pub fdatasync: u64,
    /// `fsync` or `fdatasync` on a directory.
    pub dir_fsync: u64,
    /// `write` requests.
    pub writes: u64,
}

#[derive(Default)]
struct Counters {
    /// File syncs still to fail (see [`LazyFs::fail_next_syncs`]).
    fail_syncs: AtomicU64,
    fsync: AtomicU64,
    fdatasync: AtomicU64,
    dir_fsync: AtomicU64,
    writes: AtomicU64,
}

struct Shared {
    state: Mutex<State>,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A mounted LazyFs. Dropping it unmounts cleanly (as [`unmount`](Self::unmount)).
pub struct LazyFs {
    shared: Arc<Shared>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    backing: PathBuf,
    /// The mount's device number, for aborting its connection if needed.
    dev: u64,
}

/// Why FUSE cannot be used on this machine, if it cannot (checked before
/// mounting: `/dev/fuse` must open, and a non-root user needs
/// `fusermount3`).
pub fn fuse_unavailable() -> Option<String> {
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return Some(format!("cannot open /dev/fuse: {e}"));
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && !on_path("fusermount3") && !on_path("fusermount") {
        return Some("not root and no fusermount3 on PATH (Debian: apt-get install fuse3)".into());
    }
    None
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// Prints a message to the real stderr, past the test harness's capture,
/// so that it shows even when the test passes.
pub fn loud(message: &str) {
    let _ = io::stderr().write_all(format!("{message}\n").as_bytes());
}

/// Mounts, or prints `SKIPPED (FUSE unavailable: <reason>)` for `test` and
/// returns `None` where this machine cannot mount FUSE (no `/dev/fuse`, no
/// permission, no `fusermount3`). Any other failure panics.
pub fn mount_or_skip(test: &str, backing: &Path, mountpoint: &Path) -> Option<LazyFs> {
    if let Some(reason) = fuse_unavailable() {
        loud(&format!("{test}: SKIPPED (FUSE unavailable: {reason})"));
        return None;
    }
    match LazyFs::mount(backing, mountpoint) {
        Ok(fs) => Some(fs),
        Err(MountError::Fuse(e))
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound
            ) || e.raw_os_error() == Some(libc::ENODEV) =>
        {
            loud(&format!(
                "{test}: SKIPPED (FUSE unavailable: mount failed: {e})"
            ));
            None
        }
        Err(e) => panic!("{test}: mounting LazyFs on {}: {e}", mountpoint.display()),
    }
}

/// A failed mount: preparing the backing directory, or FUSE itself.
#[derive(Debug)]
pub enum MountError {
    Backing(io::Error),
    Fuse(io::Error),
}

impl std::fmt::Display for MountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountError::Backing(e) => write!(f, "backing directory: {e}"),
            MountError::Fuse(e) => write!(f, "FUSE mount: {e}"),
        }
    }
}

impl std::error::Error for MountError {}

impl LazyFs {
    /// Mounts a LazyFs showing `backing` on `mountpoint` (an existing
    /// directory), served by a background thread of this process.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<LazyFs, MountError> {
        let backing = backing.canonicalize().map_err(MountError::Backing)?;
        let mountpoint = mountpoint.canonicalize().map_err(MountError::Backing)?;
        if mountpoint.starts_with(&backing) || backing.starts_with(&mountpoint) {
            return Err(MountError::Backing(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the backing directory and the mountpoint must not contain each other",
            )));
        }
        let state = State::load(&backing).map_err(MountError::Backing)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            counters: Counters::default(),
        });
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
            MountOption::NoAtime,
        ];
        let session = match fuser::spawn_mount(Fs(shared.clone()), &mountpoint, &config) {
            Ok(session) => session,
            Err(e) => {
                let _ = fs::remove_dir_all(backing.join(BLOBS));
                return Err(MountError::Fuse(e));
            }
        };
        let dev = fs::metadata(&mountpoint).map(|m| m.dev()).unwrap_or(0);
        Ok(LazyFs {
            shared,
            session: Some(session),
            mountpoint,
            backing,
            dev,
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// The syncs seen so far.
    pub fn counts(&self) -> SyncCounts {
        let c = &self.shared.counters;
        SyncCounts {
            fsync: c.fsync.load(Ordering::Relaxed),
            fdatasync: c.fdatasync.load(Ordering::Relaxed),
            dir_fsync: c.dir_fsync.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
        }
    }

    /// Makes the next `n` syncs of files (`fsync`, `fdatasync`) fail with
    /// `EIO` as a failed writeback does on Linux: the file's unsynced
    /// writes are still read back but will never be durable, and the
    /// error is reported once (a later sync of the file succeeds).
    pub fn fail_next_syncs(&self, n: u64) {
        self.shared.counters.fail_syncs.store(n, Ordering::SeqCst);
    }

    /// Simulates a power cut: from now on every request fails with `EIO`,
    /// everything not synced is dropped, `backing` is left holding exactly
    /// the durable state, and the filesystem is unmounted. Whatever used
    /// the mount should be dead (killed) by now, or unmounting finds it
    /// busy: it is then detached and its connection aborted, and this
    /// returns an error.
    pub fn power_cut(mut self) -> io::Result<()> {
        self.finish(false)
    }

    /// Unmounts cleanly: everything is synced first, as a clean shutdown of
    /// a real machine would.
    pub fn unmount(mut self) -> io::Result<()> {
        self.finish(true)
    }

    fn finish(&mut self, clean: bool) -> io::Result<()> {
        if self.session.is_none() {
            return Ok(());
        }
        let written = {
            let mut state = self.shared.lock();
            state.down = true;
            if clean {
                state.sync_everything()
            } else {
                Ok(())
            }
            .and_then(|()| state.materialize())
        };
        let unmounted = self.end_session();
        written.and(unmounted)
    }

    /// Unmounts (retrying while the mount is busy, for up to 10 s: the
    /// kernel releases files closed just before asynchronously, late on a
    /// loaded machine), and
    /// joins the session thread. If it cannot be unmounted, detaches it
    /// (lazy unmount), aborts its connection where that is allowed (root),
    /// and returns an error without waiting for the session thread, so
    /// that nothing hangs.
    fn end_session(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let result = loop {
            match unmount(&self.mountpoint, false) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    // Polling: nothing signals when a mount stops being busy.
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other,
            }
        };
        match result {
            // Unmounting ended the connection, so the session thread returns.
            // (Dropping the session then finds nothing to unmount.)
            Ok(()) => session.join(),
            Err(e) => {
                let _ = unmount(&self.mountpoint, true);
                let minor = libc::minor(self.dev as libc::dev_t);
                let _ = fs::write(format!("/sys/fs/fuse/connections/{minor}/abort"), "1");
                drop(session);
                Err(io::Error::new(
                    e.kind(),
                    format!("unmounting {}: {e}", self.mountpoint.display()),
                ))
            }
        }
    }
}

/// Unmounts `mountpoint` (`lazy`: detaches it even if busy): with
/// umount2(2) as root, otherwise with `fusermount3 -u`. A busy mount gives
/// `EBUSY`; one that is not mounted any more counts as unmounted.
fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let path = CString::new(mountpoint.as_os_str().as_bytes())?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) => return Ok(()), // not a mount point any more
        Some(libc::EPERM) => {}
        _ => return Err(e),
    }
    let binary = if on_path("fusermount3") {
        "fusermount3"
    } else {
        "fusermount"
    };
    let mut command = std::process::Command::new(binary);
    command.arg("-u");
    if lazy {
        command.arg("-z");
    }
    let output = command.arg("--").arg(mountpoint).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || stderr.contains("not found in") {
        Ok(())
    } else if stderr.contains("busy") {
        Err(io::Error::from_raw_os_error(libc::EBUSY))
    } else {
        Err(io::Error::other(format!("{binary} -u: {}", stderr.trim())))
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Err(e) = self.finish(true) {
            loud(&format!(
                "LazyFs: unmounting {}: {e}",
                self.mountpoint.display()
            ));
        }
    }
}

/// A file's data: durable content in the blob plus the unsynced overlay.
struct FileData {
    blob: File,
    /// The blob's length: the durable size.
    durable_len: u64,
    /// How much of the blob is still part of the file: truncations since
    /// the last sync lower it. Always `<= durable_len` and `<= size`.
    base_len: u64,
    /// The current size.
    size: u64,
    /// Unsynced writes: disjoint ranges by start offset.
    extents: BTreeMap<u64, Vec<u8>>,
    /// Writes a failed sync lost (see [`LazyFs::fail_next_syncs`]): still
    /// read back, as Linux keeps the pages cached, but no later sync makes
    /// them durable (their pages are clean). Oldest first, under
    /// `extents`.
    lost: Vec<(u64, Vec<u8>)>,
}

impl FileData {
    fn new(blob: File, len: u64) -> FileData {
        FileData {
            blob,
            durable_len: len,
            base_len: len,
            size: len,
            extents: BTreeMap::new(),
            lost: Vec::new(),
        }
    }

    fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        if offset >= self.size {
            return Ok(Vec::new());
        }
        let end = self.size.min(offset.saturating_add(len));
        let mut buf = vec![0; (end - offset) as usize];
        if offset < self.base_len {
            let durable_end = end.min(self.base_len);
            self.blob
                .read_exact_at(&mut buf[..(durable_end - offset) as usize], offset)?;
        }
        for (start, data) in &self.lost {
            let stop = start + data.len() as u64;
            let (from, to) = ((*start).max(offset), stop.min(end));
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
            }
        }
        let first = self
            .extents
            .range(..=offset)
            .next_back()
            .map_or(offset, |(start, _)| *start);
        for (&start, data) in self.extents.range(first..end) {
            let stop = start + data.len() as u64;
            if stop <= offset {
                continue;
            }
            let (from, to) = (start.max(offset), stop.min(end));
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
        }
        Ok(buf)
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // Merge with an extent that reaches `offset`, and with any that
        // start inside (or right at the end of) the new range.
        let (start, mut merged) = match self.extents.range(..=offset).next_back() {
            Some((&start, old)) if start + old.len() as u64 >= offset => {
                (start, self.extents.remove(&start).unwrap_or_default())
            }
            _ => (offset, Vec::new()),
        };
        let at = (offset - start) as usize;
        if merged.len() < at + data.len() {
            merged.resize(at + data.len(), 0);
        }
        merged[at..at + data.len()].copy_from_slice(data);
        let later: Vec<u64> = self
            .extents
            .range((Bound::Excluded(offset), Bound::Included(end)))
            .map(|(s, _)| *s)
            .collect();
        for s in later {
            let old = self.extents.remove(&s).unwrap_or_default();
            let merged_end = start + merged.len() as u64;
            if s + old.len() as u64 > merged_end {
                merged.extend_from_slice(&old[(merged_end - s) as usize..]);
            }
        }
        self.extents.insert(start, merged);
        self.size = self.size.max(end);
    }

    fn truncate(&mut self, len: u64) {
        if len < self.size {
            let gone: Vec<u64> = self.extents.range(len..).map(|(s, _)| *s).collect();
            for s in gone {
                self.extents.remove(&s);
            }
            if let Some((&start, data)) = self.extents.range_mut(..len).next_back()
                && start + data.len() as u64 > len
            {
                data.truncate((len - start) as usize);
            }
            self.base_len = self.base_len.min(len);
            self.lost.retain_mut(|(start, data)| {
                data.truncate(len.saturating_sub(*start) as usize);
                !data.is_empty()
            });
        }
        self.size = len;
    }

    /// A failed writeback: the unsynced writes will never be durable,
    /// though they are still read back until the next power cut.
    fn lose_unsynced(&mut self) {
        self.lost.extend(std::mem::take(&mut self.extents));
    }

    /// Applies the overlay to the blob: it is now the durable content
    /// (writes a failed sync lost are not part of it).
    fn sync(&mut self) -> io::Result<()> {
        if self.base_len < self.durable_len {
            self.blob.set_len(self.base_len)?;
        }
        for (&start, data) in &self.extents {
            self.blob.write_all_at(data, start)?;
        }
        self.blob.set_len(self.size)?;
        self.durable_len = self.size;
        self.base_len = self.size;
        self.extents.clear();
        Ok(())
    }
}

struct DirData {
    parent: u64,
    /// Current entries: what lookups and readdir see.
    entries: BTreeMap<OsString, u64>,
    /// Entries as of this directory's last sync (or the mount).
    durable: BTreeMap<OsString, u64>,
}

enum Body {
    File(FileData),
    Dir(DirData),
}

struct Node {
    body: Body,
    /// Current names of a file.
    nlink: u32,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    ctime: SystemTime,
}

impl Node {
    fn touch(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.ctime = now;
    }
}

struct State {
    backing: PathBuf,
    blobs: PathBuf,
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// The power was cut or the filesystem is being unmounted: every
    /// request fails.
    down: bool,
}

impl State {
    fn load(backing: &Path) -> io::Result<State> {
        if !fs::metadata(backing)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", backing.display()),
            ));
        }
        let blobs = backing.join(BLOBS);
        // Left over from a test process that died while mounted: the names
        // in `backing` were not touched then, and the blobs are only links.
        if blobs.exists() {
            fs::remove_dir_all(&blobs)?;
        }
        fs::create_dir(&blobs)?;
        let meta = fs::metadata(backing)?;
        let mut state = State {
            backing: backing.to_path_buf(),
            blobs,
            nodes: HashMap::new(),
            next_ino: ROOT + 1,
            down: false,
        };
        state.nodes.insert(ROOT, dir_node(ROOT, &meta));
        let mut seen = HashMap::new();
        if let Err(e) = state.load_dir(ROOT, backing, &mut seen) {
            let _ = fs::remove_dir_all(&state.blobs);
            return Err(e);
        }
        Ok(state)
    }

    fn load_dir(
        &mut self,
        ino: u64,
        path: &Path,
        seen: &mut HashMap<(u64, u64), u64>,
    ) -> io::Result<()> {
        let mut entries = BTreeMap::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            if ino == ROOT && name == BLOBS {
                continue;
            }
            let child_path = entry.path();
            let meta = fs::symlink_metadata(&child_path)?;
            let child = if meta.is_dir() {
                let child = self.alloc();
                self.nodes.insert(child, dir_node(ino, &meta));
                self.load_dir(child, &child_path, seen)?;
                child
            } else if meta.is_file() {
                if let Some(&child) = seen.get(&(meta.dev(), meta.ino())) {
                    self.node_mut(child).nlink += 1;
                    child
                } else {
                    let child = self.alloc();
                    let blob_path = self.blob_path(child);
                    fs::hard_link(&child_path, &blob_path)?;
                    let blob = OpenOptions::new().read(true).write(true).open(&blob_path)?;
                    self.nodes.insert(
                        child,
                        Node {
                            body: Body::File(FileData::new(blob, meta.len())),
                            nlink: 1,
                            perm: (meta.permissions().mode() & 0o7777) as u16,
                            uid: meta.uid(),
                            gid: meta.gid(),
                            mtime: meta.modified()?,
                            ctime: meta.modified()?,
                        },
                    );
                    seen.insert((meta.dev(), meta.ino()), child);
                    child
                }
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{}: LazyFs supports only files and directories",
                        child_path.display()
                    ),
                ));
            };
            entries.insert(name, child);
        }
        let dir = self.dir_mut(ino);
        dir.durable = entries.clone();
        dir.entries = entries;
        Ok(())
    }

    fn alloc(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    fn blob_path(&self, ino: u64) -> PathBuf {
        self.blobs.join(ino.to_string())
    }

    fn node_mut(&mut self, ino: u64) -> &mut Node {
        self.nodes.get_mut(&ino).expect("known inode")
    }

    fn dir_mut(&mut self, ino: u64) -> &mut DirData {
        match &mut self.node_mut(ino).body {
            Body::Dir(dir) => dir,
            Body::File(_) => panic!("inode {ino} is not a directory"),
        }
    }

    fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn get_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: u64) -> Result<&DirData, Errno> {
        match &self.node(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut FileData, Errno> {
        match &mut self.get_mut(ino)?.body {
            Body::File(file) => Ok(file),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let node = self.node(ino)?;
        let (kind, size, nlink) = match &node.body {
            Body::File(file) => (FileType::RegularFile, file.size, node.nlink),
            Body::Dir(dir) => {
                let subdirs = dir
                    .entries
                    .values()
                    .filter(|c| matches!(self.nodes.get(c).map(|n| &n.body), Some(Body::Dir(_))))
                    .count();
                (FileType::Directory, 4096, 2 + subdirs as u32)
            }
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.ctime,
            crtime: node.ctime,
            kind,
            perm: node.perm,
            nlink,
            uid: node.uid,
            gid: node.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Adds a new entry `name` in `parent` for a new node.
    fn add(
        &mut self,
        parent: u64,
        name: &OsStr,
        body: Body,
        mode: u32,
        req: &Request,
    ) -> Result<u64, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        if parent == ROOT && name == BLOBS {
            return Err(Errno::EPERM);
        }
        let ino = self.alloc();
        let now = SystemTime::now();
        self.nodes.insert(
            ino,
            Node {
                body,
                nlink: 1,
                perm: (mode & 0o7777) as u16,
                uid: req.uid(),
                gid: req.gid(),
                mtime: now,
                ctime: now,
            },
        );
        let parent_node = self.node_mut(parent);
        parent_node.touch();
        if let Body::Dir(dir) = &mut parent_node.body {
            dir.entries.insert(name.to_os_string(), ino);
        }
        Ok(ino)
    }

    fn create_file(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        req: &Request,
    ) -> Result<u64, Errno> {
        self.dir(parent)?;
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        let blob = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.blob_path(ino))
            .map_err(Errno::from)?;
        let added = self.add(parent, name, Body::File(FileData::new(blob, 0)), mode, req)?;
        debug_assert_eq!(added, ino);
        Ok(ino)
    }

    /// Removes entry `name` from `parent`: a file if `dir` is false, an
    /// empty directory if true.
    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.node(ino)?.body, dir) {
            (Body::File(_), true) => return Err(Errno::ENOTDIR),
            (Body::Dir(_), false) => return Err(Errno::EISDIR),
            (Body::Dir(d), true) if !d.entries.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let parent_node = self.get_mut(parent)?;
        parent_node.touch();
        if let Body::Dir(d) = &mut parent_node.body {
            d.entries.remove(name);
        }
        let node = self.get_mut(ino)?;
        node.nlink = node.nlink.saturating_sub(1);
        node.ctime = SystemTime::now();
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if parent != new_parent {
            return Err(Errno::EXDEV);
        }
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return Err(Errno::EINVAL);
        }
        if parent == ROOT && new_name == BLOBS {
            return Err(Errno::EPERM);
        }
        let ino = self.lookup(parent, name)?;
        if name == new_name {
            return Ok(());
        }
        if let Ok(target) = self.lookup(parent, new_name) {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            let source_is_dir = matches!(self.node(ino)?.body, Body::Dir(_));
            match &self.node(target)?.body {
                Body::File(_) if source_is_dir => return Err(Errno::ENOTDIR),
                Body::Dir(_) if !source_is_dir => return Err(Errno::EISDIR),
                Body::Dir(d) if !d.entries.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
            let target = self.get_mut(target)?;
            target.nlink = target.nlink.saturating_sub(1);
            target.ctime = SystemTime::now();
        }
        let parent_node = self.get_mut(parent)?;
        parent_node.touch();
        if let Body::Dir(d) = &mut parent_node.body {
            d.entries.remove(name);
            d.entries.insert(new_name.to_os_string(), ino);
        }
        self.get_mut(ino)?.ctime = SystemTime::now();
        Ok(())
    }

    /// Makes everything current durable (a clean shutdown).
    fn sync_everything(&mut self) -> io::Result<()> {
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File(file) => file.sync()?,
                Body::Dir(dir) => dir.durable = dir.entries.clone(),
            }
        }
        Ok(())
    }

    /// Rebuilds the names in `backing` from the durable entries, and
    /// removes the blob directory.
    fn materialize(&mut self) -> io::Result<()> {
        for entry in fs::read_dir(&self.backing)? {
            let entry = entry?;
            if entry.file_name() == BLOBS {
                continue;
            }
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
        }
        let mut done = HashSet::new();
        self.build(ROOT, &self.backing, &mut done)?;
        fs::remove_dir_all(&self.blobs)
    }

    fn build(&self, ino: u64, path: &Path, done: &mut HashSet<u64>) -> io::Result<()> {
        if !done.insert(ino) {
            return Ok(());
        }
        let Some(Node {
            body: Body::Dir(dir),
            ..
        }) = self.nodes.get(&ino)
        else {
            return Ok(());
        };
        for (name, &child) in &dir.durable {
            let target = path.join(name);
            let node = &self.nodes[&child];
            match &node.body {
                Body::File(_) => fs::hard_link(self.blob_path(child), &target)?,
                Body::Dir(_) => {
                    fs::create_dir(&target)?;
                    fs::set_permissions(&target, fs::Permissions::from_mode(node.perm.into()))?;
                    self.build(child, &target, done)?;
                }
            }
        }
        Ok(())
    }
}

fn dir_node(parent: u64, meta: &fs::Metadata) -> Node {
    let mtime = meta.modified().unwrap_or_else(|_| SystemTime::now());
    Node {
        body: Body::Dir(DirData {
            parent,
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        }),
        nlink: 1,
        perm: (meta.permissions().mode() & 0o7777) as u16,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime,
        ctime: mtime,
    }
}

/// The FUSE side: each request takes the lock, fails with `EIO` once the
/// power is cut, and otherwise acts on [`State`].
struct Fs(Arc<Shared>);

impl Fs {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T, Errno>) -> Result<T, Errno> {
        let mut state = self.0.lock();
        if state.down {
            return Err(Errno::EIO);
        }
        f(&mut state)
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn sync_dir(&self, ino: u64) -> Result<(), Errno> {
        self.count(&self.0.counters.dir_fsync);
        self.with(|state| match &mut state.get_mut(ino)?.body {
            Body::Dir(dir) => {
                dir.durable = dir.entries.clone();
                Ok(())
            }
            Body::File(_) => Err(Errno::ENOTDIR),
        })
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_attr(reply: ReplyAttr, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(e) => reply.error(e),
    }
}

fn system_time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(
            reply,
            self.with(|s| {
                let ino = s.lookup(parent.0, name)?;
                s.attr(ino)
            }),
        );
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, self.with(|s| s.attr(ino.0)));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply_attr(
            reply,
            self.with(|s| {
                if let Some(size) = size {
                    s.file_mut(ino.0)?.truncate(size);
                    s.get_mut(ino.0)?.touch();
                }
                let node = s.get_mut(ino.0)?;
                if let Some(mode) = mode {
                    node.perm = (mode & 0o7777) as u16;
                    node.ctime = SystemTime::now();
                }
                if let Some(uid) = uid {
                    node.uid = uid;
                }
                if let Some(gid) = gid {
                    node.gid = gid;
                }
                if let Some(mtime) = mtime {
                    node.mtime = system_time(mtime);
                }
                s.attr(ino.0)
            }),
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            reply.error(Errno::EPERM);
            return;
        }
        reply_entry(
            reply,
            self.with(|s| {
                let ino = s.create_file(parent.0, name, mode & !umask, req)?;
                s.attr(ino)
            }),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.with(|s| {
                s.dir(parent.0)?;
                let body = Body::Dir(DirData {
                    parent: parent.0,
                    entries: BTreeMap::new(),
                    durable: BTreeMap::new(),
                });
                let ino = s.add(parent.0, name, body, mode & !umask, req)?;
                s.attr(ino)
            }),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.with(|s| s.remove(parent.0, name, false)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.with(|s| s.remove(parent.0, name, true)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.with(|s| s.rename(parent.0, name, newparent.0, newname, flags)),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let result = self.with(|s| {
            let file = s.file_mut(ino.0)?;
            if flags.0 & libc::O_TRUNC != 0 {
                file.truncate(0);
                s.get_mut(ino.0)?.touch();
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.with(|s| {
            let ino = s.create_file(parent.0, name, mode & !umask, req)?;
            s.attr(ino)
        });
        match result {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.with(|s| {
            s.file_mut(ino.0)?
                .read(offset, size.into())
                .map_err(Errno::from)
        });
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.count(&self.0.counters.writes);
        let result = self.with(|s| {
            let file = s.file_mut(ino.0)?;
            // An append goes at the end as this filesystem knows it.
            let offset = if flags.0 & libc::O_APPEND != 0 {
                file.size
            } else {
                offset
            };
            file.write(offset, data);
            s.get_mut(ino.0)?.touch();
            Ok(())
        });
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let is_dir = self.with(|s| Ok(matches!(s.node(ino.0)?.body, Body::Dir(_))));
        let result = match is_dir {
            Ok(true) => self.sync_dir(ino.0),
            Ok(false) => {
                let c = &self.0.counters;
                self.count(if datasync { &c.fdatasync } else { &c.fsync });
                let fail = c
                    .fail_syncs
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if fail {
                    self.with(|s| {
                        s.file_mut(ino.0)?.lose_unsynced();
                        Err(Errno::EIO)
                    })
                } else {
                    self.with(|s| s.file_mut(ino.0)?.sync().map_err(Errno::from))
                }
            }
            Err(e) => Err(e),
        };
        reply_empty(reply, result);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|s| s.dir(ino.0).map(|_| ())) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listing = self.with(|s| {
            let dir = s.dir(ino.0)?;
            let mut list = vec![
                (ino.0, FileType::Directory, OsString::from(".")),
                (dir.parent, FileType::Directory, OsString::from("..")),
            ];
            for (name, &child) in &dir.entries {
                let kind = match s.node(child)?.body {
                    Body::File(_) => FileType::RegularFile,
                    Body::Dir(_) => FileType::Directory,
                };
                list.push((child, kind, name.clone()));
            }
            Ok(list)
        });
        match listing {
            Ok(list) => {
                for (i, (child, kind, name)) in list.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*child), i as u64 + 1, *kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.sync_dir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let backing = self.0.lock().backing.clone();
        let Ok(path) = CString::new(backing.as_os_str().as_bytes()) else {
            reply.error(Errno::EIO);
            return;
        };
        // SAFETY: statvfs fills the zeroed struct we pass; the path is a
        // valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            reply.error(Errno::from(io::Error::last_os_error()));
            return;
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            st.f_namemax as u32,
            st.f_frsize as u32,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply_empty(reply, self.with(|s| s.node(ino.0).map(|_| ())));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }
}
