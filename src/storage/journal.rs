//! Durability bookkeeping shared by every journal: the partition logs and
//! the committed-offsets store.
//!
//! A journal numbers its appends with *sequence numbers* that are never
//! reused, not even after a failed write gives its record offsets back. A
//! caller that wants to know when an append is safe keeps its sequence
//! number (its *ticket*) and compares it with the journal's marks:
//!
//! - `written`: every append below `written.seq` reached the file or failed;
//! - `synced`: every append below `synced.seq` reached the disk (an
//!   `fdatasync` covered it) or failed.
//!
//! Failures are never stored here: the call that finds a failure returns
//! the failed range once, and the caller settles the tickets in it at that
//! moment.
//!
//! Syncs run on helper threads and may finish in any order. Each one covers
//! what was written to its file before it began. [`SyncTracker`] keeps the
//! syncs under way in the order they began; `synced` moves only past a
//! prefix of finished ones, so a later sync of a new segment can never
//! vouch for an older segment that is still being synced, nor for a
//! directory entry not yet synced.

use std::collections::VecDeque;

/// A point in a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Every append numbered below this is covered.
    pub seq: u64,
    /// One past the last record offset covered (partition logs only).
    pub offset: u64,
    /// Which file of the journal: bumped whenever a new file takes over
    /// (a segment roll, an offsets compaction).
    pub file: u64,
    /// Bytes of `file` covered.
    pub len: u64,
}

/// What a sync makes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTarget {
    /// The data of file generation `file`, using sync slot `slot` (each
    /// slot is its own open of the file, so every sync sees every
    /// writeback error).
    File { file: u64, slot: usize },
    /// The directory entries of the journal (a new or renamed file).
    Dir,
}

/// The slot of the sync that seals a rolled segment: it runs on the old
/// segment's append descriptor, which slot 0's syncs use too.
pub const SEAL_SLOT: usize = usize::MAX;

/// Whether syncs on slots `a` and `b` of one file go through the same
/// open file description (slot 0 and [`SEAL_SLOT`]; one slot never has
/// two syncs running).
fn shares_descriptor(a: usize, b: usize) -> bool {
    a != b && a.min(b) == 0 && a.max(b) == SEAL_SLOT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Done,
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    target: SyncTarget,
    upto: Mark,
    state: State,
}

/// What became of a finished sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// `synced` moved forward.
    Advanced,
    /// Recorded; `synced` waits for an older sync.
    Pending,
    /// The sync failed.
    Failed,
    /// The sync was abandoned meanwhile (a cut): ignore it.
    Stale,
}

/// The syncs under way for one journal, in the order they began.
#[derive(Debug)]
pub struct SyncTracker {
    in_flight: VecDeque<InFlight>,
    next_id: u64,
    synced: Mark,
    /// The highest mark a sync begun (or finished) covers.
    begun: Mark,
    /// The newest file a data sync succeeded on, and the bytes it covered
    /// (whatever older syncs are still running).
    file_synced: (u64, u64),
}

impl SyncTracker {
    /// A tracker for a journal that is durable up to `synced` (at open,
    /// everything in the files is taken as durable).
    pub fn new(synced: Mark) -> Self {
        SyncTracker {
            in_flight: VecDeque::new(),
            next_id: 0,
            synced,
            begun: synced,
            file_synced: (synced.file, synced.len),
        }
    }

    /// Bytes of file `file` a finished sync covered (0 if none did).
    pub fn file_synced(&self, file: u64) -> u64 {
        if self.file_synced.0 == file {
            self.file_synced.1
        } else {
            0
        }
    }

    pub fn synced(&self) -> Mark {
        self.synced
    }

    pub fn begun(&self) -> Mark {
        self.begun
    }

    /// Syncs under way or waiting to be run again.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether sync `id` (if still tracked) is of a directory.
    pub fn is_dir_sync(&self, id: u64) -> bool {
        self.in_flight
            .iter()
            .any(|f| f.id == id && f.target == SyncTarget::Dir)
    }

    /// Whether a sync of file `file` (any slot) is running.
    pub fn running_on(&self, file: u64) -> bool {
        self.in_flight.iter().any(|f| {
            f.state == State::Running
                && matches!(f.target, SyncTarget::File { file: g, .. } if g == file)
        })
    }

