//! The Kafka wire protocol, sans I/O: framing, headers, the request and
//! response bodies of the APIs we serve, and RecordBatch v2.
//!
//! Nothing here reads a socket or touches the broker. A handler does:
//!
//! 1. [`FrameDecoder::decode`] on the bytes read, giving whole frames;
//! 2. [`RequestHeader::decode`] on a frame, giving the header and body;
//! 3. [`Request::decode`] on the body (or, for ApiVersions above v3,
//!    answers [`ApiVersionsResponse::unsupported_version`] as v0);
//! 4. for Produce, [`batch::validate`] each partition's records, then
//!    [`batch::set_base_offset`] / [`batch::set_partition_leader_epoch`];
//! 5. [`RequestHeader::respond`] with the response type's `encode` (it
//!    picks the response header version and the size prefix).
//!
//! ```
//! use kafka_like_broker::protocol::kafka::{
//!     ApiVersionsResponse, DEFAULT_MAX_REQUEST_BYTES, DecodeError, Frame, FrameDecoder,
//!     Request, RequestHeader,
//! };
//!
//! // ApiVersions v0, correlation id 7, null client id.
//! let input = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0xff, 0xff];
//! let mut decoder = FrameDecoder::new(DEFAULT_MAX_REQUEST_BYTES);
//! let mut out = Vec::new();
//! let (used, frame) = decoder.decode(&input);
//! assert_eq!(used, input.len());
//! let Some(Frame::Request(body)) = frame else { panic!() };
//! let (header, rest) = RequestHeader::decode(body)?;
//! match Request::decode(&header, rest) {
//!     Ok(Request::ApiVersions(_)) => {
//!         header.respond(&mut out, |w, v| ApiVersionsResponse::supported().encode(v, w))
//!     }
//!     Err(DecodeError::UnsupportedVersion { api_key: 18, .. }) => header.respond(&mut out, |w, _| {
//!         ApiVersionsResponse::unsupported_version().encode(0, w)
//!     }),
//!     _ => { /* other APIs; on a decode error, close the connection */ }
//! }
//! assert_eq!(&out[4..8], &[0, 0, 0, 7]); // correlation id, header v0
//! # Ok::<(), DecodeError>(())
//! ```
//!
//! Which APIs and versions, and why, is in [`versions`] and
//! `shared/KAFKA.md`. Every decoder is bounds-checked and returns an error
//! instead of panicking; none allocates more than a small multiple of its
//! input (see [`wire`]). [`fuzzing`] holds the entry points of the fuzz
//! targets in `fuzz/`.

pub mod api;
pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod groups;
pub mod header;
pub mod session;
pub mod versions;

/// RecordBatch v2 is a storage format here: batch partitions store it.
pub use crate::storage::batch;
/// The bounds-checked binary reader and writer.
pub use crate::util::wire;

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

// How a bad batch is answered; the type lives in storage.
use batch::BatchError;

impl BatchError {
    /// The error code a ProduceResponse should carry for this batch:
    /// `CORRUPT_MESSAGE` for damage (bad CRC, bad lengths) as Kafka answers
    /// for a `CorruptRecordException`, `INVALID_RECORD` for the rest.
    pub fn error_code(self) -> ErrorCode {
        match self {
            BatchError::Truncated
            | BatchError::TrailingBytes
            | BatchError::InvalidLength(_)
            | BatchError::CrcMismatch { .. } => ErrorCode::CORRUPT_MESSAGE,
            BatchError::TooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            BatchError::UnknownCompression(_) | BatchError::UnsupportedCompression(_) => {
                ErrorCode::UNSUPPORTED_COMPRESSION_TYPE
            }
            BatchError::UnsupportedMagic(_)
            | BatchError::InvalidRecordCount
            | BatchError::InvalidRecord(_)
            | BatchError::Decompression(_) => ErrorCode::INVALID_RECORD,
        }
    }
}
