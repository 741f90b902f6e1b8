//! The reactor: one thread, one `mio::Poll`, every client in a `Slab`.
//!
//! Each loop turn:
//! 1. wait for readiness (or a timer, or `0` if some connection still has
//!    input we did not get to);
//! 2. accept new clients; read and execute requests from readable clients.
//!    `PRODUCE` only *stages* the message in the log's batch and queues a
//!    held `ACK`;
//! 3. write the whole batch to the file with one `write` (the "before
//!    sleep" step), then settle the held `ACK`s: sent if the write
//!    succeeded, turned into `STORAGE_ERROR` if it failed;
//! 4. write each touched connection's replies to its socket once, keeping
//!    the rest for a later writable event.
//!
//! So an `ACK` never leaves the broker before its message is in the file,
//! and replies are coalesced into one socket write per connection per turn.
//! No call here blocks on a client: sockets are non-blocking and are read
//! and written until `WouldBlock`.

pub mod conn;
pub mod syncer;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::broker::{Control, Core};
use crate::config::{self, Config};
use crate::protocol::text::{Frame, reply};
use crate::storage::StorageError;
use conn::Connection;
use syncer::Syncer;

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
const WAKER: Token = Token(usize::MAX - 3);

/// How long accepting pauses when the process is out of file descriptors
/// and no spare descriptor is left to turn clients away with.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this interval for a repeating condition.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// Why the broker could not start or stopped with an error.
#[derive(Debug)]
pub enum BrokerError {
    /// The listening address could not be resolved or bound.
    Bind { addr: String, source: io::Error },
    /// The data directory could not be created or locked.
    DataDir { path: PathBuf, source: io::Error },
    /// Another broker holds the data directory.
    Locked { path: PathBuf },
    /// A log could not be opened or recovered.
    Storage(StorageError),
    /// The auth token file could not be read or is empty.
    AuthToken { path: PathBuf, why: String },
    /// The poll loop itself failed.
    Poll(io::Error),
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            BrokerError::DataDir { path, source } => {
                write!(f, "data directory {}: {source}", path.display())
            }
            BrokerError::Locked { path } => write!(
                f,
                "data directory {} is in use by another broker (lock file {} is held)",
                path.parent().unwrap_or(path).display(),
                path.display()
            ),
            BrokerError::Storage(e) => write!(f, "{e}"),
            BrokerError::AuthToken { path, why } => {
                write!(f, "auth token file {}: {why}", path.display())
            }
            BrokerError::Poll(e) => write!(f, "poll failed: {e}"),
        }
    }
}

impl std::error::Error for BrokerError {}

impl From<StorageError> for BrokerError {
    fn from(e: StorageError) -> Self {
        BrokerError::Storage(e)
    }
}

/// The broker: listener, clients, logs.
pub struct Broker {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Signals,
    local_addr: SocketAddr,
    display_addr: String,
    conns: Slab<Connection>,
    core: Core,
    config: Config,
    /// Socket reads land here; only unfinished lines are copied out.
    scratch: Vec<u8>,
    /// Connections with output to settle and send at the end of the turn.
    dirty: Vec<usize>,
    /// Connections to service next turn without waiting for an event.
    ready: Vec<usize>,
    /// Connections with replies held past the end of a turn (waiting for a
    /// sync), to settle when syncs complete.
    held: Vec<usize>,
    turn: u64,
    accept_paused_until: Option<Instant>,
    /// A descriptor kept in reserve so that, out of descriptors, the broker
    /// can still accept and turn away a client instead of spinning.
    spare_fd: Option<File>,
    last_warning: Option<Instant>,
    _lock: File,
}

