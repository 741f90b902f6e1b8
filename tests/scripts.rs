//! Runs the shell scripts in `scripts/` against the test build of the broker
//! (`BROKER` is set to it, so the scripts build nothing).
//!
//! The scripts need `nc` from netcat-openbsd. Without it these tests fail,
//! saying so; they do not skip (`.ci/run` installs it).

mod common;

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{BROKER, BrokerProcess, temp_data_dir};

/// How long one script may run before the test stops it and fails.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// What a script run left behind.
struct Run {
    name: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "{} exited with {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.name, self.status, self.stdout, self.stderr
        )
    }

    fn assert_success(&self) {
        assert!(self.status.success(), "{}", self.describe());
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(self.status.code(), Some(code), "{}", self.describe());
    }
}

fn script_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Fails the test, with what to install, unless `nc` is netcat-openbsd.
fn require_nc() {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("nc").is_file()));
    assert!(
        on_path,
        "`nc` is not installed, and scripts/smoke.sh and scripts/load.sh need it: \
         install netcat-openbsd (Debian/Ubuntu: apt-get install netcat-openbsd)"
    );
    let help = Command::new("nc")
        .arg("-h")
        .stdin(Stdio::null())
        .output()
        .expect("run nc -h");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&help.stdout),
        String::from_utf8_lossy(&help.stderr)
    );
    assert!(
        text.contains("-N"),
        "this `nc` has no -N option, which the scripts need: \
         install netcat-openbsd (Debian/Ubuntu: apt-get install netcat-openbsd). \
         `nc -h` said:\n{text}"
    );
}

/// Sends `signal` to every process in group `pgid`; false if none is left.
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory
    // is involved.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// Waits until group `pgid` is empty; false if it is not within `timeout`.
fn wait_group_gone(pgid: libc::pid_t, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while signal_group(pgid, 0) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Runs `scripts/<name>` from a temp dir (not the repository) with `BROKER`
/// set to the test build and `TMPDIR` set to an empty dir, in its own
/// process group. Fails the test if it runs over `SCRIPT_TIMEOUT`, leaves
/// processes running, or leaves anything in its `TMPDIR`.
fn run_script(name: &str, args: &[&str]) -> Run {
    run_script_with(name, args, &[])
}

/// [`run_script`] with more environment variables.
fn run_script_with(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scratch = tmp.path().join("tmp");
    fs::create_dir(&scratch).expect("create TMPDIR");
    let stdout_path = tmp.path().join("stdout");
    let stderr_path = tmp.path().join("stderr");
    let path = script_path(name);
    let mut child = Command::new(&path)
        .args(args)
        .current_dir(tmp.path())
        .env("BROKER", BROKER)
        .env("TMPDIR", &scratch)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("create stdout file"))
        .stderr(File::create(&stderr_path).expect("create stderr file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    let pgid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    let Some(status) = status else {
        // The script's trap stops its broker on SIGTERM; SIGKILL if not.
        signal_group(pgid, libc::SIGTERM);
        if !wait_group_gone(pgid, Duration::from_secs(10)) {
            signal_group(pgid, libc::SIGKILL);
        }
        let _ = child.wait();
        panic!(
            "{name} {args:?} still running after {SCRIPT_TIMEOUT:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            read(&stdout_path),
            read(&stderr_path)
        );
    };
    let run = Run {
        name: format!("{name} {args:?}"),
        status,
        stdout: read(&stdout_path),
        stderr: read(&stderr_path),
    };
    let all_gone = wait_group_gone(pgid, Duration::from_secs(5));
    if !all_gone {
        signal_group(pgid, libc::SIGKILL);
    }
    assert!(all_gone, "processes left running by {}", run.describe());
    let left: Vec<_> = fs::read_dir(&scratch)
        .expect("read TMPDIR")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    assert!(
        left.is_empty(),
        "files left in TMPDIR: {left:?} by {}",
        run.describe()
    );
    run
}

#[test]
fn smoke_script_passes() {
    require_nc();
    let run = run_script("smoke.sh", &[]);
    run.assert_success();
    assert_eq!(run.stdout, "smoke: OK\n", "{}", run.describe());
}

#[test]
fn load_script_passes() {
    require_nc();
    let run = run_script("load.sh", &["-n", "20000", "-c", "4"]);
    run.assert_success();
    assert!(
        run.stdout
            .starts_with("load: 20000 messages over 4 connections in "),
        "{}",
        run.describe()
    );
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.describe());
}

