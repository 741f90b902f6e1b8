//! Command lines of every binary: mistakes get one line that names the flag
//! and the value, exit 2, and nothing typed on a command line (nor a closed
//! stdout) ever makes a binary panic.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TIMEOUT, read_first_line};

const BROKER: &str = env!("CARGO_BIN_EXE_broker");
const PRODUCER: &str = env!("CARGO_BIN_EXE_producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");
const BENCH: &str = env!("CARGO_BIN_EXE_bench");

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `bin args` in `dir` with no stdin, failing the test after TIMEOUT.
fn run_in(dir: &Path, bin: &str, args: &[&str]) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn run(bin: &str, args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    run_in(tmp.path(), bin, args)
}

fn name(bin: &str) -> &str {
    Path::new(bin).file_name().unwrap().to_str().unwrap()
}

/// Asserts `bin args` is refused with exactly `message` and a pointer to
/// --help, status 2, nothing on stdout.
fn assert_usage_error(bin: &str, args: &[&str], message: &str) {
    let out = run(bin, args);
    let program = name(bin);
    assert_eq!(
        out.stderr,
        format!("{program}: {message}\nTry '{program} --help'.\n"),
        "{program} {args:?}"
    );
    assert_eq!(out.code, Some(2), "{program} {args:?}");
    assert_eq!(out.stdout, "", "{program} {args:?}");
}

#[test]
fn broker_refuses_a_retention_it_cannot_represent_instead_of_panicking() {
    // 1e16 hours overflowed Duration::from_secs_f64 and panicked.
    assert_usage_error(
        BROKER,
        &["--addr", "127.0.0.1:0", "--retention-hours", "1e16"],
        r#"--retention-hours: invalid value "1e16": must be more than 0 and at most 876000 hours"#,
    );
    for bad in ["0", "-1", "NaN", "inf", "1e309"] {
        let out = run(BROKER, &["--retention-hours", bad]);
        assert_eq!(out.code, Some(2), "{bad}: {}", out.stderr);
        assert!(
            out.stderr
                .starts_with("broker: --retention-hours: invalid value")
        );
    }
}

