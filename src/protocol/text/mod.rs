//! The text protocol: framing, requests, and reply words. No I/O here.
//!
//! Every request and every reply is one line ending in `\n`; a `\r` just
//! before the `\n` is dropped so `telnet` works. Command words are
//! case-insensitive. Every request line gets exactly one reply line, except
//! the multi-line replies (`FETCH`, `TOPICS`, `STATS`, `HELP`, and the
//! stream `SUBSCRIBE` starts), which end with a line starting `END`.
//! `docs/PROTOCOL.md` is the user-facing reference; this module is where
//! the words live.
//!
//! | request                          | reply                                              |
//! |----------------------------------|----------------------------------------------------|
//! | `PRODUCE <message>`              | `ACK offset:<n>`                                   |
//! | `CONSUME <offset>`               | `MESSAGE offset:<n> <message>` or `NO_MESSAGE`     |
//! | `FETCH <offset> <max> [<wait>]`  | `MESSAGE ...` lines, then `END offset:<next>`      |
//! | `SUBSCRIBE <offset>`             | `MESSAGE ...` lines as messages arrive             |
//! | `UNSUBSCRIBE`                    | `END offset:<next>`                                |
//! | `USE <topic>`                    | `USING <topic>`                                    |
//! | `CREATE <topic>`                 | `CREATED <topic>` or `TOPIC_EXISTS <topic>`        |
//! | `TOPICS`                         | `TOPIC <name> first:<n> next:<n> bytes:<n>` lines, `END` |
//! | `COMMIT <group> <offset>`        | `COMMITTED <group> <offset>`                       |
//! | `OFFSET <group>`                 | `OFFSET <group> <offset>`                          |
//! | `STATS`                          | `STAT <name> <value>` lines, then `END`            |
//! | `AUTH <token>`                   | `AUTHENTICATED`                                    |
//! | `PING`                           | `PONG`                                             |
//! | `HELP`                           | one line per command, then `END`                   |
//! | `QUIT`                           | `BYE`, then the broker closes the connection      |
//!
//! Errors: `INVALID_REQUEST <why>`, `INVALID_OFFSET <why>`,
//! `UNKNOWN_TOPIC <why>`, `MESSAGE_TOO_LARGE <limit>`,
//! `STORAGE_ERROR <why>`, `NOAUTH <why>`, `INVALID_TOKEN <why>`,
//! `TOO_MANY_CONNECTIONS`. An error never consumes an offset and, apart
//! from `TOO_MANY_CONNECTIONS` and repeated `INVALID_TOKEN`, leaves the
//! connection usable.

use memchr::memchr;

pub use crate::util::{MAX_NAME_LEN, is_valid_name, parse_u64, push_u64};

/// Reply words and fixed reply lines, in one place.
pub mod reply {
    pub const ACK: &[u8] = b"ACK offset:";
    pub const MESSAGE: &[u8] = b"MESSAGE offset:";
    pub const NO_MESSAGE: &[u8] = b"NO_MESSAGE\n";
    pub const END_OFFSET: &[u8] = b"END offset:";
    pub const USING: &[u8] = b"USING ";
    pub const CREATED: &[u8] = b"CREATED ";
    pub const TOPIC_EXISTS: &[u8] = b"TOPIC_EXISTS ";
    pub const TOPIC: &[u8] = b"TOPIC ";
    pub const COMMITTED: &[u8] = b"COMMITTED ";
    pub const OFFSET: &[u8] = b"OFFSET ";
    pub const STAT: &[u8] = b"STAT ";
    pub const AUTHENTICATED: &[u8] = b"AUTHENTICATED\n";
    pub const PONG: &[u8] = b"PONG\n";
    pub const BYE: &[u8] = b"BYE\n";
    pub const END: &[u8] = b"END\n";
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub const INVALID_OFFSET: &str = "INVALID_OFFSET";
    pub const UNKNOWN_TOPIC: &[u8] = b"UNKNOWN_TOPIC ";
    pub const OFFSET_OUT_OF_RANGE: &[u8] = b"OFFSET_OUT_OF_RANGE first:";
    pub const MESSAGE_TOO_LARGE: &[u8] = b"MESSAGE_TOO_LARGE ";
    pub const STORAGE_ERROR: &[u8] = b"STORAGE_ERROR ";
    pub const NOAUTH: &[u8] = b"NOAUTH authentication required; send AUTH <token>\n";
    pub const INVALID_TOKEN: &[u8] = b"INVALID_TOKEN wrong token\n";
    pub const INVALID_TOKEN_CLOSING: &[u8] =
        b"INVALID_TOKEN wrong token; closing after repeated failures\n";
    pub const TOO_MANY_CONNECTIONS: &[u8] = b"TOO_MANY_CONNECTIONS\n";

