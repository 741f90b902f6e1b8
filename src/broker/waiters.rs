//! One registry for every connection that waits for something: a parked
//! `FETCH`, a subscriber that caught up, (later) a Kafka fetch or a group
//! join. Keyed by [`ConnId`], so a closed connection's waits go at once
//! and a reused slot never inherits them.
//!
//! Waking is proportional to the waiters woken: each partition keeps its
//! waiters ordered by the offset they wait for, and new data up to offset
//! `end` takes exactly those below `end`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::Instant;

use super::ids::{ConnId, PartitionId};

/// Why a waiter was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Data arrived where it waited.
    Data,
    /// Its deadline passed.
    Timeout,
    /// A group it is in has news for it (see `Broker::take_group_events`).
    Group,
}

#[derive(Debug)]
struct Registration {
    keys: Vec<(PartitionId, u64)>,
    deadline: Option<Instant>,
    id: u64,
}

/// Who waits for what.
#[derive(Debug, Default)]
pub struct Waiters {
    by_partition: HashMap<PartitionId, BTreeSet<(u64, ConnId)>>,
    by_conn: HashMap<ConnId, Registration>,
    /// (deadline, connection, registration id); stale entries are skipped.
    timers: BinaryHeap<Reverse<(Instant, ConnId, u64)>>,
    next_id: u64,
}

impl Waiters {
    /// `conn` waits for data at any of `keys` (partition, offset), until
    /// `deadline` if given. Replaces what it waited for before.
    pub fn register(
        &mut self,
        conn: ConnId,
        keys: &[(PartitionId, u64)],
        deadline: Option<Instant>,
    ) {
        self.cancel(conn);
        for &(p, offset) in keys {
            self.by_partition
                .entry(p)
                .or_default()
                .insert((offset, conn));
        }
        let id = self.next_id;
        self.next_id += 1;
        if let Some(when) = deadline {
            self.timers.push(Reverse((when, conn, id)));
        }
        self.by_conn.insert(
            conn,
            Registration {
                keys: keys.to_vec(),
                deadline,
                id,
            },
        );
        self.prune_timers();
    }

    /// Forgets what `conn` waits for.
    pub fn cancel(&mut self, conn: ConnId) -> bool {
        let Some(reg) = self.by_conn.remove(&conn) else {
            return false;
        };
        for (p, offset) in reg.keys {
            if let Some(set) = self.by_partition.get_mut(&p) {
                set.remove(&(offset, conn));
                if set.is_empty() {
                    self.by_partition.remove(&p);
                }
            }
        }
        true
    }

    pub fn is_waiting(&self, conn: ConnId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    /// Data in `p` now reaches `end`: wakes everyone waiting below it.
    pub fn data(&mut self, p: PartitionId, end: u64, woken: &mut Vec<(ConnId, Wake)>) {
        let Some(set) = self.by_partition.get(&p) else {
            return;
        };
        let due: Vec<ConnId> = set
            .range(..(end, ConnId::MIN))
            .map(|&(_, conn)| conn)
            .collect();
        for conn in due {
            self.cancel(conn);
            woken.push((conn, Wake::Data));
        }
    }

    /// Wakes those whose deadline passed.
    pub fn expire(&mut self, now: Instant, woken: &mut Vec<(ConnId, Wake)>) {
        while let Some(&Reverse((when, conn, id))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            if self.by_conn.get(&conn).is_some_and(|r| r.id == id) {
                self.cancel(conn);
                woken.push((conn, Wake::Timeout));
            }
        }
    }

    /// The earliest deadline of a live registration.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((when, conn, id))) = self.timers.peek() {
            if self.by_conn.get(&conn).is_some_and(|r| r.id == id) {
                return Some(when);
            }
            self.timers.pop();
        }
        None
    }

    /// Connections waiting.
    pub fn len(&self) -> usize {
        self.by_conn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }

    /// Drops timers of registrations that ended early once they outnumber
    /// the live ones, so the heap stays proportional to what waits.
    fn prune_timers(&mut self) {
        if self.timers.len() > 2 * self.by_conn.len() + 1024 {
            let live = &self.by_conn;
            self.timers
                .retain(|Reverse((_, conn, id))| live.get(conn).is_some_and(|r| r.id == *id));
        }
    }

    /// The deadline `conn` waits until, if any.
    pub fn deadline(&self, conn: ConnId) -> Option<Instant> {
        self.by_conn.get(&conn).and_then(|r| r.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn conn(slot: u32) -> ConnId {
        ConnId {
            slot,
            generation: 1,
        }
    }

    const P: PartitionId = PartitionId {
        topic: 0,
        partition: 0,
    };

    #[test]
    fn data_wakes_only_those_below_the_new_end() {
        let mut w = Waiters::default();
        w.register(conn(1), &[(P, 5)], None);
        w.register(conn(2), &[(P, 7)], None);
        w.register(conn(3), &[(P, 5)], None);
        let mut woken = Vec::new();
        w.data(P, 6, &mut woken);
        woken.sort_by_key(|(c, _)| c.slot);
        assert_eq!(woken, [(conn(1), Wake::Data), (conn(3), Wake::Data)]);
        assert_eq!(w.len(), 1);
        assert!(w.cancel(conn(2)));
        assert!(w.is_empty());
        woken.clear();
        w.data(P, 100, &mut woken);
        assert!(woken.is_empty());
    }

    #[test]
    fn timeouts_fire_once_and_cancelled_waits_never() {
        let mut w = Waiters::default();
        let now = Instant::now();
        w.register(conn(1), &[(P, 0)], Some(now + Duration::from_millis(5)));
        w.register(conn(2), &[(P, 0)], Some(now + Duration::from_millis(1)));
        w.cancel(conn(2));
        // A new registration replaces the old one and its timer.
        w.register(conn(1), &[(P, 0)], Some(now + Duration::from_millis(9)));
        assert_eq!(w.next_deadline(), Some(now + Duration::from_millis(9)));
        let mut woken = Vec::new();
        w.expire(now + Duration::from_millis(6), &mut woken);
        assert!(woken.is_empty());
        w.expire(now + Duration::from_millis(10), &mut woken);
        assert_eq!(woken, [(conn(1), Wake::Timeout)]);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn a_reused_slot_is_a_different_connection() {
        let mut w = Waiters::default();
        w.register(conn(1), &[(P, 0)], None);
        let reused = ConnId {
            slot: 1,
            generation: 2,
        };
        assert!(!w.is_waiting(reused));
        assert!(!w.cancel(reused));
        assert!(w.is_waiting(conn(1)));
    }
}
