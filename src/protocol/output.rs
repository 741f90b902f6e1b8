//! A connection's reply queue: bytes in request order, some of them
//! *pending* on durability tickets.
//!
//! A reply that waits for appends (a text `ACK`, a `COMMITTED`) is rendered
//! at once as if they will succeed, and marked pending on their tickets.
//! Nothing from the first pending reply on is sent. The broker settles
//! tickets by pushing [`Settlement`]s, which [`Output::settle`] applies;
//! when the front reply's tickets are all settled it is released as it is,
//! or, if some failed, rewritten first (the text protocol turns the failed
//! lines into `STORAGE_ERROR` lines). So the client always sees replies in
//! request order, and what a reply says depends only on how its own
//! tickets ended.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::rc::Rc;

use crate::broker::{JournalId, Outcome, Settlement, Ticket, WriteError};

/// Output capacity kept across flushes; more is given back once drained so
/// idle connections stay small.
const KEEP_OUTPUT_CAPACITY: usize = 64 * 1024;

/// The tickets of one journal a pending reply waits for: `first..end`.
#[derive(Debug, Clone)]
struct Wait {
    journal: JournalId,
    first: u64,
    end: u64,
    /// Every ticket below this is done.
    done_upto: u64,
    /// Every ticket from this on failed, and why.
    failed: Option<(u64, Rc<WriteError>)>,
}

impl Wait {
    fn settled(&self) -> bool {
        let stop = self.failed.as_ref().map_or(self.end, |(from, _)| *from);
        self.done_upto >= stop
    }
}

/// Renders a pending reply again once its tickets settled and some
/// failed: given each ticket's failure (in the order the tickets were
/// given), the reply's new bytes.
pub type Rerender = Box<dyn FnOnce(&[Option<Rc<WriteError>>]) -> Vec<u8>>;

/// How to rewrite a pending reply whose tickets failed.
pub enum Rewrite {
    /// One text line per ticket of the single wait, in ticket order; a
    /// failed ticket's line becomes a `STORAGE_ERROR` line.
    TextLines,
    /// A reply the protocol renders again (a Kafka ProduceResponse).
    Rerender(Rerender),
}

impl std::fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rewrite::TextLines => "TextLines",
            Rewrite::Rerender(_) => "Rerender",
        })
    }
}

#[derive(Debug)]
struct Pending {
    pos: usize,
    len: usize,
    waits: Vec<Wait>,
    rewrite: Rewrite,
}

/// A connection's pending replies.
#[derive(Debug, Default)]
pub struct Output {
    buf: Vec<u8>,
    /// Bytes of `buf` already written to the socket.
    sent: usize,
    pending: VecDeque<Pending>,
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

