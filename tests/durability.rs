//! Durability and storage: fsync policies, segments, retention, corrupt
//! segments, a full disk, and a kill -9 crash suite.

mod common;

use std::io::{BufRead, Write};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{BrokerProcess, Client, TIMEOUT, temp_data_dir};

/// Every message of the current topic from `from`, via FETCH.
fn fetch_all(c: &mut Client, from: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        c.send(format!("FETCH {at} 10000\n"));
        let lines = c.lines_until("END");
        let next: u64 = lines
            .last()
            .unwrap()
            .strip_prefix("END offset:")
            .unwrap_or_else(|| panic!("{lines:?}"))
            .parse()
            .unwrap();
        for line in &lines[..lines.len() - 1] {
            let rest = line.strip_prefix("MESSAGE offset:").unwrap();
            let (offset, message) = rest.split_once(' ').unwrap();
            out.push((offset.parse().unwrap(), message.to_string()));
        }
        if next == at {
            return out;
        }
        at = next;
    }
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.starts_with("kafka_log.txt") && !n.ends_with(".index") && !n.ends_with(".tmp")
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_fsync_policy_acknowledges_and_serves() {
    for policy in ["always", "interval", "never"] {
        let (_tmp, dir) = temp_data_dir();
        let broker = BrokerProcess::start(&dir, &["--fsync", policy, "--fsync-interval-ms", "50"]);
        let mut c = broker.client();
        // Pipelined: with `always` these share syncs (group commit).
        let mut batch = String::new();
        for i in 0..2000 {
            batch.push_str(&format!("PRODUCE {policy}-{i}\n"));
        }
        c.send(&batch);
        for i in 0..2000 {
            assert_eq!(c.line(), format!("ACK offset:{i}"), "{policy}");
        }
        assert_eq!(
            c.request("CONSUME 1999"),
            format!("MESSAGE offset:1999 {policy}-1999")
        );
        assert_eq!(c.request("COMMIT g 2000"), "COMMITTED g 2000");
        let fsyncs = c.stat("fsyncs");
        match policy {
            "always" => assert!(
                (1..2000).contains(&fsyncs),
                "always: {fsyncs} syncs for 2000 pipelined messages"
            ),
            "never" => assert_eq!(fsyncs, 0),
            _ => {}
        }
    }
    // `interval` syncs on its timer without any further traffic.
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &["--fsync", "interval", "--fsync-interval-ms", "20"]);
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE x"), "ACK offset:0");
    let deadline = Instant::now() + TIMEOUT;
    while c.stat("fsyncs") == 0 {
        assert!(Instant::now() < deadline, "interval sync never ran");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn bad_durability_flags_are_refused() {
    for args in [
        &["--fsync", "sometimes"][..],
        &["--segment-bytes", "0"],
        &["--retention-hours", "-1"],
        &["--fsync-interval-ms", "x"],
    ] {
        let out = Command::new(common::BROKER).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn segments_roll_keep_the_active_name_and_survive_restart() {
    let (_tmp, dir) = temp_data_dir();
    let args = ["--segment-bytes", "200", "--fsync", "never"];
    {
        let broker = BrokerProcess::start(&dir, &args);
        let mut c = broker.client();
        for i in 0..50 {
            assert_eq!(
                c.request(&format!("PRODUCE m{i:02}")),
                format!("ACK offset:{i}")
            );
        }
        let names = file_names(&dir);
        assert!(names.len() > 5, "{names:?}");
        assert_eq!(names[0], "kafka_log.txt");
        assert_eq!(names[1], "kafka_log.txt.00000000000000000000");
        // The active file holds the newest messages, in the original format.
        let active = std::fs::read_to_string(dir.join("kafka_log.txt")).unwrap();
        assert!(active.ends_with("offset:49 message:m49\n"), "{active}");
        let all = fetch_all(&mut c, 0);
        assert_eq!(all.len(), 50);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, (o, m))| *o == i as u64 && *m == format!("m{i:02}"))
        );
        assert_eq!(c.request("CONSUME 7"), "MESSAGE offset:7 m07");
        assert_eq!(c.stat("topic.default.segments") as usize, names.len());
        // Even with `never`, rolled segments are synced in the background.
        let deadline = Instant::now() + TIMEOUT;
        while c.stat("fsyncs") < 1 {
            assert!(Instant::now() < deadline, "rolled segments never synced");
            thread::sleep(Duration::from_millis(5));
        }
    }
    let broker = BrokerProcess::start(&dir, &args);
    let mut c = broker.client();
    assert_eq!(c.request("CONSUME 3"), "MESSAGE offset:3 m03");
    assert_eq!(c.request("PRODUCE after"), "ACK offset:50");
    assert_eq!(fetch_all(&mut c, 0).len(), 51);
}

