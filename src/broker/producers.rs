//! Idempotent producers: per (partition, producer id), the epoch, and the
//! last few batches with their sequence numbers and offsets, so a retried
//! batch gets its original offset instead of being stored twice, and a
//! batch after a gap is refused.
//!
//! Rebuilt at start from the batch headers of each partition's active
//! segment (see `storage::Log::producer_batches`). Bounded: at most
//! [`MAX_PRODUCERS`] (partition, producer) pairs are tracked; the one
//! unused longest is forgotten first (its next batch is then accepted as
//! an unknown producer's, as Kafka does after its producer state expires).

use std::collections::{HashMap, VecDeque};

use super::ids::PartitionId;

/// Batches remembered per producer and partition (Kafka keeps 5: a
/// producer has at most 5 requests in flight).
pub const BATCHES_KEPT: usize = 5;
/// Most (partition, producer) pairs tracked.
pub const MAX_PRODUCERS: usize = 100_000;

/// A batch as the idempotence check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: u64,
    /// The append's ticket, while its outcome is unknown, to drop the
    /// batch if the append fails.
    pub ticket_seq: Option<u64>,
}

#[derive(Debug)]
struct State {
    epoch: i16,
    batches: VecDeque<Batch>,
    last_used: u64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Store it.
    Append,
    /// Already stored (a retry): answer with this batch's outcome.
    Duplicate(Batch),
    /// A sequence number gap: OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder { expected: i32 },
    /// An older epoch than the producer's: INVALID_PRODUCER_EPOCH.
    StaleEpoch,
}

/// Every tracked producer.
#[derive(Debug, Default)]
pub struct Producers {
    states: HashMap<(PartitionId, i64), State>,
    clock: u64,
}

impl Producers {
    /// Checks a batch of `producer_id`/`epoch` with sequence numbers
    /// `first_seq..=last_seq`.
    pub fn check(
        &mut self,
        p: PartitionId,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Check {
        self.clock += 1;
        let Some(state) = self.states.get_mut(&(p, producer_id)) else {
            return Check::Append;
        };
        state.last_used = self.clock;
        if epoch < state.epoch {
            return Check::StaleEpoch;
        }
        if epoch > state.epoch {
            // A new epoch starts its sequence again.
            return Check::Append;
        }
        if let Some(b) = state
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Check::Duplicate(*b);
        }
        match state.batches.back() {
            Some(last) if first_seq != last.last_seq.wrapping_add(1) => Check::OutOfOrder {
                expected: last.last_seq.wrapping_add(1),
            },
            _ => Check::Append,
        }
    }

    /// The highest producer id known (from batches found at start).
    pub fn max_producer_id(&self) -> Option<i64> {
        self.states.keys().map(|(_, id)| *id).max()
    }

    /// Records a batch that was appended (or found in the log at start).
    pub fn record(&mut self, p: PartitionId, producer_id: i64, epoch: i16, batch: Batch) {
        self.clock += 1;
        if !self.states.contains_key(&(p, producer_id)) && self.states.len() >= MAX_PRODUCERS {
            self.evict();
        }
        let state = self.states.entry((p, producer_id)).or_insert(State {
            epoch,
            batches: VecDeque::new(),
            last_used: 0,
        });
        if epoch != state.epoch {
            state.epoch = epoch;
            state.batches.clear();
        }
        state.last_used = self.clock;
        state.batches.push_back(batch);
        while state.batches.len() > BATCHES_KEPT {
            state.batches.pop_front();
        }
    }

    /// The append of ticket `from` (and later ones) in partition `p`
    /// failed: those batches were never stored.
    pub fn failed(&mut self, p: PartitionId, from: u64) {
        for ((part, _), state) in self.states.iter_mut() {
            if *part == p {
                state
                    .batches
                    .retain(|b| b.ticket_seq.is_none_or(|s| s < from));
            }
        }
    }

    /// Appends up to ticket `upto` in partition `p` are durable.
    pub fn settled(&mut self, p: PartitionId, upto: u64) {
        for ((part, _), state) in self.states.iter_mut() {
            if *part == p {
                for b in &mut state.batches {
                    if b.ticket_seq.is_some_and(|s| s < upto) {
                        b.ticket_seq = None;
                    }
                }
            }
        }
    }

    fn evict(&mut self) {
        if let Some(key) = self
            .states
            .iter()
            .min_by_key(|(_, s)| s.last_used)
            .map(|(k, _)| *k)
        {
            self.states.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PartitionId = PartitionId {
        topic: 1,
        partition: 0,
    };

    fn batch(first_seq: i32, last_seq: i32, base_offset: u64) -> Batch {
        Batch {
            first_seq,
            last_seq,
            base_offset,
            ticket_seq: None,
        }
    }

    #[test]
    fn retries_get_their_offset_gaps_and_old_epochs_are_refused() {
        let mut p = Producers::default();
        assert_eq!(p.check(P, 7, 0, 0, 4), Check::Append, "unknown producer");
        p.record(P, 7, 0, batch(0, 4, 100));
        assert_eq!(p.check(P, 7, 0, 5, 9), Check::Append);
        p.record(P, 7, 0, batch(5, 9, 105));
        assert_eq!(p.check(P, 7, 0, 0, 4), Check::Duplicate(batch(0, 4, 100)));
        assert_eq!(p.check(P, 7, 0, 12, 13), Check::OutOfOrder { expected: 10 });
        assert_eq!(p.check(P, 7, 1, 0, 0), Check::Append, "new epoch");
        p.record(P, 7, 1, batch(0, 0, 110));
        assert_eq!(p.check(P, 7, 0, 10, 10), Check::StaleEpoch);
        // Other partitions and producers are apart.
        let q = PartitionId {
            topic: 1,
            partition: 1,
        };
        assert_eq!(p.check(q, 7, 1, 50, 50), Check::Append);
    }

    #[test]
    fn a_failed_append_is_forgotten_so_its_retry_is_stored() {
        let mut p = Producers::default();
        p.record(P, 7, 0, batch(0, 0, 0));
        p.record(
            P,
            7,
            0,
            Batch {
                ticket_seq: Some(3),
                ..batch(1, 1, 1)
            },
        );
        p.failed(P, 3);
        assert_eq!(p.check(P, 7, 0, 1, 1), Check::Append);
    }
}
