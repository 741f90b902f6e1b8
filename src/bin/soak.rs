//! `soak`: a soak test of a real broker. See `soak --help` and
//! `scripts/soak.sh`.
//!
//! It starts the broker in a fresh directory on `127.0.0.1:0`, runs a mix
//! of clients against it for a while (pipelined producers, long-polling
//! `FETCH` readers, `SUBSCRIBE` readers, committers, slow and abusive
//! clients, a `PING` prober, a memory sampler) across topics with
//! partitions, restarts the broker now and then (SIGTERM and `kill -9`,
//! `--fsync always` and `interval`), and keeps a model of what must be
//! true: every acknowledged message is stored with its bytes at its
//! acknowledged offset, offsets are contiguous, what a reader saw stays,
//! committed offsets never go back past an acknowledged `COMMITTED`,
//! memory and `PING` latency stay under their bounds. It prints a summary
//! and exits 1 on any violation (2 for a bad command line).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
Usage: soak --broker PATH [--seconds N | --minutes N] [--seed N]
            [--max-rss-mib N] [--max-ping-p99-ms N]

Starts the broker at PATH on 127.0.0.1:0 in a fresh directory under
$TMPDIR, loads it with producers, FETCH and SUBSCRIBE readers, committers,
slow and abusive clients over several topics and partitions, restarts it
(SIGTERM and kill -9, --fsync always and interval), and checks a model:
every acknowledged message readable at its offset with its bytes (after
restarts too), offsets contiguous, committed offsets never behind an
acknowledged COMMITTED, RSS and PING p99 under their bounds.
Prints one summary line; exits 0 if all held, 1 on any violation (the data
directory is then kept and named), 2 for a bad command line.

Options:
  --broker PATH   the broker binary
  --seconds N     how long to run [default: 60]
  --minutes N     the same in minutes
  --seed N        seed for the random choices [default: from the clock]
  --max-rss-mib N          bound on the broker's VmRSS [default: 64]
  --max-ping-p99-ms N      bound on the p99 latency of a PING on a fresh
                           connection, connect included [default: 100]
";

/// Default bounds the run checks (see --max-rss-mib, --max-ping-p99-ms).
const MAX_RSS_MIB: u64 = 64;
const MAX_PING_P99_MS: u64 = 100;
/// Longest any reply may take while the broker is up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_LINE_BYTES: usize = 4096;
/// Partitions used: topic, partition.
const PARTITIONS: &[(&str, u32)] = &[
    ("default", 0),
    ("s1", 0),
    ("s1", 1),
    ("s1", 2),
    ("s1", 3),
    ("s2", 0),
    ("s2", 1),
    ("s3", 0),
];

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}\nTry 'soak --help'.");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: FAILED: {e}");
            ExitCode::from(1)
        }
    }
}

struct Args {
    broker: PathBuf,
    duration: Duration,
    seed: u64,
    max_rss_bytes: u64,
    max_ping_p99: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut broker = None;
    let mut duration = Duration::from_secs(60);
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut max_rss_mib = MAX_RSS_MIB;
    let mut max_ping_p99_ms = MAX_PING_P99_MS;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{name}: invalid value {v:?}: a positive number"))
        };
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--broker" => broker = Some(PathBuf::from(value("--broker")?)),
            "--seconds" => duration = Duration::from_secs(number(&arg, value(&arg)?)?),
            "--minutes" => duration = Duration::from_secs(60 * number(&arg, value(&arg)?)?),
            "--seed" => seed = number(&arg, value(&arg)?)?,
            "--max-rss-mib" => max_rss_mib = number(&arg, value(&arg)?)?,
            "--max-ping-p99-ms" => max_ping_p99_ms = number(&arg, value(&arg)?)?,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let broker = broker.ok_or("--broker is required")?;
    Ok(Args {
        broker,
        duration,
        seed,
        max_rss_bytes: max_rss_mib << 20,
        max_ping_p99: Duration::from_millis(max_ping_p99_ms),
    })
}

// ----- randomness -------------------------------------------------------------

/// xorshift64*: enough for choosing what to do next.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ----- the broker process -----------------------------------------------------

/// Where clients find the broker, and a count of restarts begun, so that a
/// client can tell a broken connection caused by a restart from a fault.
struct Shared {
    addr: Mutex<Option<SocketAddr>>,
    up: Condvar,
    /// Bumped when a restart begins and when it ends.
    epoch: AtomicU64,
    stop: AtomicBool,
    pid: AtomicU64,
}