    /// The reply to `HELP`: one line per command, then `END`.
    pub const HELP: &[u8] = b"PRODUCE <message>               append a message; replies ACK offset:<n>\n\
CONSUME <offset>                read one message; replies MESSAGE offset:<n> <message> or NO_MESSAGE\n\
FETCH <offset> <max> [<wait_ms>] up to <max> MESSAGE lines, then END offset:<next>; waits up to <wait_ms> for the first\n\
SUBSCRIBE <offset>              stream MESSAGE lines from <offset> on, as they arrive, until UNSUBSCRIBE\n\
UNSUBSCRIBE                     stop the stream; replies END offset:<next>\n\
USE <topic>                     switch this connection to <topic>; replies USING <topic>\n\
CREATE <topic>                  create a topic; replies CREATED <topic> or TOPIC_EXISTS <topic>\n\
TOPICS                          one TOPIC <name> first:<n> next:<n> bytes:<n> line per topic, then END\n\
COMMIT <group> <offset>         store <group>'s position in this topic; replies COMMITTED <group> <offset>\n\
OFFSET <group>                  replies OFFSET <group> <offset>, the committed position (0 if none)\n\
STATS                           STAT <name> <value> lines, then END\n\
AUTH <token>                    authenticate; replies AUTHENTICATED\n\
PING                            replies PONG\n\
HELP                            this list, then END\n\
QUIT                            replies BYE and closes the connection\n\
END\n";
}

/// Most messages one `FETCH` may ask for.
pub const MAX_FETCH_COUNT: u64 = 100_000;
/// Longest wait one `FETCH` may ask for, in milliseconds.
pub const MAX_WAIT_MS: u64 = 60_000;

