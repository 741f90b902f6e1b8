//! `consumer`: prints messages as they arrive. See `consumer --help`.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafka_like_broker::cli::{self, UsageError};
use kafka_like_broker::client::{self, ClientError, Connection, DEFAULT_TOPIC};
use kafka_like_broker::config::DEFAULT_ADDR;

const USAGE: &str = "\
Usage: consumer [--addr HOST:PORT] [--topic TOPIC] [--partition N]
                [--group NAME] [--from earliest|latest|OFFSET]
                [--max-messages N] [--timeout-ms N] [--format TEMPLATE]
                [--auth-token-file PATH]

Prints 'Consumed: <message> (offset: <n>)' for every message, from the
oldest one kept (or --from, or the group's committed offset) on, and then
each new one as it arrives. Reads a backlog in batches, long-polls when
there is nothing new (no CPU used while idle), and if the broker goes away
retries with backoff and resumes at the next offset it has not printed.

Without --group it reads one partition (--partition, default 0). With
--group NAME it joins the consumer group NAME: the broker shares the
topic's partitions among the group's members, each reads its own from the
group's committed offsets and commits after printing (every 1000 messages
or every second, when a partition moves to another member, and on
SIGINT/SIGTERM or exit). So members print disjoint messages; a stopped
member's partitions go to the others, which print nothing twice after a
clean stop and lose nothing after a crash or kill -9 (at-least-once: what
was printed but not yet committed is printed again).

Options:
  --addr HOST:PORT          broker address [default: localhost:9092]; a bare
                            port means localhost:PORT, a bare host HOST:9092
  --topic TOPIC             consume TOPIC [default: the default topic]
  --partition N             read partition N of the topic [default: 0]
  --group NAME              join consumer group NAME (not with --partition)
  --from earliest|latest|OFFSET
                            where to start: the oldest message kept, the
                            next one produced, or OFFSET (overrides the
                            group's offset) [default: the group's committed
                            offset with --group, else earliest]
  --max-messages N          exit (status 0) after printing N messages
  --timeout-ms N            exit (status 0) after N ms without a message;
                            0 prints what is there and exits. If the
                            broker cannot be reached meanwhile, status 1
  --format TEMPLATE         print each message as TEMPLATE, a line with
                            {value} {offset} {topic} {partition} {key}
                            (always empty: the line protocol carries values
                            only); {{ and }} are braces. The
                            two start-up lines then go to stderr
                            [default: 'Consumed: {value} (offset: {offset})']
  --auth-token-file PATH    authenticate with the token in PATH
  -h, --help                print this help
  -V, --version             print the version

Kafka console-consumer habits work too: --bootstrap-server HOST:PORT is
--addr, --from-beginning is --from earliest.
";

/// Messages asked for per FETCH.
const BATCH: u64 = 5000;
/// How long one FETCH waits for new messages; short enough to notice a
/// signal promptly, long enough to cost nothing while idle.
const WAIT_MS: u64 = 1000;
const COMMIT_EVERY_MESSAGES: u64 = 1000;
const COMMIT_EVERY: Duration = Duration::from_secs(1);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
const DEFAULT_FORMAT: &str = "Consumed: {value} (offset: {offset})";
const NAME_RULES: &str = "1 to 64 characters of A-Z a-z 0-9 . _ - and not . or ..";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
    At(u64),
}

struct Args {
    addr: String,
    topic: Option<String>,
    partition: Option<u32>,
    start: Option<Start>,
    group: Option<String>,
    token_file: Option<PathBuf>,
    max_messages: Option<u64>,
    timeout: Option<Duration>,
    format: Format,
    /// The start-up lines go to stderr when the output is not the
    /// original's.
    custom_format: bool,
}

