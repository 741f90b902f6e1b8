//! Power-loss crash suite: the real broker on a LazyFs mount (see
//! `tests/lazyfs`), which keeps everything not yet `fsync`ed in memory and
//! drops it on a simulated power cut. A `kill -9` alone keeps the page
//! cache; this shows a missing sync.
//!
//! Each round: start the broker on the mount (this recovers what the
//! previous round left), check what it recovered against what the previous
//! round had acknowledged, then run three pipelined producers and a
//! committer against it, and at a random moment during that load
//! `kill -9` the broker and cut the power. The backing directory then holds
//! only what was durable, and the next round mounts a new LazyFs over it.
//!
//! What is checked after each cut (incrementally: the messages the last
//! round added are read back, earlier ones by size and by a few random
//! spot checks):
//! - offsets are contiguous from 0, and nothing recovered earlier is lost;
//! - each recovered message at an offset some producer got an `ACK` for is
//!   exactly that message; the others are messages that were sent but not
//!   acknowledged, each producer's forming a gapless prefix of what it sent;
//! - `--fsync always`: every acknowledged message is there, and
//!   `OFFSET g` is at least the last acknowledged `COMMITTED`;
//! - `--fsync interval` (every [`INTERVAL_MS`]): every message acknowledged
//!   more than [`INTERVAL_MS`] + [`SLACK_MS`] before the kill is there, and
//!   so is every commit acknowledged that long before it;
//! - the committed offset is one that was committed (or the log's end, if
//!   the broker lowered it) and never goes backwards.
//!
//! The broker must start after every cut, under both policies (a rolled
//! segment whose data was not yet on disk is cut at its damage, not
//! refused: see `storage::log`). If it ever refuses, the files are still
//! checked directly (`check_files`) before the test fails, so the report
//! says what was lost.
//!
//! Kill moments alternate between short (within the interval + slack) and
//! long ones, so `interval` always has old acknowledgements to keep. Cuts
//! right after the first acknowledgement of a fresh data directory and of
//! a new topic have tests of their own.
//!
//! The seed (printed at the start, and in every failure) picks the kill
//! moments, message padding and spot checks; `POWER_LOSS_SEED=<n>`
//! repeats a run's choices (not its timing). Where FUSE cannot be mounted
//! the tests print `SKIPPED (FUSE unavailable: ...)` and pass.

mod common;
mod lazyfs;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{BROKER, BrokerProcess, Client, TIMEOUT, read_first_line, stderr_path_for};
use lazyfs::{LazyFs, loud};

/// Crashes per policy.
const ROUNDS: u64 = 8;
const PRODUCERS: usize = 3;
/// `--fsync-interval-ms` for the `interval` rounds.
const INTERVAL_MS: u64 = 50;
/// How much later than the interval a sync may complete (scheduling on a
/// busy 2-core machine, the sync itself).
const SLACK_MS: u64 = 250;
/// Even rounds cut the power up to this long after the load started
/// (mostly messages acknowledged within the last interval + slack), odd
/// rounds [`LONG_KILL_MS`] later (so that `interval` has older
/// acknowledgements to keep).
const SHORT_KILL_MS: u64 = INTERVAL_MS + SLACK_MS;
const LONG_KILL_MS: u64 = 200;
/// Offsets re-read (at random) in each round from earlier rounds.
const SPOT_CHECKS: u64 = 50;
const SEGMENT_BYTES: &str = "65536";
const GROUP: &str = "g";
/// A producer never sends more than this in one round.
const MAX_PER_PRODUCER: u64 = 2_000_000;
/// Requests a producer keeps in flight (sent, not yet acknowledged): deep
/// enough for group commits and many segment rolls, shallow enough that a
/// round stays at a few tens of thousands of messages to check.
const WINDOW: u64 = 32;
const DEFAULT_SEED: u64 = 0x00c0_ffee_5eed;

/// The two tests take turns: each wants the machine's two cores.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Policy {
    Always,
    Interval,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Always => "always",
            Policy::Interval => "interval",
        }
    }
}

/// splitmix64: small, seedable, good enough to pick kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where a failure happened, for its message.
struct Ctx {
    policy: Policy,
    seed: u64,
    round: u64,
}

impl Ctx {
    #[track_caller]
    fn fail(&self, message: String) -> ! {
        panic!(
            "power_loss[{}] seed={} (repeat with POWER_LOSS_SEED={}) round {}: {message}",
            self.policy.name(),
            self.seed,
            self.seed,
            self.round
        )
    }
}

