//! Defaults and limits, in one place.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{self, UsageError};

/// Where the broker listens unless told otherwise (loopback only).
pub const DEFAULT_ADDR: &str = "localhost:9092";
/// The default topic's log file, as the original project named it.
pub const LOG_FILE: &str = "kafka_log.txt";
/// Longest request line accepted, `\r\n` not counted.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Log files (segment descriptors) kept open at once, all partitions
/// together; see `storage::files`.
pub const DEFAULT_MAX_OPEN_FILES: usize = 1024;
/// Pending output per connection above which the broker stops reading that
/// connection's requests until the client reads its replies.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

pub const DEFAULT_MAX_TOPICS: usize = 1024;
/// A subscriber's output is topped up from the log to this many bytes.
pub const SUBSCRIPTION_WINDOW: usize = 256 * 1024;

/// Largest Kafka request frame (Kafka's socket.request.max.bytes is 100
/// MiB; clients send about 1 MiB at most by default).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 << 20;
/// Largest record batch in a produce: Kafka's message.max.bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Most consumer groups: each costs a few hundred bytes plus its
/// commits.
pub const DEFAULT_MAX_GROUPS: usize = 10_000;
/// How long a request may take to arrive once its first byte has. A
/// person types a line before pressing Enter (nc and telnet send it
/// whole) and programs send requests in one go; the longest legitimate
/// case is a large Kafka produce over a slow link, which Kafka clients
/// themselves give up on after 30 s (`request.timeout.ms`). A client
/// dribbling bytes to hold a connection (slowloris) is cut off.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
/// Message bytes one loop turn reads from logs for clients before large
/// reads wait for the next turn (see `Broker::over_read_budget`). About a
/// millisecond of work: a fresh request waits at most a turn or two
/// behind a hundred busy readers, while one reader still gets a full
/// `--max-output-bytes` reply per turn.
pub const READ_BUDGET_PER_TURN: usize = 2 << 20;
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
    /// Log files open at once (idle ones close, least recently used
    /// first); lowered at start if the open file limit is short.
    pub max_open_files: usize,
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
    /// `HOST:PORT` Metadata gives Kafka clients (default: the listener's
    /// IP and port).
    pub advertise: Option<String>,
    /// A second listener for Kafka clients only.
    pub kafka_addr: Option<String>,
    /// Where to serve Prometheus metrics (`GET /metrics`).
    pub metrics_addr: Option<String>,
    /// Partitions of an auto-created topic.
    pub partitions: u32,
    /// Largest Kafka request frame accepted.
    pub max_request_bytes: usize,
    /// Largest record batch accepted in a Kafka produce.
    pub max_message_bytes: usize,
    /// Most consumer groups (coordinated, or with commits).
    pub max_groups: usize,
    /// How long a new Kafka group's first rebalance waits for members.
    pub group_initial_delay_ms: u64,
    /// An unfinished request (text line or Kafka frame) older than this
    /// closes its connection; `None`: never.
    pub request_timeout: Option<Duration>,
    /// A connection with no traffic for this long is closed (not while it
    /// waits by design: a parked FETCH, a subscription); `None`: never.
    pub idle_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR.to_string(),
            data_dir: PathBuf::from("."),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            auto_create_topics: true,
            max_topics: DEFAULT_MAX_TOPICS,
            auth_token_file: None,
            fsync: FsyncPolicy::Interval(DEFAULT_FSYNC_INTERVAL),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention_bytes: None,
            retention_hours: None,
            skip_corrupt_segments: false,
            advertise: None,
            kafka_addr: None,
            metrics_addr: None,
            partitions: 1,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_groups: DEFAULT_MAX_GROUPS,
            group_initial_delay_ms: 3000,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            idle_timeout: None,
        }
    }
}

/// `broker --help`.
pub const USAGE: &str = "\
Usage: broker [OPTIONS]

Serves a Kafka-like message log to Kafka clients and over a line protocol,
both on one port (try: nc localhost 9092, or kcat -b localhost:9092 -L).