#[test]
fn scripts_against_a_running_broker() {
    require_nc();
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &[]);
    let addr = broker.addr.to_string();

    let smoke = run_script("smoke.sh", &["--addr", &addr]);
    smoke.assert_success();
    assert_eq!(smoke.stdout, "smoke: OK\n", "{}", smoke.describe());

    let load = run_script("load.sh", &["-n", "5000", "-c", "3", "--addr", &addr]);
    load.assert_success();
    assert!(
        load.stdout
            .starts_with("load: 5000 messages over 3 connections in "),
        "{}",
        load.describe()
    );
    assert!(!load.stderr.contains("warning"), "{}", load.describe());

    // Exactly what the two scripts sent: 2 + 5000 messages.
    let log = broker.log_bytes();
    assert!(log.starts_with(b"offset:0 message:hello\noffset:1 message:world\n"));
    assert_eq!(log.iter().filter(|&&b| b == b'\n').count(), 5002);
}

#[test]
fn scripts_fail_when_no_broker_answers() {
    require_nc();
    // A port nobody listens on (bound, then released).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .to_string();
    let smoke = run_script("smoke.sh", &["--addr", &addr]);
    smoke.assert_code(1);
    assert!(
        smoke.stderr.contains("smoke: FAILED"),
        "{}",
        smoke.describe()
    );
    assert_eq!(smoke.stdout, "", "{}", smoke.describe());

    let load = run_script("load.sh", &["-n", "10", "--addr", &addr]);
    load.assert_code(1);
    assert!(
        load.stderr.contains("no broker answering"),
        "{}",
        load.describe()
    );
    assert_eq!(load.stdout, "", "{}", load.describe());
}

#[test]
fn scripts_print_usage_and_reject_bad_arguments() {
    for name in ["smoke.sh", "load.sh", "soak.sh"] {
        let help = run_script(name, &["-h"]);
        help.assert_success();
        assert!(
            help.stdout.starts_with(&format!("Usage: scripts/{name}")),
            "{}",
            help.describe()
        );
        run_script(name, &["--no-such-flag"]).assert_code(2);
    }
    for args in [
        &["-n", "0"][..],
        &["-n", "ten"],
        &["-c", "5", "-n", "2"],
        &["-s"],
        &["--addr", "no-port"],
    ] {
        let run = run_script("load.sh", args);
        run.assert_code(2);
        assert!(run.stderr.contains("Try "), "{}", run.describe());
    }
}

/// The soak test, briefly: a broker under producers, readers, committers,
/// slow and abusive clients and 3 restarts (SIGTERM, kill -9, both fsync
/// policies), checked against its model; then a final kill -9 and check.
/// The PING bound is looser than the script's default because this runs
/// the debug build, beside the other tests.
#[test]
fn soak_script_passes_briefly() {
    let run = run_script_with(
        "soak.sh",
        &["--seconds", "8", "--max-ping-p99-ms", "250"],
        &[("SOAK", env!("CARGO_BIN_EXE_soak"))],
    );
    run.assert_success();
    let summary = run.stdout.lines().next().unwrap_or_default();
    eprintln!("{summary}");
    assert!(summary.starts_with("soak: OK in "), "{}", run.describe());
    for part in [
        "messages acknowledged",
        "4 restarts (",
        "PING p50 ",
        "max RSS ",
    ] {
        assert!(summary.contains(part), "{part}: {}", run.describe());
    }
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.describe());
}

/// A bound the broker cannot meet (1 MiB of RSS) fails the soak with exit
/// status 1, names the violation and keeps the directory for a look.
#[test]
fn soak_fails_on_a_violation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(["--broker", BROKER, "--seconds", "1", "--max-rss-mib", "1"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .output()
        .expect("run soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.starts_with("soak: FAILED in "), "{stdout}{stderr}");
    assert!(
        stderr.contains("soak: violation: broker RSS "),
        "{stdout}{stderr}"
    );
    let kept: Vec<_> = fs::read_dir(tmp.path())
        .expect("read TMPDIR")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        stderr.contains(&kept[0].to_string_lossy().into_owned()),
        "{stderr}"
    );
}
