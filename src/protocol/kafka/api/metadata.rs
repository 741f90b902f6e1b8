//! Metadata (key 3), versions 0-8: topics, partitions and the brokers to
//! connect to. Clients connect to the host and port listed here, not to the
//! bootstrap address, so the broker must list a reachable address.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRequest<'a> {
    /// `None` means all topics. In v0 an empty list means all topics and
    /// is decoded as `None`; from v1 on an empty list means none and null
    /// means all.
    pub topics: Option<Vec<&'a str>>,
    /// v4+; v0-3 imply true.
    pub allow_auto_topic_creation: bool,
    /// v8+.
    pub include_cluster_authorized_operations: bool,
    /// v8+.
    pub include_topic_authorized_operations: bool,
}

impl<'a> MetadataRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::Metadata, version)?;
        let topics = if version == 0 {
            Some(r.array(2, |r| r.string())?).filter(|t| !t.is_empty())
        } else {
            r.nullable_array(2, |r| r.string())?
        };
        let allow_auto_topic_creation = if version >= 4 { r.bool()? } else { true };
        let (cluster_ops, topic_ops) = if version >= 8 {
            (r.bool()?, r.bool()?)
        } else {
            (false, false)
        };
        Ok(MetadataRequest {
            topics,
            allow_auto_topic_creation,
            include_cluster_authorized_operations: cluster_ops,
            include_topic_authorized_operations: topic_ops,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataBroker<'a> {
    pub node_id: i32,
    pub host: &'a str,
    pub port: i32,
    /// v1+.
    pub rack: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataPartition<'a> {
    pub error_code: ErrorCode,
    pub partition_index: i32,
    pub leader_id: i32,
    /// v7+.
    pub leader_epoch: i32,
    pub replica_nodes: &'a [i32],
    pub isr_nodes: &'a [i32],
    /// v5+.
    pub offline_replicas: &'a [i32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataTopic<'a> {
    pub error_code: ErrorCode,
    pub name: &'a str,
    /// v1+.
    pub is_internal: bool,
    pub partitions: Vec<MetadataPartition<'a>>,
    /// v8+; `i32::MIN` when not asked for.
    pub topic_authorized_operations: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataResponse<'a> {
    /// v3+.
    pub throttle_time_ms: i32,
    pub brokers: Vec<MetadataBroker<'a>>,
    /// v2+.
    pub cluster_id: Option<&'a str>,
    /// v1+.
    pub controller_id: i32,
    pub topics: Vec<MetadataTopic<'a>>,
    /// v8+; `i32::MIN` when not asked for.
    pub cluster_authorized_operations: i32,
}

impl MetadataResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 3 {
            w.i32(self.throttle_time_ms);
        }
        w.array(&self.brokers, |w, b| {
            w.i32(b.node_id);
            w.string(b.host);
            w.i32(b.port);
            if version >= 1 {
                w.nullable_string(b.rack);
            }
        });
        if version >= 2 {
            w.nullable_string(self.cluster_id);
        }
        if version >= 1 {
            w.i32(self.controller_id);
        }
        w.array(&self.topics, |w, t| {
            w.i16(t.error_code.0);
            w.string(t.name);
            if version >= 1 {
                w.bool(t.is_internal);
            }
            w.array(&t.partitions, |w, p| {
                w.i16(p.error_code.0);
                w.i32(p.partition_index);
                w.i32(p.leader_id);
                if version >= 7 {
                    w.i32(p.leader_epoch);
                }
                w.i32_array(p.replica_nodes);
                w.i32_array(p.isr_nodes);
                if version >= 5 {
                    w.i32_array(p.offline_replicas);
                }
            });
            if version >= 8 {
                w.i32(t.topic_authorized_operations);
            }
        });
        if version >= 8 {
            w.i32(self.cluster_authorized_operations);
        }
    }
}
