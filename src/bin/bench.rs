//! `bench`: load generator for the broker and, for side-by-side runs, for
//! Redis and beanstalkd. See `bench --help`.
//!
//! One thread drives every connection through one `mio::Poll`, keeping
//! `--depth` requests in flight per connection, so the client costs little
//! CPU next to the server it measures on the same machine. Every reply is
//! checked; an error reply or a wrong offset fails the run.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use kafka_like_broker::cli::{self, UsageError};
use kafka_like_broker::client::{parse_end, parse_message};
use kafka_like_broker::util::{parse_u64, push_u64};

const USAGE: &str = "\
Usage: bench produce|consume|idle [OPTIONS]

  produce   send --messages messages of --size bytes, --depth in flight on
            each of --conns connections; check every reply
  consume   drain --messages stored messages (broker: FETCH batches;
            redis: LPOP with a count; beanstalkd: reserve + delete)
  idle      open --conns connections, check each answers, hold them for
            --seconds (to measure a server's memory per connection)

Options:
  --target broker|redis|beanstalkd   what to talk to [default: broker]
  --addr HOST:PORT          [default: localhost:9092, 6379, 11300 by target]
  --conns C                 connections [default: 1]
  --depth D                 requests in flight per connection [default: 1]
  --messages N              [default: 100000]
  --size BYTES              message size for produce [default: 100]
  --topic T                 broker topic / redis list / beanstalkd tube
  --batch B                 messages per FETCH or LPOP in consume, up to
                            100000 [default: 1000]
  --from OFFSET             consume from this offset (broker) [default: 0]
  --seconds S               how long idle holds its connections [default: 10]
  -h, --help

Prints one summary line on stdout (wrapped here):
  bench produce target=broker conns=4 depth=256 messages=2000000 size=100
  seconds=0.95 msg_per_s=2105263 mb_per_s=210.5 p50_us=410 p99_us=1210
  p999_us=2100
and a progress line on stderr every 2 s for longer runs.
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Produce,
    Consume,
    Idle,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Broker,
    Redis,
    Beanstalkd,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Broker => "broker",
            Target::Redis => "redis",
            Target::Beanstalkd => "beanstalkd",
        }
    }
}

struct Args {
    mode: Mode,
    target: Target,
    addr: Option<String>,
    conns: usize,
    depth: usize,
    messages: u64,
    size: usize,
    topic: Option<String>,
    batch: u64,
    from: u64,
    seconds: f64,
}

fn parse_args() -> Result<Option<Args>, UsageError> {
    use cli::Arg::{Long, Short, Value};
    let mut parser = cli::Parser::from_env();
    let mut args = Args {
        mode: Mode::Produce,
        target: Target::Broker,
        addr: None,
        conns: 1,
        depth: 1,
        messages: 100_000,
        size: 100,
        topic: None,
        batch: 1000,
        from: 0,
        seconds: 10.0,
    };
    let mut mode = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Value(v) if mode.is_none() => {
                mode = Some(match v.to_str() {
                    Some("produce") => Mode::Produce,
                    Some("consume") => Mode::Consume,
                    Some("idle") => Mode::Idle,
                    _ => {
                        return Err(UsageError(format!(
                            "unknown mode {:?}: give produce, consume or idle",
                            v.to_string_lossy()
                        )));
                    }
                })
            }
            Long("target") => {
                args.target = match parser.choice(&["broker", "redis", "beanstalkd"])? {
                    "redis" => Target::Redis,
                    "beanstalkd" => Target::Beanstalkd,
                    _ => Target::Broker,
                }
            }
            Long("addr") => args.addr = Some(parser.value()?),
            Long("conns") => args.conns = parser.count(1, 100_000)?,
            Long("depth") => args.depth = parser.count(1, 1_000_000)?,
            Long("messages") => args.messages = parser.number(1, u64::MAX)?,
            Long("size") => args.size = parser.count(1, 1 << 30)?,
            Long("topic") => args.topic = Some(parser.value()?),
            Long("batch") => args.batch = parser.number(1, 100_000)?,
            Long("from") => args.from = parser.number(0, u64::MAX)?,
            Long("seconds") => args.seconds = parser.float_from_zero(86_400.0, "seconds")?,
            Short('h') | Long("help") => {
                cli::out(USAGE);
                return Ok(None);
            }
            _ => return Err(cli::unexpected(arg)),
        }
    }
    args.mode = mode.ok_or_else(|| UsageError("give a mode: produce, consume or idle".into()))?;
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => return cli::usage_error("bench", &e),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::err(format!("bench: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

/// One connection's state.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    sent: usize,
    input: Vec<u8>,
    /// Send time of each request in flight, oldest first.
    in_flight: VecDeque<Instant>,
    /// What each request in flight expects (consume: the FETCH's next
    /// offset).
    expect: VecDeque<u64>,
    /// Consume: the range each FETCH in flight asked for.
    fetch_range: VecDeque<(u64, u64)>,
    /// Consume: ranges a short FETCH left to ask for again.
    repairs: Vec<(u64, u64)>,
    /// Requests this connection still has to send.
    to_send: u64,
    /// Produce: the last offset acknowledged here (must increase).
    last_offset: Option<u64>,
    /// Consume: the next offset this connection asks for, and its end.
    next_fetch: u64,
    end_fetch: u64,
    /// Beanstalkd consume: jobs to delete.
    deletes: Vec<u64>,
    /// Beanstalkd consume: a reserved job whose body is still arriving.
    body_pending: Option<usize>,
    done: bool,
}

fn default_addr(target: Target) -> &'static str {
    match target {
        Target::Broker => "localhost:9092",
        Target::Redis => "localhost:6379",
        Target::Beanstalkd => "localhost:11300",
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("no address for {addr}"))
}