impl Shared {
    /// The broker's address, waiting (bounded) while it restarts.
    fn addr(&self) -> Option<SocketAddr> {
        let guard = self.addr.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .up
            .wait_timeout_while(guard, Duration::from_secs(30), |a| {
                a.is_none() && !self.stop.load(Ordering::Relaxed)
            })
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
}

struct Broker {
    child: Child,
    /// Closed when the broker's stdout reaches its end: it exited.
    exited: std::sync::mpsc::Receiver<()>,
}

fn start_broker(binary: &Path, dir: &Path, always: bool) -> Result<(Broker, SocketAddr), String> {
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("broker.stderr"))
        .map_err(|e| format!("broker.stderr: {e}"))?;
    let mut child = Command::new(binary)
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--max-line-bytes", &MAX_LINE_BYTES.to_string()])
        .args(["--segment-bytes", "262144", "--fsync-interval-ms", "200"])
        .args(["--fsync", if always { "always" } else { "interval" }])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // The first line, read on a thread so a silent broker cannot hang us.
    let (tx, rx) = std::sync::mpsc::channel();
    let (exited_tx, exited) = std::sync::mpsc::channel::<()>();
    thread::spawn(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep the pipe drained until the broker exits; then `exited_tx`
        // is dropped, which is the signal.
        let _ = io::copy(&mut reader, &mut io::sink());
        drop(exited_tx);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    let addr = line
        .trim_end()
        .strip_prefix("Broker started on ")
        .and_then(|a| a.parse::<SocketAddr>().ok());
    match addr {
        Some(addr) => Ok((Broker { child, exited }, addr)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "the broker did not start (first line {line:?}); its log:\n{}",
                tail(&dir.join("broker.stderr"))
            ))
        }
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Stops the broker: SIGTERM (must exit 0 within 20 s) or SIGKILL.
fn stop_broker(broker: &mut Broker, kill: bool) -> Result<(), String> {
    if kill {
        let _ = broker.child.kill();
        let _ = broker.child.wait();
        return Ok(());
    }
    let pid = libc::pid_t::try_from(broker.child.id()).map_err(|e| e.to_string())?;
    // SAFETY: kill(2) on our own child; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let gone = broker.exited.recv_timeout(Duration::from_secs(20));
    if matches!(gone, Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
        let _ = broker.child.kill();
        let _ = broker.child.wait();
        return Err("the broker did not exit within 20 s of SIGTERM".into());
    }
    match broker.child.wait() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("the broker exited with {status} on SIGTERM")),
        Err(e) => Err(format!("waiting for the broker: {e}")),
    }
}

// ----- the model ----------------------------------------------------------------

type Part = (String, u32);

/// Messages are kept as hashes (never 0), by offset: 8 bytes each.
#[derive(Default)]
struct PartModel {
    /// Acknowledged: `acked[offset]`, 0 where none was.
    acked: Vec<u64>,
    /// What readers saw, likewise.
    seen: Vec<u64>,
}

/// Most offsets the model follows in one partition (a wild offset from a
/// faulty broker must not make it allocate without bound).
const MAX_MODEL_OFFSETS: u64 = 100_000_000;

#[derive(Default)]
struct Model {
    parts: HashMap<Part, PartModel>,
    /// Messages sent whose ACK never came (a restart broke the connection):
    /// they may or may not be stored.
    in_doubt: HashSet<u64>,
    /// Messages that must never be stored (an unterminated last line).
    never: HashSet<u64>,
    /// The last acknowledged COMMITTED per (partition, group).
    committed: HashMap<(Part, String), u64>,
    violations: Vec<String>,
    produced: u64,
    read: u64,
    commits: u64,
    abusive: u64,
    pings: Vec<Duration>,
    max_rss: u64,
}

type Ctx = (Arc<Shared>, Arc<Mutex<Model>>);

/// A message's hash in the model (never 0).
fn hash(message: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(message);
    h.finish() | 1
}

impl Model {
    /// Records `hash` at `offset` in one of a partition's maps; a
    /// different hash already there is a violation.
    fn record(&mut self, part: &Part, offset: u64, h: u64, acked: bool, what: &str) {
        if offset >= MAX_MODEL_OFFSETS {
            self.violations.push(format!(
                "{what} on {}/{}: offset {offset} is wild",
                part.0, part.1
            ));
            return;
        }
        let pm = self.parts.entry(part.clone()).or_default();
        let map = if acked { &mut pm.acked } else { &mut pm.seen };
        let i = offset as usize;
        if map.len() <= i {
            map.resize(i + 1, 0);
        }
        if map[i] != 0 && map[i] != h {
            self.violations.push(format!(
                "{what} on {}/{}: offset {offset} is two different messages",
                part.0, part.1
            ));
        }
        map[i] = h;
    }

    /// One past the highest acknowledged offset of a partition.
    fn acked_end(&self, part: &Part) -> u64 {
        self.parts.get(part).map_or(0, |pm| pm.acked.len() as u64)
    }
}

fn model(m: &Mutex<Model>) -> std::sync::MutexGuard<'_, Model> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn violation(m: &Mutex<Model>, what: String) {
    let mut m = model(m);
    if m.violations.len() < 1000 {
        m.violations.push(what);
    }
}

