//! JoinGroup (key 11), versions 0-5: the first step of a classic-protocol
//! rebalance. From v4 a client that joins with an empty member id must be
//! answered `MEMBER_ID_REQUIRED` (79) with its new member id, and joins
//! again with it.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupProtocol<'a> {
    /// An assignor name, e.g. `range`, `roundrobin`, `cooperative-sticky`.
    pub name: &'a str,
    /// Opaque to the broker (the consumer's subscription).
    pub metadata: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupRequest<'a> {
    pub group_id: &'a str,
    pub session_timeout_ms: i32,
    /// v1+; v0 uses the session timeout, as Kafka does.
    pub rebalance_timeout_ms: i32,
    pub member_id: &'a str,
    /// v5+ (static membership).
    pub group_instance_id: Option<&'a str>,
    /// `consumer` for consumers.
    pub protocol_type: &'a str,
    pub protocols: Vec<JoinGroupProtocol<'a>>,
}

impl<'a> JoinGroupRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::JoinGroup, version)?;
        let group_id = r.string()?;
        let session_timeout_ms = r.i32()?;
        let rebalance_timeout_ms = if version >= 1 {
            r.i32()?
        } else {
            session_timeout_ms
        };
        let member_id = r.string()?;
        let group_instance_id = if version >= 5 {
            r.nullable_string()?
        } else {
            None
        };
        Ok(JoinGroupRequest {
            group_id,
            session_timeout_ms,
            rebalance_timeout_ms,
            member_id,
            group_instance_id,
            protocol_type: r.string()?,
            protocols: r.array(6, |r| {
                Ok(JoinGroupProtocol {
                    name: r.string()?,
                    metadata: r.bytes()?,
                })
            })?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupMember<'a> {
    pub member_id: &'a str,
    /// v5+.
    pub group_instance_id: Option<&'a str>,
    pub metadata: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponse<'a> {
    /// v2+.
    pub throttle_time_ms: i32,
    pub error_code: ErrorCode,
    pub generation_id: i32,
    /// The chosen assignor; not nullable before v7, so "" when none.
    pub protocol_name: &'a str,
    pub leader: &'a str,
    pub member_id: &'a str,
    /// Every member's metadata, sent to the leader only (empty for others).
    pub members: Vec<JoinGroupMember<'a>>,
}

impl JoinGroupResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 2 {
            w.i32(self.throttle_time_ms);
        }
        w.i16(self.error_code.0);
        w.i32(self.generation_id);
        w.string(self.protocol_name);
        w.string(self.leader);
        w.string(self.member_id);
        w.array(&self.members, |w, m| {
            w.string(m.member_id);
            if version >= 5 {
                w.nullable_string(m.group_instance_id);
            }
            w.bytes(m.metadata);
        });
    }
}
