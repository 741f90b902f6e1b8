//! Regression tests for the integrity audit (issue 8): each reproduces a
//! defect found on the old code against the real broker binary and checks
//! what must happen instead.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{BrokerProcess, Client, TIMEOUT, temp_data_dir};

/// Starts the broker with a file size limit of `kib` KiB, *without* the
/// `trap '' XFSZ` the old tests needed: the broker ignores SIGXFSZ itself.
fn start_with_fsize_limit(dir: &Path, kib: u64, args: &[&str]) -> BrokerProcess {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            r#"ulimit -S -f {kib} && exec "$0" --addr 127.0.0.1:0 --data-dir "$1" "${{@:2}}""#
        ))
        .arg(common::BROKER)
        .arg(dir)
        .args(args);
    BrokerProcess::spawn(command, dir)
}

fn lift_fsize_limit(broker: &BrokerProcess) {
    let status = Command::new("prlimit")
        .args(["--pid", &broker.pid().to_string(), "--fsize=unlimited"])
        .status()
        .expect("run prlimit");
    assert!(status.success());
}

/// Produces into the current topic until the file size limit answers
/// `STORAGE_ERROR`; returns how many were acknowledged.
fn fill(c: &mut Client) -> u64 {
    let payload = "p".repeat(90);
    let mut acked = 0;
    loop {
        let reply = c.request(&format!("PRODUCE {payload}"));
        if reply == format!("ACK offset:{acked}") {
            acked += 1;
            assert!(acked < 1000, "the limit never hit");
            continue;
        }
        assert!(reply.starts_with("STORAGE_ERROR "), "{reply}");
        return acked;
    }
}

fn assert_alive(broker: &mut BrokerProcess) {
    assert!(
        broker.child.try_wait().expect("try_wait").is_none(),
        "the broker died: {}",
        broker.stderr()
    );
}

/// Defects 1 and 4: with `--fsync always` at a file size limit, the one
/// write `COMMIT g 1\nPRODUCE x\n` used to answer `COMMITTED g 1` then an
/// `ACK` for a message not in the log, and the next `PRODUCE` got the same
/// offset again; without `trap '' XFSZ` the broker was killed (exit 153).
#[test]
fn a_failed_append_is_never_acknowledged_whatever_came_before_it() {
    let (_tmp, dir) = temp_data_dir();
    let mut broker = start_with_fsize_limit(&dir, 4, &["--fsync", "always"]);
    let mut c = broker.client();
    let acked = fill(&mut c);
    assert_alive(&mut broker);
    // A message that cannot fit under the limit either.
    let big = "x".repeat(200);
    c.send(format!("COMMIT g 1\nPRODUCE {big}\n"));
    assert_eq!(c.line(), "COMMITTED g 1");
    let reply = c.line();
    assert!(reply.starts_with("STORAGE_ERROR "), "{reply}");
    assert_eq!(c.request(&format!("CONSUME {acked}")), "NO_MESSAGE");
    let lines = broker.log_bytes().iter().filter(|&&b| b == b'\n').count();
    assert_eq!(
        lines as u64, acked,
        "the file holds exactly what was acknowledged"
    );
    assert_alive(&mut broker);
    lift_fsize_limit(&broker);
    assert_eq!(c.request("PRODUCE y"), format!("ACK offset:{acked}"));
    assert_eq!(
        c.request(&format!("CONSUME {acked}")),
        format!("MESSAGE offset:{acked} y")
    );
    assert_eq!(c.request("OFFSET g"), "OFFSET g 1");
}

/// Defect 1, across topics: a failure in one topic's log must not touch
/// the replies of another topic's appends in the same write.
#[test]
fn a_failure_in_one_topic_leaves_another_topics_acks_alone() {
    let (_tmp, dir) = temp_data_dir();
    let mut broker = start_with_fsize_limit(&dir, 4, &["--fsync", "always"]);
    let mut c = broker.client();
    assert_eq!(c.request("USE t2"), "USING t2");
    fill(&mut c);
    let big = "b".repeat(200);
    c.send(format!(
        "USE t1\nPRODUCE a\nUSE t2\nPRODUCE {big}\nUSE t1\nPRODUCE c\n"
    ));
    assert_eq!(c.line(), "USING t1");
    assert_eq!(c.line(), "ACK offset:0");
    assert_eq!(c.line(), "USING t2");
    let reply = c.line();
    assert!(reply.starts_with("STORAGE_ERROR "), "{reply}");
    assert_eq!(c.line(), "USING t1");
    assert_eq!(c.line(), "ACK offset:1");
    c.send("FETCH 0 10\n");
    assert_eq!(
        c.lines_until("END"),
        ["MESSAGE offset:0 a", "MESSAGE offset:1 c", "END offset:2"]
    );
    assert_alive(&mut broker);
}

