//! Splitting a byte stream into request lines, and taking telnet's
//! commands out of it.
//!
//! Telnet sends commands inside the stream, each starting with the byte
//! IAC (0xFF). Ctrl-C in telnet sends `IAC IP IAC DO TIMING-MARK` and then
//! shows nothing until the server answers the timing mark, so a server
//! that ignores it mutes the session. The decoder therefore takes `IAC`
//! followed by a command byte (0xF0 to 0xFE) out of the data: an interrupt
//! (IP, BRK) or erase-line (EL) discards the partial line and is reported
//! as [`Frame::Interrupt`], erase-character (EC) drops one buffered byte,
//! `DO`/`WILL` requests are answered with [`Frame::Reply`] (`WILL
//! TIMING-MARK` for a timing mark, a refusal for anything else), and the
//! rest (`WONT`, `DONT`, NOP, ...) is dropped. `IAC IAC` is one 0xFF data
//! byte, 0xFF followed by a byte below 0xF0 is data as it is, and a
//! newline always ends the line, even right after 0xFF or in the middle of
//! a would-be negotiation. So UTF-8 text (which never holds 0xFF) and
//! nearly all binary data pass unchanged; only 0xFF followed by
//! 0xF0..=0xFF means telnet.

use memchr::memchr2;

/// A frame found by [`LineDecoder`].
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without `\n` and without a `\r` just before it.
    Line(&'a [u8]),
    /// A line longer than the limit. The decoder discards the rest of it, up
    /// to and including the next `\n`, without buffering it.
    TooLong,
    /// Telnet's interrupt (Ctrl-C), break or erase-line: the partial line
    /// was discarded.
    Interrupt,
    /// Telnet negotiation bytes to send back, in order with the replies.
    Reply([u8; 3]),
}

/// Telnet's interpret-as-command byte, and the commands the decoder acts on.
const IAC: u8 = 0xFF;
const NOP_AND_UP: u8 = 0xF0;
const BRK: u8 = 0xF3;
const IP: u8 = 0xF4;
const EC: u8 = 0xF7;
const EL: u8 = 0xF8;
const WILL: u8 = 0xFB;
const WONT: u8 = 0xFC;
const DO: u8 = 0xFD;
const DONT: u8 = 0xFE;
const TIMING_MARK: u8 = 0x06;

/// Where the decoder is in a telnet command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    /// Plain data.
    Data,
    /// After IAC.
    Iac,
    /// After IAC WILL/WONT/DO/DONT: the option byte comes next.
    Option(u8),
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
    telnet: Telnet,
}

impl LineDecoder {
    /// A decoder for lines of at most `max` bytes (not counting `\r\n`).
    pub fn new(max: usize) -> Self {
        LineDecoder {
            partial: Vec::new(),
            max,
            discarding: false,
            returned: false,
            telnet: Telnet::Data,
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
        match (self.telnet, input[0]) {
            (Telnet::Data, _) => {}
            (Telnet::Iac | Telnet::Option(_), b'\n') => {
                // A line ends inside what looked like a telnet command: it
                // was data (0xFF, and the command byte if any), and the
                // newline is handled below.
                let pending = match self.telnet {
                    Telnet::Option(command) => &[IAC, command][..],
                    _ => &[IAC][..],
                };
                self.telnet = Telnet::Data;
                if !self.discarding
                    && let Some(frame) = self.buffer(pending)
                {
                    // Too long: the newline ends the discarding next call.
                    return (0, Some(frame));
                }
            }
            (_, byte) => return (1, self.telnet_byte(byte)),
        }
        // One scan finds the end of the line or a telnet command, whichever
        // comes first.
        let hit = memchr2(b'\n', IAC, input);
        if self.discarding {
            return match hit {
                Some(i) if input[i] == IAC => {
                    self.telnet = Telnet::Iac;
                    (i + 1, None)
                }
                Some(i) => {
                    self.discarding = false;
                    (i + 1, None)
                }
                None => (input.len(), None),
            };
        }
        match hit {
            Some(i) if input[i] == IAC => {
                // The bytes before it belong to the line.
                if let Some(frame) = self.buffer(&input[..i]) {
                    return (i, Some(frame));
                }
                self.telnet = Telnet::Iac;
                (i + 1, None)
            }
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
            None => (input.len(), self.buffer(input)),
        }
    }

    /// Adds the bytes of an unfinished line to the buffer, or reports the
    /// line too long (then discards the rest of it).
    fn buffer(&mut self, bytes: &[u8]) -> Option<Frame<'static>> {
        // One byte of slack: the line may still end in "\r\n".
        if self.partial.len() + bytes.len() > self.max + 1 {
            self.partial.clear();
            self.discarding = true;
            return Some(Frame::TooLong);
        }
        self.partial.extend_from_slice(bytes);
        None
    }

