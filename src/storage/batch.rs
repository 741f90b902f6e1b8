//! RecordBatch v2 (magic 2), the unit Kafka clients produce and fetch.
//!
//! ```text
//! offset  field                   notes
//!  0      base_offset i64         assigned by the broker (patched)
//!  8      batch_length i32        bytes after this field
//! 12      partition_leader_epoch  set by the broker (patched)
//! 16      magic i8 = 2
//! 17      crc u32                 CRC-32C of bytes 21..end
//! 21      attributes i16          codec (bits 0-2), timestamp type (3),
//!                                 transactional (4), control (5)
//! 23      last_offset_delta i32
//! 27      base_timestamp i64
//! 35      max_timestamp i64
//! 43      producer_id i64
//! 51      producer_epoch i16
//! 53      base_sequence i32
//! 57      records_count i32
//! 61      records                 compressed as a whole if codec != 0
//! ```
//!
//! The two fields the broker changes, base offset and leader epoch, lie
//! before the CRC'd range, so a batch is stored as received after two
//! patches and served to Kafka readers as a plain copy. Records are only
//! decoded for readers of another protocol (the text one), which is where
//! the decompressors and their output bound come in.

use std::fmt;
#[cfg(any(feature = "lz4", feature = "zstd"))]
use std::io::Read;

use crate::util::wire::{DecodeError, Reader, Writer};

/// Size of the fixed batch header, up to the first record.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batch_length` counts: base offset and the length itself.
pub const LOG_OVERHEAD: usize = 12;
/// The only magic value we accept.
pub const MAGIC: i8 = 2;
/// Where the CRC'd bytes start.
const CRC_START: usize = 21;
/// The smallest possible record: length, attributes, timestamp delta,
/// offset delta, key length, value length and header count, one byte each.
const MIN_RECORD_LEN: usize = 7;
#[cfg(feature = "zstd")]
/// The largest zstd window we accept (the zstd spec's recommended decoder
/// minimum). ruzstd reserves the window up front, so this also bounds the
/// memory one zstd decompression can take.
const ZSTD_MAX_WINDOW: u64 = 8 * 1024 * 1024;

/// Why some bytes are not a valid record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or `batch_length` needs.
    Truncated,
    /// Bytes after the end of the batch where exactly one was expected.
    TrailingBytes,
    /// `batch_length` too small for a header, or negative.
    InvalidLength(i32),
    /// A magic other than 2 (legacy message sets).
    UnsupportedMagic(i8),
    /// The stored CRC does not match the bytes.
    CrcMismatch { stored: u32, computed: u32 },
    /// Compression codec 5-7.
    UnknownCompression(u8),
    /// A codec this build was compiled without (see the crate features).
    UnsupportedCompression(u8),
    /// A record count that is zero, negative, inconsistent with
    /// `last_offset_delta`, or impossible for the bytes there are.
    InvalidRecordCount,
    /// A record that does not parse, or bytes left after the last record.
    InvalidRecord(&'static str),
    /// Decompressed records would exceed the caller's bound.
    TooLarge { limit: usize },
    /// The compressed bytes do not decompress.
    Decompression(&'static str),
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated => f.write_str("record batch is truncated"),
            BatchError::TrailingBytes => f.write_str("bytes after the record batch"),
            BatchError::InvalidLength(n) => write!(f, "invalid batch length {n}"),
            BatchError::UnsupportedMagic(m) => write!(f, "unsupported magic {m} (only 2)"),
            BatchError::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            BatchError::UnknownCompression(c) => write!(f, "unknown compression codec {c}"),
            BatchError::UnsupportedCompression(c) => {
                write!(f, "compression codec {c} not built in")
            }
            BatchError::InvalidRecordCount => f.write_str("invalid record count"),
            BatchError::InvalidRecord(why) => write!(f, "invalid record: {why}"),
            BatchError::TooLarge { limit } => {
                write!(f, "records decompress to more than {limit} bytes")
            }
            BatchError::Decompression(why) => write!(f, "decompression failed: {why}"),
        }
    }
}

impl std::error::Error for BatchError {}

impl From<DecodeError> for BatchError {
    fn from(e: DecodeError) -> Self {
        BatchError::InvalidRecord(match e {
            DecodeError::Truncated | DecodeError::LengthTooLarge => "field runs past the record",
            DecodeError::InvalidLength => "negative length",
            DecodeError::VarintTooLong => "varint too long",
            _ => "malformed field",
        })
    }
}