    /// Whether some reply waits for its tickets.
    pub fn has_pending_replies(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Appends reply bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Direct access for rendering replies in place.
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Queues the text line `render` writes, pending on `ticket`. A line
    /// right after another pending line of the same journal and the
    /// previous ticket joins it (a pipelined producer's `ACK`s are one
    /// pending reply).
    pub fn push_line_pending(&mut self, ticket: Ticket, render: impl FnOnce(&mut Vec<u8>)) {
        let at_end = self.buf.len();
        if let Some(last) = self.pending.back_mut()
            && last.pos + last.len == at_end
            && matches!(last.rewrite, Rewrite::TextLines)
            && last.waits.len() == 1
            && last.waits[0].journal == ticket.journal
            && last.waits[0].end == ticket.seq
            && last.waits[0].failed.is_none()
        {
            render(&mut self.buf);
            last.len = self.buf.len() - last.pos;
            last.waits[0].end += 1;
            return;
        }
        render(&mut self.buf);
        self.pending.push_back(Pending {
            pos: at_end,
            len: self.buf.len() - at_end,
            waits: vec![Wait {
                journal: ticket.journal,
                first: ticket.seq,
                end: ticket.seq + 1,
                done_upto: ticket.seq,
                failed: None,
            }],
            rewrite: Rewrite::TextLines,
        });
    }

    /// Queues a reply `render` writes, pending on every ticket given; if
    /// any of them fails, `rerender` replaces it.
    pub fn push_pending(
        &mut self,
        tickets: &[Ticket],
        render: impl FnOnce(&mut Vec<u8>),
        rerender: Rerender,
    ) {
        let pos = self.buf.len();
        render(&mut self.buf);
        if tickets.is_empty() {
            return;
        }
        self.pending.push_back(Pending {
            pos,
            len: self.buf.len() - pos,
            waits: tickets
                .iter()
                .map(|t| Wait {
                    journal: t.journal,
                    first: t.seq,
                    end: t.seq + 1,
                    done_upto: t.seq,
                    failed: None,
                })
                .collect(),
            rewrite: Rewrite::Rerender(rerender),
        });
    }

    /// Applies a settlement for this connection, then releases the replies
    /// at the front whose tickets are all settled.
    pub fn settle(&mut self, s: &Settlement) {
        for p in &mut self.pending {
            for w in &mut p.waits {
                if w.journal != s.journal {
                    continue;
                }
                match &s.outcome {
                    Outcome::Done { upto } => {
                        if *upto > w.first {
                            w.done_upto = w.done_upto.max((*upto).min(w.end));
                        }
                    }
                    Outcome::Failed { from, error } => {
                        if *from < w.end {
                            let from = (*from).max(w.first);
                            if w.failed.as_ref().is_none_or(|(f, _)| from < *f) {
                                w.failed = Some((from, error.clone()));
                            }
                        }
                    }
                }
            }
        }
        self.release();
    }

    /// Releases settled replies from the front, rewriting failed ones.
    fn release(&mut self) {
        while let Some(front) = self.pending.front() {
            if !front.waits.iter().all(Wait::settled) {
                return;
            }
            let Some(p) = self.pending.pop_front() else {
                return;
            };
            if p.waits.iter().any(|w| w.failed.is_some()) {
                let old = &self.buf[p.pos..p.pos + p.len];
                let new = match p.rewrite {
                    Rewrite::TextLines => rewrite_text_lines(old, &p.waits[0]),
                    Rewrite::Rerender(rerender) => {
                        let failures: Vec<Option<Rc<WriteError>>> = p
                            .waits
                            .iter()
                            .map(|w| w.failed.as_ref().map(|(_, e)| e.clone()))
                            .collect();
                        rerender(&failures)
                    }
                };
                let delta = new.len() as isize - p.len as isize;
                self.buf.splice(p.pos..p.pos + p.len, new);
                for later in &mut self.pending {
                    later.pos = (later.pos as isize + delta) as usize;
                }
            }
        }
    }

    /// The end of what may be sent now.
    fn sendable(&self) -> usize {
        self.pending.front().map_or(self.buf.len(), |p| p.pos)
    }

    /// Whether bytes that may be sent are still queued.
    pub fn has_sendable(&self) -> bool {
        self.sent < self.sendable()
    }

    /// Writes what may be sent until the socket would block. Returns the
    /// number of bytes written.
    pub fn write_to(&mut self, socket: &mut impl Write) -> io::Result<usize> {
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
            for p in &mut self.pending {
                p.pos -= self.sent;
            }
            self.sent = 0;
        }
        Ok(written)
    }
}

