//! ListOffsets (key 2), versions 1-5: an offset by timestamp. Timestamp -1
//! asks for the latest offset (the high watermark), -2 for the earliest
//! (the log start); any other value for the first offset whose timestamp
//! is at least that.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

/// `timestamp` value asking for the latest offset.
pub const LATEST_TIMESTAMP: i64 = -1;
/// `timestamp` value asking for the earliest offset.
pub const EARLIEST_TIMESTAMP: i64 = -2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub partition_index: i32,
    /// v4+; -1 otherwise.
    pub current_leader_epoch: i32,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopic<'a> {
    pub name: &'a str,
    pub partitions: Vec<ListOffsetsPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsRequest<'a> {
    pub replica_id: i32,
    /// v2+; 0 otherwise.
    pub isolation_level: i8,
    pub topics: Vec<ListOffsetsTopic<'a>>,
}

impl<'a> ListOffsetsRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::ListOffsets, version)?;
        let replica_id = r.i32()?;
        let isolation_level = if version >= 2 { r.i8()? } else { 0 };
        let topics = r.array(6, |r| {
            Ok(ListOffsetsTopic {
                name: r.string()?,
                partitions: r.array(12, |r| {
                    let partition_index = r.i32()?;
                    let current_leader_epoch = if version >= 4 { r.i32()? } else { -1 };
                    Ok(ListOffsetsPartition {
                        partition_index,
                        current_leader_epoch,
                        timestamp: r.i64()?,
                    })
                })?,
            })
        })?;
        Ok(ListOffsetsRequest {
            replica_id,
            isolation_level,
            topics,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartitionResponse {
    pub partition_index: i32,
    pub error_code: ErrorCode,
    /// The timestamp of the offset found, or -1.
    pub timestamp: i64,
    pub offset: i64,
    /// v4+.
    pub leader_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopicResponse<'a> {
    pub name: &'a str,
    pub partitions: Vec<ListOffsetsPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsResponse<'a> {
    /// v2+.
    pub throttle_time_ms: i32,
    pub topics: Vec<ListOffsetsTopicResponse<'a>>,
}

impl ListOffsetsResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 2 {
            w.i32(self.throttle_time_ms);
        }
        w.array(&self.topics, |w, t| {
            w.string(t.name);
            w.array(&t.partitions, |w, p| {
                w.i32(p.partition_index);
                w.i16(p.error_code.0);
                w.i64(p.timestamp);
                w.i64(p.offset);
                if version >= 4 {
                    w.i32(p.leader_epoch);
                }
            });
        });
    }
}