/// One parsed request. Borrowed from the line it came from: no allocation.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Append `message` (every byte after the first space, non-empty).
    Produce(&'a [u8]),
    /// Read the message at an offset.
    Consume(u64),
    /// Read up to `max` messages from `offset`, waiting up to `wait_ms`
    /// for the first one if there is none yet.
    Fetch {
        offset: u64,
        max: u64,
        wait_ms: Option<u64>,
    },
    /// Stream every message from an offset on.
    Subscribe(u64),
    Unsubscribe,
    /// Switch the connection to a topic (a validated name).
    Use(&'a [u8]),
    Create(&'a [u8]),
    Topics,
    /// Store a consumer group's position in the current topic.
    Commit {
        group: &'a [u8],
        offset: u64,
    },
    /// Ask for a consumer group's committed position.
    Offset(&'a [u8]),
    Stats,
    /// Authenticate with a token (every byte after the first space).
    Auth(&'a [u8]),
    Ping,
    Help,
    Quit,
}

/// Why a line is not a valid request. `Display` gives the whole reply line
/// without its newline.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum ParseError {
    /// Unknown command, wrong number of arguments, empty message, bad name.
    InvalidRequest(&'static str),
    /// An offset that is not a decimal `u64`.
    InvalidOffset(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::InvalidRequest(why) => write!(f, "{} {why}", reply::INVALID_REQUEST),
            ParseError::InvalidOffset(why) => write!(f, "{} {why}", reply::INVALID_OFFSET),
        }
    }
}

const OFFSET_RANGE: &str = "offset must be a decimal number from 0 to 18446744073709551615";
const BAD_NAME: &str = "names are 1 to 64 characters of A-Z a-z 0-9 . _ - and not . or ..";

macro_rules! usage {
    ($usage:literal) => {
        ParseError::InvalidRequest(concat!("wrong number of arguments; usage: ", $usage))
    };
}

/// Parses one line (without its `\n` or `\r\n`).
pub fn parse(line: &[u8]) -> Result<Request<'_>, ParseError> {
    let (word, rest) = match memchr(b' ', line) {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if word.is_empty() {
        return Err(if line.is_empty() {
            ParseError::InvalidRequest("empty request; try HELP")
        } else {
            ParseError::InvalidRequest("a request starts with a command word; try HELP")
        });
    }
    let mut upper = [0u8; 12];
    if word.len() > upper.len() {
        return Err(ParseError::InvalidRequest("unknown command; try HELP"));
    }
    let upper = &mut upper[..word.len()];
    upper.copy_from_slice(word);
    upper.make_ascii_uppercase();

    // Commands whose argument is the rest of the line, spaces and all.
    match &*upper {
        b"PRODUCE" => {
            return match rest {
                Some(message) if !message.is_empty() => Ok(Request::Produce(message)),
                _ => Err(ParseError::InvalidRequest(
                    "PRODUCE needs a non-empty message: PRODUCE <message>",
                )),
            };
        }
        b"AUTH" => {
            return match rest {
                Some(token) if !token.is_empty() => Ok(Request::Auth(token)),
                _ => Err(usage!("AUTH <token>")),
            };
        }
        _ => {}
    }

    // The rest take space-separated arguments; at most 3, a 4th is "extra".
    let mut args: [&[u8]; 4] = [b""; 4];
    let mut n = 0;
    for arg in rest
        .unwrap_or(b"")
        .split(|&b| b == b' ')
        .filter(|a| !a.is_empty())
    {
        if n == args.len() {
            break;
        }
        args[n] = arg;
        n += 1;
    }
    let args = &args[..n];
    let no_args = |request: Request<'static>, error: ParseError| {
        if args.is_empty() {
            Ok(request)
        } else {
            Err(error)
        }
    };
    match &*upper {
        b"CONSUME" => match args {
            [offset] => Ok(Request::Consume(parse_offset(offset)?)),
            _ => Err(usage!("CONSUME <offset>")),
        },
        b"FETCH" => match args {
            [offset, max] | [offset, max, _] => {
                let offset = parse_offset(offset)?;
                let max = parse_u64(max)
                    .filter(|m| (1..=MAX_FETCH_COUNT).contains(m))
                    .ok_or(ParseError::InvalidRequest(
                        "max must be a number from 1 to 100000",
                    ))?;
                let wait_ms = match args.get(2) {
                    None => None,
                    Some(wait) => Some(parse_u64(wait).filter(|w| *w <= MAX_WAIT_MS).ok_or(
                        ParseError::InvalidRequest("wait_ms must be a number from 0 to 60000"),
                    )?),
                };
                Ok(Request::Fetch {
                    offset,
                    max,
                    wait_ms,
                })
            }
            _ => Err(usage!("FETCH <offset> <max> [<wait_ms>]")),
        },
        b"SUBSCRIBE" => match args {
            [offset] => Ok(Request::Subscribe(parse_offset(offset)?)),
            _ => Err(usage!("SUBSCRIBE <offset>")),
        },
        b"USE" => match args {
            [name] => Ok(Request::Use(parse_name(name)?)),
            _ => Err(usage!("USE <topic>")),
        },
        b"CREATE" => match args {
            [name] => Ok(Request::Create(parse_name(name)?)),
            _ => Err(usage!("CREATE <topic>")),
        },
        b"COMMIT" => match args {
            [group, offset] => Ok(Request::Commit {
                group: parse_name(group)?,
                offset: parse_offset(offset)?,
            }),
            _ => Err(usage!("COMMIT <group> <offset>")),
        },
        b"OFFSET" => match args {
            [group] => Ok(Request::Offset(parse_name(group)?)),
            _ => Err(usage!("OFFSET <group>")),
        },
        b"UNSUBSCRIBE" => no_args(Request::Unsubscribe, usage!("UNSUBSCRIBE")),
        b"TOPICS" => no_args(Request::Topics, usage!("TOPICS")),
        b"STATS" => no_args(Request::Stats, usage!("STATS")),
        b"PING" => no_args(Request::Ping, usage!("PING")),
        b"HELP" => no_args(Request::Help, usage!("HELP")),
        b"QUIT" => no_args(Request::Quit, usage!("QUIT")),
        _ => Err(ParseError::InvalidRequest("unknown command; try HELP")),
    }
}

fn parse_offset(digits: &[u8]) -> Result<u64, ParseError> {
    parse_u64(digits).ok_or(ParseError::InvalidOffset(OFFSET_RANGE))
}

fn parse_name(name: &[u8]) -> Result<&[u8], ParseError> {
    if is_valid_name(name) {
        Ok(name)
    } else {
        Err(ParseError::InvalidRequest(BAD_NAME))
    }
}

/// A frame found by [`LineDecoder`].
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without `\n` and without a `\r` just before it.
    Line(&'a [u8]),
    /// A line longer than the limit. The decoder discards the rest of it, up
    /// to and including the next `\n`, without buffering it.
    TooLong,
}

/// Splits a byte stream into lines, buffering at most `max + 1` bytes of one
/// partial line.
///
/// Complete lines that arrive whole in one input slice are returned borrowed
/// from that slice (no copy). Only the unfinished tail of a read is copied
/// into the decoder's own buffer, so an idle connection holds no buffer.
/// Bytes already buffered have been searched for `\n` and are never scanned
/// again.
#[derive(Debug)]
pub struct LineDecoder {
    partial: Vec<u8>,
    max: usize,
    discarding: bool,
    /// `partial` holds a line handed out by the last call; clear it first.
    returned: bool,
}

impl LineDecoder {
    /// A decoder for lines of at most `max` bytes (not counting `\r\n`).
    pub fn new(max: usize) -> Self {
        LineDecoder {
            partial: Vec::new(),
            max,
            discarding: false,
            returned: false,
        }
    }

    /// Bytes held for an unfinished line.
    pub fn buffered(&self) -> usize {
        if self.returned { 0 } else { self.partial.len() }
    }

    /// Whether the decoder is skipping the rest of an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Consumes bytes from the front of `input` and returns how many it used
    /// and the frame they completed, if any. Call again with the rest of the
    /// input until it is empty; every byte is either returned in a frame,
    /// buffered, or discarded.
    pub fn decode<'a>(&'a mut self, input: &'a [u8]) -> (usize, Option<Frame<'a>>) {
        if self.returned {
            self.partial.clear();
            self.returned = false;
            if self.partial.capacity() > 64 * 1024 {
                self.partial.shrink_to(1024);
            }
        }
        let newline = memchr(b'\n', input);
        if self.discarding {
            return match newline {
                Some(i) => {
                    self.discarding = false;
                    (i + 1, None)
                }
                None => (input.len(), None),
            };
        }
        match newline {
            Some(i) => {
                let used = i + 1;
                let line_len = self.partial.len() + i;
                let ends_with_cr = if i > 0 {
                    input[i - 1] == b'\r'
                } else {
                    self.partial.last() == Some(&b'\r')
                };
                let content_len = line_len - usize::from(ends_with_cr);
                if content_len > self.max {
                    self.partial.clear();
                    return (used, Some(Frame::TooLong));
                }
                if self.partial.is_empty() {
                    return (used, Some(Frame::Line(&input[..content_len])));
                }
                self.partial.extend_from_slice(&input[..i]);
                self.partial.truncate(content_len);
                self.returned = true;
                (used, Some(Frame::Line(&self.partial)))
            }
            None => {
                // One byte of slack: the line may still end in "\r\n".
                if self.partial.len() + input.len() > self.max + 1 {
                    self.partial.clear();
                    self.discarding = true;
                    return (input.len(), Some(Frame::TooLong));
                }
                self.partial.extend_from_slice(input);
                (input.len(), None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` to a decoder and collects what it yields.
    fn decode_all(max: usize, chunks: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let mut decoder = LineDecoder::new(max);
        let mut frames = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            while !input.is_empty() {
                let (used, frame) = decoder.decode(input);
                assert!(used > 0, "decoder made no progress");
                match frame {
                    Some(Frame::Line(line)) => frames.push(Some(line.to_vec())),
                    Some(Frame::TooLong) => frames.push(None),
                    None => {}
                }
                input = &input[used..];
            }
        }
        frames
    }

    fn lines(items: &[&str]) -> Vec<Option<Vec<u8>>> {
        items.iter().map(|s| Some(s.as_bytes().to_vec())).collect()
    }

    #[test]
    fn two_commands_in_one_read() {
        assert_eq!(
            decode_all(100, &[b"PING\nPRODUCE a b\n"]),
            lines(&["PING", "PRODUCE a b"])
        );
    }

    #[test]
    fn split_at_every_byte() {
        let stream = b"PRODUCE hello world\r\nCONSUME 0\n\nPING\r\n";
        let expected = lines(&["PRODUCE hello world", "CONSUME 0", "", "PING"]);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_all(100, &[a, b]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(100, &bytes), expected);
    }

    #[test]
    fn carriage_return_only_before_newline_is_dropped() {
        assert_eq!(
            decode_all(100, &[b"a\rb\r\n", b"\r\r\n", b"x\r", b"\n"]),
            lines(&["a\rb", "\r", "x"])
        );
    }

    #[test]
    fn empty_lines() {
        assert_eq!(decode_all(10, &[b"\n\r\n"]), lines(&["", ""]));
    }

    #[test]
    fn line_at_the_limit_passes_and_one_more_byte_is_too_long() {
        assert_eq!(decode_all(5, &[b"12345\n"]), lines(&["12345"]));
        assert_eq!(decode_all(5, &[b"12345\r\n"]), lines(&["12345"]));
        assert_eq!(decode_all(5, &[b"123", b"45\r", b"\n"]), lines(&["12345"]));
        assert_eq!(
            decode_all(5, &[b"123456\nPING\n"]),
            vec![None, Some(b"PING".to_vec())]
        );
    }

    #[test]
    fn over_long_line_is_discarded_up_to_the_next_newline() {
        // Reported as soon as it is known, without buffering the rest.
        let mut decoder = LineDecoder::new(4);
        let (used, frame) = decoder.decode(b"PRODUCE");
        assert_eq!((used, frame), (7, Some(Frame::TooLong)));
        assert!(decoder.is_discarding());
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.decode(b"xxxxxxxxxxxx"), (12, None));
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.decode(b"yy\nPING\n"), (3, None));
        assert_eq!(decoder.decode(b"PING\n"), (5, Some(Frame::Line(b"PING"))));
        // Split at every byte: exactly one TooLong, then the next line.
        let stream = b"0123456789\nPING\n";
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(
                decode_all(4, &[a, b]),
                vec![None, Some(b"PING".to_vec())],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn buffer_never_exceeds_limit() {
        let mut decoder = LineDecoder::new(8);
        for _ in 0..100 {
            let _ = decoder.decode(b"abc");
            assert!(decoder.buffered() <= 9);
        }
    }

    #[test]
    fn parse_commands() {
        assert_eq!(parse(b"PRODUCE hello"), Ok(Request::Produce(b"hello")));
        assert_eq!(
            parse(b"produce  two  spaces "),
            Ok(Request::Produce(b" two  spaces "))
        );
        assert_eq!(
            parse(b"Produce \xff\x00x"),
            Ok(Request::Produce(b"\xff\x00x"))
        );
        assert_eq!(parse(b"CONSUME 0"), Ok(Request::Consume(0)));
        assert_eq!(parse(b"consume  42 "), Ok(Request::Consume(42)));
        assert_eq!(
            parse(b"CONSUME 18446744073709551615"),
            Ok(Request::Consume(u64::MAX))
        );
        assert_eq!(
            parse(b"fetch 5 10"),
            Ok(Request::Fetch {
                offset: 5,
                max: 10,
                wait_ms: None
            })
        );
        assert_eq!(
            parse(b"FETCH 0 100000 60000"),
            Ok(Request::Fetch {
                offset: 0,
                max: 100_000,
                wait_ms: Some(60_000)
            })
        );
        assert_eq!(parse(b"SUBSCRIBE 3"), Ok(Request::Subscribe(3)));
        assert_eq!(parse(b"unsubscribe"), Ok(Request::Unsubscribe));
        assert_eq!(
            parse(b"USE orders.v2_eu-1"),
            Ok(Request::Use(b"orders.v2_eu-1"))
        );
        assert_eq!(parse(b"CREATE t"), Ok(Request::Create(b"t")));
        assert_eq!(parse(b"TOPICS"), Ok(Request::Topics));
        assert_eq!(
            parse(b"COMMIT g1 17"),
            Ok(Request::Commit {
                group: b"g1",
                offset: 17
            })
        );
        assert_eq!(parse(b"OFFSET g1"), Ok(Request::Offset(b"g1")));
        assert_eq!(parse(b"STATS"), Ok(Request::Stats));
        assert_eq!(
            parse(b"AUTH s3cret with space"),
            Ok(Request::Auth(b"s3cret with space"))
        );
        assert_eq!(parse(b"ping"), Ok(Request::Ping));
        assert_eq!(parse(b"HELP"), Ok(Request::Help));
        assert_eq!(parse(b"Quit"), Ok(Request::Quit));
    }

    #[test]
    fn parse_errors() {
        let invalid = |line: &[u8]| matches!(parse(line), Err(ParseError::InvalidRequest(_)));
        for line in [
            &b"PRODUCE"[..],
            b"PRODUCE ",
            b"PRODUCEX",
            b"PRODUCEX hello",
            b"CONSUME",
            b"CONSUME ",
            b"CONSUME 1 2",
            b"FETCH 1",
            b"FETCH 1 0",
            b"FETCH 1 100001",
            b"FETCH 1 x",
            b"FETCH 1 10 60001",
            b"FETCH 1 10 -5",
            b"FETCH 1 10 100 7",
            b"SUBSCRIBE",
            b"UNSUBSCRIBE 1",
            b"USE",
            b"USE a b",
            b"COMMIT g",
            b"OFFSET",
            b"AUTH",
            b"AUTH ",
            b"PING x",
            b"",
            b" PING",
            b"FOO",
            b"AVERYLONGCOMMANDWORD",
        ] {
            assert!(invalid(line), "{:?}", String::from_utf8_lossy(line));
        }
        for offset in [
            &b"abc"[..],
            b"-1",
            b"+1",
            b"18446744073709551616",
            b"1.5",
            b"0x10",
        ] {
            for command in ["CONSUME ", "SUBSCRIBE ", "FETCH ", "COMMIT g "] {
                let mut line = command.as_bytes().to_vec();
                line.extend_from_slice(offset);
                if command == "FETCH " {
                    line.extend_from_slice(b" 10");
                }
                assert!(
                    matches!(parse(&line), Err(ParseError::InvalidOffset(_))),
                    "{:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        assert_eq!(
            parse(b"CONSUME x").unwrap_err().to_string(),
            "INVALID_OFFSET offset must be a decimal number from 0 to 18446744073709551615"
        );
        assert_eq!(
            parse(b"CONSUME").unwrap_err().to_string(),
            "INVALID_REQUEST wrong number of arguments; usage: CONSUME <offset>"
        );
    }

    #[test]
    fn names_cannot_become_paths() {
        for bad in [
            &b"."[..],
            b"..",
            b"../etc",
            b"a/b",
            b"/abs",
            b"",
            b"a\\b",
            b"caf\xc3\xa9",
            b"nul\x00",
            &[b'a'; 65],
        ] {
            assert!(!is_valid_name(bad), "{:?}", String::from_utf8_lossy(bad));
            let mut line = b"USE ".to_vec();
            line.extend_from_slice(bad);
            assert!(parse(&line).is_err());
        }
        for good in [&b"a"[..], b"...", b".hidden", b"A-Z_0.9", &[b'x'; 64]] {
            assert!(is_valid_name(good), "{:?}", String::from_utf8_lossy(good));
        }
    }

    #[test]
    fn push_u64_matches_display() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