/// The compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    pub fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        match attributes & 0x7 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other as u8)),
        }
    }
}

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    /// -1 unless the producer is idempotent or transactional.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// -1 unless the producer is idempotent or transactional.
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Total bytes of the batch, `batch_length` plus the 12 before it.
    pub fn total_len(&self) -> usize {
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD
    }

    /// The codec; valid once the batch passed [`validate`].
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }

    /// Timestamps are LogAppendTime (set by the broker) rather than
    /// CreateTime (set by the producer).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// A control batch (transaction markers): never from a producer.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// The producer is idempotent (has an id).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Offset of the last record, given the base offset.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// The sequence number of the last record (sequences wrap at
    /// `i32::MAX`, as in Kafka).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// Reads the fixed header of the batch at the start of `bytes` and checks
/// its magic and length, without looking at the CRC or the records. Useful
/// to size a read; use [`validate`] before trusting a batch.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let mut r = Reader::new(bytes);
    let base_offset = r.i64().map_err(|_| BatchError::Truncated)?;
    let batch_length = r.i32().map_err(|_| BatchError::Truncated)?;
    let partition_leader_epoch = r.i32().map_err(|_| BatchError::Truncated)?;
    let magic = r.i8().map_err(|_| BatchError::Truncated)?;
    if magic != MAGIC {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::InvalidLength(batch_length));
    }
    let h = (|| -> Result<BatchHeader, DecodeError> {
        Ok(BatchHeader {
            base_offset,
            batch_length,
            partition_leader_epoch,
            magic,
            crc: r.u32()?,
            attributes: r.i16()?,
            last_offset_delta: r.i32()?,
            base_timestamp: r.i64()?,
            max_timestamp: r.i64()?,
            producer_id: r.i64()?,
            producer_epoch: r.i16()?,
            base_sequence: r.i32()?,
            record_count: r.i32()?,
        })
    })()
    .map_err(|_| BatchError::Truncated)?;
    Ok(h)
}

/// Checks one complete batch as a broker must before appending it: exactly
/// `batch_length + 12` bytes, magic 2, the CRC-32C, a known codec, and a
/// record count that matches `last_offset_delta` (offsets in a batch from
/// a producer are 0..count). Compressed records are not decompressed;
/// uncompressed ones must at least fit their count.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(batch)?;
    let total = h.total_len();
    if batch.len() < total {
        return Err(BatchError::Truncated);
    }
    if batch.len() > total {
        return Err(BatchError::TrailingBytes);
    }
    let computed = crc32c::crc32c(batch.get(CRC_START..).unwrap_or_default());
    if computed != h.crc {
        return Err(BatchError::CrcMismatch {
            stored: h.crc,
            computed,
        });
    }
    let compression = Compression::from_attributes(h.attributes)?;
    if h.record_count <= 0 || i64::from(h.last_offset_delta) != i64::from(h.record_count) - 1 {
        return Err(BatchError::InvalidRecordCount);
    }
    if compression == Compression::None {
        let room = total - HEADER_LEN;
        let need = (h.record_count as usize).saturating_mul(MIN_RECORD_LEN);
        if need > room {
            return Err(BatchError::InvalidRecordCount);
        }
    }
    Ok(h)
}

/// Rewrites the CRC of each batch in a blob to match its bytes, as far as
/// the blob holds whole batches. Only for the fuzzer, which could otherwise
/// almost never get past the CRC check to the records.
pub(crate) fn fix_crcs(blob: &mut [u8]) {
    let mut at = 0;
    while let Some(rest) = blob.get_mut(at..) {
        let Ok(h) = parse_header(rest) else {
            return;
        };
        let Some(batch) = rest.get_mut(..h.total_len()) else {
            return;
        };
        let crc = crc32c::crc32c(batch.get(CRC_START..).unwrap_or_default());
        if let Some(field) = batch.get_mut(17..21) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
        at += h.total_len();
    }
}

