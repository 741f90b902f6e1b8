//! Integration tests: the real `broker` binary on 127.0.0.1:0 in a fresh
//! temp dir, spoken to over TCP, with exact replies asserted.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{BrokerProcess, Client, TIMEOUT, temp_data_dir};

#[test]
fn original_readme_session() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE hello"), "ACK offset:0");
    assert_eq!(c.request("PRODUCE world"), "ACK offset:1");
    assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 hello");
    assert_eq!(c.request("CONSUME 1"), "MESSAGE offset:1 world");
    assert_eq!(c.request("CONSUME 2"), "NO_MESSAGE");
    assert_eq!(
        broker.log_bytes(),
        b"offset:0 message:hello\noffset:1 message:world\n"
    );
}

#[test]
fn ping_help_quit_and_case_insensitive_words() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("ping"), "PONG");
    assert_eq!(c.request("pRoDuCe Mixed Case"), "ACK offset:0");
    assert_eq!(c.request("consume 0"), "MESSAGE offset:0 Mixed Case");
    c.send("HELP\n");
    let mut help = Vec::new();
    loop {
        let line = c.line();
        if line == "END" {
            break;
        }
        help.push(line);
    }
    for word in [
        "PRODUCE",
        "CONSUME",
        "FETCH",
        "SUBSCRIBE",
        "USE",
        "CREATE",
        "DELETE",
        "TOPICS",
        "COMMIT",
        "OFFSET",
        "JOIN",
        "HEARTBEAT",
        "LEAVE",
        "STATS",
        "AUTH",
        "PING",
        "HELP",
        "QUIT",
    ] {
        assert!(
            help.iter().any(|l| l.starts_with(word)),
            "HELP lacks {word}: {help:?}"
        );
    }
    for line in &help {
        assert!(line.len() <= 80, "HELP line over 80 columns: {line:?}");
    }
    // QUIT answers BYE and closes; what was pipelined after it is ignored.
    c.send("QUIT\nPRODUCE never\n");
    assert_eq!(c.line(), "BYE");
    c.expect_closed();
    assert_eq!(broker.client().request("CONSUME 1"), "NO_MESSAGE");
}

#[test]
fn telnet_line_endings_and_exact_message_bytes() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    c.send("PRODUCE with\r\n");
    assert_eq!(c.line(), "ACK offset:0");
    c.send(b"PRODUCE  two  spaces \xff\xef\x01\xfe tab\there\r\n");
    assert_eq!(c.line(), "ACK offset:1");
    c.send("PRODUCE inner\rcr\n");
    assert_eq!(c.line(), "ACK offset:2");
    c.send("CONSUME 0\r\nCONSUME 1\r\nCONSUME 2\n");
    assert_eq!(c.line(), "MESSAGE offset:0 with");
    assert_eq!(
        c.line_bytes(),
        b"MESSAGE offset:1  two  spaces \xff\xef\x01\xfe tab\there"
    );
    assert_eq!(c.line(), "MESSAGE offset:2 inner\rcr");
    // One \r before the newline is the line ending; a second is kept, and
    // the message is read back in base64 so that a reader stripping \r\n
    // cannot lose it.
    c.send("PRODUCE ends\r\r\n");
    assert_eq!(c.line(), "ACK offset:3");
    assert_eq!(c.request("CONSUME 3"), "MESSAGE64 offset:3 ZW5kcw0=");
    assert_eq!(
        broker.log_bytes(),
        b"offset:0 message:with\noffset:1 message: two  spaces \xff\xef\x01\xfe tab\there\noffset:2 message:inner\rcr\noffset:3 message:ends\r\n"
    );
}

/// Ctrl-C in telnet sends IAC IP IAC DO TIMING-MARK and shows nothing
/// until the server answers the timing mark: the broker answers it, drops
/// the partial line, and ends a subscription.
#[test]
fn telnet_ctrl_c_is_answered_and_discards_the_partial_line() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    c.send(b"\xff\xf4\xff\xfd\x06PING\r\n");
    assert_eq!(c.line_bytes(), b"\xff\xfb\x06PONG");
    c.send(b"PRODUCE half a li\xff\xf4\xff\xfd\x06PRODUCE whole\r\n");
    assert_eq!(c.line_bytes(), b"\xff\xfb\x06ACK offset:0");
    assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 whole");
    c.send("SUBSCRIBE 0\r\n");
    assert_eq!(c.line(), "MESSAGE offset:0 whole");
    c.send(b"\xff\xf4\xff\xfd\x06");
    assert_eq!(c.line_bytes(), b"END offset:1");
    let mut mark = [0u8; 3];
    c.reader.read_exact(&mut mark).unwrap();
    assert_eq!(mark, [0xff, 0xfb, 0x06]);
    assert_eq!(c.request("PING"), "PONG");
    // The same through nc, as the issue reported it.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '\\377\\364\\377\\375\\006PING\\r\\n' | nc -N {} {}",
            broker.addr.ip(),
            broker.addr.port()
        ))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"\xff\xfb\x06PONG\n");
}

