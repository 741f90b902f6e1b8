//! OffsetFetch (key 9), versions 1-5: a group's committed positions. A
//! partition with no commit answers offset -1 (and no error), so that the
//! client applies `auto.offset.reset`.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchTopic<'a> {
    pub name: &'a str,
    pub partition_indexes: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest<'a> {
    pub group_id: &'a str,
    /// `None` (v2+ only) asks for every topic the group has committed.
    pub topics: Option<Vec<OffsetFetchTopic<'a>>>,
}

impl<'a> OffsetFetchRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::OffsetFetch, version)?;
        let group_id = r.string()?;
        let topic = |r: &mut Reader<'a>| {
            Ok(OffsetFetchTopic {
                name: r.string()?,
                partition_indexes: r.array(4, |r| r.i32())?,
            })
        };
        let topics = if version >= 2 {
            r.nullable_array(6, topic)?
        } else {
            Some(r.array(6, topic)?)
        };
        Ok(OffsetFetchRequest { group_id, topics })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchPartition<'a> {
    pub partition_index: i32,
    /// -1 when the group has no commit for the partition.
    pub committed_offset: i64,
    /// v5+.
    pub committed_leader_epoch: i32,
    pub metadata: Option<&'a str>,
    pub error_code: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchTopicResponse<'a> {
    pub name: &'a str,
    pub partitions: Vec<OffsetFetchPartition<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchResponse<'a> {
    /// v3+.
    pub throttle_time_ms: i32,
    pub topics: Vec<OffsetFetchTopicResponse<'a>>,
    /// v2+: a group-level error (e.g. `NOT_COORDINATOR`).
    pub error_code: ErrorCode,
}

impl OffsetFetchResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 3 {
            w.i32(self.throttle_time_ms);
        }
        w.array(&self.topics, |w, t| {
            w.string(t.name);
            w.array(&t.partitions, |w, p| {
                w.i32(p.partition_index);
                w.i64(p.committed_offset);
                if version >= 5 {
                    w.i32(p.committed_leader_epoch);
                }
                w.nullable_string(p.metadata);
                w.i16(p.error_code.0);
            });
        });
        if version >= 2 {
            w.i16(self.error_code.0);
        }
    }
}
