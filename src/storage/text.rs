//! The text record format: one line per message, exactly as the original
//! project wrote it.
//!
//! ```text
//! offset:0 message:hello
//! offset:1 message:world
//! ```
//!
//! `offset:`, the decimal offset without leading zeros, ` message:`, the
//! message bytes (anything but `\n`), `\n`.

use crate::util::{digits, parse_u64, push_u64};

pub const HEADER: &[u8] = b"offset:";
pub const SEPARATOR: &[u8] = b" message:";

/// Bytes of the line for `message` at `offset`, newline included.
pub fn line_len(offset: u64, message_len: usize) -> usize {
    HEADER.len() + digits(offset) + SEPARATOR.len() + message_len + 1
}

/// Bytes before the message in the line for `offset`.
pub fn header_len(offset: u64) -> usize {
    HEADER.len() + digits(offset) + SEPARATOR.len()
}

/// Appends the line for `message` at `offset`.
pub fn push_line(out: &mut Vec<u8>, offset: u64, message: &[u8]) {
    out.extend_from_slice(HEADER);
    push_u64(out, offset);
    out.extend_from_slice(SEPARATOR);
    out.extend_from_slice(message);
    out.push(b'\n');
}

/// The message in `line` (without its `\n`) if it is the line for
/// `offset`.
pub fn message_of(line: &[u8], offset: u64) -> Option<&[u8]> {
    let rest = line.strip_prefix(HEADER)?;
    let digits_end = rest.iter().position(|b| !b.is_ascii_digit())?;
    let (digits, rest) = rest.split_at(digits_end);
    if parse_u64(digits)? != offset || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    rest.strip_prefix(SEPARATOR)
}

/// The offset a line claims, if it starts like a log line.
pub fn offset_of(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(HEADER)?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if !rest[end..].starts_with(SEPARATOR) {
        return None;
    }
    parse_u64(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let mut buf = Vec::new();
        push_line(&mut buf, 42, b"a b\r");
        assert_eq!(buf, b"offset:42 message:a b\r\n");
        assert_eq!(buf.len(), line_len(42, 4));
        let line = &buf[..buf.len() - 1];
        assert_eq!(message_of(line, 42), Some(&b"a b\r"[..]));
        assert_eq!(message_of(line, 41), None);
        assert_eq!(offset_of(line), Some(42));
        assert_eq!(message_of(b"offset:042 message:x", 42), None);
        assert_eq!(offset_of(b"offset:1message:x"), None);
        assert_eq!(offset_of(b"offset:99999999999999999999 message:x"), None);
    }
}