macro_rules! ensure {
    ($ctx:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            $ctx.fail(format!($($fmt)+))
        }
    };
}

/// The message producer `id` sends `i`-th in `round`: a varying length,
/// so line lengths (and so segment boundaries) vary.
fn message(seed: u64, round: u64, id: usize, i: u64) -> String {
    let pad = (seed ^ (i * 7 + id as u64 * 13)) % 160;
    format!("r{round}-p{id}-{i}-{}", "x".repeat(pad as usize))
}

fn parse_message(text: &str) -> Option<(u64, usize, u64)> {
    let rest = text.strip_prefix('r')?;
    let mut parts = rest.splitn(4, '-');
    let round = parts.next()?.parse().ok()?;
    let id = parts.next()?.strip_prefix('p')?.parse().ok()?;
    let i = parts.next()?.parse().ok()?;
    Some((round, id, i))
}

/// What producers have had acknowledged, for the committer and the kill.
#[derive(Default)]
struct Progress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

#[derive(Default)]
struct ProgressState {
    /// One past the highest acknowledged offset.
    acked_end: u64,
    commits_acked: u64,
    stopped: bool,
}

impl Progress {
    fn update(&self, f: impl FnOnce(&mut ProgressState)) {
        let mut state = self.state.lock().unwrap();
        f(&mut state);
        self.changed.notify_all();
    }

    /// Waits until `ready` holds (returning its value) or the round stops.
    fn wait_for<T>(&self, mut ready: impl FnMut(&ProgressState) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + TIMEOUT;
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(value) = ready(&state) {
                return Some(value);
            }
            let now = Instant::now();
            if state.stopped || now >= deadline {
                return None;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }
}

/// One acknowledged message.
struct Ack {
    offset: u64,
    i: u64,
    at: Instant,
}

/// What one producer did in a round.
struct Produced {
    /// Messages 0..sent were (or were being) written to the socket.
    sent: u64,
    acks: Vec<Ack>,
    /// A reply that was not an `ACK`.
    error: Option<String>,
}

/// What the committer did in a round.
#[derive(Default)]
struct Committed {
    sent: Vec<u64>,
    acked: Vec<(u64, Instant)>,
    error: Option<String>,
}

/// Reads one line, or `None` when the connection ends (the broker died).
fn read_line(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(n) if n > 0 && line.ends_with('\n') => {
            line.pop();
            Some(line)
        }
        _ => None,
    }
}

fn connect(addr: SocketAddr) -> (BufReader<TcpStream>, TcpStream) {
    let Client { reader, writer } = Client::connect(addr);
    (reader, writer)
}

/// A pipelined producer: a writer thread sends `PRODUCE` lines in chunks
/// of 32 as fast as the broker takes them while this thread reads the
/// `ACK`s, until the broker dies.
fn producer(
    addr: SocketAddr,
    seed: u64,
    round: u64,
    id: usize,
    progress: Arc<Progress>,
) -> thread::JoinHandle<Produced> {
    thread::spawn(move || {
        let (mut reader, writer) = connect(addr);
        let sent = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let sender = {
            let (sent, acked, done) = (sent.clone(), acked.clone(), done.clone());
            let mut writer = writer.try_clone().expect("clone stream");
            thread::spawn(move || {
                let mut i = 0;
                while i < MAX_PER_PRODUCER && !done.load(Ordering::SeqCst) {
                    // Wait (parked; the reader unparks it on each ACK) while
                    // the window is full.
                    if i - acked.load(Ordering::SeqCst) + 32 > WINDOW {
                        thread::park();
                        continue;
                    }
                    let mut chunk = String::new();
                    for _ in 0..32 {
                        chunk.push_str(&format!("PRODUCE {}\n", message(seed, round, id, i)));
                        i += 1;
                    }
                    // Counted before the write: a failed write may still
                    // have delivered part of the chunk.
                    sent.store(i, Ordering::SeqCst);
                    if writer.write_all(chunk.as_bytes()).is_err() {
                        break;
                    }
                }
            })
        };
        let mut acks = Vec::new();
        let mut error = None;
        let wake = sender.thread().clone();
        while let Some(line) = read_line(&mut reader) {
            let Some(offset) = line
                .strip_prefix("ACK offset:")
                .and_then(|o| o.parse::<u64>().ok())
            else {
                error = Some(format!("producer {id}: unexpected reply {line:?}"));
                break;
            };
            acks.push(Ack {
                offset,
                i: acks.len() as u64,
                at: Instant::now(),
            });
            acked.store(acks.len() as u64, Ordering::SeqCst);
            wake.unpark();
            progress.update(|p| p.acked_end = p.acked_end.max(offset + 1));
        }
        // The broker is gone: stop the writer, wherever it waits.
        done.store(true, Ordering::SeqCst);
        wake.unpark();
        let _ = writer.shutdown(std::net::Shutdown::Both);
        let _ = sender.join();
        Produced {
            sent: sent.load(Ordering::SeqCst),
            acks,
            error,
        }
    })
}

