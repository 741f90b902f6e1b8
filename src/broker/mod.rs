//! The broker's protocol-neutral state and decisions: topics and their
//! partition logs, committed offsets, durability tickets, waiters,
//! retention, the recovery checkpoint and counters.
//!
//! It never builds reply bytes and never touches a socket: protocols call
//! its API with a [`ConnId`] and render what comes back; the server drains
//! what it produces each loop turn ([`Broker::take_settled`],
//! [`Broker::take_woken`], [`Broker::take_jobs`]) and feeds back what
//! helper threads finished ([`Broker::job_done`]).
//!
//! # Durability
//! An append returns a [`Ticket`]. The broker settles it exactly once: as
//! done when the journal's durable mark passes it (written, or synced
//! under `--fsync always`), or as failed the moment a write or sync
//! covering it fails (see [`durability`]).

pub mod durability;
pub mod groups;
pub mod ids;
pub mod producers;
pub mod waiters;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{error, info, warn};

use crate::config::{self, Config, FsyncPolicy};
use crate::storage::Format;
use crate::storage::batch::BatchHeader;
use crate::storage::checkpoint::{self, CHECKPOINT_FILE};
use crate::storage::files::Files;
use crate::storage::meta::{self, TopicMeta};
use crate::storage::{
    AppendBatchError, Failed, FileJob, JobResult, Log, LogOptions, Offsets, StorageError,
    SyncResult,
};
use crate::util::is_valid_name;
use durability::Waiting;
pub use durability::{Outcome, Settlement, WriteError};
use groups::{GroupError, GroupEvent, GroupInfo, Groups, Join, JoinResult};
pub use ids::{ConnId, JournalId, PartitionId, Ticket, TopicId};
use producers::{Check, Producers};
use waiters::Waiters;
pub use waiters::Wake;

/// The default topic: the one a text connection starts on, stored as
/// `kafka_log.txt` like the original project's single log.
pub const DEFAULT_TOPIC: &[u8] = b"default";
/// Where the other topics live, one directory each.
pub const TOPICS_DIR: &str = "topics";
/// A deleted topic's directory is renamed to `<name>~deleted~<nanos>`
/// (never a valid topic name) before a helper deletes it.
const DELETED_MARK: &str = "~deleted~";
/// A text partition's log file inside its directory.
pub const TOPIC_LOG_FILE: &str = "log.txt";
/// A batch partition's log file inside its directory.
pub const TOPIC_BATCH_FILE: &str = "log.kafka";
/// How often retention looks for segments to drop.
const RETENTION_CHECK: Duration = Duration::from_secs(10);
/// Most bytes a compressed Kafka batch may decompress to when it is
/// written into a text topic (one line per record).
const MAX_DECOMPRESSED_TEXT: usize = 64 << 20;
/// Least time between two checkpoint writes.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Counters for the whole broker (see `STATS`).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub connections_current: u64,
    pub connections_total: u64,
    pub connections_rejected: u64,
    /// Closed to make room for a new client when the table was full.
    pub connections_evicted: u64,
    /// Clients whose requests are not read because their replies pile up
    /// (`--max-output-bytes`).
    pub connections_paused: u64,
    /// Closed for `--request-timeout-ms` and `--idle-timeout-secs`.
    pub request_timeouts: u64,
    pub idle_timeouts: u64,
    pub produced: u64,
    pub consumed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub parked_fetches: u64,
    pub subscribers: u64,
    /// `fdatasync` calls on log and offsets files.
    pub fsyncs: u64,
    /// `fsync` calls on directories (new and renamed files).
    pub dir_syncs: u64,
    pub fsync_errors: u64,
    /// How long the `fdatasync`s run on the loop's own thread took
    /// ([`Broker::sync_inline`]; helper threads time theirs).
    pub loop_fsync_seconds: crate::util::histogram::Histogram,
}

/// Why a topic could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// It does not exist and may not be created here.
    Unknown,
    /// `CREATE` of a topic that exists.
    Exists,
    /// The broker holds `--max-topics` topics.
    TooMany { limit: usize },
    /// A partition count of 0 or over the maximum.
    InvalidPartitions { max: u32 },
    /// Not allowed for this topic (deleting the default topic).
    Invalid,
    /// Its files could not be created.
    Storage(String),
}

/// Why a read could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Below the oldest offset still stored.
    OutOfRange { first: u64 },
    /// The topic was deleted.
    Deleted,
    /// The log could not be read (damaged data or I/O).
    Storage(String),
}

/// A Kafka batch accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAppend {
    pub ticket: Ticket,
    /// Whether the ticket will be settled (false: a retry of a batch
    /// already durable, answered at once with its offset).
    pub pending: bool,
}

/// Why a Kafka batch was not appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchRefusal {
    /// Over `--max-message-bytes` (MESSAGE_TOO_LARGE).
    TooLarge,
    /// Not storable here (INVALID_RECORD), e.g. a newline in a value of a
    /// text topic.
    Invalid(String),
    /// A sequence number gap (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder,
    /// An older producer epoch (INVALID_PRODUCER_EPOCH).
    StaleEpoch,
    /// A retry of a batch whose first append is still being made durable:
    /// retry later.
    StillPending,
    /// The topic was deleted.
    Deleted,
    Storage(WriteError),
}

/// Why a commit was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    /// Past what readers can see in the partition.
    PastEnd {
        end: u64,
    },
    /// A new group name over `--max-groups`.
    TooManyGroups {
        limit: usize,
    },
    /// The topic was deleted.
    Deleted,
    Storage(WriteError),
}

/// What a listing shows of a topic's partition.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub topic: Box<[u8]>,
    pub partition: u32,
    /// Partitions of its topic.
    pub partitions: u32,
    pub first: u64,
    /// One past the last offset readers can see.
    pub next: u64,
    pub bytes: u64,
    pub segments: usize,
}

#[derive(Debug)]
struct Partition {
    log: Log,
    /// Tickets waiting on this log.
    waiting: Waiting,
    /// One past the last offset readers were told about.
    visible: u64,
    /// On the broker's dirty list this turn.
    dirty: bool,
    /// The synced offset in the last checkpoint written.
    checkpointed: u64,
}

#[derive(Debug)]
struct Topic {
    name: Box<[u8]>,
    id: [u8; 16],
    format: Format,
    partitions: Vec<Partition>,
}

/// The broker's state that requests act on.
pub struct Broker {
    data_dir: PathBuf,
    topics: Vec<Topic>,
    by_name: HashMap<Box<[u8]>, TopicId>,
    offsets: Offsets,
    offsets_waiting: Waiting,
    offsets_dirty: bool,
    waiters: Waiters,
    settled: Vec<Settlement>,
    woken: Vec<(ConnId, Wake)>,
    jobs: Vec<(JournalId, FileJob)>,
    /// Partitions with staged records or news to settle this turn.
    dirty: Vec<PartitionId>,
    pub stats: Stats,
    policy: FsyncPolicy,
    log_options: LogOptions,
    /// The budget of open log files (shared with every log).
    files: Arc<Files>,
    auto_create: bool,
    /// Partitions of an auto-created topic.
    default_partitions: u32,
    max_topics: usize,
    cluster_id: String,
    auth_token: Option<Vec<u8>>,
    retention_bytes: Option<u64>,
    retention_age: Option<Duration>,
    next_sync_at: Instant,
    next_retention_at: Instant,
    next_checkpoint_at: Instant,
    /// Idempotent producers' recent batches.
    producers: Producers,
    /// Consumer groups.
    groups: Groups,
    /// The next producer id InitProducerId hands out.
    next_producer_id: i64,
    /// The end of the block of ids reserved in broker.meta.
    producer_ids_until: i64,
    /// Largest record batch accepted from a Kafka producer.
    max_message_bytes: usize,
    /// Scratch for reading logs.
    read_buf: Vec<u8>,
    started: Instant,
    /// Message bytes read from logs for clients this loop turn; see
    /// [`over_read_budget`](Self::over_read_budget).
    turn_read_bytes: usize,
}

