//! The server: one thread, one `mio::Poll`, every client in a `Slab`. The
//! only module that touches sockets; it knows no protocol beyond handing
//! bytes to a connection's session.
//!
//! Each loop turn:
//! 1. wait for readiness (or a timer, or `0` if some connection still has
//!    input we did not get to, or news is waiting);
//! 2. accept new clients; read requests from readable clients and hand
//!    them to their sessions, which call the broker (`PRODUCE` only
//!    *stages* a message and queues a pending `ACK`);
//! 3. the before-sleep step: the broker writes what was staged (one write
//!    per partition), hands slow file work to helper threads, and produces
//!    settlements (tickets done or failed) and wake-ups, which go to the
//!    connections they concern;
//! 4. write each touched connection's replies to its socket once, keeping
//!    the rest for a later writable event.
//!
//! So an `ACK` never leaves before its message is as durable as promised,
//! and replies are coalesced into one socket write per connection per
//! turn. No call here blocks on a client: sockets are non-blocking and are
//! read and written until `WouldBlock`.

pub mod conn;
pub mod metrics;
pub mod syncer;

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::broker::{Broker, ConnId, Wake};
use crate::config::{self, Config};
use crate::protocol::kafka::session::Advertised;
use crate::protocol::text::{self, reply};
use crate::protocol::{Control, Ctx, Session, SessionParams};
use crate::storage::StorageError;
use crate::storage::files;
use conn::{Connection, State};
use syncer::Helpers;

const LISTENER: Token = Token(usize::MAX - 1);
const KAFKA_LISTENER: Token = Token(usize::MAX - 4);
const SIGNALS: Token = Token(usize::MAX - 2);
const WAKER: Token = Token(usize::MAX - 3);

/// How long accepting pauses when the process is out of file descriptors
/// and no spare descriptor is left to turn clients away with.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this interval for a repeating condition.
const WARN_EVERY: Duration = Duration::from_secs(1);
/// Rounds of delivering news (settlements, wake-ups) per turn before the
/// rest waits for the next turn.
const NEWS_ROUNDS: usize = 4;
/// Wake-ups (a parked `FETCH` with data, a group's news) handed to their
/// connections per turn; the rest wait for the next turn, after the new
/// events. Each costs a read from the log and a `send` (about 10 us here),
/// so one message produced to a topic with 8,000 parked fetches no longer
/// makes one 80 ms turn that every other client waits behind.
const WAKES_PER_TURN: usize = 128;
/// How often connections are checked for `--request-timeout-ms` and
/// `--idle-timeout-secs` (so a timeout fires up to this much late).
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// A connection must be stuck or idle this long before it is closed to
/// make room for a new client.
const EVICT_MIN_AGE: Duration = Duration::from_secs(1);
/// After finding nothing to close for a new client, how long the server
/// turns new clients away before looking again (a scan is O(connections)).
const EVICT_RETRY: Duration = Duration::from_millis(100);

/// What [`Server::send`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Nothing more, or the socket is full (a writable event follows).
    Done,
    /// A stream has more ready and the socket takes it.
    More,
    /// A stream got nothing from the log this turn (budget spent).
    Starved,
}

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

/// Stops a running server from another thread (in-process tests, or an
/// embedding program).
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the server to stop: it syncs, sends what replies it can and
    /// returns from `run`/`serve`.
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the server: {e}");
        }
    }
}

