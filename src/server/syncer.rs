//! Helper threads for the slow disk calls the reactor must not wait on.
//!
//! - A pool of [`SYNC_THREADS`] threads runs `fdatasync`s and directory
//!   syncs, so up to that many syncs of one log run at once (concurrent
//!   syncs share journal commits).
//! - One *janitor* thread writes index and checkpoint files, compacts the
//!   offsets store and deletes old segments, one job at a time in the
//!   order given: retention deletes oldest first, so a crash midway never
//!   leaves a hole.
//!
//! A thread sends each result back on a channel and wakes the poll loop
//! through the function it was given (a `mio::Waker`). The threads never
//! touch a socket. Each `fdatasync` is timed on its thread and the time
//! comes back with its result, for the metrics' latency histogram. An
//! `fdatasync` takes 0.2 ms on this project's
//! development VM but tens of milliseconds on an SD card; inline, it would
//! stall every client for that long. (The server still syncs inline when
//! it has nothing else to do: see `Broker::sync_inline`.)

use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::error;

use crate::broker::JournalId;
use crate::storage::{FileJob, JobResult, SYNC_SLOTS};
use crate::util::histogram::Histogram;

/// Threads in the sync pool: enough for every sync slot of a log.
pub const SYNC_THREADS: usize = SYNC_SLOTS;

type Job = (JournalId, FileJob);
type Done = (JournalId, JobResult);
/// A result as a thread sends it: with how long the `fdatasync` took.
type Timed = (JournalId, JobResult, Option<Duration>);

/// How long a helper waits before handing back a job that could not run
/// for want of a descriptor (it is then queued again).
const NOT_RUN_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// Handle to the helper threads. [`Helpers::finish`] lets them finish what
/// was queued and stop.
pub struct Helpers {
    syncs: Option<Sender<Job>>,
    janitor: Option<Sender<Job>>,
    done_tx: Sender<Timed>,
    done: Receiver<Timed>,
    threads: Vec<JoinHandle<()>>,
    /// Durations of the file data syncs (not directory syncs) whose
    /// results were collected.
    fsync_seconds: Histogram,
}

fn work(jobs: &Mutex<Receiver<Job>>, done: &Sender<Timed>, wake: &(dyn Fn() + Send + Sync)) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((journal, job)) = job else { return };
        let timed = matches!(job, FileJob::Sync { .. });
        let began = Instant::now();
        if let Some(result) = job.run() {
            let took = timed.then(|| began.elapsed());
            if matches!(result, JobResult::NotRun(_)) {
                // Out of descriptors: give the process a moment before
                // the job is queued again (this is a helper thread).
                std::thread::sleep(NOT_RUN_BACKOFF);
            }
            if done.send((journal, result, took)).is_err() {
                return;
            }
            wake();
        }
    }
}

impl Helpers {
    pub fn start(wake: Arc<dyn Fn() + Send + Sync>) -> io::Result<Helpers> {
        let (done_tx, done) = mpsc::channel();
        let mut threads = Vec::new();
        let mut spawn = |name: String, count: usize| -> io::Result<Sender<Job>> {
            let (tx, rx) = mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..count {
                let rx = rx.clone();
                let done_tx = done_tx.clone();
                let wake = wake.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("{name}-{i}"))
                        .spawn(move || work(&rx, &done_tx, &*wake))?,
                );
            }
            Ok(tx)
        };
        let syncs = spawn("syncer".into(), SYNC_THREADS)?;
        let janitor = spawn("janitor".into(), 1)?;
        Ok(Helpers {
            syncs: Some(syncs),
            janitor: Some(janitor),
            done_tx,
            done,
            threads,
            fsync_seconds: Histogram::default(),
        })
    }

    /// Queues a job. If its thread is gone (only a bug could do that), the
    /// job runs here rather than being lost.
    pub fn submit(&mut self, journal: JournalId, job: FileJob) {
        let queue = match job {
            FileJob::Sync { .. } | FileJob::SyncDir { .. } => &self.syncs,
            FileJob::Replace { .. } | FileJob::Delete(_) | FileJob::DeleteDir(_) => &self.janitor,
        };
        let job = match queue {
            Some(tx) => match tx.send((journal, job)) {
                Ok(()) => return,
                Err(mpsc::SendError((_, job))) => job,
            },
            None => job,
        };
        error!("helper thread is gone; running a file job inline");
        if let Some(result) = job.run() {
            let _ = self.done_tx.send((journal, result, None));
        }
    }

    /// Results of finished jobs, without waiting.
    pub fn completed(&mut self) -> Vec<Done> {
        let Helpers {
            done,
            fsync_seconds,
            ..
        } = self;
        done.try_iter()
            .map(|(journal, result, took)| {
                if let Some(took) = took {
                    fsync_seconds.observe(took);
                }
                (journal, result)
            })
            .collect()
    }

    /// How long the file data syncs collected so far took.
    pub fn fsync_seconds(&self) -> &Histogram {
        &self.fsync_seconds
    }

    /// Lets the threads finish every queued job, waits for them, and
    /// returns the results not yet collected.
    pub fn finish(&mut self) -> Vec<Done> {
        self.syncs = None;
        self.janitor = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.completed()
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.finish();
    }
}
