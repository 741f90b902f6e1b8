//! `consumer`: prints messages as they arrive. See `consumer --help`.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafka_like_broker::client::{self, ClientError, Connection};
use kafka_like_broker::config::DEFAULT_ADDR;

const USAGE: &str = "\
Usage: consumer [--addr HOST:PORT] [--topic TOPIC] [--from OFFSET] [--group NAME]
                [--auth-token-file PATH]

Prints 'Consumed: <message> (offset: <n>)' for every message, from the
start (or --from, or the group's committed offset) on, and then each new
one as it arrives. Reads a backlog in batches, long-polls when there is
nothing new (no CPU used while idle), and if the broker goes away retries
with backoff and resumes at the next offset it has not printed.

With --group it starts from the group's committed offset and commits its
position after printing (every 1000 messages or every second, and on
SIGINT/SIGTERM), so a restarted consumer prints nothing twice after a clean
stop and loses nothing after a crash (at-least-once).

Options:
  --addr HOST:PORT          broker address [default: localhost:9092]
  --topic TOPIC             consume TOPIC [default: the default topic]
  --from OFFSET             start at OFFSET (overrides the group's offset)
  --group NAME              consumer group whose offset to resume and commit
  --auth-token-file PATH    authenticate with the token in PATH
  -h, --help                print this help
  -V, --version             print the version
";

/// Messages asked for per FETCH.
const BATCH: u32 = 5000;
/// How long one FETCH waits for new messages; short enough to notice a
/// signal promptly, long enough to cost nothing while idle.
const WAIT_MS: u32 = 1000;
const COMMIT_EVERY_MESSAGES: u64 = 1000;
const COMMIT_EVERY: Duration = Duration::from_secs(1);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

struct Args {
    addr: String,
    topic: Option<String>,
    from: Option<u64>,
    group: Option<String>,
    token_file: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        addr: DEFAULT_ADDR.to_string(),
        topic: None,
        from: None,
        group: None,
        token_file: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => args.addr = parser.value()?.string()?,
            Long("topic") => args.topic = Some(parser.value()?.string()?),
            Long("from") => args.from = Some(parser.value()?.parse()?),
            Long("group") => args.group = Some(parser.value()?.string()?),
            Long("auth-token-file") => args.token_file = Some(parser.value()?.into()),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            Short('V') | Long("version") => {
                println!("consumer {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the consumer is, across reconnects.
struct Position {
    /// The next offset to print.
    next: u64,
    /// Known from --from or the group's committed offset.
    known: bool,
    /// The last offset committed for the group.
    committed: u64,
    last_commit: Instant,
}

fn run(args: &Args) -> Result<(), ClientError> {
    let token = match &args.token_file {
        Some(path) => Some(client::read_token(path)?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| ClientError::Local(format!("cannot handle signals: {e}")))?;
    }
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let _ = writeln!(out, "Consumer started. Waiting for data...");
    let _ = out.flush();
    let mut pos = Position {
        next: args.from.unwrap_or(0),
        known: args.from.is_some() || args.group.is_none(),
        committed: 0,
        last_commit: Instant::now(),
    };
    let mut retry = RETRY_FIRST;
    loop {
        let error = match Connection::open(&args.addr) {
            Ok(mut conn) => {
                let _ = writeln!(out, "Connected to broker at {}", args.addr);
                let _ = out.flush();
                match consume(&mut conn, args, token.as_deref(), &mut pos, &mut out, &stop) {
                    Ok(()) => return Ok(()),
                    Err(e @ ClientError::Io { .. }) => {
                        // A connection that worked resets the backoff.
                        retry = RETRY_FIRST;
                        e
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e @ ClientError::Io { .. }) => e,
            Err(e) => return Err(e),
        };
        let _ = out.flush();
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        eprintln!("consumer: {error}; retrying in {} ms", retry.as_millis());
        let deadline = Instant::now() + retry;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(retry));
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Fetches and prints until stopped or the connection breaks.
fn consume(
    conn: &mut Connection,
    args: &Args,
    token: Option<&[u8]>,
    pos: &mut Position,
    out: &mut impl Write,
    stop: &AtomicBool,
) -> Result<(), ClientError> {
    conn.setup(token, args.topic.as_deref())?;
    if let (Some(group), false) = (&args.group, pos.known) {
        let reply = conn.expect(&format!("OFFSET {group}"), "OFFSET ")?;
        pos.next = reply
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ClientError::Local(format!("unexpected OFFSET reply {reply:?}")))?;
        pos.committed = pos.next;
        pos.known = true;
    }
    let mut line = Vec::new();
    let mut since_commit = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = out.flush();
            return commit(conn, args, pos);
        }
        conn.send(format!("FETCH {} {BATCH} {WAIT_MS}\n", pos.next).as_bytes())?;
        loop {
            conn.read_line(&mut line)?;
            if let Some((offset, message)) = client::parse_message(&line) {
                print_message(out, message, offset)
                    .map_err(|e| ClientError::Local(format!("writing stdout: {e}")))?;
                pos.next = offset + 1;
                since_commit += 1;
            } else if let Some(next) = client::parse_end(&line) {
                pos.next = pos.next.max(next);
                break;
            } else if let Some(first) = line
                .strip_prefix(b"OFFSET_OUT_OF_RANGE first:")
                .and_then(kafka_like_broker::util::parse_u64)
            {
                // Retention deleted what we had not read: carry on from the
                // oldest message still there, and say so.
                eprintln!(
                    "consumer: offsets {}..{first} were deleted by retention before they were read; skipping to {first}",
                    pos.next
                );
                pos.next = first;
                break;
            } else {
                return Err(ClientError::Reply {
                    addr: conn.addr.clone(),
                    request: "FETCH".into(),
                    reply: String::from_utf8_lossy(&line).into_owned(),
                });
            }
        }
        out.flush()
            .map_err(|e| ClientError::Local(format!("writing stdout: {e}")))?;
        if args.group.is_some()
            && pos.next > pos.committed
            && (since_commit >= COMMIT_EVERY_MESSAGES || pos.last_commit.elapsed() >= COMMIT_EVERY)
        {
            commit(conn, args, pos)?;
            since_commit = 0;
        }
    }
}

fn print_message(out: &mut impl Write, message: &[u8], offset: u64) -> io::Result<()> {
    out.write_all(b"Consumed: ")?;
    out.write_all(message)?;
    writeln!(out, " (offset: {offset})")
}

/// Commits the group's position (after the messages were printed).
fn commit(conn: &mut Connection, args: &Args, pos: &mut Position) -> Result<(), ClientError> {
    if let Some(group) = &args.group {
        if pos.next > pos.committed {
            conn.expect(&format!("COMMIT {group} {}", pos.next), "COMMITTED ")?;
            pos.committed = pos.next;
        }
        pos.last_commit = Instant::now();
    }
    Ok(())
}
