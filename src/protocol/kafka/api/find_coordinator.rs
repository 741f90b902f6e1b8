//! FindCoordinator (key 10), versions 0-2: which broker coordinates a
//! group (key type 0) or a transactional id (key type 1). We are always
//! the coordinator. The range must start at 0 or librdkafka disables its
//! group consumer.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

/// `key_type` of a consumer group.
pub const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of a transactional id.
pub const KEY_TYPE_TRANSACTION: i8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindCoordinatorRequest<'a> {
    pub key: &'a str,
    /// v1+; 0 (group) otherwise.
    pub key_type: i8,
}

impl<'a> FindCoordinatorRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::FindCoordinator, version)?;
        let key = r.string()?;
        let key_type = if version >= 1 {
            r.i8()?
        } else {
            KEY_TYPE_GROUP
        };
        Ok(FindCoordinatorRequest { key, key_type })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindCoordinatorResponse<'a> {
    /// v1+.
    pub throttle_time_ms: i32,
    pub error_code: ErrorCode,
    /// v1+.
    pub error_message: Option<&'a str>,
    pub node_id: i32,
    pub host: &'a str,
    pub port: i32,
}

impl FindCoordinatorResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
        w.i16(self.error_code.0);
        if version >= 1 {
            w.nullable_string(self.error_message);
        }
        w.i32(self.node_id);
        w.string(self.host);
        w.i32(self.port);
    }
}
