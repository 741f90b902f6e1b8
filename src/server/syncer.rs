//! Helper threads for the two slow disk operations the reactor must not
//! wait on: `fdatasync` and deleting old segments.
//!
//! The reactor hands over a job and goes on serving; a thread does the
//! call, sends the result back on a channel and wakes the poll loop through
//! a `mio::Waker`. The threads never touch a socket: the reactor thread owns
//! all client I/O. An `fdatasync` takes 0.2 ms on this project's development
//! VM but tens of milliseconds on an SD card; inline, it would stall every
//! client for that long on each loop turn. (The reactor still syncs inline
//! when it has nothing else to do: see `Core::sync_wanted`.)

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use log::{error, info};
use mio::Waker;

/// Work for the thread.
pub enum Job {
    /// `fdatasync` the file; report back with `journal` and `token`.
    Sync {
        journal: u32,
        file: Arc<File>,
        /// The offset (or sequence number) the sync covers.
        token: u64,
        /// The file length it covers.
        len: u64,
        /// The sync slot it occupies in its log.
        slot: usize,
    },
    /// Delete a file no longer part of any log.
    Delete(PathBuf),
}

/// The result of a sync.
pub struct Done {
    pub journal: u32,
    pub token: u64,
    pub len: u64,
    pub slot: usize,
    pub result: io::Result<()>,
}

/// Handle to the thread. Dropping it lets the thread finish what was
/// queued and exit.
pub struct Syncer {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

/// One worker: takes jobs until the queue closes.
fn work(jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>, waker: &Waker) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        match job {
            Job::Sync {
                journal,
                file,
                token,
                len,
                slot,
            } => {
                let result = file.sync_data();
                drop(file);
                let report = Done {
                    journal,
                    token,
                    len,
                    slot,
                    result,
                };
                if done.send(report).is_err() {
                    return;
                }
                if let Err(e) = waker.wake() {
                    error!("syncer: cannot wake the reactor: {e}");
                }
            }
            Job::Delete(path) => match std::fs::remove_file(&path) {
                Ok(()) => info!("deleted {}", path.display()),
                Err(e) => error!("cannot delete {}: {e}", path.display()),
            },
        }
    }
}

/// Threads working the job queue: enough for every sync slot of a log to
/// run at once.
const THREADS: usize = crate::storage::SYNC_SLOTS;

impl Syncer {
    pub fn start(waker: Arc<Waker>) -> io::Result<Syncer> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = mpsc::channel();
        let mut threads = Vec::new();
        for i in 0..THREADS {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            let waker = waker.clone();
            let thread = std::thread::Builder::new()
                .name(format!("syncer-{i}"))
                .spawn(move || work(&job_rx, &done_tx, &waker))?;
            threads.push(thread);
        }
        Ok(Syncer {
            jobs: Some(jobs),
            done,
            threads,
        })
    }

    /// Queues a job. If the thread is gone (it cannot panic short of a
    /// bug), a sync is reported as failed rather than lost.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        match &self.jobs {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Completed syncs, without waiting.
    pub fn completed(&self) -> impl Iterator<Item = Done> + '_ {
        self.done.try_iter()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