Options:
  --addr HOST:PORT          listen address [default: localhost:9092]; a bare
                            port means localhost:PORT, a bare host HOST:9092
                            (port 0 picks a free port; the real one is printed)
  --data-dir DIR            where kafka_log.txt lives [default: .]
  --max-line-bytes N        longest request line accepted, up to 1 GiB
                            [default: 1048576]
  --max-connections N       clients served at once, up to 1048576; when
                            full, a client stuck in a request or idle for
                            a second makes room for a new one [default: 4096]
  --max-open-files N        log files kept open at once, all partitions
                            together, 16 to 1048576; idle ones close, least
                            recently used first [default: 1024]. With
                            --max-connections, the open file limit (ulimit
                            -n) is raised to fit both if it can; if not,
                            both are lowered, with a warning
  --max-output-bytes N      pending replies per client before its requests
                            stop being read; also the most message bytes
                            in one FETCH reply, up to 1 GiB [default: 1048576]
  --no-auto-create          USE of an unknown topic is an error
                            (UNKNOWN_TOPIC); topics are then made with CREATE
  --max-topics N            most topics, the default one included, up to
                            1048576 [default: 1024]
  --max-groups N            most consumer groups coordinated at once, and
                            most group names with committed offsets, up to
                            1048576 each [default: 10000]
  --group-initial-delay-ms N
                            a new Kafka group's first rebalance waits this
                            long for more members, as Kafka's
                            group.initial.rebalance.delay.ms [default: 3000]
  --request-timeout-ms N    close a client whose request is still unfinished
                            N ms after its first byte; 0 = never
                            [default: 30000]
  --idle-timeout-secs N     close a client idle for N seconds (not while a
                            FETCH or SUBSCRIBE waits); 0 = never [default: 0]
  --auth-token-file PATH    require AUTH <token> with the token in PATH (one
                            line); never pass a token on the command line.
                            Kafka clients use SASL/PLAIN, password = token
  --metrics-addr HOST:PORT  serve Prometheus metrics over HTTP on
                            http://HOST:PORT/metrics [default: off]

Kafka clients:
  --advertise HOST:PORT     the address Metadata gives Kafka clients
                            [default: the address listened on, as an IP]
  --kafka-addr HOST:PORT    also listen here, for Kafka clients only
  --partitions N            partitions of an auto-created topic, 1 to 1024
                            [default: 1]
  --max-request-bytes N     largest Kafka request accepted, up to 1 GiB
                            [default: 8388608]
  --max-message-bytes N     largest record batch accepted in a Kafka
                            produce (MESSAGE_TOO_LARGE above), up to 1 GiB
                            [default: 1048588]

Durability and storage:
  --fsync always|interval|never
                            always: ACK only after fdatasync (group commit:
                            a sync covers every message written while the
                            one before ran, up to 3 in flight per log);
                            interval: ACK after write, fdatasync every
                            --fsync-interval-ms; never: leave it to the OS
                            [default: interval]
  --fsync-interval-ms N     1 to 86400000 (a day) [default: 1000]
  --segment-bytes N         roll a topic's active log file at N bytes, up to
                            1 GiB [default: 67108864]
  --retention-bytes N       delete a topic's oldest segments while it holds
                            more than N bytes [default: keep everything]
  --retention-hours H       delete segments last written more than H hours
                            ago; fractions allowed, at most 876000 (100
                            years) [default: keep everything]
  --skip-corrupt-segments   start even if old segments fail their checks,
                            without them (and everything older)
  -h, --help                print this help
  -V, --version             print the version

Logging goes to stderr; set RUST_LOG=debug for per-connection events.
";

pub const MAX_BYTES_LIMIT: usize = 1 << 30;
pub const MAX_CONNECTIONS: usize = 1 << 20;
pub const MAX_TOPICS: usize = 1 << 20;
pub const MAX_FSYNC_INTERVAL_MS: u64 = 24 * 3600 * 1000;
pub const MAX_SEGMENT_BYTES: u64 = crate::storage::index::MAX_SEGMENT_BYTES;
pub const MAX_RETENTION_HOURS: f64 = 876_000.0;

/// `--metrics-addr`: as `--addr`, but the port must be given (a bare
/// port means `localhost:PORT`): Kafka's port is no default for it.
fn metrics_addr(addr: &str) -> Result<String, String> {
    let full = crate::client::complete_addr(addr, true)?;
    if addr.bytes().all(|b| b.is_ascii_digit()) || full == addr {
        Ok(full)
    } else {
        Err("give a port: HOST:PORT or PORT".into())
    }
}