    /// Whether sync slot `slot` of file `file` is in use.
    pub fn slot_busy(&self, file: u64, slot: usize) -> bool {
        self.in_flight
            .iter()
            .any(|f| f.state != State::Done && f.target == SyncTarget::File { file, slot })
    }

    /// Records a sync of `target` that will cover `upto`; returns its id.
    pub fn begin(&mut self, target: SyncTarget, upto: Mark) -> u64 {
        assert!(
            upto.seq >= self.begun.seq,
            "syncs begin in journal order: {upto:?} after {:?}",
            self.begun
        );
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.push_back(InFlight {
            id,
            target,
            upto,
            state: State::Running,
        });
        self.begun = upto;
        id
    }

    /// Records the end of sync `id`. A success also settles every older
    /// sync of the same file (one `fdatasync` covers all that was written
    /// before it) made through another descriptor: each open file
    /// description reports a writeback error once, so an older sync on
    /// the *same* description may have taken the report this one did not
    /// see. Slot 0 and [`SEAL_SLOT`] share one (the append descriptor),
    /// so neither settles the other. A failure is never run again (Linux reports a failed
    /// writeback once, so a second try could succeed over lost data): the
    /// caller must [`abandon`](Self::abandon) and cut, or stop writing.
    pub fn complete(&mut self, id: u64, ok: bool) -> Completion {
        let Some(i) = self.in_flight.iter().position(|f| f.id == id) else {
            return Completion::Stale;
        };
        if !ok {
            return Completion::Failed;
        }
        let target = self.in_flight[i].target;
        if let SyncTarget::File { file, .. } = target {
            let len = self.in_flight[i].upto.len;
            if file > self.file_synced.0 {
                self.file_synced = (file, len);
            } else if file == self.file_synced.0 {
                self.file_synced.1 = self.file_synced.1.max(len);
            }
        }
        for f in self.in_flight.iter_mut().take(i + 1) {
            let vouches = matches!(
                (f.target, target),
                (SyncTarget::File { file: a, slot: sa }, SyncTarget::File { file: b, slot: sb })
                    if a == b && !shares_descriptor(sa, sb)
            );
            if f.id == id || (vouches && f.state == State::Running) {
                f.state = State::Done;
            }
        }
        let before = self.synced;
        while self
            .in_flight
            .front()
            .is_some_and(|f| f.state == State::Done)
        {
            if let Some(f) = self.in_flight.pop_front() {
                assert!(f.upto.seq >= self.synced.seq, "synced never moves back");
                self.synced = f.upto;
            }
        }
        if self.synced != before {
            Completion::Advanced
        } else {
            Completion::Pending
        }
    }

    /// Forgets every sync under way (their completions become
    /// [`Completion::Stale`]) and sets both marks to `to`: after a cut,
    /// everything left in the journal is durable and everything else is
    /// gone.
    pub fn abandon(&mut self, to: Mark) {
        self.in_flight.clear();
        self.synced = to;
        self.begun = to;
        self.file_synced = (to.file, to.len);
    }