/// Sets the base offset (bytes 0-7), outside the CRC.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if let Some(field) = batch.get_mut(0..8) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Sets the partition leader epoch (bytes 12-15), outside the CRC.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if let Some(field) = batch.get_mut(12..16) {
        field.copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Iterates over the batches of a records blob (several concatenated
/// batches, as stored or fetched), validating each. After the first error
/// it yields nothing more. A blob that ends inside a batch yields
/// `Truncated`: a fetch cut short, or a torn write at the tail of a log.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Batches<'a> {
    pub fn new(blob: &'a [u8]) -> Self {
        Batches {
            rest: blob,
            failed: false,
        }
    }

    /// Bytes not yet returned.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let result = parse_header(self.rest).and_then(|h| {
            let batch = self
                .rest
                .get(..h.total_len())
                .ok_or(BatchError::Truncated)?;
            Ok((validate(batch)?, batch))
        });
        match &result {
            Ok((_, batch)) => self.rest = self.rest.get(batch.len()..).unwrap_or_default(),
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

/// One record header: Kafka's key is a UTF-8 string, but it is returned as
/// bytes and left to the reader to interpret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// The headers of one record, already checked when the record was parsed.
#[derive(Debug, Clone)]
pub struct RecordHeaders<'a> {
    r: Reader<'a>,
    left: usize,
}

impl<'a> RecordHeaders<'a> {
    /// How many headers are left.
    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

fn read_header<'a>(r: &mut Reader<'a>) -> Result<RecordHeader<'a>, DecodeError> {
    let key = varint_bytes(r)?.ok_or(DecodeError::InvalidLength)?;
    let value = varint_bytes(r)?;
    Ok(RecordHeader { key, value })
}

impl<'a> Iterator for RecordHeaders<'a> {
    type Item = RecordHeader<'a>;

    fn next(&mut self) -> Option<RecordHeader<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated when the record was parsed; an error cannot happen, and
        // would just end the iteration.
        match read_header(&mut self.r) {
            Ok(h) => Some(h),
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }
}

/// One record of a batch.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: RecordHeaders<'a>,
}

impl Record<'_> {
    /// The record's offset in its partition.
    pub fn offset(&self, batch: &BatchHeader) -> i64 {
        batch.base_offset.wrapping_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp: the batch's max timestamp under
    /// LogAppendTime, else base timestamp plus delta.
    pub fn timestamp(&self, batch: &BatchHeader) -> i64 {
        if batch.is_log_append_time() {
            batch.max_timestamp
        } else {
            batch.base_timestamp.wrapping_add(self.timestamp_delta)
        }
    }
}

/// A varint-length-prefixed byte field of a record; -1 is null.
fn varint_bytes<'a>(r: &mut Reader<'a>) -> Result<Option<&'a [u8]>, DecodeError> {
    let len = r.varint()?;
    match len {
        -1 => Ok(None),
        n if n < 0 => Err(DecodeError::InvalidLength),
        n => {
            let n = n as usize;
            if n > r.remaining() {
                return Err(DecodeError::LengthTooLarge);
            }
            r.take(n).map(Some)
        }
    }
}

fn parse_record<'a>(r: &mut Reader<'a>) -> Result<Record<'a>, BatchError> {
    let len = r.varint()?;
    let len = usize::try_from(len).map_err(|_| BatchError::InvalidRecord("negative length"))?;
    if len > r.remaining() {
        return Err(BatchError::InvalidRecord("length runs past the batch"));
    }
    let mut body = Reader::new(r.take(len)?);
    let attributes = body.i8()?;
    let timestamp_delta = body.varlong()?;
    let offset_delta = body.varint()?;
    let key = varint_bytes(&mut body)?;
    let value = varint_bytes(&mut body)?;
    let count = body.varint()?;
    let count = usize::try_from(count).map_err(|_| BatchError::InvalidRecord("negative count"))?;
    // Each header takes at least two bytes (two lengths).
    if count.saturating_mul(2) > body.remaining() {
        return Err(BatchError::InvalidRecord(
            "header count runs past the record",
        ));
    }
    let headers = RecordHeaders {
        r: body.clone(),
        left: count,
    };
    for _ in 0..count {
        read_header(&mut body)?;
    }
    if !body.is_empty() {
        return Err(BatchError::InvalidRecord(
            "bytes after the record's headers",
        ));
    }
    Ok(Record {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

/// The records of one batch, in order. Yields an error (and then stops) if
/// a record does not parse, if the count in the header does not match, or
/// if bytes are left after the last record.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    r: Reader<'a>,
    left: usize,
    done: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            if self.r.is_empty() {
                return None;
            }
            return Some(Err(BatchError::InvalidRecord(
                "bytes after the last record",
            )));
        }
        self.left -= 1;
        let result = parse_record(&mut self.r);
        if result.is_err() {
            self.done = true;
        }
        Some(result)
    }
}

