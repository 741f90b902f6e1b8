//! Splitting a byte stream into request lines.

use memchr::memchr;

/// A frame found by [`LineDecoder`].
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without `\n` and without a `\r` just before it.
    Line(&'a [u8]),
    /// A line longer than the limit. The decoder discards the rest of it, up
    /// to and including the next `\n`, without buffering it.
    TooLong,
}

/// Splits a byte stream into lines, buffering at most `max + 1` bytes of one
/// partial line.
///
/// Complete lines that arrive whole in one input slice are returned borrowed
/// from that slice (no copy). Only the unfinished tail of a read is copied
/// into the decoder's own buffer, so an idle connection holds no buffer.
/// Bytes already buffered have been searched for `\n` and are never scanned
/// again.
#[derive(Debug)]
pub struct LineDecoder {
    partial: Vec<u8>,
    max: usize,
    discarding: bool,
    /// `partial` holds a line handed out by the last call; clear it first.
    returned: bool,
}

impl LineDecoder {
    /// A decoder for lines of at most `max` bytes (not counting `\r\n`).
    pub fn new(max: usize) -> Self {
        LineDecoder {
            partial: Vec::new(),
            max,
            discarding: false,
            returned: false,
        }
    }

    /// The longest line accepted.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes held for an unfinished line.
    pub fn buffered(&self) -> usize {
        if self.returned { 0 } else { self.partial.len() }
    }

    /// Whether the decoder is skipping the rest of an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Consumes bytes from the front of `input` and returns how many it used
    /// and the frame they completed, if any. Call again with the rest of the
    /// input until it is empty; every byte is either returned in a frame,
    /// buffered, or discarded.
    pub fn decode<'a>(&'a mut self, input: &'a [u8]) -> (usize, Option<Frame<'a>>) {
        if self.returned {
            self.partial.clear();
            self.returned = false;
            if self.partial.capacity() > 64 * 1024 {
                self.partial.shrink_to(1024);
            }
        }
        let newline = memchr(b'\n', input);
        if self.discarding {
            return match newline {
                Some(i) => {
                    self.discarding = false;
                    (i + 1, None)
                }
                None => (input.len(), None),
            };
        }
        match newline {
            Some(i) => {
                let used = i + 1;
                let line_len = self.partial.len() + i;
                let ends_with_cr = if i > 0 {
                    input[i - 1] == b'\r'
                } else {
                    self.partial.last() == Some(&b'\r')
                };
                let content_len = line_len - usize::from(ends_with_cr);
                if content_len > self.max {
                    self.partial.clear();
                    return (used, Some(Frame::TooLong));
                }
                if self.partial.is_empty() {
                    return (used, Some(Frame::Line(&input[..content_len])));
                }
                self.partial.extend_from_slice(&input[..i]);
                self.partial.truncate(content_len);
                self.returned = true;
                (used, Some(Frame::Line(&self.partial)))
            }
            None => {
                // One byte of slack: the line may still end in "\r\n".
                if self.partial.len() + input.len() > self.max + 1 {
                    self.partial.clear();
                    self.discarding = true;
                    return (input.len(), Some(Frame::TooLong));
                }
                self.partial.extend_from_slice(input);
                (input.len(), None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` to a decoder and collects what it yields.
    fn decode_all(max: usize, chunks: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let mut decoder = LineDecoder::new(max);
        let mut frames = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            while !input.is_empty() {
                let (used, frame) = decoder.decode(input);
                assert!(used > 0, "decoder made no progress");
                match frame {
                    Some(Frame::Line(line)) => frames.push(Some(line.to_vec())),
                    Some(Frame::TooLong) => frames.push(None),
                    None => {}
                }
                input = &input[used..];
            }
        }
        frames
    }

    fn lines(items: &[&str]) -> Vec<Option<Vec<u8>>> {
        items.iter().map(|s| Some(s.as_bytes().to_vec())).collect()
    }

    #[test]
    fn two_commands_in_one_read() {
        assert_eq!(
            decode_all(100, &[b"PING\nPRODUCE a b\n"]),
            lines(&["PING", "PRODUCE a b"])
        );
    }

    #[test]
    fn split_at_every_byte() {
        let stream = b"PRODUCE hello world\r\nCONSUME 0\n\nPING\r\n";
        let expected = lines(&["PRODUCE hello world", "CONSUME 0", "", "PING"]);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_all(100, &[a, b]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(100, &bytes), expected);
    }

    #[test]
    fn carriage_return_only_before_newline_is_dropped() {
        assert_eq!(
            decode_all(100, &[b"a\rb\r\n", b"\r\r\n", b"x\r", b"\n"]),
            lines(&["a\rb", "\r", "x"])
        );
    }

    #[test]
    fn empty_lines() {
        assert_eq!(decode_all(10, &[b"\n\r\n"]), lines(&["", ""]));
    }

    #[test]
    fn line_at_the_limit_passes_and_one_more_byte_is_too_long() {
        assert_eq!(decode_all(5, &[b"12345\n"]), lines(&["12345"]));
        assert_eq!(decode_all(5, &[b"12345\r\n"]), lines(&["12345"]));
        assert_eq!(decode_all(5, &[b"123", b"45\r", b"\n"]), lines(&["12345"]));
        assert_eq!(
            decode_all(5, &[b"123456\nPING\n"]),
            vec![None, Some(b"PING".to_vec())]
        );
    }

    #[test]
    fn over_long_line_is_discarded_up_to_the_next_newline() {
        // Reported as soon as it is known, without buffering the rest.
        let mut decoder = LineDecoder::new(4);
        let (used, frame) = decoder.decode(b"PRODUCE");
        assert_eq!((used, frame), (7, Some(Frame::TooLong)));
        assert!(decoder.is_discarding());
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.decode(b"xxxxxxxxxxxx"), (12, None));
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.decode(b"yy\nPING\n"), (3, None));
        assert_eq!(decoder.decode(b"PING\n"), (5, Some(Frame::Line(b"PING"))));
        // Split at every byte: exactly one TooLong, then the next line.
        let stream = b"0123456789\nPING\n";
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(
                decode_all(4, &[a, b]),
                vec![None, Some(b"PING".to_vec())],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn buffer_never_exceeds_limit() {
        let mut decoder = LineDecoder::new(8);
        for _ in 0..100 {
            let _ = decoder.decode(b"abc");
            assert!(decoder.buffered() <= 9);
        }
    }
}
