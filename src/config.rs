//! Defaults and limits, in one place.

use std::path::PathBuf;
use std::time::Duration;

/// Where the broker listens unless told otherwise (loopback only).
pub const DEFAULT_ADDR: &str = "localhost:9092";
/// The default topic's log file, as the original project named it.
pub const LOG_FILE: &str = "kafka_log.txt";
/// Longest request line accepted, `\r\n` not counted.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Pending output per connection above which the broker stops reading that
/// connection's requests until the client reads its replies.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

pub const DEFAULT_MAX_TOPICS: usize = 1024;
/// A subscriber's output is topped up from the log to this many bytes.
pub const SUBSCRIPTION_WINDOW: usize = 256 * 1024;

/// Active segments roll at this size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(1000);

/// When an acknowledged message reaches stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `ACK` (and visibility to readers) only after `fdatasync`; one sync
    /// covers everything written in a loop turn (group commit).
    Always,
    /// `ACK` after `write`; `fdatasync` at most this often (Redis's
    /// `everysec`).
    Interval(Duration),
    /// `ACK` after `write`; the kernel writes back when it likes.
    Never,
}

/// Bytes read from a socket at once (one buffer shared by all connections).
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per loop turn before others get their turn.
pub const READS_PER_TURN: usize = 16;
/// Staged log bytes that force a write before the end of the loop turn.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// How the broker is run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST:PORT` to listen on; port 0 picks a free port.
    pub addr: String,
    /// Directory holding the log files.
    pub data_dir: PathBuf,
    pub max_line_bytes: usize,
    pub max_connections: usize,
    pub max_output_bytes: usize,
    /// `USE` of an unknown topic creates it.
    pub auto_create_topics: bool,
    pub max_topics: usize,
    /// A file holding the token clients must send with `AUTH`.
    pub auth_token_file: Option<PathBuf>,
    pub fsync: FsyncPolicy,
    pub segment_bytes: u64,
    /// Drop the oldest segments while a topic is bigger than this.
    pub retention_bytes: Option<u64>,
    /// Drop segments last written longer ago than this.
    pub retention_hours: Option<f64>,
    /// Start even if rolled segments fail their checks, without them.
    pub skip_corrupt_segments: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR.to_string(),
            data_dir: PathBuf::from("."),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            auto_create_topics: true,
            max_topics: DEFAULT_MAX_TOPICS,
            auth_token_file: None,
            fsync: FsyncPolicy::Interval(DEFAULT_FSYNC_INTERVAL),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention_bytes: None,
            retention_hours: None,
            skip_corrupt_segments: false,
        }
    }
}
