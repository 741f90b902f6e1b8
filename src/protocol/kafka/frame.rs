//! Length-prefixed framing: every Kafka request and response is an `i32`
//! big-endian size followed by that many bytes.
//!
//! [`FrameDecoder`] works like the text protocol's `LineDecoder`: a frame
//! that arrives whole in one input slice is returned borrowed from it; only
//! the unfinished tail of a read is copied into the decoder, and never more
//! than the configured maximum. A size above the maximum is reported the
//! moment its 4 bytes are seen, before anything of it is buffered, and the
//! frame's bytes are then skipped so the stream stays in step.

use super::header::encode_response_header;
use super::wire::Writer;

/// The default largest request accepted (`--max-request-bytes`): 8 MiB.
///
/// Clients cap their own requests near 1 MB by default (Java
/// `max.request.size` = 1 MiB, librdkafka `message.max.bytes` = 1,000,000,
/// kafka-python `max_request_size` = 1 MiB), so 8 MiB leaves room for users
/// who raise those a little while keeping one connection's worst-case
/// buffer small on a small machine. Kafka's own `socket.request.max.bytes`
/// default is 100 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// The largest partial-frame buffer kept between requests.
pub const KEEP_CAPACITY: usize = 256 * 1024;

/// What [`FrameDecoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete frame body (without its 4-byte size).
    Request(&'a [u8]),
    /// A frame larger than the maximum. Reported as soon as its size is
    /// read; its bytes are then discarded without being buffered. Kafka
    /// closes the connection here, and so should the broker: the client
    /// will not understand a response to a request it thinks was fine.
    TooLarge { size: usize },
    /// A negative size: the stream is not Kafka, or out of step. The
    /// decoder consumes everything after this; close the connection.
    Invalid { size: i32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a size and then a body into `partial`.
    Normal,
    /// Skipping this many more bytes of an oversized frame.
    Discarding(usize),
    /// After an invalid size: nothing more is framed.
    Broken,
}

/// Splits a byte stream into request frames, buffering at most
/// `4 + max` bytes of one partial frame.
#[derive(Debug)]
pub struct FrameDecoder {
    partial: Vec<u8>,
    max: usize,
    state: State,
    /// `partial` holds a frame handed out by the last call; clear it first.
    returned: bool,
}

impl FrameDecoder {
    /// A decoder for frames of at most `max` bytes (not counting the size).
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            partial: Vec::new(),
            max,
            state: State::Normal,
            returned: false,
        }
    }

    /// Bytes held for an unfinished frame.
    pub fn buffered(&self) -> usize {
        if self.returned { 0 } else { self.partial.len() }
    }

    /// Whether the decoder is skipping an oversized frame.
    pub fn is_discarding(&self) -> bool {
        matches!(self.state, State::Discarding(_))
    }

    /// Reads a size prefix; `None` until 4 bytes are there.
    fn size_of(prefix: &[u8]) -> Option<i32> {
        let bytes: [u8; 4] = prefix.get(..4)?.try_into().ok()?;
        Some(i32::from_be_bytes(bytes))
    }

    /// Checks a size: `Ok(len)` to read a body of `len` bytes, or the frame
    /// to report (the state is updated for it).
    fn check(&mut self, size: i32, already: usize) -> Result<usize, Frame<'static>> {
        match usize::try_from(size) {
            Err(_) => {
                self.state = State::Broken;
                Err(Frame::Invalid { size })
            }
            Ok(len) if len > self.max => {
                self.state = State::Discarding(len - already);
                Err(Frame::TooLarge { size: len })
            }
            Ok(len) => Ok(len),
        }
    }

    /// Consumes bytes from the front of `input` and returns how many it used
    /// and the frame they completed, if any. Call again with the rest of the
    /// input until it is empty; every byte is returned in a frame,
    /// buffered, or discarded. `used` is 0 only when `input` is empty.
    pub fn decode<'a>(&'a mut self, input: &'a [u8]) -> (usize, Option<Frame<'a>>) {
        if self.returned {
            self.partial.clear();
            self.returned = false;
            // A producer's requests are often a little over one read
            // (64 KiB): keep a buffer that size rather than free and
            // regrow it per request (which cost a page fault every 4 KiB,
            // 24 per request, measured), but not a rare huge one.
            if self.partial.capacity() > KEEP_CAPACITY {
                self.partial.shrink_to(1024);
            }
        }
        match self.state {
            State::Broken => return (input.len(), None),
            State::Discarding(left) => {
                let used = left.min(input.len());
                self.state = if used == left {
                    State::Normal
                } else {
                    State::Discarding(left - used)
                };
                return (used, None);
            }
            State::Normal => {}
        }

        if self.partial.is_empty() {
            // Fast path: a whole frame at the front of `input`, no copy.
            let Some(size) = Self::size_of(input) else {
                self.partial.extend_from_slice(input);
                return (input.len(), None);
            };
            let len = match self.check(size, 0) {
                Ok(len) => len,
                Err(frame) => return (4, Some(frame)),
            };
            let end = 4 + len;
            if let Some(body) = input.get(4..end) {
                return (end, Some(Frame::Request(body)));
            }
            self.partial.reserve_exact(end.min(64 * 1024));
            self.partial.extend_from_slice(input);
            return (input.len(), None);
        }

        // Slow path: finish the size prefix, then the body.
        let mut used = 0;
        if self.partial.len() < 4 {
            let want = (4 - self.partial.len()).min(input.len());
            self.partial
                .extend_from_slice(input.get(..want).unwrap_or_default());
            used = want;
            let Some(size) = Self::size_of(&self.partial) else {
                return (used, None);
            };
            if let Err(frame) = self.check(size, 0) {
                self.partial.clear();
                return (used, Some(frame));
            }
        }
        let Some(size) = Self::size_of(&self.partial) else {
            return (used, None);
        };
        // `check` accepted this size when the prefix completed.
        let len = usize::try_from(size).unwrap_or(0);
        let have = self.partial.len() - 4;
        let rest = input.get(used..).unwrap_or_default();
        let want = (len - have.min(len)).min(rest.len());
        self.partial
            .extend_from_slice(rest.get(..want).unwrap_or_default());
        used += want;
        if self.partial.len() == 4 + len {
            self.returned = true;
            return (
                used,
                Some(Frame::Request(self.partial.get(4..).unwrap_or_default())),
            );
        }
        (used, None)
    }
}