/// Commits the acknowledged end for group `g` whenever it moves on.
fn committer(addr: SocketAddr, progress: Arc<Progress>) -> thread::JoinHandle<Committed> {
    thread::spawn(move || {
        let (mut reader, mut writer) = connect(addr);
        let mut out = Committed::default();
        let mut last = 0;
        while let Some(target) = progress.wait_for(|p| (p.acked_end > last).then_some(p.acked_end))
        {
            out.sent.push(target);
            if writer
                .write_all(format!("COMMIT {GROUP} {target}\n").as_bytes())
                .is_err()
            {
                break;
            }
            let Some(line) = read_line(&mut reader) else {
                break;
            };
            if line != format!("COMMITTED {GROUP} {target}") {
                out.error = Some(format!(
                    "COMMIT {GROUP} {target}: unexpected reply {line:?}"
                ));
                break;
            }
            out.acked.push((target, Instant::now()));
            progress.update(|p| p.commits_acked += 1);
            last = target;
        }
        out
    })
}

/// What a round did, to check after the next start.
struct Round {
    round: u64,
    produced: Vec<Produced>,
    committed: Committed,
    kill_at: Instant,
}

/// What is known to be in the log: every message from offset 0 on.
#[derive(Default)]
struct Model {
    messages: Vec<String>,
    /// Bytes of the log files: `offset:<n> message:<m>\n` per message.
    bytes: u64,
    /// The committed offset of `g` as last recovered.
    commit: u64,
    /// Acknowledged messages checked that had to survive (with `interval`,
    /// those older than the interval + slack at the kill).
    due_checked: u64,
}

impl Model {
    fn push(&mut self, message: String) {
        let offset = self.messages.len();
        let digits = offset.checked_ilog10().unwrap_or(0) as usize + 1;
        // `offset:<n> message:<m>\n`
        self.bytes += ("offset: message:\n".len() + digits + message.len()) as u64;
        self.messages.push(message);
    }
}

fn start_broker(mnt: &Path, policy: Policy) -> Result<BrokerProcess, String> {
    let stderr_path = stderr_path_for(mnt);
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(&stderr_path)
        .expect("create stderr file");
    let log_start = std::fs::metadata(&stderr_path).map_or(0, |m| m.len()) as usize;
    let mut command = Command::new(BROKER);
    command
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(mnt)
        .args(["--fsync", policy.name(), "--segment-bytes", SEGMENT_BYTES]);
    if policy == Policy::Interval {
        command.args(["--fsync-interval-ms", &INTERVAL_MS.to_string()]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .env("RUST_LOG", "info")
        .spawn()
        .expect("spawn broker");
    let stdout = child.stdout.take().expect("stdout");
    let this_start = |path: &Path| {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        log.get(log_start..).unwrap_or_default().to_string()
    };
    let line = match read_first_line(stdout, TIMEOUT) {
        Ok(line) => line,
        Err(e) => {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            return Err(format!(
                "{e}; {status}; its log:\n{}",
                this_start(&stderr_path)
            ));
        }
    };
    let port = line
        .strip_prefix("Broker started on ")
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Ok(BrokerProcess {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        data_dir: mnt.to_path_buf(),
        stderr_path,
    })
}

/// `first`, `next` and `bytes` of the default topic.
fn topic_stats(ctx: &Ctx, c: &mut Client) -> (u64, u64, u64) {
    c.send("TOPICS\n");
    let lines = c.lines_until("END");
    let line = lines
        .iter()
        .find(|l| l.starts_with("TOPIC default "))
        .unwrap_or_else(|| ctx.fail(format!("no default topic in {lines:?}")));
    let field = |name: &str| -> u64 {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| ctx.fail(format!("no {name} in {line:?}")))
    };
    (field("first:"), field("next:"), field("bytes:"))
}

/// The messages at offsets `from..to`, checking that offsets follow.
fn fetch(ctx: &Ctx, c: &mut Client, from: u64, to: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        c.send(format!("FETCH {at} 10000\n"));
        let lines = c.lines_until("END");
        let (end, messages) = lines.split_last().expect("END line");
        for line in messages {
            let (offset, message) = line
                .strip_prefix("MESSAGE offset:")
                .and_then(|rest| rest.split_once(' '))
                .unwrap_or_else(|| ctx.fail(format!("FETCH {at}: unexpected line {line:?}")));
            let expected = from + out.len() as u64;
            ensure!(
                ctx,
                offset == expected.to_string(),
                "FETCH {at}: offset {offset} where {expected} was expected"
            );
            out.push(message.to_string());
        }
        let next: u64 = end
            .strip_prefix("END offset:")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| ctx.fail(format!("FETCH {at}: unexpected end {end:?}")));
        ensure!(
            ctx,
            next == from + out.len() as u64 && next > at,
            "FETCH {at}: END offset:{next} after {} messages from {from}",
            out.len()
        );
        at = next;
    }
    out
}

