//! Blocking helpers shared by the bundled clients (`producer`, `consumer`,
//! `bench`). The broker itself never blocks; its clients may.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

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

    /// Authenticates (if a token is given) and selects a topic (if given).
    pub fn setup(&mut self, token: Option<&[u8]>, topic: Option<&str>) -> Result<(), ClientError> {
        if let Some(token) = token {
            let mut request = b"AUTH ".to_vec();
            request.extend_from_slice(token);
            request.push(b'\n');
            self.send(&request)?;
            let mut line = Vec::new();
            self.read_line(&mut line)?;
            if line != b"AUTHENTICATED" {
                return Err(ClientError::Reply {
                    addr: self.addr.clone(),
                    request: "AUTH".into(),
                    reply: String::from_utf8_lossy(&line).into_owned(),
                });
            }
        }
        if let Some(topic) = topic {
            self.expect(&format!("USE {topic}"), "USING ")?;
        }
        Ok(())
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

/// Parses `END offset:<n>`.
pub fn parse_end(line: &[u8]) -> Option<u64> {
    crate::util::parse_u64(line.strip_prefix(b"END offset:")?)
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
}
