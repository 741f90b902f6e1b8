//! Self-tests of the power-loss filesystem in `tests/lazyfs`: what survives
//! a power cut, what reads see before it, and the calls the broker makes.
//! Each test mounts its own LazyFs over a fresh backing directory, and is
//! skipped (with a loud `SKIPPED (FUSE unavailable: ...)`) where FUSE
//! cannot be mounted.

mod lazyfs;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lazyfs::{LazyFs, SyncCounts};

/// A backing directory and a mountpoint in a fresh temp dir.
struct Dirs {
    _tmp: tempfile::TempDir,
    backing: PathBuf,
    mnt: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let backing = tmp.path().join("backing");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&backing).unwrap();
    fs::create_dir(&mnt).unwrap();
    Dirs {
        _tmp: tmp,
        backing,
        mnt,
    }
}

/// Mounts over `d`, or returns from the test after a loud SKIPPED line.
macro_rules! mount {
    ($name:expr, $d:expr) => {
        match lazyfs::mount_or_skip($name, &$d.backing, &$d.mnt) {
            Some(fs) => fs,
            None => return,
        }
    };
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .unwrap()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn only_the_synced_part_of_a_file_survives_a_power_cut() {
    let d = dirs();
    fs::write(d.backing.join("log"), b"old\n").unwrap();
    let fs = mount!("only_the_synced_part_of_a_file_survives_a_power_cut", d);
    let path = d.mnt.join("log");
    let mut f = append(&path);
    f.write_all(b"one\n").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"two\n").unwrap();
    // Reads and sizes see the unsynced write; the backing file does not.
    assert_eq!(fs::read(&path).unwrap(), b"old\none\ntwo\n");
    assert_eq!(fs::metadata(&path).unwrap().len(), 12);
    assert_eq!(
        fs.counts(),
        SyncCounts {
            fsync: 0,
            fdatasync: 1,
            dir_fsync: 0,
            writes: 2
        }
    );
    drop(f);
    fs.power_cut().unwrap();
    assert_eq!(fs::read(d.backing.join("log")).unwrap(), b"old\none\n");
    assert_eq!(names(&d.backing), ["log"], "nothing but the file is left");

    // A new mount over it shows the same, and fsync (not only fdatasync)
    // syncs too.
    let fs = mount!("only_the_synced_part_of_a_file_survives_a_power_cut", d);
    assert_eq!(fs::read(&path).unwrap(), b"old\none\n");
    let mut f = append(&path);
    f.write_all(b"three\n").unwrap();
    f.sync_all().unwrap();
    f.write_all(b"four\n").unwrap();
    assert_eq!(fs.counts().fsync, 1);
    assert_eq!(fs.counts().fdatasync, 0);
    drop(f);
    fs.power_cut().unwrap();
    assert_eq!(
        fs::read(d.backing.join("log")).unwrap(),
        b"old\none\nthree\n"
    );
}

#[test]
fn a_clean_unmount_keeps_everything() {
    let d = dirs();
    let fs = mount!("a_clean_unmount_keeps_everything", d);
    fs::create_dir(d.mnt.join("sub")).unwrap();
    fs::write(d.mnt.join("sub/a"), b"never synced").unwrap();
    fs::write(d.mnt.join("b"), b"b").unwrap();
    fs.unmount().unwrap();
    assert_eq!(names(&d.backing), ["b", "sub"]);
    assert_eq!(fs::read(d.backing.join("sub/a")).unwrap(), b"never synced");
    assert_eq!(fs::read(d.backing.join("b")).unwrap(), b"b");
}

#[test]
fn unsynced_truncates_are_undone_and_cut_bytes_read_as_zeros() {
    let d = dirs();
    fs::write(d.backing.join("f"), b"0123456789").unwrap();
    let fs = mount!(
        "unsynced_truncates_are_undone_and_cut_bytes_read_as_zeros",
        d
    );
    let path = d.mnt.join("f");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.set_len(4).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"0123");
    // Growing again does not bring the old bytes back.
    f.set_len(8).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"0123\0\0\0\0");
    f.write_all_at(b"xy", 6).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"0123\0\0xy");
    drop(f);
    fs.power_cut().unwrap();
    assert_eq!(
        fs::read(d.backing.join("f")).unwrap(),
        b"0123456789",
        "an unsynced truncate is undone"
    );

    let fs = mount!(
        "unsynced_truncates_are_undone_and_cut_bytes_read_as_zeros",
        d
    );
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.set_len(4).unwrap();
    f.set_len(8).unwrap();
    f.write_all_at(b"xy", 6).unwrap();
    f.sync_data().unwrap();
    f.set_len(2).unwrap(); // not synced
    drop(f);
    fs.power_cut().unwrap();
    assert_eq!(fs::read(d.backing.join("f")).unwrap(), b"0123\0\0xy");
}