/// Starts a response frame in `out`: reserves the 4-byte size and writes
/// the response header. Returns where the frame starts, for
/// [`finish_response`].
pub fn begin_response(out: &mut Vec<u8>, correlation_id: i32, header_version: i16) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    encode_response_header(&mut Writer::new(out), correlation_id, header_version);
    start
}

/// Ends a response frame begun at `start` by patching its size.
pub fn finish_response(out: &mut [u8], start: usize) {
    let size = out.len().saturating_sub(start + 4);
    let size = i32::try_from(size).unwrap_or(i32::MAX);
    if let Some(prefix) = out.get_mut(start..start + 4) {
        prefix.copy_from_slice(&size.to_be_bytes());
    }
}

/// Writes a whole response frame: size, header, and the body `body`
/// writes.
pub fn encode_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    header_version: i16,
    body: impl FnOnce(&mut Writer<'_>),
) {
    let start = begin_response(out, correlation_id, header_version);
    body(&mut Writer::new(out));
    finish_response(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Frame(Vec<u8>),
        TooLarge(usize),
        Invalid(i32),
    }

    fn decode_all(max: usize, chunks: &[&[u8]]) -> Vec<Got> {
        let mut decoder = FrameDecoder::new(max);
        let mut got = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            while !input.is_empty() {
                let (used, frame) = decoder.decode(input);
                assert!(used > 0, "decoder made no progress");
                match frame {
                    Some(Frame::Request(b)) => got.push(Got::Frame(b.to_vec())),
                    Some(Frame::TooLarge { size }) => got.push(Got::TooLarge(size)),
                    Some(Frame::Invalid { size }) => got.push(Got::Invalid(size)),
                    None => {}
                }
                input = &input[used..];
            }
        }
        got
    }

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn split_at_every_byte() {
        let stream = framed(&[b"hello", b"", b"a longer frame body"]);
        let expected = vec![
            Got::Frame(b"hello".to_vec()),
            Got::Frame(vec![]),
            Got::Frame(b"a longer frame body".to_vec()),
        ];
        assert_eq!(decode_all(100, &[&stream]), expected);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_all(100, &[a, b]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(100, &bytes), expected);
    }

    #[test]
    fn oversized_frame_is_reported_at_once_and_skipped() {
        let big = vec![7u8; 50];
        let stream = framed(&[b"ok", &big, b"after"]);
        let expected = vec![
            Got::Frame(b"ok".to_vec()),
            Got::TooLarge(50),
            Got::Frame(b"after".to_vec()),
        ];
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_all(10, &[a, b]), expected, "cut at {cut}");
        }
        // Reported before the body arrives, and nothing buffered.
        let mut d = FrameDecoder::new(10);
        let (used, frame) = d.decode(&[0x7f, 0xff, 0xff, 0xff, 1, 2]);
        assert_eq!(
            (used, frame),
            (
                4,
                Some(Frame::TooLarge {
                    size: i32::MAX as usize
                })
            )
        );
        assert_eq!(d.buffered(), 0);
        assert!(d.is_discarding());
    }

    #[test]
    fn negative_size_breaks_the_stream() {
        let mut stream = vec![0xff, 0xff, 0xff, 0xfe];
        stream.extend_from_slice(&framed(&[b"x"]));
        assert_eq!(decode_all(10, &[&stream]), vec![Got::Invalid(-2)]);
        let (a, b) = stream.split_at(2);
        assert_eq!(decode_all(10, &[a, b]), vec![Got::Invalid(-2)]);
    }

    #[test]
    fn buffer_is_bounded_by_max() {
        let mut d = FrameDecoder::new(8);
        let stream = framed(&[b"12345678"]);
        let (used, frame) = d.decode(&stream[..10]);
        assert_eq!((used, frame), (10, None));
        assert_eq!(d.buffered(), 10);
        let (used, frame) = d.decode(&stream[10..]);
        assert_eq!((used, frame), (2, Some(Frame::Request(&b"12345678"[..]))));
    }

    #[test]
    fn response_framing() {
        let mut out = vec![0xee];
        encode_response(&mut out, 42, 1, |w| w.i16(3));
        assert_eq!(out, [0xee, 0, 0, 0, 7, 0, 0, 0, 42, 0, 0, 3]);
    }
}
