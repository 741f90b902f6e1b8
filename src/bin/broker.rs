//! `broker`: serves the log over TCP. See `broker --help`.

use std::process::ExitCode;

use std::time::Duration;

use kafka_like_broker::config::FsyncPolicy;
use kafka_like_broker::{Config, Server};

const USAGE: &str = "\
Usage: broker [OPTIONS]

Serves a Kafka-like message log over a line protocol (try: nc localhost 9092).

Options:
  --addr HOST:PORT          listen address [default: localhost:9092]
                            (port 0 picks a free port; the real one is printed)
  --data-dir DIR            where kafka_log.txt lives [default: .]
  --max-line-bytes N        longest request line accepted [default: 1048576]
  --max-connections N       clients served at once [default: 4096]
  --max-output-bytes N      pending replies per client before its requests
                            stop being read; also the most message bytes
                            in one FETCH reply [default: 1048576]
  --no-auto-create          USE of an unknown topic is an error (UNKNOWN_TOPIC);
                            topics are then made with CREATE
  --max-topics N            most topics, the default one included [default: 1024]
  --auth-token-file PATH    require AUTH <token> with the token in PATH (one
                            line); never pass a token on the command line

Durability and storage:
  --fsync always|interval|never
                            always: ACK only after fdatasync (group commit,
                            one sync per loop turn); interval: ACK after
                            write, fdatasync every --fsync-interval-ms;
                            never: leave it to the OS [default: interval]
  --fsync-interval-ms N     [default: 1000]
  --segment-bytes N         roll a topic's active log file at N bytes
                            [default: 67108864]
  --retention-bytes N       delete a topic's oldest segments while it holds
                            more than N bytes [default: keep everything]
  --retention-hours H       delete segments last written more than H hours
                            ago (fractions allowed) [default: keep everything]
  --skip-corrupt-segments   start even if old segments fail their checks,
                            without them (and everything older)
  -h, --help                print this help
  -V, --version             print the version

Logging goes to stderr; set RUST_LOG=debug for per-connection events.
";

fn parse_args() -> Result<Option<Config>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut config = Config::default();
    enum Fsync {
        Always,
        Interval,
        Never,
    }
    let mut fsync = Fsync::Interval;
    let mut interval_ms = 1000usize;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => config.addr = parser.value()?.string()?,
            Long("data-dir") => config.data_dir = parser.value()?.into(),
            Long("max-line-bytes") => config.max_line_bytes = positive(parser.value()?.parse()?)?,
            Long("max-connections") => config.max_connections = positive(parser.value()?.parse()?)?,
            Long("max-output-bytes") => {
                config.max_output_bytes = positive(parser.value()?.parse()?)?
            }
            Long("no-auto-create") => config.auto_create_topics = false,
            Long("fsync") => {
                fsync = match parser.value()?.string()?.as_str() {
                    "always" => Fsync::Always,
                    "interval" => Fsync::Interval,
                    "never" => Fsync::Never,
                    other => {
                        return Err(format!(
                            "--fsync takes always, interval or never, not {other:?}"
                        )
                        .into());
                    }
                }
            }
            Long("fsync-interval-ms") => interval_ms = positive(parser.value()?.parse()?)?,
            Long("segment-bytes") => {
                config.segment_bytes = positive(parser.value()?.parse()?)? as u64
            }
            Long("retention-bytes") => {
                config.retention_bytes = Some(positive(parser.value()?.parse()?)? as u64)
            }
            Long("retention-hours") => {
                let hours: f64 = parser.value()?.parse()?;
                if !(hours > 0.0 && hours.is_finite()) {
                    return Err("--retention-hours must be a positive number".into());
                }
                config.retention_hours = Some(hours);
            }
            Long("skip-corrupt-segments") => config.skip_corrupt_segments = true,
            Long("max-topics") => config.max_topics = positive(parser.value()?.parse()?)?,
            Long("auth-token-file") => config.auth_token_file = Some(parser.value()?.into()),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            Short('V') | Long("version") => {
                println!("broker {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    config.fsync = match fsync {
        Fsync::Always => FsyncPolicy::Always,
        Fsync::Interval => FsyncPolicy::Interval(Duration::from_millis(interval_ms as u64)),
        Fsync::Never => FsyncPolicy::Never,
    };
    Ok(Some(config))
}

fn positive(n: usize) -> Result<usize, lexopt::Error> {
    if n == 0 {
        return Err("the value must be at least 1".into());
    }
    Ok(n)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match parse_args() {
        Ok(Some(config)) => config,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let broker = match Server::bind(config) {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The one line on stdout: scripts and tests read the real port here.
    println!("Broker started on {}", broker.display_addr());
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}
