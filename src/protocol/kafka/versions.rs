//! Which APIs and versions we speak: the one table ApiVersions responses
//! are built from, and which header version each (api, version) uses.
//!
//! The ranges are chosen (see `shared/KAFKA.md`) to serve librdkafka,
//! kcat, kafka-python, kafkajs and the Java client while staying below the
//! first flexible version of every API except ApiVersions: a client uses
//! `min(its max, our max)`, so advertising lower maxima is always safe,
//! but some ranges must *start* at 0 (FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, InitProducerId) or librdkafka quietly disables
//! features, and Produce must contain 3 and 7, Fetch 4 and 10, OffsetCommit
//! 2, OffsetFetch 1 for librdkafka's fixed probe windows.

/// The API keys we decode. The discriminants are Kafka's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ApiKey {
    Produce = 0,
    Fetch = 1,
    ListOffsets = 2,
    Metadata = 3,
    OffsetCommit = 8,
    OffsetFetch = 9,
    FindCoordinator = 10,
    JoinGroup = 11,
    Heartbeat = 12,
    LeaveGroup = 13,
    SyncGroup = 14,
    DescribeGroups = 15,
    ListGroups = 16,
    SaslHandshake = 17,
    ApiVersions = 18,
    CreateTopics = 19,
    DeleteTopics = 20,
    InitProducerId = 22,
    DescribeConfigs = 32,
    SaslAuthenticate = 36,
}

/// One row of the table: the versions we support and the first version
/// Kafka made flexible (`i16::MAX` for never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
    /// Kafka's first flexible version of this API, from the message specs.
    /// Used for header versions even outside our range, so that the header
    /// of a request we will refuse still parses.
    pub first_flexible: i16,
}

const fn row(key: ApiKey, min: i16, max: i16, first_flexible: i16) -> ApiRange {
    ApiRange {
        key,
        min,
        max,
        first_flexible,
    }
}

/// Every API we support, in key order. ApiVersions responses list exactly
/// these rows (a handler may leave out rows it does not serve, e.g. SASL
/// when authentication is off).
pub const SUPPORTED_APIS: &[ApiRange] = &[
    row(ApiKey::Produce, 0, 7, 9),
    row(ApiKey::Fetch, 4, 11, 12),
    row(ApiKey::ListOffsets, 1, 5, 6),
    row(ApiKey::Metadata, 0, 8, 9),
    row(ApiKey::OffsetCommit, 2, 7, 8),
    row(ApiKey::OffsetFetch, 1, 5, 6),
    row(ApiKey::FindCoordinator, 0, 2, 3),
    row(ApiKey::JoinGroup, 0, 5, 6),
    row(ApiKey::Heartbeat, 0, 3, 4),
    row(ApiKey::LeaveGroup, 0, 3, 4),
    row(ApiKey::SyncGroup, 0, 3, 4),
    row(ApiKey::DescribeGroups, 0, 4, 5),
    row(ApiKey::ListGroups, 0, 2, 3),
    row(ApiKey::SaslHandshake, 0, 1, i16::MAX),
    row(ApiKey::ApiVersions, 0, 3, 3),
    row(ApiKey::CreateTopics, 2, 4, 5),
    row(ApiKey::DeleteTopics, 0, 3, 4),
    row(ApiKey::InitProducerId, 0, 1, 2),
    row(ApiKey::DescribeConfigs, 0, 2, 4),
    row(ApiKey::SaslAuthenticate, 0, 1, 2),
];

impl ApiKey {
    /// The key for a number, if it is one we support.
    pub fn from_i16(key: i16) -> Option<ApiKey> {
        SUPPORTED_APIS
            .iter()
            .find(|r| r.key as i16 == key)
            .map(|r| r.key)
    }

    /// This key's row of [`SUPPORTED_APIS`].
    pub fn range(self) -> ApiRange {
        // Every variant has a row; the fallback is never used.
        SUPPORTED_APIS
            .iter()
            .copied()
            .find(|r| r.key == self)
            .unwrap_or(row(self, 0, -1, i16::MAX))
    }

    /// Whether we decode this version.
    pub fn supports(self, version: i16) -> bool {
        let r = self.range();
        (r.min..=r.max).contains(&version)
    }

    /// Whether this version of the API uses compact fields and tagged
    /// fields (KIP-482).
    pub fn is_flexible(self, version: i16) -> bool {
        version >= self.range().first_flexible
    }
}

/// The request header version for an (api key, version): 2 for flexible
/// versions, else 1. Header v0 (no client id) is only used by
/// ControlledShutdown v0, which we do not support but still frame right.
/// An unknown key gets 1: its header is only read to find the correlation
/// id before the connection is closed.
pub fn request_header_version(api_key: i16, api_version: i16) -> i16 {
    const CONTROLLED_SHUTDOWN: i16 = 7;
    match ApiKey::from_i16(api_key) {
        Some(key) if key.is_flexible(api_version) => 2,
        Some(_) => 1,
        None if api_key == CONTROLLED_SHUTDOWN && api_version == 0 => 0,
        None => 1,
    }
}

/// The response header version: 1 (with tagged fields) for flexible
/// versions, else 0. ApiVersions always answers with header v0, whatever
/// the version, because a client that does not yet know what we speak must
/// be able to read the reply (KIP-511).
pub fn response_header_version(api_key: i16, api_version: i16) -> i16 {
    match ApiKey::from_i16(api_key) {
        Some(ApiKey::ApiVersions) => 0,
        Some(key) if key.is_flexible(api_version) => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_consistent() {
        for pair in SUPPORTED_APIS.windows(2) {
            assert!((pair[0].key as i16) < (pair[1].key as i16));
        }
        for r in SUPPORTED_APIS {
            assert!(r.min <= r.max);
            assert_eq!(ApiKey::from_i16(r.key as i16), Some(r.key));
            // Only ApiVersions v3 is flexible in what we advertise.
            if r.key != ApiKey::ApiVersions {
                assert!(r.max < r.first_flexible, "{:?}", r.key);
            }
        }
        assert_eq!(ApiKey::from_i16(4), None);
        assert!(ApiKey::Fetch.supports(4) && !ApiKey::Fetch.supports(3));
    }

    #[test]
    fn header_versions() {
        assert_eq!(request_header_version(18, 0), 1);
        assert_eq!(request_header_version(18, 3), 2);
        assert_eq!(request_header_version(18, 4), 2);
        assert_eq!(request_header_version(3, 8), 1);
        assert_eq!(request_header_version(3, 12), 2);
        assert_eq!(request_header_version(7, 0), 0);
        assert_eq!(request_header_version(999, 0), 1);
        assert_eq!(request_header_version(17, 1), 1);
        assert_eq!(response_header_version(18, 3), 0);
        assert_eq!(response_header_version(18, 4), 0);
        assert_eq!(response_header_version(3, 8), 0);
        assert_eq!(response_header_version(3, 9), 1);
    }
}