/// Decodes the records of a batch that passed [`validate`], decompressing
/// into `scratch` if the batch is compressed. At most `max_decompressed`
/// bytes are ever produced (a bound on zip bombs); beyond that the result
/// is `TooLarge`. Uncompressed records are borrowed from `batch`.
pub fn records<'a>(
    batch: &'a [u8],
    max_decompressed: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<Records<'a>, BatchError> {
    let h = parse_header(batch)?;
    let body = batch
        .get(HEADER_LEN..h.total_len())
        .ok_or(BatchError::Truncated)?;
    let count = usize::try_from(h.record_count).map_err(|_| BatchError::InvalidRecordCount)?;
    let codec = Compression::from_attributes(h.attributes)?;
    let bytes: &'a [u8] = if codec == Compression::None {
        body
    } else {
        scratch.clear();
        decompress(codec, body, max_decompressed, scratch)?;
        scratch
    };
    if count.saturating_mul(MIN_RECORD_LEN) > bytes.len() {
        return Err(BatchError::InvalidRecordCount);
    }
    Ok(Records {
        r: Reader::new(bytes),
        left: count,
        done: false,
    })
}

/// Appends the decompressed form of `input` to `out`, producing at most
/// `max` bytes.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    match codec {
        Compression::None => {
            if input.len() > max {
                return Err(BatchError::TooLarge { limit: max });
            }
            out.extend_from_slice(input);
            Ok(())
        }
        #[cfg(feature = "gzip")]
        Compression::Gzip => gunzip(input, max, out),
        #[cfg(feature = "snappy")]
        Compression::Snappy => unsnappy(input, max, out),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), max, out)
            .map_err(|e| e.unwrap_or(BatchError::Decompression("bad lz4 frame"))),
        #[cfg(feature = "zstd")]
        Compression::Zstd => unzstd(input, max, out),
        #[allow(unreachable_patterns)]
        other => Err(BatchError::UnsupportedCompression(other as u8)),
    }
}

#[cfg(any(feature = "lz4", feature = "zstd"))]
/// Reads all of `reader` into `out`, failing once more than `max` bytes
/// come out. `Err(None)` is a read error, left to the caller to name.
fn read_bounded(
    reader: impl Read,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), Option<BatchError>> {
    let start = out.len();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(out).map_err(|_| None)?;
    if out.len() - start > max {
        out.truncate(start);
        return Err(Some(BatchError::TooLarge { limit: max }));
    }
    Ok(())
}

#[cfg(feature = "gzip")]
/// gzip (RFC 1952), one member, as Java's `GZIPOutputStream`, librdkafka
/// and kafka-python write. The member's CRC-32 is not checked: the batch's
/// CRC-32C already covers the compressed bytes.
fn gunzip(input: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    let bad = BatchError::Decompression("bad gzip header");
    let mut r = Reader::new(input);
    let fixed = r.take(10).map_err(|_| bad)?;
    let (&[0x1f, 0x8b, 8, flags], _) = fixed.split_at(4) else {
        return Err(bad);
    };
    if flags & 0xe0 != 0 {
        return Err(bad);
    }
    if flags & FEXTRA != 0 {
        let xlen: [u8; 2] = r.take(2).ok().and_then(|b| b.try_into().ok()).ok_or(bad)?;
        let xlen = u16::from_le_bytes(xlen);
        r.skip(usize::from(xlen)).map_err(|_| bad)?;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let nul = r.rest().iter().position(|&b| b == 0).ok_or(bad)?;
            r.skip(nul + 1).map_err(|_| bad)?;
        }
    }
    if flags & FHCRC != 0 {
        r.skip(2).map_err(|_| bad)?;
    }
    let deflated = r.rest();
    let trailer = deflated
        .len()
        .checked_sub(8)
        .and_then(|at| deflated.get(at + 4..))
        .ok_or(BatchError::Decompression("gzip stream too short"))?;
    let isize = u32::from_le_bytes(trailer.try_into().map_err(|_| bad)?);
    let data = miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, max).map_err(|e| {
        if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput {
            BatchError::TooLarge { limit: max }
        } else {
            BatchError::Decompression("bad deflate data")
        }
    })?;
    // ISIZE is the length modulo 2^32.
    if data.len() as u32 != isize {
        return Err(BatchError::Decompression("gzip size mismatch"));
    }
    if out.is_empty() {
        *out = data;
    } else {
        out.extend_from_slice(&data);
    }
    Ok(())
}

#[cfg(feature = "snappy")]
/// The 8-byte magic of xerial snappy framing (Java's snappy-java).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

