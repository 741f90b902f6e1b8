use super::*;
use crate::storage::batch::BatchBuilder;

fn options(segment_bytes: u64, durable_acks: bool) -> LogOptions {
    LogOptions {
        segment_bytes,
        skip_corrupt: false,
        durable_acks,
        repair_unsealed: true,
        format: Format::Text,
        ..LogOptions::default()
    }
}

fn open(dir: &Path) -> Log {
    open_with(dir, LogOptions::default())
}

fn open_small(dir: &Path, segment_bytes: u64) -> Log {
    open_with(dir, options(segment_bytes, false))
}

/// Opens a log and runs its start-up jobs, as the server does.
fn open_with(dir: &Path, options: LogOptions) -> Log {
    let mut log = Log::open(dir, "log", options, None).unwrap();
    run_jobs(&mut log);
    log
}

/// Runs the helper-thread jobs inline, reporting syncs back.
fn run_jobs(log: &mut Log) {
    loop {
        let jobs = log.take_jobs();
        if jobs.is_empty() {
            return;
        }
        for job in jobs {
            if let Some(crate::storage::JobResult::Synced {
                sync_id, result, ..
            }) = job.run()
            {
                log.sync_completed(sync_id, result);
            }
        }
    }
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
                |o, m| {
                    out.push((o, m.to_vec()));
                    true
                },
            )
            .unwrap();
        if next == at {
            break;
        }
        at = next;
    }
    out
}

fn append(log: &mut Log, message: &[u8]) -> u64 {
    log.append(message).unwrap().offset
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn append_read_and_exact_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    assert_eq!(
        log.append(b"hello").unwrap(),
        Appended { seq: 0, offset: 0 }
    );
    assert_eq!(
        log.append(b"world").unwrap(),
        Appended { seq: 1, offset: 1 }
    );
    assert_eq!(read_all(&mut log, 0, 10), vec![], "staged is not readable");
    assert!(log.flush().is_none());
    assert_eq!(log.written().seq, 2);
    assert_eq!(log.written().offset, 2);
    assert_eq!(
        fs::read(dir.path().join("log")).unwrap(),
        b"offset:0 message:hello\noffset:1 message:world\n"
    );
    assert_eq!(read_all(&mut log, 1, 10), vec![(1, b"world".to_vec())]);
    assert_eq!(read_all(&mut log, 2, 10), vec![]);
    let mut buf = Vec::new();
    let mut n = 0;
    assert_eq!(
        log.read(0, 1, 10, usize::MAX, &mut buf, |_, _| {
            n += 1;
            true
        })
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
                log.append(m).unwrap();
            }
            assert!(log.flush().is_none());
        }
    }
    let mut log = open(dir.path());
    assert_eq!(log.next_offset(), 20_000);
    let entries = log.active.index.entries.len();
    assert!(entries > 10 && entries < 20_000 / 10, "sparse: {entries}");
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
    assert_eq!(append(&mut log, b"next"), 20_000);
    assert!(log.flush().is_none());
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
        log.append(b"0123456789").unwrap();
    }
    assert!(log.flush().is_none());
    let mut buf = Vec::new();
    let mut n = 0;
    assert_eq!(
        log.read(2, u64::MAX, 3, usize::MAX, &mut buf, |_, _| {
            n += 1;
            true
        })
        .unwrap(),
        5
    );
    assert_eq!(n, 3);
    n = 0;
    assert_eq!(
        log.read(0, u64::MAX, 100, 25, &mut buf, |_, _| {
            n += 1;
            true
        })
        .unwrap(),
        2
    );
    assert_eq!(n, 2);
    n = 0;
    assert_eq!(
        log.read(0, u64::MAX, 100, 1, &mut buf, |_, _| {
            n += 1;
            true
        })
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
    log.append(b"small").unwrap();
    log.append(&big).unwrap();
    log.append(b"after").unwrap();
    assert!(log.flush().is_none());
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
    assert_eq!(append(&mut log, b"c"), 2);
    assert!(log.flush().is_none());
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
        // A torn tail does not save a damaged file from being refused.
        (b"offset:0 message:a\ngarbage\noffset:2 mess", 2),
    ] {
        fs::write(&path, content).unwrap();
        let err = Log::open(dir.path(), "log", LogOptions::default(), None).unwrap_err();
        match &err {
            StorageError::Corrupt {
                at: Location::Line(l),
                ..
            } => assert_eq!(*l, line, "{err}"),
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
fn offsets_near_the_limit_are_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    // The highest offset: the log is full.
    fs::write(&path, format!("offset:{} message:x\n", MAX_OFFSET - 1)).unwrap();
    let mut log = open(dir.path());
    assert_eq!(log.next_offset(), MAX_OFFSET);
    let err = log.append(b"y").unwrap_err();
    assert!(matches!(err, StorageError::OffsetLimit { .. }), "{err}");
    assert_eq!(log.next_offset(), MAX_OFFSET, "nothing consumed");
    drop(log);
    // Past the limit, or past u64, at start: refused with the line.
    for content in [
        format!("offset:{MAX_OFFSET} message:x\n"),
        format!("offset:{} message:x\n", u64::MAX),
        "offset:18446744073709551616 message:x\n".to_string(),
    ] {
        fs::write(&path, &content).unwrap();
        let err = Log::open(dir.path(), "log", LogOptions::default(), None).unwrap_err();
        assert!(err.to_string().contains(":1:"), "{content}: {err}");
    }
}

#[test]
fn failed_append_gives_offsets_back_not_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = open(dir.path());
    log.append(b"kept").unwrap();
    assert!(log.flush().is_none());
    // Swap the file for /dev/full: every write fails with ENOSPC.
    let files = log.options.files.clone();
    let good = files.take(log.id, Slot::Append).unwrap();
    let full = files
        .open(Path::new("/dev/full"), OpenOptions::new().append(true))
        .unwrap();
    files.put(log.id, Slot::Append, vec![Arc::new(full)]);
    assert_eq!(log.append(b"lost").unwrap(), Appended { seq: 1, offset: 1 });
    assert_eq!(
        log.append(b"lost2").unwrap(),
        Appended { seq: 2, offset: 2 }
    );
    let failed = log.flush().unwrap();
    assert!(
        failed.error.to_string().contains("No space left"),
        "{}",
        failed.error
    );
    assert!(failed.error.is_no_space());
    assert_eq!(failed.seqs, 1..3);
    assert_eq!(log.next_offset(), 1, "offsets given back");
    files.put(log.id, Slot::Append, good);
    log.dirty_tail = false;
    assert_eq!(
        log.append(b"again").unwrap(),
        Appended { seq: 3, offset: 1 },
        "a new ticket for the reused offset"
    );
    assert!(log.flush().is_none());
    assert_eq!(log.written().seq, 4);
    assert_eq!(
        fs::read(&path).unwrap(),
        b"offset:0 message:kept\noffset:1 message:again\n"
    );
}

