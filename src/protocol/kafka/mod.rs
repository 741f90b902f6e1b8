//! The Kafka wire protocol, sans I/O: framing, headers, the request and
//! response bodies of the APIs we serve, and RecordBatch v2.
//!
//! Nothing here reads a socket or touches the broker. A handler does:
//!
//! 1. [`FrameDecoder::decode`] on the bytes read, giving whole frames;
//! 2. [`RequestHeader::decode`] on a frame, giving the header and body;
//! 3. [`Request::decode`] on the body (or, for ApiVersions above v3,
//!    answers [`ApiVersionsResponse::unsupported_version`]);
//! 4. for Produce, [`batch::validate`] each partition's records, then
//!    [`batch::set_base_offset`] / [`batch::set_partition_leader_epoch`];
//! 5. [`encode_response`] with the response type's `encode` for the
//!    request's version and [`RequestHeader::response_header_version`].
//!
//! Which APIs and versions, and why, is in [`versions`] and
//! `shared/KAFKA.md`. Every decoder is bounds-checked and returns an error
//! instead of panicking; none allocates more than a small multiple of its
//! input (see [`wire`]).

pub mod api;
pub mod batch;
pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod header;
pub mod versions;
pub mod wire;

pub use api::Request;
pub use api::api_versions::ApiVersionsResponse;
pub use error::ErrorCode;
pub use frame::{
    DEFAULT_MAX_REQUEST_BYTES, Frame, FrameDecoder, begin_response, encode_response,
    finish_response,
};
pub use header::RequestHeader;
pub use versions::{ApiKey, ApiRange, SUPPORTED_APIS};
pub use wire::{DecodeError, Reader, Writer};
