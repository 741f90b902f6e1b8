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

use kafka_like_broker::cli::{self, UsageError};
use kafka_like_broker::client::{self, ClientError, Connection};
use kafka_like_broker::config::DEFAULT_ADDR;

const PROMPT: &str = "What do you want to add? (type 'exit' to quit): ";

const USAGE: &str = "\
Usage: producer [--addr HOST:PORT] [--topic TOPIC] [--partition N]
                [--auth-token-file PATH] [--retry-timeout-ms N]

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
  --partition N             produce to partition N of the topic [default: 0]
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
    partition: Option<u32>,
    token_file: Option<PathBuf>,
    retry_timeout: Duration,
}

fn parse_args() -> Result<Option<Args>, UsageError> {
    use cli::Arg::{Long, Short};
    let mut args = Args {
        addr: DEFAULT_ADDR.to_string(),
        topic: None,
        partition: None,
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
            Long("partition") => args.partition = Some(parser.number(0, 1023)? as u32),
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
        conn.setup(
            self.token.as_deref(),
            self.args.topic.as_deref(),
            self.args.partition,
        )?;
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

/// Consecutive requests (`PRODUCE ...\n` lines) read from stdin together:
/// the unit the threads pass around, so a large input costs one channel
/// send and one queue entry per batch, not per line.
struct Batch {
    requests: Arc<[u8]>,
    lines: usize,
}

/// A batch in flight and how many of its lines the broker answered.
struct Sent {
    batch: Batch,
    answered: usize,
}

impl Sent {
    /// The requests not answered yet (all of them but the first
    /// `answered` lines).
    fn unanswered(&self) -> &[u8] {
        let bytes = &self.batch.requests[..];
        let start = if self.answered == 0 {
            0
        } else {
            memchr::memchr_iter(b'\n', bytes)
                .nth(self.answered - 1)
                .map_or(bytes.len(), |i| i + 1)
        };
        &bytes[start..]
    }
}

/// Requests sent (or about to be) and not yet answered, oldest first,
/// shared by the thread that writes them and the one that reads replies.
struct Window {
    queue: VecDeque<Sent>,
    /// Unanswered lines in `queue`, and the bytes of its batches.
    lines: usize,
    bytes: usize,
    /// The current connection broke: the writer must stop.
    broken: bool,
    /// Every line of stdin is in `queue` or answered.
    input_done: bool,
}

impl Window {
    fn is_full(&self, next: &Batch) -> bool {
        !self.queue.is_empty()
            && (self.lines + next.lines > MAX_IN_FLIGHT
                || self.bytes + next.requests.len() > MAX_IN_FLIGHT_BYTES)
    }

    fn push(&mut self, batch: Batch) {
        self.lines += batch.lines;
        self.bytes += batch.requests.len();
        self.queue.push_back(Sent { batch, answered: 0 });
    }

    /// Counts one reply; false if nothing was waiting for it.
    fn answer(&mut self) -> bool {
        let Some(front) = self.queue.front_mut() else {
            return false;
        };
        front.answered += 1;
        self.lines -= 1;
        if front.answered == front.batch.lines {
            self.bytes -= front.batch.requests.len();
            self.queue.pop_front();
        }
        true
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
    let (batches_tx, batches_rx) = mpsc::sync_channel(16);
    let reader = std::thread::spawn(move || read_stdin(batches_tx));
    let shared = Arc::new(Shared {
        window: Mutex::new(Window {
            queue: VecDeque::new(),
            lines: 0,
            bytes: 0,
            broken: false,
            input_done: false,
        }),
        changed: Condvar::new(),
    });
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut batches_rx = Some(batches_rx);
    let mut all_acked = true;
    loop {
        let Some(mut conn) = session.conn.take() else {
            return unreachable_connection();
        };
        let stream = conn
            .writer
            .try_clone()
            .map_err(|e| ClientError::Local(format!("cannot clone the socket: {e}")))?;
        // What the last connection left unanswered goes first.
        let resend: Vec<u8> = {
            let mut window = shared.lock();
            window.broken = false;
            window
                .queue
                .iter()
                .flat_map(Sent::unanswered)
                .copied()
                .collect()
        };
        let Some(rx) = batches_rx.take() else {
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
            Ok(rx) => batches_rx = Some(rx),
            Err(_) => return Err(ClientError::Local("the sending thread panicked".into())),
        }
        let Err(lost) = lost else {
            break;
        };
        let pending = {
            let window = shared.lock();
            format!(
                "{} lines sent were not acknowledged{}",
                window.lines,
                if window.input_done {
                    ""
                } else {
                    ", and the rest of the input was not sent"
                }
            )
        };
        session.conn = Some(session.reconnect(&lost, &pending)?);
    }
    drop(batches_rx);
    match reader.join() {
        Ok(Ok(())) => Ok(all_acked),
        Ok(Err(why)) => Err(ClientError::Local(why)),
        Err(_) => Err(ClientError::Local("the stdin thread panicked".into())),
    }
}

/// Lines per batch at most (and bytes, past which a batch is sent).
const BATCH_LINES: usize = 1024;
const BATCH_BYTES: usize = 64 * 1024;

/// Reads stdin into batches of requests until its end (or until nobody
/// listens). A batch goes as soon as no more input is waiting, so a slow
/// trickle of lines is sent line by line.
fn read_stdin(batches: SyncSender<Batch>) -> Result<(), String> {
    let mut input = io::BufReader::with_capacity(64 * 1024, io::stdin());
    let mut line = Vec::new();
    let mut requests = Vec::new();
    let mut lines = 0;
    loop {
        line.clear();
        let end = match input.read_until(b'\n', &mut line) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => return Err(format!("reading stdin: {e}")),
        };
        let message = trim_line(&line);
        if !message.is_empty() {
            requests.extend_from_slice(b"PRODUCE ");
            requests.extend_from_slice(message);
            requests.push(b'\n');
            lines += 1;
        }
        if lines > 0
            && (end
                || input.buffer().is_empty()
                || lines >= BATCH_LINES
                || requests.len() >= BATCH_BYTES)
        {
            let batch = Batch {
                requests: std::mem::take(&mut requests).into(),
                lines,
            };
            lines = 0;
            if batches.send(batch).is_err() {
                return Ok(());
            }
        }
        if end {
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
        let (room, now_empty, finished) = {
            let mut window = shared.lock();
            let batches = window.queue.len();
            if !window.answer() {
                return Err(ClientError::Reply {
                    addr: conn.addr.clone(),
                    request: "nothing".into(),
                    reply: String::from_utf8_lossy(&reply).into_owned(),
                });
            }
            (
                window.queue.len() < batches,
                window.queue.is_empty(),
                done(&window),
            )
        };
        if room {
            shared.changed.notify_all();
        }
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
/// keeping at most `MAX_IN_FLIGHT` unanswered. Returns the batch receiver
/// for the next connection.
fn write_requests(
    stream: TcpStream,
    shared: &Shared,
    batches: Receiver<Batch>,
    resend: Vec<u8>,
) -> Receiver<Batch> {
    let mut out = BufWriter::with_capacity(64 * 1024, &stream);
    if out.write_all(&resend).is_err() {
        return batches;
    }
    loop {
        let batch = match batches.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Empty) => {
                // Nothing more waiting: what is buffered goes out now.
                if out.flush().is_err() {
                    return batches;
                }
                match wait_for_batch(&batches, shared) {
                    Some(Some(batch)) => batch,
                    Some(None) => break,
                    None => return batches,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        // From here on the batch must reach the queue whatever happens:
        // it was taken from stdin, and only the queue is sent again.
        // Wait for room in the window, flushing first so the broker has
        // the requests whose replies would make room.
        loop {
            let (broken, full) = {
                let window = shared.lock();
                (window.broken, window.is_full(&batch))
            };
            if broken {
                shared.lock().push(batch);
                return batches;
            }
            if !full {
                break;
            }
            if out.flush().is_err() {
                shared.lock().push(batch);
                return batches;
            }
            let window = shared.lock();
            let _ = shared
                .changed
                .wait_timeout_while(window, TICK, |w| !w.broken && w.is_full(&batch));
        }
        let requests = batch.requests.clone();
        shared.lock().push(batch);
        if out.write_all(&requests).is_err() {
            return batches;
        }
    }
    // End of input: every line is queued. The broker answers the rest,
    // then closes.
    shared.lock().input_done = true;
    if out.flush().is_ok() {
        drop(out);
        let _ = stream.shutdown(Shutdown::Write);
    }
    batches
}

/// The next batch (`Some(Some)`), the end of input (`Some(None)`), or
/// `None` once the connection broke.
fn wait_for_batch(batches: &Receiver<Batch>, shared: &Shared) -> Option<Option<Batch>> {
    loop {
        match batches.recv_timeout(TICK) {
            Ok(batch) => return Some(Some(batch)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_resends_only_the_unanswered_lines() {
        let batch = |text: &[u8], lines| Batch {
            requests: text.into(),
            lines,
        };
        let mut window = Window {
            queue: VecDeque::new(),
            lines: 0,
            bytes: 0,
            broken: false,
            input_done: false,
        };
        window.push(batch(b"PRODUCE a\nPRODUCE b\nPRODUCE c\n", 3));
        window.push(batch(b"PRODUCE d\n", 1));
        assert!(window.answer());
        let resend: Vec<u8> = window
            .queue
            .iter()
            .flat_map(Sent::unanswered)
            .copied()
            .collect();
        assert_eq!(resend, b"PRODUCE b\nPRODUCE c\nPRODUCE d\n");
        assert_eq!((window.lines, window.queue.len()), (3, 2));
        assert!(window.answer() && window.answer());
        assert_eq!((window.lines, window.queue.len(), window.bytes), (1, 1, 10));
        assert!(window.answer());
        assert!(!window.answer(), "a reply nobody waits for");
    }
}