    /// One byte of a telnet command.
    fn telnet_byte(&mut self, byte: u8) -> Option<Frame<'static>> {
        let state = self.telnet;
        self.telnet = Telnet::Data;
        match (state, byte) {
            (Telnet::Iac, IAC) => {
                // An escaped 0xFF: data.
                if self.discarding {
                    None
                } else {
                    self.buffer(&[IAC])
                }
            }
            (Telnet::Iac, IP | BRK | EL) => {
                self.partial.clear();
                self.discarding = false;
                Some(Frame::Interrupt)
            }
            (Telnet::Iac, EC) => {
                if !self.discarding {
                    self.partial.pop();
                }
                None
            }
            (Telnet::Iac, WILL | WONT | DO | DONT) => {
                self.telnet = Telnet::Option(byte);
                None
            }
            // NOP, data mark, abort output, are-you-there, go ahead, and
            // the subnegotiation markers (no option is ever agreed, so no
            // subnegotiation follows): dropped.
            (Telnet::Iac, NOP_AND_UP..) => None,
            (Telnet::Iac, _) => {
                // Not a command: 0xFF and this byte are data.
                if self.discarding {
                    None
                } else {
                    self.buffer(&[IAC, byte])
                }
            }
            (Telnet::Option(DO), TIMING_MARK) => Some(Frame::Reply([IAC, WILL, TIMING_MARK])),
            // Refuse every other option; refusals need no answer.
            (Telnet::Option(DO), option) => Some(Frame::Reply([IAC, WONT, option])),
            (Telnet::Option(WILL), option) => Some(Frame::Reply([IAC, DONT, option])),
            (Telnet::Option(_), _) => None,
            (Telnet::Data, _) => unreachable!("telnet_byte outside a command"),
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
                assert!(used > 0 || frame.is_some(), "decoder made no progress");
                match frame {
                    Some(Frame::Line(line)) => frames.push(Some(line.to_vec())),
                    Some(Frame::TooLong) => frames.push(None),
                    Some(other) => panic!("unexpected {other:?}"),
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

    /// Feeds `chunks`, collecting lines (as text), `TooLong` (as "!"),
    /// interrupts (as "^C") and telnet replies (as hex).
    fn decode_telnet(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut decoder = LineDecoder::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            while !input.is_empty() {
                let (used, frame) = decoder.decode(input);
                assert!(used > 0 || frame.is_some(), "decoder made no progress");
                match frame {
                    Some(Frame::Line(line)) => out.push(String::from_utf8_lossy(line).into()),
                    Some(Frame::TooLong) => out.push("!".into()),
                    Some(Frame::Interrupt) => out.push("^C".into()),
                    Some(Frame::Reply(r)) => {
                        out.push(format!("{:02x}{:02x}{:02x}", r[0], r[1], r[2]))
                    }
                    None => {}
                }
                input = &input[used..];
            }
        }
        out
    }

    #[test]
    fn telnet_ctrl_c_discards_the_partial_line_and_answers_the_timing_mark() {
        let stream = b"PRODU\xff\xf4\xff\xfd\x06PING\r\n";
        let expected = ["^C", "fffb06", "PING"];
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_telnet(100, &[a, b]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_telnet(100, &bytes), expected);
    }

    #[test]
    fn telnet_commands_are_taken_out_and_other_0xff_bytes_are_data() {
        // Other options are refused; WONT/DONT and NOP vanish;
        // erase-character drops a byte.
        assert_eq!(
            decode_telnet(
                100,
                &[b"P\xff\xfd\x01I\xff\xfb\x18N\xff\xfc\x01\xff\xfe\x01\xff\xf1Gx\xff\xf7\n"]
            ),
            ["fffc01", "fffe18", "PING"]
        );
        // A newline right after 0xFF, or after 0xFF and a negotiation
        // word, still ends the line: those bytes were data.
        for stream in [&b"a\xff\nPING\n"[..], b"a\xff\xfd\nPING\n"] {
            for cut in 0..=stream.len() {
                let (x, y) = stream.split_at(cut);
                let lines = decode_all(100, &[x, y]);
                assert_eq!(lines.len(), 2, "cut at {cut}");
                assert_eq!(lines[0].as_deref(), Some(&stream[..stream.len() - 6]));
                assert_eq!(lines[1].as_deref(), Some(&b"PING"[..]));
            }
        }
        assert_eq!(decode_telnet(4, &[b"abcd\xff\xfd\nPING\n"]), ["!", "PING"]);
        // Split anywhere, the bytes come out the same.
        let stream = b"PRODUCE \xff\xff\xff\x80\xc3\xbf\n";
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(
                decode_all(100, &[a, b]),
                vec![Some(b"PRODUCE \xff\xff\x80\xc3\xbf".to_vec())],
                "cut at {cut}"
            );
        }
        // Erase-line clears; an interrupt ends an over-long line too.
        assert_eq!(
            decode_telnet(4, &[b"abc\xff\xf8PING\n123456\xff\xf4PING\n"]),
            ["^C", "PING", "!", "^C", "PING"]
        );
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
