//! Produce (key 0), versions 0-7.
//!
//! Versions 0-2 carry legacy message sets (magic 0/1), which we do not
//! store; they are still decoded (the layout differs only by the missing
//! transactional id) so the handler can answer every partition with
//! `UNSUPPORTED_VERSION` via [`ProduceResponse::error_for`]. Versions 3-7
//! carry RecordBatch v2, to be checked with `batch::validate`. With
//! `acks = 0` the client expects no response at all.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionData<'a> {
    pub index: i32,
    /// The record batches, borrowed from the frame. Null is legal on the
    /// wire (the broker treats it as an invalid record).
    pub records: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopicData<'a> {
    pub name: &'a str,
    pub partitions: Vec<ProducePartitionData<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest<'a> {
    /// v3+.
    pub transactional_id: Option<&'a str>,
    /// 0: no response; 1: leader wrote it; -1: all in-sync replicas.
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<ProduceTopicData<'a>>,
}

impl<'a> ProduceRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::Produce, version)?;
        let transactional_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let acks = r.i16()?;
        let timeout_ms = r.i32()?;
        let topics = r.array(6, |r| {
            Ok(ProduceTopicData {
                name: r.string()?,
                partitions: r.array(8, |r| {
                    Ok(ProducePartitionData {
                        index: r.i32()?,
                        records: r.nullable_bytes()?,
                    })
                })?,
            })
        })?;
        Ok(ProduceRequest {
            transactional_id,
            acks,
            timeout_ms,
            topics,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResponse {
    pub index: i32,
    pub error_code: ErrorCode,
    pub base_offset: i64,
    /// v2+; -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    /// v5+.
    pub log_start_offset: i64,
}

impl ProducePartitionResponse {
    /// A partition's answer with an error and no offsets.
    pub fn error(index: i32, error_code: ErrorCode) -> Self {
        ProducePartitionResponse {
            index,
            error_code,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopicResponse<'a> {
    pub name: &'a str,
    pub partitions: Vec<ProducePartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceResponse<'a> {
    pub responses: Vec<ProduceTopicResponse<'a>>,
    /// v1+.
    pub throttle_time_ms: i32,
}

impl<'a> ProduceResponse<'a> {
    /// The same error for every partition of a request: how versions 0-2
    /// are refused (`UNSUPPORTED_VERSION`).
    pub fn error_for(request: &ProduceRequest<'a>, error_code: ErrorCode) -> Self {
        ProduceResponse {
            responses: request
                .topics
                .iter()
                .map(|t| ProduceTopicResponse {
                    name: t.name,
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| ProducePartitionResponse::error(p.index, error_code))
                        .collect(),
                })
                .collect(),
            throttle_time_ms: 0,
        }
    }

    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        w.array(&self.responses, |w, t| {
            w.string(t.name);
            w.array(&t.partitions, |w, p| {
                w.i32(p.index);
                w.i16(p.error_code.0);
                w.i64(p.base_offset);
                if version >= 2 {
                    w.i64(p.log_append_time_ms);
                }
                if version >= 5 {
                    w.i64(p.log_start_offset);
                }
            });
        });
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
    }
}
