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

use crate::config::{self, Config, FsyncPolicy};
use crate::protocol::text::{self as protocol, Request, is_valid_name, push_u64, reply};
use crate::server::conn::{Hold, HoldState, Output, Session, Subscription, Wait};
use crate::server::syncer::{Done, Job, Syncer};
use crate::storage::Offsets;
use crate::storage::{Log, LogOptions, StorageError, SyncDone};

/// The default topic: the one a connection starts on, stored as
/// `kafka_log.txt` like the original project's single log.
pub const DEFAULT_TOPIC: &[u8] = b"default";
/// Where the other topics live, one directory each.
pub const TOPICS_DIR: &str = "topics";
/// A topic's log file inside its directory.
pub const TOPIC_LOG_FILE: &str = "log.txt";
/// How often retention looks for segments to drop.
const RETENTION_CHECK: Duration = Duration::from_secs(10);
/// The journal id of the committed-offsets file in held replies.
const OFFSETS_JOURNAL: u32 = u32::MAX;
/// Sync-thread jobs nobody waits for (rolled segments under `interval` and
/// `never`).
const BACKGROUND_JOURNAL: u32 = u32::MAX - 1;
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
    pub fsyncs: u64,
    pub fsync_errors: u64,
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
    /// `--fsync always`: a message is acknowledged and readable only once
    /// synced.
    durable_acks: bool,
}

impl Topic {
    fn new(name: &[u8], log: Log, durable_acks: bool) -> Self {
        Topic {
            name: name.into(),
            log,
            journal: Journal::default(),
            waiters: Vec::new(),
            durable_acks,
        }
    }

    /// One past the last message readers may see and producers may be
    /// acknowledged for: written, or with `--fsync always` synced.
    pub fn visible(&self) -> u64 {
        if self.durable_acks {
            self.log.synced_offset()
        } else {
            self.log.written_offset()
        }
    }

