//! A broker that has printed `Broker started on HOST:PORT` must stop
//! cleanly on SIGTERM (README: "SIGINT and SIGTERM stop the broker
//! cleanly: it stops accepting, writes and syncs the log, and exits 0").
//! Scripts, tests and service managers send SIGTERM as soon as they have
//! read that line.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{BROKER, read_first_line, temp_data_dir};

/// Found while writing the Kafka client tests: `src/bin/broker.rs` prints
/// the start line before `Server::run` installs the SIGINT/SIGTERM
/// handlers, so a SIGTERM sent on reading it kills the broker by the
/// signal (1 to 26 starts in 100 on the 2-core machine, depending on how fast the signal follows), and once in about a
/// hundred the broker caught it and yet kept running (seen: still serving
/// 10 minutes later). tests/cli.rs `no_command_line_makes_a_binary_panic`
/// fails now and then for the same reason (`unix_wait_status(15)`).
#[test]
fn sigterm_right_after_the_start_line_is_a_clean_stop() {
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        let (_tmp, dir) = temp_data_dir();
        let mut child = Command::new(BROKER)
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn broker");
        let line =
            read_first_line(child.stdout.take().unwrap(), common::TIMEOUT).expect("start line");
        assert!(line.starts_with("Broker started on "), "{line}");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        let outcome = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break format!("{status:?}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break "still running 5 s after SIGTERM".to_string();
            }
            thread::sleep(Duration::from_millis(5));
        };
        outcomes.push(outcome);
    }
    let bad: Vec<&String> = outcomes
        .iter()
        .filter(|o| o.as_str() != "ExitStatus(unix_wait_status(0))")
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} starts did not exit 0 on SIGTERM: {bad:?}",
        bad.len(),
        outcomes.len()
    );
}
