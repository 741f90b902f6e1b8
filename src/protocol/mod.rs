//! Wire protocols: sans-I/O codecs and the handlers that call the broker.

pub mod kafka;
pub mod text;