impl Broker {
    /// Opens the default topic, every topic directory, the committed
    /// offsets and the recovery checkpoint, recovering each.
    pub fn open(config: &Config, auth_token: Option<Vec<u8>>) -> Result<Broker, StorageError> {
        let dir = &config.data_dir;
        let broker_meta = meta::read_broker(dir)?;
        let layout = broker_meta.layout;
        let files = Files::new(config.max_open_files);
        let log_options = LogOptions {
            segment_bytes: config.segment_bytes,
            skip_corrupt: config.skip_corrupt_segments,
            durable_acks: config.fsync == FsyncPolicy::Always,
            // Before layouts, a missing index meant nothing: stay strict
            // until every segment has one.
            repair_unsealed: layout.is_some(),
            format: Format::Text,
            files: files.clone(),
            unsynced_stay_open: config.fsync != FsyncPolicy::Never,
        };
        let mut checkpoint = checkpoint::read(dir)?;
        let cluster_id = broker_meta
            .cluster_id
            .clone()
            .unwrap_or_else(meta::new_cluster_id);
        let default_meta = TopicMeta {
            id: broker_meta.default_topic_id.unwrap_or_else(meta::random_id),
            partitions: 1,
            format: Format::Text,
        };
        let mut open_topic = |name: &[u8], tm: TopicMeta| -> Result<Topic, StorageError> {
            let mut partitions = Vec::new();
            for p in 0..tm.partitions {
                let (pdir, file) = partition_path(dir, name, p, tm.format);
                let expected = checkpoint.remove(&(name.into(), p));
                let options = LogOptions {
                    format: tm.format,
                    ..log_options.clone()
                };
                partitions.push(Partition::new(Log::open(&pdir, file, options, expected)?));
            }
            Ok(Topic {
                name: name.into(),
                id: tm.id,
                format: tm.format,
                partitions,
            })
        };
        let mut topics = vec![open_topic(DEFAULT_TOPIC, default_meta)?];
        let topics_dir = dir.join(TOPICS_DIR);
        let mut names: Vec<Vec<u8>> = match fs::read_dir(&topics_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().into_encoded_bytes())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StorageError::io(&topics_dir, "list", e)),
        };
        names.sort();
        let mut leftovers = Vec::new();
        for name in names {
            let tdir = topics_dir.join(String::from_utf8_lossy(&name).as_ref());
            if String::from_utf8_lossy(&name).contains(DELETED_MARK) {
                // A topic deleted before a crash: finish the job.
                leftovers.push(tdir);
                continue;
            }
            if !is_valid_name(&name) || name == DEFAULT_TOPIC {
                warn!("ignoring {}: not a valid topic name", tdir.display());
                continue;
            }
            let tm = match meta::read_topic(&tdir)? {
                Some(tm) => tm,
                // Written before topics had metadata: a text topic of one
                // partition. Its metadata is written once everything
                // opened.
                None if tdir.join(TOPIC_LOG_FILE).exists() => TopicMeta {
                    id: meta::random_id(),
                    partitions: 1,
                    format: Format::Text,
                },
                None => {
                    warn!(
                        "ignoring {}: no topic.meta and no log (left by a failed CREATE?)",
                        tdir.display()
                    );
                    continue;
                }
            };
            topics.push(open_topic(&name, tm)?);
        }
        for ((name, partition), offset) in &checkpoint {
            warn!(
                "{}: topic {}/{partition} was synced up to offset {offset} but its directory is gone",
                dir.join(CHECKPOINT_FILE).display(),
                String::from_utf8_lossy(name)
            );
        }
        if layout != Some(meta::LAYOUT) {
            // In-place migration: every topic gets its metadata, the
            // cluster an id, then the layout is recorded.
            for topic in topics.iter().skip(1) {
                let tdir = topics_dir.join(String::from_utf8_lossy(&topic.name).as_ref());
                if meta::read_topic(&tdir)?.is_none() {
                    meta::write_topic(&tdir, &topic.meta())?;
                }
            }
            info!(
                "data_dir={} migrated from layout {} to {}",
                dir.display(),
                layout.map_or("none".to_string(), |l| l.to_string()),
                meta::LAYOUT
            );
        }
        let mut offsets = Offsets::open(dir, log_options.durable_acks)?;
        let by_name: HashMap<Box<[u8]>, TopicId> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i as TopicId))
            .collect();
        offsets.retain_topics(|t| by_name.contains_key(t))?;
        for topic in &topics {
            for (p, part) in topic.partitions.iter().enumerate() {
                offsets.clamp(&topic.name, p as u32, part.log.written().offset)?;
            }
        }
        let mut producers = Producers::default();
        for (t, topic) in topics.iter_mut().enumerate() {
            for (p, part) in topic.partitions.iter_mut().enumerate() {
                let id = PartitionId {
                    topic: t as TopicId,
                    partition: p as u32,
                };
                for b in part.log.take_recovered_producers() {
                    producers.record(
                        id,
                        b.producer_id,
                        b.epoch,
                        producers::Batch {
                            first_seq: b.first_seq,
                            last_seq: b.last_seq,
                            base_offset: b.base_offset,
                            ticket_seq: None,
                        },
                    );
                }
            }
        }
        // Producer ids: above every id this directory ever handed out
        // (the reserved block in broker.meta; before that, ids came from
        // the clock) and every id in its logs. A block is reserved in
        // broker.meta before any of its ids is used, so a restart never
        // repeats one, even with a clock set back (a Raspberry Pi without
        // a real-time clock).
        let next_producer_id = broker_meta
            .producer_ids_from
            .unwrap_or(0)
            .max(clock_producer_id())
            .max(producers.max_producer_id().map_or(0, |id| id + 1));
        let producer_ids_until = next_producer_id + PRODUCER_ID_BLOCK;
        meta::write_broker(dir, &cluster_id, &topics[0].id, producer_ids_until)?;
        let mut jobs: Vec<(JournalId, FileJob)> = leftovers
            .into_iter()
            .map(|d| (JournalId::Offsets, FileJob::DeleteDir(d)))
            .collect();
        for (t, topic) in topics.iter_mut().enumerate() {
            for (p, part) in topic.partitions.iter_mut().enumerate() {
                let id = JournalId::Partition(PartitionId {
                    topic: t as TopicId,
                    partition: p as u32,
                });
                jobs.extend(part.log.take_jobs().into_iter().map(|j| (id, j)));
            }
        }
        info!("topics={} cluster_id={cluster_id}", topics.len());
        let now = Instant::now();
        Ok(Broker {
            data_dir: dir.clone(),
            topics,
            by_name,
            offsets,
            offsets_waiting: Waiting::default(),
            offsets_dirty: false,
            waiters: Waiters::default(),
            settled: Vec::new(),
            woken: Vec::new(),
            jobs,
            dirty: Vec::new(),
            stats: Stats::default(),
            policy: config.fsync,
            log_options,
            files,
            auto_create: config.auto_create_topics,
            default_partitions: config.partitions,
            max_topics: config.max_topics,
            cluster_id,
            auth_token,
            retention_bytes: config.retention_bytes,
            retention_age: config
                .retention_hours
                .map(|h| Duration::from_secs_f64(h * 3600.0)),
            next_sync_at: now,
            next_retention_at: now,
            next_checkpoint_at: now + CHECKPOINT_EVERY,
            producers,
            groups: Groups::new(
                config.max_groups,
                Duration::from_millis(config.group_initial_delay_ms),
            ),
            next_producer_id,
            producer_ids_until,
            max_message_bytes: config.max_message_bytes,
            read_buf: Vec::new(),
            started: now,
            turn_read_bytes: 0,
        })
    }

    // ----- authentication -------------------------------------------------

    /// The budget of open log files.
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        self.auth_token.is_some()
    }

    /// Whether `token` is the broker's token (in time independent of where
    /// they differ). False when authentication is off.
    pub fn check_token(&self, token: &[u8]) -> bool {
        self.auth_token
            .as_deref()
            .is_some_and(|expected| constant_time_eq(expected, token))
    }

    /// When the broker started.
    pub fn started(&self) -> Instant {
        self.started
    }

    // ----- topics ---------------------------------------------------------

    /// The topic named `name`, if it exists.
    pub fn lookup(&self, name: &[u8]) -> Option<TopicId> {
        self.by_name.get(name).copied()
    }

    /// The topic named `name`, creating it (with the default partition
    /// count, in `format`) if `create` and the limit allows.
    pub fn topic(
        &mut self,
        name: &[u8],
        create: bool,
        format: Format,
    ) -> Result<TopicId, TopicError> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(id);
        }
        if !create {
            return Err(TopicError::Unknown);
        }
        self.create_topic(name, None, format)
    }

    /// Looks up or, when the broker allows it, creates a text topic.
    pub fn use_topic(&mut self, name: &[u8]) -> Result<TopicId, TopicError> {
        let create = self.auto_create;
        self.topic(name, create, Format::Text)
    }

    /// Whether topics are created on first use.
    pub fn auto_create(&self) -> bool {
        self.auto_create
    }

    /// Creates topic `name` with `partitions` (the broker's default if
    /// `None`), storing records in `format`.
    pub fn create_topic(
        &mut self,
        name: &[u8],
        partitions: Option<u32>,
        format: Format,
    ) -> Result<TopicId, TopicError> {
        assert!(is_valid_name(name), "protocols validate names");
        if self.by_name.contains_key(name) {
            return Err(TopicError::Exists);
        }
        let partitions = partitions.unwrap_or(self.default_partitions);
        if !(1..=meta::MAX_PARTITIONS).contains(&partitions) {
            return Err(TopicError::InvalidPartitions {
                max: meta::MAX_PARTITIONS,
            });
        }
        if self.by_name.len() >= self.max_topics {
            return Err(TopicError::TooMany {
                limit: self.max_topics,
            });
        }
        let tdir = self
            .data_dir
            .join(TOPICS_DIR)
            .join(String::from_utf8_lossy(name).as_ref());
        let existed = tdir.exists();
        let tm = TopicMeta {
            id: meta::random_id(),
            partitions,
            format,
        };
        let opened = (|| -> Result<Vec<Log>, StorageError> {
            fs::create_dir_all(&tdir)
                .map_err(|e| StorageError::io(&tdir, "create directory", e))?;
            meta::write_topic_unsynced(&tdir, &tm)?;
            let mut logs = Vec::new();
            for p in 0..partitions {
                let (pdir, file) = partition_path(&self.data_dir, name, p, format);
                let options = LogOptions {
                    format,
                    ..self.log_options.clone()
                };
                logs.push(Log::open(&pdir, file, options, None)?);
            }
            Ok(logs)
        })();
        let logs = opened.map_err(|e| {
            error!("creating topic {}: {e}", String::from_utf8_lossy(name));
            if !existed && let Err(rm) = remove_new_topic_dir(&tdir, partitions, format) {
                error!("cannot remove {}: {rm}", tdir.display());
            }
            TopicError::Storage(e.client_reason())
        })?;
        let id = self.topics.len() as TopicId;
        let mut parts = Vec::new();
        for (p, mut log) in logs.into_iter().enumerate() {
            // Nothing in a new log counts as durable before the
            // directories that name it are (its own is synced by the log
            // itself; the topic's holds topic.meta and the partitions).
            log.sync_dirs_first(&[
                tdir.clone(),
                self.data_dir.join(TOPICS_DIR),
                self.data_dir.clone(),
            ]);
            let journal = JournalId::Partition(PartitionId {
                topic: id,
                partition: p as u32,
            });
            self.jobs
                .extend(log.take_jobs().into_iter().map(|j| (journal, j)));
            parts.push(Partition::new(log));
        }
        info!(
            "created topic={} partitions={partitions} format={}",
            String::from_utf8_lossy(name),
            format.name()
        );
        self.topics.push(Topic {
            name: name.into(),
            id: tm.id,
            format,
            partitions: parts,
        });
        self.by_name.insert(name.into(), id);
        Ok(id)
    }

    /// The cluster id (persisted in `broker.meta`).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// How many partitions a topic has.
    pub fn partition_count(&self, topic: TopicId) -> u32 {
        self.topics[topic as usize].partitions.len() as u32
    }

    /// How a topic stores its records.
    pub fn topic_format(&self, topic: TopicId) -> Format {
        self.topics[topic as usize].format
    }

    /// Every topic's id and name, in creation order.
    pub fn topic_ids(&self) -> impl Iterator<Item = (TopicId, &[u8])> {
        self.topics
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.partitions.is_empty())
            .map(|(i, t)| (i as TopicId, &*t.name))
    }

    pub fn topic_name(&self, topic: TopicId) -> &[u8] {
        &self.topics[topic as usize].name
    }

    pub fn topic_count(&self) -> usize {
        self.by_name.len()
    }

    /// Every partition of every topic, in creation order.
    pub fn partitions(&self) -> Vec<PartitionInfo> {
        let mut out = Vec::new();
        for topic in &self.topics {
            for (p, part) in topic.partitions.iter().enumerate() {
                out.push(PartitionInfo {
                    topic: topic.name.clone(),
                    partition: p as u32,
                    partitions: topic.partitions.len() as u32,
                    first: part.log.first_offset(),
                    next: part.log.durable().offset,
                    bytes: part.log.len_bytes(),
                    segments: part.log.segments(),
                });
            }
        }
        out
    }

    /// Whether a partition exists (its topic was not deleted).
    pub fn live(&self, p: PartitionId) -> bool {
        self.topics
            .get(p.topic as usize)
            .is_some_and(|t| (p.partition as usize) < t.partitions.len())
    }

    /// Deletes a topic: its pending appends fail, its waiters wake, its
    /// commits go, and its directory is renamed aside, then deleted by a
    /// helper thread. The default topic cannot be deleted.
    pub fn delete_topic(&mut self, name: &[u8]) -> Result<(), TopicError> {
        if name == DEFAULT_TOPIC {
            return Err(TopicError::Invalid);
        }
        let id = self.by_name.remove(name).ok_or(TopicError::Unknown)?;
        let parts = std::mem::take(&mut self.topics[id as usize].partitions);
        let error = Rc::new(WriteError {
            reason: "the topic was deleted".into(),
            no_space: false,
        });
        for (i, mut part) in parts.into_iter().enumerate() {
            let p = PartitionId {
                topic: id,
                partition: i as u32,
            };
            part.waiting
                .fail(JournalId::Partition(p), 0, &error, &mut self.settled);
            self.waiters.data(p, u64::MAX, &mut self.woken);
            self.producers.failed(p, 0);
        }
        self.offsets.forget_topic(name);
        let dir = self
            .data_dir
            .join(TOPICS_DIR)
            .join(String::from_utf8_lossy(name).as_ref());
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let aside = self.data_dir.join(TOPICS_DIR).join(format!(
            "{}{DELETED_MARK}{nanos}",
            String::from_utf8_lossy(name)
        ));
        match fs::rename(&dir, &aside) {
            Ok(()) => self
                .jobs
                .push((JournalId::Offsets, FileJob::DeleteDir(aside))),
            Err(e) => error!(
                "deleting topic {}: cannot rename {}: {e}",
                String::from_utf8_lossy(name),
                dir.display()
            ),
        }
        info!("deleted topic={}", String::from_utf8_lossy(name));
        self.collect_jobs();
        Ok(())
    }

    fn part(&self, p: PartitionId) -> &Partition {
        &self.topics[p.topic as usize].partitions[p.partition as usize]
    }

    fn part_mut(&mut self, p: PartitionId) -> &mut Partition {
        &mut self.topics[p.topic as usize].partitions[p.partition as usize]
    }

    // ----- producing and reading ----------------------------------------

    /// Appends a message for `conn`. The ticket settles when the message is
    /// as durable as the fsync policy promises.
    pub fn append(
        &mut self,
        p: PartitionId,
        message: &[u8],
        conn: ConnId,
    ) -> Result<Ticket, WriteError> {
        if !self.live(p) {
            return Err(WriteError {
                reason: "the topic was deleted".into(),
                no_space: false,
            });
        }
        let part = self.part_mut(p);
        let appended = part.log.append(message).map_err(|e| {
            error!("append: {e}");
            write_error(&e)
        })?;
        part.waiting.push(conn, appended.seq);
        let big = part.log.staged_bytes() >= config::MAX_BATCH_BYTES;
        self.mark_dirty(p);
        self.stats.produced += 1;
        if big {
            self.flush_partition(p);
        }
        Ok(Ticket {
            journal: JournalId::Partition(p),
            seq: appended.seq,
            offset: appended.offset,
        })
    }

    /// One past the last offset readers may see.
    pub fn visible_end(&self, p: PartitionId) -> u64 {
        if !self.live(p) {
            return 0;
        }
        self.part(p).log.durable().offset
    }

    /// The oldest offset still stored.
    pub fn first_offset(&self, p: PartitionId) -> u64 {
        if !self.live(p) {
            return 0;
        }
        self.part(p).log.first_offset()
    }

    /// A read at `offset` of something staged this turn (a pipelined
    /// `PRODUCE` then read) writes the batch now, so the reader sees what
    /// was acknowledged.
    pub fn flush_if_staged(&mut self, p: PartitionId, offset: u64) {
        if !self.live(p) {
            return;
        }
        let log = &self.part(p).log;
        if offset >= log.written().offset && offset < log.next_offset() {
            self.flush_partition(p);
        }
    }

    /// A new loop turn: the read budget is full again.
    pub fn begin_turn(&mut self) {
        self.turn_read_bytes = 0;
    }

    /// Whether this turn has read its share from the logs
    /// ([`config::READ_BUDGET_PER_TURN`]): further large reads (a text
    /// `FETCH`, a subscription's refill) wait for the next turn, so that
    /// one turn stays short and other clients' small requests are
    /// answered within milliseconds however many readers are busy.
    pub fn over_read_budget(&self) -> bool {
        self.turn_read_bytes >= config::READ_BUDGET_PER_TURN
    }

    /// Reads up to `max_count` messages from `from`, up to `max_bytes` of
    /// them (at least one), calling `emit(offset, message)` for each until
    /// it returns false (that message was not taken).
    /// Returns the offset after the last one.
    pub fn read(
        &mut self,
        p: PartitionId,
        from: u64,
        max_count: usize,
        max_bytes: usize,
        mut emit: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<u64, ReadError> {
        if !self.live(p) {
            return Err(ReadError::Deleted);
        }
        self.flush_if_staged(p, from);
        let first = self.first_offset(p);
        if from < first {
            return Err(ReadError::OutOfRange { first });
        }
        let Broker {
            topics,
            read_buf,
            stats,
            turn_read_bytes,
            ..
        } = self;
        let log = &mut topics[p.topic as usize].partitions[p.partition as usize].log;
        let end = log.durable().offset;
        let mut count = 0u64;
        let result = log.read(from, end, max_count, max_bytes, read_buf, |o, m| {
            let taken = emit(o, m);
            if taken {
                count += 1;
                *turn_read_bytes += m.len();
            }
            taken
        });
        stats.consumed += count;
        result.map_err(|e| {
            error!("read failed: {e}");
            ReadError::Storage(e.client_reason())
        })
    }

    /// Appends a Kafka record batch (validated by the caller) for `conn`,
    /// with the idempotent-producer checks. A retried batch that is already
    /// durable answers with its original offset and `pending: false`.
    pub fn append_batch(
        &mut self,
        p: PartitionId,
        bytes: &[u8],
        header: &BatchHeader,
        conn: ConnId,
    ) -> Result<BatchAppend, BatchRefusal> {
        if !self.live(p) {
            return Err(BatchRefusal::Deleted);
        }
        if bytes.len() > self.max_message_bytes {
            return Err(BatchRefusal::TooLarge);
        }
        let journal = JournalId::Partition(p);
        let idempotent = header.has_producer_id();
        if idempotent {
            match self.producers.check(
                p,
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                header.last_sequence(),
            ) {
                Check::Append => {}
                Check::Duplicate(b) => {
                    return match b.ticket_seq {
                        // Its first append is still being made durable.
                        Some(_) => Err(BatchRefusal::StillPending),
                        None => Ok(BatchAppend {
                            ticket: Ticket {
                                journal,
                                seq: 0,
                                offset: b.base_offset,
                            },
                            pending: false,
                        }),
                    };
                }
                Check::OutOfOrder { .. } => return Err(BatchRefusal::OutOfOrder),
                Check::StaleEpoch => return Err(BatchRefusal::StaleEpoch),
            }
        }
        let part = self.part_mut(p);
        let appended = part
            .log
            .append_batch(bytes, header, MAX_DECOMPRESSED_TEXT)
            .map_err(|e| match e {
                AppendBatchError::Invalid(why) => BatchRefusal::Invalid(why),
                AppendBatchError::Storage(e) => {
                    error!("append: {e}");
                    BatchRefusal::Storage(write_error(&e))
                }
            })?;
        part.waiting.push(conn, appended.seq);
        let big = part.log.staged_bytes() >= config::MAX_BATCH_BYTES;
        if idempotent {
            self.producers.record(
                p,
                header.producer_id,
                header.producer_epoch,
                producers::Batch {
                    first_seq: header.base_sequence,
                    last_seq: header.last_sequence(),
                    base_offset: appended.offset,
                    ticket_seq: Some(appended.seq),
                },
            );
        }
        self.mark_dirty(p);
        self.stats.produced += u64::try_from(header.record_count).unwrap_or(0);
        if big {
            self.flush_partition(p);
        }
        Ok(BatchAppend {
            ticket: Ticket {
                journal,
                seq: appended.seq,
                offset: appended.offset,
            },
            pending: true,
        })
    }

    /// Copies record batches from `from` into `out` for a Kafka reader:
    /// stored batches of a batch partition, batches built from the lines
    /// of a text partition. At most `max_bytes` (but at least one batch
    /// if there is one). Returns the offset after them.
    pub fn read_batches(
        &mut self,
        p: PartitionId,
        from: u64,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<u64, ReadError> {
        if !self.live(p) {
            return Err(ReadError::Deleted);
        }
        self.flush_if_staged(p, from);
        let first = self.first_offset(p);
        if from < first {
            return Err(ReadError::OutOfRange { first });
        }
        let Broker {
            topics,
            read_buf,
            turn_read_bytes,
            ..
        } = self;
        let log = &mut topics[p.topic as usize].partitions[p.partition as usize].log;
        let end = log.durable().offset;
        let before = out.len();
        let result = match log.format() {
            Format::Batch => log.read_raw(from, end, max_bytes, read_buf, out),
            Format::Text => log.read_as_batches(from, end, max_bytes, read_buf, out),
        };
        *turn_read_bytes += out.len().saturating_sub(before);
        result.map_err(|e| {
            error!("read failed: {e}");
            ReadError::Storage(e.client_reason())
        })
    }

    /// A producer id unique across restarts (InitProducerId), or `None`
    /// if a new block of ids could not be reserved.
    pub fn new_producer_id(&mut self) -> Option<i64> {
        if self.next_producer_id >= self.producer_ids_until {
            // Once per PRODUCER_ID_BLOCK ids: a small synchronous write,
            // rare enough not to matter to the reactor.
            let until = self.next_producer_id + PRODUCER_ID_BLOCK;
            let default_id = self.topics[0].id;
            if let Err(e) = meta::write_broker(&self.data_dir, &self.cluster_id, &default_id, until)
            {
                error!("reserving producer ids: {e}");
                return None;
            }
            info!("reserved producer ids up to {until}");
            self.producer_ids_until = until;
        }
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        Some(id)
    }

    // ----- committed offsets --------------------------------------------

    /// Stores `group`'s position in a partition for `conn`.
    pub fn commit(
        &mut self,
        p: PartitionId,
        group: &[u8],
        offset: u64,
        conn: ConnId,
    ) -> Result<Ticket, CommitError> {
        if !self.live(p) {
            return Err(CommitError::Deleted);
        }
        self.flush_if_staged(p, offset.saturating_sub(1));
        let end = self.visible_end(p);
        if offset > end {
            return Err(CommitError::PastEnd { end });
        }
        let limit = self.groups.max_groups();
        if !self.offsets.has_group(group) && self.offsets.group_count() >= limit {
            return Err(CommitError::TooManyGroups { limit });
        }
        let name = &self.topics[p.topic as usize].name;
        let seq = self.offsets.stage(name, p.partition, group, offset);
        self.offsets_waiting.push(conn, seq);
        self.offsets_dirty = true;
        Ok(Ticket {
            journal: JournalId::Offsets,
            seq,
            offset,
        })
    }

    /// Every committed position of `group`: (topic, partition, offset).
    pub fn committed_by_group(&self, group: &[u8]) -> Vec<(String, u32, u64)> {
        let mut out: Vec<(String, u32, u64)> = self
            .offsets
            .entries()
            .filter(|(_, _, g, _)| *g == group)
            .map(|(t, p, _, o)| (String::from_utf8_lossy(t).into_owned(), p, o))
            .collect();
        out.sort();
        out
    }

    /// The first offset whose record has a timestamp at or after `ts`, and
    /// that timestamp (ListOffsets by time); `None` if there is none (text
    /// partitions answer at index-interval granularity, never late).
    pub fn offset_for_time(
        &mut self,
        p: PartitionId,
        ts: i64,
    ) -> Result<Option<(u64, i64)>, ReadError> {
        if !self.live(p) {
            return Err(ReadError::Deleted);
        }
        let Broker {
            topics, read_buf, ..
        } = self;
        let log = &mut topics[p.topic as usize].partitions[p.partition as usize].log;
        log.offset_for_time(ts, read_buf).map_err(|e| {
            error!("read failed: {e}");
            ReadError::Storage(e.client_reason())
        })
    }

    /// Every committed position, in no particular order: (topic,
    /// partition, group, offset). For metrics.
    pub fn committed_offsets(&self) -> impl Iterator<Item = (&[u8], u32, &[u8], u64)> {
        self.offsets.entries()
    }

    /// `group`'s committed position in a partition.
    pub fn committed(&self, p: PartitionId, group: &[u8]) -> Option<u64> {
        if !self.live(p) {
            return None;
        }
        self.offsets
            .get(&self.topics[p.topic as usize].name, p.partition, group)
    }

    // ----- consumer groups --------------------------------------------------

    /// A Kafka JoinGroup (see [`groups::Groups::join`]).
    pub fn join_group(
        &mut self,
        j: &Join<'_>,
        conn: ConnId,
    ) -> Result<Option<JoinResult>, GroupError> {
        self.groups.join(j, conn, Instant::now(), &mut self.woken)
    }

    /// A Kafka SyncGroup.
    pub fn sync_group(
        &mut self,
        group: &str,
        generation: i32,
        member: &str,
        assignments: Vec<(String, Vec<u8>)>,
        conn: ConnId,
    ) -> Result<Option<Vec<u8>>, GroupError> {
        self.groups.sync(
            group,
            generation,
            member,
            assignments,
            conn,
            Instant::now(),
            &mut self.woken,
        )
    }

    pub fn heartbeat_group(
        &mut self,
        group: &str,
        generation: i32,
        member: &str,
    ) -> Result<(), GroupError> {
        self.groups
            .heartbeat(group, generation, member, Instant::now())
    }

    pub fn leave_group(&mut self, group: &str, members: &[&str]) -> Vec<Result<(), GroupError>> {
        let now = Instant::now();
        let results = self.groups.leave(group, members, now, &mut self.woken);
        self.reassign_text_group(group);
        results
    }

    pub fn describe_group(&self, group: &str) -> Option<GroupInfo> {
        self.groups.describe(group)
    }

    /// Every group being coordinated, and every group with commits:
    /// (name, protocol type; "" for groups known only by their commits).
    pub fn list_groups(&self) -> Vec<(String, String)> {
        let mut out = self.groups.list();
        for g in self.offsets.group_names() {
            let name = String::from_utf8_lossy(g).into_owned();
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, String::new()));
            }
        }
        out.sort();
        out
    }

    /// Whether a Kafka commit for `group` by this member is allowed.
    pub fn check_group_commit(
        &self,
        group: &str,
        generation: i32,
        member: &str,
    ) -> Result<(), GroupError> {
        self.groups.check_commit(group, generation, member)
    }

    /// A text member joins `group` to share topic `topic`: its member id;
    /// its partitions come as a [`GroupEvent::Assigned`].
    pub fn join_text_group(
        &mut self,
        group: &str,
        topic: TopicId,
        session: Duration,
        conn: ConnId,
    ) -> Result<String, GroupError> {
        let partitions = self.partition_count(topic);
        self.groups.join_text(
            group,
            topic,
            partitions,
            session,
            conn,
            Instant::now(),
            &mut self.woken,
        )
    }

    /// A text member's heartbeat, acknowledging a generation's
    /// assignment: (generation, its partitions).
    pub fn heartbeat_text_group(
        &mut self,
        group: &str,
        member: &str,
        acked: Option<i32>,
    ) -> Result<(i32, Vec<u32>), GroupError> {
        self.groups
            .heartbeat_text(group, member, acked, Instant::now(), &mut self.woken)
    }

    /// The protocol type of a group being coordinated.
    pub fn group_protocol(&self, group: &str) -> Option<&str> {
        self.groups.protocol_type(group)
    }

    /// News for a connection woken with [`Wake::Group`].
    pub fn take_group_events(&mut self, conn: ConnId) -> Vec<GroupEvent> {
        self.groups.take_events(conn)
    }

    /// A connection closed: it leaves the text groups it was in.
    pub fn connection_closed(&mut self, conn: ConnId) {
        self.waiters.cancel(conn);
        let changed = self
            .groups
            .connection_closed(conn, Instant::now(), &mut self.woken);
        for g in changed {
            self.reassign_text_group(&g);
        }
    }

    fn reassign_text_group(&mut self, group: &str) {
        if self.groups.protocol_type(group) == Some("text")
            && let Some(topic) = self
                .groups
                .describe(group)
                .and(self.text_group_topic(group))
        {
            let partitions = self.partition_count(topic);
            self.groups
                .text_partitions_changed(group, partitions, &mut self.woken);
        }
    }

    /// `--max-groups`.
    pub fn max_groups(&self) -> usize {
        self.groups.max_groups()
    }

    /// The topic a text group reads, if `group` is a text group.
    pub fn text_group_topic(&self, group: &str) -> Option<TopicId> {
        self.groups.text_topic(group)
    }

    // ----- waiting --------------------------------------------------------

    /// `conn` waits for data at `offset` of each partition given, until
    /// `deadline` if any; it is woken (see [`take_woken`](Self::take_woken))
    /// once, then must register again to go on waiting.
    pub fn wait(&mut self, conn: ConnId, keys: &[(PartitionId, u64)], deadline: Option<Instant>) {
        let keys: Vec<(PartitionId, u64)> = keys
            .iter()
            .copied()
            .filter(|(p, _)| self.live(*p))
            .collect();
        let keys = &keys[..];
        self.waiters.register(conn, keys, deadline);
        // Data may already be there: wake at once rather than miss it.
        for &(p, offset) in keys {
            let end = self.visible_end(p);
            if offset < end {
                self.waiters.data(p, end, &mut self.woken);
                break;
            }
        }
    }

    /// `conn` no longer waits (it closed, or its request ended).
    pub fn cancel_wait(&mut self, conn: ConnId) {
        self.waiters.cancel(conn);
    }

    // ----- the loop turn (called by the server) ---------------------------

    /// Writes everything staged this turn (one write per partition touched,
    /// one for commits), settles what that settles, and wakes readers of
    /// new data.
    pub fn flush(&mut self) {
        for p in std::mem::take(&mut self.dirty) {
            if !self.live(p) {
                continue;
            }
            self.part_mut(p).dirty = false;
            self.flush_partition(p);
        }
        if self.offsets_dirty {
            self.offsets_dirty = false;
            if let Some(failed) = self.offsets.flush() {
                self.fail(JournalId::Offsets, failed);
            }
            self.settle_offsets();
        }
        if self.files.take_short() && self.policy != FsyncPolicy::Never {
            // Log files had to be opened over their budget: what holds
            // the budget is mostly logs with unsynced writes, whose
            // descriptors may close only once synced. Sync them now
            // rather than at the next interval.
            self.start_syncs();
        }
        self.collect_jobs();
    }

    /// Settlements for connections, in the order they happened.
    pub fn take_settled(&mut self) -> Vec<Settlement> {
        std::mem::take(&mut self.settled)
    }

    /// Connections whose wait ended.
    pub fn take_woken(&mut self) -> Vec<(ConnId, Wake)> {
        std::mem::take(&mut self.woken)
    }

    /// Whether settlements or wake-ups wait to be delivered.
    pub fn has_news(&self) -> bool {
        !self.settled.is_empty() || !self.woken.is_empty()
    }

    /// File work for helper threads, tagged with the journal to report to.
    pub fn take_jobs(&mut self) -> Vec<(JournalId, FileJob)> {
        self.collect_jobs();
        std::mem::take(&mut self.jobs)
    }

    /// Whether acknowledgements wait for a sync nobody began yet
    /// (`--fsync always`).
    pub fn sync_wanted(&self) -> bool {
        self.policy == FsyncPolicy::Always && self.any_sync_wanted()
    }

    fn any_sync_wanted(&self) -> bool {
        self.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.log.sync_wanted())
            || self.offsets.sync_wanted()
    }

    /// Begins a sync of every journal that has unsynced writes (up to
    /// [`crate::storage::SYNC_SLOTS`] per log at once: what is written
    /// meanwhile goes with the next one, so syncs batch themselves).
    pub fn start_syncs(&mut self) {
        for (t, topic) in self.topics.iter_mut().enumerate() {
            for (i, part) in topic.partitions.iter_mut().enumerate() {
                if part.log.sync_wanted() {
                    let id = JournalId::Partition(PartitionId {
                        topic: t as TopicId,
                        partition: i as u32,
                    });
                    self.jobs
                        .extend(part.log.begin_sync().into_iter().map(|j| (id, j)));
                }
            }
        }
        self.jobs.extend(
            self.offsets
                .begin_sync()
                .into_iter()
                .map(|j| (JournalId::Offsets, j)),
        );
    }

    /// Syncs every journal with unsynced writes on this thread (when the
    /// server has nothing else to do, this beats two thread switches).
    pub fn sync_inline(&mut self) {
        let partitions: Vec<PartitionId> = self.partition_ids().collect();
        for p in partitions {
            if self.part(p).log.sync_wanted() {
                let began = Instant::now();
                let result = self.part_mut(p).log.sync_now();
                self.stats.loop_fsync_seconds.observe(began.elapsed());
                self.stats.fsyncs += 1;
                self.apply_sync(JournalId::Partition(p), result);
            }
        }
        if self.offsets.sync_wanted() {
            let began = Instant::now();
            let result = self.offsets.sync_now();
            self.stats.loop_fsync_seconds.observe(began.elapsed());
            self.stats.fsyncs += 1;
            self.apply_sync(JournalId::Offsets, result);
        }
    }

    /// A helper thread finished a job of `journal`.
    pub fn job_done(&mut self, journal: JournalId, result: JobResult) {
        match result {
            JobResult::Synced { .. } if matches!(journal, JournalId::Partition(p) if !self.live(p)) =>
                {}
            JobResult::Synced {
                sync_id,
                dir,
                result,
            } => {
                if dir {
                    self.stats.dir_syncs += 1;
                } else {
                    self.stats.fsyncs += 1;
                }
                let outcome = match journal {
                    JournalId::Partition(p) => self.part_mut(p).log.sync_completed(sync_id, result),
                    JournalId::Offsets => self.offsets.sync_completed(sync_id, result),
                };
                self.apply_sync(journal, outcome);
                // What the sync released closes if the budget is over.
                self.files.trim();
            }
            JobResult::NotRun(job) => {
                if !matches!(journal, JournalId::Partition(p) if !self.live(p)) {
                    self.jobs.push((journal, job));
                }
            }
            JobResult::Replaced { id, result } => {
                if journal == JournalId::Offsets {
                    self.offsets.replaced(id, result);
                    self.offsets_dirty = true;
                }
            }
        }
    }

    /// When the next timer (a wait's deadline, an interval sync, retention,
    /// a checkpoint) is due.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let wait = self.waiters.next_deadline();
        let sync = match self.policy {
            FsyncPolicy::Interval(_) if self.any_sync_wanted() => Some(self.next_sync_at),
            _ => None,
        };
        let retention = (self.retention_bytes.is_some() || self.retention_age.is_some())
            .then_some(self.next_retention_at);
        [
            wait,
            sync,
            retention,
            self.groups.next_deadline(),
            Some(self.next_checkpoint_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs what is due: expired waits, the interval sync, retention, the
    /// checkpoint.
    pub fn run_timers(&mut self, now: Instant) {
        self.waiters.expire(now, &mut self.woken);
        if self.groups.next_deadline().is_some_and(|d| d <= now) {
            for g in self.groups.expire(now, &mut self.woken) {
                self.reassign_text_group(&g);
            }
        }
        if let FsyncPolicy::Interval(every) = self.policy
            && now >= self.next_sync_at
        {
            if self.any_sync_wanted() {
                self.start_syncs();
            }
            self.next_sync_at = now + every;
        }
        if now >= self.next_retention_at {
            self.next_retention_at = now + RETENTION_CHECK;
            self.apply_retention();
        }
        if now >= self.next_checkpoint_at {
            self.next_checkpoint_at = now + CHECKPOINT_EVERY;
            if let Some(bytes) = self.checkpoint_if_changed() {
                self.jobs.push((
                    JournalId::Offsets,
                    FileJob::Replace {
                        path: self.data_dir.join(CHECKPOINT_FILE),
                        bytes,
                        report: None,
                    },
                ));
            }
        }
    }

    /// At shutdown: writes and syncs everything on this thread, then
    /// writes the checkpoint.
    pub fn sync_all(&mut self) {
        self.flush();
        let partitions: Vec<PartitionId> = self.partition_ids().collect();
        for p in partitions {
            let result = self.part_mut(p).log.sync_now();
            self.apply_sync(JournalId::Partition(p), result);
        }
        let result = self.offsets.sync_now();
        self.apply_sync(JournalId::Offsets, result);
        if let Some(bytes) = self.checkpoint_if_changed() {
            let path = self.data_dir.join(CHECKPOINT_FILE);
            if let Err(e) = crate::storage::replace_file(&path, &bytes) {
                error!("cannot write {}: {e}", path.display());
            }
        }
    }

    /// Whether any journal still has a sync under way on a helper thread
    /// or writes no sync covers yet.
    pub fn waiting_for_disk(&self) -> bool {
        self.any_sync_wanted()
    }

    // ----- internals ------------------------------------------------------

    fn partition_ids(&self) -> impl Iterator<Item = PartitionId> + '_ {
        self.topics.iter().enumerate().flat_map(|(t, topic)| {
            (0..topic.partitions.len()).map(move |p| PartitionId {
                topic: t as TopicId,
                partition: p as u32,
            })
        })
    }

    fn mark_dirty(&mut self, p: PartitionId) {
        let part = self.part_mut(p);
        if !part.dirty {
            part.dirty = true;
            self.dirty.push(p);
        }
    }

    fn flush_partition(&mut self, p: PartitionId) {
        if let Some(failed) = self.part_mut(p).log.flush() {
            self.fail(JournalId::Partition(p), failed);
        }
        self.settle_partition(p);
    }

    /// Settles tickets the durable mark passed and wakes readers of data
    /// that became visible.
    fn settle_partition(&mut self, p: PartitionId) {
        let Broker {
            topics,
            settled,
            waiters,
            woken,
            producers,
            ..
        } = self;
        let part = &mut topics[p.topic as usize].partitions[p.partition as usize];
        let durable = part.log.durable();
        if !producers.is_empty() {
            producers.settled(p, durable.seq);
        }
        part.waiting
            .settle(JournalId::Partition(p), durable.seq, settled);
        if durable.offset > part.visible {
            part.visible = durable.offset;
            waiters.data(p, durable.offset, woken);
        }
    }

    fn settle_offsets(&mut self) {
        let durable = self.offsets.durable().seq;
        self.offsets_waiting
            .settle(JournalId::Offsets, durable, &mut self.settled);
    }

    fn fail(&mut self, journal: JournalId, failed: Failed) {
        error!("{}", failed.error);
        let error = Rc::new(write_error(&failed.error));
        if let JournalId::Partition(p) = journal {
            self.producers.failed(p, failed.seqs.start);
        }
        let waiting = match journal {
            JournalId::Partition(p) => {
                &mut self.topics[p.topic as usize].partitions[p.partition as usize].waiting
            }
            JournalId::Offsets => &mut self.offsets_waiting,
        };
        waiting.fail(journal, failed.seqs.start, &error, &mut self.settled);
    }

    fn apply_sync(&mut self, journal: JournalId, result: SyncResult) {
        match result {
            SyncResult::Advanced => match journal {
                JournalId::Partition(p) => {
                    self.settle_partition(p);
                    if self.part(p).log.has_staged() {
                        // A roll waited for this sync.
                        self.flush_partition(p);
                    }
                }
                JournalId::Offsets => {
                    self.settle_offsets();
                    if self.offsets.has_staged() {
                        self.offsets_dirty = true;
                    }
                }
            },
            SyncResult::Unchanged => {}
            SyncResult::ReadOnly(err) => {
                // Writes to this journal now fail with STORAGE_ERROR
                // (KAFKA_STORAGE_ERROR); reads go on.
                self.stats.fsync_errors += 1;
                error!("{err}");
            }
            SyncResult::Cut(failed) => {
                self.stats.fsync_errors += 1;
                self.fail(journal, failed);
                // What was synced before the failure is still good.
                match journal {
                    JournalId::Partition(p) => self.settle_partition(p),
                    JournalId::Offsets => self.settle_offsets(),
                }
            }
        }
        self.collect_jobs();
    }

    fn collect_jobs(&mut self) {
        for (t, topic) in self.topics.iter_mut().enumerate() {
            for (i, part) in topic.partitions.iter_mut().enumerate() {
                let jobs = part.log.take_jobs();
                if !jobs.is_empty() {
                    let id = JournalId::Partition(PartitionId {
                        topic: t as TopicId,
                        partition: i as u32,
                    });
                    self.jobs.extend(jobs.into_iter().map(|j| (id, j)));
                }
            }
        }
        let jobs = self.offsets.take_jobs();
        self.jobs
            .extend(jobs.into_iter().map(|j| (JournalId::Offsets, j)));
    }

    /// Drops whole old segments past the retention limits; a helper thread
    /// deletes the files, oldest first.
    fn apply_retention(&mut self) {
        if self.retention_bytes.is_none() && self.retention_age.is_none() {
            return;
        }
        let now = SystemTime::now();
        for topic in &mut self.topics {
            for part in &mut topic.partitions {
                part.log
                    .apply_retention(self.retention_bytes, self.retention_age, now);
            }
        }
        self.collect_jobs();
    }

    /// The checkpoint file's bytes if a synced offset moved since the last.
    fn checkpoint_if_changed(&mut self) -> Option<Vec<u8>> {
        let mut changed = false;
        for topic in &mut self.topics {
            for part in &mut topic.partitions {
                let synced = part.log.synced().offset;
                if synced != part.checkpointed {
                    part.checkpointed = synced;
                    changed = true;
                }
            }
        }
        changed.then(|| {
            checkpoint::encode(self.topics.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .map(|(p, part)| (&*t.name, p as u32, part.checkpointed))
            }))
        })
    }
}