    /// Moves both marks to `to` when nothing is under way and no sync is
    /// needed (everything written was synced by other means, such as a
    /// synchronous sync at shutdown).
    pub fn synced_directly(&mut self, to: Mark) {
        // Older syncs still running cover less; they finish as Stale.
        self.in_flight.clear();
        if to.seq >= self.synced.seq {
            self.synced = to;
        }
        if to.seq >= self.begun.seq {
            self.begun = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(seq: u64, file: u64) -> Mark {
        Mark {
            seq,
            offset: seq,
            file,
            len: seq * 10,
        }
    }

    #[test]
    fn synced_moves_only_past_a_finished_prefix() {
        let mut t = SyncTracker::new(mark(0, 0));
        let a = t.begin(SyncTarget::File { file: 0, slot: 0 }, mark(5, 0));
        let dir = t.begin(SyncTarget::Dir, mark(5, 1));
        let b = t.begin(SyncTarget::File { file: 1, slot: 0 }, mark(9, 1));
        assert!(t.slot_busy(1, 0) && !t.slot_busy(1, 1));
        assert_eq!(t.complete(b, true), Completion::Pending);
        assert_eq!(t.synced(), mark(0, 0), "the old segment is not synced yet");
        assert_eq!(t.complete(a, true), Completion::Advanced);
        assert_eq!(t.synced(), mark(5, 0), "the directory is not synced yet");
        assert_eq!(t.complete(dir, true), Completion::Advanced);
        assert_eq!(t.synced(), mark(9, 1));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_later_sync_of_the_same_file_covers_older_ones() {
        let mut t = SyncTracker::new(mark(0, 0));
        let a = t.begin(SyncTarget::File { file: 0, slot: 0 }, mark(3, 0));
        let b = t.begin(SyncTarget::File { file: 0, slot: 1 }, mark(6, 0));
        assert_eq!(t.complete(b, true), Completion::Advanced);
        assert_eq!(t.synced(), mark(6, 0));
        assert_eq!(t.complete(a, true), Completion::Stale);
    }

    #[test]
    fn abandoned_syncs_report_stale_and_never_move_the_mark() {
        let mut t = SyncTracker::new(mark(0, 0));
        let a = t.begin(SyncTarget::File { file: 0, slot: 0 }, mark(3, 0));
        let b = t.begin(SyncTarget::File { file: 0, slot: 1 }, mark(6, 0));
        assert_eq!(t.complete(b, false), Completion::Failed);
        t.abandon(mark(7, 0));
        assert_eq!(t.complete(a, true), Completion::Stale);
        assert_eq!(t.synced(), mark(7, 0));
        assert_eq!(t.begun(), mark(7, 0));
    }

    #[test]
    fn a_failed_sync_holds_the_mark_whatever_succeeds_after_it() {
        let mut t = SyncTracker::new(mark(0, 0));
        let a = t.begin(SyncTarget::File { file: 0, slot: 0 }, mark(3, 0));
        let b = t.begin(SyncTarget::Dir, mark(3, 1));
        assert_eq!(t.complete(a, false), Completion::Failed);
        assert_eq!(t.complete(b, true), Completion::Pending);
        assert_eq!(t.synced(), mark(0, 0), "nothing vouches for a's writes");
    }

    /// Found in review: the sync that seals a rolled segment runs on the
    /// descriptor slot 0's syncs use. If a slot-0 sync took a writeback
    /// error's one report, the seal's fdatasync succeeds, and its success
    /// settled the failed sync, whose report then came back stale: the
    /// lost writes counted as synced.
    #[test]
    fn a_seal_does_not_vouch_for_a_sync_on_the_same_descriptor() {
        let mut t = SyncTracker::new(mark(0, 0));
        let a = t.begin(SyncTarget::File { file: 0, slot: 0 }, mark(3, 0));
        let seal = t.begin(
            SyncTarget::File {
                file: 0,
                slot: SEAL_SLOT,
            },
            mark(5, 0),
        );
        assert_eq!(t.complete(seal, true), Completion::Pending);
        assert_eq!(t.synced(), mark(0, 0));
        assert_eq!(t.complete(a, false), Completion::Failed, "not stale");
        // Another slot (its own description) does vouch.
        let mut t = SyncTracker::new(mark(0, 0));
        let a = t.begin(SyncTarget::File { file: 0, slot: 0 }, mark(3, 0));
        let b = t.begin(SyncTarget::File { file: 0, slot: 1 }, mark(5, 0));
        assert_eq!(t.complete(b, true), Completion::Advanced);
        assert_eq!(t.synced(), mark(5, 0));
        assert_eq!(t.complete(a, true), Completion::Stale);
    }

    #[test]
    fn a_sync_says_whether_it_is_of_a_directory_while_tracked() {
        let mut t = SyncTracker::new(mark(0, 0));
        let a = t.begin(SyncTarget::File { file: 0, slot: 0 }, mark(1, 0));
        let b = t.begin(SyncTarget::Dir, mark(1, 1));
        assert!(!t.is_dir_sync(a));
        assert!(t.is_dir_sync(b));
        assert!(t.running_on(0) && !t.running_on(1));
        assert_eq!(t.complete(a, true), Completion::Advanced);
        assert!(!t.running_on(0));
    }
}
