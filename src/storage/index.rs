//! A segment's sparse offset index, in memory and on disk.
//!
//! One entry every [`INDEX_INTERVAL`] bytes of segment (at the first record
//! that starts past the interval): the entry's first offset, its byte
//! position, and the CRC-32C of the bytes from there to the next entry (or
//! the end of the segment). The CRCs let a reader of a rolled segment tell
//! damaged bytes from data: a read checks every interval it serves.
//!
//! # File format (`<segment>.index`, little-endian)
//! ```text
//! header (48 bytes):
//!   magic      8  "KLBINDEX"
//!   version    2  1
//!   reserved   2  0
//!   entries    4  number of entries
//!   base       8  first offset of the segment
//!   end        8  one past its last offset
//!   len        8  segment length in bytes
//!   reserved   4  0
//!   crc        4  CRC-32C of the 44 bytes before it
//! entries (12 bytes each):
//!   offset     4  offset - base
//!   pos        4  byte position in the segment
//!   crc        4  CRC-32C of the segment bytes of this interval
//! trailer:
//!   crc        4  CRC-32C of all the entry bytes
//! ```
//! Positions and relative offsets fit 32 bits because segments are at most
//! [`MAX_SEGMENT_BYTES`]. A reader refuses any other magic or version; a
//! later format gets a new version number and a reader of its own.

use crate::storage::crc32c;

/// Bytes of segment between two index entries.
pub const INDEX_INTERVAL: u64 = 4096;
/// Largest segment: keeps index positions in 32 bits.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

const MAGIC: &[u8; 8] = b"KLBINDEX";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 48;
const ENTRY_LEN: usize = 12;

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Offset relative to the segment's base.
    pub rel: u32,
    /// Byte position of the record.
    pub pos: u32,
    /// CRC-32C of this interval's bytes (for the last interval of the
    /// active segment: not final until the segment rolls).
    pub crc: u32,
}

/// A segment's index.
#[derive(Debug, Clone)]
pub struct Index {
    pub base: u64,
    pub entries: Vec<Entry>,
}

impl Index {
    pub fn new(base: u64) -> Self {
        Index {
            base,
            entries: vec![Entry {
                rel: 0,
                pos: 0,
                crc: 0,
            }],
        }
    }

    /// The entry at or before `offset`: (its index, offset, position).
    pub fn seek(&self, offset: u64) -> (usize, u64, u64) {
        let rel = offset.saturating_sub(self.base).min(u64::from(u32::MAX)) as u32;
        let i = self
            .entries
            .partition_point(|e| e.rel <= rel)
            .saturating_sub(1);
        let e = self.entries[i];
        (i, self.base + u64::from(e.rel), u64::from(e.pos))
    }

    /// Where interval `i` ends: the next entry's position, or `len`.
    pub fn interval_end(&self, i: usize, len: u64) -> u64 {
        self.entries.get(i + 1).map_or(len, |e| u64::from(e.pos))
    }