/// The lines of a pending text reply with those of failed tickets turned
/// into `STORAGE_ERROR` lines.
fn rewrite_text_lines(old: &[u8], wait: &Wait) -> Vec<u8> {
    let Some((from, error)) = &wait.failed else {
        return old.to_vec();
    };
    let keep_lines = (from - wait.first) as usize;
    let failed_lines = (wait.end - from) as usize;
    let mut out = Vec::with_capacity(old.len());
    let mut rest = old;
    for _ in 0..keep_lines {
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    for _ in 0..failed_lines {
        out.extend_from_slice(super::text::reply::STORAGE_ERROR);
        out.extend_from_slice(error.reason.as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{ConnId, PartitionId};
    use crate::util::push_u64;

    const P0: JournalId = JournalId::Partition(PartitionId {
        topic: 0,
        partition: 0,
    });
    const P1: JournalId = JournalId::Partition(PartitionId {
        topic: 1,
        partition: 0,
    });
    const CONN: ConnId = ConnId {
        slot: 0,
        generation: 0,
    };

    fn ack(out: &mut Output, journal: JournalId, seq: u64, offset: u64) {
        out.push_line_pending(
            Ticket {
                journal,
                seq,
                offset,
            },
            |buf| {
                buf.extend_from_slice(b"ACK offset:");
                push_u64(buf, offset);
                buf.push(b'\n');
            },
        );
    }

    fn done(journal: JournalId, upto: u64) -> Settlement {
        Settlement {
            conn: CONN,
            journal,
            outcome: Outcome::Done { upto },
        }
    }

    fn failed(journal: JournalId, from: u64) -> Settlement {
        Settlement {
            conn: CONN,
            journal,
            outcome: Outcome::Failed {
                from,
                error: Rc::new(WriteError {
                    reason: "disk full".into(),
                    no_space: true,
                }),
            },
        }
    }

    fn drain(out: &mut Output) -> String {
        let mut sink = Vec::new();
        out.write_to(&mut sink).unwrap();
        String::from_utf8(sink).unwrap()
    }

    #[test]
    fn pending_replies_block_later_replies_until_settled() {
        let mut out = Output::default();
        out.push(b"PONG\n");
        ack(&mut out, P0, 0, 7);
        out.push(b"PONG\n");
        assert_eq!(
            drain(&mut out),
            "PONG\n",
            "nothing after a pending ACK goes out"
        );
        out.settle(&done(P1, 10));
        assert_eq!(drain(&mut out), "");
        out.settle(&done(P0, 1));
        assert_eq!(drain(&mut out), "ACK offset:7\nPONG\n");
        assert!(out.is_empty());
    }

    #[test]
    fn failed_tickets_are_rewritten_in_place() {
        let mut out = Output::default();
        ack(&mut out, P0, 0, 1);
        out.push(b"PONG\n");
        ack(&mut out, P0, 1, 2);
        ack(&mut out, P0, 2, 3);
        out.push(b"NO_MESSAGE\n");
        // The journal fails 1.. first, then settles 0 as done.
        out.settle(&failed(P0, 1));
        assert_eq!(drain(&mut out), "");
        out.settle(&done(P0, 1));
        assert_eq!(
            drain(&mut out),
            "ACK offset:1\nPONG\nSTORAGE_ERROR disk full\nSTORAGE_ERROR disk full\nNO_MESSAGE\n"
        );
    }

    #[test]
    fn a_failure_on_one_journal_never_releases_a_reply_pending_on_another() {
        let mut out = Output::default();
        ack(&mut out, P0, 5, 5);
        ack(&mut out, P1, 9, 0);
        out.push(b"PONG\n");
        out.settle(&failed(P1, 9));
        assert_eq!(drain(&mut out), "", "ACK 5 still waits for its sync");
        out.settle(&done(P0, 6));
        assert_eq!(
            drain(&mut out),
            "ACK offset:5\nSTORAGE_ERROR disk full\nPONG\n"
        );
    }

    #[test]
    fn a_run_of_acks_is_one_pending_reply_and_may_settle_in_parts() {
        let mut out = Output::default();
        for i in 0..1000 {
            ack(&mut out, P0, i, i);
        }
        assert_eq!(out.pending.len(), 1);
        out.settle(&done(P0, 500));
        assert_eq!(drain(&mut out), "");
        out.settle(&failed(P0, 900));
        out.settle(&done(P0, 900));
        let text = drain(&mut out);
        assert_eq!(text.lines().count(), 1000);
        assert_eq!(text.lines().nth(899), Some("ACK offset:899"));
        assert_eq!(text.lines().nth(900), Some("STORAGE_ERROR disk full"));
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
            ack(&mut out, P0, i, i);
        }
        out.settle(&done(P0, 1000));
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
