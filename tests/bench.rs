//! Smoke test of the `bench` tool at a tiny size (timings are never
//! asserted: performance lives in docs/BENCHMARKS.md, not in tests).

mod common;

use std::process::Command;

use common::{BrokerProcess, temp_data_dir};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BENCH).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of `key=` in a summary line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.trim()
        .split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn bench_produces_consumes_and_holds_idle_connections() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let (ok, out, err) = bench(&[
        "produce",
        "--addr",
        &addr,
        "--conns",
        "3",
        "--depth",
        "8",
        "--messages",
        "5000",
        "--size",
        "50",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("bench produce target=broker conns=3 depth=8 messages=5000 size=50 "),
        "{out}"
    );
    for key in [
        "seconds",
        "msg_per_s",
        "mb_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
    ] {
        assert!(field(&out, key).parse::<f64>().is_ok(), "{key} in {out}");
    }
    assert_eq!(
        broker.client().request("CONSUME 4999").len(),
        "MESSAGE offset:4999 ".len() + 50
    );

    // Drains what is stored, in FETCH batches smaller and larger than the
    // broker's byte limit per reply.
    for batch in ["7", "100000"] {
        let (ok, out, err) = bench(&[
            "consume",
            "--addr",
            &addr,
            "--messages",
            "5000",
            "--batch",
            batch,
            "--depth",
            "3",
        ]);
        assert!(ok, "{err}");
        assert_eq!(field(&out, "messages"), "5000", "{out}");
    }
    // Asking for more than is stored fails clearly instead of hanging.
    let (ok, _, err) = bench(&["consume", "--addr", &addr, "--messages", "6000"]);
    assert!(!ok);
    assert!(err.contains("nothing stored at offset 5000"), "{err}");

    let (ok, out, err) = bench(&["idle", "--addr", &addr, "--conns", "50", "--seconds", "0"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "bench idle target=broker conns=50 ready");
}

#[test]
fn bench_reports_error_replies_as_failures() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &["--max-line-bytes", "20"]);
    let (ok, _, err) = bench(&[
        "produce",
        "--addr",
        &broker.addr.to_string(),
        "--messages",
        "10",
        "--size",
        "100",
    ]);
    assert!(!ok);
    assert!(err.contains("MESSAGE_TOO_LARGE"), "{err}");
    let (ok, _, err) = bench(&["produce", "--addr", "127.0.0.1:1", "--messages", "10"]);
    assert!(!ok);
    assert!(err.contains("cannot connect to 127.0.0.1:1"), "{err}");
}

/// The summary fields every run prints, after the fixed prefix.
fn assert_numeric_fields(out: &str) {
    for key in [
        "seconds",
        "msg_per_s",
        "mb_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
    ] {
        assert!(field(out, key).parse::<f64>().is_ok(), "{key} in {out}");
    }
}

