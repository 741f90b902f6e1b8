//! A segment's sparse offset index, in memory and on disk.
//!
//! One entry every [`INDEX_INTERVAL`] bytes of segment (at the first record
//! that starts past the interval): the entry's first offset, its byte
//! position, the CRC-32C of the bytes from there to the next entry (or
//! the end of the segment), and the interval's *log-append time*: the
//! wall-clock time (ms since the Unix epoch) of the last write into it, so
//! an upper bound of the append time of each of its records. The CRCs let
//! a reader of a rolled segment tell damaged bytes from data: a read checks
//! every interval it serves. The times give records of text logs (which
//! store none) a timestamp for Kafka readers, and ListOffsets by time an
//! answer at interval granularity.
//!
//! # File format (`<segment>.index`, little-endian), version 2
//! ```text
//! header (56 bytes):
//!   magic      8  "KLBINDEX"
//!   version    2  2
//!   reserved   2  0
//!   entries    4  number of entries
//!   base       8  first offset of the segment
//!   end        8  one past its last offset
//!   len        8  segment length in bytes
//!   max_time   8  the largest entry time (i64 ms)
//!   reserved   4  0
//!   crc        4  CRC-32C of the 52 bytes before it
//! entries (20 bytes each):
//!   offset     4  offset - base
//!   pos        4  byte position in the segment
//!   crc        4  CRC-32C of the segment bytes of this interval
//!   time       8  log-append time of the interval (i64 ms)
//! trailer:
//!   crc        4  CRC-32C of all the entry bytes
//! ```
//! Version 1 (written by earlier brokers, still read) has a 48-byte header
//! without `max_time` (its CRC covers the 44 bytes before it) and 12-byte
//! entries without `time`; its intervals take a time the caller gives (the
//! segment file's modification time, also an upper bound).
//!
//! Positions and relative offsets fit 32 bits because segments are at most
//! [`MAX_SEGMENT_BYTES`]. A reader refuses any other magic or version; a
//! later format gets a new version number and a reader of its own.

use crate::storage::crc32c;

/// Bytes of segment between two index entries.
pub const INDEX_INTERVAL: u64 = 4096;
/// Largest segment: keeps index positions in 32 bits.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

const MAGIC: &[u8; 8] = b"KLBINDEX";
/// The version this broker writes.
const VERSION: u16 = 2;
const HEADER_LEN: usize = 56;
const ENTRY_LEN: usize = 20;
const V1_HEADER_LEN: usize = 48;
const V1_ENTRY_LEN: usize = 12;

/// A log-append time: ms since the Unix epoch, kept as two 32-bit halves
/// so that an [`Entry`] is 20 bytes with 4-byte alignment (an `i64` field
/// would pad it to 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time([u32; 2]);

impl Time {
    pub fn from_ms(ms: i64) -> Time {
        let v = ms as u64;
        Time([v as u32, (v >> 32) as u32])
    }

    pub fn ms(self) -> i64 {
        (u64::from(self.0[0]) | (u64::from(self.0[1]) << 32)) as i64
    }
}

/// One index entry: 20 bytes in memory, as in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Offset relative to the segment's base.
    pub rel: u32,
    /// Byte position of the record.
    pub pos: u32,
    /// CRC-32C of this interval's bytes (for the last interval of the
    /// active segment: not final until the segment rolls).
    pub crc: u32,
    /// Log-append time of the interval's last write (for the last
    /// interval of the active segment: moves on with each write into it).
    pub time: Time,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 20);

impl Entry {
    pub fn new(rel: u32, pos: u32, crc: u32, time_ms: i64) -> Entry {
        Entry {
            rel,
            pos,
            crc,
            time: Time::from_ms(time_ms),
        }
    }
}

/// A segment's index.
#[derive(Debug, Clone)]
pub struct Index {
    pub base: u64,
    pub entries: Vec<Entry>,
}

impl Index {
    /// The index of an empty segment: one entry, time 0 until written.
    pub fn new(base: u64) -> Self {
        Index {
            base,
            entries: vec![Entry::new(0, 0, 0, 0)],
        }
    }

    /// The entry at or before `offset`: (its index, offset, position).
    pub fn seek(&self, offset: u64) -> (usize, u64, u64) {
        let i = self.interval_of(offset);
        let e = self.entries[i];
        (i, self.base + u64::from(e.rel), u64::from(e.pos))
    }

    /// The interval holding `offset` (the entry at or before it).
    pub fn interval_of(&self, offset: u64) -> usize {
        let rel = offset.saturating_sub(self.base).min(u64::from(u32::MAX)) as u32;
        self.entries
            .partition_point(|e| e.rel <= rel)
            .saturating_sub(1)
    }