#[test]
fn every_error_reply_and_errors_consume_no_offset() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &["--max-line-bytes", "64"]);
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE first"), "ACK offset:0");
    let cases = [
        (
            "PRODUCE",
            "INVALID_REQUEST PRODUCE needs a non-empty message: PRODUCE <message>",
        ),
        (
            "PRODUCE ",
            "INVALID_REQUEST PRODUCE needs a non-empty message: PRODUCE <message>",
        ),
        ("PRODUCEX", "INVALID_REQUEST unknown command; try HELP"),
        (
            "PRODUCEX hello",
            "INVALID_REQUEST unknown command; try HELP",
        ),
        ("FROB", "INVALID_REQUEST unknown command; try HELP"),
        ("", "INVALID_REQUEST empty request; try HELP"),
        (
            " PING",
            "INVALID_REQUEST a request starts with a command word; try HELP",
        ),
        (
            "CONSUME",
            "INVALID_REQUEST wrong number of arguments; usage: CONSUME <offset>",
        ),
        (
            "CONSUME 1 2",
            "INVALID_REQUEST wrong number of arguments; usage: CONSUME <offset>",
        ),
        (
            "PING now",
            "INVALID_REQUEST wrong number of arguments; usage: PING",
        ),
        (
            "QUIT now",
            "INVALID_REQUEST wrong number of arguments; usage: QUIT",
        ),
        (
            "CONSUME abc",
            "INVALID_OFFSET offset must be a decimal number from 0 to 18446744073709551615",
        ),
        (
            "CONSUME -1",
            "INVALID_OFFSET offset must be a decimal number from 0 to 18446744073709551615",
        ),
        (
            "CONSUME 18446744073709551616",
            "INVALID_OFFSET offset must be a decimal number from 0 to 18446744073709551615",
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(c.request(request), expected, "request {request:?}");
    }
    // Over --max-line-bytes: one error line, the rest of the line is
    // discarded, the connection stays usable.
    let long = format!("PRODUCE {}\n", "x".repeat(1000));
    c.send(&long);
    assert_eq!(c.line(), "MESSAGE_TOO_LARGE 64");
    // Exactly at the limit is fine (64 bytes including "PRODUCE ").
    assert_eq!(
        c.request(&format!("PRODUCE {}", "y".repeat(56))),
        "ACK offset:1"
    );
    assert_eq!(
        c.request(&format!("PRODUCE {}", "y".repeat(57))),
        "MESSAGE_TOO_LARGE 64"
    );
    // A too-long line split over many writes.
    for _ in 0..10 {
        c.send("z".repeat(50));
    }
    c.send("\nPING\n");
    assert_eq!(c.line(), "MESSAGE_TOO_LARGE 64");
    assert_eq!(c.line(), "PONG");
    assert_eq!(
        c.request("PRODUCE last"),
        "ACK offset:2",
        "errors consumed no offset"
    );
    assert_eq!(
        broker.log_bytes(),
        format!(
            "offset:0 message:first\noffset:1 message:{}\noffset:2 message:last\n",
            "y".repeat(56)
        )
        .as_bytes()
    );
}

#[test]
fn thousands_of_pipelined_requests_in_one_write() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    let n = 20_000;
    let mut batch = String::new();
    for i in 0..n {
        batch.push_str(&format!("PRODUCE m{i}\n"));
    }
    for i in 0..n {
        batch.push_str(&format!("CONSUME {i}\n"));
    }
    batch.push_str("PING\n");
    // Read on another thread: the replies may fill the socket buffers
    // before the requests are all written.
    let mut reader = c.reader.get_ref().try_clone().unwrap();
    let writer = thread::spawn(move || {
        c.send(batch.as_bytes());
        c
    });
    let mut replies = Vec::new();
    let expected_len: usize = (0..n)
        .map(|i| format!("ACK offset:{i}\n").len())
        .sum::<usize>()
        + (0..n)
            .map(|i| format!("MESSAGE offset:{i} m{i}\n").len())
            .sum::<usize>()
        + "PONG\n".len();
    let mut chunk = [0u8; 65536];
    while replies.len() < expected_len {
        let got = match reader.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other.expect("read replies"),
        };
        assert!(got > 0, "closed early");
        replies.extend_from_slice(&chunk[..got]);
    }
    writer.join().unwrap();
    let text = String::from_utf8(replies).unwrap();
    let mut lines = text.lines();
    for i in 0..n {
        assert_eq!(lines.next().unwrap(), format!("ACK offset:{i}"));
    }
    for i in 0..n {
        assert_eq!(lines.next().unwrap(), format!("MESSAGE offset:{i} m{i}"));
    }
    assert_eq!(lines.next(), Some("PONG"));
    assert_eq!(lines.next(), None);
}

