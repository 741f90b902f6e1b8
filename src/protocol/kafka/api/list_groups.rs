//! ListGroups (key 16), versions 0-2: every group, for admin tools.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

/// The request has no fields in versions 0-2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListGroupsRequest;

impl ListGroupsRequest {
    pub fn decode(_r: &mut Reader<'_>, version: i16) -> Result<Self> {
        check_version(ApiKey::ListGroups, version)?;
        Ok(ListGroupsRequest)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup<'a> {
    pub group_id: &'a str,
    pub protocol_type: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListGroupsResponse<'a> {
    /// v1+.
    pub throttle_time_ms: i32,
    pub error_code: ErrorCode,
    pub groups: Vec<ListedGroup<'a>>,
}

impl ListGroupsResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
        w.i16(self.error_code.0);
        w.array(&self.groups, |w, g| {
            w.string(g.group_id);
            w.string(g.protocol_type);
        });
    }
}