#[test]
fn broker_errors_name_the_flag_and_value_in_one_line() {
    assert_usage_error(
        BROKER,
        &["--max-connections", "0"],
        r#"--max-connections: invalid value "0": must be from 1 to 1048576"#,
    );
    assert_usage_error(
        BROKER,
        &["--max-line-bytes", "1M"],
        r#"--max-line-bytes: invalid value "1M": not a whole number (must be from 1 to 1073741824)"#,
    );
    assert_usage_error(
        BROKER,
        &["--fsync", "sometimes"],
        r#"--fsync: invalid value "sometimes": must be always, interval or never"#,
    );
    assert_usage_error(
        BROKER,
        &["--fsync-interval-ms", "18446744073709551615"],
        r#"--fsync-interval-ms: invalid value "18446744073709551615": must be from 1 to 86400000"#,
    );
    assert_usage_error(
        BROKER,
        &["--addr", "localhost:99999"],
        r#"--addr: invalid value "localhost:99999": the port must be a number from 0 to 65535"#,
    );
    assert_usage_error(
        BROKER,
        &["--data-dir", ""],
        r#"--data-dir: invalid value "": must not be empty"#,
    );
    assert_usage_error(BROKER, &["--bogus"], "unknown option --bogus");
    assert_usage_error(BROKER, &["9092"], r#"unexpected argument "9092""#);
    assert_usage_error(
        BROKER,
        &["--no-auto-create=yes"],
        r#"--no-auto-create: takes no value (got "yes")"#,
    );
    assert_usage_error(
        BROKER,
        &["--segment-bytes"],
        "--segment-bytes: missing value",
    );
}

#[test]
fn broker_does_not_take_the_next_option_as_a_missing_value() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path(), BROKER, &["--addr", "--data-dir", "X"]);
    assert_eq!(
        out.stderr,
        "broker: --addr: missing value (found the option --data-dir instead)\n\
         Try 'broker --help'.\n"
    );
    assert_eq!(out.code, Some(2));
    // Nothing was created: not in the working directory, not in X.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    // An attached value is taken as given.
    let out = run_in(tmp.path(), BROKER, &["--addr=--data-dir"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn client_and_bench_errors_name_the_flag_and_value() {
    assert_usage_error(
        PRODUCER,
        &["--addr", "--topic", "t"],
        "--addr: missing value (found the option --topic instead)",
    );
    assert_usage_error(
        PRODUCER,
        &["--addr", "0"],
        r#"--addr: invalid value "0": the port must be a number from 1 to 65535"#,
    );
    assert_usage_error(
        PRODUCER,
        &["--topic", "a/b"],
        r#"--topic: invalid value "a/b": invalid topic name: 1 to 64 characters of A-Z a-z 0-9 . _ - and not . or .."#,
    );
    assert_usage_error(
        CONSUMER,
        &["--group", "bad name"],
        r#"--group: invalid value "bad name": invalid group name: 1 to 64 characters of A-Z a-z 0-9 . _ - and not . or .."#,
    );
    assert_usage_error(
        CONSUMER,
        &["--from", "-1"],
        r#"--from: invalid value "-1": must be earliest, latest or an offset (0 to 18446744073709551615)"#,
    );
    assert_usage_error(
        CONSUMER,
        &["--format", "{value} {timestamp}"],
        r#"--format: invalid value "{value} {timestamp}": unknown field {timestamp}; the fields are {value} {offset} {topic} {partition} {key}"#,
    );
    assert_usage_error(
        CONSUMER,
        &["--partition", "1", "--group", "g"],
        r#"--partition: invalid value "1": cannot be used with --group: the group assigns the partitions"#,
    );
    assert_usage_error(
        PRODUCER,
        &["--partition", "1024"],
        r#"--partition: invalid value "1024": must be from 0 to 1023"#,
    );
    assert_usage_error(
        CONSUMER,
        &["--max-messages", "0"],
        r#"--max-messages: invalid value "0": must be at least 1"#,
    );
    assert_usage_error(
        CONSUMER,
        &["--bootstrap-server", "host:port"],
        r#"--bootstrap-server: invalid value "host:port": the port must be a number from 1 to 65535"#,
    );
    assert_usage_error(
        CONSUMER,
        &["--auth-token-file", ""],
        r#"--auth-token-file: invalid value "": must not be empty"#,
    );
    assert_usage_error(
        BENCH,
        &["produce", "--conns", "0"],
        r#"--conns: invalid value "0": must be from 1 to 100000"#,
    );
    assert_usage_error(
        BENCH,
        &["idle", "--seconds", "1e300"],
        r#"--seconds: invalid value "1e300": must be from 0 to 86400 seconds"#,
    );
    assert_usage_error(
        BENCH,
        &["fly"],
        r#"unknown mode "fly": give produce, consume, idle or latency"#,
    );
    assert_usage_error(
        BENCH,
        &["--target", "kafka", "produce"],
        r#"--target: invalid value "kafka": must be broker, redis or beanstalkd"#,
    );
}

/// Odd values for every flag: each run ends with status 0, 1 or 2, never a
/// panic. A broker that starts is stopped at once.
#[test]
fn no_command_line_makes_a_binary_panic() {
    let odd = [
        "",
        "0",
        "-1",
        "1e16",
        "1e309",
        "NaN",
        "18446744073709551616",
        "18446744073709551615",
        "--x",
        "x y",
        "::1",
    ];
    let flags: &[(&str, &[&str])] = &[
        (
            BROKER,
            &[
                "--addr",
                "--max-line-bytes",
                "--max-connections",
                "--max-output-bytes",
                "--max-topics",
                "--fsync",
                "--fsync-interval-ms",
                "--segment-bytes",
                "--retention-bytes",
                "--retention-hours",
            ],
        ),
        (PRODUCER, &["--addr", "--topic", "--retry-timeout-ms"]),
        (
            CONSUMER,
            &[
                "--addr",
                "--topic",
                "--group",
                "--from",
                "--max-messages",
                "--timeout-ms",
                "--format",
            ],
        ),
        (
            BENCH,
            &[
                "--conns",
                "--depth",
                "--messages",
                "--size",
                "--batch",
                "--from",
                "--seconds",
            ],
        ),
    ];
    for (bin, flags) in flags {
        for flag in *flags {
            for value in odd {
                check_no_panic(bin, flag, value);
            }
        }
    }
}

fn check_no_panic(bin: &str, flag: &str, value: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = Vec::new();
    match name(bin) {
        // A broker that accepts the value serves; listen on a free port.
        "broker" if flag != "--addr" => args.extend(["--addr", "127.0.0.1:0"]),
        // Clients that accept the value find no broker at port 1.
        "producer" | "consumer" if flag != "--addr" => args.extend(["--addr", "127.0.0.1:1"]),
        "bench" => args.extend(["produce", "--addr", "127.0.0.1:1"]),
        _ => {}
    }
    args.extend([flag, value]);
    if name(bin) == "consumer" {
        // Last, so it wins: a consumer retries a missing broker until then.
        args.extend(["--timeout-ms", "0"]);
    }
    let mut child = Command::new(bin)
        .args(&args)
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (started_tx, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(line) = read_first_line(stdout, TIMEOUT) {
            let _ = started_tx.send(line.starts_with("Broker started on "));
        }
    });
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let what = format!("{} {args:?}", name(bin));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        // A broker that starts says so on its first line; stop it.
        if let Ok(true) = started.recv_timeout(Duration::from_millis(5)) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit");
        }
    };
    let stderr = stderr.join().unwrap();
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(
        matches!(status.code(), Some(0..=2)),
        "{what}: {status:?} {stderr}"
    );
}