#[cfg(feature = "snappy")]
/// Snappy, either raw (librdkafka) or in xerial framing (Java): the 16-byte
/// xerial header (magic, version, compatible version), then blocks of an
/// `i32` length and a raw snappy block.
fn unsnappy(input: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let start = out.len();
    if !input.starts_with(XERIAL_MAGIC) {
        return snappy_block(input, max, out);
    }
    let mut r = Reader::new(input);
    r.skip(16)
        .map_err(|_| BatchError::Decompression("short xerial header"))?;
    while !r.is_empty() {
        let block = r
            .nullable_bytes()
            .ok()
            .flatten()
            .ok_or(BatchError::Decompression("bad xerial block length"))?;
        let room = max - (out.len() - start);
        snappy_block(block, room, out).map_err(|e| match e {
            BatchError::TooLarge { .. } => BatchError::TooLarge { limit: max },
            other => other,
        })?;
    }
    Ok(())
}

#[cfg(feature = "snappy")]
/// One raw snappy block, whose uncompressed length is read from its
/// preamble and checked against `max` before anything is allocated.
fn snappy_block(input: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let bad = BatchError::Decompression("bad snappy data");
    let len = snap::raw::decompress_len(input).map_err(|_| bad)?;
    if len > max {
        return Err(BatchError::TooLarge { limit: max });
    }
    let start = out.len();
    out.resize(start + len, 0);
    let tail = out.get_mut(start..).unwrap_or_default();
    match snap::raw::Decoder::new().decompress(input, tail) {
        Ok(n) if n == len => Ok(()),
        _ => {
            out.truncate(start);
            Err(bad)
        }
    }
}

#[cfg(feature = "zstd")]
/// zstd: one or more frames, with the window limited to
/// [`ZSTD_MAX_WINDOW`]. Checksums are not verified (the batch CRC covers
/// the compressed bytes).
fn unzstd(input: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let start = out.len();
    let mut rest = input;
    while !rest.is_empty() {
        let before = rest.len();
        let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
            &mut rest,
            ZSTD_MAX_WINDOW,
        )
        .map_err(|_| BatchError::Decompression("bad zstd frame header"))?;
        let room = max - (out.len() - start);
        read_bounded(decoder, room, out).map_err(|e| match e {
            Some(BatchError::TooLarge { .. }) => BatchError::TooLarge { limit: max },
            _ => BatchError::Decompression("bad zstd data"),
        })?;
        if rest.len() >= before {
            return Err(BatchError::Decompression("zstd frame made no progress"));
        }
    }
    Ok(())
}

/// Number of bytes `v` takes as a zigzag varint.
fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn opt_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varint_len(-1),
        Some(b) => varint_len(b.len() as i64) + b.len(),
    }
}

fn write_opt(w: &mut Writer<'_>, b: Option<&[u8]>) {
    match b {
        None => w.varint(-1),
        Some(b) => {
            w.varint(i32::try_from(b.len()).unwrap_or(i32::MAX));
            w.raw(b);
        }
    }
}

/// Builds one uncompressed batch in place, record by record, for readers
/// that need Kafka batches of data stored another way (text topics).
/// Producer id, epoch and sequence are -1 (no idempotence); timestamps are
/// CreateTime unless [`log_append_time`](Self::log_append_time) is set.
#[derive(Debug)]
pub struct BatchBuilder<'b> {
    out: &'b mut Vec<u8>,
    start: usize,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    attributes: i16,
}

impl<'b> BatchBuilder<'b> {
    /// Starts a batch at the end of `out` whose first record will have
    /// offset `base_offset`.
    pub fn new(out: &'b mut Vec<u8>, base_offset: i64, partition_leader_epoch: i32) -> Self {
        let start = out.len();
        let mut w = Writer::new(out);
        w.i64(base_offset);
        w.i32(0); // batch_length, patched by finish
        w.i32(partition_leader_epoch);
        w.i8(MAGIC);
        w.u32(0); // crc, patched by finish
        w.i16(0); // attributes: no compression, CreateTime
        w.i32(0); // last_offset_delta, patched
        w.i64(0); // base_timestamp, patched
        w.i64(0); // max_timestamp, patched
        w.i64(-1); // producer_id
        w.i16(-1); // producer_epoch
        w.i32(-1); // base_sequence
        w.i32(0); // records_count, patched
        BatchBuilder {
            out,
            start,
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            attributes: 0,
        }
    }

    /// Marks the batch's timestamps as LogAppendTime: readers take the
    /// batch's max timestamp as every record's time (the broker's append
    /// time), and report the type as such.
    pub fn log_append_time(&mut self) {
        self.attributes |= 0x08;
    }

