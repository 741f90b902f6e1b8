//! Integration tests for the bundled `producer` and `consumer` binaries,
//! against the real broker.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{BrokerProcess, TIMEOUT, temp_data_dir};

const PRODUCER: &str = env!("CARGO_BIN_EXE_producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

/// Runs the producer with `input` on a pipe; returns (status, stdout, stderr).
fn produce(addr: &str, extra: &[&str], input: &[u8]) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(PRODUCER)
        .args(["--addr", addr])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running consumer whose stdout lines arrive on a channel.
struct Consumer {
    child: Child,
    lines: Receiver<String>,
    stderr_path: std::path::PathBuf,
}

impl Consumer {
    fn start(addr: &str, extra: &[&str], stderr_path: std::path::PathBuf) -> Consumer {
        let mut child = Command::new(CONSUMER)
            .args(["--addr", addr])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Consumer {
            child,
            lines: rx,
            stderr_path,
        }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no consumer output; stderr: {}", self.stderr()))
    }

    fn expect_lines(&self, expected: &[String]) {
        for want in expected {
            assert_eq!(&self.line(), want);
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(&mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "consumer exit {status:?}: {}",
                    self.stderr()
                );
                return;
            }
            assert!(Instant::now() < deadline, "consumer did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asserts nothing more is printed for a while (used after the expected
    /// output, to catch duplicates).
    fn expect_quiet(&self, wait: Duration) {
        if let Ok(line) = self.lines.recv_timeout(wait) {
            panic!("unexpected consumer output: {line}");
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn consumed(message: &str, offset: u64) -> String {
    format!("Consumed: {message} (offset: {offset})")
}

#[test]
fn piped_producer_prints_each_response_and_writes_the_log() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let (status, out, err) = produce(&addr, &[], b"hello\nworld\n");
    assert!(status.success(), "{err}");
    assert_eq!(
        out,
        "Broker response: ACK offset:0\nBroker response: ACK offset:1\n"
    );
    assert_eq!(
        broker.log_bytes(),
        b"offset:0 message:hello\noffset:1 message:world\n"
    );
    // Empty lines are skipped; \r\n is fine; 'exit' is data when piped.
    let (status, out, _) = produce(&addr, &[], b"\r\na b \r\n\nexit\n");
    assert!(status.success());
    assert_eq!(
        out,
        "Broker response: ACK offset:2\nBroker response: ACK offset:3\n"
    );
}

#[test]
fn piped_producer_pipelines_twenty_thousand_lines() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let input: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let (status, out, err) = produce(&broker.addr.to_string(), &[], input.as_bytes());
    assert!(status.success(), "{err}");
    let expected: String = (0..20_000)
        .map(|i| format!("Broker response: ACK offset:{i}\n"))
        .collect();
    assert!(out == expected, "responses differ");
}

#[test]
fn producer_reports_errors_and_exits_non_zero() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &["--max-line-bytes", "20"]);
    let (status, out, _) = produce(
        &broker.addr.to_string(),
        &[],
        b"ok\nthis line is much too long\nok again\n",
    );
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        out,
        "Broker response: ACK offset:0\nBroker response: MESSAGE_TOO_LARGE 20\nBroker response: ACK offset:1\n"
    );
}

#[test]
fn producer_against_a_closed_port_fails_cleanly() {
    // Bind and drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (status, out, err) = produce(&addr, &[], b"hello\n");
    assert_eq!(status.code(), Some(1));
    assert!(out.is_empty());
    assert!(
        err.contains(&format!("cannot connect to broker at {addr}")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn consumer_prints_backlog_then_live_messages() {
    let (tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE hello"), "ACK offset:0");
    assert_eq!(c.request("PRODUCE world"), "ACK offset:1");
    let addr = broker.addr.to_string();
    let consumer = Consumer::start(&addr, &[], tmp.path().join("c1.err"));
    consumer.expect_lines(&[
        "Consumer started. Waiting for data...".into(),
        format!("Connected to broker at {addr}"),
        consumed("hello", 0),
        consumed("world", 1),
    ]);
    let started = Instant::now();
    assert_eq!(c.request("PRODUCE live one"), "ACK offset:2");
    assert_eq!(consumer.line(), consumed("live one", 2));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "arrives promptly"
    );

    let from = Consumer::start(&addr, &["--from", "1"], tmp.path().join("c2.err"));
    from.expect_lines(&[
        "Consumer started. Waiting for data...".into(),
        format!("Connected to broker at {addr}"),
        consumed("world", 1),
        consumed("live one", 2),
    ]);
}

#[test]
fn consumer_drains_a_large_backlog_in_order() {
    let (tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let input: String = (0..50_000).map(|i| format!("m{i}\n")).collect();
    let (status, _, err) = produce(&broker.addr.to_string(), &[], input.as_bytes());
    assert!(status.success(), "{err}");
    let consumer = Consumer::start(&broker.addr.to_string(), &[], tmp.path().join("c.err"));
    consumer.line();
    consumer.line();
    for i in 0..50_000 {
        assert_eq!(consumer.line(), consumed(&format!("m{i}"), i));
    }
}

#[test]
fn consumer_reconnects_after_a_broker_restart_without_gaps_or_repeats() {
    let (tmp, dir) = temp_data_dir();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE a"), "ACK offset:0");
    let consumer = Consumer::start(&addr, &[], tmp.path().join("c.err"));
    consumer.expect_lines(&[
        "Consumer started. Waiting for data...".into(),
        format!("Connected to broker at {addr}"),
        consumed("a", 0),
    ]);
    let (status, _) = broker.signal_and_wait("TERM");
    assert!(status.success());
    drop(c);
    let broker = BrokerProcess::start_on(&dir, &addr, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE b"), "ACK offset:1");
    assert_eq!(c.request("PRODUCE c"), "ACK offset:2");
    consumer.expect_lines(&[
        format!("Connected to broker at {addr}"),
        consumed("b", 1),
        consumed("c", 2),
    ]);
    consumer.expect_quiet(Duration::from_millis(300));
    let err = consumer.stderr();
    assert!(
        err.contains(&format!("broker at {addr}")) && err.contains("retrying in"),
        "{err}"
    );
}

#[test]
fn consumer_group_resumes_exactly_after_a_clean_stop() {
    let (tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let input: String = (0..3000).map(|i| format!("m{i}\n")).collect();
    assert!(
        produce(&addr, &["--topic", "jobs"], input.as_bytes())
            .0
            .success()
    );
    let args = ["--group", "workers", "--topic", "jobs"];
    let mut first = Consumer::start(&addr, &args, tmp.path().join("c1.err"));
    first.line();
    first.line();
    for i in 0..3000 {
        assert_eq!(first.line(), consumed(&format!("m{i}"), i));
    }
    first.stop();
    let mut c = broker.client();
    assert_eq!(c.request("USE jobs"), "USING jobs");
    assert_eq!(c.request("OFFSET workers"), "OFFSET workers 3000");
    assert_eq!(c.request("PRODUCE next"), "ACK offset:3000");
    let second = Consumer::start(&addr, &args, tmp.path().join("c2.err"));
    second.expect_lines(&[
        "Consumer started. Waiting for data...".into(),
        format!("Connected to broker at {addr}"),
        consumed("next", 3000),
    ]);
    second.expect_quiet(Duration::from_millis(300));
    // The default topic's group offset is separate.
    assert_eq!(c.request("USE default"), "USING default");
    assert_eq!(c.request("OFFSET workers"), "OFFSET workers 0");
}

#[test]
fn consumer_group_loses_nothing_after_a_crash() {
    let (tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let input: String = (0..5000).map(|i| format!("m{i}\n")).collect();
    assert!(produce(&addr, &[], input.as_bytes()).0.success());
    let mut first = Consumer::start(&addr, &["--group", "g"], tmp.path().join("c1.err"));
    first.line();
    first.line();
    for i in 0..2500 {
        assert_eq!(first.line(), consumed(&format!("m{i}"), i));
    }
    let _ = first.child.kill();
    let _ = first.child.wait();
    let mut c = broker.client();
    let committed: u64 = c
        .request("OFFSET g")
        .strip_prefix("OFFSET g ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(committed <= 5000);
    // At least once: it resumes at or before where it was killed.
    let second = Consumer::start(&addr, &["--group", "g"], tmp.path().join("c2.err"));
    second.line();
    second.line();
    for i in committed..5000 {
        assert_eq!(second.line(), consumed(&format!("m{i}"), i));
    }
}

#[test]
fn clients_authenticate_with_a_token_file() {
    let (tmp, dir) = temp_data_dir();
    let token = tmp.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let token = token.to_str().unwrap();
    let broker = BrokerProcess::start(&dir, &["--auth-token-file", token]);
    let addr = broker.addr.to_string();
    let (status, out, _) = produce(&addr, &["--auth-token-file", token], b"secret msg\n");
    assert!(status.success());
    assert_eq!(out, "Broker response: ACK offset:0\n");
    // Without a token: told to use --auth-token-file (it cannot send AUTH
    // from its prompt), before any message is taken.
    let hint = format!(
        "the broker at {addr} requires a token: give the file that holds it \
         with --auth-token-file PATH\n"
    );
    let (status, out, err) = produce(&addr, &[], b"no token\n");
    assert_eq!(status.code(), Some(1));
    assert_eq!(out, "");
    assert_eq!(err, format!("producer: {hint}"));
    let no_token = Command::new(CONSUMER)
        .args(["--addr", &addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&no_token.stderr),
        format!("consumer: {hint}")
    );
    // A wrong token is named as such.
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let (status, _, err) = produce(
        &addr,
        &["--auth-token-file", wrong.to_str().unwrap()],
        b"x\n",
    );
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        err,
        format!("producer: the broker at {addr} refused the token from --auth-token-file\n")
    );
    let consumer = Consumer::start(
        &addr,
        &["--auth-token-file", token],
        tmp.path().join("c.err"),
    );
    consumer.line();
    consumer.line();
    assert_eq!(consumer.line(), consumed("secret msg", 0));
}

/// A command run on a pseudo-terminal by util-linux `script`, so it sees
/// a terminal; what it prints (stdout and stderr) is collected.
struct Pty {
    child: Child,
    stdin: std::process::ChildStdin,
    snapshots: Receiver<String>,
    latest: String,
}

impl Pty {
    /// `None` (and the test is skipped) without `script`.
    fn start(command: &str) -> Option<Pty> {
        let has_script = Command::new("sh")
            .args(["-c", "command -v script"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !has_script {
            eprintln!("skipping: util-linux 'script' is not installed (needed for a pty)");
            return None;
        }
        let mut child = Command::new("script")
            .args(["-qfec", command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut all = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                use std::io::Read;
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        all.extend_from_slice(&chunk[..n]);
                        let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
                    }
                }
            }
        });
        Some(Pty {
            child,
            stdin,
            snapshots: rx,
            latest: String::new(),
        })
    }

    /// Waits until `needle` was printed `count` times in all.
    fn wait_for(&mut self, needle: &str, count: usize) {
        let deadline = Instant::now() + TIMEOUT;
        while self.latest.matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?} x{count}: {}",
                self.latest
            );
            if let Ok(text) = self.snapshots.recv_timeout(Duration::from_millis(100)) {
                self.latest = text;
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// Waits for a clean exit and for the last output to be read.
    fn wait_success(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status:?}: {}", self.latest);
                while let Ok(text) = self.snapshots.recv_timeout(TIMEOUT) {
                    self.latest = text;
                }
                return;
            }
            assert!(Instant::now() < deadline, "did not exit: {}", self.latest);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PROMPT: &str = "What do you want to add? (type 'exit' to quit): ";

#[test]
fn interactive_producer_prompts_like_the_original() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let Some(mut pty) = Pty::start(&format!("{PRODUCER} --addr {}", broker.addr)) else {
        return;
    };
    pty.wait_for(PROMPT, 1);
    pty.type_line("hello");
    pty.wait_for("Broker response: ACK offset:0", 1);
    pty.wait_for(PROMPT, 2);
    pty.type_line("EXIT");
    pty.wait_success();
    assert_eq!(
        pty.latest,
        format!("{PROMPT}hello\r\nBroker response: ACK offset:0\r\n{PROMPT}EXIT\r\n")
    );
    assert_eq!(broker.log_bytes(), b"offset:0 message:hello\n");
}

#[test]
fn interactive_producer_survives_a_broker_restart_and_keeps_the_typed_line() {
    let (_tmp, dir) = temp_data_dir();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let Some(mut pty) = Pty::start(&format!("{PRODUCER} --addr {addr}")) else {
        return;
    };
    pty.wait_for(PROMPT, 1);
    pty.type_line("one");
    pty.wait_for("Broker response: ACK offset:0", 1);
    pty.wait_for(PROMPT, 2);
    let (status, _) = broker.signal_and_wait("TERM");
    assert!(status.success());
    // Typed while the broker is down: the producer notices, says so on
    // stderr, and keeps trying.
    pty.type_line("two");
    pty.wait_for(&format!("producer: lost connection to broker at {addr}"), 1);
    pty.wait_for("reconnecting", 1);
    let broker = BrokerProcess::start_on(&dir, &addr, &[]);
    pty.wait_for(&format!("producer: reconnected to broker at {addr}"), 1);
    pty.wait_for("Broker response: ACK offset:1", 1);
    pty.wait_for(PROMPT, 3);
    pty.type_line("exit");
    pty.wait_success();
    assert_eq!(
        broker.log_bytes(),
        b"offset:0 message:one\noffset:1 message:two\n"
    );
}

/// A running producer with piped stdin; its stdout and stderr lines arrive
/// on channels.
struct PipedProducer {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    out: Receiver<String>,
    err: Receiver<String>,
}

impl PipedProducer {
    fn start(args: &[&str]) -> PipedProducer {
        let mut child = Command::new(PRODUCER)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |source: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(source).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().unwrap()));
        let err = lines(Box::new(child.stderr.take().unwrap()));
        PipedProducer {
            stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }

    /// Waits for a stderr line containing `needle`.
    fn stderr_until(&self, needle: &str) {
        loop {
            let line = self
                .err
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|_| panic!("no stderr line with {needle:?}"));
            if line.contains(needle) {
                return;
            }
        }
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "producer did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PipedProducer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line still to come from an exited process's pipe.
fn rest_of(lines: &Receiver<String>) -> Vec<String> {
    let mut rest = Vec::new();
    // Ends when the reader thread sees the pipe close.
    while let Ok(line) = lines.recv_timeout(TIMEOUT) {
        rest.push(line);
    }
    rest
}

/// The messages in a data dir's default log, in order.
fn logged_messages(broker: &BrokerProcess) -> Vec<String> {
    String::from_utf8(broker.log_bytes())
        .unwrap()
        .lines()
        .map(|l| l.split_once(" message:").unwrap().1.to_string())
        .collect()
}

#[test]
fn piped_producer_resends_across_a_broker_restart_and_loses_nothing() {
    const LINES: usize = 200_000;
    const MAX_IN_FLIGHT: usize = 4096;
    let (_tmp, dir) = temp_data_dir();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let mut producer = PipedProducer::start(&["--addr", &addr]);
    let mut stdin = producer.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut chunk = String::new();
        for i in 0..LINES {
            chunk.push_str(&format!("line {i}\n"));
            if chunk.len() > 4096 {
                stdin.write_all(chunk.as_bytes()).unwrap();
                chunk.clear();
            }
        }
        stdin.write_all(chunk.as_bytes()).unwrap();
        // Dropping stdin ends the input.
    });
    // Mid-stream: after 10,000 ACKs, while thousands are in flight.
    for i in 0..10_000 {
        assert_eq!(
            producer.out.recv_timeout(TIMEOUT).unwrap(),
            format!("Broker response: ACK offset:{i}")
        );
    }
    broker.kill9();
    producer.stderr_until("reconnecting");
    let broker = BrokerProcess::start_on(&dir, &addr, &[]);
    producer.stderr_until("reconnected");
    feeder.join().unwrap();
    let status = producer.wait();
    assert!(status.success(), "{status:?}");
    // One response per line, every one an ACK.
    let rest = rest_of(&producer.out);
    assert_eq!(rest.len(), LINES - 10_000);
    assert!(
        rest.iter()
            .all(|l| l.starts_with("Broker response: ACK offset:"))
    );
    // Every line is in the log, in order of first appearance; a line
    // appears twice only if it was in flight when the broker died.
    let logged = logged_messages(&broker);
    let mut seen = std::collections::HashSet::new();
    let mut firsts = Vec::new();
    for m in &logged {
        if seen.insert(m.clone()) {
            firsts.push(m.clone());
        }
    }
    let expected: Vec<String> = (0..LINES).map(|i| format!("line {i}")).collect();
    assert!(firsts == expected, "lines lost or reordered");
    let duplicates = logged.len() - LINES;
    assert!(duplicates <= MAX_IN_FLIGHT, "{duplicates} duplicates");
}

#[test]
fn producer_gives_up_after_its_retry_timeout() {
    let (_tmp, dir) = temp_data_dir();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let mut producer = PipedProducer::start(&["--addr", &addr, "--retry-timeout-ms", "300"]);
    let mut stdin = producer.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    assert_eq!(
        producer.out.recv_timeout(TIMEOUT).unwrap(),
        "Broker response: ACK offset:0"
    );
    broker.kill9();
    let status = producer.wait();
    assert_eq!(status.code(), Some(1));
    let err = rest_of(&producer.err);
    let last = err.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with(&format!("producer: cannot connect to broker at {addr}"))
            && last.contains("(--retry-timeout-ms); 0 lines sent were not acknowledged, and the rest of the input was not sent"),
        "{err:?}"
    );
}

/// Runs a consumer that is expected to exit on its own (--max-messages,
/// --timeout-ms); returns (exit code, stdout, stderr).
fn consume_until_exit(args: &[&str]) -> (Option<i32>, String, String) {
    let child = Command::new(CONSUMER)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("consumer {args:?} did not exit");
        }
    };
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn consumer_max_messages_and_format_make_it_scriptable() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    assert!(produce(&addr, &[], b"a\nb b\nc\nd\n").0.success());
    let (code, out, err) = consume_until_exit(&[
        "--addr",
        &addr,
        "--max-messages",
        "2",
        "--format",
        "{value}",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "a\nb b\n");
    // The start-up lines go to stderr when the format is not the default.
    assert_eq!(
        err,
        format!("Consumer started. Waiting for data...\nConnected to broker at {addr}\n")
    );
    let (code, out, _) = consume_until_exit(&[
        "--addr",
        &addr,
        "--from",
        "1",
        "--max-messages",
        "3",
        "--format",
        "{topic}/{partition}@{offset} key=[{key}] {{{value}}}",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "default/0@1 key=[] {b b}\ndefault/0@2 key=[] {c}\ndefault/0@3 key=[] {d}\n"
    );
    // The default output is the original's, start-up lines included.
    let (code, out, err) = consume_until_exit(&["--addr", &addr, "--max-messages", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!(
            "Consumer started. Waiting for data...\nConnected to broker at {addr}\n{}\n",
            consumed("a", 0)
        )
    );
    assert_eq!(err, "");
}

#[test]
fn consumer_timeout_ms_exits_after_the_backlog_or_a_quiet_spell() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    let input: String = (0..12_000).map(|i| format!("m{i}\n")).collect();
    assert!(produce(&addr, &[], input.as_bytes()).0.success());
    // 0: print everything there (several FETCH batches), then exit.
    let (code, out, err) =
        consume_until_exit(&["--addr", &addr, "--timeout-ms", "0", "--format", "{offset}"]);
    assert_eq!(code, Some(0), "{err}");
    let expected: String = (0..12_000).map(|i| format!("{i}\n")).collect();
    assert!(out == expected, "backlog differs");
    // Nothing new for 300 ms: exit 0 having printed nothing, not before.
    let started = Instant::now();
    let (code, out, _) = consume_until_exit(&[
        "--addr",
        &addr,
        "--from",
        "latest",
        "--timeout-ms",
        "300",
        "--format",
        "{value}",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(out, "");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // No broker at all: status 1 once the time is up, with the reason.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = format!("127.0.0.1:{port}");
    let (code, _, err) = consume_until_exit(&["--addr", &nobody, "--timeout-ms", "200"]);
    assert_eq!(code, Some(1));
    assert!(
        err.lines()
            .last()
            .unwrap_or("")
            .starts_with(&format!("consumer: cannot connect to broker at {nobody}"))
            && err.contains("no message for --timeout-ms 200"),
        "{err}"
    );
}

#[test]
fn consumer_from_latest_skips_the_backlog() {
    let (tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    assert!(
        produce(&addr, &["--topic", "t"], b"old 1\nold 2\n")
            .0
            .success()
    );
    let consumer = Consumer::start(
        &addr,
        &["--topic", "t", "--from", "latest"],
        tmp.path().join("c.err"),
    );
    consumer.expect_lines(&[
        "Consumer started. Waiting for data...".into(),
        format!("Connected to broker at {addr}"),
    ]);
    // It finds the end after printing "Connected"; once its FETCH is
    // parked there, a new message is past that end.
    let mut c = broker.client();
    let deadline = Instant::now() + TIMEOUT;
    while c.stat("fetches_parked") == 0 {
        assert!(Instant::now() < deadline, "the consumer never waited");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(c.request("USE t"), "USING t");
    assert_eq!(c.request("PRODUCE new"), "ACK offset:2");
    assert_eq!(consumer.line(), consumed("new", 2));
    consumer.expect_quiet(Duration::from_millis(200));
    // --from-beginning (Kafka's spelling) and --from earliest start at 0.
    for from in [&["--from-beginning"][..], &["--from", "earliest"]] {
        let mut args = vec!["--addr", &addr, "--topic", "t", "--timeout-ms", "0"];
        args.extend(from);
        let (code, out, _) = consume_until_exit(&args);
        assert_eq!(code, Some(0));
        assert_eq!(
            out,
            format!(
                "Consumer started. Waiting for data...\nConnected to broker at {addr}\n{}\n{}\n{}\n",
                consumed("old 1", 0),
                consumed("old 2", 1),
                consumed("new", 2)
            )
        );
    }
}

#[test]
fn consumer_group_with_max_messages_commits_what_it_printed() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    assert!(produce(&addr, &[], b"1\n2\n3\n4\n5\n").0.success());
    let args = [
        "--addr",
        &addr,
        "--group",
        "batch",
        "--max-messages",
        "2",
        "--format",
        "{value}",
    ];
    assert_eq!(consume_until_exit(&args).1, "1\n2\n");
    assert_eq!(consume_until_exit(&args).1, "3\n4\n");
    let mut c = broker.client();
    assert_eq!(c.request("OFFSET batch"), "OFFSET batch 4");
    // --from overrides the committed offset, as before.
    let mut from = args.to_vec();
    from.extend(["--from", "0"]);
    assert_eq!(consume_until_exit(&from).1, "1\n2\n");
}

#[test]
fn clients_take_a_bare_port_or_kafka_bootstrap_server() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let port = broker.addr.port().to_string();
    // A bare port means localhost:PORT.
    let (status, out, err) = produce(&port, &[], b"via port\n");
    assert!(status.success(), "{err}");
    assert_eq!(out, "Broker response: ACK offset:0\n");
    let (code, out, err) = consume_until_exit(&[
        "--bootstrap-server",
        &format!("localhost:{port}"),
        "--max-messages",
        "1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!(
            "Consumer started. Waiting for data...\nConnected to broker at localhost:{port}\n{}\n",
            consumed("via port", 0)
        )
    );
    let (code, out, _) = consume_until_exit(&["--addr", &port, "--max-messages", "1"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("Connected to broker at localhost:{port}\n")));
}

#[test]
fn consumer_stops_quietly_when_nobody_reads_its_output() {
    // `consumer | head -1`: once the pipe is closed, exit 0 without a
    // "Broken pipe" error.
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    assert!(produce(&addr, &[], b"one\ntwo\n").0.success());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = Command::new(CONSUMER)
        .args(["--addr", &addr])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(TIMEOUT)
        .expect("the consumer did not exit")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(out.status.success(), "{:?}", out.status);
}

/// Produces `count` messages `<tag>-<p>-<i>` into each partition of
/// `topic` over the text protocol.
fn produce_partitions(broker: &BrokerProcess, topic: &str, partitions: u32, count: u32, tag: &str) {
    let mut c = broker.client();
    let mut batch = String::new();
    for p in 0..partitions {
        batch.push_str(&format!("USE {topic}/{p}\n"));
        for i in 0..count {
            batch.push_str(&format!("PRODUCE {tag}-{p}-{i}\n"));
        }
    }
    c.send(&batch);
    for p in 0..partitions {
        assert_eq!(
            c.line(),
            if p == 0 {
                format!("USING {topic}")
            } else {
                format!("USING {topic}/{p}")
            }
        );
        for _ in 0..count {
            assert!(c.line().starts_with("ACK offset:"));
        }
    }
}

/// Collects `(partition, offset, value)` lines from consumers until
/// `total` lines arrived in all, failing after TIMEOUT.
fn collect(consumers: &[&Consumer], total: usize) -> Vec<Vec<(u32, u64, String)>> {
    let mut got: Vec<Vec<(u32, u64, String)>> = vec![Vec::new(); consumers.len()];
    let deadline = Instant::now() + TIMEOUT;
    while got.iter().map(Vec::len).sum::<usize>() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} messages; stderr: {:?}",
            got.iter().map(Vec::len).sum::<usize>(),
            consumers.iter().map(|c| c.stderr()).collect::<Vec<_>>()
        );
        for (i, c) in consumers.iter().enumerate() {
            while let Ok(line) = c.lines.recv_timeout(Duration::from_millis(5)) {
                let mut parts = line.splitn(3, ' ');
                let (Some(p), Some(o), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
                    panic!("unexpected line {line:?}");
                };
                got[i].push((p.parse().unwrap(), o.parse().unwrap(), v.to_string()));
            }
        }
    }
    got
}

/// Waits until the broker's group `group` has `members` members.
fn wait_members(broker: &BrokerProcess, group: &str, members: u64) {
    let mut c = broker.client();
    let deadline = Instant::now() + TIMEOUT;
    // Group membership changes on JOIN, LEAVE and disconnects the broker
    // sees; nothing announces them to a bystander, so poll STATS.
    loop {
        c.send("STATS\n");
        let prefix = format!("STAT group.{group}.members ");
        let now = c
            .lines_until("END")
            .iter()
            .find_map(|l| l.strip_prefix(&prefix).map(|n| n.parse::<u64>().unwrap()))
            .unwrap_or(0);
        if now == members {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} has {now} members, never {members}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

const GROUP_FORMAT: &[&str] = &["--format", "{partition} {offset} {value}"];

#[test]
fn two_consumers_in_a_group_split_a_topic_and_take_over_on_stop_and_kill() {
    let (tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    assert_eq!(broker.client().request("CREATE jobs 4"), "CREATED jobs");
    let args: Vec<&str> = ["--group", "workers", "--topic", "jobs"]
        .into_iter()
        .chain(GROUP_FORMAT.iter().copied())
        .collect();
    let mut a = Consumer::start(&addr, &args, tmp.path().join("a.err"));
    let b = Consumer::start(&addr, &args, tmp.path().join("b.err"));
    wait_members(&broker, "workers", 2);
    produce_partitions(&broker, "jobs", 4, 1000, "m");
    let got = collect(&[&a, &b], 4000);
    // Disjoint non-empty halves, every message exactly once.
    let parts = |v: &Vec<(u32, u64, String)>| {
        let mut p: Vec<u32> = v.iter().map(|(p, _, _)| *p).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    let (pa, pb) = (parts(&got[0]), parts(&got[1]));
    assert!(!pa.is_empty() && !pb.is_empty(), "{pa:?} {pb:?}");
    assert!(pa.iter().all(|p| !pb.contains(p)), "{pa:?} {pb:?}");
    let mut all: Vec<String> = got.concat().into_iter().map(|(_, _, v)| v).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4000, "every message exactly once");
    a.expect_quiet(Duration::from_millis(200));
    b.expect_quiet(Duration::from_millis(1));
    // Ctrl-C (SIGINT) a: it commits and leaves; b takes over its
    // partitions from the commits: the next 1000 messages, no repeats.
    Command::new("kill")
        .args(["-INT", &a.child.id().to_string()])
        .status()
        .unwrap();
    let status = a.child.wait().unwrap();
    assert!(status.success(), "{}", a.stderr());
    wait_members(&broker, "workers", 1);
    produce_partitions(&broker, "jobs", 4, 250, "n");
    let got = collect(&[&b], 1000);
    let mut values: Vec<String> = got[0].iter().map(|(_, _, v)| v.clone()).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 1000);
    assert!(
        values.iter().all(|v| v.starts_with("n-")),
        "nothing old repeated"
    );
    assert_eq!(parts(&got[0]), [0, 1, 2, 3]);
    // A third member joins; then b is killed with SIGKILL: the third takes
    // everything over, repeating at most what b had not committed.
    let c = Consumer::start(&addr, &args, tmp.path().join("c.err"));
    wait_members(&broker, "workers", 2);
    let mut b = b;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    wait_members(&broker, "workers", 1);
    produce_partitions(&broker, "jobs", 4, 100, "k");
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = std::collections::BTreeSet::new();
    while seen
        .iter()
        .filter(|v: &&String| v.starts_with("k-"))
        .count()
        < 400
    {
        assert!(
            Instant::now() < deadline,
            "the survivor did not get everything"
        );
        if let Ok(line) = c.lines.recv_timeout(Duration::from_millis(20)) {
            let v = line.splitn(3, ' ').nth(2).unwrap().to_string();
            assert!(v.starts_with("k-") || v.starts_with("n-"), "{line}");
            seen.insert(v);
        }
    }
}

#[test]
fn group_consumers_rejoin_after_a_broker_restart_and_a_new_member_resumes_from_commits() {
    let (tmp, dir) = temp_data_dir();
    let mut broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    assert_eq!(broker.client().request("CREATE jobs 4"), "CREATED jobs");
    let args: Vec<&str> = ["--group", "workers", "--topic", "jobs"]
        .into_iter()
        .chain(GROUP_FORMAT.iter().copied())
        .collect();
    let mut a = Consumer::start(&addr, &args, tmp.path().join("a.err"));
    let mut b = Consumer::start(&addr, &args, tmp.path().join("b.err"));
    wait_members(&broker, "workers", 2);
    produce_partitions(&broker, "jobs", 4, 500, "m");
    let got = collect(&[&a, &b], 2000);
    assert_eq!(unique_values(&got).len(), 2000);
    // The broker restarts under them: both reconnect, join again and go
    // on from where they were, repeating nothing they printed.
    let (status, _) = broker.signal_and_wait("TERM");
    assert!(status.success());
    let broker = BrokerProcess::start_on(&dir, &addr, &[]);
    wait_members(&broker, "workers", 2);
    produce_partitions(&broker, "jobs", 4, 250, "n");
    let got = collect(&[&a, &b], 1000);
    let values = unique_values(&got);
    assert_eq!(values.len(), 1000, "every new message exactly once");
    assert!(
        values.iter().all(|v| v.starts_with("n-")),
        "nothing old repeated"
    );
    a.expect_quiet(Duration::from_millis(200));
    b.expect_quiet(Duration::from_millis(1));
    // Both stop cleanly (committing); more arrives; a new member resumes
    // from the group's commits: exactly the messages nobody printed.
    for c in [&mut a, &mut b] {
        Command::new("kill")
            .args(["-INT", &c.child.id().to_string()])
            .status()
            .unwrap();
        assert!(c.child.wait().unwrap().success(), "{}", c.stderr());
    }
    wait_members(&broker, "workers", 0);
    produce_partitions(&broker, "jobs", 4, 100, "k");
    let c = Consumer::start(&addr, &args, tmp.path().join("c.err"));
    let got = collect(&[&c], 400);
    let values = unique_values(&got);
    assert_eq!(values.len(), 400);
    assert!(values.iter().all(|v| v.starts_with("k-")), "{values:?}");
    c.expect_quiet(Duration::from_millis(200));
}

/// The distinct values among collected lines.
fn unique_values(got: &[Vec<(u32, u64, String)>]) -> std::collections::BTreeSet<String> {
    got.iter().flatten().map(|(_, _, v)| v.clone()).collect()
}

#[test]
fn producer_and_consumer_address_one_partition() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();
    assert_eq!(broker.client().request("CREATE orders 3"), "CREATED orders");
    for p in ["0", "2"] {
        let input: String = (0..3).map(|i| format!("p{p}-{i}\n")).collect();
        let (status, _, err) = produce(
            &addr,
            &["--topic", "orders", "--partition", p],
            input.as_bytes(),
        );
        assert!(status.success(), "{err}");
    }
    let dump = |extra: &[&str]| {
        let out = Command::new(CONSUMER)
            .args(["--addr", &addr, "--topic", "orders", "--timeout-ms", "0"])
            .args(["--format", "{topic} {partition} {offset} {value}"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        dump(&["--partition", "2", "--from", "earliest"]),
        "orders 2 0 p2-0\norders 2 1 p2-1\norders 2 2 p2-2\n"
    );
    assert_eq!(
        dump(&[]),
        "orders 0 0 p0-0\norders 0 1 p0-1\norders 0 2 p0-2\n"
    );
    assert_eq!(dump(&["--partition", "1"]), "");
    assert_eq!(dump(&["--partition", "2", "--from", "latest"]), "");
    let out = Command::new(CONSUMER)
        .args(["--addr", &addr, "--topic", "orders", "--partition", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("topic orders has 3 partitions (0 to 2)"),
        "{err}"
    );
}
