//! Request and response headers.
//!
//! Request header v1: `api_key i16, api_version i16, correlation_id i32,
//! client_id NULLABLE_STRING`; v2 adds a tagged-field section (the client
//! id keeps its old two-byte length even in v2, so that any broker can read
//! the header of any ApiVersions request). v0 has no client id.
//!
//! Response header v0 is just the correlation id; v1 adds tagged fields.

use super::frame::encode_response;
use super::versions::{request_header_version, response_header_version};
use super::wire::{DecodeError, Reader, Writer};

/// A decoded request header, borrowing the client id from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader<'a> {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<&'a str>,
}

impl<'a> RequestHeader<'a> {
    /// Decodes the header at the start of a frame body (the bytes after
    /// the 4-byte length) and returns it with the request body that
    /// follows. The header version is chosen from the api key and version
    /// by [`request_header_version`].
    pub fn decode(frame: &'a [u8]) -> Result<(RequestHeader<'a>, &'a [u8]), DecodeError> {
        let mut r = Reader::new(frame);
        let api_key = r.i16()?;
        let api_version = r.i16()?;
        let correlation_id = r.i32()?;
        let header_version = request_header_version(api_key, api_version);
        let client_id = if header_version >= 1 {
            r.nullable_string()?
        } else {
            None
        };
        if header_version >= 2 {
            r.tagged_fields()?;
        }
        Ok((
            RequestHeader {
                api_key,
                api_version,
                correlation_id,
                client_id,
            },
            r.rest(),
        ))
    }

    /// The response header version for this request.
    pub fn response_header_version(&self) -> i16 {
        response_header_version(self.api_key, self.api_version)
    }

    /// Appends the whole response frame to this request to `out`: size,
    /// the response header this request calls for, and the body `body`
    /// writes, which is given the request's version:
    /// `header.respond(&mut out, |w, v| response.encode(v, w))`.
    pub fn respond(&self, out: &mut Vec<u8>, body: impl FnOnce(&mut Writer<'_>, i16)) {
        let version = self.api_version;
        encode_response(
            out,
            self.correlation_id,
            self.response_header_version(),
            |w| body(w, version),
        );
    }
}

/// The api key, version and correlation id of a frame whose header does not
/// decode (say, a client id that is not UTF-8), so that the broker can
/// still log what it is closing the connection over.
pub fn peek_ids(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let mut r = Reader::new(frame);
    Some((r.i16().ok()?, r.i16().ok()?, r.i32().ok()?))
}

/// Writes a response header: the correlation id, then an empty tagged
/// field section for header v1.
pub fn encode_response_header(w: &mut Writer<'_>, correlation_id: i32, header_version: i16) {
    w.i32(correlation_id);
    if header_version >= 1 {
        w.empty_tagged_fields();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_header() {
        let frame = [0, 3, 0, 8, 0, 0, 0, 7, 0, 2, b'c', b'i', 0xaa];
        let (h, body) = RequestHeader::decode(&frame).unwrap();
        assert_eq!(
            h,
            RequestHeader {
                api_key: 3,
                api_version: 8,
                correlation_id: 7,
                client_id: Some("ci")
            }
        );
        assert_eq!(body, [0xaa]);
        assert_eq!(h.response_header_version(), 0);
    }

    #[test]
    fn v2_header_skips_tagged_fields() {
        // ApiVersions v3, null client id, one tagged field of 1 byte.
        let frame = [0, 18, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 1, 0, 1, 9, 0xbb];
        let (h, body) = RequestHeader::decode(&frame).unwrap();
        assert_eq!(h.client_id, None);
        assert_eq!(body, [0xbb]);
        assert_eq!(h.response_header_version(), 0);
    }

    #[test]
    fn v0_header_has_no_client_id() {
        let frame = [0, 7, 0, 0, 0, 0, 0, 9, 1, 2];
        let (h, body) = RequestHeader::decode(&frame).unwrap();
        assert_eq!((h.correlation_id, h.client_id), (9, None));
        assert_eq!(body, [1, 2]);
    }

    #[test]
    fn truncated_headers_are_errors() {
        let frame = [0, 3, 0, 8, 0, 0, 0, 7, 0, 2, b'c', b'i'];
        for cut in 0..frame.len() {
            assert!(RequestHeader::decode(&frame[..cut]).is_err(), "cut {cut}");
        }
        assert_eq!(peek_ids(&frame[..8]), Some((3, 8, 7)));
        assert_eq!(peek_ids(&frame[..7]), None);
    }

    #[test]
    fn respond_frames_with_the_right_header() {
        let frame = [0, 18, 0, 3, 0, 0, 0, 9, 0xff, 0xff, 0];
        let (h, _) = RequestHeader::decode(&frame).unwrap();
        let mut out = Vec::new();
        h.respond(&mut out, |w, v| w.i16(v));
        // ApiVersions v3: response header v0, no tagged fields.
        assert_eq!(out, [0, 0, 0, 6, 0, 0, 0, 9, 0, 3]);
        let frame = [0, 3, 0, 12, 0, 0, 0, 9, 0xff, 0xff, 0];
        let (h, _) = RequestHeader::decode(&frame).unwrap();
        out.clear();
        h.respond(&mut out, |w, v| w.i16(v));
        // Metadata v12 is flexible: response header v1.
        assert_eq!(out, [0, 0, 0, 7, 0, 0, 0, 9, 0, 0, 12]);
    }

    #[test]
    fn response_headers() {
        let mut buf = Vec::new();
        encode_response_header(&mut Writer::new(&mut buf), 5, 0);
        encode_response_header(&mut Writer::new(&mut buf), 6, 1);
        assert_eq!(buf, [0, 0, 0, 5, 0, 0, 0, 6, 0]);
    }
}