#[test]
fn segments_roll_with_indexes_and_read_across_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path(), 100);
    // 20-byte lines: five fit in 100 bytes.
    for i in 0..12 {
        log.append(format!("m{i}").as_bytes()).unwrap();
    }
    assert!(log.flush().is_none());
    run_jobs(&mut log);
    assert_eq!(
        names(dir.path()),
        [
            "log",
            "log.00000000000000000000",
            "log.00000000000000000000.index",
            "log.00000000000000000005",
            "log.00000000000000000005.index",
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
        log.append(format!("m{i}").as_bytes()).unwrap();
        assert!(log.flush().is_none());
    }
    run_jobs(&mut log);
    drop(log);
    let mut log = open_small(dir.path(), 100);
    assert!(
        !log.take_jobs()
            .iter()
            .any(|j| matches!(j, FileJob::Replace { .. })),
        "every index was there"
    );
    assert_eq!((log.first_offset(), log.next_offset()), (0, 30));
    assert!(log.segments() >= 7);
    let all = read_all(&mut log, 0, 100);
    assert_eq!(all.len(), 30);
    assert_eq!(read_all(&mut log, 13, 1), vec![(13, b"m13".to_vec())]);
}

#[test]
fn missing_indexes_are_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path(), 2000);
    for i in 0..500 {
        log.append(format!("message {i}").as_bytes()).unwrap();
    }
    assert!(log.flush().is_none());
    run_jobs(&mut log);
    drop(log);
    let index = dir.path().join("log.00000000000000000000.index");
    let original = fs::read(&index).unwrap();
    fs::remove_file(&index).unwrap();
    let mut log = open_small(dir.path(), 2000);
    run_jobs(&mut log);
    let (h1, original) = index::decode(&original, 0).unwrap();
    let (h2, rebuilt) = index::decode(&fs::read(&index).unwrap(), 0).unwrap();
    assert_eq!((h1.base, h1.end, h1.len), (h2.base, h2.end, h2.len));
    let strip = |i: &Index| -> Vec<(u32, u32, u32)> {
        i.entries.iter().map(|e| (e.rel, e.pos, e.crc)).collect()
    };
    assert_eq!(strip(&rebuilt), strip(&original), "rebuilt identically");
    // The append times are gone with the index: the segment's modification
    // time bounds them (to the kernel's coarse clock, which stamps files
    // up to a tick behind the time the broker read before writing).
    let mtime = system_ms(
        fs::metadata(dir.path().join("log.00000000000000000000"))
            .unwrap()
            .modified()
            .unwrap(),
    );
    for (r, o) in rebuilt.entries.iter().zip(&original.entries) {
        assert_eq!(r.time.ms(), mtime);
        assert!(r.time.ms() + 20 >= o.time.ms(), "{r:?} {o:?}");
    }
    assert_eq!(read_all(&mut log, 0, 1000).len(), 500);
}

#[test]
fn a_flipped_byte_in_a_rolled_segment_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path(), 10_000);
    for i in 0..2000 {
        log.append(format!("message number {i}").as_bytes())
            .unwrap();
    }
    assert!(log.flush().is_none());
    run_jobs(&mut log);
    drop(log);
    let seg = dir.path().join("log.00000000000000000000");
    let mut bytes = fs::read(&seg).unwrap();
    // Inside a message: "message number 123" -> "messagf number 123".
    let at = 5000 + bytes[5000..].iter().position(|&b| b == b'e').unwrap();
    bytes[at] ^= 0x03;
    fs::write(&seg, &bytes).unwrap();
    let mut log = open_small(dir.path(), 10_000);
    let mut buf = Vec::new();
    // Before the damaged interval: served.
    assert_eq!(read_all(&mut log, 0, 10).len(), 10);
    // The damaged interval: an error naming the file and an offset.
    let err = log
        .read(0, u64::MAX, 10_000, usize::MAX, &mut buf, |_, _| true)
        .map(|_| ())
        .and_then(|()| {
            let mut at = 0;
            loop {
                let next = log.read(at, u64::MAX, 10_000, usize::MAX, &mut buf, |_, _| true)?;
                if next == at {
                    return Ok(());
                }
                at = next;
            }
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("log.00000000000000000000:offset "), "{text}");
    assert!(!text.contains("messagf"), "never the bytes: {text}");
}

#[test]
fn a_flipped_newline_in_a_rolled_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path(), 200);
    for i in 0..20 {
        log.append(format!("m{i}").as_bytes()).unwrap();
    }
    assert!(log.flush().is_none());
    run_jobs(&mut log);
    drop(log);
    let seg = dir.path().join("log.00000000000000000000");
    let mut bytes = fs::read(&seg).unwrap();
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
    bytes[nl] = b' ';
    fs::write(&seg, &bytes).unwrap();
    let mut log = open_small(dir.path(), 200);
    let mut buf = Vec::new();
    assert!(
        log.read(0, u64::MAX, 100, usize::MAX, &mut buf, |_, _| true)
            .is_err()
    );
}

