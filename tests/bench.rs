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
