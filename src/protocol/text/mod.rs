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

pub mod decoder;
pub mod reply;
pub mod request;
pub mod session;

pub use crate::util::{MAX_NAME_LEN, is_valid_name, parse_u64, push_u64};
pub use decoder::{Frame, LineDecoder};
pub use request::{MAX_FETCH_COUNT, MAX_WAIT_MS, ParseError, Request, parse};
pub use session::TextSession;
