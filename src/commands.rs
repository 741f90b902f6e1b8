//! What requests do: the topics, committed offsets, counters, and the
//! handlers that turn a parsed request into reply bytes. No sockets here:
//! the reactor hands in a connection's session and output buffer.
//!
//! Writes are staged and settled later: `PRODUCE` and `COMMIT` queue a
//! *held* reply that the reactor releases after the turn's single write to
//! the file (see [`crate::connection::Output`]). Each file that is written
//! this way is a *journal* with a failure epoch, so a held reply can tell,
//! after the fact, whether its write was the one that failed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::config::{self, Config};
use crate::connection::{Hold, HoldState, Output, Session, Subscription, Wait};
use crate::offsets::Offsets;
use crate::protocol::{self, Request, is_valid_name, push_u64, reply};
use crate::storage::{Log, StorageError};

/// The default topic: the one a connection starts on, stored as
/// `kafka_log.txt` like the original project's single log.
pub const DEFAULT_TOPIC: &[u8] = b"default";
/// Where the other topics live, one directory each.
pub const TOPICS_DIR: &str = "topics";
/// A topic's log file inside its directory.
pub const TOPIC_LOG_FILE: &str = "log.txt";
/// The journal id of the committed-offsets file in held replies.
const OFFSETS_JOURNAL: u32 = u32::MAX;
/// `INVALID_TOKEN` replies before the connection is closed.
const MAX_AUTH_FAILURES: u8 = 3;

/// Counters for the whole broker (see `STATS`).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub connections_current: u64,
    pub connections_total: u64,
    pub connections_rejected: u64,
    pub produced: u64,
    pub consumed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub parked_fetches: u64,
    pub subscribers: u64,
}

/// An append that failed, remembered until the replies waiting for it are
/// settled at the end of the turn.
#[derive(Debug)]
struct Failure {
    /// The journal's epoch the failed write was staged in.
    epoch: u32,
    /// The first sequence number of the failed write; earlier ones were
    /// written.
    from: u64,
    /// The reply line that replaces each failed held reply.
    reply: Vec<u8>,
}

/// Failure bookkeeping for one file that held replies wait on.
#[derive(Debug, Default)]
struct Journal {
    /// Bumped at every failed write, so a reply staged before the failure
    /// knows it was part of it even if its number is staged again later.
    epoch: u32,
    failures: Vec<Failure>,
}

impl Journal {
    fn record_failure(&mut self, from: u64, err: &StorageError) {
        error!("append failed: {err}");
        let mut reply = reply::STORAGE_ERROR.to_vec();
        reply.extend_from_slice(err.client_reason().as_bytes());
        reply.push(b'\n');
        self.failures.push(Failure {
            epoch: self.epoch,
            from,
            reply,
        });
        self.epoch = self.epoch.wrapping_add(1);
    }

    fn hold_state(&self, hold: &Hold, flushed: u64) -> HoldState<'_> {
        if hold.epoch == self.epoch {
            return if hold.offset < flushed {
                HoldState::Done
            } else {
                HoldState::Pending
            };
        }
        match self.failures.iter().find(|f| f.epoch == hold.epoch) {
            Some(f) if hold.offset >= f.from => HoldState::Failed(&f.reply),
            _ => HoldState::Done,
        }
    }
}

/// One topic: its log and who waits for its next message.
#[derive(Debug)]
pub struct Topic {
    pub name: Box<[u8]>,
    pub log: Log,
    journal: Journal,
    /// Connections with a parked `FETCH` or a caught-up subscription.
    waiters: Vec<usize>,
}

impl Topic {
    fn new(name: &[u8], log: Log) -> Self {
        Topic {
            name: name.into(),
            log,
            journal: Journal::default(),
            waiters: Vec::new(),
        }
    }

    /// Writes staged messages. Returns whether new messages became
    /// readable.
    fn flush(&mut self) -> bool {
        if !self.log.has_staged() {
            return false;
        }
        let from = self.log.flushed_offset();
        match self.log.flush() {
            Ok(written) => !written.is_empty(),
            Err(err) => {
                self.journal.record_failure(from, &err);
                false
            }
        }
    }

    fn name_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }
}

/// What the connection should do after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// The request is parked: read nothing more until it is answered.
    Park,
    /// Send what is queued, then close.
    Quit,
}