fn run(args: &Args) -> Result<(), String> {
    let addr_text = args
        .addr
        .clone()
        .unwrap_or_else(|| default_addr(args.target).to_string());
    let addr = resolve(&addr_text)?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut conns = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        // A blocking connect keeps errors simple; the socket is then made
        // non-blocking for the run.
        let std_stream = std::net::TcpStream::connect(addr)
            .map_err(|e| format!("cannot connect to {addr_text}: {e}"))?;
        std_stream.set_nodelay(true).map_err(|e| e.to_string())?;
        std_stream
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| e.to_string())?;
        conns.push(Conn {
            stream,
            out: Vec::with_capacity(64 * 1024),
            sent: 0,
            input: Vec::with_capacity(64 * 1024),
            in_flight: VecDeque::new(),
            expect: VecDeque::new(),
            fetch_range: VecDeque::new(),
            repairs: Vec::new(),
            to_send: 0,
            last_offset: None,
            next_fetch: 0,
            end_fetch: 0,
            deletes: Vec::new(),
            body_pending: None,
            done: false,
        });
    }
    if args.mode == Mode::Idle {
        return idle(args, &mut poll, &mut conns);
    }
    setup(args, &mut poll, &mut conns)?;

    // Split the work over the connections.
    let per = args.messages / args.conns as u64;
    let extra = args.messages % args.conns as u64;
    let mut start = args.from;
    for (i, c) in conns.iter_mut().enumerate() {
        let share = per + u64::from((i as u64) < extra);
        match args.mode {
            Mode::Produce => c.to_send = share,
            Mode::Consume => {
                c.next_fetch = start;
                c.end_fetch = start + share;
                start += share;
                // Redis and beanstalkd pop from one queue: count messages.
                c.to_send = share;
            }
            Mode::Idle => {}
        }
        c.done = share == 0;
    }

    let payload = vec![b'x'; args.size];
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut completed: u64 = 0;
    let mut offsets: Vec<u64> = Vec::new();
    let started = Instant::now();
    let mut last_progress = started;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 256 * 1024];
    for (i, c) in conns.iter_mut().enumerate() {
        refill(args, c, &payload);
        flush(c).map_err(|e| format!("connection {i}: {e}"))?;
    }
    while conns.iter().any(|c| !c.done) {
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        if events.is_empty() {
            return Err(format!(
                "no progress for 10 s ({completed} of {} messages done)",
                args.messages
            ));
        }
        for event in events.iter() {
            let i = event.token().0;
            let c = &mut conns[i];
            if event.is_readable() {
                loop {
                    match c.stream.read(&mut scratch) {
                        Ok(0) => return Err(format!("connection {i}: closed by the server")),
                        Ok(n) => {
                            c.input.extend_from_slice(&scratch[..n]);
                            // Short read: the socket is empty; new data
                            // raises a new edge.
                            if n < scratch.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("connection {i}: {e}")),
                    }
                }
                let n = parse_replies(args, c, &mut hist, &mut offsets)
                    .map_err(|e| format!("connection {i}: {e}"))?;
                completed += n;
            }
            refill(args, c, &payload);
            flush(c).map_err(|e| format!("connection {i}: {e}"))?;
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            cli::err(format!(
                "bench: {completed}/{} messages, {:.0} msg/s\n",
                args.messages,
                completed as f64 / secs
            ));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if args.mode == Mode::Produce && args.target == Target::Broker {
        offsets.sort_unstable();
        if let Some(w) = offsets.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("offset {} was acknowledged twice", w[0]));
        }
    }
    let bytes = completed as f64 * args.size as f64;
    cli::out(format!(
        "bench {} target={} conns={} depth={} messages={} size={} seconds={:.3} msg_per_s={:.0} mb_per_s={:.1} p50_us={} p99_us={} p999_us={}\n",
        if args.mode == Mode::Produce {
            "produce"
        } else {
            "consume"
        },
        args.target.name(),
        args.conns,
        args.depth,
        completed,
        args.size,
        secs,
        completed as f64 / secs,
        bytes / secs / 1e6,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
    ));
    Ok(())
}

