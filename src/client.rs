//! Blocking helpers shared by the bundled clients (`producer`, `consumer`,
//! `bench`). The broker itself never blocks; its clients may.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// The topic a connection starts on.
pub const DEFAULT_TOPIC: &str = "default";

/// Longest reply line a client accepts (a message line plus its header).
pub const MAX_REPLY_BYTES: u64 = 64 << 20;

/// A client-side failure, with the broker address it concerns.
#[derive(Debug)]
pub enum ClientError {
    /// Could not connect, or the connection broke.
    Io {
        addr: String,
        what: &'static str,
        source: io::Error,
    },
    /// The broker answered something the client cannot go on from.
    Reply {
        addr: String,
        request: String,
        reply: String,
    },
    /// A local problem (token file, arguments).
    Local(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io { addr, what, source } => {
                write!(f, "{what} broker at {addr}: {source}")
            }
            ClientError::Reply {
                addr,
                request,
                reply,
            } => write!(f, "broker at {addr} answered {request:?} with {reply:?}"),
            ClientError::Local(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClientError {}

/// One protocol connection: a buffered reader and a writer on one socket.
pub struct Connection {
    pub addr: String,
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`), preferring IPv4 like the broker.
    pub fn open(addr: &str) -> Result<Connection, ClientError> {
        let io_err = |what, source| ClientError::Io {
            addr: addr.to_string(),
            what,
            source,
        };
        let mut addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| io_err("cannot resolve", e))?
            .collect();
        addrs.sort_by_key(|a| !a.is_ipv4());
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let reader = stream.try_clone().map_err(|e| io_err("cannot use", e))?;
                    return Ok(Connection {
                        addr: addr.to_string(),
                        reader: BufReader::with_capacity(64 * 1024, reader),
                        writer: stream,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(io_err("cannot connect to", last))
    }

    fn io_err(&self, what: &'static str, source: io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            what,
            source,
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer
            .write_all(bytes)
            .map_err(|e| self.io_err("lost connection to", e))
    }

    /// Reads one reply line into `line` (without its `\n`).
    pub fn read_line(&mut self, line: &mut Vec<u8>) -> Result<(), ClientError> {
        line.clear();
        let n = (&mut self.reader)
            .take(MAX_REPLY_BYTES)
            .read_until(b'\n', line)
            .map_err(|e| self.io_err("lost connection to", e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            let why = if n == 0 {
                "the broker closed the connection"
            } else {
                "reply cut short or too long"
            };
            return Err(self.io_err(
                "lost connection to",
                io::Error::new(io::ErrorKind::UnexpectedEof, why),
            ));
        }
        line.pop();
        Ok(())
    }

    /// Waits up to `timeout` for a line (appended to `line`, which keeps a
    /// partial line across calls). Returns whether a whole line arrived;
    /// then `line` holds it without its `\n`.
    pub fn read_line_within(
        &mut self,
        line: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<bool, ClientError> {
        let set = |s: &TcpStream, t| s.set_read_timeout(t);
        set(&self.writer, Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| self.io_err("cannot use", e))?;
        let result = (&mut self.reader)
            .take(MAX_REPLY_BYTES)
            .read_until(b'\n', line);
        set(&self.writer, None).map_err(|e| self.io_err("cannot use", e))?;
        match result {
            Ok(0) => Err(self.io_err(
                "lost connection to",
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the broker closed the connection",
                ),
            )),
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.io_err("lost connection to", e)),
        }
    }

    /// Sends one request line and returns its one-line reply.
    pub fn request(&mut self, request: &str) -> Result<String, ClientError> {
        self.send(format!("{request}\n").as_bytes())?;
        let mut line = Vec::new();
        self.read_line(&mut line)?;
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// Sends `request` and fails unless the reply starts with `expected`.
    pub fn expect(&mut self, request: &str, expected: &str) -> Result<String, ClientError> {
        let reply = self.request(request)?;
        if !reply.starts_with(expected) {
            return Err(ClientError::Reply {
                addr: self.addr.clone(),
                request: request.split(' ').next().unwrap_or("").to_string(),
                reply,
            });
        }
        Ok(reply)
    }

    /// Authenticates (if a token is given) and selects `topic` (the
    /// default one if `None`). Selecting the topic also finds out early
    /// whether the broker wants a token, before any message is typed.
    pub fn setup(
        &mut self,
        token: Option<&[u8]>,
        topic: Option<&str>,
        partition: Option<u32>,
    ) -> Result<(), ClientError> {
        let mut line = Vec::new();
        if let Some(token) = token {
            let mut request = b"AUTH ".to_vec();
            request.extend_from_slice(token);
            request.push(b'\n');
            self.send(&request)?;
            self.read_line(&mut line)?;
            if line.starts_with(b"INVALID_TOKEN") {
                return Err(ClientError::Local(format!(
                    "the broker at {} refused the token from --auth-token-file",
                    self.addr
                )));
            }
            if line != b"AUTHENTICATED" {
                return Err(self.setup_error("AUTH", &line));
            }
        }
        let topic = topic.unwrap_or(DEFAULT_TOPIC);
        match partition {
            Some(p) => self.send(format!("USE {topic}/{p}\n").as_bytes())?,
            None => self.send(format!("USE {topic}\n").as_bytes())?,
        }
        self.read_line(&mut line)?;
        if line.starts_with(b"NOAUTH") {
            return Err(ClientError::Local(format!(
                "the broker at {} requires a token: give the file that holds it \
                 with --auth-token-file PATH",
                self.addr
            )));
        }
        if !line.starts_with(b"USING ") {
            return Err(self.setup_error("USE", &line));
        }
        Ok(())
    }

    fn setup_error(&self, request: &str, line: &[u8]) -> ClientError {
        if line.starts_with(b"TOO_MANY_CONNECTIONS") {
            // The broker is full: worth trying again later, like a refused
            // connection.
            return self.io_err(
                "turned away by",
                io::Error::other("TOO_MANY_CONNECTIONS (its --max-connections)"),
            );
        }
        ClientError::Reply {
            addr: self.addr.clone(),
            request: request.into(),
            reply: String::from_utf8_lossy(line).into_owned(),
        }
    }
}

/// Reads an `AUTH` token from a file (never from the command line, where
/// `ps` would show it): the content without trailing whitespace.
pub fn read_token(path: &Path) -> Result<Vec<u8>, ClientError> {
    let mut token = std::fs::read(path)
        .map_err(|e| ClientError::Local(format!("auth token file {}: {e}", path.display())))?;
    while token.last().is_some_and(|b| b.is_ascii_whitespace()) {
        token.pop();
    }
    if token.is_empty() {
        return Err(ClientError::Local(format!(
            "auth token file {} is empty",
            path.display()
        )));
    }
    Ok(token)
}

/// Parses `MESSAGE offset:<n> <message>` into its offset and message.
pub fn parse_message(line: &[u8]) -> Option<(u64, &[u8])> {
    let rest = line.strip_prefix(b"MESSAGE offset:")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let offset = crate::util::parse_u64(&rest[..space])?;
    Some((offset, &rest[space + 1..]))
}

/// Parses `MESSAGE offset:<n> <message>`, or `MESSAGE64 offset:<n>
/// <base64>` (a message holding a newline or ending in `\r`), into its offset and bytes.
pub fn parse_any_message(line: &[u8]) -> Option<(u64, std::borrow::Cow<'_, [u8]>)> {
    if let Some((offset, message)) = parse_message(line) {
        return Some((offset, std::borrow::Cow::Borrowed(message)));
    }
    let rest = line.strip_prefix(b"MESSAGE64 offset:")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let offset = crate::util::parse_u64(&rest[..space])?;
    let bytes = crate::util::decode_base64(&rest[space + 1..])?;
    Some((offset, std::borrow::Cow::Owned(bytes)))
}

/// Parses `END offset:<n>`.
pub fn parse_end(line: &[u8]) -> Option<u64> {
    crate::util::parse_u64(line.strip_prefix(b"END offset:")?)
}

/// The port a bare host name means (`--addr somehost` is `somehost:9092`).
pub const DEFAULT_PORT: u16 = 9092;

/// Completes a `--addr` value the way a user means it: `9092` is
/// `localhost:9092`, `somehost` is `somehost:9092`, `::1` is `[::1]:9092`;
/// `HOST:PORT` and `[V6]:PORT` are kept. Port 0 is accepted only where
/// `allow_port_zero` (a broker asking for a free port). The error says what
/// is wrong with the value, for [`cli::invalid`].
pub fn complete_addr(addr: &str, allow_port_zero: bool) -> Result<String, String> {
    let port_ok = |port: &str| -> Result<(), String> {
        let lowest = u16::from(!allow_port_zero);
        match port.parse::<u16>() {
            Ok(p) if p >= lowest && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
            _ => Err(format!("the port must be a number from {lowest} to 65535")),
        }
    };
    if addr.is_empty() {
        return Err("must not be empty".into());
    }
    if addr.bytes().all(|b| b.is_ascii_digit()) {
        port_ok(addr)?;
        return Ok(format!("localhost:{addr}"));
    }
    if addr.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(format!("[{addr}]:{DEFAULT_PORT}"));
    }
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address in [ ] needs its closing ]")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        return match after {
            "" => Ok(format!("{addr}:{DEFAULT_PORT}")),
            _ => match after.strip_prefix(':') {
                Some(port) => port_ok(port).map(|()| addr.to_string()),
                None => Err("expected :PORT after ]".into()),
            },
        };
    }
    match addr.rsplit_once(':') {
        None => Ok(format!("{addr}:{DEFAULT_PORT}")),
        Some(("", _)) => Err("the host is missing (HOST:PORT)".into()),
        Some((host, _)) if host.contains(':') => {
            Err("write an IPv6 address with a port as [ADDR]:PORT".into())
        }
        Some((_, port)) => port_ok(port).map(|()| addr.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_message_and_end_lines() {
        assert_eq!(
            parse_message(b"MESSAGE offset:12 hello world"),
            Some((12, &b"hello world"[..]))
        );
        assert_eq!(parse_message(b"MESSAGE offset:0  x"), Some((0, &b" x"[..])));
        assert_eq!(parse_message(b"MESSAGE offset:x y"), None);
        assert_eq!(parse_message(b"NO_MESSAGE"), None);
        assert_eq!(parse_end(b"END offset:7"), Some(7));
        assert_eq!(parse_end(b"END"), None);
    }

    #[test]
    fn completes_addresses_as_users_mean_them() {
        let ok = |a: &str| complete_addr(a, false).unwrap();
        assert_eq!(ok("9092"), "localhost:9092");
        assert_eq!(ok("19092"), "localhost:19092");
        assert_eq!(ok("somehost"), "somehost:9092");
        assert_eq!(ok("127.0.0.1"), "127.0.0.1:9092");
        assert_eq!(ok("somehost:1234"), "somehost:1234");
        assert_eq!(ok("::1"), "[::1]:9092");
        assert_eq!(ok("[::1]"), "[::1]:9092");
        assert_eq!(ok("[::1]:7"), "[::1]:7");
        assert_eq!(complete_addr("0", true).unwrap(), "localhost:0");
        assert_eq!(complete_addr("127.0.0.1:0", true).unwrap(), "127.0.0.1:0");
        for bad in [
            "", "0", "99999", "host:", "host:x", ":9092", "[::1", "[x]:1", "host:0", "a:b:c",
        ] {
            assert!(complete_addr(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cli_errors_name_the_flag_and_the_value() {
        use crate::cli::{self, Arg, Parser};
        let first_error = |args: &[&str]| -> String {
            let mut p = Parser::from_args(args.iter().copied());
            loop {
                let result = match p.next() {
                    Ok(Some(Arg::Long("n"))) => p.number(1, 10).map(drop),
                    Ok(Some(Arg::Long("big"))) => p.number(1, u64::MAX).map(drop),
                    Ok(Some(Arg::Long("s"))) => p.value().map(drop),
                    Ok(Some(Arg::Long("f"))) => p.positive_float(24.0, "hours").map(drop),
                    Ok(Some(Arg::Long("c"))) => p.choice(&["a", "b", "c"]).map(drop),
                    Ok(Some(Arg::Long("flag"))) => Ok(()),
                    Ok(Some(arg)) => Err(cli::unexpected(arg)),
                    Ok(None) => return "no error".into(),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    return e.to_string();
                }
            }
        };
        assert_eq!(
            first_error(&["--n", "0"]),
            r#"--n: invalid value "0": must be from 1 to 10"#
        );
        assert_eq!(
            first_error(&["--n=x"]),
            r#"--n: invalid value "x": not a whole number (must be from 1 to 10)"#
        );
        assert_eq!(
            first_error(&["--n", "+5"]),
            r#"--n: invalid value "+5": not a whole number (must be from 1 to 10)"#
        );
        assert_eq!(
            first_error(&["--big", "0"]),
            r#"--big: invalid value "0": must be at least 1"#
        );
        assert_eq!(
            first_error(&["--big", "99999999999999999999"]),
            r#"--big: invalid value "99999999999999999999": must be at least 1"#
        );
        assert_eq!(first_error(&["--n"]), "--n: missing value");
        assert_eq!(
            first_error(&["--s", "--flag", "x"]),
            "--s: missing value (found the option --flag instead)"
        );
        assert_eq!(first_error(&["--s=--flag"]), "no error");
        assert_eq!(first_error(&["--s", "-"]), "no error");
        assert_eq!(
            first_error(&["--s", ""]),
            r#"--s: invalid value "": must not be empty"#
        );
        assert_eq!(
            first_error(&["--f", "1e16"]),
            r#"--f: invalid value "1e16": must be more than 0 and at most 24 hours"#
        );
        assert_eq!(
            first_error(&["--f", "NaN"]),
            r#"--f: invalid value "NaN": must be more than 0 and at most 24 hours"#
        );
        assert_eq!(
            first_error(&["--c", "d"]),
            r#"--c: invalid value "d": must be a, b or c"#
        );
        assert_eq!(first_error(&["--what"]), "unknown option --what");
        assert_eq!(first_error(&["stray"]), r#"unexpected argument "stray""#);
        assert_eq!(
            first_error(&["--flag=1"]),
            r#"--flag: takes no value (got "1")"#
        );
    }
}