/// `--help`, `--version` and the broker's start-up line to a closed pipe
/// (`broker --help | true`): silent, status 0, no "failed printing to
/// stdout" panic.
#[test]
fn output_to_a_closed_stdout_is_silent() {
    for (bin, args) in [
        (BROKER, &["--help"][..]),
        (BROKER, &["--version"]),
        (PRODUCER, &["--help"]),
        (PRODUCER, &["--version"]),
        (CONSUMER, &["--help"]),
        (CONSUMER, &["--version"]),
        (BENCH, &["--help"]),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr, "", "{} {args:?}", name(bin));
        assert!(
            out.status.success(),
            "{} {args:?}: {:?}",
            name(bin),
            out.status
        );
    }
}

#[test]
fn broker_keeps_serving_when_its_stdout_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    // A free port (the start-up line that would name it goes nowhere).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = KillOnDrop(
        Command::new(BROKER)
            .args(["--addr", &addr, "--data-dir"])
            .arg(tmp.path().join("data"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // It logs once it is bound; a reply to PING then shows it got past
    // printing the start-up line into the closed pipe.
    let stderr = child.0.stderr.take().unwrap();
    let (tx, logs) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    loop {
        let line = logs
            .recv_timeout(TIMEOUT)
            .expect("the broker logs that it listens");
        if line.contains("listening") {
            break;
        }
    }
    let mut client = common::Client::connect(addr.parse().unwrap());
    assert_eq!(client.request("PING"), "PONG");
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(child.0.wait().unwrap().success());
}

/// A child process killed if the test fails before it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn help_fits_in_80_columns_and_describes_group_commit() {
    for bin in [BROKER, PRODUCER, CONSUMER, BENCH] {
        let out = run(bin, &["--help"]);
        assert_eq!(out.code, Some(0));
        assert!(out.stdout.starts_with("Usage: "), "{}", out.stdout);
        for line in out.stdout.lines() {
            assert!(
                line.chars().count() <= 80,
                "{}: {} columns: {line}",
                name(bin),
                line.chars().count()
            );
        }
    }
    let help = run(BROKER, &["--help"]).stdout;
    assert!(!help.contains("one sync per loop turn"));
    assert!(help.contains("up to 3 in flight per log"));
}

/// `[2026-11-25T05:54:19Z INFO  target] ...`: every log line starts with a
/// UTC timestamp (env_logger's humantime feature).
#[test]
fn broker_log_lines_carry_a_timestamp() {
    let (_tmp, dir) = common::temp_data_dir();
    let broker = common::BrokerProcess::start(&dir, &[]);
    let log = broker.stderr();
    assert!(!log.is_empty());
    for line in log.lines() {
        let stamp = line
            .strip_prefix('[')
            .and_then(|l| l.split_once(' '))
            .map(|(stamp, _)| stamp)
            .unwrap_or("");
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99T99:99:99Z", "{line}");
    }
}
