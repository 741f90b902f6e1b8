//! Kafka's primitive types: a bounds-checked [`Reader`] and an appending
//! [`Writer`].
//!
//! Every multi-byte integer is big-endian. Strings carry an `i16` length
//! and bytes an `i32` length, with `-1` meaning null where the field is
//! nullable. Flexible versions (KIP-482) use "compact" forms instead: an
//! unsigned varint holding `length + 1` (so `0` is null), and end every
//! struct with a tagged-field section that a reader may skip.
//!
//! The reader never panics and never allocates: lengths and counts are
//! checked against the bytes that are actually left before anything is
//! sliced, and array counts are checked against a minimum element size, so
//! a caller that does `Vec::with_capacity(count)` allocates at most a small
//! multiple of the input it was given.

use std::fmt;

/// Why some bytes are not a valid Kafka message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a field.
    Truncated,
    /// A length or count that says there is more data than is left.
    LengthTooLarge,
    /// A negative length or count (other than `-1` for null), or null where
    /// the field is not nullable.
    InvalidLength,
    /// A varint longer than its type allows.
    VarintTooLong,
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// An API key this codec does not know.
    UnknownApiKey(i16),
    /// A version of a known API outside the range this codec decodes.
    UnsupportedVersion { api_key: i16, api_version: i16 },
    /// A field whose value is impossible (a boolean other than 0/1 is *not*
    /// one: Kafka reads any non-zero byte as true).
    InvalidValue(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("input ends inside a field"),
            DecodeError::LengthTooLarge => f.write_str("length larger than the remaining input"),
            DecodeError::InvalidLength => f.write_str("negative or null length"),
            DecodeError::VarintTooLong => f.write_str("varint too long"),
            DecodeError::InvalidUtf8 => f.write_str("string is not UTF-8"),
            DecodeError::UnknownApiKey(k) => write!(f, "unknown api key {k}"),
            DecodeError::UnsupportedVersion {
                api_key,
                api_version,
            } => write!(
                f,
                "api key {api_key} version {api_version} is not supported"
            ),
            DecodeError::InvalidValue(why) => write!(f, "invalid value: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

pub type Result<T> = std::result::Result<T, DecodeError>;

/// A cursor over a borrowed byte slice. Strings and byte fields are
/// returned borrowed from the slice, so decoding a request copies nothing.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes not read yet, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.take(n).map(|_| ())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.fixed()?))
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_be_bytes(self.fixed()?))
    }

    /// Kafka's boolean: one byte, any non-zero value is true (as the Java
    /// reader does).
    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.u8()? != 0)
    }

    pub fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.fixed()?))
    }

    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.fixed()?))
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.fixed()?))
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.fixed()?))
    }

    pub fn uuid(&mut self) -> Result<[u8; 16]> {
        self.fixed()
    }

    /// An unsigned LEB128 varint of at most 5 bytes (32 bits).
    pub fn uvarint(&mut self) -> Result<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let byte = self.u8()?;
            if i == 4 && byte > 0x0f {
                return Err(DecodeError::VarintTooLong);
            }
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintTooLong)
    }

    /// An unsigned LEB128 varint of at most 10 bytes (64 bits).
    pub fn uvarlong(&mut self) -> Result<u64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.u8()?;
            if i == 9 && byte > 0x01 {
                return Err(DecodeError::VarintTooLong);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintTooLong)
    }

    /// A zigzag-encoded signed varint (record fields).
    pub fn varint(&mut self) -> Result<i32> {
        let raw = self.uvarint()?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A zigzag-encoded signed varlong (record timestamps).
    pub fn varlong(&mut self) -> Result<i64> {
        let raw = self.uvarlong()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Reads `len` bytes of UTF-8.
    fn str_of(&mut self, len: usize) -> Result<&'a str> {
        if len > self.remaining() {
            return Err(DecodeError::LengthTooLarge);
        }
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Checks a signed length: `None` for `-1` (null), an error for other
    /// negatives or for more than is left.
    fn signed_len(&self, len: i64) -> Result<Option<usize>> {
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(DecodeError::InvalidLength),
            n => {
                let n = usize::try_from(n).map_err(|_| DecodeError::LengthTooLarge)?;
                if n > self.remaining() {
                    Err(DecodeError::LengthTooLarge)
                } else {
                    Ok(Some(n))
                }
            }
        }
    }

    /// Checks a compact length (`length + 1`, `0` is null).
    fn compact_len(&self, raw: u32) -> Result<Option<usize>> {
        self.signed_len(i64::from(raw) - 1)
    }

    /// `STRING`: `i16` length then UTF-8; null is an error.
    pub fn string(&mut self) -> Result<&'a str> {
        self.nullable_string()?.ok_or(DecodeError::InvalidLength)
    }

    /// `NULLABLE_STRING`: `i16` length (`-1` null) then UTF-8.
    pub fn nullable_string(&mut self) -> Result<Option<&'a str>> {
        let len = self.i16()?;
        match self.signed_len(i64::from(len))? {
            None => Ok(None),
            Some(n) => self.str_of(n).map(Some),
        }
    }

    /// `COMPACT_STRING`: uvarint `length + 1` then UTF-8; null is an error.
    pub fn compact_string(&mut self) -> Result<&'a str> {
        self.compact_nullable_string()?
            .ok_or(DecodeError::InvalidLength)
    }

    /// `COMPACT_NULLABLE_STRING`.
    pub fn compact_nullable_string(&mut self) -> Result<Option<&'a str>> {
        let raw = self.uvarint()?;
        match self.compact_len(raw)? {
            None => Ok(None),
            Some(n) => self.str_of(n).map(Some),
        }
    }

    /// `BYTES`: `i32` length then the bytes; null is an error.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        self.nullable_bytes()?.ok_or(DecodeError::InvalidLength)
    }

    /// `NULLABLE_BYTES` (also `RECORDS` in non-flexible versions).
    pub fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>> {
        let len = self.i32()?;
        match self.signed_len(i64::from(len))? {
            None => Ok(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// `COMPACT_BYTES`; null is an error.
    pub fn compact_bytes(&mut self) -> Result<&'a [u8]> {
        self.compact_nullable_bytes()?
            .ok_or(DecodeError::InvalidLength)
    }

    /// `COMPACT_NULLABLE_BYTES` (also `COMPACT_RECORDS`).
    pub fn compact_nullable_bytes(&mut self) -> Result<Option<&'a [u8]>> {
        let raw = self.uvarint()?;
        match self.compact_len(raw)? {
            None => Ok(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// Checks an element count against what is left: `count` elements of
    /// at least `min_size` bytes each must fit in the remaining input. This
    /// is what makes `Vec::with_capacity(count)` safe on untrusted input.
    fn check_count(&self, count: Option<usize>, min_size: usize) -> Result<Option<usize>> {
        if let Some(n) = count {
            let need = n
                .checked_mul(min_size.max(1))
                .ok_or(DecodeError::LengthTooLarge)?;
            if need > self.remaining() {
                return Err(DecodeError::LengthTooLarge);
            }
        }
        Ok(count)
    }

    /// An `ARRAY` count (`i32`); null is an error. `min_size` is the
    /// smallest encoding of one element.
    pub fn array_len(&mut self, min_size: usize) -> Result<usize> {
        self.nullable_array_len(min_size)?
            .ok_or(DecodeError::InvalidLength)
    }

    /// A nullable `ARRAY` count (`-1` is null).
    pub fn nullable_array_len(&mut self, min_size: usize) -> Result<Option<usize>> {
        let len = self.i32()?;
        let count = match len {
            -1 => None,
            n if n < 0 => return Err(DecodeError::InvalidLength),
            n => Some(usize::try_from(n).map_err(|_| DecodeError::LengthTooLarge)?),
        };
        self.check_count(count, min_size)
    }

    /// A `COMPACT_ARRAY` count (uvarint `count + 1`); null is an error.
    pub fn compact_array_len(&mut self, min_size: usize) -> Result<usize> {
        self.compact_nullable_array_len(min_size)?
            .ok_or(DecodeError::InvalidLength)
    }

    /// A nullable `COMPACT_ARRAY` count (`0` is null).
    pub fn compact_nullable_array_len(&mut self, min_size: usize) -> Result<Option<usize>> {
        let raw = self.uvarint()?;
        let count = match raw {
            0 => None,
            n => Some(usize::try_from(n - 1).map_err(|_| DecodeError::LengthTooLarge)?),
        };
        self.check_count(count, min_size)
    }

    /// Reads a non-nullable array whose elements `f` decodes.
    pub fn array<T>(
        &mut self,
        min_size: usize,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = self.array_len(min_size)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(out)
    }

    /// Reads a nullable array whose elements `f` decodes.
    pub fn nullable_array<T>(
        &mut self,
        min_size: usize,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(n) = self.nullable_array_len(min_size)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(Some(out))
    }

    /// Reads a compact array whose elements `f` decodes.
    pub fn compact_array<T>(
        &mut self,
        min_size: usize,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = self.compact_array_len(min_size)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(out)
    }

    /// Skips a tagged-field section: we know no tags, so every field is
    /// unknown and skipped, as the spec requires of readers. Returns how
    /// many fields were skipped.
    pub fn tagged_fields(&mut self) -> Result<usize> {
        let count = self.uvarint()? as usize;
        // Each field needs at least a tag byte and a size byte.
        self.check_count(Some(count), 2)?;
        let mut last_tag: Option<u32> = None;
        for _ in 0..count {
            let tag = self.uvarint()?;
            if last_tag.is_some_and(|last| tag <= last) {
                return Err(DecodeError::InvalidValue("tagged fields out of order"));
            }
            last_tag = Some(tag);
            let size = self.uvarint()? as usize;
            if size > self.remaining() {
                return Err(DecodeError::LengthTooLarge);
            }
            self.skip(size)?;
        }
        Ok(count)
    }
}

/// Appends Kafka primitives to a `Vec<u8>`.
///
/// Encoding never fails: the values come from the broker, not the network.
/// A string longer than `i16::MAX` bytes or bytes longer than `i32::MAX`
/// cannot be represented; they are cut to the largest length that can,
/// which keeps the frame well-formed (a debug build asserts instead).
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut Vec<u8>) -> Self {
        Writer { buf }
    }

    /// Bytes in the underlying buffer (not just those this writer added).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The underlying buffer, for patching what was written.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn i8(&mut self, v: i8) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn uuid(&mut self, v: &[u8; 16]) {
        self.buf.extend_from_slice(v);
    }

    pub fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn uvarlong(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn varint(&mut self, v: i32) {
        self.uvarint(((v << 1) ^ (v >> 31)) as u32);
    }

    pub fn varlong(&mut self, v: i64) {
        self.uvarlong(((v << 1) ^ (v >> 63)) as u64);
    }

    fn cut_str(s: &str) -> &[u8] {
        let max = i16::MAX as usize;
        debug_assert!(s.len() <= max, "string too long for the Kafka protocol");
        s.as_bytes().get(..max).unwrap_or(s.as_bytes())
    }

    fn cut_bytes(b: &[u8]) -> &[u8] {
        let max = i32::MAX as usize;
        debug_assert!(b.len() <= max, "bytes too long for the Kafka protocol");
        b.get(..max).unwrap_or(b)
    }

    pub fn string(&mut self, s: &str) {
        let b = Self::cut_str(s);
        self.i16(b.len() as i16);
        self.raw(b);
    }

    pub fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            None => self.i16(-1),
            Some(s) => self.string(s),
        }
    }

    pub fn compact_string(&mut self, s: &str) {
        let b = Self::cut_str(s);
        self.uvarint(b.len() as u32 + 1);
        self.raw(b);
    }

    pub fn compact_nullable_string(&mut self, s: Option<&str>) {
        match s {
            None => self.uvarint(0),
            Some(s) => self.compact_string(s),
        }
    }

    pub fn bytes(&mut self, b: &[u8]) {
        let b = Self::cut_bytes(b);
        self.i32(b.len() as i32);
        self.raw(b);
    }

    pub fn nullable_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.i32(-1),
            Some(b) => self.bytes(b),
        }
    }

    pub fn compact_bytes(&mut self, b: &[u8]) {
        let b = Self::cut_bytes(b);
        self.uvarint(b.len() as u32 + 1);
        self.raw(b);
    }

    pub fn compact_nullable_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.uvarint(0),
            Some(b) => self.compact_bytes(b),
        }
    }

    /// An `ARRAY` count.
    pub fn array_len(&mut self, n: usize) {
        self.i32(i32::try_from(n).unwrap_or(i32::MAX));
    }

    /// A nullable `ARRAY` count.
    pub fn nullable_array_len(&mut self, n: Option<usize>) {
        match n {
            None => self.i32(-1),
            Some(n) => self.array_len(n),
        }
    }

    /// A `COMPACT_ARRAY` count.
    pub fn compact_array_len(&mut self, n: usize) {
        self.uvarint(u32::try_from(n).unwrap_or(u32::MAX - 1).saturating_add(1));
    }

    /// An `ARRAY` of `items`, each written by `f`.
    pub fn array<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.array_len(items.len());
        for item in items {
            f(self, item);
        }
    }

    /// An array of `i32` (node ids, partition indexes).
    pub fn i32_array(&mut self, items: &[i32]) {
        self.array(items, |w, &v| w.i32(v));
    }

    /// An empty tagged-field section: we never send tagged fields.
    pub fn empty_tagged_fields(&mut self) {
        self.uvarint(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut buf = Vec::new();
        f(&mut Writer::new(&mut buf));
        buf
    }

    #[test]
    fn integers_are_big_endian() {
        let b = written(|w| {
            w.i8(-2);
            w.i16(0x0102);
            w.i32(0x03040506);
            w.i64(-1);
            w.u32(0xfffffffe);
        });
        assert_eq!(
            b,
            [
                0xfe, 1, 2, 3, 4, 5, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xfe
            ]
        );
        let mut r = Reader::new(&b);
        assert_eq!(r.i8(), Ok(-2));
        assert_eq!(r.i16(), Ok(0x0102));
        assert_eq!(r.i32(), Ok(0x03040506));
        assert_eq!(r.i64(), Ok(-1));
        assert_eq!(r.u32(), Ok(0xfffffffe));
        assert!(r.is_empty());
        assert_eq!(r.i8(), Err(DecodeError::Truncated));
    }

    #[test]
    fn varints_round_trip_and_match_known_encodings() {
        // Protobuf/Kafka zigzag examples.
        for (v, enc) in [
            (0i32, &[0u8][..]),
            (-1, &[1]),
            (1, &[2]),
            (-64, &[0x7f]),
            (64, &[0x80, 1]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            assert_eq!(written(|w| w.varint(v)), enc, "{v}");
            assert_eq!(Reader::new(enc).varint(), Ok(v));
        }
        for v in [0i64, -1, 1, i64::MAX, i64::MIN, 1_700_000_000_000, -300] {
            let b = written(|w| w.varlong(v));
            let mut r = Reader::new(&b);
            assert_eq!(r.varlong(), Ok(v));
            assert!(r.is_empty());
        }
        for v in [0u32, 1, 127, 128, 16383, 16384, u32::MAX] {
            let b = written(|w| w.uvarint(v));
            assert_eq!(Reader::new(&b).uvarint(), Ok(v));
        }
    }

    #[test]
    fn overlong_varints_are_errors() {
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x1f]).uvarint(),
            Err(DecodeError::VarintTooLong)
        );
        assert_eq!(
            Reader::new(&[0x80; 6]).uvarint(),
            Err(DecodeError::VarintTooLong)
        );
        assert_eq!(
            Reader::new(&[0x80; 11]).uvarlong(),
            Err(DecodeError::VarintTooLong)
        );
        assert_eq!(
            Reader::new(&[0x80, 0x80]).uvarint(),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn strings_and_bytes() {
        let b = written(|w| {
            w.string("héllo");
            w.nullable_string(None);
            w.bytes(b"\x00\x01");
            w.nullable_bytes(None);
            w.compact_string("ab");
            w.compact_nullable_string(None);
            w.compact_bytes(b"xyz");
            w.compact_nullable_bytes(None);
        });
        let mut r = Reader::new(&b);
        assert_eq!(r.string(), Ok("héllo"));
        assert_eq!(r.nullable_string(), Ok(None));
        assert_eq!(r.bytes(), Ok(&b"\x00\x01"[..]));
        assert_eq!(r.nullable_bytes(), Ok(None));
        assert_eq!(r.compact_string(), Ok("ab"));
        assert_eq!(r.compact_nullable_string(), Ok(None));
        assert_eq!(r.compact_bytes(), Ok(&b"xyz"[..]));
        assert_eq!(r.compact_nullable_bytes(), Ok(None));
        assert!(r.is_empty());
    }

    #[test]
    fn bad_lengths_are_errors_before_reading() {
        assert_eq!(
            Reader::new(&[0xff, 0xff]).string(),
            Err(DecodeError::InvalidLength)
        );
        assert_eq!(
            Reader::new(&[0xff, 0xfe]).nullable_string(),
            Err(DecodeError::InvalidLength)
        );
        assert_eq!(
            Reader::new(&[0, 5, b'a']).string(),
            Err(DecodeError::LengthTooLarge)
        );
        assert_eq!(
            Reader::new(&[0, 1, 0xff]).string(),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            Reader::new(&[0x7f, 0xff, 0xff, 0xff]).bytes(),
            Err(DecodeError::LengthTooLarge)
        );
        assert_eq!(
            Reader::new(&[0x80, 0, 0, 0]).nullable_bytes(),
            Err(DecodeError::InvalidLength)
        );
        assert_eq!(
            Reader::new(&[0]).compact_string(),
            Err(DecodeError::InvalidLength)
        );
        // A billion-element array in 4 bytes must not allocate.
        assert_eq!(
            Reader::new(&[0x3b, 0x9a, 0xca, 0x00]).array(4, |r| r.i32()),
            Err(DecodeError::LengthTooLarge)
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff]).nullable_array(4, |r| r.i32()),
            Ok(None)
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xfe]).nullable_array(4, |r| r.i32()),
            Err(DecodeError::InvalidLength)
        );
    }

    #[test]
    fn tagged_fields_are_skipped() {
        // Two fields: tag 0 with 2 bytes, tag 5 with 0 bytes; then a marker.
        let b = [2, 0, 2, 0xaa, 0xbb, 5, 0, 0x42];
        let mut r = Reader::new(&b);
        assert_eq!(r.tagged_fields(), Ok(2));
        assert_eq!(r.u8(), Ok(0x42));
        assert_eq!(
            Reader::new(&[1, 0, 9, 1]).tagged_fields(),
            Err(DecodeError::LengthTooLarge)
        );
        assert_eq!(
            Reader::new(&[2, 3, 0, 1, 0]).tagged_fields(),
            Err(DecodeError::InvalidValue("tagged fields out of order"))
        );
        assert_eq!(
            Reader::new(&[0x7f]).tagged_fields(),
            Err(DecodeError::LengthTooLarge)
        );
    }
}
