//! One client connection: its socket, its partial input, and its pending
//! output. Knows nothing of the slab or the log.
//!
//! Replies are rendered straight into [`Output`] in request order. An `ACK`
//! is *held*: the bytes from it onwards are not sent until the reactor says
//! the message reached the file, and if the append failed the `ACK` is
//! rewritten in place into a `STORAGE_ERROR` line. Replies that follow a
//! held `ACK` wait behind it, so the client always sees replies in order.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::protocol::text::{LineDecoder, push_u64, reply};

/// Output capacity kept across flushes; more is given back once drained so
/// idle connections stay small.
const KEEP_OUTPUT_CAPACITY: usize = 64 * 1024;

/// An `ACK` waiting for its append to reach the file.
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    /// Where the `ACK` line starts in the output buffer.
    pos: usize,
    /// Length of the `ACK` line.
    len: u32,
    /// Which journal (topic log, or the offsets file) the write went to.
    pub log: u32,
    /// The journal's failure epoch when the write was staged.
    pub epoch: u32,
    /// The message's offset (or the commit's sequence number).
    pub offset: u64,
}

/// What became of a held `ACK`.
pub enum HoldState<'a> {
    /// In the file: the `ACK` may go.
    Done,
    /// Not yet known: keep holding.
    Pending,
    /// The append failed: send this reply line instead.
    Failed(&'a [u8]),
}

/// A connection's pending replies.
#[derive(Debug, Default)]
pub struct Output {
    buf: Vec<u8>,
    /// Bytes of `buf` already written to the socket.
    sent: usize,
    holds: VecDeque<Hold>,
}

impl Output {
    /// Bytes queued and not yet written to the socket.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Whether nothing is left to send or waiting.
    pub fn is_empty(&self) -> bool {
        self.pending() == 0
    }

    /// Whether some reply waits for an append.
    pub fn has_holds(&self) -> bool {
        !self.holds.is_empty()
    }

    /// Appends reply bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Direct access for rendering replies in place.
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Queues `ACK offset:<offset>`, held until the append is settled.
    pub fn push_ack(&mut self, log: u32, epoch: u32, offset: u64) {
        self.push_held(log, epoch, offset, |buf| {
            buf.extend_from_slice(reply::ACK);
            push_u64(buf, offset);
            buf.push(b'\n');
        });
    }

    /// Queues the reply line `render` writes, held until write number
    /// `seq` of journal `log` is settled (and replaced by an error line if
    /// that write fails).
    pub fn push_held(&mut self, log: u32, epoch: u32, seq: u64, render: impl FnOnce(&mut Vec<u8>)) {
        let pos = self.buf.len();
        render(&mut self.buf);
        self.holds.push_back(Hold {
            pos,
            len: (self.buf.len() - pos) as u32,
            log,
            epoch,
            offset: seq,
        });
    }

    /// Settles held `ACK`s in order, asking `state` about each. Stops at the
    /// first one still pending: later replies must wait behind it.
    pub fn settle<'a>(&mut self, mut state: impl FnMut(&Hold) -> HoldState<'a>) {
        // Fast path: everything settled without failures.
        let mut done = 0;
        for hold in &self.holds {
            match state(hold) {
                HoldState::Done => done += 1,
                HoldState::Pending => break,
                HoldState::Failed(_) => return self.settle_with_failures(state),
            }
        }
        if done == self.holds.len() {
            self.holds.clear();
        } else {
            self.holds.drain(..done);
        }
    }

    /// Rewrites failed `ACK`s into their error lines, moving everything
    /// after them, and drops the holds that are done.
    fn settle_with_failures<'a>(&mut self, mut state: impl FnMut(&Hold) -> HoldState<'a>) {
        let first = self.holds[0].pos;
        let tail = self.buf.split_off(first);
        let mut cursor = 0; // position in `tail`
        let mut kept = VecDeque::new();
        let mut pending_seen = false;
        for hold in self.holds.drain(..) {
            let at = hold.pos - first;
            self.buf.extend_from_slice(&tail[cursor..at]);
            let line = &tail[at..at + hold.len as usize];
            cursor = at + hold.len as usize;
            let verdict = if pending_seen {
                HoldState::Pending
            } else {
                state(&hold)
            };
            match verdict {
                HoldState::Failed(error) => self.buf.extend_from_slice(error),
                HoldState::Done => self.buf.extend_from_slice(line),
                HoldState::Pending => {
                    pending_seen = true;
                    kept.push_back(Hold {
                        pos: self.buf.len(),
                        ..hold
                    });
                    self.buf.extend_from_slice(line);
                }
            }
        }
        self.buf.extend_from_slice(&tail[cursor..]);
        self.holds = kept;
    }

    /// The end of what may be sent now.
    fn sendable(&self) -> usize {
        self.holds.front().map_or(self.buf.len(), |h| h.pos)
    }

    /// Whether bytes that may be sent are still queued.
    pub fn has_sendable(&self) -> bool {
        self.sent < self.sendable()
    }

    /// Writes what may be sent until the socket would block. Returns the
    /// number of bytes written.
    fn write_to(&mut self, socket: &mut impl Write) -> io::Result<usize> {
        let end = self.sendable();
        let start = self.sent;
        while self.sent < end {
            match socket.write(&self.buf[self.sent..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let written = self.sent - start;
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
            if self.buf.capacity() > KEEP_OUTPUT_CAPACITY {
                self.buf = Vec::new();
            }
        } else if self.sent >= KEEP_OUTPUT_CAPACITY && self.sent * 2 >= self.buf.len() {
            // Compact so a slow reader's buffer does not creep forward.
            self.buf.drain(..self.sent);
            for hold in &mut self.holds {
                hold.pos -= self.sent;
            }
            self.sent = 0;
        }
        Ok(written)
    }
}

/// What a client has asked for beyond single requests.
#[derive(Debug)]
pub struct Session {
    /// The topic its commands apply to (`USE`).
    pub topic: u32,
    pub authenticated: bool,
    pub auth_failures: u8,
    /// A `FETCH` parked until data arrives or its wait ends; the client's
    /// later requests are not read meanwhile, so replies stay in order.
    pub wait: Option<Wait>,
    /// An open `SUBSCRIBE` stream.
    pub subscription: Option<Subscription>,
}

/// A parked `FETCH`.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub topic: u32,
    pub offset: u64,
    pub max: u64,
    /// Matches the timer entry, so a stale timer is ignored.
    pub id: u64,
}