#[test]
fn retention_by_size_drops_old_segments_and_reads_below_answer_out_of_range() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(
        &dir,
        &["--segment-bytes", "200", "--retention-bytes", "600"],
    );
    let mut c = broker.client();
    for i in 0..100 {
        assert_eq!(
            c.request(&format!("PRODUCE m{i:02}")),
            format!("ACK offset:{i}")
        );
    }
    // Deletion happens on a helper thread; wait for the files to go. A file
    // listed may be deleted before it is measured: that counts as gone.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let total: u64 = file_names(&dir)
            .iter()
            .map(|n| match std::fs::metadata(dir.join(n)) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => panic!("{n}: {e}"),
            })
            .sum();
        if total <= 600 + 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never deleted: {total} bytes"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let first = c.stat("topic.default.first_offset");
    assert!(first > 0 && first < 100, "first offset {first}");
    assert_eq!(
        c.request("CONSUME 0"),
        format!("OFFSET_OUT_OF_RANGE first:{first}")
    );
    assert_eq!(
        c.request("FETCH 0 10"),
        format!("OFFSET_OUT_OF_RANGE first:{first}")
    );
    assert_eq!(
        c.request("SUBSCRIBE 0"),
        format!("OFFSET_OUT_OF_RANGE first:{first}")
    );
    assert_eq!(
        c.request(&format!("CONSUME {first}")),
        format!("MESSAGE offset:{first} m{first:02}")
    );
    c.send("TOPICS\n");
    assert_eq!(
        c.lines_until("END")[0],
        format!(
            "TOPIC default first:{first} next:100 bytes:{}",
            c.stat("topic.default.log_bytes")
        )
    );
    assert!(
        file_names(&dir).contains(&"kafka_log.txt".to_string()),
        "never the active segment"
    );
}

#[test]
fn retention_by_age_drops_segments_at_start() {
    let (_tmp, dir) = temp_data_dir();
    {
        let broker = BrokerProcess::start(&dir, &["--segment-bytes", "200"]);
        let mut c = broker.client();
        for i in 0..30 {
            assert_eq!(
                c.request(&format!("PRODUCE m{i:02}")),
                format!("ACK offset:{i}")
            );
        }
    }
    // Age every rolled segment by two hours.
    for name in file_names(&dir) {
        if name != "kafka_log.txt" {
            let status = Command::new("touch")
                .args(["-d", "2 hours ago"])
                .arg(dir.join(&name))
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let broker = BrokerProcess::start(&dir, &["--segment-bytes", "200", "--retention-hours", "1"]);
    let mut c = broker.client();
    let deadline = Instant::now() + TIMEOUT;
    while file_names(&dir).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "old segments not deleted: {:?}",
            file_names(&dir)
        );
        thread::sleep(Duration::from_millis(10));
    }
    let first = c.stat("topic.default.first_offset");
    assert!(first > 0);
    assert_eq!(
        c.request(&format!("CONSUME {first}")),
        format!("MESSAGE offset:{first} m{first:02}")
    );
}

#[test]
fn a_damaged_rolled_segment_is_refused_unless_skipped() {
    let (tmp, dir) = temp_data_dir();
    {
        let mut broker = BrokerProcess::start(&dir, &["--segment-bytes", "100"]);
        let mut c = broker.client();
        for i in 0..20 {
            assert_eq!(
                c.request(&format!("PRODUCE m{i:02}")),
                format!("ACK offset:{i}")
            );
        }
        // A clean stop seals every rolled segment (its index is written
        // once its data is on disk): damage to a sealed segment is refused,
        // never repaired.
        assert!(broker.signal_and_wait("TERM").0.success());
    }
    let names = file_names(&dir);
    let victim = dir.join(&names[2]);
    let content = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &content[..content.len() - 4]).unwrap();
    let out = common::run_expecting_refusal(&[
        "--addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--segment-bytes".as_ref(),
        "100".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&names[2]), "names the file: {err}");
    let broker = BrokerProcess::start(&dir, &["--segment-bytes", "100", "--skip-corrupt-segments"]);
    let mut c = broker.client();
    let first = c.stat("topic.default.first_offset");
    let skipped_to: u64 = names[3].rsplit('.').next().unwrap().parse().unwrap();
    assert_eq!(
        first, skipped_to,
        "the bad segment and older ones are skipped"
    );
    assert_eq!(
        c.request(&format!("CONSUME {first}")),
        format!("MESSAGE offset:{first} m{first:02}")
    );
    assert!(broker.stderr().contains("skipping"), "{}", broker.stderr());
    // Left for the operator, under a name no later start reads.
    assert!(!victim.exists());
    let aside = format!("{}.aside-", names[2]);
    assert!(
        std::fs::read_dir(&dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&aside)),
        "the skipped segment is set aside"
    );
    drop(tmp);
}