#[test]
fn a_truncated_rolled_segment_is_refused_at_open_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open_small(dir.path(), 50);
        for i in 0..6 {
            log.append(format!("m{i}").as_bytes()).unwrap();
        }
        assert!(log.flush().is_none());
        run_jobs(&mut log);
    }
    let seg = dir.path().join("log.00000000000000000002");
    let content = fs::read(&seg).unwrap();
    fs::write(&seg, &content[..content.len() - 3]).unwrap();
    let before = names(dir.path());
    let err = Log::open(dir.path(), "log", options(50, false), None).unwrap_err();
    assert!(
        err.to_string().contains("log.00000000000000000002"),
        "{err}"
    );
    assert_eq!(names(dir.path()), before, "nothing changed");
    // Without its index, in a directory from before layouts, it is
    // rebuilt by a scan, which finds the torn end and refuses.
    fs::remove_file(index_path(&seg)).unwrap();
    let strict = LogOptions {
        repair_unsealed: false,
        ..options(50, false)
    };
    let err = Log::open(dir.path(), "log", strict, None).unwrap_err();
    assert!(
        err.to_string().contains("log.00000000000000000002"),
        "{err}"
    );
}

#[test]
fn unsealed_newest_segments_are_cut_at_damage_and_what_follows_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open_small(dir.path(), 50);
        for i in 0..9 {
            log.append(format!("m{i}").as_bytes()).unwrap();
        }
        assert!(log.flush().is_none());
        run_jobs(&mut log);
    }
    // log.0 (0-1), log.2 (2-3), log.4 (4-5), log.6 (6-7), active (8).
    // As after a power cut right after two rolls: log.4 and log.6 have no
    // index (never sealed), and log.4 lost its last line.
    for base in ["00000000000000000004", "00000000000000000006"] {
        fs::remove_file(dir.path().join(format!("log.{base}.index"))).unwrap();
    }
    let seg4 = dir.path().join("log.00000000000000000004");
    let content = fs::read(&seg4).unwrap();
    fs::write(&seg4, &content[..content.len() - 4]).unwrap();
    // A checkpoint past the cut still refuses, changing nothing.
    let before = names(dir.path());
    assert!(Log::open(dir.path(), "log", options(50, false), Some(6)).is_err());
    assert_eq!(names(dir.path()), before);
    let mut log = open_small(dir.path(), 50);
    assert_eq!(log.next_offset(), 5, "cut after offset 4");
    assert_eq!(read_all(&mut log, 0, 100).len(), 5);
    let after = names(dir.path());
    assert!(
        after
            .iter()
            .any(|n| n.starts_with("log.00000000000000000006.aside-")),
        "{after:?}"
    );
    assert!(
        after.iter().any(|n| n.starts_with("log.aside-")),
        "{after:?}"
    );
    assert!(
        after.contains(&"log.00000000000000000004.index".to_string()),
        "sealed now"
    );
    assert_eq!(append(&mut log, b"next"), 5);
    assert!(log.flush().is_none());
    drop(log);
    let mut log = open_small(dir.path(), 50);
    assert_eq!(
        read_all(&mut log, 0, 100).last().unwrap(),
        &(5, b"next".to_vec())
    );
}

#[test]
fn a_gap_is_refused_or_skipped_with_everything_older() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open_small(dir.path(), 50);
        for i in 0..8 {
            log.append(format!("m{i}").as_bytes()).unwrap();
        }
        assert!(log.flush().is_none());
        run_jobs(&mut log);
    }
    let seg = dir.path().join("log.00000000000000000002");
    fs::remove_file(&seg).unwrap();
    fs::remove_file(index_path(&seg)).unwrap();
    let err = Log::open(dir.path(), "log", options(50, false), None).unwrap_err();
    assert!(err.to_string().contains("starts at offset 4"), "{err}");
    let mut log = open_with(
        dir.path(),
        LogOptions {
            skip_corrupt: true,
            ..options(50, false)
        },
    );
    assert_eq!(log.first_offset(), 4);
    assert_eq!(read_all(&mut log, 4, 10).len(), 4);
}

#[test]
fn empty_active_after_roll_continues_from_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open_small(dir.path(), 50);
        for i in 0..5 {
            log.append(format!("m{i}").as_bytes()).unwrap();
        }
        assert!(log.flush().is_none());
        run_jobs(&mut log);
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
    assert_eq!(append(&mut log, b"x"), 4);
    assert!(log.flush().is_none());
    assert_eq!(read_all(&mut log, 0, 10).len(), 5);
}

#[test]
fn a_log_ending_before_its_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path());
        for i in 0..5 {
            log.append(format!("m{i}").as_bytes()).unwrap();
        }
        assert!(log.flush().is_none());
    }
    // A flipped last newline looks like a torn write...
    let path = dir.path().join("log");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = b'!';
    fs::write(&path, &bytes).unwrap();
    // ...but the checkpoint says offset 4 was synced.
    let err = Log::open(dir.path(), "log", LogOptions::default(), Some(5)).unwrap_err();
    assert!(err.to_string().contains("recovery checkpoint"), "{err}");
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a refused start cuts nothing"
    );
    // A deleted active segment likewise.
    fs::remove_file(&path).unwrap();
    assert!(Log::open(dir.path(), "log", LogOptions::default(), Some(5)).is_err());
    assert!(!path.exists());
    // Accepted only when told to.
    let log = Log::open(
        dir.path(),
        "log",
        LogOptions {
            skip_corrupt: true,
            ..LogOptions::default()
        },
        Some(5),
    )
    .unwrap();
    assert_eq!(log.next_offset(), 0);
}

