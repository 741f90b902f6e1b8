//! `broker`: serves the log over TCP. See `broker --help`.

use std::process::ExitCode;
use std::time::Duration;

use kafka_like_broker::client::cli::{self, UsageError};
use kafka_like_broker::config::FsyncPolicy;
use kafka_like_broker::{Config, Server};

const USAGE: &str = "\
Usage: broker [OPTIONS]

Serves a Kafka-like message log over a line protocol (try: nc localhost 9092).

Options:
  --addr HOST:PORT          listen address [default: localhost:9092]; a bare
                            port means localhost:PORT, a bare host HOST:9092
                            (port 0 picks a free port; the real one is printed)
  --data-dir DIR            where kafka_log.txt lives [default: .]
  --max-line-bytes N        longest request line accepted, up to 1 GiB
                            [default: 1048576]
  --max-connections N       clients served at once, up to 1048576
                            [default: 4096]
  --max-output-bytes N      pending replies per client before its requests
                            stop being read; also the most message bytes
                            in one FETCH reply, up to 1 GiB [default: 1048576]
  --no-auto-create          USE of an unknown topic is an error
                            (UNKNOWN_TOPIC); topics are then made with CREATE
  --max-topics N            most topics, the default one included, up to
                            1048576 [default: 1024]
  --auth-token-file PATH    require AUTH <token> with the token in PATH (one
                            line); never pass a token on the command line

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
                            1 TiB [default: 67108864]
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

/// Upper bounds: beyond these a value is a typo, and some would overflow
/// a `Duration` or an `Instant` deep inside the broker.
const MAX_BYTES_LIMIT: usize = 1 << 30;
const MAX_CONNECTIONS: usize = 1 << 20;
const MAX_TOPICS: usize = 1 << 20;
const MAX_FSYNC_INTERVAL_MS: u64 = 24 * 3600 * 1000;
const MAX_SEGMENT_BYTES: u64 = 1 << 40;
const MAX_RETENTION_HOURS: f64 = 876_000.0;

fn parse_args() -> Result<Option<Config>, UsageError> {
    use cli::Arg::{Long, Short};
    let mut config = Config::default();
    let mut fsync = "interval";
    let mut interval_ms = 1000;
    let mut parser = cli::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => {
                let addr = parser.value()?;
                config.addr = kafka_like_broker::client::complete_addr(&addr, true)
                    .map_err(|why| cli::invalid("--addr", &addr, why))?;
            }
            Long("data-dir") => config.data_dir = parser.path()?,
            Long("max-line-bytes") => config.max_line_bytes = parser.count(1, MAX_BYTES_LIMIT)?,
            Long("max-connections") => config.max_connections = parser.count(1, MAX_CONNECTIONS)?,
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

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match parse_args() {
        Ok(Some(config)) => config,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => return cli::usage_error("broker", &e),
    };
    let broker = match Server::bind(config) {
        Ok(broker) => broker,
        Err(e) => {
            cli::err(format!("broker: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    // The one line on stdout: scripts and tests read the real port here.
    // A closed stdout is ignored: the broker serves on.
    cli::out(format!("Broker started on {}\n", broker.display_addr()));
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::err(format!("broker: {e}\n"));
            ExitCode::FAILURE
        }
    }
}
