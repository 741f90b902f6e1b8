//! Integration tests for topics, FETCH, SUBSCRIBE, committed offsets,
//! STATS and AUTH, against the real broker binary.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{BrokerProcess, Client, InProcess, TIMEOUT, temp_data_dir};

#[test]
fn topics_are_isolated_listed_and_recovered() {
    let (_tmp, dir) = temp_data_dir();
    {
        let broker = InProcess::start(&dir, &[]);
        let mut c = broker.client();
        assert_eq!(c.request("PRODUCE d0"), "ACK offset:0");
        assert_eq!(c.request("USE orders"), "USING orders");
        assert_eq!(c.request("PRODUCE o0"), "ACK offset:0");
        assert_eq!(c.request("PRODUCE o1"), "ACK offset:1");
        assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 o0");
        // Another connection starts on the default topic.
        let mut other = broker.client();
        assert_eq!(other.request("CONSUME 1"), "NO_MESSAGE");
        assert_eq!(other.request("PRODUCE d1"), "ACK offset:1");
        c.send("TOPICS\n");
        assert_eq!(
            c.lines_until("END"),
            [
                "TOPIC default first:0 next:2 bytes:40",
                "TOPIC orders first:0 next:2 bytes:40",
                "END"
            ]
        );
        assert_eq!(c.request("USE default"), "USING default");
        assert_eq!(c.request("CONSUME 1"), "MESSAGE offset:1 d1");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("topics/orders/log.txt")).unwrap(),
        "offset:0 message:o0\noffset:1 message:o1\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("kafka_log.txt")).unwrap(),
        "offset:0 message:d0\noffset:1 message:d1\n"
    );
    let broker = InProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("USE orders"), "USING orders");
    assert_eq!(c.request("PRODUCE o2"), "ACK offset:2");
    assert_eq!(c.request("CONSUME 1"), "MESSAGE offset:1 o1");
}