// ----- a text connection ----------------------------------------------------------

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The epoch when it connected.
    epoch: u64,
}

impl Conn {
    fn open(shared: &Shared) -> io::Result<Conn> {
        let epoch = shared.epoch();
        let addr = shared
            .addr()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no broker"))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            epoch,
        })
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next line (without `\n`), waiting at most `timeout`.
    fn line(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                return Ok(line);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"));
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 16 << 10];
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"));
                }
                Err(e) => return Err(e),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn request(&mut self, line: &str) -> io::Result<String> {
        self.send(format!("{line}\n").as_bytes())?;
        let reply = self.line(REPLY_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    /// `USE` a partition.
    fn use_part(&mut self, part: &Part) -> io::Result<Result<(), String>> {
        let reply = self.request(&format!("USE {}/{}", part.0, part.1))?;
        Ok(if reply.starts_with("USING ") {
            Ok(())
        } else {
            Err(format!("USE {}/{}: {reply}", part.0, part.1))
        })
    }
}

/// Whether an I/O failure on `conn` is explained by a restart. If not, it
/// is a violation.
fn io_failed(s: &Ctx, epoch: u64, what: &str, e: &io::Error) {
    // The restarter bumps the epoch before it stops the broker, so a
    // failure the restart caused always sees the new epoch.
    if s.0.epoch() != epoch || s.0.stopped() {
        return;
    }
    violation(&s.1, format!("{what}: {e} (no restart under way)"));
}

fn pick(rng: &mut Rng) -> Part {
    let (t, p) = PARTITIONS[rng.below(PARTITIONS.len() as u64) as usize];
    (t.to_string(), p)
}

/// `MESSAGE offset:<n> <bytes>`.
fn parse_message(line: &[u8]) -> Option<(u64, &[u8])> {
    let rest = line.strip_prefix(b"MESSAGE offset:")?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    let offset = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
    Some((offset, &rest[sp + 1..]))
}

fn parse_end(line: &[u8]) -> Option<u64> {
    std::str::from_utf8(line.strip_prefix(b"END offset:")?)
        .ok()?
        .parse()
        .ok()
}

// ----- the clients ----------------------------------------------------------------

/// Pipelined producers: batches of PRODUCEs in one write, then the ACKs.
fn producer(s: Ctx, id: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut seq = 0u64;
    while !s.0.stopped() {
        let part = pick(&mut rng);
        let Ok(mut conn) = Conn::open(&s.0) else {
            continue;
        };
        match conn.use_part(&part) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                violation(&s.1, e);
                continue;
            }
            Err(e) => {
                io_failed(&s, conn.epoch, "producer USE", &e);
                continue;
            }
        }
        for _ in 0..1 + rng.below(20) {
            if s.0.stopped() {
                break;
            }
            let n = 1 + rng.below(32) as usize;
            let mut batch = Vec::new();
            let mut messages = Vec::new();
            for _ in 0..n {
                seq += 1;
                let pad = "x".repeat(rng.below(64) as usize);
                let m = format!("p{id}-{seq} {pad}").into_bytes();
                batch.extend_from_slice(b"PRODUCE ");
                batch.extend_from_slice(&m);
                batch.push(b'\n');
                messages.push(m);
            }
            if let Err(e) = conn.send(&batch) {
                model(&s.1)
                    .in_doubt
                    .extend(messages.iter().map(|m| hash(m)));
                io_failed(&s, conn.epoch, "producer send", &e);
                break;
            }
            let mut last = None;
            let mut broken = false;
            for (i, m) in messages.iter().enumerate() {
                match conn.line(REPLY_TIMEOUT) {
                    Ok(reply) => {
                        let offset = reply
                            .strip_prefix(b"ACK offset:")
                            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok());
                        let Some(offset) = offset else {
                            violation(
                                &s.1,
                                format!(
                                    "PRODUCE on {}/{}: {:?}",
                                    part.0,
                                    part.1,
                                    String::from_utf8_lossy(&reply)
                                ),
                            );
                            model(&s.1).in_doubt.insert(hash(m));
                            continue;
                        };
                        if last.is_some_and(|l| offset <= l) {
                            violation(
                                &s.1,
                                format!("ACK offsets out of order: {offset} after {last:?}"),
                            );
                        }
                        last = Some(offset);
                        let mut md = model(&s.1);
                        md.produced += 1;
                        md.record(&part, offset, hash(m), true, "ACK");
                    }
                    Err(e) => {
                        model(&s.1)
                            .in_doubt
                            .extend(messages[i..].iter().map(|m| hash(m)));
                        io_failed(&s, conn.epoch, "producer ACK", &e);
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                break;
            }
            // Paced (about 2,000 messages a second in all), so that an
            // hour's run stays within a few hundred MB of disk and model.
            thread::sleep(Duration::from_millis(rng.below(60)));
        }
    }
}

