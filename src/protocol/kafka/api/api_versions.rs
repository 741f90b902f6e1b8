//! ApiVersions (key 18), versions 0-3: the first request on every
//! connection, telling the client which versions of each API we speak.
//!
//! v3 is flexible (compact strings, tagged fields) but, like every version,
//! is answered with response header v0. A request of a version above 3 is
//! answered with [`ApiVersionsResponse::unsupported_version`], a v0-shaped
//! body with error 35 and our ranges, after which clients retry with a
//! version we list. The connection must not be closed instead.

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::{ApiKey, ApiRange, SUPPORTED_APIS};
use crate::protocol::kafka::wire::{Reader, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiVersionsRequest<'a> {
    /// v3+: e.g. `confluent-kafka-python` or `apache-kafka-java`.
    pub client_software_name: Option<&'a str>,
    /// v3+.
    pub client_software_version: Option<&'a str>,
}

impl<'a> ApiVersionsRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::ApiVersions, version)?;
        if version < 3 {
            return Ok(ApiVersionsRequest::default());
        }
        let name = r.compact_string()?;
        let sw_version = r.compact_string()?;
        r.tagged_fields()?;
        Ok(ApiVersionsRequest {
            client_software_name: Some(name),
            client_software_version: Some(sw_version),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersionsResponse<'a> {
    pub error_code: ErrorCode,
    pub api_keys: &'a [ApiRange],
    /// v1+.
    pub throttle_time_ms: i32,
}

impl ApiVersionsResponse<'static> {
    /// The normal answer: no error, every API in [`SUPPORTED_APIS`].
    pub fn supported() -> Self {
        ApiVersionsResponse {
            error_code: ErrorCode::NONE,
            api_keys: SUPPORTED_APIS,
            throttle_time_ms: 0,
        }
    }

    /// The answer to a version we do not support: error 35 and our ranges.
    /// Encode it with version 0 (header v0 too), whatever the request's
    /// version was.
    pub fn unsupported_version() -> Self {
        ApiVersionsResponse {
            error_code: ErrorCode::UNSUPPORTED_VERSION,
            ..Self::supported()
        }
    }
}

impl ApiVersionsResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        let flexible = version >= 3;
        w.i16(self.error_code.0);
        if flexible {
            w.compact_array_len(self.api_keys.len());
        } else {
            w.array_len(self.api_keys.len());
        }
        for api in self.api_keys {
            w.i16(api.key as i16);
            w.i16(api.min);
            w.i16(api.max);
            if flexible {
                w.empty_tagged_fields();
            }
        }
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
        if flexible {
            // SupportedFeatures, FinalizedFeatures etc. are tagged fields
            // that only admin tools read; we send none.
            w.empty_tagged_fields();
        }
    }
}