#[test]
fn path_like_topic_names_are_rejected() {
    let (tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut c = broker.client();
    let long = "x".repeat(65);
    for name in [
        "..",
        ".",
        "../escape",
        "/etc",
        "../x/1",
        "..\\x",
        "caf\u{e9}",
        &long,
        "a\tb",
    ] {
        assert_eq!(
            c.request(&format!("USE {name}")),
            "INVALID_REQUEST names are 1 to 64 characters of A-Z a-z 0-9 . _ - and not . or ..",
            "{name:?}"
        );
    }
    assert_eq!(
        c.request("USE a/b"),
        "INVALID_REQUEST a partition is a number: USE <topic>/<partition>"
    );
    assert_eq!(
        c.request("USE"),
        "INVALID_REQUEST wrong number of arguments; usage: USE <topic>[/<partition>]"
    );
    assert_eq!(
        c.request(&format!("USE {}", "y".repeat(64))),
        format!("USING {}", "y".repeat(64))
    );
    assert_eq!(c.request("USE ..."), "USING ...");
    // Nothing was created outside the data dir's topics/ directory.
    let mut outside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    outside.sort();
    assert_eq!(outside, ["data"]);
    let mut topics: Vec<_> = std::fs::read_dir(dir.join("topics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    topics.sort();
    assert_eq!(topics, ["...", "y".repeat(64).as_str()]);
}

#[test]
fn no_auto_create_needs_create() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &["--no-auto-create", "--max-topics", "3"]);
    let mut c = broker.client();
    assert_eq!(
        c.request("USE t1"),
        "UNKNOWN_TOPIC t1 does not exist and auto-create is off; CREATE it first"
    );
    assert_eq!(c.request("PRODUCE still default"), "ACK offset:0");
    assert_eq!(c.request("CREATE t1"), "CREATED t1");
    assert_eq!(c.request("CREATE t1"), "TOPIC_EXISTS t1");
    assert_eq!(c.request("CREATE default"), "TOPIC_EXISTS default");
    assert_eq!(c.request("USE t1"), "USING t1");
    assert_eq!(c.request("PRODUCE in t1"), "ACK offset:0");
    assert_eq!(c.request("CREATE t2"), "CREATED t2");
    assert_eq!(
        c.request("CREATE t3"),
        "TOO_MANY_TOPICS the broker holds its limit of 3 topics (--max-topics)"
    );
}

#[test]
fn fetch_batches_and_end_offsets() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut c = broker.client();
    for i in 0..5 {
        assert_eq!(
            c.request(&format!("PRODUCE m{i}")),
            format!("ACK offset:{i}")
        );
    }
    c.send("FETCH 1 3\n");
    assert_eq!(
        c.lines_until("END"),
        [
            "MESSAGE offset:1 m1",
            "MESSAGE offset:2 m2",
            "MESSAGE offset:3 m3",
            "END offset:4"
        ]
    );
    c.send("FETCH 3 100\n");
    assert_eq!(
        c.lines_until("END"),
        ["MESSAGE offset:3 m3", "MESSAGE offset:4 m4", "END offset:5"]
    );
    assert_eq!(c.request("FETCH 5 10"), "END offset:5");
    assert_eq!(c.request("FETCH 99 10 0"), "END offset:99");
    for (request, error) in [
        (
            "FETCH 0",
            "INVALID_REQUEST wrong number of arguments; usage: FETCH <offset> <max> [<wait_ms>]",
        ),
        (
            "FETCH 0 0",
            "INVALID_REQUEST max must be a number from 1 to 100000",
        ),
        (
            "FETCH 0 10 60001",
            "INVALID_REQUEST wait_ms must be a number from 0 to 60000",
        ),
        (
            "FETCH x 10",
            "INVALID_OFFSET offset must be a decimal number from 0 to 18446744073709551615",
        ),
    ] {
        assert_eq!(c.request(request), error);
    }
    // A pipelined PRODUCE then FETCH sees the message (written first).
    c.send("PRODUCE m5\nFETCH 5 1\n");
    assert_eq!(c.line(), "ACK offset:5");
    assert_eq!(
        c.lines_until("END"),
        ["MESSAGE offset:5 m5", "END offset:6"]
    );
}

#[test]
fn fetch_bytes_are_bounded_per_reply() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &["--max-output-bytes", "1000"]);
    let mut c = broker.client();
    let big = "z".repeat(400);
    for i in 0..5 {
        assert_eq!(
            c.request(&format!("PRODUCE {big}")),
            format!("ACK offset:{i}")
        );
    }
    c.send("FETCH 0 100\n");
    let lines = c.lines_until("END");
    assert_eq!(lines.len(), 3, "two 400-byte messages fit in 1000 bytes");
    assert_eq!(lines[2], "END offset:2");
}

#[test]
fn parked_fetch_is_answered_on_arrival_and_keeps_order() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut consumer = broker.client();
    // The FETCH parks; the PING pipelined behind it must wait for it.
    consumer.send("FETCH 0 10 30000\nPING\n");
    let mut producer = broker.client();
    // Make sure the fetch is parked before producing (STATS says so).
    wait_for_stat(&mut producer, "fetches_parked", 1);
    let started = Instant::now();
    assert_eq!(producer.request("PRODUCE arrived"), "ACK offset:0");
    assert_eq!(consumer.line(), "MESSAGE offset:0 arrived");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered on arrival"
    );
    assert_eq!(consumer.line(), "END offset:1");
    assert_eq!(consumer.line(), "PONG");
    wait_for_stat(&mut producer, "fetches_parked", 0);
}

#[test]
fn parked_fetch_times_out_with_an_empty_answer() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut c = broker.client();
    let started = Instant::now();
    assert_eq!(c.request("FETCH 0 10 300"), "END offset:0");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}"
    );
    // And a second one on another topic, to a future offset.
    assert_eq!(c.request("USE other"), "USING other");
    assert_eq!(c.request("FETCH 7 10 50"), "END offset:7");
}