#[test]
fn corruption_inside_a_rolled_segment_is_reported_when_read() {
    let (_tmp, dir) = temp_data_dir();
    {
        let mut broker = BrokerProcess::start(&dir, &["--segment-bytes", "100"]);
        let mut c = broker.client();
        for i in 0..20 {
            assert_eq!(
                c.request(&format!("PRODUCE m{i:02}")),
                format!("ACK offset:{i}")
            );
        }
        // A clean stop seals every rolled segment (its index is written
        // once its data is on disk): damage to a sealed segment is refused,
        // never repaired.
        assert!(broker.signal_and_wait("TERM").0.success());
    }
    let names = file_names(&dir);
    let victim = dir.join(&names[1]); // offsets 0..4
    let mut content = std::fs::read(&victim).unwrap();
    let second_line = content.iter().position(|&b| b == b'\n').unwrap() + 1;
    content[second_line] = b'X';
    std::fs::write(&victim, &content).unwrap();
    // Start-up checks sizes against the index, not every byte, so it
    // starts...
    let broker = BrokerProcess::start(&dir, &["--segment-bytes", "100"]);
    let mut c = broker.client();
    // ...and a read in that segment fails with a clear error naming the
    // file and an offset, never the bytes.
    let reply = c.request("CONSUME 2");
    assert!(reply.starts_with("STORAGE_ERROR "), "{reply}");
    let log = broker.stderr();
    assert!(
        log.contains(&format!("{}:offset 0: checksum mismatch", victim.display())),
        "{log}"
    );
    assert!(
        !log.contains("Xffset"),
        "the damaged bytes are not logged: {log}"
    );
    assert_eq!(
        c.request("CONSUME 12"),
        "MESSAGE offset:12 m12",
        "other segments still serve"
    );
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_on_a_small_tmpfs() {
    let (tmp, _) = temp_data_dir();
    let mount = tmp.path().join("small");
    let Some(_fs) = Tmpfs::mount(&mount, "256k") else {
        eprintln!("skipping full_disk_on_a_small_tmpfs: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = mount.join("data");
    let broker = BrokerProcess::start(&dir, &[]);
    let mut c = broker.client();
    let payload = "d".repeat(1000);
    let mut acked = 0u64;
    loop {
        let reply = c.request(&format!("PRODUCE {payload}"));
        if reply == format!("ACK offset:{acked}") {
            acked += 1;
            assert!(acked < 10_000, "the disk never filled");
            continue;
        }
        assert!(reply.starts_with("STORAGE_ERROR "), "{reply}");
        assert!(reply.contains("No space left"), "{reply}");
        break;
    }
    assert!(acked > 10);
    // Reads go on; the failed message left no partial line behind.
    assert_eq!(
        c.request("CONSUME 0"),
        format!("MESSAGE offset:0 {payload}")
    );
    assert_eq!(c.request(&format!("CONSUME {acked}")), "NO_MESSAGE");
    let log = broker.log_bytes();
    assert!(log.ends_with(b"\n"));
    assert_eq!(log.iter().filter(|&&b| b == b'\n').count() as u64, acked);
    assert!(
        c.request(&format!("PRODUCE {payload}"))
            .starts_with("STORAGE_ERROR ")
    );
    // Space comes back (the filesystem grows): produce works again
    // without a restart.
    let status = Command::new("mount")
        .args(["-o", "remount,size=1m"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(c.request("PRODUCE back"), format!("ACK offset:{acked}"));
    assert_eq!(
        c.request(&format!("CONSUME {acked}")),
        format!("MESSAGE offset:{acked} back")
    );
}

/// A tiny deterministic generator (xorshift) for crash timings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Commits the highest offset it has seen acknowledged, until killed.
fn committer(addr: std::net::SocketAddr, high: Arc<AtomicU64>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let Ok(stream) = std::net::TcpStream::connect(addr) else {
            return 0;
        };
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut committed = 0;
        loop {
            let offset = high.load(Ordering::Relaxed);
            if writer
                .write_all(format!("COMMIT g {offset}\n").as_bytes())
                .is_err()
            {
                return committed;
            }
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => return committed,
            }
            if line.starts_with("COMMITTED") {
                committed = offset;
            }
            thread::sleep(Duration::from_millis(2));
        }
    })
}

/// The seed for the crash suites: fixed, so a failure can be repeated;
/// `CRASH_SEED=<n>` picks another.
fn crash_seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de)
        | 1
}