    /// Where interval `i` ends: the next entry's position, or `len`.
    pub fn interval_end(&self, i: usize, len: u64) -> u64 {
        self.entries.get(i + 1).map_or(len, |e| u64::from(e.pos))
    }

    /// The largest log-append time of any interval.
    pub fn max_time(&self) -> i64 {
        self.entries.iter().map(|e| e.time.ms()).max().unwrap_or(0)
    }

    /// Sets every interval's time (a segment rebuilt by a scan: the time
    /// of its file's last modification).
    pub fn set_times(&mut self, time_ms: i64) {
        for e in &mut self.entries {
            e.time = Time::from_ms(time_ms);
        }
    }

    /// The file bytes of this index (version 2) for a segment of `len`
    /// bytes ending before offset `end`.
    pub fn encode(&self, end: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.entries.len() * ENTRY_LEN + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&end.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.max_time().to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let start = out.len();
        for e in &self.entries {
            out.extend_from_slice(&e.rel.to_le_bytes());
            out.extend_from_slice(&e.pos.to_le_bytes());
            out.extend_from_slice(&e.crc.to_le_bytes());
            out.extend_from_slice(&e.time.ms().to_le_bytes());
        }
        let crc = crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// What an index file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u16,
    pub entries: u32,
    pub base: u64,
    pub end: u64,
    pub len: u64,
    /// The largest interval time (version 2); `None` in version 1.
    pub max_time: Option<i64>,
}

impl Header {
    /// The size of the whole index file.
    pub fn file_len(&self) -> u64 {
        let (header, entry) = lens(self.version);
        (header + self.entries as usize * entry + 4) as u64
    }
}

/// Header and entry lengths of a version.
fn lens(version: u16) -> (usize, usize) {
    if version == 1 {
        (V1_HEADER_LEN, V1_ENTRY_LEN)
    } else {
        (HEADER_LEN, ENTRY_LEN)
    }
}

/// Bytes to read for [`decode_header`] (enough for either version: a
/// valid version 1 file is longer than this).
pub const HEADER_BYTES: usize = HEADER_LEN;

/// Reads and checks an index file's header (either version).
pub fn decode_header(bytes: &[u8]) -> Result<Header, String> {
    let short = || {
        format!(
            "index header is {} bytes, expected {HEADER_LEN}",
            bytes.len()
        )
    };
    let h = bytes.get(..V1_HEADER_LEN).ok_or_else(short)?;
    if &h[..8] != MAGIC {
        return Err("not an index file (bad magic)".into());
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    let max_time = match version {
        1 => {
            if crc32c(&h[..44]) != le32(&h[44..48]) {
                return Err("index header checksum mismatch".into());
            }
            None
        }
        VERSION => {
            let h = bytes.get(..HEADER_LEN).ok_or_else(short)?;
            if crc32c(&h[..52]) != le32(&h[52..56]) {
                return Err("index header checksum mismatch".into());
            }
            Some(le64(&h[40..48]) as i64)
        }
        _ => {
            return Err(format!(
                "index version {version} is not supported (this broker reads versions 1 and {VERSION})"
            ));
        }
    };
    let header = Header {
        version,
        entries: le32(&h[12..16]),
        base: le64(&h[16..24]),
        end: le64(&h[24..32]),
        len: le64(&h[32..40]),
        max_time,
    };
    if header.entries == 0 || header.end <= header.base || header.len > MAX_SEGMENT_BYTES {
        return Err(format!("index header is inconsistent: {header:?}"));
    }
    Ok(header)
}

/// Reads and checks a whole index file. Intervals of a version 1 file
/// (which has no times) get `v1_time` (ms).
pub fn decode(bytes: &[u8], v1_time: i64) -> Result<(Header, Index), String> {
    let header = decode_header(bytes)?;
    let (header_len, entry_len) = lens(header.version);
    let body_len = header.entries as usize * entry_len;
    if bytes.len() as u64 != header.file_len() {
        return Err(format!(
            "index is {} bytes, its header says {}",
            bytes.len(),
            header.file_len()
        ));
    }
    let body = &bytes[header_len..header_len + body_len];
    if crc32c(body) != le32(&bytes[header_len + body_len..]) {
        return Err("index entries checksum mismatch".into());
    }
    let mut entries = Vec::with_capacity(header.entries as usize);
    let mut last: Option<Entry> = None;
    for chunk in body.chunks_exact(entry_len) {
        let time = if entry_len == ENTRY_LEN {
            le64(&chunk[12..20]) as i64
        } else {
            v1_time
        };
        let e = Entry::new(
            le32(&chunk[0..4]),
            le32(&chunk[4..8]),
            le32(&chunk[8..12]),
            time,
        );
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
    if let Some(max) = header.max_time
        && entries.iter().map(|e| e.time.ms()).max() != Some(max)
    {
        return Err(format!(
            "index header says the latest time is {max}, its entries disagree"
        ));
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
/// A version 1 file, as brokers before version 2 wrote it (for tests of
/// compatibility).
pub(crate) fn encode_v1(index: &Index, end: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(index.entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&index.base.to_le_bytes());
    out.extend_from_slice(&end.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let start = out.len();
    for e in &index.entries {
        out.extend_from_slice(&e.rel.to_le_bytes());
        out.extend_from_slice(&e.pos.to_le_bytes());
        out.extend_from_slice(&e.crc.to_le_bytes());
    }
    let crc = crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        Index {
            base: 100,
            entries: vec![
                Entry::new(0, 0, 7, 1_700_000_000_000),
                Entry::new(40, 4100, 9, 1_700_000_000_250),
            ],
        }
    }

    #[test]
    fn round_trip_and_seek() {
        let index = sample();
        let bytes = index.encode(180, 8000);
        assert_eq!(bytes.len(), 56 + 2 * 20 + 4);
        let (header, back) = decode(&bytes, 5).unwrap();
        assert_eq!(
            header,
            Header {
                version: 2,
                entries: 2,
                base: 100,
                end: 180,
                len: 8000,
                max_time: Some(1_700_000_000_250),
            }
        );
        assert_eq!(header.file_len(), bytes.len() as u64);
        assert_eq!(back.entries, index.entries, "times survive too");
        assert_eq!(back.entries[1].time.ms(), 1_700_000_000_250);
        assert_eq!(back.seek(100), (0, 100, 0));
        assert_eq!(back.seek(139), (0, 100, 0));
        assert_eq!(back.seek(140), (1, 140, 4100));
        assert_eq!(back.seek(10_000), (1, 140, 4100));
        assert_eq!(back.interval_end(0, 8000), 4100);
        assert_eq!(back.interval_end(1, 8000), 8000);
    }

    #[test]
    fn times_keep_all_64_bits() {
        for ms in [0, 1, -1, i64::MAX, i64::MIN, 1_700_000_000_123, 1 << 40] {
            assert_eq!(Time::from_ms(ms).ms(), ms);
        }
    }

    #[test]
    fn version_1_files_are_read_with_the_given_time() {
        let index = sample();
        let bytes = encode_v1(&index, 180, 8000);
        assert_eq!(bytes.len(), 48 + 2 * 12 + 4);
        let header = decode_header(&bytes).unwrap();
        assert_eq!(header.version, 1);
        assert_eq!(header.max_time, None);
        assert_eq!(header.file_len(), bytes.len() as u64);
        let (_, back) = decode(&bytes, 1_600_000_000_000).unwrap();
        assert_eq!(back.entries.len(), 2);
        for (b, e) in back.entries.iter().zip(&index.entries) {
            assert_eq!((b.rel, b.pos, b.crc), (e.rel, e.pos, e.crc));
            assert_eq!(b.time.ms(), 1_600_000_000_000);
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, 0).is_err(), "v1 flip at byte {i}");
        }
    }

    #[test]
    fn every_flipped_bit_and_truncation_is_refused() {
        let bytes = sample().encode(180, 8000);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(decode(&bad, 0).is_err(), "flip at byte {i} bit {bit}");
            }
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len], 0).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn a_header_time_disagreeing_with_its_entries_is_refused() {
        let mut bytes = sample().encode(180, 8000);
        bytes[40..48].copy_from_slice(&7i64.to_le_bytes());
        let crc = crc32c(&bytes[..52]);
        bytes[52..56].copy_from_slice(&crc.to_le_bytes());
        let err = decode(&bytes, 0).unwrap_err();
        assert!(err.contains("disagree"), "{err}");
    }

    #[test]
    fn unknown_version_is_named() {
        let mut bytes = sample().encode(180, 8000);
        bytes[8] = 9;
        let crc = crc32c(&bytes[..52]);
        bytes[52..56].copy_from_slice(&crc.to_le_bytes());
        let err = decode(&bytes, 0).unwrap_err();
        assert!(err.contains("version 9"), "{err}");
    }
}
