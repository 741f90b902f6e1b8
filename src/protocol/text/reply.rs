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
pub const TOO_MANY_GROUPS: &[u8] = b"TOO_MANY_GROUPS ";
pub const DELETED: &[u8] = b"DELETED ";
pub const JOINED: &[u8] = b"JOINED ";
pub const ASSIGNED: &[u8] = b"ASSIGNED ";
pub const ALIVE: &[u8] = b"ALIVE ";
pub const LEFT: &[u8] = b"LEFT ";
pub const UNKNOWN_MEMBER: &[u8] = b"UNKNOWN_MEMBER ";
pub const GROUP_PROTOCOL_MISMATCH: &[u8] = b"GROUP_PROTOCOL_MISMATCH ";
pub const GROUP_FULL: &[u8] = b"GROUP_FULL ";
pub const NOAUTH: &[u8] = b"NOAUTH authentication required; send AUTH <token>\n";
pub const INVALID_TOKEN: &[u8] = b"INVALID_TOKEN wrong token\n";
pub const INVALID_TOKEN_CLOSING: &[u8] =
    b"INVALID_TOKEN wrong token; closing after repeated failures\n";
pub const TOO_MANY_CONNECTIONS: &[u8] = b"TOO_MANY_CONNECTIONS\n";
pub const EVICTED: &[u8] =
    b"TOO_MANY_CONNECTIONS the broker is full; closing this idle connection for a new client\n";
pub const REQUEST_TIMEOUT: &[u8] = b"REQUEST_TIMEOUT ";
pub const IDLE_TIMEOUT: &[u8] = b"IDLE_TIMEOUT ";

/// The reply to `HELP`: one line per command (80 columns at most), then
/// `END`.
pub const HELP: &[u8] = b"PRODUCE <message>            append; ACK offset:<n>\n\
CONSUME <offset>             MESSAGE offset:<n> <message>, or NO_MESSAGE\n\
FETCH <offset> <max> [<ms>]  up to <max> MESSAGE lines, END offset:<next>;\n\
                             waits up to <ms> for the first\n\
SUBSCRIBE <offset>           stream MESSAGE lines as they arrive\n\
UNSUBSCRIBE                  stop the stream; END offset:<next>\n\
USE <topic>[/<partition>]    switch topic (partition 0 unless given); USING\n\
CREATE <topic> [<parts>]     CREATED <topic>, or TOPIC_EXISTS <topic>\n\
DELETE <topic>               delete a topic and its data; DELETED <topic>\n\
TOPICS                       TOPIC <name> first:<n> next:<n> bytes:<n> lines\n\
COMMIT <group> <offset>      store <group>'s position here; COMMITTED\n\
OFFSET <group>               OFFSET <group> <offset> (0 if none)\n\
JOIN <group> [<session_ms>]  share this topic with <group>: JOINED, then\n\
                             ASSIGNED <group> generation:<g> partitions:<p,..>\n\
HEARTBEAT <group> [<gen>]    stay in <group> (ack <gen>); ALIVE <group> ...\n\
LEAVE <group>                LEFT <group>\n\
STATS                        STAT <name> <value> lines\n\
AUTH <token>                 AUTHENTICATED\n\
PING                         PONG\n\
HELP                         this list\n\
QUIT                         BYE, then the connection closes\n\
END\n";