#[test]
fn retention_drops_oldest_whole_segments_in_order_and_a_crash_midway_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path(), 100);
    for i in 0..40 {
        log.append(format!("m{i}").as_bytes()).unwrap();
        assert!(log.flush().is_none());
    }
    run_jobs(&mut log);
    let before = log.segments();
    let dropped = log.apply_retention(Some(150), None, SystemTime::now());
    assert!(dropped >= 3, "{dropped}");
    assert!(log.len_bytes() <= 150 || log.segments() == 1);
    assert_eq!(log.segments(), before - dropped);
    let first = log.first_offset();
    let jobs = log.take_jobs();
    let deletions: Vec<PathBuf> = jobs
        .iter()
        .map(|j| match j {
            FileJob::Delete(p) => p.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut sorted = deletions.clone();
    sorted.sort();
    assert_eq!(deletions, sorted, "oldest first, segment before its index");
    // Crash after deleting some: every prefix of the deletions recovers.
    drop(log);
    for (k, path) in deletions.iter().enumerate() {
        // An orphan index may already be gone: the previous open deleted it.
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
        let mut log = open_small(dir.path(), 100);
        run_jobs(&mut log);
        assert_eq!(log.next_offset(), 40, "after {} deletions", k + 1);
        let first = log.first_offset();
        let all = read_all(&mut log, first, 100);
        assert_eq!(all.last().unwrap().0, 39);
    }
    let mut log = open_small(dir.path(), 100);
    assert_eq!(log.first_offset(), first);
    let mut buf = Vec::new();
    assert_eq!(
        log.read(0, u64::MAX, 1, usize::MAX, &mut buf, |_, _| true)
            .unwrap(),
        0,
        "below first: nothing"
    );
    // By age: everything rolled is older than zero seconds from later.
    let later = SystemTime::now() + Duration::from_secs(3600);
    log.apply_retention(None, Some(Duration::from_secs(60)), later);
    assert_eq!(log.segments(), 1, "never the active segment");
}

#[test]
fn durable_acks_roll_only_after_the_segment_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_with(dir.path(), options(100, true));
    for i in 0..7 {
        log.append(format!("m{i}").as_bytes()).unwrap();
    }
    assert!(log.flush().is_none());
    assert_eq!(log.written().offset, 5, "stops at the boundary");
    assert_eq!(log.segments(), 1);
    assert_eq!(log.durable().seq, 0);
    let jobs = log.begin_sync();
    assert_eq!(jobs.len(), 1);
    for job in jobs {
        if let Some(crate::storage::JobResult::Synced {
            sync_id, result, ..
        }) = job.run()
        {
            assert!(matches!(
                log.sync_completed(sync_id, result),
                SyncResult::Advanced
            ));
        }
    }
    assert_eq!(log.durable().seq, 5);
    assert!(log.flush().is_none());
    assert_eq!(log.segments(), 2, "rolled once synced");
    assert_eq!(log.written().offset, 7);
    // The new segment counts only once its directory entry is synced too.
    let mut synced = false;
    while log.durable().seq < 7 {
        for job in log.take_jobs().into_iter().chain(log.begin_sync()) {
            if let Some(crate::storage::JobResult::Synced {
                sync_id, result, ..
            }) = job.run()
            {
                log.sync_completed(sync_id, result);
                synced = true;
            }
        }
        assert!(synced);
    }
}

#[test]
fn failed_sync_with_durable_acks_cuts_and_late_syncs_are_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_with(dir.path(), options(1 << 20, true));
    log.append(b"a").unwrap();
    assert!(log.flush().is_none());
    assert!(matches!(log.sync_now(), SyncResult::Advanced));
    log.append(b"b").unwrap();
    log.append(b"c").unwrap();
    assert!(log.flush().is_none());
    let first = log.begin_sync();
    log.append(b"d").unwrap();
    assert!(log.flush().is_none());
    let second = log.begin_sync();
    assert_eq!((first.len(), second.len()), (1, 1));
    let id = |jobs: &[FileJob]| match &jobs[0] {
        FileJob::Sync { sync_id, .. } => *sync_id,
        other => panic!("{other:?}"),
    };
    // The second fails: everything after "a" is cut and fails.
    let r = log.sync_completed(id(&second), Err(io::Error::other("injected")));
    let SyncResult::Cut(failed) = r else {
        panic!("{r:?}")
    };
    assert_eq!(failed.seqs, 1..4);
    assert_eq!(log.next_offset(), 1);
    assert_eq!(
        fs::read(dir.path().join("log")).unwrap(),
        b"offset:0 message:a\n"
    );
    // New appends reuse the offsets with new tickets...
    assert_eq!(log.append(b"e").unwrap(), Appended { seq: 4, offset: 1 });
    assert!(log.flush().is_none());
    // ...and the first sync, begun before the cut, cannot vouch for them.
    assert!(matches!(
        log.sync_completed(id(&first), Ok(())),
        SyncResult::Unchanged
    ));
    assert_eq!(log.durable().seq, 4, "still waiting for a sync of e");
    assert!(matches!(log.sync_now(), SyncResult::Advanced));
    assert_eq!(log.durable().seq, 5);
    // A later cut keeps what was synced.
    log.append(b"f").unwrap();
    assert!(log.flush().is_none());
    let jobs = log.begin_sync();
    let r = log.sync_completed(id(&jobs), Err(io::Error::other("injected")));
    assert!(matches!(r, SyncResult::Cut(_)));
    assert_eq!(
        fs::read(dir.path().join("log")).unwrap(),
        b"offset:0 message:a\noffset:1 message:e\n"
    );
    drop(log);
    let mut log = open_with(dir.path(), options(1 << 20, true));
    assert_eq!(read_all(&mut log, 0, 10).len(), 2);
}