/// The broker's state that requests act on.
pub struct Core {
    pub topics: Vec<Topic>,
    by_name: HashMap<Box<[u8]>, u32>,
    data_dir: PathBuf,
    auto_create: bool,
    max_topics: usize,
    offsets: Offsets,
    offsets_journal: Journal,
    pub stats: Stats,
    /// Scratch for reading the log.
    read_buf: Vec<u8>,
    max_line_bytes: usize,
    /// Most message bytes in one `FETCH` reply or subscription refill.
    max_fetch_bytes: usize,
    auth_token: Option<Vec<u8>>,
    started: Instant,
    /// Connections whose wait may be over: new data on their topic.
    pub woken: Vec<usize>,
    /// Deadlines of parked fetches: (when, connection, wait id).
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_wait_id: u64,
}

impl Core {
    /// Opens the default topic, every topic directory, and the committed
    /// offsets, recovering each.
    pub fn open(config: &Config, auth_token: Option<Vec<u8>>) -> Result<Core, StorageError> {
        let dir = &config.data_dir;
        let mut topics = vec![Topic::new(
            DEFAULT_TOPIC,
            Log::open(dir.join(config::LOG_FILE))?,
        )];
        let topics_dir = dir.join(TOPICS_DIR);
        let mut names = match fs::read_dir(&topics_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().into_encoded_bytes())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StorageError::io(&topics_dir, "list", e)),
        };
        names.sort();
        for name in names {
            if !is_valid_name(&name) || name == DEFAULT_TOPIC {
                warn!(
                    "ignoring {}: not a valid topic name",
                    topics_dir
                        .join(String::from_utf8_lossy(&name).as_ref())
                        .display()
                );
                continue;
            }
            let log = Log::open(topic_log_path(dir, &name))?;
            topics.push(Topic::new(&name, log));
        }
        let mut offsets = Offsets::open(dir)?;
        for topic in &topics {
            offsets.clamp(&topic.name, topic.log.flushed_offset())?;
        }
        let by_name = topics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i as u32))
            .collect();
        info!("topics={}", topics.len());
        Ok(Core {
            topics,
            by_name,
            data_dir: dir.clone(),
            auto_create: config.auto_create_topics,
            max_topics: config.max_topics,
            offsets,
            offsets_journal: Journal::default(),
            stats: Stats::default(),
            read_buf: Vec::new(),
            max_line_bytes: config.max_line_bytes,
            max_fetch_bytes: config.max_output_bytes,
            auth_token,
            started: Instant::now(),
            woken: Vec::new(),
            timers: BinaryHeap::new(),
            next_wait_id: 0,
        })
    }

    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        self.auth_token.is_some()
    }

    /// Writes everything staged this turn: one write per topic with new
    /// messages, one for new commits. Wakes the waiters of topics that got
    /// new messages.
    pub fn flush_all(&mut self) {
        for topic in &mut self.topics {
            if topic.flush() {
                self.woken.append(&mut topic.waiters);
            }
        }
        self.flush_offsets();
    }

    fn flush_offsets(&mut self) {
        if self.offsets.has_staged() {
            let from = self.offsets.flushed_seq();
            if let Err(err) = self.offsets.flush() {
                self.offsets_journal.record_failure(from, &err);
            }
        }
    }

    /// Syncs every file to stable storage (at shutdown).
    pub fn sync_all(&self) {
        for topic in &self.topics {
            if let Err(e) = topic.log.sync() {
                error!("{e}");
            }
        }
        if let Err(e) = self.offsets.sync() {
            error!("{e}");
        }
    }

    /// Whether a held reply can go, must wait, or failed.
    pub fn hold_state(&self, hold: &Hold) -> HoldState<'_> {
        if hold.log == OFFSETS_JOURNAL {
            self.offsets_journal
                .hold_state(hold, self.offsets.flushed_seq())
        } else {
            let topic = &self.topics[hold.log as usize];
            topic.journal.hold_state(hold, topic.log.flushed_offset())
        }
    }

    /// Forgets this turn's failures once every held reply was settled.
    pub fn end_turn(&mut self) {
        for topic in &mut self.topics {
            topic.journal.failures.clear();
        }
        self.offsets_journal.failures.clear();
    }

    /// Executes one request line for connection `key`.
    pub fn execute(
        &mut self,
        key: usize,
        peer: SocketAddr,
        session: &mut Session,
        out: &mut Output,
        line: &[u8],
    ) -> Control {
        let request = match protocol::parse(line) {
            Ok(request) => request,
            Err(err) => {
                let _ = writeln!(out.buf_mut(), "{err}");
                return Control::Continue;
            }
        };
        if !session.authenticated
            && !matches!(
                request,
                Request::Auth(_) | Request::Ping | Request::Help | Request::Quit
            )
        {
            out.push(reply::NOAUTH);
            return Control::Continue;
        }
        match request {
            Request::Produce(message) => {
                let topic = &mut self.topics[session.topic as usize];
                let offset = topic.log.stage(message);
                out.push_ack(session.topic, topic.journal.epoch, offset);
                self.stats.produced += 1;
                if topic.log.staged_bytes() >= config::MAX_BATCH_BYTES && topic.flush() {
                    self.woken.append(&mut topic.waiters);
                }
            }
            Request::Consume(offset) => {
                let found = self.read_into(session.topic, offset, 1, out);
                if found == Some(0) {
                    out.push(reply::NO_MESSAGE);
                }
            }
            Request::Fetch {
                offset,
                max,
                wait_ms,
            } => {
                if session.subscription.is_some() {
                    return invalid(out, "not while subscribed; send UNSUBSCRIBE first");
                }
                let topic = session.topic;
                self.flush_if_staged(topic, offset);
                let available = offset < self.topics[topic as usize].log.flushed_offset();
                match wait_ms {
                    Some(ms) if ms > 0 && !available => {
                        let id = self.next_wait_id;
                        self.next_wait_id += 1;
                        session.wait = Some(Wait {
                            topic,
                            offset,
                            max,
                            id,
                        });
                        self.topics[topic as usize].waiters.push(key);
                        let deadline = Instant::now() + Duration::from_millis(ms);
                        self.timers.push(Reverse((deadline, key, id)));
                        self.stats.parked_fetches += 1;
                        return Control::Park;
                    }
                    _ => self.answer_fetch(topic, offset, max, out),
                }
            }
            Request::Subscribe(offset) => {
                if session.subscription.is_some() {
                    return invalid(out, "already subscribed; send UNSUBSCRIBE first");
                }
                self.flush_if_staged(session.topic, offset);
                session.subscription = Some(Subscription {
                    topic: session.topic,
                    next: offset,
                    waiting: false,
                });
                self.stats.subscribers += 1;
                // Start the stream now so it comes before the replies to
                // later requests; the rest follows as the socket drains.
                self.fill_subscription(key, session, out, config::SUBSCRIPTION_WINDOW);
            }
            Request::Unsubscribe => match session.subscription.take() {
                Some(sub) => {
                    self.unwait(key, sub.topic, sub.waiting);
                    self.stats.subscribers -= 1;
                    end_offset(out, sub.next);
                }
                None => return invalid(out, "not subscribed"),
            },
            Request::Use(name) => match self.topic_id(name, self.auto_create) {
                Ok(Some(id)) => {
                    session.topic = id;
                    reply_name(out, reply::USING, name);
                }
                Ok(None) => unknown_topic(out, name),
                Err(why) => storage_error(out, &why),
            },
            Request::Create(name) => {
                if self.by_name.contains_key(name) {
                    reply_name(out, reply::TOPIC_EXISTS, name);
                } else {
                    match self.topic_id(name, true) {
                        Ok(_) => reply_name(out, reply::CREATED, name),
                        Err(why) => storage_error(out, &why),
                    }
                }
            }
            Request::Topics => self.list_topics(out),
            Request::Commit { group, offset } => {
                let t = session.topic as usize;
                self.flush_if_staged(session.topic, offset.saturating_sub(1));
                let end = self.topics[t].log.flushed_offset();
                if offset > end {
                    let _ = writeln!(
                        out.buf_mut(),
                        "{} offset {offset} is past the end of topic {} (next offset {end})",
                        reply::INVALID_OFFSET,
                        self.topics[t].name_str()
                    );
                    return Control::Continue;
                }
                let seq = self.offsets.stage(&self.topics[t].name, group, offset);
                out.push_held(OFFSETS_JOURNAL, self.offsets_journal.epoch, seq, |buf| {
                    buf.extend_from_slice(reply::COMMITTED);
                    buf.extend_from_slice(group);
                    buf.push(b' ');
                    push_u64(buf, offset);
                    buf.push(b'\n');
                });
            }
            Request::Offset(group) => {
                let topic = &self.topics[session.topic as usize];
                let offset = self.offsets.get(&topic.name, group).unwrap_or(0);
                let buf = out.buf_mut();
                buf.extend_from_slice(reply::OFFSET);
                buf.extend_from_slice(group);
                buf.push(b' ');
                push_u64(buf, offset);
                buf.push(b'\n');
            }
            Request::Stats => self.stats_reply(out),
            Request::Auth(token) => {
                let Some(expected) = &self.auth_token else {
                    return invalid(out, "authentication is not enabled on this broker");
                };
                if constant_time_eq(expected, token) {
                    session.authenticated = true;
                    session.auth_failures = 0;
                    out.push(reply::AUTHENTICATED);
                } else {
                    session.auth_failures += 1;
                    warn!(
                        "peer={peer} wrong AUTH token (failure {})",
                        session.auth_failures
                    );
                    if session.auth_failures >= MAX_AUTH_FAILURES {
                        out.push(reply::INVALID_TOKEN_CLOSING);
                        return Control::Quit;
                    }
                    out.push(reply::INVALID_TOKEN);
                }
            }
            Request::Ping => out.push(reply::PONG),
            Request::Help => out.push(reply::HELP),
            Request::Quit => {
                out.push(reply::BYE);
                return Control::Quit;
            }
        }
        Control::Continue
    }

    /// Writes a line too long to be a request's reply.
    pub fn too_long(&self, out: &mut Output) {
        let buf = out.buf_mut();
        buf.extend_from_slice(reply::MESSAGE_TOO_LARGE);
        push_u64(buf, self.max_line_bytes as u64);
        buf.push(b'\n');
    }

    /// A request for `offset` in topic `t` that is staged but not yet
    /// written (a pipelined `PRODUCE` then read) writes the batch now, so the
    /// reader sees what was acknowledged.
    fn flush_if_staged(&mut self, t: u32, offset: u64) {
        let topic = &mut self.topics[t as usize];
        if offset >= topic.log.flushed_offset() && offset < topic.log.next_offset() && topic.flush()
        {
            self.woken.append(&mut topic.waiters);
        }
    }

    /// Renders up to `max` messages from `offset` as `MESSAGE` lines.
    /// Returns how many, or `None` after rendering a `STORAGE_ERROR`.
    fn read_into(&mut self, t: u32, offset: u64, max: u64, out: &mut Output) -> Option<u64> {
        self.flush_if_staged(t, offset);
        let Core {
            topics,
            stats,
            read_buf,
            max_fetch_bytes,
            ..
        } = self;
        let buf = out.buf_mut();
        let mut count = 0u64;
        let result = topics[t as usize].log.read(
            offset,
            max as usize,
            *max_fetch_bytes,
            read_buf,
            |n, message| {
                buf.extend_from_slice(reply::MESSAGE);
                push_u64(buf, n);
                buf.push(b' ');
                buf.extend_from_slice(message);
                buf.push(b'\n');
                count += 1;
            },
        );
        stats.consumed += count;
        match result {
            Ok(_) => Some(count),
            Err(err) => {
                error!("read failed: {err}");
                storage_error(out, &err.client_reason());
                None
            }
        }
    }

    /// Answers a `FETCH` with what is there now.
    fn answer_fetch(&mut self, t: u32, offset: u64, max: u64, out: &mut Output) {
        if let Some(count) = self.read_into(t, offset, max, out) {
            end_offset(out, offset + count);
        }
    }

    /// Settles a connection whose topic got new messages: completes its
    /// parked `FETCH`, or lets its subscription be refilled. Returns
    /// whether a parked request was answered (so its later requests can be
    /// read again).
    pub fn wake(&mut self, key: usize, session: &mut Session, out: &mut Output) -> bool {
        if let Some(wait) = session.wait {
            if wait.offset < self.topics[wait.topic as usize].log.flushed_offset() {
                session.wait = None;
                self.stats.parked_fetches -= 1;
                self.answer_fetch(wait.topic, wait.offset, wait.max, out);
                return true;
            }
            // Still nothing at its offset: keep waiting.
            let waiters = &mut self.topics[wait.topic as usize].waiters;
            if !waiters.contains(&key) {
                waiters.push(key);
            }
        }
        if let Some(sub) = &mut session.subscription {
            sub.waiting = false;
        }
        false
    }

    /// The earliest deadline of a parked `FETCH`.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((when, _, _))| *when)
    }

    /// Drops timers of waits that ended early (data arrived, connection
    /// closed) once they outnumber the live ones, so the heap stays
    /// proportional to what is really parked.
    pub fn prune_timers(&mut self, is_live: impl Fn(usize, u64) -> bool) {
        if self.timers.len() <= 2 * self.stats.parked_fetches as usize + 1024 {
            return;
        }
        self.timers
            .retain(|Reverse((_, key, id))| is_live(*key, *id));
    }

    /// Pops the parked fetches whose wait is over, as (connection, wait id).
    pub fn expired(&mut self, now: Instant) -> Vec<(usize, u64)> {
        let mut due = Vec::new();
        while let Some(Reverse((when, key, id))) = self.timers.peek().copied() {
            if when > now {
                break;
            }
            self.timers.pop();
            due.push((key, id));
        }
        due
    }

    /// Answers a parked `FETCH` whose wait ran out. Returns whether it was
    /// still parked (a stale timer is ignored).
    pub fn expire(&mut self, key: usize, id: u64, session: &mut Session, out: &mut Output) -> bool {
        match session.wait {
            Some(wait) if wait.id == id => {
                session.wait = None;
                self.stats.parked_fetches -= 1;
                self.unwait(key, wait.topic, true);
                self.answer_fetch(wait.topic, wait.offset, wait.max, out);
                true
            }
            _ => false,
        }
    }

    /// Tops up a subscriber's output from the log, up to `window` bytes
    /// pending. Returns whether more messages are ready to send once the
    /// socket drains.
    pub fn fill_subscription(
        &mut self,
        key: usize,
        session: &mut Session,
        out: &mut Output,
        window: usize,
    ) -> bool {
        let Some(mut sub) = session.subscription else {
            return false;
        };
        let t = sub.topic as usize;
        while out.pending() < window && sub.next < self.topics[t].log.flushed_offset() {
            let room = (window - out.pending()).min(self.max_fetch_bytes);
            let Core {
                topics,
                stats,
                read_buf,
                ..
            } = self;
            let buf = out.buf_mut();
            let result = topics[t]
                .log
                .read(sub.next, usize::MAX, room, read_buf, |n, message| {
                    buf.extend_from_slice(reply::MESSAGE);
                    push_u64(buf, n);
                    buf.push(b' ');
                    buf.extend_from_slice(message);
                    buf.push(b'\n');
                });
            match result {
                Ok(next) => {
                    stats.consumed += next - sub.next;
                    sub.next = next;
                }
                Err(err) => {
                    // End the stream with the error; the client can
                    // SUBSCRIBE again from the offset it reached.
                    error!("read failed: {err}");
                    storage_error(out, &err.client_reason());
                    self.unwait(key, sub.topic, sub.waiting);
                    session.subscription = None;
                    self.stats.subscribers -= 1;
                    return false;
                }
            }
        }
        let more = sub.next < self.topics[t].log.flushed_offset();
        if !more && !sub.waiting {
            self.topics[t].waiters.push(key);
            sub.waiting = true;
        }
        session.subscription = Some(sub);
        more
    }

    /// Drops what a closing connection was waiting for.
    pub fn forget(&mut self, key: usize, session: &Session) {
        if let Some(wait) = session.wait {
            self.stats.parked_fetches -= 1;
            self.unwait(key, wait.topic, true);
        }
        if let Some(sub) = session.subscription {
            self.stats.subscribers -= 1;
            self.unwait(key, sub.topic, sub.waiting);
        }
    }

    fn unwait(&mut self, key: usize, topic: u32, registered: bool) {
        if registered {
            self.topics[topic as usize].waiters.retain(|&k| k != key);
        }
    }

    /// The id of topic `name`, creating it if `create` (and the limit
    /// allows). `Ok(None)` if it does not exist and may not be created.
    fn topic_id(&mut self, name: &[u8], create: bool) -> Result<Option<u32>, String> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(Some(id));
        }
        if !create {
            return Ok(None);
        }
        if self.topics.len() >= self.max_topics {
            return Err(format!("too many topics (limit {})", self.max_topics));
        }
        let path = topic_log_path(&self.data_dir, name);
        let open = || -> Result<Log, StorageError> {
            let dir = path.parent().unwrap_or(&self.data_dir);
            fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, "create directory", e))?;
            let log = Log::open(&path)?;
            crate::offsets::sync_dir(dir)?;
            Ok(log)
        };
        let log = open().map_err(|e| {
            error!("creating topic: {e}");
            e.client_reason()
        })?;
        let id = self.topics.len() as u32;
        info!("created topic={}", String::from_utf8_lossy(name));
        self.topics.push(Topic::new(name, log));
        self.by_name.insert(name.into(), id);
        Ok(Some(id))
    }

    fn list_topics(&self, out: &mut Output) {
        let buf = out.buf_mut();
        for topic in &self.topics {
            buf.extend_from_slice(reply::TOPIC);
            buf.extend_from_slice(&topic.name);
            buf.extend_from_slice(b" first:0 next:");
            push_u64(buf, topic.log.flushed_offset());
            buf.extend_from_slice(b" bytes:");
            push_u64(buf, topic.log.len_bytes());
            buf.push(b'\n');
        }
        buf.extend_from_slice(reply::END);
    }

    fn stats_reply(&self, out: &mut Output) {
        let s = &self.stats;
        let buf = out.buf_mut();
        buf.extend_from_slice(b"STAT version ");
        buf.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        buf.push(b'\n');
        let mut stat = |name: &str, value: u64| {
            let buf = out.buf_mut();
            buf.extend_from_slice(reply::STAT);
            buf.extend_from_slice(name.as_bytes());
            buf.push(b' ');
            push_u64(buf, value);
            buf.push(b'\n');
        };
        stat("pid", u64::from(std::process::id()));
        stat("uptime_seconds", self.started.elapsed().as_secs());
        stat("connections_current", s.connections_current);
        stat("connections_total", s.connections_total);
        stat("connections_rejected", s.connections_rejected);
        stat("messages_produced", s.produced);
        stat("messages_consumed", s.consumed);
        stat("bytes_in", s.bytes_in);
        stat("bytes_out", s.bytes_out);
        stat("fetches_parked", s.parked_fetches);
        stat("subscribers", s.subscribers);
        stat("rss_bytes", rss_bytes());
        stat("topics", self.topics.len() as u64);
        for topic in &self.topics {
            let name = topic.name_str();
            stat(&format!("topic.{name}.first_offset"), 0);
            stat(
                &format!("topic.{name}.next_offset"),
                topic.log.flushed_offset(),
            );
            stat(&format!("topic.{name}.log_bytes"), topic.log.len_bytes());
        }
        out.push(reply::END);
    }
}

