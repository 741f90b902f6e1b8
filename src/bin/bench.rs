//! `bench`: load generator for the broker and, for side-by-side runs, for
//! Redis and beanstalkd. See `bench --help`.
//!
//! One thread drives every connection through one `mio::Poll`, keeping
//! `--depth` requests in flight per connection, so the client costs little
//! CPU next to the server it measures on the same machine. Every reply is
//! checked; an error reply or a wrong offset fails the run.
//!
//! `--protocol kafka` speaks the Kafka wire protocol to the broker instead
//! of the text one (see the `kafka` module at the end of this file).
//!
//! `latency` measures how long a light request (`PING`, a small `PRODUCE`)
//! waits while many other connections keep the broker busy (see the
//! `latency` module).

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
       bench latency --load KIND [--load-conns N] [--seconds S] [--rate R]

  produce   send --messages messages of --size bytes, --depth in flight on
            each of --conns connections; check every reply
  consume   drain --messages stored messages (broker: FETCH batches;
            redis: LPOP with a count; beanstalkd: reserve + delete)
  idle      open --conns connections, check each answers, hold them for
            --seconds (to measure a server's memory per connection)
  latency   while --load-conns connections load the broker (--load KIND),
            send PING on one connection and PRODUCE on another, each at
            --rate per second for --seconds, and report their latency
            (text protocol, target broker; see below)

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
  --seconds S               how long idle holds its connections, or latency
                            probes [default: 10]
  --protocol text|kafka     the broker's text protocol or the Kafka wire
                            protocol (target broker only) [default: text]
  -h, --help

With --protocol kafka (the topic defaults to bench, auto-created):
  produce   ApiVersions and Metadata on each connection, then Produce v7
            requests of one RecordBatch of --batch records (up to 100000)
            of --size bytes each; every answer is checked (error 0, base
            offsets contiguous per partition)
  consume   Fetch v11 from --from until --messages records arrived; every
            batch is validated (CRC, counts) and offsets must be contiguous.
            The offsets are split into --conns x --depth disjoint ranges;
            each connection keeps one fetch in flight per range it owns
  --acks 0|1|-1|all         Produce acks [default: -1]; with 0 the broker
                            answers nothing: the run is timed by the bytes
                            written, then ListOffsets must show every record
                            (waited for up to 30 s, 3 s without growth);
                            --depth is then the
                            requests queued ahead of the socket
  --partitions N            spread produce batches round-robin over
                            partitions 0..N (consume: --messages split evenly
                            over them); the topic needs N partitions (broker
                            --partitions N) [default: 1]
  --partition-max-bytes B   Fetch partition_max_bytes [default: 1048576]

Prints one summary line on stdout (wrapped here):
  bench produce target=broker conns=4 depth=256 messages=2000000 size=100
  seconds=0.95 msg_per_s=2105263 mb_per_s=210.5 p50_us=410 p99_us=1210
  p999_us=2100
and a progress line on stderr every 2 s for longer runs. Kafka runs add
protocol=kafka after target= and batch= after size= (consume: the mean
records per batch received), and a detail line on stderr (acks,
partitions, bytes on the wire).

latency (--topic is the loaded topic [default: latency-load]; the PRODUCE
probe writes to its own topic, latency-probe):
  --load KIND               subscribers: SUBSCRIBE 0 to the prefilled topic
                              (at its end: UNSUBSCRIBE, SUBSCRIBE 0 again)
                            fetchers: FETCH <offset> --batch in a loop
                              [--batch default: 100000], connection i
                              starting at i/N of the topic, wrapping at
                              its end
                            parked: FETCH <end> 1000 30000, parked at the
                              end of the topic, again after each answer,
                              while one more connection PRODUCEs
                              --load-rate messages/s to that topic
                            producers: PRODUCE pipelined, --depth in flight
                              each [--depth default: 64], as fast as the
                              broker acknowledges
                            stalled: SUBSCRIBE 0 and never read
  --load-conns N            loader connections [default: 100]
  --rate R                  probe requests per second, per probe [default: 200]
  --load-rate R             parked: messages/s the producing connection
                            sends [default: 10]
  --prefill M               fill the loaded topic up to M messages of --size
                            bytes first [default: 2000000 for subscribers,
                            fetchers and stalled, else 0]
  --seconds S               how long the probes run, once every loader has
                            had its first answer [default: 10]
  Every loader reads what it is sent (except stalled) and every reply is
  checked: message offsets in sequence, END where the messages stopped,
  ACK offsets increasing; the probes must get exactly PONG and ACK
  offset:<the next offset of latency-probe>. Probes are sent on schedule
  whether or not earlier ones were answered (open loop), so a stall shows
  as the wait of every probe sent during it. Latency is from writing a
  probe to reading its reply; the bench's own lateness in sending is
  reported as client_lag (a high one means the client, not the broker,
  was short of CPU). Output, one line per probe, then one for the load:
  bench latency load=fetchers load_conns=100 seconds=10 rate=200
  probe=ping count=2000 p50_ms=1.10 p90_ms=2.31 p99_ms=6.02 max_ms=9.87
  ... probe=produce ...
  ... probe=load-produce ... (parked, producers: the loaders' own PRODUCEs)
  bench latency load=fetchers load_conns=100 seconds=10 load_msg_per_s=...
  load_mb_per_s=... client_lag_p99_ms=... client_lag_max_ms=...
  broker_rss_kib=... connections_paused=...
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Produce,
    Consume,
    Idle,
    Latency,
}

/// What the loader connections of `bench latency` do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LoadKind {
    Subscribers,
    Fetchers,
    Parked,
    Producers,
    Stalled,
}