fn parse_args() -> Result<Option<Args>, UsageError> {
    use cli::Arg::{Long, Short};
    let mut args = Args {
        addr: DEFAULT_ADDR.to_string(),
        topic: None,
        partition: None,
        start: None,
        group: None,
        token_file: None,
        max_messages: None,
        timeout: None,
        format: Format::parse(DEFAULT_FORMAT).map_err(UsageError)?,
        custom_format: false,
    };
    let mut parser = cli::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") | Long("bootstrap-server") => {
                let addr = parser.value()?;
                args.addr = client::complete_addr(&addr, false)
                    .map_err(|why| cli::invalid(parser.flag(), &addr, why))?;
            }
            Long("topic") => args.topic = Some(name(&mut parser, "topic")?),
            Long("partition") => args.partition = Some(parser.number(0, 1023)? as u32),
            Long("group") => args.group = Some(name(&mut parser, "group")?),
            Long("from") => {
                let from = parser.value()?;
                args.start = Some(match from.as_str() {
                    "earliest" | "beginning" => Start::Earliest,
                    "latest" | "end" => Start::Latest,
                    n => Start::At(kafka_like_broker::util::parse_u64(n.as_bytes()).ok_or_else(
                        || {
                            cli::invalid(
                                "--from",
                                n,
                                "must be earliest, latest or an offset (0 to 18446744073709551615)",
                            )
                        },
                    )?),
                })
            }
            Long("from-beginning") => args.start = Some(Start::Earliest),
            Long("max-messages") => args.max_messages = Some(parser.number(1, u64::MAX)?),
            Long("timeout-ms") => {
                args.timeout = Some(Duration::from_millis(parser.number(0, u64::MAX)?))
            }
            Long("format") => {
                let template = parser.value()?;
                args.format = Format::parse(&template)
                    .map_err(|why| cli::invalid("--format", &template, why))?;
                args.custom_format = true;
            }
            Long("auth-token-file") => args.token_file = Some(parser.path()?),
            Short('h') | Long("help") => {
                cli::out(USAGE);
                return Ok(None);
            }
            Short('V') | Long("version") => {
                cli::out(format!("consumer {}\n", env!("CARGO_PKG_VERSION")));
                return Ok(None);
            }
            _ => return Err(cli::unexpected(arg)),
        }
    }
    if let (Some(p), Some(_)) = (args.partition, &args.group) {
        return Err(cli::invalid(
            "--partition",
            &p.to_string(),
            "cannot be used with --group: the group assigns the partitions",
        ));
    }
    Ok(Some(args))
}