/// Without durable acks, a failed sync cuts nothing (those records were
/// answered, and may have been read) and is not run again (Linux reports
/// a failed writeback once: a retry could succeed over lost data): the
/// log takes no more writes and its synced mark stays, until a restart.
#[test]
fn failed_sync_without_durable_acks_makes_the_log_read_only_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_with(dir.path(), options(1 << 20, false));
    log.append(b"a").unwrap();
    assert!(log.flush().is_none());
    assert!(matches!(log.sync_now(), SyncResult::Advanced));
    log.append(b"b").unwrap();
    assert!(log.flush().is_none());
    let jobs = log.begin_sync();
    let FileJob::Sync { sync_id, .. } = &jobs[0] else {
        panic!("{jobs:?}")
    };
    let r = log.sync_completed(*sync_id, Err(io::Error::other("injected")));
    let SyncResult::ReadOnly(e) = r else {
        panic!("{r:?}")
    };
    assert!(e.to_string().contains("injected"), "{e}");
    assert!(log.is_read_only());
    assert_eq!(log.synced().seq, 1, "nothing vouches for b");
    // b stays, readable; nothing new is taken or synced.
    assert_eq!(
        read_all(&mut log, 0, 10),
        vec![(0, b"a".to_vec()), (1, b"b".to_vec())]
    );
    let refused = log.append(b"c").unwrap_err();
    assert!(
        matches!(refused, StorageError::ReadOnly { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("restart"), "{refused}");
    assert_eq!(log.next_offset(), 2);
    assert!(!log.sync_wanted());
    assert!(log.begin_sync().is_empty());
    assert!(matches!(log.sync_now(), SyncResult::Unchanged));
    assert_eq!(log.synced().seq, 1);
    // A restart recovers what is in the file and takes writes again.
    drop(log);
    let mut log = open_with(dir.path(), options(1 << 20, false));
    assert_eq!(log.next_offset(), 2);
    assert_eq!(append(&mut log, b"c"), 2);
    assert!(log.flush().is_none());
    assert!(matches!(log.sync_now(), SyncResult::Advanced));
}

/// Found in review: the extra sync descriptors (`--fsync always`) were
/// opened whenever the budget had room, also while a sync of the segment
/// was running. Had that sync already taken an error report, the new
/// descriptions would not see it, and a success on one of them, settling
/// the older sync, would vouch for lost writes. They are opened only
/// while no sync of the segment runs.
#[test]
fn extra_sync_descriptors_are_not_opened_while_a_sync_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_with(dir.path(), options(1 << 20, true));
    let open = |log: &Log| log.options.files.open_count();
    log.append(b"a").unwrap();
    assert!(log.flush().is_none());
    let first = log.begin_sync();
    assert_eq!(first.len(), 1);
    // As when the budget had no room for the extra descriptors as the
    // first sync began.
    drop(log.options.files.take(log.id, Slot::Sync));
    let before = open(&log);
    log.append(b"b").unwrap();
    assert!(log.flush().is_none());
    assert!(
        log.begin_sync().is_empty(),
        "slot 0 is busy and no other descriptor may be opened now"
    );
    assert_eq!(open(&log), before);
    let FileJob::Sync { sync_id, file } = first.into_iter().next().unwrap() else {
        panic!("a data sync")
    };
    assert!(matches!(
        log.sync_completed(sync_id, file.sync_data()),
        SyncResult::Advanced
    ));
    drop(file);
    // None running: the extra descriptors are opened, and the next sync
    // takes a free slot while slot 0's runs.
    let second = log.begin_sync();
    assert_eq!(second.len(), 1);
    assert_eq!(open(&log), before + SYNC_SLOTS - 1);
    log.append(b"c").unwrap();
    assert!(log.flush().is_none());
    assert_eq!(log.begin_sync().len(), 1, "a second slot");
}

#[test]
fn a_cut_keeps_the_index_checksums_right() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_with(dir.path(), options(30_000, true));
    for i in 0..300 {
        log.append(format!("message {i:04}").as_bytes()).unwrap();
    }
    assert!(log.flush().is_none());
    assert!(matches!(log.sync_now(), SyncResult::Advanced));
    for i in 300..320 {
        log.append(format!("message {i:04}").as_bytes()).unwrap();
    }
    assert!(log.flush().is_none());
    let jobs = log.begin_sync();
    let FileJob::Sync { sync_id, .. } = &jobs[0] else {
        panic!()
    };
    let sync_id = *sync_id;
    assert!(matches!(
        log.sync_completed(sync_id, Err(io::Error::other("injected"))),
        SyncResult::Cut(_)
    ));
    // Fill past the segment size so it rolls with an index built across
    // the cut; then every interval must still check out.
    let mut i = 300;
    while log.segments() == 1 {
        log.append(format!("message {i:04}").as_bytes()).unwrap();
        i += 1;
        assert!(log.flush().is_none());
        log.sync_now();
        run_jobs(&mut log);
    }
    run_jobs(&mut log);
    drop(log);
    let mut log = open_with(dir.path(), options(30_000, true));
    let all = read_all(&mut log, 0, 10_000);
    assert_eq!(all.len() as u64, log.next_offset());
    assert_eq!(all[300].1, b"message 0300");
}

fn built_batch(values: &[&[u8]], key: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = BatchBuilder::new(&mut out, 0, 0);
    for (i, v) in values.iter().enumerate() {
        b.push(1_700_000_000_000 + i as i64, key, Some(v), &[]);
    }
    b.finish();
    out
}

fn batch_options(segment_bytes: u64) -> LogOptions {
    LogOptions {
        format: Format::Batch,
        ..options(segment_bytes, false)
    }
}

#[test]
fn batch_logs_store_batches_as_received_with_offsets_assigned() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_with(dir.path(), batch_options(1 << 20));
    let first = built_batch(&[b"a", b"b", b"c"], Some(b"k"));
    let h = batch::validate(&first).unwrap();
    assert_eq!(
        log.append_batch(&first, &h, 1 << 20).unwrap(),
        Appended { seq: 0, offset: 0 }
    );
    // A text PRODUCE into a batch log: a batch of one record.
    assert_eq!(log.append(b"text").unwrap(), Appended { seq: 1, offset: 3 });
    let second = built_batch(&[b"d", b"e"], None);
    let h2 = batch::validate(&second).unwrap();
    assert_eq!(
        log.append_batch(&second, &h2, 1 << 20).unwrap(),
        Appended { seq: 2, offset: 4 }
    );
    assert!(log.flush().is_none());
    assert_eq!(log.written().offset, 6);
    let values: Vec<(u64, Vec<u8>)> = read_all(&mut log, 0, 100);
    assert_eq!(
        values,
        [
            (0, b"a".to_vec()),
            (1, b"b".to_vec()),
            (2, b"c".to_vec()),
            (3, b"text".to_vec()),
            (4, b"d".to_vec()),
            (5, b"e".to_vec())
        ]
    );
    // From the middle of a batch, and bounded by count.
    assert_eq!(
        read_all(&mut log, 1, 2),
        [(1, b"b".to_vec()), (2, b"c".to_vec())]
    );
    // Raw: the stored bytes, base offsets patched, CRC still valid.
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let next = log
        .read_raw(4, u64::MAX, 1 << 20, &mut buf, &mut out)
        .unwrap();
    assert_eq!(next, 6);
    let mut expected = second.clone();
    batch::set_base_offset(&mut expected, 4);
    assert_eq!(out, expected);
    assert_eq!(batch::validate(&out).unwrap().base_offset, 4);
    // The batch holding offset 1 comes whole; max_bytes still lets one in.
    out.clear();
    assert_eq!(log.read_raw(1, u64::MAX, 1, &mut buf, &mut out).unwrap(), 3);
    assert_eq!(batch::validate(&out).unwrap().record_count, 3);
    drop(log);
    let mut log = open_with(dir.path(), batch_options(1 << 20));
    assert_eq!(log.next_offset(), 6);
    assert_eq!(read_all(&mut log, 0, 100).len(), 6);
}

