//! LeaveGroup (key 13), versions 0-3. v0-2 name one member; v3 (KIP-345)
//! a list of members, each answered separately.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIdentity<'a> {
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupRequest<'a> {
    pub group_id: &'a str,
    /// The members leaving: v0-2's single `member_id` is decoded as a list
    /// of one, so the handler sees one shape.
    pub members: Vec<MemberIdentity<'a>>,
}

impl<'a> LeaveGroupRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::LeaveGroup, version)?;
        let group_id = r.string()?;
        let members = if version >= 3 {
            r.array(4, |r| {
                Ok(MemberIdentity {
                    member_id: r.string()?,
                    group_instance_id: r.nullable_string()?,
                })
            })?
        } else {
            vec![MemberIdentity {
                member_id: r.string()?,
                group_instance_id: None,
            }]
        };
        Ok(LeaveGroupRequest { group_id, members })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupMemberResponse<'a> {
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
    pub error_code: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupResponse<'a> {
    /// v1+.
    pub throttle_time_ms: i32,
    pub error_code: ErrorCode,
    /// v3+.
    pub members: Vec<LeaveGroupMemberResponse<'a>>,
}

impl LeaveGroupResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
        w.i16(self.error_code.0);
        if version >= 3 {
            w.array(&self.members, |w, m| {
                w.string(m.member_id);
                w.nullable_string(m.group_instance_id);
                w.i16(m.error_code.0);
            });
        }
    }
}