impl Topic {
    fn meta(&self) -> TopicMeta {
        TopicMeta {
            id: self.id,
            partitions: self.partitions.len() as u32,
            format: self.format,
        }
    }
}

impl Partition {
    fn new(log: Log) -> Partition {
        Partition {
            visible: log.durable().offset,
            checkpointed: log.synced().offset,
            log,
            waiting: Waiting::default(),
            dirty: false,
        }
    }
}

fn write_error(e: &StorageError) -> WriteError {
    WriteError {
        reason: e.client_reason(),
        no_space: e.is_no_space(),
    }
}

/// The directory and active file name of a partition's log:
/// `data_dir/kafka_log.txt` for the default topic,
/// `data_dir/topics/<name>/log.txt` (or `log.kafka` for batches) for
/// partition 0 of the others, `.../<name>/partition-<n>/` for the rest.
pub fn partition_path(
    data_dir: &Path,
    name: &[u8],
    partition: u32,
    format: Format,
) -> (PathBuf, &'static str) {
    if name == DEFAULT_TOPIC {
        return (data_dir.to_path_buf(), config::LOG_FILE);
    }
    // Valid names are ASCII, one path component, never "." or "..".
    let mut dir = data_dir
        .join(TOPICS_DIR)
        .join(String::from_utf8_lossy(name).as_ref());
    if partition > 0 {
        dir = dir.join(format!("partition-{partition}"));
    }
    let file = match format {
        Format::Text => TOPIC_LOG_FILE,
        Format::Batch => TOPIC_BATCH_FILE,
    };
    (dir, file)
}