impl Broker {
    /// Opens the data directory, recovers the log, and binds the listener.
    pub fn bind(config: Config) -> Result<Broker, BrokerError> {
        fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let lock = lock_data_dir(&config.data_dir)?;
        let auth_token = match &config.auth_token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        let poll = Poll::new().map_err(BrokerError::Poll)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(BrokerError::Poll)?;
        let syncer = Syncer::start(Arc::new(waker)).map_err(BrokerError::Poll)?;
        let core = Core::open(&config, auth_token, syncer)?;

        let bind_err = |source| BrokerError::Bind {
            addr: config.addr.clone(),
            source,
        };
        let addr = resolve(&config.addr).map_err(bind_err)?;
        let mut listener = TcpListener::bind(addr).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let host = config
            .addr
            .rsplit_once(':')
            .map_or(config.addr.as_str(), |(h, _)| h);
        let display_addr = format!("{host}:{}", local_addr.port());

        raise_fd_limit(config.max_connections as u64 + 64);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(BrokerError::Poll)?;
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(BrokerError::Poll)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(BrokerError::Poll)?;
        info!(
            "listening addr={local_addr} data_dir={} max_connections={} max_line_bytes={} auth={}",
            config.data_dir.display(),
            config.max_connections,
            config.max_line_bytes,
            if core.auth_required() { "token" } else { "off" }
        );
        Ok(Broker {
            poll,
            listener: Some(listener),
            signals,
            local_addr,
            display_addr,
            conns: Slab::new(),
            core,
            config,
            scratch: vec![0; config::READ_CHUNK],
            dirty: Vec::new(),
            ready: Vec::new(),
            held: Vec::new(),
            turn: 0,
            accept_paused_until: None,
            spare_fd: File::open("/dev/null").ok(),
            last_warning: None,
            _lock: lock,
        })
    }

    /// The address the listener really bound (with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `HOST:PORT` as given on the command line, with the real port.
    pub fn display_addr(&self) -> &str {
        &self.display_addr
    }