/// Makes closing `stream` send a reset instead of a FIN.
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads the struct we pass, of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// Polls STATS until `name` has `value` (bounded).
fn wait_for_stat(c: &mut Client, name: &str, value: u64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        c.send("STATS\n");
        let lines = c.lines_until("END");
        let want = format!("STAT {name} {value}");
        if lines.contains(&want) {
            return;
        }
        assert!(Instant::now() < deadline, "{want} never seen: {lines:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn parked_fetch_and_subscriber_survive_other_clients_errors() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &["--max-line-bytes", "100"]);
    let mut parked = broker.client();
    parked.send("FETCH 0 10 30000\n");
    let mut subscriber = broker.client();
    subscriber.send("SUBSCRIBE 0\n");
    let mut admin = broker.client();
    wait_for_stat(&mut admin, "fetches_parked", 1);
    wait_for_stat(&mut admin, "subscribers", 1);
    // Misbehaving clients: garbage, an over-long line, an abrupt reset,
    // a half-written request then a close.
    let mut bad = broker.client();
    assert_eq!(
        bad.request("GARBAGE"),
        "INVALID_REQUEST unknown command; try HELP"
    );
    bad.send(format!("PRODUCE {}\n", "x".repeat(500)));
    assert_eq!(bad.line(), "MESSAGE_TOO_LARGE 100");
    let reset = TcpStream::connect(broker.addr).unwrap();
    set_linger_zero(&reset);
    (&reset).write_all(b"FETCH 0 1 30000\n").unwrap();
    drop(reset);
    let torn = TcpStream::connect(broker.addr).unwrap();
    (&torn).write_all(b"PRODUCE half").unwrap();
    torn.shutdown(Shutdown::Both).unwrap();
    drop(bad);
    assert_eq!(admin.request("PRODUCE hello"), "ACK offset:0");
    assert_eq!(parked.line(), "MESSAGE offset:0 hello");
    assert_eq!(parked.line(), "END offset:1");
    assert_eq!(subscriber.line(), "MESSAGE offset:0 hello");
    assert_eq!(admin.request("PRODUCE again"), "ACK offset:1");
    assert_eq!(subscriber.line(), "MESSAGE offset:1 again");
    wait_for_stat(&mut admin, "fetches_parked", 0);
}

#[test]
fn subscribe_streams_backlog_then_live_until_unsubscribe() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut p = broker.client();
    for i in 0..3 {
        assert_eq!(
            p.request(&format!("PRODUCE m{i}")),
            format!("ACK offset:{i}")
        );
    }
    let mut s = broker.client();
    s.send("SUBSCRIBE 1\n");
    assert_eq!(s.line(), "MESSAGE offset:1 m1");
    assert_eq!(s.line(), "MESSAGE offset:2 m2");
    assert_eq!(p.request("PRODUCE live"), "ACK offset:3");
    assert_eq!(s.line(), "MESSAGE offset:3 live");
    // Other commands work inside the stream; their replies are inline.
    assert_eq!(s.request("PING"), "PONG");
    assert_eq!(
        s.request("SUBSCRIBE 0"),
        "INVALID_REQUEST already subscribed; send UNSUBSCRIBE first"
    );
    assert_eq!(
        s.request("FETCH 0 1"),
        "INVALID_REQUEST not while subscribed; send UNSUBSCRIBE first"
    );
    assert_eq!(s.request("UNSUBSCRIBE"), "END offset:4");
    assert_eq!(p.request("PRODUCE after"), "ACK offset:4");
    assert_eq!(
        s.request("PING"),
        "PONG",
        "no more stream after UNSUBSCRIBE"
    );
    assert_eq!(s.request("UNSUBSCRIBE"), "INVALID_REQUEST not subscribed");
    // A subscription to a topic follows that topic only.
    assert_eq!(s.request("USE t"), "USING t");
    s.send("SUBSCRIBE 0\n");
    assert_eq!(p.request("PRODUCE default-only"), "ACK offset:5");
    assert_eq!(p.request("USE t"), "USING t");
    assert_eq!(p.request("PRODUCE t0"), "ACK offset:0");
    assert_eq!(s.line(), "MESSAGE offset:0 t0");
}