#[test]
fn a_new_file_vanishes_unless_its_directory_is_synced() {
    let d = dirs();
    let fs = mount!("a_new_file_vanishes_unless_its_directory_is_synced", d);
    // Name synced, data not: it comes back empty.
    let mut f = append(&d.mnt.join("empty"));
    f.write_all(b"data").unwrap();
    // Both synced.
    let mut g = append(&d.mnt.join("kept"));
    g.write_all(b"data").unwrap();
    g.sync_data().unwrap();
    sync_dir(&d.mnt);
    assert_eq!(fs.counts().dir_fsync, 1);
    // Created after the directory sync: synced data, but the name never was.
    let mut h = append(&d.mnt.join("lost"));
    h.write_all(b"data").unwrap();
    h.sync_all().unwrap();
    assert_eq!(names(&d.mnt), ["empty", "kept", "lost"]);
    drop((f, g, h));
    fs.power_cut().unwrap();
    assert_eq!(names(&d.backing), ["empty", "kept"]);
    assert_eq!(fs::read(d.backing.join("empty")).unwrap(), b"");
    assert_eq!(fs::read(d.backing.join("kept")).unwrap(), b"data");
}

#[test]
fn a_rename_is_undone_unless_the_directory_is_synced() {
    let d = dirs();
    fs::write(d.backing.join("state"), b"old").unwrap();
    let fs = mount!("a_rename_is_undone_unless_the_directory_is_synced", d);
    // The write-temp, sync, rename pattern, without the directory sync.
    let mut tmp = File::create(d.mnt.join("state.tmp")).unwrap();
    tmp.write_all(b"new").unwrap();
    tmp.sync_all().unwrap();
    drop(tmp);
    fs::rename(d.mnt.join("state.tmp"), d.mnt.join("state")).unwrap();
    assert_eq!(fs::read(d.mnt.join("state")).unwrap(), b"new");
    assert_eq!(names(&d.mnt), ["state"]);
    fs.power_cut().unwrap();
    assert_eq!(names(&d.backing), ["state"]);
    assert_eq!(fs::read(d.backing.join("state")).unwrap(), b"old");

    // With the directory sync it sticks.
    let fs = mount!("a_rename_is_undone_unless_the_directory_is_synced", d);
    let mut tmp = File::create(d.mnt.join("state.tmp")).unwrap();
    tmp.write_all(b"new").unwrap();
    tmp.sync_all().unwrap();
    drop(tmp);
    fs::rename(d.mnt.join("state.tmp"), d.mnt.join("state")).unwrap();
    sync_dir(&d.mnt);
    fs.power_cut().unwrap();
    assert_eq!(names(&d.backing), ["state"]);
    assert_eq!(fs::read(d.backing.join("state")).unwrap(), b"new");
}

#[test]
fn a_rolled_segment_keeps_its_data_under_the_old_name_without_a_directory_sync() {
    // The broker's roll: sync, rename log -> log.1, create a new log.
    let d = dirs();
    fs::write(d.backing.join("log"), b"").unwrap();
    let fs = mount!(
        "a_rolled_segment_keeps_its_data_under_the_old_name_without_a_directory_sync",
        d
    );
    let mut log = append(&d.mnt.join("log"));
    log.write_all(b"a\n").unwrap();
    log.sync_data().unwrap();
    fs::rename(d.mnt.join("log"), d.mnt.join("log.1")).unwrap();
    let mut new = append(&d.mnt.join("log"));
    new.write_all(b"b\n").unwrap();
    new.sync_data().unwrap();
    drop((log, new));
    fs.power_cut().unwrap();
    // The rename and the create are both undone: `log` is the old file,
    // with its synced content.
    assert_eq!(names(&d.backing), ["log"]);
    assert_eq!(fs::read(d.backing.join("log")).unwrap(), b"a\n");
}