fn committed_offset(ctx: &Ctx, c: &mut Client) -> u64 {
    let line = c.request(&format!("OFFSET {GROUP}"));
    line.strip_prefix(&format!("OFFSET {GROUP} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| ctx.fail(format!("OFFSET {GROUP}: unexpected reply {line:?}")))
}

/// Checks what a freshly started broker recovered after `round`'s power
/// cut, and extends the model with the messages it added.
fn verify(
    ctx: &Ctx,
    policy: Policy,
    model: &mut Model,
    c: &mut Client,
    round: &Round,
    rng: &mut Rng,
) {
    let bound = Duration::from_millis(INTERVAL_MS + SLACK_MS);
    // Acknowledged long enough before the kill to be durable for sure.
    let must_survive = |at: Instant| policy == Policy::Always || at + bound <= round.kill_at;
    let (first, next, bytes) = topic_stats(ctx, c);
    ensure!(ctx, first == 0, "first offset {first}, expected 0");
    let before = model.messages.len() as u64;
    ensure!(
        ctx,
        next >= before,
        "the log ends at {next}, but offsets up to {before} were recovered before"
    );

    // Earlier rounds' messages, at random (their sizes are checked below).
    for _ in 0..SPOT_CHECKS.min(before) {
        let offset = rng.below(before);
        let reply = c.request(&format!("CONSUME {offset}"));
        let expected = format!(
            "MESSAGE offset:{offset} {}",
            model.messages[offset as usize]
        );
        ensure!(
            ctx,
            reply == expected,
            "CONSUME {offset} gave {reply:?}, recovered before as {expected:?}"
        );
    }

    // Every acknowledged message that must survive is below `next`.
    let mut acked_at: HashMap<u64, (usize, u64)> = HashMap::new();
    let mut lost = 0u64;
    for (id, produced) in round.produced.iter().enumerate() {
        for ack in &produced.acks {
            acked_at.insert(ack.offset, (id, ack.i));
            model.due_checked += u64::from(must_survive(ack.at));
            if ack.offset >= next {
                lost += 1;
                ensure!(
                    ctx,
                    !must_survive(ack.at),
                    "acknowledged message {:?} at offset {} is lost: the log ends at {next} \
                     (acknowledged {:?} before the kill; {} acknowledged messages lost)",
                    message(ctx.seed, round.round, id, ack.i),
                    ack.offset,
                    round.kill_at - ack.at,
                    round
                        .produced
                        .iter()
                        .flat_map(|p| &p.acks)
                        .filter(|a| a.offset >= next)
                        .count()
                );
            }
        }
    }

    // The new messages: acknowledged ones exactly, the others sent but not
    // acknowledged, each producer's a gapless prefix of what it sent.
    let added = fetch(ctx, c, before, next);
    let mut next_i = [0u64; PRODUCERS];
    for (k, text) in added.into_iter().enumerate() {
        let offset = before + k as u64;
        let parsed = parse_message(&text)
            .filter(|&(r, id, _)| r == round.round && id < PRODUCERS)
            .unwrap_or_else(|| {
                ctx.fail(format!(
                    "offset {offset} holds {text:?}, which no producer of this round sent"
                ))
            });
        let (_, id, i) = parsed;
        ensure!(
            ctx,
            i == next_i[id] && i < round.produced[id].sent,
            "offset {offset} holds {text:?}, but producer {id}'s next message would be its \
             number {} (it sent {})",
            next_i[id],
            round.produced[id].sent
        );
        ensure!(
            ctx,
            text == message(ctx.seed, round.round, id, i),
            "offset {offset}: the bytes differ: {text:?}"
        );
        if let Some(&(acked_id, acked_i)) = acked_at.get(&offset) {
            ensure!(
                ctx,
                (acked_id, acked_i) == (id, i),
                "offset {offset} holds {text:?}, but was acknowledged for {:?}",
                message(ctx.seed, round.round, acked_id, acked_i)
            );
        }
        next_i[id] += 1;
        model.push(text);
    }
    ensure!(
        ctx,
        bytes == model.bytes,
        "the log holds {bytes} bytes; offsets 0..{next} make {}",
        model.bytes
    );

    // The committed offset.
    let commit = committed_offset(ctx, c);
    let committed = &round.committed;
    let must_commit = committed
        .acked
        .iter()
        .filter(|(_, at)| must_survive(*at))
        .map(|(n, _)| *n)
        .max()
        .unwrap_or(0);
    ensure!(
        ctx,
        commit <= next,
        "OFFSET {GROUP} is {commit}, past the log's end {next}"
    );
    ensure!(
        ctx,
        commit >= model.commit && commit >= must_commit,
        "OFFSET {GROUP} is {commit}: a commit was lost (recovered before: {}; \
         acknowledged and due to survive: {must_commit}; last acknowledged: {:?})",
        model.commit,
        committed.acked.last().map(|(n, _)| n)
    );
    ensure!(
        ctx,
        commit == model.commit || commit == next || committed.sent.contains(&commit),
        "OFFSET {GROUP} is {commit}, which was never committed"
    );
    model.commit = commit;
    loud(&format!(
        "power_loss[{}] round {}: recovered {next} messages ({} new, {lost} acknowledged \
         ones lost), commit {commit}",
        policy.name(),
        round.round,
        next - before
    ));
}

/// With `interval`, when the broker refused to start: reads the durable
/// files directly (their format is documented in docs/STORAGE.md) and
/// checks that what had to survive the last round's cut is there anyway,
/// byte for byte, and so is the commit.
fn check_files(ctx: &Ctx, dir: &Path, model: &mut Model, round: &Round) {
    let bound = Duration::from_millis(INTERVAL_MS + SLACK_MS);
    let mut on_disk: HashMap<u64, String> = HashMap::new();
    for name in names(dir) {
        let rolled = name
            .strip_prefix("kafka_log.txt.")
            .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()));
        if name != "kafka_log.txt" && !rolled {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(&name)).expect("read a segment");
        // Complete lines only.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        for line in complete.split('\n') {
            if let Some((offset, message)) = line
                .strip_prefix("offset:")
                .and_then(|rest| rest.split_once(" message:"))
                && let Ok(offset) = offset.parse()
            {
                on_disk.insert(offset, message.to_string());
            }
        }
    }
    for (id, produced) in round.produced.iter().enumerate() {
        for ack in produced
            .acks
            .iter()
            .filter(|a| a.at + bound <= round.kill_at)
        {
            model.due_checked += 1;
            let expected = message(ctx.seed, round.round, id, ack.i);
            let found = on_disk.get(&ack.offset);
            ensure!(
                ctx,
                found == Some(&expected),
                "the broker refused to start, and its files hold {found:?} at offset {}, \
                 acknowledged for {expected:?} {:?} before the kill",
                ack.offset,
                round.kill_at - ack.at
            );
        }
    }
    let must_commit = round
        .committed
        .acked
        .iter()
        .filter(|(_, at)| *at + bound <= round.kill_at)
        .map(|(n, _)| *n)
        .max();
    if let Some(must_commit) = must_commit {
        let offsets = std::fs::read_to_string(dir.join("consumer_offsets.txt")).unwrap_or_default();
        let complete = offsets.rfind('\n').map_or("", |end| &offsets[..end]);
        let commit = complete
            .split('\n')
            .filter_map(|l| l.strip_prefix(&format!("default {GROUP} ")))
            .filter_map(|n| n.parse::<u64>().ok())
            .next_back();
        ensure!(
            ctx,
            commit >= Some(must_commit),
            "the broker refused to start, and consumer_offsets.txt holds {commit:?} for \
             {GROUP}; {must_commit} was acknowledged more than {bound:?} before the kill"
        );
    }
}