/// A `SUBSCRIBE` stream: messages from `next` on are sent as the socket
/// drains, read from the log, never buffered beyond a window.
#[derive(Debug, Clone, Copy)]
pub struct Subscription {
    pub topic: u32,
    pub next: u64,
    /// Registered with the topic to hear of new messages.
    pub waiting: bool,
}

/// One client.
#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub decoder: LineDecoder,
    pub output: Output,
    pub session: Session,
    /// Input read from the socket but not yet processed, kept only while
    /// the connection is paused or parked (bounded by one read).
    pub stash: Vec<u8>,
    /// The peer closed its sending side.
    pub eof: bool,
    /// `QUIT` was received (or auth failed too often): send what is
    /// queued, then close.
    pub quitting: bool,
    /// Requests are not being read until the output drains.
    pub paused: bool,
    /// A read or write failed: close now.
    pub broken: bool,
    /// Queued on the reactor's flush list this turn.
    pub dirty: bool,
    /// On the reactor's list of connections with replies held for a sync.
    pub held: bool,
    /// The loop turn this connection was last serviced in.
    pub serviced_turn: u64,
    /// Read until `WouldBlock` on the next service (no edge will tell).
    pub drain: bool,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: SocketAddr, max_line: usize, authenticated: bool) -> Self {
        Connection {
            stream,
            peer,
            decoder: LineDecoder::new(max_line),
            output: Output::default(),
            session: Session {
                topic: 0,
                authenticated,
                auth_failures: 0,
                wait: None,
                subscription: None,
            },
            stash: Vec::new(),
            eof: false,
            quitting: false,
            paused: false,
            broken: false,
            dirty: false,
            held: false,
            serviced_turn: 0,
            drain: true,
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

    /// Whether the connection has nothing more to do and can be closed.
    pub fn is_finished(&self) -> bool {
        self.broken
            || (self.output.is_empty()
                && (self.quitting
                    || (self.eof
                        && self.stash.is_empty()
                        && self.session.wait.is_none()
                        && self.session.subscription.is_none())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack_state(failed_from: u64) -> impl FnMut(&Hold) -> HoldState<'static> {
        move |h: &Hold| {
            if h.offset >= failed_from {
                HoldState::Failed(b"STORAGE_ERROR disk full\n")
            } else {
                HoldState::Done
            }
        }
    }

    #[test]
    fn held_acks_block_later_replies_until_settled() {
        let mut out = Output::default();
        out.push(b"PONG\n");
        out.push_ack(0, 0, 7);
        out.push(b"PONG\n");
        let mut sink = Vec::new();
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink, b"PONG\n", "nothing after a held ACK goes out");
        out.settle(|_| HoldState::Pending);
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink, b"PONG\n");
        out.settle(|_| HoldState::Done);
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink, b"PONG\nACK offset:7\nPONG\n");
        assert!(out.is_empty());
    }

    #[test]
    fn failed_acks_are_rewritten_in_place() {
        let mut out = Output::default();
        out.push_ack(0, 0, 1);
        out.push(b"PONG\n");
        out.push_ack(0, 0, 2);
        out.push_ack(0, 0, 3);
        out.push(b"NO_MESSAGE\n");
        out.settle(ack_state(2));
        let mut sink = Vec::new();
        out.write_to(&mut sink).unwrap();
        assert_eq!(
            String::from_utf8(sink).unwrap(),
            "ACK offset:1\nPONG\nSTORAGE_ERROR disk full\nSTORAGE_ERROR disk full\nNO_MESSAGE\n"
        );
    }

    #[test]
    fn pending_hold_after_failure_keeps_its_place() {
        let mut out = Output::default();
        out.push_ack(0, 0, 5);
        out.push_ack(1, 0, 9);
        out.push(b"PONG\n");
        out.settle(|h: &Hold| {
            if h.log == 0 {
                HoldState::Failed(b"STORAGE_ERROR x\n")
            } else {
                HoldState::Pending
            }
        });
        let mut sink = Vec::new();
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink, b"STORAGE_ERROR x\n");
        out.settle(|_| HoldState::Done);
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink, b"STORAGE_ERROR x\nACK offset:9\nPONG\n");
    }

    /// A socket that accepts a few bytes at a time, then would block.
    struct Trickle(Vec<u8>, usize);
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.1 == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.1).min(3);
            self.1 -= n;
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut out = Output::default();
        let mut sock = Trickle(Vec::new(), 0);
        for i in 0..1000u64 {
            out.push_ack(0, 0, i);
        }
        out.settle(|_| HoldState::Done);
        let total = out.pending();
        while !out.is_empty() {
            sock.1 = 1000;
            out.write_to(&mut sock).unwrap();
        }
        assert_eq!(sock.0.len(), total);
        let expected: String = (0..1000).map(|i| format!("ACK offset:{i}\n")).collect();
        assert_eq!(String::from_utf8(sock.0).unwrap(), expected);
    }
}