/// Checks a run of MESSAGE lines: contiguous from `from`; records them.
fn observe(s: &Ctx, part: &Part, messages: &[(u64, Vec<u8>)], from: u64, what: &str) -> bool {
    let mut md = model(&s.1);
    for (expect, (o, m)) in (from..).zip(messages) {
        if *o != expect {
            md.violations.push(format!(
                "{what} on {}/{}: offset {o} where {expect} was due",
                part.0, part.1
            ));
            return false;
        }
        md.read += 1;
        md.record(part, *o, hash(m), false, what);
    }
    true
}

/// FETCH readers: follow a partition with long polls.
fn fetcher(s: Ctx, seed: u64) {
    let mut rng = Rng::new(seed);
    while !s.0.stopped() {
        let part = pick(&mut rng);
        let Ok(mut conn) = Conn::open(&s.0) else {
            continue;
        };
        if !matches!(conn.use_part(&part), Ok(Ok(()))) {
            continue;
        }
        let mut at = rng.below(50);
        for _ in 0..1 + rng.below(30) {
            if s.0.stopped() {
                break;
            }
            let max = 1 + rng.below(500);
            let wait = rng.below(300);
            if let Err(e) = conn.send(format!("FETCH {at} {max} {wait}\n").as_bytes()) {
                io_failed(&s, conn.epoch, "FETCH send", &e);
                break;
            }
            let mut got = Vec::new();
            let end = loop {
                match conn.line(REPLY_TIMEOUT) {
                    Ok(line) => {
                        if let Some((o, m)) = parse_message(&line) {
                            got.push((o, m.to_vec()));
                        } else if let Some(end) = parse_end(&line) {
                            break Some(end);
                        } else {
                            violation(
                                &s.1,
                                format!("FETCH: unexpected {:?}", String::from_utf8_lossy(&line)),
                            );
                            break None;
                        }
                    }
                    Err(e) => {
                        io_failed(&s, conn.epoch, "FETCH reply", &e);
                        break None;
                    }
                }
            };
            let Some(end) = end else { break };
            if got.len() as u64 > max || end != at + got.len() as u64 {
                violation(
                    &s.1,
                    format!(
                        "FETCH {at} {max}: {} messages then END offset:{end}",
                        got.len()
                    ),
                );
                break;
            }
            if !observe(&s, &part, &got, at, "FETCH") {
                break;
            }
            at = end;
        }
    }
}