/// Runs load against `broker` and cuts the power at a random moment.
fn load_and_cut(
    ctx: &Ctx,
    policy: Policy,
    fs: LazyFs,
    mut broker: BrokerProcess,
    kill_delay: Duration,
) -> Round {
    let progress = Arc::new(Progress::default());
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| producer(broker.addr, ctx.seed, ctx.round, id, progress.clone()))
        .collect();
    let committer = committer(broker.addr, progress.clone());
    // Load is under way once a message and a commit were acknowledged.
    let started = progress.wait_for(|p| (p.commits_acked > 0 && p.acked_end > 0).then_some(()));
    let stop = |progress: &Progress| progress.update(|p| p.stopped = true);
    if started.is_none() {
        stop(&progress);
        ctx.fail(format!(
            "no COMMITTED within {TIMEOUT:?}; broker log:\n{}",
            broker.stderr()
        ));
    }
    // The random moment (not a synchronisation: any moment will do).
    thread::sleep(kill_delay);
    let kill_at = Instant::now();
    broker.kill9();
    let counts = fs.counts();
    fs.power_cut().expect("power cut");
    stop(&progress);
    let produced: Vec<Produced> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    let committed = committer.join().unwrap();
    if let Some(error) = produced
        .iter()
        .filter_map(|p| p.error.as_ref())
        .chain(&committed.error)
        .next()
    {
        ctx.fail(format!("{error}; broker log:\n{}", broker.stderr()));
    }
    // Every producer sends until the broker dies or it reaches its cap;
    // none at its cap means the kill came while all were still sending.
    // (Whether a message was in flight at that moment depends on the
    // scheduling of the producers' threads, so it is not asked.)
    ensure!(
        ctx,
        produced.iter().all(|p| p.sent < MAX_PER_PRODUCER),
        "a producer sent all its {MAX_PER_PRODUCER} messages: the kill did not come during \
         the load"
    );
    if policy == Policy::Always {
        ensure!(
            ctx,
            counts.fdatasync > 0,
            "messages were acknowledged with --fsync always, but no fdatasync reached the \
             filesystem: {counts:?}"
        );
    }
    loud(&format!(
        "power_loss[{}] round {}: cut after {kill_delay:?}: {} messages and {} commits \
         acknowledged; {counts:?}",
        policy.name(),
        ctx.round,
        produced.iter().map(|p| p.acks.len()).sum::<usize>(),
        committed.acked.len()
    ));
    Round {
        round: ctx.round,
        produced,
        committed,
        kill_at,
    }
}

