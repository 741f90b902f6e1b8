//! Wire protocols: sans-I/O codecs plus the handlers that call the broker
//! and render replies. A connection's protocol is decided by the server;
//! everything here works on bytes in and a reply queue out.

pub mod kafka;
pub mod output;
pub mod text;

use std::net::SocketAddr;

use crate::broker::{Broker, ConnId, TopicId, Wake};
use kafka::session::{Advertised, KafkaSession};
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
    /// This turn's read budget is spent: the request waits (kept by the
    /// session) and the connection is served again next turn.
    Yield,
    /// Send what is queued, then close.
    Quit,
}

/// What a connection needs to start either protocol.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub max_line_bytes: usize,
    pub max_request_bytes: usize,
    pub authenticated: bool,
    pub default_topic: TopicId,
    pub advertised: Advertised,
}

/// A connection's protocol state.
#[derive(Debug)]
pub enum Session {
    /// Nothing read yet: the first byte decides. A Kafka request starts
    /// with `0x00` (the high byte of its length); a text command with a
    /// letter.
    Undecided(SessionParams),
    Text(TextSession),
    Kafka(KafkaSession),
}

impl Session {
    /// A session for a Kafka-only listener.
    pub fn kafka(params: &SessionParams) -> Session {
        Session::Kafka(KafkaSession::new(
            params.max_request_bytes,
            params.authenticated,
            params.advertised.clone(),
        ))
    }

    /// Whether this is a Kafka connection (so far).
    pub fn is_kafka(&self) -> bool {
        matches!(self, Session::Kafka(_))
    }

    /// Handles input bytes; returns how many were used and why it stopped.
    pub fn handle_input(&mut self, ctx: &mut Ctx<'_>, input: &[u8]) -> (usize, Control) {
        if let Session::Undecided(params) = self
            && let Some(&first) = input.first()
        {
            *self = if first == 0 {
                Session::kafka(params)
            } else {
                Session::Text(TextSession::new(
                    params.max_line_bytes,
                    params.authenticated,
                    params.default_topic,
                ))
            };
        }
        match self {
            Session::Undecided(_) => (0, Control::Continue),
            Session::Text(s) => s.handle_input(ctx, input),
            Session::Kafka(s) => s.handle_input(ctx, input),
        }
    }

    /// The connection's wait ended. Returns whether a parked request was
    /// answered (its later requests can be read again).
    pub fn on_wake(&mut self, ctx: &mut Ctx<'_>, wake: Wake) -> bool {
        match self {
            Session::Undecided(_) => false,
            Session::Text(s) => s.on_wake(ctx, wake),
            Session::Kafka(s) => s.on_wake(ctx, wake),
        }
    }

    /// Tops up streamed output as the socket drains, up to `window` bytes
    /// pending. Returns whether more is ready.
    pub fn refill(&mut self, ctx: &mut Ctx<'_>, window: usize) -> bool {
        match self {
            Session::Text(s) => s.refill(ctx, window),
            Session::Undecided(_) | Session::Kafka(_) => false,
        }
    }

    /// The peer closed its sending side, so nothing may wait for it: a
    /// text session answers a parked `FETCH` now with what is there and
    /// ends a subscription once it has caught up; returns whether a parked
    /// request was answered (later requests can be read). `None`: close
    /// the connection now (a Kafka session with a parked request; Kafka
    /// clients never half-close, and Kafka closes on end of input).
    pub fn input_closed(&mut self, ctx: &mut Ctx<'_>) -> Option<bool> {
        match self {
            Session::Text(s) => Some(s.input_closed(ctx)),
            Session::Kafka(s) if s.is_parked() => None,
            Session::Kafka(_) | Session::Undecided(_) => Some(false),
        }
    }

    /// Whether a subscription on this connection has more to send.
    pub fn is_streaming(&self) -> bool {
        match self {
            Session::Text(s) => s.is_streaming(),
            Session::Kafka(_) | Session::Undecided(_) => false,
        }
    }

    /// Whether the session waits by design (so a half-closed connection
    /// stays open for it).
    pub fn is_waiting(&self) -> bool {
        match self {
            Session::Text(s) => s.is_waiting(),
            Session::Kafka(s) => s.is_parked(),
            Session::Undecided(_) => false,
        }
    }

    /// Runs a text request that waited (for the connection's earlier
    /// replies to settle, or for the next turn's read budget); see
    /// `TextSession::run_deferred`. `None` if none waits.
    pub fn run_deferred(&mut self, ctx: &mut Ctx<'_>) -> Option<Control> {
        match self {
            Session::Text(s) => s.run_deferred(ctx),
            Session::Kafka(_) | Session::Undecided(_) => None,
        }
    }

    /// Whether a request is parked.
    pub fn is_parked(&self) -> bool {
        match self {
            Session::Text(s) => s.is_parked(),
            Session::Kafka(s) => s.is_parked(),
            Session::Undecided(_) => false,
        }
    }

    /// Whether part of a request has been read (buffered, or being
    /// discarded as too long).
    pub fn in_request(&self) -> bool {
        match self {
            Session::Text(s) => s.in_request(),
            Session::Kafka(s) => s.in_request(),
            Session::Undecided(_) => false,
        }
    }

    /// Bytes of an unfinished request held.
    pub fn buffered(&self) -> usize {
        match self {
            Session::Text(s) => s.buffered(),
            Session::Kafka(s) => s.buffered(),
            Session::Undecided(_) => 0,
        }
    }

    /// The connection is closing.
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            Session::Text(s) => s.close(ctx),
            Session::Kafka(s) => s.close(ctx),
            Session::Undecided(_) => {}
        }
    }
}