    /// The file bytes of this index for a segment of `len` bytes ending
    /// before offset `end`.
    pub fn encode(&self, end: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.entries.len() * ENTRY_LEN + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&end.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let start = out.len();
        for e in &self.entries {
            out.extend_from_slice(&e.rel.to_le_bytes());
            out.extend_from_slice(&e.pos.to_le_bytes());
            out.extend_from_slice(&e.crc.to_le_bytes());
        }
        let crc = crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// What an index file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub entries: u32,
    pub base: u64,
    pub end: u64,
    pub len: u64,
}

/// The size of an index file with `entries` entries.
pub fn file_len(entries: u32) -> u64 {
    (HEADER_LEN + entries as usize * ENTRY_LEN + 4) as u64
}

/// Bytes to read for [`decode_header`].
pub const HEADER_BYTES: usize = HEADER_LEN;

/// Reads and checks an index file's header.
pub fn decode_header(bytes: &[u8]) -> Result<Header, String> {
    let h = bytes.get(..HEADER_LEN).ok_or_else(|| {
        format!(
            "index header is {} bytes, expected {HEADER_LEN}",
            bytes.len()
        )
    })?;
    if &h[..8] != MAGIC {
        return Err("not an index file (bad magic)".into());
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != VERSION {
        return Err(format!(
            "index version {version} is not supported (this broker reads version {VERSION})"
        ));
    }
    if crc32c(&h[..44]) != le32(&h[44..48]) {
        return Err("index header checksum mismatch".into());
    }
    let header = Header {
        entries: le32(&h[12..16]),
        base: le64(&h[16..24]),
        end: le64(&h[24..32]),
        len: le64(&h[32..40]),
    };
    if header.entries == 0 || header.end <= header.base || header.len > MAX_SEGMENT_BYTES {
        return Err(format!("index header is inconsistent: {header:?}"));
    }
    Ok(header)
}

/// Reads and checks a whole index file.
pub fn decode(bytes: &[u8]) -> Result<(Header, Index), String> {
    let header = decode_header(bytes)?;
    let body_len = header.entries as usize * ENTRY_LEN;
    if bytes.len() != HEADER_LEN + body_len + 4 {
        return Err(format!(
            "index is {} bytes, its header says {}",
            bytes.len(),
            HEADER_LEN + body_len + 4
        ));
    }
    let body = &bytes[HEADER_LEN..HEADER_LEN + body_len];
    if crc32c(body) != le32(&bytes[HEADER_LEN + body_len..]) {
        return Err("index entries checksum mismatch".into());
    }
    let mut entries = Vec::with_capacity(header.entries as usize);
    let mut last: Option<Entry> = None;
    for chunk in body.chunks_exact(ENTRY_LEN) {
        let e = Entry {
            rel: le32(&chunk[0..4]),
            pos: le32(&chunk[4..8]),
            crc: le32(&chunk[8..12]),
        };
        let ordered = match last {
            None => e.rel == 0 && e.pos == 0,
            Some(l) => e.rel > l.rel && e.pos > l.pos,
        };
        if !ordered || u64::from(e.pos) >= header.len.max(1) {
            return Err(format!("index entry {e:?} is out of order or out of range"));
        }
        entries.push(e);
        last = Some(e);
    }
    Ok((
        header,
        Index {
            base: header.base,
            entries,
        },
    ))
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        Index {
            base: 100,
            entries: vec![
                Entry {
                    rel: 0,
                    pos: 0,
                    crc: 7,
                },
                Entry {
                    rel: 40,
                    pos: 4100,
                    crc: 9,
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_seek() {
        let index = sample();
        let bytes = index.encode(180, 8000);
        let (header, back) = decode(&bytes).unwrap();
        assert_eq!(
            header,
            Header {
                entries: 2,
                base: 100,
                end: 180,
                len: 8000
            }
        );
        assert_eq!(back.entries, index.entries);
        assert_eq!(back.seek(100), (0, 100, 0));
        assert_eq!(back.seek(139), (0, 100, 0));
        assert_eq!(back.seek(140), (1, 140, 4100));
        assert_eq!(back.seek(10_000), (1, 140, 4100));
        assert_eq!(back.interval_end(0, 8000), 4100);
        assert_eq!(back.interval_end(1, 8000), 8000);
    }

    #[test]
    fn every_flipped_bit_and_truncation_is_refused() {
        let bytes = sample().encode(180, 8000);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(decode(&bad).is_err(), "flip at byte {i} bit {bit}");
            }
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn unknown_version_is_named() {
        let mut bytes = sample().encode(180, 8000);
        bytes[8] = 9;
        let crc = crc32c(&bytes[..44]);
        bytes[44..48].copy_from_slice(&crc.to_le_bytes());
        let err = decode(&bytes).unwrap_err();
        assert!(err.contains("version 9"), "{err}");
    }
}
