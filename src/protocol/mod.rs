//! Wire protocols: sans-I/O codecs plus the handlers that call the broker
//! and render replies. A connection's protocol is decided by the server;
//! everything here works on bytes in and a reply queue out.

pub mod kafka;
pub mod output;
pub mod text;

use std::net::SocketAddr;

use crate::broker::{Broker, ConnId, Wake};
use output::Output;
use text::TextSession;

/// What a protocol handler works with for one connection.
pub struct Ctx<'a> {
    pub broker: &'a mut Broker,
    pub out: &'a mut Output,
    pub conn: ConnId,
    pub peer: SocketAddr,
    /// Pending output at which the connection stops reading requests.
    pub max_output: usize,
}

/// What the connection should do after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// The output is over its bound: read nothing more until it drains.
    Pause,
    /// A request is parked: read nothing more until it is answered.
    Park,
    /// Send what is queued, then close.
    Quit,
}

/// A connection's protocol state.
#[derive(Debug)]
pub enum Session {
    Text(TextSession),
}

impl Session {
    /// Handles input bytes; returns how many were used and why it stopped.
    pub fn handle_input(&mut self, ctx: &mut Ctx<'_>, input: &[u8]) -> (usize, Control) {
        match self {
            Session::Text(s) => s.handle_input(ctx, input),
        }
    }

    /// The connection's wait ended. Returns whether a parked request was
    /// answered (its later requests can be read again).
    pub fn on_wake(&mut self, ctx: &mut Ctx<'_>, wake: Wake) -> bool {
        match self {
            Session::Text(s) => s.on_wake(ctx, wake),
        }
    }

    /// Tops up streamed output as the socket drains, up to `window` bytes
    /// pending. Returns whether more is ready.
    pub fn refill(&mut self, ctx: &mut Ctx<'_>, window: usize) -> bool {
        match self {
            Session::Text(s) => s.refill(ctx, window),
        }
    }

    /// Whether the session waits by design (so a half-closed connection
    /// stays open for it).
    pub fn is_waiting(&self) -> bool {
        match self {
            Session::Text(s) => s.is_waiting(),
        }
    }

    /// Whether a request is parked.
    pub fn is_parked(&self) -> bool {
        match self {
            Session::Text(s) => s.is_parked(),
        }
    }

    /// Bytes of an unfinished request held.
    pub fn buffered(&self) -> usize {
        match self {
            Session::Text(s) => s.buffered(),
        }
    }

    /// The connection is closing.
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            Session::Text(s) => s.close(ctx),
        }
    }
}