#[test]
fn stalled_subscriber_stays_bounded_while_100k_messages_are_produced() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut sub = TcpStream::connect(broker.addr).unwrap();
    // A small receive buffer, and never read until the end.
    sub.write_all(b"SUBSCRIBE 0\n").unwrap();
    let mut admin = broker.client();
    wait_for_stat(&mut admin, "subscribers", 1);
    let baseline = broker.rss_kib();
    let payload = "p".repeat(200);
    let total = 100_000;
    let mut producer = broker.client();
    let mut reader = producer.reader.get_ref().try_clone().unwrap();
    let counter = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut acks = 0;
        let mut partial = 0;
        while acks < total {
            let n = reader.read(&mut buf).unwrap();
            assert!(n > 0);
            for &b in &buf[..n] {
                if b == b'\n' {
                    acks += 1;
                    partial = 0;
                } else {
                    partial += 1;
                }
            }
        }
        let _ = partial;
    });
    let mut batch = String::new();
    for _ in 0..total {
        batch.push_str("PRODUCE ");
        batch.push_str(&payload);
        batch.push('\n');
    }
    producer.send(batch.as_bytes());
    counter.join().unwrap();
    // 20 MB produced while the subscriber read nothing.
    let grown = broker.rss_kib().saturating_sub(baseline);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB with a stalled subscriber"
    );
    // When it reads, it gets everything, in order.
    sub.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut lines = std::io::BufReader::new(sub).lines();
    for i in 0..total {
        let line = lines.next().unwrap().unwrap();
        assert_eq!(line, format!("MESSAGE offset:{i} {payload}"));
    }
}

#[test]
fn committed_offsets_are_per_topic_bounded_and_survive_kill_9() {
    let (_tmp, dir) = temp_data_dir();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("OFFSET g"), "OFFSET g 0");
    for i in 0..3 {
        assert_eq!(
            c.request(&format!("PRODUCE m{i}")),
            format!("ACK offset:{i}")
        );
    }
    assert_eq!(c.request("COMMIT g 2"), "COMMITTED g 2");
    assert_eq!(c.request("COMMIT g 3"), "COMMITTED g 3");
    assert_eq!(
        c.request("COMMIT g 4"),
        "INVALID_OFFSET offset 4 is past the end of topic default (next offset 3)"
    );
    assert_eq!(c.request("OFFSET g"), "OFFSET g 3");
    assert_eq!(c.request("COMMIT other 1"), "COMMITTED other 1");
    assert_eq!(c.request("USE t"), "USING t");
    assert_eq!(c.request("OFFSET g"), "OFFSET g 0", "per topic");
    assert_eq!(c.request("COMMIT g 0"), "COMMITTED g 0");
    assert_eq!(
        c.request("COMMIT ../g 0"),
        "INVALID_REQUEST names are 1 to 64 characters of A-Z a-z 0-9 . _ - and not . or .."
    );
    // Pipelined commits all land; the last one wins.
    c.send("USE default\nCOMMIT g 1\nCOMMIT g 2\nOFFSET g\n");
    assert_eq!(c.line(), "USING default");
    assert_eq!(c.line(), "COMMITTED g 1");
    assert_eq!(c.line(), "COMMITTED g 2");
    assert_eq!(c.line(), "OFFSET g 2");
    broker.kill9();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("OFFSET g"), "OFFSET g 2");
    assert_eq!(c.request("OFFSET other"), "OFFSET other 1");
    assert_eq!(c.request("USE t"), "USING t");
    assert_eq!(c.request("OFFSET g"), "OFFSET g 0");
}