/// A topic or group name, checked here so a typo gets a clear message
/// rather than a protocol error.
fn name(parser: &mut cli::Parser, what: &str) -> Result<String, UsageError> {
    let name = parser.value()?;
    if !kafka_like_broker::util::is_valid_name(name.as_bytes()) {
        return Err(cli::invalid(
            parser.flag(),
            &name,
            format!("invalid {what} name: {NAME_RULES}"),
        ));
    }
    Ok(name)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => return cli::usage_error("consumer", &e),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::err(format!("consumer: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

/// One part of an output template.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
}

/// How each message is printed: `--format`.
#[derive(Debug, PartialEq, Eq)]
struct Format(Vec<Piece>);

impl Format {
    fn parse(template: &str) -> Result<Format, String> {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut rest = template;
        while let Some(i) = rest.find(['{', '}']) {
            text.extend_from_slice(&rest.as_bytes()[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                text.push(tail.as_bytes()[0]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err("a lone } (write }} for a brace)".into());
            }
            let end = tail
                .find('}')
                .ok_or("a { without its } (write {{ for a brace)")?;
            let piece = match &tail[1..end] {
                "topic" => Piece::Topic,
                "partition" => Piece::Partition,
                "offset" => Piece::Offset,
                "key" => Piece::Key,
                "value" => Piece::Value,
                other => {
                    return Err(format!(
                        "unknown field {{{other}}}; the fields are {{value}} {{offset}} \
                         {{topic}} {{partition}} {{key}}"
                    ));
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = &tail[end + 1..];
        }
        text.extend_from_slice(rest.as_bytes());
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Format(pieces))
    }

    /// Writes one message and a newline.
    fn write(
        &self,
        out: &mut impl Write,
        topic: &str,
        partition: u32,
        offset: u64,
        value: &[u8],
    ) -> io::Result<()> {
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.write_all(text)?,
                Piece::Topic => out.write_all(topic.as_bytes())?,
                Piece::Partition => write!(out, "{partition}")?,
                Piece::Offset => write!(out, "{offset}")?,
                Piece::Key => {}
                Piece::Value => out.write_all(value)?,
            }
        }
        out.write_all(b"\n")
    }
}

/// Where the consumer is, across reconnects.
struct Position {
    /// With --group: each partition's next offset to print and last
    /// commit, kept across reconnects (so a partition assigned again
    /// goes on where this consumer stopped printing).
    partitions: BTreeMap<u32, (u64, u64)>,
    /// --from was applied to the first assignment.
    from_applied: bool,
    /// The next offset to print.
    next: u64,
    /// Known from --from, the group's committed offset or the topic's
    /// bounds; until then it is found on connecting.
    known: bool,
    /// The last offset committed for the group.
    committed: u64,
    last_commit: Instant,
    /// Messages printed so far.
    printed: u64,
    /// When the last message was printed (or the consumer started).
    last_message: Instant,
}

/// Why `consume` returned without an error.
enum Done {
    /// SIGINT/SIGTERM, --max-messages or --timeout-ms.
    Finished,
    /// Nobody reads stdout any more (`consumer | head -3`).
    StdoutClosed,
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
    let status = |out: &mut BufWriter<io::StdoutLock>, line: &str| {
        if args.custom_format {
            cli::err(format!("{line}\n"));
        } else {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    status(&mut out, "Consumer started. Waiting for data...");
    let mut pos = Position {
        partitions: BTreeMap::new(),
        from_applied: false,
        next: 0,
        known: false,
        committed: 0,
        last_commit: Instant::now(),
        printed: 0,
        last_message: Instant::now(),
    };
    if let Some(Start::At(offset)) = args.start {
        pos.next = offset;
        pos.known = true;
    }
    let mut retry = RETRY_FIRST;
    loop {
        let error = match Connection::open(&args.addr) {
            Ok(mut conn) => {
                status(&mut out, &format!("Connected to broker at {}", args.addr));
                match consume(&mut conn, args, token.as_deref(), &mut pos, &mut out, &stop) {
                    Ok(Done::Finished | Done::StdoutClosed) => return Ok(()),
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
        let mut wait = retry;
        if let Some(timeout) = args.timeout {
            let left = timeout.saturating_sub(pos.last_message.elapsed());
            if left.is_zero() {
                return Err(ClientError::Local(format!(
                    "{error}; no message for --timeout-ms {}",
                    timeout.as_millis()
                )));
            }
            wait = wait.min(left);
        }
        cli::err(format!(
            "consumer: {error}; retrying in {} ms\n",
            wait.as_millis()
        ));
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(wait));
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Finds where to start, the first time a connection works.
fn find_start(conn: &mut Connection, args: &Args, pos: &mut Position) -> Result<(), ClientError> {
    let topic = args.topic.as_deref().unwrap_or(DEFAULT_TOPIC);
    pos.next = match (args.start, &args.group) {
        (Some(Start::At(offset)), _) => offset,
        (None, Some(group)) => {
            let reply = conn.expect(&format!("OFFSET {group}"), "OFFSET ")?;
            let next = reply.rsplit(' ').next().and_then(|n| n.parse().ok());
            let next = next
                .ok_or_else(|| ClientError::Local(format!("unexpected OFFSET reply {reply:?}")))?;
            pos.committed = next;
            next
        }
        (Some(Start::Latest), _) => topic_bounds(conn, topic, args.partition.unwrap_or(0))?.1,
        (Some(Start::Earliest) | None, _) => {
            topic_bounds(conn, topic, args.partition.unwrap_or(0))?.0
        }
    };
    pos.known = true;
    Ok(())
}

/// A partition's first and next offsets, from `TOPICS` (which lists a
/// topic of one partition by its name, others as `topic/partition`).
fn topic_bounds(
    conn: &mut Connection,
    topic: &str,
    partition: u32,
) -> Result<(u64, u64), ClientError> {
    conn.send(b"TOPICS\n")?;
    let single = format!("TOPIC {topic} ");
    let several = format!("TOPIC {topic}/{partition} ");
    let mut bounds = None;
    let mut line = Vec::new();
    loop {
        conn.read_line(&mut line)?;
        if line == b"END" {
            break;
        }
        let fields = line
            .strip_prefix(several.as_bytes())
            .or_else(|| (partition == 0).then(|| line.strip_prefix(single.as_bytes()))?);
        let Some(fields) = fields else {
            if line.starts_with(b"TOPIC ") {
                continue;
            }
            return Err(ClientError::Reply {
                addr: conn.addr.clone(),
                request: "TOPICS".into(),
                reply: String::from_utf8_lossy(&line).into_owned(),
            });
        };
        let field = |name: &str| {
            fields
                .split(|&b| b == b' ')
                .find_map(|f| f.strip_prefix(name.as_bytes()))
                .and_then(kafka_like_broker::util::parse_u64)
        };
        bounds = field("first:").zip(field("next:"));
    }
    bounds.ok_or_else(|| ClientError::Local(format!("the broker did not list topic {topic}")))
}

/// Fetches and prints until done or the connection breaks.
fn consume(
    conn: &mut Connection,
    args: &Args,
    token: Option<&[u8]>,
    pos: &mut Position,
    out: &mut impl Write,
    stop: &AtomicBool,
) -> Result<Done, ClientError> {
    conn.setup(token, args.topic.as_deref(), args.partition)?;
    if let Some(group) = &args.group {
        return consume_group(conn, args, group, pos, out, stop);
    }
    if !pos.known {
        find_start(conn, args, pos)?;
    }
    let topic = args.topic.as_deref().unwrap_or(DEFAULT_TOPIC);
    let mut line = Vec::new();
    let mut since_commit = 0u64;
    // --timeout-ms ends the run only after a FETCH that found nothing, so
    // `--timeout-ms 0` still prints the whole backlog first.
    let mut last_fetch_empty = false;
    loop {
        let limit_reached = args.max_messages.is_some_and(|max| pos.printed >= max);
        let timed_out = args
            .timeout
            .is_some_and(|timeout| pos.last_message.elapsed() >= timeout);
        if stop.load(Ordering::Relaxed) || limit_reached || (timed_out && last_fetch_empty) {
            commit(conn, args, pos)?;
            return Ok(Done::Finished);
        }
        let batch = match args.max_messages {
            Some(max) => (max - pos.printed).min(BATCH),
            None => BATCH,
        };
        let wait = match args.timeout {
            Some(timeout) => {
                let left = timeout.saturating_sub(pos.last_message.elapsed());
                (left.as_millis() as u64).min(WAIT_MS)
            }
            None => WAIT_MS,
        };
        conn.send(format!("FETCH {} {batch} {wait}\n", pos.next).as_bytes())?;
        let mut got = 0u64;
        loop {
            conn.read_line(&mut line)?;
            if let Some((offset, message)) = client::parse_any_message(&line) {
                match args
                    .format
                    .write(out, topic, args.partition.unwrap_or(0), offset, &message)
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        return Ok(Done::StdoutClosed);
                    }
                    Err(e) => return Err(ClientError::Local(format!("writing stdout: {e}"))),
                }
                pos.next = offset + 1;
                pos.printed += 1;
                since_commit += 1;
                got += 1;
            } else if let Some(next) = client::parse_end(&line) {
                pos.next = pos.next.max(next);
                break;
            } else if let Some(first) = line
                .strip_prefix(b"OFFSET_OUT_OF_RANGE first:")
                .and_then(kafka_like_broker::util::parse_u64)
            {
                // Retention deleted what we had not read: carry on from the
                // oldest message still there, and say so.
                cli::err(format!(
                    "consumer: offsets {}..{first} were deleted by retention before they were read; skipping to {first}\n",
                    pos.next
                ));
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
        match out.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Done::StdoutClosed),
            Err(e) => return Err(ClientError::Local(format!("writing stdout: {e}"))),
        }
        if got > 0 {
            pos.last_message = Instant::now();
        }
        last_fetch_empty = got == 0;
        if args.group.is_some()
            && pos.next > pos.committed
            && (since_commit >= COMMIT_EVERY_MESSAGES || pos.last_commit.elapsed() >= COMMIT_EVERY)
        {
            commit(conn, args, pos)?;
            since_commit = 0;
        }
    }
}

/// How often a group member heartbeats (well within the session timeout).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// Reads one reply line, handing `ASSIGNED` notices (which the broker
/// sends unasked when the group's assignment changes) to `assigned`.
fn read_reply(
    conn: &mut Connection,
    line: &mut Vec<u8>,
    assigned: &mut Option<Assignment>,
    group: &str,
) -> Result<(), ClientError> {
    loop {
        conn.read_line(line)?;
        match parse_assigned(line, group) {
            Some(parts) => {
                *assigned = Some(Assignment {
                    generation: parse_generation(line).unwrap_or(0),
                    partitions: parts,
                })
            }
            None => return Ok(()),
        }
    }
}

/// An `ASSIGNED` notice: the generation and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assignment {
    generation: i32,
    partitions: Vec<u32>,
}

/// `ASSIGNED <group> generation:<g> partitions:<p>,<p>|none`.
fn parse_assigned(line: &[u8], group: &str) -> Option<Vec<u32>> {
    parse_partitions(line.strip_prefix(b"ASSIGNED ")?, group)
}

/// `ALIVE <group> generation:<g> partitions:...`, the reply to HEARTBEAT.
fn alive_assignment(line: &str, group: &str) -> Option<Assignment> {
    let bytes = line.as_bytes();
    Some(Assignment {
        partitions: parse_partitions(bytes.strip_prefix(b"ALIVE ")?, group)?,
        generation: parse_generation(bytes)?,
    })
}

/// The generation in an `ASSIGNED`/`ALIVE` line.
fn parse_generation(line: &[u8]) -> Option<i32> {
    line.split(|&b| b == b' ')
        .find_map(|f| f.strip_prefix(b"generation:"))
        .and_then(kafka_like_broker::util::parse_u64)
        .and_then(|g| i32::try_from(g).ok())
}

fn parse_partitions(rest: &[u8], group: &str) -> Option<Vec<u32>> {
    let rest = rest.strip_prefix(group.as_bytes())?.strip_prefix(b" ")?;
    let parts = rest
        .split(|&b| b == b' ')
        .find_map(|f| f.strip_prefix(b"partitions:"))?;
    if parts == b"none" {
        return Some(Vec::new());
    }
    parts
        .split(|&b| b == b',')
        .map(|p| kafka_like_broker::util::parse_u64(p).map(|p| p as u32))
        .collect()
}

/// A request whose one-line reply must start with `expected`, with any
/// `ASSIGNED` notices set aside.
fn group_request(
    conn: &mut Connection,
    request: &str,
    expected: &str,
    assigned: &mut Option<Assignment>,
    group: &str,
) -> Result<String, ClientError> {
    conn.send(format!("{request}\n").as_bytes())?;
    let mut line = Vec::new();
    read_reply(conn, &mut line, assigned, group)?;
    let reply = String::from_utf8_lossy(&line).into_owned();
    if !reply.starts_with(expected) {
        return Err(ClientError::Reply {
            addr: conn.addr.clone(),
            request: request.split(' ').next().unwrap_or("").to_string(),
            reply,
        });
    }
    Ok(reply)
}

/// Consumes as a member of `group`: the broker assigns partitions
/// (`JOIN`, then `ASSIGNED` notices); each owned partition is read in
/// turn from its committed offset, and commits go per partition (every
/// 1000 messages or second, when a partition is taken away, and at the
/// end, before `LEAVE`). A member killed without leaving drops out when
/// its connection closes; the others then read from the last commit
/// (at-least-once).
fn consume_group(
    conn: &mut Connection,
    args: &Args,
    group: &str,
    pos: &mut Position,
    out: &mut impl Write,
    stop: &AtomicBool,
) -> Result<Done, ClientError> {
    let topic = args.topic.as_deref().unwrap_or(DEFAULT_TOPIC);
    let mut assigned = None;
    let reply = group_request(
        conn,
        &format!("JOIN {group}"),
        "JOINED ",
        &mut assigned,
        group,
    )?;
    let _ = reply;
    let mut owned: Vec<u32> = Vec::new();
    let mut line = Vec::new();
    let mut last_heartbeat = Instant::now();
    let mut since_commit = 0u64;
    let mut turn = 0usize;
    let mut empty_rounds = 0usize;
    loop {
        // Apply a new assignment: commit what is given up, find where to
        // start what is new.
        if let Some(Assignment {
            generation,
            partitions: parts,
        }) = assigned.take()
        {
            let revoked: Vec<u32> = owned
                .iter()
                .copied()
                .filter(|p| !parts.contains(p))
                .collect();
            commit_partitions(conn, topic, group, pos, &revoked, &mut assigned)?;
            if !revoked.is_empty() {
                // Committed and no longer reading them: the broker may give
                // them to their new owner now.
                group_request(
                    conn,
                    &format!("HEARTBEAT {group} {generation}"),
                    "ALIVE ",
                    &mut assigned,
                    group,
                )?;
                last_heartbeat = Instant::now();
            }
            for &p in &parts {
                if owned.contains(&p) {
                    continue;
                }
                group_request(
                    conn,
                    &format!("USE {topic}/{p}"),
                    "USING ",
                    &mut assigned,
                    group,
                )?;
                let reply = group_request(
                    conn,
                    &format!("OFFSET {group}"),
                    "OFFSET ",
                    &mut assigned,
                    group,
                )?;
                let committed: u64 = reply
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        ClientError::Local(format!("unexpected OFFSET reply {reply:?}"))
                    })?;
                let start = match (args.start, pos.from_applied) {
                    (Some(Start::At(o)), false) => o,
                    _ => committed,
                };
                let entry = pos.partitions.entry(p).or_insert((start, committed));
                // Printed further than committed before a reconnect: go on.
                entry.0 = entry.0.max(start);
                entry.1 = committed;
            }
            pos.from_applied = true;
            owned = parts;
            turn = 0;
        }
        let limit_reached = args.max_messages.is_some_and(|max| pos.printed >= max);
        let timed_out = args
            .timeout
            .is_some_and(|timeout| pos.last_message.elapsed() >= timeout);
        if stop.load(Ordering::Relaxed)
            || limit_reached
            || (timed_out && empty_rounds > 0 && empty_rounds >= owned.len())
        {
            commit_partitions(conn, topic, group, pos, &owned.clone(), &mut assigned)?;
            group_request(
                conn,
                &format!("LEAVE {group}"),
                "LEFT ",
                &mut assigned,
                group,
            )?;
            return Ok(Done::Finished);
        }
        if last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
            let reply = group_request(
                conn,
                &format!("HEARTBEAT {group}"),
                "ALIVE ",
                &mut assigned,
                group,
            )?;
            if assigned.is_none() {
                assigned = alive_assignment(&reply, group).filter(|a| a.partitions != owned);
            }
            last_heartbeat = Instant::now();
            continue;
        }
        if owned.is_empty() {
            // Nothing to read (more members than partitions): wait for a
            // reassignment, heartbeating.
            let reply = group_request(
                conn,
                &format!("HEARTBEAT {group}"),
                "ALIVE ",
                &mut assigned,
                group,
            )?;
            if assigned.is_none() {
                assigned = alive_assignment(&reply, group).filter(|a| !a.partitions.is_empty());
            }
            last_heartbeat = Instant::now();
            // Wait for the broker to push a new assignment (or time to
            // heartbeat again).
            let mut notice = Vec::new();
            while assigned.is_none()
                && last_heartbeat.elapsed() < HEARTBEAT_EVERY
                && !stop.load(Ordering::Relaxed)
            {
                if conn.read_line_within(&mut notice, Duration::from_millis(200))? {
                    match parse_assigned(&notice, group) {
                        Some(parts) => {
                            assigned = Some(Assignment {
                                generation: parse_generation(&notice).unwrap_or(0),
                                partitions: parts,
                            })
                        }
                        None => {
                            return Err(ClientError::Reply {
                                addr: conn.addr.clone(),
                                request: "JOIN".into(),
                                reply: String::from_utf8_lossy(&notice).into_owned(),
                            });
                        }
                    }
                    notice.clear();
                }
            }
            empty_rounds = empty_rounds.max(1);
            continue;
        }
        let p = owned[turn % owned.len()];
        turn += 1;
        let next = pos.partitions.get(&p).map_or(0, |e| e.0);
        let batch = match args.max_messages {
            Some(max) => (max - pos.printed).min(BATCH),
            None => BATCH,
        };
        // Wait only when one partition is owned; with several, a short
        // wait spread over them.
        let wait = (WAIT_MS / owned.len() as u64).max(50);
        let wait = match args.timeout {
            Some(timeout) => wait.min(
                timeout
                    .saturating_sub(pos.last_message.elapsed())
                    .as_millis() as u64,
            ),
            None => wait,
        };
        group_request(
            conn,
            &format!("USE {topic}/{p}"),
            "USING ",
            &mut assigned,
            group,
        )?;
        conn.send(format!("FETCH {next} {batch} {wait}\n").as_bytes())?;
        let mut got = 0u64;
        let mut next_pos = next;
        loop {
            read_reply(conn, &mut line, &mut assigned, group)?;
            if let Some((offset, message)) = client::parse_any_message(&line) {
                match args.format.write(out, topic, p, offset, &message) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        return Ok(Done::StdoutClosed);
                    }
                    Err(e) => return Err(ClientError::Local(format!("writing stdout: {e}"))),
                }
                next_pos = offset + 1;
                pos.printed += 1;
                since_commit += 1;
                got += 1;
            } else if let Some(end) = client::parse_end(&line) {
                next_pos = next_pos.max(end);
                break;
            } else if let Some(first) = line
                .strip_prefix(b"OFFSET_OUT_OF_RANGE first:")
                .and_then(kafka_like_broker::util::parse_u64)
            {
                cli::err(format!(
                    "consumer: offsets {next}..{first} of partition {p} were deleted by retention before they were read; skipping to {first}\n"
                ));
                next_pos = first;
                break;
            } else {
                return Err(ClientError::Reply {
                    addr: conn.addr.clone(),
                    request: "FETCH".into(),
                    reply: String::from_utf8_lossy(&line).into_owned(),
                });
            }
        }
        if let Some(e) = pos.partitions.get_mut(&p) {
            e.0 = next_pos;
        }
        match out.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Done::StdoutClosed),
            Err(e) => return Err(ClientError::Local(format!("writing stdout: {e}"))),
        }
        if got > 0 {
            pos.last_message = Instant::now();
            empty_rounds = 0;
        } else {
            empty_rounds += 1;
        }
        if since_commit >= COMMIT_EVERY_MESSAGES || pos.last_commit.elapsed() >= COMMIT_EVERY {
            commit_partitions(conn, topic, group, pos, &owned.clone(), &mut assigned)?;
            since_commit = 0;
        }
    }
}

