//! The descriptor budget (issue 11, item 4): with many more partitions
//! than log files may stay open, idle files close least recently used
//! first, so the broker stays within its open file limit while every
//! partition is written, read back, and read back again after a restart.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{BrokerProcess, Client, TIMEOUT, temp_data_dir};

/// The process's open file limit (soft and hard).
const NOFILE: usize = 128;
/// Clients the broker is told to serve: with 64 reserved, files get 48.
const CONNECTIONS: usize = 16;
const FILES: u64 = 48;
const TOPICS: usize = 300;
/// Client threads, each with its share of the topics.
const CLIENTS: usize = 4;

fn start(dir: &Path, fsync: &str) -> BrokerProcess {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={NOFILE}"))
        .arg("--")
        .arg(common::BROKER)
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--max-connections", &CONNECTIONS.to_string()])
        .args(["--fsync", fsync]);
    BrokerProcess::spawn(command, dir)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Samples the broker's open descriptors until dropped; `max()` is the
/// most seen.
struct FdWatch {
    max: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FdWatch {
    fn start(pid: u32) -> FdWatch {
        let max = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (max, stop) = (max.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    max.fetch_max(open_fds(pid), Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(1));
                }
            })
        };
        FdWatch {
            max,
            stop,
            thread: Some(thread),
        }
    }

    fn max(&mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.max.load(Ordering::Relaxed)
    }
}

/// Runs `f(client, topic)` for every topic, `CLIENTS` clients at once.
fn each_topic(broker: &BrokerProcess, f: impl Fn(&mut Client, usize) + Send + Sync + Copy) {
    thread::scope(|s| {
        for c in 0..CLIENTS {
            let mut client = broker.client();
            s.spawn(move || {
                for t in (c..TOPICS).step_by(CLIENTS) {
                    f(&mut client, t);
                }
            });
        }
    });
}

fn read_back(c: &mut Client, t: usize) {
    assert_eq!(c.request(&format!("USE t{t}")), format!("USING t{t}"));
    assert_eq!(c.request("CONSUME 0"), format!("MESSAGE offset:0 m{t}-a"));
    assert_eq!(c.request("CONSUME 1"), format!("MESSAGE offset:1 m{t}-b"));
    assert_eq!(c.request("CONSUME 2"), "NO_MESSAGE");
}

/// Waits until the broker's log files are back within their budget (idle
/// ones close once synced) and returns how many are open.
fn settled_log_files(c: &mut Client) -> u64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let open = c.stat("log_files_open");
        if open <= FILES || Instant::now() > deadline {
            return open;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn many_more_partitions_than_open_files_stay_within_the_limit() {
    for fsync in ["interval", "always"] {
        let (_tmp, dir) = temp_data_dir();
        let mut broker = start(&dir, fsync);
        let log = broker.stderr();
        assert!(
            log.contains(&format!(
                "descriptors limit={NOFILE} connections={CONNECTIONS} files={FILES}"
            )),
            "{log}"
        );
        let mut watch = FdWatch::start(broker.pid());
        each_topic(&broker, |c, t| {
            assert_eq!(c.request(&format!("CREATE t{t}")), format!("CREATED t{t}"));
            assert_eq!(c.request(&format!("USE t{t}")), format!("USING t{t}"));
            assert_eq!(c.request(&format!("PRODUCE m{t}-a")), "ACK offset:0");
            assert_eq!(c.request(&format!("PRODUCE m{t}-b")), "ACK offset:1");
        });
        each_topic(&broker, read_back);
        let mut c = broker.client();
        let open = settled_log_files(&mut c);
        assert!(open <= FILES, "{fsync}: {open} log files still open");
        assert!(c.stat("log_files_closed") > 0);
        let max = watch.max();
        eprintln!("{fsync}: at most {max} descriptors open");
        assert!(max < NOFILE, "{fsync}: {max} descriptors open at once");
        drop(c);
        assert!(broker.signal_and_wait("TERM").0.success());
        assert!(
            !broker.stderr().contains("Too many open files"),
            "{}",
            broker.stderr()
        );

        // Restart on the same limit: every partition is recovered (and
        // its files closed again), and reads back exactly.
        let mut broker = start(&dir, fsync);
        let mut watch = FdWatch::start(broker.pid());
        each_topic(&broker, read_back);
        let mut c = broker.client();
        assert_eq!(c.stat("topics"), TOPICS as u64 + 1);
        let open = settled_log_files(&mut c);
        assert!(
            open <= FILES,
            "{fsync}: {open} log files open after restart"
        );
        let max = watch.max();
        eprintln!("{fsync}: at most {max} descriptors open after the restart");
        assert!(max < NOFILE, "{fsync}: {max} descriptors after the restart");
        drop(c);
        assert!(broker.signal_and_wait("TERM").0.success());
    }
}

/// Found in review: a burst of writes to hundreds of new partitions at
/// once, over the file budget, ran the process out of descriptors; a
/// helper then could not open a directory to sync it, that was taken for
/// a failed sync, and under `--fsync interval` the log stopped taking
/// writes until a restart. A sync that could not open its directory did
/// not run, and now runs again later: writes refused while descriptors
/// are short (`STORAGE_ERROR ... Too many open files`) succeed once they
/// are back, and no log becomes read-only.
#[test]
fn a_burst_over_the_budget_makes_no_log_read_only() {
    let (_tmp, dir) = temp_data_dir();
    let mut broker = start(&dir, "interval");
    let mut c = broker.client();
    let mut burst = String::new();
    for t in 0..TOPICS {
        burst.push_str(&format!("USE t{t}\nPRODUCE first\n"));
    }
    c.send(burst);
    let mut refused = 0;
    for t in 0..TOPICS {
        assert_eq!(c.line(), format!("USING t{t}"));
        let reply = c.line();
        if reply != "ACK offset:0" {
            assert!(
                reply.starts_with("STORAGE_ERROR ") && reply.contains("Too many open files"),
                "t{t}: {reply}"
            );
            refused += 1;
        }
    }
    eprintln!("{refused} of {TOPICS} refused in the burst");
    // Every partition takes writes again once the burst is over.
    for t in 0..TOPICS {
        assert_eq!(c.request(&format!("USE t{t}")), format!("USING t{t}"));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let reply = c.request("PRODUCE second");
            if reply.starts_with("ACK offset:") {
                break;
            }
            assert!(
                !reply.contains("a sync of this log failed") && Instant::now() < deadline,
                "t{t}: {reply}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    drop(c);
    assert!(broker.signal_and_wait("TERM").0.success());
    let log = broker.stderr();
    assert!(
        !log.contains("takes no writes since a sync failed"),
        "{log}"
    );
}
