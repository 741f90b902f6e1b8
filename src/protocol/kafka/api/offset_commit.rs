//! OffsetCommit (key 8), versions 2-7: a group's committed positions.
//! librdkafka needs the range to contain 2 (its probe window is 1-2).

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition<'a> {
    pub partition_index: i32,
    pub committed_offset: i64,
    /// v6+; -1 otherwise.
    pub committed_leader_epoch: i32,
    pub committed_metadata: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitTopic<'a> {
    pub name: &'a str,
    pub partitions: Vec<OffsetCommitPartition<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest<'a> {
    pub group_id: &'a str,
    /// -1 for a commit from outside a group (simple consumers).
    pub generation_id: i32,
    /// Empty for a commit from outside a group.
    pub member_id: &'a str,
    /// v7+.
    pub group_instance_id: Option<&'a str>,
    /// v2-4; -1 (broker default) otherwise.
    pub retention_time_ms: i64,
    pub topics: Vec<OffsetCommitTopic<'a>>,
}

impl<'a> OffsetCommitRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::OffsetCommit, version)?;
        let group_id = r.string()?;
        let generation_id = r.i32()?;
        let member_id = r.string()?;
        let group_instance_id = if version >= 7 {
            r.nullable_string()?
        } else {
            None
        };
        let retention_time_ms = if version <= 4 { r.i64()? } else { -1 };
        let topics = r.array(6, |r| {
            Ok(OffsetCommitTopic {
                name: r.string()?,
                partitions: r.array(14, |r| {
                    let partition_index = r.i32()?;
                    let committed_offset = r.i64()?;
                    let committed_leader_epoch = if version >= 6 { r.i32()? } else { -1 };
                    Ok(OffsetCommitPartition {
                        partition_index,
                        committed_offset,
                        committed_leader_epoch,
                        committed_metadata: r.nullable_string()?,
                    })
                })?,
            })
        })?;
        Ok(OffsetCommitRequest {
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            retention_time_ms,
            topics,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartitionResponse {
    pub partition_index: i32,
    pub error_code: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitTopicResponse<'a> {
    pub name: &'a str,
    pub partitions: Vec<OffsetCommitPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitResponse<'a> {
    /// v3+.
    pub throttle_time_ms: i32,
    pub topics: Vec<OffsetCommitTopicResponse<'a>>,
}

impl OffsetCommitResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 3 {
            w.i32(self.throttle_time_ms);
        }
        w.array(&self.topics, |w, t| {
            w.string(t.name);
            w.array(&t.partitions, |w, p| {
                w.i32(p.partition_index);
                w.i16(p.error_code.0);
            });
        });
    }
}
