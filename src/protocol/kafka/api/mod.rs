//! One module per API: a request type decoded from the body for a given
//! version (borrowing strings and bytes from the frame), and a response
//! type encoded for a given version.
//!
//! Conventions: a field that a version does not carry is decoded as the
//! default Kafka gives it (named in its doc comment) and ignored when
//! encoding. Decoding ignores bytes after the last field, as Kafka's own
//! parser does. Decoders check the version against
//! [`SUPPORTED_APIS`](super::versions::SUPPORTED_APIS); encoders trust
//! the caller to pass the version of the request being answered.

pub mod api_versions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;

pub use api_versions::*;
pub use create_topics::*;
pub use delete_topics::*;
pub use describe_configs::*;
pub use describe_groups::*;
pub use fetch::*;
pub use find_coordinator::*;
pub use heartbeat::*;
pub use init_producer_id::*;
pub use join_group::*;
pub use leave_group::*;
pub use list_groups::*;
pub use list_offsets::*;
pub use metadata::*;
pub use offset_commit::*;
pub use offset_fetch::*;
pub use produce::*;
pub use sasl_authenticate::*;
pub use sasl_handshake::*;
pub use sync_group::*;

#[cfg(test)]
mod cross_check;

use super::header::RequestHeader;
use super::versions::ApiKey;
use super::wire::{DecodeError, Reader, Result};

/// An error unless we decode `version` of `key`.
pub(crate) fn check_version(key: ApiKey, version: i16) -> Result<()> {
    if key.supports(version) {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion {
            api_key: key as i16,
            api_version: version,
        })
    }
}

/// Any request we decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Produce(ProduceRequest<'a>),
    Fetch(FetchRequest<'a>),
    ListOffsets(ListOffsetsRequest<'a>),
    Metadata(MetadataRequest<'a>),
    OffsetCommit(OffsetCommitRequest<'a>),
    OffsetFetch(OffsetFetchRequest<'a>),
    FindCoordinator(FindCoordinatorRequest<'a>),
    JoinGroup(JoinGroupRequest<'a>),
    Heartbeat(HeartbeatRequest<'a>),
    LeaveGroup(LeaveGroupRequest<'a>),
    SyncGroup(SyncGroupRequest<'a>),
    DescribeGroups(DescribeGroupsRequest<'a>),
    ListGroups(ListGroupsRequest),
    SaslHandshake(SaslHandshakeRequest<'a>),
    ApiVersions(ApiVersionsRequest<'a>),
    CreateTopics(CreateTopicsRequest<'a>),
    DeleteTopics(DeleteTopicsRequest<'a>),
    InitProducerId(InitProducerIdRequest<'a>),
    DescribeConfigs(DescribeConfigsRequest<'a>),
    SaslAuthenticate(SaslAuthenticateRequest<'a>),
}

impl<'a> Request<'a> {
    /// Decodes the body of a request whose header is `header`.
    ///
    /// Errors the handler must tell apart:
    /// - `UnsupportedVersion` for ApiVersions: answer
    ///   [`ApiVersionsResponse::unsupported_version`] encoded as v0;
    /// - `UnsupportedVersion` or `UnknownApiKey` otherwise: Kafka closes
    ///   the connection (the client should not have sent it);
    /// - anything else: a malformed request; close the connection.
    pub fn decode(header: &RequestHeader<'_>, body: &'a [u8]) -> Result<Request<'a>> {
        let key =
            ApiKey::from_i16(header.api_key).ok_or(DecodeError::UnknownApiKey(header.api_key))?;
        let v = header.api_version;
        let r = &mut Reader::new(body);
        Ok(match key {
            ApiKey::Produce => Request::Produce(ProduceRequest::decode(r, v)?),
            ApiKey::Fetch => Request::Fetch(FetchRequest::decode(r, v)?),
            ApiKey::ListOffsets => Request::ListOffsets(ListOffsetsRequest::decode(r, v)?),
            ApiKey::Metadata => Request::Metadata(MetadataRequest::decode(r, v)?),
            ApiKey::OffsetCommit => Request::OffsetCommit(OffsetCommitRequest::decode(r, v)?),
            ApiKey::OffsetFetch => Request::OffsetFetch(OffsetFetchRequest::decode(r, v)?),
            ApiKey::FindCoordinator => {
                Request::FindCoordinator(FindCoordinatorRequest::decode(r, v)?)
            }
            ApiKey::JoinGroup => Request::JoinGroup(JoinGroupRequest::decode(r, v)?),
            ApiKey::Heartbeat => Request::Heartbeat(HeartbeatRequest::decode(r, v)?),
            ApiKey::LeaveGroup => Request::LeaveGroup(LeaveGroupRequest::decode(r, v)?),
            ApiKey::SyncGroup => Request::SyncGroup(SyncGroupRequest::decode(r, v)?),
            ApiKey::DescribeGroups => Request::DescribeGroups(DescribeGroupsRequest::decode(r, v)?),
            ApiKey::ListGroups => Request::ListGroups(ListGroupsRequest::decode(r, v)?),
            ApiKey::SaslHandshake => Request::SaslHandshake(SaslHandshakeRequest::decode(r, v)?),
            ApiKey::ApiVersions => Request::ApiVersions(ApiVersionsRequest::decode(r, v)?),
            ApiKey::CreateTopics => Request::CreateTopics(CreateTopicsRequest::decode(r, v)?),
            ApiKey::DeleteTopics => Request::DeleteTopics(DeleteTopicsRequest::decode(r, v)?),
            ApiKey::InitProducerId => Request::InitProducerId(InitProducerIdRequest::decode(r, v)?),
            ApiKey::DescribeConfigs => {
                Request::DescribeConfigs(DescribeConfigsRequest::decode(r, v)?)
            }
            ApiKey::SaslAuthenticate => {
                Request::SaslAuthenticate(SaslAuthenticateRequest::decode(r, v)?)
            }
        })
    }
}