    /// Records added so far.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Bytes of the batch so far.
    pub fn len(&self) -> usize {
        self.out.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record with the next offset.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader<'_>],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let timestamp_delta = timestamp.wrapping_sub(self.base_timestamp);
        let offset_delta = self.count;
        let mut len = 1
            + varint_len(timestamp_delta)
            + varint_len(i64::from(offset_delta))
            + opt_len(key)
            + opt_len(value)
            + varint_len(headers.len() as i64);
        for h in headers {
            len += opt_len(Some(h.key)) + opt_len(h.value);
        }
        let mut w = Writer::new(self.out);
        w.varint(i32::try_from(len).unwrap_or(i32::MAX));
        w.i8(0);
        w.varlong(timestamp_delta);
        w.varint(offset_delta);
        write_opt(&mut w, key);
        write_opt(&mut w, value);
        w.varint(i32::try_from(headers.len()).unwrap_or(i32::MAX));
        for h in headers {
            write_opt(&mut w, Some(h.key));
            write_opt(&mut w, h.value);
        }
        self.count += 1;
    }

    /// Patches the header and CRC. Returns the batch's length, or 0 (and
    /// writes nothing) if no record was pushed: an empty batch is invalid.
    pub fn finish(self) -> usize {
        if self.count == 0 {
            self.out.truncate(self.start);
            return 0;
        }
        let len = self.out.len() - self.start;
        let batch = self.out.get_mut(self.start..).unwrap_or_default();
        let mut patch = |at: usize, bytes: &[u8]| {
            if let Some(field) = batch.get_mut(at..at + bytes.len()) {
                field.copy_from_slice(bytes);
            }
        };
        patch(8, &((len - LOG_OVERHEAD) as i32).to_be_bytes());
        patch(21, &self.attributes.to_be_bytes());
        patch(23, &(self.count - 1).to_be_bytes());
        patch(27, &self.base_timestamp.to_be_bytes());
        patch(35, &self.max_timestamp.to_be_bytes());
        patch(57, &self.count.to_be_bytes());
        let crc = crc32c::crc32c(batch.get(CRC_START..).unwrap_or_default());
        if let Some(field) = batch.get_mut(17..21) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = BatchBuilder::new(&mut out, 0, 0);
        b.push(1_700_000_000_000, Some(b"k1"), Some(b"hello"), &[]);
        b.push(
            1_700_000_000_005,
            None,
            Some(b"world"),
            &[RecordHeader {
                key: b"h",
                value: Some(b"v"),
            }],
        );
        b.push(1_699_999_999_999, Some(b""), None, &[]);
        assert_eq!(b.count(), 3);
        let len = b.finish();
        assert_eq!(len, out.len());
        out
    }

    /// With `KAFKA_BATCH_CORPUS_OUT=dir`, writes `bytes` into `dir` as a
    /// fuzzing seed; part of `fuzz/corpus/kafka_batch` was made this way
    /// (`KAFKA_BATCH_CORPUS_OUT=fuzz/corpus/kafka_batch cargo test --lib
    /// batch`), besides batches captured from real clients.
    fn seed(name: &str, bytes: &[u8]) {
        if let Some(dir) = std::env::var_os("KAFKA_BATCH_CORPUS_OUT") {
            let path = std::path::Path::new(&dir).join(format!("seed-{name}.bin"));
            std::fs::write(path, bytes).expect("write seed");
        }
    }

