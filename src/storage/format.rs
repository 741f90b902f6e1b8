//! The two record formats a partition log can hold, behind one parser.
//!
//! - [`Format::Text`]: one line per message, `offset:<n> message:<bytes>\n`
//!   (see [`super::text`]); what the text protocol writes and the original
//!   project's `kafka_log.txt` holds.
//! - [`Format::Batch`]: Kafka RecordBatch v2, stored as received from a
//!   Kafka producer with its base offset assigned (see [`super::batch`]),
//!   so a Kafka fetch is a copy of stored bytes.
//!
//! An *entry* is what the log appends and indexes as a unit: a line, or a
//! batch (which covers several offsets).

use memchr::memchr;

use super::batch;
use super::text;

/// How a partition stores its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Batch,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Batch => "batch",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "text" => Some(Format::Text),
            "batch" => Some(Format::Batch),
            _ => None,
        }
    }
}

/// What is at the start of some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole entry: its length in bytes, first offset and number of
    /// offsets it covers.
    Entry { len: usize, first: u64, count: u64 },
    /// Not enough bytes for a whole entry; `need` is its length if known.
    Incomplete { need: Option<usize> },
    /// Not an entry of this format (or not the offset expected).
    Bad(String),
}

impl Format {
    /// Parses the entry at the start of `buf`, which must begin at offset
    /// `expected` if given. With `check`, a batch's CRC is verified too
    /// (recovery); reads of rolled segments rely on the index's CRCs.
    pub fn parse(self, buf: &[u8], expected: Option<u64>, check: bool) -> Parsed {
        self.parse_entry(buf, expected, check, false)
    }

    /// Like [`parse`](Self::parse), for bytes already known to be what was
    /// written (their index CRC matched): a text line's header is not
    /// parsed again.
    pub fn parse_trusted(self, buf: &[u8], expected: u64) -> Parsed {
        self.parse_entry(buf, Some(expected), false, true)
    }

    fn parse_entry(self, buf: &[u8], expected: Option<u64>, check: bool, trusted: bool) -> Parsed {
        match self {
            Format::Text => {
                let Some(nl) = memchr(b'\n', buf) else {
                    return Parsed::Incomplete { need: None };
                };
                if trusted && let Some(first) = expected {
                    return Parsed::Entry {
                        len: nl + 1,
                        first,
                        count: 1,
                    };
                }
                let line = &buf[..nl];
                let first = match expected {
                    Some(e) => {
                        if text::message_of(line, e).is_none() {
                            return Parsed::Bad(format!(
                                "expected \"offset:{e} message:...\", found {:?}",
                                String::from_utf8_lossy(&line[..line.len().min(60)])
                            ));
                        }
                        e
                    }
                    None => match text::offset_of(line) {
                        Some(o) if text::message_of(line, o).is_some() => o,
                        _ => {
                            return Parsed::Bad(format!(
                                "expected \"offset:<n> message:...\", found {:?}",
                                String::from_utf8_lossy(&line[..line.len().min(60)])
                            ));
                        }
                    },
                };
                Parsed::Entry {
                    len: nl + 1,
                    first,
                    count: 1,
                }
            }
            Format::Batch => {
                if buf.len() < batch::LOG_OVERHEAD {
                    return Parsed::Incomplete { need: None };
                }
                let length = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                let Some(total) = usize::try_from(length)
                    .ok()
                    .filter(|&l| l + batch::LOG_OVERHEAD >= batch::HEADER_LEN)
                    .map(|l| l + batch::LOG_OVERHEAD)
                else {
                    return Parsed::Bad(format!("invalid batch length {length}"));
                };
                if buf.len() < total {
                    return Parsed::Incomplete { need: Some(total) };
                }
                let bytes = &buf[..total];
                let header = if check {
                    batch::validate(bytes)
                } else {
                    batch::parse_header(bytes)
                };
                let header = match header {
                    Ok(h) => h,
                    Err(e) => return Parsed::Bad(e.to_string()),
                };
                let Ok(first) = u64::try_from(header.base_offset) else {
                    return Parsed::Bad(format!("negative base offset {}", header.base_offset));
                };
                if let Some(e) = expected
                    && first != e
                {
                    return Parsed::Bad(format!(
                        "expected a batch at offset {e}, found one at {first}"
                    ));
                }
                let count = u64::try_from(header.last_offset_delta).unwrap_or(0) + 1;
                Parsed::Entry {
                    len: total,
                    first,
                    count,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_batches_parse_as_entries() {
        let mut line = Vec::new();
        text::push_line(&mut line, 7, b"hi");
        assert_eq!(
            Format::Text.parse(&line, Some(7), true),
            Parsed::Entry {
                len: line.len(),
                first: 7,
                count: 1
            }
        );
        assert!(matches!(
            Format::Text.parse(&line, Some(8), true),
            Parsed::Bad(_)
        ));
        assert_eq!(
            Format::Text.parse(&line[..5], None, true),
            Parsed::Incomplete { need: None }
        );
        let mut b = Vec::new();
        let mut builder = batch::BatchBuilder::new(&mut b, 40, 0);
        builder.push(1, None, Some(b"a"), &[]);
        builder.push(2, None, Some(b"b"), &[]);
        builder.finish();
        assert_eq!(
            Format::Batch.parse(&b, Some(40), true),
            Parsed::Entry {
                len: b.len(),
                first: 40,
                count: 2
            }
        );
        assert_eq!(
            Format::Batch.parse(&b[..20], Some(40), true),
            Parsed::Incomplete {
                need: Some(b.len())
            }
        );
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            Format::Batch.parse(&bad, Some(40), true),
            Parsed::Bad(_)
        ));
        assert!(matches!(
            Format::Batch.parse(&b, Some(41), true),
            Parsed::Bad(_)
        ));
    }
}
