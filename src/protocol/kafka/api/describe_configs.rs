//! DescribeConfigs (key 32), versions 0-2, minimal: admin tools and some
//! clients ask for topic or broker configs; the broker answers with what it
//! has (possibly nothing).

use super::check_version;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::versions::ApiKey;
use crate::protocol::kafka::wire::{Reader, Result, Writer};

/// `resource_type` of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// `resource_type` of a broker.
pub const RESOURCE_BROKER: i8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeConfigsResource<'a> {
    pub resource_type: i8,
    pub resource_name: &'a str,
    /// `None` for all keys.
    pub configuration_keys: Option<Vec<&'a str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeConfigsRequest<'a> {
    pub resources: Vec<DescribeConfigsResource<'a>>,
    /// v1+.
    pub include_synonyms: bool,
}

impl<'a> DescribeConfigsRequest<'a> {
    pub fn decode(r: &mut Reader<'a>, version: i16) -> Result<Self> {
        check_version(ApiKey::DescribeConfigs, version)?;
        Ok(DescribeConfigsRequest {
            resources: r.array(7, |r| {
                Ok(DescribeConfigsResource {
                    resource_type: r.i8()?,
                    resource_name: r.string()?,
                    configuration_keys: r.nullable_array(2, |r| r.string())?,
                })
            })?,
            include_synonyms: if version >= 1 { r.bool()? } else { false },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeConfigsSynonym<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
    pub source: i8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeConfigsEntry<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
    pub read_only: bool,
    /// v0 only (v1+ says it with `config_source`).
    pub is_default: bool,
    /// v1+: 5 = default config, 1 = dynamic topic config, -1 unknown.
    pub config_source: i8,
    pub is_sensitive: bool,
    /// v1+.
    pub synonyms: Vec<DescribeConfigsSynonym<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeConfigsResult<'a> {
    pub error_code: ErrorCode,
    pub error_message: Option<&'a str>,
    pub resource_type: i8,
    pub resource_name: &'a str,
    pub configs: Vec<DescribeConfigsEntry<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeConfigsResponse<'a> {
    pub throttle_time_ms: i32,
    pub results: Vec<DescribeConfigsResult<'a>>,
}

impl DescribeConfigsResponse<'_> {
    pub fn encode(&self, version: i16, w: &mut Writer<'_>) {
        w.i32(self.throttle_time_ms);
        w.array(&self.results, |w, res| {
            w.i16(res.error_code.0);
            w.nullable_string(res.error_message);
            w.i8(res.resource_type);
            w.string(res.resource_name);
            w.array(&res.configs, |w, c| {
                w.string(c.name);
                w.nullable_string(c.value);
                w.bool(c.read_only);
                if version == 0 {
                    w.bool(c.is_default);
                } else {
                    w.i8(c.config_source);
                }
                w.bool(c.is_sensitive);
                if version >= 1 {
                    w.array(&c.synonyms, |w, s| {
                        w.string(s.name);
                        w.nullable_string(s.value);
                        w.i8(s.source);
                    });
                }
            });
        });
    }
}