#[test]
fn an_unlink_is_undone_unless_the_directory_is_synced() {
    let d = dirs();
    fs::write(d.backing.join("a"), b"a").unwrap();
    fs::write(d.backing.join("b"), b"b").unwrap();
    let fs = mount!("an_unlink_is_undone_unless_the_directory_is_synced", d);
    fs::remove_file(d.mnt.join("a")).unwrap();
    assert_eq!(names(&d.mnt), ["b"]);
    fs.power_cut().unwrap();
    assert_eq!(names(&d.backing), ["a", "b"]);

    let fs = mount!("an_unlink_is_undone_unless_the_directory_is_synced", d);
    fs::remove_file(d.mnt.join("a")).unwrap();
    sync_dir(&d.mnt);
    fs::remove_file(d.mnt.join("b")).unwrap();
    fs.power_cut().unwrap();
    assert_eq!(names(&d.backing), ["b"]);
    assert_eq!(fs::read(d.backing.join("b")).unwrap(), b"b");
}

#[test]
fn a_new_directory_needs_its_parent_synced_and_its_own_sync_for_its_entries() {
    let d = dirs();
    let fs = mount!(
        "a_new_directory_needs_its_parent_synced_and_its_own_sync_for_its_entries",
        d
    );
    fs::create_dir_all(d.mnt.join("topics/t")).unwrap();
    let mut f = append(&d.mnt.join("topics/t/log"));
    f.write_all(b"x").unwrap();
    f.sync_data().unwrap();
    sync_dir(&d.mnt.join("topics/t"));
    sync_dir(&d.mnt.join("topics"));
    // The data dir itself (holding `topics`) is not synced.
    drop(f);
    fs.power_cut().unwrap();
    assert!(names(&d.backing).is_empty(), "{:?}", names(&d.backing));

    let fs = mount!(
        "a_new_directory_needs_its_parent_synced_and_its_own_sync_for_its_entries",
        d
    );
    fs::create_dir_all(d.mnt.join("topics/t")).unwrap();
    let mut f = append(&d.mnt.join("topics/t/log"));
    f.write_all(b"x").unwrap();
    f.sync_data().unwrap();
    sync_dir(&d.mnt.join("topics"));
    sync_dir(&d.mnt);
    // `topics/t` was not synced: it is there, empty.
    drop(f);
    fs.power_cut().unwrap();
    assert_eq!(names(&d.backing), ["topics"]);
    assert_eq!(names(&d.backing.join("topics")), ["t"]);
    assert!(names(&d.backing.join("topics/t")).is_empty());
    assert!(fs::metadata(d.backing.join("topics/t")).unwrap().is_dir());

    // rmdir works, and is undone like any other unsynced change.
    let fs = mount!(
        "a_new_directory_needs_its_parent_synced_and_its_own_sync_for_its_entries",
        d
    );
    fs::remove_dir(d.mnt.join("topics/t")).unwrap();
    assert!(names(&d.mnt.join("topics")).is_empty());
    assert!(fs::remove_dir(d.mnt.join("topics")).is_ok());
    fs.power_cut().unwrap();
    assert_eq!(names(&d.backing.join("topics")), ["t"]);
}

#[test]
fn appends_through_two_open_file_descriptions_interleave_and_one_sync_covers_both() {
    let d = dirs();
    let fs = mount!(
        "appends_through_two_open_file_descriptions_interleave_and_one_sync_covers_both",
        d
    );
    let path = d.mnt.join("log");
    let mut a = append(&path);
    let mut b = append(&path);
    sync_dir(&d.mnt);
    for i in 0..50 {
        a.write_all(format!("a{i}\n").as_bytes()).unwrap();
        b.write_all(format!("b{i}\n").as_bytes()).unwrap();
    }
    let expected: String = (0..50).map(|i| format!("a{i}\nb{i}\n")).collect();
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
    assert_eq!(a.metadata().unwrap().len(), expected.len() as u64);
    // A read-only open (as the broker's sync threads use) syncs the file.
    File::open(&path).unwrap().sync_data().unwrap();
    a.write_all(b"tail\n").unwrap();
    let mut seen = String::new();
    File::open(&path)
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    assert_eq!(seen, format!("{expected}tail\n"));
    drop((a, b));
    fs.power_cut().unwrap();
    assert_eq!(fs::read_to_string(d.backing.join("log")).unwrap(), expected);
}

#[test]
fn pwrite_and_pread_in_the_middle_mix_durable_and_unsynced_bytes() {
    let d = dirs();
    fs::write(d.backing.join("f"), b"abcdefghij").unwrap();
    let fs = mount!(
        "pwrite_and_pread_in_the_middle_mix_durable_and_unsynced_bytes",
        d
    );
    let path = d.mnt.join("f");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all_at(b"XY", 2).unwrap();
    f.write_all_at(b"Z", 7).unwrap();
    f.write_all_at(b"12", 3).unwrap(); // overlaps the first write
    f.write_all_at(b"!", 12).unwrap(); // past the end: a hole of zeros
    let mut buf = [0u8; 6];
    f.read_exact_at(&mut buf, 1).unwrap();
    assert_eq!(&buf, b"bX12fg");
    assert_eq!(fs::read(&path).unwrap(), b"abX12fgZij\0\0!");
    f.sync_data().unwrap();
    f.write_all_at(b"lost", 0).unwrap();
    drop(f);
    fs.power_cut().unwrap();
    assert_eq!(fs::read(d.backing.join("f")).unwrap(), b"abX12fgZij\0\0!");
}