fn seed() -> u64 {
    match std::env::var("POWER_LOSS_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("POWER_LOSS_SEED={s:?} is not a number")),
        Err(_) => DEFAULT_SEED,
    }
}

fn run(policy: Policy) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = format!("power_loss[{}]", policy.name());
    let seed = seed();
    let tmp = tempfile::tempdir().expect("tempdir");
    let backing = tmp.path().join("backing");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&backing).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    loud(&format!(
        "{test}: seed={seed} (set POWER_LOSS_SEED to change it)"
    ));
    let started = Instant::now();
    let mut rng = Rng(seed ^ policy as u64);
    let mut model = Model::default();
    let mut last: Option<Round> = None;
    let mut refusals = Vec::new();
    for round in 0..=ROUNDS {
        let ctx = Ctx {
            policy,
            seed,
            round,
        };
        let Some(fs) = lazyfs::mount_or_skip(&test, &backing, &mnt) else {
            return;
        };
        let broker = match start_broker(&mnt, policy) {
            Ok(broker) => broker,
            // Never allowed; but say what the files hold before failing.
            Err(e) if policy == Policy::Interval && e.contains("\nbroker: ") => {
                loud(&format!(
                    "{test} round {round}: REFUSED to start after the power cut: {e}"
                ));
                refusals.push(round - 1);
                fs.unmount().expect("unmount");
                if let Some(previous) = &last {
                    check_files(&ctx, &backing, &mut model, previous);
                }
                std::fs::remove_dir_all(&backing).unwrap();
                std::fs::create_dir(&backing).unwrap();
                ctx.fail(format!(
                    "the broker refused to start after the power cut: {e}"
                ))
            }
            Err(e) => ctx.fail(format!("the broker did not start after the power cut: {e}")),
        };
        let mut c = broker.client();
        if let Some(previous) = &last {
            verify(&ctx, policy, &mut model, &mut c, previous, &mut rng);
        }
        if round == ROUNDS {
            drop(c);
            drop(broker);
            fs.unmount().expect("unmount");
            break;
        }
        drop(c);
        let delay = if round % 2 == 0 {
            rng.below(SHORT_KILL_MS + 1)
        } else {
            SHORT_KILL_MS + 50 + rng.below(LONG_KILL_MS + 1)
        };
        let delay = Duration::from_millis(delay);
        last = Some(load_and_cut(&ctx, policy, fs, broker, delay));
    }
    // Refusals must not leave the bound unchecked.
    ensure!(
        Ctx {
            policy,
            seed,
            round: ROUNDS
        },
        model.due_checked > 0,
        "no acknowledged message was old enough at a power cut to be checked"
    );
    loud(&format!(
        "{test}: {ROUNDS} power cuts in {:?}: {} acknowledged messages checked that had to \
         survive; the broker refused to start after the cuts of rounds {refusals:?}; since \
         the last refusal {} messages and commit {} verified",
        started.elapsed(),
        model.due_checked,
        model.messages.len(),
        model.commit,
    ));
}