/// Parses the broker's command line (`args` without the program name).
/// `Ok(None)`: help or version was printed, nothing to run.
pub fn parse_args<I, S>(args: I) -> Result<Option<Config>, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    use cli::Arg::{Long, Short};
    let mut config = Config::default();
    let mut fsync = "interval";
    let mut interval_ms = 1000;
    let mut parser = cli::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => {
                let addr = parser.value()?;
                config.addr = crate::client::complete_addr(&addr, true)
                    .map_err(|why| cli::invalid("--addr", &addr, why))?;
            }
            Long("data-dir") => config.data_dir = parser.path()?,
            Long("max-line-bytes") => config.max_line_bytes = parser.count(1, MAX_BYTES_LIMIT)?,
            Long("max-connections") => config.max_connections = parser.count(1, MAX_CONNECTIONS)?,
            Long("max-open-files") => {
                config.max_open_files =
                    parser.count(crate::storage::files::MIN_OPEN_FILES, MAX_CONNECTIONS)?
            }
            Long("max-output-bytes") => {
                config.max_output_bytes = parser.count(1, MAX_BYTES_LIMIT)?
            }
            Long("no-auto-create") => config.auto_create_topics = false,
            Long("fsync") => fsync = parser.choice(&["always", "interval", "never"])?,
            Long("fsync-interval-ms") => interval_ms = parser.number(1, MAX_FSYNC_INTERVAL_MS)?,
            Long("segment-bytes") => config.segment_bytes = parser.number(1, MAX_SEGMENT_BYTES)?,
            Long("retention-bytes") => config.retention_bytes = Some(parser.number(1, u64::MAX)?),
            Long("retention-hours") => {
                config.retention_hours = Some(parser.positive_float(MAX_RETENTION_HOURS, "hours")?)
            }
            Long("skip-corrupt-segments") => config.skip_corrupt_segments = true,
            Long("max-topics") => config.max_topics = parser.count(1, MAX_TOPICS)?,
            Long("auth-token-file") => config.auth_token_file = Some(parser.path()?),
            Long("advertise") => {
                let addr = parser.value()?;
                config.advertise = Some(
                    crate::client::complete_addr(&addr, false)
                        .map_err(|why| cli::invalid("--advertise", &addr, why))?,
                );
            }
            Long("kafka-addr") => {
                let addr = parser.value()?;
                config.kafka_addr = Some(
                    crate::client::complete_addr(&addr, true)
                        .map_err(|why| cli::invalid("--kafka-addr", &addr, why))?,
                );
            }
            Long("metrics-addr") => {
                let addr = parser.value()?;
                config.metrics_addr = Some(
                    metrics_addr(&addr)
                        .map_err(|why| cli::invalid("--metrics-addr", &addr, why))?,
                );
            }
            Long("partitions") => config.partitions = parser.number(1, 1024)? as u32,
            Long("max-groups") => config.max_groups = parser.count(1, MAX_TOPICS)?,
            Long("group-initial-delay-ms") => {
                config.group_initial_delay_ms = parser.number(0, 300_000)?
            }
            Long("max-request-bytes") => {
                config.max_request_bytes = parser.count(64, MAX_BYTES_LIMIT)?
            }
            Long("max-message-bytes") => {
                config.max_message_bytes = parser.count(64, MAX_BYTES_LIMIT)?
            }
            Long("request-timeout-ms") => {
                let ms = parser.number(0, 3_600_000)?;
                config.request_timeout = (ms > 0).then(|| Duration::from_millis(ms));
            }
            Long("idle-timeout-secs") => {
                let secs = parser.number(0, 86_400 * 365)?;
                config.idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            Short('h') | Long("help") => {
                cli::out(USAGE);
                return Ok(None);
            }
            Short('V') | Long("version") => {
                cli::out(format!("broker {}\n", env!("CARGO_PKG_VERSION")));
                return Ok(None);
            }
            _ => return Err(cli::unexpected(arg)),
        }
    }
    config.fsync = match fsync {
        "always" => FsyncPolicy::Always,
        "never" => FsyncPolicy::Never,
        _ => FsyncPolicy::Interval(Duration::from_millis(interval_ms)),
    };
    Ok(Some(config))
}
