//! One client connection: its socket, its protocol session, its partial
//! input and its reply queue. Knows nothing of the slab or the log.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::broker::ConnId;
use crate::protocol::Session;
use crate::protocol::output::Output;

/// Where a connection is in its life. Each state says whether its requests
/// are read and when it goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests are read and executed.
    Reading,
    /// Its output is over `--max-output-bytes`: no requests are read until
    /// the client reads its replies.
    Paused,
    /// A request waits in the broker (a parked `FETCH`): nothing more is
    /// read until it is answered, so replies stay in order.
    Parked,
    /// `QUIT` (or repeated auth failures): send what is queued, then close.
    Draining,
    /// A read or write failed, or the peer reset: close now.
    Closed,
}

/// One client.
#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub id: ConnId,
    pub output: Output,
    pub session: Session,
    pub state: State,
    /// Input read from the socket but not yet processed, kept only while
    /// the connection is paused or parked (bounded by one read).
    pub stash: Vec<u8>,
    /// The peer closed its sending side (a read returned 0).
    pub eof: bool,
    /// The poller said the peer closed its sending side (`eof` may not be
    /// read yet: a parked connection reads nothing).
    pub hup: bool,
    /// Queued on the server's list of connections to flush this turn.
    pub dirty: bool,
    /// The loop turn this connection was last serviced in.
    pub serviced_turn: u64,
    /// Read until `WouldBlock` on the next service (no edge will tell).
    pub drain: bool,
    /// The last time bytes moved either way (or the connection opened).
    pub last_progress: Instant,
    /// When the unfinished request now being read began (its first byte).
    pub request_since: Option<Instant>,
    /// Counted in `connections_paused` (kept in step at the end of each
    /// turn it was touched in, and when it closes).
    pub counted_paused: bool,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: SocketAddr, id: ConnId, session: Session) -> Self {
        Connection {
            stream,
            peer,
            id,
            output: Output::default(),
            session,
            state: State::Reading,
            stash: Vec::new(),
            eof: false,
            hup: false,
            dirty: false,
            serviced_turn: 0,
            drain: true,
            last_progress: Instant::now(),
            request_since: None,
            counted_paused: false,
        }
    }

    /// Reads into `buf`, retrying on `Interrupted`. `Ok(0)` is end of input.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// Writes queued replies until the socket would block.
    pub fn flush(&mut self) -> io::Result<usize> {
        self.output.write_to(&mut self.stream)
    }

    /// Whether the connection may be closed to make room for a new client,
    /// and how good a choice it is: `(rank, since)`, lower first. Leaving
    /// connections come first, then ones stuck in a request, then ones
    /// with no traffic; each at least `min_age` old, oldest first. A
    /// connection waiting by design with nothing to send (a parked FETCH,
    /// a caught-up subscriber) is never chosen.
    pub fn eviction_rank(
        &self,
        now: Instant,
        min_age: std::time::Duration,
    ) -> Option<(u8, Instant)> {
        let old = |t: Instant| now.saturating_duration_since(t) >= min_age;
        match self.state {
            State::Closed => None,
            State::Draining => Some((0, self.last_progress)),
            State::Reading | State::Paused | State::Parked => {
                if let Some(t) = self.request_since.filter(|&t| old(t)) {
                    Some((1, t))
                } else if old(self.last_progress)
                    && !(self.session.is_waiting() && self.output.is_empty())
                {
                    Some((2, self.last_progress))
                } else {
                    None
                }
            }
        }
    }

    /// Whether the connection has nothing more to do and can be closed.
    pub fn is_finished(&self) -> bool {
        match self.state {
            State::Closed => true,
            State::Draining => self.output.is_empty(),
            State::Reading | State::Paused | State::Parked => {
                self.eof
                    && self.output.is_empty()
                    && self.stash.is_empty()
                    && !self.session.is_waiting()
            }
        }
    }
}
