//! `broker`: serves the log over TCP. See `broker --help`.

use std::process::ExitCode;

use kafka_like_broker::Server;
use kafka_like_broker::cli;
use kafka_like_broker::config::parse_args;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => return cli::usage_error("broker", &e),
    };
    let mut broker = match Server::bind(config) {
        Ok(broker) => broker,
        Err(e) => {
            cli::err(format!("broker: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    // Before the start line: whoever reads it may send SIGTERM at once.
    if let Err(e) = broker.handle_signals() {
        cli::err(format!("broker: {e}\n"));
        return ExitCode::FAILURE;
    }
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
