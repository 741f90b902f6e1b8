//! Fetch (key 1), versions 4-11.
//!
//! We decline incremental fetch sessions (KIP-227): a v7+ response always
//! carries `session_id = 0`, which tells the client to send full requests.
//! The records of a partition are raw bytes the broker supplies (stored
//! batches, copied as they are); a batch cut short at the end by
//! `partition_max_bytes` is allowed and clients skip it.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: i32,
    /// v9+; -1 otherwise.
    pub current_leader_epoch: i32,
    pub fetch_offset: i64,
    /// v5+ (followers only); -1 otherwise.
    pub log_start_offset: i64,
    pub partition_max_bytes: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic<'a> {
    pub topic: &'a str,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgottenTopic<'a> {
    pub topic: &'a str,
    pub partitions: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest<'a> {
    /// -1 for consumers.
    pub replica_id: i32,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    /// 0: read uncommitted; 1: read committed.
    pub isolation_level: i8,
    /// v7+; 0 otherwise.
    pub session_id: i32,
    /// v7+; -1 otherwise.
    pub session_epoch: i32,
    pub topics: Vec<FetchTopic<'a>>,
    /// v7+.
    pub forgotten_topics_data: Vec<ForgottenTopic<'a>>,
    /// v11+; empty otherwise.
    pub rack_id: &'a str,
}

impl<'a> FetchRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::Fetch, version)?;
        let replica_id = r.i32()?;
        let max_wait_ms = r.i32()?;
        let min_bytes = r.i32()?;
        let max_bytes = r.i32()?;
        let isolation_level = r.i8()?;
        let (session_id, session_epoch) = if version >= 7 {
            (r.i32()?, r.i32()?)
        } else {
            (0, -1)
        };
        let topics = r.array(6, |r| {
            Ok(FetchTopic {
                topic: r.string()?,
                partitions: r.array(16, |r| {
                    let partition = r.i32()?;
                    let current_leader_epoch = if version >= 9 { r.i32()? } else { -1 };
                    let fetch_offset = r.i64()?;
                    let log_start_offset = if version >= 5 { r.i64()? } else { -1 };
                    Ok(FetchPartition {
                        partition,
                        current_leader_epoch,
                        fetch_offset,
                        log_start_offset,
                        partition_max_bytes: r.i32()?,
                    })
                })?,
            })
        })?;
        let forgotten_topics_data = if version >= 7 {
            r.array(6, |r| {
                Ok(ForgottenTopic {
                    topic: r.string()?,
                    partitions: r.array(4, |r| r.i32())?,
                })
            })?
        } else {
            Vec::new()
        };
        let rack_id = if version >= 11 { r.string()? } else { "" };
        Ok(FetchRequest {
            replica_id,
            max_wait_ms,
            min_bytes,
            max_bytes,
            isolation_level,
            session_id,
            session_epoch,
            topics,
            forgotten_topics_data,
            rack_id,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResponse<'a> {
    pub partition_index: i32,
    pub error_code: ErrorCode,
    pub high_watermark: i64,
    /// With no transactions, equal to the high watermark.
    pub last_stable_offset: i64,
    /// v5+.
    pub log_start_offset: i64,
    /// Kafka sends null to read-uncommitted consumers and a (possibly
    /// empty) list to read-committed ones; clients accept either.
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
    /// v11+; -1 for "fetch from the leader".
    pub preferred_read_replica: i32,
    /// Whole record batches (the last may be cut short); null or empty
    /// when there is nothing to return.
    pub records: Option<&'a [u8]>,
}

impl<'a> FetchPartitionResponse<'a> {
    /// A partition answer carrying only an error.
    pub fn error(partition_index: i32, error_code: ErrorCode) -> Self {
        FetchPartitionResponse {
            partition_index,
            error_code,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: None,
            preferred_read_replica: -1,
            records: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResponse<'a> {
    pub topic: &'a str,
    pub partitions: Vec<FetchPartitionResponse<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse<'a> {
    pub throttle_time_ms: i32,
    /// v7+: a request-level error (fetch sessions).
    pub error_code: ErrorCode,
    /// v7+: always 0 here (no fetch sessions).
    pub session_id: i32,
    pub responses: Vec<FetchTopicResponse<'a>>,
}

impl FetchResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        w.i32(self.throttle_time_ms);
        if version >= 7 {
            w.i16(self.error_code.0);
            w.i32(self.session_id);
        }
        w.array(&self.responses, |w, t| {
            w.string(t.topic);
            w.array(&t.partitions, |w, p| {
                w.i32(p.partition_index);
                w.i16(p.error_code.0);
                w.i64(p.high_watermark);
                w.i64(p.last_stable_offset);
                if version >= 5 {
                    w.i64(p.log_start_offset);
                }
                match &p.aborted_transactions {
                    None => w.nullable_array_len(None),
                    Some(list) => w.array(list, |w, a| {
                        w.i64(a.producer_id);
                        w.i64(a.first_offset);
                    }),
                }
                if version >= 11 {
                    w.i32(p.preferred_read_replica);
                }
                w.nullable_bytes(p.records);
            });
        });
    }
}