#[test]
fn request_sent_one_byte_at_a_time() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    for b in b"PRODUCE byte by byte\r\nCONSUME 0\n" {
        c.send([*b]);
        c.writer.flush().unwrap();
    }
    assert_eq!(c.line(), "ACK offset:0");
    assert_eq!(c.line(), "MESSAGE offset:0 byte by byte");
}

#[test]
fn half_close_gets_every_reply_then_close() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    c.send("PRODUCE a\nPRODUCE b\nCONSUME 1\nPRODUCE torn");
    c.writer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.line(), "ACK offset:0");
    assert_eq!(c.line(), "ACK offset:1");
    assert_eq!(c.line(), "MESSAGE offset:1 b");
    c.expect_closed();
    // The unterminated last line was not a request.
    assert_eq!(broker.client().request("CONSUME 2"), "NO_MESSAGE");
}

#[test]
fn sigterm_and_sigint_exit_zero_within_a_second_and_restart_keeps_offsets() {
    let (_tmp, dir) = temp_data_dir();
    for (round, signal) in ["TERM", "INT"].into_iter().enumerate() {
        let mut broker = BrokerProcess::start(&dir, &[]);
        let mut c = broker.client();
        let first = round as u64 * 2;
        assert_eq!(c.request("PRODUCE x"), format!("ACK offset:{first}"));
        assert_eq!(c.request("PRODUCE y"), format!("ACK offset:{}", first + 1));
        let idle = broker.client(); // an idle client must not delay the exit
        let (status, took) = broker.signal_and_wait(signal);
        assert!(status.success(), "SIG{signal}: {status:?}");
        assert!(
            took < Duration::from_secs(1),
            "SIG{signal} exit took {took:?}"
        );
        drop(idle);
    }
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("CONSUME 3"), "MESSAGE offset:3 y");
    assert_eq!(c.request("PRODUCE z"), "ACK offset:4");
    assert!(
        broker.stderr().contains("next_offset=4"),
        "{}",
        broker.stderr()
    );
}

#[test]
fn torn_tail_is_cut_with_a_warning() {
    let (_tmp, dir) = temp_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kafka_log.txt"),
        "offset:0 message:hello\noffset:1 message:wor",
    )
    .unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    assert_eq!(broker.client().request("PRODUCE world"), "ACK offset:1");
    assert_eq!(
        broker.log_bytes(),
        b"offset:0 message:hello\noffset:1 message:world\n"
    );
    let log = broker.stderr();
    assert!(log.contains("WARN") && log.contains("torn"), "{log}");
}

#[test]
fn corrupt_middle_refuses_to_start_and_leaves_the_file() {
    let (_tmp, dir) = temp_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let content = "offset:0 message:a\nnot a log line\noffset:2 message:c\n";
    std::fs::write(dir.join("kafka_log.txt"), content).unwrap();
    let out = Command::new(common::BROKER)
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no 'started' line");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kafka_log.txt:2:"),
        "names file and line: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("kafka_log.txt")).unwrap(),
        content
    );
}