/// The server: listener, clients, broker.
pub struct Server {
    poll: Poll,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    listener: Option<TcpListener>,
    /// `--kafka-addr`: a listener for Kafka clients only.
    kafka_listener: Option<TcpListener>,
    /// `--metrics-addr`: the Prometheus endpoint and its connections.
    metrics: Option<metrics::Metrics>,
    signals: Option<Signals>,
    local_addr: SocketAddr,
    display_addr: String,
    conns: Slab<Connection>,
    /// Generation of each slab slot, bumped when a connection takes it.
    generations: Vec<u32>,
    broker: Broker,
    helpers: Helpers,
    config: Config,
    /// Socket reads land here; only unfinished requests are copied out.
    scratch: Vec<u8>,
    /// Connections with output to send at the end of the turn.
    dirty: Vec<usize>,
    /// Connections to service next turn without waiting for an event.
    ready: Vec<usize>,
    /// Wake-ups not yet handed to their connections: at most one per
    /// waiting connection (a wait ends once), so bounded by
    /// `--max-connections` (and the groups' members, for group news).
    woken: VecDeque<(ConnId, Wake)>,
    /// Wake-ups this turn may still hand out ([`WAKES_PER_TURN`]).
    wakes_left: usize,
    turn: u64,
    accept_paused_until: Option<Instant>,
    /// A descriptor kept in reserve so that, out of descriptors, the server
    /// can still accept and turn away a client instead of spinning.
    spare_fd: Option<File>,
    last_warning: Option<Instant>,
    /// When connections are next checked for timeouts.
    next_sweep: Instant,
    /// Some connection is in the middle of a request (or idle timeouts
    /// are on): timeouts must be checked even while nothing happens.
    sweep_armed: bool,
    /// The table was full and no connection could be closed for a new
    /// client: turn clients away without looking again until then.
    no_victim_until: Option<Instant>,
    _lock: File,
}

/// Connections the kernel queues for `accept` on each listener (capped by
/// `net.core.somaxconn`, 4096 on current kernels). The standard library's
/// `bind` asks for 128, which a burst of clients reconnecting after a
/// restart overflows: each dropped SYN costs its client a 1-3 s retry.
/// mio's `bind` (the Kafka and metrics listeners) asks for 1024 too.
const LISTEN_BACKLOG: libc::c_int = 1024;