/// SUBSCRIBE readers: a stream for a while, a PING inside it, UNSUBSCRIBE.
fn subscriber(s: Ctx, seed: u64) {
    let mut rng = Rng::new(seed);
    while !s.0.stopped() {
        let part = pick(&mut rng);
        let Ok(mut conn) = Conn::open(&s.0) else {
            continue;
        };
        if !matches!(conn.use_part(&part), Ok(Ok(()))) {
            continue;
        }
        let from = rng.below(100);
        if conn.send(format!("SUBSCRIBE {from}\n").as_bytes()).is_err() {
            continue;
        }
        let until = Instant::now() + Duration::from_millis(100 + rng.below(1000));
        let mut got = Vec::new();
        let mut sent_stop = false;
        let mut pong = false;
        let end = loop {
            if !sent_stop && (Instant::now() >= until || s.0.stopped()) {
                sent_stop = true;
                if conn.send(b"PING\nUNSUBSCRIBE\n").is_err() {
                    break None;
                }
            }
            let wait = if sent_stop {
                REPLY_TIMEOUT
            } else {
                until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            };
            match conn.line(wait) {
                Ok(line) => {
                    if let Some((o, m)) = parse_message(&line) {
                        got.push((o, m.to_vec()));
                    } else if line == b"PONG" {
                        pong = true;
                    } else if let Some(end) = parse_end(&line) {
                        break Some(end);
                    } else {
                        violation(
                            &s.1,
                            format!("SUBSCRIBE: unexpected {:?}", String::from_utf8_lossy(&line)),
                        );
                        break None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !sent_stop => {}
                Err(e) => {
                    io_failed(&s, conn.epoch, "SUBSCRIBE", &e);
                    break None;
                }
            }
        };
        if let Some(end) = end {
            if !pong || end != from + got.len() as u64 {
                violation(
                    &s.1,
                    format!(
                        "SUBSCRIBE {from}: {} messages, PONG {pong}, then END offset:{end}",
                        got.len()
                    ),
                );
            }
            observe(&s, &part, &got, from, "SUBSCRIBE");
        }
    }
}

/// Committers: each owns a group, commits what was acknowledged (never
/// backwards), and checks OFFSET never reads behind the last COMMITTED.
fn committer(s: Ctx, id: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let group = format!("g{id}");
    let mut sent: HashMap<Part, u64> = HashMap::new();
    while !s.0.stopped() {
        let part = pick(&mut rng);
        let Ok(mut conn) = Conn::open(&s.0) else {
            continue;
        };
        if !matches!(conn.use_part(&part), Ok(Ok(()))) {
            continue;
        }
        for _ in 0..1 + rng.below(10) {
            if s.0.stopped() {
                break;
            }
            let (acked_end, floor) = {
                let md = model(&s.1);
                let end = md.acked_end(&part);
                let floor = md.committed.get(&(part.clone(), group.clone())).copied();
                (end, floor)
            };
            thread::sleep(Duration::from_millis(rng.below(20))); // pacing
            let offset = acked_end.max(sent.get(&part).copied().unwrap_or(0));
            sent.insert(part.clone(), offset);
            match conn.request(&format!("COMMIT {group} {offset}")) {
                Ok(reply) if reply == format!("COMMITTED {group} {offset}") => {
                    let mut md = model(&s.1);
                    md.commits += 1;
                    md.committed.insert((part.clone(), group.clone()), offset);
                }
                Ok(reply) => {
                    violation(&s.1, format!("COMMIT {group} {offset}: {reply}"));
                    break;
                }
                Err(e) => {
                    io_failed(&s, conn.epoch, "COMMIT", &e);
                    break;
                }
            }
            match conn.request(&format!("OFFSET {group}")) {
                Ok(reply) => {
                    let got = reply
                        .strip_prefix(&format!("OFFSET {group} "))
                        .and_then(|d| d.parse::<u64>().ok());
                    let floor = floor.unwrap_or(0).max(offset);
                    if got.is_none_or(|g| g < floor) {
                        violation(
                            &s.1,
                            format!(
                                "OFFSET {group} on {}/{}: {reply:?}, committed {floor}",
                                part.0, part.1
                            ),
                        );
                    }
                }
                Err(e) => {
                    io_failed(&s, conn.epoch, "OFFSET", &e);
                    break;
                }
            }
        }
    }
}

/// Slow clients: a PRODUCE a byte at a time, the reply read a byte at a
/// time; a FETCH whose reply is read slowly and abandoned.
fn slow(s: Ctx, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut seq = 0;
    while !s.0.stopped() {
        let Ok(mut conn) = Conn::open(&s.0) else {
            continue;
        };
        seq += 1;
        let message = format!("slow-{seq}").into_bytes();
        let mut line = b"PRODUCE ".to_vec();
        line.extend_from_slice(&message);
        line.push(b'\n');
        let mut failed = None;
        for b in &line {
            if let Err(e) = conn.send(&[*b]) {
                failed = Some(e);
                break;
            }
            thread::sleep(Duration::from_millis(1 + rng.below(5)));
        }
        let mut reply = Vec::new();
        if failed.is_none() {
            let mut byte = [0u8; 1];
            let _ = conn.stream.set_read_timeout(Some(REPLY_TIMEOUT));
            loop {
                match conn.stream.read(&mut byte) {
                    Ok(1) if byte[0] == b'\n' => break,
                    Ok(1) => reply.push(byte[0]),
                    Ok(_) => {
                        failed = Some(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
                        break;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        if let Some(e) = failed {
            model(&s.1).in_doubt.insert(hash(&message));
            io_failed(&s, conn.epoch, "slow PRODUCE", &e);
            continue;
        }
        match reply
            .strip_prefix(b"ACK offset:")
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok())
        {
            Some(offset) => {
                let mut md = model(&s.1);
                md.produced += 1;
                md.record(
                    &("default".to_string(), 0),
                    offset,
                    hash(&message),
                    true,
                    "slow ACK",
                );
            }
            None => violation(
                &s.1,
                format!("slow PRODUCE: {:?}", String::from_utf8_lossy(&reply)),
            ),
        }
        // A reader that asks for much and reads little, then leaves.
        if conn.send(b"FETCH 0 100000\n").is_ok() {
            let mut small = [0u8; 64];
            for _ in 0..5 {
                if conn.stream.read(&mut small).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Abusive clients: garbage, over-long lines, half-open connections,
/// connect-and-close, Kafka-looking noise. The broker must answer what
/// deserves an answer and keep serving.
fn abusive(s: Ctx, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut seq = 0;
    while !s.0.stopped() {
        let Ok(mut conn) = Conn::open(&s.0) else {
            continue;
        };
        let epoch = conn.epoch;
        let kind = rng.below(6);
        let result: io::Result<Option<String>> = (|| match kind {
            0 => {
                // Garbage that is not a command, then a PING.
                let mut g = b"#".to_vec();
                for _ in 0..rng.below(2000) {
                    let b = (rng.below(254) + 1) as u8;
                    if b != b'\n' {
                        g.push(b);
                    }
                }
                g.extend_from_slice(b"\nPING\n");
                conn.send(&g)?;
                let first = conn.line(REPLY_TIMEOUT)?;
                let second = conn.line(REPLY_TIMEOUT)?;
                Ok(
                    (!first.starts_with(b"INVALID_REQUEST ") || second != b"PONG").then(|| {
                        format!(
                            "garbage got {:?} then {:?}",
                            String::from_utf8_lossy(&first),
                            String::from_utf8_lossy(&second)
                        )
                    }),
                )
            }
            1 => {
                // An over-long line: refused, and the connection goes on.
                let mut line = vec![b'x'; MAX_LINE_BYTES + 1 + rng.below(10_000) as usize];
                line.extend_from_slice(b"\nPING\n");
                conn.send(&line)?;
                let first = conn.line(REPLY_TIMEOUT)?;
                let second = conn.line(REPLY_TIMEOUT)?;
                Ok(
                    (first != format!("MESSAGE_TOO_LARGE {MAX_LINE_BYTES}").as_bytes()
                        || second != b"PONG")
                        .then(|| {
                            format!("over-long line got {:?}", String::from_utf8_lossy(&first))
                        }),
                )
            }
            2 => {
                // Half-open: an unterminated line, then our side closes.
                // The broker must close without storing it.
                seq += 1;
                let message = format!("never-{seq}");
                model(&s.1).never.insert(hash(message.as_bytes()));
                conn.send(format!("PRODUCE {message}").as_bytes())?;
                conn.stream.shutdown(Shutdown::Write)?;
                match conn.line(REPLY_TIMEOUT) {
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
                    Err(e) => Err(e),
                    Ok(line) => Ok(Some(format!(
                        "half-open connection got {:?}",
                        String::from_utf8_lossy(&line)
                    ))),
                }
            }
            // Connect and close at once (`conn` is dropped below).
            3 => Ok(None),
            4 => {
                // Kafka-looking noise: a frame length, then junk.
                let mut g = vec![0u8, 0, 0, 40];
                g.extend((0..40).map(|_| rng.below(256) as u8));
                conn.send(&g)?;
                Ok(None)
            }
            _ => {
                // Idle: hold the connection, send nothing, for a while.
                thread::sleep(Duration::from_millis(rng.below(300)));
                Ok(None)
            }
        })();
        match result {
            Ok(Some(v)) => violation(&s.1, v),
            Ok(None) => model(&s.1).abusive += 1,
            Err(e) => io_failed(&s, epoch, "abusive client", &e),
        }
    }
}

/// A fresh connection's PING, timed (connect included), every 20 ms.
fn pinger(s: Ctx) {
    while !s.0.stopped() {
        thread::sleep(Duration::from_millis(20));
        let epoch = s.0.epoch();
        let Some(addr) = s.0.addr() else { continue };
        let start = Instant::now();
        let result = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).and_then(|st| {
            let mut c = Conn {
                stream: st,
                buf: Vec::new(),
                epoch,
            };
            c.stream.set_nodelay(true)?;
            c.request("PING")
        });
        let took = start.elapsed();
        if s.0.epoch() != epoch {
            continue; // a restart happened meanwhile: no sample
        }
        match result {
            Ok(reply) if reply == "PONG" => model(&s.1).pings.push(took),
            Ok(reply) => violation(&s.1, format!("PING got {reply:?}")),
            Err(e) => io_failed(&s, epoch, "PING", &e),
        }
    }
}

/// The broker's resident memory, every 50 ms.
fn rss_sampler(s: Ctx) {
    while !s.0.stopped() {
        let pid = s.0.pid.load(Ordering::Relaxed);
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        {
            let mut md = model(&s.1);
            md.max_rss = md.max_rss.max(kb * 1024);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ----- the run ------------------------------------------------------------------

/// Reads every partition from offset 0 and checks it against the model.
fn verify(s: &Ctx) -> Result<u64, String> {
    let mut conn = Conn::open(&s.0).map_err(|e| format!("verify: {e}"))?;
    let mut total = 0;
    for &(t, p) in PARTITIONS {
        let part = (t.to_string(), p);
        conn.use_part(&part)
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("verify: {e}"))?;
        let mut at = 0;
        loop {
            conn.send(format!("FETCH {at} 10000\n").as_bytes())
                .map_err(|e| format!("verify: {e}"))?;
            let mut n = 0;
            let end = loop {
                let line = conn
                    .line(REPLY_TIMEOUT)
                    .map_err(|e| format!("verify: {e}"))?;
                if let Some((o, m)) = parse_message(&line) {
                    if o != at + n {
                        return Err(format!("{t}/{p}: offset {o} where {} was due", at + n));
                    }
                    check_stored(s, &part, o, m)?;
                    n += 1;
                } else if let Some(end) = parse_end(&line) {
                    break end;
                } else {
                    return Err(format!("{t}/{p}: {:?}", String::from_utf8_lossy(&line)));
                }
            };
            if end != at + n {
                return Err(format!("{t}/{p}: END offset:{end} after {n} from {at}"));
            }
            if n == 0 {
                break;
            }
            at = end;
        }
        total += at;
        {
            let md = model(&s.1);
            if let Some(pm) = md.parts.get(&part) {
                for (what, map) in [("acknowledged", &pm.acked), ("read", &pm.seen)] {
                    if let Some(o) = map.iter().skip(at as usize).position(|&h| h != 0) {
                        return Err(format!(
                            "{t}/{p}: the log ends at {at}, but offset {} was {what}",
                            at + o as u64
                        ));
                    }
                }
            }
        }
        // Committed offsets: never behind an acknowledged COMMITTED.
        let groups: Vec<(String, u64)> = model(&s.1)
            .committed
            .iter()
            .filter(|((pt, _), _)| *pt == part)
            .map(|((_, g), o)| (g.clone(), *o))
            .collect();
        for (group, floor) in groups {
            let reply = conn
                .request(&format!("OFFSET {group}"))
                .map_err(|e| format!("verify: {e}"))?;
            let got = reply
                .strip_prefix(&format!("OFFSET {group} "))
                .and_then(|d| d.parse::<u64>().ok());
            if got.is_none_or(|g| g < floor) {
                return Err(format!(
                    "{t}/{p}: {reply:?}, but COMMITTED {group} {floor} was acknowledged"
                ));
            }
        }
    }
    Ok(total)
}

/// One stored message against the model: what was acknowledged or read
/// at its offset, else something sent whose ACK was lost; never an
/// unterminated line.
fn check_stored(s: &Ctx, part: &Part, o: u64, m: &[u8]) -> Result<(), String> {
    let md = model(&s.1);
    let h = hash(m);
    let at = |map: &Vec<u64>| map.get(o as usize).copied().unwrap_or(0);
    let (acked, seen) = md
        .parts
        .get(part)
        .map_or((0, 0), |pm| (at(&pm.acked), at(&pm.seen)));
    let (t, p) = part;
    let text = || String::from_utf8_lossy(m).into_owned();
    if acked != 0 && acked != h {
        return Err(format!(
            "{t}/{p}: acknowledged offset {o} now holds {:?}",
            text()
        ));
    }
    if seen != 0 && seen != h {
        return Err(format!(
            "{t}/{p}: offset {o} was read before as another message"
        ));
    }
    if md.never.contains(&h) {
        return Err(format!(
            "{t}/{p}: offset {o} holds an unterminated line {:?}",
            text()
        ));
    }
    if acked == 0 && !md.in_doubt.contains(&h) {
        return Err(format!(
            "{t}/{p}: offset {o} holds {:?}, which nobody sent",
            text()
        ));
    }
    Ok(())
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn run(args: &Args) -> Result<bool, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("soak.{}.{nanos}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = soak(args, &dir);
    match &result {
        Ok(true) => {
            let _ = fs::remove_dir_all(&dir);
        }
        _ => eprintln!(
            "soak: data directory and broker log kept in {}",
            dir.display()
        ),
    }
    result
}

fn soak(args: &Args, dir: &Path) -> Result<bool, String> {
    let started = Instant::now();
    let mut rng = Rng::new(args.seed);
    let mut always = false;
    let (mut broker, addr) = start_broker(&args.broker, dir, always)?;
    let shared = Arc::new(Shared {
        addr: Mutex::new(Some(addr)),
        up: Condvar::new(),
        epoch: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        pid: AtomicU64::new(u64::from(broker.child.id())),
    });
    let m = Arc::new(Mutex::new(Model::default()));
    let s: Ctx = (shared.clone(), m.clone());
    {
        let mut c = Conn::open(&shared).map_err(|e| format!("setup: {e}"))?;
        for (req, want) in [
            ("CREATE s1 4", "CREATED s1"),
            ("CREATE s2 2", "CREATED s2"),
            ("USE s3", "USING s3"),
        ] {
            let reply = c.request(req).map_err(|e| format!("setup: {e}"))?;
            if reply != want {
                return Err(format!("setup: {req} got {reply:?}"));
            }
        }
    }
    let mut threads = Vec::new();
    let spawn = |threads: &mut Vec<thread::JoinHandle<()>>, f: Box<dyn FnOnce() + Send>| {
        threads.push(thread::spawn(f));
    };
    for id in 0..4 {
        let (s, seed) = (s.clone(), rng.next());
        spawn(&mut threads, Box::new(move || producer(s, id, seed)));
    }
    for _ in 0..3 {
        let (s, seed) = (s.clone(), rng.next());
        spawn(&mut threads, Box::new(move || fetcher(s, seed)));
    }
    for _ in 0..2 {
        let (s, seed) = (s.clone(), rng.next());
        spawn(&mut threads, Box::new(move || subscriber(s, seed)));
    }
    for id in 0..2 {
        let (s, seed) = (s.clone(), rng.next());
        spawn(&mut threads, Box::new(move || committer(s, id, seed)));
    }
    for _ in 0..2 {
        let (s2, seed) = (s.clone(), rng.next());
        spawn(&mut threads, Box::new(move || slow(s2, seed)));
        let (s2, seed) = (s.clone(), rng.next());
        spawn(&mut threads, Box::new(move || abusive(s2, seed)));
    }
    {
        let s2 = s.clone();
        spawn(&mut threads, Box::new(move || pinger(s2)));
        let s2 = s.clone();
        spawn(&mut threads, Box::new(move || rss_sampler(s2)));
    }

    // Restarts: every quarter of the run (2 s to 30 s apart), alternating
    // SIGTERM and kill -9, and --fsync interval and always.
    let every = (args.duration / 4).clamp(Duration::from_secs(2), Duration::from_secs(30));
    let end = started + args.duration;
    let (mut restarts, mut kills) = (0u32, 0u32);
    let mut next_restart = started + every;
    let mut fatal = None;
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())));
        if Instant::now() < next_restart || next_restart + every / 2 > end {
            continue;
        }
        next_restart += every;
        let kill = restarts % 2 == 1 || rng.below(4) == 0;
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        *shared.addr.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(e) = stop_broker(&mut broker, kill) {
            fatal = Some(e);
            break;
        }
        restarts += 1;
        kills += u32::from(kill);
        always = !always;
        match start_broker(&args.broker, dir, always) {
            Ok((b, addr)) => {
                broker = b;
                shared
                    .pid
                    .store(u64::from(broker.child.id()), Ordering::Relaxed);
                *shared.addr.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
                shared.epoch.fetch_add(1, Ordering::SeqCst);
                shared.up.notify_all();
            }
            Err(e) => {
                fatal = Some(e);
                break;
            }
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    shared.up.notify_all();
    for t in threads {
        let _ = t.join();
    }
    if let Some(e) = fatal {
        return Err(e);
    }

    // Everything acknowledged is there, and still after a kill -9.
    let mut stored = verify(&s)?;
    shared.epoch.fetch_add(1, Ordering::SeqCst);
    stop_broker(&mut broker, true)?;
    kills += 1;
    restarts += 1;
    let (mut b, addr) = start_broker(&args.broker, dir, true)?;
    *shared.addr.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
    stored = stored.max(verify(&s)?);
    stop_broker(&mut b, false)?;

    let mut guard = model(&m);
    let md = &mut *guard;
    md.pings.sort();
    let (p50, p99) = (percentile(&md.pings, 0.5), percentile(&md.pings, 0.99));
    if md.pings.len() < 10 {
        md.violations
            .push(format!("only {} PING samples", md.pings.len()));
    }
    if p99 > args.max_ping_p99 {
        md.violations.push(format!(
            "PING p99 {} over {}",
            ms(p99),
            ms(args.max_ping_p99)
        ));
    }
    if md.max_rss > args.max_rss_bytes {
        md.violations.push(format!(
            "broker RSS {:.1} MiB over {} MiB",
            md.max_rss as f64 / (1 << 20) as f64,
            args.max_rss_bytes >> 20
        ));
    }
    if md.produced == 0 || md.read == 0 || md.commits == 0 {
        md.violations.push(format!(
            "too little work: {} acknowledged, {} read, {} commits",
            md.produced, md.read, md.commits
        ));
    }
    let summary = format!(
        "soak: {} in {:.1} s: {} messages acknowledged ({} stored, {} in doubt), {} read, {} commits, \
         {} abusive clients, {} restarts ({} kill -9), PING p50 {} p99 {} (bound {}), \
         max RSS {:.1} MiB (bound {} MiB), seed {}",
        if md.violations.is_empty() {
            "OK"
        } else {
            "FAILED"
        },
        started.elapsed().as_secs_f64(),
        md.produced,
        stored,
        md.in_doubt.len(),
        md.read,
        md.commits,
        md.abusive,
        restarts,
        kills,
        ms(p50),
        ms(p99),
        ms(args.max_ping_p99),
        md.max_rss as f64 / (1 << 20) as f64,
        args.max_rss_bytes >> 20,
        args.seed,
    );
    println!("{summary}");
    for v in md.violations.iter().take(20) {
        eprintln!("soak: violation: {v}");
    }
    if md.violations.len() > 20 {
        eprintln!("soak: ... {} violations in all", md.violations.len());
    }
    Ok(md.violations.is_empty())
}