    /// Serves until SIGINT or SIGTERM, then flushes and returns.
    pub fn run(mut self) -> Result<(), BrokerError> {
        let mut events = Events::with_capacity(1024);
        let mut readable = Vec::new();
        loop {
            let sync_wanted = self.core.sync_wanted();
            let timeout = if sync_wanted {
                Some(Duration::ZERO)
            } else {
                self.poll_timeout()
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(BrokerError::Poll(e));
            }
            self.turn += 1;
            if sync_wanted {
                if events.is_empty() {
                    // Nothing else to do: sync here instead of handing it
                    // to a thread and sleeping until it wakes us (two
                    // thread switches off every waiting client's latency).
                    self.core.sync_inline();
                    self.release_held();
                    self.finish_turn();
                    continue;
                }
                // More work waiting: let the sync threads overlap syncs
                // with serving it.
                self.core.start_syncs();
            }
            let mut stop = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    SIGNALS => stop |= self.signals.pending().next().is_some(),
                    WAKER => {
                        if self.core.collect_syncs() {
                            self.release_held();
                        }
                    }
                    Token(key) => {
                        let Some(conn) = self.conns.get_mut(key) else {
                            continue;
                        };
                        if event.is_error() {
                            // Reset by the peer: even a parked connection
                            // that reads nothing must go.
                            conn.broken = true;
                        }
                        mark_dirty(conn, key, &mut self.dirty);
                        if event.is_read_closed() {
                            conn.drain = true;
                        }
                        if event.is_readable() || event.is_read_closed() {
                            readable.push(key);
                        }
                    }
                }
            }
            if self
                .accept_paused_until
                .is_some_and(|t| Instant::now() >= t)
            {
                self.accept_paused_until = None;
                self.accept();
            }
            self.expire_waits();
            self.core.run_timers(Instant::now());
            for &key in &self.ready {
                // Serviced without an event: read until WouldBlock.
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.drain = true;
                }
            }
            readable.append(&mut self.ready);
            for key in readable.drain(..) {
                self.service(key);
            }
            self.finish_turn();
            if stop {
                return self.shutdown();
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let deadline = match (self.accept_paused_until, self.core.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Round up so a timer is never found still a hair in the future.
        deadline.map(|t| t.saturating_duration_since(Instant::now()) + Duration::from_millis(1))
    }

    /// Answers parked fetches whose wait ran out.
    fn expire_waits(&mut self) {
        if self.core.next_deadline().is_none_or(|t| t > Instant::now()) {
            return;
        }
        for (key, id) in self.core.expired(Instant::now()) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if self
                .core
                .expire(key, id, &mut conn.session, &mut conn.output)
            {
                mark_dirty(conn, key, &mut self.dirty);
                self.ready.push(key);
            }
        }
    }

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        if self.spare_fd.is_none() {
            self.spare_fd = File::open("/dev/null").ok();
        }
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    // Use the spare descriptor to take the client off the
                    // backlog and tell it, rather than leave it there and
                    // spin on a listener that stays readable.
                    // (Linux reports EMFILE before looking at the backlog,
                    // so an empty backlog shows up as WouldBlock here.)
                    if let Some(spare) = self.spare_fd.take() {
                        drop(spare);
                        let turned_away = self.listener.as_ref().map(|l| l.accept());
                        let backlog_empty = match turned_away {
                            Some(Ok((stream, peer))) => {
                                self.warn_limited(&format!(
                                    "out of file descriptors ({e}); turned away peer={peer}"
                                ));
                                reject(stream);
                                self.core.stats.connections_rejected += 1;
                                false
                            }
                            Some(Err(e)) => e.kind() == io::ErrorKind::WouldBlock,
                            None => true,
                        };
                        self.spare_fd = File::open("/dev/null").ok();
                        if self.spare_fd.is_some() {
                            if backlog_empty {
                                return;
                            }
                            continue;
                        }
                    }
                    self.warn_limited(&format!("out of file descriptors ({e}); pausing accept"));
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => {
                    self.warn_limited(&format!("accept failed: {e}; pausing accept"));
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if self.conns.len() >= self.config.max_connections {
            self.warn_limited(&format!(
                "max_connections={} reached; turning away peer={peer}",
                self.config.max_connections
            ));
            reject(stream);
            self.core.stats.connections_rejected += 1;
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!("peer={peer} set_nodelay: {e}");
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Both interests for the connection's whole life: edge-triggered
        // readiness costs nothing while idle and saves a reregister per
        // partial write.
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("peer={peer} register failed: {e}");
            return;
        }
        entry.insert(Connection::new(
            stream,
            peer,
            self.config.max_line_bytes,
            !self.core.auth_required(),
        ));
        self.core.stats.connections_total += 1;
        self.core.stats.connections_current += 1;
        debug!(
            "accept token={key} peer={peer} connections={}",
            self.conns.len()
        );
    }

    /// Reads and executes a connection's requests, within a per-turn budget.
    fn service(&mut self, key: usize) {
        let max_output = self.config.max_output_bytes;
        let Broker {
            conns,
            core,
            scratch,
            dirty,
            ready,
            turn,
            ..
        } = self;
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        if conn.serviced_turn == *turn {
            return;
        }
        let drain = std::mem::take(&mut conn.drain);
        conn.serviced_turn = *turn;
        mark_dirty(conn, key, dirty);
        conn.paused = false;
        if conn.session.wait.is_some() || conn.broken {
            return;
        }
        if !conn.stash.is_empty() {
            let stash = std::mem::take(&mut conn.stash);
            let used = process(core, key, conn, &stash, max_output);
            if used < stash.len() {
                conn.stash = stash[used..].to_vec();
                return;
            }
        }
        if conn.quitting || conn.eof || conn.session.wait.is_some() {
            return;
        }
        for _ in 0..config::READS_PER_TURN {
            if conn.output.pending() >= max_output {
                conn.paused = true;
                return;
            }
            match conn.read(scratch) {
                Ok(0) => {
                    conn.eof = true;
                    if conn.decoder.buffered() > 0 {
                        debug!(
                            "peer={} closed in the middle of a line; dropping it",
                            conn.peer
                        );
                    }
                    return;
                }
                Ok(n) => {
                    core.stats.bytes_in += n as u64;
                    let used = process(core, key, conn, &scratch[..n], max_output);
                    if used < n {
                        conn.stash.extend_from_slice(&scratch[used..n]);
                        return;
                    }
                    if conn.quitting || conn.session.wait.is_some() {
                        return;
                    }
                    // A short read emptied the socket: any data (or FIN)
                    // arriving later raises a new edge, so skip the read
                    // that would only say WouldBlock. Not when the event
                    // said the peer closed, or there was no event at all.
                    if n < scratch.len() && !drain {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!("peer={} read failed: {e}", conn.peer);
                    conn.broken = true;
                    return;
                }
            }
        }
        // Budget used up; the socket may hold more, and no new edge will
        // say so.
        ready.push(key);
    }

    /// The before-sleep step: append what was produced, answer the waits
    /// that new messages ended, settle the held replies, then send each
    /// touched connection's replies.
    fn finish_turn(&mut self) {
        self.core.flush_all();
        if self.core.take_failed() {
            // A failed write or sync may turn replies held from earlier
            // turns into errors: settle them all now.
            self.release_held();
        }
        for key in std::mem::take(&mut self.core.woken) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            mark_dirty(conn, key, &mut self.dirty);
            if self.core.wake(key, &mut conn.session, &mut conn.output) {
                self.ready.push(key);
            }
        }
        let max_output = self.config.max_output_bytes;
        for i in 0..self.dirty.len() {
            let key = self.dirty[i];
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if conn.output.has_holds() {
                let core = &self.core;
                conn.output.settle(|hold| core.hold_state(hold));
                if conn.output.has_holds() && !conn.held {
                    conn.held = true;
                    self.held.push(key);
                }
            }
            if !conn.broken && self.send(key) {
                // The subscriber's socket took everything and more is
                // ready: continue next turn rather than hog this one.
                self.ready.push(key);
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.paused && conn.output.pending() < max_output / 2 {
                self.ready.push(key);
            }
            if conn.is_finished() {
                self.close(key);
            }
        }
        self.dirty.clear();
        self.core.end_turn();
        let conns = &self.conns;
        self.core.prune_timers(|key, id| {
            conns
                .get(key)
                .and_then(|c| c.session.wait)
                .is_some_and(|w| w.id == id)
        });
    }

    /// Queues every connection with held replies for settling this turn.
    fn release_held(&mut self) {
        for key in std::mem::take(&mut self.held) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.held = false;
                mark_dirty(conn, key, &mut self.dirty);
            }
        }
    }

    /// Writes a connection's replies until the socket would block, topping
    /// up a subscription's stream from the log as it drains (a few windows
    /// per turn at most). Returns whether the stream has more ready.
    fn send(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        for _ in 0..4 {
            let more = self.core.fill_subscription(
                key,
                &mut conn.session,
                &mut conn.output,
                config::SUBSCRIPTION_WINDOW,
            );
            if conn.output.has_sendable() {
                match conn.flush() {
                    Ok(n) => self.core.stats.bytes_out += n as u64,
                    Err(e) => {
                        debug!("peer={} write failed: {e}", conn.peer);
                        conn.broken = true;
                        return false;
                    }
                }
            }
            if !more || conn.output.has_sendable() {
                // Done, or the socket is full: a writable event follows.
                return false;
            }
        }
        true
    }

    fn close(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        self.core.forget(key, &conn.session);
        self.core.stats.connections_current -= 1;
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            debug!("peer={} deregister: {e}", conn.peer);
        }
        debug!(
            "close token={key} peer={} connections={}",
            conn.peer,
            self.conns.len()
        );
    }

    /// Stops accepting, writes and syncs the log, sends what replies it can.
    fn shutdown(mut self) -> Result<(), BrokerError> {
        info!("shutting down: connections={}", self.conns.len());
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.finish_turn();
        self.core.sync_all();
        // Replies that waited for a sync (--fsync always) can go now.
        self.release_held();
        self.finish_turn();
        let s = &self.core.stats;
        info!(
            "stopped: produced={} consumed={} connections_total={}",
            s.produced, s.consumed, s.connections_total
        );
        Ok(())
    }

    fn warn_limited(&mut self, message: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            self.last_warning = Some(now);
            warn!("{message}");
        } else {
            debug!("{message}");
        }
    }
}

