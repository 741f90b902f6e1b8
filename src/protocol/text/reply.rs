//! Reply words and fixed reply lines, in one place.

pub const ACK: &[u8] = b"ACK offset:";
pub const MESSAGE: &[u8] = b"MESSAGE offset:";
/// A message whose bytes hold a newline (a Kafka record value): its bytes
/// in standard base64, so the line protocol stays one line per message.
pub const MESSAGE64: &[u8] = b"MESSAGE64 offset:";
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
pub const TOO_MANY_TOPICS: &[u8] = b"TOO_MANY_TOPICS ";
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
USE <topic>[/<partition>]       switch to <topic> (partition 0 unless given); replies USING <topic>\n\
CREATE <topic> [<partitions>]   create a topic; replies CREATED <topic> or TOPIC_EXISTS <topic>\n\
TOPICS                          one TOPIC <name>[/<partition>] first:<n> next:<n> bytes:<n> line each, then END\n\
COMMIT <group> <offset>         store <group>'s position in this topic; replies COMMITTED <group> <offset>\n\
OFFSET <group>                  replies OFFSET <group> <offset>, the committed position (0 if none)\n\
STATS                           STAT <name> <value> lines, then END\n\
AUTH <token>                    authenticate; replies AUTHENTICATED\n\
PING                            replies PONG\n\
HELP                            this list, then END\n\
QUIT                            replies BYE and closes the connection\n\
END\n";