/// Removes the directory of a topic whose creation failed. Creation can
/// fail for want of a file descriptor, and `remove_dir_all` needs one per
/// directory level to list it; so the names a new topic can hold are
/// unlinked by path first (which needs none), and only a directory that
/// still holds something unexpected is listed.
fn remove_new_topic_dir(tdir: &Path, partitions: u32, format: Format) -> std::io::Result<()> {
    fn gone(r: std::io::Result<()>) -> std::io::Result<()> {
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
    let log = match format {
        Format::Text => TOPIC_LOG_FILE,
        Format::Batch => TOPIC_BATCH_FILE,
    };
    let meta = meta::TOPIC_META_FILE;
    for name in [meta.to_string(), format!("{meta}.tmp"), log.to_string()] {
        gone(fs::remove_file(tdir.join(name)))?;
    }
    for p in 1..partitions {
        let pdir = tdir.join(format!("partition-{p}"));
        gone(fs::remove_file(pdir.join(log)))?;
        if gone(fs::remove_dir(&pdir)).is_err() {
            gone(fs::remove_dir_all(&pdir))?;
        }
    }
    if gone(fs::remove_dir(tdir)).is_err() {
        gone(fs::remove_dir_all(tdir))?;
    }
    Ok(())
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

/// The first producer id of this run: the time in seconds, shifted, so
/// ids never repeat across restarts (a million per second of uptime).
/// Producer ids reserved in broker.meta at a time.
const PRODUCER_ID_BLOCK: i64 = 1 << 20;

/// Where producer ids started before they were reserved in broker.meta:
/// the clock in seconds, times 2^20.
fn clock_producer_id() -> i64 {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    (secs as i64) << 20
}

/// This process's resident memory, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
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
    fn producer_ids_never_repeat_across_restarts_whatever_the_clock() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: tmp.path().to_path_buf(),
            ..Config::default()
        };
        let first = {
            let mut b = Broker::open(&config, None).unwrap();
            let a = b.new_producer_id().unwrap();
            assert_eq!(b.new_producer_id(), Some(a + 1));
            a
        };
        // The block reserved at that start is past every id it gave.
        let meta = meta::read_broker(tmp.path()).unwrap();
        let reserved = meta.producer_ids_from.unwrap();
        assert_eq!(reserved, first + PRODUCER_ID_BLOCK);
        let mut b = Broker::open(&config, None).unwrap();
        assert!(b.new_producer_id().unwrap() >= reserved);
        drop(b);
        // A directory whose ids ran far ahead of the clock (the clock was
        // set back since): the reservation wins.
        let ahead = clock_producer_id() + (1 << 40);
        let default_id = meta.default_topic_id.unwrap();
        let cluster = meta.cluster_id.unwrap();
        meta::write_broker(tmp.path(), &cluster, &default_id, ahead).unwrap();
        let mut b = Broker::open(&config, None).unwrap();
        assert_eq!(b.new_producer_id(), Some(ahead));
        // Running out of a block reserves the next one on the spot.
        b.next_producer_id = b.producer_ids_until;
        assert_eq!(b.new_producer_id(), Some(ahead + PRODUCER_ID_BLOCK));
        assert_eq!(
            meta::read_broker(tmp.path()).unwrap().producer_ids_from,
            Some(ahead + 2 * PRODUCER_ID_BLOCK)
        );
    }

    #[test]
    fn topic_paths_stay_inside_the_data_dir() {
        let dir = Path::new("/data");
        let path = |name: &[u8], p, format| {
            let (dir, file) = partition_path(dir, name, p, format);
            dir.join(file)
        };
        assert_eq!(
            path(b"default", 0, Format::Text),
            Path::new("/data/kafka_log.txt")
        );
        assert_eq!(
            path(b"orders", 0, Format::Text),
            Path::new("/data/topics/orders/log.txt")
        );
        assert_eq!(
            path(b"...", 0, Format::Text),
            Path::new("/data/topics/.../log.txt")
        );
        assert_eq!(
            path(b"k", 2, Format::Batch),
            Path::new("/data/topics/k/partition-2/log.kafka")
        );
    }
}
