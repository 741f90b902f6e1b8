//! DeleteTopics (key 20), versions 0-3: admin tools.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopicsRequest<'a> {
    pub topic_names: Vec<&'a str>,
    pub timeout_ms: i32,
}

impl<'a> DeleteTopicsRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::DeleteTopics, version)?;
        Ok(DeleteTopicsRequest {
            topic_names: r.array(2, |r| r.string())?,
            timeout_ms: r.i32()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletableTopicResult<'a> {
    pub name: &'a str,
    pub error_code: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopicsResponse<'a> {
    /// v1+.
    pub throttle_time_ms: i32,
    pub responses: Vec<DeletableTopicResult<'a>>,
}

impl DeleteTopicsResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
        w.array(&self.responses, |w, t| {
            w.string(t.name);
            w.i16(t.error_code.0);
        });
    }
}
