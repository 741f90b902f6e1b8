//! `producer`: sends lines from stdin as messages. See `producer --help`.

use std::io::{self, BufRead, BufWriter, IsTerminal, Write};
use std::net::Shutdown;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kafka_like_broker::client::{self, ClientError, Connection};
use kafka_like_broker::config::DEFAULT_ADDR;

const PROMPT: &str = "What do you want to add? (type 'exit' to quit): ";

const USAGE: &str = "\
Usage: producer [--addr HOST:PORT] [--topic TOPIC] [--auth-token-file PATH]

Sends each line of stdin to the broker as a message and prints the
broker's response.

At a terminal it prompts for each message; 'exit' (any case) quits.
With stdin piped it sends every non-empty line without prompts ('exit' is
then just data), keeping many in flight, and prints one
'Broker response: ...' line per line sent. Empty lines are skipped.

Exits 0 if every message was acknowledged, 1 otherwise.

Options:
  --addr HOST:PORT          broker address [default: localhost:9092]
  --topic TOPIC             produce to TOPIC [default: the default topic]
  --auth-token-file PATH    authenticate with the token in PATH
  -h, --help                print this help
  -V, --version             print the version
";

struct Args {
    addr: String,
    topic: Option<String>,
    token_file: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        addr: DEFAULT_ADDR.to_string(),
        topic: None,
        token_file: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => args.addr = parser.value()?.string()?,
            Long("topic") => args.topic = Some(parser.value()?.string()?),
            Long("auth-token-file") => args.token_file = Some(parser.value()?.into()),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            Short('V') | Long("version") => {
                println!("producer {}", env!("CARGO_PKG_VERSION"));
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
            eprintln!("producer: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("producer: {e}");
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
    let mut conn = Connection::open(&args.addr)?;
    conn.setup(token.as_deref(), args.topic.as_deref())?;
    if io::stdin().is_terminal() {
        interactive(&mut conn)
    } else {
        piped(conn)
    }
}

/// One message at a time, as the original project did.
fn interactive(conn: &mut Connection) -> Result<bool, ClientError> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    let mut reply = Vec::new();
    let mut all_acked = true;
    loop {
        print!("{PROMPT}");
        let _ = io::stdout().flush();
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
        conn.send(&produce_line(message))?;
        conn.read_line(&mut reply)?;
        all_acked &= reply.starts_with(b"ACK ");
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"Broker response: ");
        let _ = out.write_all(&reply);
        let _ = out.write_all(b"\n");
    }
}

/// Every line, pipelined: a thread writes requests while this one reads
/// the replies, so a large file does not pay one round trip per line. The
/// broker stops reading when its replies back up, so what is in flight
/// stays bounded by the socket buffers.
fn piped(mut conn: Connection) -> Result<bool, ClientError> {
    let sent = Arc::new(AtomicU64::new(0));
    let mut writer = conn
        .writer
        .try_clone()
        .map_err(|e| ClientError::Local(format!("cannot clone the socket: {e}")))?;
    let sender = {
        let sent = sent.clone();
        std::thread::spawn(move || -> Result<bool, String> {
            // Our own buffer, so we can tell when no more input is waiting
            // and the requests so far should go out.
            let mut input = io::BufReader::with_capacity(64 * 1024, io::stdin());
            let mut out = BufWriter::with_capacity(64 * 1024, &mut writer);
            let mut line = Vec::new();
            loop {
                line.clear();
                match input.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(format!("reading stdin: {e}")),
                }
                let message = trim_line(&line);
                if message.is_empty() {
                    continue;
                }
                if out.write_all(&produce_line(message)).is_err() {
                    // The reader reports the broken connection.
                    return Ok(false);
                }
                sent.fetch_add(1, Ordering::Release);
                if input.buffer().is_empty() && out.flush().is_err() {
                    return Ok(false);
                }
            }
            let _ = out.flush();
            drop(out);
            // End of input: the broker answers the rest, then closes.
            let _ = writer.shutdown(Shutdown::Write);
            Ok(true)
        })
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut reply = Vec::new();
    let mut received = 0u64;
    let mut all_acked = true;
    let result = loop {
        if received == sent.load(Ordering::Acquire) {
            let _ = out.flush();
        }
        match conn.read_line(&mut reply) {
            Ok(()) => {}
            Err(e) => break Err(e),
        }
        received += 1;
        all_acked &= reply.starts_with(b"ACK ");
        let _ = out.write_all(b"Broker response: ");
        let _ = out.write_all(&reply);
        let _ = out.write_all(b"\n");
    };
    let _ = out.flush();
    let sender_result = sender.join();
    let sent = sent.load(Ordering::Acquire);
    let input_done = match sender_result {
        Ok(Ok(done)) => done,
        Ok(Err(why)) => return Err(ClientError::Local(why)),
        Err(_) => return Err(ClientError::Local("the sending thread panicked".into())),
    };
    match result {
        // The broker closed after the last reply to a finished input.
        Err(_) if input_done && received == sent => Ok(all_acked),
        Err(e) => Err(ClientError::Local(format!(
            "{e}; {} of {sent} messages sent were not acknowledged{}",
            sent - received,
            if input_done {
                ""
            } else {
                ", and the rest of the input was not sent"
            }
        ))),
        Ok(()) => Ok(all_acked),
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