/// Defect 1 for commits: a `COMMIT` whose write fails was answered
/// `COMMITTED`, and `OFFSET` then read 0.
#[test]
fn a_failed_commit_says_so_and_keeps_the_previous_position() {
    let (_tmp, dir) = temp_data_dir();
    let mut broker = start_with_fsize_limit(&dir, 2, &["--fsync", "always"]);
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE one"), "ACK offset:0");
    // "default g N\n" lines: the offsets file reaches the limit first.
    let mut last_ok = None;
    for i in 0..1000u64 {
        let offset = i % 2;
        let reply = c.request(&format!("COMMIT g {offset}"));
        if reply == format!("COMMITTED g {offset}") {
            last_ok = Some(offset);
            continue;
        }
        assert!(reply.starts_with("STORAGE_ERROR "), "{reply}");
        let last = last_ok.expect("some commit succeeded first");
        assert_eq!(c.request("OFFSET g"), format!("OFFSET g {last}"));
        // Pipelined behind a failing commit, a PING still gets its PONG.
        c.send(format!("COMMIT g {}\nPING\n", 1 - last));
        assert!(c.line().starts_with("STORAGE_ERROR "));
        assert_eq!(c.line(), "PONG");
        assert_eq!(c.request("OFFSET g"), format!("OFFSET g {last}"));
        assert_alive(&mut broker);
        lift_fsize_limit(&broker);
        assert_eq!(
            c.request(&format!("COMMIT g {}", 1 - last)),
            format!("COMMITTED g {}", 1 - last)
        );
        drop(c);
        let (status, _) = broker.signal_and_wait("TERM");
        assert!(status.success());
        let broker = BrokerProcess::start(&dir, &["--fsync", "always"]);
        assert_eq!(
            broker.client().request("OFFSET g"),
            format!("OFFSET g {}", 1 - last)
        );
        return;
    }
    panic!("the offsets file never hit the limit");
}

/// Defect 5: `QUIT` while subscribed: `BYE` is the last line.
#[test]
fn bye_is_the_last_line_after_quit_while_subscribed() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    let mut batch = String::new();
    for i in 0..20_000 {
        batch.push_str(&format!("PRODUCE message number {i}\n"));
    }
    c.send(&batch);
    for _ in 0..20_000 {
        c.line();
    }
    let mut s = broker.client();
    s.send("SUBSCRIBE 0\nQUIT\n");
    let mut rest = Vec::new();
    s.reader.read_to_end(&mut rest).expect("read to the close");
    let text = String::from_utf8(rest).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"BYE"), "{} lines", lines.len());
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .enumerate()
            .all(|(i, l)| *l == format!("MESSAGE offset:{i} message number {i}")),
        "only the stream's start, in order, before BYE"
    );
    assert!(lines.len() < 20_000, "the stream stopped at QUIT");
}