#[test]
fn power_loss_with_fsync_always_loses_nothing_acknowledged() {
    run(Policy::Always);
}

#[test]
fn power_loss_with_fsync_interval_loses_at_most_the_last_interval() {
    run(Policy::Interval);
}

/// A fresh temp dir with an empty backing directory and a mountpoint.
fn fresh_dirs() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let backing = tmp.path().join("backing");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&backing).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    (tmp, backing, mnt)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A power cut right after the first `ACK` and `COMMITTED` of a broker
/// started on an empty directory. The broker creates `kafka_log.txt` and
/// `consumer_offsets.txt` but syncs the directory only at the first
/// segment roll, so both files, and the acknowledged message and commit,
/// vanish.
#[test]
fn a_fresh_data_directory_keeps_its_first_acknowledged_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = "a_fresh_data_directory_keeps_its_first_acknowledged_message";
    let (_tmp, backing, mnt) = fresh_dirs();
    let Some(fs) = lazyfs::mount_or_skip(test, &backing, &mnt) else {
        return;
    };
    let mut broker = start_broker(&mnt, Policy::Always).unwrap_or_else(|e| panic!("{e}"));
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE hello"), "ACK offset:0");
    assert_eq!(c.request("COMMIT g 1"), "COMMITTED g 1");
    broker.kill9();
    let counts = fs.counts();
    fs.power_cut().expect("power cut");
    let durable = names(&backing);
    let fs = lazyfs::LazyFs::mount(&backing, &mnt).expect("mount");
    let broker = start_broker(&mnt, Policy::Always).unwrap_or_else(|e| panic!("{e}"));
    let mut c = broker.client();
    assert_eq!(
        (c.request("CONSUME 0"), c.request("OFFSET g")),
        (
            "MESSAGE offset:0 hello".to_string(),
            "OFFSET g 1".to_string()
        ),
        "after the power cut the data directory held {durable:?} (syncs seen: {counts:?})"
    );
    drop(c);
    drop(broker);
    fs.unmount().expect("unmount");
}

