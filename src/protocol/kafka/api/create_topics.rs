//! CreateTopics (key 19), versions 2-4: admin clients. kcat cannot send it
//! and relies on auto-creation through Metadata instead.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatableReplicaAssignment {
    pub partition_index: i32,
    pub broker_ids: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatableTopicConfig<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatableTopic<'a> {
    pub name: &'a str,
    /// -1 for the broker's default (with manual assignments, or on v4+).
    pub num_partitions: i32,
    /// -1 for the broker's default.
    pub replication_factor: i16,
    pub assignments: Vec<CreatableReplicaAssignment>,
    pub configs: Vec<CreatableTopicConfig<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicsRequest<'a> {
    pub topics: Vec<CreatableTopic<'a>>,
    pub timeout_ms: i32,
    pub validate_only: bool,
}

impl<'a> CreateTopicsRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::CreateTopics, version)?;
        let topics = r.array(16, |r| {
            Ok(CreatableTopic {
                name: r.string()?,
                num_partitions: r.i32()?,
                replication_factor: r.i16()?,
                assignments: r.array(8, |r| {
                    Ok(CreatableReplicaAssignment {
                        partition_index: r.i32()?,
                        broker_ids: r.array(4, |r| r.i32())?,
                    })
                })?,
                configs: r.array(4, |r| {
                    Ok(CreatableTopicConfig {
                        name: r.string()?,
                        value: r.nullable_string()?,
                    })
                })?,
            })
        })?;
        Ok(CreateTopicsRequest {
            topics,
            timeout_ms: r.i32()?,
            validate_only: r.bool()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatableTopicResult<'a> {
    pub name: &'a str,
    pub error_code: ErrorCode,
    pub error_message: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicsResponse<'a> {
    pub throttle_time_ms: i32,
    pub topics: Vec<CreatableTopicResult<'a>>,
}

impl CreateTopicsResponse<'_> {
    pub fn encode(&self, _version: i16, w: &mut Writer<'_>) {
        w.i32(self.throttle_time_ms);
        w.array(&self.topics, |w, t| {
            w.string(t.name);
            w.i16(t.error_code.0);
            w.nullable_string(t.error_message);
        });
    }
}