#[test]
fn second_broker_on_the_same_data_dir_is_refused() {
    let (_tmp, dir) = temp_data_dir();
    let _broker = BrokerProcess::start(&dir, &[]);
    let out = Command::new(common::BROKER)
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another broker"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn usage_errors_help_and_version() {
    let run = |args: &[&str]| Command::new(common::BROKER).args(args).output().unwrap();
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--addr",
        "--data-dir",
        "--max-line-bytes",
        "--max-connections",
    ] {
        assert!(text.contains(flag), "help lacks {flag}");
    }
    let version = run(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("broker {}", env!("CARGO_PKG_VERSION"))
    );
    let bad = run(&["--bogus"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bogus"));
    let bad = run(&["--max-line-bytes", "lots"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn concurrent_producers_get_unique_contiguous_offsets() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let (threads, per_thread) = (8, 2_000);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = broker.addr;
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                (0..per_thread)
                    .map(|i| {
                        let reply = c.request(&format!("PRODUCE t{t}-{i}"));
                        let offset: u64 = reply
                            .strip_prefix("ACK offset:")
                            .unwrap_or_else(|| panic!("{reply}"))
                            .parse()
                            .unwrap();
                        (offset, format!("t{t}-{i}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, String)> = Vec::new();
    for h in handles {
        let mine = h.join().unwrap();
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "per-connection order"
        );
        acked.extend(mine);
    }
    acked.sort();
    let total = threads * per_thread;
    assert_eq!(acked.len(), total);
    assert!(acked.iter().enumerate().all(|(i, (o, _))| *o == i as u64));
    // The log agrees, line by line.
    let log = String::from_utf8(broker.log_bytes()).unwrap();
    for ((offset, message), line) in acked.iter().zip(log.lines()) {
        assert_eq!(line, format!("offset:{offset} message:{message}"));
    }
    assert_eq!(log.lines().count(), total);
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_message() {
    let (_tmp, dir) = temp_data_dir();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let count = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..4)
        .map(|id| common::pipelined_producer(broker.addr, id, 2_000_000, count.clone()))
        .collect();
    // Kill once a good amount is acknowledged and more is in flight.
    let deadline = Instant::now() + TIMEOUT;
    while count.load(Ordering::Relaxed) < 50_000 {
        assert!(Instant::now() < deadline, "load did not get going");
        thread::sleep(Duration::from_millis(5));
    }
    broker.kill9();
    let mut acked: Vec<(u64, String)> = Vec::new();
    for p in producers {
        acked.extend(p.join().unwrap());
    }
    assert!(acked.len() >= 50_000);

    let broker = BrokerProcess::start(&dir, &[]);
    let log = broker.log_bytes();
    let log = String::from_utf8(log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let mut by_offset = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let rest = line
            .strip_prefix(&format!("offset:{i} message:"))
            .unwrap_or_else(|| {
                panic!("line {i} out of sequence: {line}");
            });
        by_offset.insert(i as u64, rest);
    }
    for (offset, message) in &acked {
        assert_eq!(
            by_offset.get(offset).copied(),
            Some(message.as_str()),
            "acknowledged offset {offset} lost or changed"
        );
    }
    // And the restarted broker serves them.
    let mut c = broker.client();
    let (offset, message) = &acked[acked.len() / 2];
    assert_eq!(
        c.request(&format!("CONSUME {offset}")),
        format!("MESSAGE offset:{offset} {message}")
    );
    assert_eq!(
        c.request("PRODUCE after"),
        format!("ACK offset:{}", lines.len())
    );
}

#[test]
fn too_many_connections_is_refused_with_a_reply() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &["--max-connections", "2"]);
    let mut a = broker.client();
    let mut b = broker.client();
    assert_eq!(a.request("PING"), "PONG");
    assert_eq!(b.request("PING"), "PONG");
    let mut c = broker.client();
    assert_eq!(c.line(), "TOO_MANY_CONNECTIONS");
    c.expect_closed();
    drop(a);
    // Once a slot frees up a new client is served (the close is noticed
    // asynchronously, so retry a bounded number of times).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut d = broker.client();
        d.send("PING\n");
        match d.line().as_str() {
            "PONG" => break,
            "TOO_MANY_CONNECTIONS" => assert!(Instant::now() < deadline, "slot never freed"),
            other => panic!("{other}"),
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(b.request("PING"), "PONG");
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted after the comm field.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_file_descriptors_does_not_spin_or_exit() {
    let (_tmp, dir) = temp_data_dir();
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(r#"ulimit -n 24 && exec "$0" --addr 127.0.0.1:0 --data-dir "$1""#)
        .arg(common::BROKER)
        .arg(&dir);
    let broker = BrokerProcess::spawn(command, &dir);
    let mut served = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        let mut c = broker.client();
        // Every client hears back promptly: served, or told and closed.
        c.writer
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        c.send("PING\n");
        let mut line = Vec::new();
        use std::io::BufRead;
        if let Err(e) = c.reader.read_until(b'\n', &mut line) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset,
                "no reply: {e}"
            );
        }
        match line.as_slice() {
            b"PONG\n" => served.push(c),
            b"TOO_MANY_CONNECTIONS\n" | b"" => refused += 1,
            other => panic!("unexpected {:?}", String::from_utf8_lossy(other)),
        }
    }
    assert!(
        !served.is_empty() && refused > 0,
        "served={} refused={refused}",
        served.len()
    );
    // Idle with the limit hit: no busy loop.
    let before = cpu_ticks(broker.pid());
    thread::sleep(Duration::from_millis(500));
    let used = cpu_ticks(broker.pid()) - before;
    assert!(
        used <= 10,
        "broker used {used} ticks while idle at the fd limit"
    );
    // Freeing descriptors lets new clients in again.
    served.clear();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = broker.client();
        c.send("PING\n");
        let mut line = Vec::new();
        use std::io::BufRead;
        let _ = c.reader.read_until(b'\n', &mut line);
        if line == b"PONG\n" {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn full_disk_answers_storage_error_keeps_serving_and_recovers() {
    let (_tmp, dir) = temp_data_dir();
    // RLIMIT_FSIZE makes appends past 4 KiB fail (EFBIG) like a full disk;
    // SIGXFSZ is ignored so the write returns an error instead of killing.
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(r#"trap '' XFSZ && ulimit -S -f 4 && exec "$0" --addr 127.0.0.1:0 --data-dir "$1""#)
        .arg(common::BROKER)
        .arg(&dir);
    let broker = BrokerProcess::spawn(command, &dir);
    let mut c = broker.client();
    let payload = "p".repeat(90);
    let mut acked = 0u64;
    loop {
        let reply = c.request(&format!("PRODUCE {payload}"));
        if reply == format!("ACK offset:{acked}") {
            acked += 1;
            assert!(acked < 1000, "the limit never hit");
            continue;
        }
        assert!(reply.starts_with("STORAGE_ERROR "), "{reply}");
        break;
    }
    // A pipelined batch that crosses the limit fails as a whole, leaving no
    // partial line; reads and other commands keep working.
    let mut batch = String::new();
    for _ in 0..5 {
        batch.push_str(&format!("PRODUCE {payload}\n"));
    }
    batch.push_str("CONSUME 0\nPING\n");
    c.send(&batch);
    for _ in 0..5 {
        assert!(c.line().starts_with("STORAGE_ERROR "));
    }
    assert_eq!(c.line(), format!("MESSAGE offset:0 {payload}"));
    assert_eq!(c.line(), "PONG");
    assert_eq!(c.request(&format!("CONSUME {acked}")), "NO_MESSAGE");
    let log = broker.log_bytes();
    assert!(log.ends_with(b"\n"));
    assert_eq!(log.iter().filter(|&&b| b == b'\n').count() as u64, acked);
    // Space comes back: produce works again, with no offset lost.
    let status = Command::new("prlimit")
        .args(["--pid", &broker.pid().to_string(), "--fsize=unlimited"])
        .status()
        .expect("run prlimit");
    assert!(status.success());
    assert_eq!(c.request("PRODUCE back"), format!("ACK offset:{acked}"));
    assert_eq!(
        c.request(&format!("CONSUME {acked}")),
        format!("MESSAGE offset:{acked} back")
    );
}

#[test]
fn stalled_reader_stays_bounded_while_others_are_served() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let big = "b".repeat(100 * 1024);
    let mut p = broker.client();
    assert_eq!(p.request(&format!("PRODUCE {big}")), "ACK offset:0");
    let baseline = broker.rss_kib();

    // 1,000 requests whose replies total 100 MB, never read.
    let stalled = TcpStream::connect(broker.addr).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let mut s = stalled.try_clone().unwrap();
        let written = written.clone();
        thread::spawn(move || {
            for _ in 0..1000 {
                if s.write_all(b"CONSUME 0\n").is_err() {
                    return;
                }
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Wait until the writer stops making progress: the broker stopped
    // reading once the replies it could not send reached the cap.
    let deadline = Instant::now() + TIMEOUT;
    let mut last = usize::MAX;
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = written.load(Ordering::Relaxed);
        if now == last || now == 1000 {
            break;
        }
        last = now;
        assert!(Instant::now() < deadline);
    }
    // The other clients are served meanwhile.
    assert_eq!(p.request("PING"), "PONG");
    assert_eq!(p.request("PRODUCE more"), "ACK offset:1");
    let grown = broker.rss_kib().saturating_sub(baseline);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB for a stalled reader"
    );

    // When the reader drains, every reply arrives, in order.
    let mut reader = std::io::BufReader::new(stalled);
    let expected = format!("MESSAGE offset:0 {big}\n");
    let mut line = String::new();
    use std::io::BufRead;
    reader.get_ref().set_read_timeout(Some(TIMEOUT)).unwrap();
    for i in 0..1000 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line == expected, "reply {i} differs");
    }
    writer.join().unwrap();
}