#[test]
fn batch_logs_roll_index_and_recover_like_text_logs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open_with(dir.path(), batch_options(4000));
        for i in 0..200u32 {
            let v = format!("value {i:04}");
            let b = built_batch(&[v.as_bytes(), b"x"], None);
            let h = batch::validate(&b).unwrap();
            log.append_batch(&b, &h, 1 << 20).unwrap();
            assert!(log.flush().is_none());
        }
        run_jobs(&mut log);
        assert!(log.segments() > 3);
    }
    let mut log = open_with(dir.path(), batch_options(4000));
    assert_eq!(log.next_offset(), 400);
    let all = read_all(&mut log, 0, 1000);
    assert_eq!(all.len(), 400);
    assert_eq!(all[200], (200, b"value 0100".to_vec()));
    let mut buf = Vec::new();
    let mut out = Vec::new();
    // Raw reads across a rolled segment stay within it and check CRCs.
    let next = log
        .read_raw(3, u64::MAX, 1 << 20, &mut buf, &mut out)
        .unwrap();
    assert!(next > 3 && next.is_multiple_of(2));
    let mut at = 0;
    let mut offsets = Vec::new();
    while at < out.len() {
        let h =
            batch::validate(&out[at..at + batch::parse_header(&out[at..]).unwrap().total_len()])
                .unwrap();
        offsets.push(h.base_offset);
        at += h.total_len();
    }
    assert_eq!(offsets[0], 2, "the batch holding offset 3");
    // A torn last batch is cut at start like a torn line.
    drop(log);
    let path = dir.path().join("log");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    let log = open_with(dir.path(), batch_options(4000));
    assert_eq!(log.next_offset(), 398);
}

#[test]
fn text_logs_take_kafka_batches_as_lines_and_serve_them_as_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    // A key cannot be kept in a line: refused, not silently dropped.
    let keyed = built_batch(&[b"one", b"two"], Some(b"a key"));
    let hk = batch::validate(&keyed).unwrap();
    match log.append_batch(&keyed, &hk, 1 << 20) {
        Err(AppendBatchError::Invalid(why)) => assert!(why.contains("key"), "{why}"),
        other => panic!("{other:?}"),
    }
    let b = built_batch(&[b"one", b"two"], None);
    let h = batch::validate(&b).unwrap();
    assert_eq!(
        log.append_batch(&b, &h, 1 << 20).unwrap(),
        Appended { seq: 0, offset: 0 }
    );
    let bad = built_batch(&[b"line\nbreak"], None);
    let hb = batch::validate(&bad).unwrap();
    assert!(matches!(
        log.append_batch(&bad, &hb, 1 << 20),
        Err(AppendBatchError::Invalid(_))
    ));
    assert_eq!(log.append(b"three").unwrap().offset, 2);
    assert!(log.flush().is_none());
    assert_eq!(
        fs::read_to_string(dir.path().join("log")).unwrap(),
        "offset:0 message:one\noffset:1 message:two\noffset:2 message:three\n"
    );
    let mut buf = Vec::new();
    let mut out = Vec::new();
    assert_eq!(
        log.read_as_batches(1, u64::MAX, 1 << 20, &mut buf, &mut out)
            .unwrap(),
        3
    );
    let h = batch::validate(&out).unwrap();
    assert_eq!((h.base_offset, h.record_count), (1, 2));
    let mut scratch = Vec::new();
    let values: Vec<Vec<u8>> = batch::records(&out, 1 << 20, &mut scratch)
        .unwrap()
        .map(|r| r.unwrap().value.unwrap().to_vec())
        .collect();
    assert_eq!(values, [b"two".to_vec(), b"three".to_vec()]);
}

/// Found by the storage_recovery fuzz target: a segment skipped with
/// --skip-corrupt-segments at a start before layouts (where every segment
/// is checked strictly) stayed on disk without an index; after the
/// migration the next start took it for an unsealed segment and set aside
/// everything after it, acknowledged messages included. Skipped segments
/// are now set aside at once.
#[test]
fn a_skipped_segment_is_set_aside_and_never_read_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open_small(dir.path(), 50);
        for i in 0..6 {
            log.append(format!("m{i}").as_bytes()).unwrap();
            assert!(log.flush().is_none());
        }
        run_jobs(&mut log);
    }
    let before = names(dir.path());
    let newest = before
        .iter()
        .rfind(|n| n.len() == "log.".len() + 20)
        .unwrap()
        .clone();
    let seg = dir.path().join(&newest);
    fs::remove_file(index_path(&seg)).unwrap();
    fs::write(&seg, b"garbage\n").unwrap();
    let strict_skip = LogOptions {
        skip_corrupt: true,
        repair_unsealed: false,
        ..options(1000, false)
    };
    let next = {
        let mut log = open_with(dir.path(), strict_skip);
        let offset = append(&mut log, b"acknowledged");
        assert!(log.flush().is_none());
        run_jobs(&mut log);
        assert_eq!(log.next_offset(), offset + 1);
        log.next_offset()
    };
    // The next start, with the layout's repair of unsealed segments.
    let mut log = open_with(
        dir.path(),
        LogOptions {
            skip_corrupt: true,
            ..options(1000, false)
        },
    );
    assert_eq!(log.next_offset(), next);
    let first = log.first_offset();
    let all = read_all(&mut log, first, 100);
    assert_eq!(all.last().unwrap(), &(next - 1, b"acknowledged".to_vec()));
    assert!(
        !dir.path().join(&newest).exists(),
        "{:?}",
        names(dir.path())
    );
    assert!(
        names(dir.path())
            .iter()
            .any(|n| n.starts_with(&format!("{newest}.aside-"))),
        "{:?}",
        names(dir.path())
    );
}

