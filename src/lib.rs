//! A lightweight Kafka-like message broker: one thread, one mio reactor, a
//! line protocol you can drive with `nc`.
//!
//! Dependencies point one way:
//! `util <- storage <- broker <- protocol <- server <- bin`.
//!
//! - [`util`]: decimal numbers, names, file helpers;
//! - [`storage`]: the append-only log files and the committed offsets;
//! - [`broker`]: topics, offsets, counters: what requests do;
//! - [`protocol`]: framing, request parsing and reply words (no I/O);
//! - [`server`]: the poll loop that owns the listener and clients;
//! - [`config`]: defaults, limits and the broker's command line;
//! - [`cli`]: command-line parsing shared by the binaries;
//! - [`fuzzing`]: entry points for the text-protocol and storage fuzz
//!   targets (`fuzz/`);
//! - [`client`]: blocking helpers for the bundled clients.

pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod fuzzing;
pub mod protocol;
pub mod server;
pub mod storage;
pub mod util;

pub use config::Config;
pub use server::{BrokerError, Server};
