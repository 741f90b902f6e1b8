//! `--metrics-addr`: the broker's counters, partitions and consumer
//! groups in the Prometheus text format on `GET /metrics`, served by the
//! same poll loop as the clients (a third listener).
//!
//! A metrics connection reads one request head (at most
//! [`http::MAX_HEAD`] bytes, within the request timeout of being
//! accepted), gets one response built whole, and is closed: the response
//! says `Connection: close`. Once the response is sent, the broker shuts
//! its side and reads and throws away what the client still sends, for a
//! moment, so the client is not reset before it has read the response.
//! At most [`MAX_CONNECTIONS`] are open at once; one more is answered
//! 503 and closed. So the metrics hold at most that many heads and
//! responses, and a slow or silent client is closed by its deadline
//! without holding anyone up: every socket is non-blocking, and nothing
//! here waits.

mod exposition;
mod http;
mod render;

pub use http::MAX_HEAD;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::{BrokerError, Server, resolve};
use http::Status;

/// The metrics listener's token (beside the server's own).
pub(super) const LISTENER: Token = Token(usize::MAX - 5);
/// Metrics connections have tokens from here on (their slab key added).
/// Client connections have their slab key, below `--max-connections`
/// (at most 2^20), so the two ranges never meet.
const CONN_BASE: usize = usize::MAX / 2;
/// Metrics connections open at once; one more is answered 503. A
/// Prometheus server scrapes over one connection at a time.
pub const MAX_CONNECTIONS: usize = 8;
/// How long sending a response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the input of a client is read and thrown away after its
/// response was sent, before the connection is closed anyway.
const LINGER: Duration = Duration::from_secs(2);
/// How long accepting pauses after an error (out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes read from a metrics connection at once (on the stack).
const READ_CHUNK: usize = 4096;
/// Reads of a lingering connection per event, so a client that keeps
/// sending after its response cannot hold the loop.
const LINGER_READS: usize = 16;

/// Where a metrics connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the request head.
    Reading,
    /// Sending the response.
    Writing,
    /// Response sent and our side shut: reading what the client still
    /// sends until it closes.
    Lingering,
}

#[derive(Debug)]
struct HttpConn {
    stream: TcpStream,
    peer: SocketAddr,
    /// The request head so far (at most [`http::MAX_HEAD`] bytes).
    head: Vec<u8>,
    /// The response, and how much of it was sent.
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
    /// When the connection is closed whatever its phase.
    deadline: Instant,
}

/// The metrics listener and its connections.
#[derive(Debug)]
pub(super) struct Metrics {
    listener: TcpListener,
    addr: SocketAddr,
    conns: Slab<HttpConn>,
    /// How long a request head may take to arrive, from the accept.
    request_timeout: Duration,
    accept_paused_until: Option<Instant>,
}

impl Metrics {
    /// Binds `addr` (`HOST:PORT`). A request must arrive whole within
    /// `request_timeout` of its connection being accepted (`None`: the
    /// default request timeout still applies here).
    pub(super) fn bind(
        addr: &str,
        request_timeout: Option<Duration>,
    ) -> Result<Metrics, BrokerError> {
        let err = |source| BrokerError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(resolve(addr).map_err(err)?).map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        Ok(Metrics {
            listener,
            addr: local,
            conns: Slab::new(),
            request_timeout: request_timeout.unwrap_or(crate::config::DEFAULT_REQUEST_TIMEOUT),
            accept_paused_until: None,
        })
    }

    pub(super) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.listener, LISTENER, Interest::READABLE)?;
        info!("serving metrics addr=http://{}/metrics", self.addr);
        Ok(())
    }

    /// When something is next due: a connection's deadline, or accepting
    /// again.
    fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .map(|(_, c)| c.deadline)
            .chain(self.accept_paused_until)
            .min()
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut c) = self.conns.try_remove(key) {
            if let Err(e) = registry.deregister(&mut c.stream) {
                debug!("metrics peer={} deregister: {e}", c.peer);
            }
            debug!("metrics peer={} closed", c.peer);
        }
    }
}

/// Whether `token` is a metrics connection's.
pub(super) fn is_connection(token: Token) -> bool {
    token.0 >= CONN_BASE && token.0 - CONN_BASE < MAX_CONNECTIONS
}

impl Server {
    /// Where `--metrics-addr` listens (with the real port), if it was
    /// given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// When a metrics timer is next due.
    pub(super) fn metrics_deadline(&self) -> Option<Instant> {
        self.metrics.as_ref().and_then(Metrics::next_deadline)
    }