/// Decodes and executes the requests in `input`. Returns how many bytes it
/// used: fewer than all when the connection's output is over `max_output`
/// (the connection is then paused) or a request parked (later requests
/// wait); all of them when it quit (the rest is dropped).
fn process(
    core: &mut Core,
    key: usize,
    conn: &mut Connection,
    input: &[u8],
    max_output: usize,
) -> usize {
    let mut used = 0;
    while used < input.len() {
        if conn.output.pending() >= max_output {
            conn.paused = true;
            break;
        }
        let (n, frame) = conn.decoder.decode(&input[used..]);
        used += n;
        match frame {
            None => {}
            Some(Frame::Line(line)) => {
                match core.execute(key, conn.peer, &mut conn.session, &mut conn.output, line) {
                    Control::Continue => {}
                    Control::Park => break,
                    Control::Quit => {
                        conn.quitting = true;
                        return input.len();
                    }
                }
            }
            Some(Frame::TooLong) => {
                debug!("peer={} request line too long", conn.peer);
                core.too_long(&mut conn.output);
            }
        }
    }
    used
}

/// Reads the `AUTH` token: the file's content without trailing whitespace.
fn read_token(path: &std::path::Path) -> Result<Vec<u8>, BrokerError> {
    let err = |why: String| BrokerError::AuthToken {
        path: path.to_path_buf(),
        why,
    };
    let mut token = fs::read(path).map_err(|e| err(e.to_string()))?;
    while token.last().is_some_and(|b| b.is_ascii_whitespace()) {
        token.pop();
    }
    if token.is_empty() {
        return Err(err("the file is empty".into()));
    }
    if token.contains(&b'\n') {
        return Err(err("the token must be one line".into()));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o004 != 0
        {
            warn!(
                "auth token file {} is readable by every user",
                path.display()
            );
        }
    }
    Ok(token)
}