/// Found with the storage_recovery fuzz harness: a rolled segment whose
/// index CRCs match bytes that are not a line for their offset (segment
/// and index both replaced) made a read slice past the line and panic.
/// It is reported as damaged data.
#[test]
fn a_short_line_behind_a_matching_index_is_damage_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("log.00000000000000000000");
    fs::write(&seg, b"x\n").unwrap();
    let index = Index {
        base: 0,
        entries: vec![Entry {
            rel: 0,
            pos: 0,
            crc: crc32c(b"x\n"),
            time: Time::from_ms(0),
        }],
    };
    fs::write(index_path(&seg), index.encode(1, 2)).unwrap();
    fs::write(dir.path().join("log"), b"offset:1 message:y\n").unwrap();
    let mut log = open(dir.path());
    let mut buf = Vec::new();
    let err = log
        .read(0, u64::MAX, 10, usize::MAX, &mut buf, |_, _| true)
        .unwrap_err();
    assert!(err.to_string().contains("shorter than its header"), "{err}");
    assert_eq!(read_all(&mut log, 1, 10), vec![(1, b"y".to_vec())]);
}

/// The records of synthesized batches: (offset, timestamp, value), after
/// checking each batch is LogAppendTime with one time for all its records.
fn synthesized(out: &[u8]) -> Vec<(u64, i64, Vec<u8>)> {
    let mut got = Vec::new();
    let mut scratch = Vec::new();
    for b in batch::Batches::new(out) {
        let (h, bytes) = b.unwrap();
        assert!(h.is_log_append_time(), "{h:?}");
        assert!(h.max_timestamp >= 0);
        for r in batch::records(bytes, 1 << 20, &mut scratch).unwrap() {
            let r = r.unwrap();
            assert_eq!(r.timestamp(&h), h.max_timestamp);
            got.push((
                r.offset(&h) as u64,
                r.timestamp(&h),
                r.value.unwrap().to_vec(),
            ));
        }
    }
    got
}

fn read_batches_all(log: &mut Log) -> Vec<(u64, i64, Vec<u8>)> {
    let (mut buf, mut got) = (Vec::new(), Vec::new());
    let mut at = log.first_offset();
    loop {
        let mut out = Vec::new();
        let next = log
            .read_as_batches(at, u64::MAX, 1 << 20, &mut buf, &mut out)
            .unwrap();
        if next == at {
            return got;
        }
        got.extend(synthesized(&out));
        at = next;
    }
}

fn set_mtime(path: &Path, ms: i64) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn text_records_carry_their_intervals_log_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path(), 64 << 10);
    let value = [b'v'; 100];
    let before = now_ms();
    for _ in 0..100 {
        log.append(&value).unwrap();
    }
    assert!(log.flush().is_none());
    let after = now_ms();
    // ~12 KiB: three intervals, all written by that flush.
    assert_eq!(log.active.index.entries.len(), 3);
    let third = log.active.base + u64::from(log.active.index.entries[2].rel);
    // A later write (the clock set ahead, so it is surely later) into the
    // open third interval moves its time, not the others'.
    let later = after + 3_600_000;
    log.last_time = later;
    log.append(b"later").unwrap();
    assert!(log.flush().is_none());
    let got = read_batches_all(&mut log);
    assert_eq!(got.len(), 101);
    let t0 = got[0].1;
    assert!(
        (before..=after).contains(&t0),
        "{t0} not in {before}..={after}"
    );
    for (offset, time, _) in &got {
        let want = if *offset < third { t0 } else { later };
        assert_eq!(*time, want, "offset {offset}");
    }
    assert_eq!(got[100].2, b"later");
    // ListOffsets by time, at interval granularity, never late.
    let mut buf = Vec::new();
    assert_eq!(log.offset_for_time(0, &mut buf).unwrap(), Some((0, t0)));
    assert_eq!(log.offset_for_time(t0, &mut buf).unwrap(), Some((0, t0)));
    assert_eq!(
        log.offset_for_time(t0 + 1, &mut buf).unwrap(),
        Some((third, later))
    );
    assert_eq!(log.offset_for_time(later + 1, &mut buf).unwrap(), None);

    // Rolled and sealed: the index file keeps the times across a restart.
    log.append(&[b'x'; 60 << 10]).unwrap();
    assert!(log.flush().is_none());
    assert_eq!(log.segments(), 2);
    run_jobs(&mut log);
    drop(log);
    let ipath = dir.path().join("log.00000000000000000000.index");
    let (header, _) = index::decode(&fs::read(&ipath).unwrap(), 0).unwrap();
    assert_eq!((header.version, header.max_time), (2, Some(later)));
    let mut log = open_small(dir.path(), 64 << 10);
    let again = read_batches_all(&mut log);
    assert_eq!(again[..101], got[..]);
    assert_eq!(
        log.offset_for_time(t0 + 1, &mut buf).unwrap(),
        Some((third, later))
    );
}