#[test]
fn committed_offset_past_a_shortened_log_is_lowered_at_start() {
    let (_tmp, dir) = temp_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kafka_log.txt"),
        "offset:0 message:a\noffset:1 message:b\n",
    )
    .unwrap();
    // As if the log lost its unsynced tail in a crash but the commit stayed.
    std::fs::write(
        dir.join("consumer_offsets.txt"),
        "default g 7\ndefault h 1\n",
    )
    .unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("OFFSET g"), "OFFSET g 2");
    assert_eq!(c.request("OFFSET h"), "OFFSET h 1");
    assert!(broker.stderr().contains("pointed past the log end"));
}

#[test]
fn stats_lists_stable_names() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE x"), "ACK offset:0");
    assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 x");
    c.send("STATS\n");
    let lines = c.lines_until("END");
    assert_eq!(lines.last().unwrap(), "END");
    let stats: std::collections::HashMap<&str, &str> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            assert_eq!(parts.next(), Some("STAT"), "{l}");
            (parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["pid"], broker.pid().to_string());
    assert_eq!(stats["connections_current"], "1");
    assert_eq!(stats["messages_produced"], "1");
    assert_eq!(stats["messages_consumed"], "1");
    assert_eq!(stats["topic.default.next_offset"], "1");
    assert_eq!(stats["topic.default.first_offset"], "0");
    assert_eq!(stats["topic.default.log_bytes"], "19");
    assert_eq!(stats["fetches_parked"], "0");
    assert_eq!(stats["subscribers"], "0");
    for name in [
        "uptime_seconds",
        "connections_total",
        "connections_rejected",
        "bytes_in",
        "bytes_out",
        "rss_bytes",
        "topics",
    ] {
        assert!(stats[name].parse::<u64>().is_ok(), "{name}");
    }
    assert!(stats["rss_bytes"].parse::<u64>().unwrap() > 100_000);
}

#[test]
fn auth_is_enforced() {
    let (tmp, dir) = temp_data_dir();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let broker = BrokerProcess::start(&dir, &["--auth-token-file", token_file.to_str().unwrap()]);
    let mut c = broker.client();
    assert_eq!(c.request("PING"), "PONG");
    assert_eq!(
        c.request("PRODUCE x"),
        "NOAUTH authentication required; send AUTH <token>"
    );
    assert_eq!(
        c.request("CONSUME 0"),
        "NOAUTH authentication required; send AUTH <token>"
    );
    assert_eq!(
        c.request("STATS"),
        "NOAUTH authentication required; send AUTH <token>"
    );
    c.send("HELP\n");
    c.lines_until("END");
    assert_eq!(c.request("AUTH wrong"), "INVALID_TOKEN wrong token");
    assert_eq!(c.request("AUTH s3cret-token"), "AUTHENTICATED");
    assert_eq!(c.request("PRODUCE x"), "ACK offset:0");
    // Repeated failures close the connection.
    let mut bad = broker.client();
    assert_eq!(bad.request("AUTH a"), "INVALID_TOKEN wrong token");
    assert_eq!(bad.request("AUTH s3cret-toke"), "INVALID_TOKEN wrong token");
    assert_eq!(
        bad.request("AUTH s3cret-token-"),
        "INVALID_TOKEN wrong token; closing after repeated failures"
    );
    bad.expect_closed();
    let log = broker.stderr();
    assert!(
        log.contains("wrong AUTH token") && log.contains("peer=127.0.0.1:"),
        "{log}"
    );
    assert!(!log.contains("s3cret"), "the token never reaches the log");

    // Without a token file AUTH is an error, and an empty file is refused.
    std::fs::write(&token_file, "\n").unwrap();
    let (_tmp2, dir2) = temp_data_dir();
    let out = std::process::Command::new(common::BROKER)
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir2)
        .arg("--auth-token-file")
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the file is empty"));
}