/// Rounds of: load from 3 pipelined producers and a committer, `kill -9`
/// at a random moment *while acknowledgements are still arriving*, restart,
/// and check. Each round checks what is new since the last round (fetched
/// from where the previous check ended) plus a sample of older offsets, so
/// a round costs what it added, not the whole log.
fn crash_rounds(policy: &str, rounds: usize) {
    let seed = crash_seed();
    eprintln!("crash suite policy={policy} seed={seed} (CRASH_SEED to change)");
    let mut rng = Rng(seed);
    let (_tmp, dir) = temp_data_dir();
    let args = ["--fsync", policy, "--segment-bytes", "65536"];
    // Every message stored so far, by offset, as the last check read it.
    let mut stored: Vec<String> = Vec::new();
    let mut last_committed = 0;
    for round in 0..rounds {
        let ctx = format!("policy={policy} seed={seed} round={round}");
        let base = stored.len() as u64;
        let mut broker = BrokerProcess::start(&dir, &args);
        let acks = Arc::new(AtomicUsize::new(0));
        // Start from what earlier rounds reached, so the group never moves
        // back.
        let high = Arc::new(AtomicU64::new(base));
        let producers: Vec<_> = (0..3)
            .map(|id| {
                common::pipelined_producer(broker.addr, round * 10 + id, 2_000_000, acks.clone())
            })
            .collect();
        let committer = committer(broker.addr, high.clone());
        let deadline = Instant::now() + TIMEOUT;
        while acks.load(Ordering::Relaxed) < 100 {
            assert!(Instant::now() < deadline, "{ctx}: no progress");
            thread::sleep(Duration::from_millis(1));
        }
        let until = Instant::now() + Duration::from_millis(rng.next() % 100);
        loop {
            // Keep the committer's target at an offset surely readable.
            let now_acked = acks.load(Ordering::Relaxed);
            high.store(base + now_acked as u64 / 2, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(1));
            // Kill only while acknowledgements still arrive: under load.
            if Instant::now() >= until && acks.load(Ordering::Relaxed) > now_acked {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ctx}: load stopped before the kill"
            );
        }
        broker.kill9();
        let mut acked: Vec<(u64, String)> = Vec::new();
        for p in producers {
            acked.extend(p.join().unwrap());
        }
        last_committed = last_committed.max(committer.join().unwrap());

        // Restart and check what is new, and a sample of the rest.
        let broker = BrokerProcess::start(&dir, &args);
        let mut c = broker.client();
        let new = fetch_all(&mut c, base);
        assert!(
            new.iter()
                .enumerate()
                .all(|(i, (o, _))| *o == base + i as u64),
            "{ctx}: offsets not contiguous from {base}"
        );
        stored.extend(new.into_iter().map(|(_, m)| m));
        if policy == "always" {
            for (offset, message) in &acked {
                assert_eq!(
                    stored.get(*offset as usize).map(String::as_str),
                    Some(message.as_str()),
                    "{ctx}: acknowledged offset {offset} lost"
                );
            }
        }
        for _ in 0..20 {
            if stored.is_empty() {
                break;
            }
            let o = rng.next() % stored.len() as u64;
            assert_eq!(
                c.request(&format!("CONSUME {o}")),
                format!("MESSAGE offset:{o} {}", stored[o as usize]),
                "{ctx}: an older message changed"
            );
        }
        // Segments roll under every policy (a sync always in flight must
        // not hold the active segment open forever).
        let active = std::fs::metadata(dir.join("kafka_log.txt")).unwrap().len();
        assert!(
            active <= 2 * 65536,
            "{ctx}: active segment grew to {active} bytes"
        );
        let committed: u64 = c
            .request("OFFSET g")
            .strip_prefix("OFFSET g ")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            committed <= stored.len() as u64,
            "{ctx}: committed offset {committed} past the log end {}",
            stored.len()
        );
        if policy == "always" {
            assert!(
                committed >= last_committed,
                "{ctx}: acknowledged commit {last_committed} lost ({committed})"
            );
        }
    }
}

#[test]
fn crash_suite_fsync_always_loses_nothing_acknowledged() {
    crash_rounds("always", 20);
}

#[test]
fn crash_suite_fsync_interval_stays_contiguous() {
    crash_rounds("interval", 20);
}
