//! A lightweight Kafka-like message broker: one thread, one mio reactor, a
//! line protocol you can drive with `nc`.
//!
//! - [`protocol`]: framing, request parsing and reply words (no I/O);
//! - [`connection`]: one client's socket and buffers;
//! - [`reactor`]: the poll loop that owns the listener, clients and logs;
//! - [`commands`]: what each request does: topics, offsets, stats;
//! - [`storage`]: the append-only log files;
//! - [`offsets`]: committed consumer-group offsets;
//! - [`config`]: defaults and limits;
//! - [`client`]: blocking helpers for the bundled clients.

pub mod client;
pub mod commands;
pub mod config;
pub mod connection;
pub mod offsets;
pub mod protocol;
pub mod reactor;
pub mod storage;
pub mod syncer;

pub use config::Config;
pub use reactor::{Broker, BrokerError};