#[test]
fn metadata_and_listing_see_unsynced_changes() {
    let d = dirs();
    let fs = mount!("metadata_and_listing_see_unsynced_changes", d);
    let before = SystemTime::now() - Duration::from_secs(1);
    let mut f = append(&d.mnt.join("kafka_log.txt"));
    f.write_all(b"offset:0 message:a\n").unwrap();
    let meta = fs::metadata(d.mnt.join("kafka_log.txt")).unwrap();
    assert_eq!(meta.len(), 19);
    assert!(meta.is_file());
    assert!(meta.modified().unwrap() >= before);
    fs::create_dir(d.mnt.join("topics")).unwrap();
    assert_eq!(names(&d.mnt), ["kafka_log.txt", "topics"]);
    assert!(fs::metadata(d.mnt.join("topics")).unwrap().is_dir());
    assert_eq!(
        fs::metadata(d.mnt.join("nope")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    // The blob store in the backing directory is not visible.
    assert!(!names(&d.mnt).iter().any(|n| n.starts_with(".lazyfs")));
    drop(f);
    fs.unmount().unwrap();
}

#[test]
fn flock_works_on_the_mount_and_conflicts_between_opens() {
    let d = dirs();
    let fs = mount!("flock_works_on_the_mount_and_conflicts_between_opens", d);
    let path = d.mnt.join(".lock");
    let a = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    let b = OpenOptions::new().write(true).open(&path).unwrap();
    let flock = |f: &File| {
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error())
        }
    };
    assert_eq!(flock(&a), Ok(()));
    assert_eq!(flock(&b), Err(Some(libc::EWOULDBLOCK)));
    drop(a);
    assert_eq!(flock(&b), Ok(()), "the lock goes with the descriptor");
    drop(b);
    fs.unmount().unwrap();
}

#[test]
fn after_a_power_cut_requests_fail_and_the_mount_is_gone() {
    let d = dirs();
    let fs = mount!("after_a_power_cut_requests_fail_and_the_mount_is_gone", d);
    let mut f = append(&d.mnt.join("x"));
    f.write_all(b"x").unwrap();
    drop(f);
    fs.power_cut().unwrap();
    // The mountpoint is a plain empty directory again.
    assert!(names(&d.mnt).is_empty());
    assert!(names(&d.backing).is_empty());
}

#[test]
fn a_mount_over_a_missing_backing_directory_fails_cleanly() {
    let d = dirs();
    if lazyfs::fuse_unavailable().is_some() {
        return;
    }
    let err = LazyFs::mount(&d.backing.join("missing"), &d.mnt).err();
    assert!(
        matches!(err, Some(lazyfs::MountError::Backing(_))),
        "{err:?}"
    );
}

/// `fail_next_syncs`: a sync fails with EIO as a failed writeback does on
/// Linux. The writes it covered are still read back, the next sync
/// succeeds, and yet after a power cut those writes are gone (the file
/// keeps its synced size, their bytes read as zeros): a retried sync
/// cannot vouch for them.
#[test]
fn a_failed_sync_loses_its_writes_and_a_retry_succeeds_without_them() {
    let d = dirs();
    let fs = mount!(
        "a_failed_sync_loses_its_writes_and_a_retry_succeeds_without_them",
        d
    );
    let path = d.mnt.join("log");
    let mut f = append(&path);
    f.write_all(b"one\n").unwrap();
    f.sync_data().unwrap();
    sync_dir(&d.mnt);
    f.write_all(b"two\n").unwrap();
    fs.fail_next_syncs(1);
    let err = f.sync_data().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"one\ntwo\n", "still cached");
    f.sync_data().expect("the retry succeeds");
    f.write_all(b"three\n").unwrap();
    f.sync_data().unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"one\ntwo\nthree\n");
    drop(f);
    fs.power_cut().unwrap();
    assert_eq!(
        fs::read(d.backing.join("log")).unwrap(),
        b"one\n\0\0\0\0three\n",
        "what the failed sync covered never reached the disk"
    );
}