/// `data_dir/topics/<name>/log.txt`, or `kafka_log.txt` for the default.
pub fn topic_log_path(data_dir: &Path, name: &[u8]) -> PathBuf {
    if name == DEFAULT_TOPIC {
        return data_dir.join(config::LOG_FILE);
    }
    // Valid names are ASCII, one path component, never "." or "..".
    data_dir
        .join(TOPICS_DIR)
        .join(String::from_utf8_lossy(name).as_ref())
        .join(TOPIC_LOG_FILE)
}

fn invalid(out: &mut Output, why: &str) -> Control {
    let _ = writeln!(out.buf_mut(), "{} {why}", reply::INVALID_REQUEST);
    Control::Continue
}

fn storage_error(out: &mut Output, why: &str) {
    let buf = out.buf_mut();
    buf.extend_from_slice(reply::STORAGE_ERROR);
    buf.extend_from_slice(why.as_bytes());
    buf.push(b'\n');
}

fn unknown_topic(out: &mut Output, name: &[u8]) {
    let buf = out.buf_mut();
    buf.extend_from_slice(reply::UNKNOWN_TOPIC);
    buf.extend_from_slice(name);
    buf.extend_from_slice(b" does not exist and auto-create is off; CREATE it first\n");
}

fn reply_name(out: &mut Output, word: &[u8], name: &[u8]) {
    let buf = out.buf_mut();
    buf.extend_from_slice(word);
    buf.extend_from_slice(name);
    buf.push(b'\n');
}

fn end_offset(out: &mut Output, next: u64) {
    let buf = out.buf_mut();
    buf.extend_from_slice(reply::END_OFFSET);
    push_u64(buf, next);
    buf.push(b'\n');
}

/// Compares a secret in time that depends only on its length, not on where
/// the first difference is.
pub fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for (i, &b) in expected.iter().enumerate() {
        diff |= b ^ given.get(i).copied().unwrap_or(!b);
    }
    std::hint::black_box(diff) == 0
}

/// This process's resident memory, from `/proc/self/statm`.
fn rss_bytes() -> u64 {
    let pages = fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn topic_paths_stay_inside_the_data_dir() {
        let dir = Path::new("/data");
        assert_eq!(
            topic_log_path(dir, b"default"),
            Path::new("/data/kafka_log.txt")
        );
        assert_eq!(
            topic_log_path(dir, b"orders"),
            Path::new("/data/topics/orders/log.txt")
        );
        assert_eq!(
            topic_log_path(dir, b"..."),
            Path::new("/data/topics/.../log.txt")
        );
    }
}
