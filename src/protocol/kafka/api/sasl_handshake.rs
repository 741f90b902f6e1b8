//! SaslHandshake (key 17), versions 0-1: picks a SASL mechanism. We offer
//! `PLAIN` only. In v0 the SASL tokens then follow as raw length-prefixed
//! frames (no Kafka header); in v1 they come in SaslAuthenticate requests.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslHandshakeRequest<'a> {
    pub mechanism: &'a str,
}

impl<'a> SaslHandshakeRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::SaslHandshake, version)?;
        Ok(SaslHandshakeRequest {
            mechanism: r.string()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslHandshakeResponse<'a> {
    /// `UNSUPPORTED_SASL_MECHANISM` when the mechanism is not offered.
    pub error_code: ErrorCode,
    pub mechanisms: &'a [&'a str],
}

impl SaslHandshakeResponse<'_> {
    pub fn encode(&self, _version: i16, w: &mut Writer<'_>) {
        w.i16(self.error_code.0);
        w.array(self.mechanisms, |w, m| w.string(m));
    }
}
