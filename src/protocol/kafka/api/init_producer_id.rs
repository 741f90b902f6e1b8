//! InitProducerId (key 22), versions 0-1: hands an idempotent producer its
//! id and epoch. Ids must be unique across broker restarts.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdRequest<'a> {
    /// Null for idempotent (non-transactional) producers.
    pub transactional_id: Option<&'a str>,
    pub transaction_timeout_ms: i32,
}

impl<'a> InitProducerIdRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::InitProducerId, version)?;
        Ok(InitProducerIdRequest {
            transactional_id: r.nullable_string()?,
            transaction_timeout_ms: r.i32()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdResponse {
    pub throttle_time_ms: i32,
    pub error_code: ErrorCode,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl InitProducerIdResponse {
    pub fn encode(&self, _version: i16, w: &mut Writer<'_>) {
        w.i32(self.throttle_time_ms);
        w.i16(self.error_code.0);
        w.i64(self.producer_id);
        w.i16(self.producer_epoch);
    }
}