/// Defect 6: offsets near `u64::MAX` in a log file overflowed (a panic in
/// debug builds, `ACK offset:0` in release).
#[test]
fn offsets_at_the_limit_are_refused_cleanly() {
    let (_tmp, dir) = temp_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let highest = i64::MAX as u64 - 1;
    std::fs::write(
        dir.join("kafka_log.txt"),
        format!("offset:{highest} message:x\n"),
    )
    .unwrap();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(
        c.request(&format!("CONSUME {highest}")),
        format!("MESSAGE offset:{highest} x")
    );
    let reply = c.request("PRODUCE y");
    assert_eq!(
        reply,
        "STORAGE_ERROR the log reached the highest offset (9223372036854775807)"
    );
    assert_alive(&mut broker);
    drop(c);
    drop(broker);
    for offset in [i64::MAX as u64, u64::MAX - 1] {
        std::fs::write(
            dir.join("kafka_log.txt"),
            format!("offset:{offset} message:x\n"),
        )
        .unwrap();
        let out = common::run_expecting_refusal(&[
            "--addr".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            dir.as_os_str(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("kafka_log.txt:1: offsets past"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Waits until the broker's recovery checkpoint records `offset` for the
/// default topic.
fn wait_for_checkpoint(dir: &Path, offset: u64) {
    let deadline = Instant::now() + TIMEOUT;
    let want = format!("\ndefault 0 {offset}\n");
    loop {
        let text = std::fs::read_to_string(dir.join("recovery.checkpoint")).unwrap_or_default();
        if text.contains(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {offset}: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Defect 7: a flipped last newline looked like a torn write, so an
/// acknowledged, synced message was cut and its offset reused; a deleted
/// active segment lost its lines without a word. Both are now refused,
/// naming the file, and the files are left as they were.
#[test]
fn a_log_that_lost_synced_lines_is_refused_naming_the_file() {
    let (_tmp, dir) = temp_data_dir();
    {
        let mut broker = BrokerProcess::start(&dir, &["--fsync", "always"]);
        let mut c = broker.client();
        for i in 0..5 {
            assert_eq!(
                c.request(&format!("PRODUCE m{i}")),
                format!("ACK offset:{i}")
            );
        }
        wait_for_checkpoint(&dir, 5);
        broker.kill9();
    }
    let log = dir.join("kafka_log.txt");
    let mut bytes = std::fs::read(&log).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = b'!';
    std::fs::write(&log, &bytes).unwrap();
    let args = [
        "--addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ];
    let out = common::run_expecting_refusal(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:offset 4:", log.display()))
            && err.contains("recovery checkpoint"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "a refused start cuts nothing"
    );
    // A deleted active segment.
    std::fs::remove_file(&log).unwrap();
    let out = common::run_expecting_refusal(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the log ends at offset 0"), "{err}");
    assert!(!log.exists());
    // The operator can accept the loss explicitly.
    let mut with_skip: Vec<&std::ffi::OsStr> = args.to_vec();
    with_skip.push("--skip-corrupt-segments".as_ref());
    let broker = BrokerProcess::start(&dir, &["--skip-corrupt-segments"]);
    assert_eq!(broker.client().request("PRODUCE again"), "ACK offset:0");
}

/// Defect 8: a refused start still cut the torn tail (the active segment
/// was repaired before the rolled segments were found not to chain).
#[test]
fn a_refused_start_leaves_a_torn_tail_in_place() {
    let (_tmp, dir) = temp_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kafka_log.txt.00000000000000000000"),
        "offset:0 message:a\noffset:1 message:b\n",
    )
    .unwrap();
    // Starts at 5: offsets 2..5 are missing. And a torn last line.
    let content = b"offset:5 message:f\noffset:6 mess";
    std::fs::write(dir.join("kafka_log.txt"), content).unwrap();
    let out = common::run_expecting_refusal(&[
        "--addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("starts at offset 5"), "{err}");
    assert_eq!(std::fs::read(dir.join("kafka_log.txt")).unwrap(), content);
}

/// The lowest descriptor number `pid` has free: with its open file limit
/// set to this, it can open nothing (counting descriptors is not enough,
/// as closed ones leave gaps below the highest).
fn lowest_free_fd(pid: u32) -> usize {
    let open: std::collections::HashSet<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !open.contains(n)).unwrap()
}

/// Defect 8: a failed `CREATE` left its directory behind, and the topic
/// reappeared after a restart. The broker is left 0 to 5 spare
/// descriptors, so `CREATE` fails at each step of making a topic (its
/// directory, topic.meta, the log file, the directory syncs) or succeeds;
/// either way what the client is told is what a restart finds.
#[test]
fn a_failed_create_leaves_nothing_behind() {
    let (_tmp, dir) = temp_data_dir();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("PING"), "PONG");
    let mut created = Vec::new();
    let mut failed = 0;
    for spare in 0..6 {
        let name = format!("orders{spare}");
        // The least of a few looks: a helper thread may hold a descriptor
        // for a moment.
        let limit = (0..5)
            .map(|_| {
                thread::sleep(Duration::from_millis(5));
                lowest_free_fd(broker.pid())
            })
            .min()
            .unwrap()
            + spare;
        set_nofile(broker.pid(), limit);
        let reply = c.request(&format!("CREATE {name}"));
        set_nofile(broker.pid(), 4096);
        if reply == format!("CREATED {name}") {
            created.push(name);
        } else {
            assert!(reply.starts_with("STORAGE_ERROR "), "{spare}: {reply}");
            failed += 1;
            assert!(
                !dir.join("topics").join(&name).exists(),
                "{spare} spare descriptors: no directory left behind"
            );
        }
    }
    assert!(failed > 0, "no descriptor left must fail a CREATE");
    c.send("TOPICS\n");
    assert_eq!(
        c.lines_until("END").len(),
        2 + created.len(),
        "the default topic and those created"
    );
    drop(c);
    assert!(broker.signal_and_wait("TERM").0.success());
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    c.send("TOPICS\n");
    let topics = c.lines_until("END");
    assert_eq!(topics.len(), 2 + created.len(), "{topics:?}");
    for spare in 0..6 {
        let name = format!("orders{spare}");
        let expected = if created.contains(&name) {
            format!("TOPIC_EXISTS {name}")
        } else {
            format!("CREATED {name}")
        };
        assert_eq!(c.request(&format!("CREATE {name}")), expected);
    }
}

fn set_nofile(pid: u32, soft: usize) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit --nofile={soft}");
}

/// Defect 9 (and 7): the first read of a rolled segment no longer scans
/// it; it reads the segment's index. A damaged interval is reported only
/// when read, and intervals before it are still served.
#[test]
fn old_segments_are_read_through_their_index() {
    let (_tmp, dir) = temp_data_dir();
    {
        let mut broker = BrokerProcess::start(&dir, &["--segment-bytes", "65536"]);
        let mut c = broker.client();
        let mut batch = String::new();
        for i in 0..5000 {
            batch.push_str(&format!("PRODUCE message {i:05}\n"));
        }
        c.send(&batch);
        for _ in 0..5000 {
            c.line();
        }
        assert!(broker.signal_and_wait("TERM").0.success());
    }
    let seg = dir.join("kafka_log.txt.00000000000000000000");
    assert!(
        dir.join("kafka_log.txt.00000000000000000000.index")
            .exists()
    );
    let mut bytes = std::fs::read(&seg).unwrap();
    // Damage a byte near the end of the segment, inside a message.
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let broker = BrokerProcess::start(&dir, &["--segment-bytes", "65536"]);
    let mut c = broker.client();
    assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 message 00000");
    assert_eq!(c.request("CONSUME 100"), "MESSAGE offset:100 message 00100");
    let end: u64 = c.stat("topic.default.next_offset");
    assert_eq!(end, 5000);
    let mut damaged = None;
    for o in (0..5000).rev() {
        let reply = c.request(&format!("CONSUME {o}"));
        if reply.starts_with("STORAGE_ERROR ") {
            damaged = Some(o);
            break;
        }
    }
    let damaged = damaged.expect("the damaged interval is reported");
    let log = broker.stderr();
    assert!(log.contains(&format!("{}:offset ", seg.display())), "{log}");
    assert!(damaged > 100);
    let reader = BufReader::new(log.as_bytes());
    assert!(
        !reader.lines().any(|l| l.unwrap().contains("message 0")),
        "the stored bytes are never logged"
    );
}

/// Read-your-writes within a connection: under `--fsync always` a
/// pipelined read after a PRODUCE was answered before the PRODUCE's sync,
/// so a client got `ACK offset:0` and then `NO_MESSAGE` for offset 0, and
/// `COMMIT g 1` was refused as past the end.
#[test]
fn a_pipelined_read_sees_the_writes_acknowledged_before_it() {
    for policy in ["always", "interval", "never"] {
        let (_tmp, dir) = temp_data_dir();
        let broker = common::InProcess::start(&dir, &["--fsync", policy]);
        let mut c = broker.client();
        c.send(
            "PRODUCE a\nCONSUME 0\nFETCH 0 5\nTOPICS\nCOMMIT g 1\nOFFSET g\n\
             USE t\nPRODUCE b\nDELETE t\nPING\n",
        );
        let expected = [
            "ACK offset:0",
            "MESSAGE offset:0 a",
            "MESSAGE offset:0 a",
            "END offset:1",
            "TOPIC default first:0 next:1 bytes:19",
            "END",
            "COMMITTED g 1",
            "OFFSET g 1",
            "USING t",
            "ACK offset:0",
            "DELETED t",
            "PONG",
        ];
        let got: Vec<String> = expected.iter().map(|_| c.line()).collect();
        assert_eq!(got, expected, "--fsync {policy}");
    }
}
