//! Heartbeat (key 12), versions 0-3: keeps a group member alive; the answer
//! `REBALANCE_IN_PROGRESS` tells it to join again.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest<'a> {
    pub group_id: &'a str,
    pub generation_id: i32,
    pub member_id: &'a str,
    /// v3+.
    pub group_instance_id: Option<&'a str>,
}

impl<'a> HeartbeatRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::Heartbeat, version)?;
        Ok(HeartbeatRequest {
            group_id: r.string()?,
            generation_id: r.i32()?,
            member_id: r.string()?,
            group_instance_id: if version >= 3 {
                r.nullable_string()?
            } else {
                None
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// v1+.
    pub throttle_time_ms: i32,
    pub error_code: ErrorCode,
}

impl HeartbeatResponse {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
        w.i16(self.error_code.0);
    }
}