fn mark_dirty(conn: &mut Connection, key: usize, dirty: &mut Vec<usize>) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(key);
    }
}

/// Tells a client it cannot be served and closes it.
fn reject(mut stream: TcpStream) {
    // A fresh socket's send buffer is empty, so this does not block or
    // write short; if it fails the client just sees the close.
    let _ = stream.write(reply::TOO_MANY_CONNECTIONS);
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Resolves `HOST:PORT`, preferring IPv4 so `localhost` means 127.0.0.1.
fn resolve(addr: &str) -> io::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address found"))
}

/// Takes an exclusive `flock` on `DIR/.lock` so two brokers never append to
/// the same log. The lock dies with the process, even after `kill -9`.
fn lock_data_dir(dir: &std::path::Path) -> Result<File, BrokerError> {
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| BrokerError::DataDir {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let source = io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(BrokerError::Locked { path });
        }
        return Err(BrokerError::DataDir { path, source });
    }
    Ok(file)
}

/// Raises the soft limit on open files towards `wanted` (within the hard
/// limit), so `--max-connections` is not cut short by a default of 1024.
fn raise_fd_limit(wanted: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= wanted {
            return;
        }
        let target = wanted.min(lim.rlim_max);
        if target > lim.rlim_cur {
            lim.rlim_cur = target;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                warn!("could not raise the open file limit to {target}");
            }
        }
        if target < wanted {
            warn!("open file limit is {target}; fewer than max_connections clients can connect");
        }
    }
}