#[test]
fn bench_speaks_kafka_produce_then_consume() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let kafka = |args: &[&str]| {
        let mut all = vec!["--protocol", "kafka", "--addr", &addr];
        all.extend_from_slice(args);
        let mode = all.remove(4);
        all.insert(0, mode);
        bench(&all)
    };

    // acks=-1 (the default), several connections, batches of 1000.
    let (ok, out, err) = kafka(&[
        "produce",
        "--conns",
        "2",
        "--depth",
        "4",
        "--messages",
        "20000",
        "--size",
        "50",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(
            "bench produce target=broker protocol=kafka conns=2 depth=4 messages=20000 size=50 batch=1000 "
        ),
        "{out}"
    );
    assert_numeric_fields(&out);
    // acks=1 with a shorter last batch, then acks=0 (checked by
    // ListOffsets): 20000 + 2500 + 2500 records in all.
    for acks in ["1", "0"] {
        let (ok, out, err) = kafka(&[
            "produce",
            "--acks",
            acks,
            "--messages",
            "2500",
            "--batch",
            "700",
            "--size",
            "50",
        ]);
        assert!(ok, "acks={acks}: {err}");
        assert_eq!(field(&out, "messages"), "2500", "{out}");
        assert_eq!(field(&out, "batch"), "700", "{out}");
    }

    // The records are real: a text client sees them on the topic.
    let mut client = broker.client();
    assert_eq!(client.request("USE bench"), "USING bench");
    assert_eq!(
        client.request("CONSUME 24999"),
        format!("MESSAGE offset:24999 {}", "x".repeat(50))
    );
    assert_eq!(client.request("CONSUME 25000"), "NO_MESSAGE");

    // Drains them: one range per fetch in flight, ranges that cut batches,
    // and fetches limited below one batch (the broker still sends one).
    for args in [
        &["consume", "--messages", "25000"][..],
        &[
            "consume",
            "--messages",
            "25000",
            "--conns",
            "2",
            "--depth",
            "3",
        ],
        &[
            "consume",
            "--messages",
            "20000",
            "--from",
            "333",
            "--partition-max-bytes",
            "1000",
            "--depth",
            "2",
        ],
    ] {
        let (ok, out, err) = kafka(args);
        assert!(ok, "{args:?}: {err}");
        assert!(
            out.starts_with("bench consume target=broker protocol=kafka "),
            "{out}"
        );
        assert_eq!(field(&out, "messages"), args[2], "{out}");
        assert_numeric_fields(&out);
    }
    // Asking for more than is stored fails clearly instead of hanging.
    let (ok, _, err) = kafka(&["consume", "--messages", "25001"]);
    assert!(!ok);
    assert!(err.contains("partition 0 ends at offset 25000"), "{err}");
}

#[test]
fn bench_spreads_kafka_batches_over_partitions() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &["--partitions", "3"]);
    let addr = broker.addr.to_string();
    let args = |mode: &'static str, partitions: &'static str| {
        vec![
            mode,
            "--protocol",
            "kafka",
            "--addr",
            &addr,
            "--topic",
            "spread",
            "--partitions",
            partitions,
            "--messages",
            "9000",
            "--batch",
            "1000",
            "--depth",
            "2",
        ]
    };
    let (ok, out, err) = bench(&args("produce", "3"));
    assert!(ok, "{err}");
    assert_eq!(field(&out, "messages"), "9000", "{out}");
    // Round-robin: 3000 records in each partition, read back 3000 each.
    let (ok, out, err) = bench(&args("consume", "3"));
    assert!(ok, "{err}");
    assert_eq!(field(&out, "messages"), "9000", "{out}");
    let (ok, _, err) = bench(&args("produce", "4"));
    assert!(!ok);
    assert!(err.contains("topic spread has 3 partition(s)"), "{err}");
}

#[test]
fn bench_kafka_fails_cleanly_on_a_broken_setup() {
    // Nothing listening.
    let (ok, _, err) = bench(&[
        "produce",
        "--protocol",
        "kafka",
        "--addr",
        "127.0.0.1:1",
        "--messages",
        "10",
    ]);
    assert!(!ok);
    assert!(err.contains("cannot connect to 127.0.0.1:1"), "{err}");

    // Something that is not Kafka: a line-protocol greeting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        std::io::Write::write_all(&mut s, b"-ERR unknown command\r\n").unwrap();
        // Hold the connection until the client gives up and closes it.
        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
    });
    let (ok, _, err) = bench(&[
        "consume",
        "--protocol",
        "kafka",
        "--addr",
        &addr,
        "--messages",
        "10",
    ]);
    assert!(!ok);
    assert!(err.contains("not a Kafka answer to ApiVersions"), "{err}");
    server.join().unwrap();

    // The Kafka protocol is for the broker only.
    let (ok, _, err) = bench(&["produce", "--protocol", "kafka", "--target", "redis"]);
    assert!(!ok);
    assert!(
        err.contains("--protocol kafka needs --target broker"),
        "{err}"
    );

    // A batch over the broker's limit is an error answer, not a hang.
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &["--max-message-bytes", "10000"]);
    let (ok, _, err) = bench(&[
        "produce",
        "--protocol",
        "kafka",
        "--addr",
        &broker.addr.to_string(),
        "--messages",
        "1000",
    ]);
    assert!(!ok);
    assert!(err.contains("MESSAGE_TOO_LARGE"), "{err}");
}