/// A power cut right after the first `ACK` in a new topic, on a data
/// directory that is otherwise durable. The broker syncs `topics/<name>`
/// and `topics/` but not the data directory that holds the new `topics/`
/// entry, so the topic and its acknowledged message vanish.
#[test]
fn a_new_topic_keeps_its_first_acknowledged_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = "a_new_topic_keeps_its_first_acknowledged_message";
    let (_tmp, backing, mnt) = fresh_dirs();
    // A data directory made fully durable: start, stop, clean unmount.
    let Some(fs) = lazyfs::mount_or_skip(test, &backing, &mnt) else {
        return;
    };
    let mut broker = start_broker(&mnt, Policy::Always).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(broker.client().request("PRODUCE first"), "ACK offset:0");
    let (status, _) = broker.signal_and_wait("TERM");
    assert!(status.success(), "{status}");
    fs.unmount().expect("unmount");

    let fs = lazyfs::LazyFs::mount(&backing, &mnt).expect("mount");
    let mut broker = start_broker(&mnt, Policy::Always).unwrap_or_else(|e| panic!("{e}"));
    let mut c = broker.client();
    assert_eq!(c.request("USE t1"), "USING t1");
    assert_eq!(c.request("PRODUCE in-t1"), "ACK offset:0");
    broker.kill9();
    let counts = fs.counts();
    fs.power_cut().expect("power cut");
    let durable = names(&backing);
    let fs = lazyfs::LazyFs::mount(&backing, &mnt).expect("mount");
    let broker = start_broker(&mnt, Policy::Always).unwrap_or_else(|e| panic!("{e}"));
    let mut c = broker.client();
    assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 first");
    c.send("TOPICS\n");
    let topics = c.lines_until("END");
    assert!(
        topics
            .iter()
            .any(|l| l.starts_with("TOPIC t1 first:0 next:1 ")),
        "topic t1 lost: {topics:?}; the data directory held {durable:?} (syncs seen: {counts:?})"
    );
    assert_eq!(c.request("USE t1"), "USING t1");
    assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 in-t1");
    drop(c);
    drop(broker);
    fs.unmount().expect("unmount");
}

/// Under `--fsync interval` a failed `fdatasync` was retried, and Linux
/// reports a failed writeback once: the retry succeeded although the
/// writes it covered never reached the disk, and the broker went on as if
/// they had. Now the log takes no more writes (`STORAGE_ERROR`) and never
/// counts them as synced; reads go on, other topics too, and after a
/// power cut the restart keeps exactly what was synced.
#[test]
fn a_failed_sync_under_interval_stops_the_log_and_claims_nothing_lost() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = "a_failed_sync_under_interval_stops_the_log_and_claims_nothing_lost";
    let (_tmp, backing, mnt) = fresh_dirs();
    let Some(fs) = lazyfs::mount_or_skip(test, &backing, &mnt) else {
        return;
    };
    // A durable start: ten messages and a topic, then a clean stop.
    let mut broker = start_broker(&mnt, Policy::Interval).unwrap_or_else(|e| panic!("{e}"));
    let mut c = broker.client();
    for i in 0..10 {
        assert_eq!(
            c.request(&format!("PRODUCE a{i}")),
            format!("ACK offset:{i}")
        );
    }
    assert_eq!(c.request("CREATE other"), "CREATED other");
    drop(c);
    let (status, _) = broker.signal_and_wait("TERM");
    assert!(status.success(), "{status}");
    fs.unmount().expect("unmount");

    let fs = lazyfs::LazyFs::mount(&backing, &mnt).expect("mount");
    let mut broker = start_broker(&mnt, Policy::Interval).unwrap_or_else(|e| panic!("{e}"));
    let mut c = broker.client();
    fs.fail_next_syncs(1);
    for i in 10..20 {
        assert_eq!(
            c.request(&format!("PRODUCE b{i}")),
            format!("ACK offset:{i}")
        );
    }
    // The interval's sync of those fails; the log says so.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !broker
        .stderr()
        .contains("takes no writes since a sync failed")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no failed sync reported; syncs seen {:?}; broker log:\n{}",
            fs.counts(),
            broker.stderr()
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        c.request("PRODUCE c"),
        "STORAGE_ERROR a sync of this log failed; it takes no writes until the broker restarts"
    );
    assert_eq!(c.request("CONSUME 19"), "MESSAGE offset:19 b19");
    assert_eq!(c.stat("fsync_errors"), 1);
    assert_eq!(c.request("USE other"), "USING other");
    assert_eq!(c.request("PRODUCE o"), "ACK offset:0");
    drop(c);
    broker.kill9();
    fs.power_cut().expect("power cut");

    // The b messages were acknowledged under `interval` and never synced:
    // lost, as that policy allows, and the restart does not claim them.
    let fs = lazyfs::LazyFs::mount(&backing, &mnt).expect("mount");
    let broker = start_broker(&mnt, Policy::Interval).unwrap_or_else(|e| panic!("{e}"));
    let mut c = broker.client();
    assert_eq!(c.request("CONSUME 9"), "MESSAGE offset:9 a9");
    assert_eq!(c.request("CONSUME 10"), "NO_MESSAGE");
    assert_eq!(c.request("PRODUCE again"), "ACK offset:10");
    drop(c);
    drop(broker);
    fs.unmount().expect("unmount");
}