impl LoadKind {
    fn name(self) -> &'static str {
        match self {
            LoadKind::Subscribers => "subscribers",
            LoadKind::Fetchers => "fetchers",
            LoadKind::Parked => "parked",
            LoadKind::Producers => "producers",
            LoadKind::Stalled => "stalled",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Text,
    Kafka,
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
    protocol: Protocol,
    /// Kafka produce `acks`: 0, 1 or -1.
    acks: i16,
    /// Kafka: partitions 0..N to spread over.
    partitions: u32,
    /// Kafka Fetch `partition_max_bytes`.
    partition_max_bytes: i32,
    /// Latency: what the loaders do, how many, and the probe rate.
    load: Option<LoadKind>,
    load_conns: usize,
    rate: f64,
    /// Latency, parked: messages per second produced to wake the loaders.
    load_rate: f64,
    /// Latency: fill the loaded topic up to this many messages.
    prefill: Option<u64>,
    /// Whether --batch / --depth were given (latency has other defaults).
    batch_set: bool,
    depth_set: bool,
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
        protocol: Protocol::Text,
        acks: -1,
        partitions: 1,
        partition_max_bytes: 1 << 20,
        load: None,
        load_conns: 100,
        rate: 200.0,
        load_rate: 10.0,
        prefill: None,
        batch_set: false,
        depth_set: false,
    };
    let mut mode = None;
    // A Kafka-only option given without --protocol kafka.
    let mut kafka_only: Option<String> = None;
    // A latency-only option given to another mode.
    let mut latency_only: Option<String> = None;
    while let Some(arg) = parser.next()? {
        if let Long(name @ ("acks" | "partitions" | "partition-max-bytes")) = arg {
            kafka_only = Some(format!("--{name}"));
        }
        if let Long(name @ ("load" | "load-conns" | "rate" | "load-rate" | "prefill")) = arg {
            latency_only = Some(format!("--{name}"));
        }
        match arg {
            Value(v) if mode.is_none() => {
                mode = Some(match v.to_str() {
                    Some("produce") => Mode::Produce,
                    Some("consume") => Mode::Consume,
                    Some("idle") => Mode::Idle,
                    Some("latency") => Mode::Latency,
                    _ => {
                        return Err(UsageError(format!(
                            "unknown mode {:?}: give produce, consume, idle or latency",
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
            Long("depth") => {
                args.depth = parser.count(1, 1_000_000)?;
                args.depth_set = true;
            }
            Long("messages") => args.messages = parser.number(1, u64::MAX)?,
            Long("size") => args.size = parser.count(1, 1 << 30)?,
            Long("topic") => args.topic = Some(parser.value()?),
            Long("batch") => {
                args.batch = parser.number(1, 100_000)?;
                args.batch_set = true;
            }
            Long("from") => args.from = parser.number(0, u64::MAX)?,
            Long("seconds") => args.seconds = parser.float_from_zero(86_400.0, "seconds")?,
            Long("protocol") => {
                args.protocol = match parser.choice(&["text", "kafka"])? {
                    "kafka" => Protocol::Kafka,
                    _ => Protocol::Text,
                }
            }
            Long("acks") => {
                args.acks = match parser.choice(&["0", "1", "-1", "all"])? {
                    "0" => 0,
                    "1" => 1,
                    _ => -1,
                }
            }
            Long("partitions") => args.partitions = parser.number(1, 1024)? as u32,
            Long("partition-max-bytes") => {
                args.partition_max_bytes = parser.number(1, i32::MAX as u64)? as i32
            }
            Long("load") => {
                args.load = Some(
                    match parser.choice(&[
                        "subscribers",
                        "fetchers",
                        "parked",
                        "producers",
                        "stalled",
                    ])? {
                        "subscribers" => LoadKind::Subscribers,
                        "fetchers" => LoadKind::Fetchers,
                        "parked" => LoadKind::Parked,
                        "producers" => LoadKind::Producers,
                        _ => LoadKind::Stalled,
                    },
                )
            }
            Long("load-conns") => args.load_conns = parser.count(0, 1_000_000)?,
            Long("rate") => args.rate = parser.positive_float(100_000.0, "per second")?,
            Long("load-rate") => {
                args.load_rate = parser.positive_float(1_000_000.0, "per second")?
            }
            Long("prefill") => args.prefill = Some(parser.number(0, u64::MAX)?),
            Short('h') | Long("help") => {
                cli::out(USAGE);
                return Ok(None);
            }
            _ => return Err(cli::unexpected(arg)),
        }
    }
    args.mode =
        mode.ok_or_else(|| UsageError("give a mode: produce, consume, idle or latency".into()))?;
    if args.mode == Mode::Latency {
        if args.load.is_none() {
            return Err(UsageError(
                "latency needs --load subscribers|fetchers|parked|producers|stalled".into(),
            ));
        }
        if args.protocol != Protocol::Text || args.target != Target::Broker {
            return Err(UsageError(
                "latency measures the broker's text protocol: no --protocol or --target".into(),
            ));
        }
    } else if let Some(flag) = latency_only {
        return Err(UsageError(format!("{flag} is for bench latency")));
    }
    if let Some(flag) = kafka_only.filter(|_| args.protocol == Protocol::Text) {
        return Err(UsageError(format!("{flag} needs --protocol kafka")));
    }
    if args.protocol == Protocol::Kafka && args.target != Target::Broker {
        return Err(UsageError(format!(
            "--protocol kafka needs --target broker, not {}",
            args.target.name()
        )));
    }
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
    if args.protocol == Protocol::Kafka {
        return kafka::run(args, addr, &addr_text);
    }
    if args.mode == Mode::Latency {
        return latency::run(args, addr, &addr_text);
    }
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
            Mode::Idle | Mode::Latency => {}
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
            (Mode::Idle | Mode::Latency, _) => break,
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
        (Mode::Idle | Mode::Latency, _) => Ok(0),
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

/// `--protocol kafka`: the same load over the Kafka wire protocol, with
/// the library's codecs (the request side is written here: the library
/// decodes requests and encodes responses, a client does the opposite).
///
/// Setup is blocking and sequential: each connection sends ApiVersions
/// (and must be offered the versions used below); the first then sends
/// Metadata for the topic (auto-creation allowed) until every partition
/// used has a leader, and ListOffsets (latest) for where the run starts.
/// The sockets are then made non-blocking and driven by one `mio::Poll`.
///
/// Produce: each request carries one RecordBatch of `--batch` records for
/// one partition, round-robin over `--partitions`. The batch is built with
/// the library's `BatchBuilder` once and reused (rebuilt each second so
/// timestamps stay current): the client must cost little CPU next to the
/// broker. Each answer must be error 0 for the one partition asked, its
/// base offset above the previous one of this connection (equal to
/// previous + count with one connection); at the end the acknowledged
/// ranges of each partition must tile it exactly from the offset
/// ListOffsets gave at the start. With `acks=0` nothing comes back: the
/// run is timed until the last byte is written, then ListOffsets is asked
/// (on a new connection) until every record is counted, for up to 30 s
/// (3 s without any growth).
///
/// Consume: a connection answers its requests in order, and where the
/// next fetch of a sequence starts is only known once the previous answer
/// is parsed (the broker returns whole batches). So the offsets
/// `--from .. --from + --messages` (per partition) are split into
/// `--conns x --depth` disjoint ranges, dealt round-robin to the
/// connections; each connection keeps one fetch in flight per range it
/// owns, the next fetch of a range starting where the previous answer's
/// last batch ended. A fetch never asks for much more than its range still
/// needs. Every whole batch is checked with `batch::validate` (size, CRC,
/// record count); within a range the first batch of an answer must hold
/// the fetch offset and each next batch must start where the previous
/// ended, so a gap or a repeat fails the run. Records outside a range (the
/// batch that straddles two ranges is fetched by both) are not counted.
/// A batch cut short at the end of an answer is skipped, as clients do.
mod kafka {
    use std::collections::VecDeque;
    use std::io::{self, Read, Write};
    use std::net::{SocketAddr, TcpStream as StdStream};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use hdrhistogram::Histogram;
    use mio::net::TcpStream;
    use mio::{Events, Interest, Poll, Token};

    use kafka_like_broker::cli;
    use kafka_like_broker::protocol::kafka::batch::{self, BatchBuilder, BatchError};
    use kafka_like_broker::protocol::kafka::{
        ApiKey, DEFAULT_MAX_REQUEST_BYTES, DecodeError, ErrorCode, Reader, Writer,
    };

    use super::{Args, Mode};

    const CLIENT_ID: &str = "bench";
    const API_VERSIONS_VERSION: i16 = 2;
    const METADATA_VERSION: i16 = 8;
    const LIST_OFFSETS_VERSION: i16 = 5;
    const PRODUCE_VERSION: i16 = 7;
    const FETCH_VERSION: i16 = 11;
    const PRODUCE_TIMEOUT_MS: i32 = 30_000;
    const FETCH_MAX_WAIT_MS: i32 = 500;
    /// Fetch `max_bytes` (raised to `--partition-max-bytes` if that is
    /// larger).
    const FETCH_MAX_BYTES: i32 = 8 << 20;
    /// A response larger than this means the stream is not what we think.
    const MAX_RESPONSE: usize = 256 << 20;
    /// The largest produce batch bench builds (the broker takes 1 MiB by
    /// default).
    const MAX_BATCH_BYTES: u64 = 1 << 30;
    /// ListOffsets `timestamp` asking for the latest offset.
    const LATEST: i64 = -1;
    const DEFAULT_TOPIC: &str = "bench";
    /// Any one blocking request/response of the setup.
    const CALL_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long Metadata may take to show the topic's leaders.
    const METADATA_WAIT: Duration = Duration::from_secs(5);
    /// acks=0: how long ListOffsets may take to count every record.
    const CONFIRM_WAIT: Duration = Duration::from_secs(30);
    /// acks=0: ... or for this long without any partition growing.
    const CONFIRM_STALL: Duration = Duration::from_secs(3);
    /// The run fails when no socket event comes for this long.
    const NO_PROGRESS: Duration = Duration::from_secs(10);
    /// Consume: empty answers in a row below the high watermark before
    /// the run fails.
    const MAX_EMPTY_FETCHES: u32 = 20;

    pub fn run(args: &Args, addr: SocketAddr, addr_text: &str) -> Result<(), String> {
        let topic = args.topic.as_deref().unwrap_or(DEFAULT_TOPIC);
        let needs: &[(ApiKey, i16)] = match args.mode {
            Mode::Produce => &[
                (ApiKey::Metadata, METADATA_VERSION),
                (ApiKey::ListOffsets, LIST_OFFSETS_VERSION),
                (ApiKey::Produce, PRODUCE_VERSION),
            ],
            Mode::Consume => &[
                (ApiKey::Metadata, METADATA_VERSION),
                (ApiKey::ListOffsets, LIST_OFFSETS_VERSION),
                (ApiKey::Fetch, FETCH_VERSION),
            ],
            Mode::Idle | Mode::Latency => &[],
        };
        let batch_bytes = (args.size as u64 + 16).saturating_mul(args.batch);
        if args.mode == Mode::Produce && batch_bytes > MAX_BATCH_BYTES {
            return Err(format!(
                "a batch of {} records of {} bytes is over {MAX_BATCH_BYTES} bytes: lower --batch or --size",
                args.batch, args.size
            ));
        }
        let mut std_conns = Vec::with_capacity(args.conns);
        let mut next_id = 1;
        for _ in 0..args.conns {
            let mut s = connect(addr, addr_text)?;
            api_versions(&mut s, next_id, needs)?;
            std_conns.push(s);
        }
        next_id += 1;
        if args.mode == Mode::Idle {
            cli::out(format!(
                "bench idle target=broker protocol=kafka conns={} ready\n",
                args.conns
            ));
            std::thread::sleep(Duration::from_secs_f64(args.seconds.max(0.0)));
            return Ok(());
        }
        let partitions = args.partitions;
        let Some(first) = std_conns.first_mut() else {
            return Err("no connection".into());
        };
        wait_for_leaders(first, &mut next_id, topic, partitions)?;
        let start = list_offsets(first, &mut next_id, topic, partitions)?;

        let mut poll = Poll::new().map_err(|e| e.to_string())?;
        let mut conns = Vec::with_capacity(args.conns);
        for (i, s) in std_conns.into_iter().enumerate() {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            let mut stream = TcpStream::from_std(s);
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| e.to_string())?;
            conns.push(Conn {
                stream,
                out: Vec::with_capacity(256 * 1024),
                sent: 0,
                input: InBuf::new(if args.mode == Mode::Consume {
                    4 << 20
                } else {
                    64 * 1024
                }),
                st: ConnState {
                    index: i,
                    in_flight: VecDeque::new(),
                    next_id,
                    to_send: 0,
                    rr: 0,
                    last: vec![None; partitions as usize],
                    streams: Vec::new(),
                    cursor: 0,
                    done: false,
                },
            });
        }

        let mut ctx = Ctx {
            args,
            topic,
            partitions,
            hist: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
            completed: 0,
            acks: Vec::new(),
            sent: vec![0; partitions as usize],
            batches: 0,
            batch_records: 0,
            wire_bytes: 0,
            // Consume sends no batches.
            templates: Templates::new(
                args.size,
                if args.mode == Mode::Produce {
                    args.batch
                } else {
                    0
                },
            ),
            close_hint: String::new(),
        };
        let request = ctx.templates.full.len() + 64 + topic.len();
        if args.mode == Mode::Produce && request > DEFAULT_MAX_REQUEST_BYTES {
            ctx.close_hint = format!(
                " (each Produce request is about {request} bytes, over the broker's default --max-request-bytes of {DEFAULT_MAX_REQUEST_BYTES}: lower --batch or --size)"
            );
        }
        match args.mode {
            Mode::Produce => split_produce(args, &mut conns),
            Mode::Consume => split_consume(args, &start, &mut conns)?,
            Mode::Idle | Mode::Latency => {}
        }

        let started = Instant::now();
        drive(&mut ctx, &mut poll, &mut conns, started)?;
        let secs = started.elapsed().as_secs_f64();

        let mut note = String::new();
        if args.mode == Mode::Produce {
            if args.acks == 0 {
                let waited = confirm(addr, addr_text, topic, &start, &ctx.sent)?;
                note = format!(
                    ", every record counted by ListOffsets {waited:.3} s after the last write"
                );
            } else {
                check_tiling(&mut ctx.acks, &start, &ctx.sent)?;
            }
        }
        let batch_field = match args.mode {
            Mode::Consume => ctx.batch_records.checked_div(ctx.batches).unwrap_or(0),
            _ => args.batch,
        };
        cli::err(format!(
            "bench: kafka {} partitions={} topic={} wire_mb_per_s={:.1}{note}\n",
            if args.mode == Mode::Produce {
                format!("produce acks={}", args.acks)
            } else {
                "consume".to_string()
            },
            partitions,
            topic,
            ctx.wire_bytes as f64 / secs / 1e6,
        ));
        cli::out(format!(
            "bench {} target=broker protocol=kafka conns={} depth={} messages={} size={} batch={} seconds={:.3} msg_per_s={:.0} mb_per_s={:.1} p50_us={} p99_us={} p999_us={}\n",
            if args.mode == Mode::Produce {
                "produce"
            } else {
                "consume"
            },
            args.conns,
            args.depth,
            ctx.completed,
            args.size,
            batch_field,
            secs,
            ctx.completed as f64 / secs,
            ctx.completed as f64 * args.size as f64 / secs / 1e6,
            ctx.hist.value_at_quantile(0.5),
            ctx.hist.value_at_quantile(0.99),
            ctx.hist.value_at_quantile(0.999),
        ));
        Ok(())
    }

    /// What the whole run shares.
    struct Ctx<'a> {
        args: &'a Args,
        topic: &'a str,
        partitions: u32,
        hist: Histogram<u64>,
        /// Records acknowledged (produce) or received in range (consume).
        completed: u64,
        /// Produce: (partition, base offset, records) of every answer.
        acks: Vec<(u32, u64, u64)>,
        /// Produce: records sent per partition.
        sent: Vec<u64>,
        /// Consume: whole batches received, and the records in them.
        batches: u64,
        batch_records: u64,
        /// Request bytes written (produce) or record bytes received
        /// (consume).
        wire_bytes: u64,
        templates: Templates,
        /// Said when the broker closes a connection: why it may have.
        close_hint: String,
    }

    struct Conn {
        stream: TcpStream,
        out: Vec<u8>,
        sent: usize,
        input: InBuf,
        st: ConnState,
    }

    struct ConnState {
        index: usize,
        in_flight: VecDeque<Pending>,
        next_id: i32,
        /// Produce: records still to send.
        to_send: u64,
        /// Produce: batches sent, for the round-robin over partitions.
        rr: u64,
        /// Produce: (base offset, records) of this connection's last
        /// answer, per partition.
        last: Vec<Option<(u64, u64)>>,
        /// Consume: the offset ranges this connection reads.
        streams: Vec<Range>,
        cursor: usize,
        done: bool,
    }

    /// A request in flight.
    struct Pending {
        correlation_id: i32,
        sent: Instant,
        partition: u32,
        /// Produce: records in its batch.
        records: u64,
        /// Consume: which of the connection's ranges it reads.
        range: usize,
    }

    /// Consume: offsets `next..end` of a partition still to receive.
    struct Range {
        partition: u32,
        next: u64,
        end: u64,
        busy: bool,
        /// Empty answers in a row.
        empty: u32,
    }

    /// The produce batches: one of `--batch` records, rebuilt each second
    /// for fresh timestamps (or less often, so that rebuilding a big batch
    /// takes at most 1% of the time), and one of any other size (a
    /// connection's last, shorter batch), built when needed.
    struct Templates {
        payload: Vec<u8>,
        batch: u64,
        full: Vec<u8>,
        built: Instant,
        rebuild_every: Duration,
        other: Vec<u8>,
        other_count: u64,
    }

    impl Templates {
        fn new(size: usize, batch: u64) -> Self {
            let payload = vec![b'x'; size];
            let mut full = Vec::new();
            let began = Instant::now();
            build_batch(&mut full, batch, &payload);
            Templates {
                payload,
                batch,
                full,
                built: Instant::now(),
                rebuild_every: Duration::from_secs(1).max(began.elapsed() * 100),
                other: Vec::new(),
                other_count: 0,
            }
        }

        fn get(&mut self, records: u64) -> &[u8] {
            if records == self.batch {
                if self.built.elapsed() >= self.rebuild_every {
                    build_batch(&mut self.full, records, &self.payload);
                    self.built = Instant::now();
                }
                return &self.full;
            }
            if self.other_count != records || self.other.is_empty() {
                build_batch(&mut self.other, records, &self.payload);
                self.other_count = records;
            }
            &self.other
        }
    }

    fn build_batch(out: &mut Vec<u8>, records: u64, payload: &[u8]) {
        out.clear();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Producers send base offset 0 and leader epoch -1; the broker
        // patches both.
        let mut b = BatchBuilder::new(out, 0, -1);
        for _ in 0..records {
            b.push(now, None, Some(payload), &[]);
        }
        b.finish();
    }

    /// Received bytes: frames are parsed in place, the buffer grows to
    /// hold the largest frame and is compacted when full.
    struct InBuf {
        buf: Vec<u8>,
        lo: usize,
        hi: usize,
    }

    impl InBuf {
        fn new(capacity: usize) -> Self {
            InBuf {
                buf: vec![0; capacity],
                lo: 0,
                hi: 0,
            }
        }

        /// Room to read into (never empty).
        fn space(&mut self) -> &mut [u8] {
            if self.lo == self.hi {
                self.lo = 0;
                self.hi = 0;
            }
            if self.hi == self.buf.len() {
                if self.lo > 0 {
                    self.buf.copy_within(self.lo..self.hi, 0);
                    self.hi -= self.lo;
                    self.lo = 0;
                } else {
                    let grown = self.buf.len() * 2;
                    self.buf.resize(grown, 0);
                }
            }
            &mut self.buf[self.hi..]
        }

        /// Where the next complete frame's body is, if one is there.
        fn next_frame(&mut self) -> Result<Option<std::ops::Range<usize>>, String> {
            let avail = &self.buf[self.lo..self.hi];
            let Some(prefix) = avail.get(..4) else {
                return Ok(None);
            };
            let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
            let len = usize::try_from(size)
                .ok()
                .filter(|&n| n <= MAX_RESPONSE)
                .ok_or_else(|| format!("a response frame of size {size}: not a Kafka answer"))?;
            if avail.len() < 4 + len {
                return Ok(None);
            }
            let body = self.lo + 4..self.lo + 4 + len;
            self.lo = body.end;
            Ok(Some(body))
        }
    }

    // ----- requests -----------------------------------------------------

    /// Starts a request frame (size patched by `finish`) with header v1.
    fn begin(out: &mut Vec<u8>, api: ApiKey, version: i16, correlation_id: i32) -> usize {
        let start = out.len();
        let mut w = Writer::new(out);
        w.i32(0);
        w.i16(api as i16);
        w.i16(version);
        w.i32(correlation_id);
        w.nullable_string(Some(CLIENT_ID));
        start
    }

    fn finish(out: &mut [u8], start: usize) {
        let size = i32::try_from(out.len() - start - 4).unwrap_or(i32::MAX);
        if let Some(prefix) = out.get_mut(start..start + 4) {
            prefix.copy_from_slice(&size.to_be_bytes());
        }
    }

    fn encode_produce(
        out: &mut Vec<u8>,
        id: i32,
        acks: i16,
        topic: &str,
        partition: u32,
        records: &[u8],
    ) {
        let start = begin(out, ApiKey::Produce, PRODUCE_VERSION, id);
        let mut w = Writer::new(out);
        w.nullable_string(None); // transactional id
        w.i16(acks);
        w.i32(PRODUCE_TIMEOUT_MS);
        w.array_len(1);
        w.string(topic);
        w.array_len(1);
        w.i32(partition as i32);
        w.nullable_bytes(Some(records));
        finish(out, start);
    }

    fn encode_fetch(
        out: &mut Vec<u8>,
        id: i32,
        topic: &str,
        partition: u32,
        offset: u64,
        partition_max_bytes: i32,
    ) {
        let start = begin(out, ApiKey::Fetch, FETCH_VERSION, id);
        let mut w = Writer::new(out);
        w.i32(-1); // replica id: a consumer
        w.i32(FETCH_MAX_WAIT_MS);
        w.i32(1); // min bytes
        w.i32(FETCH_MAX_BYTES.max(partition_max_bytes));
        w.i8(0); // read uncommitted
        w.i32(0); // no fetch session
        w.i32(-1);
        w.array_len(1);
        w.string(topic);
        w.array_len(1);
        w.i32(partition as i32);
        w.i32(-1); // current leader epoch: unknown
        w.i64(offset as i64);
        w.i64(-1); // log start offset: followers only
        w.i32(partition_max_bytes);
        w.array_len(0); // forgotten topics
        w.string(""); // rack id
        finish(out, start);
    }

    // ----- blocking setup calls -------------------------------------------

    fn connect(addr: SocketAddr, addr_text: &str) -> Result<StdStream, String> {
        let s =
            StdStream::connect(addr).map_err(|e| format!("cannot connect to {addr_text}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(CALL_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(CALL_TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// Sends one request and returns its response body (after the
    /// correlation id: every version used here has response header v0).
    fn call(s: &mut StdStream, request: &[u8], id: i32, what: &str) -> Result<Vec<u8>, String> {
        let failed = |e: io::Error| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("no answer to {what} in {} s", CALL_TIMEOUT.as_secs())
            }
            io::ErrorKind::UnexpectedEof => {
                format!("the broker closed the connection instead of answering {what}")
            }
            _ => format!("{what}: {e}"),
        };
        s.write_all(request).map_err(failed)?;
        let mut prefix = [0u8; 4];
        s.read_exact(&mut prefix).map_err(failed)?;
        let size = i32::from_be_bytes(prefix);
        let len = usize::try_from(size)
            .ok()
            .filter(|&n| (4..=MAX_RESPONSE).contains(&n))
            .ok_or_else(|| {
                format!(
                    "not a Kafka answer to {what} (frame size {size}, bytes {prefix:02x?}): is this the broker's port?"
                )
            })?;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).map_err(failed)?;
        let got = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if got != id {
            return Err(format!(
                "{what} answered with correlation id {got}, expected {id}"
            ));
        }
        body.drain(..4);
        Ok(body)
    }

    fn malformed(what: &'static str) -> impl Fn(DecodeError) -> String {
        move |e| format!("malformed {what} response: {e}")
    }

    /// ApiVersions v2, checking the versions this run needs are offered.
    fn api_versions(s: &mut StdStream, id: i32, needs: &[(ApiKey, i16)]) -> Result<(), String> {
        let mut req = Vec::new();
        encode_api_versions(&mut req, id);
        let body = call(s, &req, id, "ApiVersions")?;
        let (code, ranges) = decode_api_versions(&body).map_err(malformed("ApiVersions"))?;
        if !code.is_none() {
            return Err(format!("ApiVersions: {code}"));
        }
        for &(api, version) in needs {
            match ranges.iter().find(|r| r.0 == api as i16) {
                Some(&(_, min, max)) if (min..=max).contains(&version) => {}
                Some(&(_, min, max)) => {
                    return Err(format!(
                        "the broker offers {api:?} v{min}-v{max}; bench needs v{version}"
                    ));
                }
                None => return Err(format!("the broker does not offer {api:?}")),
            }
        }
        Ok(())
    }

    fn encode_api_versions(out: &mut Vec<u8>, id: i32) {
        let start = begin(out, ApiKey::ApiVersions, API_VERSIONS_VERSION, id);
        finish(out, start);
    }

    /// ApiVersions v2: the error and the (key, min, max) rows.
    #[allow(clippy::type_complexity)]
    fn decode_api_versions(body: &[u8]) -> Result<(ErrorCode, Vec<(i16, i16, i16)>), DecodeError> {
        let mut r = Reader::new(body);
        let code = ErrorCode(r.i16()?);
        let ranges = r.array(6, |r| Ok((r.i16()?, r.i16()?, r.i16()?)))?;
        r.i32()?; // throttle time
        Ok((code, ranges))
    }

    /// Metadata v8 for `topic` (auto-creation allowed), repeated until
    /// partitions 0..`partitions` all have a leader.
    fn wait_for_leaders(
        s: &mut StdStream,
        next_id: &mut i32,
        topic: &str,
        partitions: u32,
    ) -> Result<(), String> {
        let deadline = Instant::now() + METADATA_WAIT;
        loop {
            let id = *next_id;
            *next_id += 1;
            let mut req = Vec::new();
            encode_metadata(&mut req, id, topic);
            let body = call(s, &req, id, "Metadata")?;
            let topics = decode_metadata(&body).map_err(malformed("Metadata"))?;
            let Some((code, leaders)) = topics
                .into_iter()
                .find(|(name, _, _)| name == topic)
                .map(|(_, code, parts)| (code, parts))
            else {
                return Err(format!("Metadata did not list topic {topic}"));
            };
            let why = if code.is_none() {
                let have = leaders.len();
                let missing = (0..partitions as i32).find(|p| {
                    !leaders
                        .iter()
                        .any(|&(index, code, leader)| index == *p && code.is_none() && leader >= 0)
                });
                match missing {
                    None => return Ok(()),
                    Some(_) if have < partitions as usize => {
                        return Err(format!(
                            "topic {topic} has {have} partition(s); --partitions {partitions} needs {partitions} (start the broker with --partitions {partitions}, or use a new topic)"
                        ));
                    }
                    Some(p) => format!("partition {p} has no leader"),
                }
            } else if code == ErrorCode::LEADER_NOT_AVAILABLE
                || code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            {
                format!("topic {topic}: {code}")
            } else {
                return Err(format!("Metadata for topic {topic}: {code}"));
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "{why} after {} s (is auto-creation off? create the topic first)",
                    METADATA_WAIT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn encode_metadata(out: &mut Vec<u8>, id: i32, topic: &str) {
        let start = begin(out, ApiKey::Metadata, METADATA_VERSION, id);
        let mut w = Writer::new(out);
        w.array_len(1);
        w.string(topic);
        w.bool(true); // allow auto topic creation
        w.bool(false); // include cluster authorized operations
        w.bool(false); // include topic authorized operations
        finish(out, start);
    }

    /// Metadata v8: (topic, error, [(partition, error, leader)]).
    #[allow(clippy::type_complexity)]
    fn decode_metadata(
        body: &[u8],
    ) -> Result<Vec<(String, ErrorCode, Vec<(i32, ErrorCode, i32)>)>, DecodeError> {
        let mut r = Reader::new(body);
        r.i32()?; // throttle time
        r.array(12, |r| {
            r.i32()?; // node id
            r.string()?; // host
            r.i32()?; // port
            r.nullable_string()?; // rack
            Ok(())
        })?;
        r.nullable_string()?; // cluster id
        r.i32()?; // controller id
        r.array(13, |r| {
            let code = ErrorCode(r.i16()?);
            let name = r.string()?.to_string();
            r.bool()?; // internal
            let parts = r.array(26, |r| {
                let code = ErrorCode(r.i16()?);
                let index = r.i32()?;
                let leader = r.i32()?;
                r.i32()?; // leader epoch
                for _ in 0..3 {
                    r.array(4, |r| r.i32())?; // replicas, isr, offline
                }
                Ok((index, code, leader))
            })?;
            r.i32()?; // authorized operations
            Ok((name, code, parts))
        })
    }

    /// ListOffsets v5 (latest) for partitions 0..`partitions`.
    fn list_offsets(
        s: &mut StdStream,
        next_id: &mut i32,
        topic: &str,
        partitions: u32,
    ) -> Result<Vec<u64>, String> {
        let id = *next_id;
        *next_id += 1;
        let mut req = Vec::new();
        encode_list_offsets(&mut req, id, topic, partitions);
        let body = call(s, &req, id, "ListOffsets")?;
        let topics = decode_list_offsets(&body).map_err(malformed("ListOffsets"))?;
        let parts = topics
            .iter()
            .find(|(name, _)| name == topic)
            .map(|(_, parts)| parts)
            .ok_or_else(|| format!("ListOffsets did not list topic {topic}"))?;
        (0..partitions as i32)
            .map(|p| match parts.iter().find(|(index, _, _)| *index == p) {
                Some(&(_, code, offset)) if code.is_none() && offset >= 0 => Ok(offset as u64),
                Some(&(_, code, offset)) => Err(format!(
                    "ListOffsets of {topic} partition {p}: {code}, offset {offset}"
                )),
                None => Err(format!("ListOffsets did not list {topic} partition {p}")),
            })
            .collect()
    }

    fn encode_list_offsets(out: &mut Vec<u8>, id: i32, topic: &str, partitions: u32) {
        let start = begin(out, ApiKey::ListOffsets, LIST_OFFSETS_VERSION, id);
        let mut w = Writer::new(out);
        w.i32(-1); // replica id
        w.i8(0); // read uncommitted
        w.array_len(1);
        w.string(topic);
        w.array_len(partitions as usize);
        for p in 0..partitions as i32 {
            w.i32(p);
            w.i32(-1); // current leader epoch
            w.i64(LATEST);
        }
        finish(out, start);
    }

    /// ListOffsets v5: (topic, [(partition, error, offset)]).
    #[allow(clippy::type_complexity)]
    fn decode_list_offsets(
        body: &[u8],
    ) -> Result<Vec<(String, Vec<(i32, ErrorCode, i64)>)>, DecodeError> {
        let mut r = Reader::new(body);
        r.i32()?; // throttle time
        r.array(6, |r| {
            let name = r.string()?.to_string();
            let parts = r.array(26, |r| {
                let index = r.i32()?;
                let code = ErrorCode(r.i16()?);
                r.i64()?; // timestamp
                let offset = r.i64()?;
                r.i32()?; // leader epoch
                Ok((index, code, offset))
            })?;
            Ok((name, parts))
        })
    }

    // ----- the run ------------------------------------------------------

    fn split_produce(args: &Args, conns: &mut [Conn]) {
        let n = conns.len() as u64;
        for (i, c) in conns.iter_mut().enumerate() {
            c.st.to_send = args.messages / n + u64::from((i as u64) < args.messages % n);
            c.st.done = c.st.to_send == 0;
        }
    }

    /// Splits `--messages` over the partitions, each partition's offsets
    /// into ranges, and deals the ranges to the connections.
    fn split_consume(args: &Args, latest: &[u64], conns: &mut [Conn]) -> Result<(), String> {
        let parts = u64::from(args.partitions);
        let ranges_total = (conns.len() * args.depth) as u64;
        let per_partition = ranges_total.div_ceil(parts).max(1);
        let mut dealt = 0usize;
        for p in 0..args.partitions {
            let share = args.messages / parts + u64::from(u64::from(p) < args.messages % parts);
            let end = args.from.saturating_add(share);
            let stored = latest.get(p as usize).copied().unwrap_or(0);
            if share > 0 && end > stored {
                return Err(format!(
                    "partition {p} ends at offset {stored}: it has no {share} records from offset {} (are there --messages records stored from --from?)",
                    args.from
                ));
            }
            let pieces = per_partition.min(share).max(1);
            for k in 0..pieces {
                let lo = args.from + share * k / pieces;
                let hi = args.from + share * (k + 1) / pieces;
                if lo == hi {
                    continue;
                }
                let n = conns.len();
                conns[dealt % n].st.streams.push(Range {
                    partition: p,
                    next: lo,
                    end: hi,
                    busy: false,
                    empty: 0,
                });
                dealt += 1;
            }
        }
        for c in conns.iter_mut() {
            c.st.done = c.st.streams.is_empty();
        }
        Ok(())
    }

    fn drive(
        ctx: &mut Ctx<'_>,
        poll: &mut Poll,
        conns: &mut [Conn],
        started: Instant,
    ) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        let mut last_progress = started;
        for c in conns.iter_mut() {
            pump(ctx, c).map_err(|e| format!("connection {}: {e}", c.st.index))?;
        }
        while conns.iter().any(|c| !c.st.done) {
            poll.poll(&mut events, Some(NO_PROGRESS))
                .map_err(|e| e.to_string())?;
            if events.is_empty() {
                return Err(format!(
                    "no progress for {} s ({} of {} records done)",
                    NO_PROGRESS.as_secs(),
                    ctx.completed,
                    ctx.args.messages
                ));
            }
            for event in events.iter() {
                let Some(c) = conns.get_mut(event.token().0) else {
                    continue;
                };
                let index = c.st.index;
                if event.is_readable() {
                    receive(ctx, c).map_err(|e| format!("connection {index}: {e}"))?;
                }
                pump(ctx, c).map_err(|e| format!("connection {index}: {e}"))?;
            }
            if last_progress.elapsed() >= Duration::from_secs(2) {
                last_progress = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                cli::err(format!(
                    "bench: {}/{} records, {:.0} records/s\n",
                    ctx.completed,
                    ctx.args.messages,
                    ctx.completed as f64 / secs
                ));
            }
        }
        Ok(())
    }

    /// Reads what the socket has, handling each complete frame.
    fn receive(ctx: &mut Ctx<'_>, c: &mut Conn) -> Result<(), String> {
        loop {
            let space = c.input.space();
            match c.stream.read(space) {
                Ok(0) => return Err(format!("closed by the broker{}", ctx.close_hint)),
                Ok(n) => {
                    c.input.hi += n;
                    while let Some(body) = c.input.next_frame()? {
                        let frame = c.input.buf.get(body).unwrap_or_default();
                        on_frame(ctx, &mut c.st, frame)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{e}{}", ctx.close_hint)),
            }
        }
    }

    /// Queues requests and writes until the socket is full or nothing is
    /// left to send.
    fn pump(ctx: &mut Ctx<'_>, c: &mut Conn) -> Result<(), String> {
        loop {
            refill(ctx, c);
            flush(c).map_err(|e| format!("{e}{}", ctx.close_hint))?;
            let acks0 = ctx.args.mode == Mode::Produce && ctx.args.acks == 0;
            if !acks0 {
                return Ok(());
            }
            // acks=0: no answers will wake us; go on while the socket
            // takes everything.
            if c.sent < c.out.len() || c.st.to_send == 0 {
                if c.st.to_send == 0 && c.out.is_empty() {
                    c.st.done = true;
                }
                return Ok(());
            }
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

    fn refill(ctx: &mut Ctx<'_>, c: &mut Conn) {
        let depth = ctx.args.depth;
        let st = &mut c.st;
        match ctx.args.mode {
            Mode::Produce => {
                let acks0 = ctx.args.acks == 0;
                // acks=0: `depth` requests may wait unwritten.
                let queued_limit = depth.saturating_mul(ctx.templates.full.len() + 64);
                while st.to_send > 0
                    && if acks0 {
                        c.out.len() - c.sent < queued_limit
                    } else {
                        st.in_flight.len() < depth
                    }
                {
                    let records = st.to_send.min(ctx.args.batch);
                    let partition = ((st.index as u64 + st.rr) % u64::from(ctx.partitions)) as u32;
                    st.rr += 1;
                    let id = st.next_id;
                    st.next_id = st.next_id.wrapping_add(1);
                    let before = c.out.len();
                    let batch = ctx.templates.get(records);
                    encode_produce(&mut c.out, id, ctx.args.acks, ctx.topic, partition, batch);
                    ctx.wire_bytes += (c.out.len() - before) as u64;
                    st.to_send -= records;
                    ctx.sent[partition as usize] += records;
                    if acks0 {
                        ctx.completed += records;
                    } else {
                        st.in_flight.push_back(Pending {
                            correlation_id: id,
                            sent: Instant::now(),
                            partition,
                            records,
                            range: 0,
                        });
                    }
                }
            }
            Mode::Consume => {
                let n = st.streams.len();
                for _ in 0..n {
                    if st.in_flight.len() >= depth {
                        break;
                    }
                    let k = st.cursor;
                    st.cursor = (st.cursor + 1) % n;
                    let r = &mut st.streams[k];
                    if r.busy || r.next >= r.end {
                        continue;
                    }
                    // Ask for little more than the range still needs
                    // (records of --size plus their overhead); at least one
                    // batch comes back whatever the limit.
                    let want = (r.end - r.next)
                        .saturating_mul(ctx.args.size as u64 + 32)
                        .saturating_add(128);
                    let limit = i32::try_from(want)
                        .unwrap_or(i32::MAX)
                        .min(ctx.args.partition_max_bytes);
                    let id = st.next_id;
                    st.next_id = st.next_id.wrapping_add(1);
                    encode_fetch(&mut c.out, id, ctx.topic, r.partition, r.next, limit);
                    r.busy = true;
                    st.in_flight.push_back(Pending {
                        correlation_id: id,
                        sent: Instant::now(),
                        partition: r.partition,
                        records: 0,
                        range: k,
                    });
                }
            }
            Mode::Idle | Mode::Latency => {}
        }
    }

    fn on_frame(ctx: &mut Ctx<'_>, st: &mut ConnState, frame: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(frame);
        let id = r
            .i32()
            .map_err(|_| "a response without a correlation id".to_string())?;
        let p = st
            .in_flight
            .pop_front()
            .ok_or_else(|| format!("a response (correlation id {id}) to no request"))?;
        if id != p.correlation_id {
            return Err(format!(
                "a response with correlation id {id}, expected {}",
                p.correlation_id
            ));
        }
        let micros = p.sent.elapsed().as_micros().max(1) as u64;
        let _ = ctx.hist.record(micros.min(60_000_000));
        match ctx.args.mode {
            Mode::Produce => on_produce(ctx, st, &p, r.rest())?,
            Mode::Consume => on_fetch(ctx, st, &p, r.rest())?,
            Mode::Idle | Mode::Latency => {}
        }
        st.done = st.in_flight.is_empty()
            && match ctx.args.mode {
                Mode::Produce => st.to_send == 0,
                _ => st.streams.iter().all(|r| r.next >= r.end),
            };
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn decode_produce(body: &[u8]) -> Result<Vec<(&str, Vec<(i32, ErrorCode, i64)>)>, DecodeError> {
        let mut r = Reader::new(body);
        let topics = r.array(6, |r| {
            let name = r.string()?;
            let parts = r.array(30, |r| {
                let index = r.i32()?;
                let code = ErrorCode(r.i16()?);
                let base = r.i64()?;
                r.i64()?; // log append time
                r.i64()?; // log start offset
                Ok((index, code, base))
            })?;
            Ok((name, parts))
        })?;
        r.i32()?; // throttle time
        Ok(topics)
    }

    fn on_produce(
        ctx: &mut Ctx<'_>,
        st: &mut ConnState,
        p: &Pending,
        body: &[u8],
    ) -> Result<(), String> {
        let topics = decode_produce(body).map_err(malformed("Produce"))?;
        let topic = ctx.topic;
        let [(name, parts)] = topics.as_slice() else {
            return Err(format!(
                "a Produce answer with {} topics, expected 1",
                topics.len()
            ));
        };
        if *name != topic {
            return Err(format!("a Produce answer for topic {name:?}, not {topic}"));
        }
        let &[(index, code, base)] = parts.as_slice() else {
            return Err(format!(
                "a Produce answer with {} partitions, expected 1",
                parts.len()
            ));
        };
        if index != p.partition as i32 {
            return Err(format!(
                "a Produce answer for partition {index}, expected {}",
                p.partition
            ));
        }
        if !code.is_none() {
            return Err(format!(
                "produce to {topic} partition {index} failed: {code}"
            ));
        }
        let base = u64::try_from(base)
            .map_err(|_| format!("produce to {topic} partition {index}: base offset {base}"))?;
        let last = &mut st.last[p.partition as usize];
        if let Some((lb, lc)) = *last {
            let expected = lb + lc;
            if base < expected || (ctx.args.conns == 1 && base != expected) {
                return Err(format!(
                    "partition {index}: base offset {base} after a batch of {lc} at {lb} (expected {}{expected})",
                    if ctx.args.conns == 1 { "" } else { "at least " }
                ));
            }
        }
        *last = Some((base, p.records));
        ctx.acks.push((p.partition, base, p.records));
        ctx.completed += p.records;
        Ok(())
    }

    /// Every partition's acknowledged ranges must follow each other from
    /// the offset the run started at, with nothing missing or doubled.
    fn check_tiling(
        acks: &mut [(u32, u64, u64)],
        start: &[u64],
        sent: &[u64],
    ) -> Result<(), String> {
        acks.sort_unstable();
        let mut next: Vec<u64> = start.to_vec();
        let mut got = vec![0u64; start.len()];
        for &(p, base, records) in acks.iter() {
            let i = p as usize;
            if base != next[i] {
                return Err(format!(
                    "partition {p}: a batch acknowledged at offset {base}, expected {} ({})",
                    next[i],
                    if base < next[i] {
                        "offsets given twice"
                    } else {
                        "a gap"
                    }
                ));
            }
            next[i] = base + records;
            got[i] += records;
        }
        for (p, (&got, &sent)) in got.iter().zip(sent).enumerate() {
            if got != sent {
                return Err(format!(
                    "partition {p}: {got} records acknowledged, {sent} sent"
                ));
            }
        }
        Ok(())
    }

    struct FetchAnswer<'a> {
        error: ErrorCode,
        topics: Vec<(&'a str, Vec<FetchPart<'a>>)>,
    }

    struct FetchPart<'a> {
        partition: i32,
        error: ErrorCode,
        high_watermark: i64,
        log_start: i64,
        records: &'a [u8],
    }

    fn decode_fetch(body: &[u8]) -> Result<FetchAnswer<'_>, DecodeError> {
        let mut r = Reader::new(body);
        r.i32()?; // throttle time
        let error = ErrorCode(r.i16()?);
        r.i32()?; // session id
        let topics = r.array(6, |r| {
            let name = r.string()?;
            // Partition index to preferred read replica, then null
            // aborted transactions and records: 42 bytes at least.
            let parts = r.array(42, |r| {
                let partition = r.i32()?;
                let error = ErrorCode(r.i16()?);
                let high_watermark = r.i64()?;
                r.i64()?; // last stable offset
                let log_start = r.i64()?;
                r.nullable_array(16, |r| {
                    r.i64()?;
                    r.i64()
                })?; // aborted transactions
                r.i32()?; // preferred read replica
                let records = r.nullable_bytes()?.unwrap_or_default();
                Ok(FetchPart {
                    partition,
                    error,
                    high_watermark,
                    log_start,
                    records,
                })
            })?;
            Ok((name, parts))
        })?;
        Ok(FetchAnswer { error, topics })
    }

    fn on_fetch(
        ctx: &mut Ctx<'_>,
        st: &mut ConnState,
        p: &Pending,
        body: &[u8],
    ) -> Result<(), String> {
        let answer = decode_fetch(body).map_err(malformed("Fetch"))?;
        let topic = ctx.topic;
        if !answer.error.is_none() {
            return Err(format!("Fetch failed: {}", answer.error));
        }
        let [(name, parts)] = answer.topics.as_slice() else {
            return Err(format!(
                "a Fetch answer with {} topics, expected 1",
                answer.topics.len()
            ));
        };
        if *name != topic {
            return Err(format!("a Fetch answer for topic {name:?}, not {topic}"));
        }
        let [part] = parts.as_slice() else {
            return Err(format!(
                "a Fetch answer with {} partitions, expected 1",
                parts.len()
            ));
        };
        let range = st
            .streams
            .get_mut(p.range)
            .ok_or("a Fetch answer for no range")?;
        range.busy = false;
        let pn = range.partition;
        let offset = range.next;
        if part.partition != pn as i32 {
            return Err(format!(
                "a Fetch answer for partition {}, expected {pn}",
                part.partition
            ));
        }
        if !part.error.is_none() {
            return Err(format!(
                "fetch of {topic} partition {pn} at offset {offset} failed: {} (log start {}, high watermark {})",
                part.error, part.log_start, part.high_watermark
            ));
        }
        let records = part.records;
        ctx.wire_bytes += records.len() as u64;
        let mut rest = records;
        let mut next = offset;
        let mut whole = 0u64;
        let mut counted = 0u64;
        while !rest.is_empty() {
            let total = match batch::parse_header(rest) {
                Ok(h) => h.total_len(),
                // A batch cut short at the end: clients skip it.
                Err(BatchError::Truncated) => break,
                Err(e) => {
                    return Err(format!(
                        "partition {pn}: a bad batch after offset {next}: {e}"
                    ));
                }
            };
            let Some(bytes) = rest.get(..total) else {
                break;
            };
            rest = rest.get(total..).unwrap_or_default();
            let h = batch::validate(bytes).map_err(|e| {
                format!("partition {pn}: the batch after offset {next} is invalid: {e}")
            })?;
            let (base, last) = (h.base_offset, h.last_offset());
            if base < 0 || last < base {
                return Err(format!(
                    "partition {pn}: a batch with offsets {base}..={last}"
                ));
            }
            let (base, last) = (base as u64, last as u64);
            if whole == 0 {
                if base > next {
                    return Err(format!(
                        "partition {pn}: a fetch at offset {next} began at offset {base} (a gap)"
                    ));
                }
                if last < next {
                    return Err(format!(
                        "partition {pn}: a fetch at offset {next} returned a batch of offsets {base}..={last} (a repeat)"
                    ));
                }
            } else if base != next {
                return Err(format!(
                    "partition {pn}: a batch at offset {base} follows one that ended before {next} ({})",
                    if base < next { "a repeat" } else { "a gap" }
                ));
            }
            counted += (last + 1).min(range.end).saturating_sub(next);
            ctx.batch_records += u64::from(h.record_count.unsigned_abs());
            next = last + 1;
            whole += 1;
        }
        ctx.batches += whole;
        ctx.completed += counted;
        range.next = next;
        if whole == 0 {
            if !records.is_empty() {
                return Err(format!(
                    "a fetch of partition {pn} at offset {offset} returned {} bytes and no whole batch: raise --partition-max-bytes",
                    records.len()
                ));
            }
            if part.high_watermark <= offset as i64 {
                return Err(format!(
                    "nothing stored at offset {offset} of partition {pn} (high watermark {}): are there --messages records stored from --from?",
                    part.high_watermark
                ));
            }
            range.empty += 1;
            if range.empty >= MAX_EMPTY_FETCHES {
                return Err(format!(
                    "{MAX_EMPTY_FETCHES} empty fetches at offset {offset} of partition {pn}, below the high watermark {}",
                    part.high_watermark
                ));
            }
        } else {
            range.empty = 0;
        }
        Ok(())
    }

    /// acks=0: ListOffsets on a new connection until every partition has
    /// grown by what was sent to it. Returns the seconds waited.
    fn confirm(
        addr: SocketAddr,
        addr_text: &str,
        topic: &str,
        start: &[u64],
        sent: &[u64],
    ) -> Result<f64, String> {
        let began = Instant::now();
        let mut s = connect(addr, addr_text)?;
        let mut id = 1;
        api_versions(&mut s, id, &[(ApiKey::ListOffsets, LIST_OFFSETS_VERSION)])?;
        id += 1;
        let mut seen: Vec<u64> = Vec::new();
        let mut changed = Instant::now();
        loop {
            let latest = list_offsets(&mut s, &mut id, topic, start.len() as u32)?;
            if latest != seen {
                seen.clone_from(&latest);
                changed = Instant::now();
            }
            let mut short = None;
            for (p, ((&end, &from), &n)) in latest.iter().zip(start).zip(sent).enumerate() {
                let arrived = end.saturating_sub(from);
                if arrived > n {
                    return Err(format!(
                        "acks=0: partition {p} grew by {arrived} records, {n} were sent (another producer?)"
                    ));
                }
                if arrived < n && short.is_none() {
                    short = Some((p, arrived, n));
                }
            }
            let Some((p, arrived, n)) = short else {
                return Ok(began.elapsed().as_secs_f64());
            };
            if began.elapsed() >= CONFIRM_WAIT || changed.elapsed() >= CONFIRM_STALL {
                return Err(format!(
                    "acks=0: after {:.1} s partition {p} holds {arrived} of the {n} records sent to it (the broker answers no errors with acks=0: try --acks 1)",
                    began.elapsed().as_secs_f64()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client side written here against the library's server side:
    /// requests must decode with its decoders, its encoded responses
    /// must decode here, and the consume checks must catch what they are
    /// for.
    #[cfg(test)]
    mod tests {
        use super::*;
        use kafka_like_broker::protocol::kafka::api::{
            FetchPartitionResponse, FetchResponse, FetchTopicResponse,
            ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
            MetadataBroker, MetadataPartition, MetadataResponse, MetadataTopic,
            ProducePartitionResponse, ProduceResponse, ProduceTopicResponse,
        };
        use kafka_like_broker::protocol::kafka::{ApiVersionsResponse, Request, RequestHeader};

        /// The frame's body, after checking its size prefix.
        fn body_of(frame: &[u8]) -> &[u8] {
            let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
            assert_eq!(size as usize, frame.len() - 4);
            &frame[4..]
        }

        fn encoded(f: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
            let mut out = Vec::new();
            f(&mut Writer::new(&mut out));
            out
        }

        #[test]
        fn requests_decode_with_the_library() {
            let mut records = Vec::new();
            build_batch(&mut records, 3, b"abc");
            let h = batch::validate(&records).unwrap();
            assert_eq!((h.record_count, h.base_offset), (3, 0));
            let mut scratch = Vec::new();
            for r in batch::records(&records, 1 << 20, &mut scratch).unwrap() {
                assert_eq!(r.unwrap().value, Some(&b"abc"[..]));
            }

            let mut out = Vec::new();
            encode_produce(&mut out, 42, -1, "t", 2, &records);
            let (h, rest) = RequestHeader::decode(body_of(&out)).unwrap();
            assert_eq!(
                (h.api_key, h.api_version, h.correlation_id, h.client_id),
                (0, 7, 42, Some("bench"))
            );
            let Ok(Request::Produce(r)) = Request::decode(&h, rest) else {
                panic!("not a produce");
            };
            assert_eq!(
                (r.acks, r.timeout_ms, r.transactional_id),
                (-1, 30_000, None)
            );
            assert_eq!(r.topics.len(), 1);
            assert_eq!(r.topics[0].name, "t");
            assert_eq!(r.topics[0].partitions.len(), 1);
            assert_eq!(r.topics[0].partitions[0].index, 2);
            assert_eq!(r.topics[0].partitions[0].records, Some(&records[..]));

            out.clear();
            encode_fetch(&mut out, 7, "t", 1, 12_345, 4096);
            let (h, rest) = RequestHeader::decode(body_of(&out)).unwrap();
            assert_eq!((h.api_key, h.api_version), (1, 11));
            let Ok(Request::Fetch(r)) = Request::decode(&h, rest) else {
                panic!("not a fetch");
            };
            assert_eq!(
                (r.replica_id, r.max_wait_ms, r.min_bytes, r.max_bytes),
                (-1, 500, 1, 8 << 20)
            );
            assert_eq!(
                (r.isolation_level, r.session_id, r.session_epoch),
                (0, 0, -1)
            );
            assert_eq!(r.topics.len(), 1);
            assert_eq!(r.topics[0].topic, "t");
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                (p.partition, p.fetch_offset, p.partition_max_bytes),
                (1, 12_345, 4096)
            );
            assert!(r.forgotten_topics_data.is_empty());
            assert_eq!(r.rack_id, "");

            out.clear();
            encode_metadata(&mut out, 8, "t");
            let (h, rest) = RequestHeader::decode(body_of(&out)).unwrap();
            let Ok(Request::Metadata(r)) = Request::decode(&h, rest) else {
                panic!("not a metadata");
            };
            assert_eq!(r.topics, Some(vec!["t"]));
            assert!(r.allow_auto_topic_creation);

            out.clear();
            encode_list_offsets(&mut out, 9, "t", 3);
            let (h, rest) = RequestHeader::decode(body_of(&out)).unwrap();
            let Ok(Request::ListOffsets(r)) = Request::decode(&h, rest) else {
                panic!("not a list offsets");
            };
            assert_eq!(r.topics[0].name, "t");
            let asked: Vec<(i32, i64)> = r.topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.timestamp))
                .collect();
            assert_eq!(asked, [(0, -1), (1, -1), (2, -1)]);

            out.clear();
            encode_api_versions(&mut out, 10);
            let (h, rest) = RequestHeader::decode(body_of(&out)).unwrap();
            assert!(matches!(
                Request::decode(&h, rest),
                Ok(Request::ApiVersions(_))
            ));
        }

        #[test]
        fn library_responses_decode_here() {
            let body = encoded(|w| ApiVersionsResponse::supported().encode(2, w));
            let (code, ranges) = decode_api_versions(&body).unwrap();
            assert!(code.is_none());
            assert!(ranges.contains(&(0, 0, 7)));

            let resp = ProduceResponse {
                responses: vec![ProduceTopicResponse {
                    name: "t",
                    partitions: vec![ProducePartitionResponse {
                        index: 2,
                        error_code: ErrorCode::NONE,
                        base_offset: 77,
                        log_append_time_ms: -1,
                        log_start_offset: 0,
                    }],
                }],
                throttle_time_ms: 0,
            };
            let body = encoded(|w| resp.encode(7, w));
            assert_eq!(
                decode_produce(&body).unwrap(),
                vec![("t", vec![(2, ErrorCode::NONE, 77)])]
            );

            let resp = MetadataResponse {
                throttle_time_ms: 0,
                brokers: vec![MetadataBroker {
                    node_id: 0,
                    host: "127.0.0.1",
                    port: 9092,
                    rack: None,
                }],
                cluster_id: Some("c"),
                controller_id: 0,
                topics: vec![MetadataTopic {
                    error_code: ErrorCode::NONE,
                    name: "t",
                    is_internal: false,
                    partitions: vec![MetadataPartition {
                        error_code: ErrorCode::NONE,
                        partition_index: 0,
                        leader_id: 0,
                        leader_epoch: 0,
                        replica_nodes: &[0],
                        isr_nodes: &[0],
                        offline_replicas: &[],
                    }],
                    topic_authorized_operations: i32::MIN,
                }],
                cluster_authorized_operations: i32::MIN,
            };
            let body = encoded(|w| resp.encode(8, w));
            assert_eq!(
                decode_metadata(&body).unwrap(),
                vec![(
                    "t".to_string(),
                    ErrorCode::NONE,
                    vec![(0, ErrorCode::NONE, 0)]
                )]
            );

            let resp = ListOffsetsResponse {
                throttle_time_ms: 0,
                topics: vec![ListOffsetsTopicResponse {
                    name: "t",
                    partitions: vec![ListOffsetsPartitionResponse {
                        partition_index: 0,
                        error_code: ErrorCode::NONE,
                        timestamp: -1,
                        offset: 1234,
                        leader_epoch: 0,
                    }],
                }],
            };
            let body = encoded(|w| resp.encode(5, w));
            assert_eq!(
                decode_list_offsets(&body).unwrap(),
                vec![("t".to_string(), vec![(0, ErrorCode::NONE, 1234)])]
            );

            // Records, no records (the shortest partition answer) and null.
            let part = |partition, records| FetchPartitionResponse {
                partition_index: partition,
                error_code: ErrorCode::NONE,
                high_watermark: 10,
                last_stable_offset: 10,
                log_start_offset: 0,
                aborted_transactions: None,
                preferred_read_replica: -1,
                records,
            };
            let resp = FetchResponse {
                throttle_time_ms: 0,
                error_code: ErrorCode::NONE,
                session_id: 0,
                responses: vec![FetchTopicResponse {
                    topic: "t",
                    partitions: vec![
                        part(0, Some(&b"xyz"[..])),
                        part(1, None),
                        part(2, Some(&[])),
                    ],
                }],
            };
            let body = encoded(|w| resp.encode(11, w));
            let answer = decode_fetch(&body).unwrap();
            assert!(answer.error.is_none());
            let (name, parts) = &answer.topics[0];
            assert_eq!(*name, "t");
            let got: Vec<(i32, i64, &[u8])> = parts
                .iter()
                .map(|p| (p.partition, p.high_watermark, p.records))
                .collect();
            assert_eq!(
                got,
                [(0, 10, &b"xyz"[..]), (1, 10, &[][..]), (2, 10, &[][..])]
            );
        }

        fn args() -> Args {
            Args {
                mode: Mode::Consume,
                target: super::super::Target::Broker,
                addr: None,
                conns: 1,
                depth: 1,
                messages: 0,
                size: 3,
                topic: None,
                batch: 1000,
                from: 0,
                seconds: 0.0,
                protocol: super::super::Protocol::Kafka,
                acks: -1,
                partitions: 1,
                partition_max_bytes: 1 << 20,
                load: None,
                load_conns: 0,
                rate: 1.0,
                load_rate: 1.0,
                prefill: None,
                batch_set: false,
                depth_set: false,
            }
        }

        /// Answers one fetch of offsets `next..end` with `records` (high
        /// watermark `hw`); returns the records counted and where the
        /// range goes on.
        fn fetch(next: u64, end: u64, hw: i64, records: &[u8]) -> Result<(u64, u64), String> {
            let args = args();
            let mut ctx = Ctx {
                args: &args,
                topic: "t",
                partitions: 1,
                hist: Histogram::new(3).unwrap(),
                completed: 0,
                acks: Vec::new(),
                sent: vec![0],
                batches: 0,
                batch_records: 0,
                wire_bytes: 0,
                templates: Templates::new(1, 1),
                close_hint: String::new(),
            };
            let mut st = ConnState {
                index: 0,
                in_flight: VecDeque::new(),
                next_id: 1,
                to_send: 0,
                rr: 0,
                last: vec![None],
                streams: vec![Range {
                    partition: 0,
                    next,
                    end,
                    busy: true,
                    empty: 0,
                }],
                cursor: 0,
                done: false,
            };
            let resp = FetchResponse {
                throttle_time_ms: 0,
                error_code: ErrorCode::NONE,
                session_id: 0,
                responses: vec![FetchTopicResponse {
                    topic: "t",
                    partitions: vec![FetchPartitionResponse {
                        partition_index: 0,
                        error_code: ErrorCode::NONE,
                        high_watermark: hw,
                        last_stable_offset: hw,
                        log_start_offset: 0,
                        aborted_transactions: None,
                        preferred_read_replica: -1,
                        records: Some(records),
                    }],
                }],
            };
            let body = encoded(|w| resp.encode(11, w));
            let pending = Pending {
                correlation_id: 1,
                sent: Instant::now(),
                partition: 0,
                records: 0,
                range: 0,
            };
            on_fetch(&mut ctx, &mut st, &pending, &body)?;
            Ok((ctx.completed, st.streams[0].next))
        }

        /// Batches of `count` records at each base offset, concatenated.
        fn batches(at: &[(i64, u64)]) -> Vec<u8> {
            let mut out = Vec::new();
            for &(base, count) in at {
                let mut one = Vec::new();
                build_batch(&mut one, count, b"abc");
                batch::set_base_offset(&mut one, base);
                out.extend_from_slice(&one);
            }
            out
        }

        #[test]
        fn fetch_answers_are_counted_within_the_range() {
            let two = batches(&[(0, 10), (10, 10)]);
            assert_eq!(fetch(0, 15, 20, &two), Ok((15, 20)));
            // The fetch offset inside the first batch.
            assert_eq!(fetch(4, 100, 20, &two), Ok((16, 20)));
            // A batch cut short at the end is skipped.
            assert_eq!(fetch(0, 100, 20, &two[..two.len() - 5]), Ok((10, 10)));
        }

        #[test]
        fn fetch_answers_with_gaps_repeats_or_damage_fail() {
            let err = |r: Result<(u64, u64), String>| r.unwrap_err();
            let gap = batches(&[(3, 10)]);
            assert!(err(fetch(0, 100, 20, &gap)).contains("a gap"));
            let gap = batches(&[(0, 10), (11, 10)]);
            assert!(err(fetch(0, 100, 21, &gap)).contains("a gap"));
            let repeat = batches(&[(0, 10), (5, 10)]);
            assert!(err(fetch(0, 100, 20, &repeat)).contains("a repeat"));
            let before = batches(&[(0, 10)]);
            assert!(err(fetch(10, 100, 20, &before)).contains("a repeat"));
            let mut damaged = batches(&[(0, 10)]);
            let last = damaged.len() - 1;
            damaged[last] ^= 1;
            assert!(err(fetch(0, 100, 10, &damaged)).contains("invalid"));
            assert!(err(fetch(10, 100, 10, &[])).contains("nothing stored at offset 10"));
            let whole = batches(&[(0, 10)]);
            assert!(err(fetch(0, 100, 10, &whole[..20])).contains("no whole batch"));
        }
    }
}

/// `bench latency`: how long a light request waits while other
/// connections keep the broker busy (issue 11: no client may starve the
/// others).
///
/// Setup is blocking, on one "admin" connection: `USE` the loaded topic,
/// `TOPICS` for its next offset, and `PRODUCE` it up to `--prefill`
/// messages (chunks of 10,000 pipelined, every `ACK` checked). The two
/// probe connections select their topics (`latency-probe` for the
/// `PRODUCE` probe, whose first `PRODUCE` gives the offset every later
/// `ACK` must follow exactly). Then the loaders connect, each sending
/// `USE <topic>` and its first request in one write, and one `mio::Poll`
/// drives everything.
///
/// Warm-up lasts until every loader has had its first answer (parked: its
/// `USING`, then `STATS` must count the parked fetches). The probes then
/// run for `--seconds`: probe k is due at k / `--rate` s (the `PRODUCE`
/// probe half a period later) and sent when due whether earlier ones were
/// answered or not. The loop serves the probes first: after each poll,
/// their sockets are read at once and the replies timed; loaders are
/// served round-robin, one read of at most 256 KiB each, at most 1 MiB in
/// all before the next poll, so the client itself adds well under a
/// millisecond to a probe's wait. After `--seconds`, no new probes (and
/// no new loader requests but the subscribers' stream) are sent; the loop
/// runs until every probe is answered (at most 10 s more), then asks
/// `STATS` on the admin connection and prints.
mod latency {
    use std::collections::VecDeque;
    use std::io::{self, Read, Write};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use hdrhistogram::Histogram;
    use mio::net::TcpStream;
    use mio::{Events, Interest, Poll, Token};

    use kafka_like_broker::cli;
    use kafka_like_broker::client::{Connection, parse_end, parse_message};
    use kafka_like_broker::util::{parse_u64, push_u64};

    use super::{Args, LoadKind};

    const DEFAULT_TOPIC: &str = "latency-load";
    const PROBE_TOPIC: &str = "latency-probe";
    const PING_TOKEN: Token = Token(usize::MAX - 1);
    const PRODUCE_TOKEN: Token = Token(usize::MAX - 2);
    /// Messages per pipelined chunk of the prefill.
    const PREFILL_CHUNK: u64 = 10_000;
    /// A parked loader's FETCH: up to this many messages, waiting this long.
    const PARKED_MAX: u64 = 1000;
    const PARKED_WAIT_MS: u64 = 30_000;
    /// Warm-up: every loader answered within this.
    const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);
    /// After --seconds: every probe answered within this.
    const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
    /// One read of a loader's socket.
    const READ_CHUNK: usize = 256 * 1024;
    /// Loader bytes read, and time spent on loaders, between two looks
    /// at the probes.
    const LOADER_BUDGET: usize = 1 << 20;
    const LOADER_SLICE: Duration = Duration::from_micros(500);
    /// Loaders connected between two PINGs on the admin connection.
    const CONNECT_PACE: usize = 128;
    /// A run fails if no socket event comes for this long.
    const NO_PROGRESS: Duration = Duration::from_secs(10);

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Role {
        Subscriber,
        Fetcher,
        Parked,
        Producer,
        Stalled,
        /// Parked: the connection whose messages wake the parked fetches.
        Feeder,
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Phase {
        Warmup,
        Measure,
        Drain,
    }

    struct Loader {
        stream: TcpStream,
        st: LoaderState,
    }

    impl std::ops::Deref for Loader {
        type Target = LoaderState;
        fn deref(&self) -> &LoaderState {
            &self.st
        }
    }

    impl std::ops::DerefMut for Loader {
        fn deref_mut(&mut self) -> &mut LoaderState {
            &mut self.st
        }
    }

    /// A loader but its socket.
    struct LoaderState {
        role: Role,
        out: Vec<u8>,
        sent: usize,
        /// The start of a line whose end has not arrived.
        partial: Vec<u8>,
        /// Queued in the ready list (its socket may hold more).
        queued: bool,
        using: bool,
        warmed: bool,
        /// The next message offset expected (subscribers, fetchers,
        /// parked), or the next ACK (feeder).
        next: u64,
        /// Fetchers, parked: where the FETCH in flight started.
        from: u64,
        /// Subscribers: UNSUBSCRIBE sent, its END not yet read.
        resubscribing: bool,
        /// Producers, feeder: send times of PRODUCEs in flight.
        in_flight: VecDeque<Instant>,
        last_ack: Option<u64>,
    }

    impl LoaderState {
        fn new(role: Role) -> Self {
            LoaderState {
                role,
                out: Vec::with_capacity(256),
                sent: 0,
                partial: Vec::new(),
                queued: false,
                using: false,
                warmed: false,
                next: 0,
                from: 0,
                resubscribing: false,
                in_flight: VecDeque::new(),
                last_ack: None,
            }
        }
    }

    /// A probe connection.
    struct Probe {
        name: &'static str,
        stream: TcpStream,
        out: Vec<u8>,
        sent: usize,
        input: Vec<u8>,
        in_flight: VecDeque<Instant>,
        /// Probes sent so far (the next one's index).
        count: u64,
        /// When probe 0 is due.
        first_due: Instant,
        /// PRODUCE probe: the offset the next ACK must carry.
        next_offset: Option<u64>,
        hist: Histogram<u64>,
    }

    /// What the line handlers share.
    struct Shared {
        kind: LoadKind,
        /// The loaded topic's end at the start (subscribers and fetchers
        /// wrap there).
        load_end: u64,
        batch: u64,
        /// Whether loaders may send new requests (not after --seconds).
        sending: bool,
        /// Message lines and bytes loaders received while measuring.
        messages: u64,
        bytes: u64,
        /// Latency of the loaders' own PRODUCEs (producers, feeder).
        load_hist: Histogram<u64>,
        measuring: bool,
        /// Producers: bytes per message, for load_mb_per_s.
        size: u64,
    }

    fn histogram() -> Result<Histogram<u64>, String> {
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())
    }

    pub fn run(args: &Args, addr: SocketAddr, addr_text: &str) -> Result<(), String> {
        let kind = args.load.ok_or("latency needs --load")?;
        let topic = args.topic.as_deref().unwrap_or(DEFAULT_TOPIC);
        let batch = if args.batch_set { args.batch } else { 100_000 };
        let depth = if args.depth_set { args.depth } else { 64 };
        let prefill = args.prefill.unwrap_or(match kind {
            LoadKind::Subscribers | LoadKind::Fetchers | LoadKind::Stalled => 2_000_000,
            LoadKind::Parked | LoadKind::Producers => 0,
        });
        let payload = vec![b'x'; args.size];

        // Blocking setup on the admin connection.
        let mut admin = Connection::open(addr_text).map_err(|e| e.to_string())?;
        admin
            .expect(&format!("USE {topic}"), "USING ")
            .map_err(|e| e.to_string())?;
        let mut load_end = topic_next(&mut admin, topic)?;
        if load_end < prefill {
            let began = Instant::now();
            let added = prefill - load_end;
            fill(&mut admin, &payload, load_end, added)?;
            load_end = prefill;
            cli::err(format!(
                "bench: prefilled {topic} with {added} messages of {} bytes in {:.1} s\n",
                args.size,
                began.elapsed().as_secs_f64()
            ));
        }
        if matches!(kind, LoadKind::Subscribers | LoadKind::Fetchers) && load_end == 0 {
            return Err(format!(
                "topic {topic} is empty: {} need messages (--prefill)",
                kind.name()
            ));
        }

        let mut poll = Poll::new().map_err(|e| e.to_string())?;
        let ping_stream = Connection::open(addr_text).map_err(|e| e.to_string())?;
        let mut ping = probe("ping", ping_stream, &mut poll, PING_TOKEN)?;
        let mut produce_conn = Connection::open(addr_text).map_err(|e| e.to_string())?;
        produce_conn
            .expect(&format!("USE {PROBE_TOPIC}"), "USING ")
            .map_err(|e| e.to_string())?;
        let first = produce_conn
            .expect("PRODUCE probe", "ACK offset:")
            .map_err(|e| e.to_string())?;
        let first = first
            .strip_prefix("ACK offset:")
            .and_then(|o| parse_u64(o.as_bytes()))
            .ok_or_else(|| format!("PRODUCE answered {first:?}"))?;
        let mut produce = probe("produce", produce_conn, &mut poll, PRODUCE_TOKEN)?;
        produce.next_offset = Some(first + 1);

        // The loaders: USE and the first request in one write.
        let connecting = Instant::now();
        let mut loaders = Vec::with_capacity(args.load_conns + 1);
        let feeder = usize::from(kind == LoadKind::Parked);
        for i in 0..args.load_conns + feeder {
            let role = match kind {
                _ if i == args.load_conns => Role::Feeder,
                LoadKind::Subscribers => Role::Subscriber,
                LoadKind::Fetchers => Role::Fetcher,
                LoadKind::Parked => Role::Parked,
                LoadKind::Producers => Role::Producer,
                LoadKind::Stalled => Role::Stalled,
            };
            let std_stream = std::net::TcpStream::connect(addr).map_err(|e| {
                format!("cannot connect loader {i} to {addr_text}: {e} (ulimit -n?)")
            })?;
            std_stream.set_nodelay(true).map_err(|e| e.to_string())?;
            std_stream
                .set_nonblocking(true)
                .map_err(|e| e.to_string())?;
            let mut stream = TcpStream::from_std(std_stream);
            // A stalled loader never reads.
            let interest = if role == Role::Stalled {
                Interest::WRITABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            poll.registry()
                .register(&mut stream, Token(i), interest)
                .map_err(|e| e.to_string())?;
            let mut l = Loader {
                stream,
                st: LoaderState::new(role),
            };

            l.out.extend_from_slice(b"USE ");
            l.out.extend_from_slice(topic.as_bytes());
            l.out.push(b'\n');
            match role {
                Role::Subscriber | Role::Stalled => l.out.extend_from_slice(b"SUBSCRIBE 0\n"),
                Role::Fetcher => {
                    let start = (load_end as u128 * i as u128 / args.load_conns as u128) as u64;
                    l.from = start;
                    l.next = start;
                    push_fetch(&mut l.out, start, batch, None);
                }
                Role::Parked => {
                    l.from = load_end;
                    l.next = load_end;
                    push_fetch(&mut l.out, load_end, PARKED_MAX, Some(PARKED_WAIT_MS));
                }
                Role::Producer => {
                    for _ in 0..depth {
                        push_produce(&mut l, &payload);
                    }
                }
                // Produces on schedule once measuring.
                Role::Feeder => l.next = load_end,
            }
            flush(&mut l.stream, &mut l.st.out, &mut l.st.sent)
                .map_err(|e| format!("loader {i}: {e}"))?;
            loaders.push(l);
            if i % CONNECT_PACE == CONNECT_PACE - 1 {
                // The broker accepts everything queued before it answers,
                // so the listen backlog never overflows (an overflow costs
                // a client a 1 s SYN retry).
                admin.expect("PING", "PONG").map_err(|e| e.to_string())?;
            }
        }

        let mut sh = Shared {
            kind,
            load_end,
            batch,
            sending: true,
            messages: 0,
            bytes: 0,
            load_hist: histogram()?,
            measuring: false,
            size: args.size as u64,
        };
        let mut lag = histogram()?;
        let mut ready: VecDeque<usize> = VecDeque::new();
        let mut events = Events::with_capacity(4096);
        let mut scratch = vec![0u8; READ_CHUNK];
        let mut phase = Phase::Warmup;
        let mut phase_started = Instant::now();
        let mut last_event = Instant::now();
        let mut warm = 0usize;
        let per = Duration::from_secs_f64(1.0 / args.rate);
        let total = (args.seconds * args.rate).round() as u64;
        let feed_every = Duration::from_secs_f64(1.0 / args.load_rate);
        let mut fed: u64 = 0;
        let mut measure_started = Instant::now();
        let mut measure_secs = 0.0;
        loop {
            let now = Instant::now();
            match phase {
                Phase::Warmup => {
                    if warm == loaders.len() {
                        if kind == LoadKind::Parked {
                            wait_parked(&mut admin, args.load_conns)?;
                        }
                        cli::err(format!(
                            "bench: {} loaders connected and answered in {:.1} s; measuring for {} s\n",
                            loaders.len(),
                            connecting.elapsed().as_secs_f64(),
                            args.seconds
                        ));
                        phase = Phase::Measure;
                        let now = Instant::now();
                        phase_started = now;
                        measure_started = now;
                        sh.measuring = true;
                        ping.first_due = now;
                        produce.first_due = now + per / 2;
                    } else if now - phase_started > WARMUP_TIMEOUT {
                        return Err(format!(
                            "only {warm} of {} loaders answered within {} s",
                            loaders.len(),
                            WARMUP_TIMEOUT.as_secs()
                        ));
                    }
                }
                Phase::Measure => {
                    if now - phase_started >= Duration::from_secs_f64(args.seconds)
                        && ping.count >= total
                        && produce.count >= total
                    {
                        phase = Phase::Drain;
                        phase_started = now;
                        measure_secs = (now - measure_started).as_secs_f64();
                        sh.measuring = false;
                        sh.sending = false;
                    }
                }
                Phase::Drain => {
                    if ping.in_flight.is_empty() && produce.in_flight.is_empty() {
                        break;
                    }
                    if now - phase_started > DRAIN_TIMEOUT {
                        return Err(format!(
                            "{} PING and {} PRODUCE probes unanswered {} s after the last was sent",
                            ping.in_flight.len(),
                            produce.in_flight.len(),
                            DRAIN_TIMEOUT.as_secs()
                        ));
                    }
                }
            }
            // Probes (and the feeder) due now.
            let mut next_due = now + Duration::from_millis(100);
            if phase == Phase::Measure {
                for p in [&mut ping, &mut produce] {
                    while p.count < total {
                        let due = p.first_due + per * p.count as u32;
                        if due > now {
                            next_due = next_due.min(due);
                            break;
                        }
                        let _ = lag.record(micros(now - due));
                        match p.next_offset {
                            None => p.out.extend_from_slice(b"PING\n"),
                            Some(_) => p.out.extend_from_slice(b"PRODUCE probe\n"),
                        }
                        p.in_flight.push_back(now);
                        p.count += 1;
                    }
                    flush(&mut p.stream, &mut p.out, &mut p.sent)
                        .map_err(|e| format!("{} probe: {e}", p.name))?;
                }
                if kind == LoadKind::Parked {
                    let f = &mut loaders[args.load_conns];
                    loop {
                        let due = measure_started + feed_every * fed as u32;
                        if due > now {
                            next_due = next_due.min(due);
                            break;
                        }
                        push_produce(f, &payload);
                        fed += 1;
                    }
                    flush(&mut f.stream, &mut f.st.out, &mut f.st.sent)
                        .map_err(|e| format!("producing loader: {e}"))?;
                }
            }
            let timeout = if ready.is_empty() {
                next_due.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            poll.poll(&mut events, Some(timeout))
                .map_err(|e| e.to_string())?;
            let now = Instant::now();
            if events.is_empty() {
                if ready.is_empty() && now - last_event > NO_PROGRESS {
                    return Err(format!(
                        "no socket event for {} s ({phase:?})",
                        NO_PROGRESS.as_secs()
                    ));
                }
            } else {
                last_event = now;
            }
            for event in events.iter() {
                match event.token() {
                    PING_TOKEN => read_probe(&mut ping, &mut scratch, event.is_writable())?,
                    PRODUCE_TOKEN => read_probe(&mut produce, &mut scratch, event.is_writable())?,
                    Token(i) => {
                        let l = &mut loaders[i];
                        if event.is_readable() && !l.queued {
                            l.queued = true;
                            ready.push_back(i);
                        }
                        if event.is_writable() {
                            flush(&mut l.stream, &mut l.st.out, &mut l.st.sent)
                                .map_err(|e| format!("loader {i}: {e}"))?;
                        }
                    }
                }
            }
            // Loaders, round-robin, within the budget.
            let mut budget = LOADER_BUDGET;
            let slice_end = Instant::now() + LOADER_SLICE;
            while budget > 0 && Instant::now() < slice_end {
                let Some(i) = ready.pop_front() else { break };
                let l = &mut loaders[i];
                let was_warm = l.warmed;
                let (n, more) = read_loader(l, &mut scratch, &mut sh, &payload, depth)
                    .map_err(|e| format!("loader {i} ({:?}): {e}", l.role))?;
                if l.warmed && !was_warm {
                    warm += 1;
                }
                budget = budget.saturating_sub(n);
                if more {
                    ready.push_back(i);
                } else {
                    l.queued = false;
                }
                flush(&mut l.stream, &mut l.st.out, &mut l.st.sent)
                    .map_err(|e| format!("loader {i}: {e}"))?;
            }
            // Stalled loaders never answer: warm once their request left.
            if phase == Phase::Warmup && kind == LoadKind::Stalled {
                warm = loaders.iter().filter(|l| l.out.is_empty()).count();
                if warm == loaders.len() {
                    // Let the broker take the requests in.
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }

        let stats = stats(&mut admin)?;
        let stat = |name: &str| {
            stats
                .iter()
                .find(|(k, _)| k == name)
                .map_or("?".to_string(), |(_, v)| v.clone())
        };
        let rss_kib = stat("rss_bytes")
            .parse::<u64>()
            .map_or("?".to_string(), |b| (b / 1024).to_string());
        let head = format!(
            "bench latency load={} load_conns={} seconds={} rate={}",
            kind.name(),
            args.load_conns,
            args.seconds,
            args.rate
        );
        let mut probes = vec![("ping", &ping.hist), ("produce", &produce.hist)];
        if matches!(kind, LoadKind::Parked | LoadKind::Producers) {
            probes.push(("load-produce", &sh.load_hist));
        }
        let mut text = String::new();
        for (name, h) in probes {
            text.push_str(&format!(
                "{head} probe={name} count={} p50_ms={} p90_ms={} p99_ms={} max_ms={}\n",
                h.len(),
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.9)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
            ));
        }
        text.push_str(&format!(
            "{head} load_msg_per_s={:.0} load_mb_per_s={:.1} client_lag_p99_ms={} client_lag_max_ms={} broker_rss_kib={rss_kib} connections_paused={} connections_current={}\n",
            sh.messages as f64 / measure_secs,
            sh.bytes as f64 / measure_secs / 1e6,
            ms(lag.value_at_quantile(0.99)),
            ms(lag.max()),
            stat("connections_paused"),
            stat("connections_current"),
        ));
        cli::out(text);
        Ok(())
    }

    fn micros(d: Duration) -> u64 {
        (d.as_micros() as u64).clamp(1, 600_000_000)
    }

    fn ms(us: u64) -> String {
        format!("{:.2}", us as f64 / 1000.0)
    }

    fn push_fetch(out: &mut Vec<u8>, from: u64, max: u64, wait_ms: Option<u64>) {
        out.extend_from_slice(b"FETCH ");
        push_u64(out, from);
        out.push(b' ');
        push_u64(out, max);
        if let Some(w) = wait_ms {
            out.push(b' ');
            push_u64(out, w);
        }
        out.push(b'\n');
    }

    fn push_produce(l: &mut LoaderState, payload: &[u8]) {
        l.out.extend_from_slice(b"PRODUCE ");
        l.out.extend_from_slice(payload);
        l.out.push(b'\n');
        l.in_flight.push_back(Instant::now());
    }

    fn flush(stream: &mut TcpStream, out: &mut Vec<u8>, sent: &mut usize) -> io::Result<()> {
        while *sent < out.len() {
            match stream.write(&out[*sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if *sent == out.len() {
            out.clear();
            *sent = 0;
        }
        Ok(())
    }

    /// A blocking connection made a probe: non-blocking, registered.
    fn probe(
        name: &'static str,
        conn: Connection,
        poll: &mut Poll,
        token: Token,
    ) -> Result<Probe, String> {
        if !conn.reader.buffer().is_empty() {
            return Err(format!("{name} probe: unexpected bytes after setup"));
        }
        let std_stream = conn.writer;
        std_stream
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| e.to_string())?;
        Ok(Probe {
            name,
            stream,
            out: Vec::new(),
            sent: 0,
            input: Vec::new(),
            in_flight: VecDeque::new(),
            count: 0,
            first_due: Instant::now(),
            next_offset: None,
            hist: histogram()?,
        })
    }

    /// Reads a probe's socket dry and times each reply.
    fn read_probe(p: &mut Probe, scratch: &mut [u8], writable: bool) -> Result<(), String> {
        if writable {
            flush(&mut p.stream, &mut p.out, &mut p.sent)
                .map_err(|e| format!("{} probe: {e}", p.name))?;
        }
        loop {
            match p.stream.read(scratch) {
                Ok(0) => return Err(format!("{} probe: closed by the broker", p.name)),
                Ok(n) => p.input.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{} probe: {e}", p.name)),
            }
        }
        let now = Instant::now();
        let mut pos = 0;
        while let Some(nl) = memchr::memchr(b'\n', &p.input[pos..]) {
            let line = &p.input[pos..pos + nl];
            pos += nl + 1;
            let ok = match &mut p.next_offset {
                None => line == b"PONG",
                Some(next) => {
                    let good = line
                        .strip_prefix(b"ACK offset:")
                        .and_then(parse_u64)
                        .is_some_and(|o| o == *next);
                    *next += 1;
                    good
                }
            };
            if !ok {
                return Err(format!(
                    "{} probe: unexpected reply {:?}{}",
                    p.name,
                    String::from_utf8_lossy(&line[..line.len().min(80)]),
                    p.next_offset.map_or(String::new(), |n| format!(
                        " (expected ACK offset:{})",
                        n - 1
                    ))
                ));
            }
            let sent = p
                .in_flight
                .pop_front()
                .ok_or_else(|| format!("{} probe: a reply nobody asked for", p.name))?;
            let _ = p.hist.record(micros(now - sent));
        }
        p.input.drain(..pos);
        Ok(())
    }

    /// One read from a loader; returns the bytes read and whether the
    /// socket may hold more.
    fn read_loader(
        l: &mut Loader,
        scratch: &mut [u8],
        sh: &mut Shared,
        payload: &[u8],
        depth: usize,
    ) -> Result<(usize, bool), String> {
        let n = match l.stream.read(scratch) {
            Ok(0) => return Err("closed by the broker".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((0, false)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok((0, true)),
            Err(e) => return Err(e.to_string()),
        };
        feed(&mut l.st, &scratch[..n], sh, payload, depth)?;
        Ok((n, n == scratch.len()))
    }

    /// Bytes a loader read: its lines are handled, a partial one kept.
    fn feed(
        l: &mut LoaderState,
        data: &[u8],
        sh: &mut Shared,
        payload: &[u8],
        depth: usize,
    ) -> Result<(), String> {
        if sh.measuring && l.role != Role::Producer {
            sh.bytes += data.len() as u64;
        }
        let mut pos = 0;
        if !l.partial.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(nl) => {
                    let mut line = std::mem::take(&mut l.partial);
                    line.extend_from_slice(&data[..nl]);
                    on_line(l, &line, sh)?;
                    line.clear();
                    l.partial = line;
                    pos = nl + 1;
                }
                None => {
                    l.partial.extend_from_slice(data);
                    return Ok(());
                }
            }
        }
        while let Some(nl) = memchr::memchr(b'\n', &data[pos..]) {
            on_line(l, &data[pos..pos + nl], sh)?;
            pos += nl + 1;
        }
        l.partial.extend_from_slice(&data[pos..]);
        // Producers keep --depth in flight while sending.
        if l.role == Role::Producer && sh.sending {
            while l.in_flight.len() < depth {
                push_produce(l, payload);
            }
        }
        Ok(())
    }

    /// One line a loader received.
    fn on_line(l: &mut LoaderState, line: &[u8], sh: &mut Shared) -> Result<(), String> {
        let bad = |why: &str| {
            let hint = if line.starts_with(b"TOO_MANY_CONNECTIONS") {
                " (raise the broker's --max-connections)"
            } else {
                ""
            };
            format!(
                "{why}: {:?}{hint}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )
        };
        if !l.using {
            if !line.starts_with(b"USING ") {
                return Err(bad("expected USING"));
            }
            l.using = true;
            if matches!(l.role, Role::Parked | Role::Producer | Role::Feeder) {
                l.warmed = true;
            }
            return Ok(());
        }
        match l.role {
            Role::Subscriber => {
                if let Some((offset, _)) = parse_message(line) {
                    if offset != l.next {
                        return Err(format!("got offset {offset}, expected {}", l.next));
                    }
                    l.next += 1;
                    l.warmed = true;
                    if sh.measuring {
                        sh.messages += 1;
                    }
                    if l.next >= sh.load_end && !l.resubscribing && sh.sending {
                        l.out.extend_from_slice(b"UNSUBSCRIBE\nSUBSCRIBE 0\n");
                        l.resubscribing = true;
                    }
                    return Ok(());
                }
                let end = parse_end(line).ok_or_else(|| bad("expected MESSAGE or END"))?;
                if !l.resubscribing || end != l.next {
                    return Err(format!(
                        "END offset:{end} after offset {} (resubscribing: {})",
                        l.next, l.resubscribing
                    ));
                }
                l.resubscribing = false;
                l.next = 0;
            }
            Role::Fetcher | Role::Parked => {
                if let Some((offset, _)) = parse_message(line) {
                    if offset != l.next {
                        return Err(format!("got offset {offset}, expected {}", l.next));
                    }
                    l.next += 1;
                    if sh.measuring {
                        sh.messages += 1;
                    }
                    return Ok(());
                }
                let end = parse_end(line).ok_or_else(|| bad("expected MESSAGE or END"))?;
                if end != l.next {
                    return Err(format!("END offset:{end} after messages up to {}", l.next));
                }
                if l.role == Role::Fetcher {
                    if end == l.from {
                        return Err(format!("FETCH {} answered nothing", l.from));
                    }
                    l.warmed = true;
                    if end >= sh.load_end {
                        l.next = 0;
                    }
                    l.from = l.next;
                    if sh.sending {
                        push_fetch(&mut l.out, l.from, sh.batch, None);
                    }
                } else {
                    // A wake-up (or the wait ran out): park again.
                    l.from = l.next;
                    if sh.sending {
                        push_fetch(&mut l.out, l.from, PARKED_MAX, Some(PARKED_WAIT_MS));
                    }
                }
            }
            Role::Producer | Role::Feeder => {
                let offset = line
                    .strip_prefix(b"ACK offset:")
                    .and_then(parse_u64)
                    .ok_or_else(|| bad("expected ACK"))?;
                if l.role == Role::Feeder {
                    // The only writer of the loaded topic: exact offsets.
                    if offset != l.next {
                        return Err(format!("ACK offset:{offset}, expected {}", l.next));
                    }
                    l.next += 1;
                } else if l.last_ack.is_some_and(|last| offset <= last) {
                    return Err(format!("ACK offset:{offset} after {:?}", l.last_ack));
                }
                l.last_ack = Some(offset);
                let sent = l.in_flight.pop_front().ok_or_else(|| bad("unasked ACK"))?;
                if sh.measuring {
                    let _ = sh.load_hist.record(micros(sent.elapsed()));
                    if sh.kind == LoadKind::Producers {
                        sh.messages += 1;
                        sh.bytes += sh.size;
                    }
                }
            }
            Role::Stalled => {}
        }
        Ok(())
    }

    /// The `next:` offset `TOPICS` gives for `topic` (partition 0).
    fn topic_next(admin: &mut Connection, topic: &str) -> Result<u64, String> {
        admin.send(b"TOPICS\n").map_err(|e| e.to_string())?;
        let mut line = Vec::new();
        let mut next = None;
        let partitioned = format!("TOPIC {topic}/0 ");
        let single = format!("TOPIC {topic} ");
        loop {
            admin.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == b"END" {
                break;
            }
            if line.starts_with(single.as_bytes()) || line.starts_with(partitioned.as_bytes()) {
                next = line
                    .split(|&b| b == b' ')
                    .find_map(|f| f.strip_prefix(b"next:"))
                    .and_then(parse_u64);
            } else if !line.starts_with(b"TOPIC ") {
                return Err(format!(
                    "TOPICS answered {:?}",
                    String::from_utf8_lossy(&line)
                ));
            }
        }
        next.ok_or_else(|| format!("TOPICS does not list {topic}"))
    }

    /// Produces `count` messages from offset `from` on, pipelined in
    /// chunks; every ACK must be the next offset.
    fn fill(admin: &mut Connection, payload: &[u8], from: u64, count: u64) -> Result<(), String> {
        let mut request = Vec::new();
        let mut line = Vec::new();
        let mut next = from;
        let mut left = count;
        while left > 0 {
            let n = left.min(PREFILL_CHUNK);
            request.clear();
            for _ in 0..n {
                request.extend_from_slice(b"PRODUCE ");
                request.extend_from_slice(payload);
                request.push(b'\n');
            }
            admin.send(&request).map_err(|e| e.to_string())?;
            for _ in 0..n {
                admin.read_line(&mut line).map_err(|e| e.to_string())?;
                if line.strip_prefix(b"ACK offset:").and_then(parse_u64) != Some(next) {
                    return Err(format!(
                        "prefill: expected ACK offset:{next}, got {:?} (another writer?)",
                        String::from_utf8_lossy(&line)
                    ));
                }
                next += 1;
            }
            left -= n;
        }
        Ok(())
    }

    /// `STATS` as (name, value) pairs.
    fn stats(admin: &mut Connection) -> Result<Vec<(String, String)>, String> {
        admin.send(b"STATS\n").map_err(|e| e.to_string())?;
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            admin.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == b"END" {
                return Ok(out);
            }
            let text = String::from_utf8_lossy(&line);
            let mut parts = text.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("STAT"), Some(k), Some(v)) => out.push((k.to_string(), v.to_string())),
                _ => return Err(format!("STATS answered {text:?}")),
            }
        }
    }

    /// Waits until `STATS` counts `n` parked fetches.
    fn wait_parked(admin: &mut Connection, n: usize) -> Result<(), String> {
        let deadline = Instant::now() + WARMUP_TIMEOUT;
        loop {
            let parked = stats(admin)?
                .into_iter()
                .find(|(k, _)| k == "fetches_parked")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            if parked >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("only {parked} of {n} fetches parked"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn shared(kind: LoadKind, load_end: u64) -> Shared {
            Shared {
                kind,
                load_end,
                batch: 10,
                sending: true,
                messages: 0,
                bytes: 0,
                load_hist: histogram().unwrap(),
                measuring: true,
                size: 1,
            }
        }

        fn run(l: &mut LoaderState, sh: &mut Shared, chunks: &[&[u8]]) -> Result<(), String> {
            for chunk in chunks {
                feed(l, chunk, sh, b"x", 2)?;
            }
            Ok(())
        }

        #[test]
        fn subscriber_follows_the_stream_across_reads_and_resubscribes_at_the_end() {
            let mut sh = shared(LoadKind::Subscribers, 2);
            let mut l = LoaderState::new(Role::Subscriber);
            run(
                &mut l,
                &mut sh,
                &[b"USING t\nMESSAGE offset:0 a\nMESS", b"AGE offset:1 b\n"],
            )
            .unwrap();
            assert!(l.warmed);
            assert_eq!(sh.messages, 2);
            assert_eq!(l.out, b"UNSUBSCRIBE\nSUBSCRIBE 0\n");
            run(&mut l, &mut sh, &[b"END offset:2\nMESSAGE offset:0 a\n"]).unwrap();
            assert_eq!(l.next, 1);
            let e = run(&mut l, &mut sh, &[b"MESSAGE offset:5 a\n"]).unwrap_err();
            assert!(e.contains("expected 1"), "{e}");
        }

        #[test]
        fn fetcher_checks_offsets_and_end_and_wraps() {
            let mut sh = shared(LoadKind::Fetchers, 3);
            let mut l = LoaderState::new(Role::Fetcher);
            l.from = 1;
            l.next = 1;
            run(
                &mut l,
                &mut sh,
                &[b"USING t\nMESSAGE offset:1 a\nMESSAGE offset:2 b\nEND offset:3\n"],
            )
            .unwrap();
            assert!(l.warmed);
            assert_eq!(l.out, b"FETCH 0 10\n");
            let e = run(&mut l, &mut sh, &[b"MESSAGE offset:0 a\nEND offset:2\n"]).unwrap_err();
            assert!(e.contains("END offset:2"), "{e}");
            let mut l = LoaderState::new(Role::Fetcher);
            let e = run(&mut l, &mut sh, &[b"USING t\nEND offset:0\n"]).unwrap_err();
            assert!(e.contains("answered nothing"), "{e}");
            let mut l = LoaderState::new(Role::Fetcher);
            let e = run(&mut l, &mut sh, &[b"TOO_MANY_CONNECTIONS full\n"]).unwrap_err();
            assert!(e.contains("--max-connections"), "{e}");
        }

        #[test]
        fn parked_fetch_parks_again_after_a_wake_or_a_timeout() {
            let mut sh = shared(LoadKind::Parked, 7);
            let mut l = LoaderState::new(Role::Parked);
            l.from = 7;
            l.next = 7;
            run(
                &mut l,
                &mut sh,
                &[b"USING t\nMESSAGE offset:7 a\nEND offset:8\n"],
            )
            .unwrap();
            assert_eq!(l.out, b"FETCH 8 1000 30000\n");
            l.out.clear();
            run(&mut l, &mut sh, &[b"END offset:8\n"]).unwrap();
            assert_eq!(l.out, b"FETCH 8 1000 30000\n");
        }

        #[test]
        fn producers_keep_depth_in_flight_and_acks_must_increase() {
            let mut sh = shared(LoadKind::Producers, 0);
            let mut l = LoaderState::new(Role::Producer);
            push_produce(&mut l, b"x");
            push_produce(&mut l, b"x");
            l.out.clear();
            run(&mut l, &mut sh, &[b"USING t\nACK offset:4\n"]).unwrap();
            assert_eq!(l.out, b"PRODUCE x\n");
            assert_eq!(sh.load_hist.len(), 1);
            let e = run(&mut l, &mut sh, &[b"ACK offset:4\n"]).unwrap_err();
            assert!(e.contains("after"), "{e}");
            // The feeder is the topic's only writer: exact offsets.
            let mut f = LoaderState::new(Role::Feeder);
            f.next = 3;
            push_produce(&mut f, b"x");
            push_produce(&mut f, b"x");
            run(&mut f, &mut sh, &[b"USING t\nACK offset:3\n"]).unwrap();
            let e = run(&mut f, &mut sh, &[b"ACK offset:5\n"]).unwrap_err();
            assert!(e.contains("expected 4"), "{e}");
        }
    }
}