/// Selects the topic / tube first, synchronously, on every connection.
fn setup(args: &Args, poll: &mut Poll, conns: &mut [Conn]) -> Result<(), String> {
    let Some(topic) = &args.topic else {
        return Ok(());
    };
    let (request, expect): (String, &str) = match (args.target, args.mode) {
        (Target::Broker, _) => (format!("USE {topic}\n"), "USING "),
        (Target::Beanstalkd, Mode::Produce) => (format!("use {topic}\r\n"), "USING "),
        (Target::Beanstalkd, _) => (format!("watch {topic}\r\n"), "WATCHING "),
        (Target::Redis, _) => return Ok(()),
    };
    for c in conns.iter_mut() {
        c.out.extend_from_slice(request.as_bytes());
    }
    let mut events = Events::with_capacity(64);
    let mut pending = conns.len();
    let mut scratch = [0u8; 4096];
    while pending > 0 {
        for c in conns.iter_mut() {
            flush(c).map_err(|e| e.to_string())?;
        }
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        if events.is_empty() {
            return Err("no answer to USE/use/watch".into());
        }
        for event in events.iter() {
            let c = &mut conns[event.token().0];
            loop {
                match c.stream.read(&mut scratch) {
                    Ok(0) => return Err("closed during setup".into()),
                    Ok(n) => c.input.extend_from_slice(&scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            if let Some(nl) = c.input.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&c.input[..nl]).into_owned();
                if !line.starts_with(expect) {
                    return Err(format!("setup answered {line:?}"));
                }
                c.input.drain(..=nl);
                pending -= 1;
            }
        }
    }
    Ok(())
}

/// Queues requests until `depth` are in flight.
fn refill(args: &Args, c: &mut Conn, payload: &[u8]) {
    // Beanstalkd consume: deletes for reserved jobs go first; they are
    // requests too and get replies.
    for id in c.deletes.drain(..) {
        c.out.extend_from_slice(b"delete ");
        push_u64(&mut c.out, id);
        c.out.extend_from_slice(b"\r\n");
        c.in_flight.push_back(Instant::now());
        c.expect.push_back(u64::MAX);
    }
    let now = Instant::now();
    while c.in_flight.len() < args.depth && c.to_send > 0 {
        match (args.mode, args.target) {
            (Mode::Produce, Target::Broker) => {
                c.out.extend_from_slice(b"PRODUCE ");
                c.out.extend_from_slice(payload);
                c.out.push(b'\n');
                c.to_send -= 1;
            }
            (Mode::Produce, Target::Redis) => {
                let key = args.topic.as_deref().unwrap_or("q");
                resp(&mut c.out, &[b"RPUSH", key.as_bytes(), payload]);
                c.to_send -= 1;
            }
            (Mode::Produce, Target::Beanstalkd) => {
                c.out.extend_from_slice(b"put 0 0 60 ");
                push_u64(&mut c.out, payload.len() as u64);
                c.out.extend_from_slice(b"\r\n");
                c.out.extend_from_slice(payload);
                c.out.extend_from_slice(b"\r\n");
                c.to_send -= 1;
            }
            (Mode::Consume, Target::Broker) => {
                // A reply cut short by the broker's byte limit leaves a
                // range to ask for again; otherwise go on where we are.
                let (from, end) = match c.repairs.pop() {
                    Some(range) => range,
                    None if c.next_fetch < c.end_fetch => {
                        let end = c.end_fetch.min(c.next_fetch + args.batch);
                        let range = (c.next_fetch, end);
                        c.next_fetch = end;
                        range
                    }
                    None => break,
                };
                c.out.extend_from_slice(b"FETCH ");
                push_u64(&mut c.out, from);
                c.out.push(b' ');
                push_u64(&mut c.out, end - from);
                c.out.push(b'\n');
                c.expect.push_back(from);
                c.fetch_range.push_back((from, end));
                // Counted down as messages arrive.
                c.in_flight.push_back(now);
                continue;
            }
            (Mode::Consume, Target::Redis) => {
                let key = args.topic.as_deref().unwrap_or("q");
                let mut count = Vec::new();
                push_u64(&mut count, args.batch);
                resp(&mut c.out, &[b"LPOP", key.as_bytes(), &count]);
                // How many this pop may take is only known from the reply.
                c.expect.push_back(args.batch);
                c.in_flight.push_back(now);
                if c.in_flight.len() as u64 * args.batch >= c.to_send {
                    break;
                }
                continue;
            }
            (Mode::Consume, Target::Beanstalkd) => {
                let reserved = c.expect.iter().filter(|&&e| e != u64::MAX).count() as u64;
                if reserved >= c.to_send {
                    break;
                }
                c.out.extend_from_slice(b"reserve-with-timeout 0\r\n");
                c.expect.push_back(0);
                c.in_flight.push_back(now);
                continue;
            }
            (Mode::Idle, _) => break,
        }
        c.in_flight.push_back(now);
    }
}

/// Appends a RESP array of bulk strings.
fn resp(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.push(b'*');
    push_u64(out, parts.len() as u64);
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.push(b'$');
        push_u64(out, part.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

fn flush(c: &mut Conn) -> io::Result<()> {
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if c.sent == c.out.len() {
        c.out.clear();
        c.sent = 0;
    }
    Ok(())
}

/// Parses complete replies in `c.input`; returns messages completed.
fn parse_replies(
    args: &Args,
    c: &mut Conn,
    hist: &mut Histogram<u64>,
    offsets: &mut Vec<u64>,
) -> Result<u64, String> {
    let mut pos = 0;
    let mut completed = 0;
    let input = std::mem::take(&mut c.input);
    let result = (|| {
        loop {
            if let Some(body) = c.body_pending {
                // A beanstalkd job body (plus \r\n) must be complete.
                if input.len() - pos < body + 2 {
                    return Ok(());
                }
                pos += body + 2;
                c.body_pending = None;
                continue;
            }
            let Some(nl) = memchr::memchr(b'\n', &input[pos..]) else {
                return Ok(());
            };
            let line = &input[pos..pos + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // A Redis array header needs all its elements before it counts.
            if args.target == Target::Redis
                && args.mode == Mode::Consume
                && line.first() == Some(&b'*')
            {
                let Some(n) = parse_u64(&line[1..]) else {
                    return Err(format!("bad reply {:?}", String::from_utf8_lossy(line)));
                };
                let mut p = pos + nl + 1;
                for _ in 0..n {
                    let Some(hl) = memchr::memchr(b'\n', &input[p..]) else {
                        return Ok(());
                    };
                    let header = &input[p..p + hl];
                    let len = header
                        .strip_prefix(b"$")
                        .and_then(|h| parse_u64(h.strip_suffix(b"\r").unwrap_or(h)))
                        .ok_or_else(|| {
                            format!("bad bulk header {:?}", String::from_utf8_lossy(header))
                        })? as usize;
                    if input.len() < p + hl + 1 + len + 2 {
                        return Ok(());
                    }
                    p += hl + 1 + len + 2;
                }
                pos = p;
                record(c, hist)?;
                c.expect.pop_front();
                c.to_send = c.to_send.saturating_sub(n);
                completed += n;
                if n == 0 {
                    return Err("the queue ran dry before --messages were consumed".into());
                }
                if c.to_send == 0 {
                    c.done = true;
                }
                continue;
            }
            pos += nl + 1;
            completed += handle_line(args, c, line, hist, offsets)?;
        }
    })();
    c.input = input[pos..].to_vec();
    result.map(|()| completed)
}

fn record(c: &mut Conn, hist: &mut Histogram<u64>) -> Result<(), String> {
    let sent = c.in_flight.pop_front().ok_or("a reply nobody asked for")?;
    let micros = sent.elapsed().as_micros().max(1) as u64;
    let _ = hist.record(micros.min(60_000_000));
    Ok(())
}

/// One reply line; returns messages it completed.
fn handle_line(
    args: &Args,
    c: &mut Conn,
    line: &[u8],
    hist: &mut Histogram<u64>,
    offsets: &mut Vec<u64>,
) -> Result<u64, String> {
    let bad = || {
        format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        )
    };
    match (args.mode, args.target) {
        (Mode::Produce, Target::Broker) => {
            let offset = line
                .strip_prefix(b"ACK offset:")
                .and_then(parse_u64)
                .ok_or_else(bad)?;
            if c.last_offset.is_some_and(|last| offset <= last) {
                return Err(format!(
                    "offset {offset} after {:?} on one connection",
                    c.last_offset
                ));
            }
            c.last_offset = Some(offset);
            offsets.push(offset);
            finish_one(c, hist)
        }
        (Mode::Produce, Target::Redis) => {
            line.strip_prefix(b":")
                .and_then(parse_u64)
                .ok_or_else(bad)?;
            finish_one(c, hist)
        }
        (Mode::Produce, Target::Beanstalkd) => {
            line.strip_prefix(b"INSERTED ")
                .and_then(parse_u64)
                .ok_or_else(bad)?;
            finish_one(c, hist)
        }
        (Mode::Consume, Target::Broker) => {
            let want = *c.expect.front().ok_or_else(bad)?;
            if let Some((offset, _)) = parse_message(line) {
                if offset != want {
                    return Err(format!("got offset {offset}, expected {want}"));
                }
                *c.expect.front_mut().ok_or_else(bad)? += 1;
                c.to_send = c.to_send.saturating_sub(1);
                return Ok(1);
            }
            let end = parse_end(line).ok_or_else(bad)?;
            if end != want {
                return Err(format!("FETCH ended at {end}, expected {want}"));
            }
            record(c, hist)?;
            c.expect.pop_front();
            let (from, asked) = c.fetch_range.pop_front().ok_or_else(bad)?;
            if end == from && from < asked {
                return Err(format!(
                    "nothing stored at offset {from}: are there --messages stored from --from?"
                ));
            }
            if end < asked {
                c.repairs.push((end, asked));
            }
            if c.expect.is_empty() && c.repairs.is_empty() && c.next_fetch >= c.end_fetch {
                if c.to_send > 0 {
                    return Err(format!(
                        "{} messages short: are there --messages stored?",
                        c.to_send
                    ));
                }
                c.done = true;
            }
            Ok(0)
        }
        (Mode::Consume, Target::Redis) => Err(bad()),
        (Mode::Consume, Target::Beanstalkd) => {
            if line == b"DELETED" {
                record(c, hist)?;
                c.expect.pop_front();
                if c.to_send == 0 && c.expect.is_empty() {
                    c.done = true;
                }
                return Ok(0);
            }
            let rest = line.strip_prefix(b"RESERVED ").ok_or_else(bad)?;
            let mut parts = rest.split(|&b| b == b' ');
            let id = parts.next().and_then(parse_u64).ok_or_else(bad)?;
            let len = parts.next().and_then(parse_u64).ok_or_else(bad)? as usize;
            c.body_pending = Some(len);
            record(c, hist)?;
            c.expect.pop_front();
            c.deletes.push(id);
            c.to_send = c.to_send.saturating_sub(1);
            Ok(1)
        }
        (Mode::Idle, _) => Ok(0),
    }
}

fn finish_one(c: &mut Conn, hist: &mut Histogram<u64>) -> Result<u64, String> {
    record(c, hist)?;
    if c.to_send == 0 && c.in_flight.is_empty() {
        c.done = true;
    }
    Ok(1)
}

/// Opens the connections, checks each answers, holds them.
fn idle(args: &Args, poll: &mut Poll, conns: &mut [Conn]) -> Result<(), String> {
    let (ping, expect): (&[u8], &[u8]) = match args.target {
        Target::Broker => (b"PING\n", b"PONG"),
        Target::Redis => (b"PING\r\n", b"+PONG"),
        Target::Beanstalkd => (b"list-tubes-watched\r\n", b"OK "),
    };
    for c in conns.iter_mut() {
        c.out.extend_from_slice(ping);
        flush(c).map_err(|e| e.to_string())?;
    }
    let mut events = Events::with_capacity(1024);
    let mut answered = 0;
    let mut scratch = [0u8; 4096];
    while answered < conns.len() {
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        if events.is_empty() {
            return Err(format!(
                "only {answered} of {} connections answered",
                conns.len()
            ));
        }
        for event in events.iter() {
            let c = &mut conns[event.token().0];
            if c.done {
                continue;
            }
            loop {
                match c.stream.read(&mut scratch) {
                    Ok(0) => return Err("a connection was closed".into()),
                    Ok(n) => c.input.extend_from_slice(&scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            if c.input.starts_with(expect) {
                c.done = true;
                answered += 1;
            } else if c.input.contains(&b'\n') {
                return Err(format!(
                    "unexpected {:?}",
                    String::from_utf8_lossy(&c.input)
                ));
            }
        }
    }
    cli::out(format!(
        "bench idle target={} conns={} ready\n",
        args.target.name(),
        conns.len()
    ));
    let _ = io::stdout().flush();
    std::thread::sleep(Duration::from_secs_f64(args.seconds.max(0.0)));
    Ok(())
}