    #[test]
    fn built_batch_validates_and_decodes() {
        let batch = sample();
        seed("built", &batch);
        let h = validate(&batch).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1_700_000_000_000);
        assert_eq!(h.max_timestamp, 1_700_000_000_005);
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.compression(), Compression::None);
        assert!(!h.is_control() && !h.is_transactional() && !h.is_log_append_time());
        let mut scratch = Vec::new();
        let recs: Vec<_> = records(&batch, 1 << 20, &mut scratch)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].key, Some(&b"k1"[..]));
        assert_eq!(recs[0].value, Some(&b"hello"[..]));
        assert_eq!(recs[0].timestamp(&h), 1_700_000_000_000);
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].offset(&h), 1);
        let hs: Vec<_> = recs[1].headers.clone().collect();
        assert_eq!(
            hs,
            [RecordHeader {
                key: b"h",
                value: Some(b"v")
            }]
        );
        assert_eq!(recs[2].value, None);
        assert_eq!(recs[2].timestamp(&h), 1_699_999_999_999);
        assert!(scratch.is_empty(), "uncompressed records are borrowed");
    }

    #[test]
    fn patching_offset_and_epoch_keeps_the_crc() {
        let mut batch = sample();
        set_base_offset(&mut batch, 1234);
        set_partition_leader_epoch(&mut batch, 7);
        let h = validate(&batch).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (1234, 7));
        assert_eq!((h.last_offset(), h.next_offset()), (1236, 1237));
    }

    #[test]
    fn empty_builder_writes_nothing() {
        let mut out = vec![1, 2];
        assert_eq!(BatchBuilder::new(&mut out, 0, 0).finish(), 0);
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn several_batches_iterate_and_a_torn_tail_is_reported() {
        let mut blob = sample();
        let first = blob.len();
        let mut b = BatchBuilder::new(&mut blob, 3, 0);
        b.push(5, None, Some(b"x"), &[]);
        b.finish();
        seed("two-batches", &blob);
        seed("torn-tail", &blob[..blob.len() - 1]);
        let all: Vec<_> = Batches::new(&blob).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].as_ref().unwrap().0.base_offset, 3);
        let torn = &blob[..blob.len() - 1];
        let got: Vec<_> = Batches::new(torn).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert_eq!(got[1], Err(BatchError::Truncated));
        assert_eq!(Batches::new(&blob[..first]).count(), 1);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let batch = sample();
        for cut in 0..batch.len() {
            assert!(validate(&batch[..cut]).is_err(), "cut {cut}");
            let got: Vec<_> = Batches::new(&batch[..cut]).collect();
            assert!(got.iter().all(|r| r.is_err()), "cut {cut}");
        }
    }

    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn corruptions_are_errors() {
        let good = sample();
        let mut b = good.clone();
        b[40] ^= 1;
        assert!(matches!(validate(&b), Err(BatchError::CrcMismatch { .. })));

        let mut b = good.clone();
        b[16] = 1;
        assert_eq!(validate(&b), Err(BatchError::UnsupportedMagic(1)));

        let mut b = good.clone();
        b[22] |= 5;
        fix_crc(&mut b);
        assert_eq!(validate(&b), Err(BatchError::UnknownCompression(5)));

        let mut b = good.clone();
        b[23..27].copy_from_slice(&5i32.to_be_bytes());
        fix_crc(&mut b);
        assert_eq!(validate(&b), Err(BatchError::InvalidRecordCount));

        let mut b = good.clone();
        b[57..61].copy_from_slice(&0i32.to_be_bytes());
        b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut b);
        assert_eq!(validate(&b), Err(BatchError::InvalidRecordCount));

        // A count far beyond what the bytes can hold.
        let mut b = good.clone();
        b[57..61].copy_from_slice(&1_000_000i32.to_be_bytes());
        b[23..27].copy_from_slice(&999_999i32.to_be_bytes());
        fix_crc(&mut b);
        assert_eq!(validate(&b), Err(BatchError::InvalidRecordCount));

        let mut b = good.clone();
        b[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(validate(&b), Err(BatchError::InvalidLength(-1)));
        b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(validate(&b), Err(BatchError::Truncated));

        let mut b = good.clone();
        b.push(0);
        assert_eq!(validate(&b), Err(BatchError::TrailingBytes));
    }

    #[test]
    fn bad_records_are_errors() {
        // A record claiming to be longer than the batch.
        let mut b = sample();
        b[HEADER_LEN] = 0x7e; // zigzag 63
        fix_crc(&mut b);
        validate(&b).unwrap();
        let mut scratch = Vec::new();
        let first = records(&b, 1 << 20, &mut scratch).unwrap().next().unwrap();
        assert!(first.is_err());

        // One record fewer in the count than in the bytes.
        let mut b = sample();
        b[57..61].copy_from_slice(&2i32.to_be_bytes());
        b[23..27].copy_from_slice(&1i32.to_be_bytes());
        fix_crc(&mut b);
        let got: Vec<_> = records(&b, 1 << 20, &mut scratch).unwrap().collect();
        assert_eq!(got.len(), 3);
        assert!(got[2].is_err());
    }

    /// Re-packs an uncompressed batch with its records compressed by
    /// `compress` under `codec`, fixing length, attributes and CRC.
    #[allow(dead_code)]
    fn compressed(
        plain: &[u8],
        codec: Compression,
        compress: impl Fn(&[u8]) -> Vec<u8>,
    ) -> Vec<u8> {
        let mut out = plain[..HEADER_LEN].to_vec();
        out.extend_from_slice(&compress(&plain[HEADER_LEN..]));
        let len = (out.len() - LOG_OVERHEAD) as i32;
        out[8..12].copy_from_slice(&len.to_be_bytes());
        out[21..23].copy_from_slice(&(codec as i16).to_be_bytes());
        fix_crc(&mut out);
        out
    }

    /// One record whose value is 4 MiB of zeros: compresses to almost
    /// nothing, the shape of a zip bomb.
    #[allow(dead_code)]
    fn bomb() -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = BatchBuilder::new(&mut out, 0, 0);
        b.push(1, None, Some(&vec![0u8; 4 << 20]), &[]);
        b.finish();
        out
    }

    #[allow(dead_code)]
    fn check_codec(codec: Compression, compress: impl Fn(&[u8]) -> Vec<u8>) {
        let plain = sample();
        let batch = compressed(&plain, codec, &compress);
        seed(&format!("{codec:?}-{}", batch.len()).to_lowercase(), &batch);
        let h = validate(&batch).unwrap();
        assert_eq!(h.compression(), codec);
        let mut scratch = Vec::new();
        let values: Vec<_> = records(&batch, 1 << 20, &mut scratch)
            .unwrap()
            .map(|r| r.unwrap().value.map(<[u8]>::to_vec))
            .collect();
        assert_eq!(
            values,
            [Some(b"hello".to_vec()), Some(b"world".to_vec()), None],
            "{codec:?}"
        );
        // Too small a bound for the plain records.
        let need = plain.len() - HEADER_LEN;
        assert_eq!(
            records(&batch, need - 1, &mut scratch).err(),
            Some(BatchError::TooLarge { limit: need - 1 }),
            "{codec:?}"
        );
        assert!(records(&batch, need, &mut scratch).is_ok(), "{codec:?}");

        let bomb = compressed(&bomb(), codec, &compress);
        seed(&format!("{codec:?}-bomb").to_lowercase(), &bomb);
        assert!(
            bomb.len() < 300 * 1024,
            "{codec:?} bomb is {} bytes",
            bomb.len()
        );
        assert_eq!(
            records(&bomb, 64 * 1024, &mut scratch).err(),
            Some(BatchError::TooLarge { limit: 64 * 1024 }),
            "{codec:?}"
        );
        assert!(
            scratch.capacity() < 8 << 20,
            "{codec:?} allocated {}",
            scratch.capacity()
        );

        // Garbage instead of compressed data.
        let junk = compressed(&plain, codec, |_| vec![0x55; 40]);
        assert!(records(&junk, 1 << 20, &mut scratch).is_err(), "{codec:?}");
        let empty = compressed(&plain, codec, |_| Vec::new());
        assert!(records(&empty, 1 << 20, &mut scratch).is_err(), "{codec:?}");
    }

    #[cfg(feature = "gzip")]
    #[test]
    fn gzip() {
        check_codec(Compression::Gzip, |data| {
            let mut out = vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 0xff];
            out.extend_from_slice(b"name\0"); // FNAME
            out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
            out.extend_from_slice(&[0; 4]); // CRC-32, not checked
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out
        });
    }

    #[cfg(feature = "snappy")]
    #[test]
    fn snappy_raw_and_xerial() {
        check_codec(Compression::Snappy, |data| {
            snap::raw::Encoder::new().compress_vec(data).unwrap()
        });
        check_codec(Compression::Snappy, |data| {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
            for chunk in data.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend_from_slice(&(block.len() as i32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        });
    }

    #[cfg(feature = "lz4")]
    #[test]
    fn lz4_frame() {
        use std::io::Write;
        check_codec(Compression::Lz4, |data| {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        });
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn zstd() {
        check_codec(Compression::Zstd, |data| {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        });
    }

    #[cfg(not(feature = "zstd"))]
    #[test]
    fn missing_codec_is_reported() {
        let mut b = sample();
        b[21..23].copy_from_slice(&4i16.to_be_bytes());
        fix_crc(&mut b);
        let mut scratch = Vec::new();
        assert_eq!(
            records(&b, 1 << 20, &mut scratch).err(),
            Some(BatchError::UnsupportedCompression(4))
        );
    }

    #[test]
    fn sequences_wrap() {
        let mut h = validate(&sample()).unwrap();
        assert_eq!(h.last_sequence(), -1);
        h.base_sequence = i32::MAX - 1;
        assert_eq!(h.last_sequence(), 0);
    }
}