    /// Writes staged messages. Returns whether new messages became
    /// readable.
    fn flush(&mut self) -> bool {
        if !self.log.has_staged() {
            return false;
        }
        match self.log.flush() {
            Ok(written) => !written.is_empty() && !self.durable_acks,
            Err(err) => {
                // Whatever was written before the failure stays.
                self.journal.record_failure(self.log.written_offset(), &err);
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
    policy: FsyncPolicy,
    log_options: LogOptions,
    syncer: Syncer,
    /// With `--fsync interval`, when the next sync is due.
    next_sync_at: Instant,
    retention_bytes: Option<u64>,
    retention_age: Option<Duration>,
    next_retention_at: Instant,
    /// A write or sync failed since the last call to `take_failed`.
    failed: bool,
}

impl Core {
    /// Opens the default topic, every topic directory, and the committed
    /// offsets, recovering each.
    pub fn open(
        config: &Config,
        auth_token: Option<Vec<u8>>,
        syncer: Syncer,
    ) -> Result<Core, StorageError> {
        let dir = &config.data_dir;
        let log_options = LogOptions {
            segment_bytes: config.segment_bytes,
            skip_corrupt: config.skip_corrupt_segments,
            cut_on_sync_failure: config.fsync == FsyncPolicy::Always,
        };
        let durable = config.fsync == FsyncPolicy::Always;
        let open_topic = |name: &[u8]| -> Result<Topic, StorageError> {
            let (topic_dir, file) = topic_log_path(dir, name);
            Ok(Topic::new(
                name,
                Log::open(&topic_dir, file, log_options)?,
                durable,
            ))
        };
        let mut topics = vec![open_topic(DEFAULT_TOPIC)?];
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
            topics.push(open_topic(&name)?);
        }
        let mut offsets = Offsets::open(dir)?;
        for topic in &topics {
            offsets.clamp(&topic.name, topic.log.written_offset())?;
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
            policy: config.fsync,
            log_options,
            syncer,
            next_sync_at: Instant::now(),
            retention_bytes: config.retention_bytes,
            retention_age: config
                .retention_hours
                .map(|h| Duration::from_secs_f64(h * 3600.0)),
            next_retention_at: Instant::now(),
            failed: false,
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
        let mut rolled = false;
        for topic in &mut self.topics {
            let segments = topic.log.segments();
            if topic.flush() {
                self.woken.append(&mut topic.waiters);
            }
            rolled |= topic.log.segments() != segments;
            for file in topic.log.take_background_syncs() {
                let job = Job::Sync {
                    journal: BACKGROUND_JOURNAL,
                    file,
                    token: 0,
                    len: 0,
                    slot: 0,
                };
                if let Err(Job::Sync { file, .. }) = self.syncer.submit(job)
                    && let Err(e) = file.sync_data()
                {
                    error!("fdatasync of a rolled segment: {e}");
                }
            }
            self.failed |= !topic.journal.failures.is_empty();
        }
        if rolled {
            // A new segment may put a topic over its size limit.
            self.apply_retention();
        }
        if self.offsets.has_staged() {
            let from = self.offsets.flushed_seq();
            if let Err(err) = self.offsets.flush() {
                self.offsets_journal.record_failure(from, &err);
                self.failed = true;
            }
        }
    }

    /// With `--fsync always`: whether something written is covered by no
    /// sync yet. The reactor then looks for work without waiting: if there
    /// is none it syncs inline ([`sync_inline`](Self::sync_inline)), as it
    /// would only sleep until a sync thread woke it; if there is, it hands
    /// the sync to the threads ([`start_syncs`](Self::start_syncs)) and
    /// serves meanwhile.
    pub fn sync_wanted(&self) -> bool {
        self.policy == FsyncPolicy::Always
            && (self.topics.iter().any(|t| t.log.sync_wanted())
                || (self.offsets.has_unsynced() && !self.offsets.sync_in_flight()))
    }

    /// Syncs every log with unsynced writes now, on this thread.
    pub fn sync_inline(&mut self) {
        for topic in &mut self.topics {
            if !topic.log.sync_wanted() {
                continue;
            }
            let before = topic.visible();
            self.stats.fsyncs += 1;
            if let Err(err) = topic.log.sync() {
                self.stats.fsync_errors += 1;
                if let Some(from) = topic.log.cut_unsynced_after_failure() {
                    topic.journal.record_failure(from, &err);
                    self.failed = true;
                }
            }
            if topic.visible() > before {
                self.woken.append(&mut topic.waiters);
            }
        }
        if self.offsets.has_unsynced() && !self.offsets.sync_in_flight() {
            self.stats.fsyncs += 1;
            let from = self.offsets.synced_seq();
            if let Err(err) = self.offsets.sync() {
                self.stats.fsync_errors += 1;
                self.offsets.sync_failed();
                self.offsets_journal.record_failure(from, &err);
                self.failed = true;
            }
        }
    }

    /// Hands every journal with unsynced writes to the sync threads (up to
    /// [`crate::storage::SYNC_SLOTS`] syncs in flight per log; what is
    /// written meanwhile goes with the next one, so syncs batch themselves
    /// under load).
    pub fn start_syncs(&mut self) {
        for (i, topic) in self.topics.iter_mut().enumerate() {
            if let Some(point) = topic.log.begin_sync() {
                let job = Job::Sync {
                    journal: i as u32,
                    file: point.file,
                    token: point.offset,
                    len: point.len,
                    slot: point.slot,
                };
                if self.syncer.submit(job).is_err() {
                    error!("sync thread is gone; syncing inline");
                    if let Err(e) = topic.log.sync() {
                        error!("{e}");
                    }
                }
            }
        }
        if let Some((file, seq)) = self.offsets.begin_sync() {
            let job = Job::Sync {
                journal: OFFSETS_JOURNAL,
                file,
                token: seq,
                len: 0,
                slot: 0,
            };
            if self.syncer.submit(job).is_err()
                && let Err(e) = self.offsets.sync()
            {
                error!("{e}");
            }
        }
    }

    /// Applies syncs the sync thread finished. Returns whether any did.
    pub fn collect_syncs(&mut self) -> bool {
        let done: Vec<Done> = self.syncer.completed().collect();
        let any = !done.is_empty();
        for d in done {
            self.sync_completed(d);
        }
        any
    }

    fn sync_completed(&mut self, done: Done) {
        let cut = self.policy == FsyncPolicy::Always;
        self.stats.fsyncs += 1;
        if done.journal == BACKGROUND_JOURNAL {
            if let Err(e) = done.result {
                self.stats.fsync_errors += 1;
                error!("fdatasync of a rolled segment failed: {e}");
            }
            return;
        }
        if done.journal == OFFSETS_JOURNAL {
            match done.result {
                Ok(()) => self.offsets.sync_done(done.token),
                Err(e) => {
                    self.stats.fsync_errors += 1;
                    let err = StorageError::io(self.offsets.path(), "fdatasync", e);
                    let from = self.offsets.sync_failed();
                    if cut {
                        self.offsets_journal.record_failure(from, &err);
                        self.failed = true;
                    } else {
                        error!("{err}; will retry");
                    }
                }
            }
            return;
        }
        let Some(topic) = self.topics.get_mut(done.journal as usize) else {
            return;
        };
        let point = SyncDone {
            offset: done.token,
            len: done.len,
            slot: done.slot,
        };
        match done.result {
            Ok(()) => {
                let before = topic.visible();
                topic.log.sync_done(&point);
                if topic.visible() > before {
                    self.woken.append(&mut topic.waiters);
                }
            }
            Err(e) => {
                self.stats.fsync_errors += 1;
                let err = StorageError::io(topic.log.path(), "fdatasync", e);
                match topic.log.sync_failed(&point) {
                    // Nothing from `from` on was acknowledged; it is cut
                    // off and those waiting for it get STORAGE_ERROR.
                    Some(from) => {
                        topic.journal.record_failure(from, &err);
                        self.failed = true;
                    }
                    None => error!("{err}; will retry"),
                }
            }
        }
    }

    /// Whether a write or sync failed since the last call: held replies
    /// anywhere may need to become errors.
    pub fn take_failed(&mut self) -> bool {
        std::mem::take(&mut self.failed)
    }

    /// Syncs every file to stable storage now (at shutdown).
    pub fn sync_all(&mut self) {
        for topic in &mut self.topics {
            if let Err(e) = topic.log.sync() {
                error!("{e}");
            }
        }
        if let Err(e) = self.offsets.sync() {
            error!("{e}");
        }
    }

    /// When the next timer (parked fetch, interval sync, retention) is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let fetch = self.timers.peek().map(|Reverse((when, _, _))| *when);
        let sync = match self.policy {
            FsyncPolicy::Interval(_) if self.has_unsynced() => Some(self.next_sync_at),
            _ => None,
        };
        let retention = (self.retention_bytes.is_some() || self.retention_age.is_some())
            .then_some(self.next_retention_at);
        [fetch, sync, retention].into_iter().flatten().min()
    }

    fn has_unsynced(&self) -> bool {
        self.topics
            .iter()
            .any(|t| t.log.synced_offset() < t.log.written_offset())
            || self.offsets.has_unsynced()
    }

    /// Runs the interval sync and retention if due.
    pub fn run_timers(&mut self, now: Instant) {
        if let FsyncPolicy::Interval(every) = self.policy
            && now >= self.next_sync_at
        {
            if self.has_unsynced() {
                self.start_syncs();
            }
            self.next_sync_at = now + every;
        }
        if now >= self.next_retention_at {
            self.next_retention_at = now + RETENTION_CHECK;
            self.apply_retention();
        }
    }

    /// Drops whole old segments past the retention limits; the sync thread
    /// deletes the files.
    fn apply_retention(&mut self) {
        if self.retention_bytes.is_none() && self.retention_age.is_none() {
            return;
        }
        let now = std::time::SystemTime::now();
        for topic in &mut self.topics {
            for path in topic
                .log
                .apply_retention(self.retention_bytes, self.retention_age, now)
            {
                if let Err(Job::Delete(path)) = self.syncer.submit(Job::Delete(path))
                    && let Err(e) = fs::remove_file(&path)
                {
                    error!("cannot delete {}: {e}", path.display());
                }
            }
        }
    }

    /// Whether a held reply can go, must wait, or failed.
    pub fn hold_state(&self, hold: &Hold) -> HoldState<'_> {
        if hold.log == OFFSETS_JOURNAL {
            let durable = if self.policy == FsyncPolicy::Always {
                self.offsets.synced_seq()
            } else {
                self.offsets.flushed_seq()
            };
            self.offsets_journal.hold_state(hold, durable)
        } else {
            let topic = &self.topics[hold.log as usize];
            topic.journal.hold_state(hold, topic.visible())
        }
    }

    /// Forgets the failures once every held reply was settled.
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
                if let Some(first) = self.out_of_range(session.topic, offset) {
                    out_of_range(out, first);
                    return Control::Continue;
                }
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
                if let Some(first) = self.out_of_range(topic, offset) {
                    out_of_range(out, first);
                    return Control::Continue;
                }
                let available = offset < self.topics[topic as usize].visible();
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
                if let Some(first) = self.out_of_range(session.topic, offset) {
                    out_of_range(out, first);
                    return Control::Continue;
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
                let end = self.topics[t].visible();
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
        if offset >= topic.log.written_offset() && offset < topic.log.next_offset() && topic.flush()
        {
            self.woken.append(&mut topic.waiters);
        }
        self.failed |= !topic.journal.failures.is_empty();
    }

    /// `Some(first)` if `offset` is below what topic `t` still stores.
    fn out_of_range(&self, t: u32, offset: u64) -> Option<u64> {
        let first = self.topics[t as usize].log.first_offset();
        (offset < first).then_some(first)
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
        let topic = &mut topics[t as usize];
        let end = topic.visible();
        let result = topic.log.read(
            offset,
            end,
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
            if wait.offset < self.topics[wait.topic as usize].visible() {
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
        let mut stalled = false;
        if let Some(first) = self.out_of_range(sub.topic, sub.next) {
            // Retention dropped what the subscriber had not read yet.
            out_of_range(out, first);
            self.unwait(key, sub.topic, sub.waiting);
            session.subscription = None;
            self.stats.subscribers -= 1;
            return false;
        }
        while out.pending() < window && sub.next < self.topics[t].visible() {
            let room = (window - out.pending()).min(self.max_fetch_bytes);
            let Core {
                topics,
                stats,
                read_buf,
                ..
            } = self;
            let buf = out.buf_mut();
            let topic = &mut topics[t];
            let end = topic.visible();
            let result = topic
                .log
                .read(sub.next, end, usize::MAX, room, read_buf, |n, message| {
                    buf.extend_from_slice(reply::MESSAGE);
                    push_u64(buf, n);
                    buf.push(b' ');
                    buf.extend_from_slice(message);
                    buf.push(b'\n');
                });
            match result {
                Ok(next) if next == sub.next => {
                    // No progress (cannot happen with a sane log): wait for
                    // the next message rather than retry at once.
                    stalled = true;
                    break;
                }
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
        let more = !stalled && sub.next < self.topics[t].visible();
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
        let (dir, file) = topic_log_path(&self.data_dir, name);
        let open = || -> Result<Log, StorageError> {
            let log = Log::open(&dir, file, self.log_options)?;
            crate::storage::sync_dir(&dir)?;
            crate::storage::sync_dir(&self.data_dir.join(TOPICS_DIR))?;
            Ok(log)
        };
        let log = open().map_err(|e| {
            error!("creating topic: {e}");
            e.client_reason()
        })?;
        let id = self.topics.len() as u32;
        info!("created topic={}", String::from_utf8_lossy(name));
        self.topics
            .push(Topic::new(name, log, self.policy == FsyncPolicy::Always));
        self.by_name.insert(name.into(), id);
        Ok(Some(id))
    }

    fn list_topics(&self, out: &mut Output) {
        let buf = out.buf_mut();
        for topic in &self.topics {
            buf.extend_from_slice(reply::TOPIC);
            buf.extend_from_slice(&topic.name);
            buf.extend_from_slice(b" first:");
            push_u64(buf, topic.log.first_offset());
            buf.extend_from_slice(b" next:");
            push_u64(buf, topic.visible());
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
        stat("fsyncs", s.fsyncs);
        stat("fsync_errors", s.fsync_errors);
        stat("rss_bytes", rss_bytes());
        stat("topics", self.topics.len() as u64);
        for topic in &self.topics {
            let name = topic.name_str();
            stat(
                &format!("topic.{name}.first_offset"),
                topic.log.first_offset(),
            );
            stat(&format!("topic.{name}.next_offset"), topic.visible());
            stat(&format!("topic.{name}.log_bytes"), topic.log.len_bytes());
            stat(
                &format!("topic.{name}.segments"),
                topic.log.segments() as u64,
            );
        }
        out.push(reply::END);
    }
}

/// The directory and active file name of a topic's log:
/// `data_dir/topics/<name>/log.txt`, or `data_dir/kafka_log.txt` for the
/// default topic.
pub fn topic_log_path(data_dir: &Path, name: &[u8]) -> (PathBuf, &'static str) {
    if name == DEFAULT_TOPIC {
        return (data_dir.to_path_buf(), config::LOG_FILE);
    }
    // Valid names are ASCII, one path component, never "." or "..".
    let dir = data_dir
        .join(TOPICS_DIR)
        .join(String::from_utf8_lossy(name).as_ref());
    (dir, TOPIC_LOG_FILE)
}

fn invalid(out: &mut Output, why: &str) -> Control {
    let _ = writeln!(out.buf_mut(), "{} {why}", reply::INVALID_REQUEST);
    Control::Continue
}

fn out_of_range(out: &mut Output, first: u64) {
    let buf = out.buf_mut();
    buf.extend_from_slice(reply::OFFSET_OUT_OF_RANGE);
    push_u64(buf, first);
    buf.push(b'\n');
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
        let path = |name: &[u8]| {
            let (dir, file) = topic_log_path(dir, name);
            dir.join(file)
        };
        assert_eq!(path(b"default"), Path::new("/data/kafka_log.txt"));
        assert_eq!(path(b"orders"), Path::new("/data/topics/orders/log.txt"));
        assert_eq!(path(b"..."), Path::new("/data/topics/.../log.txt"));
    }
}
