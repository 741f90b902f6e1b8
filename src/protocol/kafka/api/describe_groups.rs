//! DescribeGroups (key 15), versions 0-4: group state for admin tools.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeGroupsRequest<'a> {
    pub groups: Vec<&'a str>,
    /// v3+.
    pub include_authorized_operations: bool,
}

impl<'a> DescribeGroupsRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::DescribeGroups, version)?;
        Ok(DescribeGroupsRequest {
            groups: r.array(2, |r| r.string())?,
            include_authorized_operations: if version >= 3 { r.bool()? } else { false },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroupMember<'a> {
    pub member_id: &'a str,
    /// v4+.
    pub group_instance_id: Option<&'a str>,
    pub client_id: &'a str,
    pub client_host: &'a str,
    pub member_metadata: &'a [u8],
    pub member_assignment: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup<'a> {
    pub error_code: ErrorCode,
    pub group_id: &'a str,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or
    /// `Dead`.
    pub group_state: &'a str,
    pub protocol_type: &'a str,
    /// The chosen assignor.
    pub protocol_data: &'a str,
    pub members: Vec<DescribedGroupMember<'a>>,
    /// v3+; `i32::MIN` when not asked for.
    pub authorized_operations: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeGroupsResponse<'a> {
    /// v1+.
    pub throttle_time_ms: i32,
    pub groups: Vec<DescribedGroup<'a>>,
}

impl DescribeGroupsResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
        w.array(&self.groups, |w, g| {
            w.i16(g.error_code.0);
            w.string(g.group_id);
            w.string(g.group_state);
            w.string(g.protocol_type);
            w.string(g.protocol_data);
            w.array(&g.members, |w, m| {
                w.string(m.member_id);
                if version >= 4 {
                    w.nullable_string(m.group_instance_id);
                }
                w.string(m.client_id);
                w.string(m.client_host);
                w.bytes(m.member_metadata);
                w.bytes(m.member_assignment);
            });
            if version >= 3 {
                w.i32(g.authorized_operations);
            }
        });
    }
}
