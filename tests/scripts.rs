//! Runs the shell scripts in scripts/ against the test build of the broker,
//! so the commands the README shows keep working.

use std::process::Command;

fn run_script(script: &str, args: &[&str]) -> (bool, String) {
    let has_nc = Command::new("sh")
        .args(["-c", "command -v nc"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        has_nc,
        "nc is not installed; install netcat-openbsd (.ci/run does this)"
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/{script}"))
        .args(args)
        .env("BROKER", env!("CARGO_BIN_EXE_broker"))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn smoke_script_passes() {
    let (ok, out) = run_script("smoke.sh", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("smoke: OK"), "{out}");
}

#[test]
fn load_script_reports_throughput_and_checks_offsets() {
    let (ok, out) = run_script("load.sh", &["-n", "20000", "-c", "4"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("load: 20000 messages over 4 connections in "),
        "{out}"
    );
    assert!(out.contains(" msg/s"), "{out}");
}

#[test]
fn scripts_reject_bad_arguments() {
    let (ok, out) = run_script("load.sh", &["-n", "lots"]);
    assert!(!ok, "{out}");
    let (ok, out) = run_script("smoke.sh", &["--bogus"]);
    assert!(!ok, "{out}");
}
