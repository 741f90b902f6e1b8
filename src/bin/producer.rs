//! `producer`: sends lines from stdin as messages. See `producer --help`.
//!
//! Delivery is at-least-once: a line is kept until the broker acknowledged
//! it, and if the connection breaks (a broker restart) the producer
//! reconnects with backoff and sends again every line it holds. A line the
//! broker stored just before the connection broke, but whose `ACK` was
//! lost, is stored twice; none is lost.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufWriter, IsTerminal, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_like_broker::client::cli::{self, UsageError};
use kafka_like_broker::client::{self, ClientError, Connection};
use kafka_like_broker::config::DEFAULT_ADDR;

const PROMPT: &str = "What do you want to add? (type 'exit' to quit): ";

const USAGE: &str = "\
Usage: producer [--addr HOST:PORT] [--topic TOPIC] [--auth-token-file PATH]
                [--retry-timeout-ms N]

Sends each line of stdin to the broker as a message and prints the
broker's response.

At a terminal it prompts for each message; 'exit' (any case) quits.
With stdin piped it sends every non-empty line without prompts ('exit' is
then just data), keeping up to 4096 in flight, and prints one
'Broker response: ...' line per line sent. Empty lines are skipped.

If the connection to the broker breaks (say, it restarts), the producer
reconnects, waiting 100 ms, then twice as long each time up to 2 s, for
up to --retry-timeout-ms, and sends again every line not yet
acknowledged: at-least-once, so a line whose ACK was lost may be stored
twice, and none is lost. The first connection is not retried.

Exits 0 if every message was acknowledged, 1 otherwise.

Options:
  --addr HOST:PORT          broker address [default: localhost:9092]; a bare
                            port means localhost:PORT, a bare host HOST:9092
  --bootstrap-server HOST:PORT
                            the same as --addr (Kafka's name)
  --topic TOPIC             produce to TOPIC [default: the default topic]
  --auth-token-file PATH    authenticate with the token in PATH
  --retry-timeout-ms N      how long to keep reconnecting after the broker
                            went away; 0 gives up at once [default: 60000]
  -h, --help                print this help
  -V, --version             print the version
";

/// Lines in flight at most when piped, and their bytes (one line may be
/// bigger): what a reconnect sends again.
const MAX_IN_FLIGHT: usize = 4096;
const MAX_IN_FLIGHT_BYTES: usize = 4 << 20;
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
const DEFAULT_RETRY_TIMEOUT_MS: u64 = 60_000;
/// How often a waiting thread checks whether the connection broke.
const TICK: Duration = Duration::from_millis(100);

struct Args {
    addr: String,
    topic: Option<String>,
    token_file: Option<PathBuf>,
    retry_timeout: Duration,
}

fn parse_args() -> Result<Option<Args>, UsageError> {
    use cli::Arg::{Long, Short};
    let mut args = Args {
        addr: DEFAULT_ADDR.to_string(),
        topic: None,
        token_file: None,
        retry_timeout: Duration::from_millis(DEFAULT_RETRY_TIMEOUT_MS),
    };
    let mut parser = cli::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") | Long("bootstrap-server") => {
                let addr = parser.value()?;
                args.addr = client::complete_addr(&addr, false)
                    .map_err(|why| cli::invalid(parser.flag(), &addr, why))?;
            }
            Long("topic") => {
                let topic = parser.value()?;
                if !kafka_like_broker::util::is_valid_name(topic.as_bytes()) {
                    return Err(cli::invalid("--topic", &topic, NAME_RULES));
                }
                args.topic = Some(topic);
            }
            Long("auth-token-file") => args.token_file = Some(parser.path()?),
            Long("retry-timeout-ms") => {
                args.retry_timeout = Duration::from_millis(parser.number(0, 86_400_000)?)
            }
            Short('h') | Long("help") => {
                cli::out(USAGE);
                return Ok(None);
            }
            Short('V') | Long("version") => {
                cli::out(format!("producer {}\n", env!("CARGO_PKG_VERSION")));
                return Ok(None);
            }
            _ => return Err(cli::unexpected(arg)),
        }
    }
    Ok(Some(args))
}