    /// Accepts metrics clients until the backlog is empty.
    pub(super) fn metrics_accept(&mut self) {
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        if m.accept_paused_until.is_some() {
            return;
        }
        let error = loop {
            match m.listener.accept() {
                Ok((stream, peer)) => {
                    if m.conns.len() >= MAX_CONNECTIONS {
                        debug!("metrics: {MAX_CONNECTIONS} connections open; turning away {peer}");
                        // A fresh socket's send buffer is empty: this
                        // writes whole or fails, and never blocks.
                        let _ = (&stream).write(&http::error_response(Status::ServiceUnavailable));
                        continue;
                    }
                    let entry = m.conns.vacant_entry();
                    let mut stream = stream;
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(CONN_BASE + entry.key()),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        debug!("metrics peer={peer} register failed: {e}");
                        continue;
                    }
                    debug!("metrics peer={peer} accepted");
                    entry.insert(HttpConn {
                        stream,
                        peer,
                        head: Vec::new(),
                        out: Vec::new(),
                        sent: 0,
                        phase: Phase::Reading,
                        deadline: Instant::now() + m.request_timeout,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break e,
            }
        };
        m.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
        self.warn_limited(&format!("metrics: accept failed: {error}; pausing accept"));
    }

    /// Readiness of a metrics connection: reads its request, answers it,
    /// sends the answer, and closes it, as far as the socket allows now.
    pub(super) fn metrics_event(&mut self, token: Token, event: &Event) {
        let key = token.0 - CONN_BASE;
        let Server {
            metrics: Some(m),
            broker,
            conns,
            helpers,
            poll,
            ..
        } = self
        else {
            return;
        };
        let Some(c) = m.conns.get_mut(key) else {
            return;
        };
        if event.is_error() {
            m.close(poll.registry(), key);
            return;
        }
        let keep = match c.phase {
            Phase::Reading => match read_request(c) {
                Got::Wait => Some(()),
                Got::Gone => None,
                Got::Head(answer) => {
                    let response = match answer {
                        Ok(request) => {
                            let body = render::render(broker, conns, helpers.fsync_seconds());
                            debug!(
                                "metrics peer={} 200 {} bytes",
                                c.peer,
                                if request.head_only { 0 } else { body.len() }
                            );
                            http::response(
                                200,
                                "OK",
                                http::CONTENT_TYPE,
                                "",
                                &body,
                                request.head_only,
                            )
                        }
                        Err(status) => {
                            debug!("metrics peer={} {}", c.peer, status.code());
                            http::error_response(status)
                        }
                    };
                    c.head = Vec::new();
                    c.out = response;
                    c.phase = Phase::Writing;
                    c.deadline = Instant::now() + WRITE_TIMEOUT;
                    send(c)
                }
            },
            Phase::Writing => send(c),
            Phase::Lingering => discard(c),
        };
        if keep.is_none() {
            m.close(poll.registry(), key);
        }
    }

    /// Closes metrics connections past their deadline (a request unfinished
    /// gets a 408 if the socket takes it), and accepts again after a pause.
    pub(super) fn metrics_timers(&mut self, now: Instant) {
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        let expired: Vec<usize> = m
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            if let Some(c) = m.conns.get(key)
                && c.phase == Phase::Reading
            {
                debug!("metrics peer={} request timeout", c.peer);
                let _ = (&c.stream).write(&http::error_response(Status::RequestTimeout));
            }
            m.close(self.poll.registry(), key);
        }
        if m.accept_paused_until.is_some_and(|t| now >= t) {
            m.accept_paused_until = None;
            self.metrics_accept();
        }
    }
}

/// What reading a request head came to.
enum Got {
    /// Not all of it is here yet.
    Wait,
    /// The client closed or reset the connection first.
    Gone,
    /// The whole head (or too much): the request, or the status to
    /// refuse it with.
    Head(Result<http::Request, Status>),
}

/// Reads the request head until it is complete, too large, or the socket
/// has no more for now.
fn read_request(c: &mut HttpConn) -> Got {
    let mut buf = [0u8; READ_CHUNK];
    loop {
        let room = http::MAX_HEAD - c.head.len();
        if room == 0 {
            return Got::Head(Err(http::too_large(&c.head)));
        }
        match read(&mut c.stream, &mut buf[..room.min(READ_CHUNK)]) {
            Ok(0) => {
                debug!("metrics peer={} closed before a whole request", c.peer);
                return Got::Gone;
            }
            Ok(n) => {
                let from = c.head.len();
                c.head.extend_from_slice(&buf[..n]);
                if let Some(end) = http::head_end(&c.head, from) {
                    return Got::Head(http::parse(&c.head[..end]));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Got::Wait,
            Err(e) => {
                debug!("metrics peer={} read failed: {e}", c.peer);
                return Got::Gone;
            }
        }
    }
}

/// Sends the response as far as the socket takes it. Once all is sent,
/// shuts our side and lingers. `None`: close the connection.
fn send(c: &mut HttpConn) -> Option<()> {
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(0) => return None,
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                debug!("metrics peer={} write failed: {e}", c.peer);
                return None;
            }
        }
    }
    c.out = Vec::new();
    // The FIN tells the client the response is complete; closing at once
    // instead could reset the connection (if it sent more than its head)
    // and lose the response on its side.
    if c.stream.shutdown(Shutdown::Write).is_err() {
        return None;
    }
    c.phase = Phase::Lingering;
    c.deadline = c.deadline.min(Instant::now() + LINGER);
    discard(c)
}

/// Reads and drops what a client sends after its response, until it
/// closes (or the deadline). `None`: close the connection now.
fn discard(c: &mut HttpConn) -> Option<()> {
    let mut buf = [0u8; READ_CHUNK];
    for _ in 0..LINGER_READS {
        match read(&mut c.stream, &mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(()),
            Err(_) => return None,
        }
    }
    // More may be waiting: the next data raises an event, and the
    // deadline ends it anyway.
    Some(())
}

/// Reads, retrying on `Interrupted`.
fn read(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