#[test]
fn after_a_restart_the_active_segment_takes_its_files_modification_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path(), 64 << 10);
    for i in 0..200 {
        log.append(format!("message {i:040}").as_bytes()).unwrap();
    }
    assert!(log.flush().is_none());
    let written_at = read_batches_all(&mut log)[0].1;
    drop(log);
    // The scan knows no append times: the file's modification time bounds
    // them all (set to a known value here, a minute after the writes).
    let mtime = written_at + 60_000;
    set_mtime(&dir.path().join("log"), mtime);
    let mut log = open_small(dir.path(), 64 << 10);
    assert!(log.active.index.entries.len() > 1);
    let got = read_batches_all(&mut log);
    assert_eq!(got.len(), 200);
    assert!(got.iter().all(|(_, t, _)| *t == mtime), "{:?}", &got[0]);
    let mut buf = Vec::new();
    assert_eq!(
        log.offset_for_time(mtime, &mut buf).unwrap(),
        Some((0, mtime))
    );
    assert_eq!(log.offset_for_time(mtime + 1, &mut buf).unwrap(), None);
    // New writes never get an earlier time than what is stored.
    log.append(b"new").unwrap();
    assert!(log.flush().is_none());
    let got = read_batches_all(&mut log);
    assert!(got[200].1 >= mtime);
}

#[test]
fn version_1_indexes_are_read_with_their_segments_modification_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path(), 4000);
    for i in 0..300 {
        log.append(format!("message {i}").as_bytes()).unwrap();
    }
    assert!(log.flush().is_none());
    run_jobs(&mut log);
    assert!(log.segments() > 2);
    drop(log);
    // Rewrite every index as an older broker wrote it, and date each
    // segment an hour apart.
    let mut segments: Vec<PathBuf> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with("log.") && !n.ends_with(".index"))
        .map(|n| dir.path().join(n))
        .collect();
    segments.sort();
    let base_time = 1_600_000_000_000;
    let mut v1_files = Vec::new();
    for (k, seg) in segments.iter().enumerate() {
        let ipath = index_path(seg);
        let (h, idx) = index::decode(&fs::read(&ipath).unwrap(), 0).unwrap();
        let v1 = index::encode_v1(&idx, h.end, h.len);
        fs::write(&ipath, &v1).unwrap();
        set_mtime(seg, base_time + k as i64 * 3_600_000);
        v1_files.push((ipath, v1));
    }
    let mut log = open_small(dir.path(), 4000);
    let got = read_batches_all(&mut log);
    assert_eq!(got.len(), 300);
    for (offset, time, _) in &got {
        let k = log.rolled.partition_point(|r| r.end <= *offset);
        if k < segments.len() {
            assert_eq!(*time, base_time + k as i64 * 3_600_000, "offset {offset}");
        }
    }
    // ListOffsets skips whole segments by their time.
    let second = log.rolled[1].base;
    let mut buf = Vec::new();
    assert_eq!(
        log.offset_for_time(base_time + 1, &mut buf).unwrap(),
        Some((second, base_time + 3_600_000))
    );
    // Read, not rewritten.
    for (ipath, v1) in v1_files {
        assert_eq!(fs::read(&ipath).unwrap(), v1);
    }
}

#[test]
fn synthesized_batches_stay_within_max_bytes_headers_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    for _ in 0..1000 {
        log.append(b"x").unwrap();
    }
    assert!(log.flush().is_none());
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let next = log
        .read_as_batches(0, u64::MAX, 500, &mut buf, &mut out)
        .unwrap();
    assert!(out.len() <= 500, "{} bytes", out.len());
    assert!(next > 10, "{next}");
    let got = synthesized(&out);
    assert_eq!(got.len() as u64, next);
    assert_eq!(got.last().unwrap().0, next - 1);
    // At least one message, however small the limit.
    let mut out = Vec::new();
    assert_eq!(
        log.read_as_batches(7, u64::MAX, 1, &mut buf, &mut out)
            .unwrap(),
        8
    );
    assert_eq!(synthesized(&out).len(), 1);
}

/// Many logs share a budget smaller than their files: idle, synced files
/// close least recently used first and reopen on use, every log reads back
/// exactly, and a file with unsynced writes is never closed.
#[test]
fn many_logs_share_a_small_budget_of_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(4);
    let options = LogOptions {
        files: files.clone(),
        ..options(200, false)
    };
    let mut logs: Vec<Log> = (0..20)
        .map(|i| open_with(&dir.path().join(format!("p{i}")), options.clone()))
        .collect();
    assert!(files.open_count() <= 4);
    for round in 0..12 {
        for (i, log) in logs.iter_mut().enumerate() {
            log.append(format!("log {i} message {round}").as_bytes())
                .unwrap();
            assert!(log.flush().is_none());
            // Written, not synced: its descriptor must stay open.
            let id = log.id;
            assert!(files.get(id, Slot::Append).is_some());
            assert!(!files.take_short(), "the others' files were closable");
            let jobs = log.begin_sync();
            assert_eq!(jobs.len(), 1);
            for job in jobs {
                if let Some(crate::storage::JobResult::Synced {
                    sync_id, result, ..
                }) = job.run()
                {
                    log.sync_completed(sync_id, result);
                }
            }
            run_jobs(log);
            assert!(
                files.open_count() <= 4,
                "round {round} log {i}: {}",
                files.open_count()
            );
        }
    }
    assert!(logs[0].segments() > 1, "segments rolled");
    for (i, log) in logs.iter_mut().enumerate() {
        let got = read_all(log, 0, 100);
        assert_eq!(got.len(), 12);
        for (round, (o, m)) in got.iter().enumerate() {
            assert_eq!(*o, round as u64);
            assert_eq!(m, format!("log {i} message {round}").as_bytes());
        }
        assert!(files.open_count() <= 4);
    }
    assert!(files.closed_count() > 0);
    // An unsynced log keeps its file however short the budget is.
    let log = &mut logs[0];
    log.append(b"unsynced").unwrap();
    assert!(log.flush().is_none());
    let id = log.id;
    assert_eq!(files.make_room(4), 3, "all but the unsynced one close");
    assert!(files.take_short());
    assert!(files.get(id, Slot::Append).is_some());
    assert!(matches!(log.sync_now(), SyncResult::Advanced));
    assert_eq!(files.make_room(4), 4);
    drop(logs);
    assert_eq!(files.open_count(), 0, "a dropped log closes its files");
}