/// Commits each of `partitions` whose position moved past its last commit.
fn commit_partitions(
    conn: &mut Connection,
    topic: &str,
    group: &str,
    pos: &mut Position,
    partitions: &[u32],
    assigned: &mut Option<Assignment>,
) -> Result<(), ClientError> {
    for &p in partitions {
        let Some(&(next, committed)) = pos.partitions.get(&p) else {
            continue;
        };
        if next > committed {
            group_request(conn, &format!("USE {topic}/{p}"), "USING ", assigned, group)?;
            group_request(
                conn,
                &format!("COMMIT {group} {next}"),
                "COMMITTED ",
                assigned,
                group,
            )?;
            if let Some(e) = pos.partitions.get_mut(&p) {
                e.1 = next;
            }
        }
    }
    pos.last_commit = Instant::now();
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, offset: u64, value: &[u8]) -> Result<String, String> {
        let format = Format::parse(template)?;
        let mut out = Vec::new();
        format.write(&mut out, "orders", 0, offset, value).unwrap();
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn formats_messages_from_a_template() {
        assert_eq!(
            render(DEFAULT_FORMAT, 7, b"hello world").unwrap(),
            "Consumed: hello world (offset: 7)\n"
        );
        assert_eq!(render("{value}", 7, b"v").unwrap(), "v\n");
        assert_eq!(
            render("{topic}/{partition}@{offset} [{key}] {{{value}}}", 3, b"x").unwrap(),
            "orders/0@3 [] {x}\n"
        );
        assert_eq!(render("", 1, b"x").unwrap(), "\n");
        assert!(
            render("{nope}", 0, b"")
                .unwrap_err()
                .contains("unknown field {nope}")
        );
        assert!(render("{value", 0, b"").is_err());
        assert!(render("value}", 0, b"").is_err());
    }
}
