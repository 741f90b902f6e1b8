//! Settling tickets: who waits for which appends of a journal, and telling
//! them, exactly once and in journal order, how their appends ended.
//!
//! Each journal keeps its waiting tickets as runs of consecutive sequence
//! numbers per connection (a pipelined producer's thousand `PRODUCE`s are
//! one run). When the journal's durable mark moves, the runs below it are
//! settled as done; when appends fail, the failure is handed to the runs
//! it covers at that moment. Nothing about a failure is kept afterwards,
//! so the order in which connections later send their replies cannot
//! change what a reply says.

use std::collections::VecDeque;
use std::rc::Rc;

use super::ids::{ConnId, JournalId};

/// Why appends failed, as protocols report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    /// A short reason for a client, without server paths.
    pub reason: String,
    /// Out of space (disk full, file size limit).
    pub no_space: bool,
}

/// How a connection's tickets on one journal ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every ticket below `upto` is durable (or failed, reported apart).
    Done { upto: u64 },
    /// Every ticket from `from` on (up to the end of the connection's run)
    /// failed.
    Failed { from: u64, error: Rc<WriteError> },
}

/// A message for one connection.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub conn: ConnId,
    pub journal: JournalId,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    conn: ConnId,
    first: u64,
    end: u64,
}

/// The tickets waiting on one journal, oldest first.
#[derive(Debug, Default)]
pub struct Waiting {
    runs: VecDeque<Run>,
}

impl Waiting {
    /// Adds ticket `seq` of `conn`. Sequence numbers arrive in order.
    pub fn push(&mut self, conn: ConnId, seq: u64) {
        if let Some(last) = self.runs.back_mut() {
            assert!(seq >= last.end, "tickets arrive in journal order");
            if last.conn == conn && last.end == seq {
                last.end += 1;
                return;
            }
        }
        self.runs.push_back(Run {
            conn,
            first: seq,
            end: seq + 1,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Everything below `durable` is settled as done.
    pub fn settle(&mut self, journal: JournalId, durable: u64, out: &mut Vec<Settlement>) {
        while let Some(run) = self.runs.front_mut() {
            if run.first >= durable {
                break;
            }
            out.push(Settlement {
                conn: run.conn,
                journal,
                outcome: Outcome::Done {
                    upto: durable.min(run.end),
                },
            });
            if run.end <= durable {
                self.runs.pop_front();
            } else {
                run.first = durable;
                break;
            }
        }
    }

    /// Every ticket from `from` on failed.
    pub fn fail(
        &mut self,
        journal: JournalId,
        from: u64,
        error: &Rc<WriteError>,
        out: &mut Vec<Settlement>,
    ) {
        while let Some(run) = self.runs.back_mut() {
            if run.end <= from {
                break;
            }
            out.push(Settlement {
                conn: run.conn,
                journal,
                outcome: Outcome::Failed {
                    from: from.max(run.first),
                    error: error.clone(),
                },
            });
            if run.first >= from {
                self.runs.pop_back();
            } else {
                run.end = from;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const J: JournalId = JournalId::Offsets;

    fn conn(slot: u32) -> ConnId {
        ConnId {
            slot,
            generation: 0,
        }
    }

    fn summary(out: &[Settlement]) -> Vec<(u32, String)> {
        out.iter()
            .map(|s| {
                let what = match &s.outcome {
                    Outcome::Done { upto } => format!("done<{upto}"),
                    Outcome::Failed { from, .. } => format!("failed>={from}"),
                };
                (s.conn.slot, what)
            })
            .collect()
    }

    #[test]
    fn runs_settle_in_order_and_partially() {
        let mut w = Waiting::default();
        for seq in 0..3 {
            w.push(conn(1), seq);
        }
        w.push(conn(2), 3);
        w.push(conn(1), 4);
        let mut out = Vec::new();
        w.settle(J, 2, &mut out);
        assert_eq!(summary(&out), [(1, "done<2".to_string())]);
        out.clear();
        w.settle(J, 5, &mut out);
        assert_eq!(
            summary(&out),
            [
                (1, "done<3".to_string()),
                (2, "done<4".to_string()),
                (1, "done<5".to_string())
            ]
        );
        assert!(w.is_empty());
    }

    #[test]
    fn a_failure_settles_only_the_tickets_it_covers() {
        let mut w = Waiting::default();
        for seq in 0..4 {
            w.push(conn(1), seq);
        }
        w.push(conn(2), 4);
        let err = Rc::new(WriteError {
            reason: "disk full".into(),
            no_space: true,
        });
        let mut out = Vec::new();
        w.fail(J, 2, &err, &mut out);
        assert_eq!(
            summary(&out),
            [(2, "failed>=4".to_string()), (1, "failed>=2".to_string())]
        );
        out.clear();
        // The tickets before the failure still wait for their sync.
        w.settle(J, 1, &mut out);
        assert_eq!(summary(&out), [(1, "done<1".to_string())]);
        out.clear();
        w.settle(J, 10, &mut out);
        assert_eq!(summary(&out), [(1, "done<2".to_string())]);
        assert!(w.is_empty());
    }
}