#[test]
fn topics_have_partitions_addressed_as_topic_slash_n() {
    let (_tmp, dir) = temp_data_dir();
    {
        let broker = InProcess::start(&dir, &["--partitions", "2"]);
        let mut c = broker.client();
        assert_eq!(c.request("CREATE orders 3"), "CREATED orders");
        assert_eq!(c.request("USE orders/2"), "USING orders/2");
        assert_eq!(c.request("PRODUCE in two"), "ACK offset:0");
        assert_eq!(c.request("USE orders"), "USING orders");
        assert_eq!(c.request("CONSUME 0"), "NO_MESSAGE");
        assert_eq!(
            c.request("USE orders/3"),
            "INVALID_REQUEST topic orders has 3 partitions (0 to 2)"
        );
        assert_eq!(
            c.request("USE auto/1"),
            "USING auto/1",
            "auto-created with --partitions 2"
        );
        assert_eq!(c.request("COMMIT g 0"), "COMMITTED g 0");
        c.send("TOPICS\n");
        assert_eq!(
            c.lines_until("END"),
            [
                "TOPIC default first:0 next:0 bytes:0",
                "TOPIC orders/0 first:0 next:0 bytes:0",
                "TOPIC orders/1 first:0 next:0 bytes:0",
                "TOPIC orders/2 first:0 next:1 bytes:24",
                "TOPIC auto/0 first:0 next:0 bytes:0",
                "TOPIC auto/1 first:0 next:0 bytes:0",
                "END"
            ]
        );
    }
    assert!(dir.join("topics/orders/partition-2/log.txt").exists());
    let meta = std::fs::read_to_string(dir.join("topics/orders/topic.meta")).unwrap();
    assert!(
        meta.contains("partitions=3\n") && meta.contains("format=text\n"),
        "{meta}"
    );
    let broker = InProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("USE orders/2"), "USING orders/2");
    assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 in two");
    assert_eq!(c.request("USE auto/1"), "USING auto/1");
    assert_eq!(c.request("OFFSET g"), "OFFSET g 0");
}

#[test]
fn an_older_data_directory_is_migrated_in_place_and_a_newer_one_refused() {
    let (_tmp, dir) = temp_data_dir();
    std::fs::create_dir_all(dir.join("topics/orders")).unwrap();
    std::fs::write(dir.join("kafka_log.txt"), "offset:0 message:hello\n").unwrap();
    std::fs::write(dir.join("topics/orders/log.txt"), "offset:0 message:o\n").unwrap();
    std::fs::write(dir.join("consumer_offsets.txt"), "orders g 1\n").unwrap();
    {
        let broker = InProcess::start(&dir, &[]);
        let mut c = broker.client();
        assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 hello");
        assert_eq!(c.request("USE orders"), "USING orders");
        assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 o");
        assert_eq!(c.request("OFFSET g"), "OFFSET g 1");
    }
    let meta = std::fs::read_to_string(dir.join("broker.meta")).unwrap();
    assert!(
        meta.contains("layout=2\n") && meta.contains("cluster_id="),
        "{meta}"
    );
    let topic = std::fs::read_to_string(dir.join("topics/orders/topic.meta")).unwrap();
    assert!(topic.contains("partitions=1\n") && topic.contains("format=text\n"));
    // The same cluster id after a restart (a new block of producer ids).
    drop(InProcess::start(&dir, &[]));
    let without_ids = |m: &str| -> String {
        m.lines()
            .filter(|l| !l.starts_with("producer_ids_from="))
            .collect()
    };
    let again = std::fs::read_to_string(dir.join("broker.meta")).unwrap();
    assert_eq!(without_ids(&again), without_ids(&meta));
    // A layout from a newer broker is refused, naming it.
    std::fs::write(dir.join("broker.meta"), "layout=3\n").unwrap();
    let out = common::run_expecting_refusal(&[
        "--addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("layout 3, written by a newer broker"), "{err}");
}

/// A client that sends a waiting request and hangs up frees its slot at
/// once: before, a parked FETCH held it until its wait ended and a
/// subscriber until something was produced, so a few hundred such
/// clients locked everyone out.
#[test]
fn clients_that_hang_up_while_waiting_free_their_slots_at_once() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &["--max-connections", "20"]);
    for i in 0..100 {
        let mut c = broker.client();
        assert_eq!(c.request("PING"), "PONG", "client {i} was not admitted");
        c.send(if i % 2 == 0 {
            "FETCH 0 10 60000\n"
        } else {
            "SUBSCRIBE 0\n"
        });
        drop(c);
    }
    let mut c = broker.client();
    wait_for_stat(&mut c, "connections_current", 1);
    wait_for_stat(&mut c, "fetches_parked", 0);
    wait_for_stat(&mut c, "subscribers", 0);
}