/// Sets the accept queue of an already listening socket to
/// [`LISTEN_BACKLOG`] (Linux takes a second `listen` as a resize).
fn set_backlog(listener: &std::net::TcpListener) -> std::io::Result<()> {
    // SAFETY: listen(2) on a descriptor the listener owns for this call.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Server {
    /// Binds the listening address, then opens the data directory and
    /// recovers the logs. Nothing is created on disk if the address cannot
    /// be bound.
    pub fn bind(config: Config) -> Result<Server, BrokerError> {
        let bind_err = |source| BrokerError::Bind {
            addr: config.addr.clone(),
            source,
        };
        let addr = resolve(&config.addr).map_err(bind_err)?;
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        Self::with_listener(config, listener)
    }

    /// Serves on an already-bound listener (tests bind `127.0.0.1:0`).
    pub fn with_listener(
        mut config: Config,
        listener: std::net::TcpListener,
    ) -> Result<Server, BrokerError> {
        let bind_err = |source| BrokerError::Bind {
            addr: config.addr.clone(),
            source,
        };
        listener.set_nonblocking(true).map_err(bind_err)?;
        set_backlog(&listener).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let mut listener = TcpListener::from_std(listener);
        let mut kafka_listener = match &config.kafka_addr {
            Some(addr) => {
                let err = |source| BrokerError::Bind {
                    addr: addr.clone(),
                    source,
                };
                let resolved = resolve(addr).map_err(err)?;
                Some(TcpListener::bind(resolved).map_err(err)?)
            }
            None => None,
        };
        // The split of descriptors between clients and log files, before
        // any log is opened.
        let plan = files::plan_descriptors(config.max_connections, config.max_open_files);
        config.max_connections = plan.connections;
        config.max_open_files = plan.files;
        let mut metrics = match &config.metrics_addr {
            Some(addr) => Some(metrics::Metrics::bind(addr, config.request_timeout)?),
            None => None,
        };
        let auth_token = match &config.auth_token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let lock = lock_data_dir(&config.data_dir)?;
        let broker = Broker::open(&config, auth_token)?;
        let poll = Poll::new().map_err(BrokerError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(BrokerError::Poll)?);
        let wake = {
            let waker = waker.clone();
            Arc::new(move || {
                if let Err(e) = waker.wake() {
                    error!("helper: cannot wake the server: {e}");
                }
            })
        };
        let helpers = Helpers::start(wake).map_err(BrokerError::Poll)?;
        let host = config
            .addr
            .rsplit_once(':')
            .map_or(config.addr.as_str(), |(h, _)| h);
        let display_addr = format!("{host}:{}", local_addr.port());
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(BrokerError::Poll)?;
        if let Some(l) = &mut kafka_listener {
            poll.registry()
                .register(l, KAFKA_LISTENER, Interest::READABLE)
                .map_err(BrokerError::Poll)?;
            if let Ok(a) = l.local_addr() {
                info!("listening for kafka clients only addr={a}");
            }
        }
        if let Some(m) = &mut metrics {
            m.register(poll.registry()).map_err(BrokerError::Poll)?;
        }
        info!(
            "listening addr={local_addr} data_dir={} max_connections={} max_line_bytes={} auth={}",
            config.data_dir.display(),
            config.max_connections,
            config.max_line_bytes,
            if broker.auth_required() {
                "token"
            } else {
                "off"
            }
        );
        let mut server = Server {
            poll,
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            listener: Some(listener),
            kafka_listener,
            metrics,
            signals: None,
            local_addr,
            display_addr,
            conns: Slab::new(),
            generations: Vec::new(),
            broker,
            helpers,
            config,
            scratch: vec![0; config::READ_CHUNK],
            dirty: Vec::new(),
            ready: Vec::new(),
            woken: VecDeque::new(),
            wakes_left: WAKES_PER_TURN,
            turn: 0,
            accept_paused_until: None,
            spare_fd: File::open("/dev/null").ok(),
            last_warning: None,
            next_sweep: Instant::now() + SWEEP_EVERY,
            sweep_armed: false,
            no_victim_until: None,
            _lock: lock,
        };
        // Index rebuilds and orphan deletions found at start.
        server.submit_jobs();
        Ok(server)
    }

    /// The address the listener really bound (with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `HOST:PORT` as given on the command line, with the real port.
    pub fn display_addr(&self) -> &str {
        &self.display_addr
    }

    /// A handle that stops the server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: self.stop.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Serves until SIGINT or SIGTERM (or a shutdown handle), then syncs
    /// and returns. A file size limit (`SIGXFSZ`) and a hang-up (`SIGHUP`)
    /// do not stop it: the first becomes a `STORAGE_ERROR`, the second is
    /// ignored (log to a file with your service manager).
    pub fn run(mut self) -> Result<(), BrokerError> {
        self.handle_signals()?;
        self.serve()
    }

    /// Installs the signal handling [`run`](Self::run) uses. Call it
    /// before telling anyone the broker is up (a SIGTERM sent on reading
    /// the start line must be a clean stop, not the default action);
    /// `run` calls it if it was not called.
    pub fn handle_signals(&mut self) -> Result<(), BrokerError> {
        if self.signals.is_some() {
            return Ok(());
        }
        ignore_signal(libc::SIGXFSZ);
        ignore_signal(libc::SIGHUP);
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(BrokerError::Poll)?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(BrokerError::Poll)?;
        // A signal that came in between is not lost: it is pending here.
        if signals.pending().next().is_some() {
            self.stop.store(true, Ordering::SeqCst);
        }
        self.signals = Some(signals);
        Ok(())
    }

    /// Serves until a [`ShutdownHandle`] says stop (no signal handling).
    pub fn serve(mut self) -> Result<(), BrokerError> {
        let mut events = Events::with_capacity(1024);
        let mut readable = Vec::new();
        loop {
            let sync_wanted = self.broker.sync_wanted();
            let timeout = if sync_wanted
                || self.broker.has_news()
                || !self.woken.is_empty()
                || self.stop.load(Ordering::SeqCst)
            {
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
            self.broker.begin_turn();
            self.wakes_left = WAKES_PER_TURN;
            if sync_wanted {
                if events.is_empty() && self.ready.is_empty() && self.woken.is_empty() {
                    // Nothing else to do: sync here instead of handing it
                    // to a thread and sleeping until it wakes us (two
                    // thread switches off every waiting client's latency).
                    self.broker.sync_inline();
                    self.finish_turn();
                    continue;
                }
                // More work waiting: let the helper threads overlap syncs
                // with serving it.
                self.broker.start_syncs();
            }
            let mut stop = self.stop.load(Ordering::SeqCst);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(false),
                    KAFKA_LISTENER => self.accept(true),
                    metrics::LISTENER => self.metrics_accept(),
                    token if metrics::is_connection(token) => self.metrics_event(token, event),
                    SIGNALS => {
                        stop |= self
                            .signals
                            .as_mut()
                            .is_some_and(|s| s.pending().next().is_some());
                    }
                    WAKER => {
                        for (journal, result) in self.helpers.completed() {
                            self.broker.job_done(journal, result);
                        }
                        stop |= self.stop.load(Ordering::SeqCst);
                    }
                    Token(key) => {
                        let Some(conn) = self.conns.get_mut(key) else {
                            continue;
                        };
                        if event.is_error() {
                            // Reset by the peer: even a parked connection
                            // that reads nothing must go.
                            conn.state = State::Closed;
                        }
                        mark_dirty(conn, key, &mut self.dirty);
                        if event.is_read_closed() {
                            conn.drain = true;
                            conn.hup = true;
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
                self.accept(false);
                self.accept(true);
            }
            let now = Instant::now();
            self.broker.run_timers(now);
            self.metrics_timers(now);
            if now >= self.next_sweep {
                self.sweep(now);
            }
            for &key in &self.ready {
                // Serviced without an event: read until WouldBlock.
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.drain = true;
                }
            }
            // Connections left over from the last turn first (they
            // yielded their share), then the new events: round-robin.
            let mut order = std::mem::take(&mut self.ready);
            order.append(&mut readable);
            for key in order {
                self.service(key);
            }
            self.finish_turn();
            if stop {
                return self.shutdown();
            }
        }
    }

    fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let sweep = (self.sweep_armed
            || (self.config.idle_timeout.is_some() && !self.conns.is_empty()))
        .then_some(self.next_sweep);
        let deadline = [
            self.accept_paused_until,
            self.broker.next_deadline(),
            sweep,
            self.metrics_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        // Round up so a timer is never found still a hair in the future.
        deadline.map(|t| t.saturating_duration_since(Instant::now()) + Duration::from_millis(1))
    }

    fn accept(&mut self, kafka: bool) {
        if self.accept_paused_until.is_some() {
            return;
        }
        if self.spare_fd.is_none() {
            self.spare_fd = File::open("/dev/null").ok();
        }
        loop {
            let listener = if kafka {
                &self.kafka_listener
            } else {
                &self.listener
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, kafka),
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
                        let listener = if kafka {
                            &self.kafka_listener
                        } else {
                            &self.listener
                        };
                        let turned_away = listener.as_ref().map(|l| l.accept());
                        let backlog_empty = match turned_away {
                            Some(Ok((stream, peer))) => {
                                self.warn_limited(&format!(
                                    "out of file descriptors ({e}); turned away peer={peer}"
                                ));
                                reject(stream);
                                self.broker.stats.connections_rejected += 1;
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

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr, kafka: bool) {
        if self.conns.len() >= self.config.max_connections && !self.evict_for(peer) {
            self.warn_limited(&format!(
                "max_connections={} reached; turning away peer={peer}",
                self.config.max_connections
            ));
            reject(stream);
            self.broker.stats.connections_rejected += 1;
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!("peer={peer} set_nodelay: {e}");
        }
        let advertised = self.advertised(&stream);
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
        if self.generations.len() <= key {
            self.generations.resize(key + 1, 0);
        }
        self.generations[key] = self.generations[key].wrapping_add(1);
        let id = ConnId {
            slot: key as u32,
            generation: self.generations[key],
        };
        let params = SessionParams {
            max_line_bytes: self.config.max_line_bytes,
            max_request_bytes: self.config.max_request_bytes,
            authenticated: !self.broker.auth_required(),
            default_topic: text::session::default_topic(&mut self.broker),
            advertised,
        };
        let session = if kafka {
            Session::kafka(&params)
        } else {
            Session::Undecided(params)
        };
        entry.insert(Connection::new(stream, peer, id, session));
        self.broker.stats.connections_total += 1;
        self.broker.stats.connections_current += 1;
        debug!(
            "accept token={key} peer={peer} connections={}",
            self.conns.len()
        );
    }

    /// The address Metadata gives this connection's Kafka client:
    /// `--advertise`, else the address it connected to (an IP it reached).
    fn advertised(&self, stream: &TcpStream) -> Advertised {
        if let Some(a) = &self.config.advertise
            && let Some((host, port)) = a.rsplit_once(':')
        {
            return Advertised {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port: port.parse().unwrap_or(9092),
            };
        }
        let local = stream.local_addr().unwrap_or(self.local_addr);
        Advertised {
            host: local.ip().to_string(),
            port: i32::from(local.port()),
        }
    }

    /// The slab key of a live connection.
    fn key_of(&self, id: ConnId) -> Option<usize> {
        let key = id.slot as usize;
        (self.generations.get(key) == Some(&id.generation) && self.conns.contains(key))
            .then_some(key)
    }

    /// Reads and handles a connection's requests, within a per-turn
    /// budget. Once the peer has closed its sending side, nothing waits
    /// for it: a parked request is answered with what is there now (text)
    /// or dropped with the connection (Kafka), and the remaining input is
    /// read on the next turn.
    fn service(&mut self, key: usize) {
        self.service_input(key);
        let max_output = self.config.max_output_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.hup && conn.state == State::Parked {
            let mut ctx = Ctx {
                broker: &mut self.broker,
                out: &mut conn.output,
                conn: conn.id,
                peer: conn.peer,
                max_output,
            };
            match conn.session.input_closed(&mut ctx) {
                Some(true) => {
                    conn.state = State::Reading;
                    conn.drain = true;
                    self.ready.push(key);
                }
                Some(false) => {}
                None => conn.state = State::Closed,
            }
        }
    }

    fn service_input(&mut self, key: usize) {
        let max_output = self.config.max_output_bytes;
        let Server {
            conns,
            broker,
            scratch,
            dirty,
            ready,
            turn,
            sweep_armed,
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
        match conn.state {
            State::Reading => {}
            State::Paused => {
                // The request timeout counts only while the connection
                // reads: a paused one waits for its client to read.
                conn.state = State::Reading;
                if conn.request_since.is_some() {
                    conn.request_since = Some(Instant::now());
                }
            }
            State::Parked | State::Draining | State::Closed => return,
        }
        let Connection {
            stream,
            session,
            output,
            stash,
            state,
            eof,
            id,
            peer,
            last_progress,
            request_since,
            ..
        } = conn;
        let mut ctx = Ctx {
            broker,
            out: output,
            conn: *id,
            peer: *peer,
            max_output,
        };
        // A request that yielded last turn runs first.
        if let Some(control) = session.run_deferred(&mut ctx) {
            apply_control(state, control);
            if control == Control::Yield {
                ready.push(key);
                return;
            }
            if *state != State::Reading {
                return;
            }
        }
        if !stash.is_empty() {
            let input = std::mem::take(stash);
            let (used, control) = session.handle_input(&mut ctx, &input);
            apply_control(state, control);
            if used < input.len() && *state != State::Draining {
                *stash = input[used..].to_vec();
            }
            if control == Control::Yield {
                ready.push(key);
                return;
            }
            if *state != State::Reading {
                return;
            }
        }
        if *eof {
            return;
        }
        for _ in 0..config::READS_PER_TURN {
            if ctx.out.pending() >= max_output {
                *state = State::Paused;
                return;
            }
            match read_retrying(stream, scratch) {
                Ok(0) => {
                    *eof = true;
                    if session.buffered() > 0 {
                        debug!("peer={peer} closed in the middle of a request; dropping it");
                    }
                    // A subscription ends once it has caught up.
                    if session.input_closed(&mut ctx).is_none() {
                        *state = State::Closed;
                    }
                    return;
                }
                Ok(n) => {
                    ctx.broker.stats.bytes_in += n as u64;
                    let now = Instant::now();
                    *last_progress = now;
                    let (used, control) = session.handle_input(&mut ctx, &scratch[..n]);
                    if session.in_request() {
                        if request_since.is_none() {
                            *request_since = Some(now);
                            *sweep_armed = true;
                        }
                    } else {
                        *request_since = None;
                    }
                    apply_control(state, control);
                    if *state == State::Draining {
                        return;
                    }
                    if used < n {
                        stash.extend_from_slice(&scratch[used..n]);
                    }
                    if control == Control::Yield {
                        // Its share of this turn is used: next turn.
                        ready.push(key);
                        return;
                    }
                    if *state != State::Reading {
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
                    debug!("peer={peer} read failed: {e}");
                    *state = State::Closed;
                    return;
                }
            }
        }
        // Budget used up; the socket may hold more, and no new edge will
        // say so.
        ready.push(key);
    }

    /// The table is full: closes the connection that can best make room
    /// for a new client (see [`Connection::eviction_rank`]). Returns
    /// whether one was closed.
    fn evict_for(&mut self, peer: SocketAddr) -> bool {
        let now = Instant::now();
        if self.no_victim_until.is_some_and(|t| now < t) {
            return false;
        }
        let victim = self
            .conns
            .iter()
            .filter_map(|(key, c)| c.eviction_rank(now, EVICT_MIN_AGE).map(|r| (r, key)))
            .min();
        let Some((_, key)) = victim else {
            self.no_victim_until = Some(now + EVICT_RETRY);
            return false;
        };
        let message = format!(
            "max_connections={} reached; closing idle peer={} to admit peer={peer}",
            self.config.max_connections, self.conns[key].peer
        );
        self.warn_limited(&message);
        let conn = &mut self.conns[key];
        if matches!(conn.session, Session::Text(_)) {
            // Best effort: the socket may be full, then the client just
            // sees the close.
            let _ = conn.stream.write(reply::EVICTED);
        }
        self.broker.stats.connections_evicted += 1;
        self.close(key);
        true
    }

    /// Closes connections whose request or idle timeout passed, and
    /// re-arms the sweep if any connection is still mid-request. O(number
    /// of connections), every [`SWEEP_EVERY`] at most.
    fn sweep(&mut self, now: Instant) {
        self.next_sweep = now + SWEEP_EVERY;
        let request_timeout = self.config.request_timeout;
        let idle_timeout = self.config.idle_timeout;
        let mut armed = false;
        let mut expired = Vec::new();
        for (key, c) in self.conns.iter() {
            if matches!(c.state, State::Closed) {
                continue;
            }
            if let (Some(since), Some(limit)) = (c.request_since, request_timeout) {
                if c.state == State::Reading && now.saturating_duration_since(since) >= limit {
                    expired.push((key, true));
                    continue;
                }
                armed = true;
            }
            if let Some(limit) = idle_timeout
                && c.state == State::Reading
                && c.request_since.is_none()
                && now.saturating_duration_since(c.last_progress) >= limit
                && !c.session.is_waiting()
                && c.output.is_empty()
            {
                expired.push((key, false));
            }
        }
        self.sweep_armed = armed;
        for (key, request) in expired {
            let conn = &mut self.conns[key];
            debug!(
                "peer={} {} timeout; closing",
                conn.peer,
                if request { "request" } else { "idle" }
            );
            if matches!(conn.session, Session::Text(_)) {
                let line = if request {
                    let ms = request_timeout.map_or(0, |d| d.as_millis());
                    format!(
                        "{}request not completed within {ms} ms (--request-timeout-ms); closing\n",
                        String::from_utf8_lossy(reply::REQUEST_TIMEOUT)
                    )
                } else {
                    let secs = idle_timeout.map_or(0, |d| d.as_secs());
                    format!(
                        "{}idle for {secs} s (--idle-timeout-secs); closing\n",
                        String::from_utf8_lossy(reply::IDLE_TIMEOUT)
                    )
                };
                // Queued after any replies, written once if the socket
                // takes it; the connection closes either way.
                conn.output.push(line.as_bytes());
                let _ = conn.flush();
            }
            if request {
                self.broker.stats.request_timeouts += 1;
            } else {
                self.broker.stats.idle_timeouts += 1;
            }
            conn.state = State::Closed;
            self.close(key);
        }
    }

    /// Hands the broker's file jobs to the helper threads.
    fn submit_jobs(&mut self) {
        for (journal, job) in self.broker.take_jobs() {
            self.helpers.submit(journal, job);
        }
    }

    /// The before-sleep step: the broker writes what was staged; then
    /// settlements and wake-ups go to their connections, and each touched
    /// connection's replies are sent.
    fn finish_turn(&mut self) {
        self.broker.flush();
        for _ in 0..NEWS_ROUNDS {
            let wakes_waiting = !self.woken.is_empty() && self.wakes_left > 0;
            if !self.broker.has_news() && !wakes_waiting {
                break;
            }
            self.deliver_news();
            self.broker.flush();
        }
        self.submit_jobs();
        let max_output = self.config.max_output_bytes;
        let mut later = Vec::new();
        for i in 0..self.dirty.len() {
            let key = self.dirty[i];
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            let paused = conn.state == State::Paused;
            if paused != conn.counted_paused {
                conn.counted_paused = paused;
                if paused {
                    self.broker.stats.connections_paused += 1;
                } else {
                    self.broker.stats.connections_paused -= 1;
                }
            }
            if conn.state != State::Closed {
                match self.send(key) {
                    Sent::Done => {}
                    // Got nothing this turn: first in line next turn.
                    Sent::Starved => self.ready.push(key),
                    // The subscriber's socket took everything and more is
                    // ready: continue next turn, after the starved ones.
                    Sent::More => later.push(key),
                }
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.state == State::Paused && conn.output.pending() < max_output / 2 {
                self.ready.push(key);
            }
            if conn.is_finished() {
                self.close(key);
            }
        }
        self.ready.append(&mut later);
        self.dirty.clear();
    }

    /// Gives settlements and wake-ups to the connections they concern.
    fn deliver_news(&mut self) {
        for s in self.broker.take_settled() {
            let Some(key) = self.key_of(s.conn) else {
                continue;
            };
            let conn = &mut self.conns[key];
            conn.output.settle(&s);
            mark_dirty(conn, key, &mut self.dirty);
            if conn.state == State::Parked && !conn.output.has_pending_replies() {
                let mut ctx = Ctx {
                    broker: &mut self.broker,
                    out: &mut conn.output,
                    conn: conn.id,
                    peer: conn.peer,
                    max_output: self.config.max_output_bytes,
                };
                if let Some(control) = conn.session.run_deferred(&mut ctx) {
                    match control {
                        Control::Park => {}
                        Control::Quit => conn.state = State::Draining,
                        Control::Continue | Control::Pause | Control::Yield => {
                            conn.state = State::Reading;
                            self.ready.push(key);
                        }
                    }
                }
            }
        }
        let max_output = self.config.max_output_bytes;
        self.woken.extend(self.broker.take_woken());
        while self.wakes_left > 0
            && let Some((id, wake)) = self.woken.pop_front()
        {
            self.wakes_left -= 1;
            let Some(key) = self.key_of(id) else {
                continue;
            };
            let conn = &mut self.conns[key];
            let mut ctx = Ctx {
                broker: &mut self.broker,
                out: &mut conn.output,
                conn: id,
                peer: conn.peer,
                max_output,
            };
            if conn.session.on_wake(&mut ctx, wake) && conn.state == State::Parked {
                conn.state = State::Reading;
                self.ready.push(key);
            }
            mark_dirty(conn, key, &mut self.dirty);
        }
    }

    /// Writes a connection's replies until the socket would block, topping
    /// up a subscription's stream from the log as it drains (a few windows
    /// per turn at most, none once the turn's read budget is spent).
    /// Returns whether the stream has more ready, and whether it got
    /// nothing from the log this turn for want of budget.
    fn send(&mut self, key: usize) -> Sent {
        let max_output = self.config.max_output_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return Sent::Done;
        };
        for _ in 0..4 {
            let more = if conn.state == State::Draining {
                false
            } else if self.broker.over_read_budget() && conn.session.is_streaming() {
                // Send what is queued; the stream goes on next turn.
                if conn.output.has_sendable() {
                    match conn.flush() {
                        Ok(n) => {
                            self.broker.stats.bytes_out += n as u64;
                            if n > 0 {
                                conn.last_progress = Instant::now();
                            }
                        }
                        Err(e) => {
                            debug!("peer={} write failed: {e}", conn.peer);
                            conn.state = State::Closed;
                            return Sent::Done;
                        }
                    }
                }
                return if conn.output.has_sendable() {
                    Sent::Done
                } else {
                    Sent::Starved
                };
            } else {
                let mut ctx = Ctx {
                    broker: &mut self.broker,
                    out: &mut conn.output,
                    conn: conn.id,
                    peer: conn.peer,
                    max_output,
                };
                conn.session.refill(&mut ctx, config::SUBSCRIPTION_WINDOW)
            };
            if conn.output.has_sendable() {
                match conn.flush() {
                    Ok(n) => {
                        self.broker.stats.bytes_out += n as u64;
                        if n > 0 {
                            conn.last_progress = Instant::now();
                        }
                    }
                    Err(e) => {
                        debug!("peer={} write failed: {e}", conn.peer);
                        conn.state = State::Closed;
                        return Sent::Done;
                    }
                }
            }
            if !more || conn.output.has_sendable() {
                // Done, or the socket is full: a writable event follows.
                return Sent::Done;
            }
        }
        Sent::More
    }

    fn close(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        let mut ctx = Ctx {
            broker: &mut self.broker,
            out: &mut conn.output,
            conn: conn.id,
            peer: conn.peer,
            max_output: self.config.max_output_bytes,
        };
        conn.session.close(&mut ctx);
        self.broker.stats.connections_current -= 1;
        if conn.counted_paused {
            self.broker.stats.connections_paused -= 1;
        }
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            debug!("peer={} deregister: {e}", conn.peer);
        }
        debug!(
            "close token={key} peer={} connections={}",
            conn.peer,
            self.conns.len()
        );
    }

    /// Stops accepting, writes and syncs everything, sends what replies it
    /// can.
    fn shutdown(mut self) -> Result<(), BrokerError> {
        info!("shutting down: connections={}", self.conns.len());
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some(mut listener) = self.kafka_listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.finish_turn();
        // Let helper threads finish what they started, then do the rest
        // here: nothing is left half-done on disk.
        for (journal, result) in self.helpers.finish() {
            self.broker.job_done(journal, result);
        }
        self.broker.sync_all();
        loop {
            let jobs = self.broker.take_jobs();
            if jobs.is_empty() {
                break;
            }
            for (journal, job) in jobs {
                if let Some(result) = job.run() {
                    self.broker.job_done(journal, result);
                }
            }
        }
        // Replies that waited for a sync can go now.
        self.finish_turn();
        let s = &self.broker.stats;
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

fn apply_control(state: &mut State, control: Control) {
    match control {
        Control::Continue => {}
        Control::Pause => *state = State::Paused,
        Control::Park => *state = State::Parked,
        Control::Quit => *state = State::Draining,
        // Still reading; the caller queues it for the next turn.
        Control::Yield => {}
    }
}

/// Reads into `buf`, retrying on `Interrupted`. `Ok(0)` is end of input.
fn read_retrying(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn mark_dirty(conn: &mut Connection, key: usize, dirty: &mut Vec<usize>) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(key);
    }
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

/// Ignores a signal whose default action would end the process.
fn ignore_signal(signal: libc::c_int) {
    // SAFETY: SIG_IGN installs no handler code; it only changes the
    // disposition of a signal this process does not otherwise use.
    unsafe {
        libc::signal(signal, libc::SIG_IGN);
    }
}
