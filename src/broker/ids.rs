//! Identifiers the broker hands out and the protocols hold on to.

/// A connection, as the server knows it: its slot and the generation of
/// that slot, so a wake-up or settlement meant for a closed connection
/// never reaches the one that took its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

impl ConnId {
    /// Sorts before every real connection (for range queries).
    pub const MIN: ConnId = ConnId {
        slot: 0,
        generation: 0,
    };
}

/// A topic: its index in the broker's table.
pub type TopicId = u32;

/// One partition of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    pub topic: TopicId,
    pub partition: u32,
}

/// A file that acknowledgements wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JournalId {
    Partition(PartitionId),
    /// The committed-offsets store.
    Offsets,
}

/// A claim on an append: settled once, when the journal's durable mark
/// passes `seq` or the append fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub journal: JournalId,
    pub seq: u64,
    /// The record's offset (partition journals), if it succeeds.
    pub offset: u64,
}