/// Once a client has closed its sending side (`nc -N`), nothing waits for
/// it: a FETCH with a wait is answered with what is there, a subscription
/// ends once caught up, and then the connection closes.
#[test]
fn after_a_half_close_nothing_waits() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut c = broker.client();
    for (i, m) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(
            c.request(&format!("PRODUCE {m}")),
            format!("ACK offset:{i}")
        );
    }
    let started = Instant::now();
    c.send("FETCH 3 10 30000\nCONSUME 0\nFETCH 3 10 30000\n");
    c.writer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.line(), "END offset:3");
    assert_eq!(c.line(), "MESSAGE offset:0 a");
    assert_eq!(c.line(), "END offset:3");
    c.expect_closed();
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut s = broker.client();
    s.send("SUBSCRIBE 1\n");
    s.writer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(s.line(), "MESSAGE offset:1 b");
    assert_eq!(s.line(), "MESSAGE offset:2 c");
    assert_eq!(s.line(), "END offset:3");
    s.expect_closed();
    // A parked FETCH whose client half-closes later is answered then.
    let mut p = broker.client();
    p.send("FETCH 3 10 30000\n");
    wait_for_stat(&mut broker.client(), "fetches_parked", 1);
    p.writer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(p.line(), "END offset:3");
    p.expect_closed();
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Wake-ups are handed out a slice per loop turn (128), the rest in the
/// turns after: every one of 1,000 parked `FETCH`es on a topic gets the
/// message that woke them, exactly, and each may park again for the next
/// one; a `PING` sent while they are woken is answered among them.
#[test]
fn a_thousand_parked_fetches_all_get_the_message_that_woke_them() {
    // Both ends of 1,000 connections live in this process: make sure the
    // descriptor limit has room (raising the soft limit toward the hard).
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit for this process.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < 8192 {
            limit.rlim_cur = limit.rlim_max.min(8192);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= 4096,
        "RLIMIT_NOFILE hard limit {} is too low for this test",
        limit.rlim_max
    );
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut admin = broker.client();
    let mut parked: Vec<Client> = (0..1000)
        .map(|_| {
            let mut c = broker.client();
            c.send("FETCH 0 10 60000\n");
            c
        })
        .collect();
    wait_for_stat(&mut admin, "fetches_parked", 1000);
    let mut probe = broker.client();
    assert_eq!(admin.request("PRODUCE first"), "ACK offset:0");
    assert_eq!(probe.request("PING"), "PONG");
    for (i, c) in parked.iter_mut().enumerate() {
        assert_eq!(c.line(), "MESSAGE offset:0 first", "fetch {i}");
        assert_eq!(c.line(), "END offset:1", "fetch {i}");
        c.send("FETCH 1 10 60000\n");
    }
    wait_for_stat(&mut admin, "fetches_parked", 1000);
    assert_eq!(admin.request("PRODUCE second"), "ACK offset:1");
    for (i, c) in parked.iter_mut().enumerate() {
        assert_eq!(c.line(), "MESSAGE offset:1 second", "fetch {i}");
        assert_eq!(c.line(), "END offset:2", "fetch {i}");
    }
    wait_for_stat(&mut admin, "fetches_parked", 0);
}
