//! Parsing one request line. No I/O, no allocation.

use memchr::memchr;

use super::reply;
use crate::util::{is_valid_name, parse_u64};

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
    /// Switch the connection to a topic (a validated name) and partition
    /// (`USE orders/2`; 0 if not given).
    Use(&'a [u8], u32),
    /// Create a topic, with a number of partitions if given.
    Create(&'a [u8], Option<u32>),
    Topics,
    /// Delete a topic.
    Delete(&'a [u8]),
    /// Join a group sharing the current topic, with a session timeout in
    /// milliseconds if given.
    Join(&'a [u8], Option<u64>),
    /// Keep a group membership alive, acknowledging the assignment of a
    /// generation if given; replies with the assignment.
    Heartbeat(&'a [u8], Option<i32>),
    /// Leave a group.
    Leave(&'a [u8]),
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

impl Request<'_> {
    /// Whether the answer depends on what earlier requests stored: a
    /// client that pipelines `PRODUCE x` then `CONSUME`, `COMMIT` or
    /// `TOPICS` must see its own write, so such a request waits until the
    /// connection's earlier replies are settled.
    /// Whether it may read a lot from the logs (so it waits for the next
    /// turn once this one's read budget is spent).
    pub fn reads_much(&self) -> bool {
        matches!(self, Request::Fetch { .. })
    }

    pub fn reads_stored_state(&self) -> bool {
        matches!(
            self,
            Request::Consume(_)
                | Request::Fetch { .. }
                | Request::Subscribe(_)
                | Request::Topics
                | Request::Delete(_)
                | Request::Commit { .. }
                | Request::Offset(_)
                | Request::Stats
        )
    }
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
            [target] => {
                let (name, partition) = match memchr(b'/', target) {
                    Some(i) => (&target[..i], Some(&target[i + 1..])),
                    None => (*target, None),
                };
                let name = parse_name(name)?;
                let partition = match partition {
                    None => 0,
                    Some(digits) => parse_u64(digits)
                        .and_then(|p| u32::try_from(p).ok())
                        .ok_or(ParseError::InvalidRequest(
                            "a partition is a number: USE <topic>/<partition>",
                        ))?,
                };
                Ok(Request::Use(name, partition))
            }
            _ => Err(usage!("USE <topic>[/<partition>]")),
        },
        b"CREATE" => match args {
            [name] => Ok(Request::Create(parse_name(name)?, None)),
            [name, partitions] => Ok(Request::Create(
                parse_name(name)?,
                Some(
                    parse_u64(partitions)
                        .filter(|p| (1..=1024).contains(p))
                        .ok_or(ParseError::InvalidRequest(
                            "partitions must be a number from 1 to 1024",
                        ))? as u32,
                ),
            )),
            _ => Err(usage!("CREATE <topic> [<partitions>]")),
        },
        b"DELETE" => match args {
            [name] => Ok(Request::Delete(parse_name(name)?)),
            _ => Err(usage!("DELETE <topic>")),
        },
        b"JOIN" => match args {
            [group] => Ok(Request::Join(parse_name(group)?, None)),
            [group, session] => Ok(Request::Join(
                parse_name(group)?,
                Some(
                    parse_u64(session)
                        .filter(|s| (1000..=300_000).contains(s))
                        .ok_or(ParseError::InvalidRequest(
                            "session_ms must be a number from 1000 to 300000",
                        ))?,
                ),
            )),
            _ => Err(usage!("JOIN <group> [<session_ms>]")),
        },
        b"HEARTBEAT" => match args {
            [group] => Ok(Request::Heartbeat(parse_name(group)?, None)),
            [group, generation] => Ok(Request::Heartbeat(
                parse_name(group)?,
                Some(
                    parse_u64(generation)
                        .and_then(|g| i32::try_from(g).ok())
                        .ok_or(ParseError::InvalidRequest("a generation is a number"))?,
                ),
            )),
            _ => Err(usage!("HEARTBEAT <group> [<generation>]")),
        },
        b"LEAVE" => match args {
            [group] => Ok(Request::Leave(parse_name(group)?)),
            _ => Err(usage!("LEAVE <group>")),
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

#[cfg(test)]
mod tests {
    use super::*;

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
            Ok(Request::Use(b"orders.v2_eu-1", 0))
        );
        assert_eq!(parse(b"USE orders/2"), Ok(Request::Use(b"orders", 2)));
        assert!(parse(b"USE orders/x").is_err());
        assert!(parse(b"USE orders/").is_err());
        assert!(parse(b"USE /2").is_err());
        assert_eq!(parse(b"CREATE t"), Ok(Request::Create(b"t", None)));
        assert_eq!(parse(b"CREATE t 4"), Ok(Request::Create(b"t", Some(4))));
        assert!(parse(b"CREATE t 0").is_err());
        assert!(parse(b"CREATE t 1025").is_err());
        assert_eq!(parse(b"TOPICS"), Ok(Request::Topics));
        assert_eq!(parse(b"delete t"), Ok(Request::Delete(b"t")));
        assert_eq!(parse(b"JOIN g"), Ok(Request::Join(b"g", None)));
        assert_eq!(parse(b"JOIN g 6000"), Ok(Request::Join(b"g", Some(6000))));
        assert!(parse(b"JOIN g 10").is_err());
        assert_eq!(parse(b"heartbeat g"), Ok(Request::Heartbeat(b"g", None)));
        assert_eq!(
            parse(b"HEARTBEAT g 7"),
            Ok(Request::Heartbeat(b"g", Some(7)))
        );
        assert_eq!(parse(b"LEAVE g"), Ok(Request::Leave(b"g")));
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
}