const NAME_RULES: &str =
    "invalid topic name: 1 to 64 characters of A-Z a-z 0-9 . _ - and not . or ..";

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => return cli::usage_error("producer", &e),
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            cli::err(format!("producer: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

/// Returns whether every message was acknowledged.
fn run(args: &Args) -> Result<bool, ClientError> {
    let token = match &args.token_file {
        Some(path) => Some(client::read_token(path)?),
        None => None,
    };
    let mut session = Session {
        args,
        token,
        conn: None,
    };
    // The first connection is not retried: a wrong --addr fails at once.
    session.conn = Some(session.connect()?);
    if io::stdin().is_terminal() {
        interactive(&mut session)
    } else {
        piped(&mut session)
    }
}

/// What it takes to (re)connect.
struct Session<'a> {
    args: &'a Args,
    token: Option<Vec<u8>>,
    conn: Option<Connection>,
}

impl Session<'_> {
    fn connect(&self) -> Result<Connection, ClientError> {
        let mut conn = Connection::open(&self.args.addr)?;
        conn.setup(self.token.as_deref(), self.args.topic.as_deref())?;
        Ok(conn)
    }

    /// Connects again after `lost`, with backoff, for up to
    /// --retry-timeout-ms. `pending` says what is at stake, for the message
    /// when it gives up.
    fn reconnect(&self, lost: &ClientError, pending: &str) -> Result<Connection, ClientError> {
        cli::err(format!("producer: {lost}; reconnecting\n"));
        let started = Instant::now();
        let mut delay = RETRY_FIRST;
        loop {
            let error = match self.connect() {
                Ok(conn) => {
                    cli::err(format!(
                        "producer: reconnected to broker at {}\n",
                        self.args.addr
                    ));
                    return Ok(conn);
                }
                Err(e @ ClientError::Io { .. }) => e,
                Err(e) => return Err(e),
            };
            if started.elapsed() + delay > self.args.retry_timeout {
                return Err(ClientError::Local(format!(
                    "{error}; gave up after {} ms (--retry-timeout-ms); {pending}",
                    started.elapsed().as_millis()
                )));
            }
            cli::err(format!(
                "producer: {error}; retrying in {} ms\n",
                delay.as_millis()
            ));
            std::thread::sleep(delay);
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

/// One message at a time, as the original project did.
fn interactive(session: &mut Session) -> Result<bool, ClientError> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    let mut reply = Vec::new();
    let mut all_acked = true;
    loop {
        cli::out(PROMPT);
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(all_acked),
            Ok(_) => {}
            Err(e) => return Err(ClientError::Local(format!("reading stdin: {e}"))),
        }
        let message = trim_line(&line);
        if message.eq_ignore_ascii_case(b"exit") {
            return Ok(all_acked);
        }
        if message.is_empty() {
            continue;
        }
        let request = produce_line(message);
        loop {
            let conn = match session.conn.as_mut() {
                Some(conn) => conn,
                None => unreachable_connection()?,
            };
            match conn
                .send(&request)
                .and_then(|()| conn.read_line(&mut reply))
            {
                Ok(()) => break,
                Err(lost @ ClientError::Io { .. }) => {
                    let conn = session.reconnect(&lost, "the last line was not acknowledged")?;
                    session.conn = Some(conn);
                }
                Err(e) => return Err(e),
            }
        }
        all_acked &= reply.starts_with(b"ACK ");
        let mut response = b"Broker response: ".to_vec();
        response.extend_from_slice(&reply);
        response.push(b'\n');
        cli::out(&response);
    }
}

/// A session always holds a connection between lines; this is the error
/// if that ever stops being true.
fn unreachable_connection<T>() -> Result<T, ClientError> {
    Err(ClientError::Local("no connection to the broker".into()))
}

/// Requests sent (or about to be) and not yet answered, oldest first,
/// shared by the thread that writes them and the one that reads replies.
struct Window {
    queue: VecDeque<Arc<[u8]>>,
    bytes: usize,
    /// The current connection broke: the writer must stop.
    broken: bool,
    /// Every line of stdin is in `queue` or answered.
    input_done: bool,
}

impl Window {
    fn is_full(&self, next: usize) -> bool {
        !self.queue.is_empty()
            && (self.queue.len() >= MAX_IN_FLIGHT || self.bytes + next > MAX_IN_FLIGHT_BYTES)
    }
}

struct Shared {
    window: Mutex<Window>,
    /// Signalled when a reply frees room or the connection breaks.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Window> {
        // A poisoned lock means the other thread panicked; its data is
        // still consistent (each change is one statement), so go on.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every line, pipelined: a writer thread sends requests while this thread
/// reads the replies, so a large file does not pay one round trip per line.
/// A third thread reads stdin, so a broken connection is noticed and
/// repaired even while no input arrives.
fn piped(session: &mut Session) -> Result<bool, ClientError> {
    let (lines_tx, lines_rx) = mpsc::sync_channel(1024);
    let reader = std::thread::spawn(move || read_stdin(lines_tx));
    let shared = Arc::new(Shared {
        window: Mutex::new(Window {
            queue: VecDeque::new(),
            bytes: 0,
            broken: false,
            input_done: false,
        }),
        changed: Condvar::new(),
    });
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut lines_rx = Some(lines_rx);
    let mut all_acked = true;
    loop {
        let Some(mut conn) = session.conn.take() else {
            return unreachable_connection();
        };
        let stream = conn
            .writer
            .try_clone()
            .map_err(|e| ClientError::Local(format!("cannot clone the socket: {e}")))?;
        let resend: Vec<Arc<[u8]>> = {
            let mut window = shared.lock();
            window.broken = false;
            window.queue.iter().cloned().collect()
        };
        let Some(rx) = lines_rx.take() else {
            return unreachable_connection();
        };
        let writer = {
            let shared = shared.clone();
            std::thread::spawn(move || write_requests(stream, &shared, rx, resend))
        };
        let lost = read_replies(&mut conn, &shared, &mut out, &mut all_acked);
        let _ = out.flush();
        shared.lock().broken = true;
        shared.changed.notify_all();
        let _ = conn.writer.shutdown(Shutdown::Both);
        match writer.join() {
            Ok(rx) => lines_rx = Some(rx),
            Err(_) => return Err(ClientError::Local("the sending thread panicked".into())),
        }
        let Err(lost) = lost else {
            break;
        };
        let pending = {
            let window = shared.lock();
            format!(
                "{} lines sent were not acknowledged{}",
                window.queue.len(),
                if window.input_done {
                    ""
                } else {
                    ", and the rest of the input was not sent"
                }
            )
        };
        session.conn = Some(session.reconnect(&lost, &pending)?);
    }
    drop(lines_rx);
    match reader.join() {
        Ok(Ok(())) => Ok(all_acked),
        Ok(Err(why)) => Err(ClientError::Local(why)),
        Err(_) => Err(ClientError::Local("the stdin thread panicked".into())),
    }
}

/// Reads stdin into requests until its end (or until nobody listens).
fn read_stdin(lines: SyncSender<Vec<u8>>) -> Result<(), String> {
    let mut input = io::BufReader::with_capacity(64 * 1024, io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading stdin: {e}")),
        }
        let message = trim_line(&line);
        if !message.is_empty() && lines.send(produce_line(message)).is_err() {
            return Ok(());
        }
    }
}

/// Prints replies until every line is answered (`Ok`) or the connection
/// breaks (`Err`).
fn read_replies(
    conn: &mut Connection,
    shared: &Shared,
    out: &mut impl Write,
    all_acked: &mut bool,
) -> Result<(), ClientError> {
    let mut reply = Vec::new();
    loop {
        let done = |window: &Window| window.input_done && window.queue.is_empty();
        if let Err(e) = conn.read_line(&mut reply) {
            // The broker closes after answering a finished input.
            return if done(&shared.lock()) { Ok(()) } else { Err(e) };
        }
        let (now_empty, finished) = {
            let mut window = shared.lock();
            let Some(request) = window.queue.pop_front() else {
                return Err(ClientError::Reply {
                    addr: conn.addr.clone(),
                    request: "nothing".into(),
                    reply: String::from_utf8_lossy(&reply).into_owned(),
                });
            };
            window.bytes -= request.len();
            (window.queue.is_empty(), done(&window))
        };
        shared.changed.notify_all();
        *all_acked &= reply.starts_with(b"ACK ");
        let _ = out.write_all(b"Broker response: ");
        let _ = out.write_all(&reply);
        let _ = out.write_all(b"\n");
        if now_empty {
            let _ = out.flush();
        }
        if finished {
            return Ok(());
        }
    }
}

/// Sends again what the last connection left unanswered, then new lines,
/// keeping at most `MAX_IN_FLIGHT` unanswered. Returns the line receiver
/// for the next connection.
fn write_requests(
    stream: TcpStream,
    shared: &Shared,
    lines: Receiver<Vec<u8>>,
    resend: Vec<Arc<[u8]>>,
) -> Receiver<Vec<u8>> {
    let mut out = BufWriter::with_capacity(64 * 1024, &stream);
    for request in &resend {
        if out.write_all(request).is_err() {
            return lines;
        }
    }
    loop {
        let request = match lines.try_recv() {
            Ok(request) => request,
            Err(TryRecvError::Empty) => {
                // Nothing more waiting: what is buffered goes out now.
                if out.flush().is_err() {
                    return lines;
                }
                match wait_for_line(&lines, shared) {
                    Some(Some(request)) => request,
                    Some(None) => break,
                    None => return lines,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        // Wait for room in the window, flushing first so the broker has
        // the requests whose replies would make room.
        // From here on the request must reach the queue whatever happens:
        // it was taken from stdin, and only the queue is sent again.
        let request: Arc<[u8]> = request.into();
        let keep = |request: Arc<[u8]>| {
            let mut window = shared.lock();
            window.bytes += request.len();
            window.queue.push_back(request);
        };
        loop {
            let (broken, full) = {
                let window = shared.lock();
                (window.broken, window.is_full(request.len()))
            };
            if broken {
                keep(request);
                return lines;
            }
            if !full {
                break;
            }
            if out.flush().is_err() {
                keep(request);
                return lines;
            }
            let window = shared.lock();
            let _ = shared
                .changed
                .wait_timeout_while(window, TICK, |w| !w.broken && w.is_full(request.len()));
        }
        keep(request.clone());
        if out.write_all(&request).is_err() {
            return lines;
        }
    }
    // End of input: every line is queued. The broker answers the rest,
    // then closes.
    shared.lock().input_done = true;
    if out.flush().is_ok() {
        drop(out);
        let _ = stream.shutdown(Shutdown::Write);
    }
    lines
}

/// The next line (`Some(Some)`), the end of input (`Some(None)`), or
/// `None` once the connection broke.
fn wait_for_line(lines: &Receiver<Vec<u8>>, shared: &Shared) -> Option<Option<Vec<u8>>> {
    loop {
        match lines.recv_timeout(TICK) {
            Ok(request) => return Some(Some(request)),
            Err(RecvTimeoutError::Disconnected) => return Some(None),
            Err(RecvTimeoutError::Timeout) => {
                if shared.lock().broken {
                    return None;
                }
            }
        }
    }
}

/// The line without its `\n` (and a `\r` before it).
fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn produce_line(message: &[u8]) -> Vec<u8> {
    let mut request = Vec::with_capacity(message.len() + 9);
    request.extend_from_slice(b"PRODUCE ");
    request.extend_from_slice(message);
    request.push(b'\n');
    request
}
