//! SyncGroup (key 14), versions 0-3: the leader sends every member's
//! assignment, and every member gets its own back.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupAssignment<'a> {
    pub member_id: &'a str,
    pub assignment: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupRequest<'a> {
    pub group_id: &'a str,
    pub generation_id: i32,
    pub member_id: &'a str,
    /// v3+.
    pub group_instance_id: Option<&'a str>,
    /// Non-empty only from the leader.
    pub assignments: Vec<SyncGroupAssignment<'a>>,
}

impl<'a> SyncGroupRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::SyncGroup, version)?;
        let group_id = r.string()?;
        let generation_id = r.i32()?;
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        Ok(SyncGroupRequest {
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            assignments: r.array(6, |r| {
                Ok(SyncGroupAssignment {
                    member_id: r.string()?,
                    assignment: r.bytes()?,
                })
            })?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResponse<'a> {
    /// v1+.
    pub throttle_time_ms: i32,
    pub error_code: ErrorCode,
    pub assignment: &'a [u8],
}

impl SyncGroupResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
        w.i16(self.error_code.0);
        w.bytes(self.assignment);
    }
}
